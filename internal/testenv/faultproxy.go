package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy is an HTTP reverse proxy on 127.0.0.1 in front of a registry
// (the upstream, also on loopback) that misbehaves as told: it resets
// connections mid-body, truncates bodies under a correct Content-Length,
// answers 5xx or 429 with Retry-After, trickles bodies slowly, flips bytes
// in bodies, and can present itself as a bearer-token registry whose token
// endpoint fails. Its hostile modes would hang a naive client: redirect
// loops, 200 answers to a Range with half the blob, tag lists whose next
// page is themselves, oversized manifests, bodies longer than their
// descriptor, and 1-byte drips (of an answer, or of the reading of an
// upload). Faults are rules added and removed at runtime, each scoped
// to a kind of request, a method, a digest, the Nth matching request or at
// most K of them. It counts every request by kind and the body bytes it sent,
// so tests can assert retries and "fetched only what the cache lacks".
//
// Location headers of the upstream (blob upload sessions, redirects) are
// rewritten to the proxy, so pushes through it work too.
//
// Every loop in it is bounded: the proxy closes itself after its lifetime
// (WithLifetime, default 10 minutes), refuses requests past its budget
// (WithMaxRequests), and a slow trickle gives up after WithMaxSlow.
type FaultProxy struct {
	// Host is "127.0.0.1:PORT": use it as the registry part of references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// Upstream is the registry behind the proxy ("127.0.0.1:PORT").
	Upstream string

	opts     proxyOptions
	ln       net.Listener
	srv      *http.Server
	client   *http.Client
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	lifetime atomic.Pointer[time.Timer]
	served   chan struct{}
	handlers sync.WaitGroup
	active   atomic.Int64
	closing  atomic.Bool
	once     sync.Once

	mu     sync.Mutex
	rules  []*FaultRule
	total  int
	counts map[countKey]int
	bytes  map[RequestKind]int64
	digest map[string]*digestCount
	log    []RequestRecord
	tokens map[string]bool
}

// RequestKind classifies a registry request by its path.
type RequestKind string

// Kinds of request the proxy tells apart.
const (
	KindAny      RequestKind = ""         // in a Fault: every request
	KindPing     RequestKind = "ping"     // /v2/
	KindToken    RequestKind = "token"    // the proxy's own /token (WithBearerAuth)
	KindManifest RequestKind = "manifest" // /v2/NAME/manifests/REF
	KindBlob     RequestKind = "blob"     // /v2/NAME/blobs/DIGEST
	KindUpload   RequestKind = "upload"   // /v2/NAME/blobs/uploads/…
	KindTags     RequestKind = "tags"     // /v2/NAME/tags/list
	KindOther    RequestKind = "other"    // anything else (/v2/_catalog, …)
)

// FaultMode is how a request goes wrong.
type FaultMode int

