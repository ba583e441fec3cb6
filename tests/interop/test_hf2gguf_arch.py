"""test_hf2gguf_arch.py: `muse convert HF_DIR OUT.gguf` for every architecture issue 3 lists, against llama.cpp.

Tiny random checkpoints (scripts/make_tiny_models.py --arch, transformers 5 at a fixed seed, saved with
save_pretrained, so MoE experts are one tensor per expert as published checkpoints are): mistral (llama family),
qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe, deepseek_v3 (MLA with q_lora, 1 dense + 1 MoE block, shared expert,
sigmoid routing with e_score_correction_bias) and deepseek_v3 with DeepSeek-style block-scaled F8_E4M3 weights
(128x128 weight_scale_inv, quantization_config in config.json), plus YaRN rope scaling on qwen2 and deepseek_v3
(mscale_all_dim). Each is converted by muse and by llama.cpp's own
convert_hf_to_gguf.py; both outputs are read with gguf-py and compared: tensor names in order, types, shapes and
data (bit-exact: the same stacking, splits, FP8 products, IEEE casts and Q8_0 rounding), and every metadata key
with its GGUF type and value.

Differences, each justified where it is allowed below:
  D1 tokenizer.ggml.pre: convert_hf_to_gguf.py picks it by hashing the token ids of a fixed text and knows only
     published tokenizers, so it refuses the fixtures' freshly trained ones. The reference run patches
     get_vocab_base_pre to return the fixture's pre-tokenizer name ("qwen2" for the Qwen fixtures, "llama-bpe"
     otherwise); muse derives the name from the tokenizer.json definition. The value must be equal.
  D2 --outtype auto: convert_hf_to_gguf.py turns an F32 source into F16; muse's auto keeps the source precision,
     and writes dequantized FP8 in the precision of the checkpoint's unquantized matrices. Compared with explicit
     types on both sides; muse's auto is checked on its own (test_auto_fp8_keeps_bf16).
No other difference is allowed: any other key, value, type, tensor, order or byte that differs fails the test.

Also, without convert_hf_to_gguf.py: llama.cpp (llama_logits) runs muse's F32 GGUF of each model and its logits
for fixed tokens match transformers' (tolerances in LOGITS_ATOL, measured values in the comment there); expert
stacks, the MLA kv_b split and the FP8 dequantization are checked element for element against the safetensors.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import llamacpp  # noqa: E402

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from gguf import GGUFReader  # noqa: E402

# Runs convert_hf_to_gguf.py with D1's patch; argv: SRC_DIR then the converter's own arguments.
RUNNER = r'''
import os, runpy, sys
src = sys.argv[1]
sys.path[:0] = [src + "/gguf-py", src]
import conversion.base as base
pre = os.environ["MUSE_REF_PRE"]
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [src + "/convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
'''

# name: (arch, make_arch keyword arguments)
MODELS = {
    "mistral": ("mistral", {}),
    "qwen2": ("qwen2", {}),
    "qwen3": ("qwen3", {}),
    "mixtral": ("mixtral", {}),
    "qwen2_moe": ("qwen2_moe", {}),
    "qwen3_moe": ("qwen3_moe", {}),
    "deepseek_v3": ("deepseek_v3", {}),
    "deepseek_v3_fp8": ("deepseek_v3", {"fp8": True}),
    "deepseek_v3_fp8bf16": ("deepseek_v3", {"fp8": True, "dtype": "bf16"}),
    "qwen2_yarn": ("qwen2", {"rope": "yarn"}),
    "deepseek_v3_yarn": ("deepseek_v3", {"rope": "yarn"}),
}

# Measured max |llama.cpp - transformers| over 8 positions x 400 logits (F32 weights, f32 KV cache), logits std
# 0.16-0.26: mistral/qwen*/mixtral 2-3e-7 (qwen2 with YaRN over 96 positions 2.7e-7); deepseek_v3 5.9e-5 and its FP8 twin 6e-5 (llama.cpp runs MLA in the
# absorbed form, q.(W_kb^T c), so sums run in another order and over the 64-wide latent). A wrong expert order,
# swapped gate/up, untransposed k_b, a missing scale or a dropped norm moves them by 1e-2 or more.
LOGITS_ATOL = {"deepseek_v3": 5e-4, "deepseek_v3_fp8": 5e-4}
TOKENS = [1, 45, 100, 7, 399, 250, 3, 12]


def _pre(name):
    return "qwen2" if MODELS[name][0].startswith("qwen") else "llama-bpe"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf2gguf_arch")
    src = llamacpp.SRC if os.path.exists(llamacpp.CONVERT) else None
    return {"tmp": tmp, "src": src, "models": {}}


def _model(work, name):
    """The fixture directory WORK/tmp/models/<name>, made on first use in this process (transformers once)."""
    if name not in work["models"]:
        import make_tiny_models
        arch, kw = MODELS[name]
        d = work["tmp"] / "models" / name
        if not d.exists():
            make_tiny_models.make_arch(str(d), arch, **kw)
        work["models"][name] = str(d)
    return work["models"][name]


def _reference(work, name, outtype):
    if work["src"] is None:
        pytest.skip("convert_hf_to_gguf.py not found (.cache/llama.cpp/src; make deps)")
    out = str(work["tmp"] / f"ref-{name}-{outtype}.gguf")
    if not os.path.exists(out):
        runner = work["tmp"] / "runner.py"
        runner.write_text(RUNNER)
        env = dict(os.environ, MUSE_REF_PRE=_pre(name))
        env.pop("NO_LOCAL_GGUF", None)
        p = subprocess.run([sys.executable, str(runner), work["src"], _model(work, name), "--outfile", out,
                            "--outtype", outtype], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr[-3000:]
    return out


def _muse(muse, work, name, outtype):
    out = str(work["tmp"] / f"muse-{name}-{outtype}.gguf")
    if not os.path.exists(out):
        muse("convert", _model(work, name), out, "--outtype", outtype, "-q")
    return out


# Key-by-key and tensor-by-tensor GGUF comparison, shared with the llama tests.
from test_hf2gguf import _compare, _fields  # noqa: E402


CASES = [(n, "f32") for n in MODELS if n != "deepseek_v3_fp8bf16"] + [
    ("mixtral", "bf16"), ("qwen3_moe", "f16"), ("deepseek_v3_fp8bf16", "bf16"),
    ("qwen2_moe", "q8_0"), ("deepseek_v3_fp8", "q8_0"), ("mistral", "q8_0")]


@pytest.mark.parametrize("name,outtype", CASES)
def test_same_as_convert_hf_to_gguf(muse, work, name, outtype):
    rm, kv = _compare(_muse(muse, work, name, outtype), _reference(work, name, outtype))
    names = [t.name for t in rm.tensors]
    arch = kv["general.architecture"][1]
    assert arch == {"mistral": "llama", "mixtral": "llama", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe",
                    "deepseek_v3": "deepseek2"}.get(MODELS[name][0], MODELS[name][0])
    if MODELS[name][0] in ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3"):
        assert "blk.1.ffn_up_exps.weight" in names and kv[f"{arch}.expert_count"][1] == 4
        t = {x.name: x for x in rm.tensors}["blk.1.ffn_down_exps.weight"]
        assert len(t.shape) == 3 and int(t.shape[2]) == 4  # gguf-py lists ne: (ff, n_embd, n_expert)
    if outtype == "q8_0":
        types = {x.name: x.tensor_type.name for x in rm.tensors}
        assert types["token_embd.weight"] == "Q8_0" and kv["general.file_type"][1] == 7
        assert types["output_norm.weight"] == "F32"


@pytest.mark.parametrize("name", ["mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3_moe", "deepseek_v3"])
def test_defaults_of_config_class(muse, work, name):
    """issue 12 item 8: config.json without head_dim, max_position_embeddings, rms_norm_eps and rope parameters
    (transformers 4.x saved no head_dim; older files lack more). convert_hf_to_gguf.py reads the config through
    AutoConfig, so it writes the config class's defaults: key_length/value_length exactly when the class defaults
    head_dim (MistralConfig: hidden_size / num_attention_heads; Mixtral, Qwen2 and the Qwen MoE classes: none;
    DeepSeek writes its own MLA lengths), and the class's context length, epsilon and rope theta. Checked
    against transformers' AutoConfig directly, without running the slow converter per arch
    (test_hf2gguf.py::test_config_without_head_dim does, for llama)."""
    from transformers import AutoConfig
    d = work["tmp"] / "nodefaults" / name
    if not d.exists():
        shutil.copytree(_model(work, name), d)
        c = json.load(open(d / "config.json"))
        for k in ("head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters"):
            c.pop(k, None)  # Qwen2's class has no head_dim, its fixture neither
        json.dump(c, open(d / "config.json", "w"), indent=2)
    want = AutoConfig.from_pretrained(d).to_dict()
    out = str(work["tmp"] / f"nodefaults-{name}.gguf")
    muse("convert", d, out, "--outtype", "f32", "-q")
    _, kv = _fields(out)
    arch = kv["general.architecture"][1]

    def get(k):
        return kv[f"{arch}.{k}"][1] if f"{arch}.{k}" in kv else None
    if arch != "deepseek2":
        assert get("attention.key_length") == get("attention.value_length") == want.get("head_dim")
    assert get("context_length") == want["max_position_embeddings"]
    assert get("attention.layer_norm_rms_epsilon") == pytest.approx(want["rms_norm_eps"], rel=1e-7)
    assert get("rope.freq_base") == want["rope_parameters"]["rope_theta"]


def _hf_logits(d, tokens):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def _dequantized_copy(work, name):
    """The FP8 checkpoint with every weight replaced by its dequantized float32 (the test's own torch
    implementation of DeepSeek's block scaling) and no quantization_config: what transformers runs as reference."""
    import torch
    import make_tiny_models
    from safetensors.torch import load_file, save_file
    src = _model(work, name)
    d = work["tmp"] / f"{name}-dequantized"
    if d.exists():
        return str(d)
    shutil.copytree(src, d)
    st = load_file(os.path.join(src, "model.safetensors"))
    out = {}
    for n, t in st.items():
        if n.endswith("_scale_inv"):
            continue
        if n + "_scale_inv" in st:
            q, s = t.float(), st[n + "_scale_inv"].float()
            s = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:q.shape[0], :q.shape[1]]
            t = q * s
            assert torch.equal(t, make_tiny_models.dequantize_fp8(st[n], st[n + "_scale_inv"]))
        out[n] = t.float().contiguous()
    save_file(out, str(d / "model.safetensors"), metadata={"format": "pt"})
    c = json.load(open(d / "config.json"))
    del c["quantization_config"]
    json.dump(c, open(d / "config.json", "w"))
    return str(d)


