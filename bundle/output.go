package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/internal/space"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// outputFile is the bundle being written: a temp file beside the final
// path, renamed into place only when complete. Writes are handed, in
// buffers, to a goroutine that hashes them (for <file>.sha256) and passes
// them on to one that writes them, so that reading blobs, hashing and
// writing overlap; the writer also starts write-back of each 64 MiB as it
// goes, so the fsync at the end has little left to do.
type outputFile struct {
	path string
	f    *os.File
	lock *atomicfile.Held
	done bool

	sum    hash.Hash
	n      int64
	cur    []byte
	free   chan []byte
	work   chan []byte
	hashed chan []byte
	errc   chan error
	werr   error // first error of the writing goroutine, once seen
	failed atomic.Pointer[error]
	failCh chan struct{} // closed when a write fails
	closed bool
	// sidecar is the signature written beside the bundle at commit (nil:
	// unsigned, and an earlier one is removed).
	sidecar []byte
}

// sign sets the signature that commit writes beside the bundle.
func (o *outputFile) sign(sig []byte) { o.sidecar = sig }

const (
	outBufSize   = 1 << 20
	outBufs      = 8
	writeBackGap = 64 << 20
)

// openOutput checks that the output directory exists and is writable,
// takes the output's lock (another create writing the same file makes
// this fail at once), and creates the temp file.
func openOutput(path string) (*outputFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w", dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("output directory %s is not a directory", dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("output %s is a directory", path)
	}
	lock, err := lockOutput(abs)
	if err != nil {
		return nil, err
	}
	// Holding the lock, any temp file of this output is a killed run's
	// (SIGKILL, power loss): remove it before it piles up.
	removeStaleTemps(abs)
	f, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".tmp-*")
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("cannot write to output directory %s: %w", dir, errors.Unwrap(err))
	}
	// CreateTemp makes 0600 files; a bundle is meant to be copied and read.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		lock.Release()
		return nil, err
	}
	o := &outputFile{
		path: abs, f: f, lock: lock, sum: sha256.New(),
		free: make(chan []byte, outBufs), work: make(chan []byte, outBufs), hashed: make(chan []byte, outBufs),
		errc:   make(chan error, 1),
		failCh: make(chan struct{}),
	}
	for range outBufs - 1 {
		o.free <- make([]byte, 0, outBufSize)
	}
	o.cur = make([]byte, 0, outBufSize)
	go o.hasher()
	go o.writer()
	return o, nil
}

// hasher hashes the filled buffers in order and passes them to writer.
func (o *outputFile) hasher() {
	defer close(o.hashed)
	for b := range o.work {
		if o.failed.Load() == nil {
			o.sum.Write(b)
		}
		o.hashed <- b
	}
}

// writer writes the hashed buffers in order.
func (o *outputFile) writer() {
	var err error
	var off, started int64
	for b := range o.hashed {
		if err == nil {
			if _, err = o.f.Write(b); err != nil {
				o.failed.Store(&err) // Write stops at once (disk full…)
				close(o.failCh)      // and Create stops downloading
			}
			off += int64(len(b))
			if off-started >= writeBackGap {
				startWriteBack(o.f, started, off-started)
				started = off
			}
		}
		o.free <- b[:0]
	}
	o.errc <- err
}

func (o *outputFile) Write(p []byte) (int, error) {
	if o.werr != nil {
		return 0, o.werr
	}
	if e := o.failed.Load(); e != nil {
		return 0, *e
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(o.cur[len(o.cur):cap(o.cur)], p)
		o.cur = o.cur[:len(o.cur)+k]
		p = p[k:]
		if len(o.cur) == cap(o.cur) {
			o.work <- o.cur
			o.cur = <-o.free
		}
	}
	o.n += int64(n)
	return n, nil
}

// failingOutput is an output that tells as soon as a write has failed
// (outputFile writes asynchronously, so Write reports it late). Create
// stops downloading then, and reports the write error.
type failingOutput interface {
	writeFailed() <-chan struct{}
	writeErr() error
}

