#!/usr/bin/env python3
"""make_tiny_models.py: writes tiny random Hugging Face checkpoints made with transformers at fixed seeds,
each with a small byte-level BPE tokenizer trained offline on a fixed text, for the convert tests.
Generated, never committed.

usage: make_tiny_models.py OUT_DIR [--arch ARCH] [--dtype f32|f16|bf16] [--tie]
                           [--pre llama-bpe|qwen2|gpt-2|smollm] [--format safetensors|bin] [--rope default|llama3|yarn]
                           [--fp8]

ARCH: llama (default), mistral, qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe, deepseek_v3.
--fp8 (deepseek_v3 only): the linear weights of the decoder layers are stored as F8_E4M3 with a float32
weight_scale_inv per 128x128 block and a DeepSeek-style quantization_config in config.json, as DeepSeek-V3
publishes them; dequantize_fp8() gives the float32 weights the checkpoint stands for.

OUT_DIR gets config.json, model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json
and special_tokens_map.json, as save_pretrained writes them.
"""
import argparse
import json
import os

# A fixed corpus: enough distinct words, digits, punctuation and non-ASCII text for a few hundred merges.
TEXT = """The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow. 0123456789 3.14159 2026-11-22
def main(argv): return sum(int(x) for x in argv)  # comment
Über naïve café résumé. 日本語のテキスト。 中文文本。 Привет мир. 🙂🚀
Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore.
""" * 4

CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
                 "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


