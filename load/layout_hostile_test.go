package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
)

// A layout's files can be planted by whoever else writes the directory:
// links to /dev/zero, to a secret, out of the layout, FIFOs. Load and
// Check open each through the layout's os.Root, only regular files, with
// bounded reads; a link or FIFO in a blob's place is replaced.
func TestLayoutPlantedTargets(t *testing.T) {
	images, _ := standardImages(t, "example.com/planted")
	fx := writeBundle(t, t.TempDir(), images[:1])
	h := firstLayer(fx)
	const secret = "s3cr3t-password-content"
	outside := t.TempDir()
	secretFile := filepath.Join(outside, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}

	type tc struct {
		name  string
		plant func(t *testing.T, dir string) // dir exists, with blobs/sha256 unless the plant removes it
		fails string                         // what the error says; "" when the load succeeds
		check func(t *testing.T, dir string) // after a load that succeeded
	}
	blobIsRegular := func(t *testing.T, dir string) {
		fi, err := os.Lstat(filepath.Join(dir, "blobs", "sha256", h.Hex))
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("blob %s is not a regular file after the load: %v %v", h, fi, err)
		}
	}
	symlink := func(target, name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { testenv.PlantLink(t, target, filepath.Join(dir, name)) }
	}
	fifo := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { testenv.PlantFIFO(t, filepath.Join(dir, name)) }
	}
	cases := []tc{
		{name: "index.json links to /dev/zero", plant: symlink("/dev/zero", "index.json"), fails: "index.json"},
		{name: "index.json is a FIFO", plant: fifo("index.json"), fails: "index.json"},
		{name: "index.json is larger than any index", plant: func(t *testing.T, dir string) {
			f, err := os.Create(filepath.Join(dir, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(64<<20 + 1); err != nil { // sparse
				t.Fatal(err)
			}
		}, fails: "index.json is larger than"},
		{name: "oci-layout links to /dev/zero", plant: symlink("/dev/zero", "oci-layout"), fails: "oci-layout"},
		{name: "oci-layout links to a secret out of the layout", plant: symlink(secretFile, "oci-layout"), fails: "oci-layout"},
		{name: "oci-layout links to a secret in the layout", plant: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "notes"), []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			symlink("notes", "oci-layout")(t, dir)
		}, fails: "not an OCI image layout"},
		{name: "blob path links to /dev/zero", plant: symlink("/dev/zero", "blobs/sha256/"+h.Hex), check: blobIsRegular},
		{name: "blob path is a FIFO", plant: fifo("blobs/sha256/" + h.Hex), check: blobIsRegular},
		{name: "blob path links to a file out of the layout", plant: func(t *testing.T, dir string) {
			// The right content, but not in the layout: not trusted, and
			// not written through.
			p := filepath.Join(outside, "blob")
			if err := os.WriteFile(p, fx.blobs[h], 0o644); err != nil {
				t.Fatal(err)
			}
			symlink(p, "blobs/sha256/"+h.Hex)(t, dir)
		}, check: blobIsRegular},
		{name: "blobs/sha256 links out of the layout", plant: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "blobs", "sha256")); err != nil {
				t.Fatal(err)
			}
			symlink(outside, "blobs/sha256")(t, dir)
		}, fails: "leads out of"},
		{name: "blobs links out of the layout", plant: func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "blobs")); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(outside, "sha256"), 0o755); err != nil {
				t.Fatal(err)
			}
			symlink(outside, "blobs")(t, dir)
		}, fails: "leads out of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "oci")
			if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
				t.Fatal(err)
			}
			c.plant(t, dir)
			before := listDir(t, outside)
			b, sel := openFixture(t, fx, Selection{})
			tg, err := NewLayout(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkErr := testenv.Within(t, "Check", func() error { _, err := tg.Check(context.Background(), b, sel); return err })
			loadErr := testenv.Within(t, "Load", func() error { _, err := tg.Load(context.Background(), b, sel, nil); return err })
			for _, err := range []error{checkErr, loadErr} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("an error quotes the content of a planted file: %v", err)
				}
			}
			if got := listDir(t, outside); got != before {
				t.Errorf("the load wrote outside the layout: %s, was %s", got, before)
			}
			if data, err := os.ReadFile(secretFile); err != nil || string(data) != secret {
				t.Errorf("the secret out of the layout changed: %q %v", data, err)
			}
			if c.fails != "" {
				if loadErr == nil || !strings.Contains(loadErr.Error(), c.fails) {
					t.Fatalf("Load: %v; want an error saying %q", loadErr, c.fails)
				}
				t.Logf("Load: %v", loadErr)
				return
			}
			if loadErr != nil {
				t.Fatalf("Load: %v", loadErr)
			}
			c.check(t, dir)
			data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", h.Hex))
			if err != nil || sha256Hex(data) != h.Hex {
				t.Errorf("blob %s not intact after the load: %v", h, err)
			}
		})
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// listDir names the files under dir with their sizes, sorted.
func listDir(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s:%s:%d", p, fi.Mode(), fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, ",")
}
