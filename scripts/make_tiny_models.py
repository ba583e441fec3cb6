#!/usr/bin/env python3
"""make_tiny_models.py: writes tiny random Hugging Face checkpoints made with transformers at fixed seeds,
each with a small byte-level BPE tokenizer trained offline on a fixed text, for the convert tests.
Generated, never committed.

usage: make_tiny_models.py OUT_DIR [--arch llama] [--dtype f32|f16|bf16] [--tie]
                           [--pre llama-bpe|qwen2|gpt-2|smollm] [--format safetensors|bin] [--rope default|llama3]

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama", choices=["llama"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--tie", action="store_true", help="tied embeddings (no lm_head.weight)")
    ap.add_argument("--pre", default="llama-bpe", choices=PRE_TOKENIZERS, help="pre-tokenizer family")
    ap.add_argument("--format", default="safetensors", choices=["safetensors", "bin"], help="weights file")
    ap.add_argument("--rope", default="default", choices=["default", "llama3"], help="rope scaling")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    make_llama(a.out, a.dtype, a.tie, a.pre, a.format, a.rope)


if __name__ == "__main__":
    main()
