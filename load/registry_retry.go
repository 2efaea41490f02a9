package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// retry runs f until it succeeds, fails for good, or the policy's attempts
// are spent. The transport retries single requests; this retries whole
// operations (an upload whose session broke).
func (s *session) retry(ctx context.Context, what string, f func() error) error {
	policy := s.r.opts.Retry
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ce *ChangedError
		if errors.As(err, &ce) {
			return err
		}
		if attempt+1 >= policy.Attempts || !retryable(err) {
			return fmt.Errorf("%s: %w", what, describe(err))
		}
		d := policy.Backoff(attempt)
		s.p.Retry(what, attempt+1, oneLine(describe(err).Error()), d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
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

// describe turns go-containerregistry's transport errors, and the
// net/http errors of requests that got no answer, into one line: the
// method, the URL without its query (an upload URL's query is a long
// opaque state token), and what went wrong.
func describe(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		var ue *url.Error
		if errors.As(err, &ue) && ue.Err != nil {
			u, _, _ := strings.Cut(ue.URL, "?")
			return &registryError{msg: strings.ToUpper(ue.Op) + " " + u + ": " + ue.Err.Error(), err: err}
		}
		return err
	}
	msg := fetch.RegistryMessage(te)
	if te.Request != nil {
		u := te.Request.URL.String()
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		msg = te.Request.Method + " " + u + ": " + msg
	}
	switch te.StatusCode {
	case http.StatusUnauthorized:
		msg = "authentication failed (check docker login / DOCKER_CONFIG): " + msg
	case http.StatusForbidden:
		msg = "access denied: " + msg
	}
	return &registryError{msg: msg, err: te}
}

type registryError struct {
	msg string
	err error // a *transport.Error or a *url.Error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.err }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
