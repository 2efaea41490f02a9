package tarball_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// FuzzReader feeds the bundle reader arbitrary bytes. Besides the corpus in
// testdata/fuzz/FuzzReader, it is seeded with a small valid bundle (plain
// and gzip), damaged copies and hostile archives. Whatever the input:
// nothing panics; every error is a corruption (the input is in memory, so
// nothing can fail to read); final errors stay final; and every entry handed
// out has a safe name inside the layout, of the kind its name says.
func FuzzReader(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := tarball.NewReader(bytes.NewReader(data))
		defer r.Close()
		idx, err := r.Index()
		if err != nil {
			if !tarball.IsCorrupt(err) {
				t.Fatalf("Index: error is not a corruption: %v", err)
			}
			if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Index error %q is not final: Next says %v", err, err2)
			}
			return
		}
		if idx == nil {
			t.Fatal("Index: nil index and no error")
		}
		buf := make([]byte, 32<<10)
		for {
			e, err := r.Next()
			if err == io.EOF {
				return
			}
			var ee *tarball.EntryError
			if errors.As(err, &ee) {
				continue
			}
			if err != nil {
				if !tarball.IsCorrupt(err) {
					t.Fatalf("Next: error is not a corruption: %v", err)
				}
				if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("Next error %q is not final: then %v", err, err2)
				}
				return
			}
			checkEntry(t, e)
			var n int64
			for {
				k, err := e.Read(buf)
				n += int64(k)
				if err == io.EOF {
					break
				}
				if err != nil {
					if !tarball.IsCorrupt(err) {
						t.Fatalf("reading %s: error is not a corruption: %v", e.Name, err)
					}
					return
				}
				if n > e.Size {
					t.Fatalf("%s: read %d bytes, more than its size %d", e.Name, n, e.Size)
				}
			}
			if e.Kind != tarball.KindDir && n != e.Size {
				t.Fatalf("%s: read %d bytes, size %d", e.Name, n, e.Size)
			}
		}
	})
}

func checkEntry(t *testing.T, e *tarball.Entry) {
	t.Helper()
	name := e.Name
	if strings.HasPrefix(name, "/") || strings.Contains(name, `\`) {
		t.Fatalf("absolute name %q", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			t.Fatalf("name with ..: %q", name)
		}
	}
	switch e.Kind {
	case tarball.KindBlob:
		if name != tarball.BlobPath(e.Digest) || len(e.Digest.Hex) != 64 {
			t.Fatalf("blob %q has digest %v", name, e.Digest)
		}
	case tarball.KindDir:
		if name != tarball.BlobsDir && name != tarball.BlobsSHA256Dir {
			t.Fatalf("directory %q", name)
		}
	case tarball.KindFile:
		switch name {
		case tarball.OCILayoutFile, tarball.OCIIndexFile, tarball.DockerManifest, tarball.RepositoriesFile:
		default:
			t.Fatalf("file %q", name)
		}
		if e.Size > tarball.MaxOCIIndexSize {
			t.Fatalf("file %q of %d bytes", name, e.Size)
		}
	default:
		t.Fatalf("kind %v", e.Kind)
	}
}

// fuzzSeeds adds the seeds of FuzzReader and FuzzOpen: a small valid
// bundle (plain and gzip), damaged copies and hostile archives.
func fuzzSeeds(f *testing.F) {
	// Small seeds: the fuzzing engine minimizes slowly on large inputs.
	b := bundletest.Single(f, "docker.io/library/tiny:1", 8, 1, 1)
	data, offsets := b.Bytes()
	f.Add(data)
	f.Add(gzipped(data))
	f.Add(data[:offsets[tarball.OCIIndexFile]+3])
	f.Add(sparseTar())
	hexID := strings.Repeat("ab", 32)
	f.Add(bundletest.Tar(
		bundletest.Entry{Name: hexID + "/layer.tar", Data: []byte("x")},
		bundletest.Entry{Name: "manifest.json", Data: []byte("[]")},
	))
	f.Add(bundletest.Tar(
		bundletest.Entry{Name: tarball.IndexFile, Data: []byte(`{"schemaVersion":1,"images":[],"blobs":{}}`)},
		bundletest.Entry{Name: "../evil", Data: []byte("x")},
		bundletest.Entry{Name: "blobs/sha256/" + hexID, Type: tar.TypeSymlink, Linkname: "/etc/passwd"},
		bundletest.Entry{Name: "blobs/sha256/" + hexID, Data: []byte("x")},
		bundletest.Entry{Name: "blobs/sha256/" + hexID, Data: []byte("x")},
	))
}
