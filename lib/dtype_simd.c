/* dtype_simd.c: AVX2+F16C kernels for the hot dtype conversions, chosen at run time; equal to the scalar reference. */
#include "dtype_simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>
#include <stdint.h>

/*
 * The functions carry their own target so the rest of muse builds for baseline x86-64 and the
 * binary still runs on CPUs without AVX2; muse_cvt_simd_get() hands them out only after asking
 * the CPU. They never read MXCSR-dependent results: F16C takes its rounding from the immediate,
 * and the f8 encoders are integer code (the multiply in e4m3 decoding is by 256, exact, on
 * normal numbers only).
 */
#define TARGET __attribute__((target("avx2,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

static TARGET void f16_to_f32(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i h0 = _mm_loadu_si128((const __m128i *)(s + 2 * i));
		__m128i h1 = _mm_loadu_si128((const __m128i *)(s + 2 * i + 16));
		_mm256_storeu_ps((float *)(d + 4 * i), _mm256_cvtph_ps(h0));
		_mm256_storeu_ps((float *)(d + 4 * i + 32), _mm256_cvtph_ps(h1));
	}
	muse_cvt_ref_f16_to_f32(d + 4 * i, s + 2 * i, n - i);
}

static TARGET void f32_to_f16(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 f0 = _mm256_loadu_ps((const float *)(s + 4 * i));
		__m256 f1 = _mm256_loadu_ps((const float *)(s + 4 * i + 32));
		/* rounding from the immediate (nearest even), not from MXCSR */
		_mm_storeu_si128((__m128i *)(d + 2 * i), _mm256_cvtps_ph(f0, _MM_FROUND_TO_NEAREST_INT));
		_mm_storeu_si128((__m128i *)(d + 2 * i + 16), _mm256_cvtps_ph(f1, _MM_FROUND_TO_NEAREST_INT));
	}
	muse_cvt_ref_f32_to_f16(d + 2 * i, s + 4 * i, n - i);
}

static TARGET void bf16_to_f32(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i h0 = _mm_loadu_si128((const __m128i *)(s + 2 * i));
		__m128i h1 = _mm_loadu_si128((const __m128i *)(s + 2 * i + 16));
		_mm256_storeu_si256((__m256i *)(d + 4 * i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16));
		_mm256_storeu_si256((__m256i *)(d + 4 * i + 32), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16));
	}
	muse_cvt_ref_bf16_to_f32(d + 4 * i, s + 2 * i, n - i);
}

/* muse_f32_to_bf16 on 8 lanes, results in the low 16 bits of each lane. */
INLINE __m256i bf16_lanes(__m256i u)
{
	const __m256i one = _mm256_set1_epi32(1);
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
	__m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
	__m256i hi = _mm256_srli_epi32(u, 16);
	__m256i odd = _mm256_and_si256(hi, one);
	__m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), 16);
	__m256i q = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
	return _mm256_blendv_epi8(r, q, nan);
}

static TARGET void f32_to_bf16(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i r0 = bf16_lanes(_mm256_loadu_si256((const __m256i *)(s + 4 * i)));
		__m256i r1 = bf16_lanes(_mm256_loadu_si256((const __m256i *)(s + 4 * i + 32)));
		/* lanes hold 0..0xFFFF, so unsigned saturation never triggers; the pack interleaves
		 * 128-bit halves, the permute puts them back in order */
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r0, r1), 0xD8);
		_mm256_storeu_si256((__m256i *)(d + 2 * i), p);
	}
	muse_cvt_ref_f32_to_bf16(d + 2 * i, s + 4 * i, n - i);
}

