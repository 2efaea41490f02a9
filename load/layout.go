package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/internal/safefs"
	"github.com/bundle-tool/bundle/internal/space"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Layout loads images into an OCI image layout directory: oci-layout,
// index.json and blobs/sha256/<hex>, readable by skopeo (oci:DIR:<ref>),
// containerd, podman and the bundle's own tools.
//
// Every blob is written to a temp file beside its final name, checked
// against its digest, fsynced and renamed; a blob already there is hashed
// and kept only if it is intact. index.json is replaced atomically, last,
// and merged with what is there: entries for other references are kept,
// an entry for the same reference (annotation
// org.opencontainers.image.ref.name = the full reference) is replaced.
// An interrupted load leaves at most unreferenced blobs and temp files
// behind; loading again completes it. A directory lock (flock) keeps two
// loads from merging index.json at the same time.
//
// A multi-arch index is written as the bundle holds it, digest unchanged,
// even when the bundle (or --platform) carries only some of its platforms:
// the layout then lists the index, as the bundle itself does, with only the
// loaded platforms' manifests present.
//
// Every file inside the directory is opened through an os.Root: a link
// that leads out of the layout is refused, only regular files are read (a
// FIFO or a device is refused without being waited on), reads are bounded
// (a blob by the size the bundle declares), and a link or a non-regular
// file in a blob's place is replaced, never read or written through.
type Layout struct {
	dir  string
	jobs int
}

// NewLayout makes a layout target for dir (created on load if missing).
func NewLayout(dir string, opts Options) (*Layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	return &Layout{dir: abs, jobs: jobs}, nil
}

func (l *Layout) String() string { return "OCI layout " + l.dir }

// Dir is the layout's directory.
func (l *Layout) Dir() string { return l.dir }

func (l *Layout) blobPath(h v1.Hash) string {
	return filepath.Join(l.dir, "blobs", h.Algorithm, h.Hex)
}

// Limits of what is read from files in the layout that the bundle does
// not declare the size of.
const (
	maxLayoutIndex = 64 << 20 // index.json
	maxLayoutFile  = 4 << 10  // oci-layout
)

// blobName is blob h's path inside the layout.
func blobName(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

// openRoot opens the layout's directory, through which everything in it
// is opened. It is nil, without an error, when the directory does not
// exist (yet).
func (l *Layout) openRoot() (*os.Root, error) {
	root, err := os.OpenRoot(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", l.dir, err)
	}
	return root, nil
}

// statBlob says whether blob h is in the layout with size bytes: a
// regular file, not a link, of that size.
func statBlob(root *os.Root, h v1.Hash, size int64) (bool, error) {
	if root == nil {
		return false, nil
	}
	fi, err := root.Lstat(blobName(h))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, safefs.Explain(root, blobName(h), err)
	}
	return fi.Mode().IsRegular() && fi.Size() == size, nil
}

// Ping checks that the directory, or the nearest parent that exists, is a
// writable directory.
func (l *Layout) Ping(ctx context.Context) error {
	dir := l.dir
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("OCI layout %s: %s is not a directory", l.dir, dir)
			}
			if err := unix.Access(dir, unix.W_OK); err != nil {
				return fmt.Errorf("OCI layout %s: cannot write to %s: %w", l.dir, dir, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			return fmt.Errorf("OCI layout %s: %w", l.dir, err)
		}
		dir = filepath.Dir(dir)
	}
}

// layoutIndex is index.json, kept as raw JSON so that fields and entries
// of other tools survive the merge.
type layoutIndex struct {
	fields    map[string]json.RawMessage
	manifests []json.RawMessage
	refs      []string  // org.opencontainers.image.ref.name of each entry
	digests   []v1.Hash // digest of each entry
}

