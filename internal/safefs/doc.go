// Package safefs opens the files bundle reads from places it does not own
// (an OCI layout, the cache, lock files, the files a user names) so that a
// planted target can neither hang nor escape a read: only regular files
// are opened, a FIFO or a device is refused without waiting on it, reads
// are bounded, and inside a directory (os.Root) no link leads out of it.
// Errors name the path and the problem, never the file's content.
//
// docs/decisions.md ("Local targets are opened, never followed") records
// which links are followed where.
package safefs
