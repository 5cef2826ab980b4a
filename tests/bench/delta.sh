#!/bin/bash
# Delta patches between consecutive WLED ESP32 releases: our esp_delta_ota
# container (heatshrink) next to Debian's bsdiff (bzip2) and xdelta3 -9 on
# the same pairs in the same run. Every patch is applied and compared
# byte for byte. Prints a Markdown table and the median size ratio to
# bsdiff over the 0.14.x pairs.
#   tests/bench/delta.sh BUILD
set -euo pipefail
BUILD=${1:-build}
ROOT=${ROOT:-$PWD}
SHARED=${SHARED:-$ROOT/../shared}
IMAGES=$SHARED/firmware/wled-esp32
for tool in bsdiff bspatch xdelta3 bc /usr/bin/time; do
	command -v $tool >/dev/null || { echo "bench: needs $tool (make deps-bench)"; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run CMD...: seconds and peak KiB of one command, into $secs and $kib
run() {
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
	read -r secs kib < "$work/time"
}
size() { stat -c %s "$1"; }
same() { cmp -s "$1" "$2" || { echo "bench: $3 did not reproduce $2"; exit 1; }; }

mapfile -t versions < <(ls "$IMAGES" | sed -n 's/\.bin$//p' | sort -V)
echo "| pair | image | otad patch | % | create s | apply s | create MiB | bsdiff | % | s | MiB | xdelta3 -9 | % | s | otad / bsdiff |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
ratios=()
for ((i = 1; i < ${#versions[@]}; i++)); do
	a=${versions[i-1]} b=${versions[i]}
	from=$IMAGES/$a.bin to=$IMAGES/$b.bin
	n=$(size "$to")
	run "$BUILD/otactl" delta create "$from" "$to" -o "$work/p"
	c_s=$secs c_kib=$kib
	run "$BUILD/otactl" delta apply "$from" "$work/p" -o "$work/out"
	a_s=$secs
	same "$work/out" "$to" otad
	run bsdiff "$from" "$to" "$work/b"
	b_s=$secs b_kib=$kib
	bspatch "$from" "$work/bout" "$work/b"
	same "$work/bout" "$to" bsdiff
	run xdelta3 -9 -f -e -s "$from" "$to" "$work/x"
	x_s=$secs
	xdelta3 -f -d -s "$from" "$work/x" "$work/xout"
	same "$work/xout" "$to" xdelta3
	p=$(size "$work/p") bs=$(size "$work/b") x=$(size "$work/x")
	pct() { echo "scale=1; 100 * $1 / $n" | bc; }
	ratio=$(echo "scale=2; $p / $bs" | bc)
	case $b in 0.14.*) [ "$a" != 0.13.3 ] && ratios+=("$ratio") ;; esac
	echo "| $a → $b | $n | $p | $(pct "$p") | $c_s | $a_s | $((c_kib / 1024)) | $bs | $(pct "$bs") | $b_s | $((b_kib / 1024)) | $x | $(pct "$x") | $x_s | $ratio |"
done
mapfile -t sorted < <(printf '%s\n' "${ratios[@]}" | sort -n)
k=${#sorted[@]}
if ((k % 2)); then median=${sorted[k/2]}; else
	median=$(echo "scale=3; (${sorted[k/2-1]} + ${sorted[k/2]}) / 2" | bc)
fi
echo
echo "median otad / bsdiff over the 0.14.x pairs: $median (target: at most 1.3)"
