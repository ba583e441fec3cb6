#!/usr/bin/env python3
"""make_corpus_gguf.py: regenerates the GGUF fuzz seeds in tests/fuzz/corpus/gguf/ (valid files from gguf-py, a v2
file, shards, and a few malformed files from the hostile generator). Run with .venv/bin/python; keep the total small."""
import importlib.util
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "gguf")
spec = importlib.util.spec_from_file_location("h", os.path.join(HERE, "..", "hostile", "run_gguf.py"))
h = importlib.util.module_from_spec(spec)
spec.loader.exec_module(h)


def py_file(name, build, **kw):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.gguf")
        w = gguf.GGUFWriter(p, "llama", **kw)
        build(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        for f in sorted(os.listdir(d)):
            data = open(os.path.join(d, f), "rb").read()
            suffix = "" if f == "x.gguf" else "-" + f.split("-", 1)[1].replace(".gguf", "")
            open(os.path.join(OUT, f"valid-{name}{suffix}.gguf"), "wb").write(data)


def model(w):
    rng = np.random.default_rng(0)
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "Ġthe", "<0x0A>", "▁a"])
    w.add_key_value("tokenizer.ggml.scores", [0.0, -1.5, -2.0, -3.0, -4.0], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("tokenizer.ggml.token_type", [3, 3, 1, 6, 1], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("t.u64", 2**64 - 1, V.UINT64)
    w.add_key_value("t.i8", -3, V.INT8)
    w.add_key_value("t.f64", 0.5, V.FLOAT64)
    w.add_key_value("t.bools", [True, False], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("t.u16s", [1, 65535], V.ARRAY, sub_type=V.UINT16)
    f = rng.standard_normal((2, 64)).astype(np.float32)
    w.add_tensor("token_embd.weight", gguf.quants.quantize(f, Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(f, Q.Q4_0), raw_dtype=Q.Q4_0)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(64, np.float32))
    w.add_tensor("blk.0.ffn_up.weight", rng.standard_normal((3, 4)).astype(np.float16))
    w.add_tensor("i32", np.arange(3, dtype=np.int32))
    w.add_tensor("f64", np.arange(2, dtype=np.float64))


def align1(w):
    w.add_custom_alignment(1)
    w.add_tensor("a", np.arange(3, dtype=np.int8))
    w.add_tensor("b", np.arange(3, dtype=np.float32))


def shards(w):
    w.add_tensor("a", np.arange(4, dtype=np.float32))
    w.add_tensor("b", np.arange(4, dtype=np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    py_file("model", model)
    py_file("align1", align1)
    py_file("meta-only", lambda w: w.add_uint32("general.alignment_not", 1))
    py_file("shards", shards, split_max_tensors=1)
    open(os.path.join(OUT, "valid-v2.gguf"), "wb").write(h.gguf(version=2))
    open(os.path.join(OUT, "valid-scalar-zero.gguf"), "wb").write(
        h.gguf(specs=(("s", [], h.F32, 4), ("z", [0, 8], h.F32, 0), ("w", [32, 2], h.Q4_0, 36))))
    open(os.path.join(OUT, "valid-empty-arrays.gguf"), "wb").write(
        h.gguf(kvs=(h.ARCH, h.kv_arr("e.u8", "u8", []), h.kv_arr("e.str", "str", []), h.kv("s.nul", "str", b"a\0b"),
                    h.kv_arr("a.str", "str", [b"", b"\xc3\x28"]))))
    keep = {"G5", "G12", "G17", "G19a", "G22", "G24b", "G26b", "G30a", "G34", "G36", "G38", "G41a", "G42b", "G43", "G44"}
    for cid, _, content, *_ in h.CASES:
        if cid in keep and isinstance(content, bytes) and len(content) < 4096:
            open(os.path.join(OUT, f"bad-{cid}.gguf"), "wb").write(content)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} seeds, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
