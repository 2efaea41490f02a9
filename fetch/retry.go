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
	"sync/atomic"
	"syscall"
	"time"
)

// RetryPolicy says how often and how long to retry a failed request.
type RetryPolicy struct {
	// Attempts is the number of tries in all (1 means no retry).
	Attempts int
	// Base is the first back-off; it doubles on each retry, with jitter.
	Base time.Duration
	// Max caps one wait, including a server's Retry-After.
	Max time.Duration
}

// DefaultRetryPolicy is used when none is given.
var DefaultRetryPolicy = RetryPolicy{Attempts: 6, Base: 250 * time.Millisecond, Max: 30 * time.Second}

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
			err = readSmallBody(resp)
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

// maxBufferedBody is how much of a non-blob body the retry transport reads
// before handing the response on (the largest manifest accepted).
const maxBufferedBody = MaxManifestSize

// bufferBody says whether resp's body is read by the retry transport: GET
// answers other than blobs.
func bufferBody(req *http.Request, resp *http.Response) bool {
	return req.Method == http.MethodGet && resp.StatusCode/100 == 2 &&
		!strings.Contains(req.URL.Path, "/blobs/") && resp.ContentLength <= maxBufferedBody
}

// readSmallBody reads up to maxBufferedBody bytes of resp's body into
// memory and puts them back as its body (followed by the rest, if any). On
// a read error the body is closed.
func readSmallBody(resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedBody+1))
	if err != nil {
		resp.Body.Close()
		return err
	}
	if len(b) <= maxBufferedBody {
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return nil
}

// statusError is an HTTP failure of a request this package made itself.
type statusError struct {
	URL    string
	Status string
	Code   int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }
