package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/internal/digestio"
	"github.com/bundle-tool/bundle/internal/safefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Cache is a content-addressed store of verified blobs on disk:
//
//	DIR/blobs/sha256/<hex>     complete blobs whose sha256 and size were checked
//	DIR/ingest/<hex>.partial   downloads under way (locked while written)
//	DIR/ingest/<hex>.segments  the byte ranges written, for a partial
//	                           written by segments (with holes)
//
// A blob reaches blobs/ only by rename after its digest and size were
// checked, so a concurrent writer never leaves a wrong blob under its name.
// Blobs are not fsynced: after a crash a blob may be damaged, so a blob
// from an earlier run is re-hashed whenever it is used. A partial download is kept so that a
// later run resumes it.
//
// A file planted in the cache (a link, a FIFO, a device) is never followed,
// waited on or read: complete blobs and ingest files are opened with
// O_NOFOLLOW, non-blocking, and must be regular; a planted ingest file is
// removed and the download starts again.
type Cache struct {
	dir string
}

// DefaultCacheDir is $XDG_CACHE_HOME/bundle (~/.cache/bundle).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory: %w (set --cache)", err)
	}
	return filepath.Join(d, "bundle"), nil
}

// OpenCache opens (creating if needed) the cache under dir.
func OpenCache(dir string) (*Cache, error) {
	for _, d := range []string{filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "ingest")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("opening cache: %w", err)
		}
	}
	return &Cache{dir: dir}, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Path is where a complete blob lives.
func (c *Cache) Path(h v1.Hash) string { return filepath.Join(c.dir, "blobs", h.Algorithm, h.Hex) }

func (c *Cache) partialPath(h v1.Hash) string {
	return filepath.Join(c.dir, "ingest", h.Hex+".partial")
}

func (c *Cache) segmentsPath(h v1.Hash) string {
	return filepath.Join(c.dir, "ingest", h.Hex+".segments")
}

