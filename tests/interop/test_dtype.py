"""test_dtype.py: muse's element conversions against torch's .to(dtype) and numpy's astype, bit for bit.

muse's conversions are reached through the unit-test binary's convert mode
(`test_dtype convert [--ref] SRC DST IN OUT`, raw little-endian files). Each case runs both the
default (SIMD + threads) path and the scalar reference (--ref).

NaN bits are compared exactly wherever torch is consistent about them. Two places it is not:
  * f32 -> bf16: contiguous tensors give 0xFFFF for every NaN (torch's AVX2 loop; the sign is
    lost), 0-d and strided tensors give 0x7FC0. muse keeps sign and top payload and quiets
    ((bits >> 16) | 0x40, ggml's rule), so bf16 NaNs are compared as "both NaN" plus muse's rule.
  * f16 -> f32: torch's vector loop quiets with payload (F16C), its scalar tail returns 0x7FFFFFFF,
    so the bits depend on the tensor length. Every array here has a length that is a multiple of
    64, where torch uses the vector loop for all elements; there it equals muse bit for bit.
Set MUSE_DTYPE_EXHAUSTIVE=1 (and MUSE_DTYPE_BIN to a release build for speed) to also run all 2^32
f32 patterns against torch.
"""
import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MUSE_DTYPE_BIN", os.path.join(ROOT, "build", "asan", "tests", "test_dtype"))

pytestmark = pytest.mark.skipif(not os.access(BIN, os.X_OK), reason=f"{BIN} not built (make asan)")

# muse name -> (torch dtype, numpy storage dtype for the raw bits)
TYPES = {
    "F64": (torch.float64, np.uint64),
    "F32": (torch.float32, np.uint32),
    "F16": (torch.float16, np.uint16),
    "BF16": (torch.bfloat16, np.uint16),
    "F8_E4M3": (torch.float8_e4m3fn, np.uint8),
    "F8_E5M2": (torch.float8_e5m2, np.uint8),
    "F8_E8M0": (torch.float8_e8m0fnu, np.uint8),
    "F8_E4M3FNUZ": (torch.float8_e4m3fnuz, np.uint8),
    "F8_E5M2FNUZ": (torch.float8_e5m2fnuz, np.uint8),
}
SMALL = ["F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"]
INTS = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
        "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_}
PATHS = [False, True]  # default path, scalar reference


def muse_convert(tmp_path, src_name, dst_name, arr, ref=False):
    """Converts arr (raw bits in a numpy array) with muse; returns the output bytes."""
    fin = tmp_path / f"in.{src_name}"
    fout = tmp_path / f"out.{dst_name}"
    arr.tofile(fin)
    cmd = [BIN, "convert"] + (["--ref"] if ref else []) + [src_name, dst_name, str(fin), str(fout)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(cmd)}: {p.stderr}"
    return fout.read_bytes()


def as_torch(arr, name):
    """A numpy array of raw bits as a torch tensor of muse type name (torch lacks uint16/32/64 views)."""
    signed = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[arr.dtype.itemsize]
    return torch.from_numpy(arr.view(signed).copy()).view(TYPES[name][0])


def torch_convert(src_name, dst_name, arr):
    """The same conversion with torch: view the bits as the source dtype, .to() the target."""
    out = as_torch(arr, src_name).to(TYPES[dst_name][0]).contiguous()
    return out.view(torch.uint8).numpy().tobytes()


def bits(b, name):
    return np.frombuffer(b, dtype=TYPES[name][1])


def is_nan_bits(v, name):
    """NaN mask for raw bits of a float type."""
    if name == "F32":
        return (v & 0x7FFFFFFF) > 0x7F800000
    if name == "F64":
        return (v & 0x7FFFFFFFFFFFFFFF) > 0x7FF0000000000000
    if name == "F16":
        return (v & 0x7FFF) > 0x7C00
    if name == "BF16":
        return (v & 0x7FFF) > 0x7F80
    if name == "F8_E4M3":
        return (v & 0x7F) == 0x7F
    if name == "F8_E5M2":
        return (v & 0x7F) > 0x7C
    if name == "F8_E8M0":
        return v == 0xFF
    return v == 0x80  # fnuz


