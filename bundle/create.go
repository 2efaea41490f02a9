package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Progress receives what Create does. Implementations must be safe for
// concurrent use.
type Progress interface {
	fetch.Progress
	// Resolved reports one reference resolved to what the registry serves.
	Resolved(ref string, digest v1.Hash, platforms []string)
	// Planned reports the blobs to write and how many bytes must be downloaded.
	Planned(blobs int, bytes int64, toDownload int64)
	// Written reports n more bytes of the bundle file written.
	Written(n int64)
}

// NopProgress discards every event.
type NopProgress struct{}

func (NopProgress) Retry(string, int, string, time.Duration) {}
func (NopProgress) Downloaded(int64)                         {}
func (NopProgress) Resolved(string, v1.Hash, []string)       {}
func (NopProgress) Planned(int, int64, int64)                {}
func (NopProgress) Written(int64)                            {}

// CreateOptions are the inputs of Create.
type CreateOptions struct {
	File string // images.yaml or images.txt; "" when Args name every image
	// Args are images named on the command line, with --platform and
	// --all-tags (manifests.AddArgs): appended to File's entries.
	Args   manifests.Args
	Output string    // bundle path, or "-" for Stdout
	Stdout io.Writer // where "-" writes
	// Lock, when set, is where to write the lockfile of what was resolved.
	Lock string
	// Locked, when set, is a lockfile whose digests are fetched exactly.
	Locked         string
	CacheDir       string // "" means fetch.DefaultCacheDir()
	Jobs           int    // parallel downloads; 0 means a default
	DockerPlatform string // platform manifest.json lists for multi-arch refs
	// SourceDateEpoch, when set, is the bundle's created time and every
	// entry's mtime (reproducible builds); otherwise created is now and
	// mtimes are 0.
	SourceDateEpoch *time.Time
	// Access is how registries are reached: insecure hosts, credentials,
	// retries and the stall window (a blob download that moves too little
	// in Retry.Stall is dropped and resumed); zero values mean fetch's
	// defaults.
	fetch.Access
	// Segments and SegmentThreshold: a blob of at least SegmentThreshold
	// bytes is downloaded as up to Segments Range requests at once (zero:
	// fetch's defaults; Segments 1: one stream).
	Segments         int
	SegmentThreshold int64
	Progress         Progress
	Creator          string // "bundle v0.1.0"
	// SignKey, when set, is a private key file (cosign.key, or a PKCS#8
	// PEM key): bundle.json is signed with it, the signature written as
	// the bundle.sigstore.json entry and beside the bundle as
	// <Output>.sigstore.json. Password gives an encrypted key's password
	// (it is called only for one); it is read before anything else, and a
	// key that cannot sign fails Create before anything is written.
	SignKey  string
	Password func() ([]byte, error)
	// NoSpaceCheck skips the check, before any layer is downloaded, that
	// the cache's and the output's filesystems have room (space.go);
	// layers then start downloading as each image resolves.
	NoSpaceCheck bool

	// Split volumes and gzip (volumes.go); delta bundles (delta.go).
	OutputOptions
	DeltaOptions
}

// ImageSummary is one reference in a created bundle.
type ImageSummary struct {
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Platforms []string `json:"platforms"`
}

// CreateResult says what Create did.
type CreateResult struct {
	Output           string         `json:"output"`
	SHA256           string         `json:"sha256,omitempty"`
	Images           []ImageSummary `json:"images"`
	Blobs            int            `json:"blobs"`
	BlobBytes        int64          `json:"blobBytes"`
	FileBytes        int64          `json:"fileBytes"`
	BlobsFromCache   int            `json:"blobsFromCache"`
	BlobsDownloaded  int            `json:"blobsDownloaded"`
	LayersDownloaded int            `json:"layersDownloaded"`
	BytesDownloaded  int64          `json:"bytesDownloaded"`
	Retries          int64          `json:"retries"`
	Seconds          float64        `json:"seconds"`

	// Split volumes (volumes.go); delta and unchanged runs (delta.go).
	Volumes []VolumeSummary `json:"volumes,omitempty"`
	// Signature says how the bundle was signed (SignKey).
	Signature *SignatureSummary `json:"signature,omitempty"`
	DeltaSummary
	// Error is set, and the rest mostly empty, when the run failed: --json
	// prints a result for every run, so that a cron wrapper can parse each.
	Error string `json:"error,omitempty"`
}

// SignatureSummary is the signature Create wrote.
type SignatureSummary struct {
	KeyID string `json:"keyId"`
	// File is the signature written beside the bundle ("" on stdout,
	// where the bundle.sigstore.json entry is the only copy).
	File string `json:"file,omitempty"`
}

