/* test_quant_k.c: k-quants (Q2_K..Q6_K): golden bytes from ggml, a spec decoder, thread invariance, edge cases. */
/*
 * Modes:
 *   test_quant_k                                         the unit tests (PASS/FAIL lines)
 *   test_quant_k quant TYPE N_PER_ROW IN OUT [IMATRIX]   IN: rows of N_PER_ROW f32; IMATRIX: N_PER_ROW f32;
 *                                                        writes muse's quantized rows (muse_quantize_rows)
 *   test_quant_k dequant TYPE IN OUT                     whole blocks of TYPE -> f32 (muse_dequantize)
 *   test_quant_k bench [MB]                              MB/s of f32 input per type, one thread
 *   test_quant_k golden X_OUT IMP_OUT                    writes the golden input (rows of 512 f32) and
 *                                                        importance, so the interop test can check GOLDEN
 * tests/interop/test_quant_k.py drives the file modes against gguf-py and the real ggml (ggml_quant).
 * Exit status of the file modes: 0 done, 1 muse refused (one "test_quant_k: ..." line), 2 bad usage/IO.
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

static const muse_dtype KTYPES[] = { MUSE_DT_Q2_K, MUSE_DT_Q3_K, MUSE_DT_Q4_K, MUSE_DT_Q5_K, MUSE_DT_Q6_K };
#define NKT (sizeof KTYPES / sizeof *KTYPES)

#include "quant_test_data.h"

static size_t row_bytes(muse_dtype t, int64_t n_per_row)
{
	return (size_t)(n_per_row / MUSE_QK_K) * muse_dtype_info(t)->block_bytes;
}

/*
 * The golden input: 6 rows x 512 of Irwin-Hall normals at scales 1, 0.02, 30, 1e-5, 1 with one +/-40
 * outlier per block in the last two. Importance: uniform (0, 2], every 7th column 0.
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
	for (int i = 0; i < G_N; i++)
		imp[i] = i % 7 == 0 ? 0.0f : (float)((rng32() >> 8) + 1) * 0x1p-23f;
}

/*
 * FNV-1a 64 of the bytes ggml's quantize_q<n>_K writes for golden_input (llama.cpp 0c1e57098bba,
 * the commit scripts/build_llama_cpp.sh builds): without and with the importance vector.
 */
static const struct {
	muse_dtype t;
	uint64_t plain, imp;
} GOLDEN[] = {
	{ MUSE_DT_Q2_K, 0xc53fec1737cf1df8ull, 0x6835342907caaa77ull },
	{ MUSE_DT_Q3_K, 0xbd79f9766743fad9ull, 0x9209a1e1c1ea563bull },
	{ MUSE_DT_Q4_K, 0xd4795a7d9ba09f53ull, 0x38781dea8b95340aull },
	{ MUSE_DT_Q5_K, 0xac0b8956868c9205ull, 0x07f32450e75e7209ull },
	{ MUSE_DT_Q6_K, 0x8f488c918d97475eull, 0xf443d30b5eb91accull },
};

static void test_golden_ggml(void)
{
	float *x = xmalloc(sizeof(float) * G_ROWS * G_N), imp[G_N];
	golden_input(x, imp);
	for (size_t k = 0; k < sizeof GOLDEN / sizeof *GOLDEN; k++) {
		const muse_quant_traits *q = muse_quant_traits_of(GOLDEN[k].t);
		size_t rb = row_bytes(GOLDEN[k].t, G_N);
		uint8_t *out = xmalloc(rb * G_ROWS);
		CHECK_EQ_U64(q->quantize_ref(x, out, G_ROWS, G_N, NULL), rb * G_ROWS);
		uint64_t h1 = fnv1a(out, rb * G_ROWS);
		CHECK_EQ_U64(q->quantize_ref(x, out, G_ROWS, G_N, imp), rb * G_ROWS);
		uint64_t h2 = fnv1a(out, rb * G_ROWS);
		if (getenv("QUANT_K_PRINT_GOLDEN"))
			printf("#   { MUSE_DT_%s, 0x%016llxull, 0x%016llxull },\n", muse_dtype_name(GOLDEN[k].t),
			       (unsigned long long)h1, (unsigned long long)h2);
		CHECK_EQ_U64(h1, GOLDEN[k].plain);
		CHECK_EQ_U64(h2, GOLDEN[k].imp);
		free(out);
	}
	free(x);
}