func (l *Layout) readIndex(root *os.Root) (*layoutIndex, error) {
	li := &layoutIndex{fields: map[string]json.RawMessage{}}
	if root == nil {
		return li, nil
	}
	p := filepath.Join(l.dir, tarball.OCIIndexFile)
	data, err := safefs.ReadFileIn(root, tarball.OCIIndexFile, maxLayoutIndex)
	if errors.Is(err, fs.ErrNotExist) {
		return li, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if err := json.Unmarshal(data, &li.fields); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p, err)
	}
	if raw, ok := li.fields["manifests"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &li.manifests); err != nil {
			return nil, fmt.Errorf("parsing %s: manifests: %w", p, err)
		}
	}
	for i, m := range li.manifests {
		var d struct {
			Digest      v1.Hash           `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal(m, &d); err != nil {
			return nil, fmt.Errorf("parsing %s: manifests[%d]: %w", p, i, err)
		}
		li.refs = append(li.refs, d.Annotations[tarball.AnnotationRefName])
		li.digests = append(li.digests, d.Digest)
	}
	return li, nil
}

// lookup returns the digest index.json names ref with.
func (li *layoutIndex) lookup(ref string) (v1.Hash, bool) {
	for i, r := range li.refs {
		if r == ref {
			return li.digests[i], true
		}
	}
	return v1.Hash{}, false
}

// set names ref with desc, replacing every entry of the same reference.
func (li *layoutIndex) set(ref string, desc v1.Descriptor) error {
	raw, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	var manifests []json.RawMessage
	var refs []string
	var digests []v1.Hash
	placed := false
	for i, r := range li.refs {
		if r != ref {
			manifests, refs, digests = append(manifests, li.manifests[i]), append(refs, r), append(digests, li.digests[i])
			continue
		}
		if !placed {
			manifests, refs, digests = append(manifests, raw), append(refs, ref), append(digests, desc.Digest)
			placed = true
		}
	}
	if !placed {
		manifests, refs, digests = append(manifests, raw), append(refs, ref), append(digests, desc.Digest)
	}
	li.manifests, li.refs, li.digests = manifests, refs, digests
	return nil
}

func (li *layoutIndex) marshal() ([]byte, error) {
	if _, ok := li.fields["schemaVersion"]; !ok {
		li.fields["schemaVersion"] = json.RawMessage("2")
	}
	if _, ok := li.fields["mediaType"]; !ok {
		li.fields["mediaType"] = json.RawMessage(`"` + string(types.OCIImageIndex) + `"`)
	}
	ms := li.manifests
	if ms == nil {
		ms = []json.RawMessage{}
	}
	raw, err := json.Marshal(ms)
	if err != nil {
		return nil, err
	}
	li.fields["manifests"] = raw
	return json.Marshal(li.fields)
}

// descriptor is the index.json entry of an image: the bundle's own.
func descriptor(im Chosen) v1.Descriptor {
	return v1.Descriptor{
		MediaType: im.MediaType,
		Digest:    im.Digest,
		Size:      im.Size,
		Annotations: map[string]string{
			tarball.AnnotationContainerdName: im.Ref,
			tarball.AnnotationRefName:        im.Ref,
		},
	}
}

// layoutBlobs are every blob an image needs in a layout, children first:
// layers and configs, then manifests, then the index.
func layoutBlobs(im Chosen) (data, mans []v1.Hash) {
	data = im.Blobs()
	for _, m := range im.Manifests {
		mans = append(mans, m.Digest)
	}
	if im.MediaType.IsIndex() {
		mans = append(mans, im.Digest)
	}
	return data, mans
}

func layoutNote(im Chosen) string {
	if im.Complete {
		return ""
	}
	return fmt.Sprintf("index %s lists %d manifests; the layout holds the %d loaded (%v), as the bundle does", im.Digest, im.IndexManifests, len(im.Manifests), im.Platforms())
}

// Check says which images index.json names with the bundle's digest and
// every blob present (by size; Load also hashes them).
func (l *Layout) Check(ctx context.Context, b *Bundle, images []Chosen) (*Result, error) {
	root, err := l.openRoot()
	if err != nil {
		return nil, err
	}
	if root != nil {
		defer root.Close()
	}
	li, err := l.readIndex(root)
	if err != nil {
		return nil, err
	}
	res := &Result{Target: l.String()}
	counted := map[v1.Hash]bool{}
	for _, im := range images {
		r := ImageResult{Ref: im.Ref, Target: im.Ref, Digest: im.Digest, Platforms: im.Platforms(), Note: layoutNote(im), Status: StatusMissing}
		have, named := li.lookup(im.Ref)
		if named && have != im.Digest {
			r.Replaces = have.String()
		}
		data, mans := layoutBlobs(im)
		all := true
		for _, h := range append(data, mans...) {
			ok, err := statBlob(root, h, blobSize(b, h))
			if err != nil {
				return nil, fmt.Errorf("checking blob %s in %s: %w", h, l.dir, err)
			}
			all = all && ok
			if counted[h] {
				continue
			}
			counted[h] = true
			if ok {
				res.BlobsPresent++
			} else {
				res.BlobsSent++
				res.BytesSent += blobSize(b, h)
			}
		}
		if named && have == im.Digest && all {
			r.Status = StatusPresent
		}
		res.Images = append(res.Images, r)
	}
	return res, nil
}

// Holds says which images index.json names with every blob in place (a
// stat each).
func (l *Layout) Holds(ctx context.Context, b *Bundle, images []Chosen) ([]bool, error) {
	res, err := l.Check(ctx, b, images)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(images))
	for i, r := range res.Images {
		out[i] = r.Status == StatusPresent
	}
	return out, nil
}

// Load writes the images' blobs, then index.json.
func (l *Layout) Load(ctx context.Context, b *Bundle, images []Chosen, p Progress) (*Result, error) {
	p = orNop(p)
	if err := CheckExternal(ctx, l, b, images); err != nil { // external.go
		return nil, err
	}
	if err := l.checkSpace(b, images); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating OCI layout %s: %w", l.dir, err)
	}
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		return nil, fmt.Errorf("opening OCI layout %s: %w", l.dir, err)
	}
	defer root.Close()
	const blobsDir = "blobs/sha256"
	if err := root.MkdirAll(blobsDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating OCI layout %s: %w", l.dir, safefs.Explain(root, blobsDir, err))
	}
	unlock, err := lockDir(root)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Temp files of a load that was killed: no load holds the lock, so no
	// one is writing them.
	removeStale(root, blobsDir, func(n string) bool { return strings.HasPrefix(n, ".tmp-") })
	removeStale(root, ".", func(n string) bool { return strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") })
	if err := l.ensureLayoutFile(root); err != nil {
		return nil, err
	}
	li, err := l.readIndex(root)
	if err != nil {
		return nil, err
	}

	var data, mans []v1.Hash
	seen := map[v1.Hash]bool{}
	var total int64
	for _, im := range images {
		d, m := layoutBlobs(im)
		for _, h := range d {
			if !seen[h] {
				seen[h] = true
				data = append(data, h)
				total += blobSize(b, h)
			}
		}
		for _, h := range m {
			if !seen[h] {
				seen[h] = true
				mans = append(mans, h)
				total += blobSize(b, h)
			}
		}
	}
	p.Planned(len(images), len(data)+len(mans), total)

	var sent, present, mansSent atomic.Int64
	var bytesSent atomic.Int64
	written := map[v1.Hash]*atomic.Bool{}
	for h := range seen {
		written[h] = &atomic.Bool{}
	}
	for i, batch := range [][]v1.Hash{data, mans} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(l.jobs)
		for _, h := range batch {
			g.Go(func() error {
				wrote, n, err := l.putBlob(gctx, root, b, h, p)
				if err != nil {
					return err
				}
				switch {
				case !wrote:
					present.Add(1)
				case i == 0:
					sent.Add(1)
				default:
					mansSent.Add(1)
				}
				bytesSent.Add(n)
				written[h].Store(wrote)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	if err := atomicfile.SyncDirIn(root, blobsDir); err != nil {
		return nil, err
	}

	res := &Result{Target: l.String()}
	changed := false
	for _, im := range images {
		r := ImageResult{Ref: im.Ref, Target: im.Ref, Digest: im.Digest, Platforms: im.Platforms(), Note: layoutNote(im), Status: StatusSkipped}
		have, named := li.lookup(im.Ref)
		if named && have != im.Digest {
			r.Replaces = have.String()
		}
		d, m := layoutBlobs(im)
		for _, h := range append(d, m...) {
			if written[h].Load() {
				r.Status = StatusLoaded
			}
		}
		if !named || have != im.Digest {
			r.Status = StatusLoaded
			if err := li.set(im.Ref, descriptor(im)); err != nil {
				return nil, err
			}
			changed = true
		}
		res.Images = append(res.Images, r)
	}
	if changed {
		data, err := li.marshal()
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFileIn(root, tarball.OCIIndexFile, data, 0o644); err != nil {
			return nil, err
		}
	}
	for _, r := range res.Images {
		p.Done(r)
	}
	res.BlobsSent = int(sent.Load())
	res.BlobsPresent = int(present.Load())
	res.ManifestsSent = int(mansSent.Load())
	res.BytesSent = bytesSent.Load()
	return res, nil
}

// removeStale removes the files of dir (inside root) that match.
func removeStale(root *os.Root, dir string, match func(string) bool) {
	d, err := root.Open(dir)
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if match(n) {
			_ = root.Remove(path.Join(dir, n))
		}
	}
}

// ensureLayoutFile writes oci-layout, or checks the one there. Its
// content is never quoted: the file may be a link to anything.
func (l *Layout) ensureLayoutFile(root *os.Root) error {
	p := filepath.Join(l.dir, tarball.OCILayoutFile)
	data, err := safefs.ReadFileIn(root, tarball.OCILayoutFile, maxLayoutFile)
	if errors.Is(err, fs.ErrNotExist) {
		return atomicfile.WriteFileIn(root, tarball.OCILayoutFile, []byte(tarball.OCILayoutContent), 0o644)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	var v struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.Version != "1.0.0" {
		return fmt.Errorf("%s is not an OCI image layout version 1.0.0 (%s is not {\"imageLayoutVersion\":\"1.0.0\"})", l.dir, p)
	}
	return nil
}

// putBlob makes blob h present and intact in the layout. It returns
// whether it wrote it, and how many bytes it wrote.
func (l *Layout) putBlob(ctx context.Context, root *os.Root, b *Bundle, h v1.Hash, p Progress) (bool, int64, error) {
	final := blobName(h)
	if ok, err := intact(root, final, h, blobSize(b, h)); err != nil {
		return false, 0, err
	} else if ok {
		return false, 0, nil
	}
	if !b.Has(h) {
		return false, 0, fmt.Errorf("blob %s is not in the bundle (a delta bundle's external blob) and %s lacks it: load the bundle it came from first", h, l.dir)
	}
	rc, err := b.OpenBlob(h)
	if err != nil {
		return false, 0, err
	}
	defer rc.Close()
	tmp, tmpName, err := safefs.CreateTemp(root, path.Dir(final), ".tmp-"+h.Hex[:16]+"-", "", 0o644)
	if err != nil {
		return false, 0, fmt.Errorf("writing blob %s: %w", h, err)
	}
	defer root.Remove(tmpName) // after the rename, removes nothing
	n, err := io.CopyBuffer(tmp, &ctxReader{ctx: ctx, r: &countingReader{rc: rc, fn: p.Sent}}, make([]byte, 256<<10))
	if err == nil && n != b.Size(h) {
		err = fmt.Errorf("wrote %d bytes, want %d", n, b.Size(h))
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = safefs.Explain(root, final, root.Rename(tmpName, final))
	}
	if err != nil {
		var ce *ChangedError
		if errors.As(err, &ce) || errors.Is(err, context.Canceled) {
			return false, 0, err
		}
		return false, 0, fmt.Errorf("writing blob %s: %w", h, err)
	}
	return true, n, nil
}

// intact reports whether name (inside root) is a regular file of size
// bytes that hashes to h. Anything else in its place (missing, a link, a
// FIFO, a device, the wrong size) is not intact, and is never read: the
// load replaces it. At most size+1 bytes are read.
func intact(root *os.Root, name string, h v1.Hash, size int64) (bool, error) {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking blob %s: %w", h, safefs.Explain(root, name, err))
	}
	if !fi.Mode().IsRegular() || fi.Size() != size {
		return false, nil
	}
	f, err := safefs.OpenIn(root, name)
	var nr *safefs.NotRegularError
	if errors.As(err, &nr) {
		return false, nil // swapped since the Lstat
	}
	if err != nil {
		return false, fmt.Errorf("checking blob %s: %w", h, err)
	}
	defer f.Close()
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, io.LimitReader(f, size+1), make([]byte, 256<<10))
	if err != nil {
		return false, fmt.Errorf("checking blob %s: %w", h, err)
	}
	return n == size && hex.EncodeToString(sum.Sum(nil)) == h.Hex, nil
}

// lockDir takes an exclusive flock on root's directory itself (no lock
// file in the layout), failing at once when another load holds it.
func lockDir(root *os.Root) (func(), error) {
	dir := root.Name()
	d, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := atomicfile.LockFile(d); err != nil {
		d.Close()
		return nil, fmt.Errorf("another bundle load is writing %s; try again when it has finished", dir)
	}
	return func() { atomicfile.Unlock(d) }, nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// checkSpace fails, before anything is written, when the layout's
// filesystem lacks the room for the blobs it does not hold yet (each is
// written whole to a temp file beside its name) and for the new
// index.json, written beside the old one.
func (l *Layout) checkSpace(b *Bundle, images []Chosen) error {
	var plan space.Plan
	var n int64
	files := 1
	seen := map[v1.Hash]bool{}
	for _, im := range images {
		d, m := layoutBlobs(im)
		for _, h := range append(d, m...) {
			if seen[h] {
				continue
			}
			seen[h] = true
			if fi, err := os.Stat(l.blobPath(h)); err == nil && fi.Mode().IsRegular() && fi.Size() == blobSize(b, h) {
				continue
			}
			n += blobSize(b, h)
			files++
		}
	}
	idx := int64(len(tarball.OCILayoutContent)) + 1024*int64(len(images))
	if fi, err := os.Stat(filepath.Join(l.dir, tarball.OCIIndexFile)); err == nil {
		idx += fi.Size()
	}
	plan.Add(l.dir, "the OCI layout", n+idx, files)
	return plan.Check()
}
