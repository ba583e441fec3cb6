/* gptq.c: GPTQ on one linear layer: Hessian preparation (dead columns, dampening, Cholesky of H^-1 through LAPACK), column-wise error compensation with lazy BLAS block updates, act-order and static groups; integer grids or a GGUF block quantizer. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/outfile.h"
#include "gptq.h"
#include "quant.h"

/* Sorts column indices by descending diag(H), ties by index (stable), so act-order is deterministic. */
static const double *sort_diag;
static int cmp_desc(const void *a, const void *b)
{
	int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
	double x = sort_diag[i], y = sort_diag[j];
	if (x != y)
		return x > y ? -1 : 1;
	return i < j ? -1 : i > j;
}

/*
 * H^-1's upper Cholesky factor U (H^-1 = U^T U) of the permuted, dampened H,
 * row-major n x n, into hinv. GPTQ needs only U's rows: row j holds the
 * coefficients that spread column j's error over the later columns. When
 * H + damp*I is not positive definite the dampening grows (GPTQModel's
 * damp_auto_increment) until it works or reaches 1.
 */
static muse_status prepare_hinv(const double *Hp, uint64_t n, const muse_gptq_opts *o, double *hinv,
				double *damp_used, muse_err *err)
{
	double mean = 0;
	for (uint64_t i = 0; i < n; i++)
		mean += Hp[i * n + i];
	mean /= (double)n;
	double step = o->damp_step > 0 ? o->damp_step : 0.0025;
	for (double pd = o->damp_percent; pd < 1.0 + 1e-12; pd += step) {
		memcpy(hinv, Hp, n * n * sizeof(double));
		for (uint64_t i = 0; i < n; i++)
			hinv[i * n + i] += pd * mean;
		/* L L^T = H; then H^-1 from the factor; then U^T U = H^-1. */
		if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, hinv, (lapack_int)n) != 0)
			continue;
		if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, hinv, (lapack_int)n) != 0)
			continue;
		for (uint64_t i = 0; i < n; i++)
			for (uint64_t j = i + 1; j < n; j++)
				hinv[i * n + j] = hinv[j * n + i];
		if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, hinv, (lapack_int)n) != 0)
			continue;
		for (uint64_t i = 0; i < n; i++)
			for (uint64_t j = 0; j < i; j++)
				hinv[i * n + j] = 0;
		*damp_used = pd;
		return MUSE_OK;
	}
	return muse_err_set(err, MUSE_ERR_CHECK,
			    "Hessian is not positive definite even with dampening 1.0 (calibration data too small or degenerate?)");
}

/* What quantizes column j (in processing order) and yields its decoded values. */
typedef struct col_quantizer col_quantizer;
struct col_quantizer {
	muse_status (*quant)(col_quantizer *cq, double *W, uint64_t rows, uint64_t n, uint64_t j, double *deq,
			     muse_err *err);
	uint64_t align; /* groups/blocks start at multiples of this (0: none) */
};

/* The GPTQ sweep over already permuted W (rows x n, double) with U = hinv. */
static muse_status gptq_sweep(col_quantizer *cq, double *W, uint64_t rows, uint64_t n, const double *hinv, int bs,
			      double *loss, muse_err *err)
{
	uint64_t B = bs > 0 ? (uint64_t)bs : 128, a = cq->align;
	/* Blocks never split a group: a group's grid is then taken after every earlier column's update. */
	if (a && a <= B)
		B = B / a * a;
	else if (a > B)
		while (a % B)
			B--;
	double *err_blk = malloc(rows * B * sizeof(double)), *deq = malloc(rows * sizeof(double));
	double *rowloss = calloc(rows, sizeof(double));
	muse_status s = MUSE_OK;
	if (!err_blk || !deq || !rowloss) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for GPTQ buffers");
		goto done;
	}
	for (uint64_t i1 = 0; i1 < n; i1 += B) {
		uint64_t i2 = i1 + B < n ? i1 + B : n, cnt = i2 - i1;
		for (uint64_t i = 0; i < cnt; i++) {
			uint64_t j = i1 + i;
			if ((s = cq->quant(cq, W, rows, n, j, deq, err)))
				goto done;
			const double *u = hinv + j * n;
			double d = u[j];
			/* No threads here: a parallel region per column costs more than the row updates it would split. */
			for (uint64_t r = 0; r < rows; r++) {
				double *wr = W + r * n;
				double diff = wr[j] - deq[r], e = diff / d;
				rowloss[r] += diff * diff / (d * d) / 2;
				err_blk[r * cnt + i] = e;
				for (uint64_t t = j + 1; t < i2; t++)
					wr[t] -= e * u[t];
			}
		}
		if (i2 < n)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(n - i2), (int)cnt, -1.0,
				    err_blk, (int)cnt, hinv + i1 * n + i2, (int)n, 1.0, W + i2, (int)n);
		if (muse_interrupted()) {
			s = muse_err_set(err, MUSE_ERR_INTERRUPTED, "interrupted");
			goto done;
		}
	}
	double l = 0;
	for (uint64_t r = 0; r < rows; r++)
		l += rowloss[r];
	*loss = l;
