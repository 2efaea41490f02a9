// Package space checks, before a long job starts, that the filesystems it
// will write have room for what it will write: a full disk found hours
// into a download is a day lost (issue 11, class 6).
//
// Callers add what they will write to each directory; Check sums the
// bytes per filesystem (by device id, so a cache and an output on one
// disk count together), adds a margin, and compares with the space
// statfs says an unprivileged user may use (f_bavail × f_bsize).
package space