// Fault modes.
const (
	// FaultReset sends the headers and Fault.After bytes of the body
	// (default: half), then resets the connection (TCP RST). With After < 0,
	// or a body of less than 2 bytes, it resets before any byte of the
	// response.
	FaultReset FaultMode = iota + 1
	// FaultTruncate sends the upstream's headers, with its correct
	// Content-Length, and Fault.After bytes of the body (default: half), then
	// closes the connection cleanly (FIN).
	FaultTruncate
	// FaultStatus answers Fault.Status (default 503) without asking the
	// upstream.
	FaultStatus
	// FaultTooManyRequests answers 429 with Retry-After: Fault.RetryAfter
	// (default 1s, sent in whole seconds) without asking the upstream.
	FaultTooManyRequests
	// FaultSlow trickles the body at Fault.Rate bytes a second (default
	// 64 KiB/s). With Fault.Stall, it sends Fault.After bytes (default: half),
	// then sends nothing for Stall, then goes on trickling. A trickle that
	// lasts longer than the proxy's MaxSlow is cut with a reset.
	FaultSlow
	// FaultCorrupt flips the byte at offset Fault.After (default: the middle)
	// and every 64 KiB after it; the length is kept.
	FaultCorrupt

	// Hostile modes: a registry that would make a naive client loop or wait
	// forever.

	// FaultRedirectLoop answers 307 with a Location back to the same path
	// (a query that changes on each hop), without asking the upstream.
	FaultRedirectLoop
	// FaultIgnoreRange forwards the request without its Range header and
	// answers 200 with the whole blob's Content-Length, but sends only
	// Fault.After bytes of it (default: half), then closes the connection.
	FaultIgnoreRange
	// FaultLinkLoop passes a tags list (or catalog) through with a
	// Link: <same URL>; rel="next" header: page 2 is page 1, forever.
	FaultLinkLoop
	// FaultOversize sends the upstream's body padded with spaces (valid at
	// the end of JSON) to Fault.Size bytes (default 64 MiB), with that
	// Content-Length.
	FaultOversize
	// FaultLonger sends Fault.Size more bytes (default 64 KiB) after the
	// upstream's body, with a Content-Length that counts them: a body that
	// runs past the size its descriptor declares.
	FaultLonger
	// FaultDrip sends the response body one byte every Fault.Every (default
	// 2s); a request with a body (an upload) is read at that pace instead.
	// It gives up (reset) after the proxy's MaxSlow.
	FaultDrip
)

func (m FaultMode) String() string {
	switch m {
	case FaultReset:
		return "reset"
	case FaultTruncate:
		return "truncate"
	case FaultStatus:
		return "status"
	case FaultTooManyRequests:
		return "429"
	case FaultSlow:
		return "slow"
	case FaultCorrupt:
		return "corrupt"
	case FaultRedirectLoop:
		return "redirect-loop"
	case FaultIgnoreRange:
		return "ignore-range"
	case FaultLinkLoop:
		return "link-loop"
	case FaultOversize:
		return "oversize"
	case FaultLonger:
		return "longer"
	case FaultDrip:
		return "drip"
	}
	return "none"
}

// Fault is one rule: what goes wrong, and for which requests.
type Fault struct {
	Mode FaultMode

	// Kind, Method and Digest scope the rule: only requests of this kind
	// (KindAny: all), this method ("": all) and whose path names this digest
	// ("sha256:…"; "": all).
	Kind   RequestKind
	Method string
	Digest string
	// Nth, when > 0, applies the fault only to the Nth request the rule
	// matches (1-based).
	Nth int
	// Times, when > 0, applies the fault to at most this many requests.
	// Zero means every matching request: a persistent fault.
	Times int

	// Status is FaultStatus's answer (default 503).
	Status int
	// RetryAfter is FaultTooManyRequests's wait (default 1s).
	RetryAfter time.Duration
	// After is the body offset where FaultReset and FaultTruncate cut,
	// FaultCorrupt flips and FaultSlow stalls; 0 means the middle of the body.
	After int64
	// Rate is FaultSlow's bytes per second (default 64 KiB, at least 1 KiB).
	Rate int64
	// Stall is how long FaultSlow sends nothing once it has sent After bytes.
	Stall time.Duration
	// Size is FaultOversize's body size and FaultLonger's extra bytes.
	Size int64
	// Every is FaultDrip's pause between two bytes (default 2s).
	Every time.Duration
}

// FaultRule is a Fault added to a proxy; it says how often it applied.
type FaultRule struct {
	Fault
	seen, hits int // guarded by the proxy's mu
	p          *FaultProxy
}

// Hits is how many requests the fault was applied to.
func (r *FaultRule) Hits() int {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.hits
}

// Seen is how many requests the rule matched (applied or not).
func (r *FaultRule) Seen() int {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.seen
}

