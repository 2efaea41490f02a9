package fetch

import (
	"net/http"
	"time"
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
// other than a blob over MaxManifestSize fails with a *BodyTooLargeError.
func NewRetryTransport(policy RetryPolicy, skipVerify bool, notify func(what string, attempt int, reason string, wait time.Duration)) http.RoundTripper {
	policy = policy.withDefaults()
	t := &retryTransport{inner: &stallTransport{inner: newHTTPTransport(skipVerify, policy.Stall), window: policy.Stall}, policy: policy}
	if notify != nil {
		t.notify = func(req *http.Request, attempt int, reason string, d time.Duration) {
			notify(req.Method+" "+redact(req.URL.String()), attempt, reason, d)
		}
	}
	return t
}

// Backoff returns how long to wait before retry number attempt (0 for the
// first retry) under the policy, with jitter: for callers that retry a
// whole operation (a blob upload) rather than one request.
func (p RetryPolicy) Backoff(attempt int) time.Duration { return p.backoff(attempt) }
