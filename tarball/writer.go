package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"sort"
	"time"

	"github.com/bundle-tool/bundle/manifests"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Plan is everything a bundle holds, ready to be written.
type Plan struct {
	Index          *Index
	OCIIndex       []byte    // index.json
	DockerManifest []byte    // manifest.json
	Blobs          []v1.Hash // blob entries in write order: layers, configs, manifests, indexes
	// Signature, when set, is bundle.sigstore.json, written right after
	// bundle.json: a signature over MarshalIndex(Index), which must not
	// change once it is made.
	Signature []byte
}

// NewPlan derives index.json, manifest.json and the blob order from
// bundle.json, and sets idx.Metadata to the sums of oci-layout,
// index.json and manifest.json (replacing what it held: they derive from
// the rest of bundle.json). dockerPlatform picks the manifest that
// manifest.json lists for a multi-platform reference ("" means each
// image's first manifest).
func NewPlan(idx *Index, dockerPlatform string) (*Plan, error) {
	l := &Plan{Index: idx}

	oci := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, im := range idx.Images {
		oci.Manifests = append(oci.Manifests, v1.Descriptor{
			MediaType: im.MediaType,
			Digest:    im.Digest,
			Size:      im.Size,
			Annotations: map[string]string{
				AnnotationContainerdName: im.Ref,
				AnnotationRefName:        im.Ref,
			},
		})
	}
	var err error
	if l.OCIIndex, err = json.Marshal(oci); err != nil {
		return nil, err
	}

	// manifest.json: one entry per image; references to the same image
	// (same config and layers) share an entry, as docker save does.
	var entries []DockerManifestEntry
	byKey := map[string]int{}
	for _, im := range idx.Images {
		if len(im.Manifests) == 0 {
			return nil, fmt.Errorf("image %s has no manifest", im.Ref)
		}
		m := im.Manifests[0]
		for _, pm := range im.Manifests {
			if dockerPlatform != "" && platformMatches(pm.Platform, dockerPlatform) {
				m = pm
				break
			}
		}
		var tags []string
		ref, err := manifests.ParseReference(im.Ref)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Ref, err)
		}
		if _, isTag := ref.(interface{ TagStr() string }); isTag {
			tags = append(tags, manifests.FamiliarName(ref))
		}
		e := DockerManifestEntry{Config: BlobPath(m.Config), RepoTags: []string{}}
		for _, ly := range m.Layers {
			e.Layers = append(e.Layers, BlobPath(ly))
		}
		key := e.Config
		for _, ly := range e.Layers {
			key += "," + ly
		}
		i, ok := byKey[key]
		if !ok {
			i = len(entries)
			byKey[key] = i
			entries = append(entries, e)
		}
		entries[i].RepoTags = append(entries[i].RepoTags, tags...)
	}
	for i := range entries {
		sort.Strings(entries[i].RepoTags)
	}
	if entries == nil {
		entries = []DockerManifestEntry{}
	}
	if l.DockerManifest, err = json.Marshal(entries); err != nil {
		return nil, err
	}
	if len(l.DockerManifest) > MaxDockerManifestSize {
		return nil, fmt.Errorf("manifest.json would be %d bytes, over docker's %d-byte limit: split the images over several bundles", len(l.DockerManifest), MaxDockerManifestSize)
	}
	idx.Metadata = map[string]EntrySum{
		OCILayoutFile:  SumOf([]byte(OCILayoutContent)),
		OCIIndexFile:   SumOf(l.OCIIndex),
		DockerManifest: SumOf(l.DockerManifest),
	}

	// Blobs children-first, each once, in the order images list them.
	seen := map[v1.Hash]bool{}
	var layers, configs, mans, indexes []v1.Hash
	add := func(list *[]v1.Hash, h v1.Hash) error {
		if seen[h] {
			return nil
		}
		if _, ok := idx.Blobs[h]; !ok {
			if _, ext := idx.External[h]; ext {
				seen[h] = true
				return nil
			}
			return fmt.Errorf("blob %s is referenced but not in bundle.json's blobs", h)
		}
		seen[h] = true
		*list = append(*list, h)
		return nil
	}
	for _, im := range idx.Images {
		for _, m := range im.Manifests {
			for _, ly := range m.Layers {
				if err := add(&layers, ly); err != nil {
					return nil, err
				}
			}
			if err := add(&configs, m.Config); err != nil {
				return nil, err
			}
			if err := add(&mans, m.Digest); err != nil {
				return nil, err
			}
		}
		if im.MediaType.IsIndex() {
			if err := add(&indexes, im.Digest); err != nil {
				return nil, err
			}
		} else if err := add(&mans, im.Digest); err != nil {
			return nil, err
		}
	}
	l.Blobs = append(append(append(layers, configs...), mans...), indexes...)
	if len(l.Blobs) != len(idx.Blobs) {
		return nil, fmt.Errorf("bundle.json lists %d blobs but its images reference %d", len(idx.Blobs), len(l.Blobs))
	}
	return l, nil
}

// platformMatches reports whether a manifest's platform is selected by
// want (manifests.MatchPlatform); equal strings match even when they do
// not parse.
func platformMatches(have, want string) bool {
	if have == want {
		return true
	}
	h, err1 := v1.ParsePlatform(have)
	w, err2 := v1.ParsePlatform(want)
	return err1 == nil && err2 == nil && manifests.MatchPlatform(*w, *h)
}

// BlobSource gives the bytes of a blob. Open may block until the blob is
// available (downloads run while the bundle is written). verified reports
// that the bytes were checked against h by this process just now (a
// download), so Write need not hash them again; it still checks the size.
type BlobSource interface {
	Open(ctx context.Context, h v1.Hash) (rc io.ReadCloser, verified bool, err error)
}

