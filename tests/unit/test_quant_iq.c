/* test_quant_iq.c: the lattice types (IQ1_S..IQ3_S): golden bytes from ggml, tables, round trips, refusals, threads. */
/*
 * Modes:
 *   test_quant_iq                                         the unit tests (PASS/FAIL lines)
 *   test_quant_iq quant TYPE N_PER_ROW IN OUT [IMATRIX]   IN: rows of N_PER_ROW f32; IMATRIX: N_PER_ROW f32;
 *                                                         writes muse's quantized rows (muse_quantize_rows)
 *   test_quant_iq quantref TYPE N_PER_ROW IN OUT [IMATRIX] the same through quantize_ref directly (no
 *                                                         importance check: what muse writes for NULL)
 *   test_quant_iq dequant TYPE IN OUT                     whole blocks of TYPE -> f32 (muse_dequantize)
 *   test_quant_iq batch JOBS.txt                          one job a line, in ggml_quant's batch syntax:
 *                                                         "TYPE N_PER_ROW IN OUT [IMATRIX]" (quant mode) or
 *                                                         "--dequant TYPE N_PER_ROW IN OUT"; one process builds
 *                                                         the lattice tables once for all of them
 *   test_quant_iq bench ROWS N_PER_ROW [TYPE...]          seconds per type, one thread, normal rows with and
 *                                                         without an importance vector
 *   test_quant_iq golden X_OUT IMP_OUT                    writes the golden input and importance, so the
 *                                                         interop test can check GOLDEN against ggml
 * tests/interop/test_quant_iq.py drives the file modes against the real ggml (ggml_quant).
 * Exit status of the file modes: 0 done, 1 muse refused (one "test_quant_iq: ..." line), 2 bad usage/IO.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../lib/block_layout.h"
#include "../../lib/dtype.h"
#include "../../quant/quant.h"
#include "unit.h"

static const muse_dtype IQTYPES[] = { MUSE_DT_IQ1_S, MUSE_DT_IQ1_M,   MUSE_DT_IQ2_XXS, MUSE_DT_IQ2_XS,
				      MUSE_DT_IQ2_S, MUSE_DT_IQ3_XXS, MUSE_DT_IQ3_S };
#define NIQ (sizeof IQTYPES / sizeof *IQTYPES)

/* the types ggml_quantize_requires_imatrix names */
static int needs_imatrix(muse_dtype t)
{
	return t == MUSE_DT_IQ2_XXS || t == MUSE_DT_IQ2_XS || t == MUSE_DT_IQ1_S;
}

#include "quant_test_data.h"

static size_t row_bytes(muse_dtype t, int64_t n_per_row)
{
	return (size_t)(n_per_row / MUSE_QK_K) * muse_dtype_info(t)->block_bytes;
}

static size_t quant_ref(muse_dtype t, const float *x, void *out, int64_t nrows, int64_t npr, const float *imp)
{
	return muse_quant_traits_of(t)->quantize_ref(x, out, nrows, npr, imp);
}

/*
 * The golden input: 6 rows x 512 of Irwin-Hall normals at scales 1, 0.02, 30, 1e-5, 1, 1 with one +/-40
 * outlier per super-block in the last two, and one all-zero 32-block in row 0. Importance: uniform
 * (0, 2], every 7th column 0.
 */
#define G_ROWS 6
#define G_N 512
static void golden_input(float *x, float *imp)
{
	static const float sc[G_ROWS] = { 1.0f, 0.02f, 30.0f, 1e-5f, 1.0f, 1.0f };
	rng_state = 42;
	for (int r = 0; r < G_ROWS; r++)
		for (int i = 0; i < G_N; i++)
			x[r * G_N + i] = rng_normal() * sc[r];
	for (int b = 0; b < 2; b++) {
		x[4 * G_N + b * MUSE_QK_K + 17] = 40.0f;
		x[5 * G_N + b * MUSE_QK_K + 200] = -40.0f;
	}
	for (int i = 64; i < 96; i++)
		x[i] = 0.0f;
	for (int i = 0; i < G_N; i++)
		imp[i] = i % 7 == 0 ? 0.0f : (float)((rng32() >> 8) + 1) * 0x1p-23f;
}

