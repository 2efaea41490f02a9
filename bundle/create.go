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
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/authn"
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
	File   string    // images.yaml or images.txt
	Output string    // bundle path, or "-" for Stdout
	Stdout io.Writer // where "-" writes
	// Lock, when set, is where to write the lockfile of what was resolved.
	Lock string
	// Locked, when set, is a lockfile whose digests are fetched exactly.
	Locked         string
	CacheDir       string // "" means fetch.DefaultCacheDir()
	Jobs           int    // parallel downloads; 0 means a default
	Insecure       []string
	DockerPlatform string // platform manifest.json lists for multi-arch refs
	// SourceDateEpoch, when set, is the bundle's created time and every
	// entry's mtime (reproducible builds); otherwise created is now and
	// mtimes are 0.
	SourceDateEpoch *time.Time
	Keychain        authn.Keychain
	Retry           fetch.RetryPolicy
	// StallTimeout drops and resumes a blob download that receives
	// nothing for this long; zero means fetch.DefaultStallTimeout.
	StallTimeout time.Duration
	// Segments and SegmentThreshold: a blob of at least SegmentThreshold
	// bytes is downloaded as up to Segments Range requests at once (zero:
	// fetch's defaults; Segments 1: one stream).
	Segments         int
	SegmentThreshold int64
	Progress         Progress
	Creator          string // "bundle v0.1.0"
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
	DeltaSummary
}

