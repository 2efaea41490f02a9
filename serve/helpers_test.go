package serve_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify/bundletest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// image returns a random single-platform image (two layers of 2 KiB).
func image(t testing.TB, seed int64) v1.Image {
	t.Helper()
	img, err := bundletest.RandomImage(2048, 2, "linux/amd64", seed)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func index(t testing.TB, seed int64) v1.ImageIndex {
	t.Helper()
	idx, err := bundletest.RandomIndex(1024, 1, seed, "linux/amd64", "linux/arm64/v8")
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// newBundle builds a bundle of refs created at created (RFC 3339).
func newBundle(t testing.TB, created string, refs ...bundletest.Ref) *bundletest.Bundle {
	t.Helper()
	b, err := bundletest.New(refs...)
	if err != nil {
		t.Fatal(err)
	}
	b.Index.Created = created
	if err := b.SetIndex(); err != nil {
		t.Fatal(err)
	}
	return b
}

// write writes b to dir/name and returns the path.
func write(t testing.TB, dir, name string, b *bundletest.Bundle) string {
	t.Helper()
	data, _ := b.Bytes()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// warnings collects Options.Warn.
type warnings struct {
	mu   sync.Mutex
	errs []error
}

func (w *warnings) add(err error) { w.mu.Lock(); w.errs = append(w.errs, err); w.mu.Unlock() }
func (w *warnings) all() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

// start opens the bundles and serves them on an httptest server; it
// returns the server's host:port.
func start(t testing.TB, opts serve.Options) (*serve.Registry, string, *warnings) {
	t.Helper()
	w := &warnings{}
	if opts.Warn == nil {
		opts.Warn = w.add
	}
	r, err := serve.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	s := httptest.NewServer(r.Handler())
	t.Cleanup(s.Close)
	return r, strings.TrimPrefix(s.URL, "http://"), w
}

// do sends a request and returns the answer with its body read.
func do(t testing.TB, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, body
}

// errorCode returns the first code of a spec error body.
func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not a spec error body: %q (%v)", body, err)
	}
	if e.Errors[0].Message == "" {
		t.Errorf("error body without a message: %s", body)
	}
	return e.Errors[0].Code
}

// rawOf returns the stored bytes of blob h of b.
func rawOf(t testing.TB, b *bundletest.Bundle, h v1.Hash) []byte {
	t.Helper()
	i := b.Find(tarball.BlobPath(h))
	if i < 0 {
		t.Fatalf("no blob %s in the fixture", h)
	}
	return b.Entries[i].Data
}

// remoteOpts are the go-containerregistry options of a client (crane's).
func remoteOpts(t testing.TB) []remote.Option {
	return []remote.Option{remote.WithContext(t.Context())}
}
