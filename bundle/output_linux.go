package bundle

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteBack starts the write-back of n bytes of f from off; it does
// not wait.
func startWriteBack(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
