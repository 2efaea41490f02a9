package main

// Issue 11, class 6: the free space is checked before the work. On small
// tmpfs mounts, create (plain and --split) and load --to oci: fail at once
// with exit 1 and "needs X in DIR, Y free", request no layer, and write
// nothing; what fits is still written.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestSpaceCheckedBeforeTheWork(t *testing.T) {
	testenv.Acceptance(t)
	testenv.RequireRoot(t)
	reg, _ := testenv.SharedSeeded(t)
	proxy := testenv.StartFaultProxy(t, reg.Host)
	// One image of a 6 MiB random (incompressible) layer.
	img, err := random.Image(6<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host + "/space/big:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0].Digest.String()

	dir := t.TempDir()
	yaml := filepath.Join(dir, "images.yaml")
	if err := os.WriteFile(yaml, []byte("images:\n  - "+proxy.Host+"/space/big:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpfs := func(name, size string) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if !mountTmpfs(t, p, 0, size) {
			t.Fatalf("cannot mount a tmpfs on %s", p)
		}
		return p
	}
	// expectRefused checks one refusal: exit 1, one error line naming dir
	// and the sizes (and a hint), no layer requested, nothing in dir.
	expectRefused := func(t *testing.T, dir string, stderr string, code int, parts ...string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || !strings.HasPrefix(lines[0], "bundle: error: ") || len(lines) > 2 {
			t.Errorf("exit %d, want 1 and one error line; stderr:\n%s", code, stderr)
		}
		want := "needs "
		if i := strings.Index(lines[0], want); i < 0 || !strings.Contains(lines[0][i:], " in "+dir+", ") || !strings.Contains(lines[0], " free (") {
			t.Errorf("error does not say 'needs X in %s, Y free':\n%s", dir, stderr)
		}
		for _, p := range parts {
			if !strings.Contains(lines[0], p) {
				t.Errorf("error lacks %q:\n%s", p, lines[0])
			}
		}
		if n := proxy.BlobGETs(layer); n != 0 {
			t.Errorf("the layer was requested %d times before the refusal", n)
		}
		t.Log(lines[0])
	}
	// nothingIn checks that dir holds nothing but the names allowed (not
	// even the output's lock file).
	nothingIn := func(t *testing.T, dir string, allowed ...string) {
		t.Helper()
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !slices.Contains(allowed, e.Name()) {
				t.Errorf("left in %s: %s", dir, e.Name())
			}
		}
	}

	t.Run("create", func(t *testing.T) {
		small := tmpfs("create", "4m")
		proxy.ResetCounts()
		_, stderr, code := bundleCLI(t, "create", "-q", "-f", yaml, "-o", filepath.Join(small, "images.tar"), "--cache", filepath.Join(dir, "cache-create"))
		expectRefused(t, small, stderr, code, "the bundle 6.0 MiB", "4.0 MiB free")
		nothingIn(t, small)
	})

	t.Run("create --split", func(t *testing.T) {
		small := tmpfs("split", "4m")
		proxy.ResetCounts()
		_, stderr, code := bundleCLI(t, "create", "-q", "-f", yaml, "-o", filepath.Join(small, "images.tar"), "--split", "2M", "--cache", filepath.Join(dir, "cache-split"))
		expectRefused(t, small, stderr, code, "the bundle 6.0 MiB")
		nothingIn(t, small)
	})

	// The cache and the output on one filesystem: their sum counts. Each
	// alone fits; together they do not.
	both := tmpfs("both", "10m")
	t.Run("cache and output on one disk", func(t *testing.T) {
		proxy.ResetCounts()
		_, stderr, code := bundleCLI(t, "create", "-q", "-f", yaml, "-o", filepath.Join(both, "images.tar"), "--cache", filepath.Join(both, "cache"))
		expectRefused(t, both, stderr, code, "the bundle 6.0 MiB", "the cache 6.0 MiB")
		// The cache holds what resolving fetched (the manifest, the
		// config), never the layer.
		nothingIn(t, both, "cache")
		if _, err := os.Stat(filepath.Join(both, "cache", "blobs", "sha256", m.Layers[0].Digest.Hex)); err == nil {
			t.Error("the layer is in the cache")
		}
	})

	// What fits is written: the output alone on a 10 MiB disk.
	out := filepath.Join(tmpfs("fits", "10m"), "images.tar")
	t.Run("fits", func(t *testing.T) {
		mustBundle(t, "create", "-q", "-f", yaml, "-o", out, "--cache", filepath.Join(dir, "cache-ok"))
		mustBundle(t, "verify", "-q", "-i", out)
	})

	t.Run("load --to oci:", func(t *testing.T) {
		small := tmpfs("oci", "4m")
		layout := filepath.Join(small, "layout")
		proxy.ResetCounts()
		_, stderr, code := bundleCLI(t, "load", "-q", "-i", out, "--to", "oci:"+layout)
		expectRefused(t, layout, stderr, code, "the OCI layout 6.0 MiB")
		nothingIn(t, small)
		// A layout with room loads.
		mustBundle(t, "load", "-q", "-i", out, "--to", "oci:"+filepath.Join(dir, "layout"))
	})
}
