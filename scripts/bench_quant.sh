#!/usr/bin/env bash
# bench_quant.sh: quantization throughput (section of `make bench`): muse's quantizers against llama-quantize --pure
# on the same F32 GGUF, same thread count, same run, per type; and the time to read the input (dd bs=1M >
# /dev/null) as the bound for the memory-bound types. A speed is only reported beside identical bytes: every
# quantized tensor's sha256 is compared with llama-quantize's output, and muse quantize's whole file with
# llama-quantize's file.
#
# muse sides: build/rel/bench/bench_quant quant IN TYPE THREADS OUT (reader + muse_quantize_stream + write, what
# llama-quantize does minus the GGUF header and metadata), and bin/muse quantize IN OUT --type TYPE --pure
# --threads N end to end (the whole GGUF, fsync'ed and renamed into place as muse writes every output).
# Times are the best of REPS warm runs (default 3; BENCH_QUANT_REPS overrides) of the whole process, to the
# millisecond (wait4): wall clock, and CPU time (user + system, all threads), which a loaded shared machine
# distorts less.
# usage: scripts/bench_quant.sh [THREADS...]   (default: 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/bench
LQ=.cache/llama.cpp/build/bin/llama-quantize
BQ=${BENCH_QUANT_BQ:-build/rel/bench/bench_quant} # overridable, to time another build beside this one
MUSE=${BENCH_QUANT_MUSE:-bin/muse}
REPS=${BENCH_QUANT_REPS:-3}
THREADS=${*:-1 2}
TYPES=${BENCH_QUANT_TYPES:-Q8_0 Q4_0 Q2_K Q3_K Q4_K Q5_K Q6_K}
mkdir -p "$B"
if [ ! -x "$LQ" ] || [ ! -x "$BQ" ]; then
	echo "(quantization section skipped: needs $LQ (make deps) and $BQ (make bench))"
	exit 0
fi
# BENCH_QUANT_LAYERS sets the input's size: 2 layers (default) are 123 MB, 16 layers 750 MB (fixed costs such as
# process start-up and mapping set-up weigh less against the read time on the larger input)
LAYERS=${BENCH_QUANT_LAYERS:-2}
IN=$B/quant_in_f32.gguf
[ "$LAYERS" = 2 ] || IN=$B/quant_in_f32_l$LAYERS.gguf
if [ ! -f "$IN" ]; then
	# a llama-shaped F32 model (dims multiples of 256, so every k-quant applies to every matrix with --pure)
	# with Student-t(5) weights of std ~0.02: heavier tails than a gaussian, like trained weights
	$PY - "$IN" "$LAYERS" <<'PYEOF'
