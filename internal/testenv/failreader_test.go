package testenv

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FailAfter passes the first n bytes, then fails with ErrDevice, whatever
// the sizes of the reads.
func TestFailAfter(t *testing.T) {
	data := []byte("0123456789")
	for _, n := range []int64{0, 1, 5, 9} {
		got, err := io.ReadAll(FailAfter(bytes.NewReader(data), n))
		if !errors.Is(err, ErrDevice) || !bytes.Equal(got, data[:n]) {
			t.Errorf("FailAfter(%d): read %q, %v; want %q, ErrDevice", n, got, err, data[:n])
		}
	}
	// Past the end of r: r's EOF comes first.
	if got, err := io.ReadAll(FailAfter(bytes.NewReader(data), 100)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("FailAfter(100): read %q, %v; want all of it", got, err)
	}
}
