package load

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The classic image store (a graphdriver daemon: overlay2, vfs, …) keeps
// no compressed blobs. docker load unpacks the whole tar it is sent into a
// temp directory, then loads the images in the order manifest.json lists
// them, and for each layer not in its layer store yet decompresses the
// layer file on one core while it writes it out. So a load into it:
//
//   - sends gzip layers already decompressed, to a daemon on this machine
//     with cores to spare (below): the load decompresses (pgzip) while the
//     daemon is still reading the stream, and the daemon, which hashes
//     each layer file to check it against the config's diff_ids, gets the
//     same layers, so the image IDs (config digests) are the same;
//   - spreads the images over a few parallel POST /images/load streams, so
//     that the daemon loads several at once, leaving out of each the layers
//     that the daemon holds already or that another stream sends (docker
//     opens a layer file only when the layer's chain ID is not in its layer
//     store). A layer that several images need goes first, with the
//     cheapest image that has it, alone in a batch. A batch with images
//     that need a layer another batch sends is streamed all the same, all
//     but its manifest.json, which goes (and the daemon starts loading)
//     once that batch is in;
//   - names nothing until every batch is in: manifest.json carries no tags,
//     and the images are tagged (POST /images/{id}/tag) at the end, so a
//     failed load (a blob changed after the verify pass, a daemon error)
//     names no image, as with one stream.
//
// Memory stays bounded: a stream holds one layer's read-ahead.
//
// Decompressing on our side saves work: the load's verify pass would
// decompress every layer anyway (diffIDs, the bomb limit), and for the
// layers the load sends decompressed it does not (load.Inflater): the
// load decompresses each once, enforcing verify.InflateLimit, and the
// daemon, which hashes what it gets against the config's diff_ids, does not
// decompress at all. Measured with docker 20.10 on 2 cores, 1 GiB of gzip
// layers: 29.0 s with the verify pass decompressing and the daemon too,
// 24.0 s this way. The daemon writes the decompressed bytes to its temp
// directory before it loads them, 2 to 3 times what it would write, which
// is why a remote daemon gets the original blobs (and then the verify pass
// decompresses them). Options.DockerDecompress (or, left at its default,
// BUNDLE_DOCKER_DECOMPRESS=1 or 0) forces it on or off, for measuring.
const (
	// maxDaemonStreams caps the parallel POST /images/load streams.
	maxDaemonStreams = 4
)

// classicLayer is one layer of an image, as a stream sends it.
type classicLayer struct {
	blob    v1.Hash // the blob in the bundle
	diffID  v1.Hash // from the image config
	chainID v1.Hash
	inflate bool  // a gzip blob, sent decompressed under its diffID
	size    int64 // the tar entry's size: the blob's, or decompressed
	limit   int64 // with inflate: the most it may decompress to
}

// entry is the layer's name in the tar sent to the daemon.
func (l classicLayer) entry() string {
	if l.inflate {
		return tarball.BlobPath(l.diffID)
	}
	return tarball.BlobPath(l.blob)
}

// classicImage is one image to load into a classic image store.
type classicImage struct {
	im     Chosen
	config v1.Hash
	raw    []byte // the config's bytes
	layers []classicLayer
}

// loadClassic loads todo into a daemon with the classic image store.
// skipped are images the daemon holds already: their layers are not sent.
func (d *Daemon) loadClassic(ctx context.Context, b *Bundle, todo, skipped []Chosen, p Progress, res *Result) error {
	pl := newClassicPlanner(b, d.streams, d.inflate)
	for _, im := range skipped {
		if c, err := pl.plan(im); err == nil {
			pl.addHave(c)
		}
	}
	var total int64
	var blobs int
	seen := map[string]bool{}
	for _, im := range todo {
		c, err := pl.plan(im)
		if err != nil {
			return err
		}
		if err := pl.measure(c); err != nil {
			return err
		}
		// An image the daemon holds under another name (its ID is the
		// config digest) needs only its tag.
		if id, err := d.inspect(ctx, im.Primary.Config.String()); err != nil {
			return err
		} else if id == im.Primary.Config.String() {
			pl.addHave(c)
			continue
		}
		pl.pending = append(pl.pending, c)
		if !seen[tarball.BlobPath(c.config)] {
			seen[tarball.BlobPath(c.config)] = true
			total += int64(len(c.raw))
			blobs++
		}
		for _, l := range c.layers {
			if !seen[l.entry()] && !pl.have[l.chainID] {
				seen[l.entry()] = true
				total += l.size
				blobs++
			}
		}
	}
	p.Planned(len(todo), blobs, total)
	if err := d.sendAll(ctx, b, pl, p, res); err != nil {
		return err
	}
	// Every image is in: name them.
	for _, im := range todo {
		if err := d.tag(ctx, im); err != nil {
			return err
		}
	}
	return nil
}

// sendAll sends pl's batches over its streams. A stream whose batch waits
// for another batch's layers (all of it streamed but its manifest.json)
// frees its place for the next batch meanwhile, so that up to twice as
// many batches as streams are under way, no more than streams of them
// streaming.
func (d *Daemon) sendAll(ctx context.Context, b *Bundle, pl *classicPlanner, p Progress, res *Result) error {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Streams waiting for another batch give up when the load is stopped.
	defer context.AfterFunc(bctx, func() { pl.stop(context.Cause(bctx)) })()
	var sent, blobsSent atomic.Int64
	streaming := make(chan struct{}, pl.streams)
	var wg sync.WaitGroup
	for range min(2*pl.streams, len(pl.pending)) {
		wg.Go(func() {
			for {
				streaming <- struct{}{}
				bt := pl.next()
				if bt == nil {
					<-streaming
					return
				}
				held := true
				wait := func() error {
					if len(bt.wait) > 0 {
						held = false
						<-streaming
					}
					return pl.waitFor(bt)
				}
				n, err := d.sendBatch(bctx, b, bt, wait, func(k int64) { sent.Add(k); p.Sent(k) })
				if held {
					<-streaming
				}
				blobsSent.Add(int64(n))
				pl.done(bt, err)
				if err := pl.failed(); err != nil {
					pl.stop(err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	res.BytesSent += sent.Load()
	res.BlobsSent += int(blobsSent.Load())
	if err := pl.failed(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return ctx.Err()
}
