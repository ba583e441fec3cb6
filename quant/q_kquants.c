/* q_kquants.c: ggml's k-quants Q2_K..Q6_K: quantizers and decoders that reproduce ggml's scalar code bit for bit. */
/*
 * What "bit for bit" rests on (FORMATS.md §2a.7-2a.8):
 *  - Every float expression is evaluated in ggml's order, one IEEE single operation at a time
 *    (the Makefile's -ffp-contract=off forbids FMA contraction, and nothing here is reassociated).
 *    Where ggml mixes int and float (w*l*l with int l) the same promotions happen here.
 *  - Integer results keep ggml's narrowing: a quant stored into a uint8_t/int8_t before it is
 *    clamped wraps exactly as ggml's does, so even degenerate inputs (Inf, NaN intermediates
 *    from 1e30 magnitudes) give ggml's bytes.
 *  - Without importance weights a row is quantize_row_q<n>_K_ref; with them, quantize_row_q<n>_K_impl
 *    with the weights of the row's columns (the imatrix column for column, as ggml_quantize_chunk).
 *  - fp16 is round-to-nearest-even (muse_f32_to_f16), except NaN, which ggml turns into
 *    sign | 0x7E00 without payload.
 * Block structs (lib/block_layout.h) are the on-disk layouts; the host is little-endian, as everywhere in muse.
 */
#include "quant.h"
#include "q_search.h"
#include "quant_tables.h"

#include <math.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "q_kquants.c assumes a little-endian host (the block structs are the on-disk layout)"
#endif

/* ggml's MIN/MAX, kept as macros so NaN comparisons pick the same operand. */
#define KQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KQ_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- helpers shared by the five types ---- */

/*
 * Symmetric fit of n values to signed levels [-nmax, nmax-1] minimizing the weighted squared error
 * (ggml's make_qx_quants with rmse_type 1): weights qw, or x^2 when qw is NULL. Tries the plain
 * scale and 18 nudged ones. L gets level + nmax (0 for an all-zero group); returns the scale.
 */
