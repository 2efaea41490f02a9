package bundle

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/pgzip"
)

// LoadProgress receives what Load does. Implementations must be safe for
// concurrent use.
type LoadProgress interface {
	load.Progress
	// Verifying reports how far the verify pass has read; total is the
	// file's size, 0 when unknown (a pipe).
	Verifying(read, total int64)
	// Verified reports the verify pass's report (intact or not).
	Verified(rep *verify.Report)
	// Loading says the images go into target now (or with a dry run, are
	// being checked against it).
	Loading(target string, images int, dryRun bool)
}

// NopLoadProgress discards every event.
type NopLoadProgress struct{}

func (NopLoadProgress) Planned(int, int, int64)                  {}
func (NopLoadProgress) Sent(int64)                               {}
func (NopLoadProgress) Done(load.ImageResult)                    {}
func (NopLoadProgress) Retry(string, int, string, time.Duration) {}
func (NopLoadProgress) Verifying(int64, int64)                   {}
func (NopLoadProgress) Verified(*verify.Report)                  {}
func (NopLoadProgress) Loading(string, int, bool)                {}

// LoadOptions are the inputs of Load.
type LoadOptions struct {
	// Input is the bundle file, or "-" for Stdin: a file, any volume of a
	// split bundle, their base name or a glob (tarball.FindVolumes).
	// MoreInputs are the further volumes of a glob that a shell expanded.
	Input      string
	MoreInputs []string
	Stdin      io.Reader
	// To names the target (load.ParseTarget): "docker" (or ""), the docker
	// daemon at DOCKER_HOST; "docker://HOST[/PREFIX]", a registry;
	// "oci:DIR", an OCI image layout directory.
	To string
	// DryRun checks the target and says what a load would do; it writes
	// nothing.
	DryRun bool
	// Images and Platforms select what to load (load.Selection).
	Images    []string
	Platforms []string
	// Jobs, Access (a registry's) and DockerHost configure the target
	// (load.Options).
	Jobs int
	fetch.Access
	DockerHost string
	// TempDir is where a bundle read from a pipe or a compressed bundle is
	// spooled (uncompressed) before loading; "" means os.TempDir().
	TempDir string
	// Keys are public key files (cosign.pub): when set, a bundle that is
	// not signed by one of them is refused before anything is written
	// (VerifyOptions.Keys).
	Keys     []string
	Progress LoadProgress

	keys []*sign.PublicKey // Keys, read
}

// VerifySummary is what the verify pass found.
type VerifySummary struct {
	Images int   `json:"images"`
	Blobs  int   `json:"blobs"`
	Bytes  int64 `json:"bytes"`
	// Shallow layers (ShallowBytes) were checked by digest, not
	// decompressed by the verify pass: only images the target already
	// holds, or left out, use them, or the load decompresses them itself.
	Shallow      int   `json:"shallow,omitempty"`
	ShallowBytes int64 `json:"shallowBytes,omitempty"`
	Spooled      bool  `json:"spooled,omitempty"` // read from a pipe or decompressed into a temp file
	// ChecksumWarning says why the checksum file beside the bundle, there
	// but unusable, was not checked ("" when it was, or there is none).
	ChecksumWarning string `json:"checksumWarning,omitempty"`
	// Signature says how the bundle is signed and, with Keys, by which.
	Signature *verify.SignatureReport `json:"signature,omitempty"`
	Seconds   float64                 `json:"seconds"`
}

// LoadResult says what Load did. It is what `bundle load --json` prints.
type LoadResult struct {
	Input    string             `json:"input"`
	Target   string             `json:"target"`
	DryRun   bool               `json:"dryRun,omitempty"`
	Verified VerifySummary      `json:"verified"`
	Images   []load.ImageResult `json:"images"`
	// Notes are what the selection left out.
	Notes []string `json:"notes,omitempty"`
	// Loaded and Skipped count images (Present and Missing with DryRun).
	Loaded  int `json:"loaded"`
	Skipped int `json:"skipped"`
	Present int `json:"present,omitempty"`
	Missing int `json:"missing,omitempty"`
	load.Stats
	// Retries counts the requests and uploads that failed and were tried
	// again (each also reported to LoadProgress.Retry).
	Retries int64   `json:"retries"`
	Seconds float64 `json:"seconds"`
}

