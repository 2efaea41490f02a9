package bundletest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The fixtures that tests of several packages start from, and the Must
// forms of New, RandomImage and RandomIndex that fail the test instead of
// returning an error.

// Must is New(refs...), failing t on an error.
func Must(t testing.TB, refs ...Ref) *Bundle {
	t.Helper()
	b, err := New(refs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// MustImage is RandomImage, failing t on an error.
func MustImage(t testing.TB, size, n int64, platform string, seed int64) v1.Image {
	t.Helper()
	img, err := RandomImage(size, n, platform, seed)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// MustIndex is RandomIndex, failing t on an error.
func MustIndex(t testing.TB, size, n int64, seed int64, platforms ...string) v1.ImageIndex {
	t.Helper()
	ix, err := RandomIndex(size, n, seed, platforms...)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// Small is the small bundle the reader, verify and load tests (and their
// fuzz seeds) start from: docker.io/library/small:1, an image of two
// 64-byte layers (Docker media types), and docker.io/library/multi:1, an
// OCI index over linux/amd64 and linux/arm64 of one 32-byte layer each.
// It is the same every time.
func Small(t testing.TB) *Bundle {
	t.Helper()
	return Must(t,
		Ref{Name: "docker.io/library/small:1", Image: MustImage(t, 64, 2, "linux/amd64", 1)},
		Ref{Name: "docker.io/library/multi:1", Index: MustIndex(t, 32, 1, 2, "linux/amd64", "linux/arm64")},
	)
}

// Single is a bundle of one reference, name, to an image of n random
// layers of size bytes for linux/amd64, the same for the same seed.
func Single(t testing.TB, name string, size, n, seed int64) *Bundle {
	t.Helper()
	return Must(t, Ref{Name: name, Image: MustImage(t, size, n, "linux/amd64", seed)})
}

// Zeros is an endless stream of zero bytes.
var Zeros io.Reader = zeros{}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ZeroTarGz is a gzip stream (deflate at its best, about 1029:1) of a tar
// holding one file, "zeros", of n zero bytes, and the sha256 of the tar:
// a decompression bomb with a true diffID.
func ZeroTarGz(t testing.TB, n int64) (gz []byte, diffID v1.Hash) {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, h))
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: n, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, Zeros, n); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
