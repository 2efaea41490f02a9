package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Cache returns the client's blob cache.
func (c *Client) Cache() *Cache { return c.cache }

// FetchBlob makes sure the blob desc of repo is in the cache, downloading
// it if needed. The download is checked against desc's digest and size as
// it arrives; a body that breaks off is resumed with a Range request from
// where it stopped; a blob whose bytes do not match is discarded and
// fetched again from the start, at most the retry policy's attempts times.
// A blob of at least the segment threshold is fetched as several Range
// requests at once (see segment.go), unless the registry ignores Range.
// It returns the number of bytes received from the network (0 when the
// cache had it). Every error, except the context's, names the blob.
func (c *Client) FetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) (int64, error) {
	if c.cache.Has(desc.Digest, desc.Size) {
		return 0, nil
	}
	ing, done, err := c.cache.openIngest(ctx, desc.Digest)
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		return 0, fmt.Errorf("downloading blob %s: %w", desc.Digest, err)
	}
	if done {
		return 0, nil
	}
	if err := c.conns.hold(ctx); err != nil {
		ing.close()
		return 0, err
	}
	defer c.conns.release(nil)
	var received int64
	fail := func(err error) (int64, error) {
		ing.close()
		return received, err
	}
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return fail(fmt.Errorf("downloading blob %s: %w", desc.Digest, err))
	}
	hc := &http.Client{Transport: rt}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", c.repository(repo).Scheme(), repo.RegistryStr(), repo.RepositoryStr(), desc.Digest)

	segmented := c.segmentable(repo, desc.Size)
	mismatches, breaks := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if ing.size > desc.Size {
			// More bytes than the descriptor says: treat as corrupt.
			err := &SizeError{Digest: desc.Digest, Got: ing.size, Want: desc.Size}
			_ = ing.reset()
			mismatches++
			if mismatches >= c.policy.Attempts {
				return fail(err)
			}
			c.retries.Add(1)
			c.progress.Retry("GET "+u, mismatches, err.Error(), 0)
		}
		if ing.size == desc.Size {
			err := c.cache.finish(ing, desc.Digest, desc.Size)
			if err == nil {
				c.markStored(desc.Digest)
			}
			var de *DigestError
			if !errors.As(err, &de) {
				return received, err
			}
			mismatches++
			if mismatches >= c.policy.Attempts {
				return received, err
			}
			c.retries.Add(1)
			c.progress.Retry("GET "+u, mismatches, err.Error(), 0)
			if ing, done, err = c.cache.openIngest(ctx, desc.Digest); err != nil || done {
				if err != nil && ctx.Err() == nil {
					err = fmt.Errorf("downloading blob %s: %w", desc.Digest, err)
				}
				return received, err
			}
			continue
		}
		if segmented {
			n, err := c.fetchSegments(ctx, hc, u, ing, desc.Size)
			received += n
			switch {
			case err == nil:
			case errors.Is(err, errRangeIgnored):
				// Ranges are ignored: one stream, from the start.
				c.mu.Lock()
				c.noRange[repo.RegistryStr()] = true
				c.mu.Unlock()
				segmented = false
				if err := ing.reset(); err != nil {
					return fail(fmt.Errorf("downloading blob %s: %w", desc.Digest, err))
				}
			case ctx.Err() != nil:
				return fail(ctx.Err())
			case err != nil:
				return fail(fmt.Errorf("downloading blob %s: %w", desc.Digest, err))
			}
			continue // complete: checked at the top
		}
		if err := ing.dropSegments(); err != nil {
			return fail(fmt.Errorf("downloading blob %s: %w", desc.Digest, err))
		}
		n, err := c.getRange(ctx, hc, u, ing, desc.Size)
		received += n
		if err == nil {
			continue // complete or over-long: checked at the top
		}
		var se *statusError
		var re *requestError
		if ctx.Err() != nil {
			return fail(ctx.Err()) // stopped on purpose: not a fault to retry
		}
		if errors.As(err, &se) || errors.As(err, &re) || !retryableError(err) {
			return fail(fmt.Errorf("downloading blob %s: %w", desc.Digest, err))
		}
		// The body broke off (reset, cut short, stalled, an answer for
		// the wrong range, or the whole blob again for a Range): resume
		// from where it stopped. Every break counts, including those that
		// brought bytes: a registry that sends a few bytes per connection,
		// or half the blob again and again ignoring Range, must not keep
		// the download going forever.
		breaks++
		if breaks >= c.policy.Attempts {
			return fail(fmt.Errorf("downloading blob %s: %w", desc.Digest, err))
		}
		c.retries.Add(1)
		d := c.policy.backoff(breaks)
		c.progress.Retry("GET "+u, breaks+1, err.Error(), d)
		if err := wait(ctx, d); err != nil {
			return fail(err)
		}
	}
}

