package verify_test

import (
	"testing"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// The platform bundle.json gives a single-platform image must be its
// config's: a load with --platform, and docker, go by bundle.json's. A
// variant is compared only when both name one.
func TestVerifyPlatformOfSingleImage(t *testing.T) {
	img := bundletest.MustImage(t, 128, 1, "linux/arm64/v8", 3)
	for _, tc := range []struct {
		claim string
		ok    bool
	}{
		{"linux/arm64/v8", true},
		{"linux/arm64", true}, // no variant: create writes what the config says, older tools may not
		{"linux/amd64", false},
		{"windows/arm64", false},
		{"linux/arm64/v9", false},
		{"", true}, // no claim
	} {
		t.Run(tc.claim, func(t *testing.T) {
			b := bundletest.Must(t, bundletest.Ref{Name: "docker.io/library/arm:1", Image: img})
			b.Index.Images[0].Manifests[0].Platform = tc.claim
			if err := b.SetIndex(); err != nil {
				t.Fatal(err)
			}
			data, _ := b.Bytes()
			rep := run(t, data, verify.Options{})
			if tc.ok {
				mustDeep(t, rep)
				return
			}
			cfg := tarball.BlobPath(b.Index.Images[0].Manifests[0].Config)
			f := want(t, rep, verify.CodeMismatch, cfg, "docker.io/library/arm:1")
			if f.Got != "linux/arm64/v8" || f.Want != tc.claim {
				t.Errorf("finding %s: got %q want %q", f, f.Got, f.Want)
			}
		})
	}
}
