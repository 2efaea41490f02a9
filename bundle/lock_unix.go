package bundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/bundle-tool/bundle/internal/safefs"
	"golang.org/x/sys/unix"
)

// lockOutput takes an exclusive lock on ".<name>.lock" beside the output,
// so two runs writing the same bundle (two cron entries) never race: the
// second fails at once with a clear message. The lock file stays (empty);
// removing it would let a third run lock a different inode. A link or a
// FIFO planted under the lock's name is refused, never followed or
// waited on.
func lockOutput(abs string) (*os.File, error) {
	p := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("the lock file %s is a symbolic link; refusing to follow it (remove it)", p)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot write to output directory %s: %w", filepath.Dir(abs), err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = &safefs.NotRegularError{Path: p, Mode: fi.Mode()}
		}
		return nil, fmt.Errorf("the lock file: %w (remove it)", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another bundle create is writing %s (lock %s is held); try again when it has finished", abs, p)
	}
	return f, nil
}
