# Shared by the benchmark scripts: a temp dir, an otad with a registered
# fleet, wrk with distinct device ids, and rate parsing. Source it after
# setting BUILD.
set -euo pipefail
ROOT=${ROOT:-$PWD}
SHARED=${SHARED:-$ROOT/../shared}
DEVICES=${DEVICES:-100000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

. "$(dirname "${BASH_SOURCE[0]}")/figure.sh"
for tool in wrk sqlite3 curl; do
	command -v $tool >/dev/null || { echo "bench: needs $tool (make deps-bench)"; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# fleet_otad VERSION [COUNT]: a fresh otad whose registry holds COUNT
# (default $DEVICES) devices on VERSION (dev-0 .. dev-COUNT-1), not
# started yet; sets FLEET to COUNT
fleet_otad() {
	FLEET=${2:-$DEVICES}
	rm -rf "$work/state"
	cat > "$work/otad.conf" <<CONF
listen = 127.0.0.1:0
state_dir = $work/state
http_threads = 2
CONF
	export OTAD_CONF=$work/otad.conf
	"$BUILD/otactl" status >/dev/null 2>&1
	sqlite3 "$work/state/otad.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $FLEET - 1)
INSERT INTO device (id, version, first_seen, last_seen, checks)
SELECT 'dev-' || i, '$1', unixepoch(), unixepoch(), 0 FROM n;
SQL
}

# start_otad: start it, set $port
start_otad() {
	"$BUILD/otad" -c "$work/otad.conf" 2>"$work/otad.log" &
	pids+=($!)
	port=""
	for _ in $(seq 100); do
		port=$(sed -n 's/.*ready: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/otad.log")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { cat "$work/otad.log"; exit 1; }
}

# rows_loaded: wait (up to a minute) until the last started otad holds
# every device's row of the fleet in memory, so that a run measures the
# steady state and not the load. otad loads them before it says it is
# ready (a million rows in about 2 s): this guards the figures against
# a start that did not.
rows_loaded() {
	for _ in $(seq 600); do
		[ "$(metric otad_device_rows_cached)" -ge "$FLEET" ] 2>/dev/null && return
		sleep 0.1
	done
	echo "bench: the device rows did not load"; exit 1
}

# stop_otad: SIGTERM the last started otad and wait for it
stop_otad() {
	local last=$((${#pids[@]} - 1))
	kill -TERM "${pids[$last]}"
	wait "${pids[$last]}" 2>/dev/null || true
}

# fleet_lua NAME REQUEST: a wrk script whose requests come from the
# fleet's devices (ids 0 .. FLEET-1); REQUEST is the Lua expression of
# one, with "dev-" .. id its device. ORDER=random (the default: real
# fleets poll in no order, so every check lands on a cold row) or
# sequential (each thread walks the ids in turn, as rows in few pages).
fleet_lua() {
	cat > "$work/$1.lua" <<LUA
local counter = 0
local base = 0
local threads = 0
function setup(thread)
	thread:set("base", threads * 1000003)
	threads = threads + 1
end
function init(args)
	math.randomseed(base + 1)
end
function request()
	counter = counter + 1
	local id
	if "${ORDER:-random}" == "random" then
		id = math.random(0, ${FLEET:-$DEVICES} - 1)
	else
		id = (base + counter) % ${FLEET:-$DEVICES}
	end
	return $2
end
LUA
	echo "$work/$1.lua"
}

# devices_lua VERSION CONNECTION [NAME]: a wrk script polling as the
# fleet's devices (NAME: its file's, to keep several)
devices_lua() {
	fleet_lua "${3:-run}" "wrk.format(\"GET\", \"/firmware/check\", {
		[\"X-Device-ID\"] = \"dev-\" .. id,
		[\"X-Current-Version\"] = \"$1\",
		[\"Connection\"] = \"$2\" })"
}

# free_port: a loopback port free now (nginx cannot report a port 0 choice)
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_nginx URL HTTP: nginx with HTTP as its http block (two workers, as
# otad has two threads), once URL answers
start_nginx() {
	command -v nginx >/dev/null || { echo "bench: needs nginx (make deps-bench)"; exit 1; }
	mkdir -p "$work/nginx/logs"
	cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
$2
}
CONF
	"$(command -v nginx)" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
	pids+=($!)
	for _ in $(seq 50); do
		curl -sk -o /dev/null "$1" && break
		sleep 0.1
	done
}

# checks_recorded: stop otad and fail unless the registry counted every
# check it answered, manifest polls of the pull libraries included (the
# writer drains its queue at shutdown)
checks_recorded() {
	local answered recorded
	answered=$(( $(metric otad_checks_total) +
		$(metric otad_pull_manifest_requests_total) ))
	stop_otad
	recorded=$(sqlite3 "$work/state/otad.db" "SELECT sum(checks) FROM device")
	echo "checks answered: $answered, recorded in the registry: $recorded"
	[ "$answered" = "$recorded" ] || { echo "bench: check-ins were lost"; exit 1; }
}

# metric NAME: its value in otad's /metrics (SCHEME=https when otad
# serves TLS)
metric() {
	curl -sk "${SCHEME:-http}://127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

# rss_kib: the resident memory of the last started otad
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${pids[$((${#pids[@]} - 1))]}/status"; }

# drain: wait until the writer recorded all it was given; the seconds
drain() {
	local t0
	t0=$(date +%s.%N)
	while [ "$(metric otad_registry_queue)" != 0 ]; do sleep 0.05; done
	echo "$(date +%s.%N) - $t0" | bc -l | xargs printf '%.2f'
}

# recorded_checks CONNS WRK_ARGS...: wrk against otad; prints the checks
# recorded per second: those answered in the run, over the run and the
# time the writer then took to record the rest (answers can outrun the
# writer, and a rate of answers would hide it). Fails if any check-in
# was dropped (saying so on stderr: its callers capture stdout). wrk's
# own output is left in $work/wrk.out (latency). CHECKS_METRIC names the
# counter of what is answered, otad_checks_total unless set.
recorded_checks() {
	local before took answered
	before=$(metric "${CHECKS_METRIC:-otad_checks_total}")
	thread_ticks > "$work/ticks.before"
	run_wrk "$@" > "$work/wrk.out"
	took=$(drain)
	thread_ticks > "$work/ticks.after"
	answered=$(( $(metric "${CHECKS_METRIC:-otad_checks_total}") - before ))
	[ "$(metric otad_records_dropped_total)" = 0 ] ||
		{ echo "bench: check-ins were dropped" >&2; exit 1; }
	cpu_per_check "$answered" > "$work/cpu"
	echo "$answered / (${DURATION%s} + $took)" | bc -l
}

# thread_ticks: CPU time (user and system, in clock ticks) of the last
# started otad's threads, summed by name: MHD-worker (HTTP), otad-writer,
# otad-rollout (the controller), ...
thread_ticks() {
	local t pid=${pids[$((${#pids[@]} - 1))]}
	for t in /proc/"$pid"/task/*; do
		echo "$(cat "$t/comm" 2>/dev/null) $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null)"
	done | awk 'NF == 2 { n[$1] += $2 } END { for (k in n) print k, n[k] }' | sort
}

# cpu_per_check ANSWERED: from the ticks around the last run, the
# microseconds of CPU a check cost otad's HTTP threads and its writer
cpu_per_check() {
	join -a2 -e 0 -o 0,1.2,2.2 "$work/ticks.before" "$work/ticks.after" |
		awk -v n="$1" -v hz="$(getconf CLK_TCK)" '
		{ us[$1] = ($3 - $2) * 1e6 / hz / n }
		END { printf "%.1f %.1f\n", us["MHD-worker"], us["otad-writer"] }'
}

# bracketed CONNS WRK_ARGS... -- COMMAND...: nginx's rate (at $nport) for
# WRK_ARGS, run before and after COMMAND, as the mean of the two; what
# COMMAND printed is left in $work/bracketed
bracketed() {
	local args=() before after
	while [ "$1" != -- ]; do args+=("$1"); shift; done
	shift
	before=$(run_wrk "${args[@]}" "http://127.0.0.1:$nport" | rate)
	( "$@" ) > "$work/bracketed" || { cat "$work/bracketed" >&2; exit 1; }
	after=$(run_wrk "${args[@]}" "http://127.0.0.1:$nport" | rate)
	echo "($before + $after) / 2" | bc -l
}

rate() { awk '/^Requests\/sec:/ { print $2 }'; }
# latency PERCENT: from wrk --latency output, in milliseconds
latency() {
	awk -v p="$1%" '$1 == p {
		v = $2; n = v + 0
		if (v ~ /us$/) n /= 1000
		else if (v ~ /[0-9]s$/) n *= 1000
		printf "%.2f\n", n }'
}
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
run_wrk() { wrk -t"$THREADS" -c"$1" -d"$DURATION" "${@:2}" 2>&1; }

# stops_watch SECONDS / stops_seen: how long the host stopped each core.
# On a virtual machine the host may stop a core for a while (its share
# of the host's CPU spent), and inside nothing shows it (no steal time):
# every thread on that core, otad's and wrk's, just waits. `perf sched`
# saw it as 100 ms with no scheduler event on a loaded core. A sleeper
# pinned to each core at a real-time priority wakes every 5 ms and
# counts the wake-ups late by 50 ms or more: a stopped core, not a
# busy one (the sleeper goes before any other thread there).
stops_watch() {
	local c rt=()
	chrt -f 10 true 2>/dev/null && rt=(chrt -f 10)
	stops_pids=()
	for c in $(seq 0 $(( $(nproc) - 1 ))); do
		taskset -c "$c" "${rt[@]}" python3 -c '
import sys, time
end = time.monotonic() + float(sys.argv[1])
late, longest = 0, 0.0
while True:
	t0 = time.monotonic()
	if t0 > end:
		break
	time.sleep(0.005)
	over = time.monotonic() - t0 - 0.005
	longest = max(longest, over)
	late += over >= 0.05
open(sys.argv[2], "w").write("%d %.0f\n" % (late, longest * 1000))
' "$1" "$work/stops.$c" &
		stops_pids+=($!) # not in pids: its last is the last otad
	done
}
# prints: the stops of 50 ms or more on all cores, and the longest (ms)
stops_seen() {
	wait "${stops_pids[@]}" 2>/dev/null || true
	cat "$work"/stops.* 2>/dev/null | awk '{ n += $1; if ($2 > m) m = $2 }
		END { printf "%d %d\n", n, m }'
}
