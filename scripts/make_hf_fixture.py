#!/usr/bin/env python3
"""make_hf_fixture.py: writes a small random Llama-shaped HF checkpoint (config.json, sharded safetensors
with an index, or pytorch_model.bin) at a fixed seed, for the demo and tests. Never committed: generated.

usage: make_hf_fixture.py OUT_DIR [--format safetensors|bin] [--shards N] [--dtype bf16|f16|f32]
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file


def llama_state_dict(cfg, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // nh

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(dtype)

    sd = {"model.embed_tokens.weight": w(v, h)}
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        sd[p + "input_layernorm.weight"] = torch.ones(h, dtype=dtype)
        sd[p + "self_attn.q_proj.weight"] = w(nh * hd, h)
        sd[p + "self_attn.k_proj.weight"] = w(nkv * hd, h)
        sd[p + "self_attn.v_proj.weight"] = w(nkv * hd, h)
        sd[p + "self_attn.o_proj.weight"] = w(h, nh * hd)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(h, dtype=dtype)
        sd[p + "mlp.gate_proj.weight"] = w(i, h)
        sd[p + "mlp.up_proj.weight"] = w(i, h)
        sd[p + "mlp.down_proj.weight"] = w(h, i)
    sd["model.norm.weight"] = torch.ones(h, dtype=dtype)
    sd["lm_head.weight"] = w(v, h)
    return sd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--format", default="safetensors", choices=["safetensors", "bin"])
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[a.dtype],
        "bos_token_id": 1, "eos_token_id": 2,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    sd = llama_state_dict(cfg, dtype, a.seed)
    names = list(sd)
    ext = "safetensors" if a.format == "safetensors" else "bin"
    stem = "model" if a.format == "safetensors" else "pytorch_model"
    if a.shards <= 1:
        path = os.path.join(a.out, f"{stem}.{ext}")
        if a.format == "safetensors":
            save_file(sd, path, metadata={"format": "pt"})
        else:
            torch.save(sd, path)
        return
    per = (len(names) + a.shards - 1) // a.shards
    weight_map, total = {}, 0
    for s in range(a.shards):
        part = {n: sd[n] for n in names[s * per:(s + 1) * per]}
        fname = f"{stem}-{s + 1:05d}-of-{a.shards:05d}.{ext}"
        if a.format == "safetensors":
            save_file(part, os.path.join(a.out, fname), metadata={"format": "pt"})
        else:
            torch.save(part, os.path.join(a.out, fname))
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(a.out, f"{stem}.{ext}.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


if __name__ == "__main__":
    main()
