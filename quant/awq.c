/* awq.c: activation-aware scale search and clipping search (AutoAWQ's quantizer.py, written for C and BLAS), and folding the scales into the preceding op. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "awq.h"

void muse_awq_scale_columns(float *w, uint64_t rows, uint64_t in, const float *s)
{
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t k = 0; k < in; k++)
			w[r * in + k] *= s[k];
}

void muse_awq_fold_norm(float *norm_w, uint64_t in, const float *s)
{
	for (uint64_t k = 0; k < in; k++)
		norm_w[k] /= s[k];
}

void muse_awq_fold_linear(float *prev_w, uint64_t prev_rows, uint64_t prev_cols, const float *s)
{
	for (uint64_t r = 0; r < prev_rows; r++)
		for (uint64_t k = 0; k < prev_cols; k++)
			prev_w[r * prev_cols + k] /= s[r];
}

/* The default loss: mean squared difference of X W_i^T against X Wq_i^T over every linear's outputs. */
typedef struct own_loss {
	const muse_awq_group *g;
	float **ref;  /* X W_i^T, [n_tok][out_i] */
	float *tmp;
	float *G;     /* X^T X [in][in] when there are more tokens than inputs (else NULL) */
	float *d;     /* Wq_i - W_i, [out_i][in] */
} own_loss;

static double own_loss_fn(void *ctx, const float *s, float *const *wq)
{
	own_loss *L = ctx;
	const muse_awq_group *g = L->g;
	double sum = 0, cnt = 0;
	if (L->G) {
		/*
		 * sum_t ||(Wq - W) x_t||^2 = sum_r d_r^T (X^T X) d_r: the same mean squared output error
		 * at in x in cost per row instead of n_tok x in, and without subtracting two large outputs.
		 */
		uint64_t in = g->in;
		for (size_t i = 0; i < g->n_lin; i++) {
			uint64_t o = g->out[i];
			for (uint64_t k = 0; k < o * in; k++)
				L->d[k] = wq[i][k] - g->w[i][k];
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)o, (int)in, (int)in, 1.0f, L->d, (int)in,
				    L->G, (int)in, 0.0f, L->tmp, (int)in);
			for (uint64_t k = 0; k < o * in; k++)
				sum += (double)L->d[k] * (double)L->tmp[k];
			cnt += (double)(g->n_tok * o);
		}
		(void)s;
		return sum / cnt;
	}
	for (size_t i = 0; i < g->n_lin; i++) {
		uint64_t o = g->out[i];
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->n_tok, (int)o, (int)g->in, 1.0f, g->x,
			    (int)g->in, wq[i], (int)g->in, 0.0f, L->tmp, (int)o);
		for (uint64_t t = 0; t < g->n_tok * o; t++) {
			double d = (double)L->tmp[t] - (double)L->ref[i][t];
			sum += d * d;
		}
		cnt += (double)(g->n_tok * o);
	}
	(void)s;
	return sum / cnt;
}

/* AutoAWQ's w_mean: per input channel, the mean over rows of |w| / max|w| of its group. */
static void weight_mean(const muse_awq_group *g, const muse_wq_config *c, double *wm)
{
	uint64_t in = g->in, gs = c->group_size < 0 || (uint64_t)c->group_size > in ? in : (uint64_t)c->group_size;
	uint64_t rows = 0;
	memset(wm, 0, in * sizeof(double));
	for (size_t i = 0; i < g->n_lin; i++) {
		for (uint64_t r = 0; r < g->out[i]; r++) {
			const float *w = g->w[i] + r * in;
			for (uint64_t k0 = 0; k0 < in; k0 += gs) {
				uint64_t k1 = k0 + gs < in ? k0 + gs : in;
				double amax = 0;
				for (uint64_t k = k0; k < k1; k++)
					amax = fmax(amax, fabs(w[k]));
				for (uint64_t k = k0; k < k1; k++)
					wm[k] += fabs(w[k]) / (amax + 1e-6);
			}
		}
		rows += g->out[i];
	}
	for (uint64_t k = 0; k < in; k++)
		wm[k] /= (double)rows;
}