// RequestRecord is one request the proxy answered.
type RequestRecord struct {
	Method string
	Path   string
	Kind   RequestKind
	Digest string // the digest the path names, if any
	Range  string // the request's Range header
	Status int    // the status sent (0: none, the connection was reset first)
	Bytes  int64  // body bytes sent to the client
	Fault  string // the fault applied ("" for none)
}

type countKey struct {
	kind   RequestKind
	method string
}

type digestCount struct {
	gets  int
	bytes int64
}

// ProxyOption configures a FaultProxy.
type ProxyOption func(*proxyOptions)

type proxyOptions struct {
	bearer      bool
	service     string
	lifetime    time.Duration
	maxRequests int
	maxSlow     time.Duration
	maxLog      int
}

// WithBearerAuth makes the proxy present itself as a registry with token
// auth: every /v2/ request without a token it issued is answered 401 with
// WWW-Authenticate: Bearer realm="http://<proxy>/token",service=…; tokens are
// served at /token (anonymously). Authorization is stripped before a request
// is forwarded, so the upstream needs no auth.
func WithBearerAuth() ProxyOption {
	return func(o *proxyOptions) { o.bearer = true }
}

// WithLifetime bounds how long the proxy runs; it closes itself after d
// (default 10 minutes).
func WithLifetime(d time.Duration) ProxyOption {
	return func(o *proxyOptions) { o.lifetime = d }
}

// WithMaxRequests bounds how many requests the proxy serves (default
// 100000); later requests get 503 until it is closed.
func WithMaxRequests(n int) ProxyOption {
	return func(o *proxyOptions) { o.maxRequests = n }
}

// WithMaxSlow bounds how long one FaultSlow response may last (default 2
// minutes); then the connection is reset.
func WithMaxSlow(d time.Duration) ProxyOption {
	return func(o *proxyOptions) { o.maxSlow = d }
}

