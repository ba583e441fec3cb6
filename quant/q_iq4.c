/* q_iq4.c: IQ4_NL and IQ4_XS (4-bit non-linear levels), quantized and decoded bit for bit as ggml does. */
/*
 * Both types run ggml's quantize_row_iq4_nl_impl with ntry = 7 whether or not
 * importance weights are given (quantize_iq4_nl / quantize_iq4_xs, what
 * ggml_quantize_chunk and llama-quantize call; the row-wise *_ref entry of
 * IQ4_NL uses ntry = -1 but nothing that writes model files goes through it).
 * Per 32-element block: the scale starts at max/-127, then 15 scales
 * (itry - 127)/max are tried, keeping the best weighted least-squares fit.
 * IQ4_XS then quantizes the eight block scales to 6 bits against one fp16
 * super-block scale and re-picks every level with the rounded scale.
 * Weights: imatrix[j] * sqrt(sigma^2 + x_j^2), sigma^2 = 2 * mean square of the
 * (super-)block; without an imatrix x_j^2. Operand order follows ggml exactly.
 */
#include <math.h>
#include <string.h>

#include "quant.h"
#include "quant_tables.h"

#define Q_MIN(a, b) ((a) < (b) ? (a) : (b))
#define Q_MAX(a, b) ((a) > (b) ? (a) : (b))
#define IQ4_NTRY 7

/* Index of the level nearest x (ties to the upper level), by bisection as ggml's best_index_int8. */
static inline int best_index_int8(int n, const int8_t *val, float x)
{
	if (x <= (float)val[0])
		return 0;
	if (x >= (float)val[n - 1])
		return n - 1;
	int ml = 0, mu = n - 1;
	while (mu - ml > 1) {
		int mav = (ml + mu) / 2;
		if (x < (float)val[mav])
			mu = mav;
		else
			ml = mav;
	}
	return x - (float)val[mu - 1] < (float)val[mu] - x ? mu - 1 : mu;
}

/*
 * One IQ4_NL block (super_block_size 32: scale straight to fp16) or one
 * IQ4_XS super-block (256: 6-bit sub-scales). dh, q4, scales_h, scales_l are
 * the output fields (scales_* unused for IQ4_NL); L holds super_block_size
 * levels. qw: this super-block's importance weights or NULL.
 */
static void iq4_impl(int super_block_size, const float *x, uint16_t *dh, uint8_t *q4, uint16_t *scales_h_out,
		     uint8_t *scales_l, const float *qw)
{
	const int block_size = 32;
	const int8_t *values = muse_kvalues_iq4nl;
	float scales[MUSE_QK_K / 32];
	float weight[32];
	uint8_t L[MUSE_QK_K];

	float sigma2 = 0;
	for (int j = 0; j < super_block_size; ++j)
		sigma2 += x[j] * x[j];
	sigma2 *= 2.f / (float)super_block_size;

	float max_scale = 0, amax_scale = 0;
	for (int ib = 0; ib < super_block_size / block_size; ++ib) {
		const float *xb = x + ib * block_size;
		uint8_t *Lb = L + ib * block_size;
		if (qw) {
			const float *qwb = qw + ib * block_size;
			for (int j = 0; j < block_size; ++j)
				weight[j] = qwb[j] * sqrtf(sigma2 + xb[j] * xb[j]);
		} else {
			for (int j = 0; j < block_size; ++j)
				weight[j] = xb[j] * xb[j];
		}
		float amax = 0, max = 0;
		for (int j = 0; j < block_size; ++j) {
			float ax = fabsf(xb[j]);
			if (ax > amax) {
				amax = ax;
				max = xb[j];
			}
		}
		if (amax < MUSE_GROUP_MAX_EPS) {
			/* Lb is left as is: both branches below re-pick every level */
			scales[ib] = 0;
			continue;
		}
		float d = -max / (float)values[0]; /* ntry > 0 */
		float id = 1 / d;
		float sumqx = 0, sumq2 = 0;
		for (int j = 0; j < block_size; ++j) {
			float al = id * xb[j];
			int l = best_index_int8(16, values, al);
			Lb[j] = (uint8_t)l;
			float q = (float)values[l];
			float w = weight[j];
			sumqx += w * q * xb[j];
			sumq2 += w * q * q;
		}
		d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
		float best = d * sumqx;
		for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; ++itry) {
			id = (float)(itry + values[0]) / max;
			sumqx = sumq2 = 0;
			for (int j = 0; j < block_size; ++j) {
				float al = id * xb[j];
				int l = best_index_int8(16, values, al);
				float q = (float)values[l];
				float w = weight[j];
				sumqx += w * q * xb[j];
				sumq2 += w * q * q;
			}
			if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
				d = sumqx / sumq2;
				best = d * sumqx;
			}
		}
		scales[ib] = d;
		float abs_d = fabsf(d);
		if (abs_d > amax_scale) {
			amax_scale = abs_d;
			max_scale = d;
		}
	}

	if (super_block_size / block_size > 1) {
		uint16_t scales_h = 0;
		float d = -max_scale / 32;
		*dh = muse_q_fp16(d);
		float id = d ? 1 / d : 0.f;
		for (int ib = 0; ib < super_block_size / block_size; ++ib) {
			int l = muse_q_nearest_int(id * scales[ib]);
			l = Q_MAX(-32, Q_MIN(31, l));
			float dl = d * (float)l;
			float idl = dl ? 1 / dl : 0.f;
			uint8_t *Lb = L + ib * block_size;
			const float *xb = x + ib * block_size;
			for (int j = 0; j < block_size; ++j)
				Lb[j] = (uint8_t)best_index_int8(16, values, idl * xb[j]);
			l += 32;
			uint8_t l_l = (uint8_t)(l & 0xf);
			uint8_t l_h = (uint8_t)(l >> 4);
			if (ib % 2 == 0)
				scales_l[ib / 2] = l_l;
			else
				scales_l[ib / 2] |= (uint8_t)(l_l << 4);
			scales_h |= (uint16_t)(l_h << 2 * (ib % 8));
		}
		*scales_h_out = scales_h;
	} else {
		*dh = muse_q_fp16(scales[0]);
		float id = scales[0] ? 1 / scales[0] : 0;
		for (int j = 0; j < super_block_size; ++j)
			L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
	}

	for (int i = 0; i < super_block_size / 32; ++i)
		for (int j = 0; j < 16; ++j)
			q4[16 * i + j] = (uint8_t)(L[32 * i + j] | L[32 * i + 16 + j] << 4);
}

