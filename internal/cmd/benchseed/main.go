// Command benchseed pushes a benchmark image set to a registry and prints
// one reference per line: images sharing a base layer, one with many
// layers, a multi-arch index, and many tiny images.
//
// Layers are gzip tars of many files whose bytes compress about 2.8:1 with
// gzip's default level and decompress at the speed real layers do (short
// back-references mixed with literals, like binaries and text), so that
// decompressing costs what it costs on real images (bundle verify --deep,
// docker load). Everything comes from a seeded generator, so the set, and
// every digest, is the same on every run.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtarball "github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/pgzip"
)

func main() {
	host := flag.String("host", "", "registry host:port")
	mib := flag.Int("mib", 1024, "approximate MiB of compressed layers in the big images")
	big := flag.Int("images", 10, "number of big images (sharing a base layer)")
	tiny := flag.Int("tiny", 40, "number of tiny images")
	flag.Parse()
	if *host == "" {
		fmt.Fprintln(os.Stderr, "usage: benchseed -host HOST:PORT [-mib N] [-images N] [-tiny N]")
		os.Exit(2)
	}
	if err := run(*host, *mib, *big, *tiny); err != nil {
		fmt.Fprintln(os.Stderr, "benchseed:", err)
		os.Exit(1)
	}
}

var seq uint64

// ratio is about how many times a layer's files are larger than the gzip
// stream: layers are made to a compressed size from it.
const ratio = 2.8

// content fills buf with compressible bytes: runs of literals from a skewed
// alphabet and copies of earlier bytes (up to 32 KiB back, 4 to 43 long),
// which is what deflate sees in real files.
func content(rng *rand.Rand, buf []byte) {
	i := 0
	for i < len(buf) {
		if i < 64 || rng.IntN(100) < 66 {
			for k := 1 + rng.IntN(8); k > 0 && i < len(buf); k-- {
				buf[i] = byte(rng.IntN(64)) * byte(rng.IntN(4)+1)
				i++
			}
			continue
		}
		src := i - 1 - rng.IntN(min(i, 32<<10))
		for k := 4 + rng.IntN(40); k > 0 && i < len(buf); k-- {
			buf[i] = buf[src]
			i++
			src++
		}
	}
}

// layer makes a gzip layer of about size compressed bytes: a tar of files
// of 1 KiB to 1 MiB under a directory of its own. Only the compressed
// bytes are kept in memory.
func layer(size int) (v1.Layer, error) {
	seq++
	rng := rand.New(rand.NewPCG(seq, 42))
	var gz bytes.Buffer
	zw, err := pgzip.NewWriterLevel(&gz, pgzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	dir := fmt.Sprintf("layer-%03d/", seq)
	if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	want := int64(float64(size) * ratio)
	for n, i := int64(0), 0; n < want; i++ {
		f := buf[:min(int64(1<<10+rng.IntN(1<<20-1<<10)), max(want-n, 1))]
		content(rng, f)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%sf%05d", dir, i), Mode: 0o644, Size: int64(len(f)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f); err != nil {
			return nil, err
		}
		n += int64(len(f))
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := gz.Bytes()
	return ggcrtarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, ggcrtarball.WithMediaType(types.DockerLayer))
}

func image(plat v1.Platform, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layers...)
}

func push(host, repo string, img v1.Image) (string, error) {
	ref, err := name.ParseReference(host + "/bench/" + repo)
	if err != nil {
		return "", err
	}
	return ref.String(), remote.Write(ref, img)
}

func run(host string, mib, big, tiny int) error {
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	total := mib << 20
	// A base shared by every big image: a fifth of the bytes.
	base, err := layer(total / 5)
	if err != nil {
		return err
	}
	per := (total - total/5) / max(big, 1)
	for i := range big {
		var ls []v1.Layer
		n := 2
		if i == 0 {
			n = 24 // one image with many layers
		}
		ls = append(ls, base)
		for range n {
			l, err := layer(per / n)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		img, err := image(amd64, ls...)
		if err != nil {
			return err
		}
		r, err := push(host, fmt.Sprintf("big-%02d:1", i), img)
		if err != nil {
			return err
		}
		fmt.Println(r)
	}
	// A multi-arch index over two small images.
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, p := range []v1.Platform{amd64, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		l, err := layer(4 << 20)
		if err != nil {
			return err
		}
		img, err := image(p, l)
		if err != nil {
			return err
		}
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	ref, err := name.ParseReference(host + "/bench/multi:1")
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		return err
	}
	fmt.Println(ref.String())
	for i := range tiny {
		l, err := layer(2 << 10)
		if err != nil {
			return err
		}
		img, err := image(amd64, l)
		if err != nil {
			return err
		}
		r, err := push(host, fmt.Sprintf("tiny-%02d:1", i), img)
		if err != nil {
			return err
		}
		fmt.Println(r)
	}
	return nil
}
