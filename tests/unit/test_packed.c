/* test_packed.c: packed layouts round-trip, layout constraints, RTN grids, GPTQ and AWQ properties on small random problems. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/packed.h"
#include "../../quant/awq.h"
#include "../../quant/gptq.h"
#include "../../quant/quant.h"
#include "../../quant/rtn.h"
#include "unit.h"

static uint64_t rng_state = 88172645463325252ull;
static double urand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* A random quantized layer with every code and zero value exercised. */
static void fill_random(muse_qlinear *q)
{
	uint32_t maxq = (1u << q->bits) - 1;
	for (uint64_t i = 0; i < q->rows * q->cols; i++)
		q->q[i] = (uint8_t)(urand() * (maxq + 1));
	for (uint64_t i = 0; i < q->rows * q->n_groups; i++) {
		q->scales[i] = muse_f16_to_f32(muse_f32_to_f16((float)(0.001 + urand() * 0.1)));
		q->zeros[i] = q->sym ? (uint8_t)(1u << (q->bits - 1)) : (uint8_t)(1 + urand() * maxq);
		if (q->zeros[i] > maxq)
			q->zeros[i] = (uint8_t)maxq;
	}
}

static void roundtrip(muse_packed_kind kind, int bits, uint64_t N, uint64_t K, int64_t g, bool sym, bool gidx)
{
	muse_qlinear q, d;
	muse_packed_set set, shapes;
	muse_err err = { 0 };
	CHECK(muse_qlinear_alloc(&q, N, K, bits, g, sym, gidx, &err) == MUSE_OK);
	fill_random(&q);
	if (gidx)
		for (uint64_t k = 0; k < K; k++)
			q.g_idx[k] = (int32_t)((k * 7919) % K / q.group);
	CHECK(muse_packed_encode(kind, &q, MUSE_DT_F16, &set, &err) == MUSE_OK);
	CHECK(muse_packed_shapes(kind, N, K, bits, g, sym, gidx && kind == MUSE_PACKED_GPTQ ? false : gidx, MUSE_DT_F16,
				 &shapes, &err) == MUSE_OK);
	CHECK(shapes.n == set.n);
	for (int i = 0; i < set.n && i < shapes.n; i++) {
		CHECK(!strcmp(set.t[i].suffix, shapes.t[i].suffix));
		CHECK(set.t[i].dtype == shapes.t[i].dtype && set.t[i].shape[0] == shapes.t[i].shape[0] &&
		      set.t[i].shape[1] == shapes.t[i].shape[1]);
	}
	CHECK(muse_packed_decode(kind, &set, bits, g, sym, "t", &d, &err) == MUSE_OK);
	CHECK(d.rows == N && d.cols == K && d.n_groups == q.n_groups);
	if (d.q) {
		CHECK(!memcmp(d.q, q.q, N * K));
		CHECK(!memcmp(d.zeros, q.zeros, N * q.n_groups));
		CHECK(!memcmp(d.scales, q.scales, N * q.n_groups * sizeof(float)));
		for (uint64_t k = 0; k < K; k++)
			CHECK(muse_qlinear_group_of(&d, k) == muse_qlinear_group_of(&q, k));
	}
	muse_qlinear_free(&q);
	muse_qlinear_free(&d);
	muse_packed_set_free(&set);
}

static void test_roundtrip_all_layouts(void)
{
	static const int bits[] = { 2, 3, 4, 8 };
	for (int b = 0; b < 4; b++) {
		roundtrip(MUSE_PACKED_GPTQ, bits[b], 64, 96, 32, false, false);
		roundtrip(MUSE_PACKED_GPTQ, bits[b], 32, 64, -1, true, false);
		roundtrip(MUSE_PACKED_GPTQ, bits[b], 64, 128, 32, true, true);
		roundtrip(MUSE_PACKED_CT, bits[b], 40, 96, 32, false, false);
		roundtrip(MUSE_PACKED_CT, bits[b], 33, 70, -1, true, false);
	}
	roundtrip(MUSE_PACKED_AWQ, 4, 64, 128, 32, false, false);
	roundtrip(MUSE_PACKED_AWQ, 4, 16, 64, -1, true, false);
}

