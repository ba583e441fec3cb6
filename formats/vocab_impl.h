/* vocab_impl.h: what the readings and writers of tokenizer files in formats/ share: building a muse_vocab, HF tokenizer files as JSON, the pre-tokenizer table against tokenizer.json definitions. */
#ifndef MUSE_VOCAB_IMPL_H
#define MUSE_VOCAB_IMPL_H

#include <jansson.h>
#include <stdbool.h>

#include "vocab.h"

/* ---- building a muse_vocab (vocab.c) ---- */

/* An empty vocabulary: every optional field unset (-1 / NULL). NULL on no memory. */
muse_vocab *muse_vocab_create(void);

/* Sizes the vocabulary part for n ids (1..2^24), all holes; scores when with_scores, types when with_types. */
muse_status muse_vocab_alloc(muse_vocab *v, size_t n, bool with_scores, bool with_types, muse_err *err);
/* A NUL-terminated copy of len bytes of s (which may hold NULs); NULL on no memory. */
char *muse_vocab_copy(const char *s, size_t len);
/* Sets token id's text (a copy of len bytes). */
muse_status muse_vocab_set_text(muse_vocab *v, size_t id, const char *s, size_t len, muse_err *err);
/* Appends merge a + b (b may be NULL), copies. */
muse_status muse_vocab_add_merge(muse_vocab *v, const char *a, size_t la, const char *b, size_t lb, muse_err *err);
/* Appends an added token (a copy of text); the flags start false. */
muse_status muse_vocab_add_added(muse_vocab *v, const char *text, size_t len, int32_t id, bool special, muse_err *err);
/* Added tokens from the token types: CONTROL/UNKNOWN special, USER_DEFINED not (llama.cpp's partition set). */
muse_status muse_vocab_added_from_types(muse_vocab *v, muse_err *err);
/* prefix = [bos] when add_bos and bos is an id, suffix = [eos] likewise. */
void muse_vocab_set_post(muse_vocab *v, bool add_bos, bool add_eos);

/* Appends the rule's pre-tokenizer steps to v (Digits as a Split on \p{N}, the splits, ByteLevel). */
muse_status muse_vocab_pre_from_rule(muse_vocab *v, const muse_pre_rule *rule, muse_err *err);

/* ---- HF tokenizer files as JSON (vocab_hf.c) ---- */

/*
 * Loads dir/name as a JSON object. Absent: NULL with *s MUSE_OK, or
 * MUSE_ERR_UNSUPPORTED "PATH: missing" when required. flags: jansson's
 * decoding flags beside JSON_REJECT_DUPLICATES (JSON_DECODE_INT_AS_REAL for
 * the config files, whose integers can exceed int64: tokenizer_config's
 * model_max_length is often 1e30 written out). Errors name the file and byte.
 */
json_t *muse_vocab_hf_load(const char *dir, const char *name, bool required, size_t flags, muse_status *s,
			   muse_err *err);

/* o is an object whose "type" is the string t. */
bool muse_vocab_hf_is_type(json_t *o, const char *t);

/* The content of a tokenizer_config "<kind>_token" entry (a string or {"content": ...}), or NULL. */
const char *muse_vocab_hf_content(json_t *e);

/* ---- the pre-tokenizer table against tokenizer.json (vocab_pre.c) ---- */

/* The tokenizer.ggml.pre name of a pre_tokenizer definition, matched by structure (steps, regexes); NULL: none. */
const char *muse_vocab_pre_match(json_t *pre_tokenizer);

/* The pre_tokenizer definition (new reference) of a tokenizer.ggml.pre name muse writes into tokenizer.json; else NULL. */
json_t *muse_vocab_pre_json(const char *name);

#endif
