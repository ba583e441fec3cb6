/* dtype_convert.c: element conversions between muse's plain types; the scalar code here is the reference. */
/*
 * Semantics (each rule is checked against torch 2.15 / numpy by tests/interop/test_dtype.py and
 * against the generic rounder below by tests/unit/test_dtype.c):
 *
 * Decoding to f32 (exact for every type; NaN bits as listed):
 *   f16   IEEE binary16. NaN is quieted with its payload kept (sign | 0x7FC00000 | m << 13), as the
 *         F16C instruction and torch's vectorized loop do. (torch's own scalar tail returns
 *         0x7FFFFFFF for every NaN, so torch's f16 NaN bits depend on the tensor length.)
 *   bf16  the top half of an f32: bits << 16, NaN payloads and signalling NaNs kept (= torch).
 *   e4m3  e4m3fn: bias 7, no Inf, S.1111.111 is NaN -> sign | 0x7FF00000 (torch's bits).
 *   e5m2  the top byte of an f16; decoded as the f16 (b << 8) is, so NaN is quieted as above.
 *   e8m0  2^(b-127); b = 0 is 2^-127 (the f32 subnormal 0x00400000); 0xFF is NaN -> 0x7F800001
 *         (torch's bits: a signalling pattern, kept so decode tables equal torch's).
 *   e4m3fnuz / e5m2fnuz  bias 8 / 16, no Inf, no -0; 0x80 is NaN -> 0x7F800001 (torch's bits).
 *
 * Encoding from f32 (round to nearest, ties to even, subnormals produced, -0 kept):
 *   f16   overflow (|x| >= 65520) -> +-Inf. NaN -> sign | 0x7E00 | (mantissa >> 13): quiet, sign
 *         and top payload kept, exactly what F16C's vcvtps2ph and torch produce. numpy differs
 *         only for signalling NaNs, which it does not quiet.
 *   bf16  overflow -> +-Inf by the same rounding. NaN -> (bits >> 16) | 0x0040: quiet, sign and
 *         top payload kept. This is ggml's (ggml_compute_fp32_to_bf16) and gguf-py's rule.
 *         torch is not consistent here: contiguous .to(bfloat16) gives 0xFFFF for every NaN
 *         (its AVX2 loop; the sign is lost), 0-d and strided tensors give 0x7FC0.
 *   e4m3  (e4m3fn, = torch 2.15) overflow saturates: every |x| above 448, +-Inf included, gives
 *         +-448 (0x7E / 0xFE); only NaN gives NaN (0x7F | sign). (Older torch and ml_dtypes turn
 *         results above 448 into NaN; torch 2.15 saturates on every code path we tried.)
 *   e5m2  (= torch) results above 57344 become +-Inf (0x7C); NaN -> 0x7F | sign.
 *   e8m0  (= torch's float8_e8m0fnu cast) sign ignored; NaN, +-Inf -> 0xFF. For |x| >= 2^-126 the
 *         exponent rounds up when the mantissa is >= 0.5 (so 1.5 * 2^e -> 2^(e+1), ties away);
 *         |x| >= 1.5 * 2^127 -> 0xFF (NaN). Below 2^-126: |x| > 2^-127 -> 1, else 0. This is
 *         torch's guard/round/sticky code (lsb = 0 for subnormals) restated as a value rule.
 *   e4m3fnuz / e5m2fnuz (= torch) results above 240 / 57344, +-Inf and NaN -> 0x80 (NaN);
 *         zero results are +0 (no -0).
 *
 * F64: decoding any type to f64 is exact (f32 NaN -> sign | quiet | payload << 29, as cvtss2sd).
 *   f64 -> any narrower float type rounds once, from the exact f64 value, with the rules above
 *   (numpy's astype does the same for f16/f32; torch first rounds f64 to f32, so for f64 inputs
 *   within an f32 ulp of a midpoint the two can differ by one ulp of the target). An f64 NaN
 *   first becomes the f32 NaN cvtsd2ss makes (sign | 0x7FC00000 | payload >> 29).
 *
 * Integers (I8..I64, U8..U64, BOOL), numpy astype semantics for in-range values:
 *   int -> float: correctly rounded (ties to even) from the exact integer, no double rounding
 *   (I64/U64 above 2^53 go through a round-to-odd f64, which is innocuous for <= 24-bit targets).
 *   float -> int: truncation toward zero. Outside numpy's promises, muse is deterministic: values
 *   beyond the target range saturate to its min/max (+-Inf too), NaN -> 0. (numpy gives whatever
 *   the C cast does there, which C leaves undefined.)
 *   float -> BOOL: x != 0 (NaN -> 1, as numpy). BOOL source: any nonzero byte is 1.
 *   int -> int: two's complement wrap-around to the target width (numpy), -> BOOL: x != 0.
 *
 * Same type: a byte copy, for every type (block types included when n is whole blocks).
 * Unsupported (MUSE_ERR_UNSUPPORTED): F4, F6_*, C64, C128 and every ggml block type; those need
 * packed codecs or dequantization (quant/), not an element cast.
 *
 * Fast path: AVX2+F16C kernels (dtype_simd.c, picked at run time) for f16/bf16/e4m3/e5m2 <-> f32,
 * and OpenMP over chunks of 64K elements. Each output element depends only on its input element,
 * so the result never depends on the thread count. Everything here is integer arithmetic on bit
 * patterns, so the MXCSR rounding mode and FTZ/DAZ do not matter for the scalar code.
 * Host byte order is little-endian (as every format muse reads).
 */
