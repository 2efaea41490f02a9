package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/internal/safefs"
)

// lockOutput takes an exclusive lock on ".<name>.lock" beside the output,
// so two runs writing the same bundle (two cron entries) never race: the
// second fails at once with a clear message. Release removes it (see
// atomicfile.Lock for why that is safe). A link or a FIFO planted under
// the lock's name is refused, never followed or waited on.
func lockOutput(abs string) (*atomicfile.Held, error) {
	p := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".lock")
	f, err := atomicfile.Lock(p)
	var nr *safefs.NotRegularError
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, atomicfile.ErrHeld):
		return nil, fmt.Errorf("another bundle create is writing %s (lock %s is held); try again when it has finished", abs, p)
	case errors.As(err, &nr) && nr.Mode == fs.ModeSymlink:
		return nil, fmt.Errorf("the lock file %s is a symbolic link; refusing to follow it (remove it)", p)
	case errors.As(err, &nr):
		return nil, fmt.Errorf("the lock file: %w (remove it)", err)
	default:
		return nil, fmt.Errorf("cannot write to output directory %s: %w", filepath.Dir(abs), err)
	}
}
