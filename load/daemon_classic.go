package load

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/pgzip"
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
// decompresses them). BUNDLE_DOCKER_DECOMPRESS=1 (or 0) forces it on (or
// off), for measuring.
const (
	// maxDaemonStreams caps the parallel POST /images/load streams.
	maxDaemonStreams = 4
	// inflateBlock and inflateBlocks are the read-ahead of one stream's
	// gzip decompressor.
	inflateBlock  = 1 << 20
	inflateBlocks = 4
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
	im     Image
	config v1.Hash
	raw    []byte // the config's bytes
	layers []classicLayer
}

// Per-image and per-layer work of the daemon (metadata, fsyncs, a
// process per layer), counted as bytes when sizing batches.
const (
	imageCost = 8 << 20
	layerCost = 4 << 20
)

// cost is roughly what loading the image costs the daemon beyond the
// layers it holds or that are counted already (in counted, when not nil,
// which cost adds the image's layers to), for sizing batches.
func (c *classicImage) cost(have, counted map[v1.Hash]bool) int64 {
	n := int64(len(c.raw)) + imageCost
	for _, l := range c.layers {
		if have[l.chainID] || counted[l.chainID] {
			continue
		}
		if counted != nil {
			counted[l.chainID] = true
		}
		n += l.size + layerCost
	}
	return n
}

// inflateLimit is verify.InflateLimit; tests make it smaller.
var inflateLimit = verify.InflateLimit

// BombError says a gzip layer decompresses to more than a layer may
// (verify.InflateLimit): likely a decompression bomb. The load stops and
// names no image. Sending is true when it was found while sending (its
// gzip trailer lied about its size), false when before anything was sent.
type BombError struct {
	Blob    v1.Hash
	Limit   int64
	Sending bool
}

// Problem says what is wrong with the layer.
func (e *BombError) Problem() string {
	return fmt.Sprintf("decompresses to more than %d bytes, the limit for its size: likely a decompression bomb", e.Limit)
}

func (e *BombError) Error() string {
	msg := fmt.Sprintf("layer %s %s", e.Blob, e.Problem())
	if e.Sending {
		msg += "; the load stopped and named no image"
	}
	return msg
}

// sizeError says a gzip layer did not decompress to the size its gzip
// trailer suggested (a stream of several gzip members, or over 4 GiB):
// the stream carrying it is abandoned (the daemon loads nothing of a tar
// it could not read to the end) and sent again with the size learnt.
type sizeError struct {
	blob   v1.Hash
	used   int64 // the size the tar entry was given
	actual int64
}

func (e *sizeError) Error() string {
	return fmt.Sprintf("layer %s decompresses to %d bytes, not the size its gzip trailer gives", e.blob, e.actual)
}

// classicPlanner makes the images' stream plans and hands out batches to
// the streams.
type classicPlanner struct {
	b       *Bundle
	streams int
	inflate bool // send gzip layers decompressed

	mu        sync.Mutex
	cond      *sync.Cond
	sizes     map[v1.Hash]int64 // decompressed sizes learnt from a failed stream
	plain     map[v1.Hash]bool  // layers to send compressed after all
	pending   []*classicImage
	have      map[v1.Hash]bool // chain IDs the daemon holds
	inflight  map[v1.Hash]int  // chain ID → the batch sending it
	running   int              // batches under way
	nextBatch int
	err       error
}

