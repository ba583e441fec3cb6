/* ggml_act.c: llama.cpp CPU's activation rounding (vec_dot_type from_float, then dequantized) for eval's default arithmetic. */
#include <math.h>
#include <string.h>

#include "ggml_act.h"
#include "quant_tables.h"

muse_dtype muse_ggml_act_type(muse_dtype w)
{
	switch (w) {
	case MUSE_DT_F16:
	case MUSE_DT_BF16:
		return w;
	case MUSE_DT_Q4_0:
	case MUSE_DT_Q5_0:
	case MUSE_DT_Q8_0:
	case MUSE_DT_IQ4_NL:
	case MUSE_DT_MXFP4:
	case MUSE_DT_NVFP4:
	case MUSE_DT_Q1_0:
		return MUSE_DT_Q8_0;
	case MUSE_DT_Q4_1:
	case MUSE_DT_Q5_1:
		return MUSE_DT_Q8_1;
	case MUSE_DT_Q2_K:
	case MUSE_DT_Q3_K:
	case MUSE_DT_Q4_K:
	case MUSE_DT_Q5_K:
	case MUSE_DT_Q6_K:
	case MUSE_DT_IQ2_XXS:
	case MUSE_DT_IQ2_XS:
	case MUSE_DT_IQ2_S:
	case MUSE_DT_IQ3_XXS:
	case MUSE_DT_IQ3_S:
	case MUSE_DT_IQ1_S:
	case MUSE_DT_IQ1_M:
	case MUSE_DT_IQ4_XS:
	case MUSE_DT_TQ1_0:
	case MUSE_DT_TQ2_0:
		return MUSE_DT_Q8_K;
	default:
		return MUSE_DT_F32;
	}
}

/*
 * ggml's nearest_int without the integer: adding 1.5 * 2^23 rounds |v| <=
 * 2^22 to an integer, ties to even, as _mm256_round_ps and nearest_int do;
 * kept in floats so the loops below vectorize.
 */
static inline float round_even(float v)
{
	return (v + 12582912.f) - 12582912.f;
}

/*
 * quantize_row_q8_0 / q8_1 of ggml-cpu/arch/x86/quants.c (and the 4-row
 * ggml_quantize_mat_q8_0_4x8 the repacked Q4_0/IQ4_NL products use, same
 * arithmetic): the multiplier is 127 / amax, not 1 / d as in the reference
 * quantizer, and _mm256_round_ps rounds ties to even. The dot product reads
 * d back from fp16.
 */
static void round_q8_0(float *x, int64_t n, float *s_err)
{
	for (int64_t b = 0; b < n; b += MUSE_QK8_0) {
		float *v = x + b, amax = 0.0f;
		for (int j = 0; j < MUSE_QK8_0; j++) {
			float a = fabsf(v[j]);
			amax = a > amax ? a : amax;
		}
		const float d32 = amax / 127.f, d = muse_f16_to_f32(muse_f32_to_f16(d32));
		const float id = amax != 0.0f ? 127.f / amax : 0.0f;
		float sum = 0.0f; /* integers below 2^24: exact */
		for (int j = 0; j < MUSE_QK8_0; j++) {
			float q = round_even(v[j] * id);
			sum += q;
			v[j] = d * q;
		}
		/* Q8_1's s = fp16(d * sum q) with the unrounded d (quantize_row_q8_1); d * sum q is exact in floats. */
		if (s_err)
			s_err[b / MUSE_QK8_0] = muse_f16_to_f32(muse_f32_to_f16(d32 * sum)) - d * sum;
	}
}

/*
 * quantize_row_q8_K_ref (the x86 build calls it; the repacked Q4_K path's
 * ggml_quantize_mat_q8_K_4x8 picks the same scale up to its sign, which
 * d * q does not see): the scale comes from the signed element of largest
 * magnitude, the first one on ties, and d = 1 / iscale stays a float.
 */
static void round_q8_k(float *x, int64_t n)
{
	for (int64_t b = 0; b < n; b += MUSE_QK_K) {
		float *v = x + b, amax = 0.0f;
		for (int j = 0; j < MUSE_QK_K; j++) {
			float a = fabsf(v[j]);
			amax = a > amax ? a : amax;
		}
		if (amax == 0.0f) {
			memset(v, 0, MUSE_QK_K * sizeof *v);
			continue;
		}
		int jm = 0;
		while (fabsf(v[jm]) != amax)
			jm++;
		const float iscale = -127.f / v[jm], d = 1 / iscale;
		for (int j = 0; j < MUSE_QK_K; j++) {
			float q = round_even(iscale * v[j]);
			v[j] = d * (q < 127.f ? q : 127.f);
		}
	}
}

/* F16 or BF16 and back, through the converters' vector kernels. */
static void round_half(muse_dtype t, float *x, int64_t n)
{
	uint16_t h[256];
	for (int64_t i = 0; i < n; i += 256) {
		size_t m = (size_t)(n - i < 256 ? n - i : 256);
		/* Cannot fail: both types are plain floats and the buffers are sized. */
		(void)muse_dtype_convert(t, h, MUSE_DT_F32, x + i, m, NULL);
		(void)muse_dtype_convert(MUSE_DT_F32, x + i, t, h, m, NULL);
	}
}

void muse_ggml_act_round(muse_dtype t, float *x, int64_t n)
{
	switch (t) {
	case MUSE_DT_Q8_0:
	case MUSE_DT_Q8_1: /* the same quants and d; Q8_1's s only meets Q4_1/Q5_1's min term (muse_ggml_act_round_q8_1) */
		round_q8_0(x, n, NULL);
		break;
	case MUSE_DT_Q8_K:
		round_q8_k(x, n);
		break;
	case MUSE_DT_F16:
	case MUSE_DT_BF16:
		round_half(t, x, n);
		break;
	default:
		break;
	}
}

void muse_ggml_act_round_q8_1(float *x, int64_t n, float *s_err)
{
	round_q8_0(x, n, s_err);
}