# deepseek_v3_yarn is compared for metadata only: its GGUF equals convert_hf_to_gguf.py's, but llama.cpp's YaRN
# attention scaling for DeepSeek (yarn_log_multiplier) and transformers' mscale differ by 2e-3 in the logits, a
# runtime difference between the two implementations, not a conversion one.
@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("deepseek_v3_fp8bf16", "deepseek_v3_yarn")])
def test_logits_match_transformers(muse, work, name):
    """llama.cpp runs muse's F32 GGUF and its logits match transformers' on fixed tokens (FP8: transformers runs
    the dequantized weights; YaRN: 96 positions, past the original context of 64)."""
    if not os.access(llamacpp.tool("llama_logits"), os.X_OK):
        pytest.skip("llama.cpp oracle llama_logits not built (scripts/build_llama_cpp.sh)")
    ref_dir = _dequantized_copy(work, name) if name.endswith("fp8") else _model(work, name)
    tokens = TOKENS * 12 if name.endswith("yarn") else TOKENS
    want = _hf_logits(ref_dir, tokens)
    got = llamacpp.logits(_muse(muse, work, name, "f32"), tokens)
    assert got.shape == want.shape
    assert want.std() > 0.05
    diff = float(np.abs(got - want).max())
    print(f"{name}: max |llama.cpp - transformers| = {diff:.3g} (logits std {want.std():.3g})")
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGITS_ATOL.get(name, 1e-5))


