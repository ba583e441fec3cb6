"""test_seqquant.py: `muse quantize --method gptq|awq --calib FILE`, the layer-by-layer calibration walk.

- compressed-tensors' own decompressor decodes the GPTQ and AWQ outputs to muse's dequantization (--dequant-out);
- transformers runs the F32 model and the model with muse's dequantized weights on held-out text: the mean KL
  divergence (F32 || quantized) of GPTQ and of AWQ at 4 bits is below RTN's (an independent forward pass, not muse's);
- on tiny qwen2_moe and mixtral every expert of every layer is quantized; with --min-tokens above some experts'
  routed counts the report names exactly those as rtn-fallback and their weights are RTN's bit for bit;
- the report records the calibration file's sha256 (checked with hashlib), samples, tokens per sample and seed.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "oracle"))
from test_packed import decode_ct  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SAMPLES, SEQ = 8, 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Calibration text (the first 20 KB of the shared eval text) and held-out text (a later slice)."""
    import texts
    raw = open(texts.eval_text(), "rb").read()
    d = tmp_path_factory.mktemp("seqcalib")
    calib = d / "calib.txt"
    calib.write_bytes(raw[:20000])
    return str(calib), raw[200000:204000].decode("utf-8", "ignore")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("seqmodels")
    out = {}
    for arch in ("llama", "qwen2_moe", "mixtral"):
        p = d / arch
        subprocess.run([PY, os.path.join(ROOT, "scripts/make_tiny_models.py"), str(p), "--arch", arch], check=True,
                       capture_output=True)
        out[arch] = str(p)
    return out


def run_q(muse, src, out, method, calib=None, extra=()):
    dq = f"{out}.dequant.safetensors"
    args = ["quantize", src, out, "--method", method, "--bits", 4, "--group-size", 32, "--format",
            "compressed-tensors", "--dequant-out", dq, "-q", *extra]
    if calib:
        args += ["--calib", calib, "--samples", SAMPLES, "--seq-len", SEQ]
    muse(*args)
    return (load_file(os.path.join(out, "model.safetensors")), load_file(dq),
            json.load(open(os.path.join(out, "config.json"))), json.load(open(os.path.join(out, "quant_report.json"))))


