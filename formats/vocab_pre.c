/* vocab_pre.c: the byte-level pre-tokenizers muse knows, as one table read three ways: GGUF name -> encoder steps, tokenizer.json definition -> GGUF name, GGUF name -> tokenizer.json definition. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "vocab_impl.h"

const char muse_vocab_gpt2_regex[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

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
	{ .name = "llama-bpe", .split = { RX_LLAMA3 }, .ignore_merges = 1, .add_bos = 1, .hf = 1, .hf_trim_offsets = 1 },
	{ .name = "qwen2", .split = { RX_QWEN2 }, .hf = 1 },
	{ .name = "qwen35", .split = { RX_QWEN35 } },
	{ .name = "gpt-2", .bytelevel_regex = 1, .hf = 1, .hf_trim_offsets = 1 },
	{ .name = "smollm", .digits = 1, .bytelevel_regex = 1, .hf = 1, .hf_trim_offsets = 1 },
	{ .name = "deepseek-v3",
	  .split = { "\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
		     /* literal CR/LF inside the classes, as tokenizer.json and llama-vocab.cpp spell this one */
		     "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
		     "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+" },
	},
	{ .name = "gpt-4o", .split = { RX_GPT4O } },
	{ .name = "tekken", .split = { RX_TEKKEN }, .ignore_merges = 1, .add_bos = 1 },
	{ .name = "seed-coder", .split = { RX_SEED_CODER } },
};

#define N_RULES (sizeof pre_rules / sizeof pre_rules[0])

const muse_pre_rule *muse_vocab_pre_rule(const char *name)
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
	for (size_t i = 0; i < N_RULES; i++)
		if (!strcmp(pre_rules[i].name, name))
			return &pre_rules[i];
	return NULL;
}

static muse_status add_step(muse_vocab *v, int kind, const char *pattern, int behavior, muse_err *err)
{
	muse_vocab_pre *np = realloc(v->pre_steps, (v->n_pre_steps + 1) * sizeof *np);
	if (!np)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	v->pre_steps = np;
	muse_vocab_pre p = { .kind = kind, .behavior = behavior };
	if (pattern) {
		if (!(p.pattern = strdup(pattern)))
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		p.pattern_len = strlen(pattern);
	}
	v->pre_steps[v->n_pre_steps++] = p;
	return MUSE_OK;
}

muse_status muse_vocab_pre_from_rule(muse_vocab *v, const muse_pre_rule *rule, muse_err *err)
{
	muse_status s;
	if (rule->digits && (s = add_step(v, MUSE_PRE_SPLIT, "\\p{N}", MUSE_SPLIT_ISOLATED, err)))
		return s;
	for (int k = 0; k < MUSE_PRE_MAX_SPLITS && rule->split[k]; k++)
		if ((s = add_step(v, MUSE_PRE_SPLIT, rule->split[k], MUSE_SPLIT_ISOLATED, err)))
			return s;
	return add_step(v, MUSE_PRE_BYTELEVEL, rule->bytelevel_regex ? muse_vocab_gpt2_regex : NULL, 0, err);
}

static int is_type(json_t *o, const char *t)
{
	json_t *v = json_object_get(o, "type");
	return json_is_string(v) && !strcmp(json_string_value(v), t);
}

const char *muse_vocab_pre_match(json_t *pre)
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
	for (size_t i = 0; i < N_RULES; i++) {
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

const char *muse_vocab_pre_name(const char *pre_tokenizer_json)
{
	json_t *j = json_loads(pre_tokenizer_json, 0, NULL);
	const char *r = j ? muse_vocab_pre_match(j) : NULL;
	json_decref(j);
	return r;
}

json_t *muse_vocab_pre_json(const char *name)
{
	/* The exact spelling only: an alias read back from tokenizer.json would come back as the family's name. */
	const muse_pre_rule *r = NULL;
	for (size_t i = 0; i < N_RULES && !r; i++)
		if (!strcmp(pre_rules[i].name, name))
			r = &pre_rules[i];
	if (!r || !r->hf)
		return NULL;
	json_t *steps = json_array();
	if (!steps)
		return NULL;
	int ok = 1;
	if (r->digits)
		ok &= !json_array_append_new(steps, json_pack("{s:s, s:b}", "type", "Digits", "individual_digits", 1));
	for (int k = 0; ok && k < MUSE_PRE_MAX_SPLITS && r->split[k]; k++)
		ok &= !json_array_append_new(steps, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
							      r->split[k], "behavior", "Isolated", "invert", 0));
	ok = ok && !json_array_append_new(steps, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
							    0, "trim_offsets", r->hf_trim_offsets, "use_regex",
							    r->bytelevel_regex));
	if (!ok) {
		json_decref(steps);
		return NULL;
	}
	if (json_array_size(steps) == 1) {
		json_t *one = json_incref(json_array_get(steps, 0));
		json_decref(steps);
		return one;
	}
	return json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", steps);
}
