package serve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const (
	refApp   = "docker.io/library/app:1"
	refMulti = "docker.io/acme/multi:2"
	refGHCR  = "ghcr.io/team/tool:3"
)

func standard(t testing.TB) *bundletest.Bundle {
	t.Helper()
	return newBundle(t, "2026-01-01T00:00:00Z",
		bundletest.Ref{Name: refApp, Image: image(t, 1)},
		bundletest.Ref{Name: refMulti, Index: index(t, 2)},
		bundletest.Ref{Name: refGHCR, Image: image(t, 3)},
	)
}

// A client (go-containerregistry's remote, what crane uses) pulls every
// image by its name without the registry host, with the digests the
// bundle holds, and every blob checks out.
func TestServePullsEveryImage(t *testing.T) {
	b := standard(t)
	path := write(t, t.TempDir(), "images.tar", b)
	r, host, _ := start(t, serve.Options{Inputs: []string{path}})

	sum := r.Summary()
	if sum.Images != 3 || sum.Repositories != 3 || !slices.Equal(sum.Upstreams, []string{"docker.io", "ghcr.io"}) {
		t.Errorf("summary %+v", sum)
	}
	for _, im := range b.Index.Images {
		ref, err := name.ParseReference(im.Ref)
		if err != nil {
			t.Fatal(err)
		}
		served, err := name.ParseReference(host + "/" + ref.Context().RepositoryStr() + ":" + ref.Identifier())
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(served, remoteOpts(t)...)
		if err != nil {
			t.Fatalf("%s: %v", served, err)
		}
		if desc.Digest != im.Digest || desc.MediaType != im.MediaType || desc.Size != im.Size {
			t.Errorf("%s: %s %s %d; the bundle has %s %s %d", served, desc.Digest, desc.MediaType, desc.Size, im.Digest, im.MediaType, im.Size)
		}
		if !bytes.Equal(desc.Manifest, rawOf(t, b, im.Digest)) {
			t.Errorf("%s: the manifest is not the stored bytes", served)
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Errorf("%s: %v", served, err)
			}
			continue
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", served, err)
		}
	}
	// The registry's path rule is load's: library/ stays for Docker Hub.
	if resp, _ := do(t, "GET", "http://"+host+"/v2/library/app/manifests/1"); resp.StatusCode != 200 {
		t.Errorf("library/app:1: %s", resp.Status)
	}
}

// Manifests: the exact stored bytes and media type, the digest header,
// Content-Length on HEAD too, by tag and by digest.
func TestServeManifestHeaders(t *testing.T) {
	b := standard(t)
	_, host, _ := start(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", b)}})
	multi := b.Index.Images[1]
	child := multi.Manifests[1]
	for _, tc := range []struct {
		path string
		d    v1.Hash
		mt   types.MediaType
	}{
		{"/v2/acme/multi/manifests/2", multi.Digest, multi.MediaType},
		{"/v2/acme/multi/manifests/" + multi.Digest.String(), multi.Digest, multi.MediaType},
		{"/v2/acme/multi/manifests/" + child.Digest.String(), child.Digest, child.MediaType},
	} {
		raw := rawOf(t, b, tc.d)
		for _, m := range []string{"GET", "HEAD"} {
			resp, body := do(t, m, "http://"+host+tc.path, "Accept", "application/vnd.oci.image.index.v1+json")
			if resp.StatusCode != 200 {
				t.Errorf("%s %s: %s %s", m, tc.path, resp.Status, body)
				continue
			}
			h := resp.Header
			if h.Get("Docker-Content-Digest") != tc.d.String() || h.Get("Content-Type") != string(tc.mt) || h.Get("Content-Length") != fmt.Sprint(len(raw)) {
				t.Errorf("%s %s: digest %q type %q length %q; want %s %s %d", m, tc.path, h.Get("Docker-Content-Digest"), h.Get("Content-Type"), h.Get("Content-Length"), tc.d, tc.mt, len(raw))
			}
			if m == "GET" && !bytes.Equal(body, raw) {
				t.Errorf("GET %s: body is not the stored bytes", tc.path)
			}
			if m == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD %s: a body of %d bytes", tc.path, len(body))
			}
		}
	}
	// A config or a layer is a blob, not a manifest.
	if resp, body := do(t, "GET", "http://"+host+"/v2/acme/multi/manifests/"+child.Config.String()); resp.StatusCode != 404 || errorCode(t, body) != serve.CodeManifestUnknown {
		t.Errorf("a config as a manifest: %s %s", resp.Status, body)
	}
}