#include <string.h>

#include "checked.h"
#include "dtype.h"
#include "dtype_simd.h"

#define CVT_CHUNK ((size_t)65536) /* elements a thread converts at a time */
#define RELAY_N 1024               /* f32 staging for conversions between two non-f32 types */

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* m >> s rounded to nearest, ties to even; 1 <= s <= 31. */
static inline uint32_t rne_shr32(uint32_t m, unsigned s)
{
	uint32_t q = m >> s, r = m & ((UINT32_C(1) << s) - 1), h = UINT32_C(1) << (s - 1);
	return q + (r > h || (r == h && (q & 1)));
}

/* m >> s rounded to nearest, ties to even; any s >= 1 (m < 2^63). */
static inline uint64_t rne_shr64(uint64_t m, unsigned s)
{
	if (s > 63)
		return 0; /* m < 2^63 <= half of the unit */
	uint64_t q = m >> s, r = m & ((UINT64_C(1) << s) - 1), h = UINT64_C(1) << (s - 1);
	return q + (r > h || (r == h && (q & 1)));
}

/*
 * A small binary float format: mb mantissa bits and an exponent bias; codes above maxfin
 * (magnitude) are not finite numbers and become ovf. fnuz formats have no -0 and a sign-less
 * NaN (0x80) that also takes overflow.
 */
typedef struct fmt {
	unsigned mb;
	int bias;
	uint32_t maxfin, ovf, signbit;
	int fnuz;
} fmt;

static const fmt FMT_F32 = { 23, 127, 0x7F7FFFFF, 0x7F800000, 0x80000000, 0 };
static const fmt FMT_F16 = { 10, 15, 0x7BFF, 0x7C00, 0x8000, 0 };
static const fmt FMT_BF16 = { 7, 127, 0x7F7F, 0x7F80, 0x8000, 0 };
static const fmt FMT_E4M3 = { 3, 7, 0x7E, 0x7E, 0x80, 0 }; /* overflow saturates (torch) */
static const fmt FMT_E5M2 = { 2, 15, 0x7B, 0x7C, 0x80, 0 };
static const fmt FMT_E4M3FNUZ = { 3, 8, 0x7F, 0x80, 0x80, 1 };
static const fmt FMT_E5M2FNUZ = { 2, 16, 0x7F, 0x80, 0x80, 1 };

/* Applies a format's overflow and signed-zero rules to a rounded magnitude code. */
static inline uint32_t fmt_finish(const fmt *f, uint32_t sign, uint64_t c)
{
	if (c > f->maxfin)
		return f->fnuz ? f->ovf : (f->ovf | (sign ? f->signbit : 0));
	if (f->fnuz && c == 0)
		return 0;
	return (uint32_t)c | (sign ? f->signbit : 0);
}

/*
 * Rounds a finite f32 magnitude a (bits, < 0x7F800000) to format (mb, bias): the magnitude code,
 * possibly above the largest finite one. Normal results use the carry trick (adding half an ulp
 * minus one, plus the kept lsb, rounds to even and carries into the exponent); below the smallest
 * normal the exact value m * 2^(e-150) is shifted to the subnormal unit 2^(1-bias-mb).
 */
static inline uint32_t enc_f32(uint32_t a, unsigned mb, int bias)
{
	unsigned s = 23 - mb;
	if (a >= (uint32_t)(128 - bias) << 23) {
		a += ((uint32_t)(bias - 127) << 23) + ((UINT32_C(1) << (s - 1)) - 1) + ((a >> s) & 1);
		return a >> s;
	}
	uint32_t e = a >> 23, m = a & 0x7FFFFF;
	if (e)
		m |= 0x800000;
	else
		e = 1;
	unsigned sh = (unsigned)(151 - bias - (int)mb) - e; /* >= 24 - mb >= 1 */
	return sh >= 25 ? 0 : rne_shr32(m, sh);              /* m < 2^24 <= half the unit */
}