// WriteOptions tune Write.
type WriteOptions struct {
	// ModTime is every entry's modification time (SOURCE_DATE_EPOCH, or 0).
	ModTime time.Time
	// Progress, when set, is told of bytes written.
	Progress func(n int64)
}

// BlobError says a blob's bytes were not what bundle.json claims.
type BlobError struct {
	Digest v1.Hash
	Err    string
}

func (e *BlobError) Error() string { return fmt.Sprintf("blob %s: %s", e.Digest, e.Err) }

// Write writes the bundle to w: bundle.json, bundle.sigstore.json (when
// signed), oci-layout, index.json, manifest.json, the blobs/ directories, then every blob in l.Blobs order.
// Each blob not verified by the source just now is hashed while copied
// and must match its digest; every blob must have its size.
func Write(ctx context.Context, w io.Writer, l *Plan, src BlobSource, opts WriteOptions) error {
	pw := &progressWriter{w: w, fn: opts.Progress}
	tw := tar.NewWriter(pw)
	mt := opts.ModTime.UTC().Truncate(time.Second)
	if opts.ModTime.IsZero() {
		mt = time.Unix(0, 0).UTC()
	}
	hdr := func(name string, size int64, dir bool) *tar.Header {
		h := &tar.Header{Name: name, Size: size, Mode: 0o644, ModTime: mt, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if dir {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		// USTAR is enough for every name we write; PAX only when a size needs it.
		if size < 1<<33-1 {
			h.Format = tar.FormatUSTAR
		}
		return h
	}
	file := func(name string, data []byte) error {
		if err := tw.WriteHeader(hdr(name, int64(len(data)), false)); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		return nil
	}
	idxJSON, err := MarshalIndex(l.Index)
	if err != nil {
		return err
	}
	if len(idxJSON) > MaxIndexSize {
		return fmt.Errorf("bundle.json would be %d bytes, over the %d-byte limit", len(idxJSON), MaxIndexSize)
	}
	if len(l.Signature) > MaxSignatureSize {
		return fmt.Errorf("%s would be %d bytes, over the %d-byte limit", SignatureFile, len(l.Signature), MaxSignatureSize)
	}
	type fixed struct {
		name string
		data []byte
	}
	entries := []fixed{{IndexFile, idxJSON}}
	if l.Signature != nil {
		entries = append(entries, fixed{SignatureFile, l.Signature})
	}
	entries = append(entries, fixed{OCILayoutFile, []byte(OCILayoutContent)}, fixed{OCIIndexFile, l.OCIIndex}, fixed{DockerManifest, l.DockerManifest})
	for _, f := range entries {
		if err := file(f.name, f.data); err != nil {
			return err
		}
	}
	for _, d := range []string{BlobsDir, BlobsSHA256Dir} {
		if err := tw.WriteHeader(hdr(d, 0, true)); err != nil {
			return err
		}
	}
	buf := make([]byte, 1<<20)
	for _, h := range l.Blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := l.Index.Blobs[h]
		if err := tw.WriteHeader(hdr(BlobPath(h), b.Size, false)); err != nil {
			return fmt.Errorf("writing blob %s: %w", h, err)
		}
		rc, verified, err := src.Open(ctx, h)
		if err != nil {
			return fmt.Errorf("opening blob %s: %w", h, err)
		}
		var sum hash.Hash
		var dst io.Writer = tw
		if !verified {
			sum = sha256.New()
			dst = io.MultiWriter(tw, sum)
		}
		n, err := io.CopyBuffer(dst, io.LimitReader(rc, b.Size+1), buf)
		rc.Close()
		switch {
		case err != nil && n <= b.Size:
			return fmt.Errorf("writing blob %s: %w", h, err)
		case n != b.Size:
			return &BlobError{Digest: h, Err: fmt.Sprintf("size mismatch: got %d bytes or more, want %d", n, b.Size)}
		}
		if sum != nil {
			if got := hex.EncodeToString(sum.Sum(nil)); got != h.Hex {
				return &BlobError{Digest: h, Err: "digest mismatch: got sha256:" + got}
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the tar: %w", err)
	}
	return nil
}

// Size is the number of bytes Write writes for l: a 512-byte header and
// the data padded to 512 bytes for each entry (a PAX header block and one
// block of records more for an entry of 8 GiB or more), and the two zero
// blocks that end the tar. It is what create checks the free space
// against before downloading.
func Size(l *Plan) (int64, error) {
	idxJSON, err := MarshalIndex(l.Index)
	if err != nil {
		return 0, err
	}
	entry := func(size int64) int64 {
		n := int64(512) + (size+511)/512*512
		if size >= 1<<33-1 {
			n += 1024 // PAX: its header and its records
		}
		return n
	}
	n := entry(int64(len(idxJSON))) + entry(int64(len(OCILayoutContent))) + entry(int64(len(l.OCIIndex))) + entry(int64(len(l.DockerManifest)))
	if l.Signature != nil {
		n += entry(int64(len(l.Signature)))
	}
	n += 2 * entry(0) // blobs/, blobs/sha256/
	for _, h := range l.Blobs {
		n += entry(l.Index.Blobs[h].Size)
	}
	return n + 1024, nil
}

type progressWriter struct {
	w  io.Writer
	fn func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if p.fn != nil && n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

// MarshalIndex renders bundle.json as Write does (for tests and tools).
func MarshalIndex(idx *Index) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(idx); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
