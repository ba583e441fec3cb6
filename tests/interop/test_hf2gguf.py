"""test_hf2gguf.py: `muse convert HF_DIR OUT.gguf` (llama family) against llama.cpp's own convert_hf_to_gguf.py.

Tiny random LlamaForCausalLM checkpoints (scripts/make_tiny_models.py, transformers at a fixed seed, a byte-level
BPE tokenizer trained offline) are converted by muse and by convert_hf_to_gguf.py from the llama-cpp-python sdist;
both outputs are read with gguf-py and compared: tensor names, order, shapes, types and data (bit-exact: both do
the same permutation and the same IEEE casts), and every metadata key and value.

Differences, each justified where it is allowed below:
  D1 tokenizer.ggml.pre: convert_hf_to_gguf.py picks it by hashing the token ids of a fixed text and knows only
     published tokenizers, so it refuses the fixture's freshly trained one ("BPE pre-tokenizer was not recognized").
     The reference run patches get_vocab_base_pre to return "llama-bpe", the name of the fixture's pre-tokenizer
     (the Llama-3 split regex + ByteLevel without regex); muse reads the same name from the tokenizer.json
     definition. So the value must be equal; the patch is the difference, not the output.
  D2 --outtype auto: convert_hf_to_gguf.py turns an F32 source into F16 ("auto" means "f16 unless bf16"); muse's
     auto keeps the source precision (issue 3). Compared with explicit f32/f16/bf16 on both sides, and muse's auto
     is checked on its own (F32 source stays F32, BF16 stays BF16).
No other difference is allowed: any other key, value, tensor or byte that differs fails the test.
Also checked without convert_hf_to_gguf.py: the Q/K permutation against the saved safetensors, llama.cpp's logits
against transformers' (plain and Llama-3 rope scaling), llama.cpp's tokenization against HF tokenizers for four
pre-tokenizer families, a pytorch_model.bin source, and refusals (one error line, exit 1, no output file).
Not covered by the fixtures: metadata from a model card (README.md), SentencePiece tokenizers.
Config keys the file lacks: convert_hf_to_gguf.py reads config.json through transformers' AutoConfig, which fills
the config class's defaults. The fixtures, saved by transformers 5, spell out every key, so these tests could not
see muse omitting llama.attention.key_length/value_length for configs written by older transformers, which have
no head_dim (SmolLM2's, issue 12 item 8): test_config_without_head_dim converts such a config on both sides.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import llamacpp  # noqa: E402


pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from gguf import GGUFReader  # noqa: E402

# Runs convert_hf_to_gguf.py with D1's patch; argv: SRC_DIR then the converter's own arguments.
RUNNER = r'''
import runpy, sys
src = sys.argv[1]
sys.path[:0] = [src + "/gguf-py", src]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"
sys.argv = [src + "/convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
'''


def _converter_src(tmp):
    """A llama.cpp tree holding convert_hf_to_gguf.py, conversion/ and gguf-py/: the oracle build's, else the
    sdist's unpacked into tmp; None when neither exists."""
    if os.path.exists(llamacpp.CONVERT) and os.path.isdir(os.path.join(llamacpp.SRC, "conversion")):
        return llamacpp.SRC
    for sd in (os.path.join(llamacpp.TOP, "llama_cpp_python-0.3.36.tar.gz"),
               "/tmp/exp/sdist/llama_cpp_python-0.3.36.tar.gz"):
        if not os.path.exists(sd):
            continue
        with tarfile.open(sd) as tf:
            pre = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
            members = [m for m in tf.getmembers() if m.name.startswith(pre) and
                       (m.name == pre + "convert_hf_to_gguf.py" or m.name.startswith(pre + "conversion/")
                        or m.name.startswith(pre + "gguf-py/"))]
            tf.extractall(tmp, members=members, filter="data")
        return os.path.join(tmp, pre)
    return None


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf2gguf")
    src = _converter_src(str(tmp / "llama.cpp"))
    w = {"tmp": tmp, "src": src, "models": {}}
    # Made in this process (transformers imported once); the directory name becomes general.name on both sides.
    w["models"]["f32"] = _tiny(w, "f32", dtype="f32")
    w["models"]["bf16tied"] = _tiny(w, "bf16tied", dtype="bf16", tie=True)
    return w