// Create runs bundle create: resolve every reference, plan the bundle,
// download what the cache lacks while the bundle is written in order.
func Create(ctx context.Context, opts CreateOptions) (*CreateResult, error) {
	c, err := newCreation(opts)
	if err != nil {
		return nil, err
	}
	if c.out != nil {
		defer c.out.abort()
	}
	defer c.stopDownloads()
	res, err := c.resolve(ctx)
	if err != nil {
		return nil, err
	}
	p, result, err := c.plan(res)
	if err != nil || p == nil { // p is nil for an unchanged run
		return result, err
	}
	c.download(p)
	if err := c.write(ctx, p); err != nil {
		return nil, err
	}
	return c.finish(p, result)
}

// creation is one run of Create: what its steps share.
type creation struct {
	opts       CreateOptions
	start      time.Time
	spec       *manifests.Spec
	lock       *manifests.Lock
	have       *haveSet         // delta.go
	out        bundleOutput     // nil when writing to Stdout
	key        *sign.PrivateKey // nil: unsigned
	cache      *fetch.Cache
	client     *fetch.Client
	downloaded atomic.Int64

	// Set by resolve: the downloads, and what stops them.
	src    *fetch.Downloader
	dctx   context.Context
	cancel context.CancelFunc
}

// createPlan is what the bundle holds and what must be downloaded for it.
type createPlan struct {
	res     []*fetch.Resolved
	idx     *tarball.Index
	plan    *tarball.Plan
	mtime   time.Time
	users   map[v1.Hash]string          // blob → first image using it, for errors
	repoOf  map[v1.Hash]name.Repository // blob → where it is fetched
	missing []v1.Hash                   // blobs the cache lacks, in write order
}

// newCreation reads the inputs, claims the output and opens the cache.
func newCreation(opts CreateOptions) (*creation, error) {
	c := &creation{start: time.Now()}
	if opts.Progress == nil {
		opts.Progress = NopProgress{}
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs()
	}
	var err error
	if opts.SignKey != "" {
		// First: a wrong password asks for nothing else.
		if c.key, err = sign.ReadPrivateKey(opts.SignKey, opts.Password); err != nil {
			return nil, err
		}
	}
	switch {
	case opts.File != "":
		if c.spec, err = manifests.Load(opts.File); err != nil {
			return nil, err
		}
	case len(opts.Args.Refs) == 0:
		return nil, errors.New("no images: give a manifest file (-f images.yaml) or references as arguments")
	}
	if len(opts.Args.Refs) > 0 || opts.Args.Platforms != nil {
		if c.spec, err = manifests.AddArgs(c.spec, opts.Args); err != nil {
			return nil, err
		}
	}
	if opts.Locked != "" {
		if c.lock, err = manifests.ReadLock(opts.Locked); err != nil {
			return nil, err
		}
	}

	// Claim the output before any download: a missing or read-only
	// directory, or another run writing the same file, fails now.
	if c.have, err = loadHave(opts.DeltaOptions); err != nil { // delta.go
		return nil, err
	}
	if c.out, err = openBundleOutput(opts); err != nil { // volumes.go: a file, volumes, gzip
		return nil, err
	}
	fail := func(err error) (*creation, error) {
		if c.out != nil {
			c.out.abort()
		}
		return nil, err
	}

	if opts.CacheDir == "" {
		if opts.CacheDir, err = fetch.DefaultCacheDir(); err != nil {
			return fail(err)
		}
	}
	if c.cache, err = fetch.OpenCache(opts.CacheDir); err != nil {
		return fail(err)
	}
	c.client = fetch.New(fetch.Options{
		Access:    opts.Access,
		Progress:  countingProgress{opts.Progress, &c.downloaded},
		UserAgent: opts.Creator,
		Cache:     c.cache,

		Segments:         opts.Segments,
		SegmentThreshold: opts.SegmentThreshold,
	})
	c.opts = opts
	return c, nil
}

