package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The reading goroutine reads each blob in chunks into a small pool of
// reusable buffers and hands them to a worker that hashes (and with Deep
// decompresses) them, so reading and hashing overlap and separate blobs are
// hashed in parallel. Memory is the pool, whatever the size of a blob.
const (
	chunkSize  = 1 << 20
	poolChunks = 16
)

// role is what bundle.json says a blob is.
type role int

const (
	roleUnknown role = iota
	roleLayer
	roleConfig
	roleManifest
	roleIndex
)

func (r role) String() string {
	switch r {
	case roleLayer:
		return "layer"
	case roleConfig:
		return "config"
	case roleManifest:
		return "manifest"
	case roleIndex:
		return "index"
	}
	return "blob"
}

// blobJob is one blob entry on its way through a worker.
type blobJob struct {
	name      string
	digest    v1.Hash
	role      role
	mediaType types.MediaType // from bundle.json
	order     int             // position among the blob entries
	headSize  int64           // size in the tar header
	keep      int64           // keep up to this many bytes to parse (JSON blobs)
	deep      bool            // decompress and compute the diffID
	limits    deepLimits

	chunks chan []byte
	res    blobResult
}

// blobResult is what a worker learned about a blob.
type blobResult struct {
	size     int64  // bytes hashed
	sum      string // hex sha256 of those bytes
	complete bool   // the whole entry was read
	// For JSON blobs: what parsing found.
	tooBig   bool
	parseErr error
	manifest *v1.Manifest
	index    *v1.IndexManifest
	diffIDs  []v1.Hash   // a config's rootfs.diff_ids
	platform v1.Platform // a config's os, architecture and variant
	// For layers with Deep: the diffID, or why there is none.
	diffID   v1.Hash
	deepProb string
}

type pipeline struct {
	pool chan []byte
	jobs chan *blobJob
	wg   sync.WaitGroup
}

func newPipeline(workers int) *pipeline {
	p := &pipeline{
		pool: make(chan []byte, poolChunks),
		jobs: make(chan *blobJob),
	}
	for range poolChunks {
		p.pool <- make([]byte, chunkSize)
	}
	for range workers {
		p.wg.Go(func() {
			for j := range p.jobs {
				p.work(j)
			}
		})
	}
	return p
}

// close waits for every job handed out to be finished.
func (p *pipeline) close() {
	close(p.jobs)
	p.wg.Wait()
}

func (p *pipeline) work(j *blobJob) {
	h := sha256.New()
	var kept []byte
	keepChunk := func(c []byte) {
		if j.keep == 0 || j.res.tooBig {
			return
		}
		if int64(len(kept)+len(c)) > j.keep {
			j.res.tooBig, kept = true, nil
			return
		}
		kept = append(kept, c...)
	}
	if j.deep {
		cr := &chunkReader{ch: j.chunks, pool: p.pool, h: h}
		var same bool
		j.res.diffID, same, j.res.deepProb = decompress(cr, j.mediaType, j.limits)
		cr.drain()
		j.res.size = cr.n
		if same {
			defer func() { j.res.diffID = v1.Hash{Algorithm: "sha256", Hex: j.res.sum} }()
		}
	} else {
		for c := range j.chunks {
			h.Write(c)
			keepChunk(c)
			j.res.size += int64(len(c))
			p.pool <- c[:cap(c)]
		}
	}
	j.chunks = nil // closed and drained: let it go
	j.res.sum = hex.EncodeToString(h.Sum(nil))
	if j.keep > 0 && !j.res.tooBig && j.res.complete {
		parse(j, kept)
	}
}

