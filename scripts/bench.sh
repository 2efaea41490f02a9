#!/usr/bin/env bash
# bench.sh: bundle side by side with its peers, on the same images, in the same run.
#
#   scripts/bench.sh            full run: ~1 GiB of layers, 3 iterations, writes BENCHMARKS.md
#   scripts/bench.sh --smoke    tiny set, one iteration (CI runs this so the script cannot rot)
#   ITER=5 MIB=2048 scripts/bench.sh
#   SERVE_ONLY=1 scripts/bench.sh   case 7 alone (bundle serve vs distribution 2.8)
#
# Starts its own registries on 127.0.0.1 (Debian docker-registry) and its own
# dockerd (Debian docker.io, private dirs and socket, overlay2 where the kernel
# has it, else vfs; DOCKER_STORAGE=vfs to force), pushes a deterministic image
# set (internal/cmd/benchseed: compressible layers, like real ones), installs
# crane at a pinned version into a temp GOBIN, then times each case
# alternating tool A and tool B, and prints medians, the ratio bundle/peer,
# and peak RSS (GNU time). Every process it starts, it stops by PID.
#
# Cases: 1 create vs crane pull (loopback); 2 the same through a shaping
# proxy (a remote registry); 3 create with a warm cache vs cold; 4 verify vs
# sha256sum of the file, verify --deep vs gzip -dc | sha256sum of every layer;
# 5 load into a registry vs skopeo copy (oci-archive, one per image) and vs
# crane push (OCI layout, one per image), re-load; 6 load into docker vs
# docker load -i of the same file (and with BUNDLE_DOCKER_DECOMPRESS=0),
# re-load; 7 bundle serve of the bundle file vs distribution 2.8 serving the
# same images from its own storage (the source registry), the same client
# (internal/cmd/pullbench: PULLERS clients at once pulling every image, then
# HEADS concurrent HEAD+GET of manifests), with the servers' peak RSS.
#
# Under CI=true a missing peer (skopeo, dockerd, docker, crane) fails the run;
# elsewhere the cases that need it are skipped with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
root=$(pwd)

smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
# SERVE_ONLY=1: case 7 alone (bundle serve vs distribution), BENCHMARKS.md untouched.
serve_only=${SERVE_ONLY:-0}
if [[ $smoke -eq 1 ]]; then
	ITER=${ITER:-1}; MIB=${MIB:-8}; IMAGES=${IMAGES:-2}; TINY=${TINY:-3}
else
	ITER=${ITER:-3}; MIB=${MIB:-1024}; IMAGES=${IMAGES:-10}; TINY=${TINY:-40}
fi
CRANE_VERSION=v0.22.1

log() { printf 'bench: %s\n' "$*" >&2; }
# need PROGRAM WHAT: true when PROGRAM is there; under CI=true its absence is fatal.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [[ ${CI:-} == true ]]; then
		log "error: $1 is missing and CI=true: cannot run $2"
		exit 1
	fi
	log "warning: $1 is missing: skipping $2"
	return 1
}

command -v docker-registry >/dev/null 2>&1 || scripts/install-deps.sh
if [[ ! -x /usr/bin/time ]]; then
	sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
	"${sudo[@]}" apt-get install -y -q time >/dev/null || { log "GNU time (/usr/bin/time) is needed"; exit 1; }
fi
need docker-registry "every case" || exit 1
need curl "every case" || exit 1
have_skopeo=0; need skopeo "load vs skopeo copy" && have_skopeo=1
have_docker=0
if need dockerd "load into docker" && need docker "load into docker"; then
	if [[ $(id -u) -eq 0 ]]; then
		have_docker=1
	elif [[ ${CI:-} == true ]]; then
		log "error: dockerd needs root and CI=true"; exit 1
	else
		log "warning: not root: skipping load into docker"
	fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bundle-bench.XXXXXX")
