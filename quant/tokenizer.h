/* tokenizer.h: text -> token ids for every vocabulary muse reads (HF tokenizer.json / tokenizer.model, GGUF tokenizer.* keys, all read into a muse_vocab by formats/vocab*.c); one encoder serves `muse tokenize`, calibration and eval. */
#ifndef MUSE_TOKENIZER_H
#define MUSE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/status.h"

typedef struct muse_tokenizer muse_tokenizer;
struct muse_vocab;

/*
 * Builds the encoder for a vocabulary (formats/vocab.h) and takes it: v is
 * freed on success and on failure. Fails on what the reading left as a
 * refusal (a tokenizer.json feature muse cannot run) and on merges or an
 * unk_token naming no token.
 */
muse_status muse_tokenizer_create(struct muse_vocab *v, muse_tokenizer **out, muse_err *err);

/*
 * muse_vocab_from_meta + create: GGUF tokenizer.* metadata as llama.cpp
 * reads it ("gpt2": byte-level BPE with the pre-tokenizer named by .pre;
 * "llama": SentencePiece BPE with byte fallback). path names the file in
 * errors.
 */
muse_status muse_tokenizer_from_meta(const muse_meta *meta, const char *path, muse_tokenizer **out, muse_err *err);

/* muse_vocab_from_dir + create: an HF directory's tokenizer.json (else tokenizer.model) and tokenizer_config.json. */
muse_status muse_tokenizer_from_dir(const char *dir, muse_tokenizer **out, muse_err *err);

/*
 * Encodes len bytes of UTF-8 text as HF `tokenizers` (and llama.cpp on the
 * same vocabulary) do. add_special: prepend BOS / append EOS as the
 * tokenizer's own settings say (add_bos_token / add_eos_token /
 * post-processor). parse_special: special and added tokens written in the
 * text are matched as single ids. *ids is malloc'd (caller frees), *n_ids
 * its length.
 */
muse_status muse_tokenizer_encode(const muse_tokenizer *t, const char *text, size_t len, bool add_special,
				  bool parse_special, int32_t **ids, size_t *n_ids, muse_err *err);

size_t muse_tokenizer_n_vocab(const muse_tokenizer *t);
int32_t muse_tokenizer_bos(const muse_tokenizer *t); /* -1: none */
int32_t muse_tokenizer_eos(const muse_tokenizer *t); /* -1: none */
void muse_tokenizer_free(muse_tokenizer *t);

#endif