/* Eight e4m3 codes, given as f16 bits (sign << 8 | magnitude << 7), -> f32 bits. */
INLINE __m256i e4m3_lanes(__m128i h)
{
	/* the f16 value is 2^-8 times the e4m3 value, subnormals included, so converting and scaling
	 * by 256 is exact. Only the NaN codes (S.1111.111) come out as +-480, which e4m3 cannot hold
	 * otherwise; testing for that in the f32 domain avoids widening the bytes a second time
	 * (the shuffle port is this loop's bottleneck). */
	__m256 f = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
	__m256i u = _mm256_castps_si256(f);
	__m256i sign = _mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u));
	__m256i nan = _mm256_cmpeq_epi32(_mm256_xor_si256(u, sign), _mm256_set1_epi32(0x43F00000)); /* 480.0f */
	return _mm256_blendv_epi8(u, _mm256_or_si256(sign, _mm256_set1_epi32(0x7FF00000)), nan);
}

static TARGET void e4m3_to_f32(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(s + i)));
		__m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(x, _mm256_set1_epi16(0x80)), 8),
					    _mm256_slli_epi16(_mm256_and_si256(x, _mm256_set1_epi16(0x7F)), 7));
		_mm256_storeu_si256((__m256i *)(d + 4 * i), e4m3_lanes(_mm256_castsi256_si128(h)));
		_mm256_storeu_si256((__m256i *)(d + 4 * i + 32), e4m3_lanes(_mm256_extracti128_si256(h, 1)));
	}
	muse_cvt_ref_e4m3_to_f32(d + 4 * i, s + i, n - i);
}

static TARGET void e5m2_to_f32(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		/* an e5m2 code is the top byte of an f16 */
		__m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(s + i))), 8);
		_mm256_storeu_ps((float *)(d + 4 * i), _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
		_mm256_storeu_ps((float *)(d + 4 * i + 32), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
	}
	muse_cvt_ref_e5m2_to_f32(d + 4 * i, s + i, n - i);
}

/*
 * enc_f32() of dtype_convert.c on 8 lanes of finite magnitudes a (bits), for an f8 format with
 * MB mantissa bits and bias BIAS: the rounded magnitude code before overflow handling.
 */
INLINE __m256i f8_round_lanes(__m256i a, const int MB, const int BIAS)
{
	const __m256i one = _mm256_set1_epi32(1);
	const int s = 23 - MB;
	/* normal results: carry trick */
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, s), one);
	__m256i nrm = _mm256_add_epi32(a, _mm256_set1_epi32((int)(((uint32_t)(BIAS - 127) << 23) + ((1u << (s - 1)) - 1))));
	nrm = _mm256_srli_epi32(_mm256_add_epi32(nrm, odd), s);
	__m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)((uint32_t)(128 - BIAS) << 23)), a);
	/* below the smallest normal (zeros included) is rare in real tensors: skip that work when no
	 * lane needs it. The branch only picks which lanes are computed, never how. */
	if (_mm256_testz_si256(small, small))
		return nrm;
	/* subnormal results: q = RNE(m >> (151 - BIAS - MB - e)), shift clamped to 25 (gives 0) */
	__m256i e = _mm256_srli_epi32(a, 23);
	__m256i ez = _mm256_cmpeq_epi32(e, _mm256_setzero_si256());
	__m256i m = _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7FFFFF)),
				    _mm256_andnot_si256(ez, _mm256_set1_epi32(0x800000)));
	e = _mm256_or_si256(e, _mm256_and_si256(ez, one));
	__m256i sh = _mm256_min_epu32(_mm256_sub_epi32(_mm256_set1_epi32(151 - BIAS - MB), e), _mm256_set1_epi32(25));
	__m256i q = _mm256_srlv_epi32(m, sh);
	__m256i r = _mm256_and_si256(m, _mm256_sub_epi32(_mm256_sllv_epi32(one, sh), one));
	__m256i h = _mm256_sllv_epi32(one, _mm256_sub_epi32(sh, one));
	__m256i up = _mm256_or_si256(_mm256_cmpgt_epi32(r, h),
				     _mm256_and_si256(_mm256_cmpeq_epi32(r, h), _mm256_cmpeq_epi32(_mm256_and_si256(q, one), one)));
	q = _mm256_sub_epi32(q, up); /* up is -1 where rounding up */
	return _mm256_blendv_epi8(nrm, q, small);
}

