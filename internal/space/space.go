package space

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Margin is what Check keeps free beyond the bytes counted: MinMargin,
// one percent of the bytes, and BlockSlack per file for the rounding of
// each file to whole blocks and for metadata.
const (
	MinMargin  = 1 << 20
	BlockSlack = 8 << 10
)

// Plan is what a job will write, directory by directory.
type Plan struct {
	needs []need
}

type need struct {
	dir   string // as the caller named it, for messages
	what  string // "the bundle", "the cache"
	bytes int64
	files int
}

// Add records that the job will write bytes in files files under dir
// (which need not exist yet: its nearest existing parent is checked).
func (p *Plan) Add(dir, what string, bytes int64, files int) {
	p.needs = append(p.needs, need{dir: dir, what: what, bytes: bytes, files: files})
}

// Error says a filesystem lacks the room a job needs. Dir is the first
// directory named on it; Parts says what the bytes are for, margin
// included.
type Error struct {
	Dir   string
	Need  int64 // bytes needed, margin included
	Free  int64 // bytes available
	Parts []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("not enough disk space: needs %s in %s, %s free (%s)", Human(e.Need), e.Dir, Human(e.Free), strings.Join(e.Parts, ", "))
}

// Statfs reports a directory's filesystem: its device id and the bytes
// available. It is a variable for tests.
var Statfs = func(dir string) (dev uint64, free int64, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0, err
	}
	var fsst syscall.Statfs_t
	if err := syscall.Statfs(dir, &fsst); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), int64(fsst.Bavail) * int64(fsst.Bsize), nil
}

// Check fails with *Error when a filesystem lacks the room the plan needs.
// A directory whose filesystem cannot be asked is not checked (the write
// will report its own error).
func (p *Plan) Check() error {
	type fsNeed struct {
		dir   string
		free  int64
		bytes int64
		files int
		parts []string
	}
	byDev := map[uint64]*fsNeed{}
	var order []uint64
	for _, n := range p.needs {
		if n.bytes <= 0 && n.files == 0 {
			continue
		}
		dev, free, err := Statfs(existingParent(n.dir))
		if err != nil {
			continue
		}
		f, ok := byDev[dev]
		if !ok {
			f = &fsNeed{dir: n.dir, free: free}
			byDev[dev] = f
			order = append(order, dev)
		}
		f.bytes += n.bytes
		f.files += n.files
		f.parts = append(f.parts, fmt.Sprintf("%s %s", n.what, Human(n.bytes)))
	}
	for _, dev := range order {
		f := byDev[dev]
		margin := max(MinMargin, f.bytes/100) + int64(f.files)*BlockSlack
		if need := f.bytes + margin; need > f.free {
			return &Error{Dir: f.dir, Need: need, Free: f.free, Parts: append(f.parts, "margin "+Human(margin))}
		}
	}
	return nil
}

// existingParent is dir, or its nearest parent that exists.
func existingParent(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	for {
		if _, err := os.Stat(abs); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return abs
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return abs
		}
		abs = parent
	}
}

// Human formats n bytes with IEC units, as the CLI does (41.2 GiB).
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