// CorruptError says the bundle did not verify; nothing was loaded. Report
// holds every finding.
type CorruptError struct {
	Name   string
	Report *verify.Report
	// Brief leaves the first finding out of the message (the caller has
	// printed every finding).
	Brief bool
}

func (e *CorruptError) Error() string {
	n := len(e.Report.Findings)
	if n == 1 && e.Report.Findings[0].Code == verify.CodeNotBundle {
		return fmt.Sprintf("%s: %s; nothing was loaded", e.Name, e.Report.Findings[0].Problem)
	}
	s := "problems"
	if n == 1 {
		s = "problem"
	}
	first := ""
	if n > 0 && !e.Brief {
		first = ": " + e.Report.Findings[0].String()
		if n > 1 {
			first += fmt.Sprintf(" (and %d more)", n-1)
		}
	}
	return fmt.Sprintf("%s is corrupt or incomplete (%d %s), nothing was loaded%s", e.Name, n, s, first)
}

// IsLoadCorrupt reports whether err from Load says the bundle is corrupt,
// incomplete or changed while it was read (exit code 3).
func IsLoadCorrupt(err error) bool {
	var ce *CorruptError
	var ch *load.ChangedError
	var be *load.BombError
	return errors.As(err, &ce) || errors.As(err, &ch) || errors.As(err, &be)
}

