/* quant_tables.h: ggml's block layouts, lookup tables and rounding helpers shared by the quantizers. */
#ifndef MUSE_QUANT_TABLES_H
#define MUSE_QUANT_TABLES_H

#include <stdint.h>
#include <string.h>

#include "../lib/dtype.h"

/*
 * Block layouts, byte for byte as ggml-common.h lays them out. Half-precision
 * fields are byte pairs (little-endian IEEE binary16) so every struct has
 * alignment 1 and no padding; the static asserts pin the sizes GGUF files use.
 */
#define MUSE_QK32 32  /* elements per block of the legacy, IQ4_NL and MXFP4 types */
#define MUSE_QK_K 256 /* elements per super-block of the K, IQ4_XS and TQ types */

typedef struct {
	uint8_t d[2];   /* scale, fp16 (0.5 bpw) */
	uint8_t qs[16]; /* 4-bit quants, elem j low nibble of qs[j], elem j+16 high nibble (4 bpw) */
} muse_block_q4_0;

typedef struct {
	uint8_t d[2];   /* scale, fp16 (0.5 bpw) */
	uint8_t m[2];   /* minimum, fp16 (0.5 bpw) */
	uint8_t qs[16]; /* 4-bit quants as in Q4_0 (4 bpw) */
} muse_block_q4_1;

typedef struct {
	uint8_t d[2];   /* scale, fp16 (0.5 bpw) */
	uint8_t qh[4];  /* fifth bits, u32 little-endian, bit j for elem j (1 bpw) */
	uint8_t qs[16]; /* low 4 bits as in Q4_0 (4 bpw) */
} muse_block_q5_0;

typedef struct {
	uint8_t d[2];   /* scale, fp16 (0.5 bpw) */
	uint8_t m[2];   /* minimum, fp16 (0.5 bpw) */
	uint8_t qh[4];  /* fifth bits as in Q5_0 (1 bpw) */
	uint8_t qs[16]; /* low 4 bits as in Q4_0 (4 bpw) */
} muse_block_q5_1;

typedef struct {
	uint8_t d[2];  /* scale, fp16 (0.5 bpw) */
	int8_t qs[32]; /* signed 8-bit quants (8 bpw) */
} muse_block_q8_0;

typedef struct {
	uint8_t d[2];   /* scale, fp16 (0.5 bpw) */
	uint8_t qs[16]; /* 4-bit indices into kvalues_iq4nl, nibbles as in Q4_0 (4 bpw) */
} muse_block_iq4_nl;

typedef struct {
	uint8_t d[2];        /* super-block scale, fp16 (0.0625 bpw) */
	uint8_t scales_h[2]; /* high 2 bits of the eight 6-bit sub-block scales, u16 LE (0.0625 bpw) */
	uint8_t scales_l[4]; /* low 4 bits of the sub-block scales, two a byte (0.125 bpw) */
	uint8_t qs[128];     /* 4-bit indices, per 32-element sub-block as in IQ4_NL (4 bpw) */
} muse_block_iq4_xs;

typedef struct {
	uint8_t e;      /* shared scale, E8M0 (0.25 bpw) */
	uint8_t qs[16]; /* 4-bit E2M1 codes into kvalues_mxfp4, nibbles as in Q4_0 (4 bpw) */
} muse_block_mxfp4;

typedef struct {
	uint8_t qs[48]; /* 240 ternary digits, five a byte, as ceil(v * 256 / 243) (1.5 bpw) */
	uint8_t qh[4];  /* 16 more, four a byte in the same code (0.125 bpw) */
	uint8_t d[2];   /* scale, fp16 (0.0625 bpw) */
} muse_block_tq1_0;

typedef struct {
	uint8_t qs[64]; /* 2-bit codes q+1 for q in {-1,0,1} (2 bpw) */
	uint8_t d[2];   /* scale, fp16 (0.0625 bpw) */
} muse_block_tq2_0;

_Static_assert(sizeof(muse_block_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(muse_block_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(muse_block_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(muse_block_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(muse_block_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(muse_block_iq4_nl) == 18, "IQ4_NL block");
_Static_assert(sizeof(muse_block_iq4_xs) == 136, "IQ4_XS block");
_Static_assert(sizeof(muse_block_mxfp4) == 17, "MXFP4 block");
_Static_assert(sizeof(muse_block_tq1_0) == 54, "TQ1_0 block");
_Static_assert(sizeof(muse_block_tq2_0) == 66, "TQ2_0 block");

/* The IQ4_NL/IQ4_XS non-linear levels (ggml-common.h kvalues_iq4nl), ascending. */
static const int8_t muse_kvalues_iq4nl[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* E2M1 values doubled (ggml-common.h kvalues_fp4): code c is sign (bit 3) and magnitude 0,0.5,..,6 times 2. */
static const int8_t muse_kvalues_mxfp4[16] = {
	0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
};

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

static inline void muse_q_put_fp16(uint8_t out[2], float f)
{
	uint16_t h = muse_q_fp16(f);
	out[0] = (uint8_t)h;
	out[1] = (uint8_t)(h >> 8);
}

static inline float muse_q_get_fp16(const uint8_t in[2])
{
	return muse_f16_to_f32((uint16_t)(in[0] | in[1] << 8));
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
