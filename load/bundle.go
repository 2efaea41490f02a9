package load

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"

	"github.com/bundle-tool/bundle/internal/digestio"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrCompressed is returned by Open for a gzip-compressed bundle: its blobs
// cannot be read by offset, so the caller decompresses it into a temp file
// first.
var ErrCompressed = tarball.ErrCompressed

// ChangedError says that bytes read from the bundle for loading are not the
// bytes that were verified: the file changed between the passes, or a disk
// returned other data. Nothing more is loaded.
type ChangedError struct {
	Entry string // the entry: bundle.json, blobs/sha256/…
	Got   string // what the bytes hash to, when known
	Want  string
}

func (e *ChangedError) Error() string {
	msg := fmt.Sprintf("%s changed after the bundle was verified", e.Entry)
	if e.Got != "" {
		msg += fmt.Sprintf(": got %s, want %s", e.Got, e.Want)
	}
	return msg + " (is something writing the file?)"
}

// span is where an entry's content lies in the file.
type span struct {
	off, size int64
}

// region is a non-blob entry that Open read, with the sha256 of what it
// read, for Watch.
type region struct {
	name string
	span
	sum string
}

// Bundle is a bundle file opened for loading: its bundle.json, its
// manifest.json, and where each blob lies. It is safe for concurrent use.
type Bundle struct {
	// Index is bundle.json.
	Index *tarball.Index
	// DockerManifest is manifest.json: which platform docker gets for each
	// tagged reference.
	DockerManifest []tarball.DockerManifestEntry

	path    string
	f       bundleFile
	file    *tarball.File
	regions []region
	// shallow are the layers the verify pass did not decompress
	// (SetShallow).
	shallow map[v1.Hash]bool
	// loaderInflates are the layers the verify pass left for the target
	// to decompress, under the same limit (SetLoaderInflates).
	loaderInflates map[v1.Hash]bool
}

// SetLoaderInflates names the layers that the verify pass checked by
// digest only because the target decompresses them itself, enforcing the
// decompression-bomb limit (Inflater): the target must not hand them
// compressed to anything else.
func (b *Bundle) SetLoaderInflates(hs map[v1.Hash]bool) { b.loaderInflates = hs }

// ShallowError says a load needs a layer that the verify pass checked by
// digest only, not decompressed, because the target held every image
// that uses it when the load began, and no longer does.
type ShallowError struct {
	Digest v1.Hash
}

func (e *ShallowError) Error() string {
	return fmt.Sprintf("layer %s was not decompressed by the verify pass (the target held the images that use it when the load began, and no longer does); run the load again", e.Digest)
}

// SetShallow names the layers that the verify pass checked by digest only
// (not decompressed): OpenBlob refuses them with a *ShallowError. Call it
// before the bundle is used for loading.
func (b *Bundle) SetShallow(hs map[v1.Hash]bool) { b.shallow = hs }

// Open reads the headers of the plain (not compressed) bundle file at path,
// bundle.json and manifest.json, and notes where every blob is, seeking
// past blob contents (tarball.OpenReaderAt: the header checks of
// tarball.Reader; the check of blob contents is the verify package's).
// It returns ErrCompressed for a gzip-compressed file.
func Open(path string) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	b, err := scan(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	b.path = path
	return b, nil
}

// bundleFile is the bundle's file: an *os.File, or a split bundle's
// volumes read as one (tarball.VolumeReader).
type bundleFile interface {
	io.ReaderAt
	io.Closer
}

// OpenVolumes is Open for a bundle found by tarball.FindVolumes: a file, or
// the volumes of a split bundle read as one file. Every volume up to the
// last must be there.
func OpenVolumes(set *tarball.VolumeSet) (*Bundle, error) {
	if len(set.Missing) > 0 {
		return nil, fmt.Errorf("volume %s is missing", tarball.VolumeName(set.Base, set.Missing[0]))
	}
	r, err := set.Open()
	if err != nil {
		return nil, err
	}
	if r.Size() < 0 {
		r.Close()
		return nil, fmt.Errorf("%s is not a regular file", set.Name())
	}
	b, err := scan(r, r.Size())
	if err != nil {
		r.Close()
		return nil, err
	}
	b.path = set.Name()
	return b, nil
}

// Close closes the file.
func (b *Bundle) Close() error { return b.f.Close() }

// Path is the file's path.
func (b *Bundle) Path() string { return b.path }

