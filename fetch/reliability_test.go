package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

// proxied is an in-memory registry holding one 1 MiB blob, behind a fault
// proxy; repo names the blob's repository through the proxy.
func proxied(t *testing.T) (p *testenv.FaultProxy, repo name.Repository, desc v1.Descriptor, data []byte) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	data = make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(data)
	_, desc = pushBlob(t, host, data)
	p = testenv.StartFaultProxy(t, host)
	repo, err := name.NewRepository(p.Host + "/test/blob")
	if err != nil {
		t.Fatal(err)
	}
	return p, repo, desc, data
}

func newTestClient(t *testing.T, dir string, opts Options) (*Client, *recorder) {
	t.Helper()
	cache, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	opts.Keychain = authn.NewMultiKeychain()
	opts.Cache = cache
	opts.Progress = rec
	if opts.Retry.Attempts == 0 {
		opts.Retry = RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Second, Stall: opts.Retry.Stall}
	}
	return New(opts), rec
}

func checkCached(t *testing.T, c *Client, desc v1.Descriptor, data []byte) {
	t.Helper()
	got, err := os.ReadFile(c.Cache().Path(desc.Digest))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("cached blob: %v, %d bytes; want the pushed %d bytes", err, len(got), len(data))
	}
}

// A body that stops arriving is dropped after the stall timeout and resumed
// with a Range request; one that is slow but moving is not.
func TestStalledBodyResumes(t *testing.T) {
	p, repo, desc, data := proxied(t)
	p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 8 << 20, After: 300 << 10, Stall: 10 * time.Second, Kind: testenv.KindBlob, Times: 1})
	c, rec := newTestClient(t, t.TempDir(), Options{Access: Access{Retry: RetryPolicy{Stall: 300 * time.Millisecond}}})
	start := time.Now()
	if _, err := c.FetchBlob(t.Context(), repo, desc); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s: the stall was not cut at 300ms", took)
	}
	checkCached(t, c, desc, data)
	if c.Retries() != 1 || rec.retries.Load() != 1 {
		t.Errorf("retries counted %d, reported %d; want 1", c.Retries(), rec.retries.Load())
	}
	p.WaitIdle(time.Second)
	var ranges []string
	for _, r := range p.Requests() {
		if r.Kind == testenv.KindBlob {
			ranges = append(ranges, r.Range)
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=307200-") {
		t.Errorf("blob GETs with Range %q; want a plain GET, then bytes=307200-…", ranges)
	}

	// Slow but moving (about 1.3 s at 800 KiB/s) is no stall.
	p.ClearFaults()
	p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 800 << 10, Kind: testenv.KindBlob})
	c2, _ := newTestClient(t, t.TempDir(), Options{Access: Access{Retry: RetryPolicy{Stall: 300 * time.Millisecond}}})
	if _, err := c2.FetchBlob(t.Context(), repo, desc); err != nil || c2.Retries() != 0 {
		t.Errorf("slow trickle: %v, %d retries; want success without a retry", err, c2.Retries())
	}
}