/* ---- an independent decoder, element by element from FORMATS.md §2a.7 ---- */

static float h2f(const uint8_t *p)
{
	return muse_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* Value of element e (0..255) of one block; same float operations as the spec formula, in its order. */
static float spec_elem(muse_dtype t, const uint8_t *b, int e)
{
	switch (t) {
	case MUSE_DT_Q2_K: { /* scales[16] qs[64] d dmin */
		const uint8_t *sc = b, *qs = b + 16;
		int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
		float d = h2f(b + 80), dmin = h2f(b + 82);
		return d * (sc[e / 16] & 15) * q - dmin * (sc[e / 16] >> 4);
	}
	case MUSE_DT_Q3_K: { /* hmask[32] qs[64] scales[12] d */
		const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
		int lo = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
		int hb = (hm[e % 32] >> (e / 32)) & 1;
		int v = lo + 4 * hb - 4, j = e / 16;
		int s = (j < 8 ? sc[j] & 15 : sc[j - 8] >> 4) | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
		return h2f(b + 108) * (s - 32) * v;
	}
	case MUSE_DT_Q4_K:
	case MUSE_DT_Q5_K: { /* d dmin scales[12] [qh[32]] qs[128] */
		const uint8_t *sc = b + 4, *qh = b + 16, *qs = t == MUSE_DT_Q4_K ? b + 16 : b + 48;
		int j = e / 32, c = e / 64, l = e % 32, hi = (e % 64) >= 32;
		int s, m;
		if (j < 4) {
			s = sc[j] & 63;
			m = sc[j + 4] & 63;
		} else {
			s = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4);
			m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
		}
		int q = hi ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
		if (t == MUSE_DT_Q5_K)
			q += ((qh[l] >> (2 * c + hi)) & 1) * 16;
		return h2f(b) * s * q - h2f(b + 2) * m;
	}
	case MUSE_DT_Q6_K: { /* ql[128] qh[64] scales[16] d */
		const uint8_t *ql = b + 128 * 0, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		int n = e / 128, k = e % 128, l = k % 32, quarter = k / 32;
		int lowsrc = ql[64 * n + l + 32 * (quarter & 1)];
		int low = quarter < 2 ? lowsrc & 15 : lowsrc >> 4;
		int high = (qh[32 * n + l] >> (2 * quarter)) & 3;
		return h2f(b + 208) * sc[8 * n + k / 16] * ((low | high << 4) - 32);
	}
	default:
		return NAN;
	}
}

static int same_float(float a, float b)
{
	return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b));
}