// Blobs come from the file by offset; Range answers 206 or 416 as
// http.ServeContent does.
func TestServeBlobRanges(t *testing.T) {
	b := standard(t)
	_, host, _ := start(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", b)}})
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	data := rawOf(t, b, layer)
	size := len(data)
	u := "http://" + host + "/v2/library/app/blobs/" + layer.String()

	resp, body := do(t, "GET", u)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("Docker-Content-Digest") != layer.String() || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %s, %d bytes, headers %v", resp.Status, len(body), resp.Header)
	}
	resp, body = do(t, "HEAD", u)
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != fmt.Sprint(size) {
		t.Errorf("HEAD: %s, length %q", resp.Status, resp.Header.Get("Content-Length"))
	}
	for _, tc := range []struct {
		rng    string
		status int
		from   int
		to     int // exclusive
	}{
		{"bytes=0-9", 206, 0, 10},
		{"bytes=10-", 206, 10, size},
		{"bytes=-7", 206, size - 7, size},
		{fmt.Sprintf("bytes=5-%d", size+100), 206, 5, size},
		{fmt.Sprintf("bytes=%d-%d", size-1, size-1), 206, size - 1, size},
		{"bytes=0-1,4-5", 200, 0, size}, // several ranges: the whole blob
		{"items=0-1", 200, 0, size},     // another unit: ignored
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
		{fmt.Sprintf("bytes=%d-%d", size+5, size+10), 416, 0, 0},
		{"bytes=9-3", 416, 0, 0},
		{"bytes=-0", 416, 0, 0},
		{"bytes=x-y", 416, 0, 0},
		{"bytes=99999999999999999999999-", 416, 0, 0},
	} {
		resp, body := do(t, "GET", u, "Range", tc.rng)
		if resp.StatusCode != tc.status {
			t.Errorf("Range %s: %s, want %d", tc.rng, resp.Status, tc.status)
			continue
		}
		switch tc.status {
		case 206:
			want := fmt.Sprintf("bytes %d-%d/%d", tc.from, tc.to-1, size)
			if !bytes.Equal(body, data[tc.from:tc.to]) || resp.Header.Get("Content-Range") != want {
				t.Errorf("Range %s: Content-Range %q (want %q), %d bytes", tc.rng, resp.Header.Get("Content-Range"), want, len(body))
			}
		case 200:
			if !bytes.Equal(body, data) {
				t.Errorf("Range %s: not the whole blob", tc.rng)
			}
		case 416:
			if resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
				t.Errorf("Range %s: Content-Range %q", tc.rng, resp.Header.Get("Content-Range"))
			}
		}
	}
	// A blob of another repository is not this one's.
	other := b.Index.Images[2].Manifests[0].Layers[0]
	if resp, body := do(t, "GET", "http://"+host+"/v2/library/app/blobs/"+other.String()); resp.StatusCode != 404 || errorCode(t, body) != serve.CodeBlobUnknown {
		t.Errorf("another repository's blob: %s %s", resp.Status, body)
	}
}

