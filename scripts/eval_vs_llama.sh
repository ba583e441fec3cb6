#!/usr/bin/env bash
# eval_vs_llama.sh [CTX] [CHUNKS]: muse eval against llama-perplexity on SmolLM2-135M per GGUF type (README's
# "eval against llama-perplexity" line; issue 12 item 9): F16 (llama-quantize of the Q4_1 original) and
# Q8_0/Q6_K/Q4_K_M/Q4_0/IQ4_XS quantized from it, PPL and KL against the F16 model, with muse's default arithmetic
# (activations rounded as llama.cpp's CPU backend does) and with --exact. Needs make deps and make all.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-256} N=${2:-27}
B=.cache/llama.cpp/build/bin W=$(mktemp -d /tmp/muse-evl.XXXXXX)
trap 'rm -rf "$W"' EXIT
SMOL=$(find .venv/lib -name 'SmolLM2-135M*.gguf' | head -1)
T=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "tests/oracle"); import texts; print(texts.head(30000))')
$B/llama-tokenize -m "$SMOL" -f "$T" --ids --log-disable | tail -1 >"$W/ids.txt"
$B/llama-quantize --allow-requantize "$SMOL" "$W/F16.gguf" F16 >/dev/null 2>&1
$B/llama-perplexity -m "$W/F16.gguf" -f "$T" -c "$C" --chunks "$N" -t 2 --kl-divergence-base "$W/base.kld" >/dev/null 2>&1
for t in Q8_0 Q6_K Q4_K_M Q4_0 IQ4_XS; do
	$B/llama-quantize "$W/F16.gguf" "$W/$t.gguf" "$t" >/dev/null 2>&1
	out=$($B/llama-perplexity -m "$W/$t.gguf" -c "$C" --chunks "$N" -t 2 --kl-divergence-base "$W/base.kld" --kl-divergence 2>&1)
	lp=$(echo "$out" | grep -o "Mean PPL(Q)  *: *[0-9.]*" | awk '{print $NF}')
	lk=$(echo "$out" | grep -o "Mean    KLD: *[-0-9.]*" | awk '{print $NF}')
	for x in "" --exact; do
		j=$(bin/muse eval "$W/$t.gguf" --ref "$W/F16.gguf" --tokens "$W/ids.txt" --ctx "$C" --chunks "$N" -t 2 --json $x)
		.venv/bin/python - "$j" "$lp" "$lk" "$t" "$x" <<'PYEOF'
import json, sys
r, lp, lk = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
mode = sys.argv[5] or "default"
print(f"{sys.argv[4]:7s} {mode:8s} llama PPL {lp:.4f} KLD {lk:.6f} | muse PPL {r['ppl']:.4f} "
      f"({100 * (r['ppl'] / lp - 1):+.3f}%) KLD {r['kld']:.6f} ({100 * (r['kld'] / lk - 1):+.2f}%)")
PYEOF
	done
done
