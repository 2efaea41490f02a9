package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
// The lock lasts until the file is closed (Unlock). The file stays:
// removing it would let a later run lock a different inode.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &safefs.NotRegularError{Path: path, Mode: fs.ModeSymlink}
	}
	if err != nil {
		return nil, err
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
