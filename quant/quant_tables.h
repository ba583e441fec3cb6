/* quant_tables.h: the rounding helpers and search constants ggml's quantizers share; the block layouts are lib/block_layout.h. */
#ifndef MUSE_QUANT_TABLES_H
#define MUSE_QUANT_TABLES_H

#include <stdint.h>
#include <string.h>

#include "../lib/block_layout.h"
#include "../lib/dtype.h"

/* Below this largest magnitude a (sub-)block counts as all zero and gets zero scales (ggml's GROUP_MAX_EPS). */
#define MUSE_GROUP_MAX_EPS 1e-15f

/*
 * ggml's nearest_int: the float add of 1.5 * 2^23 rounds to an integer
 * (ties to even) in the low mantissa bits. ggml asserts |f| <= 4194303 only
 * in debug builds, so release builds (what writes model files) return these
 * same bits for any input, Inf and NaN included; so does this.
 */
static inline int muse_q_nearest_int(float f)
{
	float v = f + 12582912.f;
	int32_t i;
	memcpy(&i, &v, sizeof i);
	return (i & 0x007fffff) - 0x00400000;
}

/*
 * C float-to-int conversion as x86-64 performs it (cvttss2si): truncation
 * toward zero, and INT32_MIN for NaN and anything out of range. ggml casts
 * floats straight to int8_t/uint8_t, which compiles to this plus keeping the
 * low byte; the cast is undefined in C only for inputs no sane block holds
 * (scales that overflow to Inf), and this keeps muse defined there too.
 */
static inline int32_t muse_q_trunc_i32(float f)
{
	if (!(f > -2147483904.f && f < 2147483648.f))
		return INT32_MIN;
	return (int32_t)f;
}

/*
 * fp32 -> fp16 as GGML_FP32_TO_FP16: round to nearest even; NaN becomes the
 * one quiet NaN 0x7E00 with the sign kept (muse_f32_to_f16 keeps payloads).
 */
static inline uint16_t muse_q_fp16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	if ((u & 0x7FFFFFFFu) > 0x7F800000u)
		return (uint16_t)(((u >> 16) & 0x8000u) | 0x7E00u);
	return muse_f32_to_f16(f);
}

/* The MXFP4 scale, 2^(e-128), as ggml_e8m0_to_fp32_half: half of the E8M0 value, since the table is doubled. */
static inline float muse_q_e8m0_half(uint8_t e)
{
	uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

#endif
