/* awq_model.c: AWQ over a whole llama-family checkpoint: groups of linears sharing an input, scale search, folding into norms and preceding linears (routers and biases follow), clipping, AWQ grid; experts below a token threshold fall back to RTN. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/reader.h"
#include "awq.h"
#include "quant.h"

struct muse_awq_model {
	size_t n;
	muse_qlinear *q;
	float **dense;
	const char **method;
	uint64_t *tokens;
	double *gain;
	uint8_t **gq;    /* GGUF runs: each quantized tensor's blocks */
	size_t *gq_n;
};

const muse_qlinear *muse_awq_model_linear(const muse_awq_model *m, size_t i)
{
	return i < m->n && m->q[i].q ? &m->q[i] : NULL;
}

const float *muse_awq_model_dense(const muse_awq_model *m, size_t i)
{
	return i < m->n ? m->dense[i] : NULL;
}

const char *muse_awq_model_method(const muse_awq_model *m, size_t i, uint64_t *tokens, double *gain)
{
	if (i >= m->n)
		return NULL;
	*tokens = m->tokens[i];
	*gain = m->gain[i];
	return m->method[i];
}

void muse_awq_model_free(muse_awq_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		muse_qlinear_free(&m->q[i]);
		free(m->dense[i]);
		if (m->gq)
			free(m->gq[i]);
	}
	free(m->gq);
	free(m->gq_n);
	free(m->q);
	free(m->dense);
	free(m->method);
	free(m->tokens);
	free(m->gain);
	free(m);
}

static ptrdiff_t find(const muse_reader *r, const char *name)
{
	for (size_t i = 0; i < r->n_tensors; i++)
		if (!strcmp(r->tensors[i].name, name))
			return (ptrdiff_t)i;
	return -1;
}

static bool starts(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

/* The module component before ".weight". */
static const char *comp(const char *name, char *buf, size_t cap)
{
	size_t n = strlen(name);
	if (n > 7 && !strcmp(name + n - 7, ".weight"))
		n -= 7;
	size_t b = n;
	while (b > 0 && name[b - 1] != '.')
		b--;
	snprintf(buf, cap, "%.*s", (int)(n - b), name + b);
	return buf;
}

static muse_status load(muse_reader *r, size_t i, float **out, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	*out = NULL;
	if (t->nelements > SIZE_MAX / 4)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s' is too large", r->path, t->name);
	float *f = malloc(t->nelements ? (size_t)t->nelements * 4 : 4);
	uint8_t *dense = NULL;
	const uint8_t *src = muse_reader_view(r, i);
	muse_status s = MUSE_OK;
	if (!f)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
	if (!src) {
		if (!(dense = malloc(t->nbytes ? (size_t)t->nbytes : 1))) {
			free(f);
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
		}
		if ((s = muse_reader_read(r, i, dense, err)))
			goto done;
		src = dense;
	}
	if (muse_dtype_info(t->dtype) && muse_dtype_info(t->dtype)->is_quant)
		s = muse_dequantize(t->dtype, src, f, (int64_t)t->nelements, err);
	else
		s = muse_dtype_convert(MUSE_DT_F32, f, t->dtype, src, (size_t)t->nelements, err);
	if (s)
		muse_err_prefix(err, "%s: tensor '%s'", r->path, t->name);
	for (uint64_t k = 0; !s && k < t->nelements; k++)
		if (!isfinite(f[k]))
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': element %llu is not finite", r->path,
					 t->name, (unsigned long long)k);
done:
	free(dense);
	if (s)
		free(f);
	else
		*out = f;
	return s;
}

/* Calibration inputs [n_tok, in] F32 named `name` in acts. */
static muse_status load_acts(muse_reader *acts, const char *name, uint64_t in, float **x, uint64_t *n_tok, muse_err *err)
{
	ptrdiff_t i = find(acts, name);
	*x = NULL;
	*n_tok = 0;
	if (i < 0)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no activations '%s'", acts->path, name);
	const muse_tensor *t = &acts->tensors[i];
	if (t->ndim != 2 || t->shape[1] != in || !muse_dtype_info(t->dtype)->is_float)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: activations '%s' must be [tokens, %llu] floats", acts->path,
				    name, (unsigned long long)in);
	*n_tok = t->shape[0];
	return load(acts, (size_t)i, x, err);
}

/* One layer's working set: loaded weights by reader index, freed at the end of the layer. */
typedef struct layer {
	muse_reader *r;
	float **w;       /* by reader index; NULL when not loaded */
	size_t *loaded;  /* indices loaded, for freeing */
	size_t n_loaded;
} layer;

static muse_status get(layer *L, size_t i, float **out, muse_err *err)
{
	if (!L->w[i]) {
		muse_status s = load(L->r, i, &L->w[i], err);
		if (s)
			return s;
		L->loaded[L->n_loaded++] = i;
	}
	*out = L->w[i];
	return MUSE_OK;
}