def mean_kl(src, dq, text, kept):
    """Mean KL(F32 || quantized) per token with transformers: the quantized weights swapped in from dq, every
    other tensor from the output checkpoint (AWQ folds its scales into norms; all outputs keep them in F16)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    ids = Tokenizer.from_file(os.path.join(src, "tokenizer.json")).encode(text).ids[:512]
    x = torch.tensor([ids])
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = torch.log_softmax(m(x).logits.double(), -1)
        sd = m.state_dict()
        for k, v in list(kept.items()) + list(dq.items()):
            if k not in dq and k not in sd:
                continue
            assert k in sd, k
            sd[k].copy_(torch.from_numpy(v.copy()))
        q = torch.log_softmax(m(x).logits.double(), -1)
    return float((ref.exp() * (ref - q)).sum(-1).mean())


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_calib_decodes_and_beats_rtn(muse, models, data, tmp_path, method):
    calib, held = data
    src = models["llama"]
    t, dq, cfg, rep = run_q(muse, src, str(tmp_path / method), method, calib)
    # compressed-tensors decodes muse's packed output to muse's own dequantization
    qc = cfg["quantization_config"]
    assert len(dq) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    for name, ref in dq.items():
        w = decode_ct(t, name[: -len(".weight")], qc)
        assert np.array_equal(w, ref.astype(np.float16).astype(np.float32)), name
    # provenance
    c = rep["calibration"]
    assert c["sha256"] == hashlib.sha256(open(calib, "rb").read()).hexdigest()
    assert (c["samples"], c["seq_len"], c["seed"]) == (SAMPLES, SEQ, 0)
    assert c["sequential"] == (method == "gptq")
    # quality on held-out text, independent forward pass
    t_rtn, dq_rtn, _, _ = run_q(muse, src, str(tmp_path / "rtn"), "rtn")
    kl_rtn, kl_m = mean_kl(src, dq_rtn, held, t_rtn), mean_kl(src, dq, held, t)
    print(f"\n{method}: KL vs F32 {kl_m:.3e}, rtn {kl_rtn:.3e} (tiny llama, 4-bit g32 asym)")
    assert kl_m < kl_rtn, (kl_m, kl_rtn)


def expert_names(src_w):
    return sorted(k for k in src_w if ".experts." in k and k.endswith(".weight"))


@pytest.mark.parametrize("arch", ["qwen2_moe", "mixtral"])
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_moe_every_expert_and_starved_named(muse, models, data, tmp_path, arch, method):
    calib, _ = data
    src = models[arch]
    src_w = load_file(os.path.join(src, "model.safetensors"))
    experts = expert_names(src_w)
    assert experts
    t, dq, cfg, rep = run_q(muse, src, str(tmp_path / "all"), method, calib)
    for name in experts:  # every expert of every layer quantized, none left dense
        assert name in dq and name not in t, name
    by = {e["name"]: e for e in rep["tensors"]}
    # a --min-tokens between the routed counts starves some experts: exactly those are named as falling back
    counted = [(by[n]["tokens"], n) for n in experts
               if (method == "gptq" or n.endswith(("down_proj.weight", ".w2.weight"))) and "tokens" in by[n]]
    assert counted, "report gives no routed token counts"
    toks = sorted({c for c, _ in counted})
    assert len(toks) >= 2, toks
    thr = toks[len(toks) // 2]
    t2, dq2, _, rep2 = run_q(muse, src, str(tmp_path / "starved"), method, calib, ["--min-tokens", thr])
    _, dq_rtn, _, _ = run_q(muse, src, str(tmp_path / "rtn"), "rtn")
    by2 = {e["name"]: e for e in rep2["tensors"]}
    # GPTQ is sequential: layer 0's routing is the F32 model's in both runs, later layers see other inputs
    for n in experts:
        if ".layers.0." in n or method == "awq":
            assert by2[n]["tokens"] == by[n]["tokens"], n
    starved = {n for n in experts if n in dict((b, a) for a, b in counted).keys() and by2[n]["tokens"] < thr}
    assert starved
    named = {n for n in experts if by2[n]["method"] == "rtn-fallback"}
    assert named == starved, (named ^ starved)
    assert rep2["experts"]["fallback_tensors"] >= len(starved)
    for n in experts:
        assert n in dq2 and n not in t2, n
    if method == "gptq":  # AWQ's fallback experts still take the block's folded scales on gate/up
        for n in starved:
            assert np.array_equal(dq2[n], dq_rtn[n]), n
    print(f"\n{arch} {method}: {len(experts)} expert matrices quantized; --min-tokens {thr}: "
          f"{len(starved)} fell back to rtn")


def test_calib_refusals(muse, models, data, tmp_path):
    calib, _ = data
    src = models["llama"]
    p = muse("quantize", src, str(tmp_path / "o"), "--method", "rtn", "--format", "compressed-tensors", "--calib",
             calib, check=False)
    assert p.returncode != 0 and "rtn" in p.stderr
    p = muse("quantize", src, str(tmp_path / "o2"), "--method", "gptq", "--format", "compressed-tensors", "--calib",
             str(tmp_path / "missing.txt"), "--group-size", 32, check=False)
    assert p.returncode == 1 and "missing.txt" in p.stderr and not os.path.exists(tmp_path / "o2")
    p = muse("quantize", src, str(tmp_path / "o3"), "--method", "gptq", "--format", "compressed-tensors", "--calib",
             calib, "--seq-len", "100000", "--group-size", 32, check=False)
    assert p.returncode == 1 and not os.path.exists(tmp_path / "o3"), p.stderr


def test_gguf_stacked_experts_report_fallback_ids(muse, models, data, tmp_path):
    """gguf:Q4_0 from a MoE HF dir: stacked expert tensors; the report lists each expert's routed rows and the
    ids below --min-tokens, and exactly those experts' blocks are plain Q4_0 (muse --method rtn) bytes."""
    from gguf import GGUFReader
    calib, _ = data
    src = models["qwen2_moe"]
    out, rtn = str(tmp_path / "g.gguf"), str(tmp_path / "r.gguf")
    muse("quantize", src, out, "--method", "gptq", "--format", "gguf:Q4_0", "--calib", calib, "--samples", SAMPLES,
         "--seq-len", SEQ, "--min-tokens", 250, "-q")
    muse("quantize", src, rtn, "--method", "rtn", "--format", "gguf:Q4_0", "-q")
    rep = json.load(open(out + ".quant_report.json"))
    assert rep["calibration"]["sha256"] == hashlib.sha256(open(calib, "rb").read()).hexdigest()
    g = {t.name: np.asarray(t.data) for t in GGUFReader(out).tensors}
    r = {t.name: np.asarray(t.data) for t in GGUFReader(rtn).tensors}
    n_fb = n_gptq = 0
    for e in rep["tensors"]:
        if "_exps" not in e["name"]:
            continue
        toks, fb = e["expert_tokens"], e["fallback_expert_ids"]
        assert fb == [i for i, c in enumerate(toks) if c < 250], e
        for i in range(len(toks)):
            same = np.array_equal(g[e["name"]][i], r[e["name"]][i])
            assert same == (i in fb), (e["name"], i)
            n_fb += i in fb
            n_gptq += i not in fb
    assert n_fb and n_gptq