/*
 * FNV-1a 64 of the bytes ggml's quantize_<type> writes for golden_input (llama.cpp 0c1e57098bba, the
 * commit scripts/build_llama_cpp.sh builds): without (0 where ggml requires an imatrix) and with the
 * importance vector. tests/interop/test_quant_iq.py recomputes them with ggml.
 */
static const struct {
	muse_dtype t;
	uint64_t plain, imp;
} GOLDEN[] = {
	{ MUSE_DT_IQ1_S, 0x0000000000000000ull, 0xcd5792b96e43ad7eull },
	{ MUSE_DT_IQ1_M, 0xd4c0d89aaad1f268ull, 0xccb096681325c3b0ull },
	{ MUSE_DT_IQ2_XXS, 0x0000000000000000ull, 0x989f109302ca4c0eull },
	{ MUSE_DT_IQ2_XS, 0x0000000000000000ull, 0x59ae94592a58b3adull },
	{ MUSE_DT_IQ2_S, 0x56acbf6784ace924ull, 0xf3db7db74176913eull },
	{ MUSE_DT_IQ3_XXS, 0xc0d3864fc6e4e664ull, 0x95abdb509340e5b2ull },
	{ MUSE_DT_IQ3_S, 0xeac2a148d64f970full, 0x17860a0808be408dull },
};

static void test_golden_ggml(void)
{
	float *x = xmalloc(sizeof(float) * G_ROWS * G_N), imp[G_N];
	golden_input(x, imp);
	for (size_t k = 0; k < sizeof GOLDEN / sizeof *GOLDEN; k++) {
		muse_dtype t = GOLDEN[k].t;
		size_t rb = row_bytes(t, G_N);
		uint8_t *out = xmalloc(rb * G_ROWS);
		uint64_t h1 = 0, h2;
		if (!needs_imatrix(t)) {
			CHECK_EQ_U64(quant_ref(t, x, out, G_ROWS, G_N, NULL), rb * G_ROWS);
			h1 = fnv1a(out, rb * G_ROWS);
		}
		CHECK_EQ_U64(quant_ref(t, x, out, G_ROWS, G_N, imp), rb * G_ROWS);
		h2 = fnv1a(out, rb * G_ROWS);
		if (getenv("QUANT_IQ_PRINT_GOLDEN"))
			printf("#   { MUSE_DT_%s, 0x%016llxull, 0x%016llxull },\n", muse_dtype_name(t),
			       (unsigned long long)h1, (unsigned long long)h2);
		CHECK_EQ_U64(h1, GOLDEN[k].plain);
		CHECK_EQ_U64(h2, GOLDEN[k].imp);
		free(out);
	}
	free(x);
}

/*
 * The first quantization of each type builds its lattice tables under pthread_once. Runs first, from
 * several OpenMP threads at once, so a racy init would show as differing bytes (or a sanitizer report).
 */
static void test_concurrent_first_use(void)
{
	const int64_t nrows = 24, npr = 512;
	float *x = xmalloc(sizeof(float) * nrows * npr), imp[512];
	rng_state = 11;
	for (int64_t i = 0; i < nrows * npr; i++)
		x[i] = rng_normal();
	for (int i = 0; i < npr; i++)
		imp[i] = (float)(rng32() >> 8) * 0x1p-24f + 0.01f;
	for (size_t k = 0; k < NIQ; k++) {
		size_t sz = row_bytes(IQTYPES[k], npr) * nrows;
		uint8_t *a = xmalloc(sz), *b = xmalloc(sz), *c = xmalloc(sz);
		muse_err err = { 0 };
		CHECK(muse_quantize_rows(IQTYPES[k], x, a, nrows, npr, imp, 4, &err) == MUSE_OK);
		CHECK(muse_quantize_rows(IQTYPES[k], x, b, nrows, npr, imp, 1, &err) == MUSE_OK);
		CHECK_EQ_U64(quant_ref(IQTYPES[k], x, c, nrows, npr, imp), sz);
		CHECK(memcmp(a, b, sz) == 0);
		CHECK(memcmp(a, c, sz) == 0);
		if (!needs_imatrix(IQTYPES[k])) {
			CHECK(muse_quantize_rows(IQTYPES[k], x, a, nrows, npr, NULL, 3, &err) == MUSE_OK);
			CHECK_EQ_U64(quant_ref(IQTYPES[k], x, c, nrows, npr, NULL), sz);
			CHECK(memcmp(a, c, sz) == 0);
		}
		free(a);
		free(b);
		free(c);
	}
	free(x);
}