// resolve resolves every reference and starts the downloader; layers
// start downloading as each image resolves when nothing else must be
// known first.
func (c *creation) resolve(ctx context.Context) ([]*fetch.Resolved, error) {
	sources, err := fetch.Expand(ctx, c.client, c.spec, c.lock)
	if err != nil {
		return nil, err
	}
	// Downloads start as each image resolves (not with a delta or an
	// unchanged check: what to download is known only once all have).
	c.dctx, c.cancel = context.WithCancel(ctx)
	c.src = fetch.NewDownloader(c.dctx, c.client, c.cache, c.opts.Jobs)
	// Nor with the free-space check: it needs every size first, and no
	// layer is fetched before it passes.
	early := c.have == nil && c.opts.NoSpaceCheck
	return fetch.ResolveAll(ctx, c.client, sources, c.opts.Jobs, func(r *fetch.Resolved) {
		if early {
			for _, pm := range r.Image.Manifests {
				for _, h := range pm.Layers {
					if b, ok := r.Blobs[h]; ok && !c.cache.Has(h, b.Size) {
						c.src.Add(r.From.Context(), v1.Descriptor{Digest: h, Size: b.Size, MediaType: b.MediaType}, r.Image.Ref, true)
					}
				}
			}
		}
		plats := make([]string, 0, len(r.Image.Manifests))
		for _, m := range r.Image.Manifests {
			plats = append(plats, m.Platform)
		}
		c.opts.Progress.Resolved(r.Image.Ref, r.Image.Digest, plats)
	})
}

// stopDownloads cancels the downloads and waits for them, once resolve
// has started them.
func (c *creation) stopDownloads() {
	if c.src != nil {
		c.cancel()
		c.src.Close()
		c.src.Wait()
	}
}

// plan builds the bundle's index and layout and counts what must be
// downloaded, checking there is room for it. An unchanged run (delta.go)
// returns no plan and its result.
func (c *creation) plan(res []*fetch.Resolved) (*createPlan, *CreateResult, error) {
	opts, spec := c.opts, c.spec
	p := &createPlan{res: res, users: map[v1.Hash]string{}, repoOf: map[v1.Hash]name.Repository{}}
	idx := &tarball.Index{
		SchemaVersion: tarball.SchemaVersion,
		Creator:       opts.Creator,
		Source:        &tarball.Source{File: filepath.Base(spec.File), SHA256: spec.SHA256},
		Platforms:     spec.Platforms,
		Blobs:         map[v1.Hash]tarball.Blob{},
	}
	p.idx = idx
	created := time.Now().UTC()
	if opts.SourceDateEpoch != nil {
		created = opts.SourceDateEpoch.UTC()
		p.mtime = created
	}
	idx.Created = created.Format(time.RFC3339)
	for _, r := range res {
		idx.Images = append(idx.Images, r.Image)
		for h, b := range r.Blobs {
			idx.Blobs[h] = b
			if _, ok := p.users[h]; !ok {
				p.users[h] = r.Image.Ref
			}
		}
	}
	dockerPlatform := opts.DockerPlatform
	if dockerPlatform == "" && len(spec.Platforms) > 0 && spec.Platforms[0] != manifests.AllPlatforms {
		dockerPlatform = spec.Platforms[0]
	}
	if dockerPlatform == "" {
		dockerPlatform = fetch.HostPlatform()
	}
	if res, unchanged := c.have.apply(idx, c.start); unchanged { // delta.go
		res.Output = opts.Output
		return nil, res, nil
	}
	layout, err := tarball.NewPlan(idx, dockerPlatform)
	if err != nil {
		return nil, nil, err
	}
	p.plan = layout
	if c.key != nil {
		// bundle.json is complete: sign the bytes Write will write.
		idxJSON, err := tarball.MarshalIndex(idx)
		if err != nil {
			return nil, nil, err
		}
		if layout.Signature, err = c.key.Sign(idxJSON); err != nil {
			return nil, nil, err
		}
		if c.out != nil {
			c.out.sign(layout.Signature)
		}
	}

	for _, r := range res {
		for h := range r.Blobs {
			if _, ok := p.repoOf[h]; !ok {
				p.repoOf[h] = r.From.Context()
			}
		}
	}
	result := &CreateResult{Output: opts.Output}
	var toDownload int64
	for _, h := range layout.Blobs {
		b := idx.Blobs[h]
		result.BlobBytes += b.Size
		switch {
		case c.src.Has(h):
			toDownload += b.Size // downloading already, or downloaded
		case c.cache.Has(h, b.Size):
			if !c.client.StoredThisRun(h) {
				result.BlobsFromCache++
			}
		default:
			toDownload += b.Size
			p.missing = append(p.missing, h)
		}
	}
	result.Blobs = len(layout.Blobs)
	if !opts.NoSpaceCheck {
		if err := checkSpace(opts, c.cache, layout, p.missing); err != nil {
			return nil, nil, err
		}
	}
	opts.Progress.Planned(len(layout.Blobs), result.BlobBytes, toDownload)
	return p, result, nil
}

