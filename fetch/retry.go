package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
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

// Retry runs op until it succeeds, fails for good, or the policy's
// attempts are spent, with the policy's back-off between tries: for
// callers that retry a whole operation (a blob upload whose session broke)
// above the transport's retries of single requests. retryable says whether
// op's error is worth another try; notify, when not nil, is told of each
// retry (attempt counts from 1) before the wait. Retry returns nil, ctx's
// error once ctx has ended, or op's last error as it is.
func (p RetryPolicy) Retry(ctx context.Context, op func() error, retryable func(error) bool, notify func(attempt int, err error, wait time.Duration)) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt+1 >= p.Attempts || !retryable(err) {
			return err
		}
		d := p.backoff(attempt)
		if notify != nil {
			notify(attempt+1, err, d)
		}
		if err := wait(ctx, d); err != nil {
			return err
		}
	}
}

// statusError is an HTTP failure of a request this package made itself.
type statusError struct {
	URL    string
	Status string
	Code   int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }
