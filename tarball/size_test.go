package tarball_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

type mapSource map[v1.Hash][]byte

func (m mapSource) Open(_ context.Context, h v1.Hash) (io.ReadCloser, bool, error) {
	return io.NopCloser(bytes.NewReader(m[h])), false, nil
}

// Size is the exact length of what Write writes (create checks the free
// space against it before downloading).
func TestSize(t *testing.T) {
	b := bundletest.Small(t)
	src := mapSource{}
	for _, e := range b.Entries {
		if hex, ok := strings.CutPrefix(e.Name, "blobs/sha256/"); ok && hex != "" {
			src[v1.Hash{Algorithm: "sha256", Hex: hex}] = e.Data
		}
	}
	for _, delta := range []int{0, 1, 511, 512, 513} {
		// bundle.json of other lengths: padding to 512 bytes counts.
		b.Index.Creator = string(bytes.Repeat([]byte("x"), delta))
		l, err := tarball.NewPlan(b.Index, "")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := tarball.Write(t.Context(), &buf, l, src, tarball.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := tarball.Size(l)
		if err != nil {
			t.Fatal(err)
		}
		if got != int64(buf.Len()) {
			t.Errorf("creator of %d bytes: Size says %d, Write wrote %d", delta, got, buf.Len())
		}
	}
}
