/* rtn.h: integer weight grids (bits, group size, sym/asym) shared by RTN, GPTQ and AWQ, and round-to-nearest itself. */
#ifndef MUSE_RTN_H
#define MUSE_RTN_H

#include <stdbool.h>
#include <stdint.h>

#include "../formats/packed.h"
#include "../lib/dtype.h"
#include "../lib/status.h"

/* How a group's scale and zero come from its values. */
typedef enum muse_wq_style {
	MUSE_WQ_MINMAX, /* GPTQ's Quantizer.find_params: the range always includes 0; sym scale = 2*amax/maxq */
	MUSE_WQ_AWQ,    /* AutoAWQ's pseudo_quantize_tensor: range [min, max]; sym scale = amax/(2^(b-1)-1) */
} muse_wq_style;

typedef struct muse_wq_config {
	int bits;               /* 2, 3, 4, 8 */
	int64_t group_size;     /* > 0, or -1 for one group per output row */
	bool sym;
	muse_wq_style style;
	int zero_min;           /* lowest zero point allowed: 1 when writing GPTQ v1 asym (it cannot store 0), else 0 */
	muse_dtype scale_dtype; /* F16, BF16 or F32: scales are rounded to it before any code is chosen */
} muse_wq_config;

/* Checks bits, group size (against cols when cols > 0), style and scale dtype. */
muse_status muse_wq_config_check(const muse_wq_config *c, uint64_t cols, muse_err *err);

/*
 * The grid for a group whose values lie in [xmin, xmax]: scale (already
 * rounded to c->scale_dtype, never 0 or Inf) and unsigned zero point in
 * [zero_min, 2^bits - 1] (2^(bits-1) when symmetric).
 */
void muse_wq_params(const muse_wq_config *c, double xmin, double xmax, float *scale, uint8_t *zero);

/* The code of x on a grid: clamp(round_half_even(x / scale) + zero, 0, 2^bits - 1). */
static inline uint8_t muse_wq_code(double x, float scale, uint8_t zero, int bits)
{
	double v = __builtin_nearbyint(x / (double)scale) + (double)zero;
	double maxq = (double)((1 << bits) - 1);
	return (uint8_t)(v < 0 ? 0 : v > maxq ? maxq : v);
}

/* What a code decodes to: (q - z) * s, in float as every layout's decoder computes it. */
static inline float muse_wq_value(uint8_t q, float scale, uint8_t zero)
{
	return ((float)q - (float)zero) * scale;
}

/*
 * Round-to-nearest: w [rows][cols] F32 -> out (allocated here; free with
 * muse_qlinear_free). No g_idx (groups are k / group).
 */
muse_status muse_rtn_quantize(const muse_wq_config *c, const float *w, uint64_t rows, uint64_t cols,
			      muse_qlinear *out, muse_err *err);

/* In place: w <- dequant(quant(w)) row-wise with c (AWQ's pseudo-quantization for its searches). */
void muse_rtn_fake_quant(const muse_wq_config *c, float *w, uint64_t rows, uint64_t cols);

#endif
