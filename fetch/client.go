package fetch

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Progress receives what a Client does; implementations must be safe for
// concurrent use. Library code never prints: the CLI implements this.
type Progress interface {
	// Retry reports a request that failed and will be tried again.
	Retry(what string, attempt int, reason string, wait time.Duration)
	// Downloaded reports n more blob bytes received from a registry.
	Downloaded(n int64)
}

type noProgress struct{}

func (noProgress) Retry(string, int, string, time.Duration) {}
func (noProgress) Downloaded(int64)                         {}

// Options configure a Client.
type Options struct {
	// Access: the insecure hosts, the credentials, the retry policy and
	// the stall window (Retry.Stall: every transfer, a blob, a manifest, a
	// token or a tag list, must move StallMinBytes, or what is left of it,
	// in this long; one that moves less is dropped and retried, a blob
	// resumed with a Range request, as a break).
	Access
	// Progress receives events; nil discards them.
	Progress Progress
	// UserAgent is sent with every request.
	UserAgent string
	// Cache stores every manifest and blob fetched; required.
	Cache *Cache
	// SegmentThreshold is the blob size from which a download is split
	// into segments: Range requests made at once, each on its own
	// connection, so that a server's per-connection rate does not bound a
	// big layer. Zero means DefaultSegmentThreshold; negative, never.
	SegmentThreshold int64
	// Segments is the most connections one blob download uses. Zero means
	// DefaultSegments; 1, never split.
	Segments int
	// MaxConns bounds the connections that the client's blob downloads
	// hold together: every download has one, and a segment gets a
	// connection of its own only while fewer than MaxConns are held (a
	// download that starts when none is left takes one from a segment).
	// Zero means DefaultMaxConns.
	MaxConns int
}

// DefaultStallTimeout is used when Access.Retry.Stall is zero.
const DefaultStallTimeout = 60 * time.Second

// Client fetches from registries. It is safe for concurrent use.
type Client struct {
	keychain authn.Keychain
	insecure map[string]bool
	access   Access                       // for TLSFor
	hostBase map[string]http.RoundTripper // baseFor's, by host
	policy   RetryPolicy
	progress Progress
	retries  atomic.Int64
	base     http.RoundTripper // retrying, shared by every registry
	baseTLS  http.RoundTripper // the same without TLS verification, for --insecure hosts
	ua       string
	cache    *Cache
	stall    time.Duration

	segThreshold int64 // 0: no segments
	segments     int
	conns        *connBudget
	saveEvery    int64 // bytes between saves of a segmented download's sidecar

	mu      sync.Mutex
	repos   map[string]*repoTransport
	stored  map[string]bool // blobs this client put in the cache
	noRange map[string]bool // registries that answered a Range with 200
}

type repoTransport struct {
	once sync.Once
	rt   http.RoundTripper
	err  error
}

// New makes a Client.
func New(opts Options) *Client {
	access := opts.Access.WithDefaults()
	c := &Client{
		keychain: access.Keychain,
		insecure: map[string]bool{},
		access:   access,
		hostBase: map[string]http.RoundTripper{},
		policy:   access.Retry,
		progress: opts.Progress,
		ua:       opts.UserAgent,
		repos:    map[string]*repoTransport{},
		stored:   map[string]bool{},
		cache:    opts.Cache,
		stall:    access.Retry.Stall,
		noRange:  map[string]bool{},

		segThreshold: opts.SegmentThreshold,
		segments:     opts.Segments,
		conns:        newConnBudget(opts.MaxConns),
		saveEvery:    defaultSaveEvery,
	}
	if c.segThreshold == 0 {
		c.segThreshold = DefaultSegmentThreshold
	}
	if c.segments == 0 {
		c.segments = DefaultSegments
	}
	if c.segThreshold < 0 || c.segments < 2 {
		c.segThreshold, c.segments = 0, 1
	}
	if c.conns.max <= 0 {
		c.conns.max = DefaultMaxConns
	}
	if c.progress == nil {
		c.progress = noProgress{}
	}
	for _, h := range access.Insecure {
		c.insecure[h] = true
	}
	c.base = c.newBase(nil)
	c.baseTLS = c.newBase(skipVerifyTLS())
	return c
}

// newBase is the retrying, stall-watching transport over tlsCfg (nil: Go's
// default TLS).
func (c *Client) newBase(tlsCfg *tls.Config) http.RoundTripper {
	return c.newRetry(&stallTransport{inner: protoSplit{h2: newHTTPTransport(tlsCfg, c.stall), h1: newHTTP1Transport(tlsCfg, c.stall)}, window: c.stall})
}