pids=() # every process started and not yet stopped, stopped by PID at exit
dockerd_pid=""
ddir=""
stop_pid() {
	local p=$1
	kill "$p" 2>/dev/null || true
	for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
# stop_started PID: stops a process this script started and forgets it.
stop_started() {
	stop_pid "$1"
	local keep=() p
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}
cleanup() {
	[[ -n "$dockerd_pid" ]] && stop_pid "$dockerd_pid"
	for p in "${pids[@]}"; do stop_pid "$p"; done
	[[ -n "$ddir" ]] && rm -rf "$ddir"
	rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	log "no free port"; exit 1
}
wait_http() { # URL: waits up to 15 s for 200
	for _ in $(seq 1 150); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0
		sleep 0.1
	done
	log "$1 did not answer"; exit 1
}
# start_registry NAME: a registry with its data in $work/NAME; sets reg_pid, reg_host.
start_registry() {
	local name=$1 port
	port=$(free_port)
	reg_host="127.0.0.1:$port"
	cat >"$work/$name.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $work/$name}
  delete: {enabled: true}
http: {addr: $reg_host}
YML
	docker-registry serve "$work/$name.yml" >"$work/$name.log" 2>&1 &
	reg_pid=$!
	pids+=("$reg_pid")
	wait_http "http://$reg_host/v2/"
}

start_registry source
host=$reg_host
source_pid=$reg_pid

log "building bundle and tools"
go build -o "$work/bundle" .
go build -o "$work/benchseed" ./internal/cmd/benchseed
go build -o "$work/shapeproxy" ./internal/cmd/shapeproxy
go build -o "$work/pullbench" ./internal/cmd/pullbench
if ! GOBIN="$work/bin" go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"; then
	[[ ${CI:-} == true ]] && { log "error: cannot install crane $CRANE_VERSION"; exit 1; }
	log "warning: cannot install crane: skipping the crane cases"
fi
crane="$work/bin/crane"
have_crane=0; [[ -x $crane ]] && have_crane=1
bundle="$work/bundle"

log "pushing ${MIB} MiB over ${IMAGES} images + multi-arch + ${TINY} tiny images"
"$work/benchseed" -host "$host" -mib "$MIB" -images "$IMAGES" -tiny "$TINY" >"$work/refs.txt"
mapfile -t refs <"$work/refs.txt"
{
	echo "platforms: [linux/amd64]"
	echo "images:"
	sed 's/^/  - /' "$work/refs.txt"
} >"$work/images.yaml"

# A "remote" registry: 40 ms per request, 25 MB/s per connection (SHAPE_LATENCY, SHAPE_RATE).
"$work/shapeproxy" -upstream "$host" -latency "${SHAPE_LATENCY:-40ms}" -rate "${SHAPE_RATE:-26214400}" -max-time 4h >"$work/proxy.addr" &
pids+=("$!")
for _ in $(seq 1 50); do [[ -s "$work/proxy.addr" ]] && break; sleep 0.1; done
shaped=$(cat "$work/proxy.addr")
sed "s/$host/$shaped/" "$work/images.yaml" >"$work/shaped.yaml"

# measure NAME CMD...: runs CMD under GNU time; appends "NAME seconds maxrss_kib" to results.
measure() {
	local name=$1; shift
	/usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null 2>"$work/last.err" || {
		log "$name failed:"; cat "$work/last.err" >&2; exit 1
	}
	echo "$name $(cat "$work/time.out")" >>"$work/results"
	log "  $name: $(cut -d' ' -f1 "$work/time.out") s"
}
# run NAME: prep_NAME (not timed, when defined), then NAME timed (a function,
# run in a child bash so that GNU time sees its processes).
run() {
	if declare -F "prep_$1" >/dev/null; then "prep_$1"; fi
	measure "$1" bash -c "$1"
}
# ab I A B: cases A and B, A first on odd iterations.
ab() {
	if (( $1 % 2 )); then run "$2"; run "$3"; else run "$3"; run "$2"; fi
}
: >"$work/results"
export work bundle crane
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ $serve_only -eq 0 ]]; then
# ---- cases 1-4: create, verify -------------------------------------------
sed "s/$host/$shaped/" "$work/refs.txt" >"$work/shaped_refs.txt"
prep_create_cold() { rm -rf "$work/cache" "$work/out.tar" "$work/out.tar.sha256"; }
create_cold() { "$bundle" create -q -f "$work/images.yaml" -o "$work/out.tar" --cache "$work/cache"; }
prep_crane_pull() { rm -f "$work/crane.tar"; }
crane_pull() { mapfile -t r <"$work/refs.txt"; "$crane" pull --platform linux/amd64 "${r[@]}" "$work/crane.tar"; }
prep_create_shaped() { rm -rf "$work/cache-s" "$work/s.tar" "$work/s.tar.sha256"; }
create_shaped() { "$bundle" create -q -f "$work/shaped.yaml" -o "$work/s.tar" --cache "$work/cache-s"; }
prep_crane_shaped() { rm -f "$work/crane.tar"; }
crane_shaped() { mapfile -t r <"$work/shaped_refs.txt"; "$crane" pull --platform linux/amd64 "${r[@]}" "$work/crane.tar"; }
prep_create_warm() { rm -f "$work/out2.tar" "$work/out2.tar.sha256"; }
create_warm() { "$bundle" create -q -f "$work/images.yaml" -o "$work/out2.tar" --cache "$work/cache"; }
verify() { "$bundle" verify -q -i "$work/out.tar"; }
sha256() { sha256sum "$work/out.tar"; }
export -f create_cold crane_pull create_shaped crane_shaped create_warm verify sha256
for i in $(seq 1 "$ITER"); do
	log "create and verify: iteration $i/$ITER"
	if [[ $have_crane -eq 1 ]]; then
		ab "$i" create_cold crane_pull
		ab "$i" create_shaped crane_shaped
	else
		run create_cold
		run create_shaped
	fi
	rm -rf "$work/cache-s" "$work/s.tar" "$work/s.tar.sha256" "$work/crane.tar"
	run create_warm # 3. the nightly case
	rm -f "$work/out2.tar" "$work/out2.tar.sha256"
	ab "$i" verify sha256 # 4. the same file
