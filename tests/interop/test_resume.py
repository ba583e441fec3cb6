"""test_resume.py: `muse quantize --method gptq|awq --calib` resumes a killed run from OUT.journal.

- a run killed by SIGKILL right after layer 2 of 4 is journaled (MUSE_TEST_STOP_AFTER_LAYER) leaves the journal
  (fingerprint, one blob per finished layer, the next layer's input) and no published output; the rerun says it
  resumes, walks only layers 3 and 4 (-v prints one line per layer it runs) and publishes output byte-identical
  to an uninterrupted run, for GPTQ (sequential: each layer's input comes from the quantized layers before it)
  and AWQ; the journal and the converter's temporary GGUF are gone afterwards;
- a rerun with another --group-size or another calibration file discards the journal with a one-line notice,
  walks every layer and matches an uninterrupted run with those arguments;
- a torn journal (hidden.blob truncated) is not trusted: the rerun starts from the first layer.
"""
import os
import shutil
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "oracle"))
from conftest import MUSE  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
LAYERS = 4


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 4-layer tiny llama (the tiny model's config and tokenizer, random weights at a fixed seed) and calibration text."""
    import texts
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    d = tmp_path_factory.mktemp("resume")
    base = d / "base"
    subprocess.run([PY, os.path.join(ROOT, "scripts/make_tiny_models.py"), str(base), "--arch", "llama"], check=True,
                   capture_output=True)
    cfg = AutoConfig.from_pretrained(base)
    cfg.num_hidden_layers = LAYERS
    torch.manual_seed(7)
    src = d / "llama4"
    AutoModelForCausalLM.from_config(cfg).save_pretrained(src)
    for f in os.listdir(base):
        if f.startswith("tokenizer") or f.endswith(".jinja"):
            shutil.copy(base / f, src / f)
    raw = open(texts.eval_text(), "rb").read()
    (d / "calib.txt").write_bytes(raw[:20000])
    (d / "calib2.txt").write_bytes(raw[20000:40000])
    return d


def args(method, group=32, calib="calib.txt"):
    return ["--method", method, "--bits", "4", "--group-size", str(group), "--format", method, "--calib", calib,
            "--samples", "8", "--seq-len", "64", "-v"]


def quantize(cwd, out, a, stop=None):
    env = dict(os.environ, MUSE_PROGRESS="0")
    if stop is not None:
        env["MUSE_TEST_STOP_AFTER_LAYER"] = str(stop)
    return subprocess.run([MUSE, "quantize", "llama4", out, *a], cwd=cwd, env=env, capture_output=True, text=True)


def files(d):
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


def layers_run(stderr, method):
    return [ln for ln in stderr.splitlines() if ln.startswith(f"muse: {method} layer ")]


def same_output(cwd, a, b):
    fa, fb = files(cwd / a), files(cwd / b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert fa[k] == fb[k], f"{k} differs between {a} and {b}"


def reference(cwd, name, a):
    if not (cwd / name).exists():
        p = quantize(cwd, name, a)
        assert p.returncode == 0, p.stderr
        assert len(layers_run(p.stderr, a[1])) == LAYERS
    return name


def kill_after(cwd, out, a, n):
    p = quantize(cwd, out, a, stop=n)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr)
    j = cwd / f"{out}.journal"
    names = sorted(os.listdir(j))
    blobs = [f"layer-{i:04d}.blob" for i in range(n)]
    assert [x for x in names if x.startswith("layer-")] == blobs
    assert "hidden.blob" in names and "fingerprint" in names
    assert not (cwd / out / "config.json").exists()
    return j


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_resume_byte_identical(work, method):
    a = args(method)
    ref = reference(work, f"ref-{method}", a)
    out = f"out-{method}"
    j = kill_after(work, out, a, 2)
    p = quantize(work, out, a)
    assert p.returncode == 0, p.stderr
    assert f"resuming after layer 2 of {LAYERS}" in p.stderr
    assert [ln.split(":")[1].strip() for ln in layers_run(p.stderr, method)] == [f"{method} layer 3/4",
                                                                                  f"{method} layer 4/4"]
    same_output(work, ref, out)
    assert not j.exists()
    assert not [x for x in os.listdir(work) if x.startswith(out + ".")], os.listdir(work)


@pytest.mark.parametrize("change", ["group", "calib"])
def test_changed_arguments_start_over(work, change):
    a = args("gptq")
    b = args("gptq", group=64) if change == "group" else args("gptq", calib="calib2.txt")
    ref = reference(work, f"ref-gptq-{change}", b)
    out = f"out-{change}"
    j = kill_after(work, out, a, 3)
    p = quantize(work, out, b)
    assert p.returncode == 0, p.stderr
    notice = [ln for ln in p.stderr.splitlines() if "starting over" in ln]
    assert len(notice) == 1 and f"{out}.journal" in notice[0]
    assert "resuming" not in p.stderr
    assert len(layers_run(p.stderr, "gptq")) == LAYERS
    same_output(work, ref, out)
    assert not j.exists()


def test_torn_journal_is_not_trusted(work):
    a = args("awq")
    ref = reference(work, "ref-awq", a)
    out = "out-torn"
    j = kill_after(work, out, a, 3)
    h = j / "hidden.blob"
    data = h.read_bytes()
    h.write_bytes(data[: len(data) // 2])
    p = quantize(work, out, a)
    assert p.returncode == 0, p.stderr
    assert "resuming" not in p.stderr
    assert len(layers_run(p.stderr, "awq")) == LAYERS
    same_output(work, ref, out)
    assert not j.exists()
