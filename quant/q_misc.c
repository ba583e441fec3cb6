/* q_misc.c: MXFP4 and the ternary TQ1_0/TQ2_0, quantized and decoded bit for bit as ggml does. */
/*
 * None of the three has an importance-weighted variant in ggml: the weights
 * are accepted and ignored, as ggml's quantize_<type> ignores them.
 */
#include <math.h>

#include "quant.h"
#include "quant_tables.h"

#define Q_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- MXFP4 ---- */

/* The table entry closest to x at scale e; the lowest index wins ties, so +0 beats -0. */
static inline int best_index_mxfp4(float x, float e)
{
	int best_index = 0;
	float best_err = fabsf((float)muse_kvalues_mxfp4[0] * e - x);
	for (int i = 1; i < 16; i++) {
		float err = fabsf((float)muse_kvalues_mxfp4[i] * e - x);
		if (err < best_err) {
			best_index = i;
			best_err = err;
		}
	}
	return best_index;
}

size_t muse_quantize_mxfp4_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	(void)importance;
	muse_block_mxfp4 *y = dst;
	const float *x = src;
	int64_t nb = nrows * (n_per_row / MUSE_QK_MXFP4);
	for (int64_t i = 0; i < nb; i++, x += MUSE_QK_MXFP4) {
		float amax = 0.0f;
		for (int j = 0; j < MUSE_QK_MXFP4; j++)
			if (amax < fabsf(x[j]))
				amax = fabsf(x[j]);
		/*
		 * The shared exponent puts the largest magnitude in [4, 8) times the
		 * scale 2^(e-128), so it lands near the table's top entries 8 and 12.
		 * This is glibc's log2f, as in ggml. ggml casts the float straight to
		 * uint8_t; below 2^-129 that is out of range, and the low byte of the
		 * x86 conversion (what ggml's build stores) is kept here.
		 */
		const uint8_t e = amax > 0.0f
			? (uint8_t)((uint32_t)muse_q_trunc_i32(floorf(log2f(amax)) - 2 + 127) & 0xFF)
			: 0;
		const float d = muse_q_e8m0_half(e);
		y[i].e = e;
		for (int j = 0; j < 16; ++j) {
			int x0 = best_index_mxfp4(x[j], d);
			int x1 = best_index_mxfp4(x[j + 16], d);
			y[i].qs[j] = (uint8_t)(x0 | x1 << 4);
		}
	}
	return (size_t)nb * sizeof(muse_block_mxfp4);
}

void muse_dequantize_mxfp4(const void *src, float *dst, int64_t n)
{
	const muse_block_mxfp4 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_MXFP4; i++, dst += MUSE_QK_MXFP4) {
		const float d = muse_q_e8m0_half(x[i].e);
		for (int j = 0; j < 16; ++j) {
			dst[j] = (float)muse_kvalues_mxfp4[x[i].qs[j] & 0x0F] * d;
			dst[j + 16] = (float)muse_kvalues_mxfp4[x[i].qs[j] >> 4] * d;
		}
	}
}

/* ---- TQ1_0 / TQ2_0 ---- */

/*
 * The ternary digit of x/amax plus one: 0, 1 or 2. lroundf rounds half away
 * from zero; the long-to-int narrowing mirrors ggml's `int xi = lroundf(..) + 1`
 * (only Inf/NaN scales, which ggml does not guard either, make it wrap).
 */
static inline int trit(float v)
{
	return (int)(unsigned)(lroundf(v) + 1);
}

/* Packs five trits, first most significant, as ceil(v * 256 / 243) so a multiply by 3 extracts each. */
static inline uint8_t pack_trits(const float *x, size_t stride, int count, float id)
{
	uint8_t q = 0;
	for (int n = 0; n < count; ++n)
		q = (uint8_t)(q * 3 + trit(x[(size_t)n * stride] * id));
	for (int n = count; n < 5; ++n) /* fewer than five: shift to the most significant trits */
		q = (uint8_t)(q * 3);
	return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
}

