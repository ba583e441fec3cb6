/* vocab_spm.h: SentencePiece tokenizer.model (protobuf ModelProto): the reader (pieces, scores, types and the spec fields converters use) and sentencepiece's reading of it as a muse_vocab. */
#ifndef MUSE_VOCAB_SPM_H
#define MUSE_VOCAB_SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/status.h"
#include "vocab.h"

/* TrainerSpec.ModelType. */
enum { MUSE_SPM_UNIGRAM = 1, MUSE_SPM_BPE = 2, MUSE_SPM_WORD = 3, MUSE_SPM_CHAR = 4 };

typedef struct muse_spm_piece {
	char *text;  /* owned, NUL-terminated, valid UTF-8, non-empty */
	size_t len;
	float score; /* finite */
	int type;    /* SentencePiece.Type, numbered as MUSE_TOKEN_*; NORMAL when absent (proto2's default) */
} muse_spm_piece;

/*
 * What muse needs from a ModelProto. Fields absent from the file hold
 * SentencePiece's proto2 defaults (unk 0, bos 1, eos 2, pad -1,
 * add_dummy_prefix/remove_extra_whitespaces/escape_whitespaces true,
 * byte_fallback false, model type UNIGRAM), as SentencePieceProcessor
 * reports them.
 */
typedef struct muse_spm_model {
	muse_spm_piece *pieces;
	size_t n_pieces;
	int model_type;
	int32_t unk_id, bos_id, eos_id, pad_id;
	bool byte_fallback;
	bool split_digits;
	bool treat_whitespace_as_suffix;
	bool add_dummy_prefix;
	bool remove_extra_whitespaces;
	bool escape_whitespaces;
	char *normalizer_name;          /* owned; NULL when absent */
	bool has_precompiled_charsmap;  /* a non-empty normalizer_spec.precompiled_charsmap */
} muse_spm_model;

/*
 * Parses len bytes of a serialized ModelProto. Strict: every wire type and
 * length is checked against the bytes left, known fields must carry their
 * declared wire type, pieces must be non-empty unique UTF-8 with finite
 * scores and known types, special ids must name pieces (or be -1). path
 * names the file in errors ("PATH: byte N: ..."). *out is owned by the
 * caller (muse_spm_free); on failure it is NULL.
 */
muse_status muse_spm_parse(const uint8_t *data, size_t len, const char *path, muse_spm_model **out, muse_err *err);

/* Maps path and parses it. */
muse_status muse_spm_load(const char *path, muse_spm_model **out, muse_err *err);

void muse_spm_free(muse_spm_model *m); /* NULL is a no-op */

/*
 * sentencepiece's reading of the tokenizer.model at path, for the encoder:
 * pieces, scores, CONTROL/UNKNOWN/USER_DEFINED pieces as added tokens, the
 * dummy prefix, bos/eos, and BOS/EOS added as add_bos/add_eos say
 * (tokenizer_config.json's flags). BPE models with the identity
 * normalizer only (MUSE_ERR_UNSUPPORTED otherwise).
 */
muse_status muse_vocab_from_spm(const char *path, bool add_bos, bool add_eos, muse_vocab **out, muse_err *err);

#endif