// Load runs bundle load: it verifies the whole bundle first (a file in
// place; a pipe or a compressed bundle while spooling it, uncompressed, to
// a temp file), and only when it is intact loads the selected images into
// the target. Every blob is hashed again as it is loaded.
func Load(ctx context.Context, opts LoadOptions) (*LoadResult, error) {
	start := time.Now()
	if opts.Progress == nil {
		opts.Progress = NopLoadProgress{}
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs()
	}
	var err error
	if opts.keys, err = readKeys(opts.Keys); err != nil {
		return nil, err
	}
	retries := &retryCounter{LoadProgress: opts.Progress}
	opts.Progress = retries
	target, err := load.ParseTarget(opts.To, load.Options{
		Jobs:       opts.Jobs,
		Access:     opts.Access,
		DockerHost: opts.DockerHost,
		Progress:   retries,
	})
	if err != nil {
		return nil, err
	}
	if opts.Input == "" {
		return nil, errors.New("no bundle file given")
	}
	var set *tarball.VolumeSet
	if opts.Input != "-" {
		if set, err = tarball.FindVolumes(opts.Input, opts.MoreInputs...); err != nil {
			return nil, fmt.Errorf("opening the bundle: %w", err)
		}
	}
	if err := target.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", target, err)
	}
	name := opts.Input
	if name == "-" {
		name = "stdin"
	} else if set.Split {
		name = set.Name()
	}
	res := &LoadResult{Input: name, Target: target.String(), DryRun: opts.DryRun, Images: []load.ImageResult{}}

	b, cleanup, err := openVerified(ctx, opts, target, set, name, &res.Verified)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return nil, err
	}
	images, notes, err := load.Select(b, load.Selection{Images: opts.Images, Platforms: opts.Platforms})
	if err != nil {
		return nil, err
	}
	res.Notes = notes
	if len(images) == 0 && len(b.Index.Images) > 0 {
		return nil, fmt.Errorf("nothing to load: %s", strings.Join(notes, "; "))
	}

	// A delta bundle: the target must hold the blobs it does not carry,
	// checked before anything is written (delta_load.go).
	if err := load.CheckExternal(ctx, target, b, images); err != nil {
		return nil, err
	}
	opts.Progress.Loading(target.String(), len(images), opts.DryRun)
	var lr *load.Result
	if opts.DryRun {
		lr, err = target.Check(ctx, b, images)
	} else {
		lr, err = target.Load(ctx, b, images, opts.Progress)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A bomb found before anything was sent (the target decompresses
		// the layers: their verify was left to it) is a corrupt bundle.
		var be *load.BombError
		if errors.As(err, &be) && !be.Sending {
			return nil, &CorruptError{Name: name, Report: &verify.Report{Findings: []verify.Finding{{
				Code: verify.CodeLayer, Entry: tarball.BlobPath(be.Blob), Images: usedBy(b.Index, be.Blob), Problem: be.Problem()}}}}
		}
		return nil, fmt.Errorf("loading into %s: %w", target, err)
	}
	res.Images = lr.Images
	res.Stats = lr.Stats
	res.Loaded = lr.Count(load.StatusLoaded)
	res.Skipped = lr.Count(load.StatusSkipped)
	res.Present = lr.Count(load.StatusPresent)
	res.Missing = lr.Count(load.StatusMissing)
	res.Retries = retries.n.Load()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// usedBy lists the references whose manifests use blob h.
func usedBy(idx *tarball.Index, h v1.Hash) []string {
	var out []string
	for _, im := range idx.Images {
		for _, pm := range im.Manifests {
			if pm.Config == h || slices.Contains(pm.Layers, h) {
				out = append(out, im.Ref)
				break
			}
		}
	}
	return out
}

// retryCounter counts the retries it passes on.
type retryCounter struct {
	LoadProgress
	n atomic.Int64
}

func (r *retryCounter) Retry(what string, attempt int, reason string, wait time.Duration) {
	r.n.Add(1)
	r.LoadProgress.Retry(what, attempt, reason, wait)
}

// openVerified verifies the input and opens it for loading.
func openVerified(ctx context.Context, opts LoadOptions, target load.Target, set *tarball.VolumeSet, name string, sum *VerifySummary) (*load.Bundle, func(), error) {
	start := time.Now()
	defer func() { sum.Seconds = time.Since(start).Seconds() }()
	if set != nil && set.Size() >= 0 {
		b, err := verifyFile(ctx, opts, target, set, name, sum)
		if !errors.Is(err, load.ErrCompressed) {
			var cleanup func()
			if b != nil {
				cleanup = func() { b.Close() }
			}
			return b, cleanup, err
		}
	}
	return spool(ctx, opts, set, name, sum)
}

// verifyFile verifies a plain bundle file (or split bundle) in place:
// OpenVolumes finds the blobs, then the verify pass reads the whole file,
// checking on the way that what OpenVolumes read is what it verifies. It
// checks by digest only, without decompressing them, the layers that only
// images the target already holds use, and those the target decompresses
// itself (shallowLayers).
func verifyFile(ctx context.Context, opts LoadOptions, target load.Target, set *tarball.VolumeSet, name string, sum *VerifySummary) (*load.Bundle, error) {
	b, scanErr := load.OpenVolumes(set)
	if errors.Is(scanErr, load.ErrCompressed) {
		return nil, scanErr
	}
	var held, inflated map[v1.Hash]bool
	if b != nil && scanErr == nil {
		if err := selectsSomething(b, opts); err != nil {
			b.Close()
			return nil, err
		}
		held, inflated = shallowLayers(ctx, opts, target, b)
	}
	in := &Input{Reader: strings.NewReader(""), Name: name, Path: set.Base, Set: set} // volume 1 missing: verify says so
	if len(set.Readable()) > 0 {
		vr, err := set.Open()
		if err != nil {
			if b != nil {
				b.Close()
			}
			return nil, fmt.Errorf("opening the bundle: %w", err)
		}
		defer vr.Close()
		in.Reader = vr
	}
	var r io.Reader = in.Reader
	var w *load.Watcher
	if b != nil {
		w = b.Watch(r)
		r = w
	}
	vo := verify.Options{Deep: true, Keys: opts.keys} // a decompression bomb must not reach a target
	vo.Progress = verifyProgress{opts.Progress, set.Size()}
	if len(held)+len(inflated) > 0 {
		vo.Shallow = func(h v1.Hash) bool { return held[h] || inflated[h] }
	}
	rep, cs, err := verifyPass(ctx, in, r, vo, nil)
	fail := func(err error) (*load.Bundle, error) {
		if b != nil {
			b.Close()
		}
		return nil, err
	}
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(err)
	}
	opts.Progress.Verified(rep)
	summarize(sum, rep)
	sum.ChecksumWarning = cs.Warning()
	if !rep.Intact {
		return fail(&CorruptError{Name: name, Report: rep})
	}
	if scanErr != nil {
		return fail(fmt.Errorf("reading %s: %w", name, scanErr))
	}
	if err := w.Unchanged(); err != nil {
		return fail(err)
	}
	b.SetShallow(held)
	b.SetLoaderInflates(inflated)
	return b, nil
}

