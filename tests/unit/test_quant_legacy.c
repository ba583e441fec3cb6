/* test_quant_legacy.c: Q4_0..Q8_0, IQ4_NL/XS, MXFP4, TQ1_0/TQ2_0: known blocks, ggml golden hashes, threads. */
/*
 * Modes:
 *   test_quant_legacy                                       the unit tests (PASS/FAIL lines)
 *   test_quant_legacy quant [-tN] TYPE N_PER_ROW IN OUT [IMATRIX]
 *                                                           quantizes raw f32 rows with muse_quantize_rows
 *                                                           (N threads, default all); the interop tests
 *                                                           compare OUT with gguf-py and ggml
 *   test_quant_legacy dequant TYPE IN OUT                   muse_dequantize of raw blocks to f32
 *   test_quant_legacy golden-input IN IMATRIX               writes the integer-generated rows and weights
 *                                                           behind the golden hashes below, so they can be
 *                                                           recomputed with ggml (see golden_hashes)
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../quant/quant.h"
#include "../../quant/quant_tables.h"
#include "quant_test_data.h"
#include "unit.h"

static const muse_dtype TYPES[] = {
	MUSE_DT_Q4_0, MUSE_DT_Q4_1, MUSE_DT_Q5_0, MUSE_DT_Q5_1, MUSE_DT_Q8_0,
	MUSE_DT_IQ4_NL, MUSE_DT_IQ4_XS, MUSE_DT_MXFP4, MUSE_DT_TQ1_0, MUSE_DT_TQ2_0,
};
#define NTYPES (sizeof TYPES / sizeof *TYPES)

static float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static size_t row_bytes(muse_dtype t, int64_t n_per_row)
{
	const muse_dtype_traits *dt = muse_dtype_info(t);
	return (size_t)(n_per_row / dt->blck) * dt->block_bytes;
}

/* splitmix64 over quant_test_data.h's rng_state (this file's golden hashes were made with it) */
static uint64_t rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A bell-shaped value (sum of four 16-bit uniforms) in [-8, 8), exact in f32: no libm, same on every machine. */
static float pseudo_normal(void)
{
	uint64_t r = rng();
	int32_t s = (int32_t)(r & 0xFFFF) + (int32_t)(r >> 16 & 0xFFFF) + (int32_t)(r >> 32 & 0xFFFF) +
		    (int32_t)(r >> 48 & 0xFFFF) - 2 * 65536;
	return (float)s / 16384.0f;
}

/* ---- the golden input: every row kind the quantizers get wrong, built from integers and powers of two ---- */

#define G_ROWS 12
#define G_N 512

static void golden_input(float *x, float *im)
{
	rng_state = 0x5EED0001ull;
	for (int r = 0; r < G_ROWS; r++) {
		float *row = x + r * G_N;
		for (int j = 0; j < G_N; j++) {
			float v = pseudo_normal();
			switch (r) {
			case 0: row[j] = v; break;                          /* plain bell curve */
			case 1: row[j] = ldexpf(v, -100); break;            /* ~1e-30 */
			case 2: row[j] = ldexpf(v, 100); break;             /* ~1e30 */
			case 3: row[j] = j % 3 ? 0.0f : -0.0f; break;       /* all zero, +0 and -0 */
			case 4: row[j] = j < 256 ? 0.75f : -3.0f; break;    /* constant blocks */
			case 5: row[j] = fabsf(v); break;                   /* one sign */
			case 6: row[j] = -fabsf(v); break;
			case 7: row[j] = j == 77 ? 40.0f : ldexpf(v, -7); break; /* one outlier */
			case 8: row[j] = ldexpf(v, -136); break;            /* subnormal */
			case 9: row[j] = ldexpf(v, (j / 32) * 3 - 24); break; /* each block its own scale */
			case 10: row[j] = (float)((int)(rng() % 17) - 8); break; /* small integers, many ties */
			default: row[j] = j % 32 == 5 ? -v * 8 : v; break;  /* a dominant negative per block */
			}
		}
	}
	for (int j = 0; j < G_N; j++) {
		uint64_t r = rng();
		im[j] = r % 7 == 0 ? 0.0f : (float)(r >> 40 & 1023) / 256.0f + 0.001f;
	}
}

/*
 * FNV-1a of ggml's output for the golden input (ggml_quantize_chunk of llama.cpp 0c1e57098bba through
 * tests/oracle/ggml_quant), without and with the importance weights, and of ggml's to_float of the
 * unweighted bytes (Q8_0, MXFP4 and the TQ types ignore weights, hence equal columns). Checked against
 * ggml, and printed for pasting when stale, by tests/interop/test_quant_legacy.py::
 * test_unit_golden_table_matches_ggml; never taken from muse's own output.
 */
