package tarball

import (
	"crypto/sha256"
	"encoding/hex"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// SchemaVersion is the bundle.json schema this package writes and reads.
const SchemaVersion = 1

// Entry names of the fixed part of a bundle, in the order they are written.
const (
	IndexFile        = "bundle.json"
	SignatureFile    = "bundle.sigstore.json" // optional, right after bundle.json
	OCILayoutFile    = "oci-layout"
	OCIIndexFile     = "index.json"
	DockerManifest   = "manifest.json"
	BlobsDir         = "blobs/"
	BlobsSHA256Dir   = "blobs/sha256/"
	OCILayoutContent = `{"imageLayoutVersion":"1.0.0"}`
)

// Annotation keys written on index.json descriptors.
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// Index is bundle.json: the bundle's own index, always the first entry.
type Index struct {
	SchemaVersion int              `json:"schemaVersion"`
	Created       string           `json:"created"`
	Creator       string           `json:"creator"`
	Source        *Source          `json:"source,omitempty"`
	Platforms     []string         `json:"platforms,omitempty"`
	Images        []Image          `json:"images"`
	Blobs         map[v1.Hash]Blob `json:"blobs"`
	External      map[v1.Hash]Blob `json:"external,omitempty"`
	// Metadata lists the sha256 and size of the fixed entries after
	// bundle.json (oci-layout, index.json, manifest.json, and
	// repositories when written), so that bundle.json covers every byte
	// of the file and a signature over it the whole bundle. A reader
	// refuses a fixed entry it does not list. Bundles written before it
	// existed have none (nil).
	Metadata map[string]EntrySum `json:"metadata,omitempty"`
}

// EntrySum is one fixed entry as bundle.json's metadata lists it.
type EntrySum struct {
	SHA256 string `json:"sha256"` // hex
	Size   int64  `json:"size"`
}

// SumOf returns the EntrySum of an entry's content.
func SumOf(data []byte) EntrySum {
	sum := sha256.Sum256(data)
	return EntrySum{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

// IsFixedFile reports whether name is a fixed entry that metadata may
// list: oci-layout, index.json, manifest.json or repositories (not
// bundle.sigstore.json, which signs bundle.json and so cannot be listed in
// it).
func IsFixedFile(name string) bool { return name != SignatureFile && fileLimit(name) != 0 }

// Source names the manifest file a bundle was made from.
type Source struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// Image is one reference in the digest index.
type Image struct {
	// Ref is the full normalized reference (docker.io/library/debian:bookworm,
	// or repo@sha256:… for a digest-only reference).
	Ref string `json:"ref"`
	// FetchedFrom is where it was fetched, when that differs from Ref (a mirror).
	FetchedFrom string `json:"fetchedFrom,omitempty"`
	// Digest, MediaType and Size describe what the registry served for Ref:
	// a manifest, or an index for a multi-arch image.
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	Size      int64           `json:"size"`
	// Manifests are the platform manifests the bundle carries for Ref (one
	// for a single-platform image).
	Manifests []PlatformManifest `json:"manifests"`
}

// PlatformManifest is one image manifest carried for a reference.
type PlatformManifest struct {
	Platform  string          `json:"platform,omitempty"`
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType,omitempty"`
	Size      int64           `json:"size,omitempty"`
	Config    v1.Hash         `json:"config"`
	Layers    []v1.Hash       `json:"layers"`
}

// Blob is one entry of the distribution-hash index.
type Blob struct {
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
	// DiffID is the sha256 of the uncompressed layer, for layers.
	DiffID *v1.Hash `json:"diffID,omitempty"`
}

// BlobPath is the entry name of a blob in the bundle.
func BlobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// DockerManifestEntry is one element of manifest.json (the docker save format).
type DockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}
