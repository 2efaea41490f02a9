package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// uploadCounter counts, in a reverse proxy in front of a registry, the
// requests that send a blob or a manifest.
type uploadCounter struct {
	uploads atomic.Int64 // PATCH/PUT of blob uploads
	puts    atomic.Int64 // PUT of manifests
}

func countUploads(t *testing.T, reg *testenv.Registry) (*uploadCounter, string) {
	t.Helper()
	c := &uploadCounter{}
	p := testenv.StartReverseProxy(t, reg.Host, testenv.ProxyHooks{
		Request: func(_ *testenv.ReverseProxy, _ http.ResponseWriter, r *http.Request) bool {
			switch {
			case strings.Contains(r.URL.Path, "/blobs/uploads/") && (r.Method == http.MethodPatch || r.Method == http.MethodPut):
				c.uploads.Add(1)
			case strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodPut:
				c.puts.Add(1)
			}
			return false
		},
	})
	return c, p.Host
}

// targetRef is where a seeded image lands in a registry under prefix.
func targetRef(t *testing.T, host, prefix, ref string) name.Reference {
	t.Helper()
	r, err := load.RewriteRef(mustRef(t, ref), mustRegistry(t, host), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRegistry(t *testing.T, host string) name.Registry {
	t.Helper()
	r, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Acceptance 1 and 2: into a real registry, every image (the multi-arch
// index included) has the source registry's digest, docker pulls and runs
// the hello image from it; a second load sends no blob and no manifest.
func TestLoadRegistry(t *testing.T) {
	testenv.Acceptance(t)
	out, seeded := createSeeded(t)
	reg := testenv.StartRegistry(t)
	counter, proxyHost := countUploads(t, reg)

	start := time.Now()
	res := loadJSON(t, "-i", out, "--to", "docker://"+proxyHost+"/mirror")
	t.Logf("bundle load into the registry: %v, %d blobs, %s", time.Since(start), res.BlobsSent, humanBytes(res.BytesSent))
	if res.Loaded != len(seeded.Images) || res.Skipped != 0 {
		t.Errorf("first load: %d loaded, %d skipped; want %d, 0", res.Loaded, res.Skipped, len(seeded.Images))
	}
	if counter.uploads.Load() == 0 {
		t.Fatal("the proxy saw no upload")
	}
	for _, im := range seeded.Images {
		ref := targetRef(t, reg.Host, "mirror", im.Ref)
		desc, err := remote.Head(ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if desc.Digest != im.Digest || desc.MediaType != im.MediaType {
			t.Errorf("%s is %s %s; the source %s is %s %s", ref, desc.Digest, desc.MediaType, im.Ref, im.Digest, im.MediaType)
		}
	}

	uploads, puts := counter.uploads.Load(), counter.puts.Load()
	again := loadJSON(t, "-i", out, "--to", "docker://"+proxyHost+"/mirror")
	if again.Skipped != len(seeded.Images) || again.BlobsSent != 0 || again.BytesSent != 0 {
		t.Errorf("second load: %+v; want every image skipped, nothing sent", again)
	}
	if n, m := counter.uploads.Load()-uploads, counter.puts.Load()-puts; n != 0 || m != 0 {
		t.Errorf("second load: the registry received %d blob uploads and %d manifest PUTs, want none", n, m)
	}

	// docker pulls the hello image from the target and runs it.
	d := testenv.SharedDockerd(t)
	hello := targetRef(t, reg.Host, "mirror", seeded.Find(t, testenv.ImageHello).Ref).String()
	d.Docker(t, "pull", "-q", hello)
	t.Cleanup(func() { _, _ = d.Command(t.Context(), "rmi", "-f", hello).CombinedOutput() })
	if got := d.Docker(t, "run", "--rm", "--network", "none", hello); !strings.Contains(got, testenv.HelloOutput) {
		t.Errorf("docker run %s printed %q, want %q", hello, got, testenv.HelloOutput)
	}
}

// A re-load decompresses only what it loads: the layers that only images
// the target already holds use are checked by digest, not decompressed.
// A damaged copy of such a layer still fails the load: a corrupt bundle
// loads nothing.
func TestLoadReloadDecompressesOnlyWhatItLoads(t *testing.T) {
	testenv.Acceptance(t)
	good, seeded := createSeeded(t)
	idx := readIndex(t, good)
	layers, layerBytes := 0, int64(0)
	for _, b := range idx.Blobs {
		if b.DiffID != nil {
			layers++
			layerBytes += b.Size
		}
	}
	reg := testenv.StartRegistry(t)
	to := "docker://" + reg.Host + "/mirror"
	first := loadJSON(t, "-i", good, "--to", to)
	if first.Verified.Shallow != 0 {
		t.Errorf("first load into an empty registry: %d layers not decompressed, want 0", first.Verified.Shallow)
	}
	again := loadJSON(t, "-i", good, "--to", to)
	if again.Verified.Shallow != layers || again.Verified.ShallowBytes != layerBytes {
		t.Errorf("re-load: %d layers (%d bytes) not decompressed, want every layer: %d (%d bytes)",
			again.Verified.Shallow, again.Verified.ShallowBytes, layers, layerBytes)
	}
	stdout, stderr, _ := bundleCLI(t, "load", "-i", good, "--to", to)
	if !strings.Contains(stdout+stderr, "checked by digest only") {
		t.Errorf("the re-load does not say what it did not decompress:\n%s%s", stdout, stderr)
	}

	bad := flipLayerByte(t, good, seeded.SharedLayer)
	_, stderr, code := bundleCLI(t, "load", "-i", bad, "--to", to)
	if code != exitCorrupt || !strings.Contains(stderr, "nothing was loaded") {
		t.Errorf("re-load of a bundle with a damaged layer that the target holds: exit %d, want %d:\n%s", code, exitCorrupt, stderr)
	}
}

// A bundle holding one platform of a multi-arch index loads into the
// registry with the tag on that platform's manifest, and says so.
func TestLoadRegistryPartialIndex(t *testing.T) {
	testenv.Acceptance(t)
	_, seeded := testenv.SharedSeeded(t)
	multi := seeded.Find(t, testenv.ImageMulti)
	dir := t.TempDir()
	yaml := filepath.Join(dir, "images.yaml")
	os.WriteFile(yaml, []byte("platforms: [linux/arm64]\nimages:\n  - "+multi.Ref+"\n"), 0o644)
	out := filepath.Join(dir, "arm.tar")
	mustBundle(t, "create", "-q", "-f", yaml, "-o", out, "--cache", filepath.Join(dir, "cache"))

	reg := testenv.StartRegistry(t)
	stdout, stderr, code := bundleCLI(t, "load", "-i", out, "--to", "docker://"+reg.Host+"/m")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	arm := multi.Manifests[1]
	if !strings.Contains(stderr, "note: the bundle loads 1 of the 2 platforms of index "+multi.Digest.String()) {
		t.Errorf("no note about the partial index:\n%s", stderr)
	}
	ref := targetRef(t, reg.Host, "m", multi.Ref)
	desc, err := remote.Head(ref)
	if err != nil || desc.Digest != arm.Digest {
		t.Errorf("%s: %v %v; want the linux/arm64/v8 manifest %s", ref, desc, err, arm.Digest)
	}
}

// Acceptance 3: into the real docker daemon every tag is there with the
// right image ID, the hello image runs, and a second load skips them all.
func TestLoadDocker(t *testing.T) {
	testenv.Acceptance(t)
	out, seeded := createSeeded(t)
	d := testenv.SharedDockerd(t)
	t.Setenv("DOCKER_HOST", d.Host)
	idx := readIndex(t, out)
	// The image ID docker gets: the config of the platform manifest.json
	// names (the first, linux/amd64, here).
	wantID := map[string]string{}
	for _, im := range idx.Images {
		wantID[im.Ref] = im.Manifests[0].Config.String()
	}
	rmi := func() {
		for _, im := range idx.Images {
			ref := mustRef(t, im.Ref)
			target := manifests.FamiliarName(ref)
			if strings.Contains(im.Ref, "@") {
				target = wantID[im.Ref]
			}
			_, _ = d.Command(t.Context(), "rmi", "-f", target).CombinedOutput()
		}
	}
	rmi()
	t.Cleanup(rmi)

	start := time.Now()
	res := loadJSON(t, "-i", out)
	t.Logf("bundle load into dockerd: %v", time.Since(start))
	if res.Loaded != len(idx.Images) {
		t.Errorf("%d loaded, want %d: %+v", res.Loaded, len(idx.Images), res.Images)
	}
	for _, im := range idx.Images {
		target := manifests.FamiliarName(mustRef(t, im.Ref))
		if strings.Contains(im.Ref, "@") {
			target = wantID[im.Ref] // untagged: found by ID
		}
		id := strings.TrimSpace(d.Docker(t, "image", "inspect", "--format", "{{.Id}}", target))
		if id != wantID[im.Ref] {
			t.Errorf("%s: image ID %s, want %s", target, id, wantID[im.Ref])
		}
	}
	hello := seeded.Find(t, testenv.ImageHello).Ref
	if got := d.Docker(t, "run", "--rm", "--network", "none", hello); !strings.Contains(got, testenv.HelloOutput) {
		t.Errorf("docker run %s printed %q", hello, got)
	}

	again := loadJSON(t, "-i", out)
	if again.Skipped != len(idx.Images) || again.BytesSent != 0 {
		t.Errorf("second load: %d skipped, %d bytes sent; want %d, 0", again.Skipped, again.BytesSent, len(idx.Images))
	}
}

// pushExtra pushes two OCI-media-type references (an image and a
// two-platform index) that the seeded set lacks, and returns a bundle of
// them and seed/app-a.
func pushExtra(t *testing.T, reg *testenv.Registry, seeded *testenv.Seeded) (string, map[string]v1.Hash) {
	t.Helper()
	img := func(arch string) v1.Image {
		l, err := random.Layer(16<<10, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		i, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: arch, RootFS: v1.RootFS{Type: "layers"}})
		if err != nil {
			t.Fatal(err)
		}
		i, err = mutate.AppendLayers(i, l)
		if err != nil {
			t.Fatal(err)
		}
		return mutate.ConfigMediaType(mutate.MediaType(i, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	extra := reg.Host + "/loadtest/extra:1"
	if err := remote.Write(mustRef(t, extra), img("amd64")); err != nil {
		t.Fatal(err)
	}
	ii := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		ii = mutate.AppendManifests(ii, mutate.IndexAddendum{Add: img(arch), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	index := reg.Host + "/loadtest/index:1"
	if err := remote.WriteIndex(mustRef(t, index), ii); err != nil {
		t.Fatal(err)
	}
	digests := map[string]v1.Hash{}
	app := seeded.Find(t, testenv.ImageAppA)
	for _, r := range []string{extra, index, app.Ref} {
		desc, err := remote.Head(mustRef(t, r))
		if err != nil {
			t.Fatal(err)
		}
		digests[manifests.FullName(mustRef(t, r))] = desc.Digest
	}
	dir := t.TempDir()
	yaml := filepath.Join(dir, "extra.yaml")
	os.WriteFile(yaml, []byte("platforms: [linux/amd64, linux/arm64]\nimages:\n  - "+extra+"\n  - "+index+"\n  - "+app.Ref+"\n"), 0o644)
	out := filepath.Join(dir, "extra.tar")
	mustBundle(t, "create", "-q", "-f", yaml, "-o", out, "--cache", filepath.Join(dir, "cache"))
	return out, digests
}

// Acceptance 4: two bundles into one OCI layout directory; every reference
// of both is there with its registry digest; skopeo reads the references
// with OCI media types (containers/image skips index.json entries with
// Docker media types by design, FORMAT.md), go-containerregistry reads the
// others.
func TestLoadOCI(t *testing.T) {
	testenv.Acceptance(t)
	first, seeded := createSeeded(t)
	reg, _ := testenv.SharedSeeded(t)
	second, extra := pushExtra(t, reg, seeded)
	dir := filepath.Join(t.TempDir(), "oci")

	res := loadJSON(t, "-i", first, "--to", "oci:"+dir)
	if res.Loaded != len(seeded.Images) {
		t.Errorf("first bundle: %d loaded, want %d", res.Loaded, len(seeded.Images))
	}
	res = loadJSON(t, "-i", second, "--to", "oci:"+dir)
	if res.Loaded != 2 || res.Skipped != 1 {
		t.Errorf("second bundle: %d loaded, %d skipped; want 2 and 1 (app-a is there already)", res.Loaded, res.Skipped)
	}

	want := map[string]v1.Hash{}
	for _, im := range seeded.Images {
		want[manifests.FullName(mustRef(t, im.Ref))] = im.Digest
	}
	for r, d := range extra {
		want[r] = d
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Descriptor{}
	for _, d := range index.Manifests {
		got[d.Annotations[tarball.AnnotationRefName]] = d
	}
	if len(got) != len(want) {
		t.Errorf("index.json has %d references, want %d", len(got), len(want))
	}
	for r, d := range want {
		desc, ok := got[r]
		if !ok || desc.Digest != d {
			t.Errorf("index.json: %s → %v, want %s", r, desc.Digest, d)
			continue
		}
		if desc.MediaType == types.OCIManifestSchema1 || desc.MediaType == types.OCIImageIndex {
			raw := command(t, nil, "skopeo", "inspect", "--raw", "oci:"+dir+":"+r)
			if sum := "sha256:" + sha256Hex([]byte(raw)); sum != d.String() {
				t.Errorf("skopeo inspect oci:DIR:%s read %s, want %s", r, sum, d)
			}
		}
		// Every blob it names is there and hashes to its name.
		p := filepath.Join(dir, "blobs", "sha256", d.Hex)
		b, err := os.ReadFile(p)
		if err != nil || "sha256:"+sha256Hex(b) != d.String() {
			t.Errorf("%s: blob %s missing or damaged (%v)", r, d, err)
		}
	}
	for _, r := range []string{"loadtest/extra:1", "loadtest/index:1"} {
		if _, ok := want[reg.Host+"/"+r]; !ok {
			t.Errorf("no %s in the expected set", r)
		}
	}
}

// flipLayerByte copies the bundle and flips one byte in the middle of the
// layer's content.
func flipLayerByte(t *testing.T, src string, layer v1.Hash) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "corrupt.tar")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := tarball.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := f.Blob(layer)
	f.Close()
	if !ok {
		t.Fatalf("no blob %s in %s", layer, src)
	}
	testenv.FlipByte(t, out, e.Offset+e.Size/2)
	return out
}

// Acceptance 5: a bundle with one flipped byte in a layer loads nothing
// into any target: exit 3, the verify finding printed, no tag in the
// registry, index.json of the layout unchanged and no blob written, no
// image in docker.
func TestLoadCorruptLoadsNothing(t *testing.T) {
	testenv.Acceptance(t)
	good, seeded := createSeeded(t)
	bad := flipLayerByte(t, good, seeded.SharedLayer)

	check := func(t *testing.T, args ...string) {
		t.Helper()
		_, stderr, code := bundleCLI(t, append([]string{"load", "-i", bad}, args...)...)
		if code != exitCorrupt {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, exitCorrupt, stderr)
		}
		for _, want := range []string{tarball.BlobPath(seeded.SharedLayer) + ": sha256 of the layer is not the digest in its name", "nothing was loaded", "bundle: error: "} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	}

	t.Run("registry", func(t *testing.T) {
		reg := testenv.StartRegistry(t)
		check(t, "--to", "docker://"+reg.Host+"/mirror")
		for _, im := range seeded.Images {
			ref := targetRef(t, reg.Host, "mirror", im.Ref)
			if desc, err := remote.Head(ref); err == nil {
				t.Errorf("%s names %s after loading a corrupt bundle", ref, desc.Digest)
			}
		}
		resp, err := http.Get(reg.URL + "/v2/_catalog")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), `"repositories":[]`) {
				t.Errorf("the registry has repositories after loading a corrupt bundle: %s", body)
			}
		}
	})

	t.Run("oci", func(t *testing.T) {
		dir := t.TempDir()
		index := []byte(`{"schemaVersion":2,"manifests":[]}`)
		os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644)
		check(t, "--to", "oci:"+dir)
		got, _ := os.ReadFile(filepath.Join(dir, "index.json"))
		if !bytes.Equal(got, index) {
			t.Errorf("index.json changed: %s", got)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256")); len(ents) > 0 {
			t.Errorf("%d blobs written", len(ents))
		}
	})

	t.Run("docker", func(t *testing.T) {
		d := testenv.SharedDockerd(t)
		t.Setenv("DOCKER_HOST", d.Host)
		hello := seeded.Find(t, testenv.ImageHello).Ref
		_, _ = d.Command(t.Context(), "rmi", "-f", hello).CombinedOutput()
		check(t)
		if out, err := d.Command(t.Context(), "image", "inspect", hello).CombinedOutput(); err == nil {
			t.Errorf("docker has %s after loading a corrupt bundle:\n%s", hello, out)
		}
	})
}

// bundle load -i - reads a pipe: verified while it is spooled, then loaded.
func TestLoadStdin(t *testing.T) {
	testenv.Acceptance(t)
	out, seeded := createSeeded(t)
	dir := filepath.Join(t.TempDir(), "oci")
	stdout, stderr, code := bundleCLIStdin(t, out, "load", "--json", "-i", "-", "--to", "oci:"+dir)
	if code != 0 {
		t.Fatalf("bundle load -i - (stdin %s): exit %d\n%s", out, code, stderr)
	}
	res := jsonResult[bundle.LoadResult](t, stdout)
	if !res.Verified.Spooled || res.Loaded != len(seeded.Images) {
		t.Errorf("stdin load: spooled %v, %d loaded; want true, %d", res.Verified.Spooled, res.Loaded, len(seeded.Images))
	}
}
