/* forward.c: F32 decoder layers (llama, qwen2/3, MoE, MLA) with matrix products through OpenBLAS. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "forward.h"
#include "ggml_act.h"

/* Experts one router row can hold on the stack (DeepSeek V3 has 256). */
#define CAP_ROUTE 512

/* OpenBLAS's own thread control (not part of cblas.h's standard surface). */
extern void openblas_set_num_threads(int n);

void muse_forward_set_threads(int n)
{
	if (n <= 0)
		return;
	omp_set_num_threads(n);
}

/*
 * Threads: OpenMP splits the work into blocks of a fixed size and OpenBLAS
 * runs single-threaded inside each block, so every output element comes
 * from the same kernel call whatever the thread count (OpenBLAS's own
 * threading changes its blocking, and with it the last bits, with the
 * number of threads).
 */
#define ROW_BLOCK 128

static void blas_single(void)
{
	static int done;
	if (!done) {
		openblas_set_num_threads(1);
		done = 1;
	}
}

/* How a product's input is rounded first: the activation type (MUSE_DT_F32: not at all) and Q4_1/Q5_1's block mins. */
typedef struct prod {
	muse_dtype act;
	const float *bmin;
} prod;

/* The exact F32 product. */
static const prod EXACT = { MUSE_DT_F32, NULL };

/* Floats of linear()'s abuf per thread for inputs of up to in: the rounded rows and Q8_1's s corrections. */
static int64_t abuf_per_thread(int64_t in)
{
	return ROW_BLOCK * (in + in / 32 + 1);
}

/*
 * Y[rows, out] = X[rows, in] * W[out, in]^T (+ bias), in blocks of ROW_BLOCK
 * rows. act other than MUSE_DT_F32: each block of X is first rounded as
 * llama.cpp's CPU backend rounds it for the weight (muse_ggml_act_round) in
 * abuf (abuf_per_thread(in) floats per thread); the product stays one sgemm,
 * so the rounding costs a pass over X and not a second kernel. bmin (Q4_1 and
 * Q5_1 weights, act Q8_1): the weight's block mins, whose products with
 * Q8_1's s corrections are added as one more sgemm of 1/32 the size.
 */
static void linear(const float *x, int64_t rows, int64_t in, const float *w, int64_t out, const float *bias, float *y,
		   int64_t ldy, prod p, float *abuf)
{
	if (rows <= 0 || out <= 0)
		return;
	blas_single();
	const muse_dtype act = p.act;
	const float *bmin = p.bmin;
	const bool s_term = act == MUSE_DT_Q8_1 && bmin;
	const int64_t nblk = in / 32;
	int64_t nb = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t b = 0; b < nb; b++) {
		int64_t r0 = b * ROW_BLOCK, n = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
		const float *xb = x + r0 * in;
		float *se = NULL;
		if (act != MUSE_DT_F32) {
			float *t = abuf + (size_t)omp_get_thread_num() * (size_t)abuf_per_thread(in);
			se = t + ROW_BLOCK * in;
			memcpy(t, xb, (size_t)(n * in) * sizeof(float));
			if (s_term)
				muse_ggml_act_round_q8_1(t, n * in, se);
			else
				muse_ggml_act_round(act, t, n * in);
			xb = t;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, xb, (int)in,
			    w, (int)in, 0.0f, y + r0 * ldy, (int)ldy);
		if (s_term)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)nblk, 1.0f, se,
				    (int)nblk, bmin, (int)nblk, 1.0f, y + r0 * ldy, (int)ldy);
		if (bias)
			for (int64_t r = r0; r < r0 + n; r++)
				for (int64_t o = 0; o < out; o++)
					y[r * ldy + o] += bias[o];
	}
}

/* y = x / sqrt(mean(x^2) + eps) * w, rows of n (x and y may alias). The mean is summed in double: it is the reference. */
static void rmsnorm(const float *x, int64_t rows, int64_t n, int64_t ldx, const float *w, float eps, float *y,
		    int64_t ldy)
{
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * ldx;
		float *yr = y + r * ldy;
		double ss = 0;
		for (int64_t i = 0; i < n; i++)
			ss += (double)xr[i] * xr[i];
		float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
		for (int64_t i = 0; i < n; i++)
			yr[i] = (xr[i] * scale) * w[i];
	}
}

static inline float silu(float v)
{
	return v / (1.0f + expf(-v));
}

/* ---- rope ---- */

typedef struct rope_table {
	float *cs;      /* seq_len x n_rot/2 (cos, sin) pairs */
	int64_t half;
} rope_table;

/*
 * cos/sin per position and frequency. Frequencies as transformers computes
 * inv_freq (float32), with the scalings llama.cpp knows: linear (positions /
 * factor), Llama-3 (rope_freqs divisors) and YaRN (ramp between interpolated
 * and extrapolated frequencies, magnitude mscale). DeepSeek's YaRN moves the
 * magnitude into the softmax scale instead (see attn_scale).
 */