// Every error has the spec's status and error body; every write is 405
// UNSUPPORTED.
func TestServeErrors(t *testing.T) {
	b := standard(t)
	_, host, _ := start(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", b)}})
	missing := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/library/app/manifests/2", 404, serve.CodeManifestUnknown},
		{"HEAD", "/v2/library/app/manifests/2", 404, ""},
		{"GET", "/v2/library/app/manifests/" + missing, 404, serve.CodeManifestUnknown},
		{"GET", "/v2/library/app/manifests/sha256:baddigeststring", 400, serve.CodeDigestInvalid},
		{"GET", "/v2/library/app/manifests/sha512:" + strings.Repeat("a", 128), 404, serve.CodeManifestUnknown},
		{"GET", "/v2/library/app/blobs/" + missing, 404, serve.CodeBlobUnknown},
		{"GET", "/v2/library/app/blobs/sha256:ABC", 400, serve.CodeDigestInvalid},
		{"GET", "/v2/library/app/blobs/md5", 400, serve.CodeDigestInvalid},
		{"GET", "/v2/nope/manifests/1", 404, serve.CodeNameUnknown},
		{"GET", "/v2/nope/blobs/" + missing, 404, serve.CodeNameUnknown},
		{"GET", "/v2/nope/tags/list", 404, serve.CodeNameUnknown},
		{"GET", "/v2/nope/referrers/" + missing, 404, serve.CodeNameUnknown},
		{"GET", "/v2/Library/app/manifests/1", 404, serve.CodeNameInvalid},
		{"GET", "/v2/library/app/tags/list?n=-1", 400, serve.CodeUnsupported},
		{"GET", "/v2/library/app/tags/list?n=x", 400, serve.CodeUnsupported},
		{"GET", "/v2/library/app", 404, serve.CodeUnsupported},
		{"GET", "/v3/", 404, serve.CodeUnsupported},
		{"PUT", "/v2/library/app/manifests/1", 405, serve.CodeUnsupported},
		{"DELETE", "/v2/library/app/manifests/1", 405, serve.CodeUnsupported},
		{"DELETE", "/v2/library/app/blobs/" + missing, 405, serve.CodeUnsupported},
		{"POST", "/v2/library/app/blobs/uploads/", 405, serve.CodeUnsupported},
		{"POST", "/v2/library/app/blobs/uploads/?mount=" + missing + "&from=acme/multi", 405, serve.CodeUnsupported},
		{"PATCH", "/v2/library/app/blobs/uploads/1234", 405, serve.CodeUnsupported},
		{"PUT", "/v2/library/app/blobs/uploads/1234?digest=" + missing, 405, serve.CodeUnsupported},
		{"GET", "/v2/library/app/blobs/uploads/1234", 405, serve.CodeUnsupported},
	} {
		resp, body := do(t, tc.method, "http://"+host+tc.path)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %s %s, want %d", tc.method, tc.path, resp.Status, body, tc.status)
			continue
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
		if tc.code != "" {
			if got := errorCode(t, body); got != tc.code {
				t.Errorf("%s %s: code %s, want %s", tc.method, tc.path, got, tc.code)
			}
		}
	}
	resp, body := do(t, "GET", "http://"+host+"/v2/")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "{}" || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("GET /v2/: %s %q %v", resp.Status, body, resp.Header)
	}
}