done:
	free(err_blk);
	free(deq);
	free(rowloss);
	return s;
}

/* ---- integer grids ---- */

typedef struct grid_q {
	col_quantizer base;
	const muse_wq_config *c;
	muse_qlinear *out;
	const int64_t *perm;
	bool per_channel, fixed; /* fixed: grids computed up front (per-channel or static groups) */
} grid_q;

static void group_params(const muse_wq_config *c, const double *W, uint64_t rows, uint64_t n, uint64_t k0,
			 uint64_t k1, float *scales, uint8_t *zeros, uint64_t G, uint64_t gi)
{
	for (uint64_t r = 0; r < rows; r++) {
		double mn = INFINITY, mx = -INFINITY;
		for (uint64_t k = k0; k < k1; k++) {
			double v = W[r * n + k];
			mn = v < mn ? v : mn;
			mx = v > mx ? v : mx;
		}
		muse_wq_params(c, mn, mx, &scales[r * G + gi], &zeros[r * G + gi]);
	}
}

static muse_status grid_quant(col_quantizer *cq, double *W, uint64_t rows, uint64_t n, uint64_t j, double *deq,
			      muse_err *err)
{
	grid_q *g = (grid_q *)cq;
	muse_qlinear *q = g->out;
	uint64_t G = q->n_groups, gi;
	if (g->per_channel)
		gi = 0;
	else if (g->fixed)
		gi = (uint64_t)g->perm[j] / q->group;
	else {
		gi = j / q->group;
		if (j % q->group == 0)
			group_params(g->c, W, rows, n, j, j + q->group < n ? j + q->group : n, q->scales, q->zeros, G, gi);
	}
	uint64_t k = (uint64_t)g->perm[j];
	for (uint64_t r = 0; r < rows; r++) {
		float sc = q->scales[r * G + gi];
		uint8_t z = q->zeros[r * G + gi];
		uint8_t code = muse_wq_code(W[r * n + j], sc, z, q->bits);
		q->q[r * n + k] = code;
		deq[r] = muse_wq_value(code, sc, z);
	}
	if (q->g_idx)
		q->g_idx[k] = (int32_t)gi;
	return MUSE_OK;
}

/* Copies H to double, checks it, fixes dead columns (H_jj = 0 -> 1, W[:, j] = 0). */
static muse_status load_hessian(const float *H, uint64_t n, double *Hd, double *W, uint64_t rows, uint64_t *dead,
				muse_err *err)
{
	*dead = 0;
	for (uint64_t i = 0; i < n * n; i++) {
		if (!isfinite(H[i]))
			return muse_err_set(err, MUSE_ERR_CHECK, "Hessian element %llu is not finite",
					    (unsigned long long)i);
		Hd[i] = H[i];
	}
	for (uint64_t i = 0; i < n; i++) {
		if (Hd[i * n + i] < 0)
			return muse_err_set(err, MUSE_ERR_CHECK, "Hessian diagonal %llu is negative",
					    (unsigned long long)i);
		if (Hd[i * n + i] == 0) {
			Hd[i * n + i] = 1;
			for (uint64_t r = 0; r < rows; r++)
				W[r * n + i] = 0;
			(*dead)++;
		}
	}
	return MUSE_OK;
}

/* Permutes W's columns and H's rows and columns by perm (W in place through a row buffer). */
static muse_status apply_perm(double *W, uint64_t rows, double *Hd, double *Hp, uint64_t n, const int64_t *perm,
			      muse_err *err)
{
	double *tmp = malloc(n * sizeof(double));
	if (!tmp)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t j = 0; j < n; j++)
			tmp[j] = W[r * n + perm[j]];
		memcpy(W + r * n, tmp, n * sizeof(double));
	}
	free(tmp);
	for (uint64_t a = 0; a < n; a++)
		for (uint64_t b = 0; b < n; b++)
			Hp[a * n + b] = Hd[perm[a] * n + perm[b]];
	return MUSE_OK;
}

