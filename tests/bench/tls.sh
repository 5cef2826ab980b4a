#!/usr/bin/env bash
# Benchmark: devices polling over TLS, otad's own TLS (GnuTLS, through
# libmicrohttpd) against nginx's (OpenSSL) with the same certificate
# (ECDSA P-256), same run, and otad behind nginx as conf/nginx-otad.conf
# sets it up:
#  - handshakes: Connection: close polls (Arduino HTTPUpdate's way; and
#    esp_https_ota opens a connection per check), each a full handshake
#    (tickets off on both sides: a device's first poll, or any poll after
#    its ticket expired or it rebooted);
#  - the same resuming sessions (wrk reuses its session like esp-tls
#    with a ticket): otad's tickets against nginx's;
#  - keep-alive polls over TLS;
#  - otad behind nginx (TLS in nginx, plain HTTP to otad over kept-alive
#    connections), Connection: close, resuming: the set-up README
#    recommends for large fleets, against nginx answering alone.
# otad's figures are of checks recorded; fails if any was lost.
#
#   tests/bench/tls.sh [BUILD_DIR]      (make bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ROOT=$PWD
FLEET_TLS=${FLEET_TLS:-100000}
CONNS_TLS=${CONNS_TLS:-32}
. tests/bench/lib.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost \
	2>/dev/null

# ---- nginx: full handshakes, resumed ones, and in front of otad ----
full=$(free_port) resumed=$(free_port) front=$(free_port) upstream=$(free_port)
start_nginx "https://127.0.0.1:$full/firmware/check" "	ssl_certificate $work/cert.pem;
	ssl_certificate_key $work/key.pem;
	ssl_protocols TLSv1.2 TLSv1.3;
	server {
		listen 127.0.0.1:$full ssl;
		ssl_session_tickets off;
		ssl_session_cache off;
		location = /firmware/check { return 304; }
	}
	server {
		listen 127.0.0.1:$resumed ssl;
		ssl_session_tickets on;
		ssl_session_cache shared:bench:10m;
		location = /firmware/check { return 304; }
	}
	upstream otad { server 127.0.0.1:$upstream; keepalive 64; }
	server {
		listen 127.0.0.1:$front ssl;
		ssl_session_tickets on;
		ssl_session_cache shared:front:10m;
		location / {
			proxy_pass http://otad;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		}
	}
"

# tls_otad EXTRA_CONF: a fresh fleet's otad, serving TLS, started
tls_otad() {
	fleet_otad 1.0.0 "$FLEET_TLS"
	printf 'tls_cert = %s\ntls_key = %s\n%s\n' "$work/cert.pem" \
		"$work/key.pem" "$1" >> "$work/otad.conf"
	start_otad
}

echo "otad $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $FLEET_TLS devices, ECDSA P-256, $(nproc) cores, wrk -t$THREADS -c$CONNS_TLS, $DURATION each"
printf '%-52s %14s %14s %8s  %s\n' "figure" "otad" "baseline" "ratio" "bar"
export FLEET=$FLEET_TLS SCHEME=https
close=$(devices_lua 1.0.0 close close)
ka=$(devices_lua 1.0.0 keep-alive keep-alive)

tls_otad "tls_ticket_lifetime = 0"
o=$(recorded_checks "$CONNS_TLS" -s "$close" "https://127.0.0.1:$port")
checks_recorded >/dev/null
n=$(run_wrk "$CONNS_TLS" -s "$close" "https://127.0.0.1:$full" | rate)
figure "TLS handshakes, full, Connection: close / nginx" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" ">= 0.9"

tls_otad ""
o=$(recorded_checks "$CONNS_TLS" -s "$close" "https://127.0.0.1:$port")
n=$(run_wrk "$CONNS_TLS" -s "$close" "https://127.0.0.1:$resumed" | rate)
figure "TLS handshakes, resumed (tickets), close / nginx" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" "-"
o=$(recorded_checks "$CONNS_TLS" -s "$ka" "https://127.0.0.1:$port")
n=$(run_wrk "$CONNS_TLS" -s "$ka" "https://127.0.0.1:$resumed" | rate)
figure "TLS keep-alive polls / nginx" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" "-"
checks_recorded >/dev/null

# ---- otad behind nginx: plain HTTP on loopback, trusting nginx ----
fleet_otad 1.0.0 "$FLEET_TLS"
sed -i "s/^listen = .*/listen = 127.0.0.1:$upstream/" "$work/otad.conf"
echo "trusted_proxies = 127.0.0.1" >> "$work/otad.conf"
SCHEME=http
start_otad
o=$(recorded_checks "$CONNS_TLS" -s "$close" "https://127.0.0.1:$front")
n=$(run_wrk "$CONNS_TLS" -s "$close" "https://127.0.0.1:$resumed" | rate)
figure "behind nginx, resumed, close / nginx alone" "$(printf '%.0f r/s' "$o")" "$(printf '%.0f r/s' "$n")" "$(ratio "$o" "$n")" "-"
checks_recorded >/dev/null