// selectsSomething fails before the verify pass (minutes on a big bundle)
// when --image names a reference the bundle lacks, or --platform leaves
// nothing to load: the names come from bundle.json, which the pass then
// checks. Other problems of bundle.json are left to the pass to report.
func selectsSomething(b *load.Bundle, opts LoadOptions) error {
	if len(opts.Images) == 0 && len(opts.Platforms) == 0 {
		return nil
	}
	images, notes, err := load.Select(b, load.Selection{Images: opts.Images, Platforms: opts.Platforms})
	var nib *load.NotInBundleError
	var se *load.SelectionError
	switch {
	case errors.As(err, &nib), errors.As(err, &se):
		return err
	case err != nil:
		return nil
	case len(images) == 0 && len(b.Index.Images) > 0:
		return fmt.Errorf("nothing to load: %s", strings.Join(notes, "; "))
	}
	return nil
}

// shallowLayers are the layers that the verify pass checks by digest and
// size only, without decompressing them.
//
// held are the layers a load will not use: only images that the target
// already holds, or that the selection leaves out, use them (a re-load
// does not inflate what the target has; a bomb there is harmless as
// nothing here inflates it). The load refuses them should it need one
// after all (load.ShallowError).
//
// inflated are the layers that the target decompresses itself as it loads
// them, under the same bomb limit, handing on what it decompressed to be
// checked against the diffIDs (load.Inflater: a docker daemon with the
// classic store): decompressing them twice would only cost time.
//
// Both are nil when the target cannot say: then every layer is
// decompressed, and the load meets the error again.
func shallowLayers(ctx context.Context, opts LoadOptions, target load.Target, b *load.Bundle) (held, inflated map[v1.Hash]bool) {
	images, _, err := load.Select(b, load.Selection{Images: opts.Images, Platforms: opts.Platforms})
	if err != nil {
		return nil, nil // Load reports it after the verify pass
	}
	holds, err := target.Holds(ctx, b, images)
	if err != nil || len(holds) != len(images) {
		return nil, nil
	}
	needed := map[v1.Hash]bool{}
	var todo []load.Chosen
	for i, im := range images {
		if !holds[i] {
			todo = append(todo, im)
			for _, h := range im.Blobs() {
				needed[h] = true
			}
		}
	}
	// A dry run decompresses nothing: its verify pass does it all.
	if in, ok := target.(load.Inflater); ok && len(todo) > 0 && !opts.DryRun {
		if inflated, err = in.InflatesLayers(ctx, b, todo); err != nil {
			return nil, nil
		}
	}
	held = map[v1.Hash]bool{}
	for h, bl := range b.Index.Blobs {
		if !needed[h] && (bl.DiffID != nil || bl.MediaType.IsLayer()) {
			held[h] = true
		}
	}
	return held, inflated
}