size_t muse_quantize_tq1_0_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	(void)importance;
	muse_block_tq1_0 *y = dst;
	const float *x = src;
	int64_t nb = nrows * (n_per_row / MUSE_QK_K);
	for (int64_t i = 0; i < nb; i++) {
		float amax = 0.0f;
		for (int j = 0; j < MUSE_QK_K; j++)
			amax = Q_MAX(amax, fabsf(x[j]));
		const float d = amax;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		/* bytes 0..31: five trits each, elems m + 32n; bytes 32..47: elems 160 + m + 16n */
		for (int m = 0; m < 32; ++m)
			y[i].qs[m] = pack_trits(x + m, 32, 5, id);
		x += 5 * 32;
		for (int m = 0; m < 16; ++m)
			y[i].qs[32 + m] = pack_trits(x + m, 16, 5, id);
		x += 5 * 16;
		/* qh: four trits each, elems 240 + j + 4m, shifted up one trit */
		for (int j = 0; j < 4; ++j)
			y[i].qh[j] = pack_trits(x + j, 4, 4, id);
		x += 4 * 4;
	}
	return (size_t)nb * sizeof(muse_block_tq1_0);
}

void muse_dequantize_tq1_0(const void *src, float *dst, int64_t n)
{
	static const uint8_t pow3[6] = { 1, 3, 9, 27, 81, 243 };
	const muse_block_tq1_0 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; ++i) {
		const float d = muse_f16_to_f32(x[i].d);
		/* multiplying by 3^n (mod 256) moves trit n to the top; * 3 >> 8 reads it */
		for (int nn = 0; nn < 5; ++nn)
			for (int m = 0; m < 32; ++m) {
				uint8_t q = (uint8_t)(x[i].qs[m] * pow3[nn]);
				int xi = ((uint16_t)q * 3) >> 8;
				*dst++ = (float)(xi - 1) * d;
			}
		for (int nn = 0; nn < 5; ++nn)
			for (int m = 0; m < 16; ++m) {
				uint8_t q = (uint8_t)(x[i].qs[32 + m] * pow3[nn]);
				int xi = ((uint16_t)q * 3) >> 8;
				*dst++ = (float)(xi - 1) * d;
			}
		for (int nn = 0; nn < 4; ++nn)
			for (int j = 0; j < 4; ++j) {
				uint8_t q = (uint8_t)(x[i].qh[j] * pow3[nn]);
				int xi = ((uint16_t)q * 3) >> 8;
				*dst++ = (float)(xi - 1) * d;
			}
	}
}

size_t muse_quantize_tq2_0_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	(void)importance;
	muse_block_tq2_0 *y = dst;
	const float *x = src;
	int64_t nb = nrows * (n_per_row / MUSE_QK_K);
	for (int64_t i = 0; i < nb; i++) {
		float amax = 0.0f;
		for (int j = 0; j < MUSE_QK_K; j++)
			amax = Q_MAX(amax, fabsf(x[j]));
		const float d = amax;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		/* byte 32h + m holds elems 128h + m + 32n in bits 2n, 2n+1 */
		for (int h = 0; h < 2; ++h, x += 128)
			for (int m = 0; m < 32; ++m) {
				unsigned q = 0;
				for (int nn = 0; nn < 4; ++nn)
					q += ((unsigned)trit(x[m + nn * 32] * id) & 3) << (2 * nn);
				y[i].qs[32 * h + m] = (uint8_t)q;
			}
	}
	return (size_t)nb * sizeof(muse_block_tq2_0);
}

void muse_dequantize_tq2_0(const void *src, float *dst, int64_t n)
{
	const muse_block_tq2_0 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; ++i) {
		const float d = muse_f16_to_f32(x[i].d);
		for (int h = 0; h < 2; ++h)
			for (int l = 0; l < 4; ++l)
				for (int m = 0; m < 32; ++m) {
					int q = (x[i].qs[32 * h + m] >> (l * 2)) & 3;
					*dst++ = (float)(q - 1) * d;
				}
	}
}
