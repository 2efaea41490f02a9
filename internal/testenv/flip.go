package testenv

import (
	"io"
	"os"
	"testing"
)

// FlipReader returns r with the byte at offset at flipped (XOR 0xff) and,
// when every is above 0, every every-th byte after it as well: a body
// damaged on the way.
func FlipReader(r io.Reader, at, every int64) io.Reader {
	return &flipReader{r: r, at: at, every: every}
}

type flipReader struct {
	r         io.Reader
	at, every int64
	off       int64 // of the next byte read
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	for i := range n {
		if o := f.off + int64(i); o == f.at || (f.every > 0 && o > f.at && (o-f.at)%f.every == 0) {
			b[i] ^= 0xff
		}
	}
	f.off += int64(n)
	return n, err
}

// FlipByte flips (XOR 0xff) the byte at offset off of the file at path,
// in place: a file damaged on disk.
func FlipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("flipping byte %d of %s: %v", off, path, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("flipping byte %d of %s: %v", off, path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// FlipMiddleByte flips the byte in the middle of the file at path.
func FlipMiddleByte(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	FlipByte(t, path, fi.Size()/2)
}