typedef struct gptq_work {
	double *W, *Hd, *Hp, *hinv;
	int64_t *perm;
} gptq_work;

static void work_free(gptq_work *w)
{
	free(w->W);
	free(w->Hd);
	free(w->Hp);
	free(w->hinv);
	free(w->perm);
}

static muse_status work_alloc(gptq_work *wk, const float *w, uint64_t rows, uint64_t n, muse_err *err)
{
	memset(wk, 0, sizeof *wk);
	uint64_t nw, nh;
	if (!muse_mul_u64(rows, n, &nw) || !muse_mul_u64(n, n, &nh) || nw > SIZE_MAX / 8 || nh > SIZE_MAX / 8 ||
	    n > (uint64_t)INT32_MAX || rows > (uint64_t)INT32_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "linear layer %llu x %llu is too large for GPTQ",
				    (unsigned long long)rows, (unsigned long long)n);
	wk->W = malloc(nw * sizeof(double));
	wk->Hd = malloc(nh * sizeof(double));
	wk->Hp = malloc(nh * sizeof(double));
	wk->hinv = malloc(nh * sizeof(double));
	wk->perm = malloc(n * sizeof(int64_t));
	if (!wk->W || !wk->Hd || !wk->Hp || !wk->hinv || !wk->perm) {
		work_free(wk);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for GPTQ on a %llu x %llu layer",
				    (unsigned long long)rows, (unsigned long long)n);
	}
	for (uint64_t i = 0; i < nw; i++)
		wk->W[i] = w[i];
	for (uint64_t j = 0; j < n; j++)
		wk->perm[j] = (int64_t)j;
	return MUSE_OK;
}

muse_status muse_gptq_quantize(const muse_wq_config *c, const muse_gptq_opts *o, const float *w, uint64_t rows,
			       uint64_t n, const float *H, muse_qlinear *out, muse_gptq_stats *st, muse_err *err)
{
	muse_gptq_stats dummy;
	if (!st)
		st = &dummy;
	memset(st, 0, sizeof *st);
	memset(out, 0, sizeof *out);
	muse_status s = muse_wq_config_check(c, n, err);
	if (s)
		return s;
	bool per_channel = c->group_size < 0 || (uint64_t)c->group_size >= n;
	bool fixed = per_channel || (o->act_order && o->static_groups);
	bool with_gidx = o->act_order && !fixed;
	gptq_work wk;
	if ((s = work_alloc(&wk, w, rows, n, err)))
		return s;
	if ((s = muse_qlinear_alloc(out, rows, n, c->bits, c->group_size, c->sym, with_gidx, err)) ||
	    (s = load_hessian(H, n, wk.Hd, wk.W, rows, &st->dead_cols, err)))
		goto fail;
	/* Grids fixed up front come from the (dead-zeroed) unpermuted weights: per channel, or static groups. */
	if (fixed)
		for (uint64_t gi = 0; gi < out->n_groups; gi++) {
			uint64_t k0 = gi * out->group, k1 = k0 + out->group < n ? k0 + out->group : n;
			group_params(c, wk.W, rows, n, k0, k1, out->scales, out->zeros, out->n_groups, gi);
		}
	if (o->act_order) {
		double *diag = malloc(n * sizeof(double));
		if (!diag) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		for (uint64_t j = 0; j < n; j++)
			diag[j] = wk.Hd[j * n + j];
		sort_diag = diag;
		qsort(wk.perm, n, sizeof(int64_t), cmp_desc);
		sort_diag = NULL;
		free(diag);
	}
	if ((s = apply_perm(wk.W, rows, wk.Hd, wk.Hp, n, wk.perm, err)) ||
	    (s = prepare_hinv(wk.Hp, n, o, wk.hinv, &st->damp_used, err)))
		goto fail;
	grid_q gq = { { grid_quant, per_channel || fixed ? 0 : out->group }, c, out, wk.perm, per_channel, fixed };
	if ((s = gptq_sweep(&gq.base, wk.W, rows, n, wk.hinv, o->block_size, &st->loss, err)))
		goto fail;
	work_free(&wk);
	return MUSE_OK;
fail:
	work_free(&wk);
	muse_qlinear_free(out);
	return s;
}

/* ---- GGUF block quantizer ---- */

typedef struct gguf_q {
	col_quantizer base;
	muse_dtype type;
	uint64_t blck, block_bytes, row_bytes;
	uint8_t *dst, *tmp;
	float *buf, *dq, *imp;
	const float *diag;
	int nthreads;
} gguf_q;

