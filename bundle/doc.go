// Package bundle runs the tool's jobs end to end: create (manifest file →
// registries → bundle file), and the verify and load workflows built on the
// tarball, verify and load packages. It never prints: progress goes to a
// Progress the caller supplies, results come back as values.
package bundle