static const struct {
	muse_dtype t;
	uint64_t plain, weighted, decoded;
} GOLDEN[] = {
	{ MUSE_DT_Q4_0, 0x5fa03cef7cc879e5ull, 0xbf7a0e42e1a46742ull, 0x9ea4a4405e7e1f6full },
	{ MUSE_DT_Q4_1, 0x1172ca95a2012aa1ull, 0x1eb5d88f4e199a6dull, 0x4eb6fd29a2276cb1ull },
	{ MUSE_DT_Q5_0, 0x03ae8e1cd876e9f5ull, 0xb957adbf602bd7edull, 0x112a37a248074156ull },
	{ MUSE_DT_Q5_1, 0x7f2ef5f2ef1d4038ull, 0xe591b08e6b9b2bebull, 0x7a4434bcba516b8full },
	{ MUSE_DT_Q8_0, 0x44b66ac592d7dcf7ull, 0x44b66ac592d7dcf7ull, 0xff5e08f03c524deaull },
	{ MUSE_DT_IQ4_NL, 0x59c838742c6b2bd5ull, 0x5a69d3b8ac556eeeull, 0xba482bd8e322f57full },
	{ MUSE_DT_IQ4_XS, 0x4bb5194eb24413d1ull, 0x8daf7729ff02a1daull, 0x2f643bf8c215f12bull },
	{ MUSE_DT_MXFP4, 0x3c8173b027213a6dull, 0x3c8173b027213a6dull, 0x59422e5e4b588075ull },
	{ MUSE_DT_TQ1_0, 0xd1e2acff94deaa5aull, 0xd1e2acff94deaa5aull, 0x38882234d0fa6f97ull },
	{ MUSE_DT_TQ2_0, 0x4bac64c811317f89ull, 0x4bac64c811317f89ull, 0x38882234d0fa6f97ull },
};

static void golden_hashes(void)
{
	float *x = xmalloc(sizeof(float) * G_ROWS * G_N), *im = xmalloc(sizeof(float) * G_N);
	float *back = xmalloc(sizeof(float) * G_ROWS * G_N);
	uint8_t *q = xmalloc(row_bytes(MUSE_DT_Q8_0, G_N) * G_ROWS * 2);
	golden_input(x, im);
	for (size_t i = 0; i < sizeof GOLDEN / sizeof *GOLDEN; i++) {
		const muse_quant_traits *tr = muse_quant_traits_of(GOLDEN[i].t);
		size_t n = row_bytes(GOLDEN[i].t, G_N) * G_ROWS;
		CHECK(tr->quantize_ref(x, q, G_ROWS, G_N, im) == n);
		uint64_t hw = fnv1a(q, n);
		CHECK(tr->quantize_ref(x, q, G_ROWS, G_N, NULL) == n);
		uint64_t hp = fnv1a(q, n);
		tr->dequantize(q, back, G_ROWS * G_N);
		uint64_t hd = fnv1a(back, sizeof(float) * G_ROWS * G_N);
		if (hp != GOLDEN[i].plain || hw != GOLDEN[i].weighted || hd != GOLDEN[i].decoded)
			printf("#   %s: plain %016llx weighted %016llx decoded %016llx, ggml %016llx %016llx %016llx\n",
			       muse_dtype_name(GOLDEN[i].t), (unsigned long long)hp, (unsigned long long)hw,
			       (unsigned long long)hd, (unsigned long long)GOLDEN[i].plain,
			       (unsigned long long)GOLDEN[i].weighted, (unsigned long long)GOLDEN[i].decoded);
		CHECK(hp == GOLDEN[i].plain);
		CHECK(hw == GOLDEN[i].weighted);
		CHECK(hd == GOLDEN[i].decoded);
	}
	free(x);
	free(im);
	free(back);
	free(q);
}

/* ---- the table and the driver ---- */

static void traits_cover_types(void)
{
	float x[256] = { 0 };
	uint8_t q[512];
	for (size_t i = 0; i < NTYPES; i++) {
		const muse_quant_traits *tr = muse_quant_traits_of(TYPES[i]);
		CHECK(tr != NULL);
		if (!tr)
			continue;
		CHECK(tr->quantize_ref != NULL && tr->dequantize != NULL && !tr->needs_importance);
		/* the weak fallbacks in quant_pending.c return 0; a real quantizer returns the row size */
		CHECK_EQ_U64(tr->quantize_ref(x, q, 1, 256, NULL), row_bytes(TYPES[i], 256));
	}
}

