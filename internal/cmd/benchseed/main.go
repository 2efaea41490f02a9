// Command benchseed pushes a benchmark image set to a registry and prints
// one reference per line: images sharing a base layer, one with many
// layers, a multi-arch index, and many tiny images. Layer bytes are
// seeded random data (incompressible, like real compressed layers), so
// the set is the same on every run.
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
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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

func layer(size int) (v1.Layer, error) {
	seq++
	rng := rand.New(rand.NewPCG(seq, 42))
	data := make([]byte, size)
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data-%d", seq), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	var gz bytes.Buffer
	zw, _ := pgzip.NewWriterLevel(&gz, pgzip.BestSpeed)
	zw.Write(tb.Bytes())
	zw.Close()
	b := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.DockerLayer))
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