/* Searches the scales for the linears idx[0..n) on x; s gets them. */
static muse_status search(layer *L, const size_t *idx, size_t n, const float *x, uint64_t n_tok,
			  const muse_awq_model_opts *o, float *s, muse_awq_result *res, muse_err *err)
{
	const float **ws = calloc(n, sizeof(float *));
	uint64_t *outs = calloc(n, sizeof(uint64_t));
	muse_status st = MUSE_OK;
	if (!ws || !outs) {
		st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	uint64_t in = L->r->tensors[idx[0]].shape[1];
	for (size_t k = 0; k < n; k++) {
		float *w;
		if ((st = get(L, idx[k], &w, err)))
			goto done;
		ws[k] = w;
		outs[k] = L->r->tensors[idx[k]].shape[0];
	}
	muse_awq_group g = { n, ws, outs, in, x, n_tok, NULL, NULL, NULL };
	st = muse_awq_search_scale(&g, &o->wq, &o->ao, s, res, err);
done:
	free(ws);
	free(outs);
	return st;
}

/* Divides the output rows of linear `prev` (and its bias) by s: the next linear's inputs arrive divided by s. */
static muse_status fold_prev(layer *L, muse_awq_model *m, size_t prev, const float *s, muse_err *err)
{
	float *w;
	muse_status st = get(L, prev, &w, err);
	if (st)
		return st;
	const muse_tensor *t = &L->r->tensors[prev];
	muse_awq_fold_linear(w, t->shape[0], t->shape[1], s);
	char bn[MUSE_MAX_NAME + 8];
	snprintf(bn, sizeof bn, "%.*s.bias", (int)(strlen(t->name) - 7), t->name);
	ptrdiff_t b = find(L->r, bn);
	if (b >= 0) {
		float *bw;
		if ((st = get(L, (size_t)b, &bw, err)))
			return st;
		muse_awq_fold_norm(bw, t->shape[0], s);
		m->dense[b] = bw; /* ownership moves to the model result */
		L->w[b] = NULL;
	}
	return MUSE_OK;
}

/* A norm weight (and bias) divided by s; the result owns the new values. */
static muse_status fold_norm(layer *L, muse_awq_model *m, size_t ni, const float *s, uint64_t in, muse_err *err)
{
	float *w;
	muse_status st = get(L, ni, &w, err);
	if (st)
		return st;
	if (L->r->tensors[ni].nelements != in)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: norm '%s' has %llu elements, expected %llu", L->r->path,
				    L->r->tensors[ni].name, (unsigned long long)L->r->tensors[ni].nelements,
				    (unsigned long long)in);
	muse_awq_fold_norm(w, in, s);
	m->dense[ni] = w;
	L->w[ni] = NULL;
	char bn[MUSE_MAX_NAME + 8];
	const char *nm = L->r->tensors[ni].name;
	snprintf(bn, sizeof bn, "%.*s.bias", (int)(strlen(nm) - 7), nm);
	ptrdiff_t b = find(L->r, bn);
	if (b >= 0) {
		float *bw;
		if ((st = get(L, (size_t)b, &bw, err)))
			return st;
		muse_awq_fold_norm(bw, in, s);
		m->dense[b] = bw;
		L->w[b] = NULL;
	}
	return MUSE_OK;
}

typedef struct member {
	size_t idx;
	const float *s;  /* its scales (NULL: none) */
	const float *x;  /* its inputs (unscaled), NULL: no clip */
	uint64_t n_tok;
	bool clip;
	const char *method;
	double gain;
} member;

