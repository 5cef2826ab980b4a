#!/usr/bin/env bash
# Benchmark: check throughput while a staged rollout is active, against
# the same fleet with nothing offered, in the same run.
#
#   tests/bench/rollout.sh [BUILD_DIR]      (make bench)
#
# 100,000 registered devices on 1.0.0 poll with distinct ids. First with
# no rollout (every answer a 304), then with a rollout of 2.0.0 whose
# canary group (10 devices) and 1% ring are open: each check now reads the
# snapshot's stages, hashes the device into the rings, and 1% get the
# image. Prints both rates and the ratio. Loopback only; bounded runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ROOT=$PWD
. tests/bench/lib.sh

fleet_otad 1.0.0
python3 -c 'import sys; sys.path.insert(0, "tests/integration")
import imagebuild
open(sys.argv[1], "wb").write(imagebuild.build(version="2.0.0"))' \
	"$work/app.bin"
sha=$("$BUILD/otactl" artifact add "$work/app.bin" 2>/dev/null)
"$BUILD/otactl" key generate bench >/dev/null 2>&1
"$BUILD/otactl" artifact sign "$sha" --key bench >/dev/null 2>&1
"$BUILD/otactl" release create 2.0.0 --artifact "$sha" >/dev/null 2>&1
sqlite3 "$work/state/otad.db" "UPDATE device SET grp = 'canary'
	WHERE id IN ('dev-0','dev-1','dev-2','dev-3','dev-4','dev-5','dev-6',
	'dev-7','dev-8','dev-9')"
start_otad

echo "otad $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $DEVICES devices, $(nproc) cores, wrk -t$THREADS -c$CONNS, $DURATION each"
none=$(recorded_checks "$CONNS" -s "$(devices_lua 1.0.0 keep-alive)" "http://127.0.0.1:$port")

rid=$("$BUILD/otactl" --json rollout create 2.0.0 --stages \
	"group=canary,soak=1h,min=10; 1%,soak=1h,min=100; 100%" 2>/dev/null |
	sed -n 's/.*"id": \([0-9]*\).*/\1/p')
"$BUILD/otactl" rollout start "$rid" >/dev/null 2>&1
# open the 1% ring by hand, as an operator may (audited, seen in a second)
sqlite3 "$work/state/otad.db" "UPDATE rollout SET stage = 1 WHERE id = $rid"
sleep 1.5
offers0=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "otad_offers_total" { print $2 }')
active=$(recorded_checks "$CONNS" -s "$(devices_lua 1.0.0 keep-alive)" "http://127.0.0.1:$port")
offers1=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "otad_offers_total" { print $2 }')
stop_otad

echo "offers made while the rollout was active: $((offers1 - offers0))"
figure "check, rollout active (canary + 1%) / nothing offered" "$(printf '%.0f r/s' "$active")" "$(printf '%.0f r/s' "$none")" "$(ratio "$active" "$none")" ">= 0.9"
