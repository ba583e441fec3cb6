#!/usr/bin/env python3
"""make_tokenizers.py: fixture tokenizer directories for the tokenizer tests, trained at fixed settings on a fixed
multilingual text. Generated, never committed.

usage: make_tokenizers.py OUT_DIR KIND [--model]

KIND:
  spm          SentencePiece BPE (Llama-2 style: byte fallback, identity normalizer, dummy prefix, split digits)
               trained with the sentencepiece package: tokenizer.model + the tokenizer.json transformers'
               LlamaTokenizerFast conversion writes + tokenizer_config.json
  spm-json     the same tokenizer.json and tokenizer_config.json without tokenizer.model (SentencePiece-style
               BPE in tokenizer.json only, the Mistral/Llama-2 HF layout muse converts through LlamaHfVocab)
  llama3       byte-level BPE, Llama-3 split regex, ignore_merges, BOS added by a TemplateProcessing
  qwen2        byte-level BPE, Qwen2 split regex (single digits), NFC normalizer, no BOS
  gpt2         byte-level BPE, ByteLevel's own regex
  smollm       byte-level BPE, Digits(individual) + ByteLevel regex (SmolLM2/StarCoder)
  deepseek-v3  byte-level BPE, DeepSeek-V3's three Split regexes
--model additionally writes a tiny random Llama checkpoint (config.json + model.safetensors) whose vocab_size is
the tokenizer's, so `muse convert` and convert_hf_to_gguf.py can run on the directory.
"""
import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_models import CHAT_TEMPLATE, LLAMA3_REGEX, QWEN2_REGEX, TEXT  # noqa: E402

KINDS = ("spm", "spm-json", "llama3", "qwen2", "gpt2", "smollm", "deepseek-v3")

# More scripts than make_tiny_models' TEXT so the multilingual test strings meet merges, not only bytes.
EXTRA = """Hello world! Hello, World. hello   world\t\ttabs\nnew line\r\nwindows line
I'm sure you'll see they've done it; we'd say it's John's. DON'T SHOUT, I'LL LISTEN.
مرحبا بالعالم. هذا نص عربي قصير. नमस्ते दुनिया। यह हिंदी पाठ है।
한국어 텍스트입니다. 日本語の文章です。カタカナとひらがな。中文句子，还有标点。
Numbers: 1 12 123 1234 12345 123456789 3.14 -42 1e10 0x1F 2026年11月22日
Emoji: 👍 😀 🎉 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ ✅ 🦙
Code: for (int i = 0; i < n; i++) { x += y[i]; }  if x == 1: print("ok")
""" * 3

CORPUS = TEXT + EXTRA

DEEPSEEK_V3_SPLITS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+"
    "[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]

BYTE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>"]


def train_spm(vocab_size=700):
    """SentencePiece BPE, Llama-2's trainer settings scaled down; deterministic (one thread, no sampling)."""
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for line in CORPUS.splitlines() if line.strip()]), model_writer=buf,
        model_type="bpe", vocab_size=vocab_size, character_coverage=1.0, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        split_digits=True, allow_whitespace_only_pieces=True, split_by_unicode_script=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, control_symbols=["[INST]", "[/INST]"],
        num_threads=1, hard_vocab_limit=False, minloglevel=2, seed_sentencepiece_size=1000000,
        shuffle_input_sentence=False)
    return buf.getvalue()


def write_spm(out, keep_model=True):
    from transformers import LlamaTokenizerFast
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(train_spm())
    # from_pretrained on a directory holding only tokenizer.model runs transformers' SentencePiece conversion.
    tok = LlamaTokenizerFast.from_pretrained(out, legacy=False, add_bos_token=True, add_eos_token=False)
    tok.chat_template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    tok.save_pretrained(out)
    if not keep_model:
        os.remove(os.path.join(out, "tokenizer.model"))
    return tok


def write_bytelevel(out, kind, vocab_size=700):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    Split = lambda rx: pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False)  # noqa: E731
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([Split(LLAMA3_REGEX), bl])
    elif kind == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([Split(QWEN2_REGEX), bl])
    elif kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif kind == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif kind == "deepseek-v3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([Split(r) for r in DEEPSEEK_V3_SPLITS] + [bl])
    else:
        raise ValueError(kind)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BYTE_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer=trainer)
    # A non-special added token: matched in text like the specials, but also with --no-special.
    tok.add_tokens(["<tool>"])
    bos = None
    if kind == "llama3":
        bos = "<|begin_of_text|>"
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos or "<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    os.makedirs(out, exist_ok=True)
    fast.save_pretrained(out)
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        tc = json.load(f)
    tc.update(add_bos_token=kind == "llama3", add_eos_token=False)
    with open(path, "w") as f:
        json.dump(tc, f, indent=2)
    return fast


def write_model(out, vocab_size, bos_id, eos_id, seed=1234):
    """A tiny random Llama checkpoint with the tokenizer's vocab size (config.json + model.safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                      bos_token_id=bos_id, eos_token_id=eos_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(out)


def make(out, kind, model=False):
    """Writes the fixture KIND into out; returns out."""
    if kind in ("spm", "spm-json"):
        tok = write_spm(out, keep_model=(kind == "spm"))
    else:
        tok = write_bytelevel(out, kind)
    if model:
        write_model(out, len(tok), tok.bos_token_id, tok.eos_token_id)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--model", action="store_true", help="also write a tiny Llama checkpoint")
    a = ap.parse_args()
    make(a.out, a.kind, a.model)


if __name__ == "__main__":
    main()
