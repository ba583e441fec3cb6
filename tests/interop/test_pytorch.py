"""test_pytorch.py: muse's PyTorch reader against torch itself (torch.save writes, torch.load is the oracle).

For every tensor: the name, dtype and shape from `muse inspect --json` must match torch's, and the values must
match element by element: contiguous tensors at the byte range muse reports (zero-copy views into the file),
and every tensor through muse_reader_read, dumped densely by the driver build/asan/tests/test_pytorch --dump.
"""
import io
import json
import os
import struct
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from conftest import MUSE, ROOT

DUMP = os.path.join(ROOT, "build", "asan", "tests", "test_pytorch")

MUSE_DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64", torch.complex64: "C64",
    torch.complex128: "C128",
}


def flatten(obj, prefix=""):
    """Tensors of a (nested) state dict under muse's naming: keys joined with '.'."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for k, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def raw_bytes(t):
    """A tensor's dense row-major bytes, whatever its dtype."""
    t = t.detach().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


def same_elements(name, want, got, itemsize):
    """Element-by-element comparison as unsigned integers of the element width (bit-exact, NaN-safe)."""
    assert len(got) == len(want), f"{name}: {len(got)} bytes, expected {len(want)}"
    if not want:
        return
    kind = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64, 16: np.uint64}[itemsize]
    a, b = np.frombuffer(want, dtype=kind), np.frombuffer(got, dtype=kind)
    bad = np.nonzero(a != b)[0]
    assert bad.size == 0, f"{name}: {bad.size} elements differ, first at element {bad[0] // max(1, itemsize // 8)}"


def check(muse, path, tmp_path, expect=None, load_kw=None):
    """Inspects path with muse and compares every tensor with torch's reading of it."""
    if expect is None:
        expect = flatten(torch.load(path, **(load_kw or {"weights_only": True})))
    info = json.loads(muse("inspect", "--json", path).stdout)
    assert info["format"] == "pytorch"
    got = info["tensors"]
    assert [t["name"] for t in got] == list(expect.keys())
    out = tmp_path / ("dump-" + os.path.basename(str(path)))
    out.mkdir()
    subprocess.run([DUMP, "--dump", str(path), str(out)], check=True, capture_output=True)
    files = [f["path"] for f in info["files"]]
    for i, t in enumerate(got):
        ref = expect[t["name"]]
        assert t["dtype"] == MUSE_DTYPE[ref.dtype], t["name"]
        assert t["shape"] == list(ref.shape), t["name"]
        want = raw_bytes(ref)
        assert t["nbytes"] == len(want), t["name"]
        size = ref.element_size()
        same_elements(t["name"] + " (read)", want, (out / f"{i}.bin").read_bytes(), size)
        if not t.get("strided"):
            with open(files[t["file"]], "rb") as f:
                f.seek(t["offset"])
                same_elements(t["name"] + " (view)", want, f.read(t["nbytes"]), size)
        else:
            assert not ref.is_contiguous() or ref.numel() == 0, f"{t['name']}: contiguous in torch, strided in muse"
    return info


