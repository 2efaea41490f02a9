// Package load puts the images of a verified bundle file into a target: a
// registry, an OCI image layout directory, or a docker daemon. Every target
// keeps the bundle's bytes as they are (no blob is re-compressed, no
// manifest re-serialized), so the digests in the target are the digests
// bundle.json records (FORMAT.md of the design, "The bundle file, format 1",
// property 3).
//
// It owns:
//
//   - Bundle: a bundle file opened for loading. Open reads its headers once
//     and finds every blob's place in the file; blobs are then read by
//     digest, and every read hashes the bytes again and fails before EOF
//     when they are not the blob's (the file may change after it was
//     verified). Watch checks, during the verify pass, that the entries
//     Open read (bundle.json, manifest.json) are the ones verified.
//     Proving the whole file intact is the verify package's job; the
//     workflow (package bundle) runs it before any target sees a byte.
//   - Select: which references and platform manifests to load (--image,
//     --platform), whether a multi-arch index can be loaded whole, and
//     which manifest docker gets.
//   - Target, with three implementations and one conformance suite:
//     Registry (OCI distribution API through go-containerregistry's remote
//     and transport packages: blobs, then manifests after their children,
//     then indexes, the tag last), Layout (an OCI image layout directory:
//     content-addressed writes, temp file + fsync + rename, index.json
//     merged and replaced atomically), and Daemon (the Docker Engine API
//     over DOCKER_HOST: POST /images/load with tars of the original blobs; a
//     classic-store daemon gets parallel streams, tagged at the end — see
//     daemon_classic.go).
//     Every target skips what it already holds, so a load can be run again
//     and a second run transfers no blob.
//   - RewriteRef: the rule that names an image in a registry target.
//   - CheckExternal: for a delta bundle, that the target holds every blob
//     the bundle references but does not carry, checked before anything
//     is written (a registry also mounts such a blob from another
//     repository of the same load); a docker daemon is refused.
//
// The package never prints: progress goes through Progress, results are
// values. Specs followed: the OCI distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md),
// the OCI image layout spec
// (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
// and the Docker Engine API (https://docs.docker.com/engine/api/).
package load
