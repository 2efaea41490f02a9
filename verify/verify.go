package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"

	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Progress is told how far the pass has got.
type Progress interface {
	// Update is called, from the reading goroutine, with the number of
	// bytes of the file read so far.
	Update(read int64)
}

// Options tune Verify.
type Options struct {
	// Deep also decompresses every layer and checks its diffID against the
	// config and bundle.json.
	Deep bool
	// FileSHA256, when set, is the sha256 the whole file must have, as
	// <file>.sha256 records it (see ParseChecksumFile); ChecksumFile names
	// that file in findings.
	FileSHA256   v1.Hash
	ChecksumFile string
	// Progress, when set, is told of bytes read.
	Progress Progress
	// Volumes are the volumes of a split bundle, in the order r reads them
	// (tarball.VolumeSet.Readable): findings then say which volume holds
	// a fault and where in it. VolumeSHA256 are the sums a checksum file
	// records for them, by volume number; each volume is then hashed on
	// its own. MissingVolumes are volumes not found: each is a finding (r
	// ends before the first). See SplitOptions.
	Volumes        []tarball.Volume
	VolumeSHA256   map[int]v1.Hash
	MissingVolumes []tarball.Volume
	// MaxRatio and MaxLayerSize limit what one layer may decompress to with
	// Deep (DefaultMaxRatio and DefaultMaxLayerSize when zero).
	MaxRatio     int64
	MaxLayerSize int64
	// ReaderAt, when set, reads the same bytes as r at their offset from
	// r's first byte (r reads a file, not a pipe). The blobs of a plain
	// (not gzip-compressed) bundle are then read from it by the workers,
	// several blobs at once, while r's copy of them is only read past:
	// hashing and decompressing use every core whatever the blobs' sizes.
	ReaderAt io.ReaderAt
	// Keys, when set, are the public keys one of which must have signed
	// bundle.json (the bundle.sigstore.json entry or Sidecar): a bundle
	// that is unsigned, signed by none of them, or whose bundle.json
	// lists no metadata is then not intact (CodeSignature).
	Keys []*sign.PublicKey
	// Sidecar is the signature file beside the bundle
	// (<file>.sigstore.json), when there is one; SidecarFile names it in
	// findings (and where it would be, when there is none). SidecarErr says why it is there but could not be used (too
	// large). Either way it must be a signature of this bundle.json.
	Sidecar     []byte
	SidecarFile string
	SidecarErr  error
	// Shallow, when set with Deep, names the layers not to decompress
	// (a load skips the images that use them: the target has them). They
	// are checked as without Deep: digest and size.
	Shallow func(v1.Hash) bool
}

// Verify reads the bundle in r once, from start to end, and checks it. It
// returns a Report of every fault found; the bundle is intact when
// Report.Intact is true. The error is non-nil only when r could not be read
// or ctx was cancelled; the Report then holds what was found until then.
//
// Memory stays bounded whatever the size of the bundle (blobs are hashed in
// chunks, never held); it grows only with the number of entries and the
// size of bundle.json. Nothing is written anywhere.
func Verify(ctx context.Context, r io.Reader, opts Options) (*Report, error) {
	if opts.MaxRatio <= 0 {
		opts.MaxRatio = DefaultMaxRatio
	}
	if opts.MaxLayerSize <= 0 {
		opts.MaxLayerSize = DefaultMaxLayerSize
	}
	v := &verifier{
		opts:     opts,
		rep:      &Report{Deep: opts.Deep, Complete: true, ChecksumFile: opts.ChecksumFile, Findings: []Finding{}},
		byDigest: map[v1.Hash]*blobJob{},
		files:    map[string][]byte{},
		reported: map[string]bool{},
		offsets:  map[string]int64{tarball.IndexFile: 512},
	}
	err := v.run(ctx, r)
	if err != nil {
		v.rep.Complete = false
	}
	v.rep.Intact = err == nil && v.rep.Complete && len(v.rep.Findings) == 0
	return v.rep, err
}

type verifier struct {
	opts Options
	rep  *Report
	idx  *tarball.Index
	// From bundle.json: the references that use each blob, and what each
	// blob is.
	usedBy map[v1.Hash][]string
	roles  map[v1.Hash]role
	// Where bundle.json lists each manifest (image and manifest, in
	// order), and which images (by position) each top-level digest is.
	byManifest map[v1.Hash][]manifestUse
	byTop      map[v1.Hash][]int
	// The blob entries in the order of the file; the first of each digest.
	jobs     []*blobJob
	byDigest map[v1.Hash]*blobJob
	// Content of the small fixed entries (oci-layout, index.json, …).
	files map[string][]byte
	// reported keeps findings from being repeated.
	reported map[string]bool
	// Where each entry's content starts in the stream, and the reader (for
	// the offset of a fault that stops the pass).
	offsets map[string]int64
	tr      *tarball.Reader
	// stopOffset is where a fault stopped the pass.
	stopOffset *int64
	// volumeSums are the sha256 of each volume read to its end.
	volumeSums []string
	// skip is the buffer that reads past the stream's copy of a blob
	// (Options.ReaderAt).
	skip []byte
}

