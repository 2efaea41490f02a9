package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// deltaImage builds a linux/amd64 image of layers.
func deltaImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	return img
}

func randomLayer(t *testing.T, n int64) v1.Layer {
	t.Helper()
	l, err := random.Layer(n, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func push(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(mustRef(t, ref), img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func layerSize(t *testing.T, l v1.Layer) int64 {
	t.Helper()
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Acceptance: a full bundle loaded into a registry, then a delta made
// against it (one image updated with a new top layer) loads on top, and the
// target names exactly the source's new digests. The delta is smaller than
// the full bundle by at least the shared base layer; made from an
// inventory of the target it leaves out the same layers as made from the
// previous bundle. A target that lacks the base refuses it before anything
// is pushed; docker is refused; docker load of the delta fails.
func TestDeltaRegistry(t *testing.T) {
	testenv.Acceptance(t)
	reg, _ := testenv.SharedSeeded(t)
	repo := reg.Host + "/" + testenv.Unique("delta")
	base := randomLayer(t, 1<<20)
	top1, top2 := randomLayer(t, 64<<10), randomLayer(t, 64<<10)
	push(t, repo+"/app:1", deltaImage(t, base, top1))
	push(t, repo+"/tool:1", deltaImage(t, base, top2))

	dir := t.TempDir()
	yaml := filepath.Join(dir, "images.yaml")
	os.WriteFile(yaml, []byte("platforms: [linux/amd64]\nimages:\n  - "+repo+"/app:1\n  - "+repo+"/tool:1\n"), 0o644)
	cache := filepath.Join(dir, "cache")
	full := filepath.Join(dir, "full.tar")
	mustBundle(t, "create", "-q", "-f", yaml, "-o", full, "--cache", cache)

	target := testenv.StartRegistry(t)
	to := "docker://" + target.Host + "/mirror"
	if res := loadJSON(t, "-i", full, "--to", to); res.Loaded != 2 {
		t.Fatalf("full bundle: %d loaded", res.Loaded)
	}
	// The offline side's inventory, taken now.
	have := filepath.Join(dir, "have.json")
	mustBundle(t, "inventory", "-q", "--from", to, "-o", have)

	// app:1 gets a new top layer.
	newTop := randomLayer(t, 32<<10)
	newApp := push(t, repo+"/app:1", deltaImage(t, base, top1, newTop))
	toolDigest, _ := remote.Head(mustRef(t, repo+"/tool:1"))

	delta := filepath.Join(dir, "delta.tar")
	out := mustBundle(t, "create", "-q", "--json", "-f", yaml, "--base", full, "-o", delta, "--cache", cache)
	cr := jsonResult[bundle.CreateResult](t, out)
	fullSize, deltaSize := fileSize(t, full), fileSize(t, delta)
	t.Logf("full bundle %d bytes, delta %d bytes (%d layers, %d bytes left out)", fullSize, deltaSize, cr.External, cr.ExternalBytes)
	if fullSize-deltaSize < layerSize(t, base) {
		t.Errorf("the delta (%d bytes) is not smaller than the full bundle (%d) by the base layer (%d)", deltaSize, fullSize, layerSize(t, base))
	}
	idx := readIndex(t, delta)
	baseDigest, _ := base.Digest()
	newTopDigest, _ := newTop.Digest()
	if _, ok := idx.External[baseDigest]; !ok || cr.External != 3 {
		t.Errorf("external %v (%d); want the base and both old top layers", keys(idx.External), cr.External)
	}
	if _, ok := idx.Blobs[newTopDigest]; !ok {
		t.Error("the new top layer is not carried")
	}

	// The same delta from the inventory.
	fromHave := filepath.Join(dir, "delta-have.tar")
	mustBundle(t, "create", "-q", "-f", yaml, "--have", have, "-o", fromHave, "--cache", cache)
	if a, b := keys(readIndex(t, fromHave).External), keys(idx.External); !slices.Equal(a, b) {
		t.Errorf("external from the inventory %v; from the base bundle %v", a, b)
	}

	// verify: intact, lists what it expects.
	vout := mustBundle(t, "verify", "-i", delta)
	if !strings.Contains(vout, "delta bundle: 3 blobs") || !strings.Contains(vout, "external "+baseDigest.String()) || !strings.Contains(vout, "OK: 2 images") {
		t.Errorf("verify of the delta:\n%s", vout)
	}

	// Into a registry without the base: refused, nothing pushed.
	empty := testenv.StartRegistry(t)
	_, stderr, code := bundleCLI(t, "load", "-i", delta, "--to", "docker://"+empty.Host+"/mirror")
	if code != exitError || !strings.Contains(stderr, "lacks 3 blobs") || !strings.Contains(stderr, "missing "+baseDigest.String()) || !strings.Contains(stderr, "nothing was loaded") {
		t.Errorf("delta into an empty registry: exit %d\n%s", code, stderr)
	}
	if cat := catalog(t, empty); cat != `{"repositories":[]}` {
		t.Errorf("the empty registry has %s after a refused delta", cat)
	}

	// Into the target: only the new image, and the target names exactly
	// the source's digests.
	res := loadJSON(t, "-i", delta, "--to", to)
	if res.Loaded != 1 || res.Skipped != 1 {
		t.Errorf("delta: %d loaded, %d skipped; want 1, 1", res.Loaded, res.Skipped)
	}
	for ref, want := range map[string]v1.Hash{"/app:1": newApp, "/tool:1": toolDigest.Digest} {
		r := targetRef(t, target.Host, "mirror", repo+ref)
		desc, err := remote.Head(r)
		if err != nil || desc.Digest != want {
			t.Errorf("%s: %v %v; want %s", r, desc, err, want)
		}
	}
	appImg, err := remote.Image(targetRef(t, target.Host, "mirror", repo+"/app:1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateLayers(appImg); err != nil {
		t.Errorf("the updated image in the target: %v", err)
	}

	// Into docker: refused, with the reason.
	d := testenv.SharedDockerd(t)
	t.Setenv("DOCKER_HOST", d.Host)
	_, stderr, code = bundleCLI(t, "load", "-i", delta)
	if code != exitError || !strings.Contains(stderr, "cannot load a delta bundle") || !strings.Contains(stderr, "docker load takes only whole images") {
		t.Errorf("delta into docker: exit %d\n%s", code, stderr)
	}
	// docker load of the delta itself fails: manifest.json names layer
	// files that the delta does not carry.
	cmd := d.Command(t.Context(), "load", "-i", delta)
	outb, err := cmd.CombinedOutput()
	t.Logf("docker load -i delta.tar: %v: %s", err, outb)
	if err == nil || !strings.Contains(string(outb), baseDigest.Hex) {
		t.Errorf("docker load of a delta: %v\n%s", err, outb)
	}

	// Nightly: nothing changed since the delta, nothing written.
	again := filepath.Join(dir, "again.tar")
	jout := mustBundle(t, "create", "-q", "--json", "-f", yaml, "--base", delta, "--skip-unchanged", "-o", again, "--cache", cache)
	if !strings.Contains(jout, `"unchanged": true`) {
		t.Errorf("create --skip-unchanged: %s", jout)
	}
	if _, err := os.Stat(again); err == nil {
		t.Error("an unchanged run wrote a bundle")
	}
}

// validateLayers reads every layer of img in full (digests checked).
func validateLayers(img v1.Image) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func catalog(t *testing.T, r *testenv.Registry) string {
	t.Helper()
	resp, err := http.Get(r.URL + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func keys(m map[v1.Hash]tarball.Blob) []string {
	var out []string
	for h := range m {
		out = append(out, h.String())
	}
	slices.Sort(out)
	return out
}
