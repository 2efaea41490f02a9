package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/bundle-tool/bundle/internal/safefs"
	"golang.org/x/sys/unix"
)

// ErrHeld says another process holds the lock.
var ErrHeld = errors.New("the lock is held by another process")

// Lock opens (creating it, mode 0644) the lock file at path and takes an
// exclusive lock on it, failing at once with an error that is ErrHeld
// when another process holds it. A link at path is not followed and a
// FIFO or device is not waited on: both are a *safefs.NotRegularError.
//
// The lock lasts until Release, which removes the file first, so no empty
// lock file is left behind. That is safe because Lock checks, once it
// holds the lock, that path still names the file it locked: a run that
// opened the file just before its holder removed it finds it gone and
// tries again on a new file, so two runs never hold locks on two inodes
// under one name.
func Lock(path string) (*Held, error) {
	for range 10 {
		f, err := lockOnce(path)
		if err != nil {
			return nil, err
		}
		fi, err1 := f.Stat()
		li, err2 := os.Lstat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, li) {
			return &Held{f: f, path: path}, nil
		}
		Unlock(f) // removed (or replaced) by the holder before us: again
	}
	return nil, fmt.Errorf("locking %s: the lock file keeps being replaced", path)
}

// testHookAfterOpen, when set (by tests), runs between a lock file's open
// and its flock.
var testHookAfterOpen func()

func lockOnce(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &safefs.NotRegularError{Path: path, Mode: fs.ModeSymlink}
	}
	if err != nil {
		return nil, err
	}
	if testHookAfterOpen != nil {
		testHookAfterOpen()
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &safefs.NotRegularError{Path: path, Mode: fi.Mode()}
	}
	if err == nil {
		err = LockFile(f)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Held is a lock taken by Lock.
type Held struct {
	f    *os.File
	path string
	once sync.Once
}

// Path is the lock file's path.
func (h *Held) Path() string { return h.path }

// Release removes the lock file (when path still names it) and releases
// the lock. It may be called more than once.
func (h *Held) Release() {
	h.once.Do(func() {
		if fi, err := h.f.Stat(); err == nil {
			if li, err := os.Lstat(h.path); err == nil && os.SameFile(fi, li) {
				_ = os.Remove(h.path)
			}
		}
		Unlock(h.f)
	})
}

// LockFile takes an exclusive lock on the open file (or directory) f,
// failing at once with an error that is ErrHeld when another process
// holds it.
func LockFile(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	for errors.Is(err, unix.EINTR) {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("locking %s: %w", f.Name(), ErrHeld)
	}
	if err != nil {
		return fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return nil
}

// Unlock releases f's lock and closes f.
func Unlock(f *os.File) {
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
}