// download queues what the cache lacks, in the order the writer needs it.
func (c *creation) download(p *createPlan) {
	if fo, ok := c.out.(failingOutput); ok {
		// A write that fails (a full disk) stops the downloads at once:
		// the writer may be waiting for one.
		go func() {
			select {
			case <-fo.writeFailed():
				c.cancel()
			case <-c.dctx.Done():
			}
		}()
	}
	for _, h := range p.missing {
		b := p.idx.Blobs[h]
		c.src.Add(p.repoOf[h], v1.Descriptor{Digest: h, Size: b.Size, MediaType: b.MediaType}, p.users[h], b.DiffID != nil || b.MediaType.IsLayer())
	}
	c.src.Close()
}

// write writes the bundle as the downloads arrive, and says why it failed.
func (c *creation) write(ctx context.Context, p *createPlan) error {
	opts, src, out := c.opts, c.src, c.out
	var w io.Writer = opts.Stdout
	if out != nil {
		w = out
	}
	werr := tarball.Write(ctx, w, p.plan, src, tarball.WriteOptions{ModTime: p.mtime, Progress: opts.Progress.Written})
	c.cancel()
	src.Wait()
	if werr == nil {
		return nil
	}
	var be *tarball.BlobError
	if errors.As(werr, &be) {
		// The cache held a damaged blob: drop it so the next run fetches it again.
		_ = c.cache.Remove(be.Digest)
		return fmt.Errorf("image %s: %w (removed from the cache; run again to fetch it)", p.users[be.Digest], werr)
	}
	if ctx.Err() != nil {
		return ctx.Err() // interrupted
	}
	// The write failed (a full disk): downloads were only cancelled
	// because of it.
	if fo, ok := out.(failingOutput); ok && fo.writeErr() != nil {
		return fmt.Errorf("writing %s: %w", opts.Output, fo.writeErr())
	}
	// A failed download (it names the image and blob).
	if derr := src.FirstErr(); derr != nil {
		return derr
	}
	return fmt.Errorf("writing %s: %w", opts.Output, werr)
}

// finish commits the output, writes the lockfile and completes result.
func (c *creation) finish(p *createPlan, result *CreateResult) (*CreateResult, error) {
	if c.out != nil {
		var err error
		if result.SHA256, result.FileBytes, err = c.out.commit(); err != nil {
			return nil, err
		}
		result.Volumes = outputVolumes(c.out)
	}
	if c.key != nil {
		result.Signature = &SignatureSummary{KeyID: c.key.Public().ID()}
		if c.out != nil {
			result.Signature.File = c.opts.Output + SidecarSuffix
		}
	}
	c.have.summarize(result, p.idx)
	if c.opts.Lock != "" {
		if err := manifests.WriteLock(c.opts.Lock, makeLock(c.spec, p.res)); err != nil {
			return nil, fmt.Errorf("writing lockfile: %w", err)
		}
	}
	for _, r := range p.res {
		var plats []string
		for _, m := range r.Image.Manifests {
			plats = append(plats, m.Platform)
		}
		result.Images = append(result.Images, ImageSummary{Ref: r.Image.Ref, Digest: r.Image.Digest.String(), MediaType: string(r.Image.MediaType), Platforms: plats})
	}
	result.BlobsDownloaded = result.Blobs - result.BlobsFromCache
	result.LayersDownloaded = c.src.Layers()
	result.BytesDownloaded = c.downloaded.Load()
	result.Retries = c.client.Retries()
	result.Seconds = time.Since(c.start).Seconds()
	return result, nil
}

// DefaultJobs is the default number of parallel downloads.
func DefaultJobs() int { return max(4, min(2*runtime.NumCPU(), 8)) }

type countingProgress struct {
	Progress
	n *atomic.Int64
}

func (c countingProgress) Downloaded(n int64) {
	c.n.Add(n)
	c.Progress.Downloaded(n)
}

func makeLock(spec *manifests.Spec, res []*fetch.Resolved) *manifests.Lock {
	l := &manifests.Lock{Version: 1, Source: &manifests.LockSource{File: filepath.Base(spec.File), SHA256: spec.SHA256}}
	for _, r := range res {
		li := manifests.LockedImage{Ref: r.Image.Ref, Digest: r.Image.Digest.String()}
		if !(len(r.Platforms) == 1 && r.Platforms[0] == fetch.HostPlatform() && len(spec.PlatformsFor(manifests.Entry{})) == 0) {
			li.Platforms = r.Platforms
		}
		l.Images = append(l.Images, li)
	}
	sort.Slice(l.Images, func(i, j int) bool { return l.Images[i].Ref < l.Images[j].Ref })
	return l
}

// MarshalResult renders a result as the one JSON object --json prints.
func MarshalResult(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}
