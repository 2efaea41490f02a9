package fetch

// A hostile or broken registry cannot hang a client (issue 11, class 4):
// redirect loops, bodies that ignore Range, tag lists whose pages loop,
// oversized manifests, bodies longer than their descriptor, and drips.
// Each operation runs under a deadline, so code that would loop forever
// fails the test at the deadline instead of hanging it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// bounded runs f under a deadline of d and fails the test if f was still
// running then (the old code ran forever).
func bounded(t *testing.T, d time.Duration, f func(ctx context.Context) error) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("still running after %s (it would run forever): %v", d, err)
	}
	return took, err
}

// hostileRegistry is an in-memory registry with one image (tagged "v1")
// and a 1 MiB blob, behind a fault proxy.
type hostileRegistry struct {
	p     *testenv.FaultProxy
	repo  name.Repository // through the proxy
	image name.Tag
}

func newHostileRegistry(t *testing.T) (*hostileRegistry, []byte) {
	t.Helper()
	p, repo, _, data := proxied(t)
	img, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	up, err := name.NewTag(p.Upstream + "/" + repo.RepositoryStr() + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(up, img); err != nil {
		t.Fatal(err)
	}
	return &hostileRegistry{p: p, repo: repo, image: repo.Tag("v1")}, data
}

// noCacheEntry checks that the blob is not in the cache.
func noCacheEntry(t *testing.T, c *Client, h string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(c.Cache().dir, "blobs", "sha256", strings.TrimPrefix(h, "sha256:"))); err == nil {
		t.Errorf("blob %s is in the cache after a failed download", h)
	}
}

// A redirect loop stops after 10 redirects: on a manifest and a tag list
// (go-containerregistry's clients have no redirect limit of their own) and
// on a blob.
func TestRedirectLoopStops(t *testing.T) {
	h, _ := newHostileRegistry(t)
	_, _, desc, _ := proxied(t)
	c, _ := newTestClient(t, t.TempDir(), Options{})
	for _, tt := range []struct {
		kind testenv.RequestKind
		do   func(ctx context.Context) error
	}{
		{testenv.KindManifest, func(ctx context.Context) error { _, err := c.GetManifest(ctx, h.image); return err }},
		{testenv.KindTags, func(ctx context.Context) error { _, err := c.ListTags(ctx, h.repo); return err }},
		{testenv.KindBlob, func(ctx context.Context) error { _, err := c.FetchBlob(ctx, h.repo, desc); return err }},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			h.p.ClearFaults()
			rule := h.p.Inject(testenv.Fault{Mode: testenv.FaultRedirectLoop, Kind: tt.kind})
			took, err := bounded(t, 20*time.Second, tt.do)
			if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
				t.Fatalf("err %v, want one that stopped after 10 redirects", err)
			}
			// 11 requests: the first and 10 redirects (net/http may replay
			// one on a reused connection).
			if n := rule.Hits(); n < 10 || n > 12 {
				t.Errorf("%d requests redirected, want 10 or 11", n)
			}
			t.Logf("%v (%d requests, %s)", err, rule.Hits(), took.Round(time.Millisecond))
		})
	}
}

// A blob answered 200 with half its bytes, ignoring Range, fails after
// the retry policy's attempts: each answer restarts the blob, and each
// break counts.
func TestRangeIgnoredHalfBodyFails(t *testing.T) {
	p, repo, desc, _ := proxied(t)
	rule := p.Inject(testenv.Fault{Mode: testenv.FaultIgnoreRange, Kind: testenv.KindBlob})
	c, _ := newTestClient(t, t.TempDir(), Options{Access: Access{Retry: RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Second}}})
	took, err := bounded(t, 20*time.Second, func(ctx context.Context) error { _, err := c.FetchBlob(ctx, repo, desc); return err })
	if err == nil || !strings.Contains(err.Error(), desc.Digest.String()) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want an unexpected EOF naming %s", err, desc.Digest)
	}
	if n := rule.Hits(); n != 3 {
		t.Errorf("%d GETs, want 3 (--retries 3)", n)
	}
	if c.Retries() != 2 {
		t.Errorf("%d retries counted, want 2", c.Retries())
	}
	noCacheEntry(t, c, desc.Digest.String())
	t.Logf("%v (%d GETs, %s)", err, rule.Hits(), took.Round(time.Millisecond))
}