def _reference(work, tag, outtype):
    if work["src"] is None:
        pytest.skip("convert_hf_to_gguf.py not found (no .cache/llama.cpp and no llama-cpp-python sdist)")
    out = str(work["tmp"] / f"ref-{tag}-{outtype}.gguf")
    if not os.path.exists(out):
        runner = work["tmp"] / "runner.py"
        runner.write_text(RUNNER)
        p = subprocess.run([sys.executable, str(runner), work["src"], work["models"][tag], "--outfile", out,
                            "--outtype", outtype], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-3000:]
    return out


def _muse(muse, work, tag, outtype):
    out = str(work["tmp"] / f"muse-{tag}-{outtype}.gguf")
    if not os.path.exists(out):
        muse("convert", work["models"][tag], out, "--outtype", outtype, "-q")
    return out


def _fields(path):
    r = GGUFReader(path)
    kv = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        kv[k] = (tuple(int(t) for t in f.types), f.contents())
    return r, kv


def _compare(mine, ref):
    rm, km = _fields(mine)
    rr, kr = _fields(ref)
    assert sorted(km) == sorted(kr), f"keys only in muse: {set(km) - set(kr)}; only in reference: {set(kr) - set(km)}"
    for k in kr:
        assert km[k][0] == kr[k][0], f"{k}: type {km[k][0]} != {kr[k][0]}"
        assert km[k][1] == kr[k][1], f"{k}: {str(km[k][1])[:200]} != {str(kr[k][1])[:200]}"
    assert [t.name for t in rm.tensors] == [t.name for t in rr.tensors]
    for a, b in zip(rm.tensors, rr.tensors):
        assert a.tensor_type == b.tensor_type, f"{a.name}: {a.tensor_type.name} != {b.tensor_type.name}"
        assert list(a.shape) == list(b.shape), a.name
        assert a.data.tobytes() == b.data.tobytes(), f"{a.name}: data differs"
    return rm, km


@pytest.mark.parametrize("tag,outtype", [("f32", "f32"), ("f32", "f16"), ("bf16tied", "bf16"), ("bf16tied", "f32")])
def test_same_as_convert_hf_to_gguf(muse, work, tag, outtype):
    rm, kv = _compare(_muse(muse, work, tag, outtype), _reference(work, tag, outtype))
    names = [t.name for t in rm.tensors]
    assert ("output.weight" in names) == (tag == "f32"), "tied embeddings: no output tensor"
    assert kv["tokenizer.ggml.pre"][1] == "llama-bpe"
    assert kv["general.file_type"][1] == {"f32": 0, "f16": 1, "bf16": 32}[outtype]


@pytest.mark.parametrize("dirname", ["TinyLlama-1.1B-Chat-v1.0", "Phi-3-mini-128k-instruct"])
def test_name_from_directory(muse, work, dirname):
    """general.name/basename/finetune/version/size_label derived from the directory name as gguf-py's Metadata
    heuristics do (no model card in the fixture)."""
    d = work["tmp"] / "named" / dirname
    if not d.exists():
        shutil.copytree(work["models"]["f32"], d)
    work["models"][dirname] = str(d)
    rm, kv = _compare(_muse(muse, work, dirname, "f16"), _reference(work, dirname, "f16"))
    assert "general.basename" in kv


def test_config_without_head_dim(muse, work):
    """issue 12 item 8: a config.json without head_dim (as transformers 4.x saved Llama configs, SmolLM2's
    among them), and without the other keys whose class default reaches the GGUF (max_position_embeddings,
    rms_norm_eps, rope parameters): convert_hf_to_gguf.py writes LlamaConfig's defaults (through AutoConfig),
    key_length/value_length = hidden_size / num_attention_heads; so must muse. Before: those keys missing."""
    d = work["tmp"] / "nohd" / "llama"
    if not d.exists():
        shutil.copytree(work["models"]["f32"], d)
        cfg = json.load(open(d / "config.json"))
        for k in ("head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters"):
            del cfg[k]
        json.dump(cfg, open(d / "config.json", "w"), indent=2)
    work["models"]["nohd"] = str(d)
    rm, kv = _compare(_muse(muse, work, "nohd", "f32"), _reference(work, "nohd", "f32"))
    assert kv["llama.attention.key_length"][1] == kv["llama.attention.value_length"][1] == 16
    assert kv["llama.context_length"][1] == 2048 and kv["llama.rope.freq_base"][1] == 10000


