package load

import (
	"archive/tar"
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
	"strings"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrCompressed is returned by Open for a gzip-compressed bundle: its blobs
// cannot be read by offset, so the caller decompresses it into a temp file
// first.
var ErrCompressed = errors.New("the bundle is gzip-compressed")

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
	blobs   map[v1.Hash]span
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
// past blob contents. It checks only what it needs to find its way (a
// complete check is the verify package's); its errors say the file is not
// a bundle it can read. It returns ErrCompressed for a gzip-compressed file.
func Open(path string) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	b, err := scan(f)
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
	io.Reader
	io.ReaderAt
	io.Seeker
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
	b, err := scan(r)
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

func scan(f bundleFile) (*Bundle, error) {
	var magic [2]byte
	if n, _ := io.ReadFull(f, magic[:]); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return nil, ErrCompressed
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	b := &Bundle{f: f, blobs: map[v1.Hash]span{}}
	// archive/tar reads headers in whole blocks and seeks over contents
	// (f is an io.Seeker), so after Next the file offset is where the
	// entry's content starts.
	tr := tar.NewReader(f)
	first := true
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the bundle's headers: %w", err)
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("reading bundle: %w", err)
		}
		sp := span{off: off, size: hdr.Size}
		if first {
			if hdr.Name != tarball.IndexFile {
				return nil, fmt.Errorf("the first entry is %q, not %s", hdr.Name, tarball.IndexFile)
			}
			first = false
			data, err := b.readRegion(tr, hdr, sp, tarball.MaxIndexSize)
			if err != nil {
				return nil, err
			}
			var idx tarball.Index
			if err := json.Unmarshal(data, &idx); err != nil {
				return nil, fmt.Errorf("parsing %s: %w", tarball.IndexFile, err)
			}
			if idx.SchemaVersion != tarball.SchemaVersion {
				return nil, fmt.Errorf("%s: schemaVersion is %d, this version of bundle reads %d", tarball.IndexFile, idx.SchemaVersion, tarball.SchemaVersion)
			}
			b.Index = &idx
			continue
		}
		switch {
		case hdr.Typeflag == tar.TypeDir:
		case hdr.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("entry %q: not a regular file", hdr.Name)
		case hdr.Name == tarball.DockerManifest:
			data, err := b.readRegion(tr, hdr, sp, tarball.MaxDockerManifestSize)
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(data, &b.DockerManifest); err != nil {
				return nil, fmt.Errorf("parsing %s: %w", tarball.DockerManifest, err)
			}
		case strings.HasPrefix(hdr.Name, tarball.BlobsSHA256Dir):
			h, err := v1.NewHash("sha256:" + strings.TrimPrefix(hdr.Name, tarball.BlobsSHA256Dir))
			if err != nil {
				return nil, fmt.Errorf("entry %q: not a blob name", hdr.Name)
			}
			if _, dup := b.blobs[h]; dup {
				return nil, fmt.Errorf("entry %q: duplicate", hdr.Name)
			}
			b.blobs[h] = sp
		}
	}
	if first {
		return nil, errors.New("the archive is empty")
	}
	return b, nil
}

// readRegion reads a small entry whole and remembers its hash for Watch.
func (b *Bundle) readRegion(tr *tar.Reader, hdr *tar.Header, sp span, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes is over the limit of %d", hdr.Name, hdr.Size, limit)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", hdr.Name, err)
	}
	sum := sha256.Sum256(data)
	b.regions = append(b.regions, region{name: hdr.Name, span: sp, sum: hex.EncodeToString(sum[:])})
	return data, nil
}

// Has reports whether the file carries blob h.
func (b *Bundle) Has(h v1.Hash) bool {
	_, ok := b.blobs[h]
	return ok
}

// Size is the size of blob h in the file, or -1 when it does not carry it.
func (b *Bundle) Size(h v1.Hash) int64 {
	if sp, ok := b.blobs[h]; ok {
		return sp.size
	}
	return -1
}

// OpenBlob returns blob h's content. The reader hashes what it reads and
// returns a *ChangedError instead of io.EOF when the bytes are not blob h.
func (b *Bundle) OpenBlob(h v1.Hash) (io.ReadCloser, error) {
	sp, ok := b.blobs[h]
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the bundle", h)
	}
	if b.shallow[h] {
		return nil, &ShallowError{Digest: h}
	}
	return &blobReader{h: h, r: io.NewSectionReader(b.f, sp.off, sp.size), sum: sha256.New()}, nil
}

// ReadBlob returns the content of a small blob (a manifest, an index, a
// config), checked against its digest.
func (b *Bundle) ReadBlob(h v1.Hash, limit int64) ([]byte, error) {
	sp, ok := b.blobs[h]
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the bundle", h)
	}
	if sp.size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes is over the limit of %d", h, sp.size, limit)
	}
	rc, err := b.OpenBlob(h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, 0, sp.size)
	buf := bytes.NewBuffer(data)
	if _, err := io.Copy(buf, rc); err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	return buf.Bytes(), nil
}

type blobReader struct {
	h   v1.Hash
	r   *io.SectionReader
	sum hash.Hash
}

func (r *blobReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.sum.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(r.sum.Sum(nil)); got != r.h.Hex {
			return n, &ChangedError{Entry: tarball.BlobPath(r.h), Got: "sha256:" + got, Want: r.h.String()}
		}
	}
	if err != nil && err != io.EOF {
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