static muse_status rope_build(const muse_model *m, int64_t seq_len, rope_table *rt, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	const int64_t n = hp->n_rot, half = n / 2;
	const float *ff = muse_model_rope_freqs(m);
	size_t cnt;
	rt->half = half;
	rt->cs = NULL;
	if (!half)
		return MUSE_OK;
	if (!muse_mul_size((size_t)seq_len, (size_t)half * 2, &cnt) || !(rt->cs = malloc(cnt * sizeof(float))))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the rope table");
	float *inv = malloc((size_t)half * sizeof(float));
	if (!inv) {
		free(rt->cs);
		rt->cs = NULL;
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	float mscale = 1.0f;
	for (int64_t j = 0; j < half; j++) {
		float pf = powf(hp->rope_base, (float)(2 * j) / (float)n);
		inv[j] = 1.0f / pf;
		if (ff)
			inv[j] = inv[j] / ff[j];
	}
	if (hp->rope_scaling == MUSE_ROPE_LINEAR) {
		for (int64_t j = 0; j < half; j++)
			inv[j] = inv[j] / hp->rope_factor;
	} else if (hp->rope_scaling == MUSE_ROPE_YARN) {
		double orig = hp->rope_orig_ctx ? (double)hp->rope_orig_ctx : 4096.0;
		double base = hp->rope_base;
		double lo = floor((double)n * log(orig / (hp->yarn_beta_fast * 2 * M_PI)) / (2 * log(base)));
		double hi = ceil((double)n * log(orig / (hp->yarn_beta_slow * 2 * M_PI)) / (2 * log(base)));
		if (lo < 0)
			lo = 0;
		if (hi > (double)n - 1)
			hi = (double)n - 1;
		if (hi == lo)
			hi += 0.001;
		for (int64_t j = 0; j < half; j++) {
			float extrap = inv[j], interp = inv[j] / hp->rope_factor;
			double y = ((double)j - lo) / (hi - lo);
			float ramp = (float)(y < 0 ? 0 : y > 1 ? 1 : y);
			float ext = 1.0f - ramp;
			inv[j] = interp * (1 - ext) + extrap * ext;
		}
		if (hp->arch != MUSE_FA_DEEPSEEK2)
			mscale = 0.1f * logf(hp->rope_factor) + 1.0f;
	}
#pragma omp parallel for schedule(static)
	for (int64_t p = 0; p < seq_len; p++)
		for (int64_t j = 0; j < half; j++) {
			float a = (float)p * inv[j];
			rt->cs[(p * half + j) * 2] = cosf(a) * mscale;
			rt->cs[(p * half + j) * 2 + 1] = sinf(a) * mscale;
		}
	free(inv);
	return MUSE_OK;
}

/* Rotates the first n_rot dims of each head: pairs (2j, 2j+1) (ggml "normal", on GGUF-permuted weights) or (j, j+half) (neox). */
static void rope_apply(const rope_table *rt, bool neox, float *v, int64_t n_seq, int64_t seq_len, int64_t n_heads,
		       int64_t head_dim, int64_t ld, int64_t off)
{
	const int64_t half = rt->half;
	if (!half)
		return;
#pragma omp parallel for schedule(static)
	for (int64_t t = 0; t < n_seq * seq_len; t++) {
		const float *cs = rt->cs + (t % seq_len) * half * 2;
		for (int64_t h = 0; h < n_heads; h++) {
			float *x = v + t * ld + h * head_dim + off;
			for (int64_t j = 0; j < half; j++) {
				int64_t i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
				float c = cs[2 * j], s = cs[2 * j + 1];
				float a = x[i0], b = x[i1];
				x[i0] = a * c - b * s;
				x[i1] = b * c + a * s;
			}
		}
	}
}

/* ---- attention core ---- */

/*
 * Causal softmax attention for each sequence and head: q [T, H*dk] (row
 * stride ldq), k [T, HK*dk], v [T, HK*dv], out [T, H*dv]. (sequence, head)
 * pairs go to OpenMP threads, each with its own L x L score matrix in S_all.
 */
static void attend(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv, float *out,
		   int64_t ldo, int64_t n_seq, int64_t L, int64_t H, int64_t HK, int64_t dk, int64_t dv, float scale,
		   float *S_all)
{
	const int64_t grp = H / HK;
	blas_single();
#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t sh = 0; sh < n_seq * H; sh++) {
		const int64_t s = sh / H, h = sh % H;
		float *S = S_all + (size_t)omp_get_thread_num() * (size_t)L * (size_t)L;
		const float *qh = q + s * L * ldq + h * dk;
		const float *kh = k + s * L * ldk + (h / grp) * dk;
		const float *vh = v + s * L * ldv + (h / grp) * dv;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)L, (int)dk, scale, qh, (int)ldq, kh,
			    (int)ldk, 0.0f, S, (int)L);
		for (int64_t i = 0; i < L; i++) {
			float *r = S + i * L;
			float mx = r[0];
			for (int64_t j = 1; j <= i; j++)
				mx = r[j] > mx ? r[j] : mx;
			double sum = 0;
			for (int64_t j = 0; j <= i; j++) {
				r[j] = expf(r[j] - mx);
				sum += r[j];
			}
			float inv = (float)(1.0 / sum);
			for (int64_t j = 0; j <= i; j++)
				r[j] *= inv;
			for (int64_t j = i + 1; j < L; j++)
				r[j] = 0.0f;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)dv, (int)L, 1.0f, S, (int)L, vh,
			    (int)ldv, 0.0f, out + s * L * ldo + h * dv, (int)ldo);
	}
}

