package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testImage is one reference of a test bundle: an image, or an index of
// which only the manifests in keep (all when nil) are carried.
type testImage struct {
	ref   string
	image v1.Image
	index v1.ImageIndex
	keep  []int
}

// fixture is a test bundle: the file, and what it holds.
type fixture struct {
	path  string
	index *tarball.Index
	blobs map[v1.Hash][]byte
}

// newImage builds a small image for platform p (os/arch[/variant]) with
// random layers of n bytes, after the layers given.
func newImage(t testing.TB, p string, oci bool, sizes []int64, extra ...v1.Layer) v1.Image {
	t.Helper()
	plat, err := v1.ParsePlatform(p)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: plat.Architecture, OS: plat.OS, Variant: plat.Variant,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Env: []string{"PATH=/bin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mt := types.DockerLayer
	if oci {
		mt = types.OCILayer
	}
	layers := append([]v1.Layer(nil), extra...)
	for _, n := range sizes {
		l, err := random.Layer(n, mt)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	if oci {
		img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	return img
}

func newIndex(t testing.TB, plats ...string) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, p := range plats {
		plat, _ := v1.ParsePlatform(p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        newImage(t, p, false, []int64{4 << 10}),
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return idx
}

// standardImages is the set most tests load: two images sharing a layer,
// an OCI image, a complete two-platform index and a digest reference.
func standardImages(t testing.TB, repoPrefix string) ([]testImage, v1.Hash) {
	t.Helper()
	shared, err := random.Layer(8<<10, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := shared.Digest()
	pinned := newImage(t, "linux/amd64", false, []int64{2 << 10})
	pd, _ := pinned.Digest()
	return []testImage{
		{ref: repoPrefix + "/app-a:1", image: newImage(t, "linux/amd64", false, []int64{3 << 10}, shared)},
		{ref: repoPrefix + "/app-b:1", image: newImage(t, "linux/amd64", false, []int64{3 << 10}, shared)},
		{ref: repoPrefix + "/oci:1", image: newImage(t, "linux/amd64", true, []int64{5 << 10})},
		{ref: repoPrefix + "/multi:1", index: newIndex(t, "linux/amd64", "linux/arm64/v8")},
		{ref: repoPrefix + "/pinned@" + pd.String(), image: pinned},
	}, sh
}

// writeBundle writes a bundle of images with the real writer.
func writeBundle(t testing.TB, dir string, images []testImage) *fixture {
	t.Helper()
	fx := &fixture{blobs: map[v1.Hash][]byte{}}
	idx := &tarball.Index{SchemaVersion: tarball.SchemaVersion, Creator: "load test", Blobs: map[v1.Hash]tarball.Blob{}}
	put := func(data []byte, mt types.MediaType, diffID *v1.Hash) v1.Hash {
		h, _, _ := v1.SHA256(bytes.NewReader(data))
		fx.blobs[h] = data
		idx.Blobs[h] = tarball.Blob{Size: int64(len(data)), MediaType: mt, DiffID: diffID}
		return h
	}
	addImage := func(img v1.Image, plat string) tarball.PlatformManifest {
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		mt, _ := img.MediaType()
		m, _ := img.Manifest()
		cfg, _ := img.RawConfigFile()
		cf, _ := img.ConfigFile()
		if plat == "" {
			plat = cf.OS + "/" + cf.Architecture
			if cf.Variant != "" {
				plat += "/" + cf.Variant
			}
		}
		pm := tarball.PlatformManifest{Platform: plat, MediaType: mt, Size: int64(len(raw))}
		pm.Config = put(cfg, m.Config.MediaType, nil)
		ls, _ := img.Layers()
		for i, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			d := cf.RootFS.DiffIDs[i]
			pm.Layers = append(pm.Layers, put(data, m.Layers[i].MediaType, &d))
		}
		pm.Digest = put(raw, mt, nil)
		return pm
	}
	for _, ti := range images {
		ref, err := manifests.ParseReference(ti.ref)
		if err != nil {
			t.Fatal(err)
		}
		im := tarball.Image{Ref: manifests.FullName(ref)}
		if ti.image != nil {
			pm := addImage(ti.image, "")
			im.Digest, im.MediaType, im.Size = pm.Digest, pm.MediaType, pm.Size
			im.Manifests = []tarball.PlatformManifest{pm}
		} else {
			ixm, _ := ti.index.IndexManifest()
			for i, d := range ixm.Manifests {
				if ti.keep != nil && !contains(ti.keep, i) {
					continue
				}
				img, err := ti.index.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				im.Manifests = append(im.Manifests, addImage(img, d.Platform.String()))
			}
			raw, _ := ti.index.RawManifest()
			mt, _ := ti.index.MediaType()
			im.Digest, im.MediaType, im.Size = put(raw, mt, nil), mt, int64(len(raw))
		}
		idx.Images = append(idx.Images, im)
	}
	l, err := tarball.NewPlan(idx, "")
	if err != nil {
		t.Fatal(err)
	}
	fx.path = filepath.Join(dir, fmt.Sprintf("bundle-%d.tar", len(images)))
	for i := 0; ; i++ {
		if _, err := os.Stat(fx.path); os.IsNotExist(err) {
			break
		}
		fx.path = filepath.Join(dir, fmt.Sprintf("bundle-%d-%d.tar", len(images), i))
	}
	f, err := os.Create(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tarball.Write(context.Background(), f, l, mapSource(fx.blobs), tarball.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	fx.index = idx
	return fx
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

type mapSource map[v1.Hash][]byte

func (m mapSource) Open(_ context.Context, h v1.Hash) (io.ReadCloser, bool, error) {
	return io.NopCloser(bytes.NewReader(m[h])), false, nil
}

// openFixture opens the bundle and selects every image.
func openFixture(t testing.TB, fx *fixture, sel Selection) (*Bundle, []Chosen) {
	t.Helper()
	b, err := Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	images, _, err := Select(b, sel)
	if err != nil {
		t.Fatal(err)
	}
	return b, images
}

// flipByteOf flips a byte in the middle of blob h's content in the file.
func flipByteOf(t testing.TB, path string, b *Bundle, h v1.Hash) {
	t.Helper()
	e, ok := b.file.Blob(h)
	if !ok {
		t.Fatalf("no blob %s", h)
	}
	testenv.FlipByte(t, path, e.Offset+e.Size/2)
}

// firstLayer is the first layer of the first image of a fixture.
func firstLayer(fx *fixture) v1.Hash { return fx.index.Images[0].Manifests[0].Layers[0] }

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustParseRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := manifests.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