// Every break counts, also one that brought bytes: a registry that cuts
// every body after 1 KiB fails the blob after the attempts instead of
// being followed 1 KiB at a time.
func TestEveryBreakCounts(t *testing.T) {
	p, repo, desc, _ := proxied(t)
	rule := p.Inject(testenv.Fault{Mode: testenv.FaultTruncate, After: 1 << 10, Kind: testenv.KindBlob})
	c, _ := newTestClient(t, t.TempDir(), Options{Access: Access{Retry: RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Second}}})
	_, err := bounded(t, 20*time.Second, func(ctx context.Context) error { _, err := c.FetchBlob(ctx, repo, desc); return err })
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want unexpected EOF", err)
	}
	if n := rule.Hits(); n != 3 {
		t.Errorf("%d GETs, want 3 (one per attempt; 1024 of them before)", n)
	}
}

// A blob body longer than its descriptor says fails (after the attempts):
// the extra bytes never reach the cache.
func TestLongerThanDescriptorFails(t *testing.T) {
	p, repo, desc, _ := proxied(t)
	rule := p.Inject(testenv.Fault{Mode: testenv.FaultLonger, Kind: testenv.KindBlob})
	c, _ := newTestClient(t, t.TempDir(), Options{Access: Access{Retry: RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: time.Second}}})
	_, err := bounded(t, 20*time.Second, func(ctx context.Context) error { _, err := c.FetchBlob(ctx, repo, desc); return err })
	var se *SizeError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), desc.Digest.String()) {
		t.Fatalf("err %v, want a size mismatch naming %s", err, desc.Digest)
	}
	if rule.Hits() != 2 {
		t.Errorf("%d GETs, want 2", rule.Hits())
	}
	noCacheEntry(t, c, desc.Digest.String())
}

// A tag list whose next-page link points back to itself stops at once
// (memory grew with each page); one with endless distinct pages stops at
// MaxListPages, and pages that hold too much at MaxListBytes.
func TestTagListLoopStops(t *testing.T) {
	h, _ := newHostileRegistry(t)
	c, _ := newTestClient(t, t.TempDir(), Options{})
	rule := h.p.Inject(testenv.Fault{Mode: testenv.FaultLinkLoop, Kind: testenv.KindTags})
	_, err := bounded(t, 20*time.Second, func(ctx context.Context) error { _, err := c.ListTags(ctx, h.repo); return err })
	var le *ListError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "a loop") || !strings.Contains(err.Error(), h.repo.String()) {
		t.Fatalf("err %v, want a listing loop naming %s", err, h.repo)
	}
	if rule.Hits() != 2 {
		t.Errorf("%d pages read, want 2", rule.Hits())
	}

	// A hand-written registry: every page links to a new one, or is big.
	var pages atomic.Int64
	big := strings.Repeat("t", 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		n := pages.Add(1)
		w.Header().Set("Link", fmt.Sprintf(`</v2/loop/tags/list?last=%d>; rel="next"`, n))
		fmt.Fprintf(w, `{"name":"loop","tags":["t%d"]}`, n)
	}))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/loop")
	if err != nil {
		t.Fatal(err)
	}
	took, err := bounded(t, 60*time.Second, func(ctx context.Context) error { _, err := c.ListTags(ctx, repo); return err })
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "more than 10000 pages") {
		t.Fatalf("err %v, want the page limit", err)
	}
	t.Logf("%v (%d pages, %s)", err, pages.Load(), took.Round(time.Millisecond))

	pages.Store(0)
	srvBig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		n := pages.Add(1)
		w.Header().Set("Link", fmt.Sprintf(`</v2/loop/tags/list?last=%d>; rel="next"`, n))
		fmt.Fprintf(w, `{"name":"loop","tags":[%q]}`, big)
	}))
	t.Cleanup(srvBig.Close)
	repoBig, _ := name.NewRepository(strings.TrimPrefix(srvBig.URL, "http://") + "/loop")
	_, err = bounded(t, 60*time.Second, func(ctx context.Context) error { _, err := c.ListTags(ctx, repoBig); return err })
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "over 64 MiB") {
		t.Fatalf("err %v, want the byte limit", err)
	}
	if n := pages.Load(); n != 64 {
		t.Errorf("%d pages of 1 MiB read, want 64 (the 64th takes it over 64 MiB)", n)
	}
}

