package tarball

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/pgzip"
)

// RepositoriesFile is the legacy docker-save map, an optional entry.
const RepositoriesFile = "repositories"

// ErrTruncated is wrapped by the errors of a Reader when the bundle ends
// before the tar archive does.
var ErrTruncated = errors.New("the bundle is truncated")

// ErrGzipBomb is wrapped by the error of a reader that GzipGuard stopped.
var ErrGzipBomb = errors.New("likely a decompression bomb")

// GzipGuard returns a reader of dec, the decompressed stream, that fails
// with an error wrapping ErrGzipBomb once it has given more than
// GzipAllowance bytes and more than MaxGzipRatio times in(), the number of
// compressed bytes read so far.
func GzipGuard(dec io.Reader, in func() int64) io.Reader {
	return &gzipGuard{r: dec, in: in}
}

type gzipGuard struct {
	r    io.Reader
	in   func() int64
	out  int64
	bomb error // once stopped, stopped for good
}

func (g *gzipGuard) Read(p []byte) (int, error) {
	if g.bomb != nil {
		return 0, g.bomb
	}
	n, err := g.r.Read(p)
	g.out += int64(n)
	if g.out > GzipAllowance {
		if c := g.in(); g.out > c*MaxGzipRatio {
			g.bomb = fmt.Errorf("the gzip stream of the bundle decompressed to %d bytes from %d, over %d times: %w", g.out, c, MaxGzipRatio, ErrGzipBomb)
			return n, g.bomb
		}
	}
	return n, err
}

// NotBundleError is returned when the input is not a bundle file at all,
// such as a docker save archive or an OCI image layout archive without
// bundle.json.
type NotBundleError struct {
	// Looks names what the input looks like ("a docker save archive", "an
	// OCI image layout archive"), or is empty when it looks like nothing
	// known.
	Looks string
	// Detail says what was found instead, when Looks is empty.
	Detail string
}

// What a NotBundleError's input may look like (NotBundleError.Looks).
const (
	LooksDockerSave = "a docker save archive"
	LooksOCIArchive = "an OCI image layout archive"
)

func (e *NotBundleError) Error() string {
	switch {
	case e.Looks != "":
		return "not a bundle file (looks like " + e.Looks + ")"
	case e.Detail != "":
		return "not a bundle file: " + e.Detail
	}
	return "not a bundle file"
}

