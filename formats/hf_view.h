/* hf_view.h: an HF checkpoint directory read as the GGUF model convert_hf_to_gguf.py would write, without writing it. */
#ifndef MUSE_HF_VIEW_H
#define MUSE_HF_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"
#include "reader.h"

/*
 * A row quantizer with quant/'s muse_quantize_fn shape (formats/ may not
 * call quant/, so the caller hands one in): nrows rows of n_per_row floats
 * into dst, returning the bytes written; importance is always NULL here.
 */
typedef size_t (*muse_hf_view_quantize_fn)(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
					    const float *importance);

typedef struct muse_hf_view_opts {
	muse_dtype want;                   /* F32/F16/BF16/Q8_0, or MUSE_DT_INVALID for auto (the source precision) */
	muse_hf_view_quantize_fn quantize; /* required when want is Q8_0 (quant/'s Q8_0 reference) */
	bool quiet;                        /* no tokenizer notes on stderr */
	bool no_tokenizer;                 /* leave out tokenizer.* (a forward pass tokenizes from the directory's files) */
} muse_hf_view_opts;

/*
 * Opens the HF directory dir (config.json, safetensors or PyTorch weights,
 * FP8 with weight_scale_inv, sharded or not, tokenizer files) as a reader
 * whose tensors and metadata are the GGUF file muse_hf2gguf writes, in its
 * order: GGUF names through the architecture tables, per-expert tensors
 * stacked, Q/K rows permuted, MLA's kv_b split (attn_k_b transposed per
 * head), fused gate_up halves, FP8 dequantized, rope_freqs generated,
 * general.* / hparams / tokenizer.* metadata. Types: norms, routers, 1-D
 * tensors and non-".weight" names F32, the rest opts->want (Q8_0 falls back
 * to F16 for rows that are not whole blocks; auto keeps the source type,
 * BF16 or the checkpoint's float type for dequantized FP8).
 *
 * Nothing is read at open but descriptors and small JSON files. A tensor
 * that is a plain copy of one source tensor in its own type is backed by
 * the source's mapping (muse_reader_view works, zero-copy); every other
 * tensor is computed row by row inside muse_reader_read_rows, from a few
 * source rows (one attention head for attn_k_b): reading rows of a stack
 * of experts never holds more than those rows. Reads may run from several
 * threads at once. The reader's format is "hf" and its path dir.
 */
muse_status muse_hf_view_open(const char *dir, const muse_hf_view_opts *opts, muse_reader **out, muse_err *err);

/* The source bytes tensor i of a view is made from (for progress); 0 when r is not a view. */
uint64_t muse_hf_view_source_bytes(const muse_reader *r, size_t i);

/*
 * The view tensor the checkpoint's tensor name feeds (the first one where it feeds several, as MLA's kv_b
 * feeds attn_k_b and attn_v_b): *idx its index in the view, *expert its place in a stack of experts or -1.
 * False when name feeds none (an FP8 scale, a dropped buffer, an unknown name) or v is not a view.
 */
bool muse_hf_view_target(const muse_reader *v, const char *name, size_t *idx, int64_t *expert);

#endif
