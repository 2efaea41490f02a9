package load

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Chosen is one reference of the bundle, chosen for loading.
type Chosen struct {
	// Entry is the reference's entry in bundle.json, with Manifests cut
	// down to the platform manifests selected.
	tarball.Image
	// Name is Ref parsed.
	Name name.Reference
	// IndexManifests is how many manifests the index lists (0 for a single
	// manifest). Complete is true when every one of them is selected (and
	// so carried): only then can a registry take the index itself.
	IndexManifests int
	Complete       bool
	// Primary is the manifest that a docker daemon gets, and that a
	// registry tags when it cannot take the index: the first selected
	// manifest of the first --platform that has one, else the one the
	// bundle's manifest.json gives docker, else the first selected.
	Primary tarball.PlatformManifest
}

// Tagged reports whether the reference has a tag (not a digest only).
func (im Chosen) Tagged() bool {
	_, ok := im.Name.(name.Tag)
	return ok
}

// Platforms lists the selected manifests' platforms.
func (im Chosen) Platforms() []string {
	var out []string
	for _, m := range im.Manifests {
		out = append(out, m.Platform)
	}
	return out
}

// Blobs returns the layers and configs of the selected manifests, each
// once, layers first.
func (im Chosen) Blobs() []v1.Hash {
	seen := map[v1.Hash]bool{}
	var layers, configs []v1.Hash
	for _, m := range im.Manifests {
		for _, l := range m.Layers {
			if !seen[l] {
				seen[l] = true
				layers = append(layers, l)
			}
		}
		if !seen[m.Config] {
			seen[m.Config] = true
			configs = append(configs, m.Config)
		}
	}
	return append(layers, configs...)
}

// Selection says what to load of a bundle.
type Selection struct {
	// Images are references to load (as bundle.json names them, or any
	// spelling that normalizes to it: "debian:bookworm"); empty means all.
	Images []string
	// Platforms are the platform manifests to load ("linux/arm64" matches
	// linux/arm64/v8); empty means every one the bundle carries.
	Platforms []string
}

// NotInBundleError says a reference asked for is not in the bundle.
type NotInBundleError struct {
	Refs []string // as asked for
	Have []string // what the bundle holds
}

func (e *NotInBundleError) Error() string {
	const shown = 20
	have := strings.Join(e.Have[:min(len(e.Have), shown)], ", ")
	if len(e.Have) > shown {
		have += fmt.Sprintf(" and %d more: 'bundle list' shows them all", len(e.Have)-shown)
	}
	return fmt.Sprintf("not in the bundle: %s (it holds %s)", strings.Join(e.Refs, ", "), have)
}

// SelectionError is an --image or --platform that does not parse.
type SelectionError struct {
	Flag  string // "--image" or "--platform"
	Value string
	Err   error
}

func (e *SelectionError) Error() string { return fmt.Sprintf("%s %q: %v", e.Flag, e.Value, e.Err) }
func (e *SelectionError) Unwrap() error { return e.Err }

// Select chooses the images and platform manifests to load. Images with
// none of the platforms asked for are left out, with a note saying so.
func Select(b *Bundle, sel Selection) ([]Chosen, []string, error) {
	want := map[string]bool{}
	var asked []string
	for _, s := range sel.Images {
		r, err := manifests.ParseReference(s)
		if err != nil {
			return nil, nil, &SelectionError{Flag: "--image", Value: s, Err: err}
		}
		full := manifests.FullName(r)
		want[full] = true
		asked = append(asked, s)
	}
	var plats []*v1.Platform
	for _, p := range sel.Platforms {
		if err := manifests.CheckTypedPlatform(p); err != nil {
			return nil, nil, &SelectionError{Flag: "--platform", Value: p, Err: err}
		}
		pp, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, nil, &SelectionError{Flag: "--platform", Value: p, Err: err}
		}
		plats = append(plats, pp)
	}

	var out []Chosen
	var notes []string
	found := map[string]bool{}
	for _, entry := range b.Index.Images {
		if len(want) > 0 && !want[entry.Ref] {
			continue
		}
		found[entry.Ref] = true
		ref, err := manifests.ParseReference(entry.Ref)
		if err != nil {
			return nil, nil, fmt.Errorf("bundle.json: %w", err)
		}
		im := Chosen{Image: entry, Name: ref}
		im.Manifests = nil
		primary := -1
		for pi, p := range plats {
			for _, m := range entry.Manifests {
				if matches(m.Platform, p) && !slices.ContainsFunc(im.Manifests, func(x tarball.PlatformManifest) bool { return x.Digest == m.Digest }) {
					im.Manifests = append(im.Manifests, m)
					if primary < 0 && pi == 0 {
						primary = len(im.Manifests) - 1
					}
				}
			}
		}
		if len(plats) == 0 {
			im.Manifests = append(im.Manifests, entry.Manifests...)
		}
		if len(im.Manifests) == 0 {
			var have []string
			for _, m := range entry.Manifests {
				have = append(have, m.Platform)
			}
			notes = append(notes, fmt.Sprintf("%s: not loaded: it has no manifest for %s (the bundle carries %s)",
				entry.Ref, strings.Join(sel.Platforms, ", "), strings.Join(have, ", ")))
			continue
		}
		switch {
		case primary >= 0:
			im.Primary = im.Manifests[primary]
		case len(plats) > 0:
			im.Primary = im.Manifests[0]
		default:
			im.Primary = dockerChoice(b, im)
		}
		if entry.MediaType.IsIndex() {
			data, err := b.ReadBlob(entry.Digest, tarball.MaxManifestSize)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: reading its index: %w", entry.Ref, err)
			}
			var ix v1.IndexManifest
			if err := json.Unmarshal(data, &ix); err != nil {
				return nil, nil, fmt.Errorf("%s: parsing its index %s: %w", entry.Ref, entry.Digest, err)
			}
			im.IndexManifests = len(ix.Manifests)
			im.Complete = true
			for _, d := range ix.Manifests {
				if !slices.ContainsFunc(im.Manifests, func(x tarball.PlatformManifest) bool { return x.Digest == d.Digest }) {
					im.Complete = false
				}
			}
		} else {
			im.Complete = true
		}
		out = append(out, im)
	}
	var missing []string
	for _, s := range asked {
		r, _ := manifests.ParseReference(s)
		if !found[manifests.FullName(r)] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		var have []string
		for _, entry := range b.Index.Images {
			have = append(have, entry.Ref)
		}
		return nil, nil, &NotInBundleError{Refs: missing, Have: have}
	}
	return out, notes, nil
}

// matches reports whether a manifest's platform is selected by the one
// asked for (manifests.MatchPlatform).
func matches(have string, want *v1.Platform) bool {
	h, err := v1.ParsePlatform(have)
	return err == nil && manifests.MatchPlatform(*want, *h)
}

// dockerChoice returns the manifest that the bundle's manifest.json gives
// docker for the image, or its first selected manifest.
func dockerChoice(b *Bundle, im Chosen) tarball.PlatformManifest {
	familiar := manifests.FamiliarName(im.Name)
	for _, e := range b.DockerManifest {
		if im.Tagged() && !slices.Contains(e.RepoTags, familiar) {
			continue
		}
		for _, m := range im.Manifests {
			if e.Config == tarball.BlobPath(m.Config) {
				return m
			}
		}
	}
	return im.Manifests[0]
}