/* The neighbour lists fill exactly the storage reserved for them (a changed grid would not fit or fit loosely). */
static void test_lattice_tables(void)
{
	for (size_t k = 0; k < NIQ; k++) {
		size_t used = 0, cap = 1;
		CHECK(muse_iq_lattice_stats(IQTYPES[k], &used, &cap) == 0);
		CHECK_EQ_U64(used, cap);
	}
	size_t used, cap;
	CHECK(muse_iq_lattice_stats(MUSE_DT_Q4_K, &used, &cap) == -1);
}

/* Relative RMS error of a quantize -> dequantize round trip of Irwin-Hall rows. */
static double roundtrip_rel_rms(muse_dtype t, const float *imp)
{
	const int64_t n = 4096;
	float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
	uint8_t *q = xmalloc(row_bytes(t, n));
	rng_state = 99;
	for (int64_t i = 0; i < n; i++)
		x[i] = rng_normal();
	const muse_quant_traits *tr = muse_quant_traits_of(t);
	tr->quantize_ref(x, q, n / 1024, 1024, imp);
	tr->dequantize(q, y, n);
	double e2 = 0, x2 = 0;
	for (int64_t i = 0; i < n; i++) {
		e2 += (double)(x[i] - y[i]) * (x[i] - y[i]);
		x2 += (double)x[i] * x[i];
	}
	free(x);
	free(y);
	free(q);
	return sqrt(e2 / x2);
}

/*
 * Coarse quality bounds (about 1.3x what ggml reaches on these rows with unit importance), in bits
 * order: a decoder that reads the wrong grid or scale field fails them.
 */
static void test_roundtrip_error(void)
{
	static const muse_dtype order[] = { MUSE_DT_IQ1_S, MUSE_DT_IQ1_M, MUSE_DT_IQ2_XXS, MUSE_DT_IQ2_XS,
					    MUSE_DT_IQ2_S, MUSE_DT_IQ3_XXS, MUSE_DT_IQ3_S };
	static const double bound[] = { 0.60, 0.55, 0.45, 0.40, 0.35, 0.25, 0.22 };
	float imp[1024];
	for (int i = 0; i < 1024; i++)
		imp[i] = 1.0f;
	double prev = 1.0;
	for (size_t k = 0; k < sizeof order / sizeof *order; k++) {
		double e = roundtrip_rel_rms(order[k], imp);
		if (getenv("QUANT_IQ_VERBOSE") || e > bound[k] || e >= prev)
			printf("#   %s: rel rms %.4f, bound %.2f\n", muse_dtype_name(order[k]), e, bound[k]);
		CHECK(e <= bound[k]);
		CHECK(e < prev);
		prev = e;
	}
}

/* Zero and -0 super-blocks quantize to all-zero bytes and decode to zeros, with or without importance. */
static void test_zero_blocks(void)
{
	float x[2 * MUSE_QK_K], y[2 * MUSE_QK_K], imp[2 * MUSE_QK_K];
	for (int i = 0; i < 2 * MUSE_QK_K; i++) {
		x[i] = i < MUSE_QK_K ? 0.0f : -0.0f;
		imp[i] = 1.0f;
	}
	for (size_t k = 0; k < NIQ; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(IQTYPES[k]);
		size_t rb = row_bytes(IQTYPES[k], 2 * MUSE_QK_K);
		uint8_t *q = xmalloc(rb), *zero = xmalloc(rb);
		for (int pass = 0; pass < 2; pass++) {
			memset(q, 0xAA, rb);
			CHECK_EQ_U64(tr->quantize_ref(x, q, 1, 2 * MUSE_QK_K, pass ? imp : NULL), rb);
			CHECK(memcmp(q, zero, rb) == 0);
			tr->dequantize(q, y, 2 * MUSE_QK_K);
			for (int i = 0; i < 2 * MUSE_QK_K; i++)
				CHECK(y[i] == 0);
		}
		free(q);
		free(zero);
	}
}