// manifestUse is one of bundle.json's images[].manifests[]: the positions
// of the image and of the manifest in it.
type manifestUse struct{ image, manifest int }

func (v *verifier) run(ctx context.Context, r io.Reader) error {
	fh := newFileHasher(r, v.opts.Progress, v.opts.FileSHA256.Hex != "", v.volumeEnds())
	defer func() { v.rep.BytesRead = fh.n }()
	defer fh.stop() // stops its goroutine on every path
	tr := tarball.NewReader(fh)
	defer tr.Close()
	v.tr = tr
	defer v.locate()
	v.missingVolumes()

	idx, err := tr.Index()
	v.rep.Compressed = tr.Compressed()
	if err != nil {
		if !tarball.IsCorrupt(err) {
			return err
		}
		v.fatal(err)
		if err := v.finishFile(fh); err != nil {
			return err
		}
		v.checksumCheck()
		v.volumeChecks(fh)
		return nil
	}
	v.idx = idx
	v.rep.Images = len(idx.Images)
	v.indexChecks()

	p := newPipeline(max(1, runtime.GOMAXPROCS(0)))
	readErr := v.readEntries(ctx, tr, p)
	p.close()
	if readErr != nil {
		return readErr
	}
	if err := v.finishFile(fh); err != nil {
		return err
	}
	v.crossChecks()
	v.fixedChecks()
	v.signatureChecks()
	v.checksumCheck()
	v.volumeChecks(fh)
	v.externalList()
	return nil
}

// checksumCheck compares the file's sha256 with <file>.sha256.
func (v *verifier) checksumCheck() {
	if v.opts.FileSHA256.Hex != "" && v.rep.SHA256 != "" && v.rep.SHA256 != v.opts.FileSHA256.Hex {
		v.add(Finding{Code: CodeChecksum, Problem: fmt.Sprintf("the file's sha256 is not the one in %s", orName(v.opts.ChecksumFile, "its checksum file")),
			Got: "sha256:" + v.rep.SHA256, Want: v.opts.FileSHA256.String()})
	}
}

// readEntries reads every entry after bundle.json. It returns an error only
// when the file could not be read or ctx was cancelled.
func (v *verifier) readEntries(ctx context.Context, tr *tarball.Reader, p *pipeline) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		var ee *tarball.EntryError
		if errors.As(err, &ee) {
			v.add(Finding{Code: CodeEntry, Entry: ee.Name, Images: v.imagesOfEntry(ee.Name), Problem: ee.Reason, Offset: offsetPtr(tr.Offset())})
			continue
		}
		if err != nil {
			return v.stop(err)
		}
		if _, ok := v.offsets[e.Name]; !ok {
			v.offsets[e.Name] = e.Offset
		}
		switch e.Kind {
		case tarball.KindDir:
			v.files[e.Name] = nil
		case tarball.KindFile:
			data, err := io.ReadAll(e) // the reader limits these to a few MiB
			if err != nil {
				return v.stop(err)
			}
			v.files[e.Name] = data
		case tarball.KindBlob:
			if err := v.readBlob(ctx, p, e); err != nil {
				return v.stop(err)
			}
		}
	}
}

// stop ends the pass on err: a finding when the bundle is damaged, the
// error itself when the file could not be read.
func (v *verifier) stop(err error) error {
	if tarball.IsCorrupt(err) {
		v.fatal(err)
		return nil
	}
	return err
}

