/* fp8.h: block-scaled FP8 weights (DeepSeek's F8_E4M3 + weight_scale_inv) dequantized one row at a time. */
#ifndef MUSE_FP8_H
#define MUSE_FP8_H

#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/*
 * A weight's scale grid. The scale tensor is borrowed (an mmap view or the
 * caller's buffer) and must outlive this struct; nothing here allocates.
 */
typedef struct muse_fp8_scales {
	uint64_t rows, cols;   /* the weight's shape */
	uint64_t brow, bcol;   /* weight rows and columns per scale entry */
	uint64_t srows, scols; /* the scale grid */
	const uint8_t *scale;  /* srows * scols elements of sdt, row-major */
	muse_dtype wdt, sdt;
	float lut[256];        /* wdt -> f32 when wdt is one byte */
} muse_fp8_scales;

/*
 * Checks a (rows x cols) weight of the plain float type wdt against its
 * scale tensor (sndim dims of sshape, type sdt, data at scale) and fills s.
 * block: {rows, cols} per scale entry (quantization_config's
 * weight_block_size); the grid must be exactly ceil(rows / block[0]) x
 * ceil(cols / block[1]), the last blocks partial. block NULL: one scale for
 * the tensor or one per row (a 1-D scale of rows entries), broadcast as
 * convert_hf_to_gguf.py's dequant_simple does. On a mismatch returns
 * MUSE_ERR_FORMAT with a message naming both shapes (the caller adds the
 * tensor name).
 */
muse_status muse_fp8_scales_init(muse_fp8_scales *s, muse_dtype wdt, uint64_t rows, uint64_t cols,
				 const uint64_t *block, muse_dtype sdt, int sndim, const uint64_t *sshape,
				 const uint8_t *scale, muse_err *err);

/*
 * Row r of the weight (cols elements of wdt at q) as float32: each element
 * converted exactly, times its block's scale converted to float32, one
 * float32 product (q.float() * scale.float() in torch).
 */
void muse_fp8_dequant_row(const muse_fp8_scales *s, const uint8_t *q, uint64_t r, float *dst);

#endif
