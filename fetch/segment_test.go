package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// segOpts make every blob of the tests (1-2 MiB) a segmented download:
// pieces of 128 KiB, four connections per blob.
var segOpts = Options{SegmentThreshold: 256 << 10}

// segRegistry is an in-memory registry, wrapped by wrap (nil: none),
// holding one random blob of size bytes; it returns the registry's host.
func segRegistry(t *testing.T, size int, seed byte, wrap func(http.Handler) http.Handler) (host string, repo name.Repository, desc v1.Descriptor, data []byte) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(nilLogger()))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	data = make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(data)
	repo, desc = pushBlob(t, host, data)
	return host, repo, desc, data
}

// proxiedSeg is segRegistry behind a fault proxy; repo goes through it.
func proxiedSeg(t *testing.T, size int, seed byte) (*testenv.FaultProxy, name.Repository, v1.Descriptor, []byte) {
	t.Helper()
	host, _, desc, data := segRegistry(t, size, seed, nil)
	p := testenv.StartFaultProxy(t, host)
	repo, err := name.NewRepository(p.Host + "/test/blob")
	if err != nil {
		t.Fatal(err)
	}
	return p, repo, desc, data
}

// blobRanges are the Range headers of the blob GETs the proxy answered.
func blobRanges(p *testenv.FaultProxy) []string {
	p.WaitIdle(5 * time.Second)
	var out []string
	for _, r := range p.Requests() {
		if r.Kind == testenv.KindBlob && r.Method == http.MethodGet {
			out = append(out, r.Range)
		}
	}
	return out
}

func parseRange(t *testing.T, r string) (a, b int64) {
	t.Helper()
	if _, err := fmt.Sscanf(r, "bytes=%d-%d", &a, &b); err != nil {
		t.Fatalf("Range %q: %v", r, err)
	}
	return a, b
}

func noIngestLeft(t *testing.T, c *Client) {
	t.Helper()
	if left, _ := filepath.Glob(filepath.Join(c.Cache().Dir(), "ingest", "*")); len(left) != 0 {
		t.Errorf("ingest files left: %v", left)
	}
}

// inflight counts the blob GETs a handler is answering at once. Each is
// held until gate of them are in flight (or 10 s pass, so a client that
// asks one at a time fails the test instead of hanging it).
type inflight struct {
	next    http.Handler
	gate    int
	mu      sync.Mutex
	now     int
	most    int
	ranges  []string
	reached chan struct{}
}

func (h *inflight) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
		h.next.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	h.now++
	h.most = max(h.most, h.now)
	h.ranges = append(h.ranges, r.Header.Get("Range"))
	if h.now >= h.gate && h.reached != nil {
		close(h.reached)
		h.reached = nil
	}
	reached := h.reached
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.now--
		h.mu.Unlock()
	}()
	if reached != nil {
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	}
	h.next.ServeHTTP(w, r)
}

