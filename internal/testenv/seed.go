package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtarball "github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Names of the seeded images (SeededImage.Name). Each is pushed as
// <registry>/seed/<name>:1; Lookup and Find accept these names.
const (
	// ImageAppA, ImageAppB and ImageAppC are single-platform linux/amd64 images
	// with Docker media types; each has the shared base layer
	// (Seeded.SharedLayer) and a layer of its own.
	ImageAppA = "app-a"
	ImageAppB = "app-b"
	ImageAppC = "app-c"
	// ImageMulti is a Docker manifest list over linux/amd64 and
	// linux/arm64/v8 images (Docker media types).
	ImageMulti = "multi"
	// ImageOCI is a single-platform image with OCI media types (OCI manifest,
	// config and layer).
	ImageOCI = "oci"
	// ImageHello is a runnable image for the host's architecture (linux/amd64
	// on CI) whose entrypoint /hello prints HelloOutput. Docker media types.
	ImageHello = "hello"
	// ImagePinned is an image pushed by tag (seed/pinned:1) whose Ref is the
	// digest reference <registry>/seed/pinned@sha256:….
	ImagePinned = "pinned"
)

// SeedRepoPrefix is the first path element of every seeded repository.
const SeedRepoPrefix = "seed/"

// seedTime is the creation time written into every seeded config.
var seedTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Seeded is what Seed pushed to a registry.
type Seeded struct {
	// Host is the registry ("127.0.0.1:PORT").
	Host string
	// Images are the pushed images and indexes, in the order of the Image*
	// constants: app-a, app-b, app-c, multi, oci, hello, pinned.
	Images []SeededImage
	// SharedLayer is the digest of the base layer of app-a, app-b and app-c.
	SharedLayer v1.Hash
}

// SeededImage is one pushed image or index, as the registry serves it.
type SeededImage struct {
	// Name is the short name, one of the Image* constants.
	Name string
	// Ref is the reference as pushed, e.g. "127.0.0.1:5000/seed/app-a:1"; for
	// ImagePinned it is the digest reference
	// "127.0.0.1:5000/seed/pinned@sha256:…". For the Manifests of an index it
	// is the child's digest reference.
	Ref string
	// Digest, MediaType and Size are those of the manifest (or index) that the
	// registry serves for Ref.
	Digest    v1.Hash
	MediaType types.MediaType
	Size      int64
	// Platforms are "os/arch[/variant]": the image's own for an image, its
	// manifests' for an index (e.g. "linux/amd64", "linux/arm64/v8").
	Platforms []string
	// Layers are the layer digests of an image, in manifest order; nil for an
	// index.
	Layers []v1.Hash
	// Manifests are the children of an index, in index order; nil for an image.
	Manifests []SeededImage
}

// Repository returns the repository part of Ref ("127.0.0.1:5000/seed/app-a").
func (s SeededImage) Repository() string {
	ref, err := name.ParseReference(s.Ref)
	if err != nil {
		return ""
	}
	return ref.Context().Name()
}

// DigestRef returns repository@digest.
func (s SeededImage) DigestRef() string {
	return s.Repository() + "@" + s.Digest.String()
}

// Lookup returns the seeded image with this short name (ImageAppA, …) or this
// Ref.
func (s *Seeded) Lookup(nameOrRef string) (SeededImage, bool) {
	for _, img := range s.Images {
		if img.Name == nameOrRef || img.Ref == nameOrRef {
			return img, true
		}
	}
	return SeededImage{}, false
}

// Find is Lookup that fails the test when there is no such image.
func (s *Seeded) Find(t testing.TB, nameOrRef string) SeededImage {
	t.Helper()
	img, ok := s.Lookup(nameOrRef)
	if !ok {
		t.Fatalf("testenv: no seeded image %q", nameOrRef)
	}
	return img
}

// Refs returns the Ref of every seeded image, in order.
func (s *Seeded) Refs() []string {
	refs := make([]string, len(s.Images))
	for i, img := range s.Images {
		refs[i] = img.Ref
	}
	return refs
}