static float kq_fit_signed(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
	float max = 0, amax = 0;
	for (int i = 0; i < n; i++) {
		float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < MUSE_GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	float iscale = -nmax / max;
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = muse_q_nearest_int(iscale * x[i]);
		l = KQ_MAX(-nmax, KQ_MIN(nmax - 1, l));
		L[i] = (int8_t)(l + nmax);
		float w = qw ? qw[i] : x[i] * x[i];
		sumlx += w * x[i] * l;
		suml2 += w * l * l;
	}
	/* a NaN suml2 is "true" here, as in ggml */
	float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		iscale = -(nmax + 0.1f * is) / max;
		sumlx = suml2 = 0;
		for (int i = 0; i < n; i++) {
			int l = muse_q_nearest_int(iscale * x[i]);
			l = KQ_MAX(-nmax, KQ_MIN(nmax - 1, l));
			float w = qw ? qw[i] : x[i] * x[i];
			sumlx += w * x[i] * l;
			suml2 += w * l * l;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			for (int i = 0; i < n; i++) {
				int l = muse_q_nearest_int(iscale * x[i]);
				L[i] = (int8_t)(nmax + KQ_MAX(-nmax, KQ_MIN(nmax - 1, l)));
			}
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

/*
 * Q3_K's scale search (ggml's make_q3_quants with do_rmse): start from the max-based levels, then up
 * to five coordinate-descent sweeps moving single levels while the x^2-weighted fit improves.
 */
static float kq_fit_q3(int n, int nmax, const float *x, int8_t *L)
{
	float max = 0, amax = 0;
	for (int i = 0; i < n; i++) {
		float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < MUSE_GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	float iscale = -nmax / max;
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = muse_q_nearest_int(iscale * x[i]);
		l = KQ_MAX(-nmax, KQ_MIN(nmax - 1, l));
		L[i] = (int8_t)l;
		float w = x[i] * x[i];
		sumlx += w * x[i] * l;
		suml2 += w * l * l;
	}
	for (int itry = 0; itry < 5; itry++) {
		int changed = 0;
		for (int i = 0; i < n; i++) {
			float w = x[i] * x[i];
			float slx = sumlx - w * x[i] * L[i];
			if (!(slx > 0))
				continue;
			float sl2 = suml2 - w * L[i] * L[i];
			int nl = muse_q_nearest_int(x[i] * sl2 / slx);
			nl = KQ_MAX(-nmax, KQ_MIN(nmax - 1, nl));
			if (nl == L[i])
				continue;
			slx += w * x[i] * nl;
			sl2 += w * nl * nl;
			if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
				L[i] = (int8_t)nl;
				sumlx = slx;
				suml2 = sl2;
				changed++;
			}
		}
		if (!changed)
			break;
	}
	for (int i = 0; i < n; i++)
		L[i] = (int8_t)(L[i] + nmax);
	return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Packs 2-bit levels: byte 32h + l holds elements 128h + l, +32, +64, +96 (Q2_K and Q3_K). */
static void kq_pack2(const uint8_t *L, uint8_t *qs)
{
	for (int j = 0; j < MUSE_QK_K; j += 128)
		for (int l = 0; l < 32; l++)
			qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
						  (L[j + l + 96] << 6));
}

/* Q4_K/Q5_K: six-bit scale sc and min m of sub-block j (FORMATS.md §2a.7). */
static inline void kq_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

static void kq_put_scale_min(int j, uint8_t ls, uint8_t lm, uint8_t *q)
{
	if (j < 4) {
		q[j] = ls;
		q[j + 4] = lm;
	} else {
		q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
		q[j - 4] |= (uint8_t)((ls >> 4) << 6);
		q[j] |= (uint8_t)((lm >> 4) << 6);
	}
}

/* Q3_K: packs sixteen 6-bit biased scales into 12 bytes; q must start zeroed. */
static void kq_put_scale_q3(int j, int l, uint8_t *q)
{
	if (j < 8)
		q[j] = (uint8_t)(l & 0xF);
	else
		q[j - 8] |= (uint8_t)((l & 0xF) << 4);
	l >>= 4;
	q[j % 4 + 8] |= (uint8_t)((unsigned)l << (2 * (j / 4)));
}

/* Q3_K: signed scale of sub-block j (stored value - 32). */
static inline int kq_scale_q3(int j, const uint8_t *q)
{
	int sc = j < 8 ? q[j] & 0xF : q[j - 8] >> 4;
	return (sc | (((q[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* Sum of squares of one super-block, in ggml's order. */
static float kq_sumsq(const float *x)
{
	float s = 0;
	for (int j = 0; j < MUSE_QK_K; j++)
		s += x[j] * x[j];
	return s;
}

/* ---- Q2_K ---- */

/* Second pass shared by both Q2_K paths: requantize with the stored (rounded) scales and mins. */
static void q2_finish(const float *x, muse_block_q2_k *y, uint8_t *L)
{
	float dall = muse_f16_to_f32(y->d), mall = muse_f16_to_f32(y->dmin);
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		const float d = dall * (y->scales[j] & 0xF);
		if (!d)
			continue;
		const float dm = mall * (y->scales[j] >> 4);
		for (int ii = 0; ii < 16; ii++) {
			int l = muse_q_nearest_int((x[16 * j + ii] + dm) / d);
			L[16 * j + ii] = (uint8_t)KQ_MAX(0, KQ_MIN(3, l));
		}
	}
	kq_pack2(L, y->qs);
}

static void q2_block_ref(const float *x, muse_block_q2_k *y)
{
	uint8_t L[MUSE_QK_K], Laux[16];
	float weights[16], mins[MUSE_QK_K / 16], scales[MUSE_QK_K / 16];
	float max_scale = 0, max_min = 0; /* scales are positive: the min is taken out */
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		for (int l = 0; l < 16; l++)
			weights[l] = fabsf(x[16 * j + l]);
		scales[j] = muse_q_fit_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	if (max_scale > 0) {
		float iscale = 15.f / max_scale;
		for (int j = 0; j < MUSE_QK_K / 16; j++)
			y->scales[j] = (uint8_t)muse_q_nearest_int(iscale * scales[j]);
		y->d = muse_q_fp16(max_scale / 15.f);
	} else {
		memset(y->scales, 0, sizeof y->scales);
		y->d = muse_q_fp16(0.f);
	}
	if (max_min > 0) {
		float iscale = 15.f / max_min;
		for (int j = 0; j < MUSE_QK_K / 16; j++)
			y->scales[j] |= (uint8_t)((unsigned)muse_q_nearest_int(iscale * mins[j]) << 4);
		y->dmin = muse_q_fp16(max_min / 15.f);
	} else {
		y->dmin = muse_q_fp16(0.f);
	}
	q2_finish(x, y, L);
}

static void q2_block_imp(const float *x, muse_block_q2_k *y, const float *qw_block)
{
	uint8_t L[MUSE_QK_K], Laux[16], Ls[MUSE_QK_K / 16], Lm[MUSE_QK_K / 16];
	float mins[MUSE_QK_K / 16], scales[MUSE_QK_K / 16], sw[MUSE_QK_K / 16], weight[16];
	float sigma2 = kq_sumsq(x) / MUSE_QK_K; /* Q2_K alone uses mean x^2, not twice it */
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		const float *qw = qw_block + 16 * j;
		for (int l = 0; l < 16; l++)
			weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
		sw[j] = 0;
		for (int l = 0; l < 16; l++)
			sw[j] += weight[l];
		scales[j] = muse_q_fit_min(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
	}
	float dm = muse_q_fit_pos(MUSE_QK_K / 16, 15, scales, Ls, sw);
	float mm = muse_q_fit_pos(MUSE_QK_K / 16, 15, mins, Lm, sw);
	y->d = muse_q_fp16(dm);
	y->dmin = muse_q_fp16(mm);
	for (int j = 0; j < MUSE_QK_K / 16; j++)
		y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
	q2_finish(x, y, L);
}

size_t muse_quantize_q2_k_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nb = n_per_row / MUSE_QK_K;
	muse_block_q2_k *y = dst;
	for (int64_t r = 0; r < nrows; r++)
		for (int64_t i = 0; i < nb; i++, src += MUSE_QK_K, y++) {
			if (importance)
				q2_block_imp(src, y, importance + MUSE_QK_K * i);
			else
				q2_block_ref(src, y);
		}
	return (size_t)(nrows * nb) * sizeof(muse_block_q2_k);
}

void muse_dequantize_q2_k(const void *src, float *y, int64_t n)
{
	const muse_block_q2_k *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d), min = muse_f16_to_f32(x[i].dmin);
		const uint8_t *q = x[i].qs;
		int is = 0;
		for (int h = 0; h < MUSE_QK_K; h += 128, q += 32)
			for (int shift = 0; shift < 8; shift += 2)
				for (int half = 0; half < 32; half += 16) {
					uint8_t sc = x[i].scales[is++];
					float dl = d * (sc & 0xF), ml = min * (sc >> 4);
					for (int l = 0; l < 16; l++)
						*y++ = dl * ((q[half + l] >> shift) & 3) - ml;
				}
	}
}

/* ---- Q3_K ---- */

/* Shared tail: requantize with the stored scales, split off the high bits, pack. */
static void q3_finish(const float *x, muse_block_q3_k *y, int8_t *L)
{
	float dall = muse_f16_to_f32(y->d);
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		float d = dall * kq_scale_q3(j, y->scales);
		if (!d)
			continue;
		for (int ii = 0; ii < 16; ii++) {
			int l = muse_q_nearest_int(x[16 * j + ii] / d);
			L[16 * j + ii] = (int8_t)(KQ_MAX(-4, KQ_MIN(3, l)) + 4);
		}
	}
	/* element e's high bit goes to bit e/32 of hmask[e % 32] */
	memset(y->hmask, 0, sizeof y->hmask);
	for (int j = 0; j < MUSE_QK_K; j++)
		if (L[j] > 3) {
			y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
			L[j] -= 4;
		}
	kq_pack2((const uint8_t *)L, y->qs);
}

static void q3_block_ref(const float *x, muse_block_q3_k *y)
{
	int8_t L[MUSE_QK_K];
	float scales[MUSE_QK_K / 16], max_scale = 0, amax = 0;
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		scales[j] = kq_fit_q3(16, 4, x + 16 * j, L + 16 * j);
		float a = fabsf(scales[j]);
		if (a > amax) {
			amax = a;
			max_scale = scales[j];
		}
	}
	memset(y->scales, 0, sizeof y->scales);
	if (max_scale != 0) {
		float iscale = -32.f / max_scale;
		for (int j = 0; j < MUSE_QK_K / 16; j++) {
			/* ggml narrows to int8_t before clamping */
			int8_t l = (int8_t)muse_q_nearest_int(iscale * scales[j]);
			kq_put_scale_q3(j, KQ_MAX(-32, KQ_MIN(31, l)) + 32, y->scales);
		}
		y->d = muse_q_fp16(1 / iscale);
	} else {
		y->d = muse_q_fp16(0.f);
	}
	q3_finish(x, y, L);
}

static void q3_block_imp(const float *x, muse_block_q3_k *y, const float *qw_block)
{
	int8_t L[MUSE_QK_K], Ls[MUSE_QK_K / 16];
	float scales[MUSE_QK_K / 16], weight[16], sw[MUSE_QK_K / 16];
	float sigma2 = 2 * kq_sumsq(x) / MUSE_QK_K;
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		const float *qw = qw_block + 16 * j;
		for (int l = 0; l < 16; l++)
			weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
		float sumw = 0;
		for (int l = 0; l < 16; l++)
			sumw += weight[l];
		sw[j] = sumw;
		scales[j] = kq_fit_signed(16, 4, x + 16 * j, L + 16 * j, weight);
	}
	memset(y->scales, 0, sizeof y->scales);
	float d_block = kq_fit_signed(MUSE_QK_K / 16, 32, scales, Ls, sw);
	for (int j = 0; j < MUSE_QK_K / 16; j++)
		kq_put_scale_q3(j, Ls[j], y->scales);
	y->d = muse_q_fp16(d_block);
	q3_finish(x, y, L);
}

