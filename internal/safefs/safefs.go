package safefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// NotRegularError says a path is not a regular file: a FIFO, a device, a
// socket, a directory, or (where links are not followed) a link.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, Kind(e.Mode))
}

// Kind names a file's type in messages: "a named pipe", "a device", ….
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	default:
		return "not a regular file"
	}
}

// TooLargeError says a file holds more than a read allows.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.Path, e.Limit)
}

// EscapeError says a path inside a directory leads out of it (through a
// link or ..).
type EscapeError struct {
	Path string // as named inside the directory
	Dir  string
}

func (e *EscapeError) Error() string {
	return fmt.Sprintf("%s leads out of %s (a link?); refusing to follow it", e.Path, e.Dir)
}

// Open opens the regular file at path for reading. Links are followed (a
// user named the path); the file they lead to must be regular. A FIFO or
// a device is refused without being waited on: it is opened non-blocking,
// if at all, and checked before anything is read.
func Open(path string) (*os.File, error) {
	return open(path, 0)
}

// OpenNoFollow is Open for a path nobody named: a link there is refused.
func OpenNoFollow(path string) (*os.File, error) {
	return open(path, syscall.O_NOFOLLOW)
}

func open(path string, nofollow int) (*os.File, error) {
	var fi fs.FileInfo
	var err error
	if nofollow != 0 {
		fi, err = os.Lstat(path)
	} else {
		fi, err = os.Stat(path)
	}
	if err != nil {
		// Said as an open: what the caller asked for.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op = "open"
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|nofollow, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &NotRegularError{Path: path, Mode: fs.ModeSymlink}
		}
		return nil, err
	}
	return checkOpened(f, path, fi)
}

// checkOpened makes sure the file opened is the regular file seen before
// (it was not swapped for a FIFO in between).
func checkOpened(f *os.File, path string, before fs.FileInfo) (*os.File, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	if before != nil && !os.SameFile(before, fi) {
		f.Close()
		return nil, fmt.Errorf("%s changed while it was opened", path)
	}
	return f, nil
}

// OpenIn opens the regular file name inside root for reading. Links that
// stay inside root are followed (os.Root); one that leads out is an
// *EscapeError. A FIFO or a device is refused without being waited on.
// Errors name the file as named inside root.
func OpenIn(root *os.Root, name string) (*os.File, error) {
	fi, err := root.Stat(name)
	if err != nil {
		return nil, rootErr(root, name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &NotRegularError{Path: name, Mode: fi.Mode()}
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, rootErr(root, name, err)
	}
	return checkOpened(f, name, fi)
}

// StatIn is root.Stat with the errors of OpenIn.
func StatIn(root *os.Root, name string) (fs.FileInfo, error) {
	fi, err := root.Stat(name)
	if err != nil {
		return nil, rootErr(root, name, err)
	}
	return fi, nil
}

// IsEscape reports whether err is os.Root's refusal of a path that leads
// out of the root.
func IsEscape(err error) bool {
	var ee *EscapeError
	if errors.As(err, &ee) {
		return true
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return false
	}
	// os.Root's error is not exported; its text is stable.
	return strings.Contains(pe.Err.Error(), "path escapes")
}

// Explain turns an error of an os.Root operation on name into one that
// says when the path leads out of root (*EscapeError) or is a link where
// none is followed; other errors are returned as they are.
func Explain(root *os.Root, name string, err error) error { return rootErr(root, name, err) }

func rootErr(root *os.Root, name string, err error) error {
	if err == nil {
		return nil
	}
	if IsEscape(err) {
		return &EscapeError{Path: name, Dir: root.Name()}
	}
	if errors.Is(err, syscall.ELOOP) {
		return &NotRegularError{Path: name, Mode: fs.ModeSymlink}
	}
	return err
}

func display(root *os.Root, name string) string {
	return path.Join(root.Name(), name)
}

// ReadAll reads f to its end, at most limit bytes: a longer file is a
// *TooLargeError (name names it).
func ReadAll(f io.Reader, name string, limit int64) ([]byte, error) {
	if s, ok := f.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := s.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
			return nil, &TooLargeError{Path: name, Limit: limit}
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: name, Limit: limit}
	}
	return data, nil
}

// ReadFile reads the regular file at path (Open), at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, limit)
}

// ReadFileNoFollow is ReadFile through OpenNoFollow.
func ReadFileNoFollow(path string, limit int64) ([]byte, error) {
	f, err := OpenNoFollow(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, limit)
}

// ReadFileIn reads the regular file name inside root (OpenIn), at most
// limit bytes.
func ReadFileIn(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := OpenIn(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, name, limit)
}

// CreateTemp creates a new file in dir inside root, named prefix, random
// characters and suffix, for writing (mode perm). It is never a link's
// target: O_CREATE|O_EXCL.
func CreateTemp(root *os.Root, dir, prefix, suffix string, perm fs.FileMode) (*os.File, string, error) {
	for range 10000 {
		var b [6]byte
		_, _ = rand.Read(b[:])
		name := path.Join(dir, prefix+hex.EncodeToString(b[:])+suffix)
		f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", rootErr(root, name, err)
		}
		return f, name, nil
	}
	return nil, "", fmt.Errorf("creating a temp file in %s: too many tries", display(root, dir))
}
