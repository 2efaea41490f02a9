#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it (make test; .ci/run).
# Installs what the integration tests need (scripts/install-deps.sh), then runs
# go vet, every test with the race detector on, and each fuzz target briefly.
# Under CI=true a missing registry, dockerd, skopeo, podman or ctr fails the
# run instead of skipping. FUZZTIME=200000x (or 60s) for a longer fuzz run.
#
# The fuzz budget is a count of executions, not a duration: with a duration,
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# failure when the time is up while a worker is mid-call (golang/go#75804,
# fixed in Go 1.27), which failed CI once with no input found.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

scripts/install-deps.sh

echo "== go vet"
go vet ./...

echo "== cross-builds (darwin, arm64)"
GOOS=darwin go build ./... && GOARCH=arm64 go build ./...

if [[ $(go env CGO_ENABLED) != 1 ]]; then
	echo "test.sh: error: the race detector needs cgo, which is off (no C compiler, or CGO_ENABLED=0): install gcc and libc6-dev (scripts/install-deps.sh does as root), and leave CGO_ENABLED unset" >&2
	exit 1
fi

echo "== go test (race detector on)"
go test -race -count=1 -timeout 40m ./...

scripts/fuzz.sh

if [[ -x scripts/bench.sh ]]; then
	echo "== bench smoke"
	scripts/bench.sh --smoke
fi
echo "== all tests passed"