/*
 * The same for a finite f64 magnitude (bits): rounds the exact value once. This is the generic
 * rounder; the unit tests also use it as an oracle for the f32 encoders.
 */
static uint64_t enc_f64(uint64_t a, unsigned mb, int bias)
{
	int e = (int)(a >> 52);
	uint64_t m = a & ((UINT64_C(1) << 52) - 1);
	if (e)
		m |= UINT64_C(1) << 52;
	else
		e = 1;
	if (!m)
		return 0;
	int p = 63 - __builtin_clzll(m);        /* value = m * 2^(e-1075), floor(log2) = e-1075+p */
	int kmin = 1 - bias - (int)mb;          /* exponent of the smallest unit (subnormal step) */
	int k = e - 1075 + p - (int)mb;         /* exponent of the result's unit */
	if (k < kmin)
		k = kmin;
	int sh = k - (e - 1075);                /* >= 1 for every format here */
	uint64_t q = sh <= 0 ? m << -sh : rne_shr64(m, (unsigned)sh);
	/* q in [2^mb, 2^(mb+1)] for normal results; a carry to 2^(mb+1) bumps the exponent by itself */
	return ((uint64_t)(k - kmin) << mb) + q;
}

/* Finite f32 code of a small format (mb, bias), as f32 bits (magnitude). */
static inline uint32_t dec_small(uint32_t c, unsigned mb, int bias)
{
	uint32_t e = c >> mb, m = c & ((UINT32_C(1) << mb) - 1);
	if (e)
		return ((e + 127 - (uint32_t)bias) << 23) | (m << (23 - mb));
	if (!m)
		return 0;
	/* subnormal m * 2^(1-bias-mb): the leading 1 of m becomes the implicit bit */
	unsigned p = 31 - (unsigned)__builtin_clz(m);
	return ((uint32_t)((int)p + 1 - bias - (int)mb + 127) << 23) | ((m << (23 - p)) & 0x7FFFFF);
}

/* ---- decoders ---- */

float muse_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, c = h & 0x7FFF;
	if (c >= 0x7C00) /* Inf, or NaN quieted with payload as F16C does */
		return u2f(sign | 0x7F800000 | ((c & 0x3FF) << 13) | ((c & 0x3FF) ? 0x400000 : 0));
	return u2f(sign | dec_small(c, 10, 15));
}

float muse_bf16_to_f32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

float muse_f8e4m3_to_f32(uint8_t v)
{
	uint32_t sign = (uint32_t)(v & 0x80) << 24;
	if ((v & 0x7F) == 0x7F)
		return u2f(sign | 0x7FF00000); /* torch's NaN bits for e4m3fn */
	return u2f(sign | dec_small(v & 0x7F, 3, 7));
}

float muse_f8e5m2_to_f32(uint8_t v)
{
	return muse_f16_to_f32((uint16_t)(v << 8));
}

float muse_f8e8m0_to_f32(uint8_t v)
{
	if (v == 0xFF)
		return u2f(0x7F800001);
	return u2f(v ? (uint32_t)v << 23 : 0x00400000);
}

static float e4m3fnuz_to_f32(uint8_t v)
{
	if (v == 0x80)
		return u2f(0x7F800001);
	return u2f(((uint32_t)(v & 0x80) << 24) | dec_small(v & 0x7F, 3, 8));
}

static float e5m2fnuz_to_f32(uint8_t v)
{
	if (v == 0x80)
		return u2f(0x7F800001);
	return u2f(((uint32_t)(v & 0x80) << 24) | dec_small(v & 0x7F, 2, 16));
}

/* ---- encoders from f32 ---- */

uint16_t muse_f32_to_f16(float f)
{
	uint32_t u = f2u(f), sign = u >> 31, a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)
		return (uint16_t)((sign << 15) | 0x7E00 | ((a >> 13) & 0x3FF));
	return (uint16_t)fmt_finish(&FMT_F16, sign, a == 0x7F800000 ? 0x7C00 : enc_f32(a, 10, 15));
}

uint16_t muse_f32_to_bf16(float f)
{
	uint32_t u = f2u(f);
	if ((u & 0x7FFFFFFF) > 0x7F800000)
		return (uint16_t)((u >> 16) | 0x40);
	/* whole-word carry trick; the largest finite values round to Inf by themselves */
	return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

uint8_t muse_f32_to_f8e4m3(float f)
{
	uint32_t u = f2u(f), sign = u >> 31, a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)
		return (uint8_t)(0x7F | (sign << 7));
	/* Inf saturates like any other overflow */
	return (uint8_t)fmt_finish(&FMT_E4M3, sign, a == 0x7F800000 ? 0x7F : enc_f32(a, 3, 7));
}

