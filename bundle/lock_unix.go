package bundle

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockOutput takes an exclusive lock on ".<name>.lock" beside the output,
// so two runs writing the same bundle (two cron entries) never race: the
// second fails at once with a clear message. The lock file stays (empty);
// removing it would let a third run lock a different inode.
func lockOutput(abs string) (*os.File, error) {
	p := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot write to output directory %s: %w", filepath.Dir(abs), err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another bundle create is writing %s (lock %s is held); try again when it has finished", abs, p)
	}
	return f, nil
}