size_t muse_quantize_q3_k_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nb = n_per_row / MUSE_QK_K;
	muse_block_q3_k *y = dst;
	for (int64_t r = 0; r < nrows; r++)
		for (int64_t i = 0; i < nb; i++, src += MUSE_QK_K, y++) {
			if (importance)
				q3_block_imp(src, y, importance + MUSE_QK_K * i);
			else
				q3_block_ref(src, y);
		}
	return (size_t)(nrows * nb) * sizeof(muse_block_q3_k);
}

void muse_dequantize_q3_k(const void *src, float *y, int64_t n)
{
	const muse_block_q3_k *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d_all = muse_f16_to_f32(x[i].d);
		const uint8_t *q = x[i].qs, *hm = x[i].hmask;
		uint8_t m = 1;
		int is = 0;
		for (int h = 0; h < MUSE_QK_K; h += 128, q += 32)
			for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1))
				for (int half = 0; half < 32; half += 16) {
					float dl = d_all * kq_scale_q3(is++, x[i].scales);
					for (int l = 0; l < 16; l++)
						*y++ = dl * (((q[half + l] >> shift) & 3) - ((hm[half + l] & m) ? 0 : 4));
				}
	}
}

/* ---- Q4_K and Q5_K: same scales, 4 or 5 bits ---- */

