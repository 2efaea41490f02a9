// Package atomicfile is bundle's one way to put a small file in place and
// to lock a file or directory against a second run.
//
// A file is written the way containerd's content writer commits a blob:
// into a temp file in the same directory (never a link's target:
// O_CREATE|O_EXCL), fsynced, renamed over the final name, and the
// directory fsynced so the rename survives a power loss. Any failure,
// including the directory's fsync, is an error, and leaves no temp file
// behind and the old file, if any, unchanged.
//
// A lock is an exclusive, non-blocking flock. A lock file is opened
// without following a link and without waiting on a FIFO; a lock already
// held is an error that says so (ErrHeld), at once.
//
// docs/decisions.md ("One of each durability primitive") records the
// directory-fsync rule chosen.
package atomicfile
