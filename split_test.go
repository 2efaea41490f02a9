package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// createSplit makes a bundle of every seeded image in volumes of under
// 256 KiB (extra are more create flags) and returns the -o name.
func createSplit(t *testing.T, out string, extra ...string) {
	t.Helper()
	_, seeded := testenv.SharedSeeded(t)
	dir := filepath.Dir(out)
	args := append([]string{"create", "-q", "-f", imagesYAML(t, dir, seeded), "-o", out, "--cache", filepath.Join(dir, "cache"), "--split", "256K"}, extra...)
	mustBundle(t, args...)
}

func volumes(t *testing.T, base string) []string {
	t.Helper()
	vols, err := filepath.Glob(base + ".[0-9][0-9][0-9]")
	if err != nil || len(vols) < 3 {
		t.Fatalf("volumes of %s: %v (%v); want 3 or more", base, vols, err)
	}
	return vols
}

// rmiSeeded removes the seeded images' tags from the daemon.
func rmiSeeded(t *testing.T, d *testenv.Dockerd, seeded *testenv.Seeded) {
	for _, im := range seeded.Images {
		if !strings.Contains(im.Ref, "@") {
			_, _ = d.Command(t.Context(), "rmi", "-f", manifests.FamiliarName(mustRef(t, im.Ref))).CombinedOutput()
		}
	}
}

