package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// A read is checked after it is made, against the volumes it came from:
// the read after a write in place fails, the one before did not, and the
// bundle stays refused (even if the file is made as it was).
func TestReadAtChecksAfterEachRead(t *testing.T) {
	img, err := bundletest.RandomImage(1<<20, 1, "linux/amd64", 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundletest.New(bundletest.Ref{Name: "docker.io/library/app:1", Image: img})
	if err != nil {
		t.Fatal(err)
	}
	data, offsets := b.Bytes()
	dir := t.TempDir()
	// Split in two volumes, the layer across them.
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	off := offsets[tarball.BlobPath(layer)]
	cut := off + 1000
	for i, part := range [][]byte{data[:cut], data[cut:]} {
		if err := os.WriteFile(filepath.Join(dir, tarball.VolumeName("images.tar", i+1)), part, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(context.Background(), Options{Inputs: []string{filepath.Join(dir, "images.tar.001")}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	at := r.blobs[layer]
	buf := make([]byte, 4096)
	if err := at.src.readAt(buf, at.off); err != nil {
		t.Fatalf("a read across the volumes before any change: %v", err)
	}
	// Volume 2 rewritten in place: the same size, a new mtime.
	v2 := filepath.Join(dir, "images.tar.002")
	f, err := os.OpenFile(v2, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(v2, later, later); err != nil {
		t.Fatal(err)
	}
	// A read of volume 1 alone is still good (its file did not change) …
	if err := at.src.readAt(buf[:100], at.off); err != nil {
		t.Errorf("a read of the unchanged volume 1: %v", err)
	}
	// … one that reaches volume 2 is not.
	var ch *ChangedError
	if err := at.src.readAt(buf, at.off); !errors.As(err, &ch) || ch.File != v2 {
		t.Fatalf("a read across the changed volume: %v", err)
	}
	// Sticky: every later read of that bundle fails.
	if err := at.src.readAt(buf[:100], at.off); !errors.As(err, &ch) {
		t.Errorf("a read after the change was seen: %v", err)
	}
}
