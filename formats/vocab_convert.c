/* vocab_convert.c: HF tokenizer files read as convert_hf_to_gguf.py reads them (LlamaModel.set_vocab: byte-level BPE, SentencePiece tokenizer.model, SentencePiece-style tokenizer.json; gguf.SpecialVocab; chat templates), into the GGUF part of a muse_vocab. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/strmap.h"
#include "vocab_impl.h"
#include "vocab_spm.h"

/* convert_hf_to_gguf.py's does_token_look_special. */
static int looks_special(const char *t)
{
	size_t n = strlen(t);
	if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]"))
		return 1;
	if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>"))
		return 1;
	/* "<｜" ... "｜>" with U+FF5C (EF BD 9C) */
	if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>"))
		return 1;
	return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* Replaces U+2581 (▁) with ' ' in place (user-defined tokens are stored pre-normalized). */
static void unspace(char *s)
{
	char *w = s;
	for (const char *r = s; *r;) {
		if (!strncmp(r, "\xe2\x96\x81", 3)) {
			*w++ = ' ';
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

/* A merge pair part with ' ' written as U+0120 (what gguf-py does for the list form of merges). */
static char *encode_part(const char *p, char *w)
{
	for (; *p; p++) {
		if (*p == ' ') {
			*w++ = (char)0xc4;
			*w++ = (char)0xa0;
		} else {
			*w++ = *p;
		}
	}
	return w;
}

/* Reads a whole small text file (chat_template.jinja) into a fresh string; NULL when absent. */
static char *slurp(const char *dir, const char *name, uint64_t *len, muse_status *s, muse_err *err)
{
	char path[4096];
	*s = MUSE_OK;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			if (cap >= (64u << 20)) {
				*s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: larger than 64 MiB", path);
				break;
			}
			cap = cap ? cap * 2 : 4096;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				*s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				break;
			}
			buf = nb;
		}
		size_t k = fread(buf + n, 1, cap - n, f);
		n += k;
		if (k == 0) {
			if (ferror(f))
				*s = muse_err_set(err, MUSE_ERR_IO, "%s: read error", path);
			break;
		}
	}
	fclose(f);
	if (*s) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* A token id as an integer or an integral real (files read with JSON_DECODE_INT_AS_REAL); -1 otherwise. */
static int64_t json_id(json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v) >= 0 ? json_integer_value(v) : -2;
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d >= 0 && d < 9007199254740992.0 && d == (double)(int64_t)d)
			return (int64_t)d;
		if (d < 0 && d == (double)(int64_t)d)
			return -2;
	}
	return -1;
}

/* Python truthiness of a JSON value (None, "", {}, [], 0, false are false). */
static int truthy(json_t *v)
{
	if (!v || json_is_null(v) || json_is_false(v))
		return 0;
	if (json_is_string(v))
		return json_string_length(v) > 0;
	if (json_is_object(v))
		return json_object_size(v) > 0;
	if (json_is_array(v))
		return json_array_size(v) > 0;
	if (json_is_integer(v))
		return json_integer_value(v) != 0;
	if (json_is_real(v))
		return json_real_value(v) != 0;
	return 1;
}

/* Python ==: a string against a JSON value (only an equal string compares equal). */
static int str_eq(const char *s, json_t *v)
{
	return s && json_is_string(v) && !strcmp(s, json_string_value(v));
}

/* tokenizer_config's "<kind>_token" and config.json's "<kind>_token_id" spellings of the MUSE_SPECIAL_* kinds. */
static const char *const sv_name[MUSE_SPECIAL_N] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot", "eom" };

typedef struct special_vocab {
	int types[MUSE_SPECIAL_N], n_types;   /* special_token_types, in order (eot/eom appended on demand) */
	int64_t id[MUSE_SPECIAL_N];           /* -1: unset */
	int id_order[MUSE_SPECIAL_N], n_id;   /* dict insertion order */
	int add[MUSE_SPECIAL_N];              /* -1: unset */
	int add_order[MUSE_SPECIAL_N], n_add;
	int lowercase, strip_accents;         /* -1: unset */
	json_t *tc_val[MUSE_SPECIAL_N];       /* tokenizer_config "<kind>_token" as the converter sees it (owned refs) */
} special_vocab;

static void sv_init(special_vocab *sv)
{
	memset(sv, 0, sizeof *sv);
	for (int i = 0; i < MUSE_SPECIAL_N; i++) {
		sv->id[i] = -1;
		sv->add[i] = -1;
	}
	for (int i = 0; i <= MUSE_SPECIAL_MASK; i++)
		sv->types[sv->n_types++] = i;
	sv->lowercase = sv->strip_accents = -1;
}

static void sv_free(special_vocab *sv)
{
	for (int i = 0; i < MUSE_SPECIAL_N; i++)
		json_decref(sv->tc_val[i]);
}

static int sv_has_type(const special_vocab *sv, int t)
{
	for (int i = 0; i < sv->n_types; i++)
		if (sv->types[i] == t)
			return 1;
	return 0;
}