/* Requantizes with the stored 6-bit scales/mins into L[0..255] in [0, nmax]. */
static void q45_requant(const float *x, uint16_t d16, uint16_t dmin16, const uint8_t *scales, int nmax, uint8_t *L)
{
	for (int j = 0; j < MUSE_QK_K / 32; j++) {
		uint8_t sc, m;
		kq_scale_min(j, scales, &sc, &m);
		const float d = muse_f16_to_f32(d16) * sc;
		if (!d)
			continue;
		const float dm = muse_f16_to_f32(dmin16) * m;
		for (int ii = 0; ii < 32; ii++) {
			int l = muse_q_nearest_int((x[32 * j + ii] + dm) / d);
			L[32 * j + ii] = (uint8_t)KQ_MAX(0, KQ_MIN(nmax, l));
		}
	}
}

/* Without importance: scales fitted with weights sqrt(mean x^2 of the sub-block) + |x|. */
static void q45_scales_ref(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
			   uint8_t *scales_out, uint16_t *d, uint16_t *dmin)
{
	uint8_t Laux[32];
	float weights[32], mins[MUSE_QK_K / 32], scales[MUSE_QK_K / 32];
	float max_scale = 0, max_min = 0;
	for (int j = 0; j < MUSE_QK_K / 32; j++) {
		float sum_x2 = 0;
		for (int l = 0; l < 32; l++)
			sum_x2 += x[32 * j + l] * x[32 * j + l];
		float av_x = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; l++)
			weights[l] = av_x + fabsf(x[32 * j + l]);
		scales[j] = muse_q_fit_min(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep,
				       false);
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
	float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
	for (int j = 0; j < MUSE_QK_K / 32; j++) {
		/* ggml narrows to uint8_t before the clamp to 63 */
		uint8_t ls = (uint8_t)muse_q_nearest_int(inv_scale * scales[j]);
		uint8_t lm = (uint8_t)muse_q_nearest_int(inv_min * mins[j]);
		kq_put_scale_min(j, KQ_MIN(63, ls), KQ_MIN(63, lm), scales_out);
	}
	*d = muse_q_fp16(max_scale / 63.f);
	*dmin = muse_q_fp16(max_min / 63.f);
}