static muse_status gguf_quant(col_quantizer *cq, double *W, uint64_t rows, uint64_t n, uint64_t j, double *deq,
			      muse_err *err)
{
	gguf_q *g = (gguf_q *)cq;
	uint64_t bs = g->blck, off = j % bs;
	if (off == 0) {
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t t = 0; t < bs; t++)
				g->buf[r * bs + t] = (float)W[r * n + j + t];
		muse_status s = muse_quantize_rows(g->type, g->buf, g->tmp, (int64_t)rows, (int64_t)bs, g->diag + j,
						   g->nthreads, err);
		if (s)
			return s;
		for (uint64_t r = 0; r < rows; r++) {
			memcpy(g->dst + r * g->row_bytes + j / bs * g->block_bytes, g->tmp + r * g->block_bytes,
			       g->block_bytes);
		}
		if ((s = muse_dequantize(g->type, g->tmp, g->dq, (int64_t)(rows * bs), err)))
			return s;
	}
	for (uint64_t r = 0; r < rows; r++)
		deq[r] = g->dq[r * bs + off];
	return MUSE_OK;
}

muse_status muse_gptq_quantize_gguf(muse_dtype type, const muse_gptq_opts *o, const float *w, uint64_t rows,
				    uint64_t n, const float *H, void *dst, muse_gptq_stats *st, muse_err *err)
{
	muse_gptq_stats dummy;
	if (!st)
		st = &dummy;
	memset(st, 0, sizeof *st);
	const muse_dtype_traits *tr = muse_dtype_info(type);
	const muse_quant_traits *qt = muse_quant_traits_of(type);
	if (!tr || !qt || !qt->quantize_ref || !qt->dequantize)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "GGUF type %s has no quantizer in muse",
				    muse_dtype_name(type));
	if (o->act_order)
		return muse_err_set(err, MUSE_ERR_USAGE, "--act-order does not apply to GGUF block types (blocks are contiguous)");
	uint64_t bs = tr->blck;
	if (n % bs)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "in_features %llu is not a multiple of %s's block of %llu",
				    (unsigned long long)n, tr->name, (unsigned long long)bs);
	gptq_work wk;
	muse_status s;
	if ((s = work_alloc(&wk, w, rows, n, err)))
		return s;
	gguf_q gq = { { gguf_quant, bs }, type, bs, tr->block_bytes, n / bs * tr->block_bytes, dst, NULL, NULL, NULL,
		      NULL, NULL, o->nthreads };
	float *diag = malloc(n * sizeof(float));
	gq.tmp = malloc(rows * tr->block_bytes);
	gq.buf = malloc(rows * bs * sizeof(float));
	gq.dq = malloc(rows * bs * sizeof(float));
	if (!diag || !gq.tmp || !gq.buf || !gq.dq) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for GPTQ buffers");
		goto done;
	}
	if ((s = load_hessian(H, n, wk.Hd, wk.W, rows, &st->dead_cols, err)))
		goto done;
	/* Importance for ggml's weighted block search: diag H is the imatrix (mean x^2) up to a factor; a floor keeps dead columns from zeroing a block's weights. */
	double mean = 0;
	for (uint64_t j = 0; j < n; j++)
		mean += wk.Hd[j * n + j];
	mean /= (double)n;
	for (uint64_t j = 0; j < n; j++)
		diag[j] = (float)fmax(wk.Hd[j * n + j], 1e-6 * mean);
	gq.diag = diag;
	if ((s = apply_perm(wk.W, rows, wk.Hd, wk.Hp, n, wk.perm, err)) ||
	    (s = prepare_hinv(wk.Hp, n, o, wk.hinv, &st->damp_used, err)))
		goto done;
	s = gptq_sweep(&gq.base, wk.W, rows, n, wk.hinv, o->block_size, &st->loss, err);
done:
	free(diag);
	free(gq.tmp);
	free(gq.buf);
	free(gq.dq);
	work_free(&wk);
	return s;
}

double muse_gptq_hessian_error(const float *w, const float *q, uint64_t rows, uint64_t cols, const float *H)
{
	double total = 0;
	double *d = malloc(cols * sizeof(double));
	if (!d)
		return NAN;
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t k = 0; k < cols; k++)
			d[k] = (double)w[r * cols + k] - (double)q[r * cols + k];
		double acc = 0;
		for (uint64_t a = 0; a < cols; a++) {
			if (d[a] == 0)
				continue;
			double s = 0;
			for (uint64_t b = 0; b < cols; b++)
				s += (double)H[a * cols + b] * d[b];
			acc += d[a] * s;
		}
		total += acc;
	}
	free(d);
	return total;
}
