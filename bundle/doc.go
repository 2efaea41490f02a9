// Package bundle runs the tool's jobs end to end: create (manifest file →
// registries → bundle file), and the verify and load workflows built on the
// tarball, verify and load packages; the output of create as one file,
// split volumes or gzip (volumes.go); delta bundles against an inventory or
// an earlier bundle, and the inventory itself (delta.go, inventory.go). It
// never prints: progress goes to a Progress the caller supplies, results
// come back as values.
package bundle
