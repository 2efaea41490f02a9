package tarball

// Size limits on a bundle and on the JSON it carries: the one place they
// are defined. The Reader and File enforce them on the entries they read
// whole, Write refuses to produce a bundle over them, and fetch bounds
// what it reads from a registry by MaxManifestSize and MaxConfigSize, so
// that create never fetches what load could not read back.
//
// The limits on other inputs stay with the package that reads them:
// manifests.MaxFileSize (images.yaml) and manifests.MaxLockSize (the
// lockfile), fetch.MaxListPages and fetch.MaxListBytes (a tag or catalog
// listing), verify.DefaultMaxRatio and verify.DefaultMaxLayerSize (what a
// layer may decompress to), MaxVolumes (volumes.go). docs/format.md
// lists them all.
const (
	// MaxIndexSize bounds bundle.json, which is read whole and kept in
	// memory. It grows by one entry per blob (under 200 bytes each) and
	// one per image reference, so 64 MiB holds hundreds of thousands of
	// blobs while keeping the memory of a hostile bundle bounded.
	MaxIndexSize = 64 << 20
	// MaxDockerManifestSize bounds manifest.json: docker load refuses a
	// larger one, so a bundle must not need more.
	MaxDockerManifestSize = 1 << 20
	// MaxOCIIndexSize bounds index.json: one descriptor (a few hundred
	// bytes) per image reference, so tens of thousands of references.
	MaxOCIIndexSize = 16 << 20
	// MaxConfigSize bounds an image config, in a bundle or from a
	// registry: docker load refuses a larger one.
	MaxConfigSize = 4 << 20
	// MaxManifestSize bounds an image manifest or index, in a bundle or
	// from a registry (and any other registry answer than a blob): the
	// limit a distribution registry puts on the manifests it accepts.
	MaxManifestSize = 4 << 20
	// MaxOCILayoutSize bounds oci-layout, whose only content is
	// OCILayoutContent (30 bytes).
	MaxOCILayoutSize = 4 << 10
	// MaxRepositoriesSize bounds repositories, the legacy docker-save
	// map: it names the tags manifest.json names, so it gets
	// manifest.json's limit.
	MaxRepositoriesSize = 1 << 20
	// MaxSignatureSize bounds bundle.sigstore.json, a Sigstore bundle of
	// a key-based signature (under 1 KiB; a few KiB with a log entry). It
	// is sign.MaxSignatureSize, which bounds the sidecar file.
	MaxSignatureSize = 64 << 10
)

// Limits on what a gzip-compressed bundle may decompress to. A bundle is
// mostly compressed layers (create --gzip gains about nothing on them);
// one that expands to more than MaxGzipRatio times the compressed bytes
// read, past GzipAllowance, is taken for a decompression bomb.
const (
	MaxGzipRatio  = 100
	GzipAllowance = 64 << 20
)
