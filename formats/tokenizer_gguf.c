/* tokenizer_gguf.c: byte-level BPE tokenizer.json -> GGUF tokenizer.* keys (gpt2 model), special ids, chat template. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_gguf.h"

/* llama.cpp's token types (gguf.TokenType). */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };

/*
 * Pre-tokenizers as data: the split regex (NULL: none) and whether ByteLevel
 * applies its own GPT-2 regex, plus whether digits are split one by one
 * first. The names are llama.cpp's LLAMA_VOCAB_PRE_TYPE_* spellings.
 */
typedef struct pre_rule {
	const char *name;
	const char *split_regex; /* Split(Regex, Isolated) before ByteLevel(use_regex=false) */
	int bytelevel_regex;     /* ByteLevel(use_regex=true), the GPT-2 regex */
	int digits;              /* Digits(individual_digits=true) first */
} pre_rule;

static const pre_rule pre_rules[] = {
	{ "llama-bpe",
	  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
	  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 0, 0 },
	{ "qwen2",
	  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
	  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 0, 0 },
	{ "gpt-2", NULL, 1, 0 },
	{ "smollm", NULL, 1, 1 },
};

static int is_type(json_t *o, const char *t)
{
	json_t *v = json_object_get(o, "type");
	return json_is_string(v) && !strcmp(json_string_value(v), t);
}

static const char *pre_match(json_t *pre)
{
	json_t *steps[4];
	size_t n = 0;
	if (is_type(pre, "Sequence")) {
		json_t *arr = json_object_get(pre, "pretokenizers");
		if (!json_is_array(arr) || json_array_size(arr) > 4)
			return NULL;
		for (; n < json_array_size(arr); n++)
			steps[n] = json_array_get(arr, n);
	} else if (json_is_object(pre)) {
		steps[n++] = pre;
	}
	const char *regex = NULL;
	int digits = 0, bl = -1;
	for (size_t i = 0; i < n; i++) {
		json_t *s = steps[i];
		if (is_type(s, "Split") && i == 0) {
			json_t *pat = json_object_get(json_object_get(s, "pattern"), "Regex");
			json_t *beh = json_object_get(s, "behavior");
			json_t *inv = json_object_get(s, "invert");
			if (!json_is_string(pat) || !json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") ||
			    json_is_true(inv))
				return NULL;
			regex = json_string_value(pat);
		} else if (is_type(s, "Digits") && i == 0) {
			if (!json_is_true(json_object_get(s, "individual_digits")))
				return NULL;
			digits = 1;
		} else if (is_type(s, "ByteLevel") && i == n - 1) {
			json_t *ur = json_object_get(s, "use_regex");
			if (json_is_true(json_object_get(s, "add_prefix_space")))
				return NULL;
			bl = ur ? json_is_true(ur) : 1; /* tokenizers' default is use_regex = true */
		} else {
			return NULL;
		}
	}
	if (bl < 0)
		return NULL;
	for (size_t i = 0; i < sizeof pre_rules / sizeof pre_rules[0]; i++) {
		const pre_rule *r = &pre_rules[i];
		if (r->bytelevel_regex == bl && r->digits == digits &&
		    (r->split_regex ? regex && !strcmp(r->split_regex, regex) : !regex))
			return r->name;
	}
	return NULL;
}

const char *muse_tokenizer_pre_name(const char *pre_tokenizer_json)
{
	json_t *j = json_loads(pre_tokenizer_json, 0, NULL);
	const char *r = j ? pre_match(j) : NULL;
	json_decref(j);
	return r;
}

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

/*
 * flags: JSON_DECODE_INT_AS_REAL for the config files, whose integers can
 * exceed int64 (tokenizer_config's model_max_length is often 1e30 written
 * out); ids are then read back with json_id.
 */
static json_t *load_json(const char *dir, const char *name, int required, size_t flags, muse_status *s,
			 muse_err *err)
{
	char path[4096];
	json_error_t je;
	*s = MUSE_OK;
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
		*s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
		return NULL;
	}
	FILE *f = fopen(path, "rb");
	if (!f) {
		if (required)
			*s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					  "%s: missing (only tokenizer.json byte-level BPE tokenizers are supported)",
					  path);
		return NULL;
	}
	json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES | flags, &je);
	fclose(f);
	if (!j)
		*s = muse_err_at(err, MUSE_ERR_FORMAT, path, (uint64_t)(je.position > 0 ? je.position : 0), "%s",
				 je.text);
	else if (!json_is_object(j)) {
		*s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: not a JSON object", path);
		json_decref(j);
		j = NULL;
	}
	return j;
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

