/* tokenizer_gguf.h: HF tokenizer files (tokenizer.json, tokenizer_config.json, chat template) -> GGUF tokenizer.* metadata. */
#ifndef MUSE_TOKENIZER_GGUF_H
#define MUSE_TOKENIZER_GGUF_H

#include <stdio.h>
#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/status.h"

/*
 * Appends the tokenizer keys for the model directory dir to meta, as
 * convert_hf_to_gguf.py's _set_vocab_gpt2 + gguf.SpecialVocab write them:
 * tokenizer.ggml.model "gpt2", .pre (from the pre_tokenizer definition, not
 * by hashing encodings), .tokens and .token_type (vocab_size entries,
 * "[PADi]"/UNUSED for holes), .merges, special token ids, add_*_token,
 * tokenizer.chat_template byte for byte. Supports byte-level BPE only
 * (MUSE_ERR_UNSUPPORTED otherwise). When report is non-NULL, one line per
 * chosen special id is printed there.
 */
muse_status muse_tokenizer_gguf_load(const char *dir, uint64_t vocab_size, muse_meta *meta, FILE *report,
				     muse_err *err);

/*
 * The tokenizer.ggml.pre name for a tokenizer.json "pre_tokenizer" given as
 * JSON text, or NULL when it is not one muse recognizes (exposed for tests).
 */
const char *muse_tokenizer_pre_name(const char *pre_tokenizer_json);

#endif