def assert_same(m, t, name, src_desc, inputs=None, nan_canonical=False):
    mv, tv = bits(m, name), bits(t, name)
    assert mv.shape == tv.shape
    if nan_canonical:
        mn, tn = is_nan_bits(mv, name), is_nan_bits(tv, name)
        assert np.array_equal(mn, tn), f"{src_desc} -> {name}: NaN positions differ"
        keep = ~mn
        mv, tv = mv[keep], tv[keep]
        if inputs is not None:
            inputs = inputs[keep]
    bad = np.nonzero(mv != tv)[0]
    if len(bad):
        i = bad[0]
        what = f" input 0x{int(inputs[i]):x}" if inputs is not None else ""
        raise AssertionError(f"{src_desc} -> {name}: {len(bad)} elements differ; first at {i}:{what} "
                             f"muse 0x{int(mv[i]):x} torch 0x{int(tv[i]):x}")


def all_codes(name):
    store = TYPES[name][1]
    return np.arange(1 << (8 * np.dtype(store).itemsize), dtype=np.uint64).astype(store)


def f32_patterns():
    """~1M random f32 bit patterns (fixed seed), every exact tie of every small type and its
    neighbours, and specials. Length is a multiple of 64 (see the module docstring)."""
    rng = np.random.default_rng(20240607)
    parts = [rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32)]
    for name in SMALL:
        if name == "F8_E8M0":
            continue
        v = as_torch(all_codes(name), name).to(torch.float64).numpy()
        v = np.sort(v[np.isfinite(v)])
        mid = ((v[:-1] + v[1:]) / 2).astype(np.float32)  # exact: few significant bits
        u = mid.view(np.uint32)
        parts += [u, u - 1, u + 1]
    # e8m0 decisions: 1.5 * 2^e and neighbours, 2^-127 region
    e = np.arange(-149, 128, dtype=np.float64)
    p = (1.5 * np.exp2(e)).astype(np.float32).view(np.uint32)
    parts += [p, p - 1, p + 1]
    parts.append(np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
                           0xFF800001, 0x7FA00000, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FC12345, 0x7F812345,
                           0x00000001, 0x80000001, 0x007FFFFF, 0x00400000, 0x00400001, 0x7F7FFFFF,
                           0xFF7FFFFF, 0x43E00000, 0x43E80000, 0x43E80001, 0x43F00000, 0x477FF000,
                           0x477FEFFF, 0x47800000], dtype=np.uint32))
    u = np.concatenate(parts)
    pad = (-len(u)) % 64
    return np.concatenate([u, np.zeros(pad, dtype=np.uint32)])


@pytest.fixture(scope="module")
def patterns():
    return f32_patterns()


@pytest.mark.parametrize("ref", PATHS, ids=["fast", "ref"])
@pytest.mark.parametrize("name", SMALL)
def test_decode_all_codes(tmp_path, name, ref):
    """Every f16/bf16 code (65536) and every f8 code (256) decodes to torch's f32, bits included."""
    codes = all_codes(name)
    assert_same(muse_convert(tmp_path, name, "F32", codes, ref), torch_convert(name, "F32", codes),
                "F32", name)


@pytest.mark.parametrize("ref", PATHS, ids=["fast", "ref"])
@pytest.mark.parametrize("name", SMALL)
def test_decode_to_f64(tmp_path, name, ref):
    codes = all_codes(name)
    assert_same(muse_convert(tmp_path, name, "F64", codes, ref), torch_convert(name, "F64", codes),
                "F64", name)