// EntryError is returned for an entry that breaks the rules of the format: an
// unsafe path or type, a duplicate, a name outside the layout, a JSON entry
// over its size limit. The Reader skips the entry; Next may be called again.
type EntryError struct {
	Name   string // the entry's name as stored in the archive
	Reason string // what is wrong with it
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %q: %s", e.Name, e.Reason) }

// CorruptError is returned when the archive itself is damaged or incomplete:
// a truncated file, an unreadable tar header, a broken gzip stream, a
// bundle.json that does not parse, data after the end of the archive. It is
// final: the Reader returns it again from every later call.
type CorruptError struct {
	Entry string // the entry being read, or "" between entries
	Err   error
}

func (e *CorruptError) Error() string {
	if e.Entry == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("reading %s: %v", e.Entry, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// IsCorrupt reports whether err says the bundle is corrupt, incomplete or not
// a bundle, as opposed to an error reading the underlying file.
func IsCorrupt(err error) bool {
	var nb *NotBundleError
	var ee *EntryError
	var ce *CorruptError
	return errors.As(err, &nb) || errors.As(err, &ee) || errors.As(err, &ce)
}

// EntryKind says what an entry of a bundle is.
type EntryKind int

// Kinds of entries.
const (
	KindFile EntryKind = iota // oci-layout, index.json, manifest.json, repositories, bundle.sigstore.json
	KindDir                   // blobs/, blobs/sha256/
	KindBlob                  // blobs/sha256/<hex>
)

// Entry is one entry of a bundle after bundle.json. Its content is read
// through Read, straight from the archive; it is valid until the next call
// to Next.
type Entry struct {
	Name   string
	Kind   EntryKind
	Size   int64
	Digest v1.Hash // for KindBlob, the digest its name claims
	// Offset is where the content starts in the tar stream (the file, or
	// for a gzip-compressed bundle the uncompressed stream).
	Offset int64
	r      *Reader
	gen    int
}

// Read reads the entry's content. It returns io.EOF at its end, and a
// CorruptError wrapping ErrTruncated when the bundle ends first.
func (e *Entry) Read(p []byte) (int, error) {
	if e.gen != e.r.gen {
		return 0, fmt.Errorf("reading %s: entry read after the next one was started", e.Name)
	}
	if e.r.err != nil {
		return 0, e.r.err
	}
	n, err := e.r.tr.Read(p)
	if err != nil && err != io.EOF {
		err = e.r.fail(e.Name, err)
	}
	return n, err
}

// Reader reads a bundle in one sequential pass, never seeking and never
// holding a blob in memory. It reads a gzip-compressed bundle transparently.
// It checks every header against the layout of FORMAT.md before handing the
// entry out. Nothing is written anywhere.
type Reader struct {
	src   *sourceReader
	tail  *tailReader
	gz    *pgzip.Reader
	tr    *tar.Reader
	index *Index
	err   error // final error, returned by every later call
	gen   int
	// names seen so far, to refuse duplicates; blobs by their digest bytes
	// to keep memory small.
	seen      map[string]bool
	seenBlobs map[[32]byte]bool
	last      string // name of the last header read
	started   bool
	done      bool
	gzipped   bool
	// sec is the file for a Reader made by Open: archive/tar then seeks
	// past contents instead of reading them. indexOffset and indexData
	// are where bundle.json's content starts and what it is, kept for
	// Open.
	sec         *io.SectionReader
	indexOffset int64
	indexData   []byte
	// indexSum is the sha256 of bundle.json's bytes; second is true while
	// the next entry is the one right after it.
	indexSum [32]byte
	second   bool
}

// NewReader returns a Reader of the bundle in r. Nothing is read until the
// first call to Index or Next.
func NewReader(r io.Reader) *Reader {
	return &Reader{
		src:       &sourceReader{r: r},
		seen:      make(map[string]bool),
		seenBlobs: make(map[[32]byte]bool),
	}
}

// Compressed reports whether the bundle was read through gzip. It is valid
// after the first call to Index or Next.
func (r *Reader) Compressed() bool { return r.gzipped }

// Close releases the resources of a gzip-compressed bundle's decompressor.
// It does not close the underlying reader.
func (r *Reader) Close() error {
	if r.gz != nil {
		r.gz.Close()
		r.gz = nil
	}
	if r.err == nil {
		r.err = errors.New("reading bundle: reader closed")
	}
	return nil
}

// Offset is how many bytes of the tar stream (the file, or for a
// gzip-compressed bundle the uncompressed stream) have been read: after an
// error, about where the damage is.
func (r *Reader) Offset() int64 {
	if r.tail == nil {
		return 0
	}
	return r.tail.n
}

// Index reads and returns bundle.json, the first entry.
func (r *Reader) Index() (*Index, error) {
	if !r.started {
		r.started = true
		if err := r.start(); err != nil {
			r.err = err
		}
	}
	if r.index == nil {
		return nil, r.err
	}
	return r.index, nil
}

func (r *Reader) start() error {
	if r.sec != nil {
		if err := r.startAt(); err != nil {
			return err
		}
		return r.readIndex()
	}
	br := bufio.NewReaderSize(r.src, 64<<10)
	magic, err := br.Peek(2)
	if len(magic) == 0 {
		if err := r.src.failed(); err != nil {
			return r.ioErr(err)
		}
		if err == io.EOF {
			return &NotBundleError{Detail: "the file is empty"}
		}
	}
	var stream io.Reader = br
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := pgzip.NewReader(br)
		if err != nil {
			if err := r.src.failed(); err != nil {
				return r.ioErr(err)
			}
			return &CorruptError{Err: fmt.Errorf("reading the gzip header of the bundle: %w", err)}
		}
		r.gz, r.gzipped = gz, true
		stream = GzipGuard(gz, r.src.count)
	}
	r.tail = &tailReader{r: stream}
	r.tr = tar.NewReader(r.tail)
	return r.readIndex()
}

// startAt starts a Reader made by Open: a gzip-compressed file is refused,
// as its entries cannot be read by offset; archive/tar seeks past contents.
func (r *Reader) startAt() error {
	var magic [2]byte
	n, err := r.sec.ReadAt(magic[:], 0)
	if n == 0 {
		if err != nil && err != io.EOF {
			return r.ioErr(err)
		}
		return &NotBundleError{Detail: "the file is empty"}
	}
	if n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return ErrCompressed
	}
	r.tail = &tailReader{r: r.src}
	r.tr = tar.NewReader(&seekTail{tailReader: r.tail, sec: r.sec})
	return nil
}

// startsLikeBundle says whether head, the bytes of a file shorter than one
// tar block, can be the start of a bundle: bundle.json's header, cut.
func startsLikeBundle(head []byte) bool {
	name := []byte(IndexFile + "\x00")
	if len(head) <= len(name) {
		return bytes.HasPrefix(name, head)
	}
	return bytes.HasPrefix(head, name)
}

// readIndex reads the first header, which must be bundle.json's, and
// bundle.json.
func (r *Reader) readIndex() error {
	hdr, err := r.tr.Next()
	if err != nil {
		if err := r.src.failed(); err != nil {
			return r.ioErr(err)
		}
		if err == io.EOF {
			return &NotBundleError{Detail: "the archive is empty"}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && !startsLikeBundle(r.tail.head) {
			// A file shorter than one tar block (images.yaml given as
			// -i) is not a truncated bundle unless its bytes are the
			// start of one.
			return &NotBundleError{Detail: "not a tar archive"}
		}
		if errors.Is(err, tar.ErrHeader) {
			if bytes.HasPrefix(r.tail.head, []byte(IndexFile+"\x00")) {
				return &CorruptError{Entry: IndexFile, Err: fmt.Errorf("its tar header is damaged: %w", err)}
			}
			return &NotBundleError{Detail: "not a tar archive"}
		}
		return r.classifyErr("", err)
	}
	if hdr.Name != IndexFile {
		if reason := unsafeReason(hdr); reason != "" {
			return &EntryError{Name: hdr.Name, Reason: reason}
		}
		return r.classify(hdr.Name)
	}
	if reason := unsafeReason(hdr); reason != "" {
		return &EntryError{Name: hdr.Name, Reason: reason}
	}
	if hdr.Size > MaxIndexSize {
		return &CorruptError{Entry: IndexFile, Err: fmt.Errorf("%d bytes is over the limit of %d", hdr.Size, MaxIndexSize)}
	}
	r.seen[IndexFile] = true
	r.last = IndexFile
	r.indexOffset = r.tail.n
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r.tr, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return r.classifyErr(IndexFile, err)
	}
	r.indexSum = sha256.Sum256(data)
	r.second = true
	var idx Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return &CorruptError{Entry: IndexFile, Err: fmt.Errorf("parsing: %w", err)}
	}
	if idx.SchemaVersion != SchemaVersion {
		return &CorruptError{Entry: IndexFile, Err: fmt.Errorf("schemaVersion is %d, this version of bundle reads %d", idx.SchemaVersion, SchemaVersion)}
	}
	r.index = &idx
	if r.sec != nil {
		r.indexData = data
	}
	return nil
}

