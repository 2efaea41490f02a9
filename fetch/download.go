package fetch

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Downloader fetches blobs into the cache with a pool of workers, in the
// order they are added (as images resolve, then in the order the writer
// needs them), and lets the writer open each when ready.
type Downloader struct {
	ctx    context.Context
	client *Client
	cache  *Cache
	wg     sync.WaitGroup

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []download
	closed bool // no more adds
	done   map[v1.Hash]chan struct{}
	errs   map[v1.Hash]error
	first  error
	count  struct{ blobs, layers int }
}

// download is one blob to fetch.
type download struct {
	repo  name.Repository
	desc  v1.Descriptor
	user  string // the first image using it, for errors
	layer bool
}

// NewDownloader starts jobs workers, which wait for Add.
func NewDownloader(ctx context.Context, client *Client, cache *Cache, jobs int) *Downloader {
	d := &Downloader{ctx: ctx, client: client, cache: cache, done: map[v1.Hash]chan struct{}{}, errs: map[v1.Hash]error{}}
	d.cond = sync.NewCond(&d.mu)
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		// Unblock the writer for blobs never started.
		for _, q := range d.queue {
			if _, ok := d.errs[q.desc.Digest]; !ok {
				d.errs[q.desc.Digest] = ctx.Err()
			}
		}
		d.queue = nil
		d.cond.Broadcast()
	})
	for range max(jobs, 1) {
		d.wg.Go(d.work)
	}
	go func() { d.wg.Wait(); stop() }()
	return d
}

// Add queues blob desc of repo for download, once; the writer's Open of
// it then waits for the download.
func (d *Downloader) Add(repo name.Repository, desc v1.Descriptor, user string, layer bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.done[desc.Digest]; ok || d.closed || d.ctx.Err() != nil {
		return
	}
	d.done[desc.Digest] = make(chan struct{})
	d.queue = append(d.queue, download{repo: repo, desc: desc, user: user, layer: layer})
	d.cond.Signal()
}

// Has reports whether blob h was added.
func (d *Downloader) Has(h v1.Hash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.done[h]
	return ok
}

// Close says nothing more will be added: the workers end once the queue
// is empty.
func (d *Downloader) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.cond.Broadcast()
}

func (d *Downloader) work() {
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed && d.ctx.Err() == nil {
			d.cond.Wait()
		}
		if len(d.queue) == 0 || d.ctx.Err() != nil {
			d.mu.Unlock()
			return
		}
		q := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()

		_, err := d.client.FetchBlob(d.ctx, q.repo, q.desc)
		h := q.desc.Digest
		d.mu.Lock()
		if err != nil {
			// Only a download that failed by itself is the run's error;
			// one cancelled (the write failed, or the run was
			// interrupted) is not.
			if d.ctx.Err() == nil {
				err = fmt.Errorf("image %s: %w", q.user, err) // err names the blob
				if d.first == nil {
					d.first = err
				}
			}
			d.errs[h] = err
		} else {
			d.count.blobs++
			if q.layer {
				d.count.layers++
			}
		}
		ch := d.done[h] // under the lock: Add writes the map
		d.mu.Unlock()
		close(ch)
	}
}

// Open waits for h's download, if it has one, and opens it from the cache.
// A blob downloaded (and so checked) by this run is reported verified; one
// the cache already had is not, and the writer hashes it again.
func (d *Downloader) Open(ctx context.Context, h v1.Hash) (io.ReadCloser, bool, error) {
	d.mu.Lock()
	ch, downloading := d.done[h]
	d.mu.Unlock()
	if downloading {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-d.ctx.Done():
			return nil, false, d.ctx.Err()
		}
		d.mu.Lock()
		err := d.errs[h]
		d.mu.Unlock()
		if err != nil {
			return nil, false, err
		}
	}
	f, err := d.cache.Open(h)
	return f, downloading, err
}

// Wait waits for the workers to end (after Close, or the context's end).
func (d *Downloader) Wait() { d.wg.Wait() }

// Layers is how many layers were downloaded; read it after Wait.
func (d *Downloader) Layers() int { return d.count.layers }

// FirstErr is the first download that failed by itself (not cancelled).
func (d *Downloader) FirstErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.first
}
