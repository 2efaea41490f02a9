package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// FuzzVerify feeds Verify arbitrary bytes, seeded with a small valid
// bundle: whatever the input, nothing panics, nothing fails to read (the
// input is in memory), and a bundle is intact only without findings.
func FuzzVerify(f *testing.F) {
	b := bundletest.Small(f)
	data, offsets := b.Bytes()
	f.Add(data)
	f.Add(data[:offsets[tarball.DockerManifest]+20])

	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := verify.Verify(context.Background(), bytes.NewReader(data), verify.Options{Deep: true, MaxLayerSize: 16 << 20})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if rep.Intact != (rep.Complete && len(rep.Findings) == 0) {
			t.Fatalf("intact %v, complete %v, %d findings", rep.Intact, rep.Complete, len(rep.Findings))
		}
		// Reading the blobs at their offsets finds the same.
		at, err := verify.Verify(context.Background(), bytes.NewReader(data), verify.Options{Deep: true, MaxLayerSize: 16 << 20, ReaderAt: bytes.NewReader(data)})
		if err != nil {
			t.Fatalf("Verify with ReaderAt: %v", err)
		}
		if a, b := fmt.Sprint(rep.Findings), fmt.Sprint(at.Findings); a != b || rep.Intact != at.Intact {
			t.Fatalf("with ReaderAt: intact %v, %s; as a stream: intact %v, %s", at.Intact, b, rep.Intact, a)
		}
		for _, f := range rep.Findings {
			if f.Problem == "" || f.Code == "" {
				t.Fatalf("finding without problem or code: %+v", f)
			}
		}
	})
}