/* Random bytes (fp16 fields random but finite) decode the same through muse and the spec decoder. */
static void test_decode_matches_spec(void)
{
	rng_state = 7;
	for (size_t k = 0; k < NKT; k++) {
		muse_dtype t = KTYPES[k];
		size_t bb = muse_dtype_info(t)->block_bytes, nblk = 64;
		uint8_t *raw = xmalloc(bb * nblk);
		float *out = xmalloc(sizeof(float) * MUSE_QK_K * nblk);
		for (size_t i = 0; i < bb * nblk; i++)
			raw[i] = (uint8_t)rng32();
		for (size_t i = 0; i < nblk; i++) { /* keep each fp16 finite: clear its top exponent bit */
			uint8_t *b = raw + i * bb;
			size_t offs[2] = { 0, 2 };
			int nf = t == MUSE_DT_Q3_K || t == MUSE_DT_Q6_K ? 1 : 2;
			if (t == MUSE_DT_Q2_K)
				offs[0] = 80, offs[1] = 82;
			if (t == MUSE_DT_Q3_K)
				offs[0] = 108;
			if (t == MUSE_DT_Q6_K)
				offs[0] = 208;
			for (int f = 0; f < nf; f++)
				b[offs[f] + 1] &= 0xBF;
		}
		muse_quant_traits_of(t)->dequantize(raw, out, (int64_t)(MUSE_QK_K * nblk));
		int bad = 0;
		for (size_t i = 0; i < nblk; i++)
			for (int e = 0; e < MUSE_QK_K; e++)
				if (!same_float(out[i * MUSE_QK_K + e], spec_elem(t, raw + i * bb, e)) && !bad++)
					printf("#   %s block %zu elem %d: %a vs spec %a\n", muse_dtype_name(t), i, e,
					       out[i * MUSE_QK_K + e], spec_elem(t, raw + i * bb, e));
		CHECK(bad == 0);
		free(raw);
		free(out);
	}
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

/* Coarse quality bounds (about 1.5x what ggml reaches), ordered by bits: catches a wrong-but-plausible decoder. */
static void test_roundtrip_error(void)
{
	static const double bound[NKT] = { 0.45, 0.25, 0.12, 0.06, 0.03 };
	float imp[1024];
	for (int i = 0; i < 1024; i++)
		imp[i] = 1.0f;
	double prev = 1.0;
	for (size_t k = 0; k < NKT; k++) {
		double e = roundtrip_rel_rms(KTYPES[k], NULL), ei = roundtrip_rel_rms(KTYPES[k], imp);
		if (e > bound[k] || ei > bound[k] || e >= prev)
			printf("#   %s: rel rms %.4f (imatrix %.4f), bound %.2f\n", muse_dtype_name(KTYPES[k]), e, ei,
			       bound[k]);
		CHECK(e <= bound[k]);
		CHECK(ei <= bound[k]);
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
	for (size_t k = 0; k < NKT; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(KTYPES[k]);
		size_t rb = row_bytes(KTYPES[k], 2 * MUSE_QK_K);
		uint8_t *q = xmalloc(rb), *zero = xmalloc(rb);
		for (int pass = 0; pass < 2; pass++) {
			memset(q, 0xAA, rb);
			CHECK_EQ_U64(tr->quantize_ref(x, q, 1, 2 * MUSE_QK_K, pass ? imp : NULL), rb);
			CHECK(memcmp(q, zero, rb) == 0);
			tr->dequantize(q, y, 2 * MUSE_QK_K);
			for (int i = 0; i < 2 * MUSE_QK_K; i++) /* Q6_K gives -0 (d * sc * -32), as ggml does */
				CHECK(y[i] == 0);
		}
		free(q);
		free(zero);
	}
}

/* Constant blocks of either sign decode within 3% (Q6_K's fp16 scale goes subnormal for 1e-3: 2.3%). */
static void test_constant_blocks(void)
{
	float x[MUSE_QK_K], y[MUSE_QK_K];
	static const float vals[] = { 0.75f, -0.75f, 3e4f, 1e-3f };
	for (size_t k = 0; k < NKT; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(KTYPES[k]);
		uint8_t q[256];
		for (size_t v = 0; v < sizeof vals / sizeof *vals; v++) {
			for (int i = 0; i < MUSE_QK_K; i++)
				x[i] = vals[v];
			tr->quantize_ref(x, q, 1, MUSE_QK_K, NULL);
			tr->dequantize(q, y, MUSE_QK_K);
			for (int i = 0; i < MUSE_QK_K; i++)
				CHECK(fabsf(y[i] - x[i]) <= 0.03f * fabsf(x[i]));
		}
	}
}

/* Huge, tiny, subnormal and outlier inputs: no sanitizer report; output is deterministic run to run. */
static void test_extreme_magnitudes(void)
{
	const int64_t n = 6 * MUSE_QK_K;
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
		default: x[i] = (i & 1) ? -0.0f : 0.0f; break;
		}
		imp[i] = (i % 5) ? (float)(rng32() >> 8) * 0x1p-24f : 0.0f;
	}
	for (size_t k = 0; k < NKT; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(KTYPES[k]);
		size_t rb = row_bytes(KTYPES[k], n);
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

/* muse_quantize_rows: 1 thread, 3 threads and the reference called directly give the same bytes. */
static void test_threads(void)
{
	const int64_t nrows = 37, npr = 768;
	float *x = xmalloc(sizeof(float) * nrows * npr), imp[768];
	rng_state = 11;
	for (int64_t i = 0; i < nrows * npr; i++)
		x[i] = rng_normal();
	for (int i = 0; i < npr; i++)
		imp[i] = (float)(rng32() >> 8) * 0x1p-24f;
	for (size_t k = 0; k < NKT; k++) {
		size_t sz = row_bytes(KTYPES[k], npr) * nrows;
		uint8_t *a = xmalloc(sz), *b = xmalloc(sz), *c = xmalloc(sz);
		for (int pass = 0; pass < 2; pass++) {
			const float *im = pass ? imp : NULL;
			muse_err err = { 0 };
			CHECK(muse_quantize_rows(KTYPES[k], x, a, nrows, npr, im, 1, &err) == MUSE_OK);
			CHECK(muse_quantize_rows(KTYPES[k], x, b, nrows, npr, im, 3, &err) == MUSE_OK);
			CHECK_EQ_U64(muse_quant_traits_of(KTYPES[k])->quantize_ref(x, c, nrows, npr, im), sz);
			CHECK(memcmp(a, b, sz) == 0);
			CHECK(memcmp(a, c, sz) == 0);
		}
		free(a);
		free(b);
		free(c);
	}
	free(x);
}

/* ---- file modes ---- */

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f || fseek(f, 0, SEEK_END) != 0) {
		fprintf(stderr, "test_quant_k: cannot read '%s'\n", path);
		exit(2);
	}
	long n = ftell(f);
	rewind(f);
	void *buf = xmalloc((size_t)n);
	if (n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "test_quant_k: cannot read '%s'\n", path);
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
		fprintf(stderr, "test_quant_k: cannot write '%s'\n", path);
		exit(2);
	}
}

