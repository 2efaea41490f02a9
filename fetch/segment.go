package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Segmented downloads. A registry or CDN often caps each connection's rate,
// so a blob of at least the segment threshold is fetched as several Range
// requests at once, each written at its own offset of the partial file and
// each resumed from its own offset when its body breaks.
//
// The blob is tiled by segments. A worker owns one segment at a time; when
// its segment is done it takes one nobody owns, or else splits the biggest
// one still being fetched and takes its second half. A connection that
// becomes free late (another download ended) thus still helps. Connections
// beyond a download's first come from the client's connBudget, and go back
// to it at once when a new download needs one: the segment then returns,
// with its progress, to its download.
//
// A goroutine hashes the written prefix of the blob as it grows (reading it
// back from the page cache); bytes under its mark are never written again,
// so the hash is of exactly the bytes the file holds. The blob is checked
// against its digest before it enters the cache, as every blob is.
//
// The byte ranges written are recorded in a sidecar file beside the partial
// file (see ingest.saveSegments), so that a run killed midway resumes each
// segment from where it stopped.

const (
	// DefaultSegmentThreshold is used when Options.SegmentThreshold is zero.
	DefaultSegmentThreshold = 64 << 20
	// DefaultSegments is used when Options.Segments is zero.
	DefaultSegments = 4
	// DefaultMaxConns is used when Options.MaxConns is zero.
	DefaultMaxConns = 8
)

const (
	// segBuf is the most a segment reads from its body at once. A split
	// leaves the owner at least this much, so a read in flight never
	// crosses the split.
	segBuf = 256 << 10
	// defaultSaveEvery is how many bytes are written between two saves of
	// the sidecar: what a killed run may have to fetch again.
	defaultSaveEvery = 4 << 20
)

// errRangeIgnored says a registry answered a Range request with the whole
// blob (200): segments are pointless there.
var errRangeIgnored = errors.New("registry ignores Range requests")

// errYield is the cause that stops a segment whose connection a new
// download took.
var errYield = errors.New("connection given to another download")

// segment is a part [start, end) of a blob; bytes [start, off) are written.
// end shrinks when the segment is split.
type segment struct {
	start, off, end int64
	busy            bool // a worker is fetching it
}

// segDownload is one segmented download of a blob into an ingest.
type segDownload struct {
	c     *Client
	hc    *http.Client
	u     string
	ing   *ingest
	size  int64
	piece int64 // the smallest part split off for a new connection

	mu       sync.Mutex
	segs     []*segment // in order; they tile [0, size)
	left     int64      // bytes not yet written
	hashMark int64      // bytes below it are hashed, or being hashed
	unsaved  int64      // bytes written since the sidecar was saved
	saveMu   sync.Mutex // orders saves of the sidecar

	received atomic.Int64
	wake     chan struct{} // the written prefix may have grown
	yielded  chan struct{} // a segment was given up by its worker
	written  chan struct{} // closed when every byte is written
	once     sync.Once
}

// span is a byte range [a, b) of a partial download known to be written.
type span struct{ a, b int64 }