// writeFailed is closed when writing the temp file has failed.
func (o *outputFile) writeFailed() <-chan struct{} { return o.failCh }

// writeErr is the error that writing the temp file failed with, if any.
func (o *outputFile) writeErr() error {
	if e := o.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// flush hands over the last buffer and waits for the writer.
func (o *outputFile) flush() error {
	if o.closed {
		return o.werr
	}
	o.closed = true
	if len(o.cur) > 0 {
		o.work <- o.cur
	}
	close(o.work)
	o.werr = <-o.errc
	return o.werr
}

// commit syncs the temp file, writes <file>.sigstore.json (or removes an
// earlier one) and <file>.sha256 (atomically), and renames the bundle
// into place.
func (o *outputFile) commit() (string, int64, error) {
	if err := o.flush(); err != nil {
		return "", 0, fmt.Errorf("writing %s: %w", o.path, err)
	}
	if err := o.f.Sync(); err != nil {
		return "", 0, fmt.Errorf("writing %s: %w", o.path, err)
	}
	if err := o.f.Close(); err != nil {
		return "", 0, fmt.Errorf("writing %s: %w", o.path, err)
	}
	if err := writeSidecar(o.path, o.sidecar); err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(o.sum.Sum(nil))
	line := fmt.Sprintf("%s  %s\n", sum, filepath.Base(o.path))
	if err := atomicfile.WriteFile(o.path+".sha256", []byte(line), 0o644); err != nil {
		return "", 0, err
	}
	if err := os.Rename(o.f.Name(), o.path); err != nil {
		return "", 0, fmt.Errorf("renaming into place: %w", err)
	}
	o.done = true
	if d, err := os.Open(filepath.Dir(o.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	o.lock.Release()
	return sum, o.n, nil
}

// abort removes the temp file unless commit succeeded.
func (o *outputFile) abort() {
	if o.done {
		return
	}
	_ = o.flush()
	o.f.Close()
	os.Remove(o.f.Name())
	o.lock.Release()
}

// removeStaleTemps removes the temp files that writing abs (and its
// .sha256 and .sigstore.json) makes: ".<name>.tmp-<digits>",
// ".<name>.sha256.tmp-<digits>" and ".<name>.sigstore.json.tmp-<digits>".
// The caller holds the output's lock.
func removeStaleTemps(abs string) {
	dir, base := filepath.Dir(abs), filepath.Base(abs)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		for _, prefix := range []string{"." + base + ".tmp-", "." + base + ".sha256.tmp-", "." + base + SidecarSuffix + ".tmp-"} {
			rest, ok := strings.CutPrefix(e.Name(), prefix)
			if ok && rest != "" && strings.Trim(rest, "0123456789") == "" && e.Type().IsRegular() {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// checkSpace fails, before any layer is downloaded, when the cache's or
// the output's filesystem (one sum when they share one) lacks the room
// for the blobs the cache lacks and for the bundle: its exact tar size
// (tarball.Size), a bound for --gzip (layers are gzip already: deflate's
// stored blocks and pgzip's block framing add well under 1%), the same
// total over the volumes of --split. Stdout needs no room.
func checkSpace(opts CreateOptions, cache *fetch.Cache, layout *tarball.Plan, missing []v1.Hash) error {
	var plan space.Plan
	if opts.Output != "-" {
		n, err := tarball.Size(layout)
		if err != nil {
			return err
		}
		if opts.Gzip {
			n += n/100 + 1<<20
		}
		files := 2 // the bundle and its .sha256
		if opts.VolumeSize > 0 {
			files = int((n+opts.VolumeSize-1)/opts.VolumeSize) + 1
		}
		if opts.SignKey != "" {
			files++ // .sigstore.json
		}
		abs, err := filepath.Abs(opts.Output)
		if err != nil {
			return err
		}
		plan.Add(filepath.Dir(abs), "the bundle", n, files)
	}
	var cached int64
	for _, h := range missing {
		cached += layout.Index.Blobs[h].Size
	}
	plan.Add(cache.Dir(), "the cache", cached, len(missing))
	return plan.Check()
}