/* The AutoAWQ interleave and the GPTQ v1 zero offset, byte for byte on a known layer. */
static void test_known_words(void)
{
	muse_qlinear q;
	muse_packed_set set;
	muse_err err = { 0 };
	CHECK(muse_qlinear_alloc(&q, 8, 8, 4, -1, false, false, &err) == MUSE_OK);
	for (int n = 0; n < 8; n++) {
		for (int k = 0; k < 8; k++)
			q.q[n * 8 + k] = (uint8_t)n; /* row n holds code n */
		q.zeros[n] = (uint8_t)(n + 1);
		q.scales[n] = 1;
	}
	CHECK(muse_packed_encode(MUSE_PACKED_AWQ, &q, MUSE_DT_F16, &set, &err) == MUSE_OK);
	uint32_t w;
	memcpy(&w, set.t[0].data, 4);
	CHECK_EQ_U64(w, 0x75316420u); /* nibble i holds output column ORDER[i] = 0,2,4,6,1,3,5,7 */
	muse_packed_set_free(&set);
	CHECK(muse_packed_encode(MUSE_PACKED_GPTQ, &q, MUSE_DT_F16, &set, &err) == MUSE_OK);
	memcpy(&w, set.t[1].data, 4);
	CHECK_EQ_U64(w, 0x76543210u); /* v1 qzeros: z - 1 */
	memcpy(&w, set.t[0].data + 4 * 3, 4);
	CHECK_EQ_U64(w, 0x33333333u); /* qweight column 3: eight codes 3 down K */
	muse_packed_set_free(&set);
	q.zeros[2] = 0;
	CHECK(muse_packed_encode(MUSE_PACKED_GPTQ, &q, MUSE_DT_F16, &set, &err) == MUSE_ERR_UNSUPPORTED);
	muse_qlinear_free(&q);
}

static void test_layout_constraints(void)
{
	muse_packed_set s;
	muse_err err = { 0 };
	CHECK(muse_packed_shapes(MUSE_PACKED_AWQ, 64, 128, 3, 32, false, false, MUSE_DT_F16, &s, &err) != MUSE_OK);
	CHECK(muse_packed_shapes(MUSE_PACKED_AWQ, 60, 128, 4, 32, false, false, MUSE_DT_F16, &s, &err) != MUSE_OK);
	CHECK(muse_packed_shapes(MUSE_PACKED_GPTQ, 64, 100, 4, 32, false, false, MUSE_DT_F16, &s, &err) != MUSE_OK);
	CHECK(muse_packed_shapes(MUSE_PACKED_GPTQ, 64, 96, 3, 32, false, true, MUSE_DT_F16, &s, &err) == MUSE_OK);
	CHECK(s.n == 4 && s.t[0].shape[0] == 9 && s.t[1].shape[1] == 6);
	CHECK(muse_packed_shapes(MUSE_PACKED_CT, 64, 96, 4, 32, true, true, MUSE_DT_F16, &s, &err) != MUSE_OK);
	CHECK(muse_packed_shapes(MUSE_PACKED_CT, 64, 96, 3, 32, false, false, MUSE_DT_BF16, &s, &err) == MUSE_OK);
	CHECK(s.n == 4 && s.t[0].shape[1] == 9 && s.t[3].shape[0] == 6 && s.t[1].dtype == MUSE_DT_BF16);
	/* Hostile decode: g_idx out of range, wrong shapes. */
	muse_qlinear q, d;
	muse_packed_set set;
	CHECK(muse_qlinear_alloc(&q, 32, 64, 4, 32, false, false, &err) == MUSE_OK);
	fill_random(&q);
	CHECK(muse_packed_encode(MUSE_PACKED_GPTQ, &q, MUSE_DT_F16, &set, &err) == MUSE_OK);
	((int32_t *)set.t[3].data)[5] = 7;
	CHECK(muse_packed_decode(MUSE_PACKED_GPTQ, &set, 4, 32, false, "x", &d, &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "g_idx[5]") != NULL);
	((int32_t *)set.t[3].data)[5] = 0;
	set.t[1].shape[0] = 3;
	CHECK(muse_packed_decode(MUSE_PACKED_GPTQ, &set, 4, 32, false, "x", &d, &err) == MUSE_ERR_FORMAT);
	muse_packed_set_free(&set);
	muse_qlinear_free(&q);
}