static void sv_set_tc(special_vocab *sv, int t, json_t *v)
{
	json_incref(v);
	json_decref(sv->tc_val[t]);
	sv->tc_val[t] = v;
}

static void sv_add(special_vocab *sv, int t, int v, int override)
{
	if (sv->add[t] < 0)
		sv->add_order[sv->n_add++] = t;
	else if (!override)
		return;
	sv->add[t] = v;
}

/* _set_special_token: the first valid id per type wins; negative ids are an error, out-of-range ones skipped. */
static muse_status sv_set_id(special_vocab *sv, int t, json_t *v, uint64_t n_vocab, const char *file, muse_err *err)
{
	int64_t id = json_id(v);
	if (id == -2)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: invalid value for special token type %s: negative id", file,
				    sv_name[t]);
	if (id < 0 || (uint64_t)id >= n_vocab || sv->id[t] >= 0)
		return MUSE_OK;
	sv->id[t] = id;
	sv->id_order[sv->n_id++] = t;
	return MUSE_OK;
}

static void sv_parse_normalizer(special_vocab *sv, json_t *n, int depth)
{
	if (!json_is_object(n) || depth > 8)
		return;
	if (muse_vocab_hf_is_type(n, "Lowercase")) {
		sv->lowercase = 1;
	} else if (muse_vocab_hf_is_type(n, "StripAccents")) {
		sv->strip_accents = 1;
	} else if (muse_vocab_hf_is_type(n, "BertNormalizer")) {
		json_t *l = json_object_get(n, "lowercase"), *s = json_object_get(n, "strip_accents");
		if (l)
			sv->lowercase = truthy(l);
		if (s)
			sv->strip_accents = truthy(s);
	} else if (muse_vocab_hf_is_type(n, "Sequence")) {
		json_t *arr = json_object_get(n, "normalizers");
		for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++)
			sv_parse_normalizer(sv, json_array_get(arr, i), depth + 1);
	}
}

/* The SpecialToken id of a template item, or NULL. */
static const char *tmpl_special(json_t *item)
{
	json_t *id = json_object_get(json_object_get(item, "SpecialToken"), "id");
	return json_is_string(id) && json_string_length(id) ? json_string_value(id) : NULL;
}

static const char *tmpl_seq(json_t *item)
{
	json_t *id = json_object_get(json_object_get(item, "Sequence"), "id");
	return json_is_string(id) ? json_string_value(id) : NULL;
}

