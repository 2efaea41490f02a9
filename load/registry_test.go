package load

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestRewriteRef(t *testing.T) {
	host, _ := name.NewRegistry("registry.local:5000")
	tests := []struct {
		ref, prefix, want string
	}{
		{"docker.io/library/debian:bookworm", "mirror", "registry.local:5000/mirror/library/debian:bookworm"},
		{"debian:bookworm", "", "registry.local:5000/library/debian:bookworm"},
		{"ghcr.io/acme/api:1", "mirror", "registry.local:5000/mirror/acme/api:1"},
		{"ghcr.io/acme/api:1", "a/b", "registry.local:5000/a/b/acme/api:1"},
		{"127.0.0.1:5000/seed/app-a:1", "mirror", "registry.local:5000/mirror/seed/app-a:1"},
		{"quay.io/x/y@sha256:" + strings.Repeat("ab", 32), "m", "registry.local:5000/m/x/y@sha256:" + strings.Repeat("ab", 32)},
	}
	for _, tt := range tests {
		got, err := RewriteRef(mustParseRef(t, tt.ref), host, tt.prefix)
		if err != nil {
			t.Errorf("RewriteRef(%s, %q): %v", tt.ref, tt.prefix, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("RewriteRef(%s, %q) = %s, want %s", tt.ref, tt.prefix, got, tt.want)
		}
		// RepositoryPath is the same rule without the host (bundle serve).
		if p, want := RepositoryPath(mustParseRef(t, tt.ref), tt.prefix), got.Context().RepositoryStr(); p != want {
			t.Errorf("RepositoryPath(%s, %q) = %s, want %s", tt.ref, tt.prefix, p, want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		spec, want, bad string
	}{
		{spec: "oci:/tmp/x", want: "OCI layout /tmp/x"},
		{spec: "docker://127.0.0.1:5000/mirror/", want: "registry 127.0.0.1:5000/mirror"},
		{spec: "docker://reg.example.com", want: "registry reg.example.com"},
		{spec: "docker", want: "docker daemon unix:///var/run/docker.sock"},
		{spec: "oci:", bad: "no directory"},
		{spec: "docker://", bad: "no registry host"},
		{spec: "docker://reg:5000/Upper", bad: "prefix"},
		{spec: "s3://bucket", bad: "not docker"},
	}
	t.Setenv("DOCKER_HOST", "")
	for _, tt := range tests {
		tg, err := ParseTarget(tt.spec, Options{})
		switch {
		case tt.bad != "":
			var se *SpecError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.bad) {
				t.Errorf("ParseTarget(%q) = %v, %v; want a SpecError saying %q", tt.spec, tg, err, tt.bad)
			}
		case err != nil:
			t.Errorf("ParseTarget(%q): %v", tt.spec, err)
		case tg.String() != tt.want:
			t.Errorf("ParseTarget(%q) = %s, want %s", tt.spec, tg, tt.want)
		}
	}
}

// faultyRegistry is the in-memory registry behind a handler that fails
// requests as fault says.
type faultyRegistry struct {
	next  http.Handler
	fault func(r *http.Request, n int64) string // "", "503", "reset"
	n     atomic.Int64
}

func (f *faultyRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode := f.fault(r, f.n.Add(1))
	switch mode {
	case "503":
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	case "reset":
		// Read part of the body, then cut the connection.
		io.CopyN(io.Discard, r.Body, 512)
		testenv.ResetConnection(w)
	default:
		f.next.ServeHTTP(w, r)
	}
}

func newFaulty(t *testing.T, fault func(r *http.Request, n int64) string) (*faultyRegistry, string) {
	f := &faultyRegistry{next: registry.New(registry.Logger(log.New(io.Discard, "", 0))), fault: fault}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return f, strings.TrimPrefix(s.URL, "http://")
}

var fastRetry = fetch.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: 10 * time.Millisecond}

func isUpload(r *http.Request) bool {
	return strings.Contains(r.URL.Path, "/blobs/uploads/") && (r.Method == http.MethodPatch || r.Method == http.MethodPut)
}

// A registry that fails some uploads and manifest PUTs with 503 or a
// broken connection still ends with every image, with its digest.
func TestRegistryFaults(t *testing.T) {
	// Per repository: the 1st and 3rd blob upload requests fail (a 503, a
	// cut connection), and the first manifest PUT (a 503).
	var failures atomic.Int64
	var mu sync.Mutex
	count := map[string]int{}
	_, host := newFaulty(t, func(r *http.Request, _ int64) string {
		repo, _, _ := strings.Cut(strings.Replace(r.URL.Path, "/manifests/", "/blobs/uploads/", 1), "/blobs/uploads/")
		var key string
		switch {
		case isUpload(r):
			key = "upload " + repo
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
			key = "manifest " + repo
		default:
			return ""
		}
		mu.Lock()
		count[key]++
		n := count[key]
		mu.Unlock()
		switch {
		case strings.HasPrefix(key, "upload") && n == 1, strings.HasPrefix(key, "manifest") && n == 1:
			failures.Add(1)
			return "503"
		case strings.HasPrefix(key, "upload") && n == 3:
			failures.Add(1)
			return "reset"
		}
		return ""
	})
	images, _ := standardImages(t, "example.com/faults")
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{})
	tg, err := NewRegistry(host+"/mirror", Options{Jobs: 3, Access: fetch.Access{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	res, err := tg.Load(context.Background(), b, sel, rec)
	if err != nil {
		t.Fatalf("Load through a faulty registry: %v", err)
	}
	if failures.Load() == 0 {
		t.Fatal("the proxy injected no fault")
	}
	t.Logf("%d faults injected, %d retries reported", failures.Load(), rec.retries)
	for _, im := range sel {
		ref, _ := tg.rewrite(im)
		desc, err := remote.Head(ref)
		if err != nil || desc.Digest != im.Digest {
			t.Errorf("%s: %v %v, want %s", ref, desc, err, im.Digest)
		}
	}
	if res.Count(StatusLoaded) != len(sel) {
		t.Errorf("%d loaded, want %d", res.Count(StatusLoaded), len(sel))
	}
}

// A registry that refuses every tag: the load fails with the registry's
// error, and no tag names anything, though blobs and manifests went in.
func TestRegistryNoTagOnFailure(t *testing.T) {
	_, host := newFaulty(t, func(r *http.Request, n int64) string {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "/manifests/sha256:") {
			return "503"
		}
		return ""
	})
	images, _ := standardImages(t, "example.com/notag")
	fx := writeBundle(t, t.TempDir(), images[:4])
	b, sel := openFixture(t, fx, Selection{})
	tg, err := NewRegistry(host+"/m", Options{Jobs: 2, Access: fetch.Access{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tg.Load(context.Background(), b, sel, nil)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Load: %v, want the registry's 503", err)
	}
	for _, im := range sel {
		ref, _ := tg.rewrite(im)
		if desc, err := remote.Head(ref); err == nil {
			t.Errorf("%s names %s after a failed load", ref, desc.Digest)
		}
		if _, err := remote.Head(ref.Context().Digest(im.Digest.String())); err != nil {
			t.Errorf("%s@%s: %v; manifests go in before tags", ref.Context(), im.Digest, err)
		}
	}
}

// A load interrupted in the middle of the uploads leaves no tag; run again,
// it sends only what is missing and finishes.
func TestRegistryInterruptedThenResumed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var uploads atomic.Int64
	_, host := newFaulty(t, func(r *http.Request, n int64) string {
		if isUpload(r) && r.Method == http.MethodPut && uploads.Add(1) == 4 {
			cancel() // the user presses ^C after a few blobs
		}
		return ""
	})
	images, _ := standardImages(t, "example.com/resume")
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{})
	tg, err := NewRegistry(host+"/m", Options{Jobs: 1, Access: fetch.Access{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Load(ctx, b, sel, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Load: %v, want context.Canceled", err)
	}
	for _, im := range sel {
		ref, _ := tg.rewrite(im)
		if desc, err := remote.Head(ref); err == nil {
			t.Errorf("%s names %s after an interrupted load", ref, desc.Digest)
		}
	}
	res, err := tg.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count(StatusLoaded) != len(sel) || res.BlobsPresent == 0 {
		t.Errorf("re-run: %d loaded, %d blobs present; want %d loaded and the blobs of the first run kept: %+v",
			res.Count(StatusLoaded), res.BlobsPresent, len(sel), res.Stats)
	}
	for _, im := range sel {
		ref, _ := tg.rewrite(im)
		if desc, err := remote.Head(ref); err != nil || desc.Digest != im.Digest {
			t.Errorf("%s: %v %v, want %s", ref, desc, err, im.Digest)
		}
	}
}

// Blobs shared by several repositories are sent once and mounted into the
// others.
func TestRegistryMountsSharedBlobs(t *testing.T) {
	images, shared := standardImages(t, "example.com/mount")
	fx := writeBundle(t, t.TempDir(), images[:2])
	b, sel := openFixture(t, fx, Selection{})
	tg, err := NewRegistry(realRegistry(t)+"/mnt", Options{Jobs: 1}) // distribution links blobs per repository
	if err != nil {
		t.Fatal(err)
	}
	res, err := tg.Load(context.Background(), b, sel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsMounted != 1 {
		t.Errorf("%d blobs mounted, want 1 (the shared layer %s): %+v", res.BlobsMounted, shared, res.Stats)
	}
}

// Against CNCF distribution, an upload whose PATCH is cut after part of
// its body reached the registry is started again in a new session (sending
// the PATCH again would append the bytes after the part already there).
func TestRegistryBrokenUploadsDistribution(t *testing.T) {
	host := realRegistry(t)
	var broken atomic.Int64
	var mu sync.Mutex
	patches := map[string]int{} // per repository
	p := testenv.StartReverseProxy(t, host, testenv.ProxyHooks{Request: func(p *testenv.ReverseProxy, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		repo, _, _ := strings.Cut(r.URL.Path, "/blobs/uploads/")
		mu.Lock()
		patches[repo]++
		first := patches[repo] == 1
		mu.Unlock()
		if !first {
			return false
		}
		broken.Add(1)
		// Half the body reaches the registry; then the client's
		// connection is cut.
		data, _ := io.ReadAll(io.LimitReader(r.Body, r.ContentLength/2))
		req, _ := http.NewRequest(http.MethodPatch, "http://"+p.Upstream+r.URL.RequestURI(), bytes.NewReader(data))
		req.Header = r.Header.Clone()
		req.Host = r.Host
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		testenv.ResetConnection(w)
		return true
	}})
	images, _ := standardImages(t, "example.com/broken")
	fx := writeBundle(t, t.TempDir(), images)
	b, sel := openFixture(t, fx, Selection{})
	tg, err := NewRegistry(p.Host+"/broken", Options{Jobs: 2, Access: fetch.Access{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Load(context.Background(), b, sel, nil); err != nil {
		t.Fatalf("Load with broken uploads: %v", err)
	}
	if broken.Load() == 0 {
		t.Fatal("no upload was broken")
	}
	for _, im := range sel {
		ref, _ := tg.rewrite(im)
		desc, err := remote.Head(ref)
		if err != nil || desc.Digest != im.Digest {
			t.Errorf("%s: %v %v, want %s", ref, desc, err, im.Digest)
		}
	}
}

// TestNewRegistryAccessDefaults: a registry target fills Access's zero
// values with fetch's defaults and keeps a stall window given with the
// default attempts (bundle load --retries 0 --stall-timeout 5s).
func TestNewRegistryAccessDefaults(t *testing.T) {
	r, err := NewRegistry("reg.example:5000/m", Options{Access: fetch.Access{Retry: fetch.RetryPolicy{Stall: 5 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.opts.Retry.Attempts != fetch.DefaultRetryPolicy.Attempts || r.opts.Retry.Stall != 5*time.Second {
		t.Errorf("Retry = %+v, want the default attempts and a 5s stall window", r.opts.Retry)
	}
	if r.opts.Keychain == nil {
		t.Error("no keychain: want authn.DefaultKeychain")
	}
}
