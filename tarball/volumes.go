package tarball

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/bundle-tool/bundle/internal/safefs"
)

// A split bundle is the bundle file cut into volumes NAME.001, NAME.002, …
// at fixed byte counts, as split(1) cuts a file: their concatenation, in
// order, is the bundle, so `cat images.tar.0* | docker load` works. Every
// volume but the last has the same size.

// MaxVolumes is the most volumes a split bundle may have: three-digit
// numbers keep the shell's sorted glob (images.tar.*) in volume order.
const MaxVolumes = 999

// VolumeName is the name of volume n (1-based) of the bundle named base:
// base.001.
func VolumeName(base string, n int) string { return fmt.Sprintf("%s.%03d", base, n) }

// ParseVolumeName splits a volume's name, "images.tar.002", into its base
// name and number ("images.tar", 2). ok is false for any other name.
func ParseVolumeName(name string) (base string, n int, ok bool) {
	i := len(name) - 4
	if i < 1 || name[i] != '.' {
		return "", 0, false
	}
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
	}
	n, _ = strconv.Atoi(name[i+1:])
	if n < 1 {
		return "", 0, false
	}
	return name[:i], n, true
}

// Volume is one file of a bundle.
type Volume struct {
	// Number is the volume's number (1-based), or 0 for a bundle that is
	// not split.
	Number int    `json:"number,omitempty"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
}

// VolumeSet is the files that make one bundle: a single file, or the
// volumes of a split bundle.
type VolumeSet struct {
	// Base is the bundle's name: the file itself, or the volumes' name
	// without their .NNN suffix.
	Base  string
	Split bool
	// Volumes are the files found, in order. For a split bundle, those
	// after the first missing number are found but not read.
	Volumes []Volume
	// Missing are the volume numbers below the highest found that have no
	// file.
	Missing []int
}

// ErrNoVolumes is wrapped by FindVolumes when a name matches no file.
var ErrNoVolumes = errors.New("no such file")

// FindVolumes resolves the bundle a user named: a bundle file; any volume
// of a split bundle (images.tar.001); the volumes' base name (images.tar,
// when no such file exists); or a glob (images.tar.0*). more are further
// names, as a shell expands an unquoted glob; they must be volumes of the
// same split bundle as name.
func FindVolumes(name string, more ...string) (*VolumeSet, error) {
	names := append([]string{name}, more...)
	if len(more) == 0 && strings.ContainsAny(name, "*?[") {
		if _, err := os.Lstat(name); err != nil {
			matches, err := filepath.Glob(name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(matches) == 0 {
				return nil, fmt.Errorf("%s: no file matches: %w", name, ErrNoVolumes)
			}
			names = matches
		}
	}
	if len(names) > 1 {
		names = withoutChecksumFile(names)
	}
	if len(names) > 1 {
		base := ""
		for _, n := range names {
			b, _, ok := ParseVolumeName(n)
			if !ok || (base != "" && b != base) {
				return nil, fmt.Errorf("%s are not the volumes of one split bundle (NAME.001, NAME.002, …)", strings.Join(names, ", "))
			}
			base = b
		}
		return findSplit(base)
	}
	name = names[0]
	fi, err := os.Stat(name)
	if err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s is a directory", name)
		}
		if base, _, ok := ParseVolumeName(name); ok && fi.Mode().IsRegular() {
			return findSplit(base)
		}
		return &VolumeSet{Base: name, Volumes: []Volume{{Path: name, Size: regularSize(fi)}}}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if base, _, ok := ParseVolumeName(name); ok {
		if set, serr := findSplit(base); serr == nil {
			return set, nil // the volume named is reported missing
		}
		return nil, fmt.Errorf("%s: %w", name, ErrNoVolumes)
	}
	if set, serr := findSplit(name); serr == nil {
		return set, nil
	}
	return nil, fmt.Errorf("%w (nor any volume %s)", err, VolumeName(name, 1))
}

// notRegular says what path is instead of a regular file, from a fresh
// stat (links followed: the volume may be a link to a file).
func notRegular(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return &safefs.NotRegularError{Path: path, Mode: fi.Mode()}
}

func regularSize(fi fs.FileInfo) int64 {
	if fi.Mode().IsRegular() {
		return fi.Size()
	}
	return -1
}

// findSplit lists the volumes base.NNN in base's directory.
func findSplit(base string) (*VolumeSet, error) {
	dir, file := filepath.Split(base)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	found := map[int]string{}
	highest := 0
	for _, e := range ents {
		b, n, ok := ParseVolumeName(e.Name())
		if !ok || b != file || e.IsDir() {
			continue
		}
		found[n] = filepath.Join(filepath.Dir(base), e.Name())
		highest = max(highest, n)
	}
	if highest == 0 {
		return nil, fmt.Errorf("%s: %w", VolumeName(base, 1), ErrNoVolumes)
	}
	set := &VolumeSet{Base: base, Split: true}
	for n := 1; n <= highest; n++ {
		p, ok := found[n]
		if !ok {
			set.Missing = append(set.Missing, n)
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		set.Volumes = append(set.Volumes, Volume{Number: n, Path: p, Size: regularSize(fi)})
	}
	return set, nil
}

// Name names the bundle in messages: the file, or for a split bundle
// "images.tar.001…005".
func (s *VolumeSet) Name() string {
	if !s.Split {
		return s.Base
	}
	last := 0
	for _, v := range s.Volumes {
		last = max(last, v.Number)
	}
	for _, n := range s.Missing {
		last = max(last, n)
	}
	if last <= 1 {
		return VolumeName(s.Base, 1)
	}
	return fmt.Sprintf("%s…%03d", VolumeName(s.Base, 1), last)
}

// Readable returns the volumes read as the bundle's stream: every volume up
// to the first missing number.
func (s *VolumeSet) Readable() []Volume {
	var out []Volume
	for i, v := range s.Volumes {
		if s.Split && v.Number != i+1 {
			break
		}
		out = append(out, v)
	}
	return out
}

// Size is the total size of the readable volumes, or -1 when one is not a
// regular file (a pipe).
func (s *VolumeSet) Size() int64 {
	var n int64
	for _, v := range s.Readable() {
		if v.Size < 0 {
			return -1
		}
		n += v.Size
	}
	return n
}

// Open opens the readable volumes as one stream. The volumes of a split
// bundle must be regular files: one that is a FIFO or a device is refused
// before it is opened, and every volume is opened without waiting on it
// and checked again (internal/safefs). Only a single file that is not a
// split bundle's volume, named by the user, may be a pipe.
func (s *VolumeSet) Open() (*VolumeReader, error) {
	vols := s.Readable()
	if len(vols) == 0 {
		return nil, fmt.Errorf("%s: volume %s is missing", s.Name(), VolumeName(s.Base, 1))
	}
	r := &VolumeReader{vols: vols}
	for i, v := range vols {
		var f *os.File
		var err error
		switch {
		case v.Size >= 0:
			f, err = safefs.Open(v.Path)
		case s.Split:
			err = notRegular(v.Path)
		default:
			f, err = os.Open(v.Path) // a pipe the user named: read as a stream
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("opening the bundle: %w", err)
		}
		r.files = append(r.files, f)
		// The size now, in case the file changed since it was found.
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			r.vols[i].Size = fi.Size()
		} else {
			r.vols[i].Size = -1
		}
		r.starts = append(r.starts, r.size)
		if r.vols[i].Size < 0 {
			if len(vols) > 1 {
				r.Close()
				return nil, fmt.Errorf("opening the bundle: volume %s is not a regular file", v.Path)
			}
			r.size = -1
			continue
		}
		r.size += r.vols[i].Size
	}
	return r, nil
}

// VolumeReader reads the volumes of a bundle as one stream. For regular
// files it is also an io.ReaderAt and an io.Seeker over the whole stream.
// It is not safe for concurrent use, except ReadAt.
type VolumeReader struct {
	vols   []Volume
	files  []*os.File
	starts []int64
	size   int64 // -1: a single file that is not regular (a pipe)
	pos    int64
	cur    int // volume of pos, for Read
}

// Size is the stream's length, or -1 when unknown (a pipe).
func (r *VolumeReader) Size() int64 { return r.size }

// Volumes are the volumes read, with their sizes when opened.
func (r *VolumeReader) Volumes() []Volume { return append([]Volume(nil), r.vols...) }

// Stat returns the FileInfo of every open volume, from the open files
// themselves (fstat), not from their paths: a caller that keeps the
// volumes open (bundle serve) compares them to tell that a file changed
// under it (its size or modification time), wherever its path now points.
func (r *VolumeReader) Stat() ([]fs.FileInfo, error) {
	out := make([]fs.FileInfo, len(r.files))
	for i, f := range r.files {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		out[i] = fi
	}
	return out, nil
}

// Read reads the volumes in order, as one stream.
func (r *VolumeReader) Read(p []byte) (int, error) {
	if r.size < 0 {
		n, err := r.files[0].Read(p)
		r.pos += int64(n)
		return n, err
	}
	for r.cur < len(r.files) {
		if r.pos >= r.starts[r.cur]+r.vols[r.cur].Size {
			r.cur++
			continue
		}
		n, err := r.files[r.cur].ReadAt(clip(p, r.starts[r.cur]+r.vols[r.cur].Size-r.pos), r.pos-r.starts[r.cur])
		r.pos += int64(n)
		if err == io.EOF {
			if n > 0 {
				return n, nil
			}
			// The file is shorter than when opened: the stream ends here.
			return 0, io.ErrUnexpectedEOF
		}
		return n, err
	}
	return 0, io.EOF
}

func clip(p []byte, n int64) []byte {
	if int64(len(p)) > n {
		return p[:n]
	}
	return p
}

// ReadAt reads len(p) bytes at offset off of the stream, across volumes.
func (r *VolumeReader) ReadAt(p []byte, off int64) (int, error) {
	if r.size < 0 {
		return 0, errors.New("reading the bundle: not a regular file")
	}
	if off < 0 {
		return 0, errors.New("reading the bundle: negative offset")
	}
	read := 0
	for len(p) > 0 {
		if off >= r.size {
			return read, io.EOF
		}
		i := r.index(off)
		end := r.starts[i] + r.vols[i].Size
		n, err := r.files[i].ReadAt(clip(p, end-off), off-r.starts[i])
		read += n
		off += int64(n)
		p = p[n:]
		if err == io.EOF && off < end {
			return read, io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return read, err
		}
	}
	return read, nil
}

// index returns the volume that holds offset off.
func (r *VolumeReader) index(off int64) int {
	return sort.Search(len(r.starts), func(i int) bool { return r.starts[i]+r.vols[i].Size > off })
}

// Seek sets the offset of the next Read.
func (r *VolumeReader) Seek(offset int64, whence int) (int64, error) {
	if r.size < 0 {
		return 0, errors.New("reading the bundle: not a regular file")
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.pos = offset
	r.cur = 0
	if offset < r.size {
		r.cur = r.index(offset)
	}
	return offset, nil
}

// Locate says which volume holds offset off of the stream, and where in
// it. ok is false past the end.
func (r *VolumeReader) Locate(off int64) (v Volume, at int64, ok bool) {
	return locate(r.vols, off)
}

// Locate says which of vols (read in order as one stream) holds offset off
// of the stream, and where in it.
func Locate(vols []Volume, off int64) (v Volume, at int64, ok bool) {
	return locate(vols, off)
}

func locate(vols []Volume, off int64) (Volume, int64, bool) {
	var start int64
	for _, v := range vols {
		if v.Size < 0 {
			return Volume{}, 0, false
		}
		if off < start+v.Size {
			return v, off - start, true
		}
		start += v.Size
	}
	return Volume{}, 0, false
}

// Close closes every volume.
func (r *VolumeReader) Close() error {
	var first error
	for _, f := range r.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	r.files = nil
	return first
}

// withoutChecksumFile drops NAME.sha256 from a list of NAME's volumes: a
// glob such as images.tar.* matches it too.
func withoutChecksumFile(names []string) []string {
	var out []string
	for _, n := range names {
		if base, ok := strings.CutSuffix(n, ".sha256"); ok {
			if slices.ContainsFunc(names, func(v string) bool { b, _, ok := ParseVolumeName(v); return ok && b == base }) {
				continue
			}
		}
		out = append(out, n)
	}
	return out
}