#define N_SPECIAL 7
static const char *const sp_types[N_SPECIAL] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask" };
/* gguf-py's key names (sic "seperator"). */
static const char *const sp_keys[N_SPECIAL] = {
	"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
	"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
	"tokenizer.ggml.mask_token_id",
};

typedef struct specials {
	int64_t id[N_SPECIAL];
	int order[N_SPECIAL], n; /* insertion order, as the Python dict keeps it */
	int add[N_SPECIAL];      /* -1 unset, 0/1 */
	int add_order[N_SPECIAL], n_add;
} specials;

/* A token id as an integer or an integral real (files read with JSON_DECODE_INT_AS_REAL); -1 otherwise. */
static int64_t json_id(json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d >= 0 && d < 9007199254740992.0 && d == (double)(int64_t)d)
			return (int64_t)d;
	}
	return -1;
}

static void sp_set(specials *sp, int t, json_t *v, uint64_t n_vocab)
{
	int64_t id = json_id(v);
	if (id < 0 || (uint64_t)id >= n_vocab || sp->id[t] >= 0)
		return;
	sp->id[t] = id;
	sp->order[sp->n++] = t;
}

static void sp_add(specials *sp, int t, int v, int override)
{
	if (sp->add[t] < 0)
		sp->add_order[sp->n_add++] = t;
	else if (!override)
		return;
	sp->add[t] = v;
}

/* The content of a tokenizer_config "<typ>_token" entry (string or {"content": ...}), or NULL. */
static const char *tc_content(json_t *e)
{
	if (json_is_string(e))
		return json_string_value(e);
	if (json_is_object(e) && json_is_string(json_object_get(e, "content")))
		return json_string_value(json_object_get(e, "content"));
	return NULL;
}

/* The subset of SpecialVocab's TemplateProcessing reading that decides add_bos/add_eos. */
static void read_post_processor(json_t *pp, json_t *tcfg, specials *sp)
{
	if (!json_is_object(pp))
		return;
	json_t *procs = json_object_get(pp, "processors");
	size_t n = json_is_array(procs) ? json_array_size(procs) : 1;
	const char *bos = tc_content(json_object_get(tcfg, "bos_token"));
	const char *eos = tc_content(json_object_get(tcfg, "eos_token"));
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_is_array(procs) ? json_array_get(procs, i) : pp;
		if (is_type(p, "ByteLevel")) {
			sp_add(sp, 0, 0, 0);
			sp_add(sp, 1, 0, 0);
		} else if (is_type(p, "TemplateProcessing")) {
			json_t *single = json_object_get(p, "single");
			size_t k = json_is_array(single) ? json_array_size(single) : 0;
			if (k <= 1)
				continue;
			json_t *first = json_object_get(json_object_get(json_array_get(single, 0), "SpecialToken"), "id");
			json_t *last = json_object_get(json_object_get(json_array_get(single, k - 1), "SpecialToken"),
						       "id");
			if (json_is_string(first) && json_string_length(first))
				sp_add(sp, 0, bos && !strcmp(bos, json_string_value(first)), 1);
			if (json_is_string(last) && json_string_length(last))
				sp_add(sp, 1, eos && !strcmp(eos, json_string_value(last)), 1);
		}
	}
}

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