def _tensors(path):
    return {t.name: np.asarray(t.data) for t in GGUFReader(path).tensors}


def test_experts_stacked_in_expert_order(muse, work):
    """blk.N.ffn_*_exps[e] is expert e's HF tensor, for Qwen (down/gate/up_proj) and Mixtral (w1/w2/w3) names,
    independently of convert_hf_to_gguf.py."""
    from safetensors.numpy import load_file
    for name, parts in (("qwen2_moe", {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}),
                        ("mixtral", {"gate": "w1", "down": "w2", "up": "w3"})):
        st = load_file(os.path.join(_model(work, name), "model.safetensors"))
        g = _tensors(_muse(muse, work, name, "f32"))
        moe = "block_sparse_moe" if name == "mixtral" else "mlp"
        for L in range(2):
            for gg, hf in parts.items():
                stack = g[f"blk.{L}.ffn_{gg}_exps.weight"]
                assert stack.shape[0] == 4
                for e in range(4):
                    assert np.array_equal(stack[e], st[f"model.layers.{L}.{moe}.experts.{e}.{hf}.weight"]), (name, L, gg, e)


def test_mla_split_and_fp8_dequant(muse, work):
    """DeepSeek: attn_k_b[h] is the transpose of kv_b_proj's head-h nope rows, attn_v_b[h] its v rows; an FP8
    weight comes out as fp8 x weight_scale_inv of its 128x128 block (the block grid of the 160-wide fixture has
    whole and partial blocks)."""
    import torch
    import make_tiny_models
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(_model(work, "deepseek_v3_fp8"), "config.json")))
    nope, v, h = cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["num_attention_heads"]
    for name in ("deepseek_v3", "deepseek_v3_fp8"):
        st = load_file(os.path.join(_model(work, name), "model.safetensors"))
        g = _tensors(_muse(muse, work, name, "f32"))
        for L in range(2):
            kv_b = st[f"model.layers.{L}.self_attn.kv_b_proj.weight"]
            if name.endswith("fp8"):
                kv_b = make_tiny_models.dequantize_fp8(kv_b, st[f"model.layers.{L}.self_attn.kv_b_proj.weight_scale_inv"])
            kv_b = kv_b.float().numpy().reshape(h, nope + v, -1)
            assert np.array_equal(g[f"blk.{L}.attn_k_b.weight"], kv_b[:, :nope, :].transpose(0, 2, 1))
            assert np.array_equal(g[f"blk.{L}.attn_v_b.weight"], kv_b[:, nope:, :])
        if name.endswith("fp8"):
            w = st["model.layers.0.mlp.gate_proj.weight"]
            assert w.dtype == torch.float8_e4m3fn and tuple(st["model.layers.0.mlp.gate_proj.weight_scale_inv"].shape) == (2, 2)
            deq = make_tiny_models.dequantize_fp8(w, st["model.layers.0.mlp.gate_proj.weight_scale_inv"]).numpy()
            assert np.array_equal(g["blk.0.ffn_gate.weight"], deq)
            e3 = make_tiny_models.dequantize_fp8(st["model.layers.1.mlp.experts.3.up_proj.weight"],
                                                 st["model.layers.1.mlp.experts.3.up_proj.weight_scale_inv"]).numpy()
            assert np.array_equal(g["blk.1.ffn_up_exps.weight"][3], e3)


