package tarball_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
)

// A gzip-compressed "bundle" that expands past tarball.GzipAllowance at
// more than tarball.MaxGzipRatio times is refused as a decompression bomb,
// as a corruption, long before the end of the stream; one that expands
// less is read to its end.
func TestGzipBomb(t *testing.T) {
	// A tar of bundle.json and one blob entry of n zero bytes (n a
	// multiple of 1 MiB), as a gzip stream of many members: one for the
	// headers, then the same member of 1 MiB of zeros again and again
	// (quick to make, even under the race detector).
	member := func(b []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	mib := member(make([]byte, 1<<20))
	gzTar := func(n int64) []byte {
		var head bytes.Buffer
		tw := tar.NewWriter(&head)
		index := []byte(`{"schemaVersion":1,"images":[],"blobs":{}}`)
		tw.WriteHeader(&tar.Header{Name: tarball.IndexFile, Mode: 0o644, Size: int64(len(index)), Typeflag: tar.TypeReg})
		tw.Write(index)
		tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.Repeat("ab", 32), Mode: 0o644, Size: n, Typeflag: tar.TypeReg})
		tw.Flush()
		out := member(head.Bytes())
		for range n >> 20 {
			out = append(out, mib...)
		}
		return append(out, member(make([]byte, 1024))...) // the end-of-archive blocks
	}
	read := func(data []byte) (int64, error) {
		r := tarball.NewReader(bytes.NewReader(data))
		defer r.Close()
		if _, err := r.Index(); err != nil {
			return 0, err
		}
		var n int64
		for {
			e, err := r.Next()
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			k, err := io.Copy(io.Discard, e)
			n += k
			if err != nil {
				return n, err
			}
		}
	}

	bomb := gzTar(96 << 20)
	n, err := read(bomb)
	if !errors.Is(err, tarball.ErrGzipBomb) || !tarball.IsCorrupt(err) {
		t.Fatalf("read %d bytes of a %d-byte bomb: %v; want a corruption wrapping ErrGzipBomb", n, len(bomb), err)
	}
	if n > 2*tarball.GzipAllowance {
		t.Errorf("read %d bytes before stopping", n)
	}
	t.Logf("%d-byte bomb: stopped after %d bytes: %v", len(bomb), n, err)

	// 16 MiB of zeros: under the allowance, read whole.
	small := gzTar(16 << 20)
	if n, err := read(small); err != nil || n != 16<<20 {
		t.Errorf("16 MiB of zeros: read %d: %v", n, err)
	}
}
