#!/usr/bin/env python3
"""run_gguf2hf.py: well-formed GGUF files whose contents the GGUF -> HF path must refuse (`muse convert IN.gguf DIR`).

The bytes are valid GGUF (gguf-py writes them); what is hostile is the model they describe: unknown architecture,
missing or zero hparams, block numbers past block_count, Q/K rows that do not split into heads, expert tensors of
the wrong rank, undecodable block types, inconsistent tokenizer arrays, rope data muse cannot express, MLA
attn_k_b/attn_v_b halves missing or disagreeing. Each must
give exit 1, one "muse: error: " line naming the file, no sanitizer report, and no output directory (nor a
temporary one) left behind. One valid file is accepted as the control. One PASS/FAIL line per case.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_check import listing, verdict  # noqa: E402

MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))

try:
    import gguf
except ImportError:
    print("SKIP: hostile/gguf2hf: gguf-py not installed")
    sys.exit(0)

E, H, KV, V = 64, 2, 1, 32  # embedding, heads, kv heads, vocab


def base_tensors():
    r = np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    return [("token_embd.weight", f(V, E), None), ("output_norm.weight", f(E), None),
            ("blk.0.attn_norm.weight", f(E), None), ("blk.0.ffn_norm.weight", f(E), None),
            ("blk.0.attn_q.weight", f(E, E), None), ("blk.0.attn_k.weight", f(E // H * KV, E), None),
            ("blk.0.attn_v.weight", f(E // H * KV, E), None), ("blk.0.attn_output.weight", f(E, E), None),
            ("blk.0.ffn_gate.weight", f(96, E), None), ("blk.0.ffn_up.weight", f(96, E), None),
            ("blk.0.ffn_down.weight", f(E, 96), None)]


def base_kv():
    return {"block_count": ("u32", 1), "embedding_length": ("u32", E), "feed_forward_length": ("u32", 96),
            "attention.head_count": ("u32", H), "attention.head_count_kv": ("u32", KV),
            "attention.layer_norm_rms_epsilon": ("f32", 1e-5), "context_length": ("u32", 128)}


def tokenizer_kv(n=V, types=None, model="gpt2", pre="gpt-2"):
    toks = [f"t{i}" for i in range(n)]
    return {"tokenizer.ggml.model": ("str", model), "tokenizer.ggml.pre": ("str", pre),
            "tokenizer.ggml.tokens": ("strs", toks),
            "tokenizer.ggml.token_type": ("i32s", types if types is not None else [1] * n)}


def write(path, arch="llama", kv=None, tensors=None, extra=None):
    w = gguf.GGUFWriter(path, arch)
    for k, (t, v) in (kv if kv is not None else base_kv()).items():
        key = k if "." in k and k.split(".")[0] in ("tokenizer", "general") else f"{arch}.{k}"
        {"u32": w.add_uint32, "f32": w.add_float32, "str": w.add_string}[t](key, v) if t in ("u32", "f32", "str") \
            else w.add_array(key, v)
    for k, (t, v) in (extra or {}).items():
        if t == "strs":
            w.add_array(k, v)
        elif t == "i32s":
            w.add_key_value(k, list(v), gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
        elif t == "f32s":
            w.add_key_value(k, list(v), gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
        else:
            {"u32": w.add_uint32, "f32": w.add_float32, "str": w.add_string}[t](k, v)
    for name, data, raw in (tensors if tensors is not None else base_tensors()):
        if raw is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def replace(tensors, name, data, raw=None):
    return [(n, data, raw) if n == name else (n, d, r) for n, d, r in tensors]


def mla_tensors(vb=(H, 16, 32), drop=None):
    """deepseek2's MLA pair: attn_k_b (heads, rank 32, nope 16) and attn_v_b vb (heads, v, rank)."""
    t = [("token_embd.weight", np.ones((V, E), np.float32), None),
         ("blk.0.attn_k_b.weight", np.ones((H, 32, 16), np.float32), None),
         ("blk.0.attn_v_b.weight", np.ones(vb, np.float32), None)]
    return [x for x in t if x[0] != drop]


def kv_without(key):
    kv = base_kv()
    del kv[key]
    return kv


def kv_with(**over):
    kv = base_kv()
    for k, v in over.items():
        kv[k.replace("__", ".")] = v
    return kv