/* SpecialVocab._try_load_from_tokenizer_json's post-processor reading (add_bos/eos/sep, eot/eom, cls/sep). */
static void sv_post_processor(special_vocab *sv, json_t *pp, int have_tc)
{
	json_t *procs = json_object_get(pp, "processors");
	size_t n = json_is_array(procs) ? json_array_size(procs) : 1;
	json_t **v = sv->tc_val;
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_is_array(procs) ? json_array_get(procs, i) : pp;
		if (muse_vocab_hf_is_type(p, "ByteLevel")) {
			sv_add(sv, MUSE_SPECIAL_BOS, 0, 0);
			sv_add(sv, MUSE_SPECIAL_EOS, 0, 0);
		} else if (muse_vocab_hf_is_type(p, "RobertaProcessing")) {
			sv_add(sv, MUSE_SPECIAL_BOS, 1, 1);
			sv_add(sv, MUSE_SPECIAL_EOS, 1, 1);
			sv_add(sv, MUSE_SPECIAL_SEP, 1, 1);
			json_t *cls = json_array_get(json_object_get(p, "cls"), 0);
			json_t *sep = json_array_get(json_object_get(p, "sep"), 0);
			if (!truthy(v[MUSE_SPECIAL_CLS]) && have_tc)
				sv_set_tc(sv, MUSE_SPECIAL_CLS, json_object_get(p, "cls") ? cls : v[MUSE_SPECIAL_BOS]);
			if (!truthy(v[MUSE_SPECIAL_SEP]) && have_tc)
				sv_set_tc(sv, MUSE_SPECIAL_SEP, json_object_get(p, "sep") ? sep : v[MUSE_SPECIAL_EOS]);
		} else if (muse_vocab_hf_is_type(p, "TemplateProcessing")) {
			json_t *single = json_object_get(p, "single"), *pair = json_object_get(p, "pair");
			size_t ns = json_is_array(single) ? json_array_size(single) : 0;
			const char *first = NULL, *last = NULL;
			if (ns > 1) {
				if ((first = tmpl_special(json_array_get(single, 0)))) {
					json_t *fj = json_string(first);
					if (have_tc && !str_eq(first, v[MUSE_SPECIAL_BOS]) && !str_eq(first, v[MUSE_SPECIAL_CLS])) {
						if (!truthy(v[MUSE_SPECIAL_BOS]))
							sv_set_tc(sv, MUSE_SPECIAL_BOS, fj);
						if (!truthy(v[MUSE_SPECIAL_CLS]))
							sv_set_tc(sv, MUSE_SPECIAL_CLS, fj);
					}
					json_decref(fj);
					/* Without a tokenizer_config the converter compares against its own local copy, set to first. */
					sv_add(sv, MUSE_SPECIAL_BOS,
					       !have_tc || str_eq(first, v[MUSE_SPECIAL_BOS]) || str_eq(first, v[MUSE_SPECIAL_CLS]), 1);
				}
				if ((last = tmpl_special(json_array_get(single, ns - 1)))) {
					json_t *lj = json_string(last);
					if (have_tc && !str_eq(last, v[MUSE_SPECIAL_EOS])) {
						if (!sv_has_type(sv, MUSE_SPECIAL_EOT)) {
							sv->types[sv->n_types++] = MUSE_SPECIAL_EOT;
							sv_set_tc(sv, MUSE_SPECIAL_EOT, v[MUSE_SPECIAL_EOS]);
						} else if (!sv_has_type(sv, MUSE_SPECIAL_EOM)) {
							sv->types[sv->n_types++] = MUSE_SPECIAL_EOM;
							sv_set_tc(sv, MUSE_SPECIAL_EOM, v[MUSE_SPECIAL_EOS]);
						}
						sv_set_tc(sv, MUSE_SPECIAL_EOS, lj);
					}
					json_decref(lj);
					sv_add(sv, MUSE_SPECIAL_EOS, !have_tc || str_eq(last, v[MUSE_SPECIAL_EOS]), 1);
				}
			}
			size_t np = json_is_array(pair) ? json_array_size(pair) : 0;
			if (np) {
				size_t start = first && str_eq(first, json_object_get(json_object_get(json_array_get(pair, 0),
										      "SpecialToken"), "id")) ? 1 : 0;
				size_t stop = last && str_eq(last, json_object_get(json_object_get(json_array_get(pair, np - 1),
										     "SpecialToken"), "id")) ? np - 1 : np;
				if (stop > start) {
					const char *a = tmpl_seq(json_array_get(pair, start));
					const char *b = tmpl_seq(json_array_get(pair, stop - 1));
					/* A [sep] [eos] B */
					if (a && b && !strcmp(a, "A") && !strcmp(b, "B") && stop - start > 2) {
						int add_sep = 0;
						const char *e = tmpl_special(json_array_get(pair, start + 1));
						if (e && (str_eq(e, v[MUSE_SPECIAL_SEP]) || str_eq(e, v[MUSE_SPECIAL_EOS])) && !last)
							add_sep = 1;
						if (stop - start - 2 == 2) {
							const char *e2 = tmpl_special(json_array_get(pair, start + 2));
							if (e2 && (str_eq(e2, v[MUSE_SPECIAL_SEP]) || str_eq(e2, v[MUSE_SPECIAL_EOS])))
								add_sep = 1;
						}
						sv_add(sv, MUSE_SPECIAL_SEP, add_sep, 1);
						if (add_sep && !truthy(v[MUSE_SPECIAL_SEP]) && have_tc)
							sv_set_tc(sv, MUSE_SPECIAL_SEP, v[MUSE_SPECIAL_EOS]);
					}
				}
			}
		}
	}
}

/*
 * gguf.SpecialVocab(dir, load_merges=False, n_vocab): reads tokenizer.json
 * (tok, may be NULL), tokenizer_config.json (tcfg, may be NULL) and
 * config.json (cfg, may be NULL). Merges are handled by the caller.
 */
static muse_status sv_load(special_vocab *sv, json_t *tok, json_t *tcfg, json_t *cfg, uint64_t n_vocab,
			   const char *dir, muse_err *err)
{
	char file[4096];
	muse_status s;
	int have_tok = truthy(tok), have_tc = truthy(tcfg);
	json_t *added = have_tok ? json_object_get(tok, "added_tokens") : NULL;
	if (have_tok && json_object_get(tok, "normalizer"))
		sv_parse_normalizer(sv, json_object_get(tok, "normalizer"), 0);
	for (int t = 0; t <= MUSE_SPECIAL_MASK && tcfg; t++) {
		char k[32];
		snprintf(k, sizeof k, "%s_token", sv_name[t]);
		sv_set_tc(sv, t, json_object_get(tcfg, k));
	}
	if (have_tok) {
		json_t **v = sv->tc_val;
		if (!truthy(v[MUSE_SPECIAL_BOS]) && truthy(v[MUSE_SPECIAL_CLS]) && have_tc)
			sv_set_tc(sv, MUSE_SPECIAL_BOS, v[MUSE_SPECIAL_CLS]);
		if (!truthy(v[MUSE_SPECIAL_EOS]) && truthy(v[MUSE_SPECIAL_SEP]) && have_tc)
			sv_set_tc(sv, MUSE_SPECIAL_EOS, v[MUSE_SPECIAL_SEP]);
		json_t *pp = json_object_get(tok, "post_processor");
		if (truthy(pp))
			sv_post_processor(sv, pp, have_tc);
	}
	snprintf(file, sizeof file, "%s/tokenizer_config.json", dir);
	for (int i = 0; have_tc && i < sv->n_types; i++) {
		int t = sv->types[i];
		char k[32];
		snprintf(k, sizeof k, "add_%s_token", sv_name[t]);
		json_t *ae = json_object_get(tcfg, k);
		if (json_is_boolean(ae))
			sv_add(sv, t, json_is_true(ae), 0);
		const char *c = muse_vocab_hf_content(sv->tc_val[t]);
		if (!c)
			continue;
		for (size_t j = 0; json_is_array(added) && j < json_array_size(added); j++) {
			json_t *a = json_array_get(added, j);
			if (str_eq(c, json_object_get(a, "content"))) {
				if ((s = sv_set_id(sv, t, json_object_get(a, "id"), n_vocab, file, err)))
					return s;
				break;
			}
		}
	}
	snprintf(file, sizeof file, "%s/config.json", dir);
	json_t *text_cfg = json_object_get(cfg, "text_config");
	for (int i = 0; cfg && i < sv->n_types; i++) {
		int t = sv->types[i];
		char k[32];
		snprintf(k, sizeof k, "%s_token_id", sv_name[t]);
		json_t *v = json_object_get(cfg, k);
		if ((!v || json_is_null(v)) && json_is_object(text_cfg))
			v = json_object_get(text_cfg, k);
		if ((s = sv_set_id(sv, t, v, n_vocab, file, err)))
			return s;
	}
	return MUSE_OK;
}

