#!/usr/bin/env bash
# demo.sh: the main job end to end, with no internet: start a local registry
# (Debian's docker-registry on 127.0.0.1), push test images to it, then
#   bundle create → bundle list → bundle verify → bundle load
# and show that the loaded digests equal the source registry's.
# Stops the registry it started (by PID) and removes its temp dir on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v docker-registry >/dev/null 2>&1; then
	scripts/install-deps.sh
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bundle-demo.XXXXXX")
reg_pid=""
cleanup() {
	if [[ -n "$reg_pid" ]]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port.
port=""
for _ in $(seq 1 50); do
	p=$((20000 + RANDOM % 20000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n "$port" ]] || { echo "demo: no free port found" >&2; exit 1; }
host="127.0.0.1:$port"

cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $work/registry}
  delete: {enabled: true}
http: {addr: $host}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build bundle"
go build -o "$work/bundle" .
go build -o "$work/digest" ./internal/cmd/digest
bundle="$work/bundle"

step "push test images to the registry at $host"
go run ./internal/cmd/seed "$host" | tee "$work/refs.txt"

step "images.yaml"
{
	echo "platforms: [linux/amd64, linux/arm64]"
	echo "images:"
	sed 's/^/  - /' "$work/refs.txt"
} >"$work/images.yaml"
cat "$work/images.yaml"

step "bundle create -f images.yaml -o images.tar"
"$bundle" create -f "$work/images.yaml" -o "$work/images.tar" --cache "$work/cache"
ls -l "$work/images.tar" "$work/images.tar.sha256"

step "bundle list -i images.tar"
"$bundle" list -i "$work/images.tar"

step "bundle verify -i images.tar --deep"
"$bundle" verify -i "$work/images.tar" --deep

step "bundle load -i images.tar --to docker://$host/mirror"
"$bundle" load -i "$work/images.tar" --to "docker://$host/mirror"

step "bundle load -i images.tar --to oci:DIR"
"$bundle" load -i "$work/images.tar" --to "oci:$work/oci"

step "digests: source registry vs loaded copy"
fail=0
while read -r ref; do
	[[ "$ref" == *@* ]] && continue
	path=${ref#"$host"/}
	src=$("$work/digest" "$ref")
	dst=$("$work/digest" "$host/mirror/$path")
	if [[ "$src" == "$dst" ]]; then s=same; else s=DIFFERENT; fail=1; fi
	printf '%-40s %s %s\n' "$path" "$src" "$s"
done <"$work/refs.txt"
[[ $fail -eq 0 ]] || { echo "demo: digests differ" >&2; exit 1; }
step "demo passed"