CASES = [
    ("unknown_arch", dict(arch="mamba9"), r"architecture 'mamba9' has no HF mapping"),
    ("no_block_count", dict(kv=kv_without("block_count")), r"block_count"),
    ("block_past_count", dict(tensors=base_tensors() + [("blk.1.attn_norm.weight", np.ones(E, np.float32), None)]),
     r"blk\.1\.attn_norm\.weight"),
    ("unknown_tensor", dict(tensors=base_tensors() + [("blk.0.weird.weight", np.ones(E, np.float32), None)]),
     r"blk\.0\.weird\.weight"),
    ("zero_heads", dict(kv=kv_with(attention__head_count=("u32", 0))), r"head_count"),
    ("no_heads", dict(kv=kv_without("attention.head_count")), r"head_count"),
    ("heads_do_not_split", dict(kv=kv_with(attention__head_count=("u32", 3))), r"attn_q\.weight.*heads"),
    ("kv_heads_zero", dict(kv=kv_with(attention__head_count_kv=("u32", 0))), r"head_count_kv"),
    ("q_one_dim", dict(tensors=replace(base_tensors(), "blk.0.attn_q.weight", np.ones((2, E, E), np.float32))),
     r"attn_q\.weight"),
    ("experts_2d", dict(tensors=base_tensors() + [("blk.0.ffn_gate_exps.weight", np.ones((96, E), np.float32), None)]),
     r"ffn_gate_exps\.weight.*3 dimensions"),
    ("q8_k_block", dict(tensors=replace(base_tensors(), "token_embd.weight", np.zeros((V, 292), np.uint8),
                                        gguf.GGMLQuantizationType.Q8_K)), r"token_embd\.weight.*Q8_K"),
    ("token_type_count", dict(extra=tokenizer_kv(types=[1] * (V - 1))), r"token_type"),
    ("tokenizer_unigram", dict(extra=tokenizer_kv(model="t5")), r"tokenizer model 't5'"),
    ("spm_scores_count", dict(extra={**tokenizer_kv(model="llama"), "tokenizer.ggml.scores": ("f32s", [0.0] * (V - 1))}),
     r"tokenizer\.ggml\.scores"),
    ("tokenizer_unknown_pre", dict(extra=tokenizer_kv(pre="no-such-pre")), r"no-such-pre"),
    ("rope_freqs_garbage", dict(tensors=base_tensors() + [("rope_freqs.weight", np.full(16, 3.5, np.float32), None)]),
     r"rope_freqs\.weight"),
    ("mla_no_v_b", dict(arch="deepseek2", tensors=mla_tensors(drop="blk.0.attn_v_b.weight")),
     r"blk\.0\.attn_v_b\.weight.*kv_b_proj"),
    ("mla_no_k_b", dict(arch="deepseek2", tensors=mla_tensors(drop="blk.0.attn_k_b.weight")),
     r"blk\.0\.attn_k_b\.weight"),
    ("mla_rank_mismatch", dict(arch="deepseek2", tensors=mla_tensors(vb=(H, 16, 24))), r"attn_k_b.*attn_v_b"),
    ("mla_heads_mismatch", dict(arch="deepseek2", tensors=mla_tensors(vb=(H + 1, 16, 32))), r"attn_k_b.*attn_v_b"),
    ("rope_longrope", dict(kv=kv_with(**{"rope__scaling__type": ("str", "longrope")})), r"longrope"),
]


def main():
    failed = 0
    with tempfile.TemporaryDirectory() as top:
        ctl_in, ctl_out = os.path.join(top, "ok.gguf"), os.path.join(top, "out", "ok")
        write(ctl_in, extra=tokenizer_kv())
        os.mkdir(os.path.dirname(ctl_out))
        p = subprocess.run([MUSE, "convert", "-q", ctl_in, ctl_out], capture_output=True, text=True)
        ok = p.returncode == 0 and os.path.exists(os.path.join(ctl_out, "config.json")) and not p.stderr
        print(f"{'PASS' if ok else 'FAIL'}: hostile/gguf2hf/control_accepted" + ("" if ok else f": {p.stderr[:300]}"))
        failed += not ok
        for name, kw, pattern in CASES:
            d = os.path.join(top, name)
            os.mkdir(d)
            src = os.path.join(d, name + ".gguf")
            try:
                write(src, **kw)
            except Exception as e:  # gguf-py refusing the fixture is a broken test, not a pass
                print(f"FAIL: hostile/gguf2hf/{name}: fixture: {e}")
                failed += 1
                continue
            before = listing(d)
            p = subprocess.run([MUSE, "convert", src, os.path.join(d, "hf")], capture_output=True, text=True,
                               timeout=60)
            why = verdict(p, "reject", src, before, d, pattern=pattern, need_offset=False)
            print(f"{'FAIL' if why else 'PASS'}: hostile/gguf2hf/{name}" + (f": {why}" if why else ""))
            failed += why is not None
            shutil.rmtree(d)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
