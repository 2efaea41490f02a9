package tarball

import (
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrCompressed is returned by Open for a gzip-compressed bundle: its
// entries cannot be read by offset.
var ErrCompressed = errors.New("the bundle is gzip-compressed")

// FileEntry is where one entry of a bundle file lies.
type FileEntry struct {
	Name   string // as Entry.Name: directories end in "/"
	Kind   EntryKind
	Digest v1.Hash // for KindBlob, the digest its name claims
	Offset int64   // where the content starts in the file
	Size   int64
}

// File is a plain (not compressed) bundle file opened for random access:
// Open read its headers once, checking each as Reader does, and its small
// entries (bundle.json and the fixed JSON files, under their size limits),
// seeking past the blobs. Blob contents are not checked: that is the
// verify pass's. A File is safe for concurrent use.
type File struct {
	ra      io.ReaderAt
	closer  io.Closer
	index   *Index
	entries []FileEntry
	byName  map[string]int
	content map[string][]byte
}

// Open opens the bundle file at path. See OpenReaderAt.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	bf, err := OpenReaderAt(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	bf.closer = f
	return bf, nil
}

// OpenReaderAt reads the headers of the bundle in the first size bytes of
// ra. It fails on the first error a Reader would give reading the same
// bytes without reading blob contents, of the same type and text (an
// *EntryError included: a File has no entry that breaks the format), and
// with ErrCompressed for a gzip-compressed bundle.
func OpenReaderAt(ra io.ReaderAt, size int64) (*File, error) {
	sec := io.NewSectionReader(ra, 0, size)
	r := NewReader(sec)
	r.sec = sec
	defer r.Close()
	idx, err := r.Index()
	if err != nil {
		return nil, err
	}
	f := &File{
		ra:      ra,
		index:   idx,
		byName:  map[string]int{},
		content: map[string][]byte{IndexFile: r.indexData},
	}
	f.add(FileEntry{Name: IndexFile, Kind: KindFile, Offset: r.indexOffset, Size: int64(len(r.indexData))})
	for {
		e, err := r.Next()
		if err == io.EOF {
			return f, nil
		}
		if err != nil {
			return nil, err
		}
		if e.Kind == KindFile {
			data := make([]byte, 0, e.Size) // Next checked it against its limit
			for buf := make([]byte, 32<<10); ; {
				n, err := e.Read(buf)
				data = append(data, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					return nil, err
				}
			}
			f.content[e.Name] = data
		}
		f.add(FileEntry{Name: e.Name, Kind: e.Kind, Digest: e.Digest, Offset: e.Offset, Size: e.Size})
	}
}

func (f *File) add(e FileEntry) {
	f.byName[e.Name] = len(f.entries)
	f.entries = append(f.entries, e)
}

// Close closes the file that Open opened; it does nothing for a File of
// OpenReaderAt.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// Index is bundle.json.
func (f *File) Index() *Index { return f.index }

// Entries are the entries in the order of the file, bundle.json first.
func (f *File) Entries() []FileEntry { return append([]FileEntry(nil), f.entries...) }

// Lookup returns the entry of that name (directories end in "/").
func (f *File) Lookup(name string) (FileEntry, bool) {
	i, ok := f.byName[name]
	if !ok {
		return FileEntry{}, false
	}
	return f.entries[i], true
}

// Blob returns the entry of blob h.
func (f *File) Blob(h v1.Hash) (FileEntry, bool) { return f.Lookup(BlobPath(h)) }

// Section returns a reader of the content of the entry of that name, or
// nil when there is none.
func (f *File) Section(name string) *io.SectionReader {
	e, ok := f.Lookup(name)
	if !ok {
		return nil
	}
	return io.NewSectionReader(f.ra, e.Offset, e.Size)
}

// Content returns the bytes Open read of bundle.json or of a fixed JSON
// entry (oci-layout, index.json, manifest.json, repositories), or nil when
// the file has no such entry. The caller must not change them.
func (f *File) Content(name string) []byte { return f.content[name] }