done
rm -rf "$work/cache"

# 4b. verify --deep vs gzip -dc | sha256sum of every layer. The layers are
# extracted from the bundle once, outside the timing, so that the peer
# reads plain files from the page cache as verify reads the bundle; it runs
# one gzip -dc | sha256sum pipeline per layer, one after the other.
mkdir -p "$work/layers"
tar -xf "$work/out.tar" -C "$work/layers" blobs
: >"$work/layers.txt"
for f in "$work/layers/blobs/sha256/"*; do
	[[ $(head -c2 "$f" | od -An -tx1 | tr -d ' \n') == 1f8b ]] && echo "$f" >>"$work/layers.txt"
done
verify_deep() { "$bundle" verify -q --deep -i "$work/out.tar"; }
gzip_sha256() { while read -r f; do gzip -dc "$f" | sha256sum >/dev/null; done <"$work/layers.txt"; }
export -f verify_deep gzip_sha256
for i in $(seq 1 "$ITER"); do
	ab "$i" verify_deep gzip_sha256
done
rm -rf "$work/layers"

else
	log "SERVE_ONLY=1: the bundle made once, untimed; only case 7 runs"
	"$bundle" create -q -f "$work/images.yaml" -o "$work/out.tar" --cache "$work/cache"
	rm -rf "$work/cache"
fi

