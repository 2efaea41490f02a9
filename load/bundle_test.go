package load

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
)

func TestOpenFindsEveryBlob(t *testing.T) {
	images, _ := standardImages(t, "example.com/open")
	fx := writeBundle(t, t.TempDir(), images)
	b, err := Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(b.Index.Images) != len(images) || len(b.DockerManifest) == 0 {
		t.Fatalf("Open: %d images, %d manifest.json entries", len(b.Index.Images), len(b.DockerManifest))
	}
	for h, data := range fx.blobs {
		got, err := b.ReadBlob(h, 1<<20)
		if err != nil || string(got) != string(data) {
			t.Errorf("blob %s: %d bytes, %v; want %d bytes", h, len(got), err, len(data))
		}
	}
}

func TestOpenCompressedAndNotBundles(t *testing.T) {
	images, _ := standardImages(t, "example.com/gz")
	fx := writeBundle(t, t.TempDir(), images[:1])
	gzPath := fx.path + ".gz"
	src, _ := os.Open(fx.path)
	dst, _ := os.Create(gzPath)
	zw := gzip.NewWriter(dst)
	io.Copy(zw, src)
	zw.Close()
	dst.Close()
	src.Close()
	if _, err := Open(gzPath); !errors.Is(err, ErrCompressed) {
		t.Errorf("Open of a gzip bundle: %v, want ErrCompressed", err)
	}
	text := filepath.Join(t.TempDir(), "text")
	os.WriteFile(text, []byte("hello, this is not a tar file at all\n"), 0o644)
	if _, err := Open(text); err == nil {
		t.Errorf("Open of a text file succeeded")
	}
}

// A blob read for loading that is not what it was is an error before EOF.
func TestOpenBlobChecksDigest(t *testing.T) {
	images, _ := standardImages(t, "example.com/changed")
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, _ := openFixture(t, fx, Selection{})
	h := firstLayer(fx)
	flipByteOf(t, fx.path, b, h)
	rc, _ := b.OpenBlob(h)
	_, err := io.Copy(io.Discard, rc)
	var ce *ChangedError
	if !errors.As(err, &ce) || ce.Want != h.String() {
		t.Errorf("reading a changed blob: %v, want a ChangedError for %s", err, h)
	}
}

// Watch says whether the verify pass read the bundle.json that Open read.
func TestWatch(t *testing.T) {
	images, _ := standardImages(t, "example.com/watch")
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, _ := openFixture(t, fx, Selection{})
	read := func() error {
		f, _ := os.Open(fx.path)
		defer f.Close()
		w := b.Watch(f)
		io.Copy(io.Discard, w)
		return w.Unchanged()
	}
	if err := read(); err != nil {
		t.Fatalf("unchanged file: %v", err)
	}
	// Change one byte of bundle.json (inside the "creator" value).
	data, _ := os.ReadFile(fx.path)
	i := strings.Index(string(data), "load test")
	data[i] = 'L'
	os.WriteFile(fx.path, data, 0o644)
	var ce *ChangedError
	if err := read(); !errors.As(err, &ce) || ce.Entry != tarball.IndexFile {
		t.Errorf("changed bundle.json: %v, want a ChangedError for bundle.json", err)
	}
}

func TestSelect(t *testing.T) {
	images, _ := standardImages(t, "example.com/sel")
	fx := writeBundle(t, t.TempDir(), images)
	b, err := Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	all, notes, err := Select(b, Selection{})
	if err != nil || len(all) != len(images) || len(notes) != 0 {
		t.Fatalf("Select all: %d images, %v, %v", len(all), notes, err)
	}
	for _, im := range all {
		if !im.Complete {
			t.Errorf("%s: not complete", im.Ref)
		}
		if im.Ref == "example.com/sel/multi:1" && (im.IndexManifests != 2 || im.Primary.Platform != "linux/amd64") {
			t.Errorf("multi: %d index manifests, primary %s", im.IndexManifests, im.Primary.Platform)
		}
	}

	some, _, err := Select(b, Selection{Images: []string{"example.com/sel/oci:1", "example.com/sel/multi:1"}})
	if err != nil || len(some) != 2 {
		t.Fatalf("Select two: %d, %v", len(some), err)
	}

	_, _, err = Select(b, Selection{Images: []string{"example.com/sel/nope:1"}})
	var nb *NotInBundleError
	if !errors.As(err, &nb) || !slices.Equal(nb.Refs, []string{"example.com/sel/nope:1"}) {
		t.Errorf("Select of a missing image: %v", err)
	}

	arm, notes, err := Select(b, Selection{Platforms: []string{"linux/arm64"}})
	if err != nil || len(arm) != 1 {
		t.Fatalf("Select linux/arm64: %d images, %v", len(arm), err)
	}
	if arm[0].Complete || arm[0].Primary.Platform != "linux/arm64/v8" || len(notes) != len(images)-1 {
		t.Errorf("Select linux/arm64: complete %v, primary %s, %d notes", arm[0].Complete, arm[0].Primary.Platform, len(notes))
	}
}

// Open checks headers as tarball.Reader does (it is tarball.OpenReaderAt):
// the hostile fixtures fail with the Reader's typed error, one that
// IsCorrupt, where Open's own scan ignored some (a second manifest.json,
// a name outside the layout) and gave untyped errors for others.
func TestOpenRefusesWhatReaderRefuses(t *testing.T) {
	for _, name := range []string{"absolute.tar", "device.tar", "dotdot.tar", "dotdot-in-blobs.tar", "duplicate-blob.tar",
		"duplicate-bundle-json.tar", "duplicate-manifest-json.tar", "hardlink.tar", "oversized-bundle-json.tar",
		"oversized-manifest-json.tar", "symlink-dir.tar", "symlink.tar"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("..", "testdata", "hostile", name)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r := tarball.NewReader(bytes.NewReader(data))
			var want error
			if _, want = r.Index(); want == nil {
				for want == nil {
					_, want = r.Next()
				}
			}
			if want == io.EOF {
				t.Fatalf("the Reader finds no fault in %s", name)
			}
			b, err := Open(path)
			if err == nil {
				b.Close()
			}
			if err == nil || err.Error() != want.Error() || !tarball.IsCorrupt(err) {
				t.Errorf("Open: %v\nthe Reader: %v", err, want)
			}
		})
	}
}
