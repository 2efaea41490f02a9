package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bundle-tool/bundle/tarball"
)

// RetryPolicy says how often and how long to retry a failed request.
type RetryPolicy struct {
	// Attempts is the number of tries in all (1 means no retry).
	Attempts int
	// Base is the first back-off; it doubles on each retry, with jitter.
	Base time.Duration
	// Max caps one wait, including a server's Retry-After.
	Max time.Duration
	// Stall is the window in which a transfer must move StallMinBytes (or
	// what is left of it), or be dropped as stalled (a break, retried);
	// zero means DefaultStallTimeout.
	Stall time.Duration
}

// DefaultRetryPolicy is used when none is given.
var DefaultRetryPolicy = RetryPolicy{Attempts: 6, Base: 250 * time.Millisecond, Max: 30 * time.Second}

// withDefaults is p with DefaultRetryPolicy's attempts and waits when it
// has no attempts, and the default stall timeout when it has none.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p = RetryPolicy{Attempts: DefaultRetryPolicy.Attempts, Base: DefaultRetryPolicy.Base, Max: DefaultRetryPolicy.Max, Stall: p.Stall}
	}
	if p.Stall <= 0 {
		p.Stall = DefaultStallTimeout
	}
	return p
}

func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.Base << min(attempt, 16)
	if d <= 0 || d > p.Max {
		d = p.Max
	}
	// Full jitter on the upper half keeps parallel workers from retrying in step.
	return d/2 + rand.N(d/2+1)
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryableStatus are the HTTP statuses worth another try.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusRequestTimeout,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryableError says whether a transport error is worth another try:
// connection resets, refused or timed-out connections, and bodies cut short.
func retryableError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	var se *StallError
	switch {
	case errors.As(err, &se):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return true
	case errors.As(err, &ne):
		return true
	}
	return false
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

// retryTransport retries requests that failed before a usable response:
// connection errors and 429/5xx statuses, waiting as the server's
// Retry-After says (capped) or with exponential back-off. It sits under
// go-containerregistry's auth transport, so token requests are retried too.
type retryTransport struct {
	inner   http.RoundTripper
	policy  RetryPolicy
	retries *atomic.Int64
	notify  func(req *http.Request, attempt int, reason string, wait time.Duration)
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if n := redirects(req); n >= MaxRedirects {
		// go-containerregistry's clients replace net/http's redirect
		// limit with a check of their own that has none.
		return nil, &RedirectError{N: n}
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return t.inner.RoundTrip(req) // cannot replay the body
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.inner.RoundTrip(r)
		if err == nil && !retryableStatus(resp.StatusCode) && bufferBody(r, resp) {
			// A small body (manifest, token, tag list) is read here, so
			// that one cut off midway is retried like a failed request.
			// Blob bodies stream: FetchBlob resumes them with Range.
			var n int
			if n, err = readSmallBody(resp); err == nil {
				if c, ok := ctx.Value(bodyBytesKey{}).(*atomic.Int64); ok {
					c.Add(int64(n))
				}
			}
		}
		last := attempt+1 >= t.policy.Attempts
		var reason string
		var d time.Duration
		switch {
		case err != nil:
			// A request cancelled on purpose (the run stops, or a
			// sibling failed: errgroup cancels with the sibling's error as
			// the cause, which may look retryable) is not retried.
			if last || ctx.Err() != nil || !retryableError(err) {
				return nil, err
			}
			reason = err.Error()
			d = t.policy.backoff(attempt)
		case retryableStatus(resp.StatusCode):
			if last || ctx.Err() != nil {
				return resp, nil
			}
			reason = resp.Status
			d = t.policy.backoff(attempt)
			if ra, ok := retryAfter(resp.Header, time.Now()); ok {
				d = min(ra, t.policy.Max)
			}
			// Drain a little so the connection can be reused, then close.
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
			resp.Body.Close()
		default:
			return resp, nil
		}
		if t.retries != nil {
			t.retries.Add(1)
		}
		if t.notify != nil {
			t.notify(req, attempt+1, reason, d)
		}
		if err := wait(ctx, d); err != nil {
			return nil, err
		}
	}
}

// maxBufferedBody is the most a body other than a blob's may hold: a
// manifest, an index, a token, a page of a tag list or of the catalog.
const maxBufferedBody = tarball.MaxManifestSize

// bufferBody says whether resp's body is read by the retry transport:
// successful GET answers other than blobs.
func bufferBody(req *http.Request, resp *http.Response) bool {
	return req.Method == http.MethodGet && resp.StatusCode/100 == 2 &&
		!strings.Contains(req.URL.Path, "/blobs/")
}

// readSmallBody reads resp's body into memory and puts it back as its
// body. A body over maxBufferedBody (by its Content-Length, before any
// byte is read, or by its bytes) is an error: go-containerregistry reads
// up to 100 MiB of a manifest, and eight of them at once would take
// gigabytes. On an error the body is closed.
func readSmallBody(resp *http.Response) (int, error) {
	if resp.ContentLength > maxBufferedBody {
		resp.Body.Close()
		return 0, &BodyTooLargeError{Limit: maxBufferedBody, Length: resp.ContentLength}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedBody+1))
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if len(b) > maxBufferedBody {
		return 0, &BodyTooLargeError{Limit: maxBufferedBody, Length: -1}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return len(b), nil
}

// BodyTooLargeError is a manifest, index, token or listing body over the
// limit (tarball.MaxManifestSize).
type BodyTooLargeError struct {
	Limit  int64
	Length int64 // its Content-Length; -1 when it had none
}

