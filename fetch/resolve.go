package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Manifest is a manifest or index as the registry served it.
type Manifest struct {
	Descriptor v1.Descriptor // digest, size and media type of Raw
	Raw        []byte
}

// IsIndex says whether m is an image index (a multi-platform image).
func (m *Manifest) IsIndex() bool { return m.Descriptor.MediaType.IsIndex() }

// GetManifest fetches what ref names (by tag or digest) and stores it in
// the cache. The digest is computed from the bytes received; for a digest
// reference it must equal that digest.
func (c *Client) GetManifest(ctx context.Context, ref name.Reference) (*Manifest, error) {
	repo := ref.Context()
	opts, err := c.remoteOptions(ctx, repo)
	if err != nil {
		return nil, err
	}
	d, err := remote.Get(c.reference(ref), opts...)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest of %s: %w", ref, describe(err))
	}
	if len(d.Manifest) > tarball.MaxManifestSize {
		return nil, fmt.Errorf("fetching manifest of %s: %d bytes, over the %d-byte limit", ref, len(d.Manifest), tarball.MaxManifestSize)
	}
	if dg, ok := ref.(name.Digest); ok && dg.DigestStr() != d.Digest.String() {
		return nil, fmt.Errorf("fetching manifest of %s: registry served %s", ref, d.Digest)
	}
	// The manifest's own mediaType, part of the digested bytes, is what
	// clients (docker, containerd, our verify) check; a Content-Type header
	// saying otherwise is the registry's mistake. The header counts only
	// when the body names none.
	mt := d.MediaType
	if own := ownMediaType(d.Manifest); own != "" {
		mt = own
	}
	if !mt.IsIndex() && !mt.IsImage() {
		return nil, fmt.Errorf("fetching manifest of %s: unsupported media type %q", ref, mt)
	}
	if !c.cache.Has(d.Digest, int64(len(d.Manifest))) {
		if err := c.cache.Put(d.Digest, d.Manifest); err != nil {
			return nil, fmt.Errorf("caching manifest of %s: %w", ref, err)
		}
		c.markStored(d.Digest)
	}
	return &Manifest{
		Descriptor: v1.Descriptor{MediaType: mt, Digest: d.Digest, Size: int64(len(d.Manifest))},
		Raw:        d.Manifest,
	}, nil
}

// ManifestFromCache reads a manifest by digest from the cache, when there.
func (c *Client) ManifestFromCache(d v1.Hash) (*Manifest, bool) {
	f, err := c.cache.Open(d)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, tarball.MaxManifestSize+1))
	if err != nil || len(raw) > tarball.MaxManifestSize {
		return nil, false
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil || h != d {
		_ = c.cache.Remove(d)
		return nil, false
	}
	mt := ownMediaType(raw)
	if !mt.IsIndex() && !mt.IsImage() {
		return nil, false
	}
	return &Manifest{Descriptor: v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}, Raw: raw}, true
}

// ownMediaType is the mediaType a manifest or index names itself, or ""
// when it names none (or is not JSON).
func ownMediaType(raw []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if json.Unmarshal(raw, &probe) != nil {
		return ""
	}
	return probe.MediaType
}

// Head asks the registry which digest ref names now, without the body.
func (c *Client) Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	opts, err := c.remoteOptions(ctx, ref.Context())
	if err != nil {
		return nil, err
	}
	d, err := remote.Head(c.reference(ref), opts...)
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", ref, describe(err))
	}
	return d, nil
}

// ListTags lists the tags of repo.
func (c *Client) ListTags(ctx context.Context, repo name.Repository) ([]string, error) {
	opts, err := c.remoteOptions(ctx, repo)
	if err != nil {
		return nil, err
	}
	tags, err := ListTags(ctx, c.repository(repo), opts...)
	if err != nil {
		return nil, fmt.Errorf("listing tags of %s: %w", repo, describe(err))
	}
	sort.Strings(tags)
	return tags, nil
}

// reference applies the Insecure option to ref when its registry is listed.
func (c *Client) reference(ref name.Reference) name.Reference {
	repo := c.repository(ref.Context())
	switch r := ref.(type) {
	case name.Tag:
		return repo.Tag(r.TagStr())
	case name.Digest:
		return repo.Digest(r.DigestStr())
	}
	return ref
}

