/* test_dtype.c: dtype conversions: fast path vs scalar reference, rounding ties, specials, threads, ints, errors. */
/*
 * Modes:
 *   test_dtype                                   the unit tests (PASS/FAIL lines)
 *   test_dtype convert [--ref] SRC DST IN OUT    converts the raw file IN (elements of SRC) into OUT;
 *                                                tests/interop/test_dtype.py drives it against torch
 *   test_dtype exhaustive                        every 2^32 f32 pattern through every f32 encoder:
 *                                                fast == reference == the f64 (generic) path; slow
 *                                                under ASan, meant for a release build, run by hand
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/dtype.h"
#include "unit.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
	/* splitmix64: fixed seed, so every run tests the same patterns */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static size_t esize(muse_dtype t)
{
	return muse_dtype_info(t)->block_bytes;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* Converts with both paths; CHECKs both succeed and agree byte for byte. Returns the fast output (caller frees). */
static void *convert_both(muse_dtype dt, muse_dtype st, const void *src, size_t n)
{
	muse_err err;
	void *a = xmalloc(n * esize(dt)), *b = xmalloc(n * esize(dt));
	CHECK(muse_dtype_convert(dt, a, st, src, n, &err) == MUSE_OK);
	CHECK(muse_dtype_convert_ref(dt, b, st, src, n, &err) == MUSE_OK);
	if (memcmp(a, b, n * esize(dt))) {
		size_t w = esize(dt);
		for (size_t i = 0; i < n; i++)
			if (memcmp((char *)a + i * w, (char *)b + i * w, w)) {
				uint64_t in = 0, fa = 0, fb = 0;
				memcpy(&in, (const char *)src + i * esize(st), esize(st));
				memcpy(&fa, (char *)a + i * w, w);
				memcpy(&fb, (char *)b + i * w, w);
				printf("#   %s -> %s element %zu: input 0x%llx fast 0x%llx ref 0x%llx\n",
				       muse_dtype_name(st), muse_dtype_name(dt), i, (unsigned long long)in,
				       (unsigned long long)fa, (unsigned long long)fb);
				break;
			}
		CHECK(!"fast path differs from the reference");
	}
	free(b);
	return a;
}

static const muse_dtype small_floats[] = { MUSE_DT_F16, MUSE_DT_BF16, MUSE_DT_F8_E4M3, MUSE_DT_F8_E5M2,
					   MUSE_DT_F8_E8M0, MUSE_DT_F8_E4M3FNUZ, MUSE_DT_F8_E5M2FNUZ };
#define N_SMALL (sizeof small_floats / sizeof *small_floats)

/* All codes of a 1- or 2-byte type, in order. */
static void *all_codes(muse_dtype t, size_t *n)
{
	*n = esize(t) == 1 ? 256 : 65536;
	unsigned char *p = xmalloc(*n * esize(t));
	for (size_t i = 0; i < *n; i++) {
		uint16_t v = (uint16_t)i;
		memcpy(p + i * esize(t), &v, esize(t));
	}
	return p;
}

/* Independent decoder: the value of a finite code from its fields, via ldexp. */
static double field_value(uint32_t c, int ebits, int mbits, int bias)
{
	uint32_t sign = c >> (ebits + mbits) & 1, e = (c >> mbits) & ((1u << ebits) - 1), m = c & ((1u << mbits) - 1);
	double v = e ? ldexp((double)((1u << mbits) | m), (int)e - bias - mbits) : ldexp((double)m, 1 - bias - mbits);
	return sign ? -v : v;
}

/* Every code of every small type: fast == reference, and finite codes equal the field formula. */
static void decode_tables(void)
{
	for (size_t k = 0; k < N_SMALL; k++) {
		muse_dtype t = small_floats[k];
		size_t n;
		uint8_t *codes = all_codes(t, &n);
		float *f = convert_both(MUSE_DT_F32, t, codes, n);
		for (uint32_t c = 0; c < n; c++) {
			uint32_t u = f2u(f[c]);
			double want;
			switch (t) {
			case MUSE_DT_F16:
				if ((c & 0x7C00) == 0x7C00) {
					uint32_t m = c & 0x3FF;
					CHECK_EQ_U64(u, ((c & 0x8000) << 16) | 0x7F800000 | (m << 13) | (m ? 0x400000 : 0));
					continue;
				}
				want = field_value(c, 5, 10, 15);
				break;
			case MUSE_DT_BF16:
				CHECK_EQ_U64(u, c << 16);
				continue;
			case MUSE_DT_F8_E4M3:
				if ((c & 0x7F) == 0x7F) {
					CHECK_EQ_U64(u, ((c & 0x80) << 24) | 0x7FF00000);
					continue;
				}
				want = field_value(c, 4, 3, 7);
				break;
			case MUSE_DT_F8_E5M2:
				if ((c & 0x7C) == 0x7C) {
					CHECK_EQ_U64(u, f2u(muse_f16_to_f32((uint16_t)(c << 8))));
					CHECK(c & 3 ? isnan(f[c]) : isinf(f[c]));
					continue;
				}
				want = field_value(c, 5, 2, 15);
				break;
			case MUSE_DT_F8_E8M0:
				if (c == 0xFF) {
					CHECK_EQ_U64(u, 0x7F800001);
					continue;
				}
				want = ldexp(1.0, (int)c - 127);
				break;
			case MUSE_DT_F8_E4M3FNUZ:
			case MUSE_DT_F8_E5M2FNUZ:
				if (c == 0x80) {
					CHECK_EQ_U64(u, 0x7F800001);
					continue;
				}
				want = t == MUSE_DT_F8_E4M3FNUZ ? field_value(c, 4, 3, 8) : field_value(c, 5, 2, 16);
				break;
			default:
				want = 0;
			}
			CHECK((double)f[c] == want);
			CHECK(!signbit(f[c]) == !signbit(want));
		}
		/* the scalar entry points agree with the table */
		for (uint32_t c = 0; c < n; c += 1 + (n > 256) * 7) {
			float s = t == MUSE_DT_F16	    ? muse_f16_to_f32((uint16_t)c)
				  : t == MUSE_DT_BF16	    ? muse_bf16_to_f32((uint16_t)c)
				  : t == MUSE_DT_F8_E4M3 ? muse_f8e4m3_to_f32((uint8_t)c)
				  : t == MUSE_DT_F8_E5M2 ? muse_f8e5m2_to_f32((uint8_t)c)
				  : t == MUSE_DT_F8_E8M0 ? muse_f8e8m0_to_f32((uint8_t)c)
							 : f[c];
			CHECK_EQ_U64(f2u(s), f2u(f[c]));
		}
		free(f);
		free(codes);
	}
}

/* Round trip: every non-NaN code survives code -> f32 -> code (and -> f64 -> code). */
static void round_trip(void)
{
	for (size_t k = 0; k < N_SMALL; k++) {
		muse_dtype t = small_floats[k];
		size_t n;
		uint8_t *codes = all_codes(t, &n);
		float *f = convert_both(MUSE_DT_F32, t, codes, n);
		uint8_t *back = convert_both(t, MUSE_DT_F32, f, n);
		double *d = convert_both(MUSE_DT_F64, t, codes, n);
		uint8_t *back64 = convert_both(t, MUSE_DT_F64, d, n);
		for (size_t i = 0; i < n; i++) {
			if (isnan(f[i]))
				continue;
			CHECK(!memcmp(back + i * esize(t), codes + i * esize(t), esize(t)));
			CHECK(!memcmp(back64 + i * esize(t), codes + i * esize(t), esize(t)));
			CHECK(d[i] == (double)f[i]);
		}
		free(f);
		free(back);
		free(d);
		free(back64);
		free(codes);
	}
}

static uint32_t code_of(muse_dtype t, float x)
{
	uint16_t v = 0;
	muse_err err;
	CHECK(muse_dtype_convert_ref(t, &v, MUSE_DT_F32, &x, 1, &err) == MUSE_OK);
	uint16_t w = 0;
	CHECK(muse_dtype_convert(t, &w, MUSE_DT_F32, &x, 1, &err) == MUSE_OK);
	CHECK(v == w);
	return v;
}

/*
 * Every tie: for each pair of adjacent positive finite codes (c, c+1) the exact midpoint must go
 * to the even one, and one f32 ulp either side to the nearer one. The top pair uses the value
 * one ulp above the largest finite number, which is where overflow starts. Negative values mirror.
 * Written against decoded values only, so it checks the encoders independently of their code.
 */
static void rne_ties(void)
{
	const muse_dtype types[] = { MUSE_DT_F16, MUSE_DT_BF16, MUSE_DT_F8_E4M3, MUSE_DT_F8_E5M2,
				     MUSE_DT_F8_E4M3FNUZ, MUSE_DT_F8_E5M2FNUZ };
	for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
		muse_dtype t = types[k];
		uint32_t maxfin = t == MUSE_DT_F16 ? 0x7BFF : t == MUSE_DT_BF16 ? 0x7F7F : t == MUSE_DT_F8_E4M3 ? 0x7E
				  : t == MUSE_DT_F8_E5M2 ? 0x7B : 0x7F;
		/* what overflow gives: Inf for f16/bf16/e5m2, 448 for e4m3 (saturates), NaN for fnuz */
		uint32_t ovf = t == MUSE_DT_F16 ? 0x7C00 : t == MUSE_DT_BF16 ? 0x7F80 : t == MUSE_DT_F8_E4M3 ? 0x7E
			       : t == MUSE_DT_F8_E5M2 ? 0x7C : 0x80;
		uint32_t sbit = esize(t) == 2 ? 0x8000 : 0x80;
		int fnuz = t == MUSE_DT_F8_E4M3FNUZ || t == MUSE_DT_F8_E5M2FNUZ;
		for (uint32_t c = 0; c <= maxfin; c++) {
			double lo, hi;
			muse_err err;
			uint16_t cc = (uint16_t)c;
			float flo;
			CHECK(muse_dtype_convert_ref(MUSE_DT_F32, &flo, t, &cc, 1, &err) == MUSE_OK);
			lo = flo;
			if (c < maxfin) {
				float fhi;
				cc = (uint16_t)(c + 1);
				CHECK(muse_dtype_convert_ref(MUSE_DT_F32, &fhi, t, &cc, 1, &err) == MUSE_OK);
				hi = fhi;
			} else {
				/* one ulp above the largest finite value: lo + (lo - previous) */
				float fprev;
				cc = (uint16_t)(c - 1);
				CHECK(muse_dtype_convert_ref(MUSE_DT_F32, &fprev, t, &cc, 1, &err) == MUSE_OK);
				hi = lo + (lo - fprev);
			}
			float mid = (float)((lo + hi) / 2); /* exact: at most 13 significant bits */
			CHECK((double)mid == (lo + hi) / 2);
			uint32_t up = c < maxfin ? c + 1 : ovf, even = (c & 1) ? up : c;
			float below = nextafterf(mid, 0.0f), above = nextafterf(mid, INFINITY);
			CHECK_EQ_U64(code_of(t, mid), even);
			CHECK_EQ_U64(code_of(t, below), c);
			CHECK_EQ_U64(code_of(t, above), up);
			/* mirrored: -0 does not exist in fnuz types, their NaN has no sign */
			uint32_t nsign_c = (fnuz && c == 0) ? 0 : sbit;
			uint32_t nup = (up == ovf && fnuz) ? ovf : up | sbit;
			CHECK_EQ_U64(code_of(t, -below), c | nsign_c);
			CHECK_EQ_U64(code_of(t, -above), nup);
			if (c == 0 || c == maxfin / 2 || c == maxfin) /* exact values map to themselves */
				CHECK_EQ_U64(code_of(t, (float)lo), c);
		}
	}
}

