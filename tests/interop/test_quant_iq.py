"""test_quant_iq.py: muse's lattice types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) against the real ggml.

muse side: build/asan/tests/test_quant_iq (tests/unit/test_quant_iq.c), batch mode: one process runs every job
and builds the lattice tables once. ggml side: ggml_quant (tests/oracle/ggml_quant.c, built by
scripts/build_llama_cpp.sh against llama.cpp 0c1e57098bba), which runs ggml_quantize_chunk and to_float, also
batched (ggml builds its IQ1/IQ2 grids once per process, up to a minute of CPU here).
MUSE_QUANT_IQ and MUSE_GGML_QUANT override the two binaries' paths.

Compared:
- quantized bytes, for every type, every row set below (several row lengths, random rows and the edge cases:
  all-zero blocks, constant blocks, huge/tiny/subnormal magnitudes, outliers, one-signed blocks, signed zeros,
  exact grid values, sparse rows) and every importance vector (none where ggml allows it: not for IQ2_XXS,
  IQ2_XS, IQ1_S, which ggml_quantize_requires_imatrix names; random, with zeros, dynamic range, all ones);
- decoded floats, bit for bit (NaN positions equal), of random blocks and of quantized rows, against ggml's
  to_float and gguf-py 0.19's numpy decoders;
- the FNV hashes test_quant_iq.c embeds, recomputed with ggml;
- quant/iq_grids.h against a fresh run of scripts/gen_iq_grids.py on the llama.cpp source.
Not compared: rows with NaN or Inf. ggml aborts on some of them (GGML_ASSERT on NaN scores) and writes
whatever its searches leave on others; muse's unit test checks that it stays defined and deterministic there.
gguf-py has no quantizer for these types, only decoders.
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf import quants as gq  # noqa: E402

BIN = os.environ.get("MUSE_QUANT_IQ", os.path.join(ROOT, "build", "asan", "tests", "test_quant_iq"))
GGML_QUANT = os.environ.get("MUSE_GGML_QUANT", os.path.join(ROOT, ".cache", "llama.cpp", "build", "bin", "ggml_quant"))
GGML_SRC = os.path.join(ROOT, ".cache", "llama.cpp", "src", "ggml", "src")
QK_K = 256
# ggml name -> (gguf-py type, block bytes, ggml requires an imatrix, offsets of the fp16 fields in a block)
TYPES = {
    "iq1_s": (Q.IQ1_S, 50, True, (0,)),
    "iq1_m": (Q.IQ1_M, 56, False, ()),
    "iq2_xxs": (Q.IQ2_XXS, 66, True, (0,)),
    "iq2_xs": (Q.IQ2_XS, 74, True, (0,)),
    "iq2_s": (Q.IQ2_S, 82, False, (0,)),
    "iq3_xxs": (Q.IQ3_XXS, 98, False, (0,)),
    "iq3_s": (Q.IQ3_S, 110, False, (0,)),
}

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def need_muse():
    if not os.access(BIN, os.X_OK):
        pytest.skip(f"{os.path.relpath(BIN, ROOT)} not built (make asan)")


def need_ggml():
    if not os.access(GGML_QUANT, os.X_OK):
        pytest.skip(f"ggml oracle {os.path.relpath(GGML_QUANT, ROOT)} not built (scripts/build_llama_cpp.sh)")


def run(args, timeout=1800):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")


def batch(tool, jobs):
    """Runs jobs through TOOL --batch (ggml_quant) or TOOL batch (test_quant_iq), one process.
    jobs: ("q", type, data, imatrix) or ("d", type, raw bytes); returns bytes / float32 arrays in order."""
    with tempfile.TemporaryDirectory() as d:
        lines = []
        for i, job in enumerate(jobs):
            src, dst = os.path.join(d, f"{i}.in"), os.path.join(d, f"{i}.out")
            if job[0] == "q":
                _, t, x, im = job
                np.ascontiguousarray(x, dtype="<f4").tofile(src)
                line = [t, str(x.shape[1]), src, dst]
                if im is not None:
                    imp = os.path.join(d, f"{i}.im")
                    np.ascontiguousarray(im, dtype="<f4").tofile(imp)
                    line.append(imp)
            else:
                _, t, raw = job
                with open(src, "wb") as f:
                    f.write(raw)
                line = ["--dequant", t, str(QK_K), src, dst]
            lines.append(" ".join(line))
        jf = os.path.join(d, "jobs.txt")
        with open(jf, "w") as f:
            f.write("\n".join(lines) + "\n")
        run([tool, "--batch" if tool == GGML_QUANT else "batch", jf])
        out = []
        for i, job in enumerate(jobs):
            path = os.path.join(d, f"{i}.out")
            if job[0] == "q":
                with open(path, "rb") as f:
                    out.append(f.read())
            else:
                out.append(np.fromfile(path, dtype="<f4"))
        return out


def rows():
    """(name, rows): several row lengths, the random case and the edge cases lattice searches get wrong."""
    rng = np.random.default_rng(4321)
    g = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = [("normal_1024", g(6, 1024)), ("normal_256", g(3, 256)), ("normal_768", g(4, 768)),
           ("normal_2816", g(2, 2816))]
    out.append(("scales", g(4, 512) * np.array([[0.02], [30.0], [1e-3], [300.0]], dtype=np.float32)))
    z = g(5, 512)
    z[0, 256:] = 0                # an all-zero super-block after a random one
    z[1, :] = 0
    z[1, 300] = 1.0               # a lone value
    z[2, 0:32] = 0                # an all-zero 32-block first (IQ3_S then shifts its later blocks)
    z[2, 256 + 96:256 + 128] = 0  # and one in the middle
    z[3, 16:32] = 0               # an all-zero 16-block (IQ1_M, IQ2_XS, IQ2_S blocks)
    z[3, 256 + 8:256 + 16] = 0    # an all-zero group of 8
    z[4, :] = -0.0
    out.append(("zero_blocks", z))
    c = np.empty((5, 512), np.float32)
    c[0] = 0.75
    c[1] = -2.5
    c[2] = np.repeat(np.array([1, -1, 0.5, 3e-3], np.float32), 128)
    c[3] = np.tile(np.repeat(np.array([2.0, -0.25], np.float32), 16), 16)  # constant 16-blocks, alternating
    c[4] = g(1, 512)
    c[4, 32:64] = 7.0             # one constant 32-block inside random ones
    out.append(("constant", c))
    a = np.abs(g(4, 512))
    a[1] = -a[1]
    a[2, :256] = a[2, :256] + 5.0  # positive with a large offset
    a[3] = np.where(np.arange(512) % 2 == 0, a[3], 0)  # positive and zeros
    out.append(("one_signed", a))
    out.append(("huge", g(2, 512) * np.float32(1e6)))
    out.append(("huge_1e8", g(2, 512) * np.float32(1e8)))
    out.append(("huge_1e9", g(2, 512) * np.float32(1e9)))
    out.append(("tiny", g(2, 512) * np.float32(1e-5)))       # above every type's all-zero threshold
    out.append(("tiny_1e-8", g(2, 512) * np.float32(1e-8)))  # around IQ1_M's, IQ2_S's and IQ3_XXS's
    out.append(("tiny_1e-12", g(2, 512) * np.float32(1e-12)))
    out.append(("tiny_1e-30", g(2, 512) * np.float32(1e-30)))
    out.append(("subnormal", g(2, 512) * np.float32(1e-40)))
    mixed = g(3, 512)
    mixed[0, ::3] *= np.float32(1e-30)
    mixed[1, :256] *= np.float32(1e12)
    mixed[2, ::32] *= np.float32(1e6)
    out.append(("mixed_magnitudes", mixed))
    o = g(3, 512)
    o[0, ::256] = 1e4             # one outlier per super-block
    o[1, 5::16] = -40.0           # one per 16-block
    o[2, 100] = 3e6
    out.append(("outliers", o))
    s = np.zeros((2, 512), np.float32)
    s[:, 1::2] = -0.0
    s[1, 300] = 1e-3
    out.append(("signed_zeros", s))
    ints = np.tile(np.arange(-4, 4, dtype=np.float32), (3, 64))
    ints[1] *= 0.5                # exact grid-like values: ties in every rounding
    ints[2] = np.tile(np.array([1, 1, 3, 3, 5, 5, 7, 7], np.float32), 64)
    out.append(("grid", ints))
    sp = g(2, 512) * (rng.random((2, 512)) < 0.05)
    out.append(("sparse", sp.astype(np.float32)))
    return out


def imatrix(name, n):
    """Importance vector `name` for rows of n, or None."""
    rng = np.random.default_rng(99 + n)
    if name == "none":
        return None
    if name == "random":
        return (rng.random(n) * 2 + 1e-3).astype(np.float32)
    if name == "zeros":
        w = (rng.random(n) * 5).astype(np.float32)
        w[::5] = 0                # scattered zeros
        w[40:56] = 0              # a whole 16-block
        w[64:96] = 0              # a whole 32-block
        if n >= 512:
            w[256:512] = 0        # a whole super-block's columns
        return w
    if name == "dynamic":
        return (10.0 ** rng.uniform(-6, 3, n)).astype(np.float32)
    if name == "ones":
        return np.ones(n, np.float32)
    raise KeyError(name)


IMATRICES = ("none", "random", "zeros", "dynamic", "ones")
with np.errstate(all="ignore"):
    ROWS = rows()


def jobs_for(t):
    return [(rn, im) for rn, _ in ROWS for im in IMATRICES if not (im == "none" and TYPES[t][2])]


_CACHE = {}


def quantized(tool):
    """{(type, rows name, imatrix name): bytes} for every job, from one batch process per tool (cached)."""
    if tool not in _CACHE:
        keys, jobs = [], []
        data = dict(ROWS)
        for t in TYPES:
            for rn, im in jobs_for(t):
                keys.append((t, rn, im))
                jobs.append(("q", t, data[rn], imatrix(im, data[rn].shape[1])))
        with np.errstate(all="ignore"):
            _CACHE[tool] = dict(zip(keys, batch(tool, jobs)))
    return _CACHE[tool]


def first_diff(a, b, block, npr):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            per_row = block * npr // QK_K
            return f"first difference at byte {i} (row {i // per_row}, super-block {i % per_row // block})"
    return f"lengths {len(a)} vs {len(b)}"


@pytest.mark.parametrize("t", list(TYPES))
def test_quant_bytes_equal_ggml(t):
    """Every row set under every importance vector ggml accepts: muse's bytes are ggml's."""
    need_muse()
    need_ggml()
    ours, theirs = quantized(BIN), quantized(GGML_QUANT)
    data = dict(ROWS)
    bad, n = [], 0
    for rn, im in jobs_for(t):
        a, b = ours[(t, rn, im)], theirs[(t, rn, im)]
        n += 1
        assert len(b) == data[rn].shape[0] * data[rn].shape[1] // QK_K * TYPES[t][1]
        if a != b:
            bad.append(f"{rn}/imatrix={im}: {first_diff(a, b, TYPES[t][1], data[rn].shape[1])}")
    assert not bad, f"{t}: {len(bad)} of {n} cases differ: " + "; ".join(bad)
    assert n == len(ROWS) * (len(IMATRICES) - (1 if TYPES[t][2] else 0))


def test_edge_cases_reach_the_searches():
    """The edge-case rows are not all trivial: most give nonzero blocks, and the zero-block rows give some
    all-zero sub-block fields, for every type (guards against a generator that silently produces zeros)."""
    need_muse()
    ours = quantized(BIN)
    for t in TYPES:
        for rn in ("constant", "one_signed", "outliers", "huge", "tiny", "grid", "mixed_magnitudes"):
            raw = ours[(t, rn, "random")]
            assert any(raw), f"{t} {rn}: all bytes zero"


def random_blocks(t, nblk, seed):
    """Random block bytes with every fp16 field made finite (top exponent bit cleared)."""
    rng = np.random.default_rng(seed)
    size = TYPES[t][1]
    raw = rng.integers(0, 256, (nblk, size), dtype=np.uint8)
    for off in TYPES[t][3]:
        raw[:, off + 1] &= 0xBF
    if t == "iq1_m":              # the fp16 scale is the top nibbles of the four u16 scale words
        raw[:, 55] &= 0xBF
    return raw.tobytes()


def assert_same_floats(a, b, what):
    a, b = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b)), f"{what}: NaN positions differ"
    diff = np.flatnonzero(a[~nan].view(np.uint32) != b[~nan].view(np.uint32))
    assert diff.size == 0, (f"{what}: {diff.size} values differ, first at {diff[0]}: "
                            f"{a[~nan][diff[0]]!r} vs {b[~nan][diff[0]]!r}")


def dequant_inputs(t):
    """Random blocks (finite scales, and a second set with any scale bits) plus muse's quantized rows."""
    raws = [random_blocks(t, 256, 17), np.random.default_rng(18).integers(0, 256, 64 * TYPES[t][1],
                                                                          dtype=np.uint8).tobytes()]
    if os.access(BIN, os.X_OK):
        ours = quantized(BIN)
        for rn in ("normal_1024", "zero_blocks", "outliers", "huge", "constant"):
            raws.append(ours[(t, rn, "zeros")])
    return raws