static void threads_identical(void)
{
	/* 37 rows: not a multiple of the driver's 16-row chunks; 1536 = six K blocks, 48 legacy blocks */
	const int64_t nrows = 37, n = 1536;
	float *x = xmalloc(sizeof(float) * (size_t)(nrows * n)), *im = xmalloc(sizeof(float) * (size_t)n);
	rng_state = 42;
	for (int64_t i = 0; i < nrows * n; i++)
		x[i] = pseudo_normal() * (float)(1 + i % 5);
	for (int64_t j = 0; j < n; j++)
		im[j] = j % 11 ? (float)(rng() % 100) / 10.0f : 0.0f;
	for (size_t t = 0; t < NTYPES; t++) {
		size_t nb = row_bytes(TYPES[t], n) * (size_t)nrows;
		uint8_t *a = xmalloc(nb), *b = xmalloc(nb), *c = xmalloc(nb);
		for (int w = 0; w < 2; w++) {
			const float *imp = w ? im : NULL;
			muse_err err;
			memset(a, 0xA5, nb);
			memset(b, 0x5A, nb);
			CHECK(muse_quantize_rows(TYPES[t], x, a, nrows, n, imp, 1, &err) == MUSE_OK);
			CHECK(muse_quantize_rows(TYPES[t], x, b, nrows, n, imp, 2, &err) == MUSE_OK);
			CHECK(muse_quantize_rows(TYPES[t], x, c, nrows, n, imp, 5, &err) == MUSE_OK);
			CHECK(memcmp(a, b, nb) == 0);
			CHECK(memcmp(a, c, nb) == 0);
			/* and the driver is the per-type function, row by row */
			CHECK(muse_quant_traits_of(TYPES[t])->quantize_ref(x, b, nrows, n, imp) == nb);
			CHECK(memcmp(a, b, nb) == 0);
		}
		free(a);
		free(b);
		free(c);
	}
	/* threaded decoding: more than 4 x 4096 blocks takes the parallel path */
	const int64_t big = 5 * 4096 * 32 + 96;
	uint8_t *raw = xmalloc(row_bytes(MUSE_DT_Q8_0, big));
	float *d1 = xmalloc(sizeof(float) * (size_t)big), *d2 = xmalloc(sizeof(float) * (size_t)big);
	for (size_t i = 0; i < row_bytes(MUSE_DT_Q8_0, big); i++)
		raw[i] = (uint8_t)rng();
	for (size_t t = 0; t < NTYPES; t++) {
		const muse_dtype_traits *dt = muse_dtype_info(TYPES[t]);
		int64_t nel = big / dt->blck * dt->blck;
		muse_err err;
		CHECK(muse_dequantize(TYPES[t], raw, d1, nel, &err) == MUSE_OK);
		muse_quant_traits_of(TYPES[t])->dequantize(raw, d2, nel);
		CHECK(memcmp(d1, d2, sizeof(float) * (size_t)nel) == 0);
	}
	free(raw);
	free(d1);
	free(d2);
	free(x);
	free(im);
}

/*
 * The block structs need their alignment (2 for most types, lib/block_layout.h): muse_dequantize takes a source
 * at any address (a tensor mapped from a GGUF whose general.alignment is 1) and gives the aligned decode, across
 * several bounce chunks; UBSan's alignment check runs here. A misaligned output buffer is refused.
 */
static void misaligned_buffers(void)
{
	const int64_t nblk = 2600;
	for (int t = 1; t < MUSE_DT_COUNT; t++) {
		const muse_quant_traits *q = muse_quant_traits_of((muse_dtype)t);
		if (!q || !q->dequantize)
			continue;
		const muse_dtype_traits *dt = muse_dtype_info((muse_dtype)t);
		size_t nb = (size_t)nblk * dt->block_bytes;
		int64_t nel = nblk * dt->blck;
		uint8_t *raw = xmalloc(nb + 8);
		float *d1 = xmalloc(sizeof(float) * (size_t)nel), *d2 = xmalloc(sizeof(float) * (size_t)nel);
		for (size_t i = 0; i < nb + 8; i++)
			raw[i] = (uint8_t)rng();
		muse_err err;
		CHECK(muse_dequantize((muse_dtype)t, raw, d1, nel, &err) == MUSE_OK);
		for (size_t off = 1; off < 4; off++) {
			memmove(raw + off, raw + off - 1, nb);
			CHECK(muse_dequantize((muse_dtype)t, raw + off, d2, nel, &err) == MUSE_OK);
			CHECK(memcmp(d1, d2, sizeof(float) * (size_t)nel) == 0);
		}
		if (q->align > 1) {
			float x[256] = { 0 };
			CHECK(muse_quantize_rows((muse_dtype)t, x, raw + 1, 1, dt->blck, x, 1, &err) == MUSE_ERR_USAGE);
		}
		free(raw);
		free(d1);
		free(d2);
	}
}

