package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/bundle-tool/bundle/internal/safefs"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// OutputOptions say how Create writes the file.
type OutputOptions struct {
	// VolumeSize, when set, splits the bundle into volumes Output.001,
	// Output.002, … of this many bytes each (the last one smaller), with
	// one line per volume in Output.sha256.
	VolumeSize int64
	// Gzip compresses the bundle (pgzip, one gzip stream): docker load and
	// every bundle command read it as it is.
	Gzip bool
}

// DeltaOptions make Create write a delta bundle: every manifest, index
// and config, and only the layers the offline side lacks; bundle.json
// lists the layers left out under "external".
type DeltaOptions struct {
	// Have are inventory files (bundle inventory -o): blobs the offline
	// side holds.
	Have []string
	// Base are earlier bundles (a file, its first volume or base name, or a
	// glob): the offline side holds every blob each one carries or
	// references. Only their bundle.json is read.
	Base []string
	// SkipUnchanged writes nothing when every reference resolves to what
	// the first Base bundle holds for it (same references, same digests,
	// same platform manifests): the result says Unchanged.
	SkipUnchanged bool
}

// DeltaSummary is what a delta or unchanged run adds to CreateResult.
type DeltaSummary struct {
	// External and ExternalBytes count the layers left out of a delta
	// bundle (the offline side has them).
	External      int   `json:"external,omitempty"`
	ExternalBytes int64 `json:"externalBytes,omitempty"`
	// Unchanged is true when nothing was written: every reference resolved
	// to what UnchangedSince holds.
	Unchanged      bool   `json:"unchanged,omitempty"`
	UnchangedSince string `json:"unchangedSince,omitempty"`
}

// haveSet is what the offline side holds, from --have and --base.
type haveSet struct {
	blobs    map[v1.Hash]int64
	base     *tarball.Index // the first --base
	baseName string
	skip     bool
}

// loadHave reads the inventories and base bundles of opts; nil when there
// are none.
func loadHave(opts DeltaOptions) (*haveSet, error) {
	if opts.SkipUnchanged && len(opts.Base) == 0 {
		return nil, errors.New("skipping an unchanged bundle needs the bundle to compare with (--base)")
	}
	if len(opts.Have) == 0 && len(opts.Base) == 0 {
		return nil, nil
	}
	h := &haveSet{blobs: map[v1.Hash]int64{}, skip: opts.SkipUnchanged}
	for _, p := range opts.Have {
		inv, err := ReadInventory(p)
		if err != nil {
			return nil, err
		}
		for d, size := range inv.Blobs {
			h.blobs[d] = size
		}
	}
	for _, p := range opts.Base {
		idx, name, err := ReadBundleIndex(p)
		if err != nil {
			return nil, fmt.Errorf("--base: %w", err)
		}
		if h.base == nil {
			h.base, h.baseName = idx, name
		}
		for d, b := range idx.Blobs {
			h.blobs[d] = b.Size
		}
		for d, b := range idx.External {
			h.blobs[d] = b.Size
		}
	}
	return h, nil
}

// ReadBundleIndex reads bundle.json of the bundle named name (a file, a
// volume or the base name of a split bundle, a glob; plain or gzip), and
// nothing more. It returns the name the bundle goes by in messages.
func ReadBundleIndex(name string) (*tarball.Index, string, error) {
	set, err := tarball.FindVolumes(name)
	if err != nil {
		return nil, name, fmt.Errorf("opening %s: %w", name, err)
	}
	if set.Size() < 0 {
		// A FIFO or a device: never waited on (the base is read twice).
		for _, v := range set.Readable() {
			if v.Size < 0 {
				fi, err := os.Stat(v.Path)
				if err == nil {
					err = &safefs.NotRegularError{Path: v.Path, Mode: fi.Mode()}
				}
				return nil, set.Name(), fmt.Errorf("opening %s: %w", name, err)
			}
		}
	}
	r, err := set.Open()
	if err != nil {
		return nil, set.Name(), err
	}
	defer r.Close()
	tr := tarball.NewReader(r)
	defer tr.Close()
	idx, err := tr.Index()
	if err != nil {
		return nil, set.Name(), fmt.Errorf("%s: %w", set.Name(), err)
	}
	return idx, set.Name(), nil
}