# ---- case 7: serve vs distribution ----------------------------------------
# The bundle file served in place by bundle serve, and the same images from
# the source registry's own storage (distribution 2.8, which the bundle was
# made from): the same client pulls every image (the linux/amd64 manifest of
# an index; every blob hashed and checked) with PULLERS clients at once, then
# sends HEADS concurrent HEAD+GET of manifests. Timed by wall clock; the RSS
# column is each server's peak (VmHWM, over its whole life: serve's includes
# its verify pass at startup, distribution's the pulls of case 1).
PULLERS=${PULLERS:-20}; HEADS=${HEADS:-200}
serve_host=127.0.0.1:$(free_port)
"$bundle" serve -i "$work/out.tar" --addr "$serve_host" 2>"$work/serve.log" &
serve_pid=$!
pids+=("$serve_pid")
wait_http "http://$serve_host/v2/"
# measure_server NAME PID HOST: one pullbench run against HOST; appends
# "NAME seconds peak_rss_kib_of_PID" to results and its JSON line to NAME.jsonl.
measure_server() {
	local name=$1 pid=$2 target=$3 t0 t1
	t0=$(date +%s.%N)
	"$work/pullbench" -registry "$target" -refs "$work/refs.txt" -strip "$host" -clients "$PULLERS" -heads "$HEADS" \
		>>"$work/$name.jsonl" 2>"$work/last.err" || { log "$name failed:"; tail -1 "$work/$name.jsonl" >&2; cat "$work/last.err" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$name $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') $(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")" >>"$work/results"
	log "  $name: $(tail -1 "$work/$name.jsonl")"
}
for i in $(seq 1 "$ITER"); do
	log "serve vs distribution, $PULLERS pullers: iteration $i/$ITER"
	if (( i % 2 )); then
		measure_server pull_serve "$serve_pid" "$serve_host"
		measure_server pull_dist "$source_pid" "$host"
	else
		measure_server pull_dist "$source_pid" "$host"
		measure_server pull_serve "$serve_pid" "$serve_host"
	fi
done
serve_rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$serve_pid/status")
stop_started "$serve_pid"
grep -q 'bundle: error' "$work/serve.log" && { log "bundle serve failed:"; cat "$work/serve.log" >&2; exit 1; }
median_field() { # FILE FIELD: the median of a numeric JSON field over the lines
	sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p" "$1" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
serve_mibs=$(median_field "$work/pull_serve.jsonl" mibPerSec)
dist_mibs=$(median_field "$work/pull_dist.jsonl" mibPerSec)
serve_heads=$(median_field "$work/pull_serve.jsonl" headSeconds)
dist_heads=$(median_field "$work/pull_dist.jsonl" headSeconds)

if [[ $serve_only -eq 0 ]]; then
# ---- case 5: load into a registry -------------------------------------------
# Each first load goes into a fresh, empty registry (restarted with no
# data), so that no tool finds blobs another pushed. The peers get the
# images one by one, from files made beforehand (not timed): skopeo an
# oci-archive per image (skopeo's OCI transport keeps OCI media types only,
# so it converts these Docker-media-type images and their digests change;
# bundle keeps them), crane an OCI layout per image (digests kept).
target_pid=""
fresh_target() {
	[[ -n "$target_pid" ]] && stop_started "$target_pid"
	rm -rf "$work/target"
	start_registry target
	target_pid=$reg_pid
	export target=$reg_host
}
mkdir -p "$work/peer"
n=0
: >"$work/peer/list"
for r in "${refs[@]}"; do
	n=$((n + 1))
	path=${r#"$host"/}
	if [[ $have_skopeo -eq 1 ]]; then
		skopeo copy -q --src-tls-verify=false "docker://$r" "oci-archive:$work/peer/$n.tar:$path" >/dev/null
	fi
	if [[ $have_crane -eq 1 ]]; then
		"$crane" pull --format=oci --platform linux/amd64 "$r" "$work/peer/$n.oci"
	fi
	echo "$n $path" >>"$work/peer/list"
done
prep_load_reg() { fresh_target; }
load_reg() { "$bundle" load -q -i "$work/out.tar" --to "docker://$target/bundle"; }
load_reg_again() { "$bundle" load -q -i "$work/out.tar" --to "docker://$target/bundle"; }
prep_skopeo_push() { fresh_target; }
skopeo_push() { while read -r n p; do skopeo copy -q --dest-tls-verify=false "oci-archive:$work/peer/$n.tar:$p" "docker://$target/skopeo/$p"; done <"$work/peer/list"; }
prep_crane_push() { fresh_target; }
crane_push() { while read -r n p; do "$crane" push "$work/peer/$n.oci" "$target/crane/$p" >/dev/null; done <"$work/peer/list"; }
export -f load_reg load_reg_again skopeo_push crane_push
for i in $(seq 1 "$ITER"); do
	log "load into a registry: iteration $i/$ITER"
	peers=()
	[[ $have_skopeo -eq 1 ]] && peers+=(skopeo_push)
	[[ $have_crane -eq 1 ]] && peers+=(crane_push)
	if (( i % 2 )); then order=(load_reg "${peers[@]}"); else order=("${peers[@]}" load_reg); fi
	for who in "${order[@]}"; do
		run "$who"
		[[ $who == load_reg ]] && run load_reg_again # everything present
	done
done
[[ -n "$target_pid" ]] && { stop_started "$target_pid"; target_pid=""; }
rm -rf "$work/peer" "$work/target"

# ---- case 6: load into docker -----------------------------------------------
docker_info=""
if [[ $have_docker -eq 1 ]]; then
	ddir=$(mktemp -d /tmp/bd.XXXXXX) # short: unix socket paths
	driver=${DOCKER_STORAGE:-vfs}
	if [[ -z ${DOCKER_STORAGE:-} ]] && grep -qw overlay /proc/filesystems; then driver=overlay2; fi
	printf '{"deprecated-key-path": "%s/key.json"}\n' "$ddir" >"$ddir/daemon.json"
	mkdir -p "$ddir/config" && echo '{}' >"$ddir/config/config.json"
	start_dockerd() {
		dockerd --config-file "$ddir/daemon.json" --iptables=false --ip-forward=false --ip-masq=false \
			--bridge=none --storage-driver="$1" --data-root "$work/docker" --exec-root "$ddir/exec" \
			-H "unix://$ddir/docker.sock" --pidfile "$ddir/docker.pid" >"$work/dockerd.log" 2>&1 &
		dockerd_pid=$!
		for _ in $(seq 1 300); do
			curl -s --unix-socket "$ddir/docker.sock" http://docker/_ping >/dev/null 2>&1 && return 0
			kill -0 "$dockerd_pid" 2>/dev/null || break
			sleep 0.1
		done
		stop_pid "$dockerd_pid"; dockerd_pid=""
		return 1
	}
	if ! start_dockerd "$driver"; then
		[[ $driver == vfs ]] && { log "dockerd did not start:"; tail -20 "$work/dockerd.log" >&2; exit 1; }
		log "dockerd with $driver did not start; trying vfs"
		rm -rf "$work/docker"; driver=vfs
		start_dockerd vfs || { log "dockerd did not start:"; tail -20 "$work/dockerd.log" >&2; exit 1; }
	fi
	export DOCKER_HOST="unix://$ddir/docker.sock" DOCKER_CONFIG="$ddir/config"
	docker_info="dockerd $(dockerd --version | sed 's/^Docker version //; s/,.*//') with $driver"
	log "$docker_info"
	rmi_all() {
		local ids
		ids=$(docker images -aq | sort -u)
		[[ -z "$ids" ]] || docker rmi -f $ids >/dev/null
		sync
	}
	prep_load_docker() { rmi_all; }
	load_docker() { "$bundle" load -q -i "$work/out.tar"; }
	load_docker_again() { "$bundle" load -q -i "$work/out.tar"; }
	prep_docker_load() { rmi_all; }
	docker_load() { docker load -q -i "$work/out.tar"; }
	docker_load_again() { docker load -q -i "$work/out.tar"; }
	# The same load with the gzip layers sent as they are (the daemon
	# decompresses them, and so the verify pass does too), for comparison.
	# number of cores (by default only with two cores per stream).
	prep_load_docker_gz() { rmi_all; }
	load_docker_gz() { BUNDLE_DOCKER_DECOMPRESS=0 "$bundle" load -q -i "$work/out.tar"; }
	export -f load_docker load_docker_again docker_load docker_load_again load_docker_gz
	for i in $(seq 1 "$ITER"); do
		log "load into docker: iteration $i/$ITER"
		order=(load_docker docker_load load_docker_gz)
		(( i % 3 == 2 )) && order=(docker_load load_docker_gz load_docker)
		(( i % 3 == 0 )) && order=(load_docker_gz load_docker docker_load)
		for who in "${order[@]}"; do
			run "$who"
			[[ $who == load_docker_gz ]] || run "${who}_again" # everything present
		done
	done
	rmi_all
	stop_pid "$dockerd_pid"; dockerd_pid=""
	rm -rf "$work/docker" 2>/dev/null || true
fi

fi # serve_only

# ---- the table ----------------------------------------------------------------
size=$(stat -c %s "$work/out.tar")
table=$(awk -v size="$size" -v pullers="$PULLERS" -v heads="$HEADS" -v serve_rss="$serve_rss" -v serve_mibs="$serve_mibs" -v dist_mibs="$dist_mibs" -v serve_heads="$serve_heads" -v dist_heads="$dist_heads" '
	{ t[$1] = t[$1] " " $2; r[$1] = ($3 > r[$1] ? $3 : r[$1]) }
	function median(s,   a, n, i, j, x) {
		n = split(s, a, " ")
		for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
		return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	function row(label, a, peer, b, target,   ma, mb, ratio, verdict) {
		if (!(a in t) || !(b in t)) return
		ma = median(t[a]); mb = median(t[b]); ratio = (mb > 0 ? ma / mb : 0)
		verdict = "-"
		if (target != "") verdict = (ratio <= target + 0 ? "yes" : "**no**") " (≤ " target ")"
		printf "| %s | %.2f | %s | %.2f | %.2f | %s | %.1f | %.1f |\n", label, ma, peer, mb, ratio, verdict, r[a] / 1024, r[b] / 1024
	}
	END {
		printf "| case | bundle median s | peer | peer median s | ratio | target holds | bundle peak RSS MiB | peer peak RSS MiB |\n"
		printf "|---|---|---|---|---|---|---|---|\n"
		row("1. create (cold cache) vs crane pull", "create_cold", "crane pull", "crane_pull", "1.0")
		row("2. create vs crane pull, shaped (40 ms, 25 MB/s per connection)", "create_shaped", "crane pull", "crane_shaped", "0.5")
		row("3. create, warm cache vs cold", "create_warm", "create cold", "create_cold", "0.2")
		row("4. verify vs sha256sum of the file", "verify", "sha256sum", "sha256", "0.4")
		row("4. verify --deep vs gzip -dc \\| sha256sum of every layer", "verify_deep", "gzip -dc \\| sha256sum", "gzip_sha256", "")
		fast = ""
		if ("skopeo_push" in t) fast = "skopeo_push"
		if ("crane_push" in t && (fast == "" || median(t["crane_push"]) < median(t[fast]))) fast = "crane_push"
		row("5. load → registry vs skopeo copy (oci-archive per image)", "load_reg", "skopeo copy", "skopeo_push", (fast == "skopeo_push" ? "1.0" : ""))
		row("5. load → registry vs crane push (OCI layout per image)", "load_reg", "crane push", "crane_push", (fast == "crane_push" ? "1.0" : ""))
		row("5. load → registry, re-load (all present) vs first load", "load_reg_again", "load first", "load_reg", "0.1")
		row("6. load → docker vs docker load -i (same file)", "load_docker", "docker load -i", "docker_load", "0.75")
		row("6. load → docker, gzip layers sent as they are, vs docker load -i", "load_docker_gz", "docker load -i", "docker_load", "")
		row("6. load → docker, re-load (all present) vs docker load -i re-load", "load_docker_again", "docker load -i again", "docker_load_again", "")
		row("6. load → docker, re-load vs first load", "load_docker_again", "load first", "load_docker", "")
		row("7. serve: " pullers " clients pull every image, vs distribution 2.8 (its own storage)", "pull_serve", "distribution 2.8", "pull_dist", "1.0")
		# bundle load verifies the whole bundle (deep: every layer
		# decompressed) before it writes anything; a re-load is about that
		# pass alone, so first load − re-load is the loading itself.
		rss = 0; worst = ""
		for (k in r) if (k ~ /^(create|verify|load)/ && r[k] > rss) { rss = r[k]; worst = k }
		printf "\nbundle file: %.1f MiB.", size / 1048576
		if (worst != "") printf " Largest peak RSS of a bundle command: %.1f MiB (%s; target ≤ 100: %s).", rss / 1024, worst, (rss <= 100 * 1024 ? "holds" : "**does not hold**")
		printf "\n"
		printf "bundle serve with %s concurrent pullers: %.0f MiB/s (distribution 2.8: %.0f MiB/s); %s concurrent HEAD+GET of manifests in %.2f s (distribution: %.2f s); peak RSS of the server %.1f MiB (target ≤ 100: %s).\n", pullers, serve_mibs, dist_mibs, heads, serve_heads, dist_heads, serve_rss / 1024, (serve_rss <= 100 * 1024 ? "holds" : "**does not hold**")
	}' "$work/results")
echo
echo "$table"

if [[ $smoke -eq 0 && $serve_only -eq 0 ]]; then
	{
		echo "# Benchmarks"
		echo
		echo "Made by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d): $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB,"
		echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); Linux $(uname -r); $(go version | cut -d' ' -f3);"
		echo "$(df -T "$work" | awk 'NR==2{print $2}') on $(df "$work" | awk 'NR==2{print $1}')."
		echo "Loopback registry (Debian docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}')), ${MIB} MiB of gzip layers"
		echo "(compressing about 2.8:1) over ${IMAGES} images sharing a base, one with 24 layers, a multi-arch index,"
		echo "${TINY} tiny images; ${ITER} iterations, tools alternating, medians; ratio = bundle / peer (lower is better)."
		echo "Peers: crane ${CRANE_VERSION}, $(skopeo --version 2>/dev/null || echo 'no skopeo'), ${docker_info:-no dockerd}."
		echo "Load average (1, 5, 15 min) at the start of the timed cases: ${load_start}; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "(other jobs share this machine: wall-clock numbers are noisy, hence the alternation and the medians)."
		echo
		echo "$table"
		echo
		echo "How the cases run (see scripts/bench.sh):"
		echo "- create: a fresh cache and output each cold run; crane pulls the same references for linux/amd64 into one tarball."
		echo "- verify --deep vs gzip: the layers are extracted from the bundle once, untimed; the peer runs"
		echo '  `gzip -dc LAYER | sha256sum` for each, one after the other, from the page cache (verify also hashes'
		echo "  the file and every compressed blob, and checks each diffID against its config)."
		echo "- registry: each first load into a fresh, empty registry; skopeo copies one oci-archive per image and"
		echo "  crane pushes one OCI layout per image, both made beforehand (untimed). skopeo's OCI transport keeps"
		echo "  OCI media types only, so it converts these Docker-media-type images (new digests); crane and bundle"
		echo "  keep the registry's digests."
		echo "- docker: the daemon emptied (docker rmi of every image) before each first load; the same bundle file"
		echo "  for both tools. bundle sends a local daemon the gzip layers decompressed by itself (its verify pass"
		echo "  then leaves them to the load); the \"sent as they are\" row turns that off (BUNDLE_DOCKER_DECOMPRESS=0)."
		echo "- re-load: the same command again, everything present."
		echo "- serve: bundle serve of the bundle file and the source registry (distribution 2.8, its own storage) serve the"
		echo "  same images to the same client (internal/cmd/pullbench): ${PULLERS} clients at once each pull every image (the"
		echo "  linux/amd64 manifest of an index, every blob hashed), then ${HEADS} concurrent HEAD+GET of manifests; RSS is"
		echo "  each server's peak over its life (VmHWM; serve's includes its verify pass at startup)."
		echo
		echo "Every sample, in the order run (seconds):"
		echo
		awk '{ s[$1] = s[$1] " " $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
			END { for (i = 1; i <= n; i++) printf "- %s:%s\n", order[i], s[order[i]] }' "$work/results"
	} >BENCHMARKS.md
	log "wrote BENCHMARKS.md"
fi