// StartFaultProxy starts a FaultProxy in front of upstream ("127.0.0.1:PORT"
// or "http://127.0.0.1:PORT") and closes it when the test ends.
func StartFaultProxy(t testing.TB, upstream string, opts ...ProxyOption) *FaultProxy {
	t.Helper()
	p, err := NewFaultProxy(upstream, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewFaultProxy is StartFaultProxy without a testing.TB (for benchmarks and
// programs); the caller calls Close.
func NewFaultProxy(upstream string, opts ...ProxyOption) (*FaultProxy, error) {
	o := proxyOptions{service: "bundle-faultproxy", lifetime: 10 * time.Minute, maxRequests: 100000, maxSlow: 2 * time.Minute, maxLog: 20000}
	for _, f := range opts {
		f(&o)
	}
	up, err := loopbackHost(upstream)
	if err != nil {
		return nil, fmt.Errorf("starting fault proxy: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting fault proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &FaultProxy{
		Host:     ln.Addr().String(),
		URL:      "http://" + ln.Addr().String(),
		Upstream: up,
		opts:     o,
		ln:       ln,
		ctx:      ctx,
		cancel:   cancel,
		served:   make(chan struct{}),
		counts:   map[countKey]int{},
		bytes:    map[RequestKind]int64{},
		digest:   map[string]*digestCount{},
		tokens:   map[string]bool{},
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:                 nil,
				DisableCompression:    true,
				MaxIdleConnsPerHost:   16,
				IdleConnTimeout:       30 * time.Second,
				ResponseHeaderTimeout: time.Minute,
			},
			// Redirects go back to the client, rewritten.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln)
	}()
	p.lifetime.Store(time.AfterFunc(o.lifetime, p.Close))
	return p, nil
}

// loopbackHost checks that s names a loopback address and returns host:port.
func loopbackHost(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bad upstream %q", s)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("upstream %q: only plain http is proxied", s)
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); (ip == nil || !ip.IsLoopback()) && h != "localhost" {
		return "", fmt.Errorf("upstream %q is not a loopback address", s)
	}
	return u.Host, nil
}

// Close stops the proxy: it stops accepting, cuts every connection (slow
// trickles included) and waits (a few seconds at most) for its handlers.
// It is safe to call more than once.
func (p *FaultProxy) Close() {
	p.once.Do(func() {
		p.closing.Store(true)
		if t := p.lifetime.Load(); t != nil {
			t.Stop()
		}
		p.cancel()
		_ = p.srv.Close()
		select {
		case <-p.served:
		case <-time.After(5 * time.Second):
		}
		done := make(chan struct{})
		go func() { p.handlers.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		p.client.CloseIdleConnections()
	})
}

// Inject adds a fault rule; rules are tried in the order added, and the first
// that applies to a request decides what happens to it.
func (p *FaultProxy) Inject(f Fault) *FaultRule {
	r := &FaultRule{Fault: f, p: p}
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return r
}

// Remove drops a rule.
func (p *FaultProxy) Remove(r *FaultRule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.rules {
		if x == r {
			p.rules = append(p.rules[:i], p.rules[i+1:]...)
			return
		}
	}
}

// ClearFaults drops every rule: the proxy passes everything through.
func (p *FaultProxy) ClearFaults() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// ResetCounts forgets the counts, byte totals and request log.
func (p *FaultProxy) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = map[countKey]int{}
	p.bytes = map[RequestKind]int64{}
	p.digest = map[string]*digestCount{}
	p.log = nil
}

// Count is how many requests of this kind (KindAny: all) and method ("":
// all) the proxy has received.
func (p *FaultProxy) Count(kind RequestKind, method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, c := range p.counts {
		if (kind == KindAny || k.kind == kind) && (method == "" || k.method == method) {
			n += c
		}
	}
	return n
}

// BodyBytes is how many response body bytes the proxy has sent for requests
// of this kind (KindAny: all). It grows while a body is being sent.
func (p *FaultProxy) BodyBytes(kind RequestKind) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kind != KindAny {
		return p.bytes[kind]
	}
	var n int64
	for _, b := range p.bytes {
		n += b
	}
	return n
}

// BlobGETs is how many GETs of blob digest the proxy has received.
func (p *FaultProxy) BlobGETs(digest string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.digest[digest]; d != nil {
		return d.gets
	}
	return 0
}

// BlobBytes is how many body bytes of blob digest the proxy has sent; it
// grows while the body is being sent.
func (p *FaultProxy) BlobBytes(digest string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.digest[digest]; d != nil {
		return d.bytes
	}
	return 0
}

// WaitIdle waits up to d until no request is being answered (a client can
// have read a whole body before the proxy has counted its last bytes). It
// reports whether the proxy became idle.
func (p *FaultProxy) WaitIdle(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.active.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Requests returns the requests answered so far, in the order they ended
// (the first 20000).
func (p *FaultProxy) Requests() []RequestRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]RequestRecord(nil), p.log...)
}

