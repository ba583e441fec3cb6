#!/usr/bin/env python3
"""make_big_checkpoint.py: writes a ~2.2 GB BF16 Llama checkpoint (TinyLlama-1.1B geometry, random weights) as an HF
directory with two safetensors shards and an index, for the convert benchmark. Generated, never committed.

usage: make_big_checkpoint.py OUT_DIR [--layers 22]

Weights are N(0, 0.02) drawn with numpy at a fixed seed and rounded to bf16 (round to nearest even), written
straight into the shards without building a model, so making 2 GB takes seconds and little memory. The tokenizer
is the small trained BPE of make_tiny_models.py; the vocabulary is padded to 32000 as in Llama-2 checkpoints.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models  # noqa: E402

VOCAB, HIDDEN, FFN, HEADS, KV_HEADS = 32000, 2048, 5632, 32, 4


def tensors(layers):
    """(name, shape) in save_pretrained's sorted order within each shard."""
    kv = HIDDEN // HEADS * KV_HEADS
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (HIDDEN,)), (p + "mlp.down_proj.weight", (HIDDEN, FFN)),
                (p + "mlp.gate_proj.weight", (FFN, HIDDEN)), (p + "mlp.up_proj.weight", (FFN, HIDDEN)),
                (p + "post_attention_layernorm.weight", (HIDDEN,)), (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
                (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)), (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
                (p + "self_attn.v_proj.weight", (kv, HIDDEN))]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def bf16(rng, shape, norm):
    x = (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)) if norm else \
        0.02 * rng.standard_normal(shape, dtype=np.float32)
    u = x.view(np.uint32)
    u = u + (0x7FFF + ((u >> 16) & 1))  # round to nearest even; no NaN/Inf here
    return (u >> 16).astype(np.uint16)


def write_shard(path, items, rng):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in items:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in items:
            f.write(bf16(rng, shape, name.endswith("norm.weight")).tobytes())
    return off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=22)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(7)
    ts = tensors(a.layers)
    half = len(ts) // 2
    shards = [ts[:half], ts[half:]]
    names = [f"model-0000{i + 1}-of-00002.safetensors" for i in range(2)]
    total, wmap = 0, {}
    for name, items in zip(names, shards):
        total += write_shard(os.path.join(a.out, name), sorted(items), rng)
        wmap.update({n: name for n, _ in items})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)
    tok = make_tiny_models.make_tokenizer(400, "llama-bpe")
    tok.save_pretrained(a.out)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB,
           "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": a.layers,
           "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "max_position_embeddings": 2048,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu",
           "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "torch_dtype": "bfloat16"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"{a.out}: {total} bytes of BF16 tensors")


if __name__ == "__main__":
    main()