// A manifest over tarball.MaxManifestSize fails without being read into memory:
// with a Content-Length, before any byte of it; without one, at the limit.
func TestOversizedManifestFails(t *testing.T) {
	h, _ := newHostileRegistry(t)
	c, _ := newTestClient(t, t.TempDir(), Options{})
	rule := h.p.Inject(testenv.Fault{Mode: testenv.FaultOversize, Size: 1 << 30, Kind: testenv.KindManifest})
	_, err := bounded(t, 20*time.Second, func(ctx context.Context) error { _, err := c.GetManifest(ctx, h.image); return err })
	var be *BodyTooLargeError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), h.image.String()) {
		t.Fatalf("err %v, want a body over the limit naming %s", err, h.image)
	}
	if rule.Hits() != 1 {
		t.Errorf("%d GETs, want 1 (not retried)", rule.Hits())
	}
	h.p.WaitIdle(5 * time.Second)
	if sent := h.p.BodyBytes(testenv.KindManifest); sent > 8<<20 {
		t.Errorf("%d bytes of the 1 GiB manifest were read", sent)
	}

	// No Content-Length: read up to the limit, then stopped.
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Transfer-Encoding", "chunked")
		buf := make([]byte, 64<<10)
		for range (1 << 30) / len(buf) {
			n, err := w.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	ref, _ := name.NewTag(strings.TrimPrefix(srv.URL, "http://") + "/big:v1")
	_, err = bounded(t, 20*time.Second, func(ctx context.Context) error { _, err := c.GetManifest(ctx, ref); return err })
	if !errors.As(err, &be) {
		t.Fatalf("err %v, want a body over the limit", err)
	}
	if s := sent.Load(); s > 16<<20 {
		t.Errorf("the server could send %d bytes", s)
	}
}

// A 1 byte / 200 ms drip is a stall when the stall timeout is 300 ms: a
// manifest, and a blob, fail after the attempts instead of taking hours.
func TestDripIsAStall(t *testing.T) {
	h, _ := newHostileRegistry(t)
	_, _, desc, _ := proxied(t)
	c, _ := newTestClient(t, t.TempDir(), Options{Access: Access{Retry: RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: time.Second, Stall: 300 * time.Millisecond}}})
	for _, tt := range []struct {
		kind testenv.RequestKind
		do   func(ctx context.Context) error
	}{
		{testenv.KindManifest, func(ctx context.Context) error { _, err := c.GetManifest(ctx, h.image); return err }},
		{testenv.KindBlob, func(ctx context.Context) error { _, err := c.FetchBlob(ctx, h.repo, desc); return err }},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			h.p.ClearFaults()
			rule := h.p.Inject(testenv.Fault{Mode: testenv.FaultDrip, Every: 200 * time.Millisecond, Kind: tt.kind})
			took, err := bounded(t, 30*time.Second, tt.do)
			var se *StallError
			if !errors.As(err, &se) {
				t.Fatalf("err %v, want a stall", err)
			}
			if rule.Hits() != 2 {
				t.Errorf("%d requests, want 2 (--retries 2)", rule.Hits())
			}
			t.Logf("%v (%d requests, %s)", err, rule.Hits(), took.Round(time.Millisecond))
		})
	}
}

// An upload that the registry reads at 1 byte / 200 ms is a stall too (for
// bundle load), and so is an answer that does not come within the stall
// timeout; one that comes in time is not.
func TestUploadDripIsAStall(t *testing.T) {
	// (The socket buffers hold megabytes that the handler could go on
	// reading after the client gave up: stop it when the test ends.)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [1]byte
		for {
			if _, err := r.Body.Read(b[:]); err != nil {
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-stop:
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	rt := NewRetryTransport(RetryPolicy{Attempts: 1, Stall: 300 * time.Millisecond}, false, nil)
	_, err := bounded(t, 20*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL+"/v2/x/blobs/uploads/1", strings.NewReader(strings.Repeat("x", 4<<20)))
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	var se *StallError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want a stall", err)
	}
	t.Logf("%v", err)

	// Once the upload is sent, an answer must come within the stall
	// timeout too (a small upload sits in the socket buffers, so a
	// registry that stops reading it looks like one that does not answer).
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		time.Sleep(d)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(slow.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, slow.URL+"/v2/x/blobs/uploads/1?wait=700ms", strings.NewReader("abc"))
	_, err = rt.RoundTrip(req)
	if !errors.As(err, &se) || !se.Answer {
		t.Fatalf("an answer 700ms after the upload: err %v, want a stall waiting for the answer", err)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPut, slow.URL+"/v2/x/blobs/uploads/1?wait=50ms", strings.NewReader("abc"))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("an answer 50ms after the upload: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v", b, err)
	}
}