uint8_t muse_f32_to_f8e5m2(float f)
{
	uint32_t u = f2u(f), sign = u >> 31, a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)
		return (uint8_t)(0x7F | (sign << 7));
	return (uint8_t)fmt_finish(&FMT_E5M2, sign, a == 0x7F800000 ? 0x7C : enc_f32(a, 2, 15));
}

uint8_t muse_f32_to_f8e8m0(float f)
{
	/* torch's rule, bit for bit: the implicit bit is the lsb, the top mantissa bit the guard */
	uint32_t u = f2u(f), e = (u >> 23) & 0xFF;
	if (e == 0xFF)
		return 0xFF;
	uint32_t g = (u >> 22) & 1, rs = (u & 0x3FFFFF) != 0, lsb = e > 0;
	return (uint8_t)(e + (g && (rs || lsb))); /* e = 254 rounding up gives 0xFF, NaN */
}

static uint8_t f32_to_e4m3fnuz(float f)
{
	uint32_t u = f2u(f), sign = u >> 31, a = u & 0x7FFFFFFF;
	if (a >= 0x7F800000)
		return 0x80;
	return (uint8_t)fmt_finish(&FMT_E4M3FNUZ, sign, enc_f32(a, 3, 8));
}

static uint8_t f32_to_e5m2fnuz(float f)
{
	uint32_t u = f2u(f), sign = u >> 31, a = u & 0x7FFFFFFF;
	if (a >= 0x7F800000)
		return 0x80;
	return (uint8_t)fmt_finish(&FMT_E5M2FNUZ, sign, enc_f32(a, 2, 16));
}

/* ---- f64 ---- */

/* f32 -> f64 bits, exact; NaN quieted with payload (cvtss2sd), independent of the compiler. */
static uint64_t f32_to_f64_bits(uint32_t u)
{
	uint64_t sign = (uint64_t)(u >> 31) << 63;
	uint32_t e = (u >> 23) & 0xFF, m = u & 0x7FFFFF;
	if (e == 0xFF)
		return sign | UINT64_C(0x7FF0000000000000) | ((uint64_t)m << 29) |
		       (m ? UINT64_C(0x0008000000000000) : 0);
	if (e)
		return sign | ((uint64_t)(e + 896) << 52) | ((uint64_t)m << 29);
	if (!m)
		return sign;
	unsigned p = 31 - (unsigned)__builtin_clz(m); /* f32 subnormal m * 2^-149 is an f64 normal */
	return sign | ((uint64_t)(p + 874) << 52) | (((uint64_t)m << (52 - p)) & UINT64_C(0xFFFFFFFFFFFFF));
}

/* f64 NaN or Inf -> the f32 cvtsd2ss gives (sign | quiet | payload >> 29). */
static float f64_special_to_f32(uint64_t u)
{
	uint32_t sign = (uint32_t)(u >> 32) & 0x80000000;
	uint64_t m = u & UINT64_C(0xFFFFFFFFFFFFF);
	return u2f(sign | 0x7F800000 | (m ? 0x400000 | (uint32_t)(m >> 29) : 0));
}

#define F64_SIGN UINT64_C(0x8000000000000000)
#define F64_INF UINT64_C(0x7FF0000000000000)

static uint32_t f64_to_fmt(const fmt *f, uint64_t u)
{
	return fmt_finish(f, (uint32_t)(u >> 63), enc_f64(u & ~F64_SIGN, f->mb, f->bias));
}

/* e8m0 from the exact f64 value with the value rule of muse_f32_to_f8e8m0 (see top). */
static uint8_t f64_to_e8m0(uint64_t u)
{
	uint64_t a = u & ~F64_SIGN;
	if (a >= F64_INF)
		return 0xFF;
	if (a >= UINT64_C(0x3810000000000000)) { /* 2^-126 */
		int64_t code = (int64_t)(a >> 52) - 1023 + 127 + (int64_t)((a >> 51) & 1);
		return code >= 0xFF ? 0xFF : (uint8_t)code;
	}
	return a > UINT64_C(0x3800000000000000) ? 1 : 0; /* above 2^-127 */
}

/*
 * Encodes f64 bits u as dtype t (a float type other than F64); returns the bits. NaN and Inf
 * take the f32 path so their rules live in one place.
 */