static void test_rtn_grids(void)
{
	muse_wq_config c = { 4, -1, false, MUSE_WQ_MINMAX, 0, MUSE_DT_F16 };
	float s;
	uint8_t z;
	muse_wq_params(&c, -1.5, 3.0, &s, &z);
	CHECK(fabsf(s - muse_f16_to_f32(muse_f32_to_f16(4.5f / 15))) == 0);
	CHECK(z == 5);
	muse_wq_params(&c, 0.5, 3.0, &s, &z); /* GPTQ always includes 0 */
	CHECK(z == 0);
	c.zero_min = 1;
	muse_wq_params(&c, 0.5, 3.0, &s, &z);
	CHECK(z == 1 && s * 14 >= 3.0f * 0.999f);
	c.zero_min = 0;
	c.sym = true;
	muse_wq_params(&c, -1.0, 3.0, &s, &z);
	CHECK(z == 8 && fabsf(s - muse_f16_to_f32(muse_f32_to_f16(6.0f / 15))) == 0);
	c.style = MUSE_WQ_AWQ;
	muse_wq_params(&c, -1.0, 3.0, &s, &z);
	CHECK(z == 8 && fabsf(s - muse_f16_to_f32(muse_f32_to_f16(3.0f / 7))) == 0);
	c.sym = false;
	muse_wq_params(&c, 0.5, 3.0, &s, &z); /* AWQ: the range is [min, max], zero clamped to 0 */
	CHECK(z == 0);
	CHECK(muse_wq_code(0.0, 1.0f, 8, 4) == 8 && muse_wq_code(2.5, 1.0f, 0, 4) == 2 && muse_wq_code(3.5, 1.0f, 0, 4) == 4);
	CHECK(muse_wq_code(100, 1.0f, 0, 4) == 15 && muse_wq_code(-100, 1.0f, 8, 4) == 0);
}

/* Correlated inputs with channel scales spread over two orders of magnitude. */
static float *make_inputs(uint64_t n, uint64_t k, bool outliers)
{
	uint64_t r = k / 4;
	float *mix = malloc(r * k * sizeof(float)), *x = malloc(n * k * sizeof(float));
	for (uint64_t i = 0; i < r * k; i++)
		mix[i] = (float)nrand();
	double *cs = malloc(k * sizeof(double));
	for (uint64_t j = 0; j < k; j++)
		cs[j] = exp(nrand()) * (outliers && j % 16 == 0 ? 20 : 1);
	for (uint64_t t = 0; t < n; t++) {
		double z[64];
		for (uint64_t a = 0; a < r && a < 64; a++)
			z[a] = nrand();
		for (uint64_t j = 0; j < k; j++) {
			double v = 0.05 * nrand();
			for (uint64_t a = 0; a < r && a < 64; a++)
				v += z[a] * mix[a * k + j];
			x[t * k + j] = (float)(v * cs[j]);
		}
	}
	free(mix);
	free(cs);
	return x;
}

static float *hessian_of(const float *x, uint64_t n, uint64_t k)
{
	float *h = calloc(k * k, sizeof(float));
	for (uint64_t a = 0; a < k; a++)
		for (uint64_t b = a; b < k; b++) {
			double s = 0;
			for (uint64_t t = 0; t < n; t++)
				s += (double)x[t * k + a] * x[t * k + b];
			h[a * k + b] = h[b * k + a] = (float)(2 * s / (double)n);
		}
	return h;
}

