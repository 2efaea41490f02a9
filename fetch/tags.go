package fetch

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Bounds of a listing (a repository's tags, a registry's catalog), which a
// registry serves in pages linked by Link: rel="next". Each page is also a
// small body: at most tarball.MaxManifestSize bytes.
const (
	// MaxListPages is the most pages one listing may have: 10,000 pages of
	// go-containerregistry's 1,000 names each.
	MaxListPages = 10000
	// MaxListBytes is the most bytes the pages of one listing may hold
	// together.
	MaxListBytes = 64 << 20
)

// ListError says a listing was stopped at one of its bounds, or at a page
// link that points back to a page already read. Callers say what was
// being listed.
type ListError struct{ Reason string }

func (e *ListError) Error() string { return e.Reason }

// listBounds follows the pages of one listing.
type listBounds struct {
	bytes atomic.Int64 // the pages' bodies, counted by the retry transport
	pages int
	seen  map[string]bool // next-page URLs followed
}

func newListBounds() *listBounds {
	return &listBounds{seen: map[string]bool{}}
}

// context makes the retry transport count the pages' bytes.
func (b *listBounds) context(ctx context.Context) context.Context {
	return context.WithValue(ctx, bodyBytesKey{}, &b.bytes)
}

// page checks the bounds after a page whose next-page link is next.
func (b *listBounds) page(next string) error {
	b.pages++
	switch {
	case b.bytes.Load() > MaxListBytes:
		return &ListError{Reason: fmt.Sprintf("the pages hold over %d MiB after %d pages, the limit", MaxListBytes>>20, b.pages)}
	case next != "" && b.seen[next]:
		return &ListError{Reason: fmt.Sprintf("page %d links to a page already read (%s): a loop", b.pages, redact(next))}
	case next != "" && b.pages >= MaxListPages:
		return &ListError{Reason: fmt.Sprintf("more than %d pages, the limit", MaxListPages)}
	}
	b.seen[next] = true
	return nil
}

// ListTags lists the tags of repo, page by page, within MaxListPages and
// MaxListBytes, and stops at a page link that loops. opts are
// go-containerregistry's remote options (transport, auth); the transport
// must be NewRetryTransport's (or a Client's) for the bytes to be counted.
func ListTags(ctx context.Context, repo name.Repository, opts ...remote.Option) ([]string, error) {
	b := newListBounds()
	ctx = b.context(ctx)
	p, err := remote.NewPuller(append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	l, err := p.Lister(ctx, repo)
	if err != nil {
		return nil, err
	}
	var tags []string
	for l.HasNext() {
		page, err := l.Next(ctx)
		if err != nil {
			return nil, err
		}
		tags = append(tags, page.Tags...)
		if err := b.page(page.Next); err != nil {
			return nil, err
		}
	}
	return tags, nil
}

// Catalog lists the repositories of reg, within the bounds of ListTags.
func Catalog(ctx context.Context, reg name.Registry, opts ...remote.Option) ([]string, error) {
	b := newListBounds()
	ctx = b.context(ctx)
	p, err := remote.NewPuller(append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	c, err := p.Catalogger(ctx, reg)
	if err != nil {
		return nil, err
	}
	var repos []string
	for c.HasNext() {
		page, err := c.Next(ctx)
		if err != nil {
			return nil, err
		}
		repos = append(repos, page.Repos...)
		if err := b.page(page.Next); err != nil {
			return nil, err
		}
	}
	return repos, nil
}
