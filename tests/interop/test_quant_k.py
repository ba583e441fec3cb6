"""test_quant_k.py: muse's k-quants (Q2_K..Q6_K) against gguf-py's decoders and the real ggml, byte for byte.

muse side: build/asan/tests/test_quant_k (tests/unit/test_quant_k.c) in its file modes
    quant TYPE N_PER_ROW IN.f32 OUT [IMATRIX.f32]   and   dequant TYPE IN OUT.f32
ggml side: ggml_quant (tests/oracle/ggml_quant.c, built by scripts/build_llama_cpp.sh against llama.cpp
0c1e57098bba), which runs ggml_quantize_chunk and to_float. MUSE_GGML_QUANT=PATH overrides its location.
Quantized bytes must be identical, with and without importance weights; decoded floats must be bit-identical
(NaN positions equal) to gguf-py 0.19's numpy decoders and to ggml's own.
"""
import os
import re
import subprocess
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf import quants as gq  # noqa: E402

BIN = os.environ.get("QUANT_K_BIN", os.path.join(ROOT, "build", "asan", "tests", "test_quant_k"))
# the path tests/oracle/llamacpp.py knows it by; spelled out so this file needs nothing else from there
GGML_QUANT = os.environ.get("MUSE_GGML_QUANT", os.path.join(ROOT, ".cache", "llama.cpp", "build", "bin", "ggml_quant"))
QK_K = 256
# name as muse/ggml spell it -> (gguf-py type, block bytes)
TYPES = {"q2_K": (Q.Q2_K, 84), "q3_K": (Q.Q3_K, 110), "q4_K": (Q.Q4_K, 144), "q5_K": (Q.Q5_K, 176),
         "q6_K": (Q.Q6_K, 210)}
NPR = 1024  # four super-blocks per row


def need_muse():
    if not os.access(BIN, os.X_OK):
        pytest.skip(f"{os.path.relpath(BIN, ROOT)} not built (make asan)")


def need_ggml():
    if not os.access(GGML_QUANT, os.X_OK):
        pytest.skip(f"ggml oracle {os.path.relpath(GGML_QUANT, ROOT)} not built (scripts/build_llama_cpp.sh)")


def run(args):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")


def quantize(tool, mode_args, t, x, imatrix):
    """Runs a quantizer taking TYPE N_PER_ROW IN OUT [IMATRIX]; returns the bytes."""
    with tempfile.TemporaryDirectory() as d:
        src, dst, im = (os.path.join(d, n) for n in ("in.bin", "out.bin", "im.bin"))
        np.ascontiguousarray(x, dtype="<f4").tofile(src)
        args = [tool, *mode_args, t, x.shape[1], src, dst]
        if imatrix is not None:
            np.ascontiguousarray(imatrix, dtype="<f4").tofile(im)
            args.append(im)
        run(args)
        with open(dst, "rb") as f:
            return f.read()


def muse_quant(t, x, imatrix=None):
    return quantize(BIN, ["quant"], t, x, imatrix)


def ggml_quant(t, x, imatrix=None):
    return quantize(GGML_QUANT, [], t, x, imatrix)


def muse_dequant(t, raw):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        with open(src, "wb") as f:
            f.write(raw)
        run([BIN, "dequant", t, src, dst])
        return np.fromfile(dst, dtype="<f4")


def ggml_dequant(t, raw):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        with open(src, "wb") as f:
            f.write(raw)
        run([GGML_QUANT, "--dequant", t, QK_K, src, dst])
        return np.fromfile(dst, dtype="<f4")


