package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
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

// target is one concrete reference to fetch.
type target struct {
	ref       name.Reference // as the bundle names it
	from      name.Reference // where it is fetched (a mirror, or ref)
	platforms []string
	pos       manifests.Pos
	locked    v1.Hash // digest to fetch under --locked
}

// resolved is a target with its manifests and configs in the cache.
type resolved struct {
	target
	top   *fetch.Manifest
	image tarball.Image
	blobs map[v1.Hash]tarball.Blob
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

	targets, err := expand(ctx, client, spec, lock)
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
	var early func(*resolved)
	if have == nil && opts.NoSpaceCheck {
		early = func(r *resolved) {
			for _, pm := range r.image.Manifests {
				for _, h := range pm.Layers {
					if b, ok := r.blobs[h]; ok && !cache.Has(h, b.Size) {
						src.Add(r.from.Context(), v1.Descriptor{Digest: h, Size: b.Size, MediaType: b.MediaType}, r.image.Ref, true)
					}
				}
			}
		}
	}
	res, err := resolveAll(ctx, client, targets, opts, early)
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
		idx.Images = append(idx.Images, r.image)
		for h, b := range r.blobs {
			idx.Blobs[h] = b
			if _, ok := users[h]; !ok {
				users[h] = r.image.Ref
			}
		}
	}
	dockerPlatform := opts.DockerPlatform
	if dockerPlatform == "" && len(spec.Platforms) > 0 && spec.Platforms[0] != manifests.AllPlatforms {
		dockerPlatform = spec.Platforms[0]
	}
	if dockerPlatform == "" {
		dockerPlatform = HostPlatform()
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
		for h := range r.blobs {
			if _, ok := repoOf[h]; !ok {
				repoOf[h] = r.from.Context()
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
		for _, m := range r.image.Manifests {
			plats = append(plats, m.Platform)
		}
		result.Images = append(result.Images, ImageSummary{Ref: r.image.Ref, Digest: r.image.Digest.String(), MediaType: string(r.image.MediaType), Platforms: plats})
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

// HostPlatform is this machine's platform, the default when none is given.
func HostPlatform() string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		p = "linux/" + runtime.GOARCH
	}
	return p
}

type countingProgress struct {
	Progress
	n *atomic.Int64
}

func (c countingProgress) Downloaded(n int64) {
	c.n.Add(n)
	c.Progress.Downloaded(n)
}

// expand turns the manifest file's entries into concrete references.
func expand(ctx context.Context, client *fetch.Client, spec *manifests.Spec, lock *manifests.Lock) ([]target, error) {
	var out []target
	seen := map[string]bool{}
	add := func(e manifests.Entry, ref name.Reference) error {
		full := manifests.FullName(ref)
		if seen[full] {
			return nil // a regex matched a tag listed elsewhere too
		}
		seen[full] = true
		t := target{ref: ref, from: ref, platforms: spec.PlatformsFor(e), pos: e.Pos}
		if len(t.platforms) == 0 {
			t.platforms = []string{HostPlatform()}
		}
		if m, ok := spec.MirrorFor(ref.Context()); ok {
			switch r := ref.(type) {
			case name.Tag:
				t.from = m.Tag(r.TagStr())
			case name.Digest:
				t.from = m.Digest(r.DigestStr())
			}
		}
		if lock != nil {
			d, ok := lock.Lookup(full)
			if !ok {
				return fmt.Errorf("%s: %s is not in the lockfile (run without --locked to resolve it)", e.Pos, full)
			}
			h, err := v1.NewHash(d)
			if err != nil {
				return fmt.Errorf("lockfile: %s: %w", full, err)
			}
			t.locked = h
		}
		out = append(out, t)
		return nil
	}
	for _, e := range spec.Images {
		switch {
		case e.Digest != "":
			if err := add(e, e.Repository.Digest(e.Digest)); err != nil {
				return nil, err
			}
		case e.TagRegex != nil:
			tags, err := matchingTags(ctx, client, spec, e, lock)
			if err != nil {
				return nil, err
			}
			for _, tag := range tags {
				if err := add(e, e.Repository.Tag(tag)); err != nil {
					return nil, err
				}
			}
		}
		for _, tag := range e.Tags {
			if err := add(e, e.Repository.Tag(tag)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// matchingTags lists the repository's tags that the entry's regex matches;
// under --locked, the tags the lockfile holds for it instead.
func matchingTags(ctx context.Context, client *fetch.Client, spec *manifests.Spec, e manifests.Entry, lock *manifests.Lock) ([]string, error) {
	var all []string
	if lock != nil {
		prefix := manifests.FullRepo(e.Repository) + ":"
		for _, li := range lock.Images {
			if t, ok := strings.CutPrefix(li.Ref, prefix); ok && !strings.Contains(t, "@") {
				all = append(all, t)
			}
		}
	} else {
		repo := e.Repository
		if m, ok := spec.MirrorFor(repo); ok {
			repo = m
		}
		var err error
		if all, err = client.ListTags(ctx, repo); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Pos, err)
		}
	}
	tags := filterTags(all, e.TagRegex)
	if len(tags) == 0 {
		return nil, fmt.Errorf("%s: no tag of %s matches %q", e.Pos, manifests.FullRepo(e.Repository), e.TagRegex)
	}
	return tags, nil
}

func filterTags(all []string, re *regexp.Regexp) []string {
	var out []string
	for _, t := range all {
		if re.MatchString(t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// resolveAll resolves every target, Jobs at a time, keeping their order,
// and calls early (when not nil) with each as soon as it is resolved.
func resolveAll(ctx context.Context, client *fetch.Client, targets []target, opts CreateOptions, early func(*resolved)) ([]*resolved, error) {
	res := make([]*resolved, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for i, t := range targets {
		g.Go(func() error {
			r, err := resolve(gctx, client, t)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("image %s (%s): %w", manifests.FullName(t.ref), t.pos, err)
			}
			res[i] = r
			if early != nil {
				early(r)
			}
			plats := make([]string, 0, len(r.image.Manifests))
			for _, m := range r.image.Manifests {
				plats = append(plats, m.Platform)
			}
			opts.Progress.Resolved(r.image.Ref, r.image.Digest, plats)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

// manifest gets a manifest by digest, from the cache when it is there.
func manifestByDigest(ctx context.Context, client *fetch.Client, repo name.Repository, d v1.Hash) (*fetch.Manifest, error) {
	if m, ok := client.ManifestFromCache(d); ok {
		return m, nil
	}
	return client.GetManifest(ctx, repo.Digest(d.String()))
}

func resolve(ctx context.Context, client *fetch.Client, t target) (*resolved, error) {
	var top *fetch.Manifest
	var err error
	repo := t.from.Context()
	switch {
	case t.locked != (v1.Hash{}):
		if _, isTag := t.from.(name.Tag); isTag {
			d, err := client.Head(ctx, t.from)
			if err != nil {
				return nil, err
			}
			if d.Digest != t.locked {
				return nil, fmt.Errorf("tag moved: the lockfile has %s, the registry now serves %s (run without --locked to update the lock)", t.locked, d.Digest)
			}
		}
		top, err = manifestByDigest(ctx, client, repo, t.locked)
	case isDigest(t.from):
		top, err = manifestByDigest(ctx, client, repo, mustHash(t.from.Identifier()))
	default:
		top, err = client.GetManifest(ctx, t.from)
	}
	if err != nil {
		return nil, err
	}
	r := &resolved{target: t, top: top, blobs: map[v1.Hash]tarball.Blob{}}
	r.image = tarball.Image{
		Ref:       manifests.FullName(t.ref),
		Digest:    top.Descriptor.Digest,
		MediaType: top.Descriptor.MediaType,
		Size:      top.Descriptor.Size,
	}
	if manifests.FullName(t.from) != r.image.Ref {
		r.image.FetchedFrom = manifests.FullName(t.from)
	}
	r.blobs[top.Descriptor.Digest] = tarball.Blob{Size: top.Descriptor.Size, MediaType: top.Descriptor.MediaType}

	if !top.IsIndex() {
		pm, err := imageManifest(ctx, client, repo, top, nil, r.blobs)
		if err != nil {
			return nil, err
		}
		// manifest.json lists it: docker load needs every layer a
		// filesystem tar (an in-toto statement is one only in an index).
		for _, l := range pm.Layers {
			if mt := r.blobs[l].MediaType; !mt.IsLayer() {
				return nil, fmt.Errorf("manifest %s has layer %s of media type %s, not a filesystem layer: not an image docker can load", top.Descriptor.Digest, l, mt)
			}
		}
		// A config that names no platform cannot be checked: keep it.
		if pm.Platform != "" && !manifests.IsAllPlatforms(t.platforms) && !platformWanted(pm.Platform, t.platforms) {
			return nil, fmt.Errorf("the image is %s only; asked for %s", pm.Platform, strings.Join(t.platforms, ", "))
		}
		r.image.Manifests = []tarball.PlatformManifest{*pm}
		return r, nil
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(top.Raw)))
	if err != nil {
		return nil, fmt.Errorf("parsing index %s: %w", top.Descriptor.Digest, err)
	}
	children, err := fetch.SelectManifests(idx, t.platforms)
	if err != nil {
		return nil, err
	}
	for _, cd := range children {
		m, err := manifestByDigest(ctx, client, repo, cd.Digest)
		if err != nil {
			return nil, err
		}
		if m.Descriptor.Size != cd.Size {
			return nil, fmt.Errorf("manifest %s: index says %d bytes, registry served %d", cd.Digest, cd.Size, m.Descriptor.Size)
		}
		if cd.MediaType != "" && cd.MediaType != m.Descriptor.MediaType {
			return nil, fmt.Errorf("manifest %s: index %s gives media type %s, the manifest's own is %s", cd.Digest, top.Descriptor.Digest, cd.MediaType, m.Descriptor.MediaType)
		}
		pm, err := imageManifest(ctx, client, repo, m, cd.Platform, r.blobs)
		if err != nil {
			return nil, err
		}
		r.image.Manifests = append(r.image.Manifests, *pm)
	}
	return r, nil
}

func isDigest(r name.Reference) bool { _, ok := r.(name.Digest); return ok }

func mustHash(s string) v1.Hash {
	h, _ := v1.NewHash(s)
	return h
}

func platformWanted(p string, wanted []string) bool {
	have, err := v1.ParsePlatform(p)
	if err != nil {
		return false
	}
	for _, w := range wanted {
		if wp, err := v1.ParsePlatform(w); err == nil && manifests.MatchPlatform(*wp, *have) {
			return true
		}
	}
	return false
}

// imageManifest parses an image manifest, fetches its config into the
// cache, and records the manifest, config and layers in blobs.
func imageManifest(ctx context.Context, client *fetch.Client, repo name.Repository, m *fetch.Manifest, plat *v1.Platform, blobs map[v1.Hash]tarball.Blob) (*tarball.PlatformManifest, error) {
	mf, err := v1.ParseManifest(strings.NewReader(string(m.Raw)))
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", m.Descriptor.Digest, err)
	}
	// Only images: docker load of the whole bundle fails on one artifact
	// (a Helm chart: "invalid image JSON, no RootFS key"), and verify
	// cannot check what it does not know. An attestation manifest in an
	// index has an image config, and is kept.
	if !mf.Config.MediaType.IsConfig() {
		what := "config media type " + string(mf.Config.MediaType)
		if mf.ArtifactType != "" {
			what = "artifactType " + mf.ArtifactType + ", " + what
		}
		return nil, fmt.Errorf("manifest %s is an OCI artifact (%s), not an image: bundle carries only container images", m.Descriptor.Digest, what)
	}
	if mf.Config.Size > tarball.MaxConfigSize {
		return nil, fmt.Errorf("config %s is %d bytes, over docker's %d-byte limit", mf.Config.Digest, mf.Config.Size, tarball.MaxConfigSize)
	}
	if _, err := client.FetchBlob(ctx, repo, mf.Config); err != nil {
		return nil, fmt.Errorf("config: %w", err) // err names the blob
	}
	pm := &tarball.PlatformManifest{
		Digest:    m.Descriptor.Digest,
		MediaType: m.Descriptor.MediaType,
		Size:      m.Descriptor.Size,
		Config:    mf.Config.Digest,
	}
	blobs[m.Descriptor.Digest] = tarball.Blob{Size: m.Descriptor.Size, MediaType: m.Descriptor.MediaType}
	blobs[mf.Config.Digest] = tarball.Blob{Size: mf.Config.Size, MediaType: mf.Config.MediaType}

	var diffIDs []v1.Hash
	cfg, err := client.ReadConfig(mf.Config.Digest)
	if err == nil {
		diffIDs = cfg.RootFS.DiffIDs
		if plat == nil && cfg.OS != "" && cfg.Architecture != "" {
			plat = &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		}
	} else if mf.Config.MediaType.IsConfig() {
		return nil, err
	}
	if plat != nil {
		pm.Platform = fetch.PlatformString(plat)
	}
	// Only an image whose layers are all filesystem tars has one diff_id per
	// layer; an attestation manifest (in-toto layers) need not.
	tars := true
	for _, l := range mf.Layers {
		tars = tars && l.MediaType.IsLayer()
	}
	if !tars {
		diffIDs = nil
	}
	if tars && mf.Config.MediaType.IsConfig() && len(diffIDs) != len(mf.Layers) {
		return nil, fmt.Errorf("manifest %s has %d layers but its config lists %d diff_ids", m.Descriptor.Digest, len(mf.Layers), len(diffIDs))
	}
	for i, l := range mf.Layers {
		if !l.MediaType.IsDistributable() {
			return nil, fmt.Errorf("layer %s is non-distributable (%s); bundle does not carry foreign layers", l.Digest, l.MediaType)
		}
		b := tarball.Blob{Size: l.Size, MediaType: l.MediaType}
		if i < len(diffIDs) {
			d := diffIDs[i]
			b.DiffID = &d
		}
		blobs[l.Digest] = b
		pm.Layers = append(pm.Layers, l.Digest)
	}
	return pm, nil
}

func makeLock(spec *manifests.Spec, res []*resolved) *manifests.Lock {
	l := &manifests.Lock{Version: 1, Source: &manifests.LockSource{File: filepath.Base(spec.File), SHA256: spec.SHA256}}
	for _, r := range res {
		li := manifests.LockedImage{Ref: r.image.Ref, Digest: r.image.Digest.String()}
		if !(len(r.platforms) == 1 && r.platforms[0] == HostPlatform() && len(spec.PlatformsFor(manifests.Entry{})) == 0) {
			li.Platforms = r.platforms
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
