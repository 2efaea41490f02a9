package load

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

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
func (p *classicPlanner) plan(im Chosen) (*classicImage, error) {
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
