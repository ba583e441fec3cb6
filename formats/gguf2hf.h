/* gguf2hf.h: GGUF -> Hugging Face checkpoint directory; the reversed arch tables; output directories that appear whole. */
#ifndef MUSE_GGUF2HF_H
#define MUSE_GGUF2HF_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"
#include "arch.h"

/*
 * Decodes n elements (whole blocks) of block type t into floats, as ggml's
 * to_float does; n == 0 with NULL buffers asks whether t is supported
 * (MUSE_OK) or not (an error). formats/ may not call quant/ (the lanes run
 * lib -> formats -> quant -> cmd), so the caller hands the decoder in:
 * cmd/convert.c passes quant's muse_dequantize, which has this signature.
 */
typedef muse_status (*muse_dequant_cb)(muse_dtype t, const void *src, float *dst, int64_t n, muse_err *err);

typedef struct muse_gguf2hf_opts {
	muse_dtype want;         /* MUSE_DT_F32/F16/BF16; MUSE_DT_INVALID: auto (float tensors keep their type,
				    block-quantized ones become F32; F32 norms of an F16/BF16 model join its type
				    when every value converts exactly) */
	uint64_t shard_bytes;    /* safetensors shard limit; 0: one file */
	bool quiet;              /* no progress, no summary line */
	muse_dequant_cb dequant; /* NULL: quantized tensors are refused */
} muse_gguf2hf_opts;

/*
 * Converts the GGUF file in (a split set is named by its first shard) into
 * the HF directory out_dir: model.safetensors (or shards plus
 * model.safetensors.index.json, as save_pretrained lays them out),
 * config.json, generation_config.json, tokenizer.json and
 * tokenizer_config.json. Tensor names go back through the arch table whose
 * gguf_name is general.architecture (when several tables share it, the
 * first that names every tensor); Q/K rows go back from ggml's interleaved
 * order to rotate-half; 3-D expert tensors are split per expert where the
 * table's HF pattern has "{E}". Streaming: memory is one chunk of rows
 * plus the metadata, never a tensor. The directory is built under a
 * hidden temporary name beside out_dir and renamed at the end, so it
 * appears complete or not at all; out_dir must not exist or be empty.
 */
muse_status muse_gguf2hf(const char *in, const char *out_dir, const muse_gguf2hf_opts *o, muse_err *err);

/* ---- output directories that appear complete or not at all ---- */
typedef struct muse_outdir {
	char *final; /* owned */
	char *tmp;   /* owned; NULL once committed or aborted */
} muse_outdir;

#define MUSE_OUTDIR_INIT { NULL, NULL }

/*
 * Creates the hidden temporary directory "<parent>/.<name>.muse-XXXXXX"
 * for path. Refuses a path that exists and is not an empty directory.
 */
muse_status muse_outdir_begin(muse_outdir *d, const char *path, muse_err *err);
/* Renames the temporary directory to its final name (replacing an empty directory) and syncs the parent. */
muse_status muse_outdir_commit(muse_outdir *d, muse_err *err);
/* Removes the temporary directory and the files in it; safe after commit and on MUSE_OUTDIR_INIT. Frees d. */
void muse_outdir_abort(muse_outdir *d);
/* Writes DIR/name atomically (a small file: JSON, a model card). */
muse_status muse_outdir_write(const muse_outdir *d, const char *name, const void *p, size_t n, muse_err *err);
/* Copies the regular file src to DIR/name (config and tokenizer files kept beside resharded weights). */
muse_status muse_outdir_copy(const muse_outdir *d, const char *src, const char *name, muse_err *err);

/* ---- the arch tables read backwards (arch_reverse.c) ---- */

/*
 * Finds the row whose gguf pattern matches gguf_name: *rule, and *block
 * (-1 for non-block tensors). MUSE_ERR_UNSUPPORTED when no row matches,
 * MUSE_ERR_LIMIT when the block number is not below n_blocks. Rows that
 * share a GGUF name resolve to the first one listed, one-to-one rows before
 * rows whose HF tensor merges several GGUF tensors (MUSE_XF_HALF_*,
 * MUSE_XF_KV_B_*); when only such a row matches, *rule and *block name it
 * and the result is MUSE_ERR_USAGE (the caller cannot rebuild it alone).
 */
muse_status muse_arch_reverse_name(const muse_arch *a, const char *gguf_name, uint64_t n_blocks,
				   const muse_arch_tensor **rule, int64_t *block);
/* True when the row's HF pattern names one tensor per expert ("{E}"): a GGUF 3-D tensor splits along dim 0. */
int muse_arch_rule_splits_experts(const muse_arch_tensor *rule);
/* rule->hf with "{N}" = block and "{E}" = expert into out; MUSE_ERR_LIMIT when it does not fit. */
muse_status muse_arch_hf_name(const muse_arch_tensor *rule, int64_t block, int64_t expert, char *out, size_t cap);
/* The GGUF row that holds HF row r of a permuted Q/K tensor (rows a multiple of 2n, n heads). */
uint64_t muse_arch_unpermute_src(uint64_t r, uint64_t rows, uint64_t n);
/* Inverse of muse_arch_permute_rows (interleaved -> rotate-half); same preconditions. */
muse_status muse_arch_unpermute_rows(void *dst, const void *src, uint64_t rows, uint64_t row_bytes, uint64_t n,
				     muse_err *err);
/* The tables whose gguf_name is gguf_arch, in table order, at most cap; returns how many. */
size_t muse_arch_candidates(const char *gguf_arch, const muse_arch **out, size_t cap);

#endif