static void driver_errors(void)
{
	float x[64] = { 0 };
	uint8_t q[64];
	muse_err err;
	CHECK(muse_quantize_rows(MUSE_DT_Q4_0, x, q, 1, 48, NULL, 1, &err) == MUSE_ERR_FORMAT);
	CHECK(muse_quantize_rows(MUSE_DT_IQ4_XS, x, q, 1, 64, NULL, 1, &err) == MUSE_ERR_FORMAT);
	CHECK(muse_quantize_rows(MUSE_DT_F32, x, q, 1, 32, NULL, 1, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_dequantize(MUSE_DT_TQ1_0, q, x, 32, &err) == MUSE_ERR_FORMAT);
}

/* ---- known blocks, worked out by hand from ggml's code ---- */

static void quant1(muse_dtype t, const float *x, int64_t n, uint8_t *out)
{
	CHECK_EQ_U64(muse_quant_traits_of(t)->quantize_ref(x, out, 1, n, NULL), row_bytes(t, n));
}

static void zero_blocks(void)
{
	float z[256] = { 0 };
	uint8_t q[256];
	/* Q4_0: max stays +0, d = +0 / -8 = -0 (fp16 0x8000); 0 * 0 + 8.5 truncates to 8 */
	quant1(MUSE_DT_Q4_0, z, 32, q);
	CHECK(q[0] == 0x00 && q[1] == 0x80 && q[2] == 0x88 && q[17] == 0x88);
	/* Q5_0: likewise d = -0; q = 16: low nibbles 0, every fifth bit set */
	quant1(MUSE_DT_Q5_0, z, 32, q);
	CHECK(q[1] == 0x80 && q[2] == 0xFF && q[5] == 0xFF && q[6] == 0x00 && q[21] == 0x00);
	/* Q4_1 / Q5_1 / Q8_0: d = +0, m = +0, q = 0 */
	quant1(MUSE_DT_Q4_1, z, 32, q);
	for (int i = 0; i < 20; i++)
		CHECK(q[i] == 0);
	quant1(MUSE_DT_Q5_1, z, 32, q);
	for (int i = 0; i < 24; i++)
		CHECK(q[i] == 0);
	quant1(MUSE_DT_Q8_0, z, 32, q);
	for (int i = 0; i < 34; i++)
		CHECK(q[i] == 0);
	/* IQ4_NL: scale 0, levels re-picked at 0: the level nearest 0 is index 8 (value 1) */
	quant1(MUSE_DT_IQ4_NL, z, 32, q);
	CHECK(q[0] == 0 && q[1] == 0 && q[2] == 0x88 && q[17] == 0x88);
	/* IQ4_XS: d = -0/32 (0x8000), sub-scale 0 stored as 32: low nibbles 0, high bits 2 -> 0xAAAA */
	quant1(MUSE_DT_IQ4_XS, z, 256, q);
	CHECK(q[0] == 0x00 && q[1] == 0x80 && q[2] == 0xAA && q[3] == 0xAA && q[4] == 0 && q[7] == 0);
	CHECK(q[8] == 0x88 && q[135] == 0x88);
	/* MXFP4: e = 0, index 0 (+0) wins over 8 (-0) */
	quant1(MUSE_DT_MXFP4, z, 32, q);
	for (int i = 0; i < 17; i++)
		CHECK(q[i] == 0);
	/* TQ2_0: trit 0 stored as 1 in every 2-bit field */
	quant1(MUSE_DT_TQ2_0, z, 256, q);
	CHECK(q[0] == 0x55 && q[63] == 0x55 && q[64] == 0 && q[65] == 0);
	/* TQ1_0: 11111 in base 3 = 121 -> ceil(121 * 256 / 243) = 128; qh 1111 shifted = 120 -> 127 */
	quant1(MUSE_DT_TQ1_0, z, 256, q);
	CHECK(q[0] == 128 && q[47] == 128 && q[48] == 127 && q[51] == 127 && q[52] == 0 && q[53] == 0);
}

static void known_encodings(void)
{
	float x[256];
	uint8_t q[256];
	/* Q8_0 of integers with largest magnitude 127: d = 1, q = x exactly */
	for (int j = 0; j < 32; j++)
		x[j] = (float)(j % 2 ? -j * 4 : j * 4);
	x[31] = 127.0f;
	quant1(MUSE_DT_Q8_0, x, 32, q);
	CHECK(q[0] == 0x00 && q[1] == 0x3C); /* fp16 1.0 */
	for (int j = 0; j < 32; j++)
		CHECK((int8_t)q[2 + j] == (int)x[j]);
	/* Q8_0 rounds half away from zero: amax 127, x = +-2.5 -> +-3 */
	x[0] = 2.5f;
	x[1] = -2.5f;
	quant1(MUSE_DT_Q8_0, x, 32, q);
	CHECK((int8_t)q[2] == 3 && (int8_t)q[3] == -3);
	/* Q4_0: the largest magnitude -8 gives d = 1; x + 8.5 truncated: -8 -> 0, 7 -> 15, 0.5 -> 9 */
	for (int j = 0; j < 32; j++)
		x[j] = (float)(j % 16) - 8.0f;
	x[16] = 0.5f;
	quant1(MUSE_DT_Q4_0, x, 32, q);
	CHECK(q[0] == 0x00 && q[1] == 0x3C);
	CHECK(q[2] == (0x0 | 9 << 4));  /* elem 0 = -8 -> 0, elem 16 = 0.5 -> 9 */
	CHECK(q[17] == (15 | 15 << 4)); /* elems 15, 31 = 7 */
	/* Q4_0 with the positive 8 the largest: d = -1, so x = 8 -> 0 and x = -7 -> 15 */
	x[0] = 8.0f;
	quant1(MUSE_DT_Q4_0, x, 32, q);
	CHECK(q[0] == 0x00 && q[1] == 0xBC && (q[2] & 15) == 0 && (q[3] & 15) == 15);
	/* Q4_1: min -1, max 14 -> d = 1, m = -1, q = x + 1 */
	for (int j = 0; j < 32; j++)
		x[j] = (float)(j % 16) - 1.0f;
	quant1(MUSE_DT_Q4_1, x, 32, q);
	CHECK(q[0] == 0x00 && q[1] == 0x3C && q[2] == 0x00 && q[3] == 0xBC);
	for (int j = 0; j < 16; j++)
		CHECK(q[4 + j] == (j | j << 4));
	/* MXFP4: amax 6 -> e = floor(log2 6) - 2 + 127 = 127, scale 0.5: 6 = 12 * 0.5 -> index 7 */
	for (int j = 0; j < 32; j++)
		x[j] = 0.0f;
	x[0] = 6.0f;
	x[16] = -1.5f; /* -3 * 0.5 -> index 11 */
	x[1] = 0.75f;  /* between 1 (0.5) and 2 (1.0): tie -> the first found, index 1 */
	quant1(MUSE_DT_MXFP4, x, 32, q);
	CHECK(q[0] == 127 && q[1] == (7 | 11 << 4) && q[2] == 1);
	/* TQ2_0: amax 2, x/2 rounded half away from zero: 1 -> 1 (code 2), -1 -> -1 (code 0), 0.9 -> 0 (code 1) */
	for (int j = 0; j < 256; j++)
		x[j] = 0.0f;
	x[0] = 2.0f;
	x[32] = 1.0f;
	x[64] = -1.0f;
	x[96] = 0.9f;
	quant1(MUSE_DT_TQ2_0, x, 256, q);
	CHECK(q[0] == (2 | 2 << 2 | 0 << 4 | 1 << 6));
	CHECK(q[64] == 0x00 && q[65] == 0x40); /* fp16 2.0 */
}

static void put_f16(uint8_t *p, uint16_t h)
{
	p[0] = (uint8_t)h;
	p[1] = (uint8_t)(h >> 8);
}

static void known_decodings(void)
{
	uint8_t b[136];
	float y[256];
	/* Q4_0 d = 1: elem j = low nibble - 8, elem j + 16 = high nibble - 8 */
	put_f16(b, 0x3C00);
	for (int j = 0; j < 16; j++)
		b[2 + j] = (uint8_t)(j | (15 - j) << 4);
	muse_dequantize_q4_0(b, y, 32);
	for (int j = 0; j < 16; j++)
		CHECK(y[j] == (float)(j - 8) && y[j + 16] == (float)(7 - j));
	/* Q4_1 d = 0.5, m = -2 */
	put_f16(b, 0x3800);
	put_f16(b + 2, 0xC000);
	for (int j = 0; j < 16; j++)
		b[4 + j] = (uint8_t)(j | (15 - j) << 4);
	muse_dequantize_q4_1(b, y, 32);
	for (int j = 0; j < 16; j++)
		CHECK(y[j] == (float)j * 0.5f - 2 && y[j + 16] == (float)(15 - j) * 0.5f - 2);
	/* Q5_0 d = 2: qh bit j is the fifth bit of elem j */
	put_f16(b, 0x4000);
	b[2] = 0x01; /* elem 0 */
	b[3] = 0x00;
	b[4] = 0x01; /* elem 16 */
	b[5] = 0x80; /* elem 31 */
	memset(b + 6, 0x00, 16);
	b[6] = 0x3F; /* elem 0 low 15, elem 16 low 3 */
	muse_dequantize_q5_0(b, y, 32);
	CHECK(y[0] == (31.0f - 16) * 2 && y[16] == (19.0f - 16) * 2 && y[31] == 0.0f && y[1] == -32.0f);
	/* Q5_1 d = 1, m = 0.25 */
	put_f16(b, 0x3C00);
	put_f16(b + 2, 0x3400);
	memset(b + 4, 0, 20);
	b[4] = 0x02;  /* elem 1 has the fifth bit */
	b[8] = 0x21;  /* elem 0 low 1, elem 16 low 2 */
	b[9] = 0x0F;  /* elem 1 low 15 */
	muse_dequantize_q5_1(b, y, 32);
	CHECK(y[0] == 1.25f && y[16] == 2.25f && y[1] == 31.25f && y[2] == 0.25f);
	/* Q8_0 d = -0.5 */
	put_f16(b, 0xB800);
	for (int j = 0; j < 32; j++)
		b[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
	muse_dequantize_q8_0(b, y, 32);
	for (int j = 0; j < 32; j++)
		CHECK(y[j] == (float)(j * 8 - 128) * -0.5f);
	/* IQ4_NL d = 1: the table itself */
	put_f16(b, 0x3C00);
	for (int j = 0; j < 16; j++)
		b[2 + j] = (uint8_t)(j | (15 - j) << 4);
	muse_dequantize_iq4_nl(b, y, 32);
	for (int j = 0; j < 16; j++)
		CHECK(y[j] == muse_kvalues_iq4nl[j] && y[j + 16] == muse_kvalues_iq4nl[15 - j]);
	/* IQ4_XS d = 0.25: sub-block ib scale = (low nibble | high 2 bits << 4) - 32 */
	memset(b, 0, 136);
	put_f16(b, 0x3400);
	b[2] = 0x03; /* scales_h: sub-block 0 high bits 3, sub-block 7 (bits 14-15) 2 */
	b[3] = 0x80;
	b[4] = 0x21; /* sub-block 0 low 1, sub-block 1 low 2 (high 0 -> 2 - 32 = -30) */
	b[7] = 0x50; /* sub-block 7 low 5 -> 37 - 32 = 5 */
	b[8] = 0x0F; /* elem 0 index 15 */
	b[8 + 16] = 0x01; /* elem 32 index 1 */
	b[8 + 7 * 16] = 0xF0; /* elem 224 + 16 index 15 */
	muse_dequantize_iq4_xs(b, y, 256);
	CHECK(y[0] == 0.25f * (49 - 32) * 113 && y[16] == 0.25f * 17 * -127);
	CHECK(y[32] == 0.25f * -30 * -104 && y[224 + 16] == 0.25f * 5 * 113 && y[224] == 0.25f * 5 * -127);
	/* MXFP4: e = 128 -> scale 1 (the doubled table as is); e = 0 -> 2^-128; e = 255 -> 2^127 (not NaN) */
	b[0] = 128;
	for (int j = 0; j < 16; j++)
		b[1 + j] = (uint8_t)(j | (15 - j) << 4);
	muse_dequantize_mxfp4(b, y, 32);
	for (int j = 0; j < 16; j++)
		CHECK(y[j] == muse_kvalues_mxfp4[j] && y[j + 16] == muse_kvalues_mxfp4[15 - j]);
	b[0] = 0;
	muse_dequantize_mxfp4(b, y, 32);
	CHECK(f2u(y[1]) == 0x00200000 && f2u(y[7]) == f2u(12.0f * u2f(0x00200000)));
	b[0] = 255;
	muse_dequantize_mxfp4(b, y, 32);
	CHECK(y[1] == ldexpf(1.0f, 127) && isinf(y[7]) && y[9] == -ldexpf(1.0f, 127));
	/* TQ2_0 d = 3: byte 32h + m, bits 2l: elem 128h + 32l + m */
	memset(b, 0x55, 64);
	b[0] = 0x06;   /* elem 0 code 2 (+1), elem 32 code 1 (0), elem 64 code 0 (-1), elem 96 code 0 */
	b[33] = 0xC0; /* elem 128 + 96 + 1 code 3 (2: unused by the encoder, still decoded) */
	put_f16(b + 64, 0x4200);
	muse_dequantize_tq2_0(b, y, 256);
	CHECK(y[0] == 3.0f && y[32] == 0.0f && y[64] == -3.0f && y[96] == -3.0f && y[1] == 0.0f);
	CHECK(y[128 + 96 + 1] == 6.0f && y[129] == -3.0f);
	/* TQ1_0 d = 1: trits 2,0,1,2,1 (value 2*81 + 0 + 9 + 2*3 + 1 = 178) -> ceil(178 * 256 / 243) = 188 */
	memset(b, 0, 54);
	b[0] = 188;
	b[32] = 188; /* the 16-byte group: elems 160 + 16n */
	b[48] = (uint8_t)((2 * 27 * 3 + 1 * 9 * 3 + 0 + 2 * 3) * 256 / 243 + 1); /* qh trits 2,1,0,2 */
	put_f16(b + 52, 0x3C00);
	muse_dequantize_tq1_0(b, y, 256);
	CHECK(y[0] == 1 && y[32] == -1 && y[64] == 0 && y[96] == 1 && y[128] == 0 && y[1] == -1);
	CHECK(y[160] == 1 && y[176] == -1 && y[192] == 0 && y[208] == 1 && y[224] == 0);
	CHECK(y[240] == 1 && y[244] == 0 && y[248] == -1 && y[252] == 1 && y[241] == -1);
}

/* ---- properties of the round trip ---- */

static void round_trip_error(void)
{
	/* Worst-case error per element relative to the block's largest magnitude, a generous bound for
	 * each type's step (plus fp16 scale rounding). Catches packing mistakes, not ggml deviations. */
	static const struct { muse_dtype t; float bound; } B[] = {
		/* Q4_0/Q5_0 put the largest magnitude on the 8 (16) side, so its negative clamps at 7 (15):
		 * one full step, 1/8 (1/16); Q8_0: half a step plus the fp16 rounding of d; the weighted
		 * searches trade the worst element for a smaller weighted sum, hence the slack */
		{ MUSE_DT_Q4_0, 0.135f }, { MUSE_DT_Q4_1, 0.12f }, { MUSE_DT_Q5_0, 0.066f },
		{ MUSE_DT_Q5_1, 0.05f }, { MUSE_DT_Q8_0, 0.0045f }, { MUSE_DT_IQ4_NL, 0.13f },
		{ MUSE_DT_IQ4_XS, 0.15f }, { MUSE_DT_MXFP4, 0.26f }, { MUSE_DT_TQ1_0, 0.5f + 1e-3f },
		{ MUSE_DT_TQ2_0, 0.5f + 1e-3f },
	};
	const int64_t nrows = 4, n = 512;
	float x[4 * 512], im[512], y[4 * 512];
	uint8_t q[4 * 512 * 2];
	rng_state = 7;
	for (int64_t i = 0; i < nrows * n; i++)
		x[i] = pseudo_normal() * 0.3f;
	for (int j = 0; j < n; j++)
		im[j] = (float)(rng() % 50) / 7.0f + 0.5f;
	for (size_t i = 0; i < sizeof B / sizeof *B; i++) {
		const muse_quant_traits *tr = muse_quant_traits_of(B[i].t);
		uint32_t blk = muse_dtype_info(B[i].t)->blck;
		for (int w = 0; w < 2; w++) {
			tr->quantize_ref(x, q, nrows, n, w ? im : NULL);
			tr->dequantize(q, y, nrows * n);
			float worst = 0;
			for (int64_t b0 = 0; b0 < nrows * n; b0 += blk) {
				float amax = 0;
				for (uint32_t j = 0; j < blk; j++)
					amax = fmaxf(amax, fabsf(x[b0 + j]));
				for (uint32_t j = 0; j < blk; j++)
					worst = fmaxf(worst, fabsf(y[b0 + j] - x[b0 + j]) / amax);
			}
			if (!(worst <= B[i].bound))
				printf("#   %s%s: worst relative error %g > %g\n", muse_dtype_name(B[i].t),
				       w ? " (weighted)" : "", worst, B[i].bound);
			CHECK(worst <= B[i].bound);
		}
	}
}

/* Inf, NaN, huge and subnormal inputs: defined behaviour (UBSan is on), the same bytes twice. */
static void hostile_values(void)
{
	static const float specials[] = { 1e30f, -1e30f, 3.4e38f, -3.4e38f, 1e-30f, 1e-40f, -1e-45f, 0.0f, -0.0f };
	float x[512], im[512];
	uint8_t q1[1024], q2[1024];
	for (int variant = 0; variant < 4; variant++) {
		rng_state = 99 + (uint64_t)variant;
		for (int j = 0; j < 512; j++) {
			uint64_t r = rng();
			x[j] = specials[r % 9];
			if (variant >= 2 && r % 13 == 0)
				x[j] = u2f(r % 2 ? 0x7F800000u : 0xFFC00000u); /* Inf, NaN */
			if (variant % 2)
				x[j] *= (float)(r >> 32 & 7);
			im[j] = (float)(r >> 40 & 3);
		}
		for (size_t t = 0; t < NTYPES; t++) {
			const muse_quant_traits *tr = muse_quant_traits_of(TYPES[t]);
			size_t nb = row_bytes(TYPES[t], 512);
			for (int w = 0; w < 2; w++) {
				CHECK(tr->quantize_ref(x, q1, 1, 512, w ? im : NULL) == nb);
				CHECK(tr->quantize_ref(x, q2, 1, 512, w ? im : NULL) == nb);
				CHECK(memcmp(q1, q2, nb) == 0);
				float y[512];
				tr->dequantize(q1, y, 512);
			}
		}
	}
}

/* ---- file modes for the interop tests ---- */

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *p = xmalloc(n > 0 ? (size_t)n : 1);
	if (n < 0 || fread(p, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		fclose(f);
		free(p);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static int spill(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

static int quant_file(int argc, char **argv)
{
	int a = 2, nthreads = 0;
	if (argc > a && !strncmp(argv[a], "-t", 2))
		nthreads = atoi(argv[a++] + 2);
	if (argc != a + 4 && argc != a + 5) {
		fprintf(stderr, "usage: test_quant_legacy quant [-tN] TYPE N_PER_ROW IN OUT [IMATRIX]\n");
		return 2;
	}
	muse_dtype t = muse_dtype_from_name(argv[a]);
	long long n_per_row = atoll(argv[a + 1]);
	size_t len, imlen = 0;
	float *src = slurp(argv[a + 2], &len), *im = NULL;
	if (!src)
		return 1;
	if (argc == a + 5 && !(im = slurp(argv[a + 4], &imlen)))
		return 1;
	if (!muse_quant_traits_of(t) || n_per_row <= 0 || len % (4 * (size_t)n_per_row) ||
	    (im && imlen != 4 * (size_t)n_per_row)) {
		fprintf(stderr, "bad type, row length or file sizes\n");
		return 2;
	}
	int64_t nrows = (int64_t)(len / (4 * (size_t)n_per_row));
	size_t out_len = row_bytes(t, n_per_row) * (size_t)nrows;
	void *dst = xmalloc(out_len);
	muse_err err;
	if (muse_quantize_rows(t, src, dst, nrows, n_per_row, im, nthreads, &err) != MUSE_OK) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		return 1;
	}
	int rc = spill(argv[a + 3], dst, out_len);
	free(src);
	free(im);
	free(dst);
	return rc;
}

static int dequant_file(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: test_quant_legacy dequant TYPE IN OUT\n");
		return 2;
	}
	muse_dtype t = muse_dtype_from_name(argv[2]);
	const muse_dtype_traits *dt = muse_dtype_info(t);
	size_t len;
	void *src = slurp(argv[3], &len);
	if (!src)
		return 1;
	if (!muse_quant_traits_of(t) || len % dt->block_bytes) {
		fprintf(stderr, "bad type or file size\n");
		return 2;
	}
	int64_t n = (int64_t)(len / dt->block_bytes * dt->blck);
	float *dst = xmalloc(sizeof(float) * (size_t)n);
	muse_err err;
	if (muse_dequantize(t, src, dst, n, &err) != MUSE_OK) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		return 1;
	}
	int rc = spill(argv[4], dst, sizeof(float) * (size_t)n);
	free(src);
	free(dst);
	return rc;
}

static int golden_input_file(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: test_quant_legacy golden-input IN IMATRIX\n");
		return 2;
	}
	float *x = xmalloc(sizeof(float) * G_ROWS * G_N), *im = xmalloc(sizeof(float) * G_N);
	golden_input(x, im);
	int rc = spill(argv[2], x, sizeof(float) * G_ROWS * G_N) || spill(argv[3], im, sizeof(float) * G_N);
	printf("%d %d\n", G_ROWS, G_N);
	free(x);
	free(im);
	return rc;
}

int main(int argc, char **argv)
{
	unit_file_name = "quant_legacy";
	if (argc > 1 && !strcmp(argv[1], "quant"))
		return quant_file(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "dequant"))
		return dequant_file(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "golden-input"))
		return golden_input_file(argc, argv);
	RUN(traits_cover_types);
	RUN(zero_blocks);
	RUN(known_encodings);
	RUN(known_decodings);
	RUN(round_trip_error);
	RUN(hostile_values);
	RUN(threads_identical);
	RUN(driver_errors);
	RUN(misaligned_buffers);
	RUN(golden_hashes);
	UNIT_MAIN_END();
}