@pytest.mark.parametrize("ref", PATHS, ids=["fast", "ref"])
@pytest.mark.parametrize("name", SMALL)
def test_encode_from_f32(tmp_path, patterns, name, ref):
    """~1.3M f32 patterns (random, every tie +-1 ulp, specials) encode to torch's bits."""
    m = muse_convert(tmp_path, "F32", name, patterns, ref)
    t = torch_convert("F32", name, patterns)
    assert_same(m, t, name, "F32", inputs=patterns, nan_canonical=(name == "BF16"))
    if name == "BF16":  # muse's own NaN rule, where torch has none
        nan = (patterns & 0x7FFFFFFF) > 0x7F800000
        assert np.array_equal(bits(m, name)[nan], ((patterns[nan] >> 16) | 0x40).astype(np.uint16))


def test_e4m3_saturates_like_torch(tmp_path):
    """torch 2.15 saturates e4m3fn: every overflow, Inf included, gives +-448; NaN stays NaN."""
    x = np.array([464.0, 464.5, 480.0, 1e30, np.inf, -np.inf, -1e30, np.nan, -np.nan] * 8, dtype=np.float32)
    u = x.view(np.uint32)
    m = bits(muse_convert(tmp_path, "F32", "F8_E4M3", u), "F8_E4M3")
    assert list(m[:9]) == [0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0xFE, 0x7F, 0xFF]
    assert_same(m.tobytes(), torch_convert("F32", "F8_E4M3", u), "F8_E4M3", "F32")


@pytest.mark.parametrize("src,dst", [("F16", "BF16"), ("BF16", "F16"), ("F8_E4M3", "BF16"),
                                     ("BF16", "F8_E4M3"), ("F16", "F8_E5M2"), ("F8_E5M2", "F16"),
                                     ("F16", "F8_E8M0"), ("BF16", "F8_E4M3FNUZ")])
def test_cross_pairs(tmp_path, src, dst):
    """Conversions between two non-f32 types (muse relays through f32; torch does too)."""
    codes = all_codes(src)
    assert_same(muse_convert(tmp_path, src, dst, codes), torch_convert(src, dst, codes), dst, src,
                inputs=codes, nan_canonical=(dst == "BF16"))


def test_f32_to_f16_numpy(tmp_path, patterns):
    """numpy's astype(float16) agrees except for signalling NaNs, which numpy does not quiet."""
    m = bits(muse_convert(tmp_path, "F32", "F16", patterns), "F16")
    with np.errstate(all="ignore"):
        n = patterns.view(np.float32).astype(np.float16).view(np.uint16)
    snan = ((patterns & 0x7FFFFFFF) > 0x7F800000) & ((patterns & 0x400000) == 0)
    assert np.array_equal(m[~snan], n[~snan])
    # numpy keeps a signalling NaN's payload unquieted (bumping an all-zero one to 1); muse quiets
    u = patterns[snan]
    assert np.all(is_nan_bits(n[snan], "F16"))
    assert np.array_equal(m[snan], (((u >> 16) & 0x8000) | 0x7E00 | ((u >> 13) & 0x3FF)).astype(np.uint16))


@pytest.fixture(scope="module")
def doubles():
    rng = np.random.default_rng(7)
    d = rng.integers(0, 1 << 64, size=1 << 18, dtype=np.uint64)
    # doubles near every f16 / bf16 / e4m3 tie: the cases where rounding through f32 matters
    mids = []
    for name in ("F16", "BF16", "F8_E4M3"):
        v = as_torch(all_codes(name), name).to(torch.float64).numpy()
        v = np.sort(v[np.isfinite(v)])
        mid = (v[:-1] + v[1:]) / 2
        mids += [mid, mid * (1 + 2.0 ** -40), mid * (1 - 2.0 ** -40)]
    x = np.concatenate([d.view(np.float64)] + mids)
    x = x[: len(x) - len(x) % 64]
    return x.view(np.uint64)


