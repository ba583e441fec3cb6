"""test_quant_legacy.py: muse's Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, IQ4_NL/IQ4_XS, MXFP4, TQ1_0/TQ2_0 against two
independent implementations, byte for byte.

- gguf-py (the venv's gguf 0.19): numpy re-implementations of ggml's reference quantizers (no importance
  weights; IQ4_* not covered) and dequantizers for every type.
- the real ggml (tests/oracle/ggml_quant, built by scripts/build_llama_cpp.sh): ggml_quantize_chunk, i.e.
  exactly what llama-quantize writes, with and without importance weights, and to_float. Skipped with the
  reason when the binary is not built.

muse runs through build/asan/tests/test_quant_legacy (modes `quant` and `dequant`, built by make asan).
Environment: MUSE_QUANT_LEGACY and MUSE_GGML_QUANT override the two binaries' paths.
"""
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import llamacpp  # noqa: E402

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402

BIN = os.environ.get("MUSE_QUANT_LEGACY", os.path.join(ROOT, "build", "asan", "tests", "test_quant_legacy"))
GGML_QUANT = os.environ.get("MUSE_GGML_QUANT", llamacpp.tool("ggml_quant"))

# gguf-py's numpy code warns on the edge rows (overflow in 1/d, NaN casts); the bytes are what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# muse name -> (block size, gguf-py type, gguf-py can quantize)
TYPES = {
    "Q4_0": (32, Q.Q4_0, True),
    "Q4_1": (32, Q.Q4_1, True),
    "Q5_0": (32, Q.Q5_0, True),
    "Q5_1": (32, Q.Q5_1, True),
    "Q8_0": (32, Q.Q8_0, True),
    "IQ4_NL": (32, Q.IQ4_NL, False),
    "IQ4_XS": (256, Q.IQ4_XS, False),
    "MXFP4": (32, Q.MXFP4, True),
    "TQ1_0": (256, Q.TQ1_0, True),
    "TQ2_0": (256, Q.TQ2_0, True),
}
# row lengths: several blocks, and for the 32-blocks one that is not a multiple of 256
ROW_LENGTHS = {32: (96, 512), 256: (256, 768)}


def need_ggml():
    if not os.access(GGML_QUANT, os.X_OK):
        pytest.skip(f"ggml oracle not built: no {os.path.relpath(GGML_QUANT, ROOT)} (scripts/build_llama_cpp.sh)")


def ggml_quantize(name, data, imatrix=None):
    """ggml_quantize_chunk over the rows of data (tests/oracle/ggml_quant; see llamacpp.quantize)."""
    data = np.ascontiguousarray(data, dtype="<f4")
    with tempfile.TemporaryDirectory() as d:
        src, dst, im = (os.path.join(d, n) for n in ("in.bin", "out.bin", "im.bin"))
        data.tofile(src)
        args = [GGML_QUANT, name.lower(), data.shape[1], src, dst]
        if imatrix is not None:
            np.ascontiguousarray(imatrix, dtype="<f4").tofile(im)
            args.append(im)
        run(args)
        with open(dst, "rb") as f:
            return f.read()


def ggml_dequantize(name, raw, n_per_row):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        with open(src, "wb") as f:
            f.write(bytes(raw))
        run([GGML_QUANT, "--dequant", name.lower(), n_per_row, src, dst])
        return np.fromfile(dst, dtype="<f4")


def run(args):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(map(str, args))} failed ({p.returncode}): {p.stderr[-3000:]}"
    return p


def muse_quantize(name, data, imatrix=None, threads=None):
    assert os.access(BIN, os.X_OK), f"{BIN} missing: run make asan"
    data = np.ascontiguousarray(data, dtype="<f4")
    with tempfile.TemporaryDirectory() as d:
        src, dst, im = (os.path.join(d, n) for n in ("in.bin", "out.bin", "im.bin"))
        data.tofile(src)
        args = [BIN, "quant"] + ([f"-t{threads}"] if threads else []) + [name, data.shape[1], src, dst]
        if imatrix is not None:
            np.ascontiguousarray(imatrix, dtype="<f4").tofile(im)
            args.append(im)
        run(args)
        with open(dst, "rb") as f:
            return f.read()


def muse_dequantize(name, raw):
    assert os.access(BIN, os.X_OK), f"{BIN} missing: run make asan"
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        with open(src, "wb") as f:
            f.write(bytes(raw))
        run([BIN, "dequant", name, src, dst])
        return np.fromfile(dst, dtype="<f4")


