package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/klauspost/pgzip"
)

// GzipLevel is the compression level of --gzip. Layers are gzip already
// and barely shrink again; the fastest level costs least for what little
// is gained (measured in docs/decisions.md).
const GzipLevel = pgzip.BestSpeed

// VolumeSummary is one volume of a split bundle that Create wrote.
type VolumeSummary struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// bundleOutput is where Create writes the bundle: one file (outputFile),
// numbered volumes (splitOutput), either of them or stdout through gzip.
// Nothing is visible under a final name before commit; abort removes
// everything unless commit succeeded.
type bundleOutput interface {
	io.Writer
	// commit finishes the output: temp files synced, <name>.sha256
	// written, then renamed into place. It returns the sha256 of the one
	// file (empty for volumes and stdout) and the bytes written.
	commit() (sum string, n int64, err error)
	abort()
	// sign sets the signature commit writes beside the bundle
	// (<name>.sigstore.json); without it commit removes an earlier one.
	sign(sig []byte)
	// writeFailed is closed when writing has failed (a full disk), and
	// writeErr is that error: Create stops the downloads at once.
	writeFailed() <-chan struct{}
	writeErr() error
}

// openBundleOutput opens the output opts ask for. It is nil for a plain
// bundle on stdout.
func openBundleOutput(opts CreateOptions) (bundleOutput, error) {
	if opts.VolumeSize > 0 && opts.Output == "-" {
		return nil, errors.New("a bundle written to stdout cannot be split into volumes")
	}
	var out bundleOutput
	var err error
	switch {
	case opts.Output == "-":
		if !opts.Gzip {
			return nil, nil
		}
		out = &streamOutput{w: opts.Stdout}
	case opts.VolumeSize > 0:
		out, err = openSplit(opts.Output, opts.VolumeSize)
	default:
		var f *outputFile
		if f, err = openOutput(opts.Output); err == nil {
			out = &plainOutput{f}
		}
	}
	if err != nil || !opts.Gzip {
		return out, err
	}
	zw, err := pgzip.NewWriterLevel(out, GzipLevel)
	if err != nil {
		out.abort()
		return nil, err
	}
	return &gzipOutput{zw: zw, inner: out, name: opts.Output}, nil
}

// outputVolumes lists the volumes an output wrote, if it is split.
func outputVolumes(out bundleOutput) []VolumeSummary {
	if g, ok := out.(*gzipOutput); ok {
		out = g.inner
	}
	if s, ok := out.(*splitOutput); ok {
		return s.written
	}
	return nil
}

// gzipOutput compresses the bundle (pgzip: blocks compressed in parallel,
// one standard gzip stream) into another output.
type gzipOutput struct {
	zw    *pgzip.Writer
	inner bundleOutput
	name  string // the output, for messages
	done  bool
}

func (g *gzipOutput) Write(p []byte) (int, error)  { return g.zw.Write(p) }
func (g *gzipOutput) sign(sig []byte)              { g.inner.sign(sig) }
func (g *gzipOutput) writeFailed() <-chan struct{} { return g.inner.writeFailed() }
func (g *gzipOutput) writeErr() error              { return g.inner.writeErr() }

func (g *gzipOutput) commit() (string, int64, error) {
	g.done = true
	if err := g.zw.Close(); err != nil {
		// Writing failed (a full disk) while pgzip flushed its blocks:
		// say so as a write error of the output, as when it fails sooner.
		if werr := g.inner.writeErr(); werr != nil {
			return "", 0, fmt.Errorf("writing %s: %w", g.name, werr)
		}
		return "", 0, fmt.Errorf("compressing the bundle: %w", err)
	}
	return g.inner.commit()
}

func (g *gzipOutput) abort() {
	if !g.done {
		g.done = true
		_ = g.zw.Close() // stops its goroutines
	}
	g.inner.abort()
}

// plainOutput is the bundle as one file. A commit removes the volumes of
// an earlier split bundle of the same name, which readers would otherwise
// find beside it (and which its new .sha256 no longer lists).
type plainOutput struct{ *outputFile }

func (p *plainOutput) commit() (string, int64, error) {
	sum, n, err := p.outputFile.commit()
	if err == nil {
		removeVolumes(p.path, 1)
	}
	return sum, n, err
}

// removeVolumes removes the volumes base.NNN from number from on.
func removeVolumes(base string, from int) {
	for n := from; n <= tarball.MaxVolumes; n++ {
		if err := os.Remove(tarball.VolumeName(base, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return
		}
	}
}

// streamOutput is stdout under gzip.
type streamOutput struct {
	w io.Writer
	n int64
}

func (s *streamOutput) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *streamOutput) commit() (string, int64, error) { return "", s.n, nil }
func (s *streamOutput) abort()                         {}
func (s *streamOutput) sign([]byte)                    {}             // stdout: the signature is only the entry
func (s *streamOutput) writeFailed() <-chan struct{}   { return nil } // stdout: the write returns its error
func (s *streamOutput) writeErr() error                { return nil }

// splitOutput writes the bundle as volumes base.001, base.002, … of size
// bytes each (the last one smaller), each to a temp file beside its final
// name, hashed as it is written and fsynced when full. commit writes
// base.sha256 with one line per volume, then renames every volume into
// place; a volume left over from an earlier, longer bundle of the same
// name is removed. Until then no volume exists under its final name.
type splitOutput struct {
	base string // absolute
	size int64
	lock *atomicfile.Held

	cur     *os.File
	curN    int64
	sum     hash.Hash
	temps   []string // finished and current temp files, by volume
	written []VolumeSummary
	n       int64
	done    bool
	err     error
	failCh  chan struct{}
	sidecar []byte
}

