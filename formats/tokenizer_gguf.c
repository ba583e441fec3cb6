/* tokenizer_gguf.c: HF tokenizer files -> GGUF tokenizer.* keys as convert_hf_to_gguf.py writes them: byte-level BPE (gpt2), SentencePiece tokenizer.model and SentencePiece-style tokenizer.json (llama), special ids, chat templates. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/strmap.h"
#include "spm.h"
#include "tokenizer_gguf.h"

/* llama.cpp's token types (gguf.TokenType). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/*
 * Pre-tokenizers as data, keyed by llama.cpp's tokenizer.ggml.pre spelling.
 * Each is the tokenizer.json definition that llama-vocab.cpp's regexes for
 * that name reproduce ("original regex from tokenizer.json" there):
 * [Digits(individual_digits)] + Split(Regex, Isolated)... + ByteLevel.
 * Names sharing one definition (llama-bpe/dbrx/chatglm-bpe, smollm/
 * starcoder/refact) resolve to the first, the family convert_hf_to_gguf.py
 * names for the published tokenizers.
 */
#define RX_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN35 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_GPT4O "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_TEKKEN "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_SEED_CODER "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const muse_pre_rule pre_rules[] = {
	{ "llama-bpe", { RX_LLAMA3 }, 0, 0, 1, 1 },
	{ "qwen2", { RX_QWEN2 }, 0, 0, 0, 0 },
	{ "qwen35", { RX_QWEN35 }, 0, 0, 0, 0 },
	{ "gpt-2", { NULL }, 0, 1, 0, 0 },
	{ "smollm", { NULL }, 1, 1, 0, 0 },
	{ "deepseek-v3",
	  { "\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
	    /* literal CR/LF inside the classes, as tokenizer.json and llama-vocab.cpp spell this one */
	    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
	    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+" },
	  0, 0, 0, 0 },
	{ "gpt-4o", { RX_GPT4O }, 0, 0, 0, 0 },
	{ "tekken", { RX_TEKKEN }, 0, 0, 1, 1 },
	{ "seed-coder", { RX_SEED_CODER }, 0, 0, 0, 0 },
};

const muse_pre_rule *muse_tokenizer_pre_rule(const char *name)
{
	/* llama.cpp's aliases of the same regex set. */
	static const char *const alias[][2] = {
		{ "llama3", "llama-bpe" }, { "llama-v3", "llama-bpe" }, { "dbrx", "llama-bpe" }, { "smaug-bpe", "llama-bpe" },
		{ "falcon3", "llama-bpe" }, { "pixtral", "llama-bpe" }, { "starcoder", "smollm" }, { "refact", "smollm" },
		{ "command-r", "smollm" }, { "codeshell", "smollm" }, { "exaone", "smollm" }, { "minerva-7b", "smollm" },
		{ "phi-2", "gpt-2" }, { "mpt", "gpt-2" }, { "olmo", "gpt-2" }, { "jais", "gpt-2" }, { "stablelm2", "qwen2" },
		{ "hunyuan", "qwen2" }, { "megrez", "qwen2" }, { "deepseek-r1-qwen", "qwen2" }, { "hunyuan-dense", "deepseek-v3" },
		{ "chatglm-bpe", "llama-bpe" }, { "grok-2", "qwen2" },
	};
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
		if (!strcmp(name, alias[i][0]))
			name = alias[i][1];
	for (size_t i = 0; i < sizeof pre_rules / sizeof pre_rules[0]; i++)
		if (!strcmp(pre_rules[i].name, name))
			return &pre_rules[i];
	return NULL;
}

static int is_type(json_t *o, const char *t)
{
	json_t *v = json_object_get(o, "type");
	return json_is_string(v) && !strcmp(json_string_value(v), t);
}