// Tags and catalog listings page with n and last, and Link to the rest;
// the referrers API answers an empty index.
func TestServeListings(t *testing.T) {
	var refs []bundletest.Ref
	img := image(t, 1)
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		refs = append(refs, bundletest.Ref{Name: "docker.io/library/app:" + tag, Image: img})
	}
	refs = append(refs, bundletest.Ref{Name: "ghcr.io/x/y:1", Image: image(t, 2)}, bundletest.Ref{Name: "quay.io/z:1", Image: image(t, 3)})
	b := newBundle(t, "2026-01-01T00:00:00Z", refs...)
	_, host, _ := start(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", b)}})
	get := func(path string) (http.Header, string) {
		t.Helper()
		resp, body := do(t, "GET", "http://"+host+path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, body)
		}
		return resp.Header, strings.TrimSpace(string(body))
	}
	for _, tc := range []struct {
		path, body, link string
	}{
		{"/v2/library/app/tags/list", `{"name":"library/app","tags":["a","b","c","d","e"]}`, ""},
		{"/v2/library/app/tags/list?n=2", `{"name":"library/app","tags":["a","b"]}`, `</v2/library/app/tags/list?last=b&n=2>; rel="next"`},
		{"/v2/library/app/tags/list?n=2&last=b", `{"name":"library/app","tags":["c","d"]}`, `</v2/library/app/tags/list?last=d&n=2>; rel="next"`},
		{"/v2/library/app/tags/list?n=2&last=d", `{"name":"library/app","tags":["e"]}`, ""},
		{"/v2/library/app/tags/list?last=bb", `{"name":"library/app","tags":["c","d","e"]}`, ""},
		{"/v2/library/app/tags/list?n=0", `{"name":"library/app","tags":[]}`, ""},
		{"/v2/library/app/tags/list?n=99999999999999999999999999", `{"name":"library/app","tags":["a","b","c","d","e"]}`, ""},
		{"/v2/library/app/tags/list?n=2&ns=docker.io", `{"name":"library/app","tags":["a","b"]}`, `</v2/library/app/tags/list?last=b&n=2&ns=docker.io>; rel="next"`},
		{"/v2/_catalog", `{"repositories":["library/app","x/y","z"]}`, ""},
		{"/v2/_catalog?n=1&last=library/app", `{"repositories":["x/y"]}`, `</v2/_catalog?last=x%2Fy&n=1>; rel="next"`},
	} {
		h, body := get(tc.path)
		if body != tc.body || h.Get("Link") != tc.link {
			t.Errorf("GET %s:\n got %s Link %q\nwant %s Link %q", tc.path, body, h.Get("Link"), tc.body, tc.link)
		}
	}
	subject := b.Index.Images[0].Digest.String()
	h, body := get("/v2/library/app/referrers/" + subject)
	if body != `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` || h.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || h.Get("OCI-Filters-Applied") != "" {
		t.Errorf("referrers: %s %v", body, h)
	}
	if h, _ := get("/v2/library/app/referrers/" + subject + "?artifactType=application/spdx%2Bjson"); h.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("referrers with artifactType: %v", h)
	}
}

// ?ns= (containerd in mirror mode) picks the upstream registry's image
// when two have the same path; without it the newest bundle's is served,
// and Summary says so.
func TestServeNamespaces(t *testing.T) {
	dir := t.TempDir()
	hub := newBundle(t, "2026-01-01T00:00:00Z", bundletest.Ref{Name: "docker.io/x/y:1", Image: image(t, 1)})
	ghcr := newBundle(t, "2026-01-02T00:00:00Z", bundletest.Ref{Name: "ghcr.io/x/y:1", Image: image(t, 2)})
	r, host, _ := start(t, serve.Options{Inputs: []string{write(t, dir, "hub.tar", hub), write(t, dir, "ghcr.tar", ghcr)}})
	hubD, ghcrD := hub.Index.Images[0].Digest.String(), ghcr.Index.Images[0].Digest.String()
	for _, tc := range []struct{ query, want string }{
		{"", ghcrD}, // the newest
		{"?ns=docker.io", hubD},
		{"?ns=index.docker.io", hubD},
		{"?ns=registry-1.docker.io", hubD},
		{"?ns=ghcr.io", ghcrD},
		{"?ns=quay.io", ghcrD},        // not an upstream of x/y: by name
		{"?ns=" + "%00bad%2F", ghcrD}, // not a registry: by name
	} {
		resp, body := do(t, "GET", "http://"+host+"/v2/x/y/manifests/1"+tc.query)
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != tc.want {
			t.Errorf("x/y:1%s: %s %s, digest %s, want %s", tc.query, resp.Status, body, resp.Header.Get("Docker-Content-Digest"), tc.want)
		}
	}
	// Blobs follow the namespace too.
	hubLayer := hub.Index.Images[0].Manifests[0].Layers[0].String()
	if resp, _ := do(t, "GET", "http://"+host+"/v2/x/y/blobs/"+hubLayer+"?ns=docker.io"); resp.StatusCode != 200 {
		t.Errorf("docker.io's layer with ns=docker.io: %s", resp.Status)
	}
	if resp, _ := do(t, "GET", "http://"+host+"/v2/x/y/blobs/"+hubLayer+"?ns=ghcr.io"); resp.StatusCode != 404 {
		t.Errorf("docker.io's layer with ns=ghcr.io: %s", resp.Status)
	}
	cs := r.Summary().Conflicts
	if len(cs) != 1 || !cs[0].NameOnly || cs[0].Name != "x/y:1" || cs[0].Served.Digest != ghcrD || len(cs[0].Shadowed) != 1 || cs[0].Shadowed[0].Digest != hubD {
		t.Errorf("conflicts %+v", cs)
	}
}

