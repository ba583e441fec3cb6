"""test_seqquant.py: `muse quantize --method gptq|awq --calib FILE`, the layer-by-layer calibration walk.

- compressed-tensors' own decompressor decodes the GPTQ and AWQ outputs to muse's dequantization (--dequant-out);
- transformers runs the F32 model and the model with muse's dequantized weights on held-out text: the mean KL
  divergence (F32 || quantized) of GPTQ and of AWQ at 4 bits is below RTN's (an independent forward pass, not muse's);
- on tiny qwen2_moe and mixtral every expert of every layer is quantized; with --min-tokens above some experts'
  routed counts the report names exactly those as rtn-fallback and their weights are RTN's bit for bit;
- the report records the calibration file's sha256 (checked with hashlib), samples, tokens per sample and seed;
- GPTQ expert Hessians come from all-experts statistics by default: with --min-tokens above some experts' routed
  counts none falls back, the report gives each expert's routed tokens (equal to a --routed-only run's in layer 0)
  and its statistics rows, and the starved experts' blocks differ from plain Q4_0;
- SmolLM2-135M to gguf:Q4_0 with GPTQ and with AWQ (the type's own block quantizer inside both): llama.cpp's
  llama-perplexity --kl-divergence against the unquantized model is below plain `muse quantize --type Q4_0`'s.
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
    print(f"\n{method}: KL vs F32 {kl_m:.3e}, rtn {kl_rtn:.3e} (tiny llama, 4-bit g32, each method's default grid)")
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
    routed = ["--routed-only"] if method == "gptq" else []  # the fallback rule needs routed-token statistics
    t, dq, cfg, rep = run_q(muse, src, str(tmp_path / "all"), method, calib, routed)
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
    t2, dq2, _, rep2 = run_q(muse, src, str(tmp_path / "starved"), method, calib, ["--min-tokens", thr, *routed])
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
    # rtn takes the calibration flags and says it ignores them (issue 12 item 11; test_method_consumers.py)
    p = muse("quantize", src, str(tmp_path / "o"), "--method", "rtn", "--format", "compressed-tensors", "--calib",
             calib, "--group-size", 32, check=False)
    assert p.returncode == 0 and "muse: note: --method rtn ignores --calib" in p.stderr
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
         "--seq-len", SEQ, "--min-tokens", 250, "--routed-only", "-q")
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


def test_gptq_all_experts_starved_get_hessians(muse, models, data, tmp_path):
    """Default GPTQ statistics on the tiny qwen2_moe: every calibration row goes through every expert, so the
    experts the router starves (below --min-tokens 250 routed rows) still get a Hessian: none falls back, each
    has samples * seq_len statistics rows, and its Q4_0 blocks are not plain Q4_0's. The routed counts in the
    report are the router's: in layer 0 (same input in both runs) equal to a --routed-only run's."""
    from gguf import GGUFReader
    calib, _ = data
    src = models["qwen2_moe"]
    out, ro, rtn = str(tmp_path / "a.gguf"), str(tmp_path / "ro.gguf"), str(tmp_path / "r.gguf")
    common = ["--method", "gptq", "--format", "gguf:Q4_0", "--calib", calib, "--samples", SAMPLES, "--seq-len", SEQ,
              "--min-tokens", 250, "-q"]
    muse("quantize", src, out, *common)
    muse("quantize", src, ro, *common, "--routed-only")
    muse("quantize", src, rtn, "--method", "rtn", "--format", "gguf:Q4_0", "-q")
    rep, rep_ro = json.load(open(out + ".quant_report.json")), json.load(open(ro + ".quant_report.json"))
    assert rep["calibration"]["expert_statistics"] == "all-experts"
    assert rep_ro["calibration"]["expert_statistics"] == "routed"
    assert rep["experts"]["fallback_tensors"] == 0 and rep_ro["experts"]["fallback_tensors"] > 0
    g = {t.name: np.asarray(t.data) for t in GGUFReader(out).tensors}
    r = {t.name: np.asarray(t.data) for t in GGUFReader(rtn).tensors}
    by_ro = {e["name"]: e for e in rep_ro["tensors"]}
    n_starved = 0
    for e in rep["tensors"]:
        if "_exps" not in e["name"]:
            continue
        assert e["method"] == "gptq" and e["fallback_expert_ids"] == [], e
        assert e["expert_stat_rows"] == [SAMPLES * SEQ] * len(e["expert_tokens"]), e
        assert sum(e["expert_tokens"]) == e["routed_tokens"]
        if e["name"].startswith("blk.0."):
            assert e["expert_tokens"] == by_ro[e["name"]]["expert_tokens"], e["name"]
        for i, c in enumerate(e["expert_tokens"]):
            if c < 250:
                n_starved += 1
                assert not np.array_equal(g[e["name"]][i], r[e["name"]][i]), (e["name"], i)
    assert n_starved, "no expert below --min-tokens: the fixture no longer starves any"


def _llama_kld(base, model, text, ctx, chunks):
    import llamacpp
    p = llamacpp.run([llamacpp.tool("llama-perplexity"), "-m", model, "--kl-divergence-base", base, "--kl-divergence",
                      "-c", ctx, "--chunks", chunks, "-t", 2])
    import re
    return float(re.search(r"Mean    KLD:\s+([-0-9.]+)", p.stdout + p.stderr).group(1))


def test_smollm2_gguf_gptq_awq_below_plain_type(tmp_path):
    """Issue 6, item 3 on SmolLM2-135M (its dequantized Q4_1 weights are the reference): --method gptq and
    --method awq with --format gguf:Q4_0 (GPTQ's error compensation and AWQ's scales, each through ggml's own
    Q4_0 block quantizer) reach a lower KL divergence than plain `muse quantize --type Q4_0`, measured by
    llama.cpp's llama-perplexity (an independent forward pass) on held-out text. Small calibration
    (4 x 128 tokens) keeps it to about a minute with the release binary."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
    import llamacpp
    import texts
    from test_forward import _smollm2
    llamacpp.require()
    model = _smollm2()
    binary = os.environ.get("MUSE_REL", os.path.join(ROOT, "bin", "muse"))
    if not os.access(binary, os.X_OK):
        pytest.skip("release binary bin/muse not built (SmolLM2 under ASan takes too long)")
    raw = open(texts.eval_text(), "rb").read()
    calib = tmp_path / "calib.txt"
    calib.write_bytes(raw[100000:130000])
    held = tmp_path / "held.txt"
    held.write_bytes(raw[:20000])

    def q(out, *args):
        subprocess.run([binary, "quantize", model, str(tmp_path / out), *map(str, args), "-q"], check=True,
                       capture_output=True, text=True)
        return str(tmp_path / out)
    plain = q("plain.gguf", "--type", "Q4_0", "--allow-requantize")
    cal = ["--calib", calib, "--samples", 4, "--seq-len", 128, "--format", "gguf:Q4_0", "--no-resume"]
    gptq = q("gptq.gguf", "--method", "gptq", *cal)
    awq = q("awq.gguf", "--method", "awq", *cal)
    base = str(tmp_path / "base.kld")
    llamacpp.run([llamacpp.tool("llama-perplexity"), "-m", model, "-f", held, "--kl-divergence-base", base, "-c", 128,
                  "--chunks", 8, "-t", 2])
    kl = {n: _llama_kld(base, m, held, 128, 8) for n, m in (("plain", plain), ("gptq", gptq), ("awq", awq))}
    print(f"\nSmolLM2 Q4_0 KLD vs Q4_1 source (llama-perplexity, 8 x 128): {kl}")
    assert kl["gptq"] < kl["plain"] and kl["awq"] < kl["plain"], kl