// IndexSHA256 is the sha256 of bundle.json's bytes, once Index has read
// it: what a signature of the bundle signs.
func (r *Reader) IndexSHA256() [32]byte { return r.indexSum }

// Next returns the next entry after bundle.json, or io.EOF after the last.
// After an *EntryError the entry is skipped and Next may be called again;
// every other error is final.
func (r *Reader) Next() (*Entry, error) {
	if _, err := r.Index(); err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.done {
		return nil, io.EOF
	}
	r.gen++
	hdr, err := r.tr.Next()
	if err == io.EOF {
		r.done = true
		if err := r.end(); err != nil {
			r.err = err
			return nil, err
		}
		return nil, io.EOF
	}
	if err != nil {
		r.err = r.classifyErr("", err)
		return nil, r.err
	}
	name := hdr.Name
	r.last = name
	second := r.second
	r.second = false
	if reason := unsafeReason(hdr); reason != "" {
		return nil, &EntryError{Name: name, Reason: reason}
	}
	e := &Entry{Name: name, Size: hdr.Size, Offset: r.tail.n, r: r, gen: r.gen}
	if strings.HasSuffix(name, "/") || hdr.Typeflag == tar.TypeDir {
		dir := strings.TrimSuffix(name, "/") + "/"
		if hdr.Typeflag != tar.TypeDir || (dir != BlobsDir && dir != BlobsSHA256Dir) {
			return nil, &EntryError{Name: name, Reason: "outside the layout of a bundle"}
		}
		if r.seen[dir] {
			return nil, &EntryError{Name: name, Reason: "duplicate entry"}
		}
		r.seen[dir] = true
		e.Name, e.Kind = dir, KindDir
		return e, nil
	}
	if hex, ok := strings.CutPrefix(name, BlobsSHA256Dir); ok {
		sum, ok := parseHex(hex)
		if !ok {
			return nil, &EntryError{Name: name, Reason: "outside the layout of a bundle (a blob's name is 64 lower-case hex digits)"}
		}
		if r.seenBlobs[sum] {
			return nil, &EntryError{Name: name, Reason: "duplicate entry"}
		}
		r.seenBlobs[sum] = true
		e.Kind, e.Digest = KindBlob, v1.Hash{Algorithm: "sha256", Hex: hex}
		return e, nil
	}
	if r.seen[name] {
		return nil, &EntryError{Name: name, Reason: "duplicate entry"}
	}
	limit := fileLimit(name)
	if limit == 0 {
		return nil, &EntryError{Name: name, Reason: "outside the layout of a bundle"}
	}
	r.seen[name] = true
	if hdr.Size > limit {
		return nil, &EntryError{Name: name, Reason: fmt.Sprintf("%d bytes is over the limit of %d", hdr.Size, limit)}
	}
	if name == SignatureFile {
		if !second {
			return nil, &EntryError{Name: name, Reason: "not right after bundle.json, where a bundle's signature is"}
		}
	} else if _, listed := r.index.Metadata[name]; r.index.Metadata != nil && !listed {
		return nil, &EntryError{Name: name, Reason: "not listed in bundle.json's metadata"}
	}
	e.Kind = KindFile
	return e, nil
}

