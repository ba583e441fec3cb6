/* awq_model.c: AWQ over a whole llama-family checkpoint: groups of linears sharing an input, scale search, folding into norms and preceding linears (routers and biases follow), clipping, AWQ grid; experts below a token threshold fall back to RTN. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/reader.h"
#include "awq.h"

struct muse_awq_model {
	size_t n;
	muse_qlinear *q;
	float **dense;
	const char **method;
	uint64_t *tokens;
	double *gain;
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
	}
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
	if ((s = muse_dtype_convert(MUSE_DT_F32, f, t->dtype, src, (size_t)t->nelements, err)))
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
	for (size_t i = 0; i < n; i++)
		if (is_lin[i] && !m->q[i].q) {
			st = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': AWQ found no decoder layer for it",
					  r->path, r->tensors[i].name);
			goto fail;
		}
	*out = m;
	return MUSE_OK;
fail:
	muse_awq_model_free(m);
	return st;
}
