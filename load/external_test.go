package load

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// writeDelta rewrites fx as a delta bundle: the layers have(h) says the
// target holds move from blobs to external, and are not written.
func writeDelta(t *testing.T, fx *fixture, have func(v1.Hash) bool) *fixture {
	t.Helper()
	idx := *fx.index
	idx.Blobs = map[v1.Hash]tarball.Blob{}
	idx.External = map[v1.Hash]tarball.Blob{}
	layers := map[v1.Hash]bool{}
	for _, im := range idx.Images {
		for _, m := range im.Manifests {
			for _, l := range m.Layers {
				layers[l] = true
			}
		}
	}
	for h, b := range fx.index.Blobs {
		if layers[h] && have(h) {
			idx.External[h] = b
		} else {
			idx.Blobs[h] = b
		}
	}
	l, err := tarball.NewPlan(&idx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := &fixture{path: filepath.Join(filepath.Dir(fx.path), "delta-"+filepath.Base(fx.path)), index: &idx, blobs: fx.blobs}
	f, err := os.Create(out.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tarball.Write(context.Background(), f, l, mapSource(fx.blobs), tarball.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every target that takes a delta bundle checks that it holds the external
// blobs before it writes anything; a repository that lacks one gets it
// mounted from another repository of the load.
func TestDeltaConformance(t *testing.T) {
	for _, tc := range targetCases() {
		if tc.name == "daemon" {
			continue // refused: TestDeltaToDaemon
		}
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			prefix := "example.com/" + testenv.Unique("delta")
			images, shared := standardImages(t, prefix)
			dir := t.TempDir()
			full := writeBundle(t, dir, images)
			// The next bundle: the same images and a new one, in a new
			// repository, on the shared base layer.
			next := append(images, testImage{ref: prefix + "/app-new:1", image: newImage(t, "linux/amd64", false, []int64{4 << 10}, sharedLayer(t, images[0]))})
			nextFx := writeBundle(t, t.TempDir(), next)
			delta := writeDelta(t, nextFx, func(h v1.Hash) bool { _, ok := full.index.Blobs[h]; return ok })
			if _, ok := delta.index.External[shared]; !ok {
				t.Fatal("the shared layer is not external in the delta")
			}

			// Into an empty target: refused, nothing written.
			tg := tc.fresh(t)
			db, dsel := openFixture(t, delta, Selection{})
			err := CheckExternal(ctx, tg, db, dsel)
			var me *MissingExternalError
			if !errors.As(err, &me) || len(me.Blobs) == 0 {
				t.Fatalf("CheckExternal on an empty target: %v", err)
			}
			if _, err := tg.Load(ctx, db, dsel, nil); !errors.As(err, &me) {
				t.Fatalf("Load of a delta into an empty target: %v, want a *MissingExternalError", err)
			}
			for _, im := range dsel {
				if got := tc.names(t, tg, im); got != "" {
					t.Errorf("%s is named %s after a refused load", im.Ref, got)
				}
			}
			if l, ok := tg.(*Layout); ok {
				if _, err := os.Stat(l.blobPath(dsel[0].Manifests[0].Config)); err == nil {
					t.Error("the layout received a blob of a refused delta")
				}
			}

			// After the full bundle: the delta loads, and names what the
			// full bundle of the next set would.
			fb, fsel := openFixture(t, full, Selection{})
			if _, err := tg.Load(ctx, fb, fsel, nil); err != nil {
				t.Fatal(err)
			}
			if err := CheckExternal(ctx, tg, db, dsel); err != nil {
				t.Fatalf("CheckExternal after the full bundle: %v", err)
			}
			res, err := tg.Load(ctx, db, dsel, nil)
			if err != nil {
				t.Fatalf("Load of the delta: %v", err)
			}
			if n := res.Count(StatusLoaded); n != 1 {
				t.Errorf("%d loaded, want 1 (the new image): %s", n, mustJSON(t, res.Images))
			}
			for _, im := range dsel {
				if got, want := tc.names(t, tg, im), tc.want(im); got != want {
					t.Errorf("%s: the target names %q, want %s", im.Ref, got, want)
				}
			}
			// (The in-memory registry keeps blobs for all repositories.)
			if tc.name == "registry/distribution" && res.BlobsMounted == 0 {
				t.Errorf("the shared layer was not mounted into the new repository: %+v", res.Stats)
			}
		})
	}
}

// sharedLayer returns the first layer of a test image (the shared one).
func sharedLayer(t *testing.T, ti testImage) v1.Layer {
	t.Helper()
	ls, err := ti.image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls[0]
}

// A docker daemon is refused a delta whose images need external layers,
// without being asked anything; images that need none load.
func TestDeltaToDaemon(t *testing.T) {
	images, shared := standardImages(t, "example.com/"+testenv.Unique("d"))
	fx := writeBundle(t, t.TempDir(), images)
	delta := writeDelta(t, fx, func(h v1.Hash) bool { return h == shared })
	b, sel := openFixture(t, delta, Selection{})
	tg, err := NewDaemon(Options{DockerHost: "unix:///nonexistent/docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	err = CheckExternal(context.Background(), tg, b, sel)
	var de *DeltaToDaemonError
	if !errors.As(err, &de) || de.Blobs != 1 || len(de.Images) != 2 {
		t.Fatalf("CheckExternal: %v; want a refusal for the 2 images on the shared layer", err)
	}
	oci, _, err := Select(b, Selection{Images: []string{images[2].ref}})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckExternal(context.Background(), tg, b, oci); err != nil {
		t.Errorf("an image carried whole: %v", err)
	}
}