static void test_gptq_beats_rtn(void)
{
	uint64_t N = 48, K = 128, n = 1024;
	float *x = make_inputs(n, K, false), *H = hessian_of(x, n, K);
	float *w = malloc(N * K * sizeof(float)), *dr = malloc(N * K * sizeof(float)), *dg = malloc(N * K * sizeof(float));
	for (uint64_t i = 0; i < N * K; i++)
		w[i] = (float)(0.05 * nrand());
	muse_wq_config c = { 4, 32, false, MUSE_WQ_MINMAX, 0, MUSE_DT_F16 };
	muse_gptq_opts o = MUSE_GPTQ_OPTS_DEFAULT;
	muse_qlinear qr, qg;
	muse_gptq_stats st;
	muse_err err = { 0 };
	CHECK(muse_rtn_quantize(&c, w, N, K, &qr, &err) == MUSE_OK);
	CHECK(muse_gptq_quantize(&c, &o, w, N, K, H, &qg, &st, &err) == MUSE_OK);
	muse_qlinear_dequant(&qr, dr);
	muse_qlinear_dequant(&qg, dg);
	double er = muse_gptq_hessian_error(w, dr, N, K, H), eg = muse_gptq_hessian_error(w, dg, N, K, H);
	CHECK(eg < 0.7 * er);
	CHECK(st.damp_used == 0.01 && st.dead_cols == 0);
	muse_qlinear_free(&qg);
	/* Act-order: g_idx groups are formed in descending diag(H) order. */
	o.act_order = true;
	CHECK(muse_gptq_quantize(&c, &o, w, N, K, H, &qg, &st, &err) == MUSE_OK);
	CHECK(qg.g_idx != NULL);
	if (qg.g_idx) {
		uint64_t counts[4] = { 0 };
		for (uint64_t k = 0; k < K; k++)
			counts[qg.g_idx[k]]++;
		CHECK(counts[0] == 32 && counts[3] == 32);
		/* The column with the largest diag is in group 0. */
		uint64_t best = 0;
		for (uint64_t k = 1; k < K; k++)
			if (H[k * K + k] > H[best * K + best])
				best = k;
		CHECK(qg.g_idx[best] == 0);
	}
	muse_qlinear_free(&qg);
	/* GGUF block quantizer as GPTQ's quantizer beats plain Q4_0 on the same H-weighted error. */
	uint8_t *b1 = malloc(N * K), *b2 = malloc(N * K);
	o.act_order = false;
	CHECK(muse_quantize_rows(MUSE_DT_Q4_0, w, b1, (int64_t)N, (int64_t)K, NULL, 1, &err) == MUSE_OK);
	CHECK(muse_gptq_quantize_gguf(MUSE_DT_Q4_0, &o, w, N, K, H, b2, &st, &err) == MUSE_OK);
	CHECK(muse_dequantize(MUSE_DT_Q4_0, b1, dr, (int64_t)(N * K), &err) == MUSE_OK);
	CHECK(muse_dequantize(MUSE_DT_Q4_0, b2, dg, (int64_t)(N * K), &err) == MUSE_OK);
	er = muse_gptq_hessian_error(w, dr, N, K, H);
	eg = muse_gptq_hessian_error(w, dg, N, K, H);
	CHECK(eg < 0.7 * er);
	/* A non-positive-definite H is dampened until it factors; NaN is refused. */
	for (uint64_t i = 0; i < K * K; i++)
		H[i] = 0;
	for (uint64_t i = 0; i < K; i++)
		H[i * K + i] = i % 2 ? 1.0f : 0.0f;
	CHECK(muse_gptq_quantize(&c, &o, w, N, K, H, &qg, &st, &err) == MUSE_OK);
	CHECK(st.dead_cols == K / 2);
	muse_qlinear_dequant(&qg, dg);
	for (uint64_t r = 0; r < N; r++)
		CHECK(dg[r * K] == 0);
	muse_qlinear_free(&qg);
	H[3] = NAN;
	CHECK(muse_gptq_quantize(&c, &o, w, N, K, H, &qg, &st, &err) == MUSE_ERR_CHECK);
	muse_qlinear_free(&qr);
	free(x), free(H), free(w), free(dr), free(dg), free(b1), free(b2);
}

/* gguf:Q4_K: GPTQ through ggml's own k-quant block quantizer (256-wide super-blocks) beats plain Q4_K. */
static void test_gptq_gguf_q4_k(void)
{
	uint64_t N = 32, K = 512, n = 2048;
	float *x = make_inputs(n, K, false), *H = hessian_of(x, n, K);
	float *w = malloc(N * K * sizeof(float)), *d1 = malloc(N * K * sizeof(float)), *d2 = malloc(N * K * sizeof(float));
	for (uint64_t i = 0; i < N * K; i++)
		w[i] = (float)(0.05 * nrand());
	size_t rb = K / 256 * 144;
	uint8_t *b1 = malloc(N * rb), *b2 = malloc(N * rb);
	muse_gptq_opts o = MUSE_GPTQ_OPTS_DEFAULT;
	muse_gptq_stats st;
	muse_err err = { 0 };
	CHECK(muse_quantize_rows(MUSE_DT_Q4_K, w, b1, (int64_t)N, (int64_t)K, NULL, 1, &err) == MUSE_OK);
	CHECK(muse_gptq_quantize_gguf(MUSE_DT_Q4_K, &o, w, N, K, H, b2, &st, &err) == MUSE_OK);
	CHECK(muse_dequantize(MUSE_DT_Q4_K, b1, d1, (int64_t)(N * K), &err) == MUSE_OK);
	CHECK(muse_dequantize(MUSE_DT_Q4_K, b2, d2, (int64_t)(N * K), &err) == MUSE_OK);
	double e1 = muse_gptq_hessian_error(w, d1, N, K, H), e2 = muse_gptq_hessian_error(w, d2, N, K, H);
	printf("#   Q4_K H-weighted error: plain %.4g, gptq %.4g\n", e1, e2);
	CHECK(e2 < 0.8 * e1);
	/* Rows that are not whole blocks, and act-order, are refused. */
	CHECK(muse_gptq_quantize_gguf(MUSE_DT_Q4_K, &o, w, N, 384, H, b2, &st, &err) == MUSE_ERR_UNSUPPORTED);
	o.act_order = true;
	CHECK(muse_gptq_quantize_gguf(MUSE_DT_Q4_K, &o, w, N, K, H, b2, &st, &err) == MUSE_ERR_USAGE);
	free(x), free(H), free(w), free(d1), free(d2), free(b1), free(b2);
}

