package verify_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The benchmark bundles are made once per test binary. With
// BUNDLE_BENCH_DIR set they are made there and kept, so that the same files
// can be timed against sha256sum and gzip -dc (scripts or by hand).
var bench struct {
	once sync.Once
	dir  string
	tmp  bool
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.tmp {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// benchBundle returns the path of a bundle of about 200 MB: eight layers of
// 25 MB in four images, random (incompressible) or compressible like real
// layers, and its sha256.
func benchBundle(b *testing.B, compressible bool) (string, v1.Hash) {
	b.Helper()
	bench.once.Do(func() {
		bench.dir = os.Getenv("BUNDLE_BENCH_DIR")
		if bench.dir == "" {
			bench.dir, bench.err = os.MkdirTemp("", "bundle-bench-")
			bench.tmp = true
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	name := "random.tar"
	if compressible {
		name = "compressible.tar"
	}
	path := filepath.Join(bench.dir, name)
	if _, err := os.Stat(path); err != nil {
		if err := writeBenchBundle(path, compressible); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return path, v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

func writeBenchBundle(path string, compressible bool) error {
	var refs []bundletest.Ref
	for i := range 4 {
		img, err := bundletest.FastImage(25<<20, 2, uint64(i+1), compressible)
		if err != nil {
			return err
		}
		refs = append(refs, bundletest.Ref{Name: fmt.Sprintf("registry.example.com/bench/image:%d", i), Image: img})
	}
	bb, err := bundletest.New(refs...)
	if err != nil {
		return err
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := bundletest.Write(w, bb.Entries...); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// BenchmarkVerify times Verify over a ~200 MB bundle read from a file (in
// the page cache after the first round): default, with the whole-file sha256
// of <file>.sha256, and --deep, on random and on compressible layers.
func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name         string
		compressible bool
		deep, sum    bool
	}{
		{"random/default", false, false, false},
		{"random/sha256file", false, false, true},
		{"random/deep", false, true, false},
		{"compressible/default", true, false, false},
		{"compressible/deep", true, true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path, sum := benchBundle(b, bc.compressible)
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			opts := verify.Options{Deep: bc.deep}
			if bc.sum {
				opts.FileSHA256 = sum
			}
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				rep, err := verify.Verify(context.Background(), f, opts)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if !rep.Intact {
					b.Fatalf("not intact: %v", rep.Findings)
				}
			}
		})
	}
}

// scaleBundle returns the path of a bundle made for BenchmarkVerifyScale
// (in the directory of benchBundle, made on first use), and the number of
// images bundle.json lists.
func scaleBundle(b *testing.B, name string, build func() ([]byte, error)) string {
	b.Helper()
	bench.once.Do(func() {
		bench.dir = os.Getenv("BUNDLE_BENCH_DIR")
		if bench.dir == "" {
			bench.dir, bench.err = os.MkdirTemp("", "bundle-bench-")
			bench.tmp = true
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	path := filepath.Join(bench.dir, "scale-"+name+".tar")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	data, err := build()
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

// scaleBase is the image every image of a scale bundle is made from: one
// small layer.
func scaleBase() (v1.Image, *v1.ConfigFile, error) {
	img, err := bundletest.RandomImage(1024, 1, "linux/amd64", 1)
	if err != nil {
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	return img, cf, nil
}

// tagsBundle is n tags over one base: n/10 images, each its own config (a
// label) and manifest, all on the base's layer, each tagged 10 times (so
// that manifest.json stays under its limit at 10,000 tags).
func tagsBundle(n int) ([]byte, error) {
	base, cf, err := scaleBase()
	if err != nil {
		return nil, err
	}
	refs := make([]bundletest.Ref, n)
	var img v1.Image
	for i := range n {
		if i%10 == 0 {
			c := cf.DeepCopy()
			c.Config.Labels = map[string]string{"n": fmt.Sprint(i)}
			if img, err = mutate.ConfigFile(base, c); err != nil {
				return nil, err
			}
		}
		refs[i] = bundletest.Ref{Name: fmt.Sprintf("registry.example.com/scale/app:%d", i), Image: img}
	}
	bb, err := bundletest.New(refs...)
	if err != nil {
		return nil, err
	}
	data, _ := bb.Bytes()
	return data, nil
}

// digestsBundle is n digest references sharing one config: n manifests
// that differ only in an annotation.
func digestsBundle(n int) ([]byte, error) {
	base, _, err := scaleBase()
	if err != nil {
		return nil, err
	}
	refs := make([]bundletest.Ref, n)
	for i := range n {
		img, ok := mutate.Annotations(base, map[string]string{"n": fmt.Sprint(i)}).(v1.Image)
		if !ok {
			return nil, fmt.Errorf("mutate.Annotations did not return an image")
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		refs[i] = bundletest.Ref{Name: "registry.example.com/scale/app@" + d.String(), Image: img}
	}
	bb, err := bundletest.New(refs...)
	if err != nil {
		return nil, err
	}
	data, _ := bb.Bytes()
	return data, nil
}

// hostileScaleBundle is a bundle.json at its size limit: as many
// references as fit, each a tag of the one manifest the file carries, and
// index.json and manifest.json that name only the first. Every reference
// uses every blob; index.json and manifest.json miss all but one.
func hostileScaleBundle() ([]byte, error) {
	base, _, err := scaleBase()
	if err != nil {
		return nil, err
	}
	bb, err := bundletest.New(bundletest.Ref{Name: "registry.example.com/scale/app:0", Image: base})
	if err != nil {
		return nil, err
	}
	one, err := json.Marshal(bb.Index)
	if err != nil {
		return nil, err
	}
	im, err := json.Marshal(bb.Index.Images[0])
	if err != nil {
		return nil, err
	}
	n := int((tarball.MaxIndexSize - int64(len(one)) - 4096) / int64(len(im)+8))
	first := bb.Index.Images[0]
	bb.Index.Images = make([]tarball.Image, n)
	for i := range n {
		bb.Index.Images[i] = first
		bb.Index.Images[i].Ref = fmt.Sprintf("registry.example.com/scale/app:%d", i)
	}
	data, err := json.Marshal(bb.Index)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > tarball.MaxIndexSize {
		return nil, fmt.Errorf("bundle.json is %d bytes, over the limit", len(data))
	}
	bb.Entries[bb.Find(tarball.IndexFile)].Data = data
	out, _ := bb.Bytes()
	return out, nil
}

// BenchmarkVerifyScale times Verify over bundles of many small images,
// where the cross-checks, not hashing, take the time: n tags over one base
// (the cost per image, ns/image, must stay flat from 100 to 10,000), 3,000
// digest references sharing one config, and a hostile bundle.json at its
// size limit (every reference sharing one manifest; it must end in seconds).
// BUNDLE_BENCH_DIR keeps the files, to time `bundle verify` on them.
func BenchmarkVerifyScale(b *testing.B) {
	for _, bc := range []struct {
		name   string
		build  func() ([]byte, error)
		intact bool
	}{
		{"tags-100", func() ([]byte, error) { return tagsBundle(100) }, true},
		{"tags-1000", func() ([]byte, error) { return tagsBundle(1000) }, true},
		{"tags-10000", func() ([]byte, error) { return tagsBundle(10000) }, true},
		{"digests-3000", func() ([]byte, error) { return digestsBundle(3000) }, true},
		{"hostile-limit", hostileScaleBundle, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := scaleBundle(b, bc.name, bc.build)
			var images int
			b.ResetTimer()
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				rep, err := verify.Verify(context.Background(), f, verify.Options{})
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if rep.Intact != bc.intact {
					b.Fatalf("intact %v, want %v: %d findings, first %v", rep.Intact, bc.intact, len(rep.Findings), rep.Findings[:min(1, len(rep.Findings))])
				}
				images = rep.Images
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(images), "ns/image")
		})
	}
}