size_t muse_quantize_iq4_nl_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nblock = n_per_row / MUSE_QK4_NL;
	muse_block_iq4_nl *y = dst;
	for (int64_t row = 0; row < nrows; ++row, src += n_per_row, y += nblock)
		for (int64_t ib = 0; ib < nblock; ++ib)
			iq4_impl(MUSE_QK4_NL, src + MUSE_QK4_NL * ib, &y[ib].d, y[ib].qs, NULL, NULL,
				 importance ? importance + MUSE_QK4_NL * ib : NULL);
	return (size_t)(nrows * nblock) * sizeof(muse_block_iq4_nl);
}

size_t muse_quantize_iq4_xs_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	int64_t nblock = n_per_row / MUSE_QK_K;
	muse_block_iq4_xs *y = dst;
	for (int64_t row = 0; row < nrows; ++row, src += n_per_row, y += nblock)
		for (int64_t ib = 0; ib < nblock; ++ib)
			iq4_impl(MUSE_QK_K, src + MUSE_QK_K * ib, &y[ib].d, y[ib].qs, &y[ib].scales_h, y[ib].scales_l,
				 importance ? importance + MUSE_QK_K * ib : NULL);
	return (size_t)(nrows * nblock) * sizeof(muse_block_iq4_xs);
}

void muse_dequantize_iq4_nl(const void *src, float *dst, int64_t n)
{
	const muse_block_iq4_nl *x = src;
	for (int64_t i = 0; i < n / MUSE_QK4_NL; i++, dst += MUSE_QK4_NL) {
		const float d = muse_f16_to_f32(x[i].d);
		for (int j = 0; j < 16; ++j) {
			dst[j] = d * (float)muse_kvalues_iq4nl[x[i].qs[j] & 0xf];
			dst[j + 16] = d * (float)muse_kvalues_iq4nl[x[i].qs[j] >> 4];
		}
	}
}

void muse_dequantize_iq4_xs(const void *src, float *dst, int64_t n)
{
	const muse_block_iq4_xs *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		const unsigned scales_h = x[i].scales_h;
		const uint8_t *qs = x[i].qs;
		for (int ib = 0; ib < MUSE_QK_K / 32; ++ib, dst += 32, qs += 16) {
			const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
				       (((scales_h >> 2 * ib) & 3) << 4);
			const float dl = d * (float)(ls - 32);
			for (int j = 0; j < 16; ++j) {
				dst[j] = dl * (float)muse_kvalues_iq4nl[qs[j] & 0xf];
				dst[j + 16] = dl * (float)muse_kvalues_iq4nl[qs[j] >> 4];
			}
		}
	}
}