/* Packs four vectors of codes 0..255 (32 lanes) into 32 bytes in order. */
INLINE void store_bytes32(unsigned char *d, __m256i c0, __m256i c1, __m256i c2, __m256i c3)
{
	__m256i p = _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
	p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *)d, p);
}

INLINE __m256i e4m3_enc_lanes(__m256i u)
{
	__m256i sign = _mm256_srli_epi32(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)), 24);
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
	__m256i c = f8_round_lanes(a, 3, 7);
	/* overflow saturates at 448 (0x7E): normal-path codes only grow with a (Inf included), and
	 * the carry trick never wraps there, so a minimum does it; NaN -> 0x7F */
	c = _mm256_min_epu32(c, _mm256_set1_epi32(0x7E));
	__m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
	c = _mm256_blendv_epi8(c, _mm256_set1_epi32(0x7F), nan);
	return _mm256_or_si256(c, sign);
}

INLINE __m256i e5m2_enc_lanes(__m256i u)
{
	__m256i sign = _mm256_srli_epi32(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)), 24);
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
	__m256i c = f8_round_lanes(a, 2, 15);
	/* |x| >= 65536 and Inf -> Inf (below, rounding reaches at most 0x7C = Inf by itself); NaN -> 0x7F */
	__m256i big = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x477FFFFF));
	c = _mm256_blendv_epi8(c, _mm256_set1_epi32(0x7C), big);
	__m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
	c = _mm256_blendv_epi8(c, _mm256_set1_epi32(0x7F), nan);
	return _mm256_or_si256(c, sign);
}

static TARGET void f32_to_e4m3(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		const __m256i *p = (const __m256i *)(s + 4 * i);
		store_bytes32(d + i, e4m3_enc_lanes(_mm256_loadu_si256(p)), e4m3_enc_lanes(_mm256_loadu_si256(p + 1)),
			      e4m3_enc_lanes(_mm256_loadu_si256(p + 2)), e4m3_enc_lanes(_mm256_loadu_si256(p + 3)));
	}
	muse_cvt_ref_f32_to_e4m3(d + i, s + 4 * i, n - i);
}

static TARGET void f32_to_e5m2(void *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		const __m256i *p = (const __m256i *)(s + 4 * i);
		store_bytes32(d + i, e5m2_enc_lanes(_mm256_loadu_si256(p)), e5m2_enc_lanes(_mm256_loadu_si256(p + 1)),
			      e5m2_enc_lanes(_mm256_loadu_si256(p + 2)), e5m2_enc_lanes(_mm256_loadu_si256(p + 3)));
	}
	muse_cvt_ref_f32_to_e5m2(d + i, s + 4 * i, n - i);
}

static const muse_cvt_simd avx2_kernels = {
	"avx2+f16c",
	f16_to_f32, f32_to_f16,
	bf16_to_f32, f32_to_bf16,
	e4m3_to_f32, f32_to_e4m3,
	e5m2_to_f32, f32_to_e5m2,
};

/* AVX2 and F16C from CPUID, and YMM state saved by the OS (OSXSAVE + XCR0 bits 1-2): what
 * __builtin_cpu_supports checks, done by hand because clang's builtin does not know "f16c". */
static int cpu_has_avx2_f16c(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_F16C))
		return 0;
	unsigned lo, hi;
	__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if ((lo & 6) != 6)
		return 0;
	if (__get_cpuid_max(0, NULL) < 7)
		return 0;
	__cpuid_count(7, 0, a, b, c, d);
	return (b & bit_AVX2) != 0;
}

const muse_cvt_simd *muse_cvt_simd_get(void)
{
	/* cached: CPUID traps to the hypervisor in VMs; racing first callers store the same value */
	static _Atomic int known; /* 0 unknown, 1 no, 2 yes */
	int k = atomic_load_explicit(&known, memory_order_relaxed);
	if (!k) {
		k = cpu_has_avx2_f16c() ? 2 : 1;
		atomic_store_explicit(&known, k, memory_order_relaxed);
	}
	return k == 2 ? &avx2_kernels : NULL;
}

#else

const muse_cvt_simd *muse_cvt_simd_get(void)
{
	return NULL;
}

#endif