/*
 * Constant blocks of either sign: every lattice type represents a constant through a grid point with
 * equal coordinates (IQ1 through a shifted level); the decoded mean must keep the sign and be within
 * 35% (the coarse 3- and 4-bit block scales bound this, not the grid).
 */
static void test_constant_blocks(void)
{
	float x[MUSE_QK_K], y[MUSE_QK_K], imp[MUSE_QK_K];
	static const float vals[] = { 0.75f, -0.75f, 3e4f, -1e-3f };
	for (int i = 0; i < MUSE_QK_K; i++)
		imp[i] = 1.0f;
	for (size_t k = 0; k < NIQ; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(IQTYPES[k]);
		uint8_t q[128];
		for (size_t v = 0; v < sizeof vals / sizeof *vals; v++) {
			for (int i = 0; i < MUSE_QK_K; i++)
				x[i] = vals[v];
			tr->quantize_ref(x, q, 1, MUSE_QK_K, imp);
			tr->dequantize(q, y, MUSE_QK_K);
			double mean = 0;
			for (int i = 0; i < MUSE_QK_K; i++)
				mean += y[i];
			mean /= MUSE_QK_K;
			if (!(fabs(mean - vals[v]) <= 0.35 * fabsf(vals[v])))
				printf("#   %s constant %g: mean %g\n", muse_dtype_name(IQTYPES[k]), vals[v], mean);
			CHECK(fabs(mean - vals[v]) <= 0.35 * fabsf(vals[v]));
		}
	}
}

/* Huge, tiny, subnormal, outlier and non-finite inputs: no sanitizer report; output is deterministic. */
static void test_extreme_magnitudes(void)
{
	const int64_t n = 8 * MUSE_QK_K;
	float *x = xmalloc(sizeof(float) * n), *imp = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
	rng_state = 5;
	for (int64_t i = 0; i < n; i++) {
		float g = rng_normal();
		switch (i / MUSE_QK_K) {
		case 0: x[i] = g * 1e30f; break;
		case 1: x[i] = g * 1e-30f; break;
		case 2: x[i] = g * 1e-40f; break; /* subnormal */
		case 3: x[i] = i % 64 == 3 ? 1e20f : g; break;
		case 4: x[i] = fabsf(g) * 3.0e38f; break;
		case 5: x[i] = i % 97 == 0 ? NAN : g; break;
		case 6: x[i] = i % 101 == 0 ? (i & 1 ? INFINITY : -INFINITY) : g; break;
		default: x[i] = (i & 1) ? -0.0f : 0.0f; break;
		}
		imp[i] = (i % 5) ? (float)(rng32() >> 8) * 0x1p-24f : 0.0f;
	}
	for (size_t k = 0; k < NIQ; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(IQTYPES[k]);
		size_t rb = row_bytes(IQTYPES[k], n);
		uint8_t *a = xmalloc(rb), *b = xmalloc(rb);
		for (int pass = 0; pass < 2; pass++) {
			tr->quantize_ref(x, a, 1, n, pass ? imp : NULL);
			tr->quantize_ref(x, b, 1, n, pass ? imp : NULL);
			CHECK(memcmp(a, b, rb) == 0);
			tr->dequantize(a, y, n);
		}
		free(a);
		free(b);
	}
	free(x);
	free(imp);
	free(y);
}

/*
 * Refusals: the three types ggml_quantize_requires_imatrix names need importance weights; the others
 * quantize without. Rows that are not whole super-blocks and decodes of partial blocks fail; nothing
 * is written on failure.
 */
