/* vocab.c: the muse_vocab structure: lifecycle and the small builders every reading uses. */
#include <stdlib.h>
#include <string.h>

#include "vocab_impl.h"

#define VOCAB_MAX (1u << 24)

muse_vocab *muse_vocab_create(void)
{
	muse_vocab *v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	v->add_space_prefix = v->lowercase = v->strip_accents = -1;
	for (int i = 0; i < MUSE_SPECIAL_N; i++) {
		v->special[i] = -1;
		v->add[i] = -1;
	}
	v->unk = v->bos = v->eos = -1;
	return v;
}

void muse_vocab_free(muse_vocab *v)
{
	if (!v)
		return;
	free(v->source);
	for (size_t i = 0; v->text && i < v->n; i++)
		free(v->text[i]);
	free(v->text);
	free(v->len);
	free(v->scores);
	free(v->types);
	for (size_t i = 0; i < v->n_merges; i++) {
		free(v->merges[i].a);
		free(v->merges[i].b);
	}
	free(v->merges);
	free(v->pre);
	for (size_t i = 0; i < v->n_templates; i++) {
		free(v->templates[i].name);
		free(v->templates[i].text);
	}
	free(v->templates);
	for (size_t i = 0; i < v->n_template_names; i++)
		free(v->template_names[i]);
	free(v->template_names);
	free(v->unk_text);
	for (size_t i = 0; i < v->n_added; i++)
		free(v->added[i].text);
	free(v->added);
	for (size_t i = 0; i < v->n_norm; i++) {
		free(v->norm[i].text);
		free(v->norm[i].pattern);
	}
	free(v->norm);
	for (size_t i = 0; i < v->n_pre_steps; i++)
		free(v->pre_steps[i].pattern);
	free(v->pre_steps);
	free(v->bos_text);
	free(v->eos_text);
	free(v);
}

muse_status muse_vocab_alloc(muse_vocab *v, size_t n, bool with_scores, bool with_types, muse_err *err)
{
	if (n == 0 || n > VOCAB_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: vocabulary size %zu outside 1..%u", v->source, n, VOCAB_MAX);
	v->n = n;
	v->text = calloc(n, sizeof *v->text);
	v->len = calloc(n, sizeof *v->len);
	v->scores = with_scores ? calloc(n, sizeof *v->scores) : NULL;
	v->types = with_types ? calloc(n, sizeof *v->types) : NULL;
	if (!v->text || !v->len || (with_scores && !v->scores) || (with_types && !v->types))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return MUSE_OK;
}

char *muse_vocab_copy(const char *s, size_t len)
{
	char *c = malloc(len + 1);
	if (c) {
		memcpy(c, s, len);
		c[len] = '\0';
	}
	return c;
}

muse_status muse_vocab_set_text(muse_vocab *v, size_t id, const char *s, size_t len, muse_err *err)
{
	char *c = muse_vocab_copy(s, len);
	if (!c)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	free(v->text[id]);
	v->text[id] = c;
	v->len[id] = len;
	return MUSE_OK;
}

muse_status muse_vocab_add_merge(muse_vocab *v, const char *a, size_t la, const char *b, size_t lb, muse_err *err)
{
	/* Grows by doubling: the count is not known up front for every source. */
	if ((v->n_merges & (v->n_merges - 1)) == 0) {
		size_t nc = v->n_merges ? 2 * v->n_merges : 1;
		muse_vocab_merge *nm = realloc(v->merges, nc * sizeof *nm);
		if (!nm)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		v->merges = nm;
	}
	muse_vocab_merge *m = &v->merges[v->n_merges];
	m->a = muse_vocab_copy(a, la);
	m->b = b ? muse_vocab_copy(b, lb) : NULL;
	m->la = la;
	m->lb = b ? lb : 0;
	if (!m->a || (b && !m->b)) {
		free(m->a);
		free(m->b);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	v->n_merges++;
	return MUSE_OK;
}

muse_status muse_vocab_add_added(muse_vocab *v, const char *text, size_t len, int32_t id, bool special, muse_err *err)
{
	muse_vocab_added *na = realloc(v->added, (v->n_added + 1) * sizeof *na);
	if (!na)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	v->added = na;
	muse_vocab_added *a = &v->added[v->n_added];
	memset(a, 0, sizeof *a);
	if (!(a->text = muse_vocab_copy(text, len)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	a->len = len;
	a->id = id;
	a->special = special;
	v->n_added++;
	return MUSE_OK;
}

muse_status muse_vocab_added_from_types(muse_vocab *v, muse_err *err)
{
	muse_status s;
	for (size_t i = 0; i < v->n; i++) {
		int ty = v->types ? v->types[i] : MUSE_TOKEN_NORMAL;
		if ((ty == MUSE_TOKEN_UNKNOWN || ty == MUSE_TOKEN_CONTROL || ty == MUSE_TOKEN_USER_DEFINED) && v->len[i] &&
		    (s = muse_vocab_add_added(v, v->text[i], v->len[i], (int32_t)i, ty != MUSE_TOKEN_USER_DEFINED, err)))
			return s;
	}
	return MUSE_OK;
}

void muse_vocab_set_post(muse_vocab *v, bool add_bos, bool add_eos)
{
	if (add_bos && v->bos >= 0 && (size_t)v->bos < v->n)
		v->prefix[v->n_prefix++] = v->bos;
	if (add_eos && v->eos >= 0 && (size_t)v->eos < v->n)
		v->suffix[v->n_suffix++] = v->eos;
}