/* ---- hooks ---- */

static muse_status hook_dense(const muse_fwd_opts *o, const muse_layer *l, muse_wslot slot, const float *x,
			      int64_t rows, muse_err *err)
{
	if (!o || !o->hook || !l->w[slot].data)
		return MUSE_OK;
	const muse_weight *w = &l->w[slot];
	muse_linear_event ev = {
		.layer = l->il, .slot = slot, .tensor = w->name, .expert = -1, .n_expert = 0, .x = x, .n_rows = rows,
		.n_in = w->shape[w->ndim - 1], .rows = NULL, .n_routed = rows, .w = w->data, .n_out = w->shape[0],
	};
	return o->hook(o->user, &ev, err);
}

/* ---- one batch of whole sequences through one layer ---- */

typedef struct scratch {
	float *xn, *q, *k, *v, *att, *S, *tmp, *g, *u, *gx, *route;
	int32_t *sel_id, *rows;
	float *sel_w, *xe, *ge, *ue;
	float *abuf; /* linear()'s rounded input blocks (opts->ggml_act only) */
} scratch;

static void scratch_free(scratch *s)
{
	free(s->xn); free(s->q); free(s->k); free(s->v); free(s->att); free(s->S); free(s->tmp); free(s->g);
	free(s->u); free(s->gx); free(s->route); free(s->sel_id); free(s->rows); free(s->sel_w); free(s->xe);
	free(s->ge); free(s->ue); free(s->abuf);
	memset(s, 0, sizeof *s);
}

/* How the input of a product with w (expert e of a stack; 0 for a dense weight) is rounded under o. */
static prod prod_of(const muse_fwd_opts *o, const muse_weight *w, int64_t e)
{
	if (!o || !o->ggml_act || !w->data)
		return EXACT;
	const int64_t in = w->shape[w->ndim - 1], out = w->ndim == 3 ? w->shape[1] : w->shape[0];
	prod p = { muse_ggml_act_type(w->stored), NULL };
	/* Rows of a GGUF weight are whole blocks of its type, and so of the activation type; anything else stays F32. */
	if (in % (int64_t)muse_dtype_info(p.act)->blck)
		return EXACT;
	if (w->bmin)
		p.bmin = w->bmin + (size_t)e * (size_t)out * (size_t)(in / 32);
	return p;
}

static float *falloc(int64_t a, int64_t b, bool *ok)
{
	size_t n;
	if (!*ok)
		return NULL;
	if (a <= 0 || b <= 0)
		a = b = 1;
	if (!muse_mul_size((size_t)a, (size_t)b, &n) || !muse_mul_size(n, sizeof(float), &n)) {
		*ok = false;
		return NULL;
	}
	float *p = malloc(n);
	if (!p)
		*ok = false;
	return p;
}