static muse_dtype ktype(const char *name)
{
	muse_dtype t = muse_dtype_from_name(name);
	if (t == MUSE_DT_INVALID || !muse_quant_traits_of(t)) {
		fprintf(stderr, "test_quant_k: unknown block type '%s'\n", name);
		exit(2);
	}
	return t;
}

static int mode_quant(int argc, char **argv)
{
	muse_dtype t = ktype(argv[2]);
	long long npr = atoll(argv[3]);
	size_t len, ilen;
	float *x = slurp(argv[4], &len), *imp = NULL;
	if (npr <= 0 || len % ((size_t)npr * 4)) {
		fprintf(stderr, "test_quant_k: '%s' is not whole rows of %lld floats\n", argv[4], npr);
		return 2;
	}
	if (argc > 6) {
		imp = slurp(argv[6], &ilen);
		if (ilen != (size_t)npr * 4) {
			fprintf(stderr, "test_quant_k: '%s' must hold N_PER_ROW floats\n", argv[6]);
			return 2;
		}
	}
	int64_t nrows = (int64_t)(len / ((size_t)npr * 4));
	size_t rb = (size_t)(npr / muse_dtype_info(t)->blck) * muse_dtype_info(t)->block_bytes;
	void *out = xmalloc(rb * (size_t)nrows);
	muse_err err = { 0 };
	if (muse_quantize_rows(t, x, out, nrows, npr, imp, 0, &err) != MUSE_OK) {
		fprintf(stderr, "test_quant_k: %s\n", err.msg);
		return 1;
	}
	spill(argv[5], out, rb * (size_t)nrows);
	free(x);
	free(imp);
	free(out);
	return 0;
}