// fetchSegments downloads the rest of the blob of the given size into ing
// with several connections, and hashes it: on success ing holds the whole
// blob and its hash, ready for Cache.finish. It returns the bytes received.
// errRangeIgnored means the registry does not serve ranges: ing is then as
// it was left, and the caller starts over with one stream.
func (c *Client) fetchSegments(ctx context.Context, hc *http.Client, u string, ing *ingest, size int64) (int64, error) {
	d := &segDownload{
		c: c, hc: hc, u: u, ing: ing, size: size,
		piece:   max(c.segThreshold/8, 1),
		wake:    make(chan struct{}, 1),
		yielded: make(chan struct{}, 1),
		written: make(chan struct{}),
	}
	spans := ing.done
	if !ing.hasSide && ing.size > 0 {
		spans = []span{{0, ing.size}} // a partial of one stream: its prefix
	}
	if ing.size > size || !d.layout(spans) {
		// Claims beyond the blob: nothing of the partial can be trusted.
		if err := ing.reset(); err != nil {
			return 0, fmt.Errorf("writing to the cache: %w", err)
		}
		d.layout(nil)
	}
	d.hashMark = ing.size
	if d.left == 0 {
		d.once.Do(func() { close(d.written) })
	}
	// The sidecar exists before any byte lands out of order: a run killed
	// from here on leaves holes that the sidecar describes.
	if err := d.save(); err != nil {
		return 0, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	fail := func(err error) {
		errMu.Lock()
		if first == nil {
			first = err
		}
		errMu.Unlock()
		cancel(err)
	}
	// Helpers waiting for a connection stop waiting once all is written.
	helpers, stopHelpers := context.WithCancel(ctx)
	defer stopHelpers()
	go func() {
		select {
		case <-d.written:
			stopHelpers()
		case <-helpers.Done():
		}
	}()
	// own works on the download's own connection. It stays until every
	// byte is written, to take up segments that helpers give back.
	own := func(s *segment) {
		defer wg.Done()
		for {
			for ; s != nil; s = d.next() {
				if err := d.fetch(ctx, s); err != nil {
					fail(err)
					return
				}
			}
			select {
			case <-d.yielded:
				s = d.next()
			case <-d.written:
				return
			case <-ctx.Done():
				return
			}
		}
	}
	// work works on a helper's connection until nothing is left worth a
	// connection (false) or a new download takes the connection (true).
	work := func(slot *connSlot) (taken bool) {
		defer c.conns.release(slot)
		for s := d.next(); s != nil; s = d.next() {
			err := d.fetch(slot.ctx, s)
			if context.Cause(slot.ctx) == errYield {
				d.mu.Lock()
				s.busy = false
				d.mu.Unlock()
				select {
				case d.yielded <- struct{}{}:
				default:
				}
				return true
			}
			if err != nil {
				fail(err)
				return false
			}
		}
		return false
	}
	// help works on connections from the budget: the one given, if any,
	// then the next one free each time a download takes it, until nothing
	// is left to do.
	help := func(slot *connSlot) {
		defer wg.Done()
		for {
			if slot == nil {
				if slot = c.conns.acquire(helpers, ctx); slot == nil {
					return
				}
			}
			if !work(slot) {
				return
			}
			slot = nil
		}
	}

	// How many connections: one per piece of half the threshold, at most
	// c.segments. Those free now split the rest evenly; the others wait for
	// a connection and then split the biggest segment still running.
	want := int(max(min(int64(c.segments), (d.left+c.segThreshold/2-1)/max(c.segThreshold/2, 1)), 1))
	now := c.conns.tryAcquire(ctx, want-1)
	d.plan(1 + len(now))

	hashed := make(chan error, 1)
	go func() { hashed <- d.hash(ctx) }()
	wg.Add(want)
	go own(d.next())
	for i := range want - 1 {
		var slot *connSlot
		if i < len(now) {
			slot = now[i]
		}
		go help(slot)
	}
	wg.Wait()
	stopHelpers()
	if first == nil && ctx.Err() != nil {
		first = context.Cause(ctx) // the caller's context ended
	}
	if first != nil {
		cancel(first)
	}
	herr := <-hashed
	n := d.received.Load()
	if first != nil {
		// Keep what was written for a later run.
		if err := d.save(); err != nil && !errors.Is(first, errRangeIgnored) {
			return n, errors.Join(first, err)
		}
		return n, first
	}
	if herr != nil {
		return n, herr
	}
	return n, nil
}

// layout makes the segments that tile [0, size) from the ranges already
// written (sorted, disjoint). It reports false for a range outside the blob.
func (d *segDownload) layout(spans []span) bool {
	d.segs, d.left = nil, 0
	var pos int64
	for i, sp := range spans {
		if sp.a < pos || sp.b <= sp.a || sp.b > d.size {
			d.segs = nil
			return false
		}
		if sp.a > pos {
			d.segs = append(d.segs, &segment{start: pos, off: pos, end: sp.a})
		}
		end := d.size
		if i+1 < len(spans) {
			end = spans[i+1].a
		}
		d.segs = append(d.segs, &segment{start: sp.a, off: sp.b, end: end})
		pos = end
	}
	if pos < d.size || len(d.segs) == 0 {
		d.segs = append(d.segs, &segment{start: pos, off: pos, end: d.size})
	}
	for _, s := range d.segs {
		d.left += s.end - s.off
	}
	return true
}

// plan splits the unfinished segments until there are n of them (when
// they are big enough), before any worker starts.
func (d *segDownload) plan(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var open []*segment
	for _, s := range d.segs {
		if s.off < s.end {
			open = append(open, s)
		}
	}
	if len(open) == 1 && n > 1 {
		// A fresh download: n even parts.
		s := open[0]
		parts := int64(n)
		if most := (s.end - s.off) / d.piece; most < parts {
			parts = max(most, 1)
		}
		step := (s.end - s.off) / parts
		for k := parts - 1; k >= 1; k-- {
			d.split(s, s.off+k*step)
		}
		return
	}
	// A resumed download: halve the biggest while there are fewer than n.
	for count := len(open); count < n; count++ {
		var big *segment
		for _, s := range d.segs {
			if s.off < s.end && (big == nil || s.end-s.off > big.end-big.off) {
				big = s
			}
		}
		if big == nil || big.end-big.off < 2*d.piece {
			return
		}
		d.split(big, big.off+(big.end-big.off)/2)
	}
}

// split cuts s at mid: s keeps [start, mid), a new unowned segment gets
// [mid, end). d.mu is held.
func (d *segDownload) split(s *segment, mid int64) *segment {
	n := &segment{start: mid, off: mid, end: s.end}
	s.end = mid
	for i, x := range d.segs {
		if x == s {
			d.segs = append(d.segs[:i+1], append([]*segment{n}, d.segs[i+1:]...)...)
			break
		}
	}
	return n
}

// next gives a worker a segment: an unfinished one nobody fetches, or else
// the second half of the biggest one being fetched. nil means nothing is
// left that is worth a connection.
func (d *segDownload) next() *segment {
	d.mu.Lock()
	defer d.mu.Unlock()
	var big *segment
	for _, s := range d.segs {
		if s.off >= s.end {
			continue
		}
		if !s.busy {
			s.busy = true
			return s
		}
		if big == nil || s.end-s.off > big.end-big.off {
			big = s
		}
	}
	if big == nil {
		return nil
	}
	// The owner may be reading up to segBuf bytes at big.off right now.
	mid := big.off + max((big.end-big.off)/2, segBuf)
	if big.end-mid < d.piece {
		return nil
	}
	n := d.split(big, mid)
	n.busy = true
	return n
}

// fetch downloads segment s to its end, resuming from its own offset when
// the body breaks, as FetchBlob does for a whole blob: every break counts
// against the retry policy.
func (d *segDownload) fetch(ctx context.Context, s *segment) error {
	done := func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return s.off >= s.end
	}
	breaks := 0
	for !done() {
		n, err := d.get(ctx, s)
		if err == nil {
			if done() {
				continue
			}
			// A well-formed answer for less than was asked (a server may
			// send a shorter range): a break like any other, or a
			// registry sending a byte per request would never be stopped.
			err = fmt.Errorf("registry sent %d bytes of a range, fewer than asked: %w", n, io.ErrUnexpectedEOF)
		}
		var se *statusError
		var re *requestError // the transport has retried it already
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, errRangeIgnored) || errors.As(err, &se) || errors.As(err, &re) || !retryableError(err) {
			return err
		}
		breaks++ // every break counts, as in FetchBlob
		if breaks >= d.c.policy.Attempts {
			return err
		}
		d.c.retries.Add(1)
		w := d.c.policy.backoff(breaks)
		d.c.progress.Retry("GET "+d.u, breaks+1, err.Error(), w)
		if err := wait(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

// get makes one Range request for the rest of segment s and writes what
// arrives at its offset. It stops at the segment's end, which a split may
// move while it reads. A body that stalls is dropped (a *StallError, the
// transport's).
func (d *segDownload) get(ctx context.Context, s *segment) (int64, error) {
	d.mu.Lock()
	off, end := s.off, s.end
	d.mu.Unlock()
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(context.WithValue(rctx, segmentKey{}, true), http.MethodGet, d.u, nil)
	if err != nil {
		return 0, err
	}
	asked := "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(end-1, 10)
	req.Header.Set("Range", asked)
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, &requestError{err: err}
	}
	defer resp.Body.Close()
	var length int64
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		a, b, total, ok := parseContentRange(cr)
		if !ok || a != off || b < a || (total >= 0 && total != d.size) {
			d.restart(s)
			return 0, fmt.Errorf("registry answered range %q for %s: %w", cr, asked, io.ErrUnexpectedEOF)
		}
		length = b - a + 1
	case http.StatusOK:
		return 0, errRangeIgnored
	case http.StatusRequestedRangeNotSatisfiable:
		d.restart(s)
		return 0, fmt.Errorf("registry answered %s for %s: %w", resp.Status, asked, io.ErrUnexpectedEOF)
	default:
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return 0, &statusError{URL: redact(d.u), Status: resp.Status, Code: resp.StatusCode}
	}
	buf := make([]byte, segBuf)
	body := io.LimitReader(resp.Body, length)
	var n int64
	for {
		d.mu.Lock()
		pos, room := s.off, s.end-s.off
		d.mu.Unlock()
		if room <= 0 {
			return n, nil // done, or split off and taken by another worker
		}
		k, rerr := body.Read(buf[:min(int64(len(buf)), room)])
		if k > 0 {
			if _, err := d.ing.f.WriteAt(buf[:k], pos); err != nil {
				return n, fmt.Errorf("writing to the cache: %w", err)
			}
			n += int64(k)
			d.received.Add(int64(k))
			d.c.progress.Downloaded(int64(k))
			if err := d.wrote(s, int64(k)); err != nil {
				return n, err
			}
		}
		if rerr == io.EOF {
			if n < length {
				return n, io.ErrUnexpectedEOF
			}
			return n, nil // all that was asked, or a shorter answer
		}
		if rerr != nil {
			return n, withURL(rerr, d.u)
		}
	}
}