func scan(f bundleFile, size int64) (*Bundle, error) {
	tf, err := tarball.OpenReaderAt(f, size)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Index: tf.Index(), f: f, file: tf}
	for _, e := range tf.Entries() {
		sp := span{off: e.Offset, size: e.Size}
		switch {
		case e.Name == tarball.IndexFile || e.Name == tarball.DockerManifest:
			// Remembered for Watch.
			sum := sha256.Sum256(tf.Content(e.Name))
			b.regions = append(b.regions, region{name: e.Name, span: sp, sum: hex.EncodeToString(sum[:])})
		}
	}
	if data := tf.Content(tarball.DockerManifest); data != nil {
		if err := json.Unmarshal(data, &b.DockerManifest); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", tarball.DockerManifest, err)
		}
	}
	return b, nil
}

// Has reports whether the file carries blob h.
func (b *Bundle) Has(h v1.Hash) bool {
	_, ok := b.file.Blob(h)
	return ok
}

// Size is the size of blob h in the file, or -1 when it does not carry it.
func (b *Bundle) Size(h v1.Hash) int64 {
	if e, ok := b.file.Blob(h); ok {
		return e.Size
	}
	return -1
}

// OpenBlob returns blob h's content. The reader hashes what it reads and
// returns a *ChangedError instead of io.EOF when the bytes are not blob h.
func (b *Bundle) OpenBlob(h v1.Hash) (io.ReadCloser, error) {
	e, ok := b.file.Blob(h)
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the bundle", h)
	}
	if b.shallow[h] {
		return nil, &ShallowError{Digest: h}
	}
	return &blobReader{h: h, r: digestio.NewReader(b.file.Section(e.Name), h, -1)}, nil
}

// ReadBlob returns the content of a small blob (a manifest, an index, a
// config), checked against its digest.
func (b *Bundle) ReadBlob(h v1.Hash, limit int64) ([]byte, error) {
	e, ok := b.file.Blob(h)
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the bundle", h)
	}
	if e.Size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes is over the limit of %d", h, e.Size, limit)
	}
	rc, err := b.OpenBlob(h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, 0, e.Size)
	buf := bytes.NewBuffer(data)
	if _, err := io.Copy(buf, rc); err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	return buf.Bytes(), nil
}

type blobReader struct {
	h v1.Hash
	r *digestio.Reader
}

func (r *blobReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	var de *digestio.DigestError
	switch {
	case err == nil || err == io.EOF:
	case errors.As(err, &de):
		err = &ChangedError{Entry: tarball.BlobPath(r.h), Got: de.Got.String(), Want: r.h.String()}
	default:
		err = fmt.Errorf("reading blob %s: %w", r.h, err)
	}
	return n, err
}

func (r *blobReader) Close() error { return nil }

// Watcher hashes, as the verify pass reads the file, the entries that
// Open read, so that Unchanged can say the load uses the verified bytes.
type Watcher struct {
	r       io.Reader
	pos     int64
	regions []region
	sums    []hash.Hash
	seen    []int64
}

// Watch returns a Watcher reading r, which must read the file from its
// first byte, as verify.Verify does.
func (b *Bundle) Watch(r io.Reader) *Watcher {
	w := &Watcher{r: r, regions: append([]region(nil), b.regions...)}
	sort.Slice(w.regions, func(i, j int) bool { return w.regions[i].off < w.regions[j].off })
	for range w.regions {
		w.sums = append(w.sums, sha256.New())
		w.seen = append(w.seen, 0)
	}
	return w
}

func (w *Watcher) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	start, end := w.pos, w.pos+int64(n)
	for i, rg := range w.regions {
		lo, hi := max(start, rg.off), min(end, rg.off+rg.size)
		if lo < hi {
			w.sums[i].Write(p[lo-start : hi-start])
			w.seen[i] += hi - lo
		}
	}
	w.pos = end
	return n, err
}

// Unchanged returns a *ChangedError when an entry that Open read was read
// with other content (or not at all) through the Watcher.
func (w *Watcher) Unchanged() error {
	for i, rg := range w.regions {
		if w.seen[i] != rg.size {
			return &ChangedError{Entry: rg.name}
		}
		if got := hex.EncodeToString(w.sums[i].Sum(nil)); got != rg.sum {
			return &ChangedError{Entry: rg.name, Got: "sha256:" + got, Want: "sha256:" + rg.sum}
		}
	}
	return nil
}

// IsGzip reports whether the stream in br starts as a gzip stream.
func IsGzip(br *bufio.Reader) bool {
	magic, _ := br.Peek(2)
	return len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b
}
