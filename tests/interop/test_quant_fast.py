"""test_quant_fast.py: muse's fast quantizers (quant/q_fast.c, reached through muse_quantize_rows) against the real ggml.

muse side: build/asan/tests/test_quant_fast in its file mode
    quant TYPE N_PER_ROW THREADS IN.f32 OUT
which quantizes with muse_quantize_rows, so the traits table's quantize_fast entry is what runs: the AVX2 path
when the CPU has it, and the reference when MUSE_NO_SIMD=1 (the test checks which path each run reports).
ggml side: ggml_quant (ggml_quantize_chunk of the llama.cpp built by scripts/build_llama_cpp.sh), via
tests/oracle/llamacpp.py. Bytes must be identical for every type with a fast path, for 1 and 3 threads, on
several weight-like distributions and degenerate blocks; tests/unit/test_quant_fast.c covers fast == reference
on many more shapes and edge cases.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import llamacpp  # noqa: E402

BIN = os.environ.get("QUANT_FAST_BIN", os.path.join(ROOT, "build", "asan", "tests", "test_quant_fast"))
TYPES = ["q4_0", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]


def need():
    llamacpp.require()
    if not os.access(BIN, os.X_OK):
        pytest.skip(f"{os.path.relpath(BIN, ROOT)} not built (make asan)")


def muse_quant(t, x, threads, no_simd):
    env = dict(os.environ)
    env.pop("MUSE_NO_SIMD", None)
    if no_simd:
        env["MUSE_NO_SIMD"] = "1"
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.f32"), os.path.join(d, "out.bin")
        np.ascontiguousarray(x, dtype="<f4").tofile(src)
        p = subprocess.run([BIN, "quant", t, str(x.shape[1]), str(threads), src, dst], capture_output=True,
                           text=True, env=env)
        assert p.returncode == 0, p.stderr[-3000:]
        path = p.stderr.strip().splitlines()[-1].split()[-1]
        with open(dst, "rb") as f:
            return f.read(), path


def inputs():
    """(label, 2-D float32 array) pairs: weight-like tensors and blocks that reach the rare branches."""
    rng = np.random.default_rng(7)
    out = [
        ("student-t", (rng.standard_t(5, size=(24, 1024)) * 0.02).astype(np.float32)),
        ("gaussian-wide", (rng.standard_normal((7, 2816)) * 3.0).astype(np.float32)),
        ("uniform-positive", rng.uniform(0.5, 2.0, size=(5, 512)).astype(np.float32)),
    ]
    x = (rng.standard_normal((9, 768)) * 0.05).astype(np.float32)
    x[0, :256] = 0.0                          # an all-zero super-block
    x[1, :] = 0.25                            # constant rows
    x[2, ::37] = 40.0                         # outliers
    x[3, :] = np.round(x[3] * 40) / 8         # ties on eighths
    x[4, :] = rng.standard_normal(768).astype(np.float32) * 1e-20   # below ggml's 1e-15 group epsilon
    x[5, 256:512] = -np.abs(x[5, 256:512])    # negative-only super-block
    x[6, :] = np.where(rng.random(768) < 0.8, 0.0, x[6])            # sparse
    out.append(("edge-cases", x))
    return out


@pytest.mark.parametrize("t", TYPES)
def test_fast_equals_ggml(t):
    need()
    cases = inputs()
    want = llamacpp.quantize_many([(t, x, None) for _, x in cases])
    for (label, x), ref in zip(cases, want):
        for threads in (1, 3):
            got, path = muse_quant(t, x, threads, no_simd=False)
            assert got == ref, f"{t} {label} threads={threads} path={path}: bytes differ from ggml"
    # the vector path is what ran above whenever this CPU has AVX2; the fallback must agree as well
    got, path = muse_quant(t, cases[0][1], 2, no_simd=True)
    assert path == "reference"
    assert got == want[0], f"{t}: MUSE_NO_SIMD=1 bytes differ from ggml"


def test_path_reported():
    need()
    _, path = muse_quant("q8_0", np.zeros((1, 32), np.float32), 1, no_simd=False)
    assert path in ("avx2+f16c", "reference")
    _, path = muse_quant("q8_0", np.zeros((1, 32), np.float32), 1, no_simd=True)
    assert path == "reference"


# ---- muse quantize's stream (quant/q_stream.c): slabs, worker threads, a writer thread ----

MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))


def stream_model(path, dtype, nan_at=None):
    """A llama-shaped GGUF whose big matrix spans several 4 MiB slabs with one thread (1040 rows of 2048 F32)
    and whose other matrix has a row count that is no multiple of the 16-row task (1003)."""
    import gguf
    rng = np.random.default_rng(11)
    big = (rng.standard_t(5, size=(1040, 2048)) * 0.02).astype(np.float32)
    odd = (rng.standard_normal((1003, 512)) * 0.05).astype(np.float32)
    if nan_at is not None:
        for (r, c), v in nan_at:
            big[r, c] = v
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(256); w.add_embedding_length(512); w.add_block_count(1)
    w.add_feed_forward_length(2048); w.add_head_count(4); w.add_head_count_kv(4)
    w.add_rope_dimension_count(128); w.add_layer_norm_rms_eps(1e-5); w.add_file_type(0 if dtype == np.float32 else 1)
    w.add_tensor("blk.0.ffn_up.weight", big.astype(dtype))
    w.add_tensor("blk.0.attn_q.weight", odd.astype(dtype))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def tensor_bytes(path):
    import gguf
    r = gguf.GGUFReader(path)
    return {t.name: bytes(t.data.tobytes()) for t in r.tensors}


@pytest.mark.parametrize("dtype,qtype", [(np.float32, "Q8_0"), (np.float32, "Q3_K"), (np.float16, "Q4_K")])
def test_stream_threads_equal_llama(tmp_path, dtype, qtype):
    """muse quantize --pure with 1, 2 and 3 threads (3, 2 and 1 slabs of the big matrix; F16 rows through the
    converting row source) gives one file, and its tensors are llama-quantize --pure's bytes."""
    need()
    if not os.access(MUSE, os.X_OK):
        pytest.skip(f"{os.path.relpath(MUSE, ROOT)} not built (make asan)")
    src = str(tmp_path / "in.gguf")
    stream_model(src, dtype)
    ref = str(tmp_path / "llama.gguf")
    llamacpp.llama_quantize(src, ref, qtype, extra=["--pure"])
    files = []
    for th in (1, 2, 3):
        out = str(tmp_path / f"muse{th}.gguf")
        llamacpp.run([MUSE, "quantize", src, out, "--type", qtype, "--pure", "--threads", th, "--quiet"])
        with open(out, "rb") as f:
            files.append(f.read())
    assert files[0] == files[1] == files[2], "output depends on the thread count"
    got, want = tensor_bytes(str(tmp_path / "muse1.gguf")), tensor_bytes(ref)
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], f"{qtype}: {name}: bytes differ from llama-quantize"


def test_stream_refuses_first_non_finite(tmp_path):
    """A NaN in the second slab and an infinity after it: the error names the NaN (the first in row order)
    whatever the thread count, exit 1, no output file."""
    if not os.access(MUSE, os.X_OK):
        pytest.skip(f"{os.path.relpath(MUSE, ROOT)} not built (make asan)")
    src = str(tmp_path / "in.gguf")
    stream_model(src, np.float32, nan_at=[((900, 7), np.inf), ((700, 5), np.nan)])
    for th in (1, 3):
        out = tmp_path / f"out{th}.gguf"
        p = subprocess.run([MUSE, "quantize", src, str(out), "--type", "Q4_0", "--pure", "--threads", str(th),
                            "--quiet"], capture_output=True, text=True)
        assert p.returncode == 1, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("muse: error: "), p.stderr
        assert f"tensor 'blk.0.ffn_up.weight': element {700 * 2048 + 5} (row 700) is nan" in lines[0], lines[0]
        assert not out.exists() and not list(tmp_path.glob(f"out{th}*")), "partial output left behind"