func newClassicPlanner(b *Bundle, streams int, inflate bool) *classicPlanner {
	p := &classicPlanner{
		b: b, streams: max(streams, 1), inflate: inflate,
		sizes: map[v1.Hash]int64{}, plain: map[v1.Hash]bool{},
		have: map[v1.Hash]bool{}, inflight: map[v1.Hash]int{},
	}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// plan reads im's config and works out its layers as a stream sends them.
func (p *classicPlanner) plan(im Image) (*classicImage, error) {
	m := im.Primary
	raw, err := p.b.ReadBlob(m.Config, tarball.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%s: reading its config: %w", im.Ref, err)
	}
	var cf struct {
		RootFS struct {
			DiffIDs []v1.Hash `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(raw, &cf); err != nil {
		return nil, fmt.Errorf("%s: parsing its config %s: %w", im.Ref, m.Config, err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s: its config %s lists %d layers, its manifest %d", im.Ref, m.Config, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	c := &classicImage{im: im, config: m.Config, raw: raw}
	var chain v1.Hash
	for i, h := range m.Layers {
		if !p.b.Has(h) {
			return nil, fmt.Errorf("%s uses blob %s, which the bundle does not carry (a delta bundle): a docker daemon needs every blob", im.Ref, h)
		}
		l := classicLayer{blob: h, diffID: cf.RootFS.DiffIDs[i], size: p.b.Size(h)}
		if i == 0 {
			chain = l.diffID
		} else {
			sum := sha256.Sum256([]byte(chain.String() + " " + l.diffID.String()))
			chain = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		}
		l.chainID = chain
		if p.inflate && !p.plain[h] {
			if n, ok := p.sizes[h]; ok {
				l.inflate, l.size = true, n
			} else if n, ok := gzipSize(p.b, h); ok {
				l.inflate, l.size = true, n
			}
			if l.inflate {
				l.limit = inflateLimit(p.b.Size(h))
			}
		}
		c.layers = append(c.layers, l)
	}
	return c, nil
}

// measure makes sure every layer c sends decompressed has a size within
// its limit: a guess over it (a trailer that lies, or a gzip of several
// members whose last is small) is replaced by the size the layer
// decompresses to, counted (and the blob's digest checked) up to the
// limit; a layer that goes beyond is a *BombError, before anything is
// sent.
func (p *classicPlanner) measure(c *classicImage) error {
	for i := range c.layers {
		l := &c.layers[i]
		if !l.inflate || l.size <= l.limit {
			continue
		}
		n, err := inflatedSize(p.b, l.blob, l.limit)
		if err != nil {
			return err
		}
		if n > l.limit {
			return &BombError{Blob: l.blob, Limit: l.limit}
		}
		l.size = n
		p.sizes[l.blob] = n
	}
	return nil
}

// inflatedSize counts what gzip blob h decompresses to, up to limit+1
// bytes, checking its digest when it reads it to its end.
func inflatedSize(b *Bundle, h v1.Hash, limit int64) (int64, error) {
	rc, err := b.OpenBlob(h)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	zr, err := pgzip.NewReaderN(rc, inflateBlock, inflateBlocks)
	if err != nil {
		return 0, fmt.Errorf("layer %s: decompressing: %w", h, err)
	}
	defer zr.Close()
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.Discard, io.LimitReader(zr, limit+1), buf)
	if err != nil {
		return n, fmt.Errorf("layer %s: decompressing: %w", h, err)
	}
	if n > limit {
		return n, nil
	}
	stopInflate(zr)
	if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
		return n, err
	}
	return n, nil
}

// gzipSize guesses the decompressed size of a gzip blob from its trailer
// (ISIZE, the size modulo 2^32 of the last member): the smallest size with
// that remainder that deflate could have made the blob from. ok is false
// when the blob is not gzip.
func gzipSize(b *Bundle, h v1.Hash) (int64, bool) {
	sp := b.blobs[h]
	if sp.size < 20 {
		return 0, false
	}
	var head [2]byte
	var tail [4]byte
	if _, err := b.f.ReadAt(head[:], sp.off); err != nil || head[0] != 0x1f || head[1] != 0x8b {
		return 0, false
	}
	if _, err := b.f.ReadAt(tail[:], sp.off+sp.size-4); err != nil {
		return 0, false
	}
	n := int64(binary.LittleEndian.Uint32(tail[:]))
	// Deflate expands incompressible data by 5 bytes per 64 KiB stored
	// block at most; gzip adds a header and a trailer.
	least := sp.size - sp.size/8192 - 1024
	for n < least {
		n += 1 << 32
	}
	return n, true
}

// decompressLayers says whether a load sends gzip layers decompressed to a
// daemon with the classic store: never to a remote one (2 to 3 times the
// bytes over the network), always to a local one (then the verify pass
// does not decompress those layers: the load does, once, under the bomb
// limit, and the daemon does not), unless BUNDLE_DOCKER_DECOMPRESS says
// otherwise.
func decompressLayers(local bool) bool {
	switch os.Getenv("BUNDLE_DOCKER_DECOMPRESS") {
	case "1", "true", "yes":
		return true
	case "0", "false", "no":
		return false
	}
	return local
}

// sendSize is how many bytes a load sends for blob h: decompressed for a
// gzip layer sent to a local daemon with the classic image store.
func (d *Daemon) sendSize(b *Bundle, h v1.Hash, containerd bool) int64 {
	if !containerd && d.inflate {
		if n, ok := gzipSize(b, h); ok {
			return n
		}
	}
	return blobSize(b, h)
}

// addHave notes chain IDs the daemon holds.
func (p *classicPlanner) addHave(c *classicImage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range c.layers {
		p.have[l.chainID] = true
	}
}

// classicBatch is what one POST /images/load sends.
type classicBatch struct {
	id     int
	images []*classicImage
	send   map[v1.Hash]bool // chain IDs whose layer files it carries
	wait   map[v1.Hash]bool // chain IDs other batches send, to be in first
}

// next returns the next batch to send; nil when none is left or the load
// failed.
//
// A layer that several images need goes first, alone in its batch (the
// daemon unpacks a whole batch before it loads its first image), with the
// cheapest image that carries it, for the batches of the others wait for it
// before they end. Otherwise a batch takes the images in order up to a
// share of what is left, so that the streams end together. With one
// stream, one batch takes everything.
func (p *classicPlanner) next() *classicBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil || len(p.pending) == 0 {
		return nil
	}
	p.nextBatch++
	bt := &classicBatch{id: p.nextBatch, send: map[v1.Hash]bool{}, wait: map[v1.Hash]bool{}}
	if c := p.unlocker(); c != nil && p.streams > 1 {
		p.take(bt, c)
	} else {
		var remaining int64
		counted := map[v1.Hash]bool{}
		for _, c := range p.pending {
			remaining += c.cost(p.have, counted)
		}
		budget := max(remaining/int64(2*p.streams), 1)
		if p.streams == 1 {
			budget = remaining
		}
		var bytes int64
		inBatch := map[v1.Hash]bool{}
		for _, c := range p.pending {
			if bytes >= budget {
				break
			}
			bytes += c.cost(p.have, inBatch)
			p.take(bt, c)
		}
	}
	p.pending = slices.DeleteFunc(p.pending, func(c *classicImage) bool { return slices.Contains(bt.images, c) })
	p.running++
	return bt
}

// unlocker returns the image to send first: of the images that carry a
// layer that no batch sends yet and that other images need too, the
// cheapest (fewest layers on a tie); nil when there is none.
func (p *classicPlanner) unlocker() *classicImage {
	users := map[v1.Hash]int{}
	for _, c := range p.pending {
		for _, l := range c.layers {
			if !p.have[l.chainID] {
				users[l.chainID]++
			}
		}
	}
	var best *classicImage
	var bestCost int64
	for _, c := range p.pending {
		shared := slices.ContainsFunc(c.layers, func(l classicLayer) bool {
			_, busy := p.inflight[l.chainID]
			return users[l.chainID] > 1 && !busy
		})
		if !shared {
			continue
		}
		cost := c.cost(p.have, nil)
		if best == nil || cost < bestCost || cost == bestCost && len(c.layers) < len(best.layers) {
			best, bestCost = c, cost
		}
	}
	return best
}

// take puts c in batch bt: bt sends the layers that the daemon lacks and no
// other batch sends, and waits for the others.
func (p *classicPlanner) take(bt *classicBatch, c *classicImage) {
	for _, l := range c.layers {
		if p.have[l.chainID] || bt.send[l.chainID] {
			continue
		}
		if id, busy := p.inflight[l.chainID]; busy && id != bt.id {
			bt.wait[l.chainID] = true
			continue
		}
		bt.send[l.chainID] = true
		p.inflight[l.chainID] = bt.id
	}
	bt.images = append(bt.images, c)
}

// waitFor waits until the layers bt needs from other batches are in the
// daemon, or the load failed.
func (p *classicPlanner) waitFor(bt *classicBatch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.err != nil {
			return p.err
		}
		missing := false
		for h := range bt.wait {
			if !p.have[h] {
				missing = true
				// The batch sending it broke off (a wrong size) and is
				// to be sent again: bt goes again too.
				if _, busy := p.inflight[h]; !busy {
					return errWaitLost
				}
			}
		}
		if !missing {
			return nil
		}
		p.cond.Wait()
	}
}

// errWaitLost ends, before its manifest.json, a batch that waits for a
// layer of a batch that broke off; it is sent again.
var errWaitLost = errors.New("the batch sending a layer this batch needs broke off")

// done ends batch bt: err nil means every image of it is loaded; a
// *sizeError puts the batch back with the size learnt (as does a batch
// that waited for it: it ended before its manifest.json); any other error
// stops the load.
func (p *classicPlanner) done(bt *classicBatch, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	defer p.cond.Broadcast()
	for h, id := range p.inflight {
		if id == bt.id {
			delete(p.inflight, h)
		}
	}
	var se *sizeError
	switch {
	case err == nil:
		for _, c := range bt.images {
			for _, l := range c.layers {
				p.have[l.chainID] = true
			}
		}
	case errors.Is(err, errWaitLost) && p.err == nil:
		p.pending = append(append([]*classicImage(nil), bt.images...), p.pending...)
	case errors.As(err, &se) && p.err == nil:
		// Nothing of the batch was loaded: the daemon reads the whole tar
		// before it loads anything. Send it again, decompressed with the
		// size learnt, or compressed if the size learnt was wrong too.
		if learnt, ok := p.sizes[se.blob]; ok && learnt == se.used {
			// The daemon would decompress it: when the verify pass did
			// not (Bundle.SetLoaderInflates), that is unchecked.
			if p.b.loaderInflates[se.blob] {
				p.err = fmt.Errorf("layer %s decompressed to %d bytes, then to %d (is something writing the bundle?)", se.blob, se.used, se.actual)
				return
			}
			p.plain[se.blob] = true
		}
		p.sizes[se.blob] = se.actual
		p.pending = append(append([]*classicImage(nil), bt.images...), p.pending...)
		for _, c := range p.pending {
			for i := range c.layers {
				l := &c.layers[i]
				switch {
				case l.blob != se.blob:
				case p.plain[l.blob]:
					l.inflate, l.size = false, p.b.Size(l.blob)
				default:
					l.size = se.actual
				}
			}
		}
	default:
		if p.err == nil {
			p.err = err
		}
	}
}

// failed returns the error that stopped the load, if any.
func (p *classicPlanner) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop records err as the load's error and wakes every waiting stream.
func (p *classicPlanner) stop(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
}

// loadClassic loads todo into a daemon with the classic image store.
// skipped are images the daemon holds already: their layers are not sent.
func (d *Daemon) loadClassic(ctx context.Context, b *Bundle, todo, skipped []Image, p Progress, res *Result) error {
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

// tag names the image (its ID is Primary's config digest) by its tag.
func (d *Daemon) tag(ctx context.Context, im Image) error {
	if !im.Tagged() {
		return nil
	}
	fam := dockerName(im)
	i := strings.LastIndex(fam, ":")
	q := url.Values{"repo": {fam[:i]}, "tag": {fam[i+1:]}}
	path := "/images/" + im.Primary.Config.String() + "/tag?" + q.Encode()
	ok, err := d.call(ctx, http.MethodPost, path, nil, nil)
	if err == nil && !ok {
		err = &DaemonError{Op: "POST /images/{id}/tag", Status: http.StatusNotFound, Msg: "no image " + im.Primary.Config.String() + " after loading it"}
	}
	if err != nil {
		return fmt.Errorf("tagging %s: %w", fam, err)
	}
	return nil
}

// sendBatch sends one batch in one POST /images/load and returns how many
// blobs it sent.
func (d *Daemon) sendBatch(ctx context.Context, b *Bundle, bt *classicBatch, wait func() error, sent func(int64)) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var blobs int
	writeErr := make(chan error, 1)
	go func() {
		var err error
		blobs, err = writeBatch(ctx, &countWriter{w: pw, fn: sent}, b, bt, wait)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	_, loadErr := d.postLoad(ctx, pr)
	pr.CloseWithError(errors.New("the daemon stopped reading"))
	werr := <-writeErr
	var ce *ChangedError
	var se *sizeError
	switch {
	case errors.As(werr, &ce), errors.As(werr, &se), errors.Is(werr, errWaitLost):
		return blobs, werr
	case loadErr != nil:
		return blobs, loadErr
	case werr != nil:
		return blobs, fmt.Errorf("sending images to the docker daemon: %w", werr)
	}
	return blobs, nil
}

// writeBatch writes the tar of one batch: the configs, the layer files it
// carries, and manifest.json last (a stream cut short can never be taken
// for a complete one). It returns how many blobs it wrote.
func writeBatch(ctx context.Context, w io.Writer, b *Bundle, bt *classicBatch, wait func() error) (int, error) {
	tw := tar.NewWriter(w)
	hdr := func(name string, size int64, dir bool) *tar.Header {
		h := &tar.Header{Name: name, Size: size, Mode: 0o644, ModTime: time.Unix(0, 0).UTC(), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if dir {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if size >= 1<<33-1 {
			h.Format = tar.FormatPAX
		}
		return h
	}
	for _, dir := range []string{tarball.BlobsDir, tarball.BlobsSHA256Dir} {
		if err := tw.WriteHeader(hdr(dir, 0, true)); err != nil {
			return 0, err
		}
	}
	written := map[string]bool{}
	var entries []tarball.DockerManifestEntry
	var zr *pgzip.Reader
	defer func() {
		if zr != nil {
			zr.Close()
		}
	}()
	buf := make([]byte, 256<<10)
	blobs := 0
	for _, c := range bt.images {
		e := tarball.DockerManifestEntry{Config: tarball.BlobPath(c.config), RepoTags: []string{}}
		if !written[e.Config] {
			written[e.Config] = true
			if err := tw.WriteHeader(hdr(e.Config, int64(len(c.raw)), false)); err != nil {
				return blobs, err
			}
			if _, err := tw.Write(c.raw); err != nil {
				return blobs, err
			}
			blobs++
		}
		for _, l := range c.layers {
			e.Layers = append(e.Layers, l.entry())
			if !bt.send[l.chainID] || written[l.entry()] {
				continue
			}
			written[l.entry()] = true
			if err := ctx.Err(); err != nil {
				return blobs, err
			}
			if err := tw.WriteHeader(hdr(l.entry(), l.size, false)); err != nil {
				return blobs, err
			}
			var err error
			if l.inflate {
				zr, err = inflateLayer(tw, b, l, zr, buf)
			} else {
				err = copyLayer(tw, b, l, buf)
			}
			if err != nil {
				return blobs, err
			}
			blobs++
		}
		entries = append(entries, e)
	}
	mj, err := json.Marshal(entries)
	if err != nil {
		return blobs, err
	}
	// The daemon starts loading once it has read manifest.json: the layers
	// this batch does not carry must be in by then.
	if zr != nil {
		zr.Close()
		zr = nil // its read-ahead buffers are not kept while waiting
	}
	if err := wait(); err != nil {
		return blobs, err
	}
	if err := tw.WriteHeader(hdr(tarball.DockerManifest, int64(len(mj)), false)); err != nil {
		return blobs, err
	}
	if _, err := tw.Write(mj); err != nil {
		return blobs, err
	}
	return blobs, tw.Close()
}

// copyLayer copies a layer blob as it is (not gzip: uncompressed, zstd).
// OpenBlob's reader fails at EOF when the bytes are not the blob's.
func copyLayer(w io.Writer, b *Bundle, l classicLayer, buf []byte) error {
	rc, err := b.OpenBlob(l.blob)
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.CopyBuffer(w, rc, buf)
	if err != nil {
		return err
	}
	if n != l.size {
		return &ChangedError{Entry: tarball.BlobPath(l.blob), Got: fmt.Sprintf("%d bytes", n), Want: fmt.Sprintf("%d bytes", l.size)}
	}
	return nil
}

// inflateLayer writes a gzip layer decompressed, checking on the way the
// blob's digest (OpenBlob). It does not hash what it writes: the daemon
// does, to check the layer against the config's diff_ids, and refuses the
// image when they differ (and then nothing is named: the load tags images
// only once all are in). zr is reused from one layer to the next; it
// returns the reader to reuse.
func inflateLayer(w io.Writer, b *Bundle, l classicLayer, zr *pgzip.Reader, buf []byte) (*pgzip.Reader, error) {
	rc, err := b.OpenBlob(l.blob)
	if err != nil {
		return zr, err
	}
	defer rc.Close()
	if zr == nil {
		zr, err = pgzip.NewReaderN(rc, inflateBlock, inflateBlocks)
	} else {
		err = zr.Reset(rc)
	}
	if err != nil {
		return zr, layerReadError(l, zr, rc, err, buf)
	}
	n, err := io.CopyBuffer(w, io.LimitReader(zr, l.size), buf)
	if err != nil {
		return zr, layerReadError(l, zr, rc, err, buf)
	}
	if n < l.size {
		return zr, &sizeError{blob: l.blob, used: l.size, actual: n}
	}
	// The entry is full: the stream must end here. A bomb is not
	// decompressed beyond the limit.
	if extra, err := io.CopyBuffer(io.Discard, io.LimitReader(zr, l.limit-n+1), buf); err != nil {
		return zr, layerReadError(l, zr, rc, err, buf)
	} else if n+extra > l.limit {
		stopInflate(zr)
		return zr, &BombError{Blob: l.blob, Limit: l.limit, Sending: true}
	} else if extra > 0 {
		return zr, &sizeError{blob: l.blob, used: l.size, actual: n + extra}
	}
	// Read the blob to its end, so that its digest is checked.
	stopInflate(zr)
	if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
		return zr, err
	}
	return zr, nil
}

// stopInflate stops zr's read-ahead goroutine, so that the blob can be
// read on this one, and leaves zr ready for Reset.
func stopInflate(zr *pgzip.Reader) {
	_ = zr.Reset(bytes.NewReader(nil)) // waits for the read-ahead to end; the header error is expected
}

// layerReadError is the error for a layer that failed to decompress: a
// *ChangedError when the blob is not the one verified (read to its end to
// know), else the decompressor's.
func layerReadError(l classicLayer, zr *pgzip.Reader, rc io.Reader, err error, buf []byte) error {
	var ce *ChangedError
	if errors.As(err, &ce) {
		return err
	}
	if zr != nil {
		stopInflate(zr)
	}
	if _, derr := io.CopyBuffer(io.Discard, rc, buf); errors.As(derr, &ce) {
		return derr
	}
	return fmt.Errorf("layer %s: decompressing: %w", l.blob, err)
}

// countWriter reports the bytes written through it.
type countWriter struct {
	w  io.Writer
	fn func(int64)
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 && c.fn != nil {
		c.fn(int64(n))
	}
	return n, err
}
