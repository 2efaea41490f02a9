// Package testenv is the harness of bundle's integration tests: it starts the
// real components that the acceptance tests run against, seeds them with test
// images, and stops exactly what it started.
//
// It owns:
//
//   - Require: the one place that decides what a test does when a program it
//     needs (docker-registry, dockerd, skopeo, podman, ctr, …) is missing: under
//     CI=true the test fails and names the program; elsewhere it is skipped with
//     a message that starts "SKIP (missing …)". scripts/install-deps.sh installs
//     them all.
//   - StartRegistry / StartRegistryProcess: a CNCF distribution registry
//     (Debian package docker-registry) on 127.0.0.1 with a free port and its
//     storage in a temp dir.
//   - StartDockerd / StartDockerdProcess: a Docker Engine (Debian package
//     docker.io) on a private unix socket with its own data root, exec root,
//     containerd and client config, so that nothing of the host's docker is used
//     or touched. Needs root.
//   - Seed / SeedAt: small, deterministic test images built with
//     go-containerregistry and pushed to a registry: three images that share a
//     base layer, a multi-arch index, an OCI-media-type image, a runnable image
//     and a digest-pinned reference. Every digest it reports is read back from
//     the registry.
//   - SharedRegistry / SharedSeeded / SharedDockerd: one registry (seeded once,
//     on demand) and one dockerd per test binary, started on first use and
//     stopped by Run, which the package's TestMain calls; SharedDir and Unique
//     for what the tests of one binary share.
//
// The testing.TB variants register a t.Cleanup that stops the process; the
// *Process variants are for TestMain and for programs, and their caller calls
// Stop. Every process is stopped by its own PID and reaped; a child that the
// harness starts also gets a parent-death signal, so a test binary that dies
// (a panic, a -timeout) does not leave it running.
//
// The recipes it follows, and what was tried on these machines, are in
// ../shared/design/TESTENV.md. Registry API: the OCI distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md);
// engine API: https://docs.docker.com/engine/api/v1.41/.
package testenv