/* Hand-written expectations for the specials, per type. */
static void specials(void)
{
	const float inf = INFINITY;
	struct {
		float x;
		uint16_t f16, bf16;
		uint8_t e4m3, e5m2, e8m0, e4fnuz, e5fnuz;
	} cases[] = {
		/* x           f16     bf16    e4m3  e5m2  e8m0  e4fz  e5fz   (values from torch 2.15) */
		{ 0.0f, 0x0000, 0x0000, 0x00, 0x00, 0x00, 0x00, 0x00 },
		{ -0.0f, 0x8000, 0x8000, 0x80, 0x80, 0x00, 0x00, 0x00 },
		{ 1.0f, 0x3C00, 0x3F80, 0x38, 0x3C, 0x7F, 0x40, 0x40 },
		{ -2.0f, 0xC000, 0xC000, 0xC0, 0xC0, 0x80, 0xC8, 0xC4 },
		{ inf, 0x7C00, 0x7F80, 0x7E, 0x7C, 0xFF, 0x80, 0x80 },
		{ -inf, 0xFC00, 0xFF80, 0xFE, 0xFC, 0xFF, 0x80, 0x80 },
		{ 448.0f, 0x5F00, 0x43E0, 0x7E, 0x5F, 0x88, 0x80, 0x63 },
		{ 464.0f, 0x5F40, 0x43E8, 0x7E, 0x5F, 0x88, 0x80, 0x63 },
		{ 464.5f, 0x5F42, 0x43E8, 0x7E, 0x5F, 0x88, 0x80, 0x63 },
		{ -500.0f, 0xDFD0, 0xC3FA, 0xFE, 0xE0, 0x88, 0x80, 0xE4 },
		{ 240.0f, 0x5B80, 0x4370, 0x77, 0x5C, 0x87, 0x7F, 0x60 },
		{ 57344.0f, 0x7B00, 0x4760, 0x7E, 0x7B, 0x8F, 0x80, 0x7F },
		{ 65504.0f, 0x7BFF, 0x4780, 0x7E, 0x7C, 0x8F, 0x80, 0x80 },
		{ 65520.0f, 0x7C00, 0x4780, 0x7E, 0x7C, 0x8F, 0x80, 0x80 },
		{ 1.5f, 0x3E00, 0x3FC0, 0x3C, 0x3E, 0x80, 0x44, 0x42 },
		{ 0x1p-24f, 0x0001, 0x3380, 0x00, 0x00, 0x67, 0x00, 0x00 },
		{ 0x1p-25f, 0x0000, 0x3300, 0x00, 0x00, 0x66, 0x00, 0x00 },
		{ -0x1p-9f, 0x9800, 0xBB00, 0x81, 0x98, 0x76, 0x82, 0x9C },
		{ 0x1p-127f, 0x0000, 0x0040, 0x00, 0x00, 0x00, 0x00, 0x00 },
		{ 0x1.2p-127f, 0x0000, 0x0048, 0x00, 0x00, 0x01, 0x00, 0x00 },
		{ 0x1p-149f, 0x0000, 0x0000, 0x00, 0x00, 0x00, 0x00, 0x00 },
		{ 0x1.8p127f, 0x7C00, 0x7F40, 0x7E, 0x7C, 0xFF, 0x80, 0x80 },
		{ 0x1.7ffffep127f, 0x7C00, 0x7F40, 0x7E, 0x7C, 0xFE, 0x80, 0x80 },
		{ 3.4028235e38f, 0x7C00, 0x7F80, 0x7E, 0x7C, 0xFF, 0x80, 0x80 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		float x = cases[i].x;
		CHECK_EQ_U64(code_of(MUSE_DT_F16, x), cases[i].f16);
		CHECK_EQ_U64(code_of(MUSE_DT_BF16, x), cases[i].bf16);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E4M3, x), cases[i].e4m3);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E5M2, x), cases[i].e5m2);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E8M0, x), cases[i].e8m0);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E4M3FNUZ, x), cases[i].e4fnuz);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E5M2FNUZ, x), cases[i].e5fnuz);
		CHECK_EQ_U64(muse_f32_to_f16(x), cases[i].f16);
		CHECK_EQ_U64(muse_f32_to_bf16(x), cases[i].bf16);
		CHECK_EQ_U64(muse_f32_to_f8e4m3(x), cases[i].e4m3);
		CHECK_EQ_U64(muse_f32_to_f8e5m2(x), cases[i].e5m2);
		CHECK_EQ_U64(muse_f32_to_f8e8m0(x), cases[i].e8m0);
	}
	/* NaNs: quiet, sign and top payload kept where the type has room, else the type's NaN */
	struct {
		uint32_t x;
		uint16_t f16, bf16;
		uint8_t e4m3, e5m2;
	} nans[] = {
		{ 0x7FC00000, 0x7E00, 0x7FC0, 0x7F, 0x7F },
		{ 0xFFC00000, 0xFE00, 0xFFC0, 0xFF, 0xFF },
		{ 0x7F800001, 0x7E00, 0x7FC0, 0x7F, 0x7F }, /* signalling, payload below the kept bits */
		{ 0x7FA00000, 0x7F00, 0x7FE0, 0x7F, 0x7F }, /* signalling with a kept payload */
		{ 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0xFF, 0xFF },
		{ 0x7F812345, 0x7E09, 0x7FC1, 0x7F, 0x7F },
	};
	for (size_t i = 0; i < sizeof nans / sizeof *nans; i++) {
		float x = u2f(nans[i].x);
		CHECK_EQ_U64(code_of(MUSE_DT_F16, x), nans[i].f16);
		CHECK_EQ_U64(code_of(MUSE_DT_BF16, x), nans[i].bf16);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E4M3, x), nans[i].e4m3);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E5M2, x), nans[i].e5m2);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E8M0, x), 0xFF);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E4M3FNUZ, x), 0x80);
		CHECK_EQ_U64(code_of(MUSE_DT_F8_E5M2FNUZ, x), 0x80);
		/* f32 -> f64 -> f32 keeps a quieted NaN, like cvtss2sd/cvtsd2ss */
		double d;
		float back;
		muse_err err;
		CHECK(muse_dtype_convert(MUSE_DT_F64, &d, MUSE_DT_F32, &x, 1, &err) == MUSE_OK);
		CHECK(muse_dtype_convert(MUSE_DT_F32, &back, MUSE_DT_F64, &d, 1, &err) == MUSE_OK);
		CHECK_EQ_U64(f2u(back), nans[i].x | 0x400000);
	}
}

