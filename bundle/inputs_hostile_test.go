package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// --have and --base inputs that are FIFOs or links to /dev/zero are
// refused at once, with the path and what it is.
func TestDeltaInputsNotRegular(t *testing.T) {
	for kind, plant := range testenv.NotRegular() {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "input")
			plant(t, p)
			for _, opts := range []DeltaOptions{{Have: []string{p}}, {Base: []string{p}}} {
				err := testenv.Within(t, "loadHave", func() error { _, err := loadHave(opts); return err })
				if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("%+v: %v; want %s refused as not a regular file", opts, err, p)
				}
			}
		})
	}
}

// A link or a FIFO planted as an output's lock file is refused: the lock
// never opens, creates or locks what a link points to.
func TestLockFilePlanted(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	out := filepath.Join(dir, "images.tar")
	lock := filepath.Join(dir, ".images.tar.lock")
	testenv.PlantLink(t, target, lock)
	if f, err := lockOutput(out); err == nil {
		f.Release()
		t.Errorf("a lock file that is a link was followed")
	} else if !strings.Contains(err.Error(), lock) {
		t.Errorf("lockOutput: %v; want the lock file named", err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("the link's target was created: %v", err)
	}

	testenv.PlantFIFO(t, lock) // in the link's place
	err := testenv.Within(t, "lockOutput", func() error {
		f, err := lockOutput(out)
		if err == nil {
			f.Release()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("lockOutput over a FIFO: %v; want it refused", err)
	}
}

// bundle inventory --from oci:DIR lists the layout's own blobs: a
// blobs/sha256 that links out of the layout is refused, not listed.
func TestLayoutInventoryLinkOut(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	hex := strings.Repeat("a", 64)
	if err := os.WriteFile(filepath.Join(outside, hex), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.PlantLink(t, outside, filepath.Join(dir, "blobs", "sha256"))
	inv := &Inventory{Blobs: map[v1.Hash]int64{}}
	err := layoutInventory(dir, inv)
	if err == nil || !strings.Contains(err.Error(), "leads out of") {
		t.Errorf("layoutInventory: %v, %d blobs; want the link out refused", err, len(inv.Blobs))
	}
}
