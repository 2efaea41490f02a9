package verify

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Code classifies a Finding, for scripts reading --json.
type Code string

// Codes of findings.
const (
	// CodeNotBundle: the file is not a bundle at all (a docker save
	// archive, an OCI layout archive, not a tar).
	CodeNotBundle Code = "not-bundle"
	// CodeTruncated: the file ends before the archive does.
	CodeTruncated Code = "truncated"
	// CodeArchive: the tar or gzip stream is damaged, or data follows the
	// end of the archive.
	CodeArchive Code = "archive"
	// CodeEntry: an entry the format forbids: absolute or ".." path,
	// symlink, hardlink, device, duplicate, name outside the layout, a JSON
	// entry over its size limit.
	CodeEntry Code = "bad-entry"
	// CodeIndex: bundle.json does not parse, or contradicts itself.
	CodeIndex Code = "index"
	// CodeDigest: a blob's sha256 is not the digest its name claims.
	CodeDigest Code = "digest-mismatch"
	// CodeSize: a blob's size is not what bundle.json or a descriptor says.
	CodeSize Code = "size-mismatch"
	// CodeMediaType: a descriptor's media type is not what bundle.json or
	// the blob itself says.
	CodeMediaType Code = "media-type-mismatch"
	// CodeMissing: a blob or entry that something references is absent.
	CodeMissing Code = "missing"
	// CodeUnlisted: a blob is present that bundle.json does not list.
	CodeUnlisted Code = "unlisted"
	// CodeInvalid: a manifest, index, config, index.json, manifest.json or
	// oci-layout does not parse, or is over its size limit.
	CodeInvalid Code = "invalid"
	// CodeMismatch: index.json, manifest.json, a manifest or an index
	// disagrees with bundle.json about what an image is made of.
	CodeMismatch Code = "mismatch"
	// CodeDiffID: a config's diff_ids do not fit its layers, or (with Deep)
	// a layer's uncompressed sha256 is not its diffID.
	CodeDiffID Code = "diffid-mismatch"
	// CodeLayer: with Deep, a layer does not decompress, or decompresses to
	// more than the limits allow (a decompression bomb).
	CodeLayer Code = "layer"
	// CodeOrder: a blob comes before a blob it references; a one-pass
	// loader could not use it.
	CodeOrder Code = "order"
	// CodeChecksum: the file's sha256 (or a volume's) is not the one in
	// <file>.sha256.
	CodeChecksum Code = "checksum"
	// CodeVolume: a volume of a split bundle is missing, or is not the
	// size of the others (cut short).
	CodeVolume Code = "volume"
)

// Finding is one fault found in a bundle.
type Finding struct {
	Code Code `json:"code"`
	// Entry is the archive entry at fault (bundle.json, blobs/sha256/…),
	// or the file itself for faults of the whole file.
	Entry string `json:"entry,omitempty"`
	// Images are the references in bundle.json that use the entry.
	Images []string `json:"images,omitempty"`
	// Problem says what is wrong.
	Problem string `json:"problem"`
	// Got and Want are the values found and expected, when the problem is
	// a mismatch (digests, sizes, media types).
	Got  string `json:"got,omitempty"`
	Want string `json:"want,omitempty"`
	// Offset is where the fault lies in the tar stream: the start of the
	// entry's content, or where the pass stopped. It is the offset in the
	// file, or for a gzip-compressed bundle in the uncompressed stream.
	Offset *int64 `json:"offset,omitempty"`
	// Volume says, for a split bundle (not compressed), which volume holds
	// Offset and where in it.
	Volume *VolumeAt `json:"volume,omitempty"`
	// Looks says, for CodeNotBundle, what the file looks like instead
	// (tarball.NotBundleError.Looks: tarball.LooksDockerSave, …).
	Looks string `json:"-"`
}

// VolumeAt is a place in one volume of a split bundle.
type VolumeAt struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
	// Through is the last volume the entry's content reaches, when it
	// runs on past this one.
	Through int `json:"through,omitempty"`
}

