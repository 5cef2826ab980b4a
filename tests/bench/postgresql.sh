#!/usr/bin/env bash
# Benchmark: the registry in PostgreSQL next to SQLite, same run, same
# fleet, same image.
#
#   tests/bench/postgresql.sh [BUILD_DIR]      (make bench)
#
# A PostgreSQL is started on a temporary directory (initdb, pg_ctl; as
# the postgres user when run as root). For each registry, otad runs with
# $DEVICES registered devices and WLED 0.14.3 published, signed:
#  - check: wrk polls /firmware/check as devices on 0.14.3 picked at
#    random (the 304 path); the rate is of checks recorded, counting the
#    time the writer takes to record what was answered;
#  - report: wrk posts success reports with distinct device ids (each a
#    durable record: the 200 is sent once it is committed).
# Prints each rate and the ratio PostgreSQL / SQLite. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ROOT=$PWD
. tests/bench/lib.sh
IMAGE=$SHARED/firmware/wled-esp32/0.14.3.bin
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1)
[ -x "$PGBIN/pg_ctl" ] || { echo "bench: needs postgresql (make deps-test)"; exit 1; }

# ---- PostgreSQL ----
pgdir="$work/pg"
mkdir -p "$pgdir"
as=()
if [ "$(id -u)" = 0 ]; then
	chown postgres "$work" "$pgdir"
	as=(runuser -u postgres --)
fi
pgport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as[@]}" "$PGBIN/initdb" -D "$pgdir/data" -A trust -U otad -E UTF8 \
	--locale=C.UTF-8 >/dev/null
"${as[@]}" "$PGBIN/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" -o \
	"-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200" \
	start >/dev/null
stop_pg() { "${as[@]}" "$PGBIN/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT
psql -q -h "$pgdir" -p "$pgport" -U otad postgres -c "CREATE DATABASE otad"
PGURL="postgresql://otad@127.0.0.1:$pgport/otad"

# a wrk script reporting success as distinct devices (durable records)
reports_lua() {
	fleet_lua report "wrk.format(\"POST\", \"/firmware/report\",
		{ [\"Content-Type\"] = \"application/json\" },
		'{\"device\":\"dev-' .. id .. '\",\"version\":\"0.14.3\",\"result\":\"success\"}')"
}

# measure NAME DATABASE: rates into check_NAME and report_NAME
measure() {
	rm -rf "$work/state"
	cat > "$work/otad.conf" <<CONF
listen = 127.0.0.1:0
state_dir = $work/state
http_threads = 2
rate_per_device = 0
${2:+database = $2}
CONF
	export OTAD_CONF=$work/otad.conf
	"$BUILD/otactl" status >/dev/null 2>&1
	if [ -n "$2" ]; then
		psql -q "$2" -c "INSERT INTO device (id, version, first_seen,
			last_seen, checks) SELECT 'dev-' || i, '0.14.3',
			unixepoch(), unixepoch(), 0 FROM generate_series(0,
			$DEVICES - 1) i" -c "VACUUM ANALYZE device"
	else
		sqlite3 "$work/state/otad.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $DEVICES - 1)
INSERT INTO device (id, version, first_seen, last_seen, checks)
SELECT 'dev-' || i, '0.14.3', unixepoch(), unixepoch(), 0 FROM n;
SQL
	fi
	sha=$("$BUILD/otactl" artifact add "$IMAGE" --version 0.14.3 2>/dev/null)
	"$BUILD/otactl" key generate bench >/dev/null 2>&1
	"$BUILD/otactl" artifact sign "$sha" --key bench >/dev/null 2>&1
	"$BUILD/otactl" release create 0.14.3 --artifact "$sha" >/dev/null 2>&1
	"$BUILD/otactl" release publish 0.14.3 >/dev/null 2>&1
	start_otad
	# checks are answered before they are recorded: the rate is of
	# checks recorded, the wait for the writer's queue included
	# (assigned first: eval would lose the failure of a dropped check-in)
	recorded=$(recorded_checks "$CONNS" -s \
		"$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$port")
	eval "check_$1=\$recorded"
	eval "report_$1=\$(run_wrk \"$CONNS\" -s \"$(reports_lua)\" \
		\"http://127.0.0.1:$port\" | rate)"
	stop_otad
}

echo "otad $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $DEVICES devices, $(nproc) cores, wrk -t$THREADS -c$CONNS, $DURATION each"
measure sqlite ""
measure pg "$PGURL"

figure "PostgreSQL / SQLite: checks recorded, keep-alive" "$(printf '%.0f r/s' "$check_pg")" "$(printf '%.0f r/s' "$check_sqlite")" "$(ratio "$check_pg" "$check_sqlite")" "-"
figure "PostgreSQL / SQLite: report, durable" "$(printf '%.0f r/s' "$report_pg")" "$(printf '%.0f r/s' "$report_sqlite")" "$(ratio "$report_pg" "$report_sqlite")" "-"
