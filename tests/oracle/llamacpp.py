"""llamacpp.py: paths to, and thin wrappers around, the real llama.cpp built by scripts/build_llama_cpp.sh.

Test oracles only; muse never uses any of this. Import from a test with
    sys.path.insert(0, os.path.join(ROOT, "tests", "oracle")); import llamacpp
and call llamacpp.require() first: it skips the test (pytest.skip) with the reason when the oracle is not built.

Arrays are numpy; quantized data is bytes in ggml's row layout (what a GGUF tensor holds). Shapes follow
numpy/PyTorch order: a 2-D tensor of shape (nrows, n_per_row) is quantized along its last axis.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOP = os.path.join(ROOT, ".cache", "llama.cpp")
SRC = os.path.join(TOP, "src")                 # the vendored llama.cpp tree
BIN = os.path.join(TOP, "build", "bin")        # llama-* tools, ggml_quant, llama_logits
CONVERT = os.path.join(SRC, "convert_hf_to_gguf.py")
GGUF_PY = os.path.join(SRC, "gguf-py")         # llama.cpp's own gguf-py (newer than the venv's gguf 0.19)
TOOLS = ("llama-quantize", "llama-imatrix", "llama-perplexity", "llama-gguf-split", "llama-tokenize",
         "ggml_quant", "llama_logits")


def missing():
    """None when every tool and convert_hf_to_gguf.py are there, else a reason naming what is missing."""
    if not os.path.exists(os.path.join(TOP, ".stamp")):
        return "llama.cpp oracle not built (run scripts/build_llama_cpp.sh, part of make deps)"
    gone = [t for t in TOOLS if not os.access(os.path.join(BIN, t), os.X_OK)]
    if not os.path.exists(CONVERT):
        gone.append("convert_hf_to_gguf.py")
    return f"llama.cpp oracle incomplete, missing {', '.join(gone)}" if gone else None


def require():
    """pytest.skip with the reason when the oracle is not built."""
    why = missing()
    if why:
        import pytest
        pytest.skip(why)


def tool(name):
    return os.path.join(BIN, name)


def run(args, **kw):
    """Runs a command; raises AssertionError with its stderr on failure; returns CompletedProcess (text)."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p


_TYPES = None


def ggml_types():
    """{name (ggml's spelling, e.g. 'q4_K', 'iq2_xxs'): (id, block_size, type_size, requires_imatrix)}."""
    global _TYPES
    if _TYPES is None:
        out = run([tool("ggml_quant"), "--list"]).stdout
        _TYPES = {}
        for line in out.splitlines():
            name, tid, blck, tsize, req = line.split()
            _TYPES[name] = (int(tid), int(blck), int(tsize), req == "1")
    return _TYPES


def row_size(type_name, n_per_row):
    _, blck, tsize, _ = ggml_types()[type_name]
    assert n_per_row % blck == 0
    return n_per_row // blck * tsize


def quantize(type_name, data, imatrix=None):
    """ggml_quantize_chunk over the rows of a 2-D float32 array (imatrix: n_per_row float32 weights).
    Returns the quantized bytes, nrows * row_size(type_name, n_per_row)."""
    return quantize_many([(type_name, data, imatrix)])[0]


def dequantize(type_name, raw, n_per_row):
    """ggml's to_float over whole rows of quantized bytes; returns float32 (nrows, n_per_row)."""
    return dequantize_many([(type_name, raw, n_per_row)])[0]


def quantize_many(jobs):
    """quantize() for a list of (type_name, data, imatrix) in one ggml_quant process: ggml builds the
    IQ1/IQ2 grids once per process (up to 20 s of CPU each here), so batch whatever uses IQ types."""
    with tempfile.TemporaryDirectory() as d:
        lines = []
        for i, (type_name, data, imatrix) in enumerate(jobs):
            data = np.ascontiguousarray(data, dtype="<f4")
            assert data.ndim == 2
            src, dst, im = (os.path.join(d, f"{i}.{n}") for n in ("in", "out", "im"))
            data.tofile(src)
            line = [type_name, str(data.shape[1]), src, dst]
            if imatrix is not None:
                np.ascontiguousarray(imatrix, dtype="<f4").tofile(im)
                line.append(im)
            lines.append(" ".join(line))
        _batch(d, lines)
        out = []
        for i in range(len(jobs)):
            with open(os.path.join(d, f"{i}.out"), "rb") as f:
                out.append(f.read())
        return out


def dequantize_many(jobs):
    """dequantize() for a list of (type_name, raw, n_per_row) in one ggml_quant process."""
    with tempfile.TemporaryDirectory() as d:
        lines = []
        for i, (type_name, raw, n_per_row) in enumerate(jobs):
            src, dst = os.path.join(d, f"{i}.in"), os.path.join(d, f"{i}.out")
            with open(src, "wb") as f:
                f.write(bytes(raw))
            lines.append(f"--dequant {type_name} {int(n_per_row)} {src} {dst}")
        _batch(d, lines)
        return [np.fromfile(os.path.join(d, f"{i}.out"), dtype="<f4").reshape(-1, int(n_per_row))
                for i, (_, _, n_per_row) in enumerate(jobs)]


def _batch(d, lines):
    jobs = os.path.join(d, "jobs.txt")
    with open(jobs, "w") as f:
        f.write("\n".join(lines) + "\n")
    run([tool("ggml_quant"), "--batch", jobs])


def llama_quantize(src, dst, ftype, imatrix=None, allow_requantize=False, threads=2, extra=()):
    """llama-quantize SRC DST FTYPE (FTYPE as llama-quantize spells it: Q4_K_M, Q8_0, IQ2_XXS, ...)."""
    args = [tool("llama-quantize")]
    if allow_requantize:
        args.append("--allow-requantize")
    if imatrix is not None:
        args += ["--imatrix", imatrix]
    args += [*extra, src, dst, ftype, threads]
    return run(args)


def convert_hf_to_gguf(model_dir, outfile, outtype="f32", extra=()):
    """llama.cpp's convert_hf_to_gguf.py with the venv's Python and llama.cpp's own gguf-py."""
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    return run([sys.executable, CONVERT, "--outfile", outfile, "--outtype", outtype, *extra, model_dir], env=env)


def logits(model, tokens, threads=2, f16_kv=False):
    """Logits of every position for the token ids, from one llama_decode; float32 (n_tokens, n_vocab)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "logits.bin")
        args = [tool("llama_logits"), model, out, "--tokens", ",".join(str(int(t)) for t in tokens),
                "--threads", threads]
        if f16_kv:
            args.append("--f16-kv")
        p = run(args)
        n_tok, n_vocab = map(int, p.stdout.split()[:2])
        return np.fromfile(out, dtype="<f4").reshape(n_tok, n_vocab)


def tokenize(model, text, *flags):
    """Token ids llama.cpp's tokenizer gives for text, special tokens (BOS) added as the model asks; flags go to
    llama-tokenize as they are (e.g. --no-parse-special)."""
    p = run([tool("llama-tokenize"), "-m", model, "-p", text, "--ids", "--log-disable", *flags])
    line = p.stdout.strip().splitlines()[-1]
    return [int(t) for t in line.strip("[]").split(",") if t.strip()]
