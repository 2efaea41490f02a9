// Package fetch talks to registries for bundle create: it resolves
// references to the manifest or index the registry serves, selects the
// platforms asked for, and downloads every blob into a content-addressed
// cache, checking each blob's sha256 and size as it arrives.
//
// The registry protocol (references, auth from docker config.json and
// credential helpers, token challenges, manifest fetches) is
// go-containerregistry's remote and transport packages. This package adds
// what they lack for unattended air-gap exports: retries that honour
// Retry-After, blob downloads that resume a broken body with a Range
// request, big blobs fetched as several Range requests at once (segments,
// within a client-wide connection budget), and a cache that only ever
// holds verified blobs.
//
// Specs followed: the OCI distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md)
// and the OCI image spec's index and manifest.
package fetch
