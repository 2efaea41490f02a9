#!/usr/bin/env bash
# install-deps.sh: install the programs the integration tests need, when missing.
#
#   docker-registry (CNCF distribution 2.8)  package docker-registry
#   dockerd (Docker Engine 20.10)            package docker.io
#   skopeo                                   package skopeo
#   podman                                   package podman
#   ctr (containerd)                         package containerd
#   strace (proves verify/load open no connection)  package strace
#   tmux (create's progress bar on a real terminal)  package tmux
#
# Then scripts/tools.sh builds, once, the Go-installed tools into the tool dir
# (cosign, oras, crane, the OCI conformance suite, Engine 29, containerd 2.4,
# runc): see that script.
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

# program:package pairs, checked in this order.
deps=(
	docker-registry:docker-registry
	dockerd:docker.io
	skopeo:skopeo
	podman:podman
	ctr:containerd
	strace:strace
	tmux:tmux
)

missing_programs() {
	local pair
	for pair in "${deps[@]}"; do
		if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
			printf '%s\n' "${pair}"
		fi
	done
}

# shellcheck source=tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"

# go_tools builds the Go-installed tools; under CI=true a failure fails.
go_tools() {
	if build_tools; then
		log "go tools present in $(tooldir)"
		return 0
	fi
	if [[ ${CI:-} == true ]]; then
		log "error: CI=true and a Go-installed test tool could not be built"
		exit 1
	fi
	log "warning: a Go-installed test tool is missing; tests that need it will be skipped (they fail under CI=true)"
}

# The race detector needs cgo, and cgo a C compiler: a fresh host with only
# Go has none, and `go test -race` would stop with "-race requires cgo".
cgo_ok() { [[ $(go env CGO_ENABLED 2>/dev/null) == 1 ]] && command -v "$(go env CC 2>/dev/null || echo gcc)" >/dev/null 2>&1; }
if ! cgo_ok; then
	deps+=(gcc:gcc)
fi

mapfile -t missing < <(missing_programs)
# libc6-dev comes with gcc's usual install (it is a Recommends); ask for it
# explicitly so a minimal apt config still gets the headers cgo needs.
for pair in "${missing[@]}"; do
	if [[ $pair == gcc:gcc ]]; then missing+=(libc-headers:libc6-dev); fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
	for pair in "${deps[@]}"; do
		log "present: ${pair%%:*} ($(command -v "${pair%%:*}"))"
	done
	log "all packaged test dependencies are present"
	go_tools
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
	go_tools
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