def test_auto_fp8_keeps_bf16(muse, work):
    """D2: with auto, a BF16 checkpoint whose linear weights are FP8 comes out BF16 (dequantized weights in the
    precision of its unquantized matrices), norms and routers F32; identical to an explicit bf16."""
    r, kv = _fields(_muse(muse, work, "deepseek_v3_fp8bf16", "auto"))
    for t in r.tensors:
        f32 = len(t.shape) == 1 or t.name.endswith(("_norm.weight", "ffn_gate_inp.weight", ".bias"))
        assert t.tensor_type.name == ("F32" if f32 else "BF16"), (t.name, t.tensor_type.name)
    assert kv["general.file_type"][1] == 32
    a = GGUFReader(_muse(muse, work, "deepseek_v3_fp8bf16", "auto"))
    b = GGUFReader(_muse(muse, work, "deepseek_v3_fp8bf16", "bf16"))
    assert [x.data.tobytes() for x in a.tensors] == [x.data.tobytes() for x in b.tensors]


def test_unknown_architecture_lists_supported(muse, work, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(_model(work, "qwen2"), d)
    c = json.load(open(d / "config.json"))
    c["architectures"] = ["FooForCausalLM"]
    json.dump(c, open(d / "config.json", "w"))
    p = muse("convert", str(d), str(tmp_path / "o.gguf"), "-q", check=False)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    for cls in ("LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM",
                "Qwen3ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "DeepseekV3ForCausalLM"):
        assert cls in p.stderr, cls
    assert "--raw" in p.stderr and not (tmp_path / "o.gguf").exists()
    # --raw copies the tensors unchanged
    p = muse("convert", str(d), str(tmp_path / "raw.gguf"), "--raw", "-q")
    names = {t.name for t in GGUFReader(str(tmp_path / "raw.gguf")).tensors}
    assert "model.layers.0.self_attn.q_proj.weight" in names


def _peak_rss_kb(args, tmp):
    """Runs args under GNU time; returns (exit status, peak resident set in KiB). A child forked from this Python
    process would count the interpreter's pages (torch loaded) in its own ru_maxrss; GNU time's child starts
    from a small process."""
    out = os.path.join(tmp, "rss.txt")
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out, *args], capture_output=True)
    return p.returncode, int(open(out).read().split()[-1])