static uint32_t enc_from_f64(muse_dtype t, uint64_t u)
{
	int special = (u & ~F64_SIGN) >= F64_INF;
	float sf = special ? f64_special_to_f32(u) : 0.0f;
	switch (t) {
	case MUSE_DT_F32:
		return special ? f2u(sf) : f64_to_fmt(&FMT_F32, u);
	case MUSE_DT_F16:
		return special ? muse_f32_to_f16(sf) : f64_to_fmt(&FMT_F16, u);
	case MUSE_DT_BF16:
		return special ? muse_f32_to_bf16(sf) : f64_to_fmt(&FMT_BF16, u);
	case MUSE_DT_F8_E4M3:
		return special ? muse_f32_to_f8e4m3(sf) : f64_to_fmt(&FMT_E4M3, u);
	case MUSE_DT_F8_E5M2:
		return special ? muse_f32_to_f8e5m2(sf) : f64_to_fmt(&FMT_E5M2, u);
	case MUSE_DT_F8_E4M3FNUZ:
		return special ? f32_to_e4m3fnuz(sf) : f64_to_fmt(&FMT_E4M3FNUZ, u);
	case MUSE_DT_F8_E5M2FNUZ:
		return special ? f32_to_e5m2fnuz(sf) : f64_to_fmt(&FMT_E5M2FNUZ, u);
	case MUSE_DT_F8_E8M0:
		return f64_to_e8m0(u);
	default:
		return 0; /* unreachable: callers pass float types only */
	}
}

/* ---- f32 kernels: the scalar references (also the tails of the vector kernels) ---- */

#define KERNEL_TO_F32(name, T, fn)                                            \
	void name(void *dst, const void *src, size_t n)                       \
	{                                                                     \
		const unsigned char *s = src;                                 \
		unsigned char *d = dst;                                       \
		for (size_t i = 0; i < n; i++) {                              \
			T v;                                                  \
			memcpy(&v, s + i * sizeof v, sizeof v);               \
			float f = fn(v);                                      \
			memcpy(d + 4 * i, &f, 4);                             \
		}                                                             \
	}

#define KERNEL_FROM_F32(name, T, fn)                                          \
	void name(void *dst, const void *src, size_t n)                       \
	{                                                                     \
		const unsigned char *s = src;                                 \
		unsigned char *d = dst;                                       \
		for (size_t i = 0; i < n; i++) {                              \
			float f;                                              \
			memcpy(&f, s + 4 * i, 4);                             \
			T v = fn(f);                                          \
			memcpy(d + i * sizeof v, &v, sizeof v);               \
		}                                                             \
	}

KERNEL_TO_F32(muse_cvt_ref_f16_to_f32, uint16_t, muse_f16_to_f32)
KERNEL_TO_F32(muse_cvt_ref_bf16_to_f32, uint16_t, muse_bf16_to_f32)
KERNEL_TO_F32(muse_cvt_ref_e4m3_to_f32, uint8_t, muse_f8e4m3_to_f32)
KERNEL_TO_F32(muse_cvt_ref_e5m2_to_f32, uint8_t, muse_f8e5m2_to_f32)
KERNEL_FROM_F32(muse_cvt_ref_f32_to_f16, uint16_t, muse_f32_to_f16)
KERNEL_FROM_F32(muse_cvt_ref_f32_to_bf16, uint16_t, muse_f32_to_bf16)
KERNEL_FROM_F32(muse_cvt_ref_f32_to_e4m3, uint8_t, muse_f32_to_f8e4m3)
KERNEL_FROM_F32(muse_cvt_ref_f32_to_e5m2, uint8_t, muse_f32_to_f8e5m2)
static KERNEL_TO_F32(ref_e8m0_to_f32, uint8_t, muse_f8e8m0_to_f32)
static KERNEL_TO_F32(ref_e4m3fnuz_to_f32, uint8_t, e4m3fnuz_to_f32)
static KERNEL_TO_F32(ref_e5m2fnuz_to_f32, uint8_t, e5m2fnuz_to_f32)
static KERNEL_FROM_F32(ref_f32_to_e8m0, uint8_t, muse_f32_to_f8e8m0)
static KERNEL_FROM_F32(ref_f32_to_e4m3fnuz, uint8_t, f32_to_e4m3fnuz)
static KERNEL_FROM_F32(ref_f32_to_e5m2fnuz, uint8_t, f32_to_e5m2fnuz)

static void copy_f32(void *dst, const void *src, size_t n)
{
	memmove(dst, src, n * 4);
}

/* The kernel turning type t into f32 (to = 1) or f32 into t (to = 0); NULL when t is not an
 * f32-exact float type. simd may be NULL (reference). */