/*
 * With importance: weights imp * sqrt(2 mean x^2 + x^2), scales and mins quantized by muse_q_fit_pos.
 * clamp63: Q5_K clamps the 6-bit levels to 63, Q4_K stores them as they come (they only exceed 63
 * for degenerate negative scales, where the two differ in ggml too).
 */
static void q45_scales_imp(const float *x, const float *qw_block, int nmax, bool clamp63, uint8_t *L,
			   uint8_t *scales_out, uint16_t *d, uint16_t *dmin)
{
	uint8_t Laux[32], Ls[MUSE_QK_K / 32], Lm[MUSE_QK_K / 32];
	float weights[32], sw[MUSE_QK_K / 32], mins[MUSE_QK_K / 32], scales[MUSE_QK_K / 32];
	float sigma2 = 2 * kq_sumsq(x) / MUSE_QK_K;
	for (int j = 0; j < MUSE_QK_K / 32; j++) {
		const float *qw = qw_block + 32 * j;
		for (int l = 0; l < 32; l++)
			weights[l] = qw[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
		float sumw = 0;
		for (int l = 0; l < 32; l++)
			sumw += weights[l];
		sw[j] = sumw;
		scales[j] = muse_q_fit_min(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36,
				       false);
	}
	float d_block = muse_q_fit_pos(MUSE_QK_K / 32, 63, scales, Ls, sw);
	float m_block = muse_q_fit_pos(MUSE_QK_K / 32, 63, mins, Lm, sw);
	for (int j = 0; j < MUSE_QK_K / 32; j++) {
		uint8_t ls = Ls[j], lm = Lm[j];
		if (clamp63) {
			ls = KQ_MIN(63, ls);
			lm = KQ_MIN(63, lm);
		}
		kq_put_scale_min(j, ls, lm, scales_out);
	}
	*d = muse_q_fp16(d_block);
	*dmin = muse_q_fp16(m_block);
}

size_t muse_quantize_q4_k_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nb = n_per_row / MUSE_QK_K;
	muse_block_q4_k *y = dst;
	uint8_t L[MUSE_QK_K];
	for (int64_t r = 0; r < nrows; r++)
		for (int64_t i = 0; i < nb; i++, src += MUSE_QK_K, y++) {
			if (importance)
				q45_scales_imp(src, importance + MUSE_QK_K * i, 15, false, L, y->scales, &y->d, &y->dmin);
			else
				q45_scales_ref(src, 15, -1.f, 0.1f, 20, L, y->scales, &y->d, &y->dmin);
			q45_requant(src, y->d, y->dmin, y->scales, 15, L);
			for (int j = 0; j < MUSE_QK_K; j += 64)
				for (int l = 0; l < 32; l++)
					y->qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
		}
	return (size_t)(nrows * nb) * sizeof(muse_block_q4_k);
}