// ReadConfig reads and parses an image config from the cache.
func (c *Client) ReadConfig(d v1.Hash) (*v1.ConfigFile, error) {
	f, err := c.cache.Open(d)
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", d, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, tarball.MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", d, err)
	}
	if len(raw) > tarball.MaxConfigSize {
		return nil, fmt.Errorf("config %s is over %d bytes (docker load refuses it)", d, tarball.MaxConfigSize)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing config %s: %w", d, err)
	}
	return cfg, nil
}

// PlatformString formats a platform as os/arch[/variant].
func PlatformString(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// SelectManifests picks the children of an index for the platforms asked
// for ("os/arch[/variant]"; manifests.AllPlatforms keeps every child). A platform without a
// variant matches any variant (linux/arm64 matches linux/arm64/v8). Each
// platform asked for must match at least one child. Children are returned
// in the index's order, each digest once: an index may list one manifest
// twice (as linux/amd64/v2 and as linux/amd64), and the descriptor
// returned for it then carries the platform every entry of it satisfies
// (linux/amd64).
func SelectManifests(idx *v1.IndexManifest, platforms []string) ([]v1.Descriptor, error) {
	sel, err := selectManifests(idx, platforms)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Descriptor, 0, len(sel))
	seen := map[v1.Hash]bool{}
	for _, d := range sel {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		var entries []v1.Descriptor
		for _, e := range idx.Manifests {
			if e.Digest == d.Digest {
				entries = append(entries, e)
			}
		}
		if len(entries) > 1 {
			p, err := commonPlatform(entries)
			if err != nil {
				return nil, err
			}
			d.Platform = p
		}
		out = append(out, d)
	}
	return out, nil
}

// commonPlatform is the most specific platform that the platform of every
// one of entries (one manifest listed several times) satisfies: variant,
// OS version and features are dropped where the entries differ. Entries
// naming different OSes or architectures for one manifest contradict each
// other. Entries without a platform say nothing.
func commonPlatform(entries []v1.Descriptor) (*v1.Platform, error) {
	var p *v1.Platform
	for _, e := range entries {
		if e.MediaType != entries[0].MediaType || e.Size != entries[0].Size {
			return nil, fmt.Errorf("the index lists manifest %s twice, with different media types or sizes", e.Digest)
		}
		if e.Platform == nil {
			continue
		}
		if p == nil {
			c := *e.Platform
			p = &c
			continue
		}
		if e.Platform.OS != p.OS || e.Platform.Architecture != p.Architecture {
			return nil, fmt.Errorf("the index lists manifest %s both as %s and as %s", e.Digest, PlatformString(p), PlatformString(e.Platform))
		}
		if e.Platform.Variant != p.Variant {
			p.Variant = ""
		}
		if e.Platform.OSVersion != p.OSVersion {
			p.OSVersion = ""
		}
		if !slices.Equal(e.Platform.OSFeatures, p.OSFeatures) {
			p.OSFeatures = nil
		}
		if !slices.Equal(e.Platform.Features, p.Features) {
			p.Features = nil
		}
	}
	return p, nil
}

func selectManifests(idx *v1.IndexManifest, platforms []string) ([]v1.Descriptor, error) {
	var out []v1.Descriptor
	if manifests.IsAllPlatforms(platforms) {
		for _, d := range idx.Manifests {
			if d.MediaType.IsIndex() {
				return nil, fmt.Errorf("nested index %s is not supported", d.Digest)
			}
			out = append(out, d)
		}
		return out, nil
	}
	keep := make([]bool, len(idx.Manifests))
	var missing []string
	for _, ps := range platforms {
		want, err := v1.ParsePlatform(ps)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", ps, err)
		}
		found := false
		for i, d := range idx.Manifests {
			if d.Platform == nil || !d.MediaType.IsImage() {
				continue
			}
			if manifests.MatchPlatform(*want, *d.Platform) {
				keep[i] = true
				found = true
				break // the first match, as docker pull does
			}
		}
		if !found {
			missing = append(missing, ps)
		}
	}
	if len(missing) > 0 {
		var have []string
		for _, d := range idx.Manifests {
			if d.Platform != nil && d.MediaType.IsImage() && d.Platform.OS != "unknown" {
				have = append(have, PlatformString(d.Platform))
			}
		}
		return nil, fmt.Errorf("no manifest for platform %s (the index has: %s)", strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	for i, d := range idx.Manifests {
		if keep[i] {
			out = append(out, d)
		}
	}
	return out, nil
}