// String renders the finding on one line:
//
//	blobs/sha256/3f4e…: digest mismatch: got sha256:…, want sha256:… (used by docker.io/library/debian:bookworm)
func (f Finding) String() string {
	var b strings.Builder
	if f.Entry != "" {
		b.WriteString(f.Entry)
		b.WriteString(": ")
	}
	b.WriteString(f.Problem)
	if f.Got != "" || f.Want != "" {
		fmt.Fprintf(&b, ": got %s, want %s", orNone(f.Got), orNone(f.Want))
	}
	if len(f.Images) > 0 {
		b.WriteString(" (used by ")
		const show = 3
		for i, im := range f.Images {
			if i == show {
				fmt.Fprintf(&b, " and %d more", len(f.Images)-show)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(im)
		}
		b.WriteString(")")
	}
	if v := f.Volume; v != nil {
		fmt.Fprintf(&b, " in volume %d (%s) at offset %d", v.Number, v.Name, v.Offset)
		if v.Through > v.Number {
			fmt.Fprintf(&b, ", running on to volume %d", v.Through)
		}
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// Report is the result of Verify. It is what `bundle verify --json` prints.
type Report struct {
	// Intact is true when the whole file was read and nothing is wrong.
	Intact bool `json:"intact"`
	// Deep is true when layers were decompressed and their diffIDs checked.
	Deep bool `json:"deep"`
	// Compressed is true when the bundle file itself is gzip-compressed.
	Compressed bool `json:"compressed,omitempty"`
	// Complete is false when the pass stopped before the end of the archive
	// (truncation, a damaged header, not a bundle).
	Complete bool `json:"complete"`
	// Images is the number of references bundle.json lists.
	Images int `json:"images"`
	// Blobs is the number of blob entries read, BlobBytes their total size.
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blobBytes"`
	// Shallow is the number of layers that a Deep pass did not decompress
	// (Options.Shallow), ShallowBytes their total size.
	Shallow      int   `json:"shallow,omitempty"`
	ShallowBytes int64 `json:"shallowBytes,omitempty"`
	// BytesRead is how many bytes of the file were read.
	BytesRead int64 `json:"bytesRead"`
	// SHA256 is the sha256 of the whole file, when it was computed (a
	// <file>.sha256 was given); ChecksumFile names that file.
	SHA256       string `json:"sha256,omitempty"`
	ChecksumFile string `json:"checksumFile,omitempty"`
	// Volumes are the volumes of a split bundle, with the sha256 of each
	// read to its end.
	Volumes []VolumeReport `json:"volumes,omitempty"`
	// NoMetadata is true when bundle.json has no "metadata" (a bundle
	// written before it existed): oci-layout, index.json and
	// manifest.json are then checked against bundle.json's images, not
	// by their sha256, and a signature over bundle.json would not cover
	// them. Not a fault.
	NoMetadata bool `json:"noMetadata,omitempty"`
	// Signature says how the bundle is signed (the bundle.sigstore.json
	// entry, the file beside it) and, with Options.Keys, whether a
	// signature verified; nil for an unsigned bundle verified without keys.
	Signature *SignatureReport `json:"signature,omitempty"`
	// External are the blobs a delta bundle references but does not
	// carry: the target must hold them already. Not a fault.
	External []ExternalBlob `json:"external,omitempty"`
	// Findings are every fault found, in the order of the file.
	Findings []Finding `json:"findings"`
}

// VolumeReport is one volume of a split bundle.
type VolumeReport struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	// Checked is true when the checksum file has a line for the volume
	// (and it matches unless a finding says otherwise).
	Checked bool `json:"checked"`
}

// ExternalBlob is a blob a delta bundle expects the target to hold.
type ExternalBlob struct {
	Digest    v1.Hash         `json:"digest"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType,omitempty"`
	Images    []string        `json:"images,omitempty"`
}

// ExternalBytes is the total size of the external blobs.
func (r *Report) ExternalBytes() int64 {
	var n int64
	for _, e := range r.External {
		n += e.Size
	}
	return n
}

// ImagesAffected returns the references named by any finding, sorted, each
// once.
func (r *Report) ImagesAffected() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range r.Findings {
		for _, im := range f.Images {
			if !seen[im] {
				seen[im] = true
				out = append(out, im)
			}
		}
	}
	sortStrings(out)
	return out
}
