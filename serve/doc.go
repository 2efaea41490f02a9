// Package serve serves bundle files, as they lie on disk, as a read-only
// OCI registry: the pull side of the OCI distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md),
// for the nodes of an air-gapped network.
//
// It owns:
//
//   - Open: every bundle (a file, a split bundle's volumes, a delta) is
//     verified as bundle verify does (bundle.Verify) and refused when
//     corrupt (*CorruptError), gzip-compressed (*CompressedError) or
//     lacking, with the others, a blob its images need (*IncompleteError);
//     then its headers are read once (tarball.OpenReaderAt) and every blob
//     is found by its offset in the file.
//   - Names: a reference is served under the repository that
//     load --to docker://HOST/PREFIX gives it (load.RepositoryPath: the
//     registry host dropped, --prefix put first), keyed by (upstream
//     registry, name) for containerd's ?ns= and by name alone otherwise. A
//     tag that two bundles give different images is the newest bundle's
//     (bundle.json "created"); Summary lists each such Conflict.
//   - Handler: manifests with their exact stored bytes and media type,
//     blobs read by offset (Range: 206, 416), tag and catalog listings
//     with n, last and Link, the referrers API (an empty index: no bundle
//     carries referrers yet); every error with the spec's error body;
//     push, delete and mount 405 UNSUPPORTED. ParseRoute is the one parser
//     of request paths, bounded (MaxNameLength, MaxPathLength, MaxPage).
//   - Change detection: before a read is answered, the files it came from
//     are checked (fstat of the open files: size and modification time)
//     against what was verified, and a manifest is hashed; a bundle file
//     that changed answers 500 (and Options.Warn hears of it once), never
//     bytes that were not verified.
//   - Serve: an http.Server with header, idle and write-stall timeouts and
//     a connection limit that closes idle connections for new ones; it
//     drains on ctx's end.
//   - NodeConfig: the mirror configuration of a node (containerd
//     hosts.toml, k3s registries.yaml, docker daemon.json, podman
//     registries.conf) for each upstream registry the images came from.
//
// It never prints: it returns values and errors, and reports requests and
// warnings through Options.
package serve
