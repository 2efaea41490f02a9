package fetch

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StallMinBytes is the least a body must move in each window of the stall
// timeout (or the rest of it, when less is left): a transfer that moves
// less is stalled. A 1 byte / 2 s drip is a stall; 64 KiB a minute (the
// default window) is about 1 KiB/s.
const StallMinBytes = 64 << 10

// stallTransport fails a transfer that makes too little progress: while
// the request's body is being sent, and while the response's body is being
// read, every window of the stall timeout must move StallMinBytes (or all
// that is left). The wait for the response's headers is the HTTP
// transport's ResponseHeaderTimeout, which starts only once the request is
// written: a request body read to its end but still in the write buffers
// of a server that reads it slowly is watched here, and its answer must
// come within two windows of the last read.
type stallTransport struct {
	inner  http.RoundTripper
	window time.Duration
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &stallWatch{window: t.window, cancel: cancel}
	r := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		// The window starts with the first read: not while dialling.
		r.Body = &watchedBody{rc: req.Body, w: w, length: req.ContentLength, lazy: true}
	}
	resp, err := t.inner.RoundTrip(r)
	w.pause(0)
	if err != nil {
		if se := w.stalled(); se != nil {
			err = se
		} else if headerTimeout(err) {
			err = &StallError{After: t.window, Answer: true}
		}
		cancel(nil)
		return nil, err
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		cancel(nil)
		return resp, nil
	}
	body := &watchedBody{rc: resp.Body, w: w, done: func() { cancel(nil) }}
	body.phase.Store(int64(w.begin(resp.ContentLength)))
	resp.Body = body
	return resp, nil
}

// headerTimeout says whether err is net/http's ResponseHeaderTimeout (which
// newHTTPTransport sets to the stall timeout). net/http has no exported
// error for it; its text is stable.
func headerTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && strings.Contains(err.Error(), "timeout awaiting response headers")
}

// stallWatch checks, at the end of each window, that a body moved enough.
// A request has two phases, its body being sent and the response's body
// being read; the time between them is not watched.
type stallWatch struct {
	window time.Duration
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	gen    int // the phase; a new phase or a pause makes a running check void
	timer  *time.Timer
	n      int64 // bytes moved in this phase
	mark   int64 // n when the window began
	length int64 // the phase's body length; -1 unknown
	sent   bool  // a request body read to its end: the answer is awaited
	waits  int   // windows that passed with the request body all read
	err    *StallError
}

// begin starts a phase and returns it.
func (w *stallWatch) begin(length int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	if w.err != nil {
		return w.gen
	}
	w.n, w.mark, w.length, w.sent, w.waits = 0, 0, length, false, 0
	if w.timer != nil {
		w.timer.Stop()
	}
	g := w.gen
	w.timer = time.AfterFunc(w.window, func() { w.check(g) })
	return g
}

// pause ends phase g (0: whichever runs).
func (w *stallWatch) pause(g int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g != 0 && g != w.gen {
		return
	}
	w.gen++
	if w.timer != nil {
		w.timer.Stop()
	}
}

// sentAll marks phase g's request body as read to its end.
func (w *stallWatch) sentAll(g int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g == w.gen {
		w.sent = true
	}
}

func (w *stallWatch) add(k int) {
	w.mu.Lock()
	w.n += int64(k)
	w.mu.Unlock()
}

func (w *stallWatch) check(g int) {
	w.mu.Lock()
	if g != w.gen || w.err != nil {
		w.mu.Unlock()
		return
	}
	need := int64(StallMinBytes)
	if w.length >= 0 {
		need = min(need, w.length-w.mark)
	}
	if w.sent || (w.length >= 0 && w.mark >= w.length) {
		// A request body read to its end may still sit in the write
		// buffers of a server that reads it slowly, and net/http's
		// ResponseHeaderTimeout starts only when the write is done:
		// the answer must come within two windows of the last read
		// (one to drain the buffers, one for the header timeout's).
		if w.waits++; w.waits >= 2 {
			w.err = &StallError{After: w.window, Answer: true}
			w.gen++
			err := w.err
			w.mu.Unlock()
			w.cancel(err)
			return
		}
		w.mark = w.n
		w.timer.Reset(w.window)
		w.mu.Unlock()
		return
	}
	if got := w.n - w.mark; got < need {
		w.err = &StallError{After: w.window, Got: got}
		w.gen++
		err := w.err
		w.mu.Unlock()
		w.cancel(err)
		return
	}
	w.mark = w.n
	w.timer.Reset(w.window)
	w.mu.Unlock()
}

func (w *stallWatch) stalled() *StallError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// watchedBody counts what is read from a body for its stallWatch, and
// turns the read error of a stalled transfer into the *StallError.
type watchedBody struct {
	rc     io.ReadCloser
	w      *stallWatch
	phase  atomic.Int64 // 0 until it began
	lazy   bool         // the phase begins with the first read
	length int64        // for a phase that begins with the first read
	done   func()
	once   sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.lazy && b.phase.Load() == 0 {
		b.phase.Store(int64(b.w.begin(b.length)))
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.add(n)
	}
	if err != nil {
		if se := b.w.stalled(); se != nil {
			return n, se
		}
		if g := b.phase.Load(); err == io.EOF && g > 0 {
			if b.lazy {
				b.w.sentAll(int(g)) // a request's: the answer is awaited
			} else {
				b.w.pause(int(g))
			}
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	if g := b.phase.Load(); g > 0 {
		b.w.pause(int(g))
	}
	if b.done != nil {
		b.once.Do(b.done)
	}
	return err
}