void muse_dequantize_q4_k(const void *src, float *y, int64_t n)
{
	const muse_block_q4_k *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const uint8_t *q = x[i].qs;
		const float d = muse_f16_to_f32(x[i].d), min = muse_f16_to_f32(x[i].dmin);
		for (int is = 0; is < MUSE_QK_K / 32; is += 2, q += 32) {
			uint8_t sc, m;
			kq_scale_min(is, x[i].scales, &sc, &m);
			const float d1 = d * sc, m1 = min * m;
			kq_scale_min(is + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc, m2 = min * m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (q[l] & 0xF) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (q[l] >> 4) - m2;
		}
	}
}

size_t muse_quantize_q5_k_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nb = n_per_row / MUSE_QK_K;
	muse_block_q5_k *y = dst;
	uint8_t L[MUSE_QK_K];
	for (int64_t r = 0; r < nrows; r++)
		for (int64_t i = 0; i < nb; i++, src += MUSE_QK_K, y++) {
			if (importance)
				q45_scales_imp(src, importance + MUSE_QK_K * i, 31, true, L, y->scales, &y->d, &y->dmin);
			else
				q45_scales_ref(src, 31, -0.5f, 0.1f, 15, L, y->scales, &y->d, &y->dmin);
			q45_requant(src, y->d, y->dmin, y->scales, 31, L);
			/* chunk c of 64: low nibbles as Q4_K, 5th bits at bit 2c (first 32) and 2c+1 of qh[l] */
			memset(y->qh, 0, sizeof y->qh);
			for (int c = 0; c < 4; c++)
				for (int l = 0; l < 32; l++) {
					int l1 = L[64 * c + l], l2 = L[64 * c + l + 32];
					if (l1 > 15) {
						l1 -= 16;
						y->qh[l] |= (uint8_t)(1u << (2 * c));
					}
					if (l2 > 15) {
						l2 -= 16;
						y->qh[l] |= (uint8_t)(2u << (2 * c));
					}
					y->qs[32 * c + l] = (uint8_t)(l1 | (l2 << 4));
				}
		}
	return (size_t)(nrows * nb) * sizeof(muse_block_q5_k);
}

void muse_dequantize_q5_k(const void *src, float *y, int64_t n)
{
	const muse_block_q5_k *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const uint8_t *ql = x[i].qs, *qh = x[i].qh;
		const float d = muse_f16_to_f32(x[i].d), min = muse_f16_to_f32(x[i].dmin);
		uint8_t u1 = 1, u2 = 2;
		for (int is = 0; is < MUSE_QK_K / 32; is += 2, ql += 32, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
			uint8_t sc, m;
			kq_scale_min(is, x[i].scales, &sc, &m);
			const float d1 = d * sc, m1 = min * m;
			kq_scale_min(is + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc, m2 = min * m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
		}
	}
}