static int mode_dequant(char **argv)
{
	muse_dtype t = ktype(argv[2]);
	size_t len, bb = muse_dtype_info(t)->block_bytes, blck = muse_dtype_info(t)->blck;
	void *in = slurp(argv[3], &len);
	if (len % bb) {
		fprintf(stderr, "test_quant_k: '%s' is not whole %s blocks\n", argv[3], argv[2]);
		return 2;
	}
	size_t n = len / bb * blck;
	float *out = xmalloc(n * sizeof(float));
	muse_err err = { 0 };
	if (muse_dequantize(t, in, out, (int64_t)n, &err) != MUSE_OK) {
		fprintf(stderr, "test_quant_k: %s\n", err.msg);
		return 1;
	}
	spill(argv[4], out, n * sizeof(float));
	free(in);
	free(out);
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Single-thread throughput of each quantizer (and decoder) on normal rows of 4096. */
static int mode_bench(int argc, char **argv)
{
	double mb = argc > 2 ? atof(argv[2]) : 16;
	const int64_t npr = 4096, nrows = (int64_t)(mb * 1048576 / 4 / npr) > 0 ? (int64_t)(mb * 1048576 / 4 / npr) : 1;
	float *x = xmalloc(sizeof(float) * npr * nrows), *imp = xmalloc(sizeof(float) * npr);
	rng_state = 3;
	for (int64_t i = 0; i < npr * nrows; i++)
		x[i] = rng_normal();
	for (int64_t i = 0; i < npr; i++)
		imp[i] = (float)(rng32() >> 8) * 0x1p-24f + 0.01f;
	double in_mb = (double)(npr * nrows) * 4 / 1e6;
	for (size_t k = 0; k < NKT; k++) {
		const muse_quant_traits *tr = muse_quant_traits_of(KTYPES[k]);
		uint8_t *q = xmalloc(row_bytes(KTYPES[k], npr) * nrows);
		double t0 = now();
		tr->quantize_ref(x, q, nrows, npr, NULL);
		double t1 = now();
		tr->quantize_ref(x, q, nrows, npr, imp);
		double t2 = now();
		tr->dequantize(q, x, npr * nrows);
		double t3 = now();
		printf("%-5s quantize %7.1f MB/s  with imatrix %7.1f MB/s  dequantize %8.1f MB/s (f32 out)\n",
		       muse_dtype_name(KTYPES[k]), in_mb / (t1 - t0), in_mb / (t2 - t1), in_mb / (t3 - t2));
		free(q);
		rng_state = 3;
		for (int64_t i = 0; i < npr * nrows; i++)
			x[i] = rng_normal();
	}
	free(x);
	free(imp);
	return 0;
}

int main(int argc, char **argv)
{
	unit_file_name = "quant_k";
	if (argc >= 6 && argc <= 7 && strcmp(argv[1], "quant") == 0)
		return mode_quant(argc, argv);
	if (argc == 5 && strcmp(argv[1], "dequant") == 0)
		return mode_dequant(argv);
	if (argc == 4 && strcmp(argv[1], "golden") == 0) {
		float *x = xmalloc(sizeof(float) * G_ROWS * G_N), imp[G_N];
		golden_input(x, imp);
		spill(argv[2], x, sizeof(float) * G_ROWS * G_N);
		spill(argv[3], imp, sizeof imp);
		free(x);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "bench") == 0)
		return mode_bench(argc, argv);
	if (argc != 1) {
		fprintf(stderr, "usage: test_quant_k [quant TYPE N_PER_ROW IN OUT [IMATRIX] | dequant TYPE IN OUT | "
				"bench [MB] | golden X_OUT IMP_OUT]\n");
		return 2;
	}
	RUN(test_golden_ggml);
	RUN(test_decode_matches_spec);
	RUN(test_roundtrip_error);
	RUN(test_zero_blocks);
	RUN(test_constant_blocks);
	RUN(test_extreme_magnitudes);
	RUN(test_threads);
	UNIT_MAIN_END();
}