muse_status muse_awq_search_scale(const muse_awq_group *g, const muse_wq_config *c0, const muse_awq_opts *o,
				  float *scales, muse_awq_result *res, muse_err *err)
{
	muse_wq_config c = *c0;
	c.style = MUSE_WQ_AWQ;
	muse_status s = muse_wq_config_check(&c, g->in, err);
	if (s)
		return s;
	if (!g->n_lin || !g->in || !g->n_tok || !g->x)
		return muse_err_set(err, MUSE_ERR_USAGE, "AWQ scale search needs linears and calibration inputs");
	if (g->in > INT32_MAX || g->n_tok > INT32_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "AWQ scale search: sizes above int range");
	uint64_t in = g->in, maxo = 0;
	for (size_t i = 0; i < g->n_lin; i++)
		maxo = g->out[i] > maxo ? g->out[i] : maxo;
	double *xm = calloc(in, sizeof(double)), *wm = calloc(in, sizeof(double));
	float *cand = malloc(in * sizeof(float));
	float **wq = calloc(g->n_lin, sizeof(float *));
	bool gram = !g->loss && g->n_tok > g->in;
	own_loss L = { g, calloc(g->n_lin, sizeof(float *)),
		       malloc((gram ? g->in : g->n_tok) * maxo * sizeof(float)), NULL, NULL };
	if (gram && (!(L.G = malloc(in * in * sizeof(float))) || !(L.d = malloc(maxo * in * sizeof(float))))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the AWQ scale search");
		goto done;
	}
	if (!xm || !wm || !cand || !wq || !L.ref || !L.tmp) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the AWQ scale search");
		goto done;
	}
	for (size_t i = 0; i < g->n_lin; i++)
		if (!(wq[i] = malloc(g->out[i] * in * sizeof(float)))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the AWQ scale search");
			goto done;
		}
	muse_awq_loss_fn fn = g->loss;
	void *ctx = g->loss_ctx;
	if (!fn && gram) {
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)in, (int)in, (int)g->n_tok, 1.0f, g->x, (int)in,
			    g->x, (int)in, 0.0f, L.G, (int)in);
		fn = own_loss_fn;
		ctx = &L;
	}
	if (!fn) {
		for (size_t i = 0; i < g->n_lin; i++) {
			if (!(L.ref[i] = malloc(g->n_tok * g->out[i] * sizeof(float)))) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the AWQ scale search");
				goto done;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->n_tok, (int)g->out[i], (int)in, 1.0f,
				    g->x, (int)in, g->w[i], (int)in, 0.0f, L.ref[i], (int)g->out[i]);
		}
		fn = own_loss_fn;
		ctx = &L;
	}
	if (g->x_mean)
		for (uint64_t k = 0; k < in; k++)
			xm[k] = g->x_mean[k];
	else {
		for (uint64_t t = 0; t < g->n_tok; t++)
			for (uint64_t k = 0; k < in; k++)
				xm[k] += fabs(g->x[t * in + k]);
		for (uint64_t k = 0; k < in; k++)
			xm[k] /= (double)g->n_tok;
	}
	weight_mean(g, &c, wm);
	int n_grid = o->n_grid > 0 ? o->n_grid : 20;
	double best = INFINITY;
	res->best_ratio = -1;
	/* Candidate -1 is s = 1 (plain RTN); then AutoAWQ's grid of ratios. */
	for (int ri = -1; ri < n_grid; ri++) {
		double ratio = (double)ri / n_grid;
		if (ri < 0)
			for (uint64_t k = 0; k < in; k++)
				cand[k] = 1.0f;
		else {
			double mx = 0, mn = INFINITY;
			for (uint64_t k = 0; k < in; k++) {
				double v = o->duo_scaling ? pow(xm[k], ratio) / (pow(wm[k], 1 - ratio) + 1e-4)
							  : pow(xm[k], ratio);
				v = v < 1e-4 ? 1e-4 : v;
				cand[k] = (float)v;
				mx = fmax(mx, cand[k]);
				mn = fmin(mn, cand[k]);
			}
			double norm = sqrt(mx * mn);
			for (uint64_t k = 0; k < in; k++) {
				cand[k] = (float)(cand[k] / norm);
				if (!isfinite(cand[k]) || cand[k] == 0)
					cand[k] = 1.0f;
			}
		}
		for (size_t i = 0; i < g->n_lin; i++) {
			memcpy(wq[i], g->w[i], g->out[i] * in * sizeof(float));
			muse_awq_scale_columns(wq[i], g->out[i], in, cand);
			if (!o->fakeq)
				muse_rtn_fake_quant(&c, wq[i], g->out[i], in);
			else if (o->fakeq(o->fakeq_ctx, wq[i], g->out[i], in, 0, cand)) {
				s = muse_err_set(err, MUSE_ERR_CHECK, "AWQ scale search: the block quantizer failed");
				goto done;
			}
			for (uint64_t r = 0; r < g->out[i]; r++)
				for (uint64_t k = 0; k < in; k++)
					wq[i][r * in + k] /= cand[k];
		}
		double l = fn(ctx, cand, wq);
		if (isnan(l)) {
			s = muse_err_set(err, MUSE_ERR_CHECK, "AWQ loss callback failed at ratio %.2f", ratio);
			goto done;
		}
		if (ri < 0)
			res->identity_loss = l;
		if (l < best) {
			best = l;
			res->best_ratio = ri < 0 ? -1 : ratio;
			memcpy(scales, cand, in * sizeof(float));
		}
	}
	res->best_loss = best;
done:
	for (size_t i = 0; wq && i < g->n_lin; i++)
		free(wq[i]);
	for (size_t i = 0; L.ref && i < g->n_lin; i++)
		free(L.ref[i]);
	free(wq);
	free(L.ref);
	free(L.tmp);
	free(L.G);
	free(L.d);
	free(xm);
	free(wm);
	free(cand);
	return s;
}

