"""test_eval.py: `muse eval` perplexity and KL statistics against llama.cpp's llama-perplexity.

SmolLM2-135M (Q4_1) on the first 30 KB of tests/oracle/texts.py's evaluation text; muse reads
llama.cpp's own tokenization of the file (--tokens) so both score the same ids, with llama-perplexity's
convention (second half of every chunk, BOS at each chunk start when the vocabulary adds one).
  - perplexity (ctx 256, 27 chunks): within 0.5% (issue 5). muse rounds each product's input as llama.cpp's CPU
    backend does (issue 12 item 9); --exact is F32.
  - KL mode (ctx 128, 8 chunks): the model is SmolLM2 requantized to Q4_0 by llama-quantize, the reference the Q4_1 original.
    llama-perplexity --kl-divergence-base writes the reference's 16-bit log-probs, --kl-divergence reads them;
    muse runs both models in one process and keeps nothing on disk. Pass: mean KLD within 5% relative, same-top-p
    within 2.5 points, PPL(Q) within 1% (512 scored tokens: see the ladder below for why PPL moves that much).
  - the protocol line names the data hash, ctx and scored tokens, and the arithmetic.
  - issue 12 item 9: F16, Q8_0, Q6_K, Q4_K_M, Q4_0, IQ4_XS against llama-perplexity (PPL and KLD vs F16), and
    --exact giving the F32 numbers of before.
"""
import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import llamacpp  # noqa: E402
import texts  # noqa: E402
from test_forward import _smollm2  # noqa: E402

# Perplexity at ctx 256 over all 27 chunks of the 30 KB (3429 scored tokens): measured muse 13.6640, llama.cpp
# 13.6537 (+0.075%); in exact F32 (--exact, muse before issue 12) 13.6184 (-0.26%). KL mode, Q4_0 against Q4_1 at
# ctx 128, 8 chunks: KLD 0.25202 vs 0.25067 (+0.5%), PPL(Q) 15.9599 vs 15.8336 (+0.8%; llama.cpp itself gives
# 15.8696 with -nr).
CTX, CHUNKS, PPL_CTX, PPL_CHUNKS = 128, 8, 256, 27


@pytest.fixture
def muse():
    """The release binary: these runs are the real SmolLM2 forward pass over thousands of tokens, minutes under ASan
    on two cores; test_forward.py runs the same code under ASan+UBSan on the tiny models."""
    from conftest import muse_runner
    binary = os.environ.get("MUSE_REL", os.path.join(ROOT, "bin", "muse"))
    if not os.access(binary, os.X_OK):
        binary = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
    return muse_runner(binary)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    llamacpp.require()
    d = tmp_path_factory.mktemp("eval")
    model = _smollm2()
    text = texts.head(30000)
    p = llamacpp.run([llamacpp.tool("llama-tokenize"), "-m", model, "-f", text, "--ids", "--log-disable"])
    (d / "ids.txt").write_text(p.stdout.strip().splitlines()[-1])
    return {"dir": d, "model": model, "text": text}


def _llama_ppl(args, chunks=CHUNKS, ctx=CTX):
    p = llamacpp.run([llamacpp.tool("llama-perplexity"), *args, "-c", ctx, "--chunks", chunks, "-t", 2])
    return p.stdout + p.stderr


