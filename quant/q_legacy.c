/* q_legacy.c: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, quantized and decoded bit for bit as ggml does. */
/*
 * Every expression keeps ggml-quants.c's operand order and types (int
 * operands promoted to float where ggml's are, products left to right,
 * no FMA: the Makefile builds with -ffp-contract=off), because a different
 * order can move a value across a rounding boundary and change a byte.
 *
 * Without importance weights ggml runs the round-to-nearest reference
 * (quantize_row_<t>_ref); with them, Q4_0/Q5_0 search the scale with
 * make_qx_quants and Q4_1/Q5_1 the scale and minimum with make_qkx3_quants,
 * weighting each element by imatrix[j] * sqrt(sigma^2 + x_j^2), sigma^2 being
 * the mean square of the whole row. Q8_0 ignores the weights.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant.h"
#include "q_search.h"
#include "quant_tables.h"

/* ggml's MIN/MAX: the operand order decides which side a NaN comes out of. */
#define Q_MIN(a, b) ((a) < (b) ? (a) : (b))
#define Q_MAX(a, b) ((a) > (b) ? (a) : (b))

/* The low byte of a float-to-int cast, as ggml's (int8_t)/(uint8_t) casts give on x86-64. */
static inline int8_t cast_i8(float f)
{
	return (int8_t)(uint8_t)((uint32_t)muse_q_trunc_i32(f) & 0xFF);
}

