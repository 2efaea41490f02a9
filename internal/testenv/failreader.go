package testenv

import (
	"errors"
	"io"
)

// ErrDevice is the error of FailAfter's reader: what a read from a
// damaged disk or a USB stick with a bad sector returns.
var ErrDevice = errors.New("input/output error")

// FailAfter returns r, failing with ErrDevice once n bytes have been read.
func FailAfter(r io.Reader, n int64) io.Reader { return &failReader{r: r, n: n} }

type failReader struct {
	r io.Reader
	n int64 // bytes left before the failure
}

func (f *failReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, ErrDevice
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}