func (e *BodyTooLargeError) Error() string {
	if e.Length >= 0 {
		return fmt.Sprintf("the registry sent a body of %d bytes, over the limit of %d (a manifest, index or listing is never that big)", e.Length, e.Limit)
	}
	return fmt.Sprintf("the registry sent a body of more than %d bytes, the limit (a manifest, index or listing is never that big)", e.Limit)
}

// bodyBytesKey marks, in a request's context, an *atomic.Int64 that the
// retry transport adds the size of each small body it reads to (the pages
// of a tag list).
type bodyBytesKey struct{}

// MaxRedirects is how many redirects one request may follow (net/http's
// own limit, which go-containerregistry's clients drop).
const MaxRedirects = 10

// RedirectError is a request that was redirected too often.
type RedirectError struct{ N int }

func (e *RedirectError) Error() string {
	return fmt.Sprintf("stopped after %d redirects (a redirect loop?)", e.N)
}

// redirects is how many redirects led to req: net/http gives a redirected
// request the response that caused it, whose request is the one before.
func redirects(req *http.Request) int {
	n := 0
	for r := req; r != nil && r.Response != nil && n <= MaxRedirects; r = r.Response.Request {
		n++
	}
	return n
}

// StallMinBytes is the least a body must move in each window of the stall
// timeout (or the rest of it, when less is left): a transfer that moves
// less is stalled. A 1 byte / 2 s drip is a stall; 64 KiB a minute (the
// default window) is about 1 KiB/s.
const StallMinBytes = 64 << 10

// stallTransport fails a transfer that makes too little progress: while
// the request's body is being sent, and while the response's body is being
// read, every window of the stall timeout must move StallMinBytes (or all
// that is left). The wait for the response's headers is the HTTP
// transport's ResponseHeaderTimeout, and not watched here.
type stallTransport struct {
	inner  http.RoundTripper
	window time.Duration
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &stallWatch{window: t.window, cancel: cancel}
	r := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		// The window starts with the first read: not while dialling.
		r.Body = &watchedBody{rc: req.Body, w: w, length: req.ContentLength, lazy: true}
	}
	resp, err := t.inner.RoundTrip(r)
	w.pause(0)
	if err != nil {
		if se := w.stalled(); se != nil {
			err = se
		} else if headerTimeout(err) {
			err = &StallError{After: t.window, Answer: true}
		}
		cancel(nil)
		return nil, err
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		cancel(nil)
		return resp, nil
	}
	body := &watchedBody{rc: resp.Body, w: w, done: func() { cancel(nil) }}
	body.phase.Store(int64(w.begin(resp.ContentLength)))
	resp.Body = body
	return resp, nil
}

// headerTimeout says whether err is net/http's ResponseHeaderTimeout (which
// newHTTPTransport sets to the stall timeout). net/http has no exported
// error for it; its text is stable.
func headerTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && strings.Contains(err.Error(), "timeout awaiting response headers")
}

// stallWatch checks, at the end of each window, that a body moved enough.
// A request has two phases, its body being sent and the response's body
// being read; the time between them is not watched.
type stallWatch struct {
	window time.Duration
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	gen    int // the phase; a new phase or a pause makes a running check void
	timer  *time.Timer
	n      int64 // bytes moved in this phase
	mark   int64 // n when the window began
	length int64 // the phase's body length; -1 unknown
	err    *StallError
}

// begin starts a phase and returns it.
func (w *stallWatch) begin(length int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	if w.err != nil {
		return w.gen
	}
	w.n, w.mark, w.length = 0, 0, length
	if w.timer != nil {
		w.timer.Stop()
	}
	g := w.gen
	w.timer = time.AfterFunc(w.window, func() { w.check(g) })
	return g
}

// pause ends phase g (0: whichever runs).
func (w *stallWatch) pause(g int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g != 0 && g != w.gen {
		return
	}
	w.gen++
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *stallWatch) add(k int) {
	w.mu.Lock()
	w.n += int64(k)
	w.mu.Unlock()
}

func (w *stallWatch) check(g int) {
	w.mu.Lock()
	if g != w.gen || w.err != nil {
		w.mu.Unlock()
		return
	}
	need := int64(StallMinBytes)
	if w.length >= 0 {
		need = min(need, w.length-w.mark)
	}
	if got := w.n - w.mark; got < need {
		w.err = &StallError{After: w.window, Got: got}
		w.gen++
		err := w.err
		w.mu.Unlock()
		w.cancel(err)
		return
	}
	w.mark = w.n
	w.timer.Reset(w.window)
	w.mu.Unlock()
}

func (w *stallWatch) stalled() *StallError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// watchedBody counts what is read from a body for its stallWatch, and
// turns the read error of a stalled transfer into the *StallError.
type watchedBody struct {
	rc     io.ReadCloser
	w      *stallWatch
	phase  atomic.Int64 // 0 until it began
	lazy   bool         // the phase begins with the first read
	length int64        // for a phase that begins with the first read
	done   func()
	once   sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.lazy && b.phase.Load() == 0 {
		b.phase.Store(int64(b.w.begin(b.length)))
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.add(n)
	}
	if err != nil {
		if se := b.w.stalled(); se != nil {
			return n, se
		}
		if g := b.phase.Load(); err == io.EOF && g > 0 {
			b.w.pause(int(g))
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	if g := b.phase.Load(); g > 0 {
		b.w.pause(int(g))
	}
	if b.done != nil {
		b.once.Do(b.done)
	}
	return err
}

// statusError is an HTTP failure of a request this package made itself.
type statusError struct {
	URL    string
	Status string
	Code   int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }
