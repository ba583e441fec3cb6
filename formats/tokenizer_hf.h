/* tokenizer_hf.h: GGUF tokenizer.* metadata -> Hugging Face tokenizer.json and tokenizer_config.json (byte-level BPE). */
#ifndef MUSE_TOKENIZER_HF_H
#define MUSE_TOKENIZER_HF_H

#include <jansson.h>

#include "../lib/kv.h"
#include "../lib/status.h"

/*
 * Builds the two tokenizer files from a GGUF's metadata (the inverse of
 * tokenizer_gguf.c, so that HF -> GGUF gives the same tokenizer.* keys):
 * tokenizer.json with model.vocab from tokenizer.ggml.tokens (UNUSED
 * "[PADi]" holes left out), model.merges as pairs, the pre-tokenizer
 * tokenizers uses for tokenizer.ggml.pre, a ByteLevel decoder, a
 * post-processor adding BOS/EOS as add_bos/add_eos_token say, and
 * added_tokens for CONTROL (special) and USER_DEFINED tokens; and
 * tokenizer_config.json with the special tokens' text, add_*_token,
 * add_prefix_space, chat_template and model_max_length (ctx, 0: omitted).
 * file names errors (the GGUF path). *tok and *cfg are new references the
 * caller decrefs. MUSE_ERR_UNSUPPORTED when tokenizer.ggml.model is not
 * "gpt2" or the pre-tokenizer is not one muse can write; MUSE_ERR_FORMAT
 * for inconsistent arrays (type count != token count, bad ids).
 */
muse_status muse_tokenizer_hf_build(const muse_meta *meta, const char *file, uint64_t ctx, json_t **tok, json_t **cfg,
				    muse_err *err);

/* The tokenizers "pre_tokenizer" object for a tokenizer.ggml.pre name (new reference), or NULL when unknown. */
json_t *muse_tokenizer_hf_pre(const char *pre_name);

#endif
