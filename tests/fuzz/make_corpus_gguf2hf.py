#!/usr/bin/env python3
"""make_corpus_gguf2hf.py OUT_DIR: the seed corpus of fuzz_gguf2hf: tiny GGUF models (llama with a byte-level BPE
tokenizer, Q8_0 blocks, Mixtral-style experts, Llama-3 rope factors), a few KB each."""
import os
import sys

import numpy as np
import gguf

E, H, KV, V, F = 32, 2, 1, 8, 32


def model(path, quant=False, experts=0, rope=False, tok=True):
    r = np.random.default_rng(1)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    w = gguf.GGUFWriter(path, "llama")
    for k, v in (("block_count", 1), ("embedding_length", E), ("feed_forward_length", F),
                 ("attention.head_count", H), ("attention.head_count_kv", KV), ("context_length", 64)):
        w.add_uint32(f"llama.{k}", v)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    if experts:
        w.add_uint32("llama.expert_count", experts)
        w.add_uint32("llama.expert_used_count", 1)
    if tok:
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_string("tokenizer.ggml.pre", "smollm")
        w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b", "ab", "\u0120", "c", "[PAD6]", "x y"])
        w.add_array("tokenizer.ggml.token_type", [3, 1, 1, 1, 1, 1, 5, 4])
        w.add_array("tokenizer.ggml.merges", ["a b"])
        w.add_uint32("tokenizer.ggml.bos_token_id", 0)
        w.add_bool("tokenizer.ggml.add_bos_token", True)
        w.add_string("tokenizer.chat_template", "{{ m }}")
    t = [("token_embd.weight", f(V, E)), ("output_norm.weight", f(E)), ("blk.0.attn_norm.weight", f(E)),
         ("blk.0.ffn_norm.weight", f(E)), ("blk.0.attn_q.weight", f(E, E)), ("blk.0.attn_k.weight", f(E // H, E)),
         ("blk.0.attn_v.weight", f(E // H, E)), ("blk.0.attn_output.weight", f(E, E))]
    if experts:
        t += [("blk.0.ffn_gate_inp.weight", f(experts, E)), ("blk.0.ffn_gate_exps.weight", f(experts, F, E)),
              ("blk.0.ffn_up_exps.weight", f(experts, F, E)), ("blk.0.ffn_down_exps.weight", f(experts, E, F))]
    else:
        t += [("blk.0.ffn_gate.weight", f(F, E)), ("blk.0.ffn_up.weight", f(F, E)), ("blk.0.ffn_down.weight", f(E, F))]
    if rope:
        t.append(("rope_freqs.weight", np.ones(E // H // 2, np.float32)))
    for name, data in t:
        if quant and data.ndim == 2 and data.shape[1] % 32 == 0:
            w.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    model(os.path.join(out, "llama.gguf"))
    model(os.path.join(out, "q8_0.gguf"), quant=True, tok=False)
    model(os.path.join(out, "experts.gguf"), experts=2)
    model(os.path.join(out, "rope.gguf"), rope=True, tok=False)


if __name__ == "__main__":
    main()