static muse_status run_layer(muse_reader *r, muse_reader *acts, const bool *is_lin, const char *P,
			     const muse_awq_model_opts *o, muse_awq_model *m, muse_err *err)
{
	layer L = { r, calloc(r->n_tensors, sizeof(float *)), calloc(r->n_tensors, sizeof(size_t)), 0 };
	member *mem = calloc(r->n_tensors, sizeof(member));
	size_t nm = 0;
	size_t *grp = calloc(r->n_tensors, sizeof(size_t));
	float *x_in = NULL, *x_o = NULL, *x_post = NULL;
	float *s_in = NULL, *s_o = NULL, *s_post = NULL;
	float **s_down = calloc(r->n_tensors, sizeof(float *)), **x_down = calloc(r->n_tensors, sizeof(float *));
	uint64_t n_in = 0, n_o = 0, n_post = 0;
	muse_status st = MUSE_OK;
	char name[MUSE_MAX_NAME + 64], c[128];
	if (!L.w || !L.loaded || !mem || !grp || !s_down || !x_down) {
		st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	snprintf(name, sizeof name, "%sinput_layernorm.weight", P);
	ptrdiff_t ln1 = find(r, name);
	snprintf(name, sizeof name, "%spost_attention_layernorm.weight", P);
	ptrdiff_t ln2 = find(r, name);
	uint64_t H = ln1 >= 0 ? r->tensors[ln1].nelements : 0;
	ptrdiff_t v = -1, oo = -1;
	size_t n_grp = 0;
	muse_awq_result res;

	/* q/k/v after input_layernorm. */
	for (size_t i = 0; i < r->n_tensors; i++)
		if (is_lin[i] && starts(r->tensors[i].name, P) && strstr(r->tensors[i].name, "self_attn.")) {
			comp(r->tensors[i].name, c, sizeof c);
			if (!strcmp(c, "q_proj") || !strcmp(c, "k_proj") || !strcmp(c, "v_proj"))
				grp[n_grp++] = i;
			if (!strcmp(c, "v_proj"))
				v = (ptrdiff_t)i;
			if (!strcmp(c, "o_proj"))
				oo = (ptrdiff_t)i;
		}
	if (n_grp) {
		if (ln1 < 0) {
			st = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: AWQ: no '%sinput_layernorm.weight' to fold scales into",
					  r->path, P);
			goto done;
		}
		snprintf(name, sizeof name, "%sinput_layernorm.output", P);
		if ((st = load_acts(acts, name, H, &x_in, &n_in, err)) || !(s_in = malloc(H * sizeof(float))) ||
		    (st = search(&L, grp, n_grp, x_in, n_in, o, s_in, &res, err))) {
			if (!st)
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		if ((st = fold_norm(&L, m, (size_t)ln1, s_in, H, err)))
			goto done;
		for (size_t k = 0; k < n_grp; k++) {
			comp(r->tensors[grp[k]].name, c, sizeof c);
			/* AutoAWQ leaves q/k unclipped: their errors pass through the softmax. */
			mem[nm++] = (member){ grp[k], s_in, x_in, n_in, !strcmp(c, "v_proj"), "awq",
					      res.best_loss > 0 ? res.identity_loss / res.best_loss : 1 };
		}
	}
	/* o_proj: scales fold into v_proj when v's outputs are o's inputs (no GQA), as AutoAWQ. */
	if (oo >= 0) {
		uint64_t in = r->tensors[oo].shape[1];
		snprintf(name, sizeof name, "%.*s.input", (int)(strlen(r->tensors[oo].name) - 7), r->tensors[oo].name);
		if ((st = load_acts(acts, name, in, &x_o, &n_o, err)))
			goto done;
		if (v >= 0 && r->tensors[v].shape[0] == in) {
			size_t one = (size_t)oo;
			if (!(s_o = malloc(in * sizeof(float)))) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			if ((st = search(&L, &one, 1, x_o, n_o, o, s_o, &res, err)) ||
			    (st = fold_prev(&L, m, (size_t)v, s_o, err)))
				goto done;
			mem[nm++] = (member){ (size_t)oo, s_o, x_o, n_o, true, "awq",
					      res.best_loss > 0 ? res.identity_loss / res.best_loss : 1 };
		} else
			mem[nm++] = (member){ (size_t)oo, NULL, x_o, n_o, true, "awq-no-scale", 1 };
	}
	/* gate/up of the MLP, of every expert and of shared experts after post_attention_layernorm; routers follow the scales. */
	n_grp = 0;
	for (size_t i = 0; i < r->n_tensors; i++)
		if (is_lin[i] && starts(r->tensors[i].name, P) && !strstr(r->tensors[i].name, "self_attn.")) {
			comp(r->tensors[i].name, c, sizeof c);
			if (!strcmp(c, "gate_proj") || !strcmp(c, "up_proj") || !strcmp(c, "w1") || !strcmp(c, "w3"))
				grp[n_grp++] = i;
		}
	if (n_grp) {
		if (ln2 < 0) {
			st = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					  "%s: AWQ: no '%spost_attention_layernorm.weight' to fold scales into", r->path, P);
			goto done;
		}
		snprintf(name, sizeof name, "%spost_attention_layernorm.output", P);
		if ((st = load_acts(acts, name, H, &x_post, &n_post, err)) || !(s_post = malloc(H * sizeof(float))) ||
		    (st = search(&L, grp, n_grp, x_post, n_post, o, s_post, &res, err))) {
			if (!st)
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		if ((st = fold_norm(&L, m, (size_t)ln2, s_post, H, err)))
			goto done;
		for (size_t k = 0; k < n_grp; k++)
			mem[nm++] = (member){ grp[k], s_post, x_post, n_post, true, "awq",
					      res.best_loss > 0 ? res.identity_loss / res.best_loss : 1 };
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			if (is_lin[i] || !starts(t->name, P) || t->ndim != 2 || t->shape[1] != H)
				continue;
			comp(t->name, c, sizeof c);
			if (strcmp(c, "gate") && strcmp(c, "router") && strcmp(c, "shared_expert_gate"))
				continue;
			float *w;
			if ((st = get(&L, i, &w, err)))
				goto done;
			muse_awq_scale_columns(w, t->shape[0], H, s_post);
			m->dense[i] = w;
			L.w[i] = NULL;
		}
	}
	/* Each down projection: scales fold into its up projection; starved experts fall back to RTN. */
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (!is_lin[i] || !starts(t->name, P) || strstr(t->name, "self_attn."))
			continue;
		comp(t->name, c, sizeof c);
		bool dp = !strcmp(c, "down_proj"), w2 = !strcmp(c, "w2");
		if (!dp && !w2)
			continue;
		uint64_t in = t->shape[1];
		size_t base = strlen(t->name) - 7 - strlen(c);
		snprintf(name, sizeof name, "%.*s.input", (int)(strlen(t->name) - 7), t->name);
		if ((st = load_acts(acts, name, in, &x_down[i], &m->tokens[i], err)))
			goto done;
		snprintf(name, sizeof name, "%.*s%s.weight", (int)base, t->name, dp ? "up_proj" : "w3");
		ptrdiff_t up = find(r, name);
		if (m->tokens[i] < o->min_tokens || up < 0) {
			mem[nm++] = (member){ i, NULL, NULL, 0, false, up < 0 ? "awq-no-scale" : "rtn-fallback", 1 };
			continue;
		}
		if (!(s_down[i] = malloc(in * sizeof(float)))) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		if ((st = search(&L, &i, 1, x_down[i], m->tokens[i], o, s_down[i], &res, err)) ||
		    (st = fold_prev(&L, m, (size_t)up, s_down[i], err)))
			goto done;
		mem[nm++] = (member){ i, s_down[i], x_down[i], m->tokens[i], true, "awq",
				      res.best_loss > 0 ? res.identity_loss / res.best_loss : 1 };
	}
	/* Any other linear of the layer: AWQ grid without a scale. */
	for (size_t i = 0; i < r->n_tensors; i++) {
		if (!is_lin[i] || !starts(r->tensors[i].name, P))
			continue;
		bool seen = false;
		for (size_t k = 0; k < nm && !seen; k++)
			seen = mem[k].idx == i;
		if (!seen)
			mem[nm++] = (member){ i, NULL, NULL, 0, false, "awq-no-scale", 1 };
	}
	/* Apply the column scales, clip on inputs divided by them, quantize. */
	for (size_t k = 0; k < nm; k++) {
		member *e = &mem[k];
		const muse_tensor *t = &r->tensors[e->idx];
		uint64_t N = t->shape[0], K = t->shape[1];
		float *w;
		if ((st = get(&L, e->idx, &w, err)))
			goto done;
		if (e->s)
			muse_awq_scale_columns(w, N, K, e->s);
		if (e->clip && e->x) {
			float *xs = malloc(e->n_tok * K * sizeof(float));
			if (!xs) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			for (uint64_t tk = 0; tk < e->n_tok; tk++)
				for (uint64_t j = 0; j < K; j++)
					xs[tk * K + j] = e->s ? e->x[tk * K + j] / e->s[j] : e->x[tk * K + j];
			st = muse_awq_search_clip(&o->wq, &o->ao, w, N, K, xs, e->n_tok, err);
			free(xs);
			if (st)
				goto done;
		}
		muse_wq_config c2 = o->wq;
		c2.style = MUSE_WQ_AWQ;
		if ((st = muse_rtn_quantize(&c2, w, N, K, &m->q[e->idx], err))) {
			muse_err_prefix(err, "%s: tensor '%s'", r->path, t->name);
			goto done;
		}
		m->method[e->idx] = e->method;
		if (!m->tokens[e->idx])
			m->tokens[e->idx] = e->n_tok;
		m->gain[e->idx] = e->gain;
	}