def test_gptq_true_sequential_stages(muse, models, data, tmp_path):
    """--true-sequential measures q/k/v, then o, gate/up, down, each with the earlier stages quantized: layer 0's
    q/k/v see the same inputs as in one pass (identical blocks), while o, gate, up and down see quantized
    attention outputs (different blocks); the report says which order ran."""
    from gguf import GGUFReader
    calib, _ = data
    src = models["llama"]
    outs = {}
    for mode, extra in (("one", []), ("ts", ["--true-sequential"])):
        out = str(tmp_path / f"{mode}.gguf")
        muse("quantize", src, out, "--method", "gptq", "--format", "gguf:Q4_0", "--calib", calib, "--samples", SAMPLES,
             "--seq-len", SEQ, "--no-resume", "-q", *extra)
        outs[mode] = {t.name: np.asarray(t.data) for t in GGUFReader(out).tensors}
        assert json.load(open(out + ".quant_report.json"))["calibration"]["true_sequential"] == (mode == "ts")
    a, b = outs["one"], outs["ts"]
    for stem in ("attn_q", "attn_k", "attn_v"):
        assert np.array_equal(a[f"blk.0.{stem}.weight"], b[f"blk.0.{stem}.weight"]), stem
    for stem in ("attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        assert not np.array_equal(a[f"blk.0.{stem}.weight"], b[f"blk.0.{stem}.weight"]), stem