def test_f64_to_f16_f32_numpy(tmp_path, doubles):
    """f64 sources round once, exactly like numpy's astype (torch rounds to f32 first)."""
    x = doubles.view(np.float64)
    fin = np.isfinite(x)
    with np.errstate(all="ignore"):
        for name, npt, store in (("F16", np.float16, np.uint16), ("F32", np.float32, np.uint32)):
            m = np.frombuffer(muse_convert(tmp_path, "F64", name, doubles), dtype=store)
            n = x.astype(npt).view(store)
            assert np.array_equal(m[fin], n[fin]), name
            assert np.all(is_nan_bits(m[np.isnan(x)], name))


@pytest.mark.parametrize("name", SMALL)
def test_f64_sources_vs_torch(tmp_path, doubles, name):
    """torch converts f64 through f32; muse rounds once. Where they differ, torch's answer is
    exactly muse's conversion of float32(x), so the difference is torch's double rounding only."""
    m = bits(muse_convert(tmp_path, "F64", name, doubles), name)
    t = bits(torch_convert("F64", name, doubles), name)
    with np.errstate(all="ignore"):
        as32 = doubles.view(np.float64).astype(np.float32).view(np.uint32)
    m32 = bits(muse_convert(tmp_path, "F32", name, as32), name)
    canon = name == "BF16"
    assert_same(m32.tobytes(), t.tobytes(), name, "F64 via F32", nan_canonical=canon)
    differ = (m != t) & ~(is_nan_bits(m, name) & is_nan_bits(t, name))
    if name in ("F16", "BF16", "F8_E4M3"):
        assert differ.sum() > 0  # the near-tie inputs do hit double rounding in torch


@pytest.mark.parametrize("iname", list(INTS))
def test_float_to_int_numpy(tmp_path, iname):
    """In-range values truncate toward zero exactly as numpy's astype; outside, muse saturates."""
    npt = INTS[iname]
    rng = np.random.default_rng(3)
    if iname == "BOOL":
        x = np.concatenate([rng.standard_normal(4096), [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-300]])
    else:
        info = np.iinfo(npt)
        lo, hi = float(info.min), float(info.max)
        x = rng.uniform(lo, hi, 1 << 16)
        x = np.concatenate([x, rng.uniform(-300, 300, 4096), [lo, 0.5, -0.5, 0.0, -0.0, 0.9999]])
        if info.bits < 64:
            x = np.concatenate([x, [hi, hi + 0.999, lo - 0.999]])
        x = x[(x > lo - 1) & (x < hi + 1) & (x < 2.0 ** 63 if info.bits == 64 and lo < 0 else True)]
    x = x[: len(x) - len(x) % 64] if len(x) >= 64 else x
    for src in ("F64", "F32"):
        xs = x.astype(np.float64 if src == "F64" else np.float32)
        if src == "F32" and iname != "BOOL":  # f32 rounding may push values out of range
            info = np.iinfo(npt)
            xs = xs[(xs.astype(np.float64) > float(info.min) - 1) & (xs.astype(np.float64) < float(info.max) + 1)]
        m = np.frombuffer(muse_convert(tmp_path, src, iname, xs.view(np.uint64 if src == "F64" else np.uint32)),
                          dtype=npt if iname != "BOOL" else np.uint8)
        n = xs.astype(npt)
        assert np.array_equal(m, n.view(np.uint8) if iname == "BOOL" else n), (src, iname)
    if iname not in ("BOOL",):  # documented saturation and NaN -> 0
        info = np.iinfo(npt)
        y = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300] + [0.0] * 59, dtype=np.float64)
        m = np.frombuffer(muse_convert(tmp_path, "F64", iname, y.view(np.uint64)), dtype=npt)
        assert list(m[:5]) == [0, info.max, info.min, info.max, info.min]