muse_status muse_tokenizer_gguf_load(const char *dir, uint64_t vocab_size, muse_meta *meta, FILE *report,
				     muse_err *err)
{
	muse_status s;
	json_t *tok = NULL, *tcfg = NULL, *cfg = NULL;
	char **text = NULL, *tmpl = NULL, **merges = NULL;
	uint8_t *added = NULL;
	int32_t *types = NULL;
	size_t n_merges = 0;
	char path[4096];
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);

	if (vocab_size == 0 || vocab_size > (1u << 24))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: vocab_size %llu outside 1..16777216", path,
				    (unsigned long long)vocab_size);
	if (!(tok = load_json(dir, "tokenizer.json", 1, 0, &s, err)))
		goto done;
	json_t *model = json_object_get(tok, "model");
	json_t *mtype = json_object_get(model, "type");
	if (!json_is_object(model) || (mtype && !(json_is_string(mtype) && !strcmp(json_string_value(mtype), "BPE")))) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (BPE only)", path,
				 json_is_string(mtype) ? json_string_value(mtype) : "?");
		goto done;
	}
	json_t *pre = json_object_get(tok, "pre_tokenizer");
	const char *pre_name = pre_match(pre);
	if (!pre_name) {
		char *dump = json_dumps(pre, JSON_COMPACT);
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				 "%s: pre_tokenizer not recognized (byte-level BPE with the llama-bpe, qwen2, gpt-2 or "
				 "smollm split is supported): %.300s", path, dump ? dump : "null");
		free(dump);
		goto done;
	}

	text = calloc((size_t)vocab_size, sizeof *text);
	added = calloc((size_t)vocab_size, 1);
	types = calloc((size_t)vocab_size, sizeof *types);
	NOMEM(!text || !added || !types);
	json_t *vocab = json_object_get(model, "vocab");
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
		if (text[id]) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokens '%.100s' and '%.100s' share id %zu", path,
					 text[id], key, id);
			goto done;
		}
		NOMEM(!(text[id] = strdup(key)));
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
		free(text[k]);
		NOMEM(!(text[k] = strdup(json_string_value(c))));
		added[k] = json_is_true(json_object_get(a, "special")) ? 2 : 1;
	}
	for (size_t i = 0; i < vocab_size; i++) {
		if (!text[i]) {
			char pad[32];
			snprintf(pad, sizeof pad, "[PAD%zu]", i);
			NOMEM(!(text[i] = strdup(pad)));
			types[i] = TT_UNUSED;
		} else if (added[i]) {
			if (added[i] == 2 || looks_special(text[i])) {
				types[i] = TT_CONTROL;
			} else {
				unspace(text[i]);
				types[i] = TT_USER_DEFINED;
			}
		} else {
			types[i] = TT_NORMAL;
		}
	}

	json_t *jm = json_object_get(model, "merges");
	n_merges = json_is_array(jm) ? json_array_size(jm) : 0;
	if (n_merges) {
		NOMEM(!(merges = calloc(n_merges, sizeof *merges)));
		for (size_t i = 0; i < n_merges; i++) {
			json_t *m = json_array_get(jm, i);
			if (json_is_string(m)) {
				NOMEM(!(merges[i] = strdup(json_string_value(m))));
				continue;
			}
			json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
			if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(a) || !json_is_string(b)) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of strings",
						 path, i);
				goto done;
			}
			/* Each ' ' may become two bytes: 2 * len + separator + NUL. */
			size_t la = json_string_length(a), lb = json_string_length(b);
			char *w = merges[i] = malloc(2 * (la + lb) + 2);
			NOMEM(!w);
			w = encode_part(json_string_value(a), w);
			*w++ = ' ';
			w = encode_part(json_string_value(b), w);
			*w = '\0';
		}
	}

	NOMEM(muse_meta_set_str(meta, "tokenizer.ggml.model", "gpt2"));
	NOMEM(muse_meta_set_str(meta, "tokenizer.ggml.pre", pre_name));
	NOMEM(muse_meta_set_str_arr(meta, "tokenizer.ggml.tokens", (const char *const *)text, vocab_size));
	NOMEM(muse_meta_set_arr(meta, "tokenizer.ggml.token_type", MUSE_KV_I32, types, vocab_size));
	if (n_merges)
		NOMEM(muse_meta_set_str_arr(meta, "tokenizer.ggml.merges", (const char *const *)merges, n_merges));

	/* Special ids: tokenizer_config first (by content among added_tokens), then config.json's *_token_id. */
	specials sp;
	memset(&sp, 0, sizeof sp);
	for (int i = 0; i < N_SPECIAL; i++) {
		sp.id[i] = -1;
		sp.add[i] = -1;
	}
	tcfg = load_json(dir, "tokenizer_config.json", 0, JSON_DECODE_INT_AS_REAL, &s, err);
	if (s)
		goto done;
	if (tcfg) {
		/* LlamaModel.set_vocab: add_prefix_space -> add_space_prefix. */
		json_t *aps = json_object_get(tcfg, "add_prefix_space");
		if (json_is_boolean(aps))
			NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.add_space_prefix", json_is_true(aps)));
		read_post_processor(json_object_get(tok, "post_processor"), tcfg, &sp);
		for (int t = 0; t < N_SPECIAL; t++) {
			char k[32];
			snprintf(k, sizeof k, "add_%s_token", sp_types[t]);
			json_t *ae = json_object_get(tcfg, k);
			if (json_is_boolean(ae))
				sp_add(&sp, t, json_is_true(ae), 0);
			snprintf(k, sizeof k, "%s_token", sp_types[t]);
			const char *c = tc_content(json_object_get(tcfg, k));
			for (size_t i = 0; c && json_is_array(at) && i < json_array_size(at); i++) {
				json_t *a = json_array_get(at, i);
				if (!strcmp(json_string_value(json_object_get(a, "content")), c)) {
					sp_set(&sp, t, json_object_get(a, "id"), vocab_size);
					break;
				}
			}
		}
	}
	cfg = load_json(dir, "config.json", 0, JSON_DECODE_INT_AS_REAL, &s, err);
	if (s)
		goto done;
	for (int t = 0; cfg && t < N_SPECIAL; t++) {
		char k[32];
		snprintf(k, sizeof k, "%s_token_id", sp_types[t]);
		json_t *v = json_object_get(cfg, k);
		if (!v && json_is_object(json_object_get(cfg, "text_config")))
			v = json_object_get(json_object_get(cfg, "text_config"), k);
		sp_set(&sp, t, v, vocab_size);
	}
	for (int i = 0; i < sp.n; i++) {
		int t = sp.order[i];
		NOMEM(muse_meta_set_u32(meta, sp_keys[t], (uint32_t)sp.id[t]));
		if (report)
			fprintf(report, "muse: tokenizer: %s token id %lld '%s'\n", sp_types[t], (long long)sp.id[t],
				text[sp.id[t]]);
	}
	for (int i = 0; i < sp.n_add; i++) {
		int t = sp.add_order[i];
		char k[64];
		snprintf(k, sizeof k, "tokenizer.ggml.add_%s_token", sp_types[t]);
		NOMEM(muse_meta_set_bool(meta, k, sp.add[t] == 1));
	}

	/* Chat template: tokenizer_config's own, else chat_template.jinja, else chat_template.json. */
	if (tcfg) {
		json_t *ct = json_object_get(tcfg, "chat_template");
		uint64_t len = 0;
		if (json_is_string(ct)) {
			NOMEM(muse_meta_set_strn(meta, "tokenizer.chat_template", json_string_value(ct),
						 json_string_length(ct)));
		} else if (ct && !json_is_null(ct)) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					 "%s/tokenizer_config.json: named chat templates (a list) are not supported yet", dir);
			goto done;
		} else if ((tmpl = slurp(dir, "chat_template.jinja", &len, &s, err))) {
			NOMEM(muse_meta_set_strn(meta, "tokenizer.chat_template", tmpl, len));
		} else if (s) {
			goto done;
		} else {
			json_t *cj = load_json(dir, "chat_template.json", 0, JSON_DECODE_INT_AS_REAL, &s, err);
			if (s)
				goto done;
			json_t *c = json_object_get(cj, "chat_template");
			if (json_is_string(c))
				s = muse_meta_set_strn(meta, "tokenizer.chat_template", json_string_value(c),
						       json_string_length(c)) ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory")
									  : MUSE_OK;
			json_decref(cj);
		}
	}
done:
	if (text)
		for (size_t i = 0; i < vocab_size; i++)
			free(text[i]);
	for (size_t i = 0; merges && i < n_merges; i++)
		free(merges[i]);
	free(merges);
	free(text);
	free(added);
	free(types);
	free(tmpl);
	json_decref(tok);
	json_decref(tcfg);
	json_decref(cfg);
	return s;
}
