package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// retry runs f until it succeeds, fails for good, or the policy's attempts
// are spent (fetch.RetryPolicy.Retry). The transport retries single
// requests; this retries whole operations (an upload whose session broke).
// A *ChangedError is returned as it is, never retried.
func (s *session) retry(ctx context.Context, what string, f func() error) error {
	var ce *ChangedError
	err := s.r.opts.Retry.Retry(ctx, f, func(err error) bool {
		return !errors.As(err, &ce) && retryable(err)
	}, func(attempt int, err error, d time.Duration) {
		s.p.Retry(what, attempt, oneLine(fetch.Describe(err).Error()), d)
	})
	if err == nil || err == ctx.Err() || errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("%s: %w", what, fetch.Describe(err))
}

// retryable says whether an operation that failed with err is worth
// another try: connection trouble and server errors, not refusals.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errNotMounted) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode >= 500, te.StatusCode == http.StatusTooManyRequests,
			te.StatusCode == http.StatusRequestTimeout, te.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			return true
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.BlobUploadInvalidErrorCode, transport.BlobUploadUnknownErrorCode,
				transport.DigestInvalidErrorCode, transport.SizeInvalidErrorCode:
				// The upload went wrong on the way (our bytes were
				// checked): a new upload may well succeed.
				return true
			}
		}
		return false
	}
	return true // network errors and broken bodies
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