static muse_cvt_kernel f32_kernel(muse_dtype t, int to, const muse_cvt_simd *simd)
{
	switch (t) {
	case MUSE_DT_F32:
		return copy_f32;
	case MUSE_DT_F16:
		return simd ? (to ? simd->f16_to_f32 : simd->f32_to_f16)
			    : (to ? muse_cvt_ref_f16_to_f32 : muse_cvt_ref_f32_to_f16);
	case MUSE_DT_BF16:
		return simd ? (to ? simd->bf16_to_f32 : simd->f32_to_bf16)
			    : (to ? muse_cvt_ref_bf16_to_f32 : muse_cvt_ref_f32_to_bf16);
	case MUSE_DT_F8_E4M3:
		return simd ? (to ? simd->e4m3_to_f32 : simd->f32_to_e4m3)
			    : (to ? muse_cvt_ref_e4m3_to_f32 : muse_cvt_ref_f32_to_e4m3);
	case MUSE_DT_F8_E5M2:
		return simd ? (to ? simd->e5m2_to_f32 : simd->f32_to_e5m2)
			    : (to ? muse_cvt_ref_e5m2_to_f32 : muse_cvt_ref_f32_to_e5m2);
	case MUSE_DT_F8_E8M0:
		return to ? ref_e8m0_to_f32 : ref_f32_to_e8m0;
	case MUSE_DT_F8_E4M3FNUZ:
		return to ? ref_e4m3fnuz_to_f32 : ref_f32_to_e4m3fnuz;
	case MUSE_DT_F8_E5M2FNUZ:
		return to ? ref_e5m2fnuz_to_f32 : ref_f32_to_e5m2fnuz;
	default:
		return NULL;
	}
}

/* ---- element access for the generic (f64 and integer) paths ---- */

static inline uint64_t ld_bits(const unsigned char *p, size_t size)
{
	uint64_t v = 0;
	memcpy(&v, p, size); /* little-endian host */
	return v;
}

static inline void st_bits(unsigned char *p, size_t size, uint64_t v)
{
	memcpy(p, &v, size);
}

/* f64 bits of element i of float type t (exact). */
static uint64_t load_as_f64(muse_dtype t, const unsigned char *s, size_t i)
{
	float f;
	switch (t) {
	case MUSE_DT_F64:
		return ld_bits(s + 8 * i, 8);
	case MUSE_DT_F32:
		return f32_to_f64_bits((uint32_t)ld_bits(s + 4 * i, 4));
	case MUSE_DT_F16:
		f = muse_f16_to_f32((uint16_t)ld_bits(s + 2 * i, 2));
		break;
	case MUSE_DT_BF16:
		f = muse_bf16_to_f32((uint16_t)ld_bits(s + 2 * i, 2));
		break;
	case MUSE_DT_F8_E4M3:
		f = muse_f8e4m3_to_f32(s[i]);
		break;
	case MUSE_DT_F8_E5M2:
		f = muse_f8e5m2_to_f32(s[i]);
		break;
	case MUSE_DT_F8_E8M0:
		f = muse_f8e8m0_to_f32(s[i]);
		break;
	case MUSE_DT_F8_E4M3FNUZ:
		f = e4m3fnuz_to_f32(s[i]);
		break;
	case MUSE_DT_F8_E5M2FNUZ:
		f = e5m2fnuz_to_f32(s[i]);
		break;
	default:
		return 0;
	}
	return f32_to_f64_bits(f2u(f));
}

static void store_from_f64(muse_dtype t, unsigned char *d, size_t i, uint64_t u)
{
	size_t size = muse_dtype_info(t)->block_bytes;
	if (t == MUSE_DT_F64)
		st_bits(d + 8 * i, 8, u);
	else
		st_bits(d + size * i, size, enc_from_f64(t, u));
}

static int int_is_signed(muse_dtype t)
{
	return t == MUSE_DT_I8 || t == MUSE_DT_I16 || t == MUSE_DT_I32 || t == MUSE_DT_I64;
}

/* Element i of integer type t as its 64-bit two's complement pattern (sign-extended). */
static uint64_t load_int(muse_dtype t, const unsigned char *s, size_t i)
{
	size_t size = muse_dtype_info(t)->block_bytes;
	uint64_t v = ld_bits(s + size * i, size);
	if (t == MUSE_DT_BOOL)
		return v != 0;
	if (int_is_signed(t) && size < 8 && (v >> (8 * size - 1)) & 1)
		v |= ~UINT64_C(0) << (8 * size); /* sign-extend */
	return v;
}

static void store_int(muse_dtype t, unsigned char *d, size_t i, uint64_t v)
{
	size_t size = muse_dtype_info(t)->block_bytes;
	if (t == MUSE_DT_BOOL)
		v = v != 0;
	st_bits(d + size * i, size, v); /* keeps the low bytes: numpy's wrap-around */
}