// A blob over the threshold is fetched as several Range requests that
// overlap in time, which together cover it exactly; the cache gets the
// verified blob and nothing is left in ingest.
func TestSegmentedFetch(t *testing.T) {
	h := &inflight{gate: 2, reached: make(chan struct{})}
	_, repo, desc, data := segRegistry(t, 2<<20, 1, func(next http.Handler) http.Handler { h.next = next; return h })
	c, rec := newTestClient(t, t.TempDir(), segOpts)
	n, err := c.FetchBlob(t.Context(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	checkCached(t, c, desc, data)
	noIngestLeft(t, c)
	if n != desc.Size || rec.bytes.Load() != desc.Size {
		t.Errorf("received %d bytes, reported %d; want %d (no byte twice)", n, rec.bytes.Load(), desc.Size)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ranges) < 2 || h.most < 2 {
		t.Fatalf("%d blob GETs, at most %d at once; want several at once", len(h.ranges), h.most)
	}
	// Every request asks for a range, and together they start at 0 and
	// reach the end without a gap.
	var covered []span
	for _, r := range h.ranges {
		a, b := parseRange(t, r)
		covered = append(covered, span{a, b + 1})
	}
	slices.SortFunc(covered, func(x, y span) int { return int(x.a - y.a) })
	var end int64
	for _, sp := range covered {
		if sp.a > end {
			t.Errorf("no request asked for bytes %d-%d (ranges %q)", end, sp.a-1, h.ranges)
		}
		end = max(end, sp.b)
	}
	if end != desc.Size {
		t.Errorf("ranges end at %d, want %d", end, desc.Size)
	}
	if c.Retries() != 0 {
		t.Errorf("%d retries, want none", c.Retries())
	}
}

// Blobs under the threshold, and every blob when segments are off, are
// fetched as before: one GET without Range.
func TestSegmentsOff(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"under the threshold", Options{SegmentThreshold: 4 << 20}},
		{"threshold negative", Options{SegmentThreshold: -1}},
		{"one segment", Options{SegmentThreshold: 256 << 10, Segments: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, repo, desc, data := proxiedSeg(t, 2<<20, 2)
			c, _ := newTestClient(t, t.TempDir(), tt.opts)
			if _, err := c.FetchBlob(t.Context(), repo, desc); err != nil {
				t.Fatal(err)
			}
			checkCached(t, c, desc, data)
			if r := blobRanges(p); len(r) != 1 || r[0] != "" {
				t.Errorf("blob GETs with Range %q, want one plain GET", r)
			}
		})
	}
}