/* Matches a tokenizer.json pre_tokenizer against the table by structure: the same steps with the same regexes. */
static const char *pre_match(json_t *pre)
{
	json_t *steps[MUSE_PRE_MAX_SPLITS + 2];
	size_t n = 0;
	if (is_type(pre, "Sequence")) {
		json_t *arr = json_object_get(pre, "pretokenizers");
		if (!json_is_array(arr) || json_array_size(arr) > MUSE_PRE_MAX_SPLITS + 2)
			return NULL;
		for (; n < json_array_size(arr); n++)
			steps[n] = json_array_get(arr, n);
	} else if (json_is_object(pre)) {
		steps[n++] = pre;
	}
	const char *regex[MUSE_PRE_MAX_SPLITS] = { NULL };
	int digits = 0, bl = -1, n_split = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *s = steps[i];
		if (is_type(s, "Split") && n_split < MUSE_PRE_MAX_SPLITS && bl < 0) {
			json_t *pat = json_object_get(json_object_get(s, "pattern"), "Regex");
			json_t *beh = json_object_get(s, "behavior");
			json_t *inv = json_object_get(s, "invert");
			if (!json_is_string(pat) || !json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") ||
			    json_is_true(inv))
				return NULL;
			regex[n_split++] = json_string_value(pat);
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
		const muse_pre_rule *r = &pre_rules[i];
		int k = 0, same = r->bytelevel_regex == bl && r->digits == digits;
		for (; same && k < MUSE_PRE_MAX_SPLITS; k++) {
			if (!r->split[k] != !regex[k] || (regex[k] && strcmp(r->split[k], regex[k])))
				same = 0;
		}
		if (same)
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
					  "%s: missing",
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

/* The content of a tokenizer_config "<typ>_token" entry (string or {"content": ...}), or NULL. */
static const char *tc_content(json_t *e)
{
	if (json_is_string(e))
		return json_string_value(e);
	if (json_is_object(e) && json_is_string(json_object_get(e, "content")))
		return json_string_value(json_object_get(e, "content"));
	return NULL;
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

/* gguf.SpecialVocab's token types; cls has no GGUF writer handler (the converter logs and skips it). */
enum { SV_BOS, SV_EOS, SV_UNK, SV_SEP, SV_PAD, SV_CLS, SV_MASK, SV_EOT, SV_EOM, SV_N };
static const char *const sv_name[SV_N] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot", "eom" };
static const char *const sv_key[SV_N] = {
	"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
	"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", NULL, "tokenizer.ggml.mask_token_id",
	"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
};

typedef struct special_vocab {
	int types[SV_N], n_types;        /* special_token_types, in order (eot/eom appended on demand) */
	int64_t id[SV_N];                /* -1: unset */
	int id_order[SV_N], n_id;        /* dict insertion order */
	int add[SV_N];                   /* -1: unset */
	int add_order[SV_N], n_add;
	int lowercase, strip_accents;    /* -1: unset */
	json_t *tc_val[SV_N];            /* tokenizer_config "<typ>_token" as the converter sees it (owned refs) */
} special_vocab;

static void sv_init(special_vocab *sv)
{
	memset(sv, 0, sizeof *sv);
	for (int i = 0; i < SV_N; i++) {
		sv->id[i] = -1;
		sv->add[i] = -1;
	}
	for (int i = 0; i <= SV_MASK; i++)
		sv->types[sv->n_types++] = i;
	sv->lowercase = sv->strip_accents = -1;
}

static void sv_free(special_vocab *sv)
{
	for (int i = 0; i < SV_N; i++)
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
	if (is_type(n, "Lowercase")) {
		sv->lowercase = 1;
	} else if (is_type(n, "StripAccents")) {
		sv->strip_accents = 1;
	} else if (is_type(n, "BertNormalizer")) {
		json_t *l = json_object_get(n, "lowercase"), *s = json_object_get(n, "strip_accents");
		if (l)
			sv->lowercase = truthy(l);
		if (s)
			sv->strip_accents = truthy(s);
	} else if (is_type(n, "Sequence")) {
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
		if (is_type(p, "ByteLevel")) {
			sv_add(sv, SV_BOS, 0, 0);
			sv_add(sv, SV_EOS, 0, 0);
		} else if (is_type(p, "RobertaProcessing")) {
			sv_add(sv, SV_BOS, 1, 1);
			sv_add(sv, SV_EOS, 1, 1);
			sv_add(sv, SV_SEP, 1, 1);
			json_t *cls = json_array_get(json_object_get(p, "cls"), 0);
			json_t *sep = json_array_get(json_object_get(p, "sep"), 0);
			if (!truthy(v[SV_CLS]) && have_tc)
				sv_set_tc(sv, SV_CLS, json_object_get(p, "cls") ? cls : v[SV_BOS]);
			if (!truthy(v[SV_SEP]) && have_tc)
				sv_set_tc(sv, SV_SEP, json_object_get(p, "sep") ? sep : v[SV_EOS]);
		} else if (is_type(p, "TemplateProcessing")) {
			json_t *single = json_object_get(p, "single"), *pair = json_object_get(p, "pair");
			size_t ns = json_is_array(single) ? json_array_size(single) : 0;
			const char *first = NULL, *last = NULL;
			if (ns > 1) {
				if ((first = tmpl_special(json_array_get(single, 0)))) {
					json_t *fj = json_string(first);
					if (have_tc && !str_eq(first, v[SV_BOS]) && !str_eq(first, v[SV_CLS])) {
						if (!truthy(v[SV_BOS]))
							sv_set_tc(sv, SV_BOS, fj);
						if (!truthy(v[SV_CLS]))
							sv_set_tc(sv, SV_CLS, fj);
					}
					json_decref(fj);
					/* Without a tokenizer_config the converter compares against its own local copy, set to first. */
					sv_add(sv, SV_BOS, !have_tc || str_eq(first, v[SV_BOS]) || str_eq(first, v[SV_CLS]), 1);
				}
				if ((last = tmpl_special(json_array_get(single, ns - 1)))) {
					json_t *lj = json_string(last);
					if (have_tc && !str_eq(last, v[SV_EOS])) {
						if (!sv_has_type(sv, SV_EOT)) {
							sv->types[sv->n_types++] = SV_EOT;
							sv_set_tc(sv, SV_EOT, v[SV_EOS]);
						} else if (!sv_has_type(sv, SV_EOM)) {
							sv->types[sv->n_types++] = SV_EOM;
							sv_set_tc(sv, SV_EOM, v[SV_EOS]);
						}
						sv_set_tc(sv, SV_EOS, lj);
					}
					json_decref(lj);
					sv_add(sv, SV_EOS, !have_tc || str_eq(last, v[SV_EOS]), 1);
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
						if (e && (str_eq(e, v[SV_SEP]) || str_eq(e, v[SV_EOS])) && !last)
							add_sep = 1;
						if (stop - start - 2 == 2) {
							const char *e2 = tmpl_special(json_array_get(pair, start + 2));
							if (e2 && (str_eq(e2, v[SV_SEP]) || str_eq(e2, v[SV_EOS])))
								add_sep = 1;
						}
						sv_add(sv, SV_SEP, add_sep, 1);
						if (add_sep && !truthy(v[SV_SEP]) && have_tc)
							sv_set_tc(sv, SV_SEP, v[SV_EOS]);
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
	for (int t = 0; t <= SV_MASK && tcfg; t++) {
		char k[32];
		snprintf(k, sizeof k, "%s_token", sv_name[t]);
		sv_set_tc(sv, t, json_object_get(tcfg, k));
	}
	if (have_tok) {
		json_t **v = sv->tc_val;
		if (!truthy(v[SV_BOS]) && truthy(v[SV_CLS]) && have_tc)
			sv_set_tc(sv, SV_BOS, v[SV_CLS]);
		if (!truthy(v[SV_EOS]) && truthy(v[SV_SEP]) && have_tc)
			sv_set_tc(sv, SV_EOS, v[SV_SEP]);
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
		const char *c = tc_content(sv->tc_val[t]);
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

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

/* Chat templates as SpecialVocab + GGUFWriter.add_chat_template write them. */
static muse_status add_chat_template(const char *dir, json_t *tcfg, muse_meta *meta, muse_err *err)
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
		alt_json = load_json(dir, "chat_template.json", 0, JSON_DECODE_INT_AS_REAL, &s, err);
		if (s)
			goto done;
	}
	json_t *ct = json_object_get(tcfg, "chat_template");
	if (!ct) {
		if (alt) {
			NOMEM(muse_meta_set_strn(meta, "tokenizer.chat_template", alt, len));
			goto done;
		}
		ct = json_object_get(alt_json, "chat_template");
	}
	if (json_is_string(ct)) {
		NOMEM(muse_meta_set_strn(meta, "tokenizer.chat_template", json_string_value(ct), json_string_length(ct)));
	} else if (json_is_array(ct)) {
		/* Named templates: "default" -> tokenizer.chat_template, others -> tokenizer.chat_template.NAME. */
		const char *names[256];
		size_t n_names = 0;
		for (size_t i = 0; i < json_array_size(ct); i++) {
			json_t *c = json_array_get(ct, i);
			json_t *nm = json_object_get(c, "name"), *tp = json_object_get(c, "template");
			if (!json_is_string(nm) || !json_string_length(nm) || !tp || json_is_null(tp))
				continue;
			if (!json_is_string(tp) || json_string_length(nm) > 200) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s/tokenizer_config.json: chat_template[%zu]: bad entry",
						 dir, i);
				goto done;
			}
			char key[256] = "tokenizer.chat_template.";
			size_t kl = strlen(key);
			for (const char *p = json_string_value(nm); *p; p++) {
				char ch = *p;
				int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
				key[kl++] = ok ? ch : '_';
			}
			key[kl] = '\0';
			if (!strcmp(key + 24, "default")) {
				NOMEM(muse_meta_set_strn(meta, "tokenizer.chat_template", json_string_value(tp),
							 json_string_length(tp)));
				continue;
			}
			NOMEM(muse_meta_set_strn(meta, key, json_string_value(tp), json_string_length(tp)));
			int dup = 0;
			for (size_t k = 0; k < n_names; k++)
				dup |= !strcmp(names[k], key + 24);
			if (!dup && n_names < 256) {
				/* The key string lives in meta; keep our own copy for the name list. */
				char *cp = strdup(key + 24);
				NOMEM(!cp);
				names[n_names++] = cp;
			}
		}
		if (n_names) {
			s = muse_meta_set_str_arr(meta, "tokenizer.chat_templates", names, n_names)
				    ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory") : MUSE_OK;
		}
		for (size_t k = 0; k < n_names; k++)
			free((char *)names[k]);
	} else if (ct && !json_is_null(ct)) {
		/* The converter logs "Bad type for chat_template" and writes none. */
	}
done:
	free(alt);
	json_decref(alt_json);
	return s;
}

/* Writes the SpecialVocab keys and reports the chosen ids. */
static muse_status sv_write(special_vocab *sv, char *const *text, muse_meta *meta, FILE *report, muse_err *err)
{
	muse_status s = MUSE_OK;
	for (int i = 0; i < sv->n_id; i++) {
		int t = sv->id_order[i];
		if (!sv_key[t])
			continue; /* cls: no GGUF key (the converter skips it too) */
		NOMEM(muse_meta_set_u32(meta, sv_key[t], (uint32_t)sv->id[t]));
		if (report)
			fprintf(report, "muse: tokenizer: %s token id %lld '%s'\n", sv_name[t], (long long)sv->id[t],
				text[sv->id[t]]);
	}
	for (int i = 0; i < sv->n_add; i++) {
		int t = sv->add_order[i];
		if (t != SV_BOS && t != SV_EOS && t != SV_SEP)
			continue;
		char k[64];
		snprintf(k, sizeof k, "tokenizer.ggml.add_%s_token", sv_name[t]);
		NOMEM(muse_meta_set_bool(meta, k, sv->add[t] == 1));
	}
	if (sv->lowercase >= 0)
		NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.normalizer.lowercase", sv->lowercase));
	if (sv->strip_accents >= 0)
		NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.normalizer.strip_accents", sv->strip_accents));
done:
	return s;
}

/* The vocabulary being built: vocab_size entries of text, score and type. */
typedef struct vocab_out {
	char **text;
	float *scores; /* NULL for gpt2 */
	int32_t *types;
	size_t n;
} vocab_out;

static void vocab_free(vocab_out *v)
{
	for (size_t i = 0; v->text && i < v->n; i++)
		free(v->text[i]);
	free(v->text);
	free(v->scores);
	free(v->types);
}

static muse_status vocab_alloc(vocab_out *v, size_t n, int with_scores, muse_err *err)
{
	v->n = n;
	v->text = calloc(n, sizeof *v->text);
	v->types = calloc(n, sizeof *v->types);
	v->scores = with_scores ? calloc(n, sizeof *v->scores) : NULL;
	if (!v->text || !v->types || (with_scores && !v->scores))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return MUSE_OK;
}

static muse_status vocab_set(vocab_out *v, size_t i, const char *t, size_t len, float score, int type, muse_err *err)
{
	char *c = malloc(len + 1);
	if (!c)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	memcpy(c, t, len);
	c[len] = '\0';
	free(v->text[i]);
	v->text[i] = c;
	if (v->scores)
		v->scores[i] = score;
	v->types[i] = type;
	return MUSE_OK;
}

static muse_status vocab_pad(vocab_out *v, size_t i, float score, muse_err *err)
{
	char pad[32];
	int n = snprintf(pad, sizeof pad, "[PAD%zu]", i);
	return vocab_set(v, i, pad, (size_t)n, score, TT_UNUSED, err);
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

/* _create_vocab_sentencepiece. */
static muse_status vocab_from_spm(const char *dir, uint64_t vocab_size, json_t *tcfg, vocab_out *v, muse_err *err)
{
	char path[4096];
	muse_spm_model *m = NULL;
	json_t *atj = NULL;
	muse_status s;
	snprintf(path, sizeof path, "%s/tokenizer.model", dir);
	if ((s = muse_spm_load(path, &m, err)))
		return s;
	if ((s = vocab_alloc(v, (size_t)vocab_size, 1, err)))
		goto done;
	for (size_t i = 0; i < vocab_size; i++)
		if ((s = vocab_pad(v, i, -10000.0f, err)))
			goto done;
	for (size_t i = 0; i < m->n_pieces && i < vocab_size; i++) {
		const muse_spm_piece *p = &m->pieces[i];
		/* IsUnknown/IsControl/IsUnused/IsByte, everything else (user-defined pieces too) NORMAL. */
		int t = p->type == MUSE_SPM_UNKNOWN ? TT_UNKNOWN : p->type == MUSE_SPM_CONTROL ? TT_CONTROL
			: p->type == MUSE_SPM_UNUSED ? TT_UNUSED : p->type == MUSE_SPM_BYTE ? TT_BYTE : TT_NORMAL;
		if ((s = vocab_set(v, i, p->text, p->len, p->score, t, err)))
			goto done;
	}
	atj = load_json(dir, "added_tokens.json", 0, 0, &s, err);
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
		if ((s = vocab_set(v, (size_t)id, key, strlen(key), -1000.0f, TT_USER_DEFINED, err)))
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
		int type = TT_CONTROL;
		if (!truthy(json_object_get(val, "special")) && !looks_special(t)) {
			unspace(t);
			type = TT_USER_DEFINED;
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
	if (!is_type(model, "BPE"))
		return 0;
	if (json_is_true(json_object_get(model, "ignore_merges")) && !json_is_true(json_object_get(model, "byte_fallback")))
		return 0;
	return json_is_true(json_object_get(model, "byte_fallback")) && is_type(json_object_get(tok, "decoder"), "Sequence");
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
		const char *c = tc_content(e);
		if (!e && llama && i < 3)
			c = llama_default[i];
		if (c && !strcmp(c, t))
			return 1;
	}
	const char *lists[] = { "extra_special_tokens", "additional_special_tokens" };
	for (int k = 0; k < 2; k++) {
		json_t *l = json_object_get(tcfg, lists[k]);
		for (size_t i = 0; json_is_array(l) && i < json_array_size(l); i++) {
			const char *c = tc_content(json_array_get(l, i));
			if (c && !strcmp(c, t))
				return 1;
		}
	}
	return 0;
}

/* _set_vocab_llama_hf (gguf.LlamaHfVocab), scores from merge ranks (see tokenizer_gguf.h). */
static muse_status vocab_from_llama_hf(const char *dir, uint64_t vocab_size, json_t *tok, json_t *tcfg, vocab_out *v,
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
	if ((s = vocab_alloc(v, (size_t)vocab_size, 1, err)))
		goto done;
	for (size_t i = 0; i < vocab_size; i++)
		if ((s = vocab_pad(v, i, -1000.0f, err)))
			goto done;
	for (size_t i = 0; i < n_base; i++) {
		const char *t = base[i];
		size_t len = strlen(t);
		int type = TT_NORMAL;
		if (len == 6 && !strncmp(t, "<0x", 3) && t[5] == '>' && strchr("0123456789abcdefABCDEF", t[3]) &&
		    strchr("0123456789abcdefABCDEF", t[4]) && t[3] && t[4])
			type = TT_BYTE;
		else if (is_special_content(tcfg, t))
			type = TT_CONTROL;
		if ((s = vocab_set(v, i, t, len, -1e9f, type, err)))
			goto done;
	}
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i);
		size_t k = (size_t)json_integer_value(json_object_get(a, "id"));
		const char *t = json_string_value(json_object_get(a, "content"));
		if (k >= n_base && (s = vocab_set(v, k, t, strlen(t), -1000.0f,
						  is_special_content(tcfg, t) ? TT_CONTROL : TT_USER_DEFINED, err)))
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
static muse_status vocab_from_gpt2(const char *path, uint64_t vocab_size, json_t *tok, vocab_out *v, muse_err *err)
{
	muse_status s;
	uint8_t *added = NULL;
	json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab");
	if ((s = vocab_alloc(v, (size_t)vocab_size, 0, err)))
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
		NOMEM(!(v->text[id] = strdup(key)));
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
		free(v->text[k]);
		NOMEM(!(v->text[k] = strdup(json_string_value(c))));
		added[k] = json_is_true(json_object_get(a, "special")) ? 2 : 1;
	}
	for (size_t i = 0; i < vocab_size; i++) {
		if (!v->text[i]) {
			if ((s = vocab_pad(v, i, 0, err)))
				goto done;
		} else if (added[i]) {
			if (added[i] == 2 || looks_special(v->text[i])) {
				v->types[i] = TT_CONTROL;
			} else {
				unspace(v->text[i]);
				v->types[i] = TT_USER_DEFINED;
			}
		} else {
			v->types[i] = TT_NORMAL;
		}
	}
done:
	free(added);
	return s;
}

/* SpecialVocab(load_merges=True)'s merges: the string form as is, the list form with ' ' as U+0120. */
static muse_status add_merges(const char *path, json_t *tok, muse_meta *meta, muse_err *err)
{
	muse_status s = MUSE_OK;
	json_t *jm = json_object_get(json_object_get(tok, "model"), "merges");
	size_t n = json_is_array(jm) ? json_array_size(jm) : 0;
	char **merges = NULL;
	if (!n)
		return MUSE_OK;
	NOMEM(!(merges = calloc(n, sizeof *merges)));
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(jm, i);
		if (json_is_string(m)) {
			NOMEM(!(merges[i] = strdup(json_string_value(m))));
			continue;
		}
		json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
		if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(a) || !json_is_string(b)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of strings", path, i);
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
	NOMEM(muse_meta_set_str_arr(meta, "tokenizer.ggml.merges", (const char *const *)merges, n));
done:
	for (size_t i = 0; merges && i < n; i++)
		free(merges[i]);
	free(merges);
	return s;
}

static int file_exists(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

muse_status muse_tokenizer_gguf_load(const char *dir, uint64_t vocab_size, muse_meta *meta, FILE *report,
				     muse_err *err)
{
	muse_status s = MUSE_OK;
	json_t *tok = NULL, *tcfg = NULL, *cfg = NULL;
	vocab_out v = { 0 };
	special_vocab sv;
	sv_init(&sv);
	char path[4096];
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);

	if (vocab_size == 0 || vocab_size > (1u << 24))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: vocab_size %llu outside 1..16777216", path,
				    (unsigned long long)vocab_size);
	int have_spm = file_exists(dir, "tokenizer.model");
	if (!(tok = load_json(dir, "tokenizer.json", !have_spm, 0, &s, err)) && s)
		goto done;
	tcfg = load_json(dir, "tokenizer_config.json", 0, JSON_DECODE_INT_AS_REAL, &s, err);
	if (s)
		goto done;
	cfg = load_json(dir, "config.json", 0, JSON_DECODE_INT_AS_REAL, &s, err);
	if (s)
		goto done;
	/* LlamaModel.set_vocab: add_prefix_space -> add_space_prefix. */
	json_t *aps = json_object_get(tcfg, "add_prefix_space");
	if (json_is_boolean(aps))
		NOMEM(muse_meta_set_bool(meta, "tokenizer.ggml.add_space_prefix", json_is_true(aps)));

	const char *model_name = "llama", *pre_name = "default";
	int gpt2 = 0;
	if (have_spm) {
		if ((s = vocab_from_spm(dir, vocab_size, tcfg, &v, err)))
			goto done;
	} else if (is_llama_hf(tok)) {
		if ((s = vocab_from_llama_hf(dir, vocab_size, tok, tcfg, &v, err)))
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
		if (!(pre_name = pre_match(pre))) {
			char *dump = json_dumps(pre, JSON_COMPACT);
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					 "%s: pre_tokenizer not recognized (byte-level BPE with the llama-bpe, qwen2, qwen35, "
					 "gpt-2, smollm, deepseek-v3, gpt-4o, tekken or seed-coder split is supported): %.300s",
					 path, dump ? dump : "null");
			free(dump);
			goto done;
		}
		model_name = "gpt2";
		gpt2 = 1;
		if ((s = vocab_from_gpt2(path, vocab_size, tok, &v, err)))
			goto done;
	}
	NOMEM(muse_meta_set_str(meta, "tokenizer.ggml.model", model_name));
	NOMEM(muse_meta_set_str(meta, "tokenizer.ggml.pre", pre_name));
	NOMEM(muse_meta_set_str_arr(meta, "tokenizer.ggml.tokens", (const char *const *)v.text, v.n));
	if (v.scores)
		NOMEM(muse_meta_set_arr(meta, "tokenizer.ggml.scores", MUSE_KV_F32, v.scores, v.n));
	NOMEM(muse_meta_set_arr(meta, "tokenizer.ggml.token_type", MUSE_KV_I32, v.types, v.n));
	if (gpt2 && (s = add_merges(path, tok, meta, err)))
		goto done;
	if ((s = sv_load(&sv, tok, tcfg, cfg, v.n, dir, err)) || (s = sv_write(&sv, v.text, meta, report, err)))
		goto done;
	if (truthy(tcfg))
		s = add_chat_template(dir, tcfg, meta, err);
done:
	sv_free(&sv);
	vocab_free(&v);
	json_decref(tok);
	json_decref(tcfg);
	json_decref(cfg);
	return s;
}
