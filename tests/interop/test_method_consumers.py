"""test_method_consumers.py: `muse quantize --method` outputs as their consumers read them (issue 12 items 5, 6, 7, 11).

- item 5: muse's default GPTQ and AWQ outputs pass vLLM's published config validation, re-implemented below from its
  source (no vLLM wheel installs without CUDA here); --act-order --static-groups writes the plain layout
  (desc_act false, g_idx k / group); true_sequential says what was done; the combinations a named consumer
  refuses get one warning line naming it and the alternative; GPTQModel's CPU torch kernel loads the output when
  GPTQModel is importable (scripts/deps.sh installs it into .venv-gptqmodel and tests/run.sh runs that test there);
- item 6: the compressed-tensors output of a tied-embedding model lists lm_head in "ignore", and transformers +
  compressed-tensors load it with logits equal to the dequantized reference's;
- item 7: every quantized directory has its own model card (Hub front matter read by huggingface_hub) and every
  safetensors file muse writes says "format": "pt" (read with the safetensors package);
- item 11: --method rtn accepts --calib/--samples/--seq-len, notes once that it ignores them, and writes the same
  bytes as without them.
"""
import hashlib
import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "oracle"))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SAMPLES, SEQ = 4, 32  # calibration walks of a few hundred tokens: a second or two on the tiny fixtures


# ---------------------------------------------------------------- vLLM's config validation, re-implemented
#
# From vllm-project/vllm main (vllm/model_executor/layers/quantization/, as read for issue 12):
# - gptq_marlin.py GPTQMarlinConfig: vLLM's default path for quant_method "gptq" (override_quantization_method picks
#   it when is_gptq_marlin_compatible). from_config reads "bits", "group_size", "desc_act", "sym" with get_from_keys
#   (a missing key is a ValueError), "lm_head" and "dynamic" optionally; __init__ raises "Unsupported quantization
#   config: bits=.., sym=.." unless (bits, sym) is in TYPE_MAP = {(4, True): uint4b8, (8, True): uint8b128}.
# - utils/marlin_utils.py check_marlin_supported: group_size in MARLIN_SUPPORTED_GROUP_SIZES = [-1, 32, 64, 128].
# - gptq.py / gptq_marlin.py create_weights: qweight int32 [K / (32 / bits), N], qzeros int32 [K / g, N / (32 / bits)],
#   scales [K / g, N] in the model dtype, g_idx int32 [K]; "input_size_per_partition % group_size != 0" is an error.
#   checkpoint_format "gptq" is v1 (stored zero - 1); "gptq_v2" another convention.
# - vLLM 0.34 refuses desc_act true on its default path (issue 12's reading of its source): required false here.
# - awq.py AWQConfig.__init__: "Currently, only 4-bit weight quantization is supported for AWQ"; from_config reads
#   "w_bit"|"bits", "q_group_size"|"group_size", "zero_point", "modules_to_not_convert" (optional);
#   awq_marlin.py is_awq_marlin_compatible: bits, group_size, zero_point all present; create_weights: qweight
#   int32 [K, N / 8], qzeros int32 [K / g, N / 8], scales [K / g, N]; K % group_size == 0.

def _get(cfg, keys):
    """QuantizationConfig.get_from_keys."""
    for k in keys:
        if k in cfg:
            return cfg[k]
    raise ValueError(f"Cannot find any of {keys} in the model's quantization config.")