def test_dequant_equals_ggml():
    """muse's decoders against ggml's to_float, every type, one batch per tool."""
    need_muse()
    need_ggml()
    jobs = [("d", t, raw) for t in TYPES for raw in dequant_inputs(t)]
    ours, theirs = batch(BIN, jobs), batch(GGML_QUANT, jobs)
    for (_, t, _), a, b in zip(jobs, ours, theirs):
        assert_same_floats(a, b, f"{t} decode")


@pytest.mark.parametrize("t", list(TYPES))
def test_dequant_equals_gguf_py(t):
    """muse's decoders against gguf-py's numpy decoders."""
    need_muse()
    raws = dequant_inputs(t)
    ours = batch(BIN, [("d", t, raw) for raw in raws])
    for i, (raw, a) in enumerate(zip(raws, ours)):
        with np.errstate(all="ignore"):
            ref = gq.dequantize(np.frombuffer(raw, dtype=np.uint8), TYPES[t][0])
        assert_same_floats(a, ref, f"{t} input {i}")


def test_unit_golden_hashes_are_ggml():
    """The FNV-1a hashes tests/unit/test_quant_iq.c embeds are what ggml writes for its golden input."""
    need_muse()
    need_ggml()
    src = open(os.path.join(ROOT, "tests", "unit", "test_quant_iq.c")).read()
    table = re.findall(r"\{ MUSE_DT_(IQ\w+), 0x([0-9a-f]{16})ull, 0x([0-9a-f]{16})ull \}", src)
    assert len(table) == 7
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

    jobs, want = [], []
    for name, plain, imp in table:
        t = name.lower()
        if not TYPES[t][2]:
            jobs.append(("q", t, x, None))
            want.append((name, "plain", int(plain, 16)))
        else:
            assert int(plain, 16) == 0, f"{name}: ggml has no plain mode, the table must say 0"
        jobs.append(("q", t, x, im))
        want.append((name, "imatrix", int(imp, 16)))
    got = batch(GGML_QUANT, jobs)
    for (name, mode, h), raw in zip(want, got):
        assert fnv(raw) == h, f"{name} {mode}: ggml's hash {fnv(raw):016x}, table {h:016x}"