/* Appends the key tokenizer.chat_template (name NULL) or tokenizer.chat_template.NAME. */
static muse_status add_template(muse_vocab *v, const char *name, const char *text, size_t len, muse_err *err)
{
	muse_vocab_template *nt = realloc(v->templates, (v->n_templates + 1) * sizeof *nt);
	if (!nt)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	v->templates = nt;
	muse_vocab_template *t = &nt[v->n_templates];
	t->name = name ? strdup(name) : NULL;
	t->text = malloc(len + 1);
	if ((name && !t->name) || !t->text) {
		free(t->name);
		free(t->text);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	memcpy(t->text, text, len);
	t->text[len] = '\0';
	t->text_len = len;
	v->n_templates++;
	return MUSE_OK;
}

#define MAX_TEMPLATE_NAMES 256

/* Adds name to tokenizer.chat_templates once (the first MAX_TEMPLATE_NAMES names). */
static muse_status add_template_name(muse_vocab *v, const char *name, muse_err *err)
{
	for (size_t k = 0; k < v->n_template_names; k++)
		if (!strcmp(v->template_names[k], name))
			return MUSE_OK;
	if (v->n_template_names == MAX_TEMPLATE_NAMES)
		return MUSE_OK;
	if (!v->template_names && !(v->template_names = calloc(MAX_TEMPLATE_NAMES, sizeof *v->template_names)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if (!(v->template_names[v->n_template_names] = strdup(name)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	v->n_template_names++;
	return MUSE_OK;
}

/* Chat templates as SpecialVocab + GGUFWriter.add_chat_template write them. */
static muse_status read_chat_templates(const char *dir, json_t *tcfg, muse_vocab *v, muse_err *err)
{
	muse_status s = MUSE_OK;
	uint64_t len = 0;
	char *alt = NULL;
	json_t *alt_json = NULL;
	char sub[4096];
	if ((alt = slurp(dir, "chat_template.jinja", &len, &s, err))) {
		/* additional_chat_templates/NAME.jinja turn the template into a named list. */
		snprintf(sub, sizeof sub, "%s/additional_chat_templates", dir);
		struct stat st;
		if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: additional chat templates are not supported yet", sub);
			goto done;
		}
	} else if (s) {
		goto done;
	} else {
		alt_json = muse_vocab_hf_load(dir, "chat_template.json", false, JSON_DECODE_INT_AS_REAL, &s, err);
		if (s)
			goto done;
	}
	json_t *ct = json_object_get(tcfg, "chat_template");
	if (!ct) {
		if (alt) {
			s = add_template(v, NULL, alt, len, err);
			goto done;
		}
		ct = json_object_get(alt_json, "chat_template");
	}
	if (json_is_string(ct)) {
		s = add_template(v, NULL, json_string_value(ct), json_string_length(ct), err);
	} else if (json_is_array(ct)) {
		/* Named templates: "default" -> tokenizer.chat_template, others -> tokenizer.chat_template.NAME. */
		for (size_t i = 0; i < json_array_size(ct) && !s; i++) {
			json_t *c = json_array_get(ct, i);
			json_t *nm = json_object_get(c, "name"), *tp = json_object_get(c, "template");
			if (!json_is_string(nm) || !json_string_length(nm) || !tp || json_is_null(tp))
				continue;
			if (!json_is_string(tp) || json_string_length(nm) > 200) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer_config.json: chat_template[%zu]: bad entry",
						 dir, i);
				goto done;
			}
			char name[256];
			size_t kl = 0;
			for (const char *p = json_string_value(nm); *p; p++) {
				char ch = *p;
				int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
				name[kl++] = ok ? ch : '_';
			}
			name[kl] = '\0';
			const char *key = strcmp(name, "default") ? name : NULL;
			if (!(s = add_template(v, key, json_string_value(tp), json_string_length(tp), err)) && key)
				s = add_template_name(v, name, err);
		}
	} else if (ct && !json_is_null(ct)) {
		/* The converter logs "Bad type for chat_template" and writes none. */
	}
done:
	free(alt);
	json_decref(alt_json);
	return s;
}

/* Keeps the SpecialVocab choices for the GGUF writer and reports the chosen ids. */
static void sv_store(const special_vocab *sv, muse_vocab *v, FILE *report)
{
	for (int i = 0; i < sv->n_id; i++) {
		int t = sv->id_order[i];
		v->special[t] = sv->id[t];
		v->special_order[v->n_special_order++] = t;
		/* cls has no GGUF key (the converter skips it too) */
		if (report && t != MUSE_SPECIAL_CLS)
			fprintf(report, "muse: tokenizer: %s token id %lld '%s'\n", sv_name[t], (long long)sv->id[t],
				v->text[sv->id[t]]);
	}
	for (int i = 0; i < sv->n_add; i++) {
		int t = sv->add_order[i];
		v->add[t] = sv->add[t];
		v->add_order[v->n_add_order++] = t;
	}
	v->lowercase = sv->lowercase;
	v->strip_accents = sv->strip_accents;
}

/* Token i: len bytes of t (a copy), its score (where the vocabulary has scores) and type. */
static muse_status vocab_set(muse_vocab *v, size_t i, const char *t, size_t len, float score, int type, muse_err *err)
{
	muse_status s = muse_vocab_set_text(v, i, t, len, err);
	if (s)
		return s;
	if (v->scores)
		v->scores[i] = score;
	v->types[i] = type;
	return MUSE_OK;
}

static muse_status vocab_pad(muse_vocab *v, size_t i, float score, muse_err *err)
{
	char pad[32];
	int n = snprintf(pad, sizeof pad, "[PAD%zu]", i);
	return vocab_set(v, i, pad, (size_t)n, score, MUSE_TOKEN_UNUSED, err);
}

/* A decimal id string ("123") as added_tokens_decoder keys spell them; -1 when not one. */
static int64_t parse_id_key(const char *k)
{
	int64_t v = 0;
	if (!*k || strlen(k) > 12)
		return -1;
	for (; *k; k++) {
		if (*k < '0' || *k > '9')
			return -1;
		v = v * 10 + (*k - '0');
	}
	return v;
}

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

/* _create_vocab_sentencepiece. */
static muse_status vocab_from_spm(const char *dir, uint64_t vocab_size, json_t *tcfg, muse_vocab *v, muse_err *err)
{
	char path[4096];
	muse_spm_model *m = NULL;
	json_t *atj = NULL;
	muse_status s;
	snprintf(path, sizeof path, "%s/tokenizer.model", dir);
	if ((s = muse_spm_load(path, &m, err)))
		return s;
	if ((s = muse_vocab_alloc(v, (size_t)vocab_size, true, true, err)))
		goto done;
	for (size_t i = 0; i < vocab_size; i++)
		if ((s = vocab_pad(v, i, -10000.0f, err)))
			goto done;
	for (size_t i = 0; i < m->n_pieces && i < vocab_size; i++) {
		const muse_spm_piece *p = &m->pieces[i];
		/* IsUnknown/IsControl/IsUnused/IsByte keep their type, everything else (user-defined pieces too) is NORMAL. */
		int t = p->type == MUSE_TOKEN_USER_DEFINED ? MUSE_TOKEN_NORMAL : p->type;
		if ((s = vocab_set(v, i, p->text, p->len, p->score, t, err)))
			goto done;
	}
	atj = muse_vocab_hf_load(dir, "added_tokens.json", false, 0, &s, err);
	if (s)
		goto done;
	const char *key;
	json_t *val;
	json_object_foreach(atj, key, val) {
		int64_t id = json_is_integer(val) ? json_integer_value(val) : -1;
		if (id < 0) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/added_tokens.json: '%.100s': id is not a non-negative integer",
					 dir, key);
			goto done;
		}
		if ((uint64_t)id >= vocab_size)
			continue; /* the converter warns and ignores it */
		if ((s = vocab_set(v, (size_t)id, key, strlen(key), -1000.0f, MUSE_TOKEN_USER_DEFINED, err)))
			goto done;
	}
	json_t *atd = json_object_get(tcfg, "added_tokens_decoder");
	json_object_foreach(atd, key, val) {
		int64_t id = parse_id_key(key);
		json_t *c = json_object_get(val, "content");
		if (id < 0 || !json_is_string(c)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer_config.json: added_tokens_decoder '%.100s': bad id "
					 "or content", dir, key);
			goto done;
		}
		if ((uint64_t)id >= vocab_size)
			continue;
		size_t len = json_string_length(c);
		char *t = malloc(len + 1);
		if (!t) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		memcpy(t, json_string_value(c), len + 1);
		int type = MUSE_TOKEN_CONTROL;
		if (!truthy(json_object_get(val, "special")) && !looks_special(t)) {
			unspace(t);
			type = MUSE_TOKEN_USER_DEFINED;
		}
		s = vocab_set(v, (size_t)id, t, strlen(t), -1000.0f, type, err);
		free(t);
		if (s)
			goto done;
	}