// Create runs bundle create.
func Create(ctx context.Context, opts CreateOptions) (*CreateResult, error) {
	start := time.Now()
	if opts.Progress == nil {
		opts.Progress = NopProgress{}
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs()
	}
	spec, err := manifests.Load(opts.File)
	if err != nil {
		return nil, err
	}
	var lock *manifests.Lock
	if opts.Locked != "" {
		if lock, err = manifests.ReadLock(opts.Locked); err != nil {
			return nil, err
		}
	}

	// Claim the output before any download: a missing or read-only
	// directory, or another run writing the same file, fails now.
	have, err := loadHave(opts.DeltaOptions) // delta.go
	if err != nil {
		return nil, err
	}
	out, err := openBundleOutput(opts) // volumes.go: a file, volumes, gzip
	if err != nil {
		return nil, err
	}
	if out != nil {
		defer out.abort()
	}

	if opts.CacheDir == "" {
		if opts.CacheDir, err = fetch.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	cache, err := fetch.OpenCache(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	var downloaded atomic.Int64
	client := fetch.New(fetch.Options{
		Keychain:     opts.Keychain,
		Insecure:     opts.Insecure,
		Retry:        opts.Retry,
		Progress:     countingProgress{opts.Progress, &downloaded},
		UserAgent:    opts.Creator,
		Cache:        cache,
		StallTimeout: opts.StallTimeout,

		Segments:         opts.Segments,
		SegmentThreshold: opts.SegmentThreshold,
	})

	sources, err := fetch.Expand(ctx, client, spec, lock)
	if err != nil {
		return nil, err
	}
	// Downloads start as each image resolves (not with a delta or an
	// unchanged check: what to download is known only once all have).
	dctx, cancel := context.WithCancel(ctx)
	src := fetch.NewDownloader(dctx, client, cache, opts.Jobs)
	defer func() { cancel(); src.Close(); src.Wait() }()
	// Nor with the free-space check: it needs every size first, and no
	// layer is fetched before it passes.
	var early func(*fetch.Resolved)
	if have == nil && opts.NoSpaceCheck {
		early = func(r *fetch.Resolved) {
			for _, pm := range r.Image.Manifests {
				for _, h := range pm.Layers {
					if b, ok := r.Blobs[h]; ok && !cache.Has(h, b.Size) {
						src.Add(r.From.Context(), v1.Descriptor{Digest: h, Size: b.Size, MediaType: b.MediaType}, r.Image.Ref, true)
					}
				}
			}
		}
	}
	res, err := fetch.ResolveAll(ctx, client, sources, opts.Jobs, func(r *fetch.Resolved) {
		if early != nil {
			early(r)
		}
		plats := make([]string, 0, len(r.Image.Manifests))
		for _, m := range r.Image.Manifests {
			plats = append(plats, m.Platform)
		}
		opts.Progress.Resolved(r.Image.Ref, r.Image.Digest, plats)
	})
	if err != nil {
		return nil, err
	}

	idx := &tarball.Index{
		SchemaVersion: tarball.SchemaVersion,
		Creator:       opts.Creator,
		Source:        &tarball.Source{File: filepath.Base(spec.File), SHA256: spec.SHA256},
		Platforms:     spec.Platforms,
		Blobs:         map[v1.Hash]tarball.Blob{},
	}
	created := time.Now().UTC()
	var mtime time.Time
	if opts.SourceDateEpoch != nil {
		created = opts.SourceDateEpoch.UTC()
		mtime = created
	}
	idx.Created = created.Format(time.RFC3339)
	users := map[v1.Hash]string{} // blob → first image using it, for errors
	for _, r := range res {
		idx.Images = append(idx.Images, r.Image)
		for h, b := range r.Blobs {
			idx.Blobs[h] = b
			if _, ok := users[h]; !ok {
				users[h] = r.Image.Ref
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
	if res, unchanged := have.apply(idx, start); unchanged { // delta.go
		res.Output = opts.Output
		return res, nil
	}
	layout, err := tarball.NewLayout(idx, dockerPlatform)
	if err != nil {
		return nil, err
	}

	// Download what the cache lacks while the bundle is written in order.
	repoOf := map[v1.Hash]name.Repository{}
	for _, r := range res {
		for h := range r.Blobs {
			if _, ok := repoOf[h]; !ok {
				repoOf[h] = r.From.Context()
			}
		}
	}
	result := &CreateResult{Output: opts.Output}
	var toDownload int64
	var missing []v1.Hash
	for _, h := range layout.Blobs {
		b := idx.Blobs[h]
		result.BlobBytes += b.Size
		switch {
		case src.Has(h):
			toDownload += b.Size // downloading already, or downloaded
		case cache.Has(h, b.Size):
			if !client.StoredThisRun(h) {
				result.BlobsFromCache++
			}
		default:
			toDownload += b.Size
			missing = append(missing, h)
		}
	}
	result.Blobs = len(layout.Blobs)
	if !opts.NoSpaceCheck {
		if err := checkSpace(opts, cache, layout, missing); err != nil {
			return nil, err
		}
	}
	opts.Progress.Planned(len(layout.Blobs), result.BlobBytes, toDownload)

	if fo, ok := out.(failingOutput); ok {
		// A write that fails (a full disk) stops the downloads at once:
		// the writer may be waiting for one.
		go func() {
			select {
			case <-fo.writeFailed():
				cancel()
			case <-dctx.Done():
			}
		}()
	}
	for _, h := range missing {
		b := idx.Blobs[h]
		src.Add(repoOf[h], v1.Descriptor{Digest: h, Size: b.Size, MediaType: b.MediaType}, users[h], b.DiffID != nil || b.MediaType.IsLayer())
	}
	src.Close()

	var w io.Writer = opts.Stdout
	if out != nil {
		w = out
	}
	werr := tarball.Write(ctx, w, layout, src, tarball.WriteOptions{ModTime: mtime, Progress: opts.Progress.Written})
	cancel()
	src.Wait()
	if werr != nil {
		var be *tarball.BlobError
		if errors.As(werr, &be) {
			// The cache held a damaged blob: drop it so the next run fetches it again.
			_ = cache.Remove(be.Digest)
			return nil, fmt.Errorf("image %s: %w (removed from the cache; run again to fetch it)", users[be.Digest], werr)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // interrupted
		}
		// The write failed (a full disk): downloads were only cancelled
		// because of it.
		if fo, ok := out.(failingOutput); ok && fo.writeErr() != nil {
			return nil, fmt.Errorf("writing %s: %w", opts.Output, fo.writeErr())
		}
		// A failed download (it names the image and blob).
		if derr := src.FirstErr(); derr != nil {
			return nil, derr
		}
		return nil, fmt.Errorf("writing %s: %w", opts.Output, werr)
	}
	if out != nil {
		if result.SHA256, result.FileBytes, err = out.commit(); err != nil {
			return nil, err
		}
		result.Volumes = outputVolumes(out)
	}
	have.summarize(result, idx)
	if opts.Lock != "" {
		if err := manifests.WriteLock(opts.Lock, makeLock(spec, res)); err != nil {
			return nil, fmt.Errorf("writing lockfile: %w", err)
		}
	}
	for _, r := range res {
		var plats []string
		for _, m := range r.Image.Manifests {
			plats = append(plats, m.Platform)
		}
		result.Images = append(result.Images, ImageSummary{Ref: r.Image.Ref, Digest: r.Image.Digest.String(), MediaType: string(r.Image.MediaType), Platforms: plats})
	}
	result.BlobsDownloaded = result.Blobs - result.BlobsFromCache
	result.LayersDownloaded = src.Layers()
	result.BytesDownloaded = downloaded.Load()
	result.Retries = client.Retries()
	result.Seconds = time.Since(start).Seconds()
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