static void test_refusals(void)
{
	float x[2 * MUSE_QK_K] = { 0 }, y[2 * MUSE_QK_K];
	uint8_t q[2 * 128], zero[2 * 128] = { 0 };
	for (size_t k = 0; k < NIQ; k++) {
		muse_dtype t = IQTYPES[k];
		const muse_quant_traits *tr = muse_quant_traits_of(t);
		CHECK(tr != NULL && tr->quantize_ref && tr->dequantize);
		CHECK(tr->needs_importance == (needs_imatrix(t) != 0));
		muse_err err = { 0 };
		memset(q, 0, sizeof q);
		muse_status st = muse_quantize_rows(t, x, q, 1, MUSE_QK_K, NULL, 1, &err);
		if (needs_imatrix(t)) {
			CHECK(st == MUSE_ERR_USAGE);
			CHECK(strstr(err.msg, muse_dtype_name(t)) != NULL);
			CHECK(strstr(err.msg, "importance") != NULL);
		} else {
			CHECK(st == MUSE_OK);
		}
		CHECK(memcmp(q, zero, sizeof q) == 0);
		muse_err err2 = { 0 };
		CHECK(muse_quantize_rows(t, x, q, 1, MUSE_QK_K + 32, x, 1, &err2) == MUSE_ERR_FORMAT);
		CHECK(strstr(err2.msg, "288") != NULL);
		muse_err err3 = { 0 };
		CHECK(muse_dequantize(t, q, y, MUSE_QK_K / 2, &err3) == MUSE_ERR_FORMAT);
	}
}

/*
 * Without importance the imatrix-only types weigh every column 1 (ggml has no such mode; muse must
 * still be defined when quantize_ref is called directly).
 */
static void test_null_importance_is_ones(void)
{
	const int64_t npr = 512;
	float x[512], ones[512];
	rng_state = 21;
	for (int i = 0; i < npr; i++) {
		x[i] = rng_normal();
		ones[i] = 1.0f;
	}
	for (size_t k = 0; k < NIQ; k++) {
		if (!needs_imatrix(IQTYPES[k]))
			continue;
		size_t rb = row_bytes(IQTYPES[k], npr);
		uint8_t *a = xmalloc(rb), *b = xmalloc(rb);
		quant_ref(IQTYPES[k], x, a, 1, npr, NULL);
		quant_ref(IQTYPES[k], x, b, 1, npr, ones);
		CHECK(memcmp(a, b, rb) == 0);
		free(a);
		free(b);
	}
}

/*
 * ggml's IQ3_S quantizer skips the qs/signs advance after an all-zero 32-block, so the following
 * blocks are stored one slot early and the last slot stays zero (muse reproduces the bytes). With the
 * zero block last nothing shifts; with it first, the slot of block 7 is empty.
 */
static void test_iq3s_zero_block_shift(void)
{
	float x[MUSE_QK_K];
	uint8_t first[110], last[110];
	rng_state = 8;
	for (int i = 0; i < MUSE_QK_K; i++)
		x[i] = rng_normal();
	float save[32];
	memcpy(save, x, sizeof save);
	memset(x, 0, 32 * sizeof(float));
	quant_ref(MUSE_DT_IQ3_S, x, first, 1, MUSE_QK_K, NULL);
	memcpy(x, save, sizeof save);
	memset(x + 224, 0, 32 * sizeof(float));
	quant_ref(MUSE_DT_IQ3_S, x, last, 1, MUSE_QK_K, NULL);
	static const uint8_t zero[8] = { 0 };
	/* layout: d[2] qs[64] qh[8] signs[32] scales[4] */
	CHECK(memcmp(first + 2 + 56, zero, 8) == 0);       /* qs of the last slot empty */
	CHECK(memcmp(first + 2 + 64 + 8 + 28, zero, 4) == 0); /* signs of the last slot empty */
	CHECK(memcmp(last + 2 + 56, zero, 8) == 0);        /* the zero block's own slot */
	CHECK(memcmp(first + 2, zero, 8) != 0);            /* block 1 moved into slot 0 */
}