done:
	for (size_t k = 0; L.loaded && k < L.n_loaded; k++)
		free(L.w[L.loaded[k]]);
	for (size_t i = 0; s_down && i < r->n_tensors; i++) {
		free(s_down[i]);
		free(x_down[i]);
	}
	free(L.w);
	free(L.loaded);
	free(mem);
	free(grp);
	free(x_in), free(x_o), free(x_post), free(s_in), free(s_o), free(s_post), free(s_down), free(x_down);
	return st;
}

/* Every linear tensor got its quantized form (packed, or GGUF blocks with `gguf`); else names the first that did not. */
static muse_status all_quantized(const muse_reader *r, const bool *is_lin, const muse_awq_model *m, bool gguf,
				 muse_err *err)
{
	for (size_t i = 0; i < r->n_tensors; i++)
		if (is_lin[i] && !(gguf ? m->gq[i] != NULL : m->q[i].q != NULL))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': AWQ found no decoder layer for it",
					    r->path, r->tensors[i].name);
	return MUSE_OK;
}

muse_status muse_awq_model_run(muse_reader *r, muse_reader *acts, const bool *is_lin, const muse_awq_model_opts *o,
			       muse_awq_model **out, muse_err *err)
{
	*out = NULL;
	muse_awq_model *m = calloc(1, sizeof *m);
	size_t n = r->n_tensors;
	muse_status st = MUSE_OK;
	if (!m || !(m->q = calloc(n ? n : 1, sizeof(muse_qlinear))) || !(m->dense = calloc(n ? n : 1, sizeof(float *))) ||
	    !(m->method = calloc(n ? n : 1, sizeof(char *))) || !(m->tokens = calloc(n ? n : 1, sizeof(uint64_t))) ||
	    !(m->gain = calloc(n ? n : 1, sizeof(double)))) {
		muse_awq_model_free(m);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	m->n = n;
	/* Layers in order of their index: "<...>layers.<L>." prefixes. */
	for (unsigned long L = 0;; L++) {
		char key[64], P[MUSE_MAX_NAME + 1] = "";
		snprintf(key, sizeof key, "layers.%lu.", L);
		for (size_t i = 0; i < n && !P[0]; i++) {
			const char *h = strstr(r->tensors[i].name, key);
			if (h && (h == r->tensors[i].name || h[-1] == '.'))
				snprintf(P, sizeof P, "%.*s", (int)(h - r->tensors[i].name + strlen(key)), r->tensors[i].name);
		}
		if (!P[0])
			break;
		if ((st = run_layer(r, acts, is_lin, P, o, m, err)))
			goto fail;
	}
	if ((st = all_quantized(r, is_lin, m, false, err)))
		goto fail;
	*out = m;
	return MUSE_OK;
fail:
	muse_awq_model_free(m);
	return st;
}

/* ---- GGUF-named models (blk.L.*) quantized to a GGUF block type: AWQ with the type's own quantizer ---- */

typedef struct gq_ctx {
	muse_dtype type;
	bool needs_imp;
	const float *imp;   /* mean x^2 per input column of the linears at hand (NULL: no importance) */
	const float *cur_s; /* scales already in the weights being clipped (NULL: 1) */
} gq_ctx;

/* The importance of scaled weights W s: their inputs are x / s, so mean x^2 / s^2 (floored, as GPTQ's diag). */
static float *scaled_imp(const gq_ctx *g, uint64_t cols, uint64_t col0, const float *s)
{
	float *imp = malloc((cols ? cols : 1) * sizeof(float));
	if (!imp)
		return NULL;
	double mean = 0;
	for (uint64_t k = 0; k < cols; k++) {
		double v = g->imp ? g->imp[col0 + k] : 1.0;
		if (g->imp && s)
			v /= (double)s[col0 + k] * (double)s[col0 + k];
		imp[k] = (float)v;
		mean += v;
	}
	mean /= (double)(cols ? cols : 1);
	for (uint64_t k = 0; k < cols; k++)
		imp[k] = (float)fmax(imp[k], 1e-6 * mean);
	return imp;
}

static int gq_fake(void *ctx, float *w, uint64_t rows, uint64_t cols, uint64_t col0, const float *s)
{
	gq_ctx *g = ctx;
	uint64_t nb;
	if (!muse_dtype_nbytes(g->type, rows * cols, &nb))
		return 1;
	float *imp = g->imp || g->needs_imp ? scaled_imp(g, cols, col0, s ? s : g->cur_s) : NULL;
	void *q = malloc(nb ? (size_t)nb : 1);
	muse_err e = { 0 };
	int nt = omp_in_parallel() ? 1 : 0;
	int bad = !q || ((g->imp || g->needs_imp) && !imp) ||
		  muse_quantize_rows(g->type, w, q, (int64_t)rows, (int64_t)cols, imp, nt, &e) ||
		  muse_dequantize(g->type, q, w, (int64_t)(rows * cols), &e);
	free(q);
	free(imp);
	return bad;
}

/* Mean x^2 per column of x [n][in] (llama.cpp's imatrix statistic); NULL on no memory. */
static float *mean_sq(const float *x, uint64_t n, uint64_t in)
{
	double *acc = calloc(in ? in : 1, sizeof(double));
	float *out = malloc((in ? in : 1) * sizeof(float));
	if (!acc || !out) {
		free(acc);
		free(out);
		return NULL;
	}
	for (uint64_t t = 0; t < n; t++)
		for (uint64_t k = 0; k < in; k++)
			acc[k] += (double)x[t * in + k] * (double)x[t * in + k];
	for (uint64_t k = 0; k < in; k++)
		out[k] = (float)(n ? acc[k] / (double)n : 1.0);
	free(acc);
	return out;
}

/* One matrix of the layer: a 2-D linear or one expert of a stacked [E][N][K] tensor. */
typedef struct gmat {
	size_t idx;
	int64_t expert;  /* -1: the whole 2-D tensor */
	uint64_t N, K;
} gmat;

typedef struct gmember {
	gmat m;
	const float *s;   /* column scales (NULL: none) */
	const float *x;   /* unscaled inputs for clipping (NULL: no clip) */
	uint64_t n_tok;
	const float *imp; /* mean x^2 of its inputs (NULL: none) */
	bool clip;
	const char *method;
	double gain;
} gmember;

static float *mat_ptr(float *w, const gmat *g)
{
	return w + (g->expert < 0 ? 0 : (uint64_t)g->expert * g->N * g->K);
}

/* The GGUF layer's tensor "blk.L.<stem>.weight" (or another suffix), -1 when absent. */
static ptrdiff_t gfind(const muse_reader *r, const char *P, const char *stem, const char *suffix)
{
	char nm[MUSE_MAX_NAME + 64];
	snprintf(nm, sizeof nm, "%s%s.%s", P, stem, suffix);
	return find(r, nm);
}

/* Searches scales for the matrices ms[0..n) on x; s gets them. */
static muse_status gsearch(layer *L, const gmat *ms, size_t n, const float *x, uint64_t n_tok,
			   const muse_awq_opts *ao, const muse_wq_config *wq, float *s, muse_awq_result *res, muse_err *err)
{
	const float **ws = calloc(n ? n : 1, sizeof(float *));
	uint64_t *outs = calloc(n ? n : 1, sizeof(uint64_t));
	muse_status st = MUSE_OK;
	if (!ws || !outs) {
		st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (size_t k = 0; k < n; k++) {
		float *w;
		if ((st = get(L, ms[k].idx, &w, err)))
			goto done;
		ws[k] = mat_ptr(w, &ms[k]);
		outs[k] = ms[k].N;
	}
	muse_awq_group g = { n, ws, outs, ms[0].K, x, n_tok, NULL, NULL, NULL };
	st = muse_awq_search_scale(&g, wq, ao, s, res, err);
done:
	free(ws);
	free(outs);
	return st;
}

/* Divides output rows of matrix `prev` (and its bias slice) by s. */
static muse_status gfold_prev(layer *L, muse_awq_model *m, const gmat *prev, const float *s, muse_err *err)
{
	float *w;
	muse_status st = get(L, prev->idx, &w, err);
	if (st)
		return st;
	muse_awq_fold_linear(mat_ptr(w, prev), prev->N, prev->K, s);
	const char *nm = L->r->tensors[prev->idx].name;
	char bn[MUSE_MAX_NAME + 8];
	snprintf(bn, sizeof bn, "%.*s.bias", (int)(strlen(nm) - 7), nm);
	ptrdiff_t b = find(L->r, bn);
	if (b >= 0) {
		float *bw = m->dense[b];
		if (!bw) {
			if ((st = get(L, (size_t)b, &bw, err)))
				return st;
			m->dense[b] = bw;
			L->w[b] = NULL;
		}
		if (L->r->tensors[b].nelements < (uint64_t)(prev->expert < 0 ? 1 : prev->expert + 1) * prev->N)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: bias '%s' does not match its weight", L->r->path, bn);
		muse_awq_fold_norm(bw + (prev->expert < 0 ? 0 : (uint64_t)prev->expert * prev->N), prev->N, s);
	}
	return MUSE_OK;
}

static muse_status gfold_norm(layer *L, muse_awq_model *m, const char *P, const char *stem, const float *s, uint64_t in,
			      muse_err *err)
{
	ptrdiff_t ni = gfind(L->r, P, stem, "weight");
	if (ni < 0)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: AWQ: no '%s%s.weight' to fold scales into", L->r->path, P,
				    stem);
	muse_status st = fold_norm(L, m, (size_t)ni, s, in, err);
	if (st)
		return st;
	/* fold_norm looked for "<norm>.bias" already. */
	return MUSE_OK;
}

static muse_status gload_acts(muse_reader *acts, const char *P, const char *what, uint64_t in, float **x, uint64_t *n,
			      muse_err *err)
{
	char nm[MUSE_MAX_NAME + 64];
	snprintf(nm, sizeof nm, "%s%s", P, what);
	return load_acts(acts, nm, in, x, n, err);
}

/* The group of matrices that read the output of norm `norm` (inputs `act`): loads the inputs, their mean x^2
 * (the type quantizer's importance, set in gc) and the searched scales, folded into the norm. On success the
 * caller owns *x, *s and *imp; on failure nothing is left allocated. */
static muse_status gnorm_group(layer *L, muse_awq_model *m, muse_reader *acts, const char *P, const char *act,
			       const char *norm, const gmat *grp, size_t n_grp, const muse_awq_opts *ao,
			       const muse_wq_config *wq, gq_ctx *gc, muse_awq_result *res, float **x, uint64_t *n,
			       float **s, float **imp, muse_err *err)
{
	uint64_t H = grp[0].K;
	*s = *imp = NULL;
	muse_status st = gload_acts(acts, P, act, H, x, n, err);
	if (st)
		return st;
	if (!(*s = malloc(H * sizeof(float))) || !(*imp = mean_sq(*x, *n, H)))
		st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	else {
		gc->imp = *imp;
		if (!(st = gsearch(L, grp, n_grp, *x, *n, ao, wq, *s, res, err)))
			st = gfold_norm(L, m, P, norm, *s, H, err);
	}
	if (st) {
		free(*x);
		free(*s);
		free(*imp);
		*x = *s = *imp = NULL;
	}
	return st;
}

static muse_status run_layer_gguf(muse_reader *r, muse_reader *acts, const bool *is_lin, const char *P, muse_dtype type,
				  const muse_awq_opts *ao0, uint64_t min_tokens, muse_awq_model *m, muse_err *err)
{
	const muse_quant_traits *qt = muse_quant_traits_of(type);
	uint32_t blck = muse_dtype_info(type)->blck;
	gq_ctx gc = { type, qt && qt->needs_importance, NULL, NULL };
	muse_awq_opts ao = *ao0;
	ao.fakeq = gq_fake;
	ao.fakeq_ctx = &gc;
	/* The grid only sets the clipping and w_mean groups: one type block. */
	muse_wq_config wq = { 4, (int64_t)blck, false, MUSE_WQ_AWQ, 0, MUSE_DT_F32 };
	layer L = { r, calloc(r->n_tensors, sizeof(float *)), calloc(r->n_tensors, sizeof(size_t)), 0 };
	size_t cap = 16;
	for (size_t i = 0; i < r->n_tensors; i++)
		if (is_lin[i] && starts(r->tensors[i].name, P))
			cap += r->tensors[i].ndim == 3 ? (size_t)r->tensors[i].shape[0] : 1;
	gmember *mem = calloc(cap, sizeof *mem);
	gmat *grp = calloc(cap, sizeof *grp);
	float **own = calloc(4 * cap, sizeof(float *)); /* everything allocated per layer, freed at the end */
	size_t n_own = 0, nm = 0, n_grp = 0;
	muse_status st = MUSE_OK;
	muse_awq_result res;
	if (!L.w || !L.loaded || !mem || !grp || !own) {
		st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
#define OWN(p) (own[n_own++] = (p))
#define MAT(i, e) ((gmat){ (size_t)(i), (e), r->tensors[i].shape[r->tensors[i].ndim - 2], r->tensors[i].shape[r->tensors[i].ndim - 1] })
#define GAIN (res.best_loss > 0 ? res.identity_loss / res.best_loss : 1)
	ptrdiff_t q = gfind(r, P, "attn_q", "weight"), k = gfind(r, P, "attn_k", "weight"), v = gfind(r, P, "attn_v", "weight");
	ptrdiff_t o = gfind(r, P, "attn_output", "weight");
	ptrdiff_t lst[3] = { q, k, v };
	for (int j = 0; j < 3; j++)
		if (lst[j] >= 0 && is_lin[lst[j]] && r->tensors[lst[j]].ndim == 2)
			grp[n_grp++] = MAT(lst[j], -1);
	if (n_grp) {
		uint64_t n;
		float *x, *s, *imp;
		if ((st = gnorm_group(&L, m, acts, P, "attn_norm.output", "attn_norm", grp, n_grp, &ao, &wq, &gc, &res, &x,
				      &n, &s, &imp, err)))
			goto done;
		OWN(x), OWN(s), OWN(imp);
		for (size_t j = 0; j < n_grp; j++)
			mem[nm++] = (gmember){ grp[j], s, x, n, imp, (ptrdiff_t)grp[j].idx == v, "awq", GAIN };
	}
	if (o >= 0 && is_lin[o] && r->tensors[o].ndim == 2) {
		gmat om = MAT(o, -1);
		float *x, *s = NULL, *imp;
		uint64_t n;
		if ((st = gload_acts(acts, P, "attn_output.input", om.K, &x, &n, err)))
			goto done;
		OWN(x);
		if (!OWN(imp = mean_sq(x, n, om.K))) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		gc.imp = imp;
		/* Scales fold into attn_v when its outputs are attn_output's inputs (no GQA), as AutoAWQ. */
		if (v >= 0 && r->tensors[v].ndim == 2 && r->tensors[v].shape[0] == om.K) {
			gmat vm = MAT(v, -1);
			if (!OWN(s = malloc(om.K * sizeof(float)))) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			if ((st = gsearch(&L, &om, 1, x, n, &ao, &wq, s, &res, err)) || (st = gfold_prev(&L, m, &vm, s, err)))
				goto done;
			mem[nm++] = (gmember){ om, s, x, n, imp, true, "awq", GAIN };
		} else
			mem[nm++] = (gmember){ om, NULL, x, n, imp, true, "awq-no-scale", 1 };
	}
	/* gate/up of the MLP, of every expert and of the shared expert after ffn_norm; routers take the scales. */
	n_grp = 0;
	static const char *const up_stems[] = { "ffn_gate", "ffn_up", "ffn_gate_exps", "ffn_up_exps", "ffn_gate_shexp",
						"ffn_up_shexp" };
	for (size_t j = 0; j < sizeof up_stems / sizeof *up_stems; j++) {
		ptrdiff_t i = gfind(r, P, up_stems[j], "weight");
		if (i < 0 || !is_lin[i])
			continue;
		if (r->tensors[i].ndim == 3)
			for (uint64_t e = 0; e < r->tensors[i].shape[0]; e++)
				grp[n_grp++] = MAT(i, (int64_t)e);
		else
			grp[n_grp++] = MAT(i, -1);
	}
	if (n_grp) {
		uint64_t H = grp[0].K, n;
		float *x, *s, *imp;
		if ((st = gnorm_group(&L, m, acts, P, "ffn_norm.output", "ffn_norm", grp, n_grp, &ao, &wq, &gc, &res, &x, &n,
				      &s, &imp, err)))
			goto done;
		OWN(x), OWN(s), OWN(imp);
		for (size_t j = 0; j < n_grp; j++)
			mem[nm++] = (gmember){ grp[j], s, x, n, imp, true, "awq", GAIN };
		static const char *const routers[] = { "ffn_gate_inp", "ffn_gate_inp_shexp" };
		for (size_t j = 0; j < 2; j++) {
			ptrdiff_t i = gfind(r, P, routers[j], "weight");
			if (i < 0 || is_lin[i] || r->tensors[i].nelements % H)
				continue;
			float *w;
			if ((st = get(&L, (size_t)i, &w, err)))
				goto done;
			muse_awq_scale_columns(w, r->tensors[i].nelements / H, H, s);
			m->dense[i] = w;
			L.w[i] = NULL;
		}
	}
	/* Each down projection: scales fold into its up projection (per expert); starved experts fall back. */
	static const char *const downs[][2] = { { "ffn_down", "ffn_up" }, { "ffn_down_shexp", "ffn_up_shexp" },
						{ "ffn_down_exps", "ffn_up_exps" } };
	for (size_t j = 0; j < 3; j++) {
		ptrdiff_t i = gfind(r, P, downs[j][0], "weight"), up = gfind(r, P, downs[j][1], "weight");
		if (i < 0 || !is_lin[i])
			continue;
		bool stacked = r->tensors[i].ndim == 3;
		uint64_t E = stacked ? r->tensors[i].shape[0] : 1;
		for (uint64_t e = 0; e < E; e++) {
			gmat dm = MAT(i, stacked ? (int64_t)e : -1);
			char what[96];
			if (stacked)
				snprintf(what, sizeof what, "%s.input.%llu", downs[j][0], (unsigned long long)e);
			else
				snprintf(what, sizeof what, "%s.input", downs[j][0]);
			float *x, *s, *imp;
			uint64_t n;
			if ((st = gload_acts(acts, P, what, dm.K, &x, &n, err)))
				goto done;
			OWN(x);
			m->tokens[i] += n;
			if ((stacked && n < min_tokens) || up < 0 || r->tensors[up].ndim != r->tensors[i].ndim) {
				mem[nm++] = (gmember){ dm, NULL, NULL, 0, NULL, false, up < 0 ? "awq-no-scale" : "rtn-fallback", 1 };
				continue;
			}
			if (!OWN(s = malloc(dm.K * sizeof(float))) || !OWN(imp = mean_sq(x, n, dm.K))) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			gc.imp = imp;
			gmat um = MAT(up, stacked ? (int64_t)e : -1);
			if ((st = gsearch(&L, &dm, 1, x, n, &ao, &wq, s, &res, err)) || (st = gfold_prev(&L, m, &um, s, err)))
				goto done;
			mem[nm++] = (gmember){ dm, s, x, n, imp, true, "awq", GAIN };
		}
	}
	/* Any other linear of the layer: the type's quantizer without scales. */
	for (size_t i = 0; i < r->n_tensors; i++) {
		if (!is_lin[i] || !starts(r->tensors[i].name, P))
			continue;
		uint64_t E = r->tensors[i].ndim == 3 ? r->tensors[i].shape[0] : 1;
		for (uint64_t e = 0; e < E; e++) {
			bool seen = false;
			int64_t ex = r->tensors[i].ndim == 3 ? (int64_t)e : -1;
			for (size_t j = 0; j < nm && !seen; j++)
				seen = mem[j].m.idx == i && mem[j].m.expert == ex;
			if (!seen) {
				if (nm == cap) {
					st = muse_err_set(err, MUSE_ERR_CHECK, "internal: AWQ member table full");
					goto done;
				}
				mem[nm++] = (gmember){ MAT(i, ex), NULL, NULL, 0, NULL, false, "awq-no-scale", 1 };
			}
		}
	}
	/* Apply the column scales, clip with the type's quantizer on inputs divided by them, quantize. */
	for (size_t j = 0; j < nm; j++) {
		gmember *e = &mem[j];
		const muse_tensor *t = &r->tensors[e->m.idx];
		uint64_t N = e->m.N, K = e->m.K, E = t->ndim == 3 ? t->shape[0] : 1, nb;
		float *w;
		if ((st = get(&L, e->m.idx, &w, err)))
			goto done;
		if (!m->gq[e->m.idx]) {
			if (!muse_dtype_nbytes(type, E * N * K, &nb) || !(m->gq[e->m.idx] = malloc((size_t)nb))) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
				goto done;
			}
			m->gq_n[e->m.idx] = (size_t)nb;
		}
		float *wm = mat_ptr(w, &e->m);
		if (e->s)
			muse_awq_scale_columns(wm, N, K, e->s);
		gc.imp = e->imp;
		gc.cur_s = e->s;
		if (e->clip && e->x && K % blck == 0) {
			float *xs = malloc(e->n_tok * K * sizeof(float));
			if (!xs) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			for (uint64_t tk = 0; tk < e->n_tok; tk++)
				for (uint64_t c2 = 0; c2 < K; c2++)
					xs[tk * K + c2] = e->s ? e->x[tk * K + c2] / e->s[c2] : e->x[tk * K + c2];
			st = muse_awq_search_clip(&wq, &ao, wm, N, K, xs, e->n_tok, err);
			free(xs);
			if (st) {
				muse_err_prefix(err, "%s: tensor '%s'", r->path, t->name);
				goto done;
			}
		}
		float *imp = e->imp || gc.needs_imp ? scaled_imp(&gc, K, 0, e->s) : NULL;
		if ((e->imp || gc.needs_imp) && !imp) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		size_t per = m->gq_n[e->m.idx] / (size_t)E;
		st = muse_quantize_rows(type, wm, m->gq[e->m.idx] + (e->m.expert < 0 ? 0 : (size_t)e->m.expert * per),
					(int64_t)N, (int64_t)K, imp, 0, err);
		free(imp);
		if (st) {
			muse_err_prefix(err, "%s: tensor '%s'", r->path, t->name);
			goto done;
		}
		/* A stacked tensor's method: "awq", or "awq+rtn-fallback" once any expert fell back. */
		const char *prev = m->method[e->m.idx];
		if (!prev || !strcmp(prev, e->method))
			m->method[e->m.idx] = e->method;
		else if (!strcmp(prev, "rtn-fallback") || !strcmp(e->method, "rtn-fallback"))
			m->method[e->m.idx] = "awq+rtn-fallback";
		if (!m->tokens[e->m.idx])
			m->tokens[e->m.idx] = e->n_tok;
		if (e->gain > m->gain[e->m.idx])
			m->gain[e->m.idx] = e->gain;
	}
#undef OWN
#undef MAT
#undef GAIN
done:
	for (size_t j = 0; L.loaded && j < L.n_loaded; j++)
		free(L.w[L.loaded[j]]);
	for (size_t j = 0; own && j < n_own; j++)
		free(own[j]);
	free(own);
	free(L.w);
	free(L.loaded);
	free(mem);
	free(grp);
	return st;
}

muse_status muse_awq_gguf_run(muse_reader *r, muse_reader *acts, const bool *is_lin, muse_dtype type,
			      const muse_awq_opts *ao, uint64_t min_tokens, muse_awq_model **out, muse_err *err)
{
	*out = NULL;
	muse_awq_model *m = calloc(1, sizeof *m);
	size_t n = r->n_tensors ? r->n_tensors : 1;
	muse_status st = MUSE_OK;
	const muse_quant_traits *qt = muse_quant_traits_of(type);
	if (!qt || !qt->quantize_ref || !qt->dequantize) {
		free(m);
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "gguf:%s: muse cannot quantize and decode this type",
				    muse_dtype_name(type));
	}
	if (!m || !(m->q = calloc(n, sizeof(muse_qlinear))) || !(m->dense = calloc(n, sizeof(float *))) ||
	    !(m->method = calloc(n, sizeof(char *))) || !(m->tokens = calloc(n, sizeof(uint64_t))) ||
	    !(m->gain = calloc(n, sizeof(double))) || !(m->gq = calloc(n, sizeof(uint8_t *))) ||
	    !(m->gq_n = calloc(n, sizeof(size_t)))) {
		muse_awq_model_free(m);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	m->n = r->n_tensors;
	for (unsigned long li = 0;; li++) {
		char P[64];
		snprintf(P, sizeof P, "blk.%lu.", li);
		bool any = false;
		for (size_t i = 0; i < r->n_tensors && !any; i++)
			any = starts(r->tensors[i].name, P);
		if (!any)
			break;
		if ((st = run_layer_gguf(r, acts, is_lin, P, type, ao, min_tokens, m, err)))
			goto fail;
	}
	if ((st = all_quantized(r, is_lin, m, true, err)))
		goto fail;
	*out = m;
	return MUSE_OK;
fail:
	muse_awq_model_free(m);
	return st;
}

const uint8_t *muse_awq_model_gguf(const muse_awq_model *m, size_t i, size_t *nbytes)
{
	if (!m->gq || i >= m->n || !m->gq[i])
		return NULL;
	*nbytes = m->gq_n[i];
	return m->gq[i];
}