@pytest.mark.parametrize("iname", list(INTS))
def test_int_to_float(tmp_path, iname):
    """Integers to F64/F32/F16 match numpy (correctly rounded); to BF16/F8 match torch where the
    integer is exact in f32 (torch rounds through f32 for larger ones)."""
    npt = INTS[iname]
    rng = np.random.default_rng(11)
    if iname == "BOOL":
        v = rng.integers(0, 2, 4096).astype(np.bool_)
    else:
        info = np.iinfo(npt)
        v = rng.integers(info.min, info.max, size=1 << 15, dtype=npt, endpoint=True)
        small = rng.integers(max(info.min, -70000), min(info.max, 70000), size=1 << 14, dtype=np.int64).astype(npt)
        v = np.concatenate([v, small, np.array([info.min, info.max, 0], dtype=npt)])
    v = v[: len(v) - len(v) % 64]
    raw = v.view(np.uint8) if iname == "BOOL" else v
    for fname, npf, store in (("F64", np.float64, np.uint64), ("F32", np.float32, np.uint32),
                              ("F16", np.float16, np.uint16)):
        with np.errstate(all="ignore"):
            n = v.astype(npf).view(store)
        m = np.frombuffer(muse_convert(tmp_path, iname, fname, raw), dtype=store)
        assert np.array_equal(m, n), (iname, fname)
    exact = np.abs(v.astype(np.float64)) <= 2.0 ** 24
    tv = torch.from_numpy(v.astype(np.int64)) if iname != "BOOL" else torch.from_numpy(v)
    for fname in ("BF16", "F8_E4M3", "F8_E5M2"):
        m = bits(muse_convert(tmp_path, iname, fname, raw), fname)
        t = tv.to(TYPES[fname][0]).view(torch.uint8).numpy().view(TYPES[fname][1])
        assert np.array_equal(m[exact], t[exact]), (iname, fname)


@pytest.mark.parametrize("src", ["I64", "I32", "I8", "U8", "U64", "BOOL"])
def test_int_to_int_numpy(tmp_path, src):
    """Between integer types: numpy's wrap-around; to BOOL: x != 0."""
    npt = INTS[src]
    rng = np.random.default_rng(5)
    if src == "BOOL":
        v = rng.integers(0, 2, 4096).astype(np.uint8)
        vals = v.astype(np.bool_)
    else:
        info = np.iinfo(npt)
        v = rng.integers(info.min, info.max, size=4096, dtype=npt, endpoint=True)
        vals = v
    for dst, dpt in INTS.items():
        if dst == src:
            continue
        m = np.frombuffer(muse_convert(tmp_path, src, dst, v), dtype=dpt if dst != "BOOL" else np.uint8)
        n = vals.astype(dpt)
        assert np.array_equal(m, n.view(np.uint8) if dst == "BOOL" else n), (src, dst)


@pytest.mark.parametrize("src,dst", [("F4", "F32"), ("F32", "Q4_0"), ("C64", "F32"), ("F32", "F6_E2M3")])
def test_unsupported(tmp_path, src, dst):
    f = tmp_path / "in.bin"
    f.write_bytes(bytes(64))
    p = subprocess.run([BIN, "convert", src, dst, str(f), str(tmp_path / "out.bin")],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "not supported" in p.stderr


@pytest.mark.skipif(os.environ.get("MUSE_DTYPE_EXHAUSTIVE") != "1", reason="set MUSE_DTYPE_EXHAUSTIVE=1 (minutes)")
def test_exhaustive_f32(tmp_path):
    """All 2^32 f32 patterns, every small type, against torch (bf16 NaNs canonically)."""
    chunk = 1 << 24
    for base in range(0, 1 << 32, chunk):
        u = np.arange(base, base + chunk, dtype=np.uint64).astype(np.uint32)
        t32 = as_torch(u, "F32")
        for name in SMALL:
            m = muse_convert(tmp_path, "F32", name, u)
            t = t32.to(TYPES[name][0]).view(torch.uint8).numpy().tobytes()
            assert_same(m, t, name, f"F32[0x{base:x}..]", inputs=u, nan_canonical=(name == "BF16"))
