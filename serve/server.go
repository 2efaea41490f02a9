package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of ServerOptions.
const (
	DefaultMaxConns          = 512
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultWriteStall        = 60 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
)

// ServerOptions bound the server's connections. Zero values take the
// defaults.
type ServerOptions struct {
	// MaxConns bounds the open connections. When all are open, the one
	// idle the longest (no request in flight: kept alive, or opened and
	// silent) is closed to take a new one; when every one has a request
	// in flight, new ones wait in the listen backlog.
	MaxConns int
	// ReadHeaderTimeout bounds the wait for a request's headers (and a
	// TLS handshake); IdleTimeout the wait for the next request on a
	// kept-alive connection.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// WriteStall bounds how long one write of an answer may wait on a
	// client that does not read (a blob as a whole may take longer).
	WriteStall time.Duration
	// ShutdownTimeout bounds the drain when ctx ends: requests still in
	// flight after it are cut.
	ShutdownTimeout time.Duration
	// TLSCert and TLSKey, both or neither, are PEM files: HTTPS.
	TLSCert, TLSKey string
}

func (o *ServerOptions) defaults() {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteStall <= 0 {
		o.WriteStall = DefaultWriteStall
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// Serve answers requests on ln until ctx ends, then stops accepting,
// lets the requests in flight finish (up to ShutdownTimeout) and returns
// nil. It closes ln.
func (r *Registry) Serve(ctx context.Context, ln net.Listener, o ServerOptions) error {
	o.defaults()
	if (o.TLSCert == "") != (o.TLSKey == "") {
		ln.Close()
		return errors.New("--tls-cert and --tls-key go together")
	}
	r.stall = o.WriteStall
	ll := newLimitListener(ln, o.MaxConns)
	var served net.Listener = ll
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadHeaderTimeout + 20*time.Second, // requests have no body
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnState:         ll.state,
		ErrorLog:          log.New(io.Discard, "", 0), // hostile clients are normal: their errors are not news
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			ll.Close()
			return fmt.Errorf("loading the TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		served = tls.NewListener(ll, srv.TLSConfig)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(served) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("requests still in flight after %v were cut", o.ShutdownTimeout)
	}
	return nil
}

// limitListener bounds the open connections (ServerOptions.MaxConns).
type limitListener struct {
	net.Listener
	max int

	mu     sync.Mutex
	cond   *sync.Cond
	conns  map[*limitConn]struct{}
	closed bool
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
	// guarded by l.mu
	busy      bool
	idleSince time.Time
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	l := &limitListener{Listener: ln, max: max, conns: map[*limitConn]struct{}{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// Accept waits for room (closing the connection idle the longest when
// there is none), then accepts.
func (l *limitListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	for len(l.conns) >= l.max && !l.closed {
		var victim *limitConn
		for c := range l.conns {
			if !c.busy && (victim == nil || c.idleSince.Before(victim.idleSince)) {
				victim = c
			}
		}
		if victim == nil {
			l.cond.Wait()
			continue
		}
		delete(l.conns, victim)
		l.mu.Unlock()
		victim.Conn.Close()
		l.mu.Lock()
	}
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitConn{Conn: c, l: l, idleSince: time.Now()}
	l.mu.Lock()
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	return lc, nil
}

// Close stops Accept, waiting or not.
func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

func (l *limitListener) remove(c *limitConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.cond.Broadcast()
	l.mu.Unlock()
}

// state follows http.Server's connection states: a connection with a
// request in flight is never closed to make room.
func (l *limitListener) state(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		l.mu.Lock()
		lc.busy = true
		l.mu.Unlock()
	case http.StateIdle:
		l.mu.Lock()
		lc.busy, lc.idleSince = false, time.Now()
		l.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		l.remove(lc)
	}
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.remove(c) })
	return err
}