// A segment whose answer goes wrong is asked again from its own offset:
// after a body cut short, from where it stopped; after a 416, from its
// start. Other segments go on.
func TestSegmentBreakResumes(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fault   testenv.Fault
		resumed func(a int64) int64 // where the retry starts, from the faulted start
	}{
		{"body cut", testenv.Fault{Mode: testenv.FaultTruncate, After: 100000}, func(a int64) int64 { return a + 100000 }},
		{"body stalled", testenv.Fault{Mode: testenv.FaultSlow, Rate: 1 << 20, After: 100000, Stall: 10 * time.Second}, func(a int64) int64 { return a + 100000 }},
		{"416", testenv.Fault{Mode: testenv.FaultStatus, Status: http.StatusRequestedRangeNotSatisfiable}, func(a int64) int64 { return a }},
		{"503", testenv.Fault{Mode: testenv.FaultStatus, Status: http.StatusServiceUnavailable}, func(a int64) int64 { return a }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, repo, desc, data := proxiedSeg(t, 2<<20, 3)
			f := tt.fault
			f.Kind, f.Method, f.Nth = testenv.KindBlob, http.MethodGet, 1
			rule := p.Inject(f)
			opts := segOpts
			opts.Retry.Stall = 300 * time.Millisecond // for the stalled body
			c, rec := newTestClient(t, t.TempDir(), opts)
			n, err := c.FetchBlob(t.Context(), repo, desc)
			if err != nil {
				t.Fatal(err)
			}
			checkCached(t, c, desc, data)
			noIngestLeft(t, c)
			if rule.Hits() != 1 || c.Retries() != 1 || rec.retries.Load() != 1 {
				t.Errorf("%d faults, %d retries counted, %d reported; want 1 each", rule.Hits(), c.Retries(), rec.retries.Load())
			}
			// Bytes written before the break are kept.
			if n != desc.Size {
				t.Errorf("received %d bytes, want %d", n, desc.Size)
			}
			var faulted string
			for _, r := range p.Requests() {
				if r.Fault != "" {
					faulted = r.Range
				}
			}
			// The retry asks from want to at most the faulted end (a
			// split may have given the rest to another connection).
			a, b := parseRange(t, faulted)
			want := tt.resumed(a)
			retries := 0
			for _, r := range blobRanges(p) {
				if x, y := parseRange(t, r); x == want && y <= b {
					retries++
				}
			}
			if want == a {
				retries-- // the faulted request itself
			}
			if retries != 1 {
				t.Errorf("faulted %s; %d requests start at %d, want 1 (all: %q)", faulted, retries, want, blobRanges(p))
			}
		})
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// A segment answered with the wrong Content-Range is asked again from its
// start; the bytes of the wrong answer are not written.
func TestSegmentWrongContentRange(t *testing.T) {
	var once atomic.Bool
	var asked []string
	var mu sync.Mutex
	_, repo, desc, data := segRegistry(t, 1<<20, 4, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rg := r.Header.Get("Range"); rg != "" {
				mu.Lock()
				asked = append(asked, rg)
				mu.Unlock()
				var a, b int64
				if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &a, &b); err == nil && a > 0 && once.CompareAndSwap(false, true) {
					r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", a-1, b)) // one byte early
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	c, _ := newTestClient(t, t.TempDir(), segOpts)
	if _, err := c.FetchBlob(t.Context(), repo, desc); err != nil {
		t.Fatal(err)
	}
	checkCached(t, c, desc, data)
	mu.Lock()
	defer mu.Unlock()
	if c.Retries() != 1 {
		t.Errorf("%d retries, want 1 (ranges %q)", c.Retries(), asked)
	}
	// The shifted range was asked twice: the wrong answer, then again.
	twice := false
	for _, r := range asked {
		twice = twice || countOf(asked, r) == 2
	}
	if !twice {
		t.Errorf("no range was asked again after a wrong answer: %q", asked)
	}
}

// A segment whose resume is answered 416 starts over from its start: the
// bytes it had are fetched again. (Segment 0 is held back meanwhile, so
// that none of them is hashed yet: hashed bytes are never written again.)
func TestSegmentRestartsAfter416(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	var cut int64 = -1 // the start of the segment cut short
	release := make(chan struct{})
	var once sync.Once
	_, repo, desc, data := segRegistry(t, 1<<20, 12, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rg := r.Header.Get("Range")
			var a, b int64
			if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &a, &b); err != nil || r.Method != http.MethodGet {
				next.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			asked = append(asked, rg)
			first := cut < 0 && a > 0
			if first {
				cut = a
			}
			resumed := cut >= 0 && a == cut+50000
			restarted := !first && cut >= 0 && a == cut
			mu.Unlock()
			switch {
			case a == 0:
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
				next.ServeHTTP(w, r)
			case restarted:
				once.Do(func() { close(release) })
				next.ServeHTTP(w, r)
			case first: // 50000 bytes, then the connection closes
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes()[:50000])
				w.(http.Flusher).Flush()
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
			case resumed:
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			default:
				next.ServeHTTP(w, r)
			}
		})
	})
	c, _ := newTestClient(t, t.TempDir(), segOpts)
	n, err := c.FetchBlob(t.Context(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	checkCached(t, c, desc, data)
	mu.Lock()
	defer mu.Unlock()
	from := func(a int64) (k int) {
		for _, r := range asked {
			if strings.HasPrefix(r, fmt.Sprintf("bytes=%d-", a)) {
				k++
			}
		}
		return k
	}
	if from(cut) != 2 || from(cut+50000) != 1 {
		t.Errorf("asked %q; want the cut segment from %d twice, and once from %d", asked, cut, cut+50000)
	}
	if n != desc.Size+50000 || c.Retries() != 2 {
		t.Errorf("received %d bytes with %d retries; want %d (50000 twice) and 2", n, c.Retries(), desc.Size+50000)
	}
}

// A registry that answers a Range request with the whole blob (200) gets
// one plain GET for this blob and, without segments, for the next one.
func TestSegmentedRangeIgnored(t *testing.T) {
	h := &inflight{gate: 0}
	host, repo, desc, data := segRegistry(t, 2<<20, 5, func(next http.Handler) http.Handler {
		h.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			next.ServeHTTP(w, r)
		})
		return h
	})
	data2 := bytes.Repeat([]byte("another blob "), 100000)
	_, desc2 := pushBlob(t, host, data2)
	c, _ := newTestClient(t, t.TempDir(), segOpts)
	if _, err := c.FetchBlob(t.Context(), repo, desc); err != nil {
		t.Fatal(err)
	}
	checkCached(t, c, desc, data)
	noIngestLeft(t, c)
	h.mu.Lock()
	first := slices.Clone(h.ranges)
	h.ranges = nil
	h.mu.Unlock()
	if countOf(first, "") != 1 || len(first) < 2 {
		t.Errorf("blob GETs with Range %q; want Range requests, and one plain GET", first)
	}
	if c.Retries() != 0 {
		t.Errorf("%d retries, want none: a fallback is no retry", c.Retries())
	}
	if _, err := c.FetchBlob(t.Context(), repo, desc2); err != nil {
		t.Fatal(err)
	}
	checkCached(t, c, desc2, data2)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ranges) != 1 || h.ranges[0] != "" {
		t.Errorf("next blob: GETs with Range %q, want one plain GET", h.ranges)
	}
}

