/* dtype.h: every element type muse meets (plain and ggml block types) and the conversions between plain ones. */
#ifndef MUSE_DTYPE_H
#define MUSE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/*
 * One enum for all formats. Plain types first, then ggml's block types.
 * The numeric values are muse's own; formats map to and from them through
 * the traits table (ggml ids, safetensors names, torch storage names).
 */
typedef enum muse_dtype {
	MUSE_DT_INVALID = 0,
	/* plain element types */
	MUSE_DT_F64,
	MUSE_DT_F32,
	MUSE_DT_F16,
	MUSE_DT_BF16,
	MUSE_DT_F8_E4M3,   /* e4m3fn: no Inf, NaN = S.1111.111 */
	MUSE_DT_F8_E5M2,
	MUSE_DT_F8_E8M0,   /* exponent only (MX scales): 2^(e-127), 0xFF = NaN */
	MUSE_DT_F8_E4M3FNUZ,
	MUSE_DT_F8_E5M2FNUZ,
	MUSE_DT_F6_E2M3,   /* 4 elements in 3 bytes */
	MUSE_DT_F6_E3M2,
	MUSE_DT_F4,        /* E2M1, 2 elements a byte */
	MUSE_DT_I8,
	MUSE_DT_I16,
	MUSE_DT_I32,
	MUSE_DT_I64,
	MUSE_DT_U8,
	MUSE_DT_U16,
	MUSE_DT_U32,
	MUSE_DT_U64,
	MUSE_DT_BOOL,
	MUSE_DT_C64,       /* complex64: two F32 */
	MUSE_DT_C128,      /* complex128: two F64 */
	/* ggml block types (GGUF) */
	MUSE_DT_Q4_0,
	MUSE_DT_Q4_1,
	MUSE_DT_Q5_0,
	MUSE_DT_Q5_1,
	MUSE_DT_Q8_0,
	MUSE_DT_Q8_1,
	MUSE_DT_Q2_K,
	MUSE_DT_Q3_K,
	MUSE_DT_Q4_K,
	MUSE_DT_Q5_K,
	MUSE_DT_Q6_K,
	MUSE_DT_Q8_K,
	MUSE_DT_IQ2_XXS,
	MUSE_DT_IQ2_XS,
	MUSE_DT_IQ3_XXS,
	MUSE_DT_IQ1_S,
	MUSE_DT_IQ4_NL,
	MUSE_DT_IQ3_S,
	MUSE_DT_IQ2_S,
	MUSE_DT_IQ4_XS,
	MUSE_DT_IQ1_M,
	MUSE_DT_TQ1_0,
	MUSE_DT_TQ2_0,
	MUSE_DT_MXFP4,
	MUSE_DT_NVFP4,
	MUSE_DT_Q1_0,
	MUSE_DT_COUNT
} muse_dtype;

typedef struct muse_dtype_traits {
	const char *name;        /* muse's display name: "F32", "BF16", "Q4_K", ... */
	uint32_t blck;           /* elements per block (1 for plain types, 2 for F4, 4 for F6) */
	uint32_t block_bytes;    /* bytes per block */
	int32_t ggml_id;         /* enum ggml_type value, -1 when GGUF has no such type */
	const char *st_name;     /* safetensors dtype string, NULL when none */
	bool is_float;           /* plain floating type (convertible through f32/f64) */
	bool is_int;             /* plain integer or bool type */
	bool is_quant;           /* ggml block-quantized type */
} muse_dtype_traits;

const muse_dtype_traits *muse_dtype_info(muse_dtype t); /* NULL for out-of-range t */
const char *muse_dtype_name(muse_dtype t);              /* "?" for out-of-range t */

/* Lookups; return MUSE_DT_INVALID when unknown. Names are matched exactly (case-sensitive). */
muse_dtype muse_dtype_from_ggml(uint32_t ggml_id);
muse_dtype muse_dtype_from_st(const char *st_name);
muse_dtype muse_dtype_from_name(const char *name);   /* case-insensitive muse/ggml name */

/*
 * Bytes for n elements of t. Fails (returns false) when n is not a whole
 * number of blocks or the size overflows.
 */
bool muse_dtype_nbytes(muse_dtype t, uint64_t n, uint64_t *out);

/*
 * ---- scalar conversions ----
 * Round to nearest, ties to even; exact rules for NaN, Inf, overflow and e8m0 are in the comment
 * at the top of dtype_convert.c (they match torch's casts, NaN bits included where torch is
 * consistent). These are the reference the vector paths are tested against.
 */
float muse_f16_to_f32(uint16_t h);
uint16_t muse_f32_to_f16(float f);
float muse_bf16_to_f32(uint16_t h);
uint16_t muse_f32_to_bf16(float f);
float muse_f8e4m3_to_f32(uint8_t v);
uint8_t muse_f32_to_f8e4m3(float f);
float muse_f8e5m2_to_f32(uint8_t v);
uint8_t muse_f32_to_f8e5m2(float f);
float muse_f8e8m0_to_f32(uint8_t v);
uint8_t muse_f32_to_f8e8m0(float f);

/*
 * Converts n elements from src (type st) to dst (type dt). Plain float and
 * integer types (F64, F32, F16, BF16, the F8 types, I8..U64, BOOL); the same
 * type on both sides is a byte copy for any type. float -> int truncates toward
 * zero like numpy's astype; beyond that muse saturates out-of-range values and
 * maps NaN to 0 (numpy leaves those undefined). Buffers need no alignment and
 * must not overlap, except dst == src when both types have the same size.
 * Uses AVX2/F16C when the CPU has them and OpenMP threads over large n; the
 * result does not depend on either. Returns MUSE_ERR_UNSUPPORTED for F4, F6,
 * complex and block-quantized types, MUSE_ERR_LIMIT when the byte size
 * overflows, MUSE_ERR_USAGE for invalid dtypes or NULL buffers.
 */
muse_status muse_dtype_convert(muse_dtype dt, void *dst, muse_dtype st, const void *src, size_t n,
			       muse_err *err);

/*
 * The scalar, single-threaded reference that defines muse_dtype_convert's
 * output (same contract); tests compare the two bit for bit.
 */
muse_status muse_dtype_convert_ref(muse_dtype dt, void *dst, muse_dtype st, const void *src,
				   size_t n, muse_err *err);

/* The vector kernels muse_dtype_convert uses on this CPU: "avx2+f16c" or "scalar". */
const char *muse_dtype_simd_name(void);

#endif