// Seed builds the test images, pushes them to the registry at registryHost
// ("127.0.0.1:PORT") and returns what the registry serves. It fails the test on
// error. Seeding is deterministic: seeding again, here or in another registry,
// gives the same digests (for the same Go toolchain, which builds the hello
// binary).
func Seed(t testing.TB, registryHost string) *Seeded {
	t.Helper()
	start := time.Now()
	s, err := seed(t.Context(), registryHost)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("testenv: seeded %d images into %s in %v", len(s.Images), registryHost, time.Since(start).Round(time.Millisecond))
	return s
}

// SeedAt is Seed without a testing.TB, for TestMain and programs.
func SeedAt(registryHost string) (*Seeded, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return seed(ctx, registryHost)
}

// seedImage is one thing to push: an image or an index, and its tag.
type seedImage struct {
	name  string
	image v1.Image
	index v1.ImageIndex
}

func seed(ctx context.Context, host string) (*Seeded, error) {
	if _, err := name.NewRegistry(host); err != nil {
		return nil, fmt.Errorf("seeding: bad registry %q: %w", host, err)
	}
	items, err := buildSeedImages()
	if err != nil {
		return nil, fmt.Errorf("seeding %s: %w", host, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(authn.Anonymous)}
	s := &Seeded{Host: host}
	for _, item := range items {
		tag, err := name.NewTag(host + "/" + SeedRepoPrefix + item.name + ":1")
		if err != nil {
			return nil, fmt.Errorf("seeding %s: %w", item.name, err)
		}
		var local v1.Hash
		if item.index != nil {
			err = remote.WriteIndex(tag, item.index, opts...)
			if err == nil {
				local, err = item.index.Digest()
			}
		} else {
			err = remote.Write(tag, item.image, opts...)
			if err == nil {
				local, err = item.image.Digest()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("seeding: pushing %s: %w", tag, err)
		}
		got, err := readBack(tag, opts)
		if err != nil {
			return nil, fmt.Errorf("seeding: reading back %s: %w", tag, err)
		}
		if got.Digest != local {
			return nil, fmt.Errorf("seeding: registry serves %s for %s, pushed %s", got.Digest, tag, local)
		}
		got.Name = item.name
		got.Ref = tag.String()
		if item.name == ImagePinned {
			got.Ref = tag.Context().Digest(got.Digest.String()).String()
		}
		s.Images = append(s.Images, got)
	}

	// The three app images must share their first layer; the harness promises it.
	for _, n := range []string{ImageAppA, ImageAppB, ImageAppC} {
		img, _ := s.Lookup(n)
		if len(img.Layers) != 2 {
			return nil, fmt.Errorf("seeding: %s has %d layers, want 2", img.Ref, len(img.Layers))
		}
		if s.SharedLayer == (v1.Hash{}) {
			s.SharedLayer = img.Layers[0]
		} else if img.Layers[0] != s.SharedLayer {
			return nil, fmt.Errorf("seeding: %s has base layer %s, want the shared %s", img.Ref, img.Layers[0], s.SharedLayer)
		}
	}
	return s, nil
}

// readBack describes what the registry serves for ref.
func readBack(ref name.Reference, opts []remote.Option) (SeededImage, error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return SeededImage{}, err
	}
	si := SeededImage{Ref: ref.String(), Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return SeededImage{}, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return SeededImage{}, err
		}
		for _, m := range im.Manifests {
			child, err := readBack(ref.Context().Digest(m.Digest.String()), opts)
			if err != nil {
				return SeededImage{}, err
			}
			if m.Platform == nil || len(child.Platforms) != 1 || m.Platform.String() != child.Platforms[0] {
				return SeededImage{}, fmt.Errorf("index entry %s: platform %v, its config says %v", m.Digest, m.Platform, child.Platforms)
			}
			si.Manifests = append(si.Manifests, child)
			si.Platforms = append(si.Platforms, child.Platforms...)
		}
		return si, nil
	}
	img, err := desc.Image()
	if err != nil {
		return SeededImage{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return SeededImage{}, err
	}
	for _, l := range m.Layers {
		si.Layers = append(si.Layers, l.Digest)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return SeededImage{}, err
	}
	p := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	si.Platforms = []string{p.String()}
	return si, nil
}

// buildSeedImages builds everything Seed pushes, in push order.
func buildSeedImages() ([]seedImage, error) {
	var items []seedImage
	base, err := layer(types.DockerLayer, randomFile("seed/base.bin", 256<<10))
	if err != nil {
		return nil, err
	}
	for _, n := range []string{ImageAppA, ImageAppB, ImageAppC} {
		own, err := layer(types.DockerLayer, randomFile("seed/"+n+".bin", 64<<10))
		if err != nil {
			return nil, err
		}
		img, err := image(n, linuxAMD64(), nil, base, own)
		if err != nil {
			return nil, err
		}
		items = append(items, seedImage{name: n, image: img})
	}

	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, p := range []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
	} {
		l, err := layer(types.DockerLayer, randomFile("seed/multi-"+p.Architecture+".bin", 96<<10))
		if err != nil {
			return nil, err
		}
		img, err := image(ImageMulti+"-"+p.Architecture, p, nil, l)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}},
		})
	}
	items = append(items, seedImage{name: ImageMulti, index: idx})

	ociLayer, err := layer(types.OCILayer, randomFile("seed/oci.bin", 128<<10))
	if err != nil {
		return nil, err
	}
	ociImage, err := image(ImageOCI, linuxAMD64(), nil, ociLayer)
	if err != nil {
		return nil, err
	}
	ociImage = mutate.ConfigMediaType(mutate.MediaType(ociImage, types.OCIManifestSchema1), types.OCIConfigJSON)
	items = append(items, seedImage{name: ImageOCI, image: ociImage})

	bin, err := helloBinary()
	if err != nil {
		return nil, err
	}
	helloLayer, err := layer(types.DockerLayer, tarFile{name: "hello", mode: 0o755, data: bin})
	if err != nil {
		return nil, err
	}
	helloImage, err := image(ImageHello, v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		[]string{"/hello"}, helloLayer)
	if err != nil {
		return nil, err
	}
	items = append(items, seedImage{name: ImageHello, image: helloImage})

	pinnedLayer, err := layer(types.DockerLayer, randomFile("seed/pinned.bin", 64<<10))
	if err != nil {
		return nil, err
	}
	pinned, err := image(ImagePinned, linuxAMD64(), nil, pinnedLayer)
	if err != nil {
		return nil, err
	}
	items = append(items, seedImage{name: ImagePinned, image: pinned})
	return items, nil
}

