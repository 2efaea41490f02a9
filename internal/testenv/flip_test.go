package testenv

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// FlipReader flips the byte at its offset (and, with every, each every-th
// byte after it) whatever the sizes of the reads; FlipByte and
// FlipMiddleByte flip one byte of a file in place.
func TestFlip(t *testing.T) {
	data := bytes.Repeat([]byte{0x0f}, 100)
	flipped := func(offs ...int) []byte {
		want := bytes.Clone(data)
		for _, o := range offs {
			want[o] ^= 0xff
		}
		return want
	}
	for _, tc := range []struct {
		at, every int64
		want      []byte
	}{
		{10, 0, flipped(10)},
		{0, 0, flipped(0)},
		{10, 30, flipped(10, 40, 70)},
		{200, 0, data},
	} {
		for _, one := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(data)
			if one {
				r = iotest.OneByteReader(r)
			}
			got, err := io.ReadAll(FlipReader(r, tc.at, tc.every))
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("FlipReader(at %d, every %d, one byte a read %v) = %x, %v; want %x", tc.at, tc.every, one, got, err, tc.want)
			}
		}
	}

	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	FlipByte(t, p, 3)
	FlipMiddleByte(t, p)
	if got, _ := os.ReadFile(p); !bytes.Equal(got, flipped(3, 50)) {
		t.Errorf("after FlipByte(3) and FlipMiddleByte: %x", got)
	}
}
