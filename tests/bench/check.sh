#!/usr/bin/env bash
# Benchmark: otad's check path and image download against nginx, same run.
#
#   tests/bench/check.sh [BUILD_DIR]      (make bench)
#
# otad runs with 100,000 registered devices and WLED 0.14.3 published.
#  - check: wrk polls /firmware/check with distinct device ids on 0.14.3
#    (the 304 path; every check is recorded), vs nginx "return 304";
#  - check, Connection: close (Arduino HTTPUpdate polls this way);
#  - download: wrk fetches the image (devices on 0.14.2), vs nginx
#    serving the same file with sendfile.
# Prints each rate and the ratio otad/nginx. Loopback only; bounded runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ROOT=$PWD
. tests/bench/lib.sh
IMAGE=$SHARED/firmware/wled-esp32/0.14.3.bin
command -v nginx >/dev/null || { echo "bench: needs nginx (make deps-bench)"; exit 1; }
NGINX=$(command -v nginx)

# ---- otad with a fleet on 0.14.3 ----
fleet_otad 0.14.3
sha=$("$BUILD/otactl" artifact add "$IMAGE" --version 0.14.3 2>/dev/null)
# signed, as in production: the offer carries its signature headers
"$BUILD/otactl" key generate bench >/dev/null 2>&1
"$BUILD/otactl" artifact sign "$sha" --key bench >/dev/null 2>&1
"$BUILD/otactl" release create 0.14.3 --artifact "$sha" >/dev/null 2>&1
"$BUILD/otactl" release publish 0.14.3 >/dev/null 2>&1
start_otad

# ---- nginx, the baseline ----
mkdir -p "$work/nginx/logs" "$work/www"
ln -s "$IMAGE" "$work/www/fw.bin"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:0;
		location = /check { return 304; }
		location = /fw.bin { root $work/www; }
	}
}
CONF
# nginx cannot report a port 0 choice; pick a free one first
nport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/listen 127.0.0.1:0;/listen 127.0.0.1:$nport;/" "$work/nginx/nginx.conf"
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$nport/check" && break
	sleep 0.1
done

bytes_per_s() {
	awk '/^Transfer\/sec:/ {
		v = $2; u = substr(v, length(v) - 1); n = v + 0
		if (u == "GB") n *= 1024 * 1024 * 1024
		else if (u == "MB") n *= 1024 * 1024
		else if (u == "KB") n *= 1024
		printf "%.0f\n", n }'
}

echo "otad $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $DEVICES devices, $(nproc) cores, wrk -t$THREADS, $DURATION each"
printf '%-34s %14s %14s %7s\n' "test" "otad" "nginx" "ratio"

o=$(run_wrk "$CONNS" -s "$(devices_lua 0.14.3 keep-alive)" "http://127.0.0.1:$port" | rate)
n=$(run_wrk "$CONNS" "http://127.0.0.1:$nport/check" | rate)
printf '%-34s %10.0f r/s %10.0f r/s %7.2f\n' "check 304, keep-alive" "$o" "$n" "$(echo "$o / $n" | bc -l)"

o=$(run_wrk "$CONNS" -s "$(devices_lua 0.14.3 close)" "http://127.0.0.1:$port" | rate)
n=$(run_wrk "$CONNS" -H "Connection: close" "http://127.0.0.1:$nport/check" | rate)
printf '%-34s %10.0f r/s %10.0f r/s %7.2f\n' "check 304, Connection: close" "$o" "$n" "$(echo "$o / $n" | bc -l)"

o=$(run_wrk 16 -s "$(devices_lua 0.14.2 keep-alive)" "http://127.0.0.1:$port" | bytes_per_s)
n=$(run_wrk 16 "http://127.0.0.1:$nport/fw.bin" | bytes_per_s)
printf '%-34s %10.0f MB/s %9.0f MB/s %7.2f\n' "download 1.3 MB image" "$(echo "$o / 1048576" | bc -l)" "$(echo "$n / 1048576" | bc -l)" "$(echo "$o / $n" | bc -l)"

# every check answered was recorded: compare otad's own count with the
# registry once the writer drained at shutdown
answered=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "otad_checks_total" { print $2 }')
stop_otad
recorded=$(sqlite3 "$work/state/otad.db" "SELECT sum(checks) FROM device")
echo "checks answered: $answered, recorded in the registry: $recorded"
[ "$answered" = "$recorded" ] || { echo "bench: check-ins were lost"; exit 1; }