done:
	json_decref(atj);
	muse_spm_free(m);
	return s;
}

/* convert_hf_to_gguf's LlamaHfVocab test: BPE + byte_fallback + a Sequence decoder (and not Llama-3's flags). */
static int is_llama_hf(json_t *tok)
{
	json_t *model = json_object_get(tok, "model");
	if (!muse_vocab_hf_is_type(model, "BPE"))
		return 0;
	if (json_is_true(json_object_get(model, "ignore_merges")) && !json_is_true(json_object_get(model, "byte_fallback")))
		return 0;
	return json_is_true(json_object_get(model, "byte_fallback")) &&
	       muse_vocab_hf_is_type(json_object_get(tok, "decoder"), "Sequence");
}

/* The token strings of merge i ("a b" or ["a", "b"]) concatenated into buf; 0 when malformed. */
static int merge_concat(json_t *m, char *buf, size_t cap)
{
	const char *a, *b;
	size_t la, lb;
	if (json_is_string(m)) {
		const char *s = json_string_value(m);
		const char *sp = strchr(s + (s[0] ? 1 : 0), ' ');
		if (!sp)
			return 0;
		a = s;
		la = (size_t)(sp - s);
		b = sp + 1;
		lb = strlen(b);
	} else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
		   json_is_string(json_array_get(m, 1))) {
		a = json_string_value(json_array_get(m, 0));
		la = json_string_length(json_array_get(m, 0));
		b = json_string_value(json_array_get(m, 1));
		lb = json_string_length(json_array_get(m, 1));
	} else {
		return 0;
	}
	if (la + lb + 1 > cap)
		return 0;
	memcpy(buf, a, la);
	memcpy(buf + la, b, lb);
	buf[la + lb] = '\0';
	return 1;
}