def test_auto_keeps_source_precision(muse, work):
    """D2: muse's auto writes F32 from F32 and BF16 from BF16 (2-D), norms F32 either way."""
    for tag, want in (("f32", "F32"), ("bf16tied", "BF16")):
        r, kv = _fields(_muse(muse, work, tag, "auto"))
        for t in r.tensors:
            exp = "F32" if len(t.shape) == 1 else want
            assert t.tensor_type.name == exp, (tag, t.name, t.tensor_type.name)
        assert kv["general.file_type"][1] == (0 if want == "F32" else 32)
        # Identical to the explicit type otherwise.
        a = GGUFReader(_muse(muse, work, tag, "auto"))
        b = GGUFReader(_muse(muse, work, tag, "f32" if want == "F32" else "bf16"))
        assert [x.data.tobytes() for x in a.tensors] == [x.data.tobytes() for x in b.tensors]


def test_permutation_against_transformers(muse, work):
    """Q/K rows: GGUF row 2i+j of head h == HF row h*hd + j*hd/2 + i (FORMATS.md 2a.11), checked against the
    safetensors the model was saved with, independently of convert_hf_to_gguf.py."""
    from safetensors.numpy import load_file
    st = load_file(os.path.join(work["models"]["f32"], "model.safetensors"))
    cfg = json.load(open(os.path.join(work["models"]["f32"], "config.json")))
    r = GGUFReader(_muse(muse, work, "f32", "f32"))
    t = {x.name: x for x in r.tensors}
    hd = cfg["head_dim"]
    for L in range(cfg["num_hidden_layers"]):
        for proj, n in (("q", cfg["num_attention_heads"]), ("k", cfg["num_key_value_heads"])):
            hf = st[f"model.layers.{L}.self_attn.{proj}_proj.weight"]
            gg = np.asarray(t[f"blk.{L}.attn_{proj}.weight"].data).reshape(hf.shape)
            for h in range(n):
                for i in range(hd // 2):
                    for j in range(2):
                        assert np.array_equal(gg[h * hd + 2 * i + j], hf[h * hd + j * (hd // 2) + i])


def _logits_check(gguf_path, model_dir):
    if not os.access(llamacpp.tool("llama_logits"), os.X_OK):
        pytest.skip("llama.cpp oracle llama_logits not built (scripts/build_llama_cpp.sh)")
    import torch
    from transformers import LlamaForCausalLM
    tokens = [1, 45, 100, 7, 399, 250, 3, 12]
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        want = model(torch.tensor([tokens])).logits[0].numpy()
    got = llamacpp.logits(gguf_path, tokens)
    assert got.shape == want.shape
    # F32 weights on both sides; the difference is summation order in ggml vs torch kernels (measured 2e-7
    # with logits of std 0.16; a wrong permutation or a swapped norm moves them by ~0.1).
    assert want.std() > 0.05
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_logits_match_transformers(muse, work):
    """llama.cpp runs muse's GGUF (F32) and its logits match transformers' on fixed tokens."""
    _logits_check(_muse(muse, work, "f32", "f32"), work["models"]["f32"])


def test_llama3_rope_freqs(muse, work):
    """Llama-3.1 rope scaling: muse generates rope_freqs.weight (F32, first) bit-exact with
    convert_hf_to_gguf.py's torch float32 computation, same metadata; llama.cpp's logits match transformers'."""
    work["models"]["llama3"] = _tiny(work, "llama3", rope="llama3")
    rm, kv = _compare(_muse(muse, work, "llama3", "f32"), _reference(work, "llama3", "f32"))
    assert rm.tensors[0].name == "rope_freqs.weight"
    f = np.asarray(rm.tensors[0].data)
    assert f[0] == 1 and f[-1] == 8 and 1 < f[1] < 8  # all three bands present
    _logits_check(_muse(muse, work, "llama3", "f32"), work["models"]["llama3"])


TEXTS = ["Hello world", "The quick brown fox 12345 jumps", "  spaces\tand\nnewlines  \n\n\n x",
         "Über café 日本語 🙂🚀 中文", "<|im_start|>user\nhi<|im_end|>", "3.14159 and 2026-11-22 1234567",
         "I've been 'told he's there", "   ", "!!!???...", "ÀÉÎõü Привет мир"]


def _tiny(work, name, **kw):
    """One more fixture, made in this process (imports once): WORK/tmp/<name>/llama."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import make_tiny_models
    d = work["tmp"] / name / "llama"
    if not d.exists():
        make_tiny_models.make_llama(str(d), **kw)
    return str(d)


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "gpt-2", "smollm"])
def test_tokenizer_parity(muse, work, pre):
    """llama.cpp, given muse's GGUF, tokenizes like HF tokenizers for each supported pre-tokenizer family: muse
    chose the tokenizer.ggml.pre whose llama.cpp regex reproduces the tokenizer.json definition (no BOS: the
    fixture's tokenizer_config says add_bos_token false, and muse writes it)."""
    if not os.access(llamacpp.tool("llama-tokenize"), os.X_OK):
        pytest.skip("llama.cpp oracle llama-tokenize not built (scripts/build_llama_cpp.sh)")
    from tokenizers import Tokenizer
    d = work["models"]["f32"] if pre == "llama-bpe" else _tiny(work, "pre-" + pre, pre=pre)
    gg = str(work["tmp"] / f"tok-{pre}.gguf")
    muse("convert", d, gg, "-q")
    r, kv = _fields(gg)
    assert kv["tokenizer.ggml.pre"][1] == pre
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for text in TEXTS:
        assert llamacpp.tokenize(gg, text) == tok.encode(text).ids, text


def test_pytorch_bin_source(muse, work):
    """The same model saved as pytorch_model.bin converts to the same GGUF as from safetensors."""
    d = _tiny(work, "bin", fmt="bin")
    assert os.path.exists(os.path.join(d, "pytorch_model.bin"))
    out = str(work["tmp"] / "bin.gguf")
    muse("convert", d, out, "--outtype", "f16", "-q")
    a, ka = _fields(out)
    b, kb = _fields(_muse(muse, work, "f32", "f16"))
    assert ka == kb
    # Tensor order follows the source file (state-dict order in the .bin, sorted names in safetensors).
    assert {t.name: (t.tensor_type, list(t.shape), t.data.tobytes()) for t in a.tensors} == \
           {t.name: (t.tensor_type, list(t.shape), t.data.tobytes()) for t in b.tensors}


def test_refusals(muse, work, tmp_path):
    """Bad input: one error line, exit 1, no output file."""
    base = work["models"]["f32"]

    def bad(mutate, expect):
        d = tmp_path / "m"
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(base, d)
        mutate(d)
        out = tmp_path / "out.gguf"
        p = muse("convert", str(d), str(out), "-q", check=False)
        assert p.returncode == 1, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("muse: error: ") and expect in lines[0], p.stderr
        assert not out.exists()
        assert not [f for f in os.listdir(tmp_path) if f.startswith("out.gguf")]

    def edit_cfg(**kw):
        def f(d):
            c = json.load(open(d / "config.json"))
            c.update(kw)
            json.dump(c, open(d / "config.json", "w"))
        return f

    bad(edit_cfg(architectures=["FooForCausalLM"]), "not supported (supported: LlamaForCausalLM")
    bad(edit_cfg(vocab_size=401), "shape disagrees with config.json")
    bad(edit_cfg(num_hidden_layers=1), "block number not below num_hidden_layers")
    bad(edit_cfg(num_attention_heads=3), "heads of an even size")
    bad(lambda d: os.remove(d / "tokenizer.json"), "tokenizer.json: missing")
    bad(lambda d: os.remove(d / "model.safetensors"), "")

    def drop_tensor(name):
        def f(d):
            from safetensors.numpy import load_file, save_file
            st = load_file(str(d / "model.safetensors"))
            del st[name]
            save_file(st, str(d / "model.safetensors"), metadata={"format": "pt"})
        return f

    bad(drop_tensor("model.layers.1.self_attn.k_proj.weight"),
        "tensor 'model.layers.1.self_attn.k_proj.weight' is missing (config.json: 2 layers)")
    bad(drop_tensor("model.norm.weight"), "tensor 'model.norm.weight' is missing")
    bad(edit_cfg(num_hidden_layers=3), "tensor 'model.layers.2.input_layernorm.weight' is missing")
    bad(edit_cfg(num_hidden_layers=10 ** 6), "num_hidden_layers 1000000 above 65536")

    def huge(d):
        from safetensors.numpy import load_file, save_file
        st = load_file(str(d / "model.safetensors"))
        st["model.layers.1.mlp.up_proj.weight"][3, 5] = 1e6
        save_file(st, str(d / "model.safetensors"), metadata={"format": "pt"})
    p_args = ("--outtype", "f16")
    d = tmp_path / "m"
    shutil.rmtree(d)
    shutil.copytree(base, d)
    huge(d)
    p = muse("convert", str(d), str(tmp_path / "out.gguf"), *p_args, "-q", check=False)
    assert p.returncode == 1 and "model.layers.1.mlp.up_proj.weight" in p.stderr and "overflows F16" in p.stderr, \
        p.stderr
    assert not os.path.exists(tmp_path / "out.gguf")