static int64_t max3(int64_t a, int64_t b, int64_t c)
{
	return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

/* Softmax or sigmoid router, optional bias-corrected grouped top-k; writes k ids and weights per row. */
static void route(const muse_hparams *hp, const float *logits, const float *bias, int64_t T, int32_t *ids, float *wts)
{
	const int64_t X = hp->n_expert, K = hp->n_expert_used;
#pragma omp parallel for schedule(static)
	for (int64_t t = 0; t < T; t++) {
		const float *lg = logits + t * X;
		float p[CAP_ROUTE], sc[CAP_ROUTE];
		if (hp->expert_sigmoid) {
			for (int64_t e = 0; e < X; e++)
				p[e] = 1.0f / (1.0f + expf(-lg[e]));
		} else {
			float mx = lg[0];
			for (int64_t e = 1; e < X; e++)
				mx = lg[e] > mx ? lg[e] : mx;
			double sum = 0;
			for (int64_t e = 0; e < X; e++) {
				p[e] = expf(lg[e] - mx);
				sum += p[e];
			}
			for (int64_t e = 0; e < X; e++)
				p[e] = (float)(p[e] / sum);
		}
		/* Selection scores: with the correction bias when present (DeepSeek V3), weights stay the unbiased p. */
		for (int64_t e = 0; e < X; e++)
			sc[e] = bias ? p[e] + bias[e] : p[e];
		if (hp->n_expert_groups > 1 && hp->n_group_used < hp->n_expert_groups) {
			/* Group score = sum of its top-2 scores; experts outside the best groups are excluded. */
			const int64_t G = hp->n_expert_groups, per = X / G;
			float gs[CAP_ROUTE];
			for (int64_t g = 0; g < G; g++) {
				float a = -INFINITY, b = -INFINITY;
				for (int64_t e = g * per; e < (g + 1) * per; e++) {
					if (sc[e] > a) {
						b = a;
						a = sc[e];
					} else if (sc[e] > b) {
						b = sc[e];
					}
				}
				gs[g] = per > 1 ? a + b : a;
			}
			bool keep[CAP_ROUTE] = { 0 };
			for (int64_t r = 0; r < hp->n_group_used; r++) {
				int64_t best = -1;
				for (int64_t g = 0; g < G; g++)
					if (!keep[g] && (best < 0 || gs[g] > gs[best]))
						best = g;
				keep[best] = true;
			}
			for (int64_t e = 0; e < X; e++)
				if (!keep[e / per])
					sc[e] = -INFINITY;
		}
		/* Top-k by score, ties to the lower index (torch.topk's order on CPU for distinct values). */
		bool used[CAP_ROUTE] = { 0 };
		double sum = 0;
		for (int64_t r = 0; r < K; r++) {
			int64_t best = -1;
			for (int64_t e = 0; e < X; e++)
				if (!used[e] && (best < 0 || sc[e] > sc[best]))
					best = e;
			used[best] = true;
			ids[t * K + r] = (int32_t)best;
			wts[t * K + r] = p[best];
			sum += p[best];
		}
		for (int64_t r = 0; r < K; r++) {
			if (hp->expert_norm)
				wts[t * K + r] = (float)(wts[t * K + r] / (sum + (hp->expert_sigmoid ? 1e-20 : 0.0)));
			wts[t * K + r] *= hp->expert_scale;
		}
	}
}

/* Gated SiLU MLP on rows of xn: out = down(silu(gate(x)) * up(x)); hooks on gate/up input and down input. */
static muse_status mlp(const muse_fwd_opts *o, const muse_layer *l, muse_wslot sg, muse_wslot su, muse_wslot sd,
		       const float *xn, int64_t T, int64_t E, int64_t F, float *g, float *u, float *out, float *abuf,
		       muse_err *err)
{
	muse_status s;
	if ((s = hook_dense(o, l, sg, xn, T, err)) || (s = hook_dense(o, l, su, xn, T, err)))
		return s;
	linear(xn, T, E, l->w[sg].data, F, NULL, g, F, prod_of(o, &l->w[sg], 0), abuf);
	linear(xn, T, E, l->w[su].data, F, NULL, u, F, prod_of(o, &l->w[su], 0), abuf);
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < T * F; i++)
		g[i] = silu(g[i]) * u[i];
	if ((s = hook_dense(o, l, sd, g, T, err)))
		return s;
	linear(g, T, F, l->w[sd].data, E, NULL, out, E, prod_of(o, &l->w[sd], 0), abuf);
	return MUSE_OK;
}

static muse_status expert_hook(const muse_fwd_opts *o, const muse_layer *l, muse_wslot slot, int64_t e,
			       const float *x, int64_t rows, const int32_t *ids, int64_t routed, int64_t n_in,
			       int64_t n_out, muse_err *err)
{
	if (!o || !o->hook)
		return MUSE_OK;
	const muse_weight *w = &l->w[slot];
	muse_linear_event ev = {
		.layer = l->il, .slot = slot, .tensor = w->name, .expert = e, .n_expert = w->shape[0], .x = x,
		.n_rows = rows, .n_in = n_in, .rows = ids, .n_routed = routed,
		.w = w->data + (size_t)e * (size_t)n_out * (size_t)n_in, .n_out = n_out,
	};
	return o->hook(o->user, &ev, err);
}