def rand(shape, dtype, gen):
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    if dtype.is_floating_point:
        x = torch.randn(shape, generator=gen, dtype=torch.float32) * 3
        return x.to(dtype)
    if dtype.is_complex:
        return torch.randn(shape, generator=gen, dtype=dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(lo, hi, shape, generator=gen, dtype=torch.int64).to(dtype)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def test_dtypes_and_shapes(muse, tmp_path, gen):
    sd = {}
    shapes = [(), (0,), (0, 3), (7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]
    for dt in MUSE_DTYPE:
        for k, shape in enumerate(shapes):
            sd[f"{str(dt)[6:]}.{k}"] = rand(shape, dt, gen)
    p = tmp_path / "dtypes.bin"
    torch.save(sd, p)
    check(muse, p, tmp_path)


def test_float8_special_values(muse, tmp_path):
    vals = torch.tensor([0.0, -0.0, 1.0, -2.5, 448.0, -448.0, 2.0 ** -9, float("nan")])
    sd = {"e4m3": vals.to(torch.float8_e4m3fn), "e5m2": vals.to(torch.float8_e5m2),
          "e5m2_inf": torch.tensor([float("inf"), -float("inf")]).to(torch.float8_e5m2)}
    p = tmp_path / "f8.bin"
    torch.save(sd, p)
    check(muse, p, tmp_path)


def test_shared_storages_and_offsets(muse, tmp_path, gen):
    base = torch.randn(64, generator=gen)
    emb = torch.randn(10, 4, generator=gen)
    sd = {"emb.weight": emb, "lm_head.weight": emb,  # tied: one storage, two names
          "tail": base[40:], "mid": base[5:21].view(4, 4), "one": base[63], "all": base}
    p = tmp_path / "shared.bin"
    torch.save(sd, p)
    info = check(muse, p, tmp_path)
    off = {t["name"]: t["offset"] for t in info["tensors"]}
    assert off["emb.weight"] == off["lm_head.weight"]
    assert off["tail"] == off["all"] + 40 * 4 and off["mid"] == off["all"] + 5 * 4
    assert len(zipfile.ZipFile(p).namelist()) < 10  # two storages, not six


def test_noncontiguous_views(muse, tmp_path, gen):
    x = torch.randn(6, 8, generator=gen)
    y = torch.randn(2, 3, 4, 5, generator=gen)
    sd = {"t": x.t(), "step": x[::2, 1::3], "col": x[:, 5], "perm": y.permute(3, 1, 0, 2),
          "slice4": y[:, 1:, ::2, 3:], "expand": torch.randn(3, 1, generator=gen).expand(3, 4),
          "half_t": x.half().t(), "bf16_step": x.bfloat16()[1::2, ::3], "i64_t": torch.arange(12).view(3, 4).t(),
          "f8_t": x.to(torch.float8_e4m3fn).t(), "empty_t": torch.zeros(0, 3).t()}
    p = tmp_path / "strided.bin"
    torch.save(sd, p)
    info = check(muse, p, tmp_path)
    strided = {t["name"] for t in info["tensors"] if t.get("strided")}
    assert {"t", "step", "col", "perm", "slice4", "expand", "half_t", "bf16_step", "i64_t", "f8_t"} <= strided


def test_module_state_dict(muse, tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Embedding(11, 6), torch.nn.Linear(6, 5), torch.nn.LayerNorm(5),
                            torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm1d(4))
    p = tmp_path / "pytorch_model.bin"
    torch.save(m.state_dict(), p)
    check(muse, p, tmp_path)
    # a directory with pytorch_model.bin is found too
    sub = tmp_path / "dir"
    sub.mkdir()
    check(muse, tmp_path, sub, expect=flatten(torch.load(p, weights_only=True)))


def test_parameters_and_nesting(muse, tmp_path, gen):
    sd = {"state_dict": {"p": torch.nn.Parameter(torch.randn(3, 2, generator=gen)),
                         "q": torch.nn.Parameter(torch.randn(4, generator=gen), requires_grad=False)},
          "epoch": 7, "lr": 0.01, "name": "run-1", "dtype": torch.float16, "none": None,
          "layers": [torch.randn(2, generator=gen), {"w": torch.randn(1, generator=gen)}]}
    p = tmp_path / "ckpt.pt"
    torch.save(sd, p)
    info = check(muse, p, tmp_path)
    assert [t["name"] for t in info["tensors"]] == ["state_dict.p", "state_dict.q", "layers.0", "layers.1.w"]


def test_protocol4(muse, tmp_path, gen):
    sd = {"a": torch.randn(3, 4, generator=gen), "b": torch.randn(4, 3, generator=gen).t(),
          "f8": torch.randn(5, generator=gen).to(torch.float8_e5m2), "u16": torch.arange(7, dtype=torch.int32).to(torch.uint16)}
    p = tmp_path / "p4.bin"
    torch.save(sd, p, pickle_protocol=4)
    # torch's own weights_only unpickler rejects protocol 4 (FRAME), so the trusted full loader is the oracle here
    check(muse, p, tmp_path, load_kw={"weights_only": False})


def test_saved_to_buffer(muse, tmp_path, gen):
    buf = io.BytesIO()
    sd = {"w": torch.randn(5, 5, generator=gen)}
    torch.save(sd, buf)
    p = tmp_path / "buffer.bin"
    p.write_bytes(buf.getvalue())
    assert zipfile.ZipFile(p).namelist()[0].startswith("archive/")
    check(muse, p, tmp_path)


def test_sharded_index(muse, tmp_path, gen):
    d = tmp_path / "model"
    d.mkdir()
    shards = {"pytorch_model-00001-of-00002.bin": {"a": torch.randn(4, 4, generator=gen),
                                                   "b": torch.randn(3, generator=gen).half()},
              "pytorch_model-00002-of-00002.bin": {"c": torch.randn(2, 5, generator=gen).t(),
                                                   "d": torch.arange(6, dtype=torch.int32)}}
    weight_map = {}
    for fname, sd in shards.items():
        torch.save(sd, d / fname)
        weight_map.update({k: fname for k in sd})
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 0},
                                                                 "weight_map": dict(sorted(weight_map.items()))}))
    expect = {}
    for sd in shards.values():
        expect.update(sd)
    info = check(muse, d / "pytorch_model.bin.index.json", tmp_path, expect=expect)
    assert len(info["files"]) == 2
    assert [t["file"] for t in info["tensors"]] == [0, 0, 1, 1]
    (tmp_path / "again").mkdir()
    check(muse, d, tmp_path / "again", expect=expect)


def test_legacy_format_refused(muse, tmp_path):
    p = tmp_path / "legacy.bin"
    torch.save({"a": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    r = muse("inspect", p, check=False)
    assert r.returncode == 1
    assert "legacy (pre-1.6" in r.stderr and "byte 0" in r.stderr


@pytest.mark.skipif(not os.environ.get("MUSE_BIG_TESTS"), reason="writes a 4.3 GB file; set MUSE_BIG_TESTS=1")
def test_zip64_past_4gib(muse, tmp_path):
    """A storage past the 4 GiB mark: miniz's ZIP64 extras and 24-byte data descriptors."""
    big = torch.empty(4_300_000_000, dtype=torch.uint8)
    big[:16] = torch.arange(16, dtype=torch.uint8)
    big[-16:] = torch.arange(16, dtype=torch.uint8) + 100
    after = torch.arange(10, dtype=torch.int64)
    p = tmp_path / "big.bin"
    try:
        torch.save({"big": big, "after": after, "t": torch.arange(6.0).view(2, 3).t()}, p)
        del big
        info = json.loads(muse("inspect", "--json", p).stdout)
        t = {x["name"]: x for x in info["tensors"]}
        assert t["after"]["offset"] > 2**32 and t["big"]["nbytes"] == 4_300_000_000
        with open(p, "rb") as f:
            f.seek(t["big"]["offset"])
            assert f.read(16) == bytes(range(16))
            f.seek(t["big"]["offset"] + 4_300_000_000 - 16)
            assert f.read(16) == bytes(range(100, 116))
            f.seek(t["after"]["offset"])
            assert struct.unpack("<10q", f.read(80)) == tuple(range(10))
        assert t["t"]["strided"]
    finally:
        p.unlink(missing_ok=True)  # pytest keeps old tmp dirs: do not leave 4 GB behind
