package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// authRecorder is an in-memory registry that records the Authorization
// headers it receives.
type authRecorder struct {
	next http.Handler
	mu   sync.Mutex
	auth []string
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := r.Header.Get("Authorization"); h != "" {
		a.mu.Lock()
		a.auth = append(a.auth, h)
		a.mu.Unlock()
	}
	a.next.ServeHTTP(w, r)
}

// upstream is an in-memory registry (fast, no program needed) with one blob.
func upstream(t *testing.T) (*authRecorder, string, []byte, string) {
	t.Helper()
	rec := &authRecorder{next: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	data := make([]byte, 200<<10)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	repo, err := name.NewRepository(host + "/fp/blob")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, static.NewLayer(data, types.DockerLayer)); err != nil {
		t.Fatal(err)
	}
	return rec, host, data, fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

type got struct {
	status int
	length int64
	header http.Header
	body   []byte
	err    error
	took   time.Duration
}

func get(t *testing.T, url string, hdr map[string]string) got {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return got{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return got{status: resp.StatusCode, length: resp.ContentLength, header: resp.Header, body: b, err: err, took: time.Since(start)}
}

func TestFaultProxyModes(t *testing.T) {
	_, host, data, dg := upstream(t)
	p := StartFaultProxy(t, host)
	blobURL := p.URL + "/v2/fp/blob/blobs/" + dg
	size := int64(len(data))

	tests := []struct {
		name  string
		fault Fault
		check func(t *testing.T, g got)
	}{
		{"pass through", Fault{}, func(t *testing.T, g got) {
			if g.err != nil || g.status != 200 || !bytes.Equal(g.body, data) {
				t.Errorf("status %d, %d bytes, err %v; want the blob", g.status, len(g.body), g.err)
			}
		}},
		{"reset mid-body", Fault{Mode: FaultReset, Kind: KindBlob, After: 1000}, func(t *testing.T, g got) {
			if g.err == nil || len(g.body) != 1000 || g.length != size {
				t.Errorf("got %d of %d bytes, err %v; want 1000 bytes and an error", len(g.body), g.length, g.err)
			}
		}},
		{"reset before the response", Fault{Mode: FaultReset, Kind: KindBlob, After: -1}, func(t *testing.T, g got) {
			if g.err == nil || g.status != 0 {
				t.Errorf("status %d, err %v; want no response", g.status, g.err)
			}
		}},
		{"truncated, correct Content-Length", Fault{Mode: FaultTruncate, Kind: KindBlob}, func(t *testing.T, g got) {
			if !errors.Is(g.err, io.ErrUnexpectedEOF) || int64(len(g.body)) != size/2 || g.length != size {
				t.Errorf("got %d bytes, Content-Length %d, err %v; want %d of %d and unexpected EOF", len(g.body), g.length, g.err, size/2, size)
			}
		}},
		{"502", Fault{Mode: FaultStatus, Status: 502}, func(t *testing.T, g got) {
			if g.status != 502 {
				t.Errorf("status %d, want 502", g.status)
			}
		}},
		{"429 with Retry-After", Fault{Mode: FaultTooManyRequests, RetryAfter: 2 * time.Second}, func(t *testing.T, g got) {
			if g.status != 429 || g.header.Get("Retry-After") != "2" {
				t.Errorf("status %d, Retry-After %q; want 429, 2", g.status, g.header.Get("Retry-After"))
			}
		}},
		{"slow", Fault{Mode: FaultSlow, Rate: 400 << 10}, func(t *testing.T, g got) {
			if g.err != nil || !bytes.Equal(g.body, data) || g.took < 400*time.Millisecond {
				t.Errorf("%d bytes in %s, err %v; want the blob in about 0.5s", len(g.body), g.took, g.err)
			}
		}},
		{"slow with a stall", Fault{Mode: FaultSlow, Rate: 4 << 20, After: 5000, Stall: 700 * time.Millisecond}, func(t *testing.T, g got) {
			if g.err != nil || !bytes.Equal(g.body, data) || g.took < 700*time.Millisecond {
				t.Errorf("%d bytes in %s, err %v; want the blob after a 0.7s stall", len(g.body), g.took, g.err)
			}
		}},
		{"corrupt", Fault{Mode: FaultCorrupt, Kind: KindBlob, After: 7}, func(t *testing.T, g got) {
			if g.err != nil || len(g.body) != len(data) {
				t.Fatalf("%d bytes, err %v", len(g.body), g.err)
			}
			var diff []int
			for i := range data {
				if data[i] != g.body[i] {
					diff = append(diff, i)
				}
			}
			var want []int
			for i := 7; i < len(data); i += 64 << 10 {
				want = append(want, i)
			}
			if fmt.Sprint(diff) != fmt.Sprint(want) {
				t.Errorf("bytes differ at %v, want %v", diff, want)
			}
		}},
		{"scoped to another digest", Fault{Mode: FaultStatus, Digest: "sha256:" + strings.Repeat("0", 64)}, func(t *testing.T, g got) {
			if g.status != 200 {
				t.Errorf("status %d, want 200", g.status)
			}
		}},
		{"scoped to manifests", Fault{Mode: FaultStatus, Kind: KindManifest}, func(t *testing.T, g got) {
			if g.status != 200 {
				t.Errorf("status %d, want 200", g.status)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.ClearFaults()
			p.WaitIdle(5 * time.Second) // the previous request may still be recording
			p.ResetCounts()
			var rule *FaultRule
			if tt.fault.Mode != 0 {
				rule = p.Inject(tt.fault)
			}
			g := get(t, blobURL, nil)
			tt.check(t, g)
			p.WaitIdle(5 * time.Second)
			if p.Count(KindBlob, http.MethodGet) != 1 || p.BlobGETs(dg) != 1 {
				t.Errorf("counted %d blob GETs (%d of %s), want 1", p.Count(KindBlob, http.MethodGet), p.BlobGETs(dg), dg)
			}
			if sent := p.BlobBytes(dg); sent != int64(len(g.body)) && g.status != 502 && g.status != 429 {
				t.Errorf("proxy counted %d body bytes, client got %d", sent, len(g.body))
			}
			if rule != nil && tt.fault.Digest == "" && tt.fault.Kind != KindManifest && rule.Hits() != 1 {
				t.Errorf("rule applied %d times, want 1", rule.Hits())
			}
		})
	}

	t.Run("Nth and Times", func(t *testing.T) {
		p.ClearFaults()
		nth := p.Inject(Fault{Mode: FaultStatus, Status: 500, Kind: KindBlob, Nth: 2})
		var codes []int
		for range 4 {
			codes = append(codes, get(t, blobURL, nil).status)
		}
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultStatus, Status: 503, Times: 2})
		for range 3 {
			codes = append(codes, get(t, blobURL, nil).status)
		}
		if want := []int{200, 500, 200, 200, 503, 503, 200}; fmt.Sprint(codes) != fmt.Sprint(want) {
			t.Errorf("statuses %v, want %v", codes, want)
		}
		if nth.Seen() != 4 || nth.Hits() != 1 {
			t.Errorf("Nth rule seen %d, hit %d; want 4, 1", nth.Seen(), nth.Hits())
		}
	})

	t.Run("Range is passed on and recorded", func(t *testing.T) {
		p.ClearFaults()
		p.WaitIdle(5 * time.Second) // the previous request may still be recording
		p.ResetCounts()
		g := get(t, blobURL, map[string]string{"Range": "bytes=100-199"})
		p.WaitIdle(5 * time.Second)
		if g.status != http.StatusPartialContent || !bytes.Equal(g.body, data[100:200]) {
			t.Errorf("status %d, %d bytes; want 206 and bytes 100-199", g.status, len(g.body))
		}
		reqs := p.Requests()
		if len(reqs) != 1 || reqs[0].Range != "bytes=100-199" || reqs[0].Bytes != 100 || reqs[0].Digest != dg {
			t.Errorf("records %+v", reqs)
		}
	})
}

// Pushes through the proxy work (upload Locations are rewritten), and the
// bearer mode makes clients fetch a token, which is never forwarded.
func TestFaultProxyPushAndBearer(t *testing.T) {
	up, host, _, _ := upstream(t)
	p := StartFaultProxy(t, host, WithBearerAuth())

	// The challenge.
	g := get(t, p.URL+"/v2/", nil)
	wantRealm := fmt.Sprintf(`Bearer realm="%s/token",service="bundle-faultproxy"`, p.URL)
	if g.status != 401 || g.header.Get("WWW-Authenticate") != wantRealm {
		t.Fatalf("GET /v2/: %d, WWW-Authenticate %q; want 401, %q", g.status, g.header.Get("WWW-Authenticate"), wantRealm)
	}
	// The token endpoint fails once, then works.
	p.Inject(Fault{Mode: FaultStatus, Status: 500, Kind: KindToken, Times: 1})
	if g := get(t, p.URL+"/token?service=x", nil); g.status != 500 {
		t.Fatalf("first token request: %d, want 500", g.status)
	}
	g = get(t, p.URL+"/token?service=x", nil)
	var tok struct{ Token string }
	if g.status != 200 || json.Unmarshal(g.body, &tok) != nil || tok.Token == "" {
		t.Fatalf("second token request: %d %s", g.status, g.body)
	}
	if g := get(t, p.URL+"/v2/", map[string]string{"Authorization": "Bearer " + tok.Token}); g.status != 200 {
		t.Fatalf("GET /v2/ with the token: %d, want 200", g.status)
	}

	// A push and a pull with go-containerregistry, through the proxy.
	img, err := random.Image(300<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(p.Host + "/fp/pushed:1")
	if err := remote.Write(ref, img, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatalf("push through the proxy: %v", err)
	}
	back, err := remote.Image(ref, remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := back.Digest()
	if d1 != d2 {
		t.Errorf("pulled %s, pushed %s", d2, d1)
	}
	if p.Count(KindUpload, "") == 0 || p.Count(KindToken, "") < 2 {
		t.Errorf("uploads %d, token requests %d; want both > 0", p.Count(KindUpload, ""), p.Count(KindToken, ""))
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.auth) != 0 {
		t.Errorf("the upstream saw Authorization headers: %q", up.auth)
	}
}

func TestFaultProxyBounds(t *testing.T) {
	if _, err := NewFaultProxy("http://192.0.2.1:5000"); err == nil || !strings.Contains(err.Error(), "not a loopback") {
		t.Errorf("non-loopback upstream: %v; want an error", err)
	}
	_, host, _, dg := upstream(t)
	p, err := NewFaultProxy(host, WithLifetime(1500*time.Millisecond), WithMaxRequests(1), WithMaxSlow(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Inject(Fault{Mode: FaultSlow, Rate: 1 << 10})
	g := get(t, p.URL+"/v2/fp/blob/blobs/"+dg, nil)
	if g.err == nil || g.took > 2*time.Second {
		t.Errorf("a slow trickle past MaxSlow: err %v after %s; want a reset after 0.1s", g.err, g.took)
	}
	p.WaitIdle(5 * time.Second)
	if g := get(t, p.URL+"/v2/", nil); g.status != 503 {
		t.Errorf("request over the budget: %d, want 503", g.status)
	}
	time.Sleep(1600 * time.Millisecond)
	if g := get(t, p.URL+"/v2/", nil); g.err == nil {
		t.Errorf("the proxy still answers after its lifetime: %d", g.status)
	}
}

// The hostile modes: what a registry that would hang a naive client sends.
func TestFaultProxyHostileModes(t *testing.T) {
	_, host, data, dg := upstream(t)
	p := StartFaultProxy(t, host)
	blobURL := p.URL + "/v2/fp/blob/blobs/" + dg
	size := int64(len(data))

	t.Run("redirect loop", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultRedirectLoop, Kind: KindBlob})
		c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		loc := blobURL
		for hop := 1; hop <= 3; hop++ {
			resp, err := c.Get(loc)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := "/v2/fp/blob/blobs/" + dg + fmt.Sprintf("?hop=%d", hop)
			if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
				t.Fatalf("hop %d: %d, Location %q; want 307 to %s", hop, resp.StatusCode, resp.Header.Get("Location"), want)
			}
			loc = p.URL + want
		}
	})
	t.Run("200 ignoring Range, half the body", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultIgnoreRange, Kind: KindBlob})
		g := get(t, blobURL, map[string]string{"Range": "bytes=100-199"})
		if g.status != 200 || g.length != size || int64(len(g.body)) != size/2 || !errors.Is(g.err, io.ErrUnexpectedEOF) || !bytes.Equal(g.body, data[:size/2]) {
			t.Errorf("status %d, Content-Length %d, %d bytes, err %v; want 200, %d, the first %d and unexpected EOF", g.status, g.length, len(g.body), g.err, size, size/2)
		}
	})
	t.Run("Link loop", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultLinkLoop, Kind: KindTags})
		g := get(t, p.URL+"/v2/fp/blob/tags/list?n=5", nil)
		if want := `</v2/fp/blob/tags/list?n=5>; rel="next"`; g.header.Get("Link") != want {
			t.Errorf("Link %q, want %q", g.header.Get("Link"), want)
		}
	})
	t.Run("oversize", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultOversize, Kind: KindBlob, Size: 1 << 20})
		g := get(t, blobURL, nil)
		if g.err != nil || g.length != 1<<20 || len(g.body) != 1<<20 || !bytes.Equal(g.body[:size], data) || strings.TrimLeft(string(g.body[size:]), " ") != "" {
			t.Errorf("Content-Length %d, %d bytes, err %v; want the blob padded with spaces to 1 MiB", g.length, len(g.body), g.err)
		}
	})
	t.Run("longer", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultLonger, Kind: KindBlob, Size: 100})
		g := get(t, blobURL, nil)
		if g.err != nil || g.length != size+100 || int64(len(g.body)) != size+100 || !bytes.Equal(g.body[:size], data) {
			t.Errorf("Content-Length %d, %d bytes, err %v; want the blob and 100 more bytes", g.length, len(g.body), g.err)
		}
	})
	t.Run("drip", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultDrip, Kind: KindBlob, Every: 100 * time.Millisecond})
		c := &http.Client{Timeout: time.Second}
		resp, err := c.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || len(b) < 5 || len(b) > 11 || !bytes.Equal(b, data[:len(b)]) {
			t.Errorf("%d bytes in 1s, err %v; want about 10 and a timeout", len(b), err)
		}
	})
	t.Run("drip on an upload", func(t *testing.T) {
		p.ClearFaults()
		p.Inject(Fault{Mode: FaultDrip, Kind: KindUpload, Every: 100 * time.Millisecond})
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Post(p.URL+"/v2/fp/up/blobs/uploads/", "application/octet-stream", strings.NewReader("0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPatch, loc, strings.NewReader("abcde"))
		if !strings.HasPrefix(loc, "http") {
			req, _ = http.NewRequest(http.MethodPatch, p.URL+loc, strings.NewReader("abcde"))
		}
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); took < 400*time.Millisecond {
			t.Errorf("a 5-byte upload read in %s, want about 0.5s (1 byte / 100ms)", took)
		}
	})
}
