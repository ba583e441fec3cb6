/* tokenizer_gguf.h: HF tokenizer files (tokenizer.json, tokenizer.model, tokenizer_config.json, chat template) -> GGUF tokenizer.* metadata. */
#ifndef MUSE_TOKENIZER_GGUF_H
#define MUSE_TOKENIZER_GGUF_H

#include <stdio.h>
#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/status.h"

/*
 * Appends the tokenizer keys for the model directory dir to meta, taking
 * the path convert_hf_to_gguf.py's LlamaModel.set_vocab takes for the same
 * files:
 *  - tokenizer.model (SentencePiece): _set_vocab_sentencepiece: model
 *    "llama", pre "default", pieces/scores/types (vocab_size entries,
 *    "[PADi]" -10000 UNUSED for holes), added_tokens.json and
 *    tokenizer_config added_tokens_decoder overrides;
 *  - else a SentencePiece-style tokenizer.json (BPE with byte_fallback and a
 *    Sequence decoder): _set_vocab_llama_hf: model "llama", pre "default",
 *    base vocab then added tokens. One deliberate difference: the converter
 *    writes score -1000 for every token, which makes llama.cpp's
 *    score-driven SentencePiece merge order left-to-right and tokenize
 *    unlike HF; muse writes -k for the k-th distinct token the merges
 *    produce (-1e9 for tokens no merge produces) so llama.cpp merges in
 *    HF's rank order;
 *  - else byte-level BPE tokenizer.json: _set_vocab_gpt2: model "gpt2",
 *    .pre from the pre_tokenizer definition (not by hashing encodings),
 *    tokens and types, merges.
 * Then gguf.SpecialVocab: special ids (bos/eos/unk/sep/pad/mask, and
 * eot/eom where the post-processor's trailing token differs from eos),
 * add_bos/add_eos/add_sep, normalizer lowercase/strip_accents, and
 * tokenizer.chat_template byte for byte (tokenizer_config.json's, else
 * chat_template.jinja, else chat_template.json; named templates as
 * tokenizer.chat_template.NAME). When report is non-NULL, one line per
 * chosen special id is printed there.
 */
muse_status muse_tokenizer_gguf_load(const char *dir, uint64_t vocab_size, muse_meta *meta, FILE *report,
				     muse_err *err);

/*
 * The tokenizer.ggml.pre name for a tokenizer.json "pre_tokenizer" given as
 * JSON text, or NULL when it is not one muse recognizes (exposed for tests).
 */
const char *muse_tokenizer_pre_name(const char *pre_tokenizer_json);

#define MUSE_PRE_MAX_SPLITS 3

/*
 * One byte-level pre-tokenizer family: the tokenizer.json steps it stands
 * for ([Digits(individual_digits=true)], Split(Regex, Isolated)...,
 * ByteLevel(use_regex)) and llama.cpp's per-name flags.
 */
typedef struct muse_pre_rule {
	const char *name;                          /* tokenizer.ggml.pre */
	const char *split[MUSE_PRE_MAX_SPLITS];    /* Split regexes in order (PCRE2 syntax), NULL-terminated */
	int digits;                                /* Digits(individual_digits=true) first */
	int bytelevel_regex;                       /* ByteLevel(use_regex=true): GPT-2's regex */
	int ignore_merges;                         /* llama.cpp: whole pre-token in vocab -> one id */
	int add_bos;                               /* llama.cpp's add_bos default for the name */
} muse_pre_rule;

/* The rule for a tokenizer.ggml.pre name (llama.cpp's aliases included); NULL when unknown. */
const muse_pre_rule *muse_tokenizer_pre_rule(const char *name);

#endif
