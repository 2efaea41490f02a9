package fetch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Files planted in the cache directory (links to /dev/zero or out of the
// cache, FIFOs) are never followed, waited on or read: a complete blob
// that is not a regular file is not in the cache, a planted partial or
// sidecar is dropped and the download starts again, and the sidecar's
// temp file is never written through a link.
func TestCachePlantedFiles(t *testing.T) {
	data := bytes.Repeat([]byte("blob "), 1000)
	h, _, _ := v1.SHA256(bytes.NewReader(data))
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := testenv.PlantFIFO
	link := func(target string) func(t testing.TB, p string) {
		return func(t testing.TB, p string) { testenv.PlantLink(t, target, p) }
	}
	for _, tc := range []struct {
		name  string
		where func(c *Cache) string
		plant func(t testing.TB, p string)
	}{
		{"blob links to /dev/zero", func(c *Cache) string { return c.Path(h) }, link("/dev/zero")},
		{"blob is a FIFO", func(c *Cache) string { return c.Path(h) }, fifo},
		{"partial links to /dev/zero", func(c *Cache) string { return c.partialPath(h) }, link("/dev/zero")},
		{"partial is a FIFO", func(c *Cache) string { return c.partialPath(h) }, fifo},
		{"partial links out of the cache", func(c *Cache) string { return c.partialPath(h) }, link(outside)},
		{"sidecar links to /dev/zero", func(c *Cache) string { return c.segmentsPath(h) }, link("/dev/zero")},
		{"sidecar is a FIFO", func(c *Cache) string { return c.segmentsPath(h) }, fifo},
		{"sidecar temp links out of the cache", func(c *Cache) string { return c.segmentsPath(h) + ".tmp" }, link(outside)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := OpenCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tc.plant(t, tc.where(c))
			if err := testenv.Within(t, "the cache", func() error { return storeAndRead(c, h, data) }); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
				t.Errorf("a file out of the cache was written: %q %v", b, err)
			}
		})
	}
}

// storeAndRead checks that h is not taken as cached, downloads it through
// an ingest (with a sidecar, as a segmented download has), and reads it
// back.
func storeAndRead(c *Cache, h v1.Hash, data []byte) error {
	if c.Has(h, int64(len(data))) {
		return errorf("Has: a planted file is taken for blob %s", h)
	}
	if f, err := c.Open(h); err == nil {
		f.Close()
		return errorf("Open: a planted file opened as blob %s", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ing, done, err := c.openIngest(ctx, h)
	if err != nil || done {
		return errorf("openIngest: %v, done %v", err, done)
	}
	if err := ing.saveSegments([]span{{0, 1}}); err != nil {
		ing.close()
		return errorf("saveSegments: %v", err)
	}
	if err := ing.reset(); err != nil {
		ing.close()
		return errorf("reset: %v", err)
	}
	if _, err := ing.Write(data); err != nil {
		ing.close()
		return errorf("writing: %v", err)
	}
	if err := c.finish(ing, h, int64(len(data))); err != nil {
		return errorf("finish: %v", err)
	}
	f, err := c.Open(h)
	if err != nil {
		return errorf("Open after the download: %v", err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		return errorf("reading blob %s back: %d bytes, %v", h, len(got), err)
	}
	return nil
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
