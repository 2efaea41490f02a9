// Package manifests owns what a user writes to say which images a bundle
// holds, and the names bundle gives them.
//
// It reads manifest files: images.yaml (platforms, mirrors, and an images
// list of references, tag lists, tag regexes and digests) and the plain
// images.txt lists of RKE2 and k3s air-gap bundles (one reference per line,
// '#' comments). Parse and Load report every problem at once, each naming
// file:line:col; unknown keys, bad references, duplicates, empty lists,
// bad platforms and wrong types are errors, never silent skips.
//
// It owns reference normalization for the whole program (refs.go):
// ParseReference reads a reference the way docker does ("debian" is
// docker.io/library/debian:latest); FullName is the form bundle.json,
// index.json annotations and lockfiles record; FamiliarName is the form
// docker prints in RepoTags.
//
// And it owns lockfiles (lock.go): `bundle create --lock` writes every
// resolved reference with its digest, `--locked` reads them back.
//
// The file formats are specified in issue 2 ("The manifest file") and
// ../shared/design/FORMAT.md (the names recorded in a bundle). The package
// does no I/O beyond reading the files it is given and writing lockfiles
// atomically; it never prints and never opens a network connection.
package manifests