/* ---- Q6_K ---- */

/* qw_block: NULL (x^2 weights, the _ref path) or the block's importance weights, used as they are. */
static void q6_block(const float *x, muse_block_q6_k *y, const float *qw_block)
{
	int8_t L[MUSE_QK_K];
	float scales[MUSE_QK_K / 16], max_scale = 0, max_abs = 0;
	for (int ib = 0; ib < MUSE_QK_K / 16; ib++) {
		scales[ib] = kq_fit_signed(16, 32, x + 16 * ib, L + 16 * ib, qw_block ? qw_block + 16 * ib : NULL);
		float a = fabsf(scales[ib]);
		if (a > max_abs) {
			max_abs = a;
			max_scale = scales[ib];
		}
	}
	if (max_abs < MUSE_GROUP_MAX_EPS) {
		memset(y, 0, sizeof *y);
		y->d = muse_q_fp16(0.f);
		return;
	}
	float iscale = -128.f / max_scale;
	y->d = muse_q_fp16(1 / iscale);
	for (int ib = 0; ib < MUSE_QK_K / 16; ib++)
		y->scales[ib] = (int8_t)KQ_MIN(127, muse_q_nearest_int(iscale * scales[ib]));
	const float dall = muse_f16_to_f32(y->d);
	for (int j = 0; j < MUSE_QK_K / 16; j++) {
		float d = dall * y->scales[j];
		if (!d)
			continue;
		for (int ii = 0; ii < 16; ii++) {
			int l = muse_q_nearest_int(x[16 * j + ii] / d);
			L[16 * j + ii] = (int8_t)(KQ_MAX(-32, KQ_MIN(31, l)) + 32);
		}
	}
	/* half h: ql[64h + l] = elems l | l+64 (nibbles), ql[64h + 32 + l] = l+32 | l+96, qh[32h + l] = top bits */
	uint8_t *ql = y->ql, *qh = y->qh;
	const uint8_t *U = (const uint8_t *)L;
	for (int j = 0; j < MUSE_QK_K; j += 128, ql += 64, qh += 32)
		for (int l = 0; l < 32; l++) {
			ql[l] = (uint8_t)((U[j + l] & 0xF) | ((U[j + l + 64] & 0xF) << 4));
			ql[l + 32] = (uint8_t)((U[j + l + 32] & 0xF) | ((U[j + l + 96] & 0xF) << 4));
			qh[l] = (uint8_t)((U[j + l] >> 4) | ((U[j + l + 32] >> 4) << 2) | ((U[j + l + 64] >> 4) << 4) |
					  ((U[j + l + 96] >> 4) << 6));
		}
}

size_t muse_quantize_q6_k_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nb = n_per_row / MUSE_QK_K;
	muse_block_q6_k *y = dst;
	for (int64_t r = 0; r < nrows; r++)
		for (int64_t i = 0; i < nb; i++, src += MUSE_QK_K, y++)
			q6_block(src, y, importance ? importance + MUSE_QK_K * i : NULL);
	return (size_t)(nrows * nb) * sizeof(muse_block_q6_k);
}

void muse_dequantize_q6_k(const void *src, float *y, int64_t n)
{
	const muse_block_q6_k *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		const uint8_t *ql = x[i].ql, *qh = x[i].qh;
		const int8_t *sc = x[i].scales;
		for (int h = 0; h < MUSE_QK_K; h += 128, y += 128, ql += 64, qh += 32, sc += 8)
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l] = d * sc[is] * q1;
				y[l + 32] = d * sc[is + 2] * q2;
				y[l + 64] = d * sc[is + 4] * q3;
				y[l + 96] = d * sc[is + 6] * q4;
			}
	}
}