def test_streaming_memory(work, tmp_path):
    """Peak memory is about one tensor plus a constant, whatever the model size: a 4-layer, 32-expert F16 MoE
    (hidden 512, 213 MB of weights, 16 MB per stacked expert tensor, 48 MB of experts per layer, 512 KB per
    source tensor) converts to F32 with a peak RSS within 10 MB of converting the 0.5 MB tiny fixture (measured 5.5 MB; release
    binary: ASan's shadow memory would hide the difference)."""
    import torch
    from safetensors.torch import save_file
    rel = os.environ.get("MUSE_REL", os.path.join(ROOT, "bin", "muse"))
    if not os.access(rel, os.X_OK):
        pytest.skip("release binary bin/muse not built")
    if not os.access("/usr/bin/time", os.X_OK):
        pytest.skip("GNU time (/usr/bin/time) not installed")
    tiny = _model(work, "qwen3_moe")
    big = tmp_path / "big"
    big.mkdir()
    for f in os.listdir(tiny):
        if f != "model.safetensors" and os.path.isfile(os.path.join(tiny, f)):
            shutil.copy(os.path.join(tiny, f), big / f)
    c = json.load(open(big / "config.json"))
    E, H, F, L = 32, 512, 512, 4
    c.update(hidden_size=H, moe_intermediate_size=F, intermediate_size=2 * F, num_hidden_layers=L,
             num_attention_heads=8, num_key_value_heads=4, head_dim=64)
    c.update({k: E for k in ("num_experts", "num_local_experts") if k in c})
    json.dump(c, open(big / "config.json", "w"))
    g = torch.Generator().manual_seed(7)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).half()
    sd = {"model.embed_tokens.weight": r(400, H), "lm_head.weight": r(400, H), "model.norm.weight": r(H)}
    for i in range(L):
        p = f"model.layers.{i}."
        sd.update({p + "input_layernorm.weight": r(H), p + "post_attention_layernorm.weight": r(H),
                   p + "self_attn.q_proj.weight": r(512, H), p + "self_attn.k_proj.weight": r(256, H),
                   p + "self_attn.v_proj.weight": r(256, H), p + "self_attn.o_proj.weight": r(H, 512),
                   p + "self_attn.q_norm.weight": r(64), p + "self_attn.k_norm.weight": r(64),
                   p + "mlp.gate.weight": r(E, H)})
        for e in range(E):
            for w, shape in (("gate_proj", (F, H)), ("up_proj", (F, H)), ("down_proj", (H, F))):
                sd[f"{p}mlp.experts.{e}.{w}.weight"] = r(*shape)
    save_file(sd, str(big / "model.safetensors"), metadata={"format": "pt"})
    del sd
    size = os.path.getsize(big / "model.safetensors")
    assert size > 200e6
    rc, tiny_kb = _peak_rss_kb([rel, "convert", tiny, str(tmp_path / "tiny.gguf"), "--outtype", "f32", "-q"], tmp_path)
    assert rc == 0
    rc, big_kb = _peak_rss_kb([rel, "convert", str(big), str(tmp_path / "big.gguf"), "--outtype", "f32", "-q"], tmp_path)
    assert rc == 0
    out = GGUFReader(str(tmp_path / "big.gguf"))
    t = {x.name: x for x in out.tensors}
    assert [int(v) for v in t["blk.3.ffn_up_exps.weight"].shape] == [H, F, E]
    print(f"peak RSS: tiny {tiny_kb} KiB, {size / 1e6:.0f} MB MoE {big_kb} KiB")
    assert big_kb - tiny_kb < 10 * 1024, (tiny_kb, big_kb)


