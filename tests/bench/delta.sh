#!/bin/bash
# Delta patches between consecutive WLED ESP32 releases: our esp_delta_ota
# container (heatshrink) next to Debian's bsdiff (bzip2) and xdelta3 -9 on
# the same pairs in the same run. Every patch is applied and compared
# byte for byte. Prints a Markdown table and the median size ratio to
# bsdiff over the 0.14.x pairs, and for make bench's table our bare
# patch's size against detools' (create_patch, heatshrink 8/7,
# sequential: its sizes for these pairs measured on this machine, since
# detools is not packaged in Debian).
#   tests/bench/delta.sh BUILD
set -euo pipefail
BUILD=${1:-build}
ROOT=${ROOT:-$PWD}
SHARED=${SHARED:-$ROOT/../shared}
IMAGES=$SHARED/firmware/wled-esp32
for tool in bsdiff bspatch xdelta3 bc /usr/bin/time; do
	command -v $tool >/dev/null || { echo "bench: needs $tool (make deps-bench)"; exit 1; }
done
. "$(dirname "$0")/figure.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run CMD...: seconds and peak KiB of one command, into $secs and $kib
run() {
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
	read -r secs kib < "$work/time"
}
size() { stat -c %s "$1"; }
same() { cmp -s "$1" "$2" || { echo "bench: $3 did not reproduce $2"; exit 1; }; }

declare -A detools=([0.12.0-0.13.0]=415463 [0.13.0-0.13.1]=29077
	[0.13.1-0.13.2]=120939 [0.13.2-0.13.3]=65775 [0.13.3-0.14.0]=443940
	[0.14.0-0.14.1]=176658 [0.14.1-0.14.2]=122197 [0.14.2-0.14.3]=74770
	[0.14.3-0.14.4]=105156)
vs_detools=() create_s=()

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
	# the container is a 64-byte header and the bare patch
	[ -z "${detools[$a-$b]:-}" ] ||
		vs_detools+=("$(echo "scale=3; ($p - 64) / ${detools[$a-$b]}" | bc)")
	create_s+=("$c_s")
	echo "| $a → $b | $n | $p | $(pct "$p") | $c_s | $a_s | $((c_kib / 1024)) | $bs | $(pct "$bs") | $b_s | $((b_kib / 1024)) | $x | $(pct "$x") | $x_s | $ratio |"
done
mapfile -t sorted < <(printf '%s\n' "${ratios[@]}" | sort -n)
k=${#sorted[@]}
if ((k % 2)); then median=${sorted[k/2]}; else
	median=$(echo "scale=3; (${sorted[k/2-1]} + ${sorted[k/2]}) / 2" | bc)
fi
echo
echo "median otad / bsdiff over the 0.14.x pairs: $median (target: at most 1.3)"
mapfile -t d < <(printf '%s\n' "${vs_detools[@]}" | sort -n)
mapfile -t c < <(printf '%s\n' "${create_s[@]}" | sort -n)
figure "delta size / detools, WLED pairs (smallest-largest)" "${#d[@]} pairs" "detools" "${d[0]}-${d[-1]}" "<= 1.00 on every pair"
figure "delta create time, WLED pairs (fastest-slowest)" "${c[0]}-${c[-1]} s" "detools 0.17-0.45 s" "-" "<= 1.5x detools"