/* f32 patterns that stress every encoder: random bits, exact ties of each format, specials. */
static uint32_t *stress_patterns(size_t *n)
{
	const size_t nrand = 1u << 21;
	const unsigned drops[] = { 13, 16, 20, 21 }; /* dropped mantissa bits of f16, bf16, e4m3, e5m2 */
	size_t cap = nrand + 65536 * 4 * 3 + 64, k = 0;
	uint32_t *u = xmalloc(cap * 4);
	for (size_t i = 0; i < nrand; i++)
		u[k++] = (uint32_t)rng();
	for (uint32_t hi = 0; hi < 65536; hi++)
		for (size_t j = 0; j < 4; j++) {
			uint32_t d = drops[j], half = 1u << (d - 1);
			uint32_t base = (hi << 16 | (uint32_t)(rng() & 0xFFFF)) & ~((1u << d) - 1);
			u[k++] = base | half;
			u[k++] = base | (half - 1);
			u[k++] = base | (half + 1);
		}
	const uint32_t sp[] = { 0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
				0x7FFFFFFF, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x3F800000 };
	for (size_t i = 0; i < sizeof sp / sizeof *sp; i++)
		u[k++] = sp[i];
	*n = k;
	return u;
}

/* fast == reference for every f32 encoder and the f32 path equals the generic f64 path. */
static void encode_fast_vs_ref(void)
{
	size_t n;
	uint32_t *u = stress_patterns(&n);
	double *d = convert_both(MUSE_DT_F64, MUSE_DT_F32, u, n);
	for (size_t k = 0; k < N_SMALL; k++) {
		muse_dtype t = small_floats[k];
		void *a = convert_both(t, MUSE_DT_F32, u, n);
		void *b = convert_both(t, MUSE_DT_F64, d, n);
		CHECK(!memcmp(a, b, n * esize(t)));
		if (memcmp(a, b, n * esize(t)))
			printf("#   %s: f32 path and f64 path differ\n", muse_dtype_name(t));
		/* unaligned source and destination */
		unsigned char *src1 = xmalloc(n * 4 + 1), *dst1 = xmalloc(n * esize(t) + 1);
		memcpy(src1 + 1, u, n * 4);
		muse_err err;
		CHECK(muse_dtype_convert(t, dst1 + 1, MUSE_DT_F32, src1 + 1, n, &err) == MUSE_OK);
		CHECK(!memcmp(dst1 + 1, a, n * esize(t)));
		free(src1);
		free(dst1);
		free(a);
		free(b);
	}
	/* f32 -> f64 -> f32 is the identity for non-NaN */
	float *back = convert_both(MUSE_DT_F32, MUSE_DT_F64, d, n);
	for (size_t i = 0; i < n; i++)
		if (!isnan(back[i]))
			CHECK_EQ_U64(f2u(back[i]), u[i]);
	free(back);
	free(d);
	free(u);
}