// Has says whether the complete blob is in the cache with that size.
func (c *Cache) Has(h v1.Hash, size int64) bool {
	fi, err := os.Lstat(c.Path(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// Open opens a complete blob: a regular file, not a link.
func (c *Cache) Open(h v1.Hash) (*os.File, error) { return safefs.OpenNoFollow(c.Path(h)) }

// openPartial opens (creating it) the partial file of h for writing: a
// regular file. A link, a FIFO or a device planted under its name is
// removed, and a new file created.
func (c *Cache) openPartial(h v1.Hash) (*os.File, error) {
	p := c.partialPath(h)
	for range 3 {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
		if err == nil {
			fi, serr := f.Stat()
			if serr == nil && fi.Mode().IsRegular() {
				return f, nil
			}
			f.Close()
		} else if !errors.Is(err, syscall.ELOOP) {
			return nil, err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing %s (not a regular file): %w", p, err)
		}
	}
	return nil, fmt.Errorf("%s is not a regular file, and keeps coming back", p)
}

// Remove drops a blob from the cache (used when a reader finds it damaged).
func (c *Cache) Remove(h v1.Hash) error {
	err := os.Remove(c.Path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Put stores small content (a manifest) already in memory, after checking it.
func (c *Cache) Put(h v1.Hash, data []byte) error {
	if err := digestio.Check(data, h); err != nil {
		return err
	}
	if c.Has(h, int64(len(data))) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Join(c.dir, "ingest"), h.Hex+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return c.commit(f, h)
}

// commit syncs and closes f, then renames it to h's place.
func (c *Cache) commit(f *os.File, h v1.Hash) error {
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), c.Path(h)); err != nil {
		return fmt.Errorf("storing blob %s in the cache: %w", h, err)
	}
	return nil
}

// ingest is a locked partial download of one blob. Written by one stream,
// it is a prefix of the blob. Written by segments, it has holes, and its
// sidecar file lists the ranges written.
type ingest struct {
	f    *os.File
	h    hash.Hash
	size int64 // bytes [0, size) are in f and hashed into h

	side    string // the sidecar's path
	hasSide bool   // the sidecar exists: done says what f holds
	done    []span // ranges written, sorted, disjoint (from the sidecar)
}

// openIngest opens and locks the partial file of h, waiting (until ctx
// ends) for another process or goroutine that holds it. It hashes what is
// already there so the download can resume from its end. done reports that
// the blob is complete in the cache (another writer finished it while we
// waited); the partial file, now useless, is removed then.
func (c *Cache) openIngest(ctx context.Context, h v1.Hash) (ing *ingest, done bool, err error) {
	for {
		f, err := c.openPartial(h)
		if err != nil {
			return nil, false, fmt.Errorf("opening cache ingest file: %w", err)
		}
		if err := lockFile(ctx, f); err != nil {
			f.Close()
			return nil, false, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, false, err
		}
		st, err := os.Lstat(c.partialPath(h))
		current := err == nil && os.SameFile(fi, st)
		if c.Has(h, -1) {
			// Finished by another writer. Our file is either the renamed
			// blob itself, or a partial created after the rename: drop the
			// latter (we hold its lock, so nobody writes it).
			if current {
				_ = os.Remove(c.partialPath(h))
				_ = os.Remove(c.segmentsPath(h))
				_ = os.Remove(c.segmentsPath(h) + ".tmp")
			}
			atomicfile.Unlock(f)
			return nil, true, nil
		}
		if !current {
			// The previous holder renamed or removed the file we locked:
			// start over on the real path.
			atomicfile.Unlock(f)
			continue
		}
		ing = &ingest{f: f, h: sha256.New(), side: c.segmentsPath(h)}
		if err := ing.load(fi.Size()); err != nil {
			// An unreadable partial or sidecar is useless: start again.
			if err := ing.reset(); err != nil {
				ing.close()
				return nil, false, err
			}
		}
		return ing, false, nil
	}
}

// load reads what a partial file of size bytes holds, and hashes its
// prefix. Without a sidecar the whole file is the prefix (one stream wrote
// it). With one, the sidecar's ranges are what was written; a range past
// the end of the file is a damaged sidecar (an error: start again).
func (ing *ingest) load(size int64) error {
	b, err := safefs.ReadFileNoFollow(ing.side, maxSidecarSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		n, err := io.Copy(ing.h, ing.f)
		ing.size = n
		return err
	case err != nil:
		return err
	}
	ing.hasSide = true
	if ing.done, err = parseSegments(b); err != nil {
		return err
	}
	var prefix int64
	for i, sp := range ing.done {
		if sp.b > size {
			return fmt.Errorf("%s: range %d-%d is past the end of the partial file (%d bytes)", ing.side, sp.a, sp.b, size)
		}
		if i == 0 && sp.a == 0 {
			prefix = sp.b
		}
	}
	n, err := io.CopyN(ing.h, ing.f, prefix)
	ing.size = n
	return err
}

// sidecarMagic is the first line of a sidecar file.
const sidecarMagic = "bundle ingest segments v1"

// maxSidecarSpans bounds what a sidecar may list (a download makes a few).
const maxSidecarSpans = 4096

// maxSidecarSize bounds a sidecar file: maxSidecarSpans lines of two
// 19-digit numbers, with room to spare.
const maxSidecarSize = 1 << 20

// parseSegments reads a sidecar: its magic line, one "a b" line per range
// [a, b) written, in order, then "crc32 <hex>" of all that came before.
func parseSegments(b []byte) ([]span, error) {
	text := string(b)
	i := strings.LastIndex(strings.TrimSuffix(text, "\n"), "\n")
	if i < 0 || !strings.HasSuffix(text, "\n") {
		return nil, errors.New("bad sidecar: no checksum line")
	}
	body, sum := text[:i+1], strings.TrimSuffix(text[i+1:], "\n")
	if sum != fmt.Sprintf("crc32 %08x", crc32.ChecksumIEEE([]byte(body))) {
		return nil, errors.New("bad sidecar: checksum mismatch")
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if lines[0] != sidecarMagic {
		return nil, errors.New("bad sidecar: unknown format")
	}
	if len(lines)-1 > maxSidecarSpans {
		return nil, errors.New("bad sidecar: too many ranges")
	}
	spans := []span{}
	var end int64
	for _, l := range lines[1:] {
		as, bs, ok := strings.Cut(l, " ")
		a, err1 := strconv.ParseInt(as, 10, 64)
		b, err2 := strconv.ParseInt(bs, 10, 64)
		if !ok || err1 != nil || err2 != nil || a < end || b <= a || (len(spans) > 0 && a == end) {
			return nil, fmt.Errorf("bad sidecar: range %q", l)
		}
		spans = append(spans, span{a, b})
		end = b
	}
	return spans, nil
}

// formatSegments is the sidecar text for spans (sorted, disjoint, not
// adjacent).
func formatSegments(spans []span) []byte {
	var b strings.Builder
	b.WriteString(sidecarMagic + "\n")
	for _, sp := range spans {
		fmt.Fprintf(&b, "%d %d\n", sp.a, sp.b)
	}
	fmt.Fprintf(&b, "crc32 %08x\n", crc32.ChecksumIEEE([]byte(b.String())))
	return []byte(b.String())
}

// saveSegments replaces the sidecar by one listing spans, atomically (a
// temp file renamed): a killed run leaves the old one or the new one.
func (ing *ingest) saveSegments(spans []span) error {
	tmp := ing.side + ".tmp"
	// A new file, never through a link planted under the temp name.
	if err := removeIfExists(tmp); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(formatSegments(spans))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, ing.side); err != nil {
		return err
	}
	ing.hasSide = true
	return nil
}

// dropSegments turns a partial written by segments into one for a single
// stream: only its hashed prefix is kept, and the sidecar goes.
func (ing *ingest) dropSegments() error {
	if !ing.hasSide {
		return nil
	}
	if err := ing.f.Truncate(ing.size); err != nil {
		return err
	}
	if _, err := ing.f.Seek(ing.size, io.SeekStart); err != nil {
		return err
	}
	if err := ing.removeSide(); err != nil {
		return err
	}
	ing.hasSide, ing.done = false, nil
	return nil
}

// removeSide removes the sidecar, and its temp file if a kill left one.
func (ing *ingest) removeSide() error {
	_ = os.Remove(ing.side + ".tmp")
	return removeIfExists(ing.side)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// lockFile takes an exclusive flock on f, polling so that ctx can end the
// wait (a blocking flock cannot be interrupted: a stopped run would hang
// behind another process's slow download).
func lockFile(ctx context.Context, f *os.File) error {
	for {
		err := atomicfile.LockFile(f)
		if err == nil {
			return nil
		}
		if !errors.Is(err, atomicfile.ErrHeld) {
			return err
		}
		if err := wait(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func (ing *ingest) Write(p []byte) (int, error) {
	n, err := ing.f.Write(p)
	ing.h.Write(p[:n])
	ing.size += int64(n)
	return n, err
}

// reset empties the partial file. The sidecar goes after the bytes: a run
// killed between leaves a sidecar claiming bytes past the end of an empty
// file, which load rejects.
func (ing *ingest) reset() error {
	if err := ing.f.Truncate(0); err != nil {
		return err
	}
	if _, err := ing.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	ing.h.Reset()
	ing.size = 0
	if err := ing.removeSide(); err != nil {
		return err
	}
	ing.hasSide, ing.done = false, nil
	return nil
}

func (ing *ingest) digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", ing.h.Sum(nil))}
}

// finish checks the digest and size and moves the blob into place; on a
// mismatch the partial is discarded. It always releases the lock.
func (c *Cache) finish(ing *ingest, want v1.Hash, size int64) error {
	if ing.size != size {
		return &SizeError{Digest: want, Got: ing.size, Want: size}
	}
	if got := ing.digest(); got != want {
		_ = ing.reset()
		ing.close()
		return &DigestError{Want: want, Got: got}
	}
	name := ing.f.Name()
	// Every byte is written: without its sidecar the partial is read as
	// the complete prefix it is, should a kill come before the rename.
	if err := ing.removeSide(); err != nil {
		ing.close()
		return fmt.Errorf("storing blob %s in the cache: %w", want, err)
	}
	// No fsync here: a crash can leave a renamed blob whose pages never
	// reached the disk, so every reader re-hashes a blob it did not just
	// download itself (tarball.Write does). That is cheaper than one fsync
	// per blob, which cost more than the download on loopback.
	// Rename while still holding the lock, so a waiting writer sees the blob.
	if err := os.Rename(name, c.Path(want)); err != nil {
		ing.close()
		return fmt.Errorf("storing blob %s in the cache: %w", want, err)
	}
	ing.close()
	return nil
}

func (ing *ingest) close() {
	atomicfile.Unlock(ing.f)
}

// DigestError says a blob's bytes do not hash to its digest (Want).
type DigestError = digestio.DigestError

// SizeError says a blob has the wrong number of bytes.
type SizeError = digestio.SizeError
