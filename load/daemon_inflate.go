package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/bundle-tool/bundle/verify"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/pgzip"
)

const (
	// inflateBlock and inflateBlocks are the read-ahead of one stream's
	// gzip decompressor.
	inflateBlock  = 1 << 20
	inflateBlocks = 4
)

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
	e, ok := b.file.Blob(h)
	if !ok || e.Size < 20 {
		return 0, false
	}
	sec := b.file.Section(e.Name)
	var head [2]byte
	var tail [4]byte
	if _, err := sec.ReadAt(head[:], 0); err != nil || head[0] != 0x1f || head[1] != 0x8b {
		return 0, false
	}
	if _, err := sec.ReadAt(tail[:], e.Size-4); err != nil {
		return 0, false
	}
	n := int64(binary.LittleEndian.Uint32(tail[:]))
	// Deflate expands incompressible data by 5 bytes per 64 KiB stored
	// block at most; gzip adds a header and a trailer.
	least := e.Size - e.Size/8192 - 1024
	for n < least {
		n += 1 << 32
	}
	return n, true
}

// Decompress says whether a load into a docker daemon with the classic
// image store sends gzip layers decompressed (Options.DockerDecompress).
type Decompress int

const (
	// DecompressAuto, the default: to a daemon on this machine, not to a
	// remote one (decompressLayers), unless BUNDLE_DOCKER_DECOMPRESS says
	// otherwise (NewDaemon).
	DecompressAuto Decompress = iota
	// DecompressAlways sends gzip layers decompressed to any daemon.
	DecompressAlways
	// DecompressNever sends every layer as the bundle carries it.
	DecompressNever
)

// decompressEnv is the mode BUNDLE_DOCKER_DECOMPRESS asks for, for
// measuring: 1 (or true, yes) always, 0 (or false, no) never, else auto.
// NewDaemon reads it when Options.DockerDecompress is DecompressAuto.
func decompressEnv() Decompress {
	switch os.Getenv("BUNDLE_DOCKER_DECOMPRESS") {
	case "1", "true", "yes":
		return DecompressAlways
	case "0", "false", "no":
		return DecompressNever
	}
	return DecompressAuto
}

// decompressLayers says whether a load sends gzip layers decompressed to a
// daemon with the classic store: with DecompressAuto, never to a remote one
// (2 to 3 times the bytes over the network), always to a local one (then
// the verify pass does not decompress those layers: the load does, once,
// under the bomb limit, and the daemon does not).
func decompressLayers(mode Decompress, local bool) bool {
	switch mode {
	case DecompressAlways:
		return true
	case DecompressNever:
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
