package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pushBlob makes blob d present in every one of repos.
func (s *session) pushBlob(ctx context.Context, d v1.Hash, repos []name.Repository) error {
	var have *name.Repository
	for _, repo := range repos {
		ok, err := s.headBlob(ctx, repo, d)
		if err != nil {
			return err
		}
		if ok {
			s.blobsPresent.Add(1)
			have = &repo
			continue
		}
		if !s.b.Has(d) {
			if err := s.mountExternal(ctx, d, repo, have); err != nil {
				return err
			}
			have = &repo
			continue
		}
		bl := s.b.Index.Blobs[d]
		layer := &bundleLayer{b: s.b, d: d, size: s.b.Size(d), mt: bl.MediaType, diffID: bl.DiffID, s: s}
		var l v1.Layer = layer
		if have != nil {
			l = &remote.MountableLayer{Layer: layer, Reference: have.Digest(d.String())}
		}
		if err := s.retry(ctx, fmt.Sprintf("uploading blob %s to %s", d, repo), func() error {
			c, err := s.conn(repo)
			if err != nil {
				return err
			}
			layer.opened.Store(false)
			return c.pusher.Upload(ctx, repo, l)
		}); err != nil {
			return err
		}
		switch {
		case layer.opened.Load():
			s.blobsSent.Add(1)
		case have != nil:
			s.blobsMounted.Add(1)
		default:
			s.blobsPresent.Add(1)
		}
		have = &repo
	}
	return nil
}

// bundleLayer is a blob of the bundle as a v1.Layer: Compressed returns the
// bundle's bytes as they are (whatever the blob is: a layer or a config),
// checked against the digest as they are read.
type bundleLayer struct {
	b      *Bundle
	d      v1.Hash
	size   int64
	mt     types.MediaType
	diffID *v1.Hash
	s      *session
	opened atomic.Bool
}

func (l *bundleLayer) Digest() (v1.Hash, error) { return l.d, nil }
func (l *bundleLayer) DiffID() (v1.Hash, error) {
	if l.diffID == nil {
		return v1.Hash{}, fmt.Errorf("blob %s has no diffID in bundle.json", l.d)
	}
	return *l.diffID, nil
}
func (l *bundleLayer) Size() (int64, error) { return l.size, nil }
func (l *bundleLayer) MediaType() (types.MediaType, error) {
	if l.mt == "" {
		return types.OCILayer, nil
	}
	return l.mt, nil
}
func (l *bundleLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("bundle load sends blobs as they are; it never decompresses them")
}
func (l *bundleLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.b.OpenBlob(l.d)
	if err != nil {
		return nil, err
	}
	l.opened.Store(true)
	return &countingReader{rc: rc, fn: func(n int64) {
		l.s.bytesSent.Add(n)
		l.s.p.Sent(n)
	}}, nil
}

type countingReader struct {
	rc io.ReadCloser
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 {
		c.fn(int64(n))
	}
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }
