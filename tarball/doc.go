// Package tarball reads and writes the bundle file: one plain tar that is
// at once a docker-save archive (manifest.json) and an OCI image layout
// (oci-layout, index.json, blobs/sha256/…), led by bundle.json, the
// bundle's own index of references, digests and blobs.
//
// The format is specified in docs/format.md (after FORMAT.md of the design).
// Reader reads a bundle in one sequential pass, never seeking, and refuses
// unsafe entries (absolute or .. paths, links, devices, duplicates, names
// outside the layout, oversized JSON) and foreign archives by name.
// Open (OpenReaderAt) is the same Reader run over a file it may seek in:
// it reads the headers and small JSON entries once, seeking past blobs,
// and gives each entry's offset and size (File.Lookup, File.Section) for
// random access; it fails as the Reader would on the same bytes.
// The writer is deterministic: the same Plan, blobs and modification time
// give the same bytes. Every blob is checked against its digest and size
// as it is copied in, so a damaged cache never reaches a bundle.
//
// A bundle may be split into volumes NAME.001, NAME.002, … (a split -b of
// the file): FindVolumes resolves what a user names (any volume, the base
// name, a glob) and VolumeReader reads the volumes as one file, for reading
// in one pass and for seeking. Offsets of entries (Entry.Offset) let a
// reader say in which volume a fault lies.
package tarball
