/* vocab_to_hf.h: GGUF tokenizer.* metadata -> Hugging Face tokenizer.json and tokenizer_config.json (byte-level and SentencePiece BPE), tokenizer.model. */
#ifndef MUSE_VOCAB_TO_HF_H
#define MUSE_VOCAB_TO_HF_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/status.h"

/*
 * Builds the two tokenizer files from a GGUF's metadata (the inverse of
 * vocab_convert.c, so that HF -> GGUF gives the same tokenizer.* keys):
 * tokenizer.json with model.vocab from tokenizer.ggml.tokens (UNUSED
 * "[PADi]" holes left out), model.merges as pairs, the pre-tokenizer
 * tokenizers uses for tokenizer.ggml.pre, a ByteLevel decoder, a
 * post-processor adding BOS/EOS as add_bos/add_eos_token say, and
 * added_tokens for CONTROL (special) and USER_DEFINED tokens. For a
 * SentencePiece vocabulary ("llama"): every token in the vocab, merges
 * derived from the scores as transformers' converter derives them, the
 * Metaspace pre-tokenizer and decoder of LlamaTokenizer (legacy=False),
 * byte_fallback, <unk> among the special added tokens, BOS added unless
 * add_bos_token is false (llama.cpp's default). And
 * tokenizer_config.json with the special tokens' text, add_*_token,
 * add_prefix_space, chat_template and model_max_length (ctx, 0: omitted).
 * file names errors (the GGUF path). *tok and *cfg are new references the
 * caller decrefs. MUSE_ERR_UNSUPPORTED when tokenizer.ggml.model is not
 * "gpt2" or "llama", or the byte-level pre-tokenizer is not one muse can
 * write (vocab_pre.c); MUSE_ERR_FORMAT for inconsistent arrays (type count
 * != token count, bad ids).
 */
muse_status muse_vocab_meta_to_hf(const muse_meta *meta, const char *file, uint64_t ctx, json_t **tok, json_t **cfg,
				  muse_err *err);

/*
 * A SentencePiece tokenizer.model (serialized ModelProto) for a GGUF
 * SentencePiece vocabulary (tokenizer.ggml.model "llama" with scores and
 * token types): the pieces with their scores and types in id order, a BPE
 * TrainerSpec with byte_fallback and the unk/bos/eos/pad ids, and an
 * identity NormalizerSpec with add_dummy_prefix from add_space_prefix.
 * *out (malloc'd, *out_len bytes) is NULL when the vocabulary is not one
 * SentencePiece accepts (another model, no unknown piece, duplicate or
 * empty pieces); that is not an error, the file is optional.
 */
muse_status muse_vocab_meta_to_spm(const muse_meta *meta, const char *file, uint8_t **out, size_t *out_len,
				   muse_err *err);

#endif