// baseFor is the base transport for host: without TLS verification for an
// --insecure host, with the host's own CAs and client certificates
// (Access.TLSFor) when it has any, else the shared one.
func (c *Client) baseFor(host string) (http.RoundTripper, error) {
	if c.insecure[host] {
		return c.baseTLS, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rt, ok := c.hostBase[host]; ok {
		return rt, nil
	}
	cfg, err := c.access.TLSFor(host)
	if err != nil {
		return nil, fmt.Errorf("TLS for %s: %w", host, err)
	}
	rt := c.base
	if cfg != nil {
		rt = c.newBase(cfg)
	}
	c.hostBase[host] = rt
	return rt, nil
}

// skipVerifyTLS is the TLS configuration of an --insecure host.
func skipVerifyTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
}

// newHTTPTransport is the HTTP transport under every request. The wait for
// an answer's headers, once the request (and its body) is sent, is part of
// the stall timeout: a registry that does not answer, or that stops
// reading an upload small enough to sit in the socket buffers, is stalled.
func newHTTPTransport(tlsCfg *tls.Config, stall time.Duration) *http.Transport {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: stall,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        256 << 10,
		WriteBufferSize:       256 << 10,
	}
	if tlsCfg != nil {
		t.TLSClientConfig = tlsCfg.Clone()
	}
	return t
}

// newHTTP1Transport is newHTTPTransport without HTTP/2: one request per
// TCP connection at a time.
func newHTTP1Transport(tlsCfg *tls.Config, stall time.Duration) *http.Transport {
	t := newHTTPTransport(tlsCfg, stall)
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // not nil: no HTTP/2
	return t
}

// segmentKey marks, in a request's context, a request of a segmented
// download. Those go over HTTP/1.1: over HTTP/2 they would all share one
// TCP connection, and with it the per-connection rate they are meant to
// get around.
type segmentKey struct{}

// protoSplit sends segments' HTTPS requests to h1 and the others to h2
// (over plain HTTP, h2 speaks HTTP/1.1 too, and has the idle connections).
// It sits under the auth transport, so both share one token.
type protoSplit struct{ h2, h1 http.RoundTripper }

func (p protoSplit) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" && req.Context().Value(segmentKey{}) != nil {
		return p.h1.RoundTrip(req)
	}
	return p.h2.RoundTrip(req)
}

func (c *Client) newRetry(inner http.RoundTripper) http.RoundTripper {
	return &retryTransport{
		inner:   inner,
		policy:  c.policy,
		retries: &c.retries,
		notify: func(req *http.Request, attempt int, reason string, d time.Duration) {
			c.progress.Retry(req.Method+" "+redact(req.URL.String()), attempt, reason, d)
		},
	}
}

func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// Retries is how many requests were retried so far.
func (c *Client) Retries() int64 { return c.retries.Load() }

// repository rebuilds repo with the Insecure option when its registry is
// listed as insecure.
func (c *Client) repository(repo name.Repository) name.Repository {
	if !c.insecure[repo.RegistryStr()] {
		return repo
	}
	r, err := name.NewRepository(repo.RegistryStr()+"/"+repo.RepositoryStr(), name.Insecure)
	if err != nil {
		return repo
	}
	return r
}

// transport returns an authenticated transport with pull scope on repo,
// made once per repository and shared by every request to it.
func (c *Client) transport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	repo = c.repository(repo)
	key := repo.String()
	c.mu.Lock()
	rt, ok := c.repos[key]
	if !ok {
		rt = &repoTransport{}
		c.repos[key] = rt
	}
	c.mu.Unlock()
	rt.once.Do(func() {
		auth, err := authn.Resolve(ctx, c.keychain, repo)
		if err != nil {
			rt.err = fmt.Errorf("finding credentials for %s: %w", repo.RegistryStr(), err)
			return
		}
		base, err := c.baseFor(repo.RegistryStr())
		if err != nil {
			rt.err = err
			return
		}
		if c.ua != "" {
			base = transport.NewUserAgent(base, c.ua)
		}
		rt.rt, rt.err = transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
		if rt.err != nil {
			if u := Certificate(repo.RegistryStr(), rt.err); u != nil {
				rt.err = u
			} else if u := Unreachable(repo.RegistryStr(), rt.err, c.policy.Attempts, repo.Scheme() == "http" || c.insecure[repo.RegistryStr()]); u != nil {
				rt.err = u
			} else {
				rt.err = fmt.Errorf("connecting to %s: %w", repo.RegistryStr(), describe(rt.err))
			}
		}
	})
	if rt.err != nil {
		// Let a later call try again (a registry may come back).
		c.mu.Lock()
		if c.repos[key] == rt {
			delete(c.repos, key)
		}
		c.mu.Unlock()
	}
	return rt.rt, rt.err
}

// remoteOptions are the options for go-containerregistry's remote calls on repo.
func (c *Client) remoteOptions(ctx context.Context, repo name.Repository) ([]remote.Option, error) {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt)}, nil
}

// StoredThisRun says whether this client put blob h into the cache (it was
// not there before).
func (c *Client) StoredThisRun(h v1.Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored[h.String()]
}

func (c *Client) markStored(h v1.Hash) {
	c.mu.Lock()
	c.stored[h.String()] = true
	c.mu.Unlock()
}
