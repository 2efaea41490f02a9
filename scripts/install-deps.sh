#!/usr/bin/env bash
# install-deps.sh: install the programs the integration tests need, when missing.
#
#   docker-registry (CNCF distribution 2.8)  package docker-registry
#   dockerd (Docker Engine 20.10)            package docker.io
#   skopeo                                   package skopeo
#   podman                                   package podman
#   ctr (containerd)                         package containerd
#   strace (proves verify/load open no connection)  package strace
#   conformance (OCI distribution-spec suite)  go install, into the tool dir's bin/
#
# Idempotent: when everything is present it only says so. It runs `apt-get update`
# once, and only when something has to be installed. It uses sudo only when not
# root. Under CI=true it exits non-zero when, after installing, anything is still
# missing; elsewhere it warns, and the tests that need the missing program skip
# loudly (see internal/testenv).
set -euo pipefail

# dockerd lives in /usr/sbin, which is not on every user's PATH.
case ":${PATH}:" in
*:/usr/sbin:*) ;;
*) PATH="${PATH}:/usr/sbin" ;;
esac
case ":${PATH}:" in
*:/sbin:*) ;;
*) PATH="${PATH}:/sbin" ;;
esac
export PATH

log() { printf 'install-deps: %s\n' "$*" >&2; }

# The OCI distribution-spec conformance suite (bundle serve's acceptance
# test runs it), built once with go install from a throwaway directory, so
# that the project's go.mod never requires it, into the tool dir's bin/
# ($BUNDLE_TOOLDIR, default ~/.cache/bundle-tools, as scripts/tools.sh on
# main), with a stamp of the version it was built at. No tagged version
# holds the package: a pseudo-version is pinned.
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
install_conformance() {
	local dir="${BUNDLE_TOOLDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bundle-tools}/bin" tmp
	if [[ -x $dir/conformance && $(cat "$dir/.conformance.version" 2>/dev/null) == "$CONFORMANCE_VERSION" ]]; then
		log "present: conformance $CONFORMANCE_VERSION ($dir/conformance)"
		return 0
	fi
	command -v go >/dev/null 2>&1 || { log "go not found: cannot build the conformance suite"; return 1; }
	mkdir -p "$dir"
	tmp=$(mktemp -d)
	log "building the OCI conformance suite $CONFORMANCE_VERSION into $dir"
	if (cd "$tmp" && GOBIN="$dir" GOFLAGS=-mod=mod go install "github.com/opencontainers/distribution-spec/conformance@$CONFORMANCE_VERSION"); then
		printf '%s\n' "$CONFORMANCE_VERSION" >"$dir/.conformance.version"
		rm -rf "$tmp"
		return 0
	fi
	rm -rf "$tmp"
	log "could not build the conformance suite $CONFORMANCE_VERSION"
	return 1
}
if ! install_conformance && [[ ${CI:-} == true ]]; then
	log "error: CI=true and the conformance suite is missing: bundle serve's conformance test would fail"
	exit 1
fi

# program:package pairs, checked in this order.
deps=(
	docker-registry:docker-registry
	dockerd:docker.io
	skopeo:skopeo
	podman:podman
	ctr:containerd
	strace:strace
)

missing_programs() {
	local pair
	for pair in "${deps[@]}"; do
		if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
			printf '%s\n' "${pair}"
		fi
	done
}

mapfile -t missing < <(missing_programs)

if [[ ${#missing[@]} -eq 0 ]]; then
	for pair in "${deps[@]}"; do
		log "present: ${pair%%:*} ($(command -v "${pair%%:*}"))"
	done
	log "all test dependencies are present; nothing to do"
	exit 0
fi

packages=()
for pair in "${missing[@]}"; do
	log "missing: ${pair%%:*} (package ${pair#*:})"
	packages+=("${pair#*:}")
done

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		log "not root and no sudo: cannot install ${packages[*]}"
	fi
fi

install_status=0
if [[ $(id -u) -eq 0 || ${#sudo[@]} -gt 0 ]]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		log "apt-get not found: install ${packages[*]} by hand"
		install_status=1
	else
		log "running: apt-get update"
		"${sudo[@]}" apt-get update -q || install_status=$?
		if [[ ${install_status} -eq 0 ]]; then
			log "running: apt-get install -y ${packages[*]}"
			# The docker.io postinst tries to start the docker systemd unit, which
			# fails on machines without systemd (containers, CI sandboxes). That is
			# harmless: the tests start their own dockerd. So the exit status of
			# apt-get is not trusted here; what counts is whether the programs are
			# present afterwards, checked below.
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -q "${packages[@]}" ||
				install_status=$?
			if [[ ${install_status} -ne 0 ]]; then
				log "apt-get install exited ${install_status} (a postinst that cannot start a service does this); checking the programs"
			fi
		else
			log "apt-get update failed (exit ${install_status})"
		fi
	fi
fi

mapfile -t still < <(missing_programs)
if [[ ${#still[@]} -eq 0 ]]; then
	for pair in "${deps[@]}"; do
		log "present: ${pair%%:*} ($(command -v "${pair%%:*}"))"
	done
	log "installed: ${packages[*]}"
	exit 0
fi

for pair in "${still[@]}"; do
	log "still missing: ${pair%%:*} (package ${pair#*:})"
done
if [[ ${CI:-} == true ]]; then
	log "error: CI=true and test dependencies are missing; the integration tests would fail"
	exit 1
fi
log "warning: tests that need the missing programs will be skipped (they fail under CI=true)"
exit 0