def test_grids_header_is_generated():
    """quant/iq_grids.h is what scripts/gen_iq_grids.py writes from the pinned llama.cpp source."""
    if not os.path.exists(os.path.join(GGML_SRC, "ggml-common.h")):
        pytest.skip("llama.cpp source not unpacked (scripts/build_llama_cpp.sh)")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_iq_grids.py"), "--src", GGML_SRC,
                        "--check", os.path.join(ROOT, "quant", "iq_grids.h")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    size = os.path.getsize(os.path.join(ROOT, "quant", "iq_grids.h"))
    assert size < 120_000, f"quant/iq_grids.h grew to {size} bytes"


def test_gen_iq_grids_refuses_a_changed_table():
    """The generator's kgrid cross-check fires: a one-value change in a copied ggml-common.h is refused."""
    if not os.path.exists(os.path.join(GGML_SRC, "ggml-common.h")):
        pytest.skip("llama.cpp source not unpacked (scripts/build_llama_cpp.sh)")
    with tempfile.TemporaryDirectory() as d:
        common = open(os.path.join(GGML_SRC, "ggml-common.h")).read()
        # the second iq3s_grid value is 0x01010103; make it 0x01010105, a different (valid) level vector
        changed = common.replace("0x01010101, 0x01010103,", "0x01010101, 0x01010105,", 1)
        assert changed != common
        with open(os.path.join(d, "ggml-common.h"), "w") as f:
            f.write(changed)
        with open(os.path.join(GGML_SRC, "ggml-quants.c")) as f, open(os.path.join(d, "ggml-quants.c"), "w") as g:
            g.write(f.read())
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_iq_grids.py"), "--src", d,
                            "--out", os.path.join(d, "out.h")], capture_output=True, text=True)
        assert p.returncode == 2 and "iq3s_grid[1]" in p.stderr, p.stderr
        assert not os.path.exists(os.path.join(d, "out.h"))