/* The special-token contents transformers' all_special_tokens yields for this tokenizer_config. */
static int is_special_content(json_t *tcfg, const char *t)
{
	static const char *const named[] = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
					     "cls_token", "mask_token" };
	json_t *cls = json_object_get(tcfg, "tokenizer_class");
	int llama = json_is_string(cls) && (!strcmp(json_string_value(cls), "LlamaTokenizer") ||
					    !strcmp(json_string_value(cls), "LlamaTokenizerFast"));
	static const char *const llama_default[] = { "<s>", "</s>", "<unk>" };
	for (int i = 0; i < 7; i++) {
		json_t *e = json_object_get(tcfg, named[i]);
		const char *c = muse_vocab_hf_content(e);
		if (!e && llama && i < 3)
			c = llama_default[i];
		if (c && !strcmp(c, t))
			return 1;
	}
	const char *lists[] = { "extra_special_tokens", "additional_special_tokens" };
	for (int k = 0; k < 2; k++) {
		json_t *l = json_object_get(tcfg, lists[k]);
		for (size_t i = 0; json_is_array(l) && i < json_array_size(l); i++) {
			const char *c = muse_vocab_hf_content(json_array_get(l, i));
			if (c && !strcmp(c, t))
				return 1;
		}
	}
	return 0;
}

