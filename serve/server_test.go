package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/verify/bundletest"
)

// served is a Serve running for a test.
type served struct {
	done chan struct{} // closed when Serve returned
	err  error
}

// serveOn opens the bundles and runs Serve on a loopback port until the
// test ends; it returns the address, the cancel that drains it, and
// Serve's result once done is closed.
func serveOn(t *testing.T, opts serve.Options, so serve.ServerOptions) (string, context.CancelFunc, *served) {
	t.Helper()
	r, err := serve.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := &served{done: make(chan struct{})}
	go func() { done.err = r.Serve(ctx, ln, so); close(done.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of the cancel")
		}
	})
	return ln.Addr().String(), cancel, done
}

// Hostile requests get a clear 4xx with the spec's error body, nothing
// outside the bundle, and no 5xx.
func TestServeHostileRequests(t *testing.T) {
	b := standard(t)
	addr, _, _ := serveOn(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", b)}}, serve.ServerOptions{})
	layer := b.Index.Images[0].Manifests[0].Layers[0].String()
	long := strings.Repeat("a", 300)
	for _, path := range []string{
		"/v2/../../../../etc/passwd",
		"/v2/library/../../../etc/passwd/manifests/1",
		"/v2/library/app/../multi/manifests/1",
		"/v2/./library/app/manifests/1",
		"/v2/library//app/manifests/1",
		"/v2/library/app/manifests/..",
		"/v2/library/app/manifests/../../../../etc/passwd",
		"/v2/library/app/blobs/../../../../etc/passwd",
		"/v2/library%2Fapp/manifests/1",
		"/v2/library/app/manifests/%2e%2e",
		"/v2/LIBRARY/app/manifests/1",
		"/v2/library/app/manifests/" + strings.Repeat("x", 129),
		"/v2/" + long + "/manifests/1",
		"/v2/" + strings.Repeat("a/", 600) + "manifests/1",
		"/v2/library/app/blobs/sha256:" + strings.Repeat("g", 64),
		"/v2/library/app/blobs/sha256:" + strings.Repeat("a", 63),
		"/v2/library/app/blobs/" + strings.Repeat("sha256:", 50),
		"/v2/library/app/blobs/:",
		"/v2/library/app/tags/list?n=-5",
		"/v2/library/app/tags/list?last=" + strings.Repeat("z", 300),
		"/v2/_catalog?n=1e9",
		"/etc/passwd",
		"/",
	} {
		resp, body := rawGet(t, addr, path, "")
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("GET %s: %s", path, resp.Status)
			continue
		}
		if code := errorCode(t, body); code == "" {
			t.Errorf("GET %s: no code", path)
		}
		if bytes.Contains(body, []byte("root:")) {
			t.Errorf("GET %s: %s", path, body)
		}
	}
	// Huge n is the page limit; a Range past the end is 416.
	if resp, _ := rawGet(t, addr, "/v2/library/app/tags/list?n=99999999999999999999", ""); resp.StatusCode != 200 {
		t.Errorf("huge n: %s", resp.Status)
	}
	if resp, _ := rawGet(t, addr, "/v2/library/app/blobs/"+layer, "Range: bytes=999999999-\r\n"); resp.StatusCode != 416 {
		t.Errorf("Range past the end: %s", resp.Status)
	}
	// Headers over the limit: 431, before any handler runs.
	if resp, _ := rawGet(t, addr, "/v2/", "X-Big: "+strings.Repeat("a", 64<<10)+"\r\n"); resp.StatusCode != 431 {
		t.Errorf("64 KiB of headers: %s", resp.Status)
	}
}

// rawGet sends a GET as written (no client-side cleaning of the path).
func rawGet(t *testing.T, addr, path, headers string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", path, addr, headers); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// Idle connections cannot starve the server: past MaxConns, the one
// idle the longest is closed for a new one, and a silent connection is
// cut after ReadHeaderTimeout.
func TestServeIdleConnections(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 1_000
	}
	addr, _, _ := serveOn(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", standard(t))}},
		serve.ServerOptions{MaxConns: 64, ReadHeaderTimeout: 2 * time.Second})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	t.Logf("%d idle connections open in %v", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 5; i++ {
		resp, err := client.Get("http://" + addr + "/v2/library/app/manifests/1")
		if err != nil {
			t.Fatalf("a request among %d idle connections: %v", n, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a request among %d idle connections: %s", n, resp.Status)
		}
	}
	took := time.Since(start)
	t.Logf("5 requests among them in %v", took.Round(time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("5 requests took %v among %d idle connections", took, n)
	}
	// A connection that sends half a request is cut after the timeout.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n")
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	t0 := time.Now()
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("half a request: the server did not close it (%v)", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("half a request: closed after %v", d)
	}
}

// Cancelling Serve's context lets a download in flight finish, refuses
// new connections, and Serve returns nil.
func TestServeDrains(t *testing.T) {
	img, err := bundletest.FastImage(24<<20, 1, 7, false)
	if err != nil {
		t.Fatal(err)
	}
	b := newBundle(t, "2026-01-01T00:00:00Z", bundletest.Ref{Name: refApp, Image: img})
	addr, cancel, done := serveOn(t, serve.Options{Inputs: []string{write(t, t.TempDir(), "images.tar", b)}}, serve.ServerOptions{})
	layer := b.Index.Images[0].Manifests[0].Layers[0]
	want := rawOf(t, b, layer)
	resp, err := http.Get("http://" + addr + "/v2/library/app/blobs/" + layer.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1024)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(200 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted after the cancel")
	}
	select {
	case <-done.done:
		t.Fatalf("Serve returned (%v) with a download in flight", done.err)
	default:
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(first, rest...), want) {
		t.Fatalf("the download in flight: %d bytes, %v", 1024+len(rest), err)
	}
	select {
	case <-done.done:
		if done.err != nil {
			t.Errorf("Serve: %v", done.err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Serve did not return after the download ended")
	}
}

// With a certificate and key, Serve speaks HTTPS only.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bundle serve test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _, _ := serveOn(t, serve.Options{Inputs: []string{write(t, dir, "images.tar", standard(t))}}, serve.ServerOptions{TLSCert: certFile, TLSKey: keyFile})
	pool := x509.NewCertPool()
	pool.AddCert(mustParse(t, der))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + addr + "/v2/library/app/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("over HTTPS: %s", resp.Status)
	}
	if resp, err := http.Get("http://" + addr + "/v2/"); err == nil && resp.StatusCode == 200 {
		resp.Body.Close()
		t.Error("plain HTTP answered 200 on the HTTPS port")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