var (
	reManifest = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	reUpload   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads(/.*)?$`)
	reBlob     = regexp.MustCompile(`^/v2/(.+)/blobs/([^/]+)$`)
	reTags     = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	reDigest   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// classify says what kind of request path is, the repository it names and
// the digest it names.
func classify(path string) (kind RequestKind, repo, digest string) {
	switch {
	case path == "/v2" || path == "/v2/":
		return KindPing, "", ""
	case path == "/token":
		return KindToken, "", ""
	}
	if m := reManifest.FindStringSubmatch(path); m != nil {
		if reDigest.MatchString(m[2]) {
			digest = m[2]
		}
		return KindManifest, m[1], digest
	}
	if m := reUpload.FindStringSubmatch(path); m != nil {
		return KindUpload, m[1], ""
	}
	if m := reBlob.FindStringSubmatch(path); m != nil {
		if reDigest.MatchString(m[2]) {
			digest = m[2]
		}
		return KindBlob, m[1], digest
	}
	if m := reTags.FindStringSubmatch(path); m != nil {
		return KindTags, m[1], ""
	}
	return KindOther, "", ""
}

// pick counts the request against every rule that matches it and returns
// the first rule that applies, if any.
func (p *FaultProxy) pick(kind RequestKind, method, digest string) *FaultRule {
	var chosen *FaultRule
	for _, r := range p.rules {
		if (r.Kind != KindAny && r.Kind != kind) || (r.Method != "" && r.Method != method) || (r.Digest != "" && r.Digest != digest) {
			continue
		}
		r.seen++
		if chosen != nil {
			continue
		}
		switch {
		case r.Nth > 0 && r.seen != r.Nth:
		case r.Nth == 0 && r.Times > 0 && r.hits >= r.Times:
		default:
			r.hits++
			chosen = r
		}
	}
	return chosen
}

// exchange is one request being answered: it tracks what was sent.
type exchange struct {
	p    *FaultProxy
	w    http.ResponseWriter
	rc   *http.ResponseController
	rec  RequestRecord
	blob bool // a blob GET: bytes are counted per digest too
}

func (x *exchange) header(code int) {
	x.rec.Status = code
	x.w.WriteHeader(code)
}

// write sends body bytes and counts them.
func (x *exchange) write(b []byte) error {
	n, err := x.w.Write(b)
	x.rec.Bytes += int64(n)
	x.p.mu.Lock()
	x.p.bytes[x.rec.Kind] += int64(n)
	if x.blob {
		x.p.digest[x.rec.Digest].bytes += int64(n)
	}
	x.p.mu.Unlock()
	return err
}

// cut ends the exchange by closing the connection: with a reset (RST) or
// cleanly (FIN). Whatever was written is flushed first.
func (x *exchange) cut(reset bool) {
	if x.rec.Status != 0 {
		_ = x.rc.Flush() // (a Flush before WriteHeader would send a 200)
	}
	conn, _, err := x.rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	closeConn(conn, reset)
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	p.active.Add(1)
	defer p.handlers.Done()
	defer p.active.Add(-1)
	kind, repo, digest := classify(r.URL.Path)
	x := &exchange{p: p, w: w, rc: http.NewResponseController(w),
		rec: RequestRecord{Method: r.Method, Path: r.URL.Path, Kind: kind, Digest: digest, Range: r.Header.Get("Range")}}
	x.blob = kind == KindBlob && r.Method == http.MethodGet && digest != ""

	p.mu.Lock()
	p.total++
	over := p.total > p.opts.maxRequests
	p.counts[countKey{kind, r.Method}]++
	if x.blob {
		if p.digest[digest] == nil {
			p.digest[digest] = &digestCount{}
		}
		p.digest[digest].gets++
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if len(p.log) < p.opts.maxLog {
			p.log = append(p.log, x.rec)
		}
		p.mu.Unlock()
	}()
	if over || p.closing.Load() {
		x.header(http.StatusServiceUnavailable)
		return
	}

	// Token auth comes first: a request without a token never reaches the
	// fault rules of its kind (it is counted, and answered 401).
	if p.opts.bearer && kind != KindToken && !p.validToken(r) {
		challenge := fmt.Sprintf(`Bearer realm="%s/token",service="%s"`, p.URL, p.opts.service)
		if repo != "" {
			challenge += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		x.header(http.StatusUnauthorized)
		_ = x.write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}` + "\n"))
		return
	}

	p.mu.Lock()
	rule := p.pick(kind, r.Method, digest)
	p.mu.Unlock()
	var f Fault
	if rule != nil {
		f = rule.Fault
		x.rec.Fault = f.Mode.String()
	}

	switch f.Mode {
	case FaultStatus:
		code := f.Status
		if code == 0 {
			code = http.StatusServiceUnavailable
		}
		drain(r.Body)
		w.Header().Set("Content-Type", "application/json")
		x.header(code)
		_ = x.write([]byte(fmt.Sprintf(`{"errors":[{"code":"UNAVAILABLE","message":"fault proxy: %d"}]}`+"\n", code)))
		return
	case FaultTooManyRequests:
		d := f.RetryAfter
		if d <= 0 {
			d = time.Second
		}
		drain(r.Body)
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
		w.Header().Set("Content-Type", "application/json")
		x.header(http.StatusTooManyRequests)
		_ = x.write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"fault proxy: slow down"}]}` + "\n"))
		return
	case FaultReset:
		if f.After < 0 {
			drain(r.Body)
			x.cut(true)
			return
		}
	case FaultRedirectLoop:
		drain(r.Body)
		hop, _ := strconv.Atoi(r.URL.Query().Get("hop"))
		w.Header().Set("Location", r.URL.Path+"?hop="+strconv.Itoa(hop+1))
		x.header(http.StatusTemporaryRedirect)
		return
	case FaultIgnoreRange:
		r.Header.Del("Range")
	case FaultDrip:
		if r.ContentLength != 0 && r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = &dripReader{r: r.Body, every: dripEvery(f), ctx: r.Context(), deadline: time.Now().Add(p.opts.maxSlow)}
			f.Mode = 0 // the answer goes back as it is
		}
	}

	var status int
	var hdr http.Header
	var body io.Reader
	var length int64
	if kind == KindToken {
		tok := p.newToken()
		b, _ := json.Marshal(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": time.Now().UTC().Format(time.RFC3339)})
		status, hdr, body, length = http.StatusOK, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(string(b)), int64(len(b))
	} else {
		resp, err := p.forward(r)
		if err != nil {
			w.Header().Set("Content-Type", "text/plain")
			x.header(http.StatusBadGateway)
			_ = x.write([]byte("fault proxy: upstream: " + err.Error() + "\n"))
			return
		}
		defer resp.Body.Close()
		status, hdr, body, length = resp.StatusCode, resp.Header, resp.Body, resp.ContentLength
	}
	for k, vs := range hdr {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		for _, v := range vs {
			if k == "Location" {
				v = p.rewriteLocation(v)
			}
			w.Header().Add(k, v)
		}
	}
	switch f.Mode {
	case FaultLinkLoop:
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, r.URL.RequestURI()))
	case FaultOversize:
		size := f.Size
		if size <= 0 {
			size = 64 << 20
		}
		if length >= 0 && size > length {
			body = io.MultiReader(body, io.LimitReader(repeatByte(' '), size-length))
			length = size
		}
	case FaultLonger:
		extra := f.Size
		if extra <= 0 {
			extra = 64 << 10
		}
		if length >= 0 {
			body = io.MultiReader(body, io.LimitReader(repeatByte('x'), extra))
			length += extra
		}
	}
	if length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	}
	at := f.After
	if at <= 0 {
		at = max(length, 0) / 2
	}
	if f.Mode == FaultReset && (at <= 0 || r.Method == http.MethodHead) {
		x.cut(true) // nothing to cut in the middle of
		return
	}
	x.header(status)
	if r.Method == http.MethodHead {
		return
	}
	switch f.Mode {
	case FaultReset, FaultTruncate, FaultIgnoreRange:
		if err := x.copy(io.LimitReader(body, at)); err != nil {
			return
		}
		x.cut(f.Mode == FaultReset)
	case FaultCorrupt:
		_ = x.copy(FlipReader(body, at, 64<<10)) // and every 64 KiB after
	case FaultSlow:
		p.trickle(r.Context(), x, body, f, at)
	case FaultDrip:
		p.drip(r.Context(), x, body, dripEvery(f))
	default:
		_ = x.copy(body)
	}
}

// copy sends all of src.
func (x *exchange) copy(src io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := x.write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// trickle sends body at f.Rate bytes a second, pausing f.Stall after at
// bytes; it gives up (reset) after the proxy's MaxSlow, and stops when the
// client goes away or the proxy closes.
func (p *FaultProxy) trickle(ctx context.Context, x *exchange, body io.Reader, f Fault, at int64) {
	rate := f.Rate
	if rate <= 0 {
		rate = 64 << 10
	}
	rate = max(rate, 1<<10)
	const tick = 50 * time.Millisecond
	chunk := max(rate*int64(tick)/int64(time.Second), 1)
	deadline := time.Now().Add(p.opts.maxSlow)
	buf := make([]byte, chunk)
	var sent int64
	stalled := f.Stall <= 0
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		if time.Now().After(deadline) {
			x.cut(true)
			return
		}
		want := chunk
		if !stalled && sent < at {
			want = min(chunk, at-sent)
		}
		n, err := io.ReadFull(body, buf[:want])
		if n > 0 {
			if x.write(buf[:n]) != nil {
				return
			}
			_ = x.rc.Flush()
			sent += int64(n)
		}
		if err != nil {
			return // EOF: done; an upstream error: the client sees a short body
		}
		if !stalled && sent >= at {
			stalled = true
			if !sleep(min(f.Stall, time.Until(deadline))) {
				return
			}
			continue
		}
		if !sleep(tick) {
			return
		}
	}
}

func dripEvery(f Fault) time.Duration {
	if f.Every > 0 {
		return f.Every
	}
	return 2 * time.Second
}

// drip sends body one byte every every; it gives up (reset) after the
// proxy's MaxSlow, and stops when the client goes away or the proxy closes.
func (p *FaultProxy) drip(ctx context.Context, x *exchange, body io.Reader, every time.Duration) {
	deadline := time.Now().Add(p.opts.maxSlow)
	var b [1]byte
	for {
		if time.Now().After(deadline) {
			x.cut(true)
			return
		}
		n, err := body.Read(b[:])
		if n > 0 {
			if x.write(b[:n]) != nil {
				return
			}
			_ = x.rc.Flush()
			t := time.NewTimer(every)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// dripReader reads a request body one byte every every, until deadline.
type dripReader struct {
	r        io.ReadCloser
	every    time.Duration
	ctx      context.Context
	deadline time.Time
}

func (d *dripReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if time.Now().After(d.deadline) {
		return 0, errors.New("fault proxy: drip gave up")
	}
	t := time.NewTimer(d.every)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.ctx.Done():
		return 0, d.ctx.Err()
	}
	return d.r.Read(b[:1])
}

func (d *dripReader) Close() error { return d.r.Close() }

// repeatByte is an endless stream of one byte.
type repeatByte byte

func (c repeatByte) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(c)
	}
	return len(b), nil
}

// forward sends r to the upstream and returns its response.
func (p *FaultProxy) forward(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(p.ctx, cancel)
	u := &url.URL{Scheme: "http", Host: p.Upstream, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	out.ContentLength = r.ContentLength
	for k, vs := range r.Header {
		ck := http.CanonicalHeaderKey(k)
		if hopByHop[ck] || (p.opts.bearer && ck == "Authorization") {
			continue
		}
		out.Header[ck] = append([]string(nil), vs...)
	}
	resp, err := p.client.Do(out)
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, done: func() { stop(); cancel() }}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	done func()
	once sync.Once
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// rewriteLocation points an upstream URL at the proxy.
func (p *FaultProxy) rewriteLocation(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Host != p.Upstream {
		return v
	}
	u.Host = p.Host
	return u.String()
}

func (p *FaultProxy) newToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	tok := fmt.Sprintf("faultproxy-token-%d", len(p.tokens)+1)
	p.tokens[tok] = true
	return tok
}

func (p *FaultProxy) validToken(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens[tok]
}

// drain reads (a bounded part of) a request body the proxy does not forward.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 1<<20)
}

// hopByHop are the headers a proxy does not pass on (RFC 9110, 7.6.1), and
// Content-Length, which the proxy sets itself.
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true,
}
