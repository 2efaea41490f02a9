package fetch

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/tarball"
)

// NewRetryTransport returns the HTTP transport a Client sends its requests
// over, for other packages that talk to registries (bundle load pushes): a
// fresh connection pool (TLS verification skipped when skipVerify, for
// --insecure hosts) under the retries of policy: connection errors and
// 408/429/5xx are retried with back-off, honouring Retry-After; a request
// with a body is retried only when its GetBody is set. notify, when not
// nil, is told of every retry. Put go-containerregistry's auth transport
// (transport.NewWithContext) on top of it, so token requests are retried
// too. Every transfer must move StallMinBytes (or what is left of it) in
// each window of policy.Stall (zero: DefaultStallTimeout), or it fails
// with a *StallError; a redirect chain stops at MaxRedirects; a GET answer
// other than a blob over tarball.MaxManifestSize fails with a *BodyTooLargeError.
func NewRetryTransport(policy RetryPolicy, skipVerify bool, notify func(what string, attempt int, reason string, wait time.Duration)) http.RoundTripper {
	var cfg *tls.Config
	if skipVerify {
		cfg = skipVerifyTLS()
	}
	return NewRetryTransportTLS(policy, cfg, notify)
}

// NewRetryTransportTLS is NewRetryTransport over tlsCfg (nil: Go's
// default), for a registry with its own CAs or client certificates
// (Access.Transport).
func NewRetryTransportTLS(policy RetryPolicy, tlsCfg *tls.Config, notify func(what string, attempt int, reason string, wait time.Duration)) http.RoundTripper {
	policy = policy.withDefaults()
	t := &retryTransport{inner: &stallTransport{inner: newHTTPTransport(tlsCfg, policy.Stall), window: policy.Stall}, policy: policy}
	if notify != nil {
		t.notify = func(req *http.Request, attempt int, reason string, d time.Duration) {
			notify(req.Method+" "+redact(req.URL.String()), attempt, reason, d)
		}
	}
	return t
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
