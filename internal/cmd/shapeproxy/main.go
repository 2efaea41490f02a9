// Command shapeproxy is a loopback reverse proxy that makes a local
// registry behave like a remote one, for scripts/bench.sh: every request
// waits a fixed latency before it is forwarded, and every response body is
// paced to a per-connection rate. It listens on 127.0.0.1 only, prints its
// address, and exits after -max-time (bounded, as every test server here).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	upstream := flag.String("upstream", "", "registry host:port to forward to (loopback)")
	latency := flag.Duration("latency", 40*time.Millisecond, "added to every request")
	rate := flag.Int64("rate", 25<<20, "bytes per second per response body")
	maxTime := flag.Duration("max-time", time.Hour, "exit after this long")
	flag.Parse()
	if *upstream == "" || !strings.HasPrefix(*upstream, "127.") && !strings.HasPrefix(*upstream, "localhost") {
		fmt.Fprintln(os.Stderr, "usage: shapeproxy -upstream 127.0.0.1:PORT [-latency 40ms] [-rate BYTES/s]")
		os.Exit(2)
	}
	target, _ := url.Parse("http://" + *upstream)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "shapeproxy:", err)
		os.Exit(1)
	}
	self := ln.Addr().String()
	rp.ModifyResponse = func(resp *http.Response) error {
		// Keep redirects (blob uploads) pointing at the proxy.
		if loc := resp.Header.Get("Location"); loc != "" {
			resp.Header.Set("Location", strings.Replace(loc, *upstream, self, 1))
		}
		resp.Body = &paced{r: resp.Body, rate: *rate, start: time.Now()}
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(*latency)
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	fmt.Println(self)
	ctx, cancel := context.WithTimeout(context.Background(), *maxTime)
	defer cancel()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "shapeproxy:", err)
		os.Exit(1)
	}
}

// paced reads no faster than rate bytes per second.
type paced struct {
	r     io.ReadCloser
	rate  int64
	start time.Time
	n     int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > 64<<10 {
		b = b[:64<<10]
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	due := p.start.Add(time.Duration(float64(p.n) / float64(p.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	return n, err
}

func (p *paced) Close() error { return p.r.Close() }