// restart makes segment s start over after an answer for the wrong range,
// except for bytes already hashed: they are never written again.
func (d *segDownload) restart(s *segment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	off := max(s.start, min(d.hashMark, s.off))
	d.left += s.off - off
	s.off = off
}

// wrote records k more bytes of segment s as written, wakes the hasher,
// and saves the sidecar now and then.
func (d *segDownload) wrote(s *segment, k int64) error {
	d.mu.Lock()
	s.off += k
	d.left -= k
	d.unsaved += k
	save := d.unsaved >= d.c.saveEvery
	if save {
		d.unsaved = 0
	}
	if d.left == 0 {
		d.once.Do(func() { close(d.written) })
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	if save {
		return d.save()
	}
	return nil
}

// spans lists the written ranges, adjacent ones merged. d.mu is held.
func (d *segDownload) spans() []span {
	var out []span
	for _, s := range d.segs {
		if s.off == s.start {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k].b == s.start {
			out[k].b = s.off
			continue
		}
		out = append(out, span{s.start, s.off})
	}
	return out
}

// save writes the sidecar. Every range it lists was written before it was
// listed, so a sidecar of any age under-claims, never over-claims.
func (d *segDownload) save() error {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	d.mu.Lock()
	spans := d.spans()
	d.mu.Unlock()
	if err := d.ing.saveSegments(spans); err != nil {
		return fmt.Errorf("writing to the cache: %w", err)
	}
	return nil
}

// hash feeds the written prefix of the blob into ing's hash as it grows,
// reading it back from the file, until the whole blob is hashed or ctx
// ends. It alone sets ing.size (the bytes hashed) meanwhile.
func (d *segDownload) hash(ctx context.Context) error {
	buf := make([]byte, 1<<20)
	for {
		d.mu.Lock()
		from, to := d.hashMark, d.prefix()
		d.hashMark = max(from, to)
		d.mu.Unlock()
		for from < to {
			k := min(int64(len(buf)), to-from)
			if _, err := d.ing.f.ReadAt(buf[:k], from); err != nil {
				return fmt.Errorf("reading back the partial download: %w", err)
			}
			d.ing.h.Write(buf[:k])
			from += k
			d.ing.size = from
		}
		if d.ing.size == d.size {
			return nil
		}
		select {
		case <-d.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// prefix is the end of the written bytes that start at 0. d.mu is held.
func (d *segDownload) prefix() int64 {
	var p int64
	for _, s := range d.segs {
		p = s.off
		if s.off < s.end {
			break
		}
	}
	return p
}

// parseContentRange reads "bytes a-b/total"; total is -1 for "*".
func parseContentRange(v string) (a, b, total int64, ok bool) {
	v, ok = strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	r, t, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, 0, false
	}
	as, bs, ok := strings.Cut(r, "-")
	if !ok {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	a, err1 = strconv.ParseInt(as, 10, 64)
	b, err2 = strconv.ParseInt(bs, 10, 64)
	total = -1
	if t != "*" {
		total, err3 = strconv.ParseInt(t, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || a < 0 {
		return 0, 0, 0, false
	}
	return a, b, total, true
}

// connBudget counts the connections that a client's blob downloads hold.
// A download always gets its first connection (hold): while the budget is
// spent, it takes one from a segment's helper, which gives it up at once.
// A helper gets a connection only while fewer than max are held. So the
// client never holds more than max connections, or more than one per
// download running when those are more.
type connBudget struct {
	mu      sync.Mutex
	max     int
	used    int
	helpers map[*connSlot]bool // slots held by helpers, which may be taken
	freed   chan struct{}      // closed and replaced whenever one is released
}

// connSlot is a connection a segment's helper holds. Its context ends,
// with errYield, when a download takes it.
type connSlot struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	taken  bool          // a download took it (guarded by connBudget.mu)
	done   chan struct{} // closed when the helper let go of it
}

func newConnBudget(n int) *connBudget {
	return &connBudget{max: n, helpers: map[*connSlot]bool{}, freed: make(chan struct{})}
}

// newSlot makes a helper's slot, whose context derives from parent. b.mu
// is held.
func (b *connBudget) newSlot(parent context.Context) *connSlot {
	s := &connSlot{done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancelCause(parent)
	b.used++
	b.helpers[s] = true
	return s
}

// hold takes a connection for a download, taking one from a helper if the
// budget is spent. It waits only for that helper to let go of it (at once:
// its context ends), or until ctx ends.
func (b *connBudget) hold(ctx context.Context) error {
	b.mu.Lock()
	if b.used < b.max || len(b.helpers) == 0 {
		b.used++
		b.mu.Unlock()
		return nil
	}
	var s *connSlot
	for s = range b.helpers {
		break
	}
	delete(b.helpers, s)
	s.taken = true
	b.mu.Unlock()
	s.cancel(errYield)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		go func() { <-s.done; b.release(nil) }()
		return ctx.Err()
	}
}

// tryAcquire takes up to n connections for helpers within the budget,
// without waiting.
func (b *connBudget) tryAcquire(parent context.Context, n int) []*connSlot {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*connSlot
	for range max(min(n, b.max-b.used), 0) {
		out = append(out, b.newSlot(parent))
	}
	return out
}

// settle is how long a waiting helper lets a freed connection lie before
// it takes it: a download pool frees a connection and takes it again for
// its next blob within microseconds, and a helper that took it would only
// be made to give it back, having split a segment for nothing.
const settle = 100 * time.Millisecond

// acquire waits, until until ends, for a connection for a helper within
// the budget; nil if none came.
func (b *connBudget) acquire(until, parent context.Context) *connSlot {
	for {
		b.mu.Lock()
		if b.used < b.max {
			s := b.newSlot(parent)
			b.mu.Unlock()
			return s
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-until.Done():
			return nil
		}
		if wait(until, settle) != nil {
			return nil
		}
	}
}

// release gives back a download's connection (s nil) or a helper's slot.
// A slot a download took is its connection now: it stays counted.
func (b *connBudget) release(s *connSlot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s != nil {
		s.cancel(nil)
		delete(b.helpers, s)
		close(s.done)
		if s.taken {
			return
		}
	}
	b.used--
	close(b.freed)
	b.freed = make(chan struct{})
}
