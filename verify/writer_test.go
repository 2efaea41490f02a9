package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// memBlobs serves the blobs of a test bundle to tarball.Write.
type memBlobs map[v1.Hash][]byte

func (m memBlobs) Open(_ context.Context, h v1.Hash) (io.ReadCloser, bool, error) {
	b, ok := m[h]
	if !ok {
		return nil, false, fmt.Errorf("no blob %s", h)
	}
	return io.NopCloser(bytes.NewReader(b)), false, nil
}

// TestVerifyWriterOutput checks that what the real writer (tarball.Write)
// makes of the test images verifies, by default and with Deep.
func TestVerifyWriterOutput(t *testing.T) {
	b := newBundle(t)
	blobs := memBlobs{}
	for _, e := range b.Entries {
		if h, ok := blobDigestOf(e.Name); ok {
			blobs[h] = e.Data
		}
	}
	for _, platform := range []string{"", "linux/arm64/v8"} {
		l, err := tarball.NewPlan(b.Index, platform)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := tarball.Write(context.Background(), &buf, l, blobs, tarball.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, deep := range []bool{false, true} {
			rep := run(t, buf.Bytes(), verify.Options{Deep: deep, FileSHA256: sum(buf.Bytes())})
			if !rep.Intact {
				t.Errorf("docker platform %q, deep %v: the writer's bundle does not verify:\n%s", platform, deep, findings(rep))
			}
		}
	}
}

func blobDigestOf(name string) (v1.Hash, bool) {
	if len(name) != len(tarball.BlobsSHA256Dir)+64 {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash("sha256:" + name[len(tarball.BlobsSHA256Dir):])
	return h, err == nil
}
