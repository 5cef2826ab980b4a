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

# fleet_otad VERSION: an otad whose registry holds $DEVICES devices on
# VERSION (dev-0 .. dev-N), not started yet
fleet_otad() {
	cat > "$work/otad.conf" <<CONF
listen = 127.0.0.1:0
state_dir = $work/state
http_threads = 2
CONF
	export OTAD_CONF=$work/otad.conf
	"$BUILD/otactl" status >/dev/null 2>&1
	sqlite3 "$work/state/otad.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $DEVICES - 1)
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

# stop_otad: SIGTERM the last started otad and wait for it
stop_otad() {
	local last=$((${#pids[@]} - 1))
	kill -TERM "${pids[$last]}"
	wait "${pids[$last]}" 2>/dev/null || true
}

# fleet_lua NAME REQUEST: a wrk script whose requests come from distinct
# devices; REQUEST is the Lua expression of one, with "dev-" .. id its
# device
fleet_lua() {
	cat > "$work/$1.lua" <<LUA
local counter = 0
local base = 0
local threads = 0
function setup(thread)
	thread:set("base", threads * 1000003)
	threads = threads + 1
end
function request()
	counter = counter + 1
	local id = (base + counter) % $DEVICES
	return $2
end
LUA
	echo "$work/$1.lua"
}

# devices_lua VERSION CONNECTION: a wrk script polling as distinct devices
devices_lua() {
	fleet_lua run "wrk.format(\"GET\", \"/firmware/check\", {
		[\"X-Device-ID\"] = \"dev-\" .. id,
		[\"X-Current-Version\"] = \"$1\",
		[\"Connection\"] = \"$2\" })"
}

rate() { awk '/^Requests\/sec:/ { print $2 }'; }
run_wrk() { wrk -t"$THREADS" -c"$1" -d"$DURATION" "${@:2}" 2>&1; }