/*
 * Integer (pattern v of type t) -> f64 bits. With odd = 0 it rounds to nearest even (the F64
 * result); with odd = 1 it rounds to odd, keeping a sticky bit so that a second rounding to at
 * most 51 bits (every other float type) is the correct single rounding.
 */
static uint64_t int_to_f64_bits(muse_dtype t, uint64_t v, int odd)
{
	uint64_t sign = 0, mag = v;
	if (int_is_signed(t) && (v >> 63)) {
		sign = F64_SIGN;
		mag = ~v + 1; /* |INT64_MIN| = 2^63 fits */
	}
	if (!mag)
		return sign;
	unsigned p = 63 - (unsigned)__builtin_clzll(mag);
	uint64_t q = mag;
	int exp = 0;
	if (p > 52) {
		unsigned sh = p - 52;
		if (odd) {
			q = (mag >> sh) | ((mag & ((UINT64_C(1) << sh) - 1)) != 0);
		} else {
			q = rne_shr64(mag, sh);
		}
		exp = (int)sh;
		if (q >> 53) { /* RNE carried to 2^53 */
			q >>= 1;
			exp++;
		}
	}
	/* q < 2^53 exactly representable; value = q * 2^exp */
	unsigned qp = 63 - (unsigned)__builtin_clzll(q);
	uint64_t bexp = (uint64_t)(qp + (unsigned)exp + 1023);
	return sign | (bexp << 52) | ((q << (52 - qp)) & UINT64_C(0xFFFFFFFFFFFFF));
}

/* f64 bits -> integer pattern for type t: truncation, saturation, NaN -> 0 (see top). */
static uint64_t f64_to_int(muse_dtype t, uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	if (t == MUSE_DT_BOOL)
		return d != 0.0 || d != d;
	if (d != d)
		return 0;
	unsigned bits = 8 * muse_dtype_info(t)->block_bytes;
	if (int_is_signed(t)) {
		double lim = (double)(UINT64_C(1) << (bits - 1)); /* 2^(bits-1), exact */
		int64_t lo = bits == 64 ? INT64_MIN : -(int64_t)(UINT64_C(1) << (bits - 1));
		int64_t hi = bits == 64 ? INT64_MAX : (int64_t)(UINT64_C(1) << (bits - 1)) - 1;
		/* truncation stays in range iff -lim - 1 < d < lim; for 64 bits -lim-1 rounds to -lim */
		if (d >= lim)
			return (uint64_t)hi;
		if (bits == 64 ? d < -lim : d <= -lim - 1.0)
			return (uint64_t)lo;
		return (uint64_t)(int64_t)d;
	}
	double lim = bits == 64 ? 18446744073709551616.0 : (double)(UINT64_C(1) << bits);
	if (d >= lim)
		return bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
	if (d <= -1.0)
		return 0;
	return (uint64_t)d; /* -1 < d < 2^bits: the truncation is representable */
}

/* ---- dispatch ---- */

enum kind { K_NONE, K_F32ISH, K_F64, K_INT };

static enum kind kind_of(muse_dtype t)
{
	switch (t) {
	case MUSE_DT_F32:
	case MUSE_DT_F16:
	case MUSE_DT_BF16:
	case MUSE_DT_F8_E4M3:
	case MUSE_DT_F8_E5M2:
	case MUSE_DT_F8_E8M0:
	case MUSE_DT_F8_E4M3FNUZ:
	case MUSE_DT_F8_E5M2FNUZ:
		return K_F32ISH;
	case MUSE_DT_F64:
		return K_F64;
	case MUSE_DT_I8:
	case MUSE_DT_I16:
	case MUSE_DT_I32:
	case MUSE_DT_I64:
	case MUSE_DT_U8:
	case MUSE_DT_U16:
	case MUSE_DT_U32:
	case MUSE_DT_U64:
	case MUSE_DT_BOOL:
		return K_INT;
	default:
		return K_NONE;
	}
}

typedef struct plan {
	muse_dtype dt, st;
	enum kind dk, sk;
	size_t dsize, ssize;
	muse_cvt_kernel to_f32, from_f32; /* for K_F32ISH pairs */
} plan;

