#!/usr/bin/env bash
# fuzz.sh: run every fuzz target of the module, one at a time (go test -fuzz
# takes one target per package), for FUZZTIME each (default 10000x: a count of
# executions, not a duration; see test.sh for why). `make fuzz` and
# scripts/test.sh call it. FUZZTIME=200000x (or 60s) for a longer run.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== fuzz (${FUZZTIME:=10000x} each)"
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(' . | sort | while read -r f; do
	pkg="./$(dirname "${f#./}")"
	grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //' | while read -r fn; do
		echo "-- $pkg $fn"
		go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=50x "$pkg"
	done
done