func linuxAMD64() v1.Platform { return v1.Platform{OS: "linux", Architecture: "amd64"} }

// image builds a Docker-media-type image for platform p from layers, with a
// fixed config.
func image(title string, p v1.Platform, entrypoint []string, layers ...v1.Layer) (v1.Image, error) {
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      v1.Time{Time: seedTime},
		Config: v1.Config{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Entrypoint: entrypoint,
			Labels:     map[string]string{"org.opencontainers.image.title": title},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("building image %s: %w", title, err)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: seedTime}, CreatedBy: "bundle testenv: " + title},
		}
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("building image %s: %w", title, err)
	}
	return img, nil
}

// tarFile is one regular file of a layer.
type tarFile struct {
	name string
	mode int64
	data []byte
}

// randomFile is a file of n bytes from a random stream seeded by its name:
// the same name gives the same bytes in every run. Random bytes do not
// compress, so a layer's size is about n.
func randomFile(filename string, n int) tarFile {
	seed := sha256.Sum256([]byte("bundle testenv seed: " + filename))
	data := make([]byte, n)
	_, _ = rand.NewChaCha8(seed).Read(data) // never fails
	return tarFile{name: filename, mode: 0o644, data: data}
}

// layer builds a gzip layer holding files (and their parent directories) with
// fixed owners and times, so that the same files give the same digest.
func layer(mt types.MediaType, files ...tarFile) (v1.Layer, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.name); d != "." && d != "/"; d = path.Dir(d) {
			parents = append(parents, d)
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: seedTime}); err != nil {
				return nil, fmt.Errorf("building layer: %w", err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: seedTime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("building layer: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("building layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("building layer: %w", err)
	}
	var gzBuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gzBuf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("building layer: %w", err)
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, fmt.Errorf("building layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("building layer: %w", err)
	}
	gz := gzBuf.Bytes()
	l, err := ggcrtarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, ggcrtarball.WithMediaType(mt))
	if err != nil {
		return nil, fmt.Errorf("building layer: %w", err)
	}
	return l, nil
}
