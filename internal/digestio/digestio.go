// Package digestio is bundle's one way to check bytes against a digest
// as they stream, and to count them: a Reader that hashes what it reads
// and, at its end, returns a *SizeError or *DigestError instead of
// io.EOF when the bytes are not the ones named; and counting readers and
// writers. Only sha256 digests are computed; a wanted digest of another
// algorithm never matches.
package digestio

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DigestError says a blob's bytes do not hash to its digest.
type DigestError struct {
	Want v1.Hash // the digest the bytes were read as
	Got  v1.Hash // what they hash to
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("blob %s: digest mismatch: got %s", e.Want, e.Got)
}

// SizeError says a blob has the wrong number of bytes.
type SizeError struct {
	Digest    v1.Hash
	Got, Want int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("blob %s: size mismatch: got %d bytes, want %d", e.Digest, e.Got, e.Want)
}

// Sum returns the sha256 digest of b.
func Sum(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// Check returns a *DigestError when b does not hash to want.
func Check(b []byte, want v1.Hash) error {
	if got := Sum(b); got != want {
		return &DigestError{Want: want, Got: got}
	}
	return nil
}

// Reader reads from r, hashing what it reads. At r's end it returns, in
// place of io.EOF, a *SizeError when size is not negative and the bytes
// read are not size, else a *DigestError when they do not hash to want.
// Other errors of r are returned as they are.
type Reader struct {
	r    io.Reader
	want v1.Hash
	size int64
	n    int64
	h    hash.Hash
}

// NewReader returns a Reader of r checking want and, unless it is
// negative, size.
func NewReader(r io.Reader, want v1.Hash, size int64) *Reader {
	return &Reader{r: r, want: want, size: size, h: sha256.New()}
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		if e := r.check(); e != nil {
			err = e
		}
	}
	return n, err
}

func (r *Reader) check() error {
	if r.size >= 0 && r.n != r.size {
		return &SizeError{Digest: r.want, Got: r.n, Want: r.size}
	}
	if got := r.Digest(); got != r.want {
		return &DigestError{Want: r.want, Got: got}
	}
	return nil
}

// N is the number of bytes read so far.
func (r *Reader) N() int64 { return r.n }

// Digest is the sha256 digest of the bytes read so far.
func (r *Reader) Digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(r.h.Sum(nil))}
}

// CountingReader counts the bytes read through it in N; OnRead, when
// set, is told the count of each read that returned bytes.
type CountingReader struct {
	R      io.Reader
	N      int64
	OnRead func(n int64)
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	if n > 0 && c.OnRead != nil {
		c.OnRead(int64(n))
	}
	return n, err
}

// CountingWriter counts the bytes written through it in N; OnWrite, when
// set, is told the count of each write that took bytes.
type CountingWriter struct {
	W       io.Writer
	N       int64
	OnWrite func(n int64)
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	if n > 0 && c.OnWrite != nil {
		c.OnWrite(int64(n))
	}
	return n, err
}
