package verify

import (
	"errors"
	"fmt"
	"io"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Listing says what a bundle holds, from its bundle.json alone. It is what
// `bundle list --json` prints.
type Listing struct {
	Created    string        `json:"created,omitempty"`
	Creator    string        `json:"creator,omitempty"`
	Platforms  []string      `json:"platforms,omitempty"`
	Compressed bool          `json:"compressed,omitempty"`
	Images     []ListedImage `json:"images"`
	Totals     ListingTotals `json:"totals"`
}

// ListedImage is one reference of the bundle.
type ListedImage struct {
	Ref         string `json:"ref"`
	FetchedFrom string `json:"fetchedFrom,omitempty"`
	// Digest and MediaType are the digest index entry: what the registry
	// served for Ref (a manifest, or an index for a multi-platform image).
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	// Manifests are the platform manifests carried.
	Manifests []ListedManifest `json:"manifests"`
	// Size is the compressed size of every blob the image uses, each once.
	Size int64 `json:"size"`
}

// ListedManifest is one platform manifest of an image.
type ListedManifest struct {
	Platform string  `json:"platform,omitempty"`
	Digest   v1.Hash `json:"digest"`
	Layers   int     `json:"layers"`
	// Size is the compressed size of the manifest, its config and layers.
	Size int64 `json:"size"`
}

// ListingTotals sums up a bundle.
type ListingTotals struct {
	Images int `json:"images"`
	// Blobs and Bytes count what the file carries, each blob once.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// ImageBytes is the sum of the images' sizes: what separate archives
	// would hold. SavedBySharing is ImageBytes less Bytes.
	ImageBytes     int64 `json:"imageBytes"`
	SavedBySharing int64 `json:"savedBySharing"`
	// External counts blobs the bundle references but does not carry.
	External int `json:"external,omitempty"`
}

// List reads bundle.json, the first entry of the bundle in r, and nothing
// more; it refuses a reference that a load would refuse (CheckReferences). Its errors are those of tarball.Reader (tarball.IsCorrupt tells a
// damaged bundle from a file that could not be read).
func List(r io.Reader) (*Listing, error) {
	tr := tarball.NewReader(r)
	defer tr.Close()
	idx, err := tr.Index()
	if err != nil {
		return nil, err
	}
	if err := ReferenceError(idx); err != nil {
		return nil, err
	}
	l := &Listing{
		Created:    idx.Created,
		Creator:    idx.Creator,
		Platforms:  idx.Platforms,
		Compressed: tr.Compressed(),
		Images:     []ListedImage{},
	}
	sizeOf := func(seen map[v1.Hash]bool, hs ...v1.Hash) int64 {
		var n int64
		for _, h := range hs {
			if seen[h] {
				continue
			}
			seen[h] = true
			n += idx.Blobs[h].Size // zero for external blobs
		}
		return n
	}
	for _, im := range idx.Images {
		li := ListedImage{Ref: im.Ref, FetchedFrom: im.FetchedFrom, Digest: im.Digest, MediaType: im.MediaType, Manifests: []ListedManifest{}}
		inImage := map[v1.Hash]bool{}
		li.Size = sizeOf(inImage, im.Digest)
		for _, pm := range im.Manifests {
			hs := append([]v1.Hash{pm.Digest, pm.Config}, pm.Layers...)
			li.Manifests = append(li.Manifests, ListedManifest{
				Platform: pm.Platform,
				Digest:   pm.Digest,
				Layers:   len(pm.Layers),
				Size:     sizeOf(map[v1.Hash]bool{}, hs...),
			})
			li.Size += sizeOf(inImage, hs...)
		}
		l.Images = append(l.Images, li)
		l.Totals.ImageBytes += li.Size
	}
	l.Totals.Images = len(idx.Images)
	l.Totals.Blobs = len(idx.Blobs)
	for _, b := range idx.Blobs {
		l.Totals.Bytes += b.Size
	}
	l.Totals.External = len(idx.External)
	l.Totals.SavedBySharing = max(0, l.Totals.ImageBytes-l.Totals.Bytes)
	return l, nil
}

// ReferenceError returns CheckReferences' findings as a
// *tarball.CorruptError on bundle.json (tarball.IsCorrupt), or nil.
func ReferenceError(idx *tarball.Index) error {
	fs := CheckReferences(idx)
	if len(fs) == 0 {
		return nil
	}
	f := fs[0]
	f.Entry = ""
	msg := f.String()
	if len(fs) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(fs)-1)
	}
	return &tarball.CorruptError{Entry: tarball.IndexFile, Err: errors.New(msg)}
}