static muse_status moe(const muse_model *m, const muse_fwd_opts *o, const muse_layer *l, const float *xn, int64_t T,
		       scratch *sc, float *out, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	const int64_t E = hp->n_embd, X = hp->n_expert, K = hp->n_expert_used, F = hp->n_ff_exp;
	muse_status s;
	if ((s = hook_dense(o, l, MUSE_W_FFN_GATE_INP, xn, T, err)))
		return s;
	linear(xn, T, E, l->w[MUSE_W_FFN_GATE_INP].data, X, NULL, sc->route, X, prod_of(o, &l->w[MUSE_W_FFN_GATE_INP], 0),
	       sc->abuf);
	route(hp, sc->route, l->w[MUSE_W_FFN_EXP_PROBS_B].data, T, sc->sel_id, sc->sel_w);
	memset(out, 0, (size_t)T * (size_t)E * sizeof(float));
	const bool all = o && o->all_experts && o->hook;
	for (int64_t e = 0; e < X; e++) {
		/* Rows routed to e, in batch order, with their weights. */
		int64_t n = 0;
		for (int64_t t = 0; t < T; t++)
			for (int64_t r = 0; r < K; r++)
				if (sc->sel_id[t * K + r] == e)
					sc->rows[n++] = (int32_t)t;
		if (o && o->expert_tokens)
			o->expert_tokens[e] += n;
		if (!n && !all)
			continue;
		const float *wg = l->w[MUSE_W_FFN_GATE_EXPS].data + (size_t)e * (size_t)F * (size_t)E;
		const float *wu = l->w[MUSE_W_FFN_UP_EXPS].data + (size_t)e * (size_t)F * (size_t)E;
		const float *wd = l->w[MUSE_W_FFN_DOWN_EXPS].data + (size_t)e * (size_t)E * (size_t)F;
		const prod ag = prod_of(o, &l->w[MUSE_W_FFN_GATE_EXPS], e), au = prod_of(o, &l->w[MUSE_W_FFN_UP_EXPS], e);
		const prod ad = prod_of(o, &l->w[MUSE_W_FFN_DOWN_EXPS], e);
		if (all) {
			/* Statistics over every row; the layer output below still takes only the routed rows. */
			if ((s = expert_hook(o, l, MUSE_W_FFN_GATE_EXPS, e, xn, T, NULL, n, E, F, err)) ||
			    (s = expert_hook(o, l, MUSE_W_FFN_UP_EXPS, e, xn, T, NULL, n, E, F, err)))
				return s;
			linear(xn, T, E, wg, F, NULL, sc->g, F, ag, sc->abuf);
			linear(xn, T, E, wu, F, NULL, sc->u, F, au, sc->abuf);
#pragma omp parallel for schedule(static)
			for (int64_t i = 0; i < T * F; i++)
				sc->g[i] = silu(sc->g[i]) * sc->u[i];
			if ((s = expert_hook(o, l, MUSE_W_FFN_DOWN_EXPS, e, sc->g, T, NULL, n, F, E, err)))
				return s;
			if (!n)
				continue;
		}
		for (int64_t i = 0; i < n; i++)
			memcpy(sc->xe + i * E, xn + (size_t)sc->rows[i] * (size_t)E, (size_t)E * sizeof(float));
		if (!all && ((s = expert_hook(o, l, MUSE_W_FFN_GATE_EXPS, e, sc->xe, n, sc->rows, n, E, F, err)) ||
			     (s = expert_hook(o, l, MUSE_W_FFN_UP_EXPS, e, sc->xe, n, sc->rows, n, E, F, err))))
			return s;
		linear(sc->xe, n, E, wg, F, NULL, sc->ge, F, ag, sc->abuf);
		linear(sc->xe, n, E, wu, F, NULL, sc->ue, F, au, sc->abuf);
#pragma omp parallel for schedule(static)
		for (int64_t i = 0; i < n * F; i++)
			sc->ge[i] = silu(sc->ge[i]) * sc->ue[i];
		if (!all && (s = expert_hook(o, l, MUSE_W_FFN_DOWN_EXPS, e, sc->ge, n, sc->rows, n, F, E, err)))
			return s;
		linear(sc->ge, n, F, wd, E, NULL, sc->xe, E, ad, sc->abuf);
		/* Accumulate in the router's rank order per row would need another pass; expert order is what ggml's
		 * graph does too (it sums the weighted expert outputs in selection order): keep a per-row weight lookup. */
		for (int64_t i = 0; i < n; i++) {
			int64_t t = sc->rows[i];
			float wt = 0;
			for (int64_t r = 0; r < K; r++)
				if (sc->sel_id[t * K + r] == e)
					wt = sc->sel_w[t * K + r];
			float *dst = out + t * E;
			const float *src = sc->xe + i * E;
			for (int64_t j = 0; j < E; j++)
				dst[j] += wt * src[j];
		}
	}
	if (l->w[MUSE_W_FFN_GATE_SHEXP].data) {
		const int64_t FS = l->w[MUSE_W_FFN_GATE_SHEXP].shape[0];
		if ((s = mlp(o, l, MUSE_W_FFN_GATE_SHEXP, MUSE_W_FFN_UP_SHEXP, MUSE_W_FFN_DOWN_SHEXP, xn, T, E, FS, sc->g,
			     sc->u, sc->tmp, sc->abuf, err)))
			return s;
		const float *gw = l->w[MUSE_W_FFN_GATE_INP_SHEXP].data;
		if (gw && (s = hook_dense(o, l, MUSE_W_FFN_GATE_INP_SHEXP, xn, T, err)))
			return s;
#pragma omp parallel for schedule(static)
		for (int64_t t = 0; t < T; t++) {
			float gate = 1.0f;
			if (gw) {
				double d = 0;
				for (int64_t j = 0; j < E; j++)
					d += (double)xn[t * E + j] * gw[j];
				gate = 1.0f / (1.0f + expf(-(float)d));
			}
			for (int64_t j = 0; j < E; j++)
				out[t * E + j] += gate * sc->tmp[t * E + j];
		}
	}
	return MUSE_OK;
}