CARD = """---
license: apache-2.0
license_link: https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/LICENSE
language:
- en
- "no"
pipeline_tag: text-generation
base_model: Qwen/Qwen2.5-0.5B
tags:
  - chat
  - 'qwen'   # comment
datasets: [HuggingFaceTB/smoltalk, https://huggingface.co/datasets/foo/bar]
model-index:
- name: x
  results:
  - task: y
author: Someone
url: https://example.com/model
---

# Qwen2.5-0.5B-Instruct
"""


def test_model_card_metadata(muse, work):
    """general.* from README.md front matter (license, license link, author, source URL, base model and datasets
    from HF ids and URLs, tags with pipeline_tag, languages with the Norway quirk, a nested model-index skipped)
    and the directory name, the same keys and values as convert_hf_to_gguf.py's Metadata heuristics."""
    d = work["tmp"] / "card" / "Qwen2.5-0.5B-Instruct"
    if not d.exists():
        shutil.copytree(_model(work, "qwen2"), d)
        (d / "README.md").write_text(CARD)
    work["models"]["card"] = str(d)
    MODELS.setdefault("card", ("qwen2", {}))
    rm, kv = _compare(_muse(muse, work, "card", "f32"), _reference(work, "card", "f32"))
    assert kv["general.license"][1] == "apache-2.0"
    assert kv["general.base_model.0.repo_url"][1] == "https://huggingface.co/Qwen/Qwen2.5-0.5B"
    assert kv["general.tags"][1] == ["chat", "qwen", "text-generation"]
    assert kv["general.languages"][1] == ["en", "no"]
    assert kv["general.basename"][1] == "Qwen2.5" and kv["general.source.url"][1] == "https://example.com/model"
