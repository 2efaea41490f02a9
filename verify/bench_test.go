package verify_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