/* Softmax scale: 1/sqrt(dk), times DeepSeek's YaRN mscale squared. */
static float attn_scale(const muse_hparams *hp)
{
	float sc = 1.0f / sqrtf((float)hp->head_dim_k);
	if (hp->arch == MUSE_FA_DEEPSEEK2 && hp->rope_scaling == MUSE_ROPE_YARN && hp->yarn_log_mul != 0 &&
	    hp->rope_factor > 1) {
		float ms = 0.1f * hp->yarn_log_mul * logf(hp->rope_factor) + 1.0f;
		sc *= ms * ms;
	}
	return sc;
}

static muse_status layer_batch(const muse_model *m, const muse_layer *l, float *x, int64_t n_seq, int64_t L,
			       const rope_table *rt, const muse_fwd_opts *o, scratch *sc, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	const int64_t T = n_seq * L, E = hp->n_embd, H = hp->n_head, HK = hp->n_head_kv;
	const int64_t dk = hp->head_dim_k, dv = hp->head_dim_v;
	muse_status s;

	/* Attention. */
	rmsnorm(x, T, E, E, l->w[MUSE_W_ATTN_NORM].data, hp->eps, sc->xn, E);
	if (hp->arch != MUSE_FA_DEEPSEEK2) {
		if ((s = hook_dense(o, l, MUSE_W_ATTN_Q, sc->xn, T, err)) || (s = hook_dense(o, l, MUSE_W_ATTN_K, sc->xn, T, err)) ||
		    (s = hook_dense(o, l, MUSE_W_ATTN_V, sc->xn, T, err)))
			return s;
		linear(sc->xn, T, E, l->w[MUSE_W_ATTN_Q].data, H * dk, l->w[MUSE_W_ATTN_Q_BIAS].data, sc->q, H * dk,
		       prod_of(o, &l->w[MUSE_W_ATTN_Q], 0), sc->abuf);
		linear(sc->xn, T, E, l->w[MUSE_W_ATTN_K].data, HK * dk, l->w[MUSE_W_ATTN_K_BIAS].data, sc->k, HK * dk,
		       prod_of(o, &l->w[MUSE_W_ATTN_K], 0), sc->abuf);
		linear(sc->xn, T, E, l->w[MUSE_W_ATTN_V].data, HK * dv, l->w[MUSE_W_ATTN_V_BIAS].data, sc->v, HK * dv,
		       prod_of(o, &l->w[MUSE_W_ATTN_V], 0), sc->abuf);
		if (l->w[MUSE_W_ATTN_Q_NORM].data)
			rmsnorm(sc->q, T * H, dk, dk, l->w[MUSE_W_ATTN_Q_NORM].data, hp->eps, sc->q, dk);
		if (l->w[MUSE_W_ATTN_K_NORM].data)
			rmsnorm(sc->k, T * HK, dk, dk, l->w[MUSE_W_ATTN_K_NORM].data, hp->eps, sc->k, dk);
		rope_apply(rt, hp->rope_neox, sc->q, n_seq, L, H, dk, H * dk, 0);
		rope_apply(rt, hp->rope_neox, sc->k, n_seq, L, HK, dk, HK * dk, 0);
		attend(sc->q, H * dk, sc->k, HK * dk, sc->v, HK * dv, sc->att, H * dv, n_seq, L, H, HK, dk, dv,
		       attn_scale(hp), sc->S);
	} else {
		/* MLA, materialized: per-head K = [k_nope | shared k_pe], V from the decompressed latent. */
		const int64_t R = hp->n_rot, nope = dk - R, kvl = hp->kv_lora_rank, ql = hp->q_lora_rank;
		if (ql) {
			if ((s = hook_dense(o, l, MUSE_W_ATTN_Q_A, sc->xn, T, err)))
				return s;
			linear(sc->xn, T, E, l->w[MUSE_W_ATTN_Q_A].data, ql, NULL, sc->tmp, ql, prod_of(o, &l->w[MUSE_W_ATTN_Q_A], 0),
			       sc->abuf);
			rmsnorm(sc->tmp, T, ql, ql, l->w[MUSE_W_ATTN_Q_A_NORM].data, hp->eps, sc->tmp, ql);
			if ((s = hook_dense(o, l, MUSE_W_ATTN_Q_B, sc->tmp, T, err)))
				return s;
			linear(sc->tmp, T, ql, l->w[MUSE_W_ATTN_Q_B].data, H * dk, NULL, sc->q, H * dk,
			       prod_of(o, &l->w[MUSE_W_ATTN_Q_B], 0), sc->abuf);
		} else {
			if ((s = hook_dense(o, l, MUSE_W_ATTN_Q, sc->xn, T, err)))
				return s;
			linear(sc->xn, T, E, l->w[MUSE_W_ATTN_Q].data, H * dk, NULL, sc->q, H * dk, prod_of(o, &l->w[MUSE_W_ATTN_Q], 0),
			       sc->abuf);
		}
		if ((s = hook_dense(o, l, MUSE_W_ATTN_KV_A_MQA, sc->xn, T, err)))
			return s;
		/* gx: [T, kvl + R] = compressed latent | k_pe. */
		linear(sc->xn, T, E, l->w[MUSE_W_ATTN_KV_A_MQA].data, kvl + R, NULL, sc->gx, kvl + R,
		       prod_of(o, &l->w[MUSE_W_ATTN_KV_A_MQA], 0), sc->abuf);
		rmsnorm(sc->gx, T, kvl, kvl + R, l->w[MUSE_W_ATTN_KV_A_NORM].data, hp->eps, sc->tmp, kvl);
		if (l->w[MUSE_W_ATTN_KV_B].data) {
			if ((s = hook_dense(o, l, MUSE_W_ATTN_KV_B, sc->tmp, T, err)))
				return s;
			/* u: [T, H*(nope+dv)] */
			linear(sc->tmp, T, kvl, l->w[MUSE_W_ATTN_KV_B].data, H * (nope + dv), NULL, sc->u, H * (nope + dv),
			       prod_of(o, &l->w[MUSE_W_ATTN_KV_B], 0), sc->abuf);
		} else {
			/* Split form: k_b [H, kvl, nope] (k_nope = latent * k_b[h]), v_b [H, dv, kvl]. */
			const float *kb = l->w[MUSE_W_ATTN_K_B].data, *vb = l->w[MUSE_W_ATTN_V_B].data;
			for (int64_t h = 0; h < H; h++) {
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)nope, (int)kvl, 1.0f, sc->tmp,
					    (int)kvl, kb + (size_t)h * kvl * nope, (int)nope, 0.0f, sc->u + h * (nope + dv),
					    (int)(H * (nope + dv)));
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)dv, (int)kvl, 1.0f, sc->tmp,
					    (int)kvl, vb + (size_t)h * dv * kvl, (int)kvl, 0.0f, sc->u + h * (nope + dv) + nope,
					    (int)(H * (nope + dv)));
			}
		}
		rope_apply(rt, false, sc->q, n_seq, L, H, dk, H * dk, nope);
		rope_apply(rt, false, sc->gx, n_seq, L, 1, kvl + R, kvl + R, kvl);
