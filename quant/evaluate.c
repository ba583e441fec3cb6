/* evaluate.c: chunked perplexity and reference-model KL statistics, layer at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/progress.h"
#include "evaluate.h"
#include "forward.h"

bool muse_eval_ggml_arith(const muse_model *m, bool exact)
{
	return !exact && muse_model_is_gguf(m);
}

/* The forward options eval runs m with: llama.cpp's CPU arithmetic for a GGUF unless exact. */
static muse_fwd_opts fwd_opts(const muse_model *m, bool exact)
{
	bool on = muse_eval_ggml_arith(m, exact);
	return (muse_fwd_opts){ .ggml_act = on };
}

/* Runs n_seq sequences of L tokens through every layer of m; x gets the final hidden states. */
static muse_status run_layers(muse_model *m, const int32_t *tok, int64_t n_seq, int64_t L, float *x,
			      const muse_fwd_opts *fo, muse_progress *pg, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	muse_status s = muse_model_embed(m, tok, (size_t)(n_seq * L), x, err);
	for (int64_t il = 0; il < hp->n_layer && !s; il++) {
		muse_layer l;
		if ((s = muse_model_load_layer(m, il, &l, err)))
			break;
		s = muse_forward_layer(m, &l, x, n_seq, L, fo, err);
		muse_layer_free(&l);
		if (pg)
			muse_progress_add(pg, 1);
	}
	return s;
}

/* llama-perplexity's mean and its standard error (0 for fewer than 11 values). */
static void mean_unc(double sum, double sum2, int64_t n, double *mean, double *unc)
{
	*mean = n ? sum / (double)n : 0;
	double v = n ? sum2 / (double)n - *mean * *mean : 0;
	*unc = v > 0 && n > 10 ? sqrt(v / (double)(n - 1)) : 0;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* llama-perplexity's percentile: linear interpolation between sorted values. */
static double percentile(const float *v, size_t n, double f)
{
	if (f <= 0)
		return v[0];
	if (f >= 1)
		return v[n - 1];
	double p = f * (double)(n - 1);
	size_t ip = (size_t)p;
	p -= (double)ip;
	return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static double median(const float *v, size_t n)
{
	return n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2] + v[n / 2 - 1]);
}

typedef struct sums {
	double nll, nll2, nllb, nllb2, nll_nllb, kld, kld2, dp, dp2, dp4;
	int64_t same, count;
} sums;

/* Log-softmax pieces as llama-perplexity computes them: float max, double sum of expf, float log. */
static void lse(const float *lg, int64_t V, float *mx, float *lsum, int64_t *imax)
{
	float m = lg[0];
	int64_t im = 0;
	for (int64_t i = 1; i < V; i++)
		if (lg[i] > m) {
			m = lg[i];
			im = i;
		}
	double s = 0;
	for (int64_t i = 0; i < V; i++)
		s += expf(lg[i] - m);
	*mx = m;
	*lsum = (float)log(s);
	*imax = im;
}