/* _set_vocab_llama_hf (gguf.LlamaHfVocab), scores from merge ranks (see muse_vocab_convert_hf in vocab.h). */
static muse_status vocab_from_llama_hf(const char *dir, uint64_t vocab_size, json_t *tok, json_t *tcfg, muse_vocab *v,
				       muse_err *err)
{
	muse_status s = MUSE_OK;
	muse_strmap ids;
	muse_strmap_init(&ids);
	char **base = NULL;
	size_t n_base = 0;
	char *buf = NULL;
	json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab");
	json_t *at = json_object_get(tok, "added_tokens");
	if (!json_is_object(vocab)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer.json: model.vocab is not an object", dir);
		goto done;
	}
	n_base = json_object_size(vocab);
	if (n_base == 0 || n_base > (1u << 24)) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s/tokenizer.json: model.vocab size %zu outside 1..16777216", dir, n_base);
		goto done;
	}
	NOMEM(!(base = calloc(n_base, sizeof *base)));
	const char *key;
	json_t *val;
	json_object_foreach(vocab, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 || (uint64_t)json_integer_value(val) >= n_base ||
		    base[json_integer_value(val)]) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer.json: token '%.100s': id not unique in 0..%zu", dir,
					 key, n_base - 1);
			goto done;
		}
		base[json_integer_value(val)] = (char *)key;
	}
	/* Added tokens beyond the base vocabulary, by id; those inside it replace the base text (get_vocab). */
	size_t n_total = n_base;
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
		if (!json_is_integer(id) || !json_is_string(c) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= (1 << 24)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer.json: added_tokens[%zu]: bad id or content", dir, i);
			goto done;
		}
		size_t k = (size_t)json_integer_value(id);
		if (k < n_base)
			base[k] = (char *)json_string_value(c);
		else if (k + 1 > n_total)
			n_total = k + 1;
	}
	if (n_total > vocab_size) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer.json: %zu tokens but config.json vocab_size is %llu", dir,
				 n_total, (unsigned long long)vocab_size);
		goto done;
	}
	if ((s = muse_vocab_alloc(v, (size_t)vocab_size, true, true, err)))
		goto done;
	for (size_t i = 0; i < vocab_size; i++)
		if ((s = vocab_pad(v, i, -1000.0f, err)))
			goto done;
	for (size_t i = 0; i < n_base; i++) {
		const char *t = base[i];
		size_t len = strlen(t);
		int type = MUSE_TOKEN_NORMAL;
		if (len == 6 && !strncmp(t, "<0x", 3) && t[5] == '>' && strchr("0123456789abcdefABCDEF", t[3]) &&
		    strchr("0123456789abcdefABCDEF", t[4]) && t[3] && t[4])
			type = MUSE_TOKEN_BYTE;
		else if (is_special_content(tcfg, t))
			type = MUSE_TOKEN_CONTROL;
		if ((s = vocab_set(v, i, t, len, -1e9f, type, err)))
			goto done;
	}
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i);
		size_t k = (size_t)json_integer_value(json_object_get(a, "id"));
		const char *t = json_string_value(json_object_get(a, "content"));
		if (k >= n_base && (s = vocab_set(v, k, t, strlen(t), -1000.0f,
						  is_special_content(tcfg, t) ? MUSE_TOKEN_CONTROL : MUSE_TOKEN_USER_DEFINED, err)))
			goto done;
	}
	/*
	 * Scores: -k for the k-th distinct token the merge list produces (a
	 * token with several splits has several adjacent merges). This is the
	 * order of first merge rank, and for vocabularies converted from
	 * SentencePiece BPE exactly the scores sentencepiece gave the pieces.
	 */
	if (muse_strmap_reserve(&ids, n_base) < 0) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n_base; i++)
		if (muse_strmap_put(&ids, v->text[i], strlen(v->text[i]), i, NULL) < 0) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
	json_t *merges = json_object_get(model, "merges");
	size_t cap = 1 << 16;
	NOMEM(!(buf = malloc(cap)));
	uint8_t *scored = calloc(n_base, 1);
	size_t n_scored = 0;
	NOMEM(!scored);
	for (size_t i = 0; json_is_array(merges) && i < json_array_size(merges); i++) {
		size_t id;
		if (!merge_concat(json_array_get(merges, i), buf, cap)) {
			free(scored);
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer.json: model.merges[%zu] is malformed", dir, i);
			goto done;
		}
		if (muse_strmap_get(&ids, buf, strlen(buf), &id) && !scored[id]) {
			scored[id] = 1;
			v->scores[id] = -(float)n_scored++;
		}
	}
	free(scored);
done:
	muse_strmap_free(&ids);
	free(base);
	free(buf);
	return s;
}

/* get_vocab_base: byte-level BPE tokens and types ([PADi] UNUSED holes, added tokens CONTROL/USER_DEFINED). */
static muse_status vocab_from_gpt2(const char *path, uint64_t vocab_size, json_t *tok, muse_vocab *v, muse_err *err)
{
	muse_status s;
	uint8_t *added = NULL;
	json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab");
	if ((s = muse_vocab_alloc(v, (size_t)vocab_size, false, true, err)))
		return s;
	NOMEM(!(added = calloc((size_t)vocab_size, 1)));
	if (!json_is_object(vocab)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.vocab is not an object", path);
		goto done;
	}
	const char *key;
	json_t *val;
	json_object_foreach(vocab, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    (uint64_t)json_integer_value(val) >= vocab_size) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: token '%.100s': id outside 0..%llu (config vocab_size)",
					 path, key, (unsigned long long)vocab_size - 1);
			goto done;
		}
		size_t id = (size_t)json_integer_value(val);
		if (v->text[id]) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokens '%.100s' and '%.100s' share id %zu", path,
					 v->text[id], key, id);
			goto done;
		}
		if ((s = muse_vocab_set_text(v, id, key, strlen(key), err)))
			goto done;
	}
	json_t *at = json_object_get(tok, "added_tokens");
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
		if (!json_is_integer(id) || !json_is_string(c) || json_integer_value(id) < 0 ||
		    (uint64_t)json_integer_value(id) >= vocab_size) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: added_tokens[%zu]: bad id or content", path, i);
			goto done;
		}
		size_t k = (size_t)json_integer_value(id);
		if ((s = muse_vocab_set_text(v, k, json_string_value(c), strlen(json_string_value(c)), err)))
			goto done;
		added[k] = json_is_true(json_object_get(a, "special")) ? 2 : 1;
	}
	for (size_t i = 0; i < vocab_size; i++) {
		if (!v->text[i]) {
			if ((s = vocab_pad(v, i, 0, err)))
				goto done;
		} else if (added[i]) {
			if (added[i] == 2 || looks_special(v->text[i])) {
				v->types[i] = MUSE_TOKEN_CONTROL;
			} else {
				unspace(v->text[i]);
				v->len[i] = strlen(v->text[i]);
				v->types[i] = MUSE_TOKEN_USER_DEFINED;
			}
		} else {
			v->types[i] = MUSE_TOKEN_NORMAL;
		}
	}