#pragma omp parallel for schedule(static)
		for (int64_t t = 0; t < T; t++)
			for (int64_t h = 0; h < H; h++) {
				float *kk = sc->k + (t * H + h) * dk, *vv = sc->v + (t * H + h) * dv;
				const float *uu = sc->u + (t * H + h) * (nope + dv);
				memcpy(kk, uu, (size_t)nope * sizeof(float));
				memcpy(kk + nope, sc->gx + t * (kvl + R) + kvl, (size_t)R * sizeof(float));
				memcpy(vv, uu + nope, (size_t)dv * sizeof(float));
			}
		attend(sc->q, H * dk, sc->k, H * dk, sc->v, H * dv, sc->att, H * dv, n_seq, L, H, H, dk, dv,
		       attn_scale(hp), sc->S);
	}
	if ((s = hook_dense(o, l, MUSE_W_ATTN_O, sc->att, T, err)))
		return s;
	linear(sc->att, T, H * dv, l->w[MUSE_W_ATTN_O].data, E, l->w[MUSE_W_ATTN_O_BIAS].data, sc->tmp, E,
	       prod_of(o, &l->w[MUSE_W_ATTN_O], 0), sc->abuf);
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < T * E; i++)
		x[i] += sc->tmp[i];

	/* Feed-forward. */
	rmsnorm(x, T, E, E, l->w[MUSE_W_FFN_NORM].data, hp->eps, sc->xn, E);
	if (l->w[MUSE_W_FFN_GATE_INP].data) {
		if ((s = moe(m, o, l, sc->xn, T, sc, sc->att, err)))
			return s;
	} else {
		if ((s = mlp(o, l, MUSE_W_FFN_GATE, MUSE_W_FFN_UP, MUSE_W_FFN_DOWN, sc->xn, T, E, hp->n_ff, sc->g, sc->u,
			     sc->att, sc->abuf, err)))
			return s;
	}
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < T * E; i++)
		x[i] += sc->att[i];
	return MUSE_OK;
}