def sample_rows(n, seed):
    """Gaussian rows plus every row kind the quantizers get wrong."""
    rng = np.random.default_rng(seed)
    nrm = lambda: rng.standard_normal(n)  # noqa: E731
    rows = [nrm(), nrm() * 0.02, nrm() * 30.0]
    rows.append(np.where(np.arange(n) % 3 == 0, -0.0, 0.0))             # all zero, +0 and -0
    rows.append(np.where(np.arange(n) < n // 2, 0.75, -3.0))             # constant blocks
    rows.append(np.abs(nrm()))                                           # one sign
    rows.append(-np.abs(nrm()))
    r = nrm() * 0.01
    r[min(77, n - 1)] = 40.0                                             # outliers
    r[n // 3] = -1e4
    rows.append(r)
    rows.append(nrm() * 1e-30)                                           # tiny
    rows.append(nrm() * 1e-40)                                           # f32 subnormal
    rows.append(nrm() * 1e30)                                            # huge
    rows.append(nrm() * np.repeat(10.0 ** rng.integers(-6, 6, n // 32), 32))  # a scale per block
    r = nrm()
    r[::32] = 3.0                                                        # block maxima ties
    r[1::32] = -3.0
    rows.append(r)
    rows.append(rng.integers(-8, 9, n).astype(np.float64))               # ties on the grid
    rows.append(rng.integers(-8, 9, n) * 0.5 + 0.25)
    r = nrm()
    r[5::32] = -9.0                                                      # a dominant negative per block
    rows.append(r)
    r = nrm()
    r[:32] = 0.0                                                         # zero first block, rest normal
    r[40:64] = 1e-20
    rows.append(r)
    return np.stack(rows).astype(np.float32)


def sample_imatrix(n, seed):
    rng = np.random.default_rng(seed + 1000)
    im = rng.uniform(0.05, 8.0, n)
    im[rng.random(n) < 0.2] = 0.0    # some zero weights
    im[:32] = 0.0                    # one block with no weight at all
    im[32:64] = rng.uniform(0, 1e-3, 32)
    return im.astype(np.float32)


def first_diff(a, b, row_size):
    a = np.frombuffer(a, np.uint8)
    b = np.frombuffer(b, np.uint8)
    if a.size != b.size:
        return f"sizes {a.size} != {b.size}"
    idx = np.flatnonzero(a != b)
    if idx.size == 0:
        return None
    i = int(idx[0])
    return (f"{idx.size} bytes differ; first at byte {i} (row {i // row_size}, byte {i % row_size} of the row): "
            f"muse {a[i]:#04x} oracle {b[i]:#04x}; rows differing: {sorted(set(int(j) // row_size for j in idx))}")


def cases():
    for name, (blck, _, _) in TYPES.items():
        for n in ROW_LENGTHS[blck]:
            yield name, n


CASES = list(cases())
IDS = [f"{t}-{n}" for t, n in CASES]


@pytest.mark.parametrize("name,n", CASES, ids=IDS)
def test_quantize_vs_gguf_py(name, n):
    blck, qt, can = TYPES[name]
    if not can:
        pytest.skip(f"gguf-py {importlib.metadata.version('gguf')} has no {name} quantizer (ggml covers it below)")
    data = sample_rows(n, seed=n)
    # Signed zeros: in an all-zero block ggml's Q4_0/Q5_0 keep their initial max = +0 (d = +0/-8 = -0,
    # fp16 0x8000) where gguf-py takes the block's first element, maybe -0 (d = +0); Q4_1/Q5_1's min is
    # the first of the smallest in ggml (-0 when it comes first), numpy's min returns either zero. ggml
    # is the reference (the -0 rows are checked against it below); for gguf-py every zero is made +0.
    data = np.where(data == 0, np.float32(0), data)
    ours = muse_quantize(name, data)
    theirs = gguf.quants.quantize(data, qt).tobytes()
    diff = first_diff(ours, theirs, len(ours) // data.shape[0])
    assert diff is None, diff


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("name,n", CASES, ids=IDS)
def test_quantize_vs_ggml(name, n, weighted):
    need_ggml()
    data = sample_rows(n, seed=n + 1)
    im = sample_imatrix(n, seed=n) if weighted else None
    ours = muse_quantize(name, data, im)
    theirs = ggml_quantize(name, data, im)
    diff = first_diff(ours, theirs, len(ours) // data.shape[0])
    assert diff is None, diff


@pytest.mark.parametrize("name", list(TYPES))
def test_quantize_vs_ggml_big(name):
    """Many random rows at several scales (about 40k blocks), with and without weights."""
    need_ggml()
    rng = np.random.default_rng(7)
    n = 4096
    data = (rng.standard_normal((96, n)) * (10.0 ** rng.uniform(-4, 4, (96, 1)))).astype(np.float32)
    data[::7] += rng.standard_normal((len(data[::7]), n)).astype(np.float32) * 5  # heavier tails
    for im in (None, rng.uniform(0, 3, n).astype(np.float32)):
        ours = muse_quantize(name, data, im, threads=2)
        theirs = ggml_quantize(name, data, im)
        diff = first_diff(ours, theirs, len(ours) // data.shape[0])
        assert diff is None, f"{'weighted' if im is not None else 'plain'}: {diff}"


def random_blocks(name, nblocks, seed):
    """Random block bytes: every code, and fp16 scales that include NaN, Inf and subnormals."""
    blck, qt, _ = TYPES[name]
    _, tsize = gguf.constants.GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (nblocks, tsize), dtype=np.uint8)
    return raw


def same_floats(a, b):
    """Element-wise equality with NaN == NaN (bits compared elsewhere)."""
    a = np.asarray(a, np.float32).ravel()
    b = np.asarray(b, np.float32).ravel()
    if a.shape != b.shape:
        return f"shapes {a.shape} != {b.shape}"
    bad = ~((a == b) | (np.isnan(a) & np.isnan(b))) | (np.signbit(a) != np.signbit(b)) & ~np.isnan(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return f"{int(bad.sum())} elements differ; first {i}: muse {a[i]!r} oracle {b[i]!r}"
    return None


@pytest.mark.parametrize("name", list(TYPES))
def test_dequantize_vs_gguf_py(name):
    blck, qt, _ = TYPES[name]
    raw = random_blocks(name, 300, seed=len(name))
    ours = muse_dequantize(name, raw.tobytes())
    theirs = gguf.quants.dequantize(raw, qt)
    diff = same_floats(ours, theirs)
    assert diff is None, diff
    # and on real quantized data
    data = sample_rows(512, seed=3)
    q = muse_quantize(name, data)
    diff = same_floats(muse_dequantize(name, q), gguf.quants.dequantize(np.frombuffer(q, np.uint8), qt))
    assert diff is None, diff


@pytest.mark.parametrize("name", list(TYPES))
def test_dequantize_vs_ggml(name):
    """Bit for bit, NaN payloads included: random bytes cover NaN/Inf/subnormal fp16 scales and every code."""
    need_ggml()
    blck, qt, _ = TYPES[name]
    raw = random_blocks(name, 2048, seed=17 + len(name))
    n_per_row = blck * 8
    ours = muse_dequantize(name, raw.tobytes()).view(np.uint32)
    theirs = ggml_dequantize(name, raw.tobytes(), n_per_row).ravel().view(np.uint32)
    assert ours.shape == theirs.shape
    bad = np.flatnonzero(ours != theirs)
    assert bad.size == 0, f"{bad.size} differ; first {bad[0]}: muse {ours[bad[0]]:#010x} ggml {theirs[bad[0]]:#010x}"


def test_nonfinite_vs_ggml():
    """Inf, NaN and near-FLT_MAX inputs (overflowing sums and scales): C leaves some of ggml's casts
    undefined there, and muse reproduces what ggml's x86-64 build stores, weights or not."""
    need_ggml()
    rng = np.random.default_rng(5)
    n = 512
    rows = []
    for k in range(10):
        r = rng.standard_normal(n).astype(np.float32)
        r[rng.random(n) < 0.02 * (k + 1)] = [np.inf, -np.inf, np.nan, 3.4e38, -3.4e38][k % 5]
        rows.append(r)
    rows.append(np.full(n, 3.4e38, np.float32))
    rows.append(np.array([3.4e38, -3.4e38] * (n // 2), np.float32))
    x = np.stack(rows)
    im = sample_imatrix(n, seed=5)
    for name in TYPES:
        for w in (None, im):
            ours, theirs = muse_quantize(name, x, w), ggml_quantize(name, x, w)
            diff = first_diff(ours, theirs, len(ours) // x.shape[0])
            assert diff is None, f"{name} {'weighted' if w is not None else 'plain'}: {diff}"


def test_threads_identical_files():
    """The file mode with 1 and 2 threads gives the same bytes (the unit test checks more thread counts)."""
    data = sample_rows(512, seed=11)
    im = sample_imatrix(512, seed=11)
    for name in TYPES:
        assert muse_quantize(name, data, im, threads=1) == muse_quantize(name, data, im, threads=2), name


def golden_from_ggml():
    """(name, plain, weighted, decoded) FNV-1a hashes of ggml's output for the unit test's golden input."""
    with tempfile.TemporaryDirectory() as d:
        src, im = os.path.join(d, "in.bin"), os.path.join(d, "im.bin")
        rows, n = map(int, run([BIN, "golden-input", src, im]).stdout.split())
        x = np.fromfile(src, "<f4").reshape(rows, n)
        w = np.fromfile(im, "<f4")
    fnv = lambda b: _fnv1a(bytes(b))  # noqa: E731
    out = []
    for name in TYPES:
        plain = ggml_quantize(name, x)
        weighted = ggml_quantize(name, x, w)
        decoded = ggml_dequantize(name, plain, n).astype("<f4").tobytes()
        out.append((name, fnv(plain), fnv(weighted), fnv(decoded)))
    return out


def _fnv1a(b):
    h = 0xcbf29ce484222325
    for byte in b:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_unit_golden_table_matches_ggml():
    """The GOLDEN table in tests/unit/test_quant_legacy.c holds ggml's hashes (so the unit test checks ggml
    identity without the oracle). Prints the rows to paste when it does not."""
    need_ggml()
    want = golden_from_ggml()
    rows = "\n".join(f"\t{{ MUSE_DT_{n}, 0x{p:016x}ull, 0x{w:016x}ull, 0x{d:016x}ull }},"
                     for n, p, w, d in want)
    with open(os.path.join(ROOT, "tests", "unit", "test_quant_legacy.c")) as f:
        src = f.read()
    table = re.search(r"GOLDEN\[\] = \{\n(.*?)\n\};", src, re.S)
    assert table and table.group(1).strip() == rows.strip(), "GOLDEN table out of date; ggml gives:\n" + rows
