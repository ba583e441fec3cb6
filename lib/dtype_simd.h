/* dtype_simd.h: private to dtype_convert.c: the vector kernels of the hot conversions and their dispatch. */
#ifndef MUSE_DTYPE_SIMD_H
#define MUSE_DTYPE_SIMD_H

#include <stddef.h>

/*
 * One kernel converts n elements from src to dst. Neither pointer needs any
 * alignment. Every kernel equals the scalar reference in dtype_convert.c bit
 * for bit (tests/unit/test_dtype.c proves it on every f16/bf16/f8 code and on
 * millions of f32 patterns); vector bodies finish their tails by calling it.
 */
typedef void (*muse_cvt_kernel)(void *dst, const void *src, size_t n);

typedef struct muse_cvt_simd {
	const char *name;              /* "avx2+f16c" */
	muse_cvt_kernel f16_to_f32, f32_to_f16;
	muse_cvt_kernel bf16_to_f32, f32_to_bf16;
	muse_cvt_kernel e4m3_to_f32, f32_to_e4m3;
	muse_cvt_kernel e5m2_to_f32, f32_to_e5m2;
} muse_cvt_simd;

/*
 * The kernels this CPU can run, or NULL when it lacks AVX2+F16C (or the
 * build is not for x86-64). Decided by the CPU itself (CPUID, and XGETBV for
 * the OS saving YMM state), never by the build flags.
 */
const muse_cvt_simd *muse_cvt_simd_get(void);

/* Scalar references the vector kernels fall back to for their tails (defined in dtype_convert.c). */
void muse_cvt_ref_f16_to_f32(void *dst, const void *src, size_t n);
void muse_cvt_ref_f32_to_f16(void *dst, const void *src, size_t n);
void muse_cvt_ref_bf16_to_f32(void *dst, const void *src, size_t n);
void muse_cvt_ref_f32_to_bf16(void *dst, const void *src, size_t n);
void muse_cvt_ref_e4m3_to_f32(void *dst, const void *src, size_t n);
void muse_cvt_ref_f32_to_e4m3(void *dst, const void *src, size_t n);
void muse_cvt_ref_e5m2_to_f32(void *dst, const void *src, size_t n);
void muse_cvt_ref_f32_to_e5m2(void *dst, const void *src, size_t n);

#endif