func (s *splitOutput) sign(sig []byte)              { s.sidecar = sig }
func (s *splitOutput) writeFailed() <-chan struct{} { return s.failCh }
func (s *splitOutput) writeErr() error              { return s.err }

// fail records the first write error.
func (s *splitOutput) fail(err error) error {
	if s.err == nil {
		s.err = err
		close(s.failCh)
	}
	return err
}

func openSplit(path string, size int64) (*splitOutput, error) {
	abs, err := checkOutputPath(path)
	if err != nil {
		return nil, err
	}
	lock, err := lockOutput(abs)
	if err != nil {
		return nil, err
	}
	removeStaleVolumeTemps(abs)
	s := &splitOutput{base: abs, size: size, lock: lock, failCh: make(chan struct{})}
	if err := s.next(); err != nil {
		lock.Release()
		return nil, err
	}
	return s, nil
}

// checkOutputPath checks that the output's directory exists and that the
// output is not a directory, and returns its absolute path.
func checkOutputPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("output directory %s: %w", dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("output directory %s is not a directory", dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return "", fmt.Errorf("output %s is a directory", path)
	}
	return abs, nil
}

// next starts the next volume.
func (s *splitOutput) next() error {
	n := len(s.temps) + 1
	if n > tarball.MaxVolumes {
		return fmt.Errorf("the bundle needs more than %d volumes of %d bytes: split it into larger volumes", tarball.MaxVolumes, s.size)
	}
	final := tarball.VolumeName(s.base, n)
	f, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write to output directory %s: %w", filepath.Dir(final), errors.Unwrap(err))
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	s.cur, s.curN, s.sum = f, 0, sha256.New()
	s.temps = append(s.temps, f.Name())
	return nil
}

// finish syncs and closes the current volume.
func (s *splitOutput) finish() error {
	f := s.cur
	s.cur = nil
	name := tarball.VolumeName(s.base, len(s.temps))
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	s.written = append(s.written, VolumeSummary{Name: filepath.Base(name), Size: s.curN, SHA256: hex.EncodeToString(s.sum.Sum(nil))})
	return nil
}

func (s *splitOutput) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if s.cur == nil {
			if err := s.next(); err != nil {
				return written, s.fail(err)
			}
		}
		k := min(int64(len(p)), s.size-s.curN)
		n, err := s.cur.Write(p[:k])
		s.sum.Write(p[:n])
		s.curN += int64(n)
		s.n += int64(n)
		written += n
		p = p[n:]
		if err != nil {
			return written, s.fail(fmt.Errorf("writing %s: %w", tarball.VolumeName(s.base, len(s.temps)), err))
		}
		if s.curN == s.size {
			if err := s.finish(); err != nil {
				return written, s.fail(err)
			}
		}
	}
	return written, nil
}

func (s *splitOutput) commit() (string, int64, error) {
	if s.cur != nil {
		if err := s.finish(); err != nil {
			return "", 0, err
		}
	}
	if err := writeSidecar(s.base, s.sidecar); err != nil {
		return "", 0, err
	}
	var lines strings.Builder
	for _, v := range s.written {
		fmt.Fprintf(&lines, "%s  %s\n", v.SHA256, v.Name)
	}
	if err := atomicfile.WriteFile(s.base+".sha256", []byte(lines.String()), 0o644); err != nil {
		return "", 0, err
	}
	for i, tmp := range s.temps {
		if err := os.Rename(tmp, tarball.VolumeName(s.base, i+1)); err != nil {
			// No partial set under the final names.
			for j := range i {
				os.Remove(tarball.VolumeName(s.base, j+1))
			}
			os.Remove(s.base + ".sha256")
			return "", 0, fmt.Errorf("renaming volume %d into place: %w", i+1, err)
		}
	}
	s.done = true
	// Volumes of an earlier, longer bundle of the same name would be read
	// as part of this one; an earlier unsplit bundle of the same name would
	// be read instead of it (-i images.tar).
	removeVolumes(s.base, len(s.temps)+1)
	if fi, err := os.Lstat(s.base); err == nil && fi.Mode().IsRegular() {
		os.Remove(s.base)
	}
	if d, err := os.Open(filepath.Dir(s.base)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	s.lock.Release()
	return "", s.n, nil
}

func (s *splitOutput) abort() {
	if s.done {
		return
	}
	s.done = true
	if s.cur != nil {
		s.cur.Close()
	}
	for _, tmp := range s.temps {
		os.Remove(tmp)
	}
	s.lock.Release()
}

// removeStaleVolumeTemps removes the temp files of a killed run that wrote
// the volumes of abs (".<name>.NNN.tmp-<digits>", ".<name>.sha256.tmp-…").
// The caller holds the output's lock.
func removeStaleVolumeTemps(abs string) {
	dir, base := filepath.Dir(abs), filepath.Base(abs)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), ".")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		i := strings.LastIndex(name, ".tmp-")
		if i < 0 || strings.Trim(name[i+5:], "0123456789") != "" {
			continue
		}
		if b, _, ok := tarball.ParseVolumeName(name[:i]); (ok && b == base) || name[:i] == base+".sha256" || name[:i] == base+SidecarSuffix {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