muse_status muse_awq_search_clip(const muse_wq_config *c0, const muse_awq_opts *o, float *w, uint64_t rows,
				 uint64_t in, const float *x, uint64_t n_tok, muse_err *err)
{
	muse_wq_config c = *c0;
	c.style = MUSE_WQ_AWQ;
	muse_status s = muse_wq_config_check(&c, in, err);
	if (s)
		return s;
	if (!n_tok || !x)
		return muse_err_set(err, MUSE_ERR_USAGE, "AWQ clipping search needs calibration inputs");
	uint64_t gs = c.group_size < 0 || (uint64_t)c.group_size > in ? in : (uint64_t)c.group_size;
	/* AutoAWQ subsamples every (n_tok / clip_tokens)-th token. */
	uint64_t want = o->clip_tokens ? o->clip_tokens : 512, stride = n_tok > want ? n_tok / want : 1;
	uint64_t nt = (n_tok + stride - 1) / stride;
	int grid = o->clip_grid > 0 ? o->clip_grid : 20;
	int steps = (int)(o->max_shrink * grid);
	if (steps < 1)
		steps = 1;
	if (rows > INT32_MAX / (uint64_t)steps || gs > INT32_MAX || nt > INT32_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "AWQ clipping search: sizes above int range");
	/*
	 * AutoAWQ's error for a clamp is mean_t (x_t . (Q(w') - w))^2 = d^T G d with G = X_g^T X_g / nt, the
	 * group's input Gram matrix: computing G once per group and every (row, shrink) candidate as one
	 * matrix product gives the same numbers as its token loop at a fraction of the cost.
	 */
	double *G = malloc(gs * gs * sizeof(double)), *xg = malloc(nt * gs * sizeof(double));
	double *D = malloc(rows * (uint64_t)steps * gs * sizeof(double)), *E = malloc(rows * (uint64_t)steps * gs * sizeof(double));
	double *mv = malloc(rows * (uint64_t)steps * sizeof(double));
	if (!G || !xg || !D || !E || !mv) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the AWQ clipping search");
		goto done;
	}
	int failed = 0;
	for (uint64_t k0 = 0; k0 < in && !failed; k0 += gs) {
		uint64_t m = k0 + gs < in ? gs : in - k0;
		for (uint64_t t = 0; t < nt; t++)
			for (uint64_t k = 0; k < m; k++)
				xg[t * m + k] = x[t * stride * in + k0 + k];
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)m, (int)nt, 1.0 / (double)nt, xg, (int)m,
			    xg, (int)m, 0.0, G, (int)m);
#pragma omp parallel for schedule(static)
		for (uint64_t r = 0; r < rows; r++) {
			float cur[1024];
			float *cb = m <= 1024 ? cur : malloc(m * sizeof(float));
			const float *wr = w + r * in + k0;
			double amax = 0;
			for (uint64_t k = 0; k < m; k++)
				amax = fmax(amax, fabs(wr[k]));
			for (int is = 0; is < steps; is++) {
				double v = amax * (1 - (double)is / grid);
				double *d = D + ((uint64_t)r * steps + is) * m;
				mv[r * steps + is] = v;
				if (!cb) {
					memset(d, 0, m * sizeof(double));
					continue;
				}
				for (uint64_t k = 0; k < m; k++)
					cb[k] = (float)fmin(fmax(wr[k], -v), v);
				if (!o->fakeq)
					muse_rtn_fake_quant(&c, cb, 1, m);
				else if (o->fakeq(o->fakeq_ctx, cb, 1, m, k0, NULL)) {
#pragma omp atomic write
					failed = 1;
				}
				for (uint64_t k = 0; k < m; k++)
					d[k] = (double)cb[k] - (double)wr[k];
			}
			if (cb != cur)
				free(cb);
		}
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(rows * steps), (int)m, (int)m, 1.0, D, (int)m, G,
			    (int)m, 0.0, E, (int)m);
#pragma omp parallel for schedule(static)
		for (uint64_t r = 0; r < rows; r++) {
			double best = INFINITY, best_max = mv[r * steps];
			for (int is = 0; is < steps; is++) {
				const double *d = D + ((uint64_t)r * steps + is) * m, *e = E + ((uint64_t)r * steps + is) * m;
				double acc = 0;
				for (uint64_t k = 0; k < m; k++)
					acc += d[k] * e[k];
				if (acc < best) {
					best = acc;
					best_max = mv[r * steps + is];
				}
			}
			float *wr = w + r * in + k0;
			for (uint64_t k = 0; k < m; k++)
				wr[k] = (float)fmin(fmax(wr[k], -best_max), best_max);
		}
	}
	if (failed)
		s = muse_err_set(err, MUSE_ERR_CHECK, "AWQ clipping search: the block quantizer failed");
done:
	free(G);
	free(xg);
	free(D);
	free(E);
	free(mv);
	return s;
}
