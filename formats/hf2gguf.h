/* hf2gguf.h: architecture-aware HF checkpoint directory -> GGUF conversion (names, Q/K permutation, hparams, tokenizer). */
#ifndef MUSE_HF2GGUF_H
#define MUSE_HF2GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"
#include "hf_general.h"
#include "hf_view.h"

/*
 * Converts the HF directory dir (config.json, safetensors or PyTorch
 * weights, tokenizer.json) into the GGUF file out: tensors laid out from
 * the descriptors first, then data in one streaming pass; peak memory is a
 * cast chunk or a few rows (plus one source tensor only for strided
 * PyTorch storage).
 * want: MUSE_DT_F32/F16/BF16, or MUSE_DT_INVALID for "auto" (keep the
 * source precision). Norms and 1-D tensors are always F32. An F16 cast
 * that overflows is refused with the tensor's name. shard_bytes 0: one
 * file. Progress goes to stderr unless quiet; on failure no output file
 * is left.
 */
muse_status muse_hf2gguf(const char *dir, const char *out, muse_dtype want, uint64_t shard_bytes, bool quiet,
			 muse_err *err);

/* The row quantizer the HF view takes (hf_view.h): cmd/ hands quant/'s Q8_0 reference in. */
typedef muse_hf_view_quantize_fn muse_hf2gguf_quantize_fn;

typedef struct muse_hf2gguf_opts {
	muse_dtype want;                   /* F32/F16/BF16/Q8_0, or MUSE_DT_INVALID for auto */
	uint64_t shard_bytes;              /* 0: one file */
	bool quiet;                        /* no progress or summary on stderr */
	muse_hf2gguf_quantize_fn quantize; /* required when want is Q8_0 (quant/'s Q8_0 reference) */
} muse_hf2gguf_opts;

/*
 * muse_hf2gguf with every option. Q8_0 goes where convert_hf_to_gguf.py
 * puts it: every 2-D+ weight except norms and routers, F16 for a tensor
 * whose rows are not whole 32-element blocks. Block-scaled FP8 weights
 * (weight_scale_inv) are dequantized row by row; with auto they are written
 * in the precision of the checkpoint's unquantized matrices (BF16 when it
 * has none). Experts are stacked into 3-D tensors expert by expert;
 * nothing holds more than one source tensor (strided PyTorch sources) or one
 * attention head (MLA's transposed attn_k_b).
 */
muse_status muse_hf2gguf_ex(const char *dir, const char *out, const muse_hf2gguf_opts *o, muse_err *err);

#endif
