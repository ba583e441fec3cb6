/* vocab_gguf.c: GGUF tokenizer.* keys both ways: llama.cpp's reading of them into a muse_vocab, and the keys convert writes from one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/utf8.h"
#include "vocab_impl.h"

#define META_SOURCE "GGUF tokenizer metadata"

static const muse_kv *meta_arr(const muse_meta *meta, const char *key, muse_kv_type want)
{
	const muse_kv *kv = muse_meta_find(meta, key);
	return kv && kv->type == MUSE_KV_ARRAY && kv->arr_type == want ? kv : NULL;
}

static int meta_bool(const muse_meta *meta, const char *key, int def)
{
	const muse_kv *kv = muse_meta_find(meta, key);
	return kv && kv->type == MUSE_KV_BOOL ? kv->v.b : def;
}

static int32_t meta_id(const muse_meta *meta, const char *key, int32_t def, size_t n)
{
	uint64_t v;
	if (!muse_meta_get_u64(meta, key, &v))
		return def;
	return v < n ? (int32_t)v : -1;
}

/* The merges as llama.cpp splits them: at the first ' ' after the first byte (one with no such space keeps its rank, as b NULL). */
static muse_status read_merges(muse_vocab *v, const muse_kv *mg, muse_err *err)
{
	const muse_str *ms = mg->arr;
	muse_status s;
	for (size_t i = 0; i < mg->n; i++) {
		const char *w = ms[i].ptr;
		size_t wl = (size_t)ms[i].len;
		const char *sp = wl > 1 ? memchr(w + 1, ' ', wl - 1) : NULL;
		s = sp ? muse_vocab_add_merge(v, w, (size_t)(sp - w), sp + 1, wl - (size_t)(sp - w) - 1, err)
		       : muse_vocab_add_merge(v, w, wl, NULL, 0, err);
		if (s)
			return s;
	}
	return MUSE_OK;
}

muse_status muse_vocab_from_meta(const muse_meta *meta, const char *path, muse_vocab **out, muse_err *err)
{
	muse_status s;
	*out = NULL;
	const char *src = path ? path : META_SOURCE;
	const char *model = muse_meta_get_str(meta, "tokenizer.ggml.model");
	if (!model)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no tokenizer.ggml.model (the file carries no vocabulary)", src);
	bool gpt2 = !strcmp(model, "gpt2"), spm = !strcmp(model, "llama");
	if (!gpt2 && !spm)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.60s' is not supported (gpt2, llama)",
				    src, model);
	const muse_kv *toks = meta_arr(meta, "tokenizer.ggml.tokens", MUSE_KV_STRING);
	if (!toks)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not a string array", src);
	const muse_kv *types = muse_meta_find(meta, "tokenizer.ggml.token_type");
	const muse_kv *scores = muse_meta_find(meta, "tokenizer.ggml.scores");
	if (types && (types->type != MUSE_KV_ARRAY || types->arr_type != MUSE_KV_I32 || types->n != toks->n))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an int32 array of %llu", src,
				    (unsigned long long)toks->n);
	if (scores && (scores->type != MUSE_KV_ARRAY || scores->arr_type != MUSE_KV_F32 || scores->n != toks->n))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.scores is not a float32 array of %llu", src,
				    (unsigned long long)toks->n);
	const muse_pre_rule *rule = NULL;
	if (gpt2) {
		const char *pre = muse_meta_get_str(meta, "tokenizer.ggml.pre");
		if (!(rule = muse_vocab_pre_rule(pre)))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%.60s' is not supported", src,
					    pre ? pre : "(missing)");
	}
	muse_vocab *v = muse_vocab_create();
	if (!v || !(v->source = strdup(src))) {
		muse_vocab_free(v);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	v->model = gpt2 ? MUSE_VOCAB_BPE : MUSE_VOCAB_SPM;
	if ((s = muse_vocab_alloc(v, (size_t)toks->n, spm, types != NULL, err)))
		goto fail;
	const muse_str *st = toks->arr;
	for (size_t i = 0; i < v->n; i++) {
		if (!muse_utf8_valid(st[i].ptr, (size_t)st[i].len) || memchr(st[i].ptr, 0, (size_t)st[i].len)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] is not valid UTF-8", src, i);
			goto fail;
		}
		if ((s = muse_vocab_set_text(v, i, st[i].ptr, (size_t)st[i].len, err)))
			goto fail;
	}
	if (types)
		memcpy(v->types, types->arr, v->n * sizeof *v->types);
	if ((s = muse_vocab_added_from_types(v, err)))
		goto fail;
	v->llama_merges = true;
	if (spm) {
		if (scores)
			memcpy(v->scores, scores->arr, v->n * sizeof *v->scores);
		/* llama.cpp's SPM defaults */
		v->bos = meta_id(meta, "tokenizer.ggml.bos_token_id", 1, v->n);
		v->eos = meta_id(meta, "tokenizer.ggml.eos_token_id", 2, v->n);
		v->unk = meta_id(meta, "tokenizer.ggml.unknown_token_id", 0, v->n);
		v->spm_space_prefix = meta_bool(meta, "tokenizer.ggml.add_space_prefix", 1);
		muse_vocab_set_post(v, meta_bool(meta, "tokenizer.ggml.add_bos_token", 1),
				    meta_bool(meta, "tokenizer.ggml.add_eos_token", 0));
	} else {
		const muse_kv *mg = meta_arr(meta, "tokenizer.ggml.merges", MUSE_KV_STRING);
		if (!mg) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.merges missing or not a string array", src);
			goto fail;
		}
		if ((s = read_merges(v, mg, err)) || (s = muse_vocab_pre_from_rule(v, rule, err)))
			goto fail;
		v->ignore_merges = rule->ignore_merges;
		v->bos = meta_id(meta, "tokenizer.ggml.bos_token_id", -1, v->n);
		v->eos = meta_id(meta, "tokenizer.ggml.eos_token_id", -1, v->n);
		muse_vocab_set_post(v, meta_bool(meta, "tokenizer.ggml.add_bos_token", rule->add_bos),
				    meta_bool(meta, "tokenizer.ggml.add_eos_token", 0));
	}
	*out = v;
	return MUSE_OK;