static void test_awq_scale_and_clip(void)
{
	uint64_t N = 64, K = 128, n = 512;
	float *x = make_inputs(n, K, true);
	float *w = malloc(N * K * sizeof(float)), *w2 = malloc(N * K * sizeof(float));
	for (uint64_t i = 0; i < N * K; i++)
		w[i] = (float)(0.05 * nrand());
	const float *ws[1] = { w };
	uint64_t outs[1] = { N };
	muse_awq_group g = { 1, ws, outs, K, x, n, NULL, NULL, NULL };
	muse_wq_config c = { 4, 32, false, MUSE_WQ_AWQ, 0, MUSE_DT_F16 };
	muse_awq_opts o = MUSE_AWQ_OPTS_DEFAULT;
	muse_awq_result res;
	muse_err err = { 0 };
	float *s = malloc(K * sizeof(float));
	CHECK(muse_awq_search_scale(&g, &c, &o, s, &res, &err) == MUSE_OK);
	CHECK(res.best_loss <= res.identity_loss);
	CHECK(res.best_loss < 0.9 * res.identity_loss); /* outlier channels: scaling pays */
	CHECK(res.best_ratio > 0);
	/* Clipping on the scaled weights never increases the per-group output error it measures. */
	memcpy(w2, w, N * K * sizeof(float));
	muse_awq_scale_columns(w2, N, K, s);
	float *xs = malloc(n * K * sizeof(float));
	for (uint64_t t = 0; t < n; t++)
		for (uint64_t k = 0; k < K; k++)
			xs[t * K + k] = x[t * K + k] / s[k];
	float *before = malloc(N * K * sizeof(float));
	memcpy(before, w2, N * K * sizeof(float));
	muse_rtn_fake_quant(&c, before, N, K);
	CHECK(muse_awq_search_clip(&c, &o, w2, N, K, xs, n, &err) == MUSE_OK);
	float *after = malloc(N * K * sizeof(float));
	memcpy(after, w2, N * K * sizeof(float));
	muse_rtn_fake_quant(&c, after, N, K);
	double eb = 0, ea = 0;
	float *ref = malloc(N * K * sizeof(float));
	memcpy(ref, w, N * K * sizeof(float));
	muse_awq_scale_columns(ref, N, K, s);
	for (uint64_t t = 0; t < n; t++)
		for (uint64_t r = 0; r < N; r++) {
			double a = 0, b = 0, o0 = 0;
			for (uint64_t k = 0; k < K; k++) {
				o0 += (double)xs[t * K + k] * ref[r * K + k];
				a += (double)xs[t * K + k] * after[r * K + k];
				b += (double)xs[t * K + k] * before[r * K + k];
			}
			ea += (a - o0) * (a - o0);
			eb += (b - o0) * (b - o0);
		}
	CHECK(ea <= eb * 1.0001);
	/* Folding into a norm and a preceding linear undoes the column scaling exactly enough. */
	float norm[4] = { 1, 2, 3, 4 }, sc[4] = { 2, 4, 0.5f, 1 };
	muse_awq_fold_norm(norm, 4, sc);
	CHECK(norm[0] == 0.5f && norm[1] == 0.5f && norm[2] == 6 && norm[3] == 4);
	free(x), free(w), free(w2), free(s), free(xs), free(before), free(after), free(ref);
}

int main(void)
{
	unit_file_name = "packed";
	RUN(test_roundtrip_all_layouts);
	RUN(test_known_words);
	RUN(test_layout_constraints);
	RUN(test_rtn_grids);
	RUN(test_gptq_beats_rtn);
	RUN(test_gptq_gguf_q4_k);
	RUN(test_awq_scale_and_clip);
	UNIT_MAIN_END();
}