/* ---- file modes ---- */

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f || fseek(f, 0, SEEK_END) != 0) {
		fprintf(stderr, "test_quant_iq: cannot read '%s'\n", path);
		exit(2);
	}
	long n = ftell(f);
	rewind(f);
	void *buf = xmalloc((size_t)n);
	if (n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "test_quant_iq: cannot read '%s'\n", path);
		exit(2);
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void spill(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "test_quant_iq: cannot write '%s'\n", path);
		exit(2);
	}
}

static muse_dtype iqtype(const char *name)
{
	muse_dtype t = muse_dtype_from_name(name);
	if (t == MUSE_DT_INVALID || !muse_quant_traits_of(t)) {
		fprintf(stderr, "test_quant_iq: unknown block type '%s'\n", name);
		exit(2);
	}
	return t;
}

static int mode_quant(int argc, char **argv, int direct)
{
	muse_dtype t = iqtype(argv[2]);
	long long npr = atoll(argv[3]);
	size_t len, ilen;
	float *x = slurp(argv[4], &len), *imp = NULL;
	if (npr <= 0 || len % ((size_t)npr * 4)) {
		fprintf(stderr, "test_quant_iq: '%s' is not whole rows of %lld floats\n", argv[4], npr);
		return 2;
	}
	if (argc > 6) {
		imp = slurp(argv[6], &ilen);
		if (ilen != (size_t)npr * 4) {
			fprintf(stderr, "test_quant_iq: '%s' must hold N_PER_ROW floats\n", argv[6]);
			return 2;
		}
	}
	int64_t nrows = (int64_t)(len / ((size_t)npr * 4));
	size_t rb = (size_t)(npr / muse_dtype_info(t)->blck) * muse_dtype_info(t)->block_bytes;
	void *out = xmalloc(rb * (size_t)nrows);
	if (direct) {
		if (npr % muse_dtype_info(t)->blck) {
			fprintf(stderr, "test_quant_iq: N_PER_ROW is not whole blocks\n");
			return 2;
		}
		quant_ref(t, x, out, nrows, npr, imp);
	} else {
		muse_err err = { 0 };
		if (muse_quantize_rows(t, x, out, nrows, npr, imp, 0, &err) != MUSE_OK) {
			fprintf(stderr, "test_quant_iq: %s\n", err.msg);
			return 1;
		}
	}
	spill(argv[5], out, rb * (size_t)nrows);
	free(x);
	free(imp);
	free(out);
	return 0;
}

static int mode_dequant(char **argv)
{
	muse_dtype t = iqtype(argv[2]);
	size_t len, bb = muse_dtype_info(t)->block_bytes, blck = muse_dtype_info(t)->blck;
	void *in = slurp(argv[3], &len);
	if (len % bb) {
		fprintf(stderr, "test_quant_iq: '%s' is not whole %s blocks\n", argv[3], argv[2]);
		return 2;
	}
	size_t n = len / bb * blck;
	float *out = xmalloc(n * sizeof(float));
	muse_err err = { 0 };
	if (muse_dequantize(t, in, out, (int64_t)n, &err) != MUSE_OK) {
		fprintf(stderr, "test_quant_iq: %s\n", err.msg);
		return 1;
	}
	spill(argv[4], out, n * sizeof(float));
	free(in);
	free(out);
	return 0;
}