// end checks what follows the last entry: the end-of-archive marker, then
// nothing but zero padding up to the end of the file.
func (r *Reader) end() error {
	if r.tail.zeros < 2*512 {
		return &CorruptError{Err: fmt.Errorf("the archive ends without its end-of-archive marker: %w", ErrTruncated)}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.tail.Read(buf)
		if len(bytes.TrimLeft(buf[:n], "\x00")) != 0 {
			return &CorruptError{Err: errors.New("data after the end of the archive")}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.classifyErr("", err)
		}
	}
	if r.gz != nil {
		r.gz.Close()
		r.gz = nil
	}
	return nil
}

// fail turns an error met while reading the archive into the final error.
func (r *Reader) fail(entry string, err error) error {
	if r.err == nil {
		r.err = r.classifyErr(entry, err)
	}
	return r.err
}

// classifyErr tells an error of the underlying reader (could not read) from
// damage to the bundle (corrupt or incomplete).
func (r *Reader) classifyErr(entry string, err error) error {
	if err := r.src.failed(); err != nil {
		return r.ioErr(err)
	}
	var flateErr flate.CorruptInputError
	switch {
	case errors.Is(err, ErrGzipBomb):
	case errors.Is(err, pgzip.ErrChecksum) || errors.Is(err, pgzip.ErrHeader) || errors.As(err, &flateErr):
		err = fmt.Errorf("the gzip compression of the bundle is damaged: %w", err)
	case errors.Is(err, io.ErrUnexpectedEOF) && entry == "":
		err = fmt.Errorf("the file ends inside a tar header: %w", ErrTruncated)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("the file ends inside the entry: %w", ErrTruncated)
	case errors.Is(err, tar.ErrHeader) && entry == "" && r.last != "":
		err = fmt.Errorf("the tar header after %s is damaged: %w", r.last, err)
	}
	return &CorruptError{Entry: entry, Err: err}
}

func (r *Reader) ioErr(err error) error { return fmt.Errorf("reading bundle: %w", err) }

// classify looks at the first entries of an archive that does not start with
// bundle.json to say what it is.
func (r *Reader) classify(first string) error {
	var docker, oci bool
	note := func(name string) {
		name = strings.TrimPrefix(name, "./")
		switch {
		case name == DockerManifest || name == RepositoriesFile || isDockerLegacy(name):
			docker = true
		case name == OCILayoutFile || name == OCIIndexFile || strings.HasPrefix(name, BlobsDir) || name == "blobs":
			oci = true
		}
	}
	note(first)
	for i := 0; i < 64 && !docker; i++ {
		hdr, err := r.tr.Next()
		if err != nil {
			if err := r.src.failed(); err != nil {
				return r.ioErr(err)
			}
			break
		}
		if hdr.Name == IndexFile {
			return &NotBundleError{Detail: "bundle.json is not the first entry"}
		}
		note(hdr.Name)
	}
	switch {
	case docker:
		return &NotBundleError{Looks: LooksDockerSave}
	case oci:
		return &NotBundleError{Looks: LooksOCIArchive}
	}
	return &NotBundleError{Detail: fmt.Sprintf("the first entry is %q, not %s", first, IndexFile)}
}