// chunkReader reads the chunks of one blob as a stream, hashing them and
// giving each buffer back to the pool once consumed.
type chunkReader struct {
	ch   chan []byte
	pool chan []byte
	h    hash.Hash
	cur  []byte // unread part of buf
	buf  []byte
	n    int64
	eof  bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.buf != nil {
			c.pool <- c.buf[:cap(c.buf)]
			c.buf = nil
		}
		if c.eof {
			return 0, io.EOF
		}
		b, ok := <-c.ch
		if !ok {
			c.eof = true
			return 0, io.EOF
		}
		c.h.Write(b)
		c.n += int64(len(b))
		c.buf, c.cur = b, b
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// peek returns the first bytes of the stream without consuming them.
func (c *chunkReader) peek(n int) []byte {
	for len(c.cur) == 0 && !c.eof {
		b, ok := <-c.ch
		if !ok {
			c.eof = true
			break
		}
		c.h.Write(b)
		c.n += int64(len(b))
		c.buf, c.cur = b, b
	}
	return c.cur[:min(n, len(c.cur))]
}

// drain consumes (and so hashes) whatever the decompressor left.
func (c *chunkReader) drain() {
	c.cur = nil
	for {
		if c.buf != nil {
			c.pool <- c.buf[:cap(c.buf)]
			c.buf = nil
		}
		if c.eof {
			return
		}
		b, ok := <-c.ch
		if !ok {
			c.eof = true
			return
		}
		c.h.Write(b)
		c.n += int64(len(b))
		c.buf = b
	}
}

// fileHasher computes the sha256 of the whole file on its own goroutine,
// from copies of what the reader reads, and reports progress. With ends
// (the stream offsets where each volume of a split bundle ends) it
// computes one sha256 per volume instead.
type fileHasher struct {
	r        io.Reader
	progress Progress
	n        int64
	h        hash.Hash
	ends     []int64
	sums     []string // finished sums, one per volume
	ch       chan []byte
	pool     chan []byte
	done     chan struct{}
	stopped  bool
}

const fileChunks = 8

func newFileHasher(r io.Reader, progress Progress, hashFile bool, ends []int64) *fileHasher {
	f := &fileHasher{r: r, progress: progress, ends: ends}
	if hashFile || len(ends) > 0 {
		f.h = sha256.New()
		f.ch = make(chan []byte, fileChunks)
		f.pool = make(chan []byte, fileChunks)
		f.done = make(chan struct{})
		for range fileChunks {
			f.pool <- make([]byte, chunkSize)
		}
		go func() {
			defer close(f.done)
			var pos int64
			for b := range f.ch {
				for rest := b; len(rest) > 0; {
					k := len(rest)
					if i := len(f.sums); i < len(f.ends) && pos+int64(k) >= f.ends[i] {
						k = int(f.ends[i] - pos)
					}
					f.h.Write(rest[:k])
					pos += int64(k)
					rest = rest[k:]
					if i := len(f.sums); i < len(f.ends) && pos == f.ends[i] {
						f.sums = append(f.sums, hex.EncodeToString(f.h.Sum(nil)))
						f.h.Reset()
					}
				}
				f.pool <- b[:cap(b)]
			}
		}()
	}
	return f
}

func (f *fileHasher) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.n += int64(n)
		if f.h != nil {
			for b := p[:n]; len(b) > 0; {
				buf := <-f.pool
				k := copy(buf, b)
				f.ch <- buf[:k]
				b = b[k:]
			}
		}
		if f.progress != nil {
			f.progress.Update(f.n)
		}
	}
	return n, err
}

// stop stops the hashing goroutine. It may be called more than once.
func (f *fileHasher) stop() {
	if f.h != nil && !f.stopped {
		f.stopped = true
		close(f.ch)
		<-f.done
	}
}

// sum stops the hashing goroutine and returns the hex sha256 of what was
// read, or "" when the file is not hashed.
func (f *fileHasher) sum() string {
	if f.h == nil {
		return ""
	}
	f.stop()
	return hex.EncodeToString(f.h.Sum(nil))
}

// volumeSums stops the hashing goroutine and returns the sha256 of each
// volume read to its end.
func (f *fileHasher) volumeSums() []string {
	f.stop()
	return f.sums
}
