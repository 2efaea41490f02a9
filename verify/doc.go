// Package verify proves a bundle file intact and says what it holds.
//
// Verify reads a bundle once, sequentially, with memory bounded whatever its
// size, and checks everything the file claims about itself against its bytes
// (FORMAT.md of the design, "The bundle file, format 1"): every blob's sha256
// and size against its name and bundle.json; every blob that bundle.json,
// index.json, manifest.json or a manifest references is there, and no other;
// manifests, indexes and configs parse and agree with bundle.json; with Deep,
// every layer's diffID. It reports every fault it finds as a Finding, not only
// the first, and returns an error only when the file could not be read.
//
// A split bundle is verified as one stream with its volumes described in
// Options (SplitOptions): each volume's sha256 against its checksum file, a
// missing volume by number, and every finding located in its volume. A
// delta bundle's external blobs are listed in the Report, not found at
// fault.
//
// List reads only bundle.json and summarizes it.
//
// The package never prints and never writes to disk: progress goes through
// the Progress interface, results are values.
package verify