static inline void put_u32le(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)v;
	out[1] = (uint8_t)(v >> 8);
	out[2] = (uint8_t)(v >> 16);
	out[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get_u32le(const uint8_t in[4])
{
	return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

/* The row's mean square, summed in element order as ggml does. */
static float row_sigma2(const float *x, int64_t n_per_row)
{
	float sum_x2 = 0;
	for (int64_t j = 0; j < n_per_row; ++j)
		sum_x2 += x[j] * x[j];
	return sum_x2 / (float)n_per_row;
}

static void block_weights(int n, float *weight, const float *xb, const float *qw, float sigma2)
{
	for (int j = 0; j < n; ++j)
		weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/*
 * ggml's make_qx_quants with rmse_type 1 and explicit weights (the only way
 * the legacy types call it): symmetric levels -nmax..nmax-1 stored as
 * L = l + nmax; tries 19 scales around -nmax/max and keeps the one that
 * maximizes (sum w x l)^2 / (sum w l^2).
 */
static float make_qx_quants_w(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
	float max = 0;
	float amax = 0;
	for (int i = 0; i < n; ++i) {
		float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < MUSE_GROUP_MAX_EPS) {
		for (int i = 0; i < n; ++i)
			L[i] = 0;
		return 0.f;
	}
	float iscale = (float)-nmax / max;
	float sumlx = 0;
	float suml2 = 0;
	for (int i = 0; i < n; ++i) {
		int l = muse_q_nearest_int(iscale * x[i]);
		l = Q_MAX(-nmax, Q_MIN(nmax - 1, l));
		L[i] = (int8_t)(l + nmax);
		float w = qw[i];
		sumlx += w * x[i] * (float)l;
		suml2 += w * (float)l * (float)l;
	}
	float scale = suml2 ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;
	for (int is = -9; is <= 9; ++is) {
		if (is == 0)
			continue;
		iscale = -((float)nmax + 0.1f * (float)is) / max;
		sumlx = suml2 = 0;
		for (int i = 0; i < n; ++i) {
			int l = muse_q_nearest_int(iscale * x[i]);
			l = Q_MAX(-nmax, Q_MIN(nmax - 1, l));
			float w = qw[i];
			sumlx += w * x[i] * (float)l;
			suml2 += w * (float)l * (float)l;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			for (int i = 0; i < n; ++i) {
				int l = muse_q_nearest_int(iscale * x[i]);
				L[i] = (int8_t)(nmax + Q_MAX(-nmax, Q_MIN(nmax - 1, l)));
			}
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

/*
 * The row loop Q4_0, Q4_1, Q5_0 and Q5_1 share, as ggml's quantize_<t>: the plain
 * reference per row without importance, the weighted search with it.
 */
#define LEGACY_QUANTIZE(name, qk)                                                                            \
	size_t muse_quantize_##name##_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row,     \
					  const float *importance)                                           \
	{                                                                                                    \
		size_t row_size = (size_t)(n_per_row / (qk)) * sizeof(muse_block_##name);                    \
		for (int64_t r = 0; r < nrows; r++) {                                                        \
			muse_block_##name *y = (muse_block_##name *)((uint8_t *)dst + (size_t)r * row_size); \
			if (importance)                                                                      \
				name##_row_impl(src + r * n_per_row, y, n_per_row, importance);              \
			else                                                                                 \
				name##_row_ref(src + r * n_per_row, y, n_per_row);                           \
		}                                                                                            \
		return (size_t)nrows * row_size;                                                             \
	}

/* ---- Q4_0 ---- */

static void q4_0_row_ref(const float *x, muse_block_q4_0 *y, int64_t k)
{
	for (int64_t i = 0; i < k / MUSE_QK4_0; i++, x += MUSE_QK4_0) {
		float amax = 0.0f, max = 0.0f; /* the signed value of largest magnitude, the first on ties */
		for (int j = 0; j < MUSE_QK4_0; j++) {
			if (amax < fabsf(x[j])) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		}
		const float d = max / -8;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		for (int j = 0; j < 16; ++j) {
			/* x/d + 8.5 truncated: round half up; |x/d| <= 8, so only the top value 16 is clipped */
			uint8_t xi0 = (uint8_t)Q_MIN(15, cast_i8(x[j] * id + 8.5f));
			uint8_t xi1 = (uint8_t)Q_MIN(15, cast_i8(x[j + 16] * id + 8.5f));
			y[i].qs[j] = (uint8_t)(xi0 | xi1 << 4);
		}
	}
}

static void q4_0_row_impl(const float *x, muse_block_q4_0 *y, int64_t n_per_row, const float *quant_weights)
{
	float weight[MUSE_QK4_0];
	int8_t L[MUSE_QK4_0];
	float sigma2 = row_sigma2(x, n_per_row);
	for (int64_t ib = 0; ib < n_per_row / MUSE_QK4_0; ++ib) {
		const float *xb = x + MUSE_QK4_0 * ib;
		block_weights(MUSE_QK4_0, weight, xb, quant_weights + MUSE_QK4_0 * ib, sigma2);
		float d = make_qx_quants_w(MUSE_QK4_0, 8, xb, L, weight);
		y[ib].d = muse_q_fp16(d);
		for (int j = 0; j < 16; ++j)
			y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
	}
}

LEGACY_QUANTIZE(q4_0, MUSE_QK4_0)

void muse_dequantize_q4_0(const void *src, float *dst, int64_t n)
{
	const muse_block_q4_0 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK4_0; i++, dst += MUSE_QK4_0) {
		const float d = muse_f16_to_f32(x[i].d);
		for (int j = 0; j < 16; ++j) {
			dst[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
			dst[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
		}
	}
}

/* ---- Q4_1 ---- */

static void q4_1_row_ref(const float *x, muse_block_q4_1 *y, int64_t k)
{
	for (int64_t i = 0; i < k / MUSE_QK4_1; i++, x += MUSE_QK4_1) {
		float min = FLT_MAX, max = -FLT_MAX;
		for (int j = 0; j < MUSE_QK4_1; j++) {
			if (x[j] < min)
				min = x[j];
			if (x[j] > max)
				max = x[j];
		}
		const float d = (max - min) / 15;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		y[i].m = muse_q_fp16(min);
		for (int j = 0; j < 16; ++j) {
			uint8_t xi0 = (uint8_t)Q_MIN(15, cast_i8((x[j] - min) * id + 0.5f));
			uint8_t xi1 = (uint8_t)Q_MIN(15, cast_i8((x[j + 16] - min) * id + 0.5f));
			y[i].qs[j] = (uint8_t)(xi0 | xi1 << 4);
		}
	}
}

static void q4_1_row_impl(const float *x, muse_block_q4_1 *y, int64_t n_per_row, const float *quant_weights)
{
	float weight[MUSE_QK4_1];
	uint8_t L[MUSE_QK4_1], Laux[MUSE_QK4_1];
	float sigma2 = row_sigma2(x, n_per_row);
	for (int64_t ib = 0; ib < n_per_row / MUSE_QK4_1; ++ib) {
		const float *xb = x + MUSE_QK4_1 * ib;
		block_weights(MUSE_QK4_1, weight, xb, quant_weights + MUSE_QK4_1 * ib, sigma2);
		float min;
		float d = muse_q_fit_min(MUSE_QK4_1, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
		y[ib].d = muse_q_fp16(d);
		y[ib].m = muse_q_fp16(-min);
		for (int j = 0; j < 16; ++j)
			y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
	}
}

LEGACY_QUANTIZE(q4_1, MUSE_QK4_1)

void muse_dequantize_q4_1(const void *src, float *dst, int64_t n)
{
	const muse_block_q4_1 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK4_1; i++, dst += MUSE_QK4_1) {
		const float d = muse_f16_to_f32(x[i].d);
		const float m = muse_f16_to_f32(x[i].m);
		for (int j = 0; j < 16; ++j) {
			dst[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
			dst[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
		}
	}
}

/* ---- Q5_0 ---- */

/* Packs 32 five-bit values: low nibbles as Q4_0, fifth bit of elem j into bit j of qh. */
static void pack_q5(uint8_t qs[16], uint8_t qh_out[4], const uint8_t *xi)
{
	uint32_t qh = 0;
	for (int j = 0; j < 16; ++j) {
		qs[j] = (uint8_t)((xi[j] & 0x0F) | (xi[j + 16] & 0x0F) << 4);
		qh |= ((xi[j] & 0x10u) >> 4) << j;
		qh |= ((xi[j + 16] & 0x10u) >> 4) << (j + 16);
	}
	put_u32le(qh_out, qh);
}

static void q5_0_row_ref(const float *x, muse_block_q5_0 *y, int64_t k)
{
	uint8_t xi[MUSE_QK5_0];
	for (int64_t i = 0; i < k / MUSE_QK5_0; i++, x += MUSE_QK5_0) {
		float amax = 0.0f, max = 0.0f;
		for (int j = 0; j < MUSE_QK5_0; j++) {
			if (amax < fabsf(x[j])) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		}
		const float d = max / -16;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		for (int j = 0; j < MUSE_QK5_0; ++j)
			xi[j] = (uint8_t)Q_MIN(31, cast_i8(x[j] * id + 16.5f));
		pack_q5(y[i].qs, y[i].qh, xi);
	}
}

static void q5_0_row_impl(const float *x, muse_block_q5_0 *y, int64_t n_per_row, const float *quant_weights)
{
	float weight[MUSE_QK5_0];
	int8_t L[MUSE_QK5_0];
	uint8_t xi[MUSE_QK5_0];
	float sigma2 = row_sigma2(x, n_per_row);
	for (int64_t ib = 0; ib < n_per_row / MUSE_QK5_0; ++ib) {
		const float *xb = x + MUSE_QK5_0 * ib;
		block_weights(MUSE_QK5_0, weight, xb, quant_weights + MUSE_QK5_0 * ib, sigma2);
		float d = make_qx_quants_w(MUSE_QK5_0, 16, xb, L, weight);
		y[ib].d = muse_q_fp16(d);
		for (int j = 0; j < MUSE_QK5_0; ++j)
			xi[j] = (uint8_t)L[j];
		pack_q5(y[ib].qs, y[ib].qh, xi);
	}
}

LEGACY_QUANTIZE(q5_0, MUSE_QK5_0)

void muse_dequantize_q5_0(const void *src, float *dst, int64_t n)
{
	const muse_block_q5_0 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK5_0; i++, dst += MUSE_QK5_0) {
		const float d = muse_f16_to_f32(x[i].d);
		const uint32_t qh = get_u32le(x[i].qh);
		for (int j = 0; j < 16; ++j) {
			int x0 = (int)((x[i].qs[j] & 0x0F) | ((qh >> j) << 4 & 0x10)) - 16;
			int x1 = (int)((x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
			dst[j] = (float)x0 * d;
			dst[j + 16] = (float)x1 * d;
		}
	}
}

/* ---- Q5_1 ---- */

static void q5_1_row_ref(const float *x, muse_block_q5_1 *y, int64_t k)
{
	uint8_t xi[MUSE_QK5_1];
	for (int64_t i = 0; i < k / MUSE_QK5_1; i++, x += MUSE_QK5_1) {
		float min = FLT_MAX, max = -FLT_MAX;
		for (int j = 0; j < MUSE_QK5_1; j++) {
			if (x[j] < min)
				min = x[j];
			if (x[j] > max)
				max = x[j];
		}
		const float d = (max - min) / 31;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		y[i].m = muse_q_fp16(min);
		/* ggml has no clamp to 31 here: (x - min)/d + 0.5 stays below 32 for finite scales */
		for (int j = 0; j < MUSE_QK5_1; ++j)
			xi[j] = (uint8_t)cast_i8((x[j] - min) * id + 0.5f);
		pack_q5(y[i].qs, y[i].qh, xi);
	}
}

static void q5_1_row_impl(const float *x, muse_block_q5_1 *y, int64_t n_per_row, const float *quant_weights)
{
	float weight[MUSE_QK5_1];
	uint8_t L[MUSE_QK5_1], Laux[MUSE_QK5_1];
	float sigma2 = row_sigma2(x, n_per_row);
	for (int64_t ib = 0; ib < n_per_row / MUSE_QK5_1; ++ib) {
		const float *xb = x + MUSE_QK5_1 * ib;
		block_weights(MUSE_QK5_1, weight, xb, quant_weights + MUSE_QK5_1 * ib, sigma2);
		float min;
		float d = muse_q_fit_min(MUSE_QK5_1, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
		y[ib].d = muse_q_fp16(d);
		y[ib].m = muse_q_fp16(-min);
		pack_q5(y[ib].qs, y[ib].qh, L);
	}
}

LEGACY_QUANTIZE(q5_1, MUSE_QK5_1)

void muse_dequantize_q5_1(const void *src, float *dst, int64_t n)
{
	const muse_block_q5_1 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK5_1; i++, dst += MUSE_QK5_1) {
		const float d = muse_f16_to_f32(x[i].d);
		const float m = muse_f16_to_f32(x[i].m);
		const uint32_t qh = get_u32le(x[i].qh);
		for (int j = 0; j < 16; ++j) {
			int x0 = (int)((x[i].qs[j] & 0x0F) | ((qh >> j) << 4 & 0x10));
			int x1 = (int)((x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
			dst[j] = (float)x0 * d + m;
			dst[j + 16] = (float)x1 * d + m;
		}
	}
}

/* ---- Q8_0 ---- */

size_t muse_quantize_q8_0_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	(void)importance; /* ggml's Q8_0 has no weighted variant */
	muse_block_q8_0 *y = dst;
	const float *x = src;
	int64_t nb = nrows * (n_per_row / MUSE_QK8_0);
	for (int64_t i = 0; i < nb; i++, x += MUSE_QK8_0) {
		float amax = 0.0f;
		for (int j = 0; j < MUSE_QK8_0; j++)
			amax = Q_MAX(amax, fabsf(x[j]));
		const float d = amax / 127;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = muse_q_fp16(d);
		for (int j = 0; j < MUSE_QK8_0; ++j)
			y[i].qs[j] = cast_i8(roundf(x[j] * id)); /* half away from zero */
	}
	return (size_t)nb * sizeof(muse_block_q8_0);
}

void muse_dequantize_q8_0(const void *src, float *dst, int64_t n)
{
	const muse_block_q8_0 *x = src;
	for (int64_t i = 0; i < n / MUSE_QK8_0; i++, dst += MUSE_QK8_0) {
		const float d = muse_f16_to_f32(x[i].d);
		for (int j = 0; j < MUSE_QK8_0; ++j)
			dst[j] = (float)x[i].qs[j] * d;
	}
}