// spool copies a pipe, or a compressed bundle uncompressed, to a temp file
// while the verify pass reads it, then opens the temp file for loading.
// set is nil for stdin.
func spool(ctx context.Context, opts LoadOptions, set *tarball.VolumeSet, name string, sum *VerifySummary) (*load.Bundle, func(), error) {
	var src io.Reader
	var size int64
	if set == nil {
		src = opts.Stdin
		if src == nil {
			src = os.Stdin
		}
	} else {
		if len(set.Missing) > 0 || len(set.Readable()) == 0 {
			// Say which volume is missing, as verify does.
			in := &Input{Reader: strings.NewReader(""), Name: name, Path: set.Base, Set: set}
			rep, _, err := verifyPass(ctx, in, in.Reader, verify.Options{}, nil)
			if err != nil {
				return nil, nil, err
			}
			return nil, nil, &CorruptError{Name: name, Report: rep}
		}
		vr, err := set.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("opening the bundle: %w", err)
		}
		defer vr.Close()
		size = max(vr.Size(), 0)
		src = vr
	}
	var read atomic.Int64 // compressed bytes read
	counted := &countReader{r: src, fn: func(n int64) { read.Store(n); opts.Progress.Verifying(n, size) }}
	br := bufio.NewReaderSize(counted, 256<<10)
	var r io.Reader = br
	// Asked once, here: once pgzip reads ahead on its own goroutine, br is
	// its alone.
	gzipped := load.IsGzip(br)
	if gzipped {
		gz, err := pgzip.NewReader(br)
		if err != nil {
			return nil, nil, &CorruptError{Name: name, Report: &verify.Report{Findings: []verify.Finding{{Code: verify.CodeArchive, Problem: "reading the gzip header: " + err.Error()}}}}
		}
		defer gz.Close()
		// A decompression bomb would fill $TMPDIR: stop it early.
		r = tarball.GzipGuard(gz, read.Load)
	}
	tmp, err := os.CreateTemp(opts.TempDir, "bundle-load-*.tar")
	if err != nil {
		return nil, nil, fmt.Errorf("making a temp file to spool the bundle to (set TMPDIR): %w", err)
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	w := &errWriter{w: bufio.NewWriterSize(tmp, 1<<20)}
	vo := verify.Options{Deep: true, Keys: opts.keys}
	if set != nil {
		if err := sidecar(set.Base, &vo); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	rep, err := verify.Verify(ctx, io.TeeReader(r, w), vo)
	if err == nil && w.err != nil {
		err = fmt.Errorf("spooling to %s: %w", tmp.Name(), w.err)
	}
	if err == nil {
		if ferr := w.w.Flush(); ferr != nil {
			err = fmt.Errorf("spooling to %s: %w", tmp.Name(), ferr)
		}
	}
	if err != nil {
		cleanup()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if errors.Is(err, tarball.ErrGzipBomb) {
			rep.Complete, rep.Intact = false, false
			rep.Findings = append(rep.Findings, verify.Finding{Code: verify.CodeArchive, Problem: strings.TrimPrefix(err.Error(), "reading bundle: ")})
			opts.Progress.Verified(rep)
			return nil, nil, &CorruptError{Name: name, Report: rep}
		}
		return nil, nil, fmt.Errorf("verifying %s: %w", name, err)
	}
	rep.Compressed = rep.Compressed || gzipped
	opts.Progress.Verified(rep)
	summarize(sum, rep)
	sum.Spooled = true
	if !rep.Intact {
		cleanup()
		return nil, nil, &CorruptError{Name: name, Report: rep}
	}
	b, err := load.Open(tmp.Name())
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("reading the spooled bundle %s: %w", tmp.Name(), err)
	}
	return b, func() { b.Close(); cleanup() }, nil
}

func summarize(sum *VerifySummary, rep *verify.Report) {
	sum.Images, sum.Blobs, sum.Bytes = rep.Images, rep.Blobs, rep.BytesRead
	sum.Shallow, sum.ShallowBytes = rep.Shallow, rep.ShallowBytes
	sum.Signature = rep.Signature
}

// verifyProgress adapts LoadProgress to verify.Progress.
type verifyProgress struct {
	p     LoadProgress
	total int64
}

func (v verifyProgress) Update(read int64) { v.p.Verifying(read, v.total) }

type countReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.fn(c.n)
	}
	return n, err
}

// errWriter remembers the first write error instead of failing the read
// (the verify pass must see the stream whatever happens to the spool).
type errWriter struct {
	w   *bufio.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
	return len(p), nil
}