// A manifest, token or tag-list body cut off midway is retried like a failed
// request (it is read inside the retry loop).
func TestSmallBodyCutIsRetried(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	up, err := name.ParseReference(host + "/test/img:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(up, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	p := testenv.StartFaultProxy(t, host)
	ref, err := name.ParseReference(p.Host + "/test/img:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []testenv.FaultMode{testenv.FaultReset, testenv.FaultTruncate} {
		t.Run(mode.String(), func(t *testing.T) {
			p.ClearFaults()
			rule := p.Inject(testenv.Fault{Mode: mode, Kind: testenv.KindManifest, Method: http.MethodGet, Times: 2})
			c, _ := newTestClient(t, t.TempDir(), Options{})
			m, err := c.GetManifest(t.Context(), ref)
			if err != nil {
				t.Fatal(err)
			}
			if m.Descriptor.Digest != want || rule.Hits() != 2 || c.Retries() != 2 {
				t.Errorf("got %s after %d faults and %d retries; want %s, 2, 2", m.Descriptor.Digest, rule.Hits(), c.Retries(), want)
			}
		})
	}
}

// A request stopped on purpose is not a fault: no retry is counted or
// reported, even when the cancel cause looks like a connection reset (as
// errgroup's does when a sibling failed with one).
func TestCancelledIsNotRetried(t *testing.T) {
	cause := fmt.Errorf("image other: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)})

	t.Run("during the body", func(t *testing.T) {
		p, repo, desc, _ := proxied(t)
		p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 16 << 10, Kind: testenv.KindBlob})
		c, rec := newTestClient(t, t.TempDir(), Options{})
		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(300*time.Millisecond, func() { cancel(cause) })
		_, err := c.FetchBlob(ctx, repo, desc)
		if err == nil || c.Retries() != 0 || rec.retries.Load() != 0 {
			t.Errorf("err %v, %d retries counted, %d reported; want an error and none", err, c.Retries(), rec.retries.Load())
		}
	})

	t.Run("waiting for headers", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			w.WriteHeader(http.StatusOK)
		}))
		defer srv.Close()
		defer close(release)
		var retries int
		rt := NewRetryTransport(RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: time.Second}, false,
			func(string, int, string, time.Duration) { retries++ })
		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(200*time.Millisecond, func() { cancel(cause) })
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/", nil)
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		if err == nil || retries != 0 {
			t.Errorf("err %v, %d retries; want an error and no retry", err, retries)
		}
	})
}

// Clients in separate "processes" (separate caches on one directory)
// fetching one blob at once: each succeeds, the blob crosses the network
// once (twice when the first body is corrupt), and the cache holds it whole.
func TestConcurrentFetchOneCache(t *testing.T) {
	p, repo, desc, data := proxied(t)
	p.Inject(testenv.Fault{Mode: testenv.FaultCorrupt, Kind: testenv.KindBlob, Times: 1})
	p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 4 << 20, Kind: testenv.KindBlob})
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	clients := make([]*Client, 4)
	for i := range clients {
		clients[i], _ = newTestClient(t, dir, Options{})
	}
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.FetchBlob(t.Context(), repo, desc)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	checkCached(t, clients[0], desc, data)
	if n := p.BlobGETs(desc.Digest.String()); n != 2 {
		t.Errorf("the blob was fetched %d times, want 2 (the corrupt body, then a good one)", n)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "ingest", "*")); len(left) != 0 {
		t.Errorf("ingest files left: %v", left)
	}
}

// Waiting for another process's lock on a partial download ends with the
// context (a blocking flock would hang a stopped run).
func TestIngestLockWaitEndsWithContext(t *testing.T) {
	p, repo, desc, _ := proxied(t)
	c, _ := newTestClient(t, t.TempDir(), Options{})
	f, err := os.OpenFile(c.Cache().partialPath(desc.Digest), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.FetchBlob(ctx, repo, desc)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("FetchBlob behind a held lock: %v after %s; want the deadline at 200ms", err, time.Since(start))
	}
	if n := p.Count(testenv.KindBlob, ""); n != 0 {
		t.Errorf("%d blob requests while another process held the download", n)
	}
}

// A partial file found beside a complete blob (made by a writer that
// arrived after the blob was finished) is removed, not left to pile up.
func TestIngestDropsUselessPartial(t *testing.T) {
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("manifest bytes")
	h := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(data))}
	if err := cache.Put(h, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cache.partialPath(h), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ing, done, err := cache.openIngest(t.Context(), h)
	if err != nil || !done || ing != nil {
		t.Fatalf("openIngest: %v, done %v; want done", err, done)
	}
	if _, err := os.Stat(cache.partialPath(h)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the useless partial is still there: %v", err)
	}
}
