/* test_quant_fast.c: the fast quantizers (quant/q_fast.c) give the reference's bytes, for any thread count. */
/*
 * Every type with a quantize_fast entry is run on many random shapes and on the edge cases that
 * steer the searches into their rare branches (zeros, constants, ties, outliers, huge and tiny
 * magnitudes, subnormals, -0, Inf and NaN), with and without importance, through
 * muse_quantize_rows with 1, 2 and 3 threads, and compared byte for byte with the _ref function
 * called directly. The vector path is what runs when the CPU has AVX2; the test then re-runs itself
 * with MUSE_NO_SIMD=1 so the fallback is exercised too (each run prints which path it took).
 * Agreement with ggml itself is tests/interop/test_quant_fast.py's job, through the file mode
 *   test_quant_fast quant TYPE N_PER_ROW THREADS IN OUT    IN: rows of N_PER_ROW f32 -> OUT: muse_quantize_rows
 * (exit 0 done, 1 muse refused, 2 bad usage or I/O).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/dtype.h"
#include "../../quant/q_fast.h"
#include "../../quant/quant.h"
#include "unit.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng32(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 32);
}
static float rng_unit(void) /* [0, 1) */
{
	return (float)(rng32() >> 8) * 0x1p-24f;
}
static float rng_normal(void)
{
	float s = 0;
	for (int i = 0; i < 12; i++)
		s += rng_unit();
	return s - 6.0f;
}
static float bits_f(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Fills n values of pattern kind k. */
static void fill(float *x, int64_t n, int k, int64_t npr)
{
	float scale = powf(10.f, (float)((int)(rng32() % 9) - 4)); /* 1e-4 .. 1e4 */
	for (int64_t i = 0; i < n; i++) {
		float v;
		switch (k) {
		case 0: v = rng_normal() * scale; break;                               /* gaussian */
		case 1: v = 0.0f; break;                                               /* all zero */
		case 2: v = 0.375f * scale; break;                                     /* positive constant */
		case 3: v = -1.25f; break;                                             /* negative constant */
		case 4: v = (float)((int)(rng32() % 17) - 8) * 0.5f; break;           /* ties on half steps */
		case 5: v = rng32() % 97 ? rng_normal() * 1e-3f : 50.f * scale; break; /* rare outliers */
		case 6: v = rng_normal() * 1e30f; break;                               /* huge (sums overflow) */
		case 7: v = rng_normal() * 1e-30f; break;                              /* tiny: below GROUP_MAX_EPS */
		case 8: v = bits_f(rng32() & 0x807FFFFFu); break;                      /* subnormals, +-0 */
		case 9: v = rng32() % 5 ? 0.0f : rng_normal(); break;                  /* sparse */
		case 10: v = (i & 1) ? -0.0f : 0.0f; break;                            /* signed zeros */
		case 11: v = rng_unit() + 2.0f; break;                                 /* positive only (min > 0) */
		case 12: v = -(rng_unit() + 2.0f); break;                              /* negative only */
		case 13: v = bits_f(rng32()); if (v != v) v = 1.0f; break;             /* any finite bit pattern, Inf */
		case 14: v = rng32() % 50 ? rng_normal() : (rng32() & 1 ? INFINITY : -INFINITY); break;
		case 15: v = rng32() % 61 ? rng_normal() : NAN; break;
		case 16: v = (float)(i % npr) * 1e-3f - 0.1f; break;                   /* ramps */
		default: v = (rng32() & 1 ? 1.f : -1.f) * scale; break;               /* +-constant magnitude */
		}
		x[i] = v;
	}
	/* a block-sized stretch of another kind inside the tensor mixes rare branches per block */
	if (k == 0 && n >= 512) {
		int64_t at = (int64_t)(rng32() % (uint32_t)(n / 256)) * 256;
		for (int64_t i = at; i < at + 256 && i < n; i++)
			x[i] = 0.0f;
	}
}
#define NKINDS 18

static const muse_dtype FAST_TYPES[] = { MUSE_DT_Q4_0, MUSE_DT_Q8_0, MUSE_DT_Q2_K, MUSE_DT_Q3_K,
					 MUSE_DT_Q4_K, MUSE_DT_Q5_K, MUSE_DT_Q6_K };
#define NFT (sizeof FAST_TYPES / sizeof *FAST_TYPES)

static long compared, mismatched;

/* Reference bytes vs muse_quantize_rows with 1, 2, 3 threads (fast path) on one tensor. */
static void compare(muse_dtype t, const float *x, int64_t nrows, int64_t npr, const float *imp, int kind)
{
	const muse_quant_traits *q = muse_quant_traits_of(t);
	const muse_dtype_traits *dt = muse_dtype_info(t);
	size_t bytes = (size_t)(nrows * (npr / dt->blck)) * dt->block_bytes;
	uint8_t *want = malloc(bytes), *got = malloc(bytes);
	CHECK(want && got);
	if (!want || !got)
		goto done;
	CHECK(q->quantize_ref(x, want, nrows, npr, imp) == bytes);
	for (int nth = 1; nth <= 3; nth++) {
		memset(got, 0xA5, bytes);
		muse_err err = { 0 };
		CHECK(muse_quantize_rows(t, x, got, nrows, npr, imp, nth, &err) == MUSE_OK);
		compared++;
		if (memcmp(want, got, bytes)) {
			size_t at = 0;
			while (want[at] == got[at])
				at++;
			if (mismatched++ < 8)
				printf("#   %s kind %d %lldx%lld imp=%d threads %d: first difference at byte %zu (block %zu)\n",
				       muse_dtype_name(t), kind, (long long)nrows, (long long)npr, imp != NULL, nth, at,
				       at / dt->block_bytes);
			CHECK(!"fast bytes == reference bytes");
		}
	}
	/* the fast function called directly (no driver) too */
	memset(got, 0x5A, bytes);
	CHECK(q->quantize_fast(x, got, nrows, npr, imp) == bytes);
	CHECK(!memcmp(want, got, bytes));
done:
	free(want);
	free(got);
}

static long imp_compared; /* Q4_K/Q5_K comparisons with importance */

/* Importance weights for rows of npr, pattern p: imatrix-like, with zero stretches, or extreme. */
static void fill_importance(float *imp, int64_t npr, int p)
{
	for (int64_t i = 0; i < npr; i++)
		imp[i] = rng_unit() * rng_unit() * 4.f + (i % 7 == 0 ? 0.f : 1e-3f);
	if (p % 3 == 1) {
		/* a whole sub-block of 32 and, with two blocks or more, a whole super-block weightless */
		int64_t at = (int64_t)(rng32() % (uint32_t)(npr / 32)) * 32;
		memset(imp + at, 0, 32 * sizeof *imp);
		if (npr >= 512)
			memset(imp + 256 * (int64_t)(rng32() % (uint32_t)(npr / 256)), 0, 256 * sizeof *imp);
	} else if (p % 3 == 2) {
		/* huge (weighted sums overflow), tiny and subnormal weights */
		for (int64_t i = 0; i < npr; i++) {
			uint32_t r = rng32() % 8;
			imp[i] = r == 0 ? 1e30f : r == 1 ? 1e-30f : r == 2 ? bits_f(rng32() & 0x007FFFFFu) : imp[i];
		}
	}
}

static void run_type(muse_dtype t, int shapes_per_kind)
{
	const muse_dtype_traits *dt = muse_dtype_info(t);
	int64_t blck = dt->blck;
	for (int kind = 0; kind < NKINDS; kind++)
		for (int s = 0; s < shapes_per_kind; s++) {
			/* rows of 1..8 blocks (k) or 1..40 blocks (32-blocks): ragged tails of the 8-block groups */
			int64_t npr = blck * (1 + (int64_t)(rng32() % (blck == 256 ? 8 : 40)));
			int64_t nrows = 1 + (int64_t)(rng32() % 37);
			float *x = malloc(sizeof(float) * (size_t)(nrows * npr));
			float *imp = malloc(sizeof(float) * (size_t)npr);
			CHECK(x && imp);
			if (!x || !imp) {
				free(x);
				free(imp);
				return;
			}
			fill(x, nrows * npr, kind, npr);
			fill_importance(imp, npr, s);
			compare(t, x, nrows, npr, NULL, kind);
			/* weighted rows: the slow reference search; a sample is enough, except for the types whose
			 * fast path takes importance itself (Q4_K, Q5_K): every kind and weight pattern there */
			bool imp_fast = t == MUSE_DT_Q4_K || t == MUSE_DT_Q5_K;
			if (imp_fast || (s == 0 && kind < 14)) {
				long before = compared;
				compare(t, x, nrows < 4 ? nrows : 4, npr, imp, kind);
				if (imp_fast)
					imp_compared += compared - before;
			}
			free(x);
			free(imp);
		}
}

static void test_q4_0(void) { run_type(MUSE_DT_Q4_0, 6); }
static void test_q8_0(void) { run_type(MUSE_DT_Q8_0, 6); }
static void test_q2_k(void) { run_type(MUSE_DT_Q2_K, 3); }
static void test_q3_k(void) { run_type(MUSE_DT_Q3_K, 3); }
static void test_q4_k(void) { run_type(MUSE_DT_Q4_K, 3); }
static void test_q5_k(void) { run_type(MUSE_DT_Q5_K, 3); }
static void test_q6_k(void) { run_type(MUSE_DT_Q6_K, 3); }

/* Q8_0/Q4_0 scales hit every fp16 rounding case the F16C conversion must get right: one block per
 * value with its largest magnitude at a random bit pattern (subnormal, normal, overflowing fp16). */
static void test_fp16_scales(void)
{
	enum { NB = 4096 };
	float *x = malloc(sizeof(float) * 32 * NB);
	CHECK(x != NULL);
	if (!x)
		return;
	for (int b = 0; b < NB; b++) {
		float big = bits_f((rng32() & 0x7FFFFFFFu) % 0x7F800000u); /* any finite magnitude */
		for (int j = 0; j < 32; j++)
			x[32 * b + j] = big * rng_unit() * (rng32() & 1 ? 1.f : -1.f);
		x[32 * b + rng32() % 32] = rng32() & 1 ? big : -big;
	}
	compare(MUSE_DT_Q8_0, x, 1, 32 * NB, NULL, 100);
	compare(MUSE_DT_Q4_0, x, 1, 32 * NB, NULL, 100);
	/* the same, scaled to sit around the fp16 subnormal and overflow boundaries */
	for (int i = 0; i < 32 * NB; i++)
		x[i] = x[i] != 0 ? ldexpf(1.f + rng_unit(), -30 + (int)(rng32() % 50)) * (x[i] < 0 ? -1.f : 1.f) : 0.f;
	compare(MUSE_DT_Q8_0, x, 1, 32 * NB, NULL, 101);
	compare(MUSE_DT_Q4_0, x, 1, 32 * NB, NULL, 101);
	free(x);
}

/* The traits point at the fast functions, and the path actually taken is the one announced. */
static void test_wiring(void)
{
	for (size_t i = 0; i < NFT; i++) {
		const muse_quant_traits *q = muse_quant_traits_of(FAST_TYPES[i]);
		CHECK(q && q->quantize_fast && q->quantize_ref && q->quantize_fast != q->quantize_ref);
	}
	const char *e = getenv("MUSE_NO_SIMD");
	bool off = e && *e && strcmp(e, "0") != 0;
	if (off)
		CHECK(!strcmp(muse_quant_fast_path(), "reference"));
	printf("#   quantize_fast path: %s\n", muse_quant_fast_path());
}

static int file_mode(char **argv)
{
	muse_dtype t = muse_dtype_from_name(argv[2]);
	long long npr = atoll(argv[3]);
	int threads = atoi(argv[4]);
	const muse_dtype_traits *dt = muse_dtype_info(t);
	FILE *f = fopen(argv[5], "rb");
	if (!f || npr <= 0 || !dt || !dt->blck) {
		fprintf(stderr, "test_quant_fast: bad arguments or %s unreadable\n", argv[5]);
		return 2;
	}
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	long long nrows = sz / 4 / npr;
	float *x = malloc((size_t)sz + 4);
	size_t out_bytes = (size_t)(nrows * (npr / dt->blck)) * dt->block_bytes;
	void *y = malloc(out_bytes + 1);
	if (!x || !y || fread(x, 1, (size_t)sz, f) != (size_t)sz) {
		fprintf(stderr, "test_quant_fast: cannot read %s\n", argv[5]);
		return 2;
	}
	fclose(f);
	muse_err err = { 0 };
	if (muse_quantize_rows(t, x, y, nrows, npr, NULL, threads, &err) != MUSE_OK) {
		fprintf(stderr, "test_quant_fast: %s\n", err.msg);
		return 1;
	}
	f = fopen(argv[6], "wb");
	if (!f || fwrite(y, 1, out_bytes, f) != out_bytes || fclose(f) != 0) {
		fprintf(stderr, "test_quant_fast: cannot write %s\n", argv[6]);
		return 2;
	}
	fprintf(stderr, "test_quant_fast: path %s\n", muse_quant_fast_path());
	free(x);
	free(y);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 7 && !strcmp(argv[1], "quant"))
		return file_mode(argv);
	unit_file_name = getenv("MUSE_NO_SIMD") ? "test_quant_fast(MUSE_NO_SIMD)" : "test_quant_fast";
	RUN(test_wiring);
	RUN(test_fp16_scales);
	RUN(test_q4_0);
	RUN(test_q8_0);
	RUN(test_q2_k);
	RUN(test_q3_k);
	RUN(test_q4_k);
	RUN(test_q5_k);
	RUN(test_q6_k);
	printf("#   %ld comparisons, %ld mismatched; Q4_K/Q5_K with importance: %ld on path %s\n", compared, mismatched,
	       imp_compared, muse_quant_fast_path());
	CHECK(imp_compared > 0);
	fflush(stdout);
	/* once more on the fallback path, in a child, so both paths run under every `make test` */
	if (!getenv("MUSE_NO_SIMD") && argc == 1) {
		pid_t pid = fork();
		if (pid == 0) {
			setenv("MUSE_NO_SIMD", "1", 1);
			execv("/proc/self/exe", argv);
			_exit(127);
		}
		int st = 0;
		if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("FAIL: test_quant_fast/fallback_path: child run with MUSE_NO_SIMD=1 failed\n");
			unit_failures_total++;
		}
	}
	UNIT_MAIN_END();
}