// segmentable says whether a blob of this size from repo is fetched in
// segments.
func (c *Client) segmentable(repo name.Repository, size int64) bool {
	if c.segThreshold <= 0 || size < c.segThreshold {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.noRange[repo.RegistryStr()]
}

// getRange GETs the blob from ing's current size to the end and appends
// it to ing. A server that ignores Range (200) makes it start over. A body
// that ends before the blob does is io.ErrUnexpectedEOF, whatever its
// Content-Length said; one that stalls is a *StallError (the transport's).
func (c *Client) getRange(ctx context.Context, hc *http.Client, u string, ing *ingest, size int64) (int64, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	off := ing.size
	if off > 0 {
		// An explicit end: some registries reject open-ended ranges.
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(size-1, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, &requestError{err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			if err := ing.reset(); err != nil {
				return 0, err
			}
			return 0, fmt.Errorf("registry answered range %q for bytes=%d-: %w", resp.Header.Get("Content-Range"), off, io.ErrUnexpectedEOF)
		}
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			if err := ing.reset(); err != nil {
				return 0, err
			}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		if err := ing.reset(); err != nil {
			return 0, err
		}
		return 0, io.ErrUnexpectedEOF // start over, counts as a break
	default:
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return 0, &statusError{URL: redact(u), Status: resp.Status, Code: resp.StatusCode}
	}
	buf := make([]byte, 1<<20)
	var n int64
	// Read at most one byte more than the blob has left, so an over-long
	// body is noticed without reading all of it.
	body := io.LimitReader(resp.Body, size-ing.size+1)
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if _, err := ing.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("writing to the cache: %w", err)
			}
			n += int64(k)
			c.progress.Downloaded(int64(k))
		}
		if rerr == io.EOF {
			if ing.size < size {
				// Short, whatever its Content-Length said: a break.
				return n, io.ErrUnexpectedEOF
			}
			return n, nil // complete, or over-long: checked by the caller
		}
		if rerr != nil {
			return n, withURL(rerr, u)
		}
	}
}

// requestError is a blob request that failed before any answer came:
// the retrying transport has tried it as often as the retry policy says,
// so the download does not try it again (the attempts would multiply: 6
// resumes of 6 tries each for a registry that resets every connection).
type requestError struct{ err error }

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// StallError says a transfer moved less than StallMinBytes (or than what
// was left of it) in a window of the stall timeout; it is retried (a blob:
// resumed) like a broken connection.
type StallError struct {
	URL    string // "" when the caller names the request
	After  time.Duration
	Got    int64 // the bytes moved in that window
	Answer bool  // no answer came for After once the request was sent
}

func (e *StallError) Error() string {
	msg := fmt.Sprintf("stalled: %d bytes in %s, fewer than %d KiB (--stall-timeout)", e.Got, e.After, StallMinBytes>>10)
	if e.Answer {
		msg = fmt.Sprintf("stalled: no answer for %s after the request was sent (--stall-timeout)", e.After)
	}
	if e.URL != "" {
		msg = "GET " + e.URL + ": " + msg
	}
	return msg
}

// withURL names the blob URL in a *StallError, which the transport made.
func withURL(err error, u string) error {
	var se *StallError
	if errors.As(err, &se) && se.URL == "" {
		c := *se
		c.URL = redact(u)
		return &c
	}
	return err
}

// contentRangeStart reads the first byte position of "bytes a-b/c".
func contentRangeStart(v string) (int64, bool) {
	v, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(v, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}