def vllm_gptq_check(qc, tensors, dtype):
    assert qc.get("quant_method", "").lower() == "gptq"
    bits, group, desc_act, sym = (_get(qc, [k]) for k in ("bits", "group_size", "desc_act", "sym"))
    if (bits, sym) not in {(4, True), (8, True)}:
        raise ValueError(f"Unsupported quantization config: bits={bits}, sym={sym}")
    if group not in (-1, 32, 64, 128):
        raise ValueError(f"group_size {group} not supported by Marlin")
    if desc_act and group != -1:
        raise ValueError("desc_act: true is refused by vLLM 0.34's default GPTQ path")
    if qc.get("checkpoint_format", "gptq") != "gptq":
        raise ValueError(f"checkpoint_format {qc.get('checkpoint_format')}")
    pack = 32 // bits
    layers = {k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")}
    assert layers
    for p in layers:
        qw, qz, sc = tensors[p + ".qweight"], tensors[p + ".qzeros"], tensors[p + ".scales"]
        K, N = qw.shape[0] * pack, qw.shape[1]
        g = K if group == -1 else group
        if K % g:
            raise ValueError(f"{p}: input size {K} is not aligned with group_size {g}")
        assert qw.dtype == np.int32 and qz.dtype == np.int32, p
        assert qz.shape == (K // g, N // pack) and sc.shape == (K // g, N) and sc.dtype == dtype, p
        if p + ".g_idx" in tensors:
            assert tensors[p + ".g_idx"].dtype == np.int32 and tensors[p + ".g_idx"].shape == (K,), p
    return bits, group


def vllm_awq_check(qc, tensors, dtype):
    assert qc.get("quant_method", "").lower() == "awq"
    bits, group, zp = _get(qc, ["w_bit", "bits"]), _get(qc, ["q_group_size", "group_size"]), _get(qc, ["zero_point"])
    if bits != 4:
        raise ValueError(f"Currently, only 4-bit weight quantization is supported for AWQ, but got {bits} bits.")
    assert isinstance(zp, bool)
    layers = {k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")}
    assert layers
    for p in layers:
        qw, qz, sc = tensors[p + ".qweight"], tensors[p + ".qzeros"], tensors[p + ".scales"]
        K, N = qw.shape[0], qw.shape[1] * 8
        if K % group:
            raise ValueError(f"{p}: input size {K} is not aligned with group_size {group}")
        assert qw.dtype == np.int32 and qz.shape == (K // group, N // 8) and sc.shape == (K // group, N), p
        assert sc.dtype == dtype, p


def gptqmodel_gptq_check(qc):
    """GPTQModel 7.x models/loader.py: format gptq with sym false loads only when meta.quantizer names
    gptqmodel >= 0.9.0 (QuantizeConfig.is_quantized_by_gptaq / MIN_VERSION_WITH_V2)."""
    if qc.get("sym", True):
        return
    for q in (qc.get("meta") or {}).get("quantizer", []):
        name, _, ver = q.partition(":")
        if name.lower() == "gptqmodel" and tuple(int(x) for x in re.findall(r"\d+", ver)[:3]) >= (0, 9, 0):
            return
    raise ValueError("Format: Loading of a sym=False model with format=gptq is only supported if produced by "
                     "gptqmodel version >= 0.9.0")


# ---------------------------------------------------------------- fixtures

def make_tiny(d, *extra):
    subprocess.run([PY, os.path.join(ROOT, "scripts/make_tiny_models.py"), str(d), *extra], check=True,
                   capture_output=True)
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = make_tiny(tmp_path_factory.mktemp("mc") / "llama")
    # A source model card whose license must carry over and whose text must not.
    (d / "README.md").write_text("---\nlicense: apache-2.0\nlanguage:\n- en\npipeline_tag: text-generation\n---\n\n"
                                 "# The source card\n\nSOURCE-CARD-TEXT\n")
    return d


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("mc") / "tied", "--tie")


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    import texts
    p = tmp_path_factory.mktemp("mc") / "calib.txt"
    p.write_bytes(open(texts.eval_text(), "rb").read()[:20000])
    return p


def quantize(muse, src, out, method, fmt, *extra, calib=None, check=True):
    args = ["quantize", src, out, "--method", method, "--format", fmt, "--bits", 4, "--group-size", 32, "-q", *extra]
    if calib:
        args += ["--calib", calib, "--samples", SAMPLES, "--seq-len", SEQ]
    return muse(*args, check=check)


def qconfig(out):
    return json.load(open(os.path.join(out, "config.json")))["quantization_config"]


def warnings_of(p):
    return [ln for ln in p.stderr.splitlines() if ln.startswith("muse: warning:")]


# ---------------------------------------------------------------- item 5

def test_item5_default_gptq_and_awq_pass_vllm_rules(muse, tiny, calib, tmp_path):
    """Issue 12 item 5: the default --method gptq output was asymmetric, which vLLM's GPTQ config refuses."""
    out = tmp_path / "gptq"
    p = quantize(muse, tiny, out, "gptq", "gptq", calib=calib)
    qc = qconfig(out)
    assert qc == json.load(open(out / "quantize_config.json"))
    t = load_file(str(out / "model.safetensors"))
    assert vllm_gptq_check(qc, t, np.float16) == (4, 32)
    gptqmodel_gptq_check(qc)
    assert qc["sym"] is True and qc["desc_act"] is False and qc["true_sequential"] is False
    assert qc["meta"]["quantizer"][0].startswith("muse:")
    assert not warnings_of(p), p.stderr
    out = tmp_path / "awq"
    p = quantize(muse, tiny, out, "awq", "awq", calib=calib)
    qc = qconfig(out)
    vllm_awq_check(qc, load_file(str(out / "model.safetensors")), np.float16)
    assert qc["zero_point"] is True  # AutoAWQ's default, which vLLM's awq and awq_marlin take
    assert not warnings_of(p), p.stderr
    # AWQ's scales in the GPTQ layout: symmetric there too, so vLLM loads it
    out = tmp_path / "awq-gptq"
    p = quantize(muse, tiny, out, "awq", "gptq", calib=calib)
    vllm_gptq_check(qconfig(out), load_file(str(out / "model.safetensors")), np.float16)
    assert not warnings_of(p), p.stderr


def test_item5_act_order_static_groups_is_the_plain_layout(muse, tiny, calib, tmp_path):
    """Issue 12 item 5: --act-order --static-groups wrote desc_act true although every g_idx is k / group;
    true_sequential was true without --true-sequential."""
    out = tmp_path / "ao"
    p = quantize(muse, tiny, out, "gptq", "gptq", "--sym", "--act-order", "--static-groups", "--true-sequential",
                 calib=calib)
    qc = qconfig(out)
    t = load_file(str(out / "model.safetensors"))
    vllm_gptq_check(qc, t, np.float16)
    assert qc["desc_act"] is False and qc["static_groups"] is True and qc["true_sequential"] is True
    assert qc["meta"]["true_sequential"] is True
    for k, v in t.items():
        if k.endswith(".g_idx"):
            assert np.array_equal(v, np.arange(v.shape[0]) // 32), k
    assert not warnings_of(p), p.stderr


def test_item5_refused_combinations_warn_once(muse, tiny, calib, tmp_path):
    """Issue 12 item 5: a combination a named consumer refuses is written, with one line naming the consumer and
    the alternative (compressed-tensors)."""
    out = tmp_path / "asym"
    p = quantize(muse, tiny, out, "gptq", "gptq", "--asym", calib=calib)
    w = warnings_of(p)
    assert len(w) == 1 and "vLLM" in w[0] and "GPTQModel" in w[0] and "compressed-tensors" in w[0], p.stderr
    qc = qconfig(out)
    assert qc["sym"] is False
    with pytest.raises(ValueError, match="sym=False"):
        vllm_gptq_check(qc, load_file(str(out / "model.safetensors")), np.float16)
    with pytest.raises(ValueError, match="gptqmodel"):
        gptqmodel_gptq_check(qc)
    # the alternative named: compressed-tensors carries the zero points
    out2 = tmp_path / "asym-ct"
    p = quantize(muse, tiny, out2, "gptq", "compressed-tensors", "--asym", calib=calib)
    assert not warnings_of(p) and qconfig(out2)["config_groups"]["group_0"]["weights"]["symmetric"] is False
    out3 = tmp_path / "desc"
    p = quantize(muse, tiny, out3, "gptq", "gptq", "--act-order", calib=calib)
    w = warnings_of(p)
    assert len(w) == 1 and "desc_act" in w[0] and "--static-groups" in w[0], p.stderr
    assert qconfig(out3)["desc_act"] is True
    p = muse("quantize", tiny, tmp_path / "x", "--method", "rtn", "--format", "gptq", "--sym", "--asym", check=False)
    assert p.returncode == 2 and "--asym" in p.stderr


def test_item5_gptqmodel_torch_kernel_loads_gptq_output(muse, tiny, calib, tmp_path, caplog):
    """Issue 12 item 5: GPTQModel's CPU torch kernel loads muse's default GPTQ output and computes what muse's own
    dequantization computes. GPTQModel is not a pinned test dependency (see the skip reason)."""
    try:
        import gptqmodel  # noqa: F401
    except Exception as e:
        pytest.skip(f"GPTQModel not importable here ({type(e).__name__}: {e}); tests/run.sh runs this test again "
                    "under .venv-gptqmodel, where scripts/deps.sh installs it (tests/requirements-gptqmodel.txt)")
    import torch
    from gptqmodel import BACKEND, GPTQModel
    out = tmp_path / "gptq"
    dq = tmp_path / "gptq.dq.safetensors"
    quantize(muse, tiny, out, "gptq", "gptq", "--dequant-out", dq, calib=calib)
    with caplog.at_level(logging.WARNING):
        model = GPTQModel.load(str(out), backend=BACKEND.TORCH, device="cpu")
    # accelerate's load_checkpoint_in_model warned "does not contain metadata" before item 7's "format": "pt"
    assert not [r for r in caplog.records if "metadata" in r.getMessage()]
    ref = load_file(str(dq))
    mods = dict(model.model.named_modules())
    torch.manual_seed(0)
    worst = 0.0
    for name, w in ref.items():
        m = mods[name[: -len(".weight")]]
        x = torch.randn(3, w.shape[1], dtype=torch.float16)
        with torch.no_grad():
            y = m(x).float().numpy()
        want = x.float().numpy() @ w.T
        err = float(np.abs(y - want).max() / np.abs(want).max())
        worst = max(worst, err)
        assert err < 1e-2, (name, err)  # fp16 activations and accumulation in the torch kernel
    print(f"\nGPTQModel TorchLinear vs muse's dequantization: max relative error {worst:.1e} over {len(ref)} layers")


# ---------------------------------------------------------------- item 6

def dequantized_reference(src, out, dq):
    """The source architecture in F32 holding muse's unpacked weights (dq) and the output's kept tensors."""
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    kept = load_file(os.path.join(out, "model.safetensors"))
    sd = m.state_dict()
    with torch.no_grad():
        for k, v in list(kept.items()) + list(dq.items()):
            if k in sd:
                sd[k].copy_(torch.from_numpy(v.astype(np.float32)))
    return m


def test_item6_tied_compressed_tensors_loads_with_reference_logits(muse, tied, tmp_path):
    """Issue 12 item 6: "ignore": [] made compressed-tensors expect a quantized tied lm_head; transformers 5.23 +
    compressed-tensors 0.20 load muse's output and its logits equal the dequantized F32 reference's within 2e-3
    of their range (the decompressed weights are fp16-rounded, the reference keeps them in F32)."""
    import torch
    from transformers import AutoModelForCausalLM
    out = tmp_path / "ct"
    dqp = tmp_path / "ct.dq.safetensors"
    quantize(muse, tied, out, "rtn", "compressed-tensors", "--dequant-out", dqp)
    dq = load_file(str(dqp))
    logs = []
    handler = logging.Handler()
    handler.emit = lambda r: logs.append(r.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    except Exception as e:
        pytest.fail(f"transformers could not load the tied compressed-tensors output: {type(e).__name__}: {e}")
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    bad = [m for m in logs if re.search(r"not initialized|newly initialized|missing|unexpected|metadata", m, re.I)]
    assert not bad, bad
    assert qconfig(out)["ignore"] == ["lm_head"]
    ref = dequantized_reference(tied, str(out), dq)
    ids = torch.tensor([[1, 17, 42, 99, 3, 250, 7, 64]])
    with torch.no_grad():
        got, want = model(ids).logits.float(), ref(ids).logits.float()
    scale = float(want.abs().max())
    err = float((got - want).abs().max())
    print(f"\ntied CT vs dequantized F32 reference: max |dlogit| {err:.2e} (logit range {scale:.2f})")
    assert err <= 2e-3 * scale, (err, scale)
    # the tie holds: the head is the (unquantized) embedding
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


# ---------------------------------------------------------------- item 7

def st_files(*dirs_or_files):
    for p in dirs_or_files:
        p = str(p)
        if os.path.isdir(p):
            yield from (os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith(".safetensors"))
        else:
            yield p


@pytest.mark.parametrize("fmt", ["gptq", "awq", "compressed-tensors"])
def test_item7_model_card_and_format_pt(muse, tiny, calib, tmp_path, fmt):
    """Issue 12 item 7: the source's card was copied unchanged; safetensors headers lacked "format": "pt"."""
    from huggingface_hub import ModelCard
    method = "awq" if fmt == "awq" else "gptq"
    out = tmp_path / fmt
    dq = tmp_path / f"{fmt}.dq.safetensors"
    quantize(muse, tiny, out, method, fmt, "--dequant-out", dq, calib=calib)
    card = ModelCard.load(str(out / "README.md"))
    d = card.data.to_dict()
    assert d["base_model"] == "llama" and d["base_model_relation"] == "quantized"
    assert d["license"] == "apache-2.0" and d["language"] == ["en"] and d["pipeline_tag"] == "text-generation"
    assert {"muse", fmt, method, "4-bit"} <= set(d["tags"])
    body = card.text
    assert "SOURCE-CARD-TEXT" not in body
    sha = hashlib.sha256(open(calib, "rb").read()).hexdigest()
    rep = json.load(open(out / "quant_report.json"))
    for want in (sha, f"{SAMPLES} x {SEQ} tokens", "| bits | 4 |", "| group size | 32 |", f"| method | {method} |",
                 "muse version"):
        assert want in body, want
    assert f"{rep['quantized_params']} of {rep['total_params']}" in body
    check_format_pt(st_files(out, dq))


def check_format_pt(files):
    """safetensors' own reader sees {"format": "pt"}; accelerate (when installed) loads without its warning."""
    try:
        from accelerate.utils.modeling import load_state_dict
    except ImportError:
        load_state_dict = None
    n = 0
    for f in files:
        with safe_open(f, "np") as h:
            assert h.metadata() == {"format": "pt"}, f
        if load_state_dict:
            logs = []
            handler = logging.Handler()
            handler.emit = lambda r: logs.append(r.getMessage())
            logging.getLogger("accelerate").addHandler(handler)
            try:
                load_state_dict(f)
            finally:
                logging.getLogger("accelerate").removeHandler(handler)
            assert not logs, logs
        n += 1
    return n


def test_item7_every_safetensors_writer_says_pt(muse, tiny, tmp_path):
    """Issue 12 item 7: convert's outputs (one file, shards) carry "format": "pt" too; rtn's card says no data."""
    muse("convert", tiny, tmp_path / "f16", "--outtype", "f16")
    muse("convert", tiny, tmp_path / "sh", "--outtype", "f32", "--shard-size", "100K")
    assert check_format_pt(st_files(tmp_path / "f16", tmp_path / "sh")) >= 3
    quantize(muse, tiny, tmp_path / "rtn", "rtn", "compressed-tensors")
    assert "| calibration | none (round-to-nearest reads no data) |" in (tmp_path / "rtn" / "README.md").read_text()


# ---------------------------------------------------------------- item 11

def test_item11_rtn_accepts_calibration_flags(muse, tiny, calib, tmp_path):
    """Issue 12 item 11: `--method rtn --calib FILE` was a usage error, so one script could not run rtn, gptq and
    awq with the same flags. Now: accepted, one note, the same output as without them."""
    a = quantize(muse, tiny, tmp_path / "a", "rtn", "gptq", calib=calib)
    notes = [ln for ln in a.stderr.splitlines() if ln.startswith("muse: ")]
    assert len(notes) == 1 and notes[0].startswith("muse: note:") and "rtn" in notes[0] and "--calib" in notes[0]
    b = quantize(muse, tiny, tmp_path / "b", "rtn", "gptq")
    assert not b.stderr.strip()
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert not os.path.exists(tmp_path / "a.journal")
    p = muse("quantize", tiny, tmp_path / "c", "--method", "rtn", "--format", "awq", "--group-size", 32, "--samples", 8,
             "--seq-len", 64, "-q")
    assert p.returncode == 0 and p.stderr.count("muse: note:") == 1
