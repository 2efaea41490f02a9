#!/usr/bin/env bash
# bench.sh: bundle side by side with its peers, on the same images, in the same run.
#
#   scripts/bench.sh            full run: ~1 GiB of layers, 3 iterations, writes BENCHMARKS.md
#   scripts/bench.sh --smoke    tiny set, one iteration (CI runs this so the script cannot rot)
#   ITER=5 MIB=2048 scripts/bench.sh
#
# Starts its own registry on 127.0.0.1 (Debian docker-registry), pushes a
# deterministic image set (internal/cmd/benchseed), installs crane at a pinned
# version into a temp GOBIN, then times each case alternating tool A and tool B,
# and prints medians, the ratio bundle/peer, and peak RSS (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
root=$(pwd)

smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if [[ $smoke -eq 1 ]]; then
	ITER=${ITER:-1}; MIB=${MIB:-8}; IMAGES=${IMAGES:-2}; TINY=${TINY:-3}
else
	ITER=${ITER:-3}; MIB=${MIB:-1024}; IMAGES=${IMAGES:-10}; TINY=${TINY:-40}
fi
CRANE_VERSION=v0.22.1

command -v docker-registry >/dev/null 2>&1 || scripts/install-deps.sh
if [[ ! -x /usr/bin/time ]]; then
	sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
	"${sudo[@]}" apt-get install -y -q time >/dev/null || { echo "bench: GNU time (/usr/bin/time) is needed" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bundle-bench.XXXXXX")
reg_pid=""
proxy_pid=""
cleanup() {
	if [[ -n "$proxy_pid" ]]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
	if [[ -n "$reg_pid" ]]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

port=""
for _ in $(seq 1 50); do
	p=$((20000 + RANDOM % 20000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
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

echo "bench: building bundle and tools" >&2
go build -o "$work/bundle" .
go build -o "$work/seed" ./internal/cmd/seed
go build -o "$work/benchseed" ./internal/cmd/benchseed
go build -o "$work/shapeproxy" ./internal/cmd/shapeproxy
GOBIN="$work/bin" go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
crane="$work/bin/crane"
bundle="$work/bundle"

"$work/seed" "$host" >/dev/null # waits for the registry
echo "bench: pushing ${MIB} MiB over ${IMAGES} images + multi-arch + ${TINY} tiny images" >&2
"$work/benchseed" -host "$host" -mib "$MIB" -images "$IMAGES" -tiny "$TINY" >"$work/refs.txt"
mapfile -t refs <"$work/refs.txt"
{
	echo "platforms: [linux/amd64]"
	echo "images:"
	sed 's/^/  - /' "$work/refs.txt"
} >"$work/images.yaml"

# A "remote" registry: 40 ms per request, 25 MB/s per connection (SHAPE_LATENCY, SHAPE_RATE).
"$work/shapeproxy" -upstream "$host" -latency "${SHAPE_LATENCY:-40ms}" -rate "${SHAPE_RATE:-26214400}" -max-time 2h >"$work/proxy.addr" &
proxy_pid=$!
for _ in $(seq 1 50); do [[ -s "$work/proxy.addr" ]] && break; sleep 0.1; done
shaped=$(cat "$work/proxy.addr")
sed "s/$host/$shaped/" "$work/images.yaml" >"$work/shaped.yaml"
mapfile -t shaped_refs < <(sed "s/$host/$shaped/" "$work/refs.txt")

# measure NAME CMD...: runs CMD under GNU time; appends "NAME seconds maxrss_kib" to results.
measure() {
	local name=$1; shift
	/usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null 2>"$work/last.err" || {
		echo "bench: $name failed:" >&2; cat "$work/last.err" >&2; exit 1
	}
	echo "$name $(cat "$work/time.out")" >>"$work/results"
}
: >"$work/results"

for i in $(seq 1 "$ITER"); do
	echo "bench: iteration $i/$ITER" >&2
	rm -rf "$work/cache" "$work/out.tar" "$work/crane.tar"
	# 1. cold create vs crane pull (same images, same platform), alternating order.
	if (( i % 2 )); then
		measure create_cold "$bundle" create -q -f "$work/images.yaml" -o "$work/out.tar" --cache "$work/cache"
		measure crane_pull "$crane" pull --platform linux/amd64 "${refs[@]}" "$work/crane.tar"
	else
		measure crane_pull "$crane" pull --platform linux/amd64 "${refs[@]}" "$work/crane.tar"
		measure create_cold "$bundle" create -q -f "$work/images.yaml" -o "$work/out.tar" --cache "$work/cache"
	fi
	# 2. through the shaped proxy (a remote registry), alternating order.
	rm -rf "$work/cache-s"
	if (( i % 2 )); then
		measure create_shaped "$bundle" create -q -f "$work/shaped.yaml" -o "$work/s.tar" --cache "$work/cache-s"
		measure crane_shaped "$crane" pull --platform linux/amd64 "${shaped_refs[@]}" "$work/crane.tar"
	else
		measure crane_shaped "$crane" pull --platform linux/amd64 "${shaped_refs[@]}" "$work/crane.tar"
		measure create_shaped "$bundle" create -q -f "$work/shaped.yaml" -o "$work/s.tar" --cache "$work/cache-s"
	fi
	rm -rf "$work/cache-s" "$work/s.tar" "$work/s.tar.sha256" "$work/crane.tar"
	# 3. warm cache (the nightly case).
	measure create_warm "$bundle" create -q -f "$work/images.yaml" -o "$work/out2.tar" --cache "$work/cache"
	# 4. verify vs sha256sum of the same file.
	if "$bundle" verify --help >/dev/null 2>&1; then
		measure sha256sum sha256sum "$work/out.tar"
		measure verify "$bundle" verify -q -i "$work/out.tar"
	fi
	rm -f "$work/crane.tar" "$work/out2.tar" "$work/out2.tar.sha256"
done

size=$(stat -c %s "$work/out.tar")
table=$(awk -v size="$size" '
	{ t[$1] = t[$1] " " $2; r[$1] = ($3 > r[$1] ? $3 : r[$1]) }
	function median(s,   a, n, i, j, x) {
		n = split(s, a, " ")
		for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
		return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	END {
		printf "| case | bundle median s | peer | peer median s | ratio | bundle peak RSS MiB | peer peak RSS MiB |\n"
		printf "|---|---|---|---|---|---|---|\n"
		row("create (cold cache) vs crane pull", "create_cold", "crane pull", "crane_pull")
		row("create vs crane pull, shaped (40 ms, 25 MB/s per connection)", "create_shaped", "crane pull", "crane_shaped")
		row("create, warm cache vs cold", "create_warm", "create cold", "create_cold")
		if ("verify" in t) row("verify vs sha256sum", "verify", "sha256sum", "sha256sum")
		printf "\nbundle file: %.1f MiB\n", size / 1048576
	}
	function row(label, a, peer, b) {
		ma = median(t[a]); mb = median(t[b])
		printf "| %s | %.2f | %s | %.2f | %.2f | %.1f | %.1f |\n", label, ma, peer, mb, (mb > 0 ? ma / mb : 0), r[a] / 1024, r[b] / 1024
	}' "$work/results")
echo
echo "$table"

if [[ $smoke -eq 0 ]]; then
	{
		echo "# Benchmarks"
		echo
		echo "Made by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d): $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB,"
		echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(go version | cut -d' ' -f3)."
		echo "Loopback registry (Debian docker-registry), ${MIB} MiB over ${IMAGES} images sharing a base,"
		echo "one with 24 layers, a multi-arch index, ${TINY} tiny images; ${ITER} iterations, tools alternating;"
		echo "crane ${CRANE_VERSION}. Medians; ratio = bundle / peer (lower is better)."
		echo
		echo "$table"
	} >BENCHMARKS.md
	echo "bench: wrote BENCHMARKS.md" >&2
fi
