package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// session is one Check or Load: its connections and counters.
type session struct {
	r     *Registry
	ctx   context.Context
	p     Progress
	b     *Bundle
	base  http.RoundTripper
	write bool
	// extra pull scopes per repository (the repositories blobs are mounted
	// from)
	mountFrom map[string][]name.Repository
	// where to mount a delta bundle's external blobs from, for the
	// repositories that lack them (external.go)
	extFrom map[repoBlob]name.Repository

	mu    sync.Mutex
	conns map[string]*conn

	blobsSent, blobsPresent, blobsMounted, manifestsSent atomic.Int64
	bytesSent                                            atomic.Int64
}

type conn struct {
	once   sync.Once
	repo   name.Repository
	rt     http.RoundTripper
	client *http.Client
	pusher *remote.Pusher
	err    error
}

func (r *Registry) newSession(ctx context.Context, b *Bundle, p Progress, write bool) *session {
	if p == nil {
		p = r.opts.Progress
	}
	s := &session{r: r, ctx: ctx, p: orNop(p), b: b, write: write, conns: map[string]*conn{}, mountFrom: map[string][]name.Repository{}}
	s.base = noReplay{fetch.NewRetryTransportTLS(r.opts.Retry, r.tls, s.p.Retry)}
	return s
}

// noReplay keeps the retrying transport from sending a blob upload's PATCH
// again: a PATCH cut short may have left part of its body in the upload
// session, and the same bytes sent again would be appended after it. A
// failed PATCH fails the upload, which session.retry starts again with a
// new session.
type noReplay struct{ inner http.RoundTripper }

func (n noReplay) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && r.GetBody != nil {
		r = r.Clone(r.Context())
		r.GetBody = nil
	}
	return n.inner.RoundTrip(r)
}

// conn returns the authenticated connection to repo, made once: one token
// per repository, with push scope when loading (and pull scope on the
// repositories it mounts from).
func (s *session) conn(repo name.Repository) (*conn, error) {
	s.mu.Lock()
	c, ok := s.conns[repo.String()]
	if !ok {
		c = &conn{repo: repo}
		s.conns[repo.String()] = c
	}
	s.mu.Unlock()
	c.once.Do(func() {
		auth, err := authn.Resolve(s.ctx, s.r.opts.Keychain, repo)
		if err != nil {
			c.err = fmt.Errorf("finding credentials for %s: %w", repo.RegistryStr(), err)
			return
		}
		scopes := []string{repo.Scope(transport.PullScope)}
		if s.write {
			scopes = []string{repo.Scope(transport.PushScope)}
			for _, from := range s.mountFrom[repo.String()] {
				scopes = append(scopes, from.Scope(transport.PullScope))
			}
		}
		c.rt, err = transport.NewWithContext(s.ctx, repo.Registry, auth, s.base, scopes)
		if err != nil {
			c.err = connectError(repo.Registry, err, s.r.opts.Retry.Attempts, s.r.insecure)
			return
		}
		c.client = &http.Client{Transport: c.rt}
		c.pusher, err = remote.NewPusher(remote.WithTransport(c.rt),
			remote.WithRetryPredicate(func(error) bool { return false }), // retries are ours
			remote.WithJobs(s.r.opts.Jobs))
		if err != nil {
			c.err = err
		}
	})
	return c, c.err
}

// Ping checks that the registry answers (GET /v2/, and the token
// handshake it asks for).
func (r *Registry) Ping(ctx context.Context) error {
	auth, err := authn.Resolve(ctx, r.opts.Keychain, r.host)
	if err != nil {
		return fmt.Errorf("finding credentials for %s: %w", r.host.RegistryStr(), err)
	}
	var notify func(string, int, string, time.Duration)
	if r.opts.Progress != nil {
		notify = r.opts.Progress.Retry
	}
	base := fetch.NewRetryTransportTLS(fetch.RetryPolicy{Attempts: 2, Base: r.opts.Retry.Base, Max: r.opts.Retry.Max}, r.tls, notify)
	if _, err := transport.NewWithContext(ctx, r.host, auth, base, nil); err != nil {
		return connectError(r.host, err, 2, r.insecure)
	}
	return nil
}

// connectError is the error of a first request to a registry that failed:
// fetch.UnreachableError when no connection was made, else the described
// answer.
func connectError(reg name.Registry, err error, attempts int, insecure bool) error {
	if u := fetch.Certificate(reg.RegistryStr(), err); u != nil {
		return u
	}
	if u := fetch.Unreachable(reg.RegistryStr(), err, attempts, reg.Scheme() == "http" || insecure); u != nil {
		return u
	}
	return fmt.Errorf("connecting to %s: %w", reg.RegistryStr(), fetch.Describe(err))
}

// headBlob reports whether repo has blob d.
func (s *session) headBlob(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	c, err := s.conn(repo)
	if err != nil {
		return false, err
	}
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + d.String()}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("checking blob %s in %s: %w", d, repo, err)
	}
	resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK, http.StatusNotFound); err != nil {
		return false, fmt.Errorf("checking blob %s in %s: %w", d, repo, fetch.Describe(err))
	}
	return resp.StatusCode == http.StatusOK, nil
}

// headManifest returns the digest ref names in the registry, or a zero
// hash when it names nothing.
func (s *session) headManifest(ctx context.Context, ref name.Reference) (v1.Hash, error) {
	c, err := s.conn(ref.Context())
	if err != nil {
		return v1.Hash{}, err
	}
	desc, err := remote.Head(ref, remote.WithTransport(c.rt), remote.WithContext(ctx))
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return v1.Hash{}, nil
		}
		return v1.Hash{}, fmt.Errorf("checking %s: %w", ref, fetch.Describe(err))
	}
	return desc.Digest, nil
}
