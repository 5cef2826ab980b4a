#!/usr/bin/env bash
# Benchmark: otad's writer alone, against SQLite's own statements, same run.
#
#   tests/bench/writer.sh [BUILD_DIR]      (make bench)
#
# The other check figures share two cores between wrk, nginx and otad,
# and move with the host; this one runs nothing else. For fleets of
# 100,000 and 1,000,000 devices, 300,000 check-ins of devices picked at
# random are recorded twice on copies of the same registry: by otad's
# writer thread (queued as the HTTP threads queue them) and by SQLite
# running the statements the writer runs for each, in device order and
# 4,096 to a transaction as the writer commits a batch
# (build/bench/writer, tests/bench/writer.c). The figure is CPU time a
# check-in; the ratio is what otad's writer costs against the floor
# SQLite sets.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ROOT=$PWD
. tests/bench/lib.sh
CHECKINS=${CHECKINS:-300000}

echo "otad $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $CHECKINS check-ins of devices at random, $(nproc) cores"
printf '%-52s %14s %14s %8s  %s\n' "figure" "otad" "baseline" "ratio" "bar"
for fleet in 100,000 1,000,000; do
	name=$fleet
	fleet=${fleet//,/}
	fleet_otad 0.14.3 "$fleet"
	cp "$work/state/otad.db" "$work/copy.db"
	"$BUILD/bench/writer" "$work/state/otad.db" "$work/copy.db" \
		"$fleet" "$CHECKINS" > "$work/writer.out" 2> "$work/writer.err" ||
		{ cat "$work/writer.err"; exit 1; }
	read -r _ o _ s < "$work/writer.out"
	figure "writer alone, $name devices / SQLite's statements" \
		"$o us" "$s us" "$(ratio "$o" "$s")" "-"
	rm -f "$work/copy.db"*
done
