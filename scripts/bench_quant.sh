#!/usr/bin/env bash
# bench_quant.sh: quantization throughput (section of `make bench`): muse's quantizers (muse_quantize_rows, the
# fast path) against llama-quantize --pure on the same F32 GGUF, same thread count, same run, per type; and the
# time to read the input (dd bs=1M > /dev/null) as the bound for the memory-bound types. A speed is only reported
# beside identical bytes: every quantized tensor's sha256 is compared with llama-quantize's output.
#
# muse side: build/rel/bench/bench_quant quant IN TYPE THREADS OUT (reader + muse_quantize_rows + write, what
# llama-quantize does minus the GGUF header) so this does not depend on cmd/quantize.c.
# Times are the best of REPS warm runs (default 3; BENCH_QUANT_REPS overrides) of the whole process: wall clock,
# and CPU time (user + system, all threads), which a loaded shared machine distorts less.
# usage: scripts/bench_quant.sh [THREADS...]   (default: 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/bench
LQ=.cache/llama.cpp/build/bin/llama-quantize
BQ=build/rel/bench/bench_quant
REPS=${BENCH_QUANT_REPS:-3}
THREADS=${*:-1 2}
TYPES=${BENCH_QUANT_TYPES:-Q8_0 Q4_0 Q2_K Q3_K Q4_K Q5_K Q6_K}
mkdir -p "$B"
if [ ! -x "$LQ" ] || [ ! -x "$BQ" ]; then
	echo "(quantization section skipped: needs $LQ (make deps) and $BQ (make bench))"
	exit 0
fi
IN=$B/quant_in_f32.gguf
if [ ! -f "$IN" ]; then
	# a llama-shaped F32 model (dims multiples of 256, so every k-quant applies to every matrix with --pure)
	# with Student-t(5) weights of std ~0.02: heavier tails than a gaussian, like trained weights
	$PY - "$IN" <<'PYEOF'
import sys, numpy as np, gguf
out, n_layer = sys.argv[1], 2
E, F, V, H, HKV = 1024, 2816, 8192, 16, 4
w = gguf.GGUFWriter(out, "llama")
w.add_context_length(2048); w.add_embedding_length(E); w.add_block_count(n_layer)
w.add_feed_forward_length(F); w.add_head_count(H); w.add_head_count_kv(HKV)
w.add_rope_dimension_count(E // H); w.add_layer_norm_rms_eps(1e-5); w.add_vocab_size(V); w.add_file_type(0)
rng = np.random.default_rng(0)
t = lambda *shape: (rng.standard_t(5, size=shape) * 0.02).astype(np.float32)
w.add_tensor("token_embd.weight", t(V, E))
for i in range(n_layer):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", np.ones(E, np.float32))
    w.add_tensor(p + "attn_q.weight", t(E, E)); w.add_tensor(p + "attn_k.weight", t(E * HKV // H, E))
    w.add_tensor(p + "attn_v.weight", t(E * HKV // H, E)); w.add_tensor(p + "attn_output.weight", t(E, E))
    w.add_tensor(p + "ffn_norm.weight", np.ones(E, np.float32))
    w.add_tensor(p + "ffn_gate.weight", t(F, E)); w.add_tensor(p + "ffn_up.weight", t(F, E))
    w.add_tensor(p + "ffn_down.weight", t(E, F))
w.add_tensor("output_norm.weight", np.ones(E, np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PYEOF
fi
# best CMD...: sets W (best wall seconds) and C (best CPU seconds, user + system, all threads) over REPS runs.
# On a shared machine wall time includes waiting for a CPU; CPU time does not, so both are reported.
best() {
	local w c out
	W=999999 C=999999
	for _ in $(seq "$REPS"); do
		/usr/bin/time -o "$B/q_time" -f '%e %U %S' "$@" >/dev/null 2>&1
		read -r w u sy <"$B/q_time"
		c=$(echo "$u + $sy" | bc -l)
		W=$(echo "if ($w < $W) $w else $W" | bc -l)
		C=$(echo "if ($c < $C) $c else $C" | bc -l)
	done
	W=$(printf '%.2f' "$W") C=$(printf '%.2f' "$C")
}
mbs() { if [ "$(echo "$2 > 0" | bc -l)" = 1 ]; then printf '%.0f' "$(echo "$1 / $2 / 1000000" | bc -l)"; else echo "-"; fi; }
sz=$(stat -c %s "$IN")
cat "$IN" >/dev/null
# dd copies every byte into its buffer (cat > /dev/null may splice without reading anything)
best dd if="$IN" of=/dev/null bs=1M
w_cat=$W c_cat=$C
echo
echo "Quantization, $((sz / 1000000)) MB F32 GGUF ($IN), warm cache, best of $REPS; MB/s of F32 input."
echo "quantize_fast path: $($BQ path); load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
echo "read the input (dd bs=1M of=/dev/null): wall ${w_cat} s, CPU ${c_cat} s"
echo "time resolution is 0.01 s (/usr/bin/time); speedup = llama time / muse time (wall, and CPU = user + system)"
echo
echo "| type | threads | muse wall (CPU) | llama-quantize --pure wall (CPU) | speedup wall | speedup CPU | muse / read wall | bytes |"
echo "|---|---|---|---|---|---|---|---|"
ratio() { if [ "$(echo "$2 > 0" | bc -l)" = 1 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo "n/a"; fi; }
for th in $THREADS; do
	for T in $TYPES; do
		rm -f "$B/q_ll.gguf" "$B/q_mu.bin"
		best "$LQ" --pure "$IN" "$B/q_ll.gguf" "$T" "$th"
		w_ll=$W c_ll=$C
		best "$BQ" quant "$IN" "$T" "$th" "$B/q_mu.bin"
		w_mu=$W c_mu=$C
		"$BQ" sums "$IN" "$T" "$th" >"$B/q_mu.sums"
		"$BQ" gguf-sums "$B/q_ll.gguf" "$T" >"$B/q_ll.sums"
		n=$(wc -l <"$B/q_mu.sums")
		if [ "$n" -gt 0 ] && cmp -s "$B/q_mu.sums" "$B/q_ll.sums"; then
			same="identical ($n tensors)"
		else
			same="DIFFERENT (muse $n tensors, llama $(wc -l <"$B/q_ll.sums"))"
		fi
		echo "| $T | $th | ${w_mu} s, $(mbs "$sz" "$w_mu") MB/s (${c_mu} s) | ${w_ll} s, $(mbs "$sz" "$w_ll") MB/s (${c_ll} s) | $(ratio "$w_ll" "$w_mu")x | $(ratio "$c_ll" "$c_mu")x | $(ratio "$w_mu" "$w_cat") | $same |"
	done
done
rm -f "$B/q_ll.gguf" "$B/q_mu.bin" "$B/q_mu.sums" "$B/q_ll.sums" "$B/q_time"