muse_status muse_eval_run(muse_model *m, muse_model *ref, const int32_t *ids, size_t n_ids,
			  const muse_eval_opts *o, muse_eval_result *res, muse_err *err)
{
	const muse_hparams *hp = muse_model_hparams(m);
	const int64_t ctx = o->ctx, E = hp->n_embd, V = hp->n_vocab;
	memset(res, 0, sizeof *res);
	if (ctx < 4)
		return muse_err_set(err, MUSE_ERR_USAGE, "context %lld is below 4 tokens", (long long)ctx);
	if (ref) {
		const muse_hparams *rh = muse_model_hparams(ref);
		if (rh->n_vocab != V)
			return muse_err_set(err, MUSE_ERR_USAGE, "%s has %lld tokens in its vocabulary, %s has %lld",
					    muse_model_path(ref), (long long)rh->n_vocab, muse_model_path(m), (long long)V);
	}
	int64_t n_chunks = (int64_t)(n_ids / (size_t)ctx);
	if (o->max_chunks > 0 && n_chunks > o->max_chunks)
		n_chunks = o->max_chunks;
	if (n_chunks < 1)
		return muse_err_set(err, MUSE_ERR_FORMAT, "the text has %zu tokens, fewer than one context of %lld", n_ids,
				    (long long)ctx);
	const int64_t first = ctx / 2, n_out = ctx - 1 - first;
	int64_t Emax = E;
	if (ref && muse_model_hparams(ref)->n_embd > Emax)
		Emax = muse_model_hparams(ref)->n_embd;
	int64_t G = o->group_chunks;
	if (G <= 0) {
		G = (int64_t)(((uint64_t)256 << 20) / ((uint64_t)ctx * (uint64_t)Emax * sizeof(float)));
		if (G < 1)
			G = 1;
	}
	if (G > n_chunks)
		G = n_chunks;

	muse_status s = MUSE_OK;
	size_t nx, nl;
	float *x = NULL, *xr = NULL, *lm = NULL, *lr = NULL, *kv = NULL, *dpv = NULL;
	int32_t *tok = NULL;
	muse_head h = { 0 }, hr = { 0 };
	const muse_fwd_opts fo = fwd_opts(m, o->exact), fr = ref ? fwd_opts(ref, o->exact) : fo;
	muse_progress pg;
	sums S = { 0 };
	if (!muse_mul_size((size_t)(G * ctx), (size_t)Emax * sizeof(float), &nx) ||
	    !muse_mul_size((size_t)n_out, (size_t)V * sizeof(float), &nl) || !(x = malloc(nx)) ||
	    !(tok = malloc((size_t)(G * ctx) * sizeof *tok)) || !(lm = malloc(nl)) ||
	    (ref && (!(xr = malloc(nx)) || !(lr = malloc(nl)) ||
		     !(kv = malloc((size_t)(n_chunks * n_out) * sizeof *kv)) ||
		     !(dpv = malloc((size_t)(n_chunks * n_out) * sizeof *dpv))))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for %lld chunks of %lld tokens", (long long)G,
				 (long long)ctx);
		goto done;
	}
	if ((s = muse_model_load_head(m, &h, err)) || (ref && (s = muse_model_load_head(ref, &hr, err))))
		goto done;
	uint64_t steps = (uint64_t)((n_chunks + G - 1) / G) * (uint64_t)(hp->n_layer + (ref ? muse_model_hparams(ref)->n_layer : 0));
	/* one step is one layer run over a group of chunks, of the model or of the reference */
	muse_progress_start_count(&pg, ref ? "eval+ref" : "eval", steps, "layer passes", o->quiet);
	for (int64_t c0 = 0; c0 < n_chunks; c0 += G) {
		int64_t g = n_chunks - c0 < G ? n_chunks - c0 : G;
		memcpy(tok, ids + (size_t)c0 * (size_t)ctx, (size_t)(g * ctx) * sizeof *tok);
		if (o->bos >= 0)
			for (int64_t c = 0; c < g; c++)
				tok[c * ctx] = o->bos;
		if ((s = run_layers(m, tok, g, ctx, x, &fo, &pg, err)) ||
		    (ref && (s = run_layers(ref, tok, g, ctx, xr, &fr, &pg, err))))
			goto done_pg;
		for (int64_t c = 0; c < g; c++) {
			const int32_t *tt = ids + (size_t)(c0 + c) * (size_t)ctx; /* the original tokens are the targets */
			if ((s = muse_forward_logits(m, &h, x + (size_t)(c * ctx + first) * (size_t)E, n_out, &fo, lm, err)))
				goto done_pg;
			if (ref && (s = muse_forward_logits(ref, &hr, xr + (size_t)(c * ctx + first) * (size_t)muse_model_hparams(ref)->n_embd,
							    n_out, &fr, lr, err)))
				goto done_pg;
			double nll_s = 0, nll2_s = 0, nllb_s = 0, nllb2_s = 0, nn_s = 0, k_s = 0, k2_s = 0, d_s = 0, d2_s = 0, d4_s = 0;
			int64_t same_s = 0;
#pragma omp parallel for schedule(static) reduction(+ : nll_s, nll2_s, nllb_s, nllb2_s, nn_s, k_s, k2_s, d_s, d2_s, d4_s, same_s)
			for (int64_t i = 0; i < n_out; i++) {
				const float *l = lm + (size_t)i * (size_t)V;
				int32_t target = tt[first + i + 1];
				float mx, ls;
				int64_t im;
				lse(l, V, &mx, &ls, &im);
				float nll = mx + ls - l[target];
				nll_s += nll;
				nll2_s += (double)nll * nll;
				if (!ref)
					continue;
				const float *b = lr + (size_t)i * (size_t)V;
				float mb, lb;
				int64_t ib;
				lse(b, V, &mb, &lb, &ib);
				float nllb = mb + lb - b[target];
				nllb_s += nllb;
				nllb2_s += (double)nllb * nllb;
				nn_s += (double)nll * nllb;
				/* KL(ref || model) over the whole vocabulary, exactly (llama.cpp reads 16-bit log-probs). */
				double kl = 0;
				for (int64_t j = 0; j < V; j++) {
					double lpb = (double)b[j] - mb - lb, lpm = (double)l[j] - mx - ls;
					kl += exp(lpb) * (lpb - lpm);
				}
				k_s += kl;
				k2_s += kl * kl;
				same_s += im == ib;
				float dp = expf(-nll) - expf(-nllb);
				d_s += dp;
				d2_s += (double)dp * dp;
				d4_s += (double)dp * dp * dp * dp;
				kv[(c0 + c) * n_out + i] = (float)kl;
				dpv[(c0 + c) * n_out + i] = dp;
			}
			S.nll += nll_s; S.nll2 += nll2_s; S.nllb += nllb_s; S.nllb2 += nllb2_s; S.nll_nllb += nn_s;
			S.kld += k_s; S.kld2 += k2_s; S.dp += d_s; S.dp2 += d2_s; S.dp4 += d4_s; S.same += same_s;
			S.count += n_out;
		}
	}
	res->n_chunks = n_chunks;
	res->n_scored = S.count;
	mean_unc(S.nll, S.nll2, S.count, &res->nll, &res->nll_unc);
	res->ppl = exp(res->nll);
	res->ppl_unc = res->ppl * res->nll_unc;
	if (ref) {
		res->has_ref = true;
		mean_unc(S.nllb, S.nllb2, S.count, &res->nll_base, &res->nll_base_unc);
		res->ppl_base = exp(res->nll_base);
		res->ppl_base_unc = res->ppl_base * res->nll_base_unc;
		double cov = S.count >= 10 ? (S.nll_nllb / S.count - (S.nll / S.count) * (S.nllb / S.count)) / (S.count - 1) : 0;
		res->ppl_cor = res->nll_unc > 0 && res->nll_base_unc > 0 ? cov / (res->nll_unc * res->nll_base_unc) : 0;
		res->ln_ppl_ratio = res->nll - res->nll_base;
		double u2 = res->nll_unc * res->nll_unc + res->nll_base_unc * res->nll_base_unc - 2 * cov;
		res->ln_ppl_ratio_unc = u2 > 0 ? sqrt(u2) : 0;
		mean_unc(S.kld, S.kld2, S.count, &res->kld, &res->kld_unc);
		double mse, mse_unc;
		mean_unc(S.dp2, S.dp4, S.count, &mse, &mse_unc);
		res->dp_rms = sqrt(mse);
		res->dp_rms_unc = res->dp_rms > 0 ? 0.5 / res->dp_rms * mse_unc : 0;
		mean_unc(S.dp, S.dp2, S.count, &res->dp_mean, &res->dp_unc);
		res->same_top = (double)S.same / (double)S.count;
		res->same_top_unc = S.count > 1 ? sqrt(res->same_top * (1 - res->same_top) / (double)(S.count - 1)) : 0;
		size_t n = (size_t)S.count;
		qsort(kv, n, sizeof *kv, cmp_float);
		qsort(dpv, n, sizeof *dpv, cmp_float);
		static const double kp[MUSE_EVAL_N_PCT] = { 1, .999, .99, .95, .90, -1, .10, .05, .01, .001, 0 };
		static const double dpp[13] = { 1, .999, .99, .95, .90, .75, -1, .25, .10, .05, .01, .001, 0 };
		for (int i = 0; i < MUSE_EVAL_N_PCT; i++)
			res->kld_pct[i] = kp[i] < 0 ? median(kv, n) : percentile(kv, n, kp[i]);
		for (int i = 0; i < 13; i++)
			res->dp_pct[i] = dpp[i] < 0 ? median(dpv, n) : percentile(dpv, n, dpp[i]);
	}
done_pg:
	muse_progress_end(&pg);
done:
	muse_head_free(&h);
	muse_head_free(&hr);
	free(x);
	free(xr);
	free(lm);
	free(lr);
	free(kv);
	free(dpv);
	free(tok);
	return s;
}

muse_status muse_eval_logits(muse_model *m, const int32_t *ids, size_t n_ids, bool exact, float **logits,
			     muse_err *err)
{
	const muse_fwd_opts fo = fwd_opts(m, exact);
	const muse_hparams *hp = muse_model_hparams(m);
	size_t n;
	*logits = NULL;
	if (!n_ids)
		return muse_err_set(err, MUSE_ERR_USAGE, "no tokens");
	if (!muse_mul_size(n_ids, (size_t)hp->n_vocab * sizeof(float), &n) || !(*logits = malloc(n)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for %zu x %lld logits", n_ids, (long long)hp->n_vocab);
	muse_status s = muse_forward_all(m, ids, 1, (int64_t)n_ids, &fo, *logits, err);
	if (s) {
		free(*logits);
		*logits = NULL;
	}
	return s;
}
