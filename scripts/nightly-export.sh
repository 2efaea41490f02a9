#!/usr/bin/env bash
# nightly-export.sh: the online side of a nightly air-gap export.
#
# Writes DIR/NAME-YYYY-MM-DD.tar (date-stamped, UTC) from a manifest file:
#   - a delta against the newest earlier bundle in DIR (bundle create --base):
#     only the layers that bundle did not carry or reference; the first run
#     (or --full) writes a full bundle;
#   - nothing at all when every image still has the digests of that bundle
#     (bundle create --skip-unchanged): the log says "unchanged";
#   - then verifies what it wrote, and keeps the newest KEEP bundles (with
#     their .sha256, volumes and lockfiles), removing older ones.
# Exits non-zero, with a FAILED line in the log, when anything fails; a failed
# run leaves no bundle under the final name (bundle create writes atomically).
#
# The offline side loads the bundles in date order (each delta needs what the
# ones before it brought). One that missed bundles older than KEEP needs a
# full bundle: run with --full once.
#
# Usage: nightly-export.sh -f images.yaml [-d DIR] [-n NAME] [-k KEEP]
#                          [--split SIZE] [--gzip] [--full] [-- CREATE-FLAGS…]
# Environment: BUNDLE (the bundle binary, default: bundle on PATH),
# EXPORT_DATE (YYYY-MM-DD instead of today, for tests and catch-up runs).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }

file="" dir="." name="images" keep=14 split="" gzip="" full=""
extra=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	-f) file="${2:?-f needs a manifest file}"; shift 2 ;;
	-d) dir="${2:?-d needs a directory}"; shift 2 ;;
	-n) name="${2:?-n needs a name}"; shift 2 ;;
	-k) keep="${2:?-k needs a number}"; shift 2 ;;
	--split) split="${2:?--split needs a size}"; shift 2 ;;
	--gzip) gzip=1; shift ;;
	--full) full=1; shift ;;
	--) shift; extra=("$@"); break ;;
	-h|--help) usage ;;
	*) echo "nightly-export: unknown argument $1" >&2; usage ;;
	esac
done
[[ -n "$file" ]] || usage
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || { echo "nightly-export: -k must be a number of bundles, 1 or more" >&2; exit 2; }
bundle="${BUNDLE:-bundle}"
today="${EXPORT_DATE:-$(date -u +%F)}"
[[ "$today" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || { echo "nightly-export: EXPORT_DATE=$today is not YYYY-MM-DD" >&2; exit 2; }

log() { printf '%s nightly-export: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
step="starting"
trap 'rc=$?; log "FAILED ($step), exit $rc; no bundle was written for $today"; exit $rc' ERR

ext=".tar"
[[ -n "$gzip" ]] && ext=".tar.gz"
out="$dir/$name-$today$ext"

# The bundles in DIR, oldest first: their base names (a volume set by its
# base name), whatever their extension.
bundles() {
	local f base seen=""
	for f in "$dir/$name"-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].tar \
		"$dir/$name"-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].tar.gz \
		"$dir/$name"-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].tar.001 \
		"$dir/$name"-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].tar.gz.001; do
		[[ -e "$f" ]] || continue
		base="${f%.001}"
		case " $seen " in *" $base "*) continue ;; esac
		seen="$seen $base"
		printf '%s\n' "$base"
	done | awk -F/ '{ print $NF "\t" $0 }' | sort | cut -f2-
}

step="checking $dir"
mkdir -p "$dir"
if [[ -e "$out" || -e "$out.001" ]]; then
	log "$out exists already: nothing to do"
	exit 0
fi

prev=""
if [[ -z "$full" ]]; then
	while IFS= read -r b; do
		d="${b##*/$name-}"
		d="${d%%.tar*}"
		if [[ "$d" < "$today" ]]; then prev="$b"; fi
	done < <(bundles)
fi

args=(create -q --json -f "$file" -o "$out" --lock "$dir/$name-$today.lock")
[[ -n "$split" ]] && args+=(--split "$split")
[[ -n "$gzip" ]] && args+=(--gzip)
if [[ -n "$prev" ]]; then
	args+=(--base "$prev" --skip-unchanged)
	log "exporting $file to $out: a delta against $prev"
else
	log "exporting $file to $out: a full bundle"
fi

step="bundle create"
summary=$("$bundle" "${args[@]}" "${extra[@]}")
field() { printf '%s' "$summary" | sed -n "s/^  \"$1\": \\([^,]*\\),\\{0,1\\}\$/\\1/p" | head -n1; }

if [[ "$(field unchanged)" == "true" ]]; then
	rm -f "$dir/$name-$today.lock"
	log "unchanged: every image has the digests of $prev; nothing written"
else
	step="bundle verify"
	"$bundle" verify -q -i "$out"
	images=$(printf '%s' "$summary" | grep -c '"ref":' || true)
	ext_layers=$(field external)
	if [[ -n "$prev" ]]; then
		log "wrote $out: $images images, $(field fileBytes) bytes; a delta: ${ext_layers:-0} layers left out (the offline side has them from $prev and earlier bundles)"
	else
		log "wrote $out: $images images, $(field fileBytes) bytes; a full bundle"
	fi
fi

# Keep the newest KEEP bundles.
step="removing old bundles"
mapfile -t all < <(bundles)
for ((i = 0; i < ${#all[@]} - keep; i++)); do
	b="${all[$i]}"
	stem="${b%.tar*}"
	rm -f "$b" "$b".[0-9][0-9][0-9] "$b.sha256" "$stem.lock" "$(dirname "$b")/.$(basename "$b").lock"
	log "removed $b (keeping the newest $keep)"
done
# bundle create's lock files (.NAME-DATE.tar.lock) of days before the
# oldest bundle kept: of runs that wrote nothing, or of removed bundles.
if [[ ${#all[@]} -ge $keep ]]; then
	oldest="${all[${#all[@]} - keep]##*/$name-}"
	oldest="${oldest%%.tar*}"
	for f in "$dir/.$name"-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].tar*.lock; do
		[[ -e "$f" ]] || continue
		d="${f##*/.$name-}"
		d="${d%%.tar*}"
		if [[ "$d" < "$oldest" ]]; then rm -f "$f"; fi
	done
fi
log "done"
