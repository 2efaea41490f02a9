package load

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Two bundles into one directory keep both; a reference in both is
// replaced by the later load; what another tool put in index.json stays.
func TestLayoutMerge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	foreign := `{"schemaVersion":2,"annotations":{"x":"y"},"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1,"annotations":{"org.opencontainers.image.ref.name":"other"}}]}`
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(tarball.OCILayoutContent), 0o644); err != nil {
		t.Fatal(err)
	}
	one, _ := standardImages(t, "example.com/one")
	two, _ := standardImages(t, "example.com/two")
	// The later bundle has another image under one of the first's names.
	two = append(two, testImage{ref: "example.com/one/app-a:1", image: newImage(t, "linux/amd64", false, []int64{1 << 10})})
	tmp := t.TempDir()
	fx1, fx2 := writeBundle(t, tmp, one), writeBundle(t, tmp, two)
	tg, err := NewLayout(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range []*fixture{fx1, fx2} {
		b, sel := openFixture(t, fx, Selection{})
		if _, err := tg.Load(context.Background(), b, sel, nil); err != nil {
			t.Fatal(err)
		}
	}

	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Annotations map[string]string `json:"annotations"`
		Manifests   []v1.Descriptor   `json:"manifests"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations["x"] != "y" {
		t.Errorf("index.json lost its annotations: %s", data)
	}
	byRef := map[string]v1.Hash{}
	for _, d := range got.Manifests {
		r := d.Annotations[tarball.AnnotationRefName]
		if _, dup := byRef[r]; dup {
			t.Errorf("index.json names %s twice", r)
		}
		byRef[r] = d.Digest
	}
	want := map[string]v1.Hash{"other": {Algorithm: "sha256", Hex: strings.Repeat("0", 64)}}
	for _, im := range fx1.index.Images {
		want[im.Ref] = im.Digest
	}
	for _, im := range fx2.index.Images {
		want[im.Ref] = im.Digest // replaces the first bundle's app-a
	}
	if len(byRef) != len(want) {
		t.Errorf("index.json has %d references, want %d", len(byRef), len(want))
	}
	for r, d := range want {
		if byRef[r] != d {
			t.Errorf("index.json names %s with %s, want %s", r, byRef[r], d)
		}
	}

	// go-containerregistry reads the layout back; every blob hashes to its
	// digest.
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkImage := func(ref string, img v1.Image) {
		t.Helper()
		if _, err := img.ConfigFile(); err != nil {
			t.Errorf("%s: config: %v", ref, err)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		for _, l := range ls {
			want, _ := l.Digest()
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			got, _, err := v1.SHA256(rc)
			rc.Close()
			if err != nil || got != want {
				t.Errorf("%s: layer %s hashes to %s (%v)", ref, want, got, err)
			}
		}
	}
	for _, fx := range []*fixture{fx1, fx2} {
		for _, im := range fx.index.Images {
			if byRef[im.Ref] != im.Digest {
				continue // replaced by the later bundle
			}
			if im.MediaType.IsIndex() {
				root, err := lp.ImageIndex()
				if err != nil {
					t.Fatal(err)
				}
				ii, err := root.ImageIndex(im.Digest)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := ii.Digest(); got != im.Digest {
					t.Errorf("%s: index digest %s, want %s", im.Ref, got, im.Digest)
				}
				for _, m := range im.Manifests {
					img, err := ii.Image(m.Digest)
					if err != nil {
						t.Fatal(err)
					}
					checkImage(im.Ref, img)
				}
				continue
			}
			img, err := lp.Image(im.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := img.Digest(); got != im.Digest {
				t.Errorf("%s: digest %s, want %s", im.Ref, got, im.Digest)
			}
			checkImage(im.Ref, img)
		}
	}
	// No temp file is left.
	ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// A damaged blob already in the layout is replaced, not trusted for its
// name and size.
func TestLayoutRepairsDamagedBlob(t *testing.T) {
	images, _ := standardImages(t, "example.com/repair")
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, sel := openFixture(t, fx, Selection{})
	tg, _ := NewLayout(t.TempDir(), Options{})
	if _, err := tg.Load(context.Background(), b, sel, nil); err != nil {
		t.Fatal(err)
	}
	h := firstLayer(fx)
	p := tg.blobPath(h)
	testenv.FlipMiddleByte(t, p)
	res, err := tg.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := blobIntact(tg, h); !ok || res.BlobsSent != 1 {
		t.Errorf("damaged blob not replaced: intact %v, %+v", ok, res.Stats)
	}
}

// A second load into a directory being loaded fails at once.
func TestLayoutLocked(t *testing.T) {
	images, _ := standardImages(t, "example.com/lock")
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, sel := openFixture(t, fx, Selection{})
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	unlock, err := lockDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	tg, _ := NewLayout(dir, Options{})
	if _, err := tg.Load(context.Background(), b, sel, nil); err == nil || !strings.Contains(err.Error(), "another bundle load") {
		t.Errorf("Load into a locked layout: %v", err)
	}
}

// A load killed in the middle leaves temp files and unreferenced blobs but
// no index.json entry; the next load removes the temp files and finishes.
func TestLayoutAfterKill(t *testing.T) {
	images, _ := standardImages(t, "example.com/kill")
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{})
	dir := t.TempDir()
	tg, _ := NewLayout(dir, Options{})
	// What a killed load leaves: some blobs, a partial temp file.
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	h := firstLayer(fx)
	os.WriteFile(tg.blobPath(h), fx.blobs[h], 0o644)
	tmp := filepath.Join(dir, "blobs", "sha256", ".tmp-"+h.Hex[:16]+"-123")
	os.WriteFile(tmp, fx.blobs[h][:10], 0o644)

	res, err := tg.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count(StatusLoaded) != len(sel) || res.BlobsPresent != 1 {
		t.Errorf("after a kill: %d loaded, %d blobs present; want %d and 1", res.Count(StatusLoaded), res.BlobsPresent, len(sel))
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("stale temp file kept: %v", err)
	}
}

// Holds names the images a load would skip; a layer marked shallow (the
// verify pass did not decompress it because of that) is refused if a load
// needs it after all.
func TestHoldsAndUnchecked(t *testing.T) {
	images, _ := standardImages(t, "example.com/holds")
	fx := writeBundle(t, t.TempDir(), images[:1])
	b, sel := openFixture(t, fx, Selection{})
	tg, _ := NewLayout(t.TempDir(), Options{})
	if holds, err := tg.Holds(context.Background(), b, sel); err != nil || len(holds) != 1 || holds[0] {
		t.Fatalf("empty layout: Holds = %v, %v; want [false]", holds, err)
	}
	if _, err := tg.Load(context.Background(), b, sel, nil); err != nil {
		t.Fatal(err)
	}
	if holds, err := tg.Holds(context.Background(), b, sel); err != nil || len(holds) != 1 || !holds[0] {
		t.Fatalf("after a load: Holds = %v, %v; want [true]", holds, err)
	}

	// The layout loses the layer after the verify pass read past it.
	h := firstLayer(fx)
	if err := os.Remove(tg.blobPath(h)); err != nil {
		t.Fatal(err)
	}
	b.SetShallow(map[v1.Hash]bool{h: true})
	_, err := tg.Load(context.Background(), b, sel, nil)
	var ue *ShallowError
	if !errors.As(err, &ue) || ue.Digest != h {
		t.Fatalf("load needing a shallow layer: %v, want a ShallowError for %s", err, h)
	}
	if _, err := os.Stat(tg.blobPath(h)); err == nil {
		t.Errorf("the shallow layer was written")
	}
}

// blobIntact says whether blob h is intact in the layout, at the size
// the file has.
func blobIntact(l *Layout, h v1.Hash) (bool, error) {
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		return false, err
	}
	defer root.Close()
	fi, err := root.Lstat(blobName(h))
	if err != nil {
		return false, err
	}
	return intact(root, blobName(h), h, fi.Size())
}

// layoutIndexOf reads the layout's index.json.
func layoutIndexOf(l *Layout) (*layoutIndex, error) {
	root, err := l.openRoot()
	if err != nil {
		return nil, err
	}
	if root != nil {
		defer root.Close()
	}
	return l.readIndex(root)
}