// Several bundles are one registry: a tag two bundles give different
// images is the newest's (by created, whatever the order of -i), split
// volumes are read in place, a delta's external blobs come from the
// others.
func TestServeSeveralBundles(t *testing.T) {
	dir := t.TempDir()
	old := newBundle(t, "2026-01-01T00:00:00Z",
		bundletest.Ref{Name: refApp, Image: image(t, 1)},
		bundletest.Ref{Name: "docker.io/library/base:1", Image: image(t, 5)})
	// The delta: app:1 is a new image that shares base:1's layers, which
	// it does not carry.
	base := old.Index.Images[1].Manifests[0]
	newApp := image(t, 5) // same layers as base:1 …
	cf, _ := newApp.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{"v": "2"} // … another config
	newApp = mustConfig(t, newApp, cf)
	delta := newBundle(t, "2026-01-02T00:00:00Z", bundletest.Ref{Name: refApp, Image: newApp})
	delta.Index.External = map[v1.Hash]tarball.Blob{}
	for _, l := range base.Layers {
		delta.Index.External[l] = delta.Index.Blobs[l]
		delete(delta.Index.Blobs, l)
		delta.Remove(tarball.BlobPath(l))
	}
	if err := delta.SetIndex(); err != nil {
		t.Fatal(err)
	}
	// The old bundle split in three volumes.
	data, _ := old.Bytes()
	third := len(data)/3 + 1
	for i := 0; i < 3; i++ {
		chunk := data[i*third : min((i+1)*third, len(data))]
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("old.tar.%03d", i+1)), chunk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deltaPath := write(t, dir, "delta.tar", delta)

	// Alone, the delta lacks its external blobs.
	_, err := serve.Open(context.Background(), serve.Options{Inputs: []string{deltaPath}})
	var ie *serve.IncompleteError
	if !errors.As(err, &ie) || len(ie.Missing) != len(base.Layers) || !serve.IsRefused(err) {
		t.Fatalf("the delta alone: %v", err)
	}

	// The newest first on the command line, and a volume named twice.
	r, host, _ := start(t, serve.Options{Inputs: []string{deltaPath, filepath.Join(dir, "old.tar.001"), filepath.Join(dir, "old.tar.002")}})
	sum := r.Summary()
	if len(sum.Bundles) != 2 || sum.Bundles[1].Volumes != 3 || sum.Bundles[0].External != len(base.Layers) {
		t.Errorf("bundles %+v", sum.Bundles)
	}
	if len(sum.Conflicts) != 1 || sum.Conflicts[0].Name != "library/app:1" || sum.Conflicts[0].Served.Bundle != deltaPath {
		t.Errorf("conflicts %+v", sum.Conflicts)
	}
	ref, _ := name.ParseReference(host + "/library/app:1")
	img, err := remote.Image(ref, remoteOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d != delta.Index.Images[0].Digest {
		t.Errorf("app:1 is %s, want the delta's %s", d, delta.Index.Images[0].Digest)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("app:1 from the delta and the split bundle: %v", err)
	}
	// The old image stays pullable by digest; base:1 from the volumes.
	for _, ref := range []string{host + "/library/app@" + old.Index.Images[0].Digest.String(), host + "/library/base:1"} {
		r, _ := name.ParseReference(ref)
		img, err := remote.Image(r, remoteOpts(t)...)
		if err == nil {
			err = validate.Image(img)
		}
		if err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

// A corrupt bundle is refused before anything is served; so is a
// gzip-compressed one, with a hint.
func TestServeRefusesBadBundles(t *testing.T) {
	dir := t.TempDir()
	b := standard(t)
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	b.Entries[b.Find(tarball.BlobPath(layer))].Data[100] ^= 1
	corrupt := write(t, dir, "corrupt.tar", b)
	_, err := serve.Open(context.Background(), serve.Options{Inputs: []string{corrupt}})
	var ce *serve.CorruptError
	if !errors.As(err, &ce) || !serve.IsRefused(err) || !strings.Contains(err.Error(), layer.Hex) {
		t.Errorf("a corrupt bundle: %v", err)
	}

	gz := filepath.Join(dir, "images.tar.gz")
	if err := os.WriteFile(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = serve.Open(context.Background(), serve.Options{Inputs: []string{gz}})
	var ge *serve.CompressedError
	if !errors.As(err, &ge) || !serve.IsRefused(err) || !strings.Contains(ge.Hint(), "gunzip") {
		t.Errorf("a gzip bundle: %v", err)
	}
	if _, err := serve.Open(context.Background(), serve.Options{Inputs: []string{filepath.Join(dir, "nope.tar")}}); err == nil || serve.IsRefused(err) {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := serve.Open(context.Background(), serve.Options{Inputs: []string{write(t, dir, "ok.tar", standard(t))}, Prefix: "../x"}); err == nil {
		t.Error("a prefix with ..: no error")
	}
}

// --prefix puts every name under it.
func TestServePrefix(t *testing.T) {
	_, host, _ := start(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", standard(t))}, Prefix: "mirror/hub"})
	if resp, body := do(t, "GET", "http://"+host+"/v2/mirror/hub/library/app/manifests/1"); resp.StatusCode != 200 {
		t.Errorf("under the prefix: %s %s", resp.Status, body)
	}
	if resp, _ := do(t, "GET", "http://"+host+"/v2/library/app/manifests/1"); resp.StatusCode != 404 {
		t.Errorf("without the prefix: %s", resp.Status)
	}
	_, body := do(t, "GET", "http://"+host+"/v2/_catalog")
	if strings.TrimSpace(string(body)) != `{"repositories":["mirror/hub/acme/multi","mirror/hub/library/app","mirror/hub/team/tool"]}` {
		t.Errorf("catalog %s", body)
	}
}

// A file changed on disk after it was verified answers 500, and the
// change is reported once; nothing it now holds is served.
func TestServeChangedFile(t *testing.T) {
	b := standard(t)
	path := write(t, t.TempDir(), "images.tar", b)
	_, host, w := start(t, serve.Options{Inputs: []string{path}})
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	blobURL := "http://" + host + "/v2/library/app/blobs/" + layer.String()
	if resp, _ := do(t, "GET", blobURL); resp.StatusCode != 200 {
		t.Fatalf("before the change: %s", resp.Status)
	}
	// Rewrite the layer's bytes in place (same size), as a copy over the
	// file would, and make sure the modification time moves.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, offsets := b.Bytes()
	if _, err := f.WriteAt([]byte("garbage"), offsets[tarball.BlobPath(layer)]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{blobURL, "http://" + host + "/v2/library/app/manifests/1", "http://" + host + "/v2/acme/multi/blobs/" + b.Index.Images[1].Manifests[0].Layers[0].String()} {
		resp, body := do(t, "GET", u)
		if resp.StatusCode != 500 || errorCode(t, body) != serve.CodeUnknown || !strings.Contains(string(body), "changed on disk") {
			t.Errorf("GET %s after the change: %s %s", u, resp.Status, body)
		}
	}
	ws := w.all()
	var ch *serve.ChangedError
	if len(ws) != 1 || !errors.As(ws[0], &ch) || ch.File != path {
		t.Errorf("warnings %v; want one ChangedError for %s", ws, path)
	}
}

func mustConfig(t testing.TB, img v1.Image, cf *v1.ConfigFile) v1.Image {
	t.Helper()
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The access log has one entry per request.
func TestServeAccessLog(t *testing.T) {
	var got []serve.Access
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	_, host, _ := start(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", standard(t))}, AccessLog: func(a serve.Access) {
		<-mu
		got = append(got, a)
		mu <- struct{}{}
	}})
	do(t, "GET", "http://"+host+"/v2/library/app/manifests/1")
	do(t, "GET", "http://"+host+"/v2/library/app/manifests/9")
	<-mu
	defer func() { mu <- struct{}{} }()
	if len(got) != 2 || got[0].Status != 200 || got[0].Bytes == 0 || got[1].Status != 404 || got[1].Error == "" || got[1].Path != "/v2/library/app/manifests/9" {
		t.Errorf("access log %+v", got)
	}
}