/* Conversions between two non-f32 types go through f32 exactly once. */
static void cross_pairs(void)
{
	for (size_t i = 0; i < N_SMALL; i++) {
		size_t n;
		uint8_t *codes = all_codes(small_floats[i], &n);
		float *f = convert_both(MUSE_DT_F32, small_floats[i], codes, n);
		for (size_t j = 0; j < N_SMALL; j++) {
			muse_dtype t = small_floats[j];
			void *direct = convert_both(t, small_floats[i], codes, n);
			void *via = convert_both(t, MUSE_DT_F32, f, n);
			if (i == j) { /* a copy: signalling NaNs are not quieted as through f32 */
				CHECK(!memcmp(direct, codes, n * esize(t)));
				free(direct);
				free(via);
				continue;
			}
			CHECK(!memcmp(direct, via, n * esize(t)));
			if (memcmp(direct, via, n * esize(t)))
				printf("#   %s -> %s differs from the route through f32\n",
				       muse_dtype_name(small_floats[i]), muse_dtype_name(t));
			free(direct);
			free(via);
		}
		free(f);
		free(codes);
	}
	/* in place when the sizes match */
	size_t n;
	uint16_t *h = all_codes(MUSE_DT_F16, &n);
	void *want = convert_both(MUSE_DT_BF16, MUSE_DT_F16, h, n);
	muse_err err;
	CHECK(muse_dtype_convert(MUSE_DT_BF16, h, MUSE_DT_F16, h, n, &err) == MUSE_OK);
	CHECK(!memcmp(h, want, n * 2));
	free(want);
	free(h);
}