def rows():
    """(name, rows of NPR float32): the cases scale searches get wrong, several super-blocks per row."""
    rng = np.random.default_rng(1234)
    g = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = []
    out.append(("normal", g(8, NPR)))
    out.append(("scales", g(4, NPR) * np.array([[0.02], [30.0], [1e-3], [300.0]], dtype=np.float32)))
    z = g(2, NPR)
    z[0, 256:512] = 0            # one all-zero super-block between random ones
    z[1, :] = 0
    z[1, 700] = 1.0              # a lone value
    out.append(("zero_blocks", z))
    c = np.empty((3, NPR), np.float32)
    c[0] = 0.75
    c[1] = -2.5
    c[2] = np.repeat(np.array([1, -1, 0.5, 3e-3], np.float32), NPR // 4)
    c[2, 16:32] = 7.0            # one constant sub-block inside another constant
    out.append(("constant", c))
    a = np.abs(g(3, NPR))
    a[1] = -a[1]
    a[2, :512] = np.abs(a[2, :512]) + 5.0   # positive with a large offset: the min path
    out.append(("one_signed", a))
    out.append(("huge", g(2, NPR) * np.float32(1e30)))
    out.append(("near_max", np.minimum(np.abs(g(1, NPR)) * np.float32(1e38), np.float32(3.4e38))))
    out.append(("tiny", g(2, NPR) * np.float32(1e-30)))
    out.append(("subnormal", g(2, NPR) * np.float32(1e-40)))
    mixed = g(2, NPR)
    mixed[0, ::3] *= np.float32(1e-30)
    mixed[1, :256] *= np.float32(1e20)
    out.append(("mixed_magnitudes", mixed))
    o = g(3, NPR)
    o[0, ::256] = 1e4            # one outlier per super-block
    o[1, 5::16] = -40.0          # one per sub-block
    o[2, 100] = 3e6
    out.append(("outliers", o))
    s = np.zeros((2, NPR), np.float32)
    s[:, 1::2] = -0.0
    s[1, 300] = 1e-3
    out.append(("signed_zeros", s))
    ints = np.tile(np.arange(-4, 4, dtype=np.float32), (2, NPR // 8))
    ints[1] *= 0.5               # exact grid points: ties in every rounding
    out.append(("grid", ints))
    sp = g(2, NPR) * (rng.random((2, NPR)) < 0.05)
    out.append(("sparse", sp.astype(np.float32)))
    # Not finite: ggml quantizes these without complaint, and muse's quantizer must give the same bytes.
    nf = g(2, NPR)
    nf[0, 3] = np.inf
    nf[0, 600] = -np.inf
    nf[1, 10] = np.nan
    nf[1, 900:910] = np.nan
    out.append(("nonfinite", nf))
    return out


def imatrices():
    """(name, NPR weights or None)."""
    rng = np.random.default_rng(99)
    out = [("none", None)]
    out.append(("random", (rng.random(NPR) * 2 + 1e-3).astype(np.float32)))
    w = (rng.random(NPR) * 5).astype(np.float32)
    w[::5] = 0                  # scattered zeros
    w[512:768] = 0              # a whole super-block's columns with no weight
    w[40:56] = 0                # a whole 16-sub-block
    out.append(("zeros", w))
    out.append(("dynamic", (10.0 ** rng.uniform(-6, 3, NPR)).astype(np.float32)))
    out.append(("ones", np.ones(NPR, np.float32)))
    return out


with np.errstate(all="ignore"):
    ROWS = rows()
IMATRICES = imatrices()


def first_diff(a, b, block):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return f"first difference at byte {i} (super-block {i // block}, row {i // (block * NPR // QK_K)})"
    return f"lengths {len(a)} vs {len(b)}"


@pytest.mark.parametrize("im_name", [n for n, _ in IMATRICES])
@pytest.mark.parametrize("t", list(TYPES))
def test_quant_bytes_equal_ggml(t, im_name):
    """Every row set, quantized by muse and by ggml_quantize_chunk, gives identical bytes."""
    need_muse()
    need_ggml()
    imatrix = dict(IMATRICES)[im_name]
    bad = []
    for name, x in ROWS:
        with np.errstate(all="ignore"):
            ours, theirs = muse_quant(t, x, imatrix), ggml_quant(t, x, imatrix)
        if ours != theirs:
            bad.append(f"{name}: {first_diff(ours, theirs, TYPES[t][1])}")
    assert not bad, f"{t} imatrix={im_name}: " + "; ".join(bad)


def random_blocks(t, nblk, seed):
    """Random block bytes with every fp16 field made finite (top exponent bit cleared)."""
    rng = np.random.default_rng(seed)
    size = TYPES[t][1]
    raw = rng.integers(0, 256, (nblk, size), dtype=np.uint8)
    f16_at = {"q2_K": (80, 82), "q3_K": (108,), "q4_K": (0, 2), "q5_K": (0, 2), "q6_K": (208,)}[t]
    for off in f16_at:
        raw[:, off + 1] &= 0xBF
    return raw.tobytes()


def assert_same_floats(a, b, what):
    a, b = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b)), f"{what}: NaN positions differ"
    diff = np.flatnonzero(a[~nan].view(np.uint32) != b[~nan].view(np.uint32))
    assert diff.size == 0, (f"{what}: {diff.size} values differ, first at {diff[0]}: "
                            f"{a[~nan][diff[0]]!r} vs {b[~nan][diff[0]]!r}")


@pytest.mark.parametrize("t", list(TYPES))
def test_dequant_equals_gguf_py(t):
    """muse's decoder against gguf-py's numpy decoder: random blocks and muse's own quantized rows."""
    need_muse()
    raws = [random_blocks(t, 512, 7)]
    with np.errstate(all="ignore"):
        for name, x in ROWS:
            if name in ("normal", "outliers", "zero_blocks", "tiny", "huge"):
                raws.append(muse_quant(t, x))
                raws.append(muse_quant(t, x, dict(IMATRICES)["zeros"]))
    for i, raw in enumerate(raws):
        ours = muse_dequant(t, raw)
        with np.errstate(all="ignore"):
            ref = gq.dequantize(np.frombuffer(raw, dtype=np.uint8), TYPES[t][0])
        assert_same_floats(ours, ref, f"{t} input {i}")


@pytest.mark.parametrize("t", list(TYPES))
def test_dequant_equals_ggml(t):
    """muse's decoder against ggml's to_float on random blocks."""
    need_muse()
    need_ggml()
    raw = random_blocks(t, 512, 8)
    assert_same_floats(muse_dequant(t, raw), ggml_dequant(t, raw), t)


def test_unit_golden_hashes_are_ggml():
    """The FNV-1a hashes tests/unit/test_quant_k.c embeds are what ggml writes for its golden input."""
    need_muse()
    need_ggml()
    src = open(os.path.join(ROOT, "tests", "unit", "test_quant_k.c")).read()
    table = re.findall(r"\{ MUSE_DT_(Q\d_K), 0x([0-9a-f]{16})ull, 0x([0-9a-f]{16})ull \}", src)
    assert len(table) == 5
    with tempfile.TemporaryDirectory() as d:
        xs, ims = os.path.join(d, "x.bin"), os.path.join(d, "im.bin")
        run([BIN, "golden", xs, ims])
        x = np.fromfile(xs, dtype="<f4").reshape(-1, 512)
        im = np.fromfile(ims, dtype="<f4")

    def fnv(b):
        h = 0xcbf29ce484222325
        for c in b:
            h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h

    for name, plain, imp in table:
        t = name[:2].lower() + "_K"
        assert fnv(ggml_quant(t, x)) == int(plain, 16), name
        assert fnv(ggml_quant(t, x, im)) == int(imp, 16), name
