#!/usr/bin/env bash
# Benchmark: otad's check path and image download against nginx, same run,
# with load shaped like a fleet's: devices poll in random order.
#
#   tests/bench/check.sh [BUILD_DIR]      (make bench)
#
# otad runs with $DEVICES (100,000) registered devices and WLED 0.14.3
# published and signed:
#  - check: wrk polls /firmware/check as the fleet's devices, picked at
#    random (the 304 path), vs nginx "return 304" to the very same
#    requests (one wrk script makes both, so the client's cost is the
#    same on each side of the ratio), nginx run before otad and after,
#    the mean of the two its figure: otad's figure is of checks recorded
#    per second (the writer's catching up included); the same with the
#    devices in sequence, which flatters the registry (rows updated in id
#    order share a few hot pages);
#  - check, Connection: close (Arduino HTTPUpdate polls this way);
#  - download: wrk fetches the image (devices on 0.14.2), vs nginx
#    serving the same file with sendfile;
#  - ESPHome's manifest poll (a library that never reports), random
#    order, vs the check above: checks recorded per second.
# Then the fleet's size: 10,000 devices and 1,000,000, random order, the
# same check, with p50 and p99 latency at a million (and how often the
# host stopped a core meanwhile, which no thread inside sees), and the ratio of
# the two again with each fleet's rate over nginx's right after it.
# Fails if the registry counted fewer checks than otad answered.
# Loopback only; bounded runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ROOT=$PWD
. tests/bench/lib.sh
IMAGE=$SHARED/firmware/wled-esp32/0.14.3.bin

# publish_wled: WLED 0.14.3 added, signed, published, as in production
publish_wled() {
	local sha
	sha=$("$BUILD/otactl" artifact add "$IMAGE" --version 0.14.3 2>/dev/null)
	"$BUILD/otactl" key generate bench >/dev/null 2>&1
	"$BUILD/otactl" artifact sign "$sha" --key bench >/dev/null 2>&1
	"$BUILD/otactl" release create 0.14.3 --artifact "$sha" >/dev/null 2>&1
	"$BUILD/otactl" release publish 0.14.3 >/dev/null 2>&1
}

# ---- nginx, the baseline ----
mkdir -p "$work/www"
ln -s "$IMAGE" "$work/www/fw.bin"
nport=$(free_port)
start_nginx "http://127.0.0.1:$nport/firmware/check" "	sendfile on;
	tcp_nopush on;
	server {
		listen 127.0.0.1:$nport;
		location = /firmware/check { return 304; }
		location = /fw.bin { root $work/www; }
	}"

bytes_per_s() {
	awk '/^Transfer\/sec:/ {
		v = $2; u = substr(v, length(v) - 1); n = v + 0
		if (u == "GB") n *= 1024 * 1024 * 1024
		else if (u == "MB") n *= 1024 * 1024
		else if (u == "KB") n *= 1024
		printf "%.0f\n", n }'
}

# ---- otad with a fleet of $DEVICES on 0.14.3 ----
fleet_otad 0.14.3
publish_wled
start_otad
rows_loaded

echo "otad $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $DEVICES devices, $(nproc) cores, wrk -t$THREADS, $DURATION each"
printf '%-52s %14s %14s %8s  %s\n' "figure" "otad" "baseline" "ratio" "bar"

# nginx runs before and after otad, and otad's figure is set against
# the mean of the two: the host's speed drifts within minutes (nginx
# alone moved by a fifth between runs), and a baseline on both sides
# cancels a steady drift where one on a side doubles it
n=$(bracketed "$CONNS" -s "$(devices_lua 0.14.3 keep-alive)" -- \
	recorded_checks "$CONNS" -s "$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$port")
o=$(cat "$work/bracketed")
o_random=$o
cpu_random=$(cat "$work/cpu")
figure "check 304, keep-alive, random order / nginx" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" ">= 0.8"

o=$(recorded_checks "$CONNS" -s "$(ORDER=sequential devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$port")
figure "check 304, keep-alive, in sequence / nginx" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" "-"

n=$(bracketed "$CONNS" -s "$(devices_lua 0.14.3 close)" -- \
	recorded_checks "$CONNS" -s "$(devices_lua 0.14.3 close)" "http://127.0.0.1:$port")
