#!/usr/bin/env bash
# bench_qraw_scaling.sh: the quantize session's wall time against reading its input (dd), on a machine with many
# cores, warm page cache: Q8_0 and Q4_0, 1..N threads, best of 3; outputs removed and synced before every run.
# Needs only tests/bench/bench_qraw.c: `make bench`'s build, or a static one this script makes (BQ=build/dev/bench_qraw),
# which travels to a machine without muse's libraries (the numbers in README.md were taken so on a 16-core machine).
# usage: scripts/bench_qraw_scaling.sh [DIR [GB [THREADS...]]]   (default: build/bench, 1 GB, 1 2 4 ... up to nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-build/bench}
GB=${2:-1}
shift $(( $# < 2 ? $# : 2 ))
def=""
for ((t = 1; t <= $(nproc); t *= 2)); do def="$def $t"; done
THREADS=${*:-$def}
BQ=${BQ:-build/rel/bench/bench_qraw}
[ -x "$BQ" ] || BQ=build/dev/bench_qraw
mkdir -p "$DIR"
if [ ! -x "$BQ" ]; then
	mkdir -p "$(dirname "$BQ")"
	gcc -std=c11 -D_GNU_SOURCE -O2 -ffp-contract=off -fopenmp -static -o "$BQ" tests/bench/bench_qraw.c \
		quant/q_stream.c quant/quant.c quant/q_fast.c quant/q_legacy.c quant/q_kquants.c quant/q_iq4.c \
		quant/q_iq_lattice.c quant/q_misc.c quant/q_search.c lib/dtype.c lib/dtype_convert.c lib/dtype_simd.c \
		lib/status.c lib/mapfile.c -lm -lpthread 2>/dev/null
fi
NPR=4096
IN=$DIR/qraw_in.f32
ROWS=$((GB * 1024 * 1024 * 1024 / (NPR * 4)))
[ -f "$IN" ] && [ "$(stat -c %s "$IN")" = $((ROWS * NPR * 4)) ] || "$BQ" gen "$IN" "$ROWS" "$NPR"
cat "$IN" >/dev/null
now() { date +%s.%N; }
# best CMD...: W = best wall seconds of 3 runs
best() {
	W=999
	for _ in 1 2 3; do
		rm -f "$DIR/qraw_out.bin"
		sync
		local t0 t1
		t0=$(now)
		"$@" >/dev/null 2>&1
		t1=$(now)
		W=$(awk -v a="$t0" -v b="$t1" -v w="$W" 'BEGIN { d = b - a; print (d < w) ? d : w }')
	done
}
best dd if="$IN" of=/dev/null bs=1M
rd=$W
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); input $((ROWS * NPR * 4 / 1000000)) MB F32 (rows of $NPR), warm"
echo "read the input (dd bs=1M of=/dev/null): $(printf '%.3f' "$rd") s"
echo
echo "| type | threads | muse session | / read | output hash |"
echo "|---|---|---|---|---|"
for T in Q8_0 Q4_0; do
	for th in $THREADS; do
		best "$BQ" quant "$IN" "$NPR" "$T" "$th" "$DIR/qraw_out.bin"
		w=$W
		"$BQ" quant "$IN" "$NPR" "$T" "$th" "$DIR/qraw_out.bin"
		echo "| $T | $th | $(printf '%.3f' "$w") s | $(awk -v a="$w" -v b="$rd" 'BEGIN { printf "%.2f", a / b }') | $("$BQ" sum "$DIR/qraw_out.bin") |"
	done
done
rm -f "$DIR/qraw_out.bin"