def test_perplexity_matches_llama_perplexity(muse, work):
    out = _llama_ppl(["-m", work["model"], "-f", work["text"]], PPL_CHUNKS, PPL_CTX)
    ref = float(re.search(r"Final estimate: PPL = ([0-9.]+)", out).group(1))
    p = muse("eval", work["model"], "--tokens", work["dir"] / "ids.txt", "--ctx", PPL_CTX, "--chunks", PPL_CHUNKS,
             "--json")
    r = json.loads(p.stdout)
    assert r["ctx"] == PPL_CTX and r["chunks"] == PPL_CHUNKS
    assert r["tokens_scored"] == PPL_CHUNKS * (PPL_CTX - 1 - PPL_CTX // 2)
    assert len(r["data"]["sha256"]) == 64
    print(f"SmolLM2 PPL: muse {r['ppl']:.4f}, llama-perplexity {ref:.4f}, diff {100 * (r['ppl'] / ref - 1):+.3f}%")
    assert abs(r["ppl"] / ref - 1) <= 0.005


def test_kl_matches_llama_perplexity(muse, work):
    d = work["dir"]
    q = d / "q4_0.gguf"
    if not q.exists():
        llamacpp.llama_quantize(work["model"], q, "Q4_0", allow_requantize=True)
    base = d / "base.kld"
    _llama_ppl(["-m", work["model"], "-f", work["text"], "--kl-divergence-base", base])
    out = _llama_ppl(["-m", q, "--kl-divergence-base", base, "--kl-divergence"])
    kld = float(re.search(r"Mean    KLD:\s+([-0-9.]+)", out).group(1))
    top = float(re.search(r"Same top p:\s+([-0-9.]+)", out).group(1))
    ppl_q = float(re.search(r"Mean PPL\(Q\)\s+:\s+([-0-9.]+)", out).group(1))
    p = muse("eval", q, "--ref", work["model"], "--tokens", d / "ids.txt", "--ctx", CTX, "--chunks", CHUNKS, "--json")
    r = json.loads(p.stdout)
    print(f"KLD muse {r['kld']:.5f} llama {kld:.5f}; same top muse {100 * r['same_top']:.3f}% llama {top:.3f}%; "
          f"PPL(Q) muse {r['ppl']:.4f} llama {ppl_q:.4f}")
    assert abs(r["kld"] - kld) <= 0.05 * kld
    assert abs(100 * r["same_top"] - top) <= 2.5
    assert abs(r["ppl"] / ppl_q - 1) <= 0.01
    assert r["kld_pct"]["max"] >= r["kld_pct"]["median"] >= r["kld_pct"]["min"] >= 0
    text = muse("eval", q, "--ref", work["model"], "--tokens", d / "ids.txt", "--ctx", CTX, "--chunks", 2).stdout
    assert "protocol:" in text and "Mean    KLD:" in text and "Same top p:" in text


# ---- issue 12 item 9: llama.cpp's CPU arithmetic by default for a GGUF ----
#
# SmolLM2 as F16 (llama-quantize of the Q4_1 original, i.e. its dequantized weights) and five types quantized from it
# by llama-quantize (muse's bytes are identical), against llama-perplexity on the same ids and chunks, the F16 model
# as the KL reference (--kl-divergence-base / --kl-divergence; muse eval --ref). llama.cpp's CPU backend rounds every
# product's input to 8 bits (Q8_0/Q8_K per weight type) and that rounding dominates these KLs: with exact F32
# products muse's KL is 72% (Q8_0), 49% (Q6_K), 9% (Q4_K_M), 3% (IQ4_XS) below llama.cpp's; with the default
# arithmetic (ctx 256) measured, 12 chunks / 27 chunks:
#   F16     PPL +0.001% /        KLD 0 both
#   Q8_0    PPL -0.18% / -0.06%  KLD -1.1% / +1.0%
#   Q6_K    PPL +0.33% / +0.25%  KLD +1.8% / +2.2%
#   Q4_K_M  PPL +0.52% / +0.27%  KLD +0.1% / -0.7%
#   Q4_0    PPL +0.04% / +0.05%  KLD -0.03% / +0.06%
#   IQ4_XS  PPL +0.47% / +0.28%  KLD -0.1% / +0.07%
# The rounding is exact per product (checked against ggml's own mul_mat: 1e-5 on outputs of ~70, against ~1 for
# F32), but an 8-bit rounding turns the 1e-7 differences of float summation order into whole quantization steps now
# and then, so two faithful implementations give different samples of the same noise: llama.cpp itself, with and
# without weight repacking (-nr), is 0.27% apart in PPL and 1.3% in KLD on Q4_K_M at 27 chunks. The 0.1% PPL asked
# for is below that floor at these sizes; the tolerances are what 12 chunks (1524 scored tokens, ~3 min on two
# cores) hold with margin: PPL 0.75%, KLD 3% (the exact-F32 numbers fail the KLD bound for Q8_0, Q6_K and Q4_K_M).
LADDER = ["F16", "Q8_0", "Q6_K", "Q4_K_M", "Q4_0", "IQ4_XS"]
LCTX, LCHUNKS = 256, 12
PPL_TOL, KLD_TOL = 0.75, 3.0  # percent


@pytest.fixture(scope="module")
def ladder(work):
    d = work["dir"]
    f16 = d / "F16.gguf"
    if not f16.exists():
        llamacpp.llama_quantize(work["model"], f16, "F16", allow_requantize=True)
    base = d / f"f16-{LCTX}.kld"
    out = _llama_ppl(["-m", f16, "-f", work["text"], "--kl-divergence-base", base], LCHUNKS, LCTX)
    return {"F16": f16, "base": base, "ppl": float(re.search(r"Final estimate: PPL = ([0-9.]+)", out).group(1))}


def _ladder_model(work, ladder, t):
    if t not in ladder:
        q = work["dir"] / f"{t}.gguf"
        if not q.exists():
            llamacpp.llama_quantize(ladder["F16"], q, t)
        ladder[t] = q
    return ladder[t]


@pytest.mark.parametrize("t", LADDER)
def test_ladder_matches_llama_perplexity(muse, work, ladder, t):
    """issue 12 item 9 / must-show 2. F16 is scored without a reference (KL against itself is 0 on both sides)."""
    args = ["--tokens", work["dir"] / "ids.txt", "--ctx", LCTX, "--chunks", LCHUNKS, "--json"]
    if t == "F16":
        r = json.loads(muse("eval", ladder["F16"], *args).stdout)
        assert r["arithmetic"] == "activations as llama.cpp's CPU backend: F16 for F16", r["arithmetic"]
        print(f"F16: PPL muse {r['ppl']:.4f} llama {ladder['ppl']:.4f} ({100 * (r['ppl'] / ladder['ppl'] - 1):+.3f}%)")
        assert abs(100 * (r["ppl"] / ladder["ppl"] - 1)) <= PPL_TOL
        return
    q = _ladder_model(work, ladder, t)
    out = _llama_ppl(["-m", q, "--kl-divergence-base", ladder["base"], "--kl-divergence"], LCHUNKS, LCTX)
    kld = float(re.search(r"Mean    KLD:\s+([-0-9.]+)", out).group(1))
    ppl = float(re.search(r"Mean PPL\(Q\)\s+:\s+([-0-9.]+)", out).group(1))
    r = json.loads(muse("eval", q, "--ref", ladder["F16"], *args).stdout)
    assert r["arithmetic"].startswith("activations as llama.cpp's CPU backend:"), r["arithmetic"]
    assert r["ref_arithmetic"] == "activations as llama.cpp's CPU backend: F16 for F16"
    dp, dk = 100 * (r["ppl"] / ppl - 1), 100 * (r["kld"] / kld - 1)
    print(f"{t}: PPL muse {r['ppl']:.4f} llama {ppl:.4f} ({dp:+.3f}%); KLD muse {r['kld']:.6f} llama {kld:.6f} "
          f"({dk:+.2f}%)")
    assert abs(dp) <= PPL_TOL and abs(dk) <= KLD_TOL


def test_exact_flag_keeps_f32(muse, work):
    """issue 12 item 9: --exact is the F32 arithmetic of before (SmolLM2 Q4_1, ctx 128, 8 chunks: PPL 12.6555018 with
    the binary before the change; float summation order may move the last digits on another CPU's BLAS kernels),
    and the default, which rounds activations as llama.cpp does, is 0.7% above it (12.7440)."""
    args = ["eval", work["model"], "--tokens", work["dir"] / "ids.txt", "--ctx", CTX, "--chunks", CHUNKS]
    exact = json.loads(muse(*args, "--exact", "--json").stdout)
    default = json.loads(muse(*args, "--json").stdout)
    print(f"Q4_1 PPL exact {exact['ppl']:.7f}, default {default['ppl']:.7f}")
    assert abs(exact["ppl"] / 12.6555018 - 1) <= 1e-5
    assert exact["arithmetic"] == "exact f32"
    assert default["arithmetic"] == "activations as llama.cpp's CPU backend: Q8_1 for Q4_1, Q8_0 for Q8_0"
    assert default["ppl"] / exact["ppl"] - 1 >= 0.003
    text = muse(*args, "--exact").stdout
    assert "\narithmetic: exact f32\n" in text
