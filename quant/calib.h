/* calib.h: calibration and evaluation data: text, JSONL or token-id files -> token ids -> N samples of L tokens, with the provenance every output records. */
#ifndef MUSE_CALIB_H
#define MUSE_CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/status.h"
#include "model.h"

/* Where the tokens came from: recorded in every output that used them. */
typedef struct muse_calib_source {
	char path[1024];
	char sha256[65];      /* of the file's bytes, lowercase hex */
	char kind[8];         /* "text", "jsonl" or "tokens" */
	size_t n_tokens;      /* tokens in the whole file */
} muse_calib_source;

/*
 * Reads a data file and turns it into token ids.
 * kind "tokens": the file holds decimal ids separated by whitespace or
 * commas (brackets allowed, as llama-tokenize --ids prints them); no
 * tokenizer is involved. kind "jsonl": one JSON object per line, the
 * "text" fields joined with "\n\n". kind "text": the bytes as they are.
 * Text is encoded with the model's own tokenizer (GGUF tokenizer.* keys, or
 * the HF directory's tokenizer files), special tokens added as the
 * tokenizer says. kind NULL: "jsonl" for a .jsonl name, else "text".
 * *ids is malloc'd.
 */
muse_status muse_calib_load(muse_model *m, const char *path, const char *kind, int32_t **ids, size_t *n_ids,
			    muse_calib_source *src, muse_err *err);

/*
 * The two readers muse_calib_load uses, on n bytes already in memory (path
 * only names them in errors, which are one line "<path>: byte <off>: why").
 * parse_ids: decimal ids in 0..INT32_MAX separated by whitespace, commas or
 * brackets; no ids is not an error (*n_ids 0). jsonl_text: every non-blank
 * line must be a JSON object with a string "text"; the texts joined with
 * "\n\n" (*text malloc'd, *len bytes, not NUL-terminated).
 */
muse_status muse_calib_parse_ids(const char *path, const uint8_t *p, size_t n, int32_t **ids, size_t *n_ids,
				 muse_err *err);
muse_status muse_calib_jsonl_text(const char *path, const uint8_t *p, size_t n, char **text, size_t *len,
				  muse_err *err);

/*
 * Whether the model's tokenizer adds BOS (tokenizer.ggml.add_bos_token, else
 * the vocabulary type's default), and the BOS id (-1: none). Calibration
 * and eval put BOS at the start of every sample when it does, as
 * llama-imatrix and llama-perplexity do.
 */
int32_t muse_calib_bos(const muse_model *m);

/*
 * Cuts ids into samples of seq_len tokens: the stream is split into
 * floor(n_ids / seq_len) consecutive windows; seed 0 takes the first
 * n_samples windows in order (llama-imatrix's and llama-perplexity's
 * chunks), any other seed takes n_samples windows drawn without
 * replacement by a fixed PRNG (splitmix64 Fisher-Yates), so a seed names
 * the same samples on every machine. n_samples 0: every window. The first
 * token of every sample becomes bos when bos >= 0. *out is malloc'd,
 * n_samples x seq_len.
 */
muse_status muse_calib_cut(const int32_t *ids, size_t n_ids, int64_t *n_samples, int64_t seq_len, uint64_t seed,
			   int32_t bos, int32_t **out, muse_err *err);

/* SHA-256 of a file as lowercase hex. */
muse_status muse_sha256_file(const char *path, char hex[65], muse_err *err);

#endif
