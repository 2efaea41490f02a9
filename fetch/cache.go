package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Cache is a content-addressed store of verified blobs on disk:
//
//	DIR/blobs/sha256/<hex>     complete blobs whose sha256 and size were checked
//	DIR/ingest/<hex>.partial   downloads under way (locked while written)
//
// A blob reaches blobs/ only by rename after its digest and size were
// checked, so a concurrent writer never leaves a wrong blob under its name.
// Blobs are not fsynced: after a crash a blob may be damaged, so a blob
// from an earlier run is re-hashed whenever it is used. A partial download is kept so that a
// later run resumes it.
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

// Has says whether the complete blob is in the cache with that size.
func (c *Cache) Has(h v1.Hash, size int64) bool {
	fi, err := os.Stat(c.Path(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// Open opens a complete blob.
func (c *Cache) Open(h v1.Hash) (*os.File, error) { return os.Open(c.Path(h)) }

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
	got := sha256.Sum256(data)
	if fmt.Sprintf("%x", got) != h.Hex {
		return &DigestError{Digest: h, Got: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", got)}}
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

// ingest is a locked partial download of one blob.
type ingest struct {
	f    *os.File
	h    hash.Hash
	size int64 // bytes in f, all hashed into h
}

// openIngest opens and locks the partial file of h, waiting (until ctx
// ends) for another process or goroutine that holds it. It hashes what is
// already there so the download can resume from its end. done reports that
// the blob is complete in the cache (another writer finished it while we
// waited); the partial file, now useless, is removed then.
func (c *Cache) openIngest(ctx context.Context, h v1.Hash) (ing *ingest, done bool, err error) {
	for {
		f, err := os.OpenFile(c.partialPath(h), os.O_RDWR|os.O_CREATE, 0o644)
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
		st, err := os.Stat(c.partialPath(h))
		current := err == nil && os.SameFile(fi, st)
		if c.Has(h, -1) {
			// Finished by another writer. Our file is either the renamed
			// blob itself, or a partial created after the rename: drop the
			// latter (we hold its lock, so nobody writes it).
			if current {
				_ = os.Remove(c.partialPath(h))
			}
			_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			f.Close()
			return nil, true, nil
		}
		if !current {
			// The previous holder renamed or removed the file we locked:
			// start over on the real path.
			_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			f.Close()
			continue
		}
		ing = &ingest{f: f, h: sha256.New()}
		n, err := io.Copy(ing.h, f)
		if err != nil {
			// An unreadable partial is useless: start again.
			if err := ing.reset(); err != nil {
				ing.close()
				return nil, false, err
			}
			n = 0
		}
		ing.size = n
		return ing, false, nil
	}
}

// lockFile takes an exclusive flock on f, polling so that ctx can end the
// wait (a blocking flock cannot be interrupted: a stopped run would hang
// behind another process's slow download).
func lockFile(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
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

func (ing *ingest) reset() error {
	if err := ing.f.Truncate(0); err != nil {
		return err
	}
	if _, err := ing.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	ing.h.Reset()
	ing.size = 0
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
		return &DigestError{Digest: want, Got: got}
	}
	name := ing.f.Name()
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
	_ = unix.Flock(int(ing.f.Fd()), unix.LOCK_UN)
	ing.f.Close()
}

// DigestError says a blob's bytes do not hash to its digest.
type DigestError struct {
	Digest v1.Hash
	Got    v1.Hash
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("blob %s: digest mismatch: got %s", e.Digest, e.Got)
}

// SizeError says a blob has the wrong number of bytes.
type SizeError struct {
	Digest    v1.Hash
	Got, Want int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("blob %s: size mismatch: got %d bytes, want %d", e.Digest, e.Got, e.Want)
}