muse_status muse_forward_layer(const muse_model *m, const muse_layer *l, float *x, int64_t n_seq, int64_t seq_len,
			       const muse_fwd_opts *o, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	if (n_seq <= 0 || seq_len <= 0)
		return MUSE_OK;
	if (seq_len > ((int64_t)1 << 20))
		return muse_err_set(err, MUSE_ERR_LIMIT, "sequence length %lld above the cap", (long long)seq_len);
	if (hp->n_expert > CAP_ROUTE)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%lld experts: the router handles at most %d",
				    (long long)hp->n_expert, CAP_ROUTE);
	int64_t max_rows = o && o->max_rows > 0 ? o->max_rows : 4096;
	int64_t bs = max_rows / seq_len;
	if (bs < 1)
		bs = 1;
	if (bs > n_seq)
		bs = n_seq;
	const int64_t T = bs * seq_len, E = hp->n_embd, H = hp->n_head, HK = hp->n_head_kv;
	const int64_t dk = hp->head_dim_k, dv = hp->head_dim_v;
	const bool mla = hp->arch == MUSE_FA_DEEPSEEK2;
	const int64_t FS = l->w[MUSE_W_FFN_GATE_SHEXP].data ? l->w[MUSE_W_FFN_GATE_SHEXP].shape[0] : 0;
	const int64_t F = max3(hp->n_ff, hp->n_ff_exp, FS);
	const int64_t kvw = mla ? H * (hp->head_dim_k - hp->n_rot + dv) : 0;
	bool ok = true;
	scratch sc = { 0 };
	rope_table rt = { 0 };
	muse_status s;
	sc.xn = falloc(T, E, &ok);
	sc.q = falloc(T, H * dk, &ok);
	sc.k = falloc(T, (mla ? H : HK) * dk, &ok);
	sc.v = falloc(T, (mla ? H : HK) * dv, &ok);
	sc.att = falloc(T, max3(H * dv, E, 1), &ok);
	sc.S = falloc(seq_len * omp_get_max_threads(), seq_len, &ok);
	sc.tmp = falloc(T, max3(E, hp->q_lora_rank, hp->kv_lora_rank), &ok);
	sc.g = falloc(T, max3(F, 1, 1), &ok);
	sc.u = falloc(T, max3(F, kvw, 1), &ok);
	sc.gx = falloc(T, mla ? hp->kv_lora_rank + hp->n_rot : 1, &ok);
	if (hp->n_expert) {
		sc.route = falloc(T, hp->n_expert, &ok);
		sc.sel_w = falloc(T, hp->n_expert_used, &ok);
		sc.sel_id = (int32_t *)falloc(T, hp->n_expert_used, &ok);
		sc.rows = (int32_t *)falloc(T, 1, &ok);
		sc.xe = falloc(T, E, &ok);
		sc.ge = falloc(T, hp->n_ff_exp, &ok);
		sc.ue = falloc(T, hp->n_ff_exp, &ok);
	}
	if (o && o->ggml_act) {
		int64_t in = max3(max3(E, H * dv, F), hp->q_lora_rank, hp->kv_lora_rank);
		sc.abuf = falloc(omp_get_max_threads(), abuf_per_thread(in), &ok);
	}
	if (!ok) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the activations of %lld rows", (long long)T);
		goto done;
	}
	if ((s = rope_build(m, seq_len, &rt, err)))
		goto done;
	for (int64_t s0 = 0; s0 < n_seq; s0 += bs) {
		int64_t nb = n_seq - s0 < bs ? n_seq - s0 : bs;
		if ((s = layer_batch(m, l, x + (size_t)s0 * (size_t)seq_len * (size_t)E, nb, seq_len, &rt, o, &sc, err)))
			goto done;
	}
done:
	free(rt.cs);
	scratch_free(&sc);
	return s;
}

muse_status muse_forward_logits(const muse_model *m, const muse_head *h, const float *x, int64_t n_rows,
				const muse_fwd_opts *o, float *logits, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	const prod p = prod_of(o, &h->output, 0);
	bool ok = true;
	float *xn = falloc(n_rows, hp->n_embd, &ok);
	float *abuf = p.act != MUSE_DT_F32 ? falloc(omp_get_max_threads(), abuf_per_thread(hp->n_embd), &ok) : NULL;
	if (!ok) {
		free(xn);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	rmsnorm(x, n_rows, hp->n_embd, hp->n_embd, h->norm.data, hp->eps, xn, hp->n_embd);
	linear(xn, n_rows, hp->n_embd, h->output.data, hp->n_vocab, NULL, logits, hp->n_vocab, p, abuf);
	free(xn);
	free(abuf);
	return MUSE_OK;
}

muse_status muse_forward_all(muse_model *m, const int32_t *ids, int64_t n_seq, int64_t seq_len,
			     const muse_fwd_opts *opts, float *logits, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	bool ok = true;
	muse_status s;
	muse_head h = { 0 };
	float *x = falloc(n_seq * seq_len, hp->n_embd, &ok);
	if (!ok)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if ((s = muse_model_embed(m, ids, (size_t)(n_seq * seq_len), x, err)))
		goto done;
	for (int64_t il = 0; il < hp->n_layer; il++) {
		muse_layer l;
		if ((s = muse_model_load_layer(m, il, &l, err)))
			goto done;
		s = muse_forward_layer(m, &l, x, n_seq, seq_len, opts, err);
		muse_layer_free(&l);
		if (s)
			goto done;
	}
	if ((s = muse_model_load_head(m, &h, err)))
		goto done;
	s = muse_forward_logits(m, &h, x, n_seq * seq_len, opts, logits, err);
done:
	muse_head_free(&h);
	free(x);
	return s;
}