// isDockerLegacy matches the entries of the legacy docker save layout:
// <hex>/layer.tar, <hex>/json, <hex>/VERSION, <hex>/ and <hex>.json.
func isDockerLegacy(name string) bool {
	if hex, rest, ok := strings.Cut(name, "/"); ok {
		_, isHex := parseHex(hex)
		return isHex && (rest == "" || rest == "layer.tar" || rest == "json" || rest == "VERSION")
	}
	_, isHex := parseHex(strings.TrimSuffix(name, ".json"))
	return isHex && strings.HasSuffix(name, ".json")
}

// unsafeReason says why a header may not appear in a bundle whatever its
// name, or returns "".
func unsafeReason(hdr *tar.Header) string {
	name := hdr.Name
	switch {
	case name == "":
		return "empty name"
	case strings.HasPrefix(name, "/") || strings.Contains(name, `\`) || (len(name) > 1 && name[1] == ':'):
		return "absolute path"
	case hasDotDot(name):
		return `path with ".."`
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		return fmt.Sprintf("symlink to %q", hdr.Linkname)
	case tar.TypeLink:
		return fmt.Sprintf("hardlink to %q", hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return "device file"
	case tar.TypeFifo:
		return "named pipe"
	case tar.TypeGNUSparse:
		return "sparse file"
	default:
		return fmt.Sprintf("unsupported entry type %q", hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "sparse file"
		}
	}
	return ""
}

func hasDotDot(name string) bool {
	for part := range strings.SplitSeq(name, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// fileLimit returns the size limit of a fixed entry, or 0 for a name that is
// not one.
func fileLimit(name string) int64 {
	switch name {
	case OCILayoutFile:
		return MaxOCILayoutSize
	case OCIIndexFile:
		return MaxOCIIndexSize
	case DockerManifest:
		return MaxDockerManifestSize
	case RepositoriesFile:
		return MaxRepositoriesSize
	case SignatureFile:
		return MaxSignatureSize
	}
	return 0
}

// parseHex decodes 64 lower-case hex digits.
func parseHex(s string) ([32]byte, bool) {
	var sum [32]byte
	if len(s) != 64 {
		return sum, false
	}
	for i := 0; i < 64; i++ {
		c := s[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		default:
			return sum, false
		}
		sum[i/2] |= v << (4 * (1 - i%2))
	}
	return sum, true
}

// sourceReader remembers the first error of the underlying reader, so that
// an error reading the file is not mistaken for damage to the bundle.
type sourceReader struct {
	r   io.Reader
	mu  sync.Mutex // the gzip reader reads ahead on its own goroutine
	err error
	n   atomic.Int64 // bytes read
}

// count is how many bytes have been read.
func (s *sourceReader) count() int64 { return s.n.Load() }

// failed returns the first error of the underlying reader, or nil.
func (s *sourceReader) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n.Add(int64(n))
	if err != nil && err != io.EOF {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return n, err
}

// tailReader counts the zero bytes at the end of what has been read, to
// tell a complete tar archive (ending in two zero blocks) from one cut at an
// entry boundary, and keeps the first block.
type tailReader struct {
	r     io.Reader
	n     int64 // bytes read
	zeros int64
	head  []byte // the first block, to name a damaged first header
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if n > 0 && len(t.head) < 512 {
		t.head = append(t.head, p[:min(n, 512-len(t.head))]...)
	}
	if n > 0 {
		b := p[:n]
		trimmed := bytes.TrimRight(b, "\x00")
		if len(trimmed) == 0 {
			t.zeros += int64(n)
		} else {
			t.zeros = int64(n - len(trimmed))
		}
	}
	return n, err
}

// seekTail is the tailReader of a Reader made by Open. archive/tar skips
// an entry's content (less its last byte, which it reads) with relative
// seeks; the bytes skipped are looked at only for the zeros at their end,
// so that the end-of-archive check sees what a sequential pass would.
type seekTail struct {
	*tailReader
	sec  *io.SectionReader
	look [2 * 512]byte
}

func (s *seekTail) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return -1, errors.New("seeking in the bundle: only forward from the current offset")
	}
	if offset == 0 {
		return s.n, nil
	}
	if _, err := s.sec.Seek(offset, io.SeekCurrent); err != nil {
		return -1, err
	}
	end := s.n + offset
	w := min(offset, int64(len(s.look)))
	k, _ := s.sec.ReadAt(s.look[:w], end-w)
	switch trimmed := int64(len(bytes.TrimRight(s.look[:k], "\x00"))); {
	case int64(k) < w:
		s.zeros = 0 // past the end of the file: the next read says so
	case trimmed > 0:
		s.zeros = w - trimmed
	case offset > w:
		s.zeros = w // at least: all that the end check asks
	default:
		s.zeros += offset
	}
	s.n = end
	return end, nil
}