// readBlob hands a blob entry to the pipeline chunk by chunk.
func (v *verifier) readBlob(ctx context.Context, p *pipeline, e *tarball.Entry) error {
	j := &blobJob{
		name:     e.Name,
		digest:   e.Digest,
		order:    len(v.jobs),
		headSize: e.Size,
		role:     v.roles[e.Digest],
		chunks:   make(chan []byte, poolChunks),
	}
	if b, ok := v.idx.Blobs[e.Digest]; ok {
		j.mediaType = b.MediaType
	}
	switch j.role {
	case roleConfig:
		j.keep = tarball.MaxConfigSize
	case roleManifest, roleIndex:
		j.keep = tarball.MaxManifestSize
	case roleLayer:
		j.deep = v.opts.Deep
		j.limits = deepLimits{maxRatio: v.opts.MaxRatio, maxSize: v.opts.MaxLayerSize, compressed: e.Size}
		if j.deep && v.opts.Shallow != nil && v.opts.Shallow(e.Digest) {
			j.deep = false
			v.rep.Shallow++
			v.rep.ShallowBytes += e.Size
		}
	}
	if j.keep > 0 && e.Size > j.keep {
		j.res.tooBig = true
	}
	v.jobs = append(v.jobs, j)
	if _, ok := v.byDigest[e.Digest]; !ok {
		v.byDigest[e.Digest] = j
	}
	v.rep.Blobs++
	v.rep.BlobBytes += e.Size

	if v.opts.ReaderAt != nil && !v.tr.Compressed() {
		return v.readBlobAt(ctx, p, j, e)
	}
	p.jobs <- j
	defer close(j.chunks)
	for {
		var buf []byte
		select {
		case buf = <-p.pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		n, err := readFull(e, buf)
		if n > 0 {
			j.chunks <- buf[:n]
		} else {
			p.pool <- buf
		}
		if err == io.EOF {
			j.res.complete = true
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readBlobAt hands a blob entry to the pipeline as a section of
// Options.ReaderAt, which a goroutine of its own reads chunk by chunk into
// the job (and marks the job complete when it read every byte), and reads
// the stream's copy past, so that the next blob goes to the next free
// worker at once.
func (v *verifier) readBlobAt(ctx context.Context, p *pipeline, j *blobJob, e *tarball.Entry) error {
	select {
	case p.jobs <- j: // a worker is free
	case <-ctx.Done():
		close(j.chunks)
		return ctx.Err()
	}
	go func() {
		// The worker reads j.res.complete after j.chunks is closed.
		defer close(j.chunks)
		sr := io.NewSectionReader(v.opts.ReaderAt, e.Offset, e.Size)
		var n int64
		for {
			var buf []byte
			select {
			case buf = <-p.pool:
			case <-ctx.Done():
				return
			}
			k, err := readFull(sr, buf)
			n += int64(k)
			if k > 0 {
				j.chunks <- buf[:k]
			} else {
				p.pool <- buf
			}
			if err != nil {
				j.res.complete = err == io.EOF && n == e.Size
				return
			}
		}
	}()
	if v.skip == nil {
		v.skip = make([]byte, 256<<10)
	}
	for {
		if _, err := readFull(e, v.skip); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// readFull fills buf from r, returning io.EOF with the last bytes.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// finishFile reads the rest of the file, so that its sha256 covers every
// byte, and records the sum.
func (v *verifier) finishFile(fh *fileHasher) error {
	if fh.h == nil {
		return nil
	}
	if _, err := io.CopyBuffer(io.Discard, fh, make([]byte, 256<<10)); err != nil {
		return fmt.Errorf("reading bundle: %w", err)
	}
	if len(fh.ends) > 0 {
		v.volumeSums = fh.volumeSums()
		return nil
	}
	v.rep.SHA256 = fh.sum()
	return nil
}

// fatal records the error that stopped the pass.
func (v *verifier) fatal(err error) {
	v.rep.Complete = false
	if v.tr != nil {
		v.stopOffset = offsetPtr(v.tr.Offset())
	}
	var nb *tarball.NotBundleError
	var ee *tarball.EntryError
	var ce *tarball.CorruptError
	switch {
	case errors.As(err, &nb):
		v.add(Finding{Code: CodeNotBundle, Problem: nb.Error(), Looks: nb.Looks})
	case errors.As(err, &ee):
		v.add(Finding{Code: CodeEntry, Entry: ee.Name, Problem: ee.Reason, Offset: v.stopOffset})
	case errors.As(err, &ce) && errors.Is(err, tarball.ErrTruncated):
		v.add(Finding{Code: CodeTruncated, Entry: ce.Entry, Images: v.imagesOfEntry(ce.Entry), Problem: ce.Err.Error(), Offset: v.stopOffset})
	case errors.As(err, &ce) && ce.Entry == tarball.IndexFile:
		v.add(Finding{Code: CodeIndex, Entry: ce.Entry, Problem: ce.Err.Error()})
	case errors.As(err, &ce):
		v.add(Finding{Code: CodeArchive, Entry: ce.Entry, Images: v.imagesOfEntry(ce.Entry), Problem: ce.Err.Error(), Offset: v.stopOffset})
	default:
		v.add(Finding{Code: CodeArchive, Problem: err.Error(), Offset: v.stopOffset})
	}
}

// add records a finding once.
func (v *verifier) add(f Finding) {
	key := f.String()
	if v.reported[key] {
		return
	}
	v.reported[key] = true
	v.rep.Findings = append(v.rep.Findings, f)
}

// imagesOf returns the references that use blob h, per bundle.json.
func (v *verifier) imagesOf(h v1.Hash) []string {
	return v.usedBy[h]
}

// imagesOfEntry returns the references that use the entry named name.
func (v *verifier) imagesOfEntry(name string) []string {
	if h, ok := blobDigest(name); ok {
		return v.imagesOf(h)
	}
	return nil
}

func blobDigest(name string) (v1.Hash, bool) {
	const prefix = tarball.BlobsSHA256Dir
	if len(name) != len(prefix)+64 || name[:len(prefix)] != prefix {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash("sha256:" + name[len(prefix):])
	return h, err == nil
}

func orName(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func sortStrings(s []string) { sort.Strings(s) }