// A corrupt segment makes the digest check fail: the blob is fetched
// again, and a blob that never matches never enters the cache, nor is any
// of it kept for a later run.
func TestSegmentedCorrupt(t *testing.T) {
	for _, tt := range []struct {
		name    string
		times   int
		wantErr string
	}{
		{"once", 1, ""},
		{"always", 0, "digest mismatch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, repo, desc, data := proxiedSeg(t, 2<<20, 6)
			// Byte 1000 of the body is flipped: a split never cuts a body
			// that short, so the flip always lands in the file.
			p.Inject(testenv.Fault{Mode: testenv.FaultCorrupt, After: 1000, Kind: testenv.KindBlob, Method: http.MethodGet, Times: tt.times})
			c, _ := newTestClient(t, t.TempDir(), segOpts)
			n, err := c.FetchBlob(t.Context(), repo, desc)
			if tt.wantErr != "" {
				var de *DigestError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &de) {
					t.Fatalf("err = %v, want a *DigestError", err)
				}
				if c.Cache().Has(desc.Digest, -1) {
					t.Fatal("a blob that failed its digest check is in the cache")
				}
				if fi, err := os.Stat(c.Cache().partialPath(desc.Digest)); err == nil && fi.Size() != 0 {
					t.Errorf("a partial of %d bytes of a corrupt blob is left", fi.Size())
				}
				if _, err := os.Stat(c.Cache().segmentsPath(desc.Digest)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a sidecar of a corrupt blob is left: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkCached(t, c, desc, data)
			noIngestLeft(t, c)
			if n != 2*desc.Size || c.Retries() != 1 {
				t.Errorf("received %d bytes with %d retries; want the blob twice (%d) and 1 retry", n, c.Retries(), 2*desc.Size)
			}
		})
	}
}