PRE_TOKENIZERS = ("llama-bpe", "qwen2", "gpt-2", "smollm")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def make_tokenizer(vocab_size, pre="llama-bpe"):
    """A byte-level BPE trained deterministically on TEXT, with the pre-tokenizer of a known model family:
    llama-bpe (Llama-3 / SmolLM2-style split regex), qwen2 (same with single digits), gpt-2 (ByteLevel's own
    regex), smollm (single digits, then GPT-2's regex)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if pre in ("llama-bpe", "qwen2"):
        regex = LLAMA3_REGEX if pre == "llama-bpe" else QWEN2_REGEX
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    elif pre == "gpt-2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    else:
        raise ValueError(pre)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_llama(out, dtype="f32", tie=False, pre="llama-bpe", fmt="safetensors", rope="default", seed=1234):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer(400, pre)
    rp = {"rope_type": "default", "rope_theta": 10000.0}
    if rope == "llama3":
        # Llama-3.1 style long-context scaling; original context 64 puts the 8 rotary frequencies of head_dim 16
        # in all three bands (kept, scaled by factor, smoothly interpolated).
        rp = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, rope_parameters=rp, tie_word_embeddings=tie,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    # Random norms too: a converter that drops or mixes them up must show in the data and the logits.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model = model.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype])
    model.save_pretrained(out)
    if fmt == "bin":
        # transformers 5 writes only safetensors; the legacy file is torch.save of the same state dict.
        sd = {k: v for k, v in model.state_dict().items() if not (tie and k == "lm_head.weight")}
        torch.save(sd, os.path.join(out, "pytorch_model.bin"))
        os.remove(os.path.join(out, "model.safetensors"))
    tok.save_pretrained(out)
    # Say explicitly that no BOS/EOS is added (the tokenizer's post-processor adds none): without these keys
    # llama.cpp would default to adding BOS for a gpt2-style vocab and tokenize differently from HF.
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        tc = json.load(f)
    tc.update(add_bos_token=False, add_eos_token=False)
    with open(path, "w") as f:
        json.dump(tc, f, indent=2)


ARCHES = ("llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3")
FP8_BLOCK = 128


def _config(arch, vocab, tok, tie, rp):
    """A small config of arch: 2 layers, hidden 64, 4 heads (2 KV heads where the model has GQA), 4 experts with
    2 used; deepseek_v3 is wider (hidden 160) so 128x128 FP8 blocks come both whole and partial."""
    import transformers as T
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
               tie_word_embeddings=tie, rope_parameters=rp, max_position_embeddings=256, rms_norm_eps=1e-5)
    base = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, **ids)
    if arch == "llama":
        return T.LlamaConfig(**base)
    if arch == "mistral":
        return T.MistralConfig(**base, head_dim=16, sliding_window=None)
    if arch == "qwen2":
        return T.Qwen2Config(**base)
    if arch == "qwen3":
        return T.Qwen3Config(**base, head_dim=16)
    if arch == "mixtral":
        return T.MixtralConfig(**base, head_dim=16, num_local_experts=4, num_experts_per_tok=2)
    if arch == "qwen2_moe":
        return T.Qwen2MoeConfig(**base, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                shared_expert_intermediate_size=96, norm_topk_prob=False)
    if arch == "qwen3_moe":
        # llama.cpp's qwen3moe always renormalizes the top-k weights, as the published Qwen3 MoE configs ask.
        return T.Qwen3MoeConfig(**base, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                norm_topk_prob=True)
    if arch == "deepseek_v3":
        del base["num_key_value_heads"]
        base.update(hidden_size=160, intermediate_size=192)
        # scoring_func/topk_method as DeepSeek-V3's config.json has them (transformers assumes sigmoid; llama.cpp
        # reads the gating function from the GGUF, written only when the config names it).
        return T.DeepseekV3Config(**base, num_key_value_heads=4, moe_intermediate_size=64, n_routed_experts=4,
                                  n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
                                  first_k_dense_replace=1, q_lora_rank=96, kv_lora_rank=64, qk_nope_head_dim=32,
                                  qk_rope_head_dim=32, v_head_dim=32, routed_scaling_factor=2.5, norm_topk_prob=True,
                                  scoring_func="sigmoid", topk_method="noaux_tc")
    raise ValueError(arch)


def fp8_quantize(w, block=FP8_BLOCK):
    """DeepSeek's block FP8: per block x block tile, scale = amax / 448, q = fp8(w / scale); returns (q, scale_inv)
    where w ~= q.float() * scale_inv repeated over each tile (the last tiles may be partial)."""
    import torch
    rows, cols = w.shape
    br, bc = -(-rows // block), -(-cols // block)
    s = torch.zeros(br, bc, dtype=torch.float32)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            t = w[i * block:(i + 1) * block, j * block:(j + 1) * block].float()
            sc = (t.abs().max() / 448.0).clamp(min=1e-12)
            s[i, j] = sc
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = (t / sc).to(torch.float8_e4m3fn)
    return q, s


def dequantize_fp8(q, s, block=FP8_BLOCK):
    """The float32 weight an FP8 tensor and its weight_scale_inv stand for (convert_hf_to_gguf.py's dequant_simple)."""
    sc = s.float().repeat_interleave(block, 0).repeat_interleave(block, 1)[:q.shape[0], :q.shape[1]]
    return q.float() * sc


def _is_fp8_weight(name):
    """The tensors DeepSeek-V3 stores in FP8: every linear weight inside the decoder layers except the router."""
    return ".layers." in name and name.endswith("_proj.weight")


def make_arch(out, arch, dtype="f32", tie=False, pre=None, rope="default", fp8=False, seed=1234):
    """A tiny checkpoint of arch (see ARCHES), written as save_pretrained writes it (transformers 5 saves MoE
    experts one tensor per expert, as the published checkpoints are). Norms, router biases and the DeepSeek
    score-correction bias are random too, so a converter that drops or mixes them up shows in the logits."""
    if arch == "llama" and not fp8 and rope != "yarn":
        return make_llama(out, dtype, tie, pre or "llama-bpe", "safetensors", rope, seed)
    import torch
    from transformers import AutoModelForCausalLM
    from safetensors.torch import save_file
    if fp8 and arch != "deepseek_v3":
        raise ValueError("--fp8 is for deepseek_v3")
    pre = pre or ("qwen2" if arch.startswith("qwen") else "llama-bpe")
    tok = make_tokenizer(400, pre)
    rp = {"rope_type": "default", "rope_theta": 10000.0}
    if rope == "yarn":
        # YaRN over an original context of 64: positions past 64 exercise it. DeepSeek-V3's config adds mscale,
        # mscale_all_dim and the beta ramp (convert_hf_to_gguf.py writes 0.1 * mscale_all_dim as yarn_log_multiplier).
        rp = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}
        if arch == "deepseek_v3":
            rp.update(mscale=1.0, mscale_all_dim=1.0, beta_fast=32.0, beta_slow=1.0)
    elif rope != "default":
        raise ValueError(rope)
    cfg = _config(arch, len(tok), tok, tie, rp)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    model = model.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        tc = json.load(f)
    tc.update(add_bos_token=False, add_eos_token=False)
    with open(path, "w") as f:
        json.dump(tc, f, indent=2)
    if fp8:
        from safetensors.torch import load_file
        st = load_file(os.path.join(out, "model.safetensors"))
        new = {}
        for n, t in st.items():
            if _is_fp8_weight(n):
                q, s = fp8_quantize(t)
                new[n] = q
                new[n + "_scale_inv"] = s
            else:
                new[n] = t
        save_file(new, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        path = os.path.join(out, "config.json")
        with open(path) as f:
            c = json.load(f)
        c["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}
        with open(path, "w") as f:
            json.dump(c, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama", choices=ARCHES)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--tie", action="store_true", help="tied embeddings (no lm_head.weight)")
    ap.add_argument("--pre", default=None, choices=PRE_TOKENIZERS,
                    help="pre-tokenizer family (default: qwen2 for qwen*, else llama-bpe)")
    ap.add_argument("--format", default="safetensors", choices=["safetensors", "bin"], help="weights file")
    ap.add_argument("--rope", default="default", choices=["default", "llama3", "yarn"], help="rope scaling")
    ap.add_argument("--fp8", action="store_true", help="deepseek_v3: block-scaled F8_E4M3 linear weights")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.arch == "llama" and not a.fp8 and a.rope != "yarn":
        make_llama(a.out, a.dtype, a.tie, a.pre or "llama-bpe", a.format, a.rope)
    else:
        if a.format != "safetensors":
            ap.error("--format bin is for --arch llama")
        make_arch(a.out, a.arch, a.dtype, a.tie, a.pre, a.rope, a.fp8)


if __name__ == "__main__":
    main()