done:
	free(added);
	return s;
}

/* SpecialVocab(load_merges=True)'s merges: the string form as is, the list form with ' ' as U+0120. */
static muse_status read_merges(const char *path, json_t *tok, muse_vocab *v, muse_err *err)
{
	muse_status s = MUSE_OK;
	json_t *jm = json_object_get(json_object_get(tok, "model"), "merges");
	char *buf = NULL;
	for (size_t i = 0; json_is_array(jm) && i < json_array_size(jm) && !s; i++) {
		json_t *m = json_array_get(jm, i);
		if (json_is_string(m)) {
			/* kept as spelled: split at the first ' ' only so that the writer puts it back */
			const char *t = json_string_value(m), *sp = strchr(t, ' ');
			s = sp ? muse_vocab_add_merge(v, t, (size_t)(sp - t), sp + 1, strlen(sp + 1), err)
			       : muse_vocab_add_merge(v, t, strlen(t), NULL, 0, err);
			continue;
		}
		json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
		if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(a) || !json_is_string(b)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of strings", path, i);
			break;
		}
		/* Each ' ' may become two bytes. */
		size_t la = json_string_length(a), lb = json_string_length(b);
		char *nb = realloc(buf, 2 * (la + lb) + 2);
		NOMEM(!nb);
		buf = nb;
		char *mid = encode_part(json_string_value(a), buf), *end = encode_part(json_string_value(b), mid);
		s = muse_vocab_add_merge(v, buf, (size_t)(mid - buf), mid, (size_t)(end - mid), err);
	}
done:
	free(buf);
	return s;
}

static int file_exists(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

muse_status muse_vocab_convert_hf(const char *dir, uint64_t vocab_size, FILE *report, muse_vocab **out,
				  muse_err *err)
{
	muse_status s = MUSE_OK;
	json_t *tok = NULL, *tcfg = NULL, *cfg = NULL;
	muse_vocab *v = NULL;
	special_vocab sv;
	sv_init(&sv);
	char path[4096];
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	*out = NULL;

	if (vocab_size == 0 || vocab_size > (1u << 24))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: vocab_size %llu outside 1..16777216", path,
				    (unsigned long long)vocab_size);
	NOMEM(!(v = muse_vocab_create()) || !(v->source = strdup(path)));
	int have_spm = file_exists(dir, "tokenizer.model");
	if (!(tok = muse_vocab_hf_load(dir, "tokenizer.json", !have_spm, 0, &s, err)) && s)
		goto done;
	tcfg = muse_vocab_hf_load(dir, "tokenizer_config.json", false, JSON_DECODE_INT_AS_REAL, &s, err);
	if (s)
		goto done;
	cfg = muse_vocab_hf_load(dir, "config.json", false, JSON_DECODE_INT_AS_REAL, &s, err);
	if (s)
		goto done;
	/* LlamaModel.set_vocab: add_prefix_space -> add_space_prefix. */
	json_t *aps = json_object_get(tcfg, "add_prefix_space");
	if (json_is_boolean(aps))
		v->add_space_prefix = json_is_true(aps);

	const char *pre_name = "default";
	v->model = MUSE_VOCAB_SPM;
	if (have_spm) {
		if ((s = vocab_from_spm(dir, vocab_size, tcfg, v, err)))
			goto done;
	} else if (is_llama_hf(tok)) {
		if ((s = vocab_from_llama_hf(dir, vocab_size, tok, tcfg, v, err)))
			goto done;
	} else {
		json_t *model = json_object_get(tok, "model");
		json_t *mtype = json_object_get(model, "type");
		if (!json_is_object(model) || (mtype && !(json_is_string(mtype) && !strcmp(json_string_value(mtype), "BPE")))) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (BPE only)", path,
					 json_is_string(mtype) ? json_string_value(mtype) : "?");
			goto done;
		}
		json_t *pre = json_object_get(tok, "pre_tokenizer");
		if (!(pre_name = muse_vocab_pre_match(pre))) {
			char *dump = json_dumps(pre, JSON_COMPACT);
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					 "%s: pre_tokenizer not recognized (byte-level BPE with the llama-bpe, qwen2, qwen35, "
					 "gpt-2, smollm, deepseek-v3, gpt-4o, tekken or seed-coder split is supported): %.300s",
					 path, dump ? dump : "null");
			free(dump);
			goto done;
		}
		v->model = MUSE_VOCAB_BPE;
		if ((s = vocab_from_gpt2(path, vocab_size, tok, v, err)) || (s = read_merges(path, tok, v, err)))
			goto done;
	}
	NOMEM(!(v->pre = strdup(pre_name)));
	if ((s = sv_load(&sv, tok, tcfg, cfg, v->n, dir, err)))
		goto done;
	sv_store(&sv, v, report);
	if (truthy(tcfg))
		s = read_chat_templates(dir, tcfg, v, err);
done:
	sv_free(&sv);
	json_decref(tok);
	json_decref(tcfg);
	json_decref(cfg);
	if (s) {
		muse_vocab_free(v);
		return s;
	}
	*out = v;
	return MUSE_OK;
}
