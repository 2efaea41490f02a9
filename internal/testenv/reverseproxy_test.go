package testenv

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// The reverse proxy passes requests on, rewrites a Location that points at
// the upstream, and runs both hooks: a request hook may change the body or
// answer itself (the upstream never sees that request), a response hook
// may change the answer's headers.
func TestReverseProxy(t *testing.T) {
	var seen atomic.Int64
	var up *httptest.Server
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Location", up.URL+"/v2/x/blobs/uploads/1?state=a")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(r.Method + " " + r.URL.Path + " " + string(body)))
	}))
	t.Cleanup(up.Close)
	upstream := strings.TrimPrefix(up.URL, "http://")

	p := StartReverseProxy(t, upstream, ProxyHooks{
		Request: func(p *ReverseProxy, w http.ResponseWriter, r *http.Request) bool {
			if p.Upstream != upstream {
				t.Errorf("Upstream = %q, want %q", p.Upstream, upstream)
			}
			switch r.URL.Path {
			case "/answered":
				w.WriteHeader(http.StatusTeapot)
				return true
			case "/changed":
				r.Body = io.NopCloser(strings.NewReader("changed"))
				r.ContentLength = int64(len("changed"))
			}
			return false
		},
		Response: func(resp *http.Response) error {
			if resp.Request.URL.Path == "/typed" {
				resp.Header.Set("Content-Type", "application/x-typed")
			}
			return nil
		},
	})
	if p.Host == upstream || !strings.HasPrefix(p.URL, "http://127.0.0.1:") || p.URL != "http://"+p.Host {
		t.Fatalf("proxy URL %q, Host %q (upstream %s)", p.URL, p.Host, upstream)
	}
	send := func(path, body string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Post(p.URL+path, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := send("/v2/x/blobs/uploads/", "data")
	if body != "POST /v2/x/blobs/uploads/ data" {
		t.Errorf("passed on: %q", body)
	}
	if loc, want := resp.Header.Get("Location"), p.URL+"/v2/x/blobs/uploads/1?state=a"; loc != want {
		t.Errorf("Location %q, want %q (pointing at the proxy)", loc, want)
	}
	if _, body := send("/changed", "original"); body != "POST /changed changed" {
		t.Errorf("the request hook's body did not reach the upstream: %q", body)
	}
	if resp, _ := send("/typed", ""); resp.Header.Get("Content-Type") != "application/x-typed" {
		t.Errorf("Content-Type %q: the response hook did not run", resp.Header.Get("Content-Type"))
	}
	before := seen.Load()
	if resp, _ := send("/answered", ""); resp.StatusCode != http.StatusTeapot || seen.Load() != before {
		t.Errorf("answered by the hook: status %d, the upstream saw %d requests more", resp.StatusCode, seen.Load()-before)
	}
}

// ResetConnection cuts the connection with a reset: the client sees what
// was flushed, then ECONNRESET.
func TestResetConnection(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("half"))
		w.(http.Flusher).Flush()
		ResetConnection(w)
	}))
	t.Cleanup(s.Close)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if string(body) != "half" || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read %q, %v; want \"half\", then a connection reset", body, err)
	}
}