fail:
	muse_vocab_free(v);
	return s;
}

/* gguf.SpecialVocab's keys per kind; cls has none (the converter logs and skips it). */
static const char *const special_key[MUSE_SPECIAL_N] = {
	"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
	"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", NULL, "tokenizer.ggml.mask_token_id",
	"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
};
static const char *const add_key[MUSE_SPECIAL_N] = {
	[MUSE_SPECIAL_BOS] = "tokenizer.ggml.add_bos_token",
	[MUSE_SPECIAL_EOS] = "tokenizer.ggml.add_eos_token",
	[MUSE_SPECIAL_SEP] = "tokenizer.ggml.add_sep_token",
};

/* The merges spelled "a b" as tokenizer.ggml.merges holds them. */
static muse_status write_merges(const muse_vocab *v, muse_meta *meta, muse_err *err)
{
	muse_status s = MUSE_OK;
	char **m = calloc(v->n_merges, sizeof *m);
	if (!m)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < v->n_merges && !s; i++) {
		const muse_vocab_merge *g = &v->merges[i];
		if (!(m[i] = malloc(g->la + g->lb + 2))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			break;
		}
		memcpy(m[i], g->a, g->la);
		size_t k = g->la;
		if (g->b) {
			m[i][k++] = ' ';
			memcpy(m[i] + k, g->b, g->lb);
			k += g->lb;
		}
		m[i][k] = '\0';
	}
	if (!s && muse_meta_set_str_arr(meta, "tokenizer.ggml.merges", (const char *const *)m, v->n_merges))
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < v->n_merges; i++)
		free(m[i]);
	free(m);
	return s;
}

#define NOMEM(x) do { if (x) return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); } while (0)

muse_status muse_vocab_to_meta(const muse_vocab *v, muse_meta *meta, muse_err *err)
{
	muse_status s;
	if (v->add_space_prefix >= 0)
		NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.add_space_prefix", v->add_space_prefix));
	NOMEM(muse_meta_set_str(meta, "tokenizer.ggml.model", v->model == MUSE_VOCAB_SPM ? "llama" : "gpt2"));
	NOMEM(muse_meta_set_str(meta, "tokenizer.ggml.pre", v->pre ? v->pre : "default"));
	NOMEM(muse_meta_set_str_arr(meta, "tokenizer.ggml.tokens", (const char *const *)v->text, v->n));
	if (v->scores)
		NOMEM(muse_meta_set_arr(meta, "tokenizer.ggml.scores", MUSE_KV_F32, v->scores, v->n));
	NOMEM(muse_meta_set_arr(meta, "tokenizer.ggml.token_type", MUSE_KV_I32, v->types, v->n));
	if (v->n_merges && (s = write_merges(v, meta, err)))
		return s;
	for (int i = 0; i < v->n_special_order; i++) {
		int t = v->special_order[i];
		if (special_key[t])
			NOMEM(muse_meta_set_u32(meta, special_key[t], (uint32_t)v->special[t]));
	}
	for (int i = 0; i < v->n_add_order; i++) {
		int t = v->add_order[i];
		if (add_key[t])
			NOMEM(muse_meta_set_bool(meta, add_key[t], v->add[t] == 1));
	}
	if (v->lowercase >= 0)
		NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.normalizer.lowercase", v->lowercase));
	if (v->strip_accents >= 0)
		NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.normalizer.strip_accents", v->strip_accents));
	for (size_t i = 0; i < v->n_templates; i++) {
		char key[256] = "tokenizer.chat_template";
		if (v->templates[i].name)
			snprintf(key, sizeof key, "tokenizer.chat_template.%s", v->templates[i].name);
		NOMEM(muse_meta_set_strn(meta, key, v->templates[i].text, v->templates[i].text_len));
	}
	if (v->template_names)
		NOMEM(muse_meta_set_str_arr(meta, "tokenizer.chat_templates", (const char *const *)v->template_names,
					    v->n_template_names));
	return MUSE_OK;
}

muse_status muse_vocab_hf_to_meta(const char *dir, uint64_t vocab_size, muse_meta *meta, FILE *report, muse_err *err)
{
	muse_vocab *v = NULL;
	muse_status s = muse_vocab_convert_hf(dir, vocab_size, report, &v, err);
	if (!s)
		s = muse_vocab_to_meta(v, meta, err);
	muse_vocab_free(v);
	return s;
}
