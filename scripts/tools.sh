#!/usr/bin/env bash
# tools.sh: build the Go-installed test tools once into the project's tool
# dir, and say where they are. Sourced by install-deps.sh; run it alone to
# build or refresh them:
#
#   scripts/tools.sh            build what is missing (seconds when cached)
#   scripts/tools.sh --dir      print the tool dir
#
# Tool dir: $BUNDLE_TOOLDIR, default ${XDG_CACHE_HOME:-$HOME/.cache}/bundle-tools
# (outside the checkout, so clean clones on the same machine share it; a
# fresh machine builds everything from the Go module proxy, about 10 minutes
# on 2 cores). Each tool has a stamp file with the version it was built at;
# a changed pin rebuilds it.
#
#   bin/cosign        github.com/sigstore/cosign/v2/cmd/cosign   (issue 13 interop)
#   bin/oras          oras.land/oras/cmd/oras                    (referrers in tests)
#   bin/crane         github.com/google/go-containerregistry/cmd/crane
#   bin/conformance   github.com/opencontainers/distribution-spec/conformance (bundle serve;
#                     no tagged version holds the package: a pseudo-version is pinned)
#   engine29/dockerd  github.com/moby/moby/v2/cmd/dockerd        (Engine 29, containerd store)
#   engine29/{containerd,containerd-shim-runc-v2,ctr}  containerd v2.4.2
#   engine29/runc     runc v1.3.3 (its go.mod's replace of a missing dir dropped)
set -euo pipefail

COSIGN_VERSION=${COSIGN_VERSION:-v2.6.5}
ORAS_VERSION=${ORAS_VERSION:-v1.3.6}
CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
MOBY_VERSION=${MOBY_VERSION:-v2.0.0-beta.24}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.3.3}
CONFORMANCE_VERSION=${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}

tooldir() { printf '%s\n' "${BUNDLE_TOOLDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bundle-tools}"; }

tlog() { printf 'tools: %s\n' "$*" >&2; }

# stamped DIR NAME VERSION: whether DIR/NAME was built at VERSION.
stamped() { [[ -x $1/$2 && -f $1/.$2.version && $(cat "$1/.$2.version") == "$3" ]]; }
stamp() { printf '%s\n' "$3" >"$1/.$2.version"; }

# go_tool DIR NAME PKG VERSION: go install PKG@VERSION into DIR as NAME.
go_tool() {
	local dir=$1 name=$2 pkg=$3 version=$4
	if stamped "$dir" "$name" "$version"; then
		return 0
	fi
	tlog "building $name $version ($pkg)"
	mkdir -p "$dir"
	if ! (cd "$(mktemp -d)" && GOBIN="$dir" GOFLAGS=-mod=mod go install "$pkg@$version"); then
		tlog "error: cannot build $name $version"
		return 1
	fi
	stamp "$dir" "$name" "$version"
}

# build_runc DIR: runc's go.mod replaces a directory its module zip lacks.
build_runc() {
	local dir=$1
	if stamped "$dir" runc "$RUNC_VERSION"; then
		return 0
	fi
	tlog "building runc $RUNC_VERSION"
	local tmp src
	tmp=$(mktemp -d)
	src=$(cd "$tmp" && go mod download -json "github.com/opencontainers/runc@$RUNC_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	if [[ -z $src || ! -d $src ]]; then
		tlog "error: cannot download runc $RUNC_VERSION"
		return 1
	fi
	cp -r "$src" "$tmp/runc" && chmod -R u+w "$tmp/runc"
	if ! (cd "$tmp/runc" && go mod edit -dropreplace github.com/opencontainers/selinux &&
		go build -mod=mod -o "$dir/runc" .); then
		tlog "error: cannot build runc $RUNC_VERSION"
		rm -rf "$tmp"
		return 1
	fi
	rm -rf "$tmp"
	stamp "$dir" runc "$RUNC_VERSION"
}

build_tools() {
	local root status=0
	root=$(tooldir)
	go_tool "$root/bin" cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION" || status=1
	go_tool "$root/bin" oras oras.land/oras/cmd/oras "$ORAS_VERSION" || status=1
	go_tool "$root/bin" crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION" || status=1
	go_tool "$root/bin" conformance github.com/opencontainers/distribution-spec/conformance "$CONFORMANCE_VERSION" || status=1
	go_tool "$root/engine29" dockerd github.com/moby/moby/v2/cmd/dockerd "$MOBY_VERSION" || status=1
	local c
	for c in containerd containerd-shim-runc-v2 ctr; do
		go_tool "$root/engine29" "$c" "github.com/containerd/containerd/v2/cmd/$c" "$CONTAINERD_VERSION" || status=1
	done
	build_runc "$root/engine29" || status=1
	return $status
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	if [[ ${1:-} == --dir ]]; then
		tooldir
		exit 0
	fi
	build_tools
fi