/* Converts n elements; dst and src point at the span's first element. */
static void convert_span(const plan *pl, unsigned char *dst, const unsigned char *src, size_t n)
{
	if (pl->sk == K_F32ISH && pl->dk == K_F32ISH) {
		if (pl->st == MUSE_DT_F32) {
			pl->from_f32(dst, src, n);
		} else if (pl->dt == MUSE_DT_F32) {
			pl->to_f32(dst, src, n);
		} else {
			/* f32 holds every value of these types exactly: one rounding, on the way out */
			float tmp[RELAY_N];
			for (size_t i = 0; i < n; i += RELAY_N) {
				size_t m = n - i < RELAY_N ? n - i : RELAY_N;
				pl->to_f32(tmp, src + i * pl->ssize, m);
				pl->from_f32(dst + i * pl->dsize, tmp, m);
			}
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (pl->sk == K_INT && pl->dk == K_INT) {
			store_int(pl->dt, dst, i, load_int(pl->st, src, i));
		} else if (pl->sk == K_INT) {
			uint64_t u = int_to_f64_bits(pl->st, load_int(pl->st, src, i), pl->dt != MUSE_DT_F64);
			store_from_f64(pl->dt, dst, i, u);
		} else if (pl->dk == K_INT) {
			store_int(pl->dt, dst, i, f64_to_int(pl->dt, load_as_f64(pl->st, src, i)));
		} else {
			store_from_f64(pl->dt, dst, i, load_as_f64(pl->st, src, i));
		}
	}
}

static const char *unsupported_why(muse_dtype t)
{
	const muse_dtype_traits *tr = muse_dtype_info(t);
	if (tr->is_quant)
		return "block-quantized type: quantize or dequantize it instead";
	if (t == MUSE_DT_C64 || t == MUSE_DT_C128)
		return "complex type";
	if (tr->blck > 1)
		return "packed sub-byte type";
	return "type without an element conversion";
}

static muse_status convert(muse_dtype dt, void *dst, muse_dtype st, const void *src, size_t n,
			   int fast, muse_err *err)
{
	const muse_dtype_traits *dtr = muse_dtype_info(dt), *str = muse_dtype_info(st);
	if (!dtr || !str)
		return muse_err_set(err, MUSE_ERR_USAGE, "dtype conversion: invalid dtype %d -> %d",
				    (int)st, (int)dt);
	plan pl = { dt, st, kind_of(dt), kind_of(st), dtr->block_bytes, str->block_bytes, NULL, NULL };
	if (dt != st && (pl.sk == K_NONE || pl.dk == K_NONE)) {
		muse_dtype bad = pl.sk == K_NONE ? st : dt;
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "dtype conversion %s -> %s: not supported (%s is a %s)", str->name,
				    dtr->name, muse_dtype_name(bad), unsupported_why(bad));
	}
	uint64_t sbytes, dbytes;
	if (!muse_dtype_nbytes(st, n, &sbytes) || !muse_dtype_nbytes(dt, n, &dbytes) ||
	    sbytes > SIZE_MAX || dbytes > SIZE_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT,
				    "dtype conversion %s -> %s: %zu elements are not whole blocks or too many",
				    str->name, dtr->name, n);
	if (n && (!dst || !src))
		return muse_err_set(err, MUSE_ERR_USAGE, "dtype conversion %s -> %s: NULL buffer",
				    str->name, dtr->name);
	if (!n)
		return MUSE_OK;
	if (dt == st) {
		if (dst != src)
			memmove(dst, src, (size_t)sbytes);
		return MUSE_OK;
	}
	const muse_cvt_simd *simd = fast ? muse_cvt_simd_get() : NULL;
	if (pl.sk == K_F32ISH && pl.dk == K_F32ISH) {
		pl.to_f32 = f32_kernel(st, 1, simd);
		pl.from_f32 = f32_kernel(dt, 0, simd);
	}
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (!fast || n < 2 * CVT_CHUNK) {
		convert_span(&pl, d, s, n);
		return MUSE_OK;
	}
	size_t nchunks = (n + CVT_CHUNK - 1) / CVT_CHUNK;
	/* elementwise: any split gives the same bytes, so the thread count cannot change the output */
#pragma omp parallel for schedule(static)
	for (size_t c = 0; c < nchunks; c++) {
		size_t i0 = c * CVT_CHUNK, m = n - i0 < CVT_CHUNK ? n - i0 : CVT_CHUNK;
		convert_span(&pl, d + i0 * pl.dsize, s + i0 * pl.ssize, m);
	}
	return MUSE_OK;
}

muse_status muse_dtype_convert(muse_dtype dt, void *dst, muse_dtype st, const void *src, size_t n,
			       muse_err *err)
{
	return convert(dt, dst, st, src, n, 1, err);
}

muse_status muse_dtype_convert_ref(muse_dtype dt, void *dst, muse_dtype st, const void *src,
				   size_t n, muse_err *err)
{
	return convert(dt, dst, st, src, n, 0, err);
}

const char *muse_dtype_simd_name(void)
{
	const muse_cvt_simd *simd = muse_cvt_simd_get();
	return simd ? simd->name : "scalar";
}