// A segmented download stopped midway leaves its partial file and a
// sidecar; the next FetchBlob asks for exactly the ranges missing, each
// from where its segment stopped.
func TestSegmentedResume(t *testing.T) {
	p, repo, desc, data := proxiedSeg(t, 2<<20, 7)
	p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 256 << 10, Kind: testenv.KindBlob})
	dir := t.TempDir()
	c, _ := newTestClient(t, dir, segOpts)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for p.BlobBytes(desc.Digest.String()) < 600<<10 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	n1, err := c.FetchBlob(ctx, repo, desc)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped download: %v, want context.Canceled", err)
	}
	side, err := os.ReadFile(c.Cache().segmentsPath(desc.Digest))
	if err != nil {
		t.Fatalf("no sidecar after a stopped segmented download: %v", err)
	}
	spans, err := parseSegments(side)
	if err != nil {
		t.Fatal(err)
	}
	var have int64
	var missing []string
	var pos int64
	for _, sp := range append(spans, span{desc.Size, desc.Size}) {
		if sp.a > pos {
			missing = append(missing, fmt.Sprintf("bytes=%d-%d", pos, sp.a-1))
		}
		have += sp.b - sp.a
		pos = sp.b
	}
	if have != n1 || len(spans) < 2 {
		t.Fatalf("sidecar lists %d bytes in %d ranges (%v); want the %d received, in several ranges", have, len(spans), spans, n1)
	}

	p.ClearFaults()
	p.WaitIdle(5 * time.Second)
	p.ResetCounts()
	// One connection: the missing ranges are asked for in order, none split.
	opts := segOpts
	opts.MaxConns = 1
	c2, _ := newTestClient(t, dir, opts)
	n2, err := c2.FetchBlob(t.Context(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	checkCached(t, c2, desc, data)
	noIngestLeft(t, c2)
	if n1+n2 != desc.Size {
		t.Errorf("received %d + %d bytes, want %d in all", n1, n2, desc.Size)
	}
	if got := blobRanges(p); fmt.Sprint(got) != fmt.Sprint(missing) {
		t.Errorf("resumed with Range %q, want %q", got, missing)
	}
	if sent := p.BlobBytes(desc.Digest.String()); sent != desc.Size-have {
		t.Errorf("the registry sent %d bytes on resume, want the %d missing", sent, desc.Size-have)
	}
}

// A run killed midway (its files copied while it runs: the sidecar first,
// then the partial, which is what a SIGKILL leaves) resumes from the last
// sidecar saved, and the blob is verified.
func TestSegmentedResumeAfterKill(t *testing.T) {
	p, repo, desc, data := proxiedSeg(t, 2<<20, 8)
	p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 256 << 10, Kind: testenv.KindBlob})
	c, _ := newTestClient(t, t.TempDir(), segOpts)
	c.saveEvery = 64 << 10
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := c.FetchBlob(ctx, repo, desc); errc <- err }()
	var side, partial []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if p.BlobBytes(desc.Digest.String()) < 600<<10 {
			continue
		}
		var err1, err2 error
		side, err1 = os.ReadFile(c.Cache().segmentsPath(desc.Digest))
		partial, err2 = os.ReadFile(c.Cache().partialPath(desc.Digest))
		if err1 == nil && err2 == nil {
			break
		}
	}
	cancel()
	<-errc
	spans, err := parseSegments(side)
	if err != nil || len(spans) == 0 {
		t.Fatalf("sidecar while running: %v, %v; want ranges", spans, err)
	}
	var claimed int64
	for _, sp := range spans {
		claimed += sp.b - sp.a
		if sp.b > int64(len(partial)) || !bytes.Equal(partial[sp.a:sp.b], data[sp.a:sp.b]) {
			t.Fatalf("the sidecar claims bytes %d-%d that the partial does not hold", sp.a, sp.b)
		}
	}

	dir := t.TempDir()
	c2, _ := newTestClient(t, dir, segOpts)
	if err := os.WriteFile(c2.Cache().partialPath(desc.Digest), partial, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c2.Cache().segmentsPath(desc.Digest), side, 0o644); err != nil {
		t.Fatal(err)
	}
	p.ClearFaults()
	p.WaitIdle(5 * time.Second)
	n, err := c2.FetchBlob(t.Context(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	checkCached(t, c2, desc, data)
	noIngestLeft(t, c2)
	if n != desc.Size-claimed {
		t.Errorf("received %d bytes, want the %d the sidecar did not claim", n, desc.Size-claimed)
	}
}

// A sidecar that is damaged, missing or lying never lets an unverified
// blob into the cache, and never makes a download go round forever.
func TestSegmentedDamagedSidecar(t *testing.T) {
	const size = 1 << 20
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(data)
	good := formatSegments([]span{{0, size / 2}})
	flipped := bytes.Clone(data[:size/2])
	flipped[1000] ^= 1
	for _, tt := range []struct {
		name     string
		partial  []byte
		sidecar  []byte // nil: none
		received int64
		retries  int64
	}{
		// Unreadable: the partial is dropped, the blob fetched whole.
		{"garbage", data[:size/2], []byte("garbage\n"), size, 0},
		{"bad checksum", data[:size/2], bytes.Replace(good, []byte(" 524288\n"), []byte(" 524289\n"), 1), size, 0},
		// Claims past the end of the partial: dropped.
		{"claims past the file", data[:1000], good, size, 0},
		// No sidecar over holes: read as a prefix, fails the digest
		// check, fetched again.
		{"missing over holes", make([]byte, size/2), nil, size/2 + size, 1},
		// Claimed bytes that are wrong (lost in a crash): the same.
		{"claimed bytes wrong", flipped, good, size/2 + size, 1},
		// A sound one is used.
		{"sound", data[:size/2], good, size / 2, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, repo, desc, _ := segRegistry(t, size, 9, nil)
			c, _ := newTestClient(t, t.TempDir(), segOpts)
			if err := os.WriteFile(c.Cache().partialPath(desc.Digest), tt.partial, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.sidecar != nil {
				if err := os.WriteFile(c.Cache().segmentsPath(desc.Digest), tt.sidecar, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			n, err := c.FetchBlob(t.Context(), repo, desc)
			if err != nil {
				t.Fatal(err)
			}
			checkCached(t, c, desc, data)
			noIngestLeft(t, c)
			if n != tt.received || c.Retries() != tt.retries {
				t.Errorf("received %d bytes with %d retries; want %d and %d", n, c.Retries(), tt.received, tt.retries)
			}
		})
	}
}

// countingTransport counts the blob requests a client has open at once: from
// the request until its body is closed, in all and per blob. It also counts
// Range requests not marked as a segment's (which would not be sent over
// HTTP/1.1).
type countingTransport struct {
	inner    http.RoundTripper
	mu       sync.Mutex
	now      int
	most     int
	unmarked int
	blob     map[string]int // open requests per blob
	// watch is a blob; once watching is set, watched is the most requests
	// of it open when one of them starts.
	watch    string
	watching bool
	watched  int
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.Contains(req.URL.Path, "/blobs/sha256:") {
		return t.inner.RoundTrip(req)
	}
	blob := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
	t.mu.Lock()
	t.now++
	t.most = max(t.most, t.now)
	t.blob[blob]++
	if t.watching && blob == t.watch {
		t.watched = max(t.watched, t.blob[blob])
	}
	if req.Header.Get("Range") != "" && req.Context().Value(segmentKey{}) == nil {
		t.unmarked++
	}
	t.mu.Unlock()
	done := func() {
		t.mu.Lock()
		t.now--
		t.blob[blob]--
		t.mu.Unlock()
	}
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		done()
		return nil, err
	}
	resp.Body = &closeOnce{ReadCloser: resp.Body, done: done}
	return resp, nil
}

type closeOnce struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *closeOnce) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// Downloads at once never hold more connections than MaxConns between
// them: each has one, and segments take what is left. A download that
// starts while segments hold the rest takes a connection from one of them;
// once it is done, the segment's helper comes back.
func TestSegmentConnBudget(t *testing.T) {
	// A big blob in three segments of about 1.3 s each at 1 MiB/s, and a
	// small one (one plain GET, 0.2 s) started while those run.
	p, repo, big, data := proxiedSeg(t, 4<<20, 10)
	data2 := make([]byte, 200<<10)
	_, _ = rand.NewChaCha8([32]byte{11}).Read(data2)
	_, small := pushBlob(t, p.Upstream, data2)
	p.Inject(testenv.Fault{Mode: testenv.FaultSlow, Rate: 1 << 20, Kind: testenv.KindBlob})
	opts := segOpts
	opts.MaxConns = 3
	opts.Segments = 3 // two helpers, both with a connection from the start
	c, _ := newTestClient(t, t.TempDir(), opts)
	ct := &countingTransport{inner: newHTTPTransport(nil, DefaultStallTimeout), blob: map[string]int{}, watch: big.Digest.String()}
	c.base = c.newRetry(ct)
	open := func() int {
		ct.mu.Lock()
		defer ct.mu.Unlock()
		return ct.now
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.FetchBlob(t.Context(), repo, big)
		errc <- err
	}()
	// The big download holds all three: it has two helpers.
	for deadline := time.Now().Add(10 * time.Second); open() < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if _, err := c.FetchBlob(t.Context(), repo, small); err != nil {
		t.Fatal(err)
	}
	ct.mu.Lock()
	ct.watching = true
	ct.mu.Unlock()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkCached(t, c, big, data)
	checkCached(t, c, small, data2)
	ct.mu.Lock()
	defer ct.mu.Unlock()
	c.conns.mu.Lock()
	defer c.conns.mu.Unlock()
	if ct.most != 3 {
		t.Errorf("%d blob requests open at once, want 3 (MaxConns)", ct.most)
	}
	if ct.watched != 3 {
		t.Errorf("after the small download, the big one had at most %d requests open, want 3 (its helper back)", ct.watched)
	}
	if ct.unmarked != 0 {
		t.Errorf("%d segment requests not marked for HTTP/1.1", ct.unmarked)
	}
	if c.conns.used != 0 {
		t.Errorf("%d connections still counted after the downloads", c.conns.used)
	}
}

// Segments' requests go over HTTP/1.1, one TCP connection each, where the
// client's other requests use HTTP/2 when the registry offers it.
func TestSegmentRequestsUseHTTP1(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c, _ := newTestClient(t, t.TempDir(), Options{})
	for _, tt := range []struct {
		ctx  context.Context
		want string
	}{
		{t.Context(), "HTTP/2.0"},
		{context.WithValue(t.Context(), segmentKey{}, true), "HTTP/1.1"},
	} {
		req, _ := http.NewRequestWithContext(tt.ctx, http.MethodGet, srv.URL+"/v2/", nil)
		resp, err := c.baseTLS.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tt.want {
			t.Errorf("request marked %v went over %s, want %s", tt.ctx.Value(segmentKey{}) != nil, b, tt.want)
		}
	}
}

func TestSidecarRoundTrip(t *testing.T) {
	for _, spans := range [][]span{{}, {{0, 1}}, {{0, 10}, {20, 30}, {40, 1 << 40}}} {
		got, err := parseSegments(formatSegments(spans))
		if err != nil || fmt.Sprint(got) != fmt.Sprint(spans) {
			t.Errorf("round trip of %v: %v, %v", spans, got, err)
		}
	}
	for _, bad := range []string{
		"",
		sidecarMagic + "\n",
		string(formatSegments([]span{{0, 10}}))[:20],
		strings.Replace(string(formatSegments([]span{{0, 10}})), "bundle", "bumble", 1),
	} {
		if _, err := parseSegments([]byte(bad)); err == nil {
			t.Errorf("parseSegments(%q) accepted", bad)
		}
	}
}

// FuzzParseSegments: a sidecar is read from disk, where anything may be;
// whatever is accepted is sorted, disjoint, non-empty ranges.
func FuzzParseSegments(f *testing.F) {
	f.Add(formatSegments([]span{{0, 10}, {20, 30}}))
	f.Add(formatSegments(nil))
	f.Add([]byte("bundle ingest segments v1\n5 3\ncrc32 00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		spans, err := parseSegments(b)
		if err != nil {
			return
		}
		var end int64
		for i, sp := range spans {
			if sp.a < 0 || sp.b <= sp.a || (i > 0 && sp.a <= end) {
				t.Fatalf("accepted bad ranges %v", spans)
			}
			end = sp.b
		}
	})
}
