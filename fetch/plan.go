package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// Source is one entry of images.yaml made concrete: one reference to
// fetch.
type Source struct {
	Ref       name.Reference // as the bundle names it
	From      name.Reference // where it is fetched (a mirror, or Ref)
	Platforms []string
	Pos       manifests.Pos
	Locked    v1.Hash // digest to fetch under --locked
}

// Resolved is a source with its manifests and configs in the cache.
type Resolved struct {
	Source
	Top   *Manifest
	Image tarball.Image
	Blobs map[v1.Hash]tarball.Blob
}

// HostPlatform is this machine's platform, the default when none is given.
func HostPlatform() string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		p = "linux/" + runtime.GOARCH
	}
	return p
}

// Expand turns the manifest file's entries into concrete references.
func Expand(ctx context.Context, client *Client, spec *manifests.Spec, lock *manifests.Lock) ([]Source, error) {
	var out []Source
	seen := map[string]bool{}
	add := func(e manifests.Entry, ref name.Reference) error {
		full := manifests.FullName(ref)
		if seen[full] {
			return nil // a regex matched a tag listed elsewhere too
		}
		seen[full] = true
		t := Source{Ref: ref, From: ref, Platforms: spec.PlatformsFor(e), Pos: e.Pos}
		if len(t.Platforms) == 0 {
			t.Platforms = []string{HostPlatform()}
		}
		if m, ok := spec.MirrorFor(ref.Context()); ok {
			switch r := ref.(type) {
			case name.Tag:
				t.From = m.Tag(r.TagStr())
			case name.Digest:
				t.From = m.Digest(r.DigestStr())
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
			t.Locked = h
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
func matchingTags(ctx context.Context, client *Client, spec *manifests.Spec, e manifests.Entry, lock *manifests.Lock) ([]string, error) {
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

// ResolveAll resolves every source, jobs at a time, keeping their order,
// and calls each (when not nil) with every one as soon as it is resolved.
func ResolveAll(ctx context.Context, client *Client, sources []Source, jobs int, each func(*Resolved)) ([]*Resolved, error) {
	res := make([]*Resolved, len(sources))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, t := range sources {
		g.Go(func() error {
			r, err := resolve(gctx, client, t)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("image %s (%s): %w", manifests.FullName(t.Ref), t.Pos, err)
			}
			res[i] = r
			if each != nil {
				each(r)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

// manifestByDigest gets a manifest by digest, from the cache when it is there.
func manifestByDigest(ctx context.Context, client *Client, repo name.Repository, d v1.Hash) (*Manifest, error) {
	if m, ok := client.ManifestFromCache(d); ok {
		return m, nil
	}
	return client.GetManifest(ctx, repo.Digest(d.String()))
}

func resolve(ctx context.Context, client *Client, t Source) (*Resolved, error) {
	var top *Manifest
	var err error
	repo := t.From.Context()
	switch {
	case t.Locked != (v1.Hash{}):
		if _, isTag := t.From.(name.Tag); isTag {
			d, err := client.Head(ctx, t.From)
			if err != nil {
				return nil, err
			}
			if d.Digest != t.Locked {
				return nil, fmt.Errorf("tag moved: the lockfile has %s, the registry now serves %s (run without --locked to update the lock)", t.Locked, d.Digest)
			}
		}
		top, err = manifestByDigest(ctx, client, repo, t.Locked)
	case isDigest(t.From):
		top, err = manifestByDigest(ctx, client, repo, mustHash(t.From.Identifier()))
	default:
		top, err = client.GetManifest(ctx, t.From)
		if tag, ok := t.From.(name.Tag); ok && err != nil {
			err = tagNotFound(ctx, client, tag, err)
		}
	}
	if err != nil {
		return nil, err
	}
	r := &Resolved{Source: t, Top: top, Blobs: map[v1.Hash]tarball.Blob{}}
	r.Image = tarball.Image{
		Ref:       manifests.FullName(t.Ref),
		Digest:    top.Descriptor.Digest,
		MediaType: top.Descriptor.MediaType,
		Size:      top.Descriptor.Size,
	}
	if manifests.FullName(t.From) != r.Image.Ref {
		r.Image.FetchedFrom = manifests.FullName(t.From)
	}
	r.Blobs[top.Descriptor.Digest] = tarball.Blob{Size: top.Descriptor.Size, MediaType: top.Descriptor.MediaType}

	if !top.IsIndex() {
		pm, err := imageManifest(ctx, client, repo, top, nil, r.Blobs)
		if err != nil {
			return nil, err
		}
		// manifest.json lists it: docker load needs every layer a
		// filesystem tar (an in-toto statement is one only in an index).
		for _, l := range pm.Layers {
			if mt := r.Blobs[l].MediaType; !mt.IsLayer() {
				return nil, fmt.Errorf("manifest %s has layer %s of media type %s, not a filesystem layer: not an image docker can load", top.Descriptor.Digest, l, mt)
			}
		}
		// A config that names no platform cannot be checked: keep it.
		if pm.Platform != "" && !manifests.IsAllPlatforms(t.Platforms) && !platformWanted(pm.Platform, t.Platforms) {
			return nil, fmt.Errorf("the image is %s only; asked for %s", pm.Platform, strings.Join(t.Platforms, ", "))
		}
		r.Image.Manifests = []tarball.PlatformManifest{*pm}
		return r, nil
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(top.Raw)))
	if err != nil {
		return nil, fmt.Errorf("parsing index %s: %w", top.Descriptor.Digest, err)
	}
	children, err := SelectManifests(idx, t.Platforms)
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
		pm, err := imageManifest(ctx, client, repo, m, cd.Platform, r.Blobs)
		if err != nil {
			return nil, err
		}
		r.Image.Manifests = append(r.Image.Manifests, *pm)
	}
	return r, nil
}

// tagNotFound adds to a 404 for a tag the tags the repository has that
// are nearest to it (at most 5), and that a name without a tag means
// :latest. Other errors, and a repository whose tags cannot be listed,
// are left as they are.
func tagNotFound(ctx context.Context, client *Client, tag name.Tag, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusNotFound {
		return err
	}
	all, lerr := client.ListTags(ctx, tag.Context())
	if lerr != nil {
		return err
	}
	msg := err.Error()
	if len(all) == 0 {
		msg += "; the repository has no tags"
	} else {
		near := slices.Clone(all)
		want := tag.TagStr()
		slices.SortStableFunc(near, func(a, b string) int { return manifests.EditDistance(want, a) - manifests.EditDistance(want, b) })
		shown := near[:min(len(near), 5)]
		msg += "; the repository has " + strings.Join(shown, ", ")
		if len(near) > len(shown) {
			msg += fmt.Sprintf(" and %d more", len(near)-len(shown))
		}
	}
	if tag.TagStr() == name.DefaultTag {
		msg += " (a name without a tag means :latest)"
	}
	return &registryError{msg: msg, err: err}
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
func imageManifest(ctx context.Context, client *Client, repo name.Repository, m *Manifest, plat *v1.Platform, blobs map[v1.Hash]tarball.Blob) (*tarball.PlatformManifest, error) {
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
		pm.Platform = PlatformString(plat)
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