import sys, numpy as np, gguf
out, n_layer = sys.argv[1], int(sys.argv[2])
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
# Before each run, untimed: PRE (a shell command, e.g. removing the output so no run pays for deleting the last
# one's file), then `sync`, so no run shares the CPUs with the write-back of the run before; with COLD=FILE,
# FILE is also dropped from the page cache (posix_fadvise DONTNEED), so the run reads it from the disk.
best() {
	read -r W C < <(PRE="${PRE:-}" COLD="${COLD:-}" $PY - "$REPS" "$@" <<'PYEOF'
import os, subprocess, sys, time
reps, cmd = int(sys.argv[1]), sys.argv[2:]
pre, cold = os.environ.get("PRE", ""), os.environ.get("COLD", "")
bw = bc = float("inf")
for _ in range(reps):
    if pre:
        subprocess.run(pre, shell=True, check=True)
    os.sync()
    if cold:
        fd = os.open(cold, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    w = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"bench_quant.sh: {' '.join(cmd)}: exit {p.returncode}")
    bw, bc = min(bw, w), min(bc, ru.ru_utime + ru.ru_stime)
print(f"{bw:.3f} {bc:.3f}")
PYEOF
)
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
echo "speedup = llama time / muse time (wall, and CPU = user + system); / read = time / dd's time (wall, CPU)"
echo "quantizers: bench_quant quant (tensor data only); end to end: muse quantize --pure vs llama-quantize --pure (whole file)"
echo
echo "| type | threads | quantizers wall (CPU) | llama-quantize --pure wall (CPU) | speedup wall | speedup CPU | quantizers / read wall (CPU) | bytes | muse quantize wall (CPU) | end-to-end speedup wall / CPU | file |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
ratio() { if [ "$(echo "$2 > 0" | bc -l)" = 1 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo "n/a"; fi; }
# outputs in a directory of this run's own, so two runs (this build and another) can share the input
O=$(mktemp -d "$B/quant.XXXXXX")
trap 'rm -rf "$O"' EXIT
for th in $THREADS; do
	for T in $TYPES; do
		rm -f "$O/q_ll.gguf" "$O/q_mu.bin" "$O/q_mq.gguf"
		PRE="rm -f $O/q_ll.gguf" best "$LQ" --pure "$IN" "$O/q_ll.gguf" "$T" "$th"
		w_ll=$W c_ll=$C
		PRE="rm -f $O/q_mu.bin" best "$BQ" quant "$IN" "$T" "$th" "$O/q_mu.bin"
		w_mu=$W c_mu=$C
		"$BQ" sums "$IN" "$T" "$th" >"$O/q_mu.sums"
		"$BQ" gguf-sums "$O/q_ll.gguf" "$T" >"$O/q_ll.sums"
		n=$(wc -l <"$O/q_mu.sums")
		if [ "$n" -gt 0 ] && cmp -s "$O/q_mu.sums" "$O/q_ll.sums"; then
			same="identical ($n tensors)"
		else
			same="DIFFERENT (muse $n tensors, llama $(wc -l <"$O/q_ll.sums"))"
		fi
		e2e="(no $MUSE) | - | -"
		if [ -x "$MUSE" ]; then
			PRE="rm -f $O/q_mq.gguf" best "$MUSE" quantize "$IN" "$O/q_mq.gguf" --type "$T" --pure --threads "$th" --quiet
			w_mq=$W c_mq=$C
			if cmp -s "$O/q_mq.gguf" "$O/q_ll.gguf"; then file="identical"; else file="DIFFERENT"; fi
			e2e="${w_mq} s (${c_mq} s) | $(ratio "$w_ll" "$w_mq")x / $(ratio "$c_ll" "$c_mq")x | $file"
		fi
		echo "| $T | $th | ${w_mu} s, $(mbs "$sz" "$w_mu") MB/s (${c_mu} s) | ${w_ll} s, $(mbs "$sz" "$w_ll") MB/s (${c_ll} s) | $(ratio "$w_ll" "$w_mu")x | $(ratio "$c_ll" "$c_mu")x | $(ratio "$w_mu" "$w_cat") ($(ratio "$c_mu" "$c_cat")) | $same | $e2e |"
	done
done

# The memory-bound types against the I/O they cannot avoid: reading the input, and writing their output (dd of
# that many zero bytes to a new file), with the input in the page cache (warm) and dropped from it before every
# run (cold: read from the disk, what a model that does not fit in memory, or was not read lately, costs).
MB_TYPES=${BENCH_QUANT_IO_TYPES:-Q8_0 Q4_0}
echo
echo "Against the I/O, $((sz / 1000000)) MB F32 input, best of $REPS warm and ${BENCH_QUANT_COLD_REPS:-5} cold runs; / read = wall time over dd's read of the input, / I/O = over that read plus writing the output's bytes"
echo
echo "| type | threads | cache | read input (dd) | write output (dd) | muse quantizers | muse / read | muse / I/O | llama-quantize --pure | llama / read |"
echo "|---|---|---|---|---|---|---|---|---|---|"
REPS_WARM=$REPS
for cache in warm cold; do
	cold=""
	REPS=$REPS_WARM
	# reads from this machine's virtual disk vary run to run (the host caches some): more runs for the best
	[ "$cache" = cold ] && cold=$IN && REPS=${BENCH_QUANT_COLD_REPS:-5}
	COLD=$cold best dd if="$IN" of=/dev/null bs=1M
	w_rd=$W
	for T in $MB_TYPES; do
		"$BQ" quant "$IN" "$T" 1 "$O/q_mu.bin"
		osz=$(stat -c %s "$O/q_mu.bin")
		PRE="rm -f $O/w.bin" best dd if=/dev/zero of="$O/w.bin" bs=1M count=$(((osz + 1048575) / 1048576))
		w_wr=$W
		for th in $THREADS; do
			COLD=$cold PRE="rm -f $O/q_mu.bin" best "$BQ" quant "$IN" "$T" "$th" "$O/q_mu.bin"
			w_mu=$W c_mu=$C
			COLD=$cold PRE="rm -f $O/q_ll.gguf" best "$LQ" --pure "$IN" "$O/q_ll.gguf" "$T" "$th"
			w_ll=$W
			io=$(echo "$w_rd + $w_wr" | bc -l)
			echo "| $T | $th | $cache | ${w_rd} s | ${w_wr} s | ${w_mu} s (${c_mu} s CPU) | $(ratio "$w_mu" "$w_rd") | $(ratio "$w_mu" "$io") | ${w_ll} s | $(ratio "$w_ll" "$w_rd") |"
		done
	done
done