o=$(cat "$work/bracketed")
figure "check 304, Connection: close, random / nginx" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" ">= 0.9"

o=$(run_wrk 16 -s "$(devices_lua 0.14.2 keep-alive)" "http://127.0.0.1:$port" | bytes_per_s)
n=$(run_wrk 16 "http://127.0.0.1:$nport/fw.bin" | bytes_per_s)
figure "download 1.3 MB image / nginx sendfile" "$(echo "$o / 1048576" | bc -l | xargs printf '%.0f MB/s')" "$(echo "$n / 1048576" | bc -l | xargs printf '%.0f MB/s')" "$(ratio "$o" "$n")" ">= 0.8"

# a library that never reports, ESPHome's update.http_request (its user
# agent; source: /pull/esphome/PRODUCT/${device_id}): each poll is also
# what its silence says of its last image (registry: apply_silent), more
# of the writer's work than a 304's
o=$(CHECKS_METRIC=otad_pull_manifest_requests_total recorded_checks "$CONNS" -s "$(fleet_lua esphome 'wrk.format("GET", "/pull/esphome/WLED/dev-" .. id, { ["User-Agent"] = "ESPHome/2025.11.0 (https://esphome.io)" })')" "http://127.0.0.1:$port")
figure "ESPHome manifest poll, random / check 304, random" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$o_random")" "$(ratio "$o" "$o_random")" "-"
checks_recorded

# ---- the fleet's size: 10,000 devices, then 1,000,000 ----
fleet_otad 0.14.3 10000
publish_wled
start_otad
rows_loaded
small=$(recorded_checks "$CONNS" -s "$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$port")
rss_small=$(rss_kib)
checks_recorded
n_small=$(run_wrk "$CONNS" -s "$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$nport" | rate)
fleet_otad 0.14.3 1000000
publish_wled
start_otad
rows_loaded
stops_watch "${DURATION%s}"
big=$(recorded_checks "$CONNS" --latency -s "$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$port")
set -- $(stops_seen)
stops=$1 stop_longest=$2
cpu_big=$(cat "$work/cpu")
p50=$(latency 50 < "$work/wrk.out")
p99=$(latency 99 < "$work/wrk.out")
rss_big=$(rss_kib)
cached=$(metric otad_device_rows_cached)
checks_recorded
n_big=$(run_wrk "$CONNS" -s "$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$nport" | rate)
figure "check at 1,000,000 devices / at 10,000, random" "$(printf '%.0f r/s' "$big")" "$(printf '%.0f r/s' "$small")" "$(ratio "$big" "$small")" ">= 0.9"
# the two fleets run a minute or two apart, and the host's speed moves
# in that time: each against nginx run right after it
figure "the same, each / nginx right after it" "$(ratio "$big" "$n_big")" "$(ratio "$small" "$n_small")" "$(ratio "($big * $n_small)" "($small * $n_big)")" "-"
figure "check latency at 1,000,000 devices, p50 / p99" "$p50 ms" "$p99 ms" "-" "p99 <= 10 ms"
# what the host took from the machine meanwhile (lib.sh, stops_watch)
figure "cores stopped by the host >= 50 ms in that run / longest" "$stops" "$stop_longest ms" "-" "-"
# what a device's row kept in memory costs: the difference between the
# two fleets' resident memory, over the difference in rows kept
per_device=-
[ "${cached:-0}" -gt 10000 ] &&
	per_device="$(( (rss_big - rss_small) * 1024 / (cached - 10000) )) B"
figure "memory a device, 1,000,000 devices ($cached rows in memory)" "$per_device" "$((rss_big / 1024)) / $((rss_small / 1024)) MiB" "-" "-"
# where a check's time goes: otad's CPU a check answered, its HTTP
# threads' and its writer's (the client and the kernel's share of the
# network are not in these, but what the kernel does for otad is; the
# two cores are shared with wrk)
set -- $cpu_random
figure "otad CPU a check, $DEVICES devices: HTTP / writer" "$1 us" "$2 us" "-" "-"
set -- $cpu_big
figure "otad CPU a check, 1,000,000 devices: HTTP / writer" "$1 us" "$2 us" "-" "-"