/* Runs the lines of a jobs file through mode_quant / mode_dequant; stops at the first failure. */
static int mode_batch(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	if (!f) {
		fprintf(stderr, "test_quant_iq: cannot read '%s'\n", path);
		return 2;
	}
	while (fgets(line, sizeof line, f)) {
		static char prog[] = "test_quant_iq", quant[] = "quant", dequant[] = "dequant";
		char *argv[9] = { prog, quant };
		int argc = 2, rc;
		for (char *tok = strtok(line, " \t\r\n"); tok && argc < 9; tok = strtok(NULL, " \t\r\n"))
			argv[argc++] = tok;
		if (argc == 2)
			continue;
		if (strcmp(argv[2], "--dequant") == 0 && argc == 7) {
			/* --dequant TYPE N_PER_ROW IN OUT: the row length does not matter to muse_dequantize */
			char *dv[5] = { prog, dequant, argv[3], argv[5], argv[6] };
			rc = mode_dequant(dv);
		} else if (argc == 6 || argc == 7) {
			rc = mode_quant(argc, argv, 0);
		} else {
			fprintf(stderr, "test_quant_iq: '%s': bad job line\n", path);
			rc = 2;
		}
		if (rc != 0) {
			fclose(f);
			return rc;
		}
	}
	fclose(f);
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Single-thread time of each quantizer on ROWS x N_PER_ROW normal rows (the lattice build timed apart). */
static int mode_bench(int argc, char **argv)
{
	const int64_t nrows = atoll(argv[2]), npr = atoll(argv[3]);
	if (nrows <= 0 || npr <= 0 || npr % MUSE_QK_K) {
		fprintf(stderr, "test_quant_iq: bench ROWS N_PER_ROW (a multiple of 256)\n");
		return 2;
	}
	float *x = xmalloc(sizeof(float) * npr * nrows), *imp = xmalloc(sizeof(float) * npr);
	rng_state = 3;
	for (int64_t i = 0; i < npr * nrows; i++)
		x[i] = rng_normal();
	for (int64_t i = 0; i < npr; i++)
		imp[i] = (float)(rng32() >> 8) * 0x1p-24f + 0.01f;
	for (size_t k = 0; k < NIQ; k++) {
		muse_dtype t = IQTYPES[k];
		if (argc > 4) {
			int want = 0;
			for (int a = 4; a < argc; a++)
				want |= muse_dtype_from_name(argv[a]) == t;
			if (!want)
				continue;
		}
		uint8_t *q = xmalloc(row_bytes(t, npr) * nrows);
		size_t used, cap;
		double t0 = now();
		muse_iq_lattice_stats(t, &used, &cap);
		double t1 = now();
		double plain = -1;
		if (!needs_imatrix(t)) {
			quant_ref(t, x, q, nrows, npr, NULL);
			plain = now() - t1;
		}
		double t2 = now();
		quant_ref(t, x, q, nrows, npr, imp);
		double t3 = now();
		printf("%-8s tables %6.3f s  quantize %8.2f s  with imatrix %8.2f s  (%lld x %lld)\n", muse_dtype_name(t),
		       t1 - t0, plain, t3 - t2, (long long)nrows, (long long)npr);
		fflush(stdout);
		free(q);
	}
	free(x);
	free(imp);
	return 0;
}

int main(int argc, char **argv)
{
	unit_file_name = "quant_iq";
	if (argc >= 6 && argc <= 7 && strcmp(argv[1], "quant") == 0)
		return mode_quant(argc, argv, 0);
	if (argc >= 6 && argc <= 7 && strcmp(argv[1], "quantref") == 0)
		return mode_quant(argc, argv, 1);
	if (argc == 5 && strcmp(argv[1], "dequant") == 0)
		return mode_dequant(argv);
	if (argc == 3 && strcmp(argv[1], "batch") == 0)
		return mode_batch(argv[2]);
	if (argc == 4 && strcmp(argv[1], "golden") == 0) {
		float *x = xmalloc(sizeof(float) * G_ROWS * G_N), imp[G_N];
		golden_input(x, imp);
		spill(argv[2], x, sizeof(float) * G_ROWS * G_N);
		spill(argv[3], imp, sizeof imp);
		free(x);
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "bench") == 0)
		return mode_bench(argc, argv);
	if (argc != 1) {
		fprintf(stderr, "usage: test_quant_iq [quant|quantref TYPE N_PER_ROW IN OUT [IMATRIX] | dequant TYPE IN OUT"
				" | batch JOBS | bench ROWS N_PER_ROW [TYPE...] | golden X_OUT IMP_OUT]\n");
		return 2;
	}
	RUN(test_concurrent_first_use);
	RUN(test_lattice_tables);
	RUN(test_golden_ggml);
	RUN(test_roundtrip_error);
	RUN(test_zero_blocks);
	RUN(test_constant_blocks);
	RUN(test_extreme_magnitudes);
	RUN(test_refusals);
	RUN(test_null_importance_is_ones);
	RUN(test_iq3s_zero_block_shift);
	UNIT_MAIN_END();
}