// apply turns idx into a delta: each layer the offline side holds (same
// digest and size) moves from blobs to external. With SkipUnchanged and
// every image as the base has it, it returns the result of a run that
// writes nothing, and true.
func (h *haveSet) apply(idx *tarball.Index, start time.Time) (*CreateResult, bool) {
	if h == nil {
		return nil, false
	}
	if h.skip && sameImages(h.base.Images, idx.Images) {
		res := &CreateResult{Images: summaries(idx), Seconds: time.Since(start).Seconds()}
		res.Unchanged, res.UnchangedSince = true, h.baseName
		return res, true
	}
	for _, im := range idx.Images {
		for _, m := range im.Manifests {
			for _, l := range m.Layers {
				b, carried := idx.Blobs[l]
				if size, ok := h.blobs[l]; carried && ok && size == b.Size {
					if idx.External == nil {
						idx.External = map[v1.Hash]tarball.Blob{}
					}
					idx.External[l] = b
					delete(idx.Blobs, l)
				}
			}
		}
	}
	return nil, false
}

// summarize fills in what a delta left out.
func (h *haveSet) summarize(res *CreateResult, idx *tarball.Index) {
	for _, b := range idx.External {
		res.External++
		res.ExternalBytes += b.Size
	}
}

// summaries lists idx's images as CreateResult does.
func summaries(idx *tarball.Index) []ImageSummary {
	var out []ImageSummary
	for _, im := range idx.Images {
		var plats []string
		for _, m := range im.Manifests {
			plats = append(plats, m.Platform)
		}
		out = append(out, ImageSummary{Ref: im.Ref, Digest: im.Digest.String(), MediaType: string(im.MediaType), Platforms: plats})
	}
	return out
}

// sameImages reports whether two digest indexes hold the same references
// with the same digests and platform manifests, in any order.
func sameImages(a, b []tarball.Image) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(im tarball.Image) string {
		var ms []string
		for _, m := range im.Manifests {
			ms = append(ms, m.Digest.String())
		}
		slices.Sort(ms)
		k := im.Digest.String()
		for _, m := range ms {
			k += "," + m
		}
		return k
	}
	byRef := map[string]string{}
	for _, im := range a {
		byRef[im.Ref] = key(im)
	}
	for _, im := range b {
		if k, ok := byRef[im.Ref]; !ok || k != key(im) {
			return false
		}
	}
	return true
}

// InventoryKind is the "kind" of an inventory file.
const InventoryKind = "bundle-inventory"

// Inventory is what `bundle inventory` writes: the blobs a place (a
// registry, an OCI layout, a bundle) holds, by digest, with their sizes.
// docs/format.md describes it.
type Inventory struct {
	SchemaVersion int    `json:"schemaVersion"`
	Kind          string `json:"kind"`
	Created       string `json:"created"`
	// From names what was listed: docker://HOST/PREFIX, oci:DIR, a bundle.
	From string `json:"from"`
	// Blobs are the blobs found: digest → size in bytes.
	Blobs map[v1.Hash]int64 `json:"blobs"`
}

// MaxInventorySize is the largest inventory file ReadInventory reads.
const MaxInventorySize = 256 << 20

// ReadInventory reads an inventory file.
// It must be a regular file (links are followed): a FIFO or a device is
// refused without being waited on, and at most MaxInventorySize bytes are
// read.
func ReadInventory(path string) (*Inventory, error) {
	f, err := safefs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the inventory: %w", err)
	}
	defer f.Close()
	data, err := safefs.ReadAll(f, path, MaxInventorySize)
	if err != nil {
		return nil, fmt.Errorf("reading the inventory %s: %w", path, err)
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("%s is not an inventory (bundle inventory writes one; for an earlier bundle use --base)", path)
	}
	var inv Inventory
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, fmt.Errorf("parsing the inventory %s: %w", path, err)
	}
	if inv.Kind != InventoryKind {
		return nil, fmt.Errorf("%s is not an inventory: its kind is %q, not %q", path, inv.Kind, InventoryKind)
	}
	if inv.SchemaVersion != 1 {
		return nil, fmt.Errorf("the inventory %s has schemaVersion %d; this version of bundle reads 1", path, inv.SchemaVersion)
	}
	return &inv, nil
}

// MarshalInventory renders an inventory as `bundle inventory` writes it.
func MarshalInventory(inv *Inventory) ([]byte, error) {
	if inv.Blobs == nil {
		inv.Blobs = map[v1.Hash]int64{}
	}
	b, err := json.MarshalIndent(inv, "", "  ")
	return append(b, '\n'), err
}