// Acceptance: a bundle split over several volumes is a split tar: the
// volumes joined are the unsplit bundle, `cat images.tar.0* | docker load`
// loads it on the real dockerd, and bundle verify, list and load take the
// first volume, the base name or a glob and read the volumes as one.
func TestSplitVolumesDocker(t *testing.T) {
	testenv.Acceptance(t)
	_, seeded := testenv.SharedSeeded(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar")
	createSplit(t, out)
	vols := volumes(t, out)
	// Every volume but the last is 256 KiB − 1 byte; .sha256 lists each.
	for _, v := range vols[:len(vols)-1] {
		if fi, _ := os.Stat(v); fi.Size() != 256<<10-1 {
			t.Errorf("%s is %d bytes, want %d", v, fi.Size(), 256<<10-1)
		}
	}
	sums, _ := os.ReadFile(out + ".sha256")
	if n := strings.Count(string(sums), "\n"); n != len(vols) {
		t.Errorf("images.tar.sha256 has %d lines for %d volumes:\n%s", n, len(vols), sums)
	}
	command(t, nil, "sh", "-c", "cd "+dir+" && sha256sum -c images.tar.sha256")

	// The same bundle unsplit, byte for byte (SOURCE_DATE_EPOCH fixes
	// bundle.json's created time).
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	createSplit(t, out)
	whole := filepath.Join(dir, "whole.tar")
	mustBundle(t, "create", "-q", "-f", filepath.Join(dir, "images.yaml"), "-o", whole, "--cache", filepath.Join(dir, "cache"))
	var joined bytes.Buffer
	for _, v := range volumes(t, out) {
		b, _ := os.ReadFile(v)
		joined.Write(b)
	}
	if w, _ := os.ReadFile(whole); !bytes.Equal(joined.Bytes(), w) {
		t.Fatalf("the volumes joined (%d bytes) are not the unsplit bundle (%d bytes)", joined.Len(), len(w))
	}

	// bundle verify and list: the first volume, the base name, a glob.
	for _, in := range []string{out + ".001", out, out + ".0*"} {
		o := mustBundle(t, "verify", "-i", in)
		if !strings.Contains(o, "OK: 7 images") || !strings.Contains(o, "the sha256 of each matches images.tar.sha256") {
			t.Errorf("verify -i %s:\n%s", in, o)
		}
	}
	// A glob the shell expanded: the further volumes as arguments.
	o := mustBundle(t, append([]string{"verify", "-i"}, volumes(t, out)...)...)
	if !strings.Contains(o, "OK: 7 images") {
		t.Errorf("verify of the expanded glob:\n%s", o)
	}
	if o := mustBundle(t, "list", "-i", out+".001"); !strings.Contains(o, "7 images") {
		t.Errorf("list:\n%s", o)
	}

	d := testenv.SharedDockerd(t)
	rmiSeeded(t, d, seeded)
	t.Cleanup(func() { rmiSeeded(t, d, seeded) })
	// cat images.tar.0* | docker load
	docker, err := testenv.LookPath(testenv.DockerProgram)
	if err != nil {
		t.Fatal(err)
	}
	loaded := command(t, d.Env(), "sh", "-c", "cat "+out+".0* | "+docker+" load")
	hello := seeded.Find(t, testenv.ImageHello)
	if !strings.Contains(loaded, "Loaded image: "+manifests.FamiliarName(mustRef(t, hello.Ref))) {
		t.Errorf("cat | docker load:\n%s", loaded)
	}
	if got := d.Docker(t, "run", "--rm", "--network", "none", hello.Ref); !strings.Contains(got, testenv.HelloOutput) {
		t.Errorf("docker run after cat | docker load printed %q", got)
	}

	// bundle load of the volumes into the daemon (after removing the
	// images) and into a registry.
	rmiSeeded(t, d, seeded)
	t.Setenv("DOCKER_HOST", d.Host)
	res := loadJSON(t, "-i", out+".001")
	// (The digest-only image has no tag to remove: it may be there.)
	if res.Loaded+res.Skipped != len(seeded.Images) || res.Loaded < len(seeded.Images)-1 {
		t.Errorf("bundle load of the volumes into docker: %d loaded, %d skipped; want %d", res.Loaded, res.Skipped, len(seeded.Images))
	}
	target := testenv.StartRegistry(t)
	res = loadJSON(t, "-i", out, "--to", "docker://"+target.Host+"/split")
	if res.Loaded != len(seeded.Images) {
		t.Errorf("bundle load of the volumes into a registry: %d loaded", res.Loaded)
	}
	for _, im := range seeded.Images {
		desc, err := remote.Head(targetRef(t, target.Host, "split", im.Ref))
		if err != nil || desc.Digest != im.Digest {
			t.Errorf("%s in the target: %v %v; want %s", im.Ref, desc, err, im.Digest)
		}
	}
}

// Acceptance: a volume missing or damaged is reported by number; verify
// and load exit 3 and load loads nothing.
func TestSplitVolumesDamaged(t *testing.T) {
	testenv.Acceptance(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar")
	createSplit(t, out)
	vols := volumes(t, out)

	copyTo := func(t *testing.T) string {
		d := t.TempDir()
		for _, v := range append(vols, out+".sha256") {
			b, _ := os.ReadFile(v)
			os.WriteFile(filepath.Join(d, filepath.Base(v)), b, 0o644)
		}
		return filepath.Join(d, "images.tar")
	}
	check := func(t *testing.T, base string, wants ...string) {
		t.Helper()
		stdout, stderr, code := bundleCLI(t, "verify", "-i", base+".001")
		if code != exitCorrupt {
			t.Errorf("verify: exit %d, want %d\n%s%s", code, exitCorrupt, stdout, stderr)
		}
		for _, w := range wants {
			if !strings.Contains(stdout, w) {
				t.Errorf("verify output lacks %q:\n%s", w, stdout)
			}
		}
		if !strings.Contains(stderr, "bundle: hint: copy ") {
			t.Errorf("no hint to copy the volume again:\n%s", stderr)
		}
		oci := filepath.Join(t.TempDir(), "oci")
		_, stderr, code = bundleCLI(t, "load", "-i", base, "--to", "oci:"+oci)
		if code != exitCorrupt || !strings.Contains(stderr, "nothing was loaded") {
			t.Errorf("load: exit %d\n%s", code, stderr)
		}
		if _, err := os.Stat(oci); err == nil {
			t.Error("load of a damaged split bundle wrote the OCI layout")
		}
	}

	t.Run("missing", func(t *testing.T) {
		base := copyTo(t)
		os.Remove(tarball.VolumeName(base, 2))
		check(t, base, "images.tar.002: volume 2 is missing: the bundle is read up to the end of volume 1 only",
			"in volume 1 (images.tar.001) at offset 262143")
	})
	t.Run("last missing", func(t *testing.T) {
		base := copyTo(t)
		last := len(vols)
		os.Remove(tarball.VolumeName(base, last))
		check(t, base, "volume "+strconv.Itoa(last)+" is missing")
	})
	t.Run("damaged", func(t *testing.T) {
		base := copyTo(t)
		testenv.FlipMiddleByte(t, tarball.VolumeName(base, 2))
		check(t, base, "images.tar.002: the sha256 of volume 2 is not the one in images.tar.sha256",
			"in volume ")
	})
}

// Acceptance: --gzip writes one gzip stream that docker load takes as it
// is, and that verify and load read.
func TestGzipBundle(t *testing.T) {
	testenv.Acceptance(t)
	_, seeded := testenv.SharedSeeded(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar.gz")
	mustBundle(t, "create", "-q", "-f", imagesYAML(t, dir, seeded), "-o", out, "--cache", filepath.Join(dir, "cache"), "--gzip")
	head := make([]byte, 2)
	f, _ := os.Open(out)
	io.ReadFull(f, head)
	f.Close()
	if head[0] != 0x1f || head[1] != 0x8b {
		t.Fatalf("%s does not start as gzip: % x", out, head)
	}
	if o := mustBundle(t, "verify", "-i", out); !strings.Contains(o, "OK: 7 images") || !strings.Contains(o, "sha256 matches images.tar.gz.sha256") {
		t.Errorf("verify:\n%s", o)
	}
	d := testenv.SharedDockerd(t)
	rmiSeeded(t, d, seeded)
	t.Cleanup(func() { rmiSeeded(t, d, seeded) })
	loaded := d.Docker(t, "load", "-i", out)
	hello := seeded.Find(t, testenv.ImageHello)
	if !strings.Contains(loaded, "Loaded image: "+manifests.FamiliarName(mustRef(t, hello.Ref))) {
		t.Errorf("docker load -i images.tar.gz:\n%s", loaded)
	}
	rmiSeeded(t, d, seeded)
	t.Setenv("DOCKER_HOST", d.Host)
	if res := loadJSON(t, "-i", out); res.Loaded < len(seeded.Images)-1 || !res.Verified.Spooled {
		t.Errorf("bundle load of the gzip bundle: %d loaded, spooled %v", res.Loaded, res.Verified.Spooled)
	}
	// Split and compressed: volumes of one gzip stream.
	sg := filepath.Join(dir, "sg.tar.gz")
	mustBundle(t, "create", "-q", "-f", filepath.Join(dir, "images.yaml"), "-o", sg, "--cache", filepath.Join(dir, "cache"), "--gzip", "--split", "256K")
	volumes(t, sg)
	if o := mustBundle(t, "verify", "-i", sg+".001"); !strings.Contains(o, "OK: 7 images") {
		t.Errorf("verify of gzip volumes:\n%s", o)
	}
	if res := loadJSON(t, "-i", sg, "--to", "oci:"+filepath.Join(dir, "oci")); res.Loaded != len(seeded.Images) {
		t.Errorf("load of gzip volumes: %d loaded", res.Loaded)
	}
}