/* f64 sources round once: cases where rounding through f32 first would be wrong. */
static void f64_single_rounding(void)
{
	struct {
		double x;
		muse_dtype t;
		uint32_t want;
	} cases[] = {
		{ 1.0 + 0x1p-11 + 0x1p-40, MUSE_DT_F16, 0x3C01 },  /* via f32: a tie, would give 0x3C00 */
		{ 1.0 + 0x1p-11 - 0x1p-40, MUSE_DT_F16, 0x3C00 },
		{ 1.0 + 0x1p-8 + 0x1p-40, MUSE_DT_BF16, 0x3F81 },
		{ 1.0 + 0x1p-4 + 0x1p-40, MUSE_DT_F8_E4M3, 0x39 },
		{ 1.0 + 0x1p-24 + 0x1p-40, MUSE_DT_F32, 0x3F800001 },
		{ 1.0 + 0x1p-24, MUSE_DT_F32, 0x3F800000 },
		{ 1e300, MUSE_DT_F32, 0x7F800000 },
		{ -1e300, MUSE_DT_F16, 0xFC00 },
		{ 1e300, MUSE_DT_F8_E4M3, 0x7E },
		{ -1e300, MUSE_DT_F8_E5M2, 0xFC },
		{ 1e300, MUSE_DT_F8_E4M3FNUZ, 0x80 },
		{ 1e-300, MUSE_DT_F32, 0 },
		{ -1e-300, MUSE_DT_BF16, 0x8000 },
		{ 0x1p-1074, MUSE_DT_F16, 0 },
		{ 0x1.8p-150, MUSE_DT_F32, 1 },  /* above half the smallest subnormal */
		{ 0x1p-150, MUSE_DT_F32, 0 },    /* exactly half: ties to even (0) */
		{ 1e300, MUSE_DT_F8_E8M0, 0xFF },
		{ 0x1.7p3, MUSE_DT_F8_E8M0, 0x82 },
		{ 0x1.8p3, MUSE_DT_F8_E8M0, 0x83 },
		{ 0x1.000001p-127, MUSE_DT_F8_E8M0, 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		uint32_t got = 0;
		muse_err err;
		CHECK(muse_dtype_convert(cases[i].t, &got, MUSE_DT_F64, &cases[i].x, 1, &err) == MUSE_OK);
		if (got != cases[i].want)
			printf("#   case %zu: %a -> %s gave 0x%x, want 0x%x\n", i, cases[i].x,
			       muse_dtype_name(cases[i].t), got, cases[i].want);
		CHECK_EQ_U64(got, cases[i].want);
	}
}

/* 1 thread and several threads give the same bytes, for inputs past the threading threshold. */
static void threads_identical(void)
{
	const size_t n = 1000003; /* > 2 chunks, not a multiple of anything */
	uint32_t *u = xmalloc(n * 4);
	for (size_t i = 0; i < n; i++)
		u[i] = (uint32_t)rng();
	const muse_dtype outs[] = { MUSE_DT_F16, MUSE_DT_BF16, MUSE_DT_F8_E4M3, MUSE_DT_F8_E8M0, MUSE_DT_F64, MUSE_DT_I32 };
	int saved = omp_get_max_threads();
	for (size_t k = 0; k < sizeof outs / sizeof *outs; k++) {
		muse_dtype t = outs[k];
		void *ref = convert_both(t, MUSE_DT_F32, u, n);
		int counts[] = { 1, 2, 3, 7 };
		for (size_t c = 0; c < 4; c++) {
			omp_set_num_threads(counts[c]);
			void *out = xmalloc(n * esize(t));
			muse_err err;
			CHECK(muse_dtype_convert(t, out, MUSE_DT_F32, u, n, &err) == MUSE_OK);
			CHECK(!memcmp(out, ref, n * esize(t)));
			if (t == MUSE_DT_BF16) { /* and back, through a two-byte relay */
				void *h = xmalloc(n * 2), *h1 = xmalloc(n * 2);
				CHECK(muse_dtype_convert(MUSE_DT_F16, h, MUSE_DT_BF16, out, n, &err) == MUSE_OK);
				CHECK(muse_dtype_convert_ref(MUSE_DT_F16, h1, MUSE_DT_BF16, out, n, &err) == MUSE_OK);
				CHECK(!memcmp(h, h1, n * 2));
				free(h);
				free(h1);
			}
			free(out);
		}
		free(ref);
	}
	omp_set_num_threads(saved);
	free(u);
}

static uint64_t one_int(muse_dtype dt, muse_dtype st, const void *src)
{
	uint64_t out = 0, out2 = 0;
	muse_err err;
	CHECK(muse_dtype_convert(dt, &out, st, src, 1, &err) == MUSE_OK);
	CHECK(muse_dtype_convert_ref(dt, &out2, st, src, 1, &err) == MUSE_OK);
	CHECK(out == out2);
	return out;
}

static void int_conversions(void)
{
	/* float -> int: truncation toward zero, saturation, NaN -> 0 */
	struct {
		double x;
		muse_dtype t;
		uint64_t want;
	} f2i[] = {
		{ 2.9, MUSE_DT_I8, 2 },
		{ -2.9, MUSE_DT_I8, (uint8_t)-2 },
		{ 127.9, MUSE_DT_I8, 127 },
		{ 128.0, MUSE_DT_I8, 127 },
		{ -128.9, MUSE_DT_I8, 0x80 },
		{ -129.0, MUSE_DT_I8, 0x80 },
		{ 1e30, MUSE_DT_I32, 0x7FFFFFFF },
		{ -1e30, MUSE_DT_I32, 0x80000000 },
		{ INFINITY, MUSE_DT_I64, INT64_MAX },
		{ -INFINITY, MUSE_DT_I64, (uint64_t)INT64_MIN },
		{ NAN, MUSE_DT_I64, 0 },
		{ NAN, MUSE_DT_U8, 0 },
		{ -0x1p63, MUSE_DT_I64, (uint64_t)INT64_MIN },
		{ 0x1p63, MUSE_DT_I64, INT64_MAX },
		{ 0x1.fffffffffffffp62, MUSE_DT_I64, 0x7FFFFFFFFFFFFC00ull },
		{ -0.9, MUSE_DT_U8, 0 },
		{ -1.0, MUSE_DT_U8, 0 },
		{ 255.99, MUSE_DT_U8, 255 },
		{ 256.0, MUSE_DT_U8, 255 },
		{ 0x1p64, MUSE_DT_U64, UINT64_MAX },
		{ 0x1.fffffffffffffp63, MUSE_DT_U64, 0xFFFFFFFFFFFFF800ull },
		{ 65535.5, MUSE_DT_U16, 65535 },
		{ -32768.5, MUSE_DT_I16, 0x8000 },
		{ 0.0, MUSE_DT_BOOL, 0 },
		{ -0.0, MUSE_DT_BOOL, 0 },
		{ 0.1, MUSE_DT_BOOL, 1 },
		{ NAN, MUSE_DT_BOOL, 1 },
	};
	for (size_t i = 0; i < sizeof f2i / sizeof *f2i; i++) {
		uint64_t got = one_int(f2i[i].t, MUSE_DT_F64, &f2i[i].x);
		if (got != f2i[i].want)
			printf("#   f2i case %zu: %a -> %s gave 0x%llx\n", i, f2i[i].x, muse_dtype_name(f2i[i].t),
			       (unsigned long long)got);
		CHECK_EQ_U64(got, f2i[i].want);
		/* the same through f32 when the value is an f32 */
		float f = (float)f2i[i].x;
		if ((double)f == f2i[i].x || isnan(f))
			CHECK_EQ_U64(one_int(f2i[i].t, MUSE_DT_F32, &f), f2i[i].want);
	}
	/* int -> float: correctly rounded, no double rounding */
	int64_t big = (int64_t)((1ull << 60) + (1ull << 52) + 1); /* just above a bf16 tie */
	uint16_t bf;
	muse_err err;
	CHECK(muse_dtype_convert(MUSE_DT_BF16, &bf, MUSE_DT_I64, &big, 1, &err) == MUSE_OK);
	CHECK_EQ_U64(bf, 0x5D81);                      /* 2^60 * (1 + 2^-7) */
	int64_t tie = (int64_t)((1ull << 60) + (1ull << 52));
	CHECK(muse_dtype_convert(MUSE_DT_BF16, &bf, MUSE_DT_I64, &tie, 1, &err) == MUSE_OK);
	CHECK_EQ_U64(bf, 0x5D80);                      /* exact tie: to even */
	uint64_t u64max = UINT64_MAX;
	float f;
	double d;
	CHECK(muse_dtype_convert(MUSE_DT_F32, &f, MUSE_DT_U64, &u64max, 1, &err) == MUSE_OK);
	CHECK(f == 0x1p64f);
	CHECK(muse_dtype_convert(MUSE_DT_F64, &d, MUSE_DT_U64, &u64max, 1, &err) == MUSE_OK);
	CHECK(d == 0x1p64);
	int64_t i64min = INT64_MIN;
	CHECK(muse_dtype_convert(MUSE_DT_F64, &d, MUSE_DT_I64, &i64min, 1, &err) == MUSE_OK);
	CHECK(d == -0x1p63);
	int64_t odd53 = (1ll << 53) + 1; /* tie in f64: to even */
	CHECK(muse_dtype_convert(MUSE_DT_F64, &d, MUSE_DT_I64, &odd53, 1, &err) == MUSE_OK);
	CHECK(d == 0x1p53);
	int64_t odd53b = (1ll << 53) + 3;
	CHECK(muse_dtype_convert(MUSE_DT_F64, &d, MUSE_DT_I64, &odd53b, 1, &err) == MUSE_OK);
	CHECK(d == 0x1p53 + 4);
	int32_t i70000 = 70000;
	uint16_t h;
	CHECK(muse_dtype_convert(MUSE_DT_F16, &h, MUSE_DT_I32, &i70000, 1, &err) == MUSE_OK);
	CHECK_EQ_U64(h, 0x7C00);
	int8_t m5 = -5;
	CHECK(muse_dtype_convert(MUSE_DT_F8_E4M3, &bf, MUSE_DT_I8, &m5, 1, &err) == MUSE_OK);
	CHECK_EQ_U64(bf & 0xFF, 0xCA); /* -1.25 * 2^2 */
	/* every int -> f32 of a 16-bit range matches the C conversion (exact there) */
	for (int32_t v = -40000; v <= 40000; v += 7) {
		float g;
		CHECK(muse_dtype_convert(MUSE_DT_F32, &g, MUSE_DT_I32, &v, 1, &err) == MUSE_OK);
		CHECK(g == (float)v);
	}
	/* random i64 -> f32/f64 match the C conversion (correctly rounded under the default mode) */
	for (int i = 0; i < 100000; i++) {
		int64_t v = (int64_t)rng() >> (rng() % 64);
		uint64_t uv = rng() >> (rng() % 64);
		float g;
		double e;
		CHECK(muse_dtype_convert(MUSE_DT_F32, &g, MUSE_DT_I64, &v, 1, &err) == MUSE_OK);
		CHECK(g == (float)v);
		CHECK(muse_dtype_convert(MUSE_DT_F64, &e, MUSE_DT_I64, &v, 1, &err) == MUSE_OK);
		CHECK(e == (double)v);
		CHECK(muse_dtype_convert(MUSE_DT_F32, &g, MUSE_DT_U64, &uv, 1, &err) == MUSE_OK);
		CHECK(g == (float)uv);
		CHECK(muse_dtype_convert(MUSE_DT_F64, &e, MUSE_DT_U64, &uv, 1, &err) == MUSE_OK);
		CHECK(e == (double)uv);
	}
	/* int -> int wraps (numpy astype); bool is != 0 both ways */
	int32_t v300 = 300, vneg = -1;
	CHECK_EQ_U64(one_int(MUSE_DT_U8, MUSE_DT_I32, &v300) & 0xFF, 44);
	CHECK_EQ_U64(one_int(MUSE_DT_I8, MUSE_DT_I32, &v300) & 0xFF, 44);
	CHECK_EQ_U64(one_int(MUSE_DT_U64, MUSE_DT_I32, &vneg), UINT64_MAX);
	CHECK_EQ_U64(one_int(MUSE_DT_U16, MUSE_DT_I32, &vneg) & 0xFFFF, 0xFFFF);
	uint8_t u255 = 255;
	CHECK_EQ_U64(one_int(MUSE_DT_I64, MUSE_DT_U8, &u255), 255);
	CHECK_EQ_U64(one_int(MUSE_DT_I64, MUSE_DT_I8, &u255), UINT64_MAX);
	CHECK_EQ_U64(one_int(MUSE_DT_BOOL, MUSE_DT_I32, &v300) & 0xFF, 1);
	uint8_t b7 = 7; /* a hostile bool byte reads as true */
	CHECK_EQ_U64(one_int(MUSE_DT_I32, MUSE_DT_BOOL, &b7) & 0xFFFFFFFF, 1);
	float fb;
	CHECK(muse_dtype_convert(MUSE_DT_F32, &fb, MUSE_DT_BOOL, &b7, 1, &err) == MUSE_OK);
	CHECK(fb == 1.0f);
	uint16_t hb;
	CHECK(muse_dtype_convert(MUSE_DT_BF16, &hb, MUSE_DT_BOOL, &b7, 1, &err) == MUSE_OK);
	CHECK_EQ_U64(hb, 0x3F80);
	/* f16 -> ints of every code agrees with truncating the decoded value */
	size_t n;
	uint16_t *codes = all_codes(MUSE_DT_F16, &n);
	int32_t *i32 = convert_both(MUSE_DT_I32, MUSE_DT_F16, codes, n);
	for (size_t i = 0; i < n; i++) {
		float x = muse_f16_to_f32(codes[i]);
		int32_t want = isnan(x) ? 0 : isinf(x) ? (x > 0 ? INT32_MAX : INT32_MIN) : (int32_t)x;
		CHECK(i32[i] == want);
	}
	free(i32);
	free(codes);
}

static void errors(void)
{
	muse_err err;
	float f[4] = { 0 };
	uint8_t b[64] = { 0 };
	err.code = MUSE_OK;
	CHECK(muse_dtype_convert(MUSE_DT_F32, f, MUSE_DT_F4, b, 2, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(err.code == MUSE_ERR_UNSUPPORTED && strstr(err.msg, "F4 -> F32") && strstr(err.msg, "not supported"));
	CHECK(muse_dtype_convert(MUSE_DT_F6_E2M3, b, MUSE_DT_F32, f, 4, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_dtype_convert(MUSE_DT_F32, f, MUSE_DT_C64, b, 1, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(strstr(err.msg, "complex") != NULL);
	CHECK(muse_dtype_convert(MUSE_DT_Q4_0, b, MUSE_DT_F32, f, 32, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(strstr(err.msg, "Q4_0") && strstr(err.msg, "quantiz"));
	CHECK(muse_dtype_convert(MUSE_DT_F16, b, MUSE_DT_Q8_0, b, 32, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_dtype_convert_ref(MUSE_DT_F32, f, MUSE_DT_C128, b, 1, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_dtype_convert(MUSE_DT_F32, f, MUSE_DT_INVALID, b, 1, &err) == MUSE_ERR_USAGE);
	CHECK(muse_dtype_convert((muse_dtype)999, f, MUSE_DT_F32, b, 1, &err) == MUSE_ERR_USAGE);
	CHECK(muse_dtype_convert(MUSE_DT_F32, NULL, MUSE_DT_F16, b, 1, &err) == MUSE_ERR_USAGE);
	CHECK(muse_dtype_convert(MUSE_DT_F32, f, MUSE_DT_F16, NULL, 1, &err) == MUSE_ERR_USAGE);
	CHECK(muse_dtype_convert(MUSE_DT_F64, f, MUSE_DT_F32, b, SIZE_MAX / 4, &err) == MUSE_ERR_LIMIT);
	/* nothing to do is fine, even with NULL buffers */
	CHECK(muse_dtype_convert(MUSE_DT_F32, NULL, MUSE_DT_F16, NULL, 0, NULL) == MUSE_OK);
	/* same type copies bytes, block types included; partial blocks are refused */
	uint8_t q[34], q2[34];
	for (int i = 0; i < 34; i++)
		q[i] = (uint8_t)(i * 7);
	CHECK(muse_dtype_convert(MUSE_DT_Q8_0, q2, MUSE_DT_Q8_0, q, 32, &err) == MUSE_OK);
	CHECK(!memcmp(q, q2, 34));
	CHECK(muse_dtype_convert(MUSE_DT_Q8_0, q2, MUSE_DT_Q8_0, q, 31, &err) == MUSE_ERR_LIMIT);
	uint32_t nanbits = 0x7F800001, out = 0;
	CHECK(muse_dtype_convert(MUSE_DT_F32, &out, MUSE_DT_F32, &nanbits, 1, &err) == MUSE_OK);
	CHECK_EQ_U64(out, 0x7F800001); /* a copy, not a conversion: signalling NaN untouched */
	/* success leaves the error sink alone */
	strcpy(err.msg, "untouched");
	CHECK(muse_dtype_convert(MUSE_DT_F16, b, MUSE_DT_F32, f, 4, &err) == MUSE_OK);
	CHECK(!strcmp(err.msg, "untouched"));
	CHECK(strcmp(muse_dtype_simd_name(), "") != 0);
}

/* ---- modes ---- */

static int convert_file(int argc, char **argv)
{
	int ref = argc > 2 && !strcmp(argv[2], "--ref");
	if (argc != 6 + ref) {
		fprintf(stderr, "usage: test_dtype convert [--ref] SRC_DT DST_DT IN OUT\n");
		return 2;
	}
	muse_dtype st = muse_dtype_from_name(argv[2 + ref]), dt = muse_dtype_from_name(argv[3 + ref]);
	if (!st || !dt) {
		fprintf(stderr, "unknown dtype\n");
		return 2;
	}
	FILE *in = fopen(argv[4 + ref], "rb");
	if (!in) {
		perror(argv[4 + ref]);
		return 1;
	}
	fseek(in, 0, SEEK_END);
	long len = ftell(in);
	fseek(in, 0, SEEK_SET);
	if (len < 0 || (size_t)len % esize(st)) {
		fprintf(stderr, "input is not whole elements\n");
		return 1;
	}
	size_t n = (size_t)len / esize(st);
	void *src = xmalloc((size_t)len), *dst = xmalloc(n * esize(dt));
	if (fread(src, 1, (size_t)len, in) != (size_t)len) {
		perror("read");
		return 1;
	}
	fclose(in);
	muse_err err;
	muse_status s = ref ? muse_dtype_convert_ref(dt, dst, st, src, n, &err)
			    : muse_dtype_convert(dt, dst, st, src, n, &err);
	if (s != MUSE_OK) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		free(src);
		free(dst);
		return 1;
	}
	FILE *out = fopen(argv[5 + ref], "wb");
	if (!out || fwrite(dst, 1, n * esize(dt), out) != n * esize(dt) || fclose(out)) {
		perror(argv[5 + ref]);
		return 1;
	}
	free(src);
	free(dst);
	return 0;
}

static int exhaustive(void)
{
	const size_t chunk = (size_t)1 << 24;
	uint32_t *u = xmalloc(chunk * 4);
	double *d = xmalloc(chunk * 8);
	uint8_t *a = xmalloc(chunk * 2), *b = xmalloc(chunk * 2), *c = xmalloc(chunk * 2);
	muse_err err;
	long bad = 0;
	for (uint64_t base = 0; base < (1ull << 32); base += chunk) {
		for (size_t i = 0; i < chunk; i++)
			u[i] = (uint32_t)(base + i);
		muse_dtype_convert(MUSE_DT_F64, d, MUSE_DT_F32, u, chunk, &err);
		for (size_t k = 0; k < N_SMALL; k++) {
			muse_dtype t = small_floats[k];
			muse_dtype_convert(t, a, MUSE_DT_F32, u, chunk, &err);
			muse_dtype_convert_ref(t, b, MUSE_DT_F32, u, chunk, &err);
			muse_dtype_convert(t, c, MUSE_DT_F64, d, chunk, &err);
			if (memcmp(a, b, chunk * esize(t)) || memcmp(a, c, chunk * esize(t))) {
				printf("FAIL: dtype/exhaustive: %s differs in [0x%llx, +2^24)\n", muse_dtype_name(t),
				       (unsigned long long)base);
				bad++;
			}
		}
	}
	printf("%s: dtype/exhaustive: all 2^32 f32 patterns x %zu encoders\n", bad ? "FAIL" : "PASS", N_SMALL);
	return bad != 0;
}

int main(int argc, char **argv)
{
	unit_file_name = "dtype";
	if (argc > 1 && !strcmp(argv[1], "convert"))
		return convert_file(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "exhaustive"))
		return exhaustive();
	printf("# simd: %s, threads: %d\n", muse_dtype_simd_name(), omp_get_max_threads());
	RUN(decode_tables);
	RUN(round_trip);
	RUN(rne_ties);
	RUN(specials);
	RUN(encode_fast_vs_ref);
	RUN(cross_pairs);
	RUN(f64_single_rounding);
	RUN(threads_identical);
	RUN(int_conversions);
	RUN(errors);
	UNIT_MAIN_END();
}
