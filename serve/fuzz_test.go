package serve_test

import (
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/serve"
)

// ParseRoute never panics; what it accepts is within the grammar and the
// limits, and names a route that prints back to the same path.
func FuzzParseRoute(f *testing.F) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, s := range []string{
		"/v2/", "/v2", "/v2/_catalog", "/v2/library/debian/manifests/bookworm", "/v2/a/b/c/manifests/" + d,
		"/v2/a/blobs/" + d, "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/x", "/v2/a/tags/list", "/v2/a/referrers/" + d,
		"/v2/../etc/passwd", "/v2/a/../../manifests/x", "/v2/a//b/manifests/x", "/v2/a%2Fb/manifests/x", "/v2/a/manifests/sha256:baddigeststring",
		"/v2/blobs/blobs/blobs/" + d, "/v2/a/manifests/manifests/manifests/x", "/v2/a__b/manifests/x", "/v2/a___b/manifests/x", "/v2/a-----b.c_d/tags/list",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := serve.ParseRoute(path)
		if err != nil {
			if err.Status != 400 && err.Status != 404 {
				t.Fatalf("ParseRoute(%q): status %d", path, err.Status)
			}
			return
		}
		if len(path) > serve.MaxPathLength {
			t.Fatalf("ParseRoute(%q): accepted over the length limit", path)
		}
		var back string
		switch r.Kind {
		case serve.KindBase:
			return
		case serve.KindCatalog:
			back = "/v2/_catalog"
		case serve.KindTags:
			back = "/v2/" + r.Name + "/tags/list"
		case serve.KindManifest:
			ref := r.Tag
			if ref == "" {
				ref = r.Digest.String()
			} else if !serve.ValidTag(ref) {
				t.Fatalf("ParseRoute(%q): tag %q", path, ref)
			}
			back = "/v2/" + r.Name + "/manifests/" + ref
		case serve.KindBlob:
			back = "/v2/" + r.Name + "/blobs/" + r.Digest.String()
		case serve.KindReferrers:
			back = "/v2/" + r.Name + "/referrers/" + r.Digest.String()
		case serve.KindUpload:
			if !strings.HasPrefix(path, "/v2/"+r.Name+"/blobs/uploads") {
				t.Fatalf("ParseRoute(%q): upload of %q", path, r.Name)
			}
		default:
			t.Fatalf("ParseRoute(%q): kind %d", path, r.Kind)
		}
		if r.Kind != serve.KindCatalog {
			if !serve.ValidName(r.Name) || len(r.Name) > serve.MaxNameLength {
				t.Fatalf("ParseRoute(%q): name %q", path, r.Name)
			}
			for _, c := range strings.Split(r.Name, "/") {
				if c == "." || c == ".." || c == "" {
					t.Fatalf("ParseRoute(%q): name %q has a component %q", path, r.Name, c)
				}
			}
		}
		if r.Supported && (r.Digest.Algorithm != "sha256" || len(r.Digest.Hex) != 64) {
			t.Fatalf("ParseRoute(%q): supported digest %s", path, r.Digest)
		}
		if back != "" && back != path {
			t.Fatalf("ParseRoute(%q) = %+v, which prints as %q", path, r, back)
		}
	})
}
