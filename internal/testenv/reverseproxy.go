package testenv

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// ReverseProxy is a plain reverse proxy on 127.0.0.1 in front of a
// registry, for what FaultProxy's fault rules do not do: the test's hooks
// see every request (to count it, to change its body, or to answer it
// themselves) and every answer of the registry (to change its headers).
// A Location header that points at the upstream is rewritten to point at
// the proxy, so that an upload session never goes around it.
type ReverseProxy struct {
	// URL is "http://127.0.0.1:PORT"; Host is "127.0.0.1:PORT".
	URL, Host string
	// Upstream is the registry's host:port.
	Upstream string

	hooks ProxyHooks
	rp    *httputil.ReverseProxy
}

// ProxyHooks are a ReverseProxy's hooks; either may be nil.
type ProxyHooks struct {
	// Request runs before a request is passed on. It may replace r.Body;
	// it answers the request itself (through w) and returns true to keep
	// it from the upstream.
	Request func(p *ReverseProxy, w http.ResponseWriter, r *http.Request) (answered bool)
	// Response may change the upstream's answer before it is passed on.
	Response func(resp *http.Response) error
}

// StartReverseProxy starts a reverse proxy to the registry at upstream
// (host:port) and closes it when the test ends.
func StartReverseProxy(t testing.TB, upstream string, hooks ProxyHooks) *ReverseProxy {
	t.Helper()
	u, err := url.Parse("http://" + upstream)
	if err != nil || u.Host != upstream {
		t.Fatalf("reverse proxy: upstream %q is not host:port (%v)", upstream, err)
	}
	p := &ReverseProxy{Upstream: upstream, hooks: hooks, rp: httputil.NewSingleHostReverseProxy(u)}
	p.rp.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			if lu, err := url.Parse(loc); err == nil && lu.Host == p.Upstream {
				lu.Host = p.Host
				resp.Header.Set("Location", lu.String())
			}
		}
		if p.hooks.Response != nil {
			return p.hooks.Response(resp)
		}
		return nil
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	p.URL, p.Host = s.URL, strings.TrimPrefix(s.URL, "http://")
	return p
}

// ServeHTTP runs the Request hook, then passes the request on.
func (p *ReverseProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.hooks.Request != nil && p.hooks.Request(p, w, r) {
		return
	}
	p.rp.ServeHTTP(w, r)
}

// ResetConnection ends a handler's exchange (a ReverseProxy hook's, or a
// fake registry's) by closing its connection with a reset (RST), as a
// registry or a link that dies mid-answer does. What the handler wrote
// and flushed before has been sent.
func ResetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	closeConn(conn, true)
}

// closeConn closes conn: with a reset (RST) or cleanly (FIN).
func closeConn(conn net.Conn, reset bool) {
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
