/* tokenizer_hf.c: GGUF tokenizer.* keys -> tokenizer.json + tokenizer_config.json, the inverse of tokenizer_gguf.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_hf.h"

/* llama.cpp's token types (gguf.TokenType). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

#define MAX_VOCAB (1u << 24) /* the cap tokenizer_gguf.c reads back */

/*
 * The pre-tokenizers as tokenizers writes them in the tokenizer.json of the
 * models llama.cpp names so; the same four tokenizer_gguf.c recognizes, so
 * HF -> GGUF gives the name back.
 */
static const char *const pre_json[][2] = {
	{ "llama-bpe",
	  "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
	  "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
	  "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
	  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}" },
	{ "qwen2",
	  "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
	  "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
	  "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
	  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}" },
	{ "gpt-2", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}" },
	{ "smollm",
	  "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
	  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}" },
};

json_t *muse_tokenizer_hf_pre(const char *name)
{
	for (size_t i = 0; i < sizeof pre_json / sizeof pre_json[0]; i++)
		if (!strcmp(pre_json[i][0], name))
			return json_loads(pre_json[i][1], 0, NULL);
	return NULL;
}

/* Element i of an integer array kv as int64 (any integer width GGUF allows). */
static int64_t arr_int(const muse_kv *kv, uint64_t i)
{
	const uint8_t *a = kv->arr;
	switch (kv->arr_type) {
	case MUSE_KV_U8: return a[i];
	case MUSE_KV_I8: return ((const int8_t *)a)[i];
	case MUSE_KV_U16: { uint16_t v; memcpy(&v, a + 2 * i, 2); return v; }
	case MUSE_KV_I16: { int16_t v; memcpy(&v, a + 2 * i, 2); return v; }
	case MUSE_KV_U32: { uint32_t v; memcpy(&v, a + 4 * i, 4); return v; }
	case MUSE_KV_I32: { int32_t v; memcpy(&v, a + 4 * i, 4); return v; }
	case MUSE_KV_U64: { uint64_t v; memcpy(&v, a + 8 * i, 8); return v > INT64_MAX ? -1 : (int64_t)v; }
	case MUSE_KV_I64: { int64_t v; memcpy(&v, a + 8 * i, 8); return v; }
	default: return -1;
	}
}

static int is_int_type(muse_kv_type t)
{
	return t == MUSE_KV_U8 || t == MUSE_KV_I8 || t == MUSE_KV_U16 || t == MUSE_KV_I16 || t == MUSE_KV_U32 ||
	       t == MUSE_KV_I32 || t == MUSE_KV_U64 || t == MUSE_KV_I64;
}

/* A bool key: 1/0, or -1 when absent or not a bool. */
static int get_bool(const muse_meta *m, const char *key)
{
	const muse_kv *kv = muse_meta_find(m, key);
	return kv && kv->type == MUSE_KV_BOOL ? kv->v.b : -1;
}

static json_t *added_token(int64_t id, const muse_str *s, int special)
{
	json_t *o = json_object();
	json_t *c = json_stringn(s->ptr, (size_t)s->len);
	if (!o || !c || json_object_set_new(o, "id", json_integer(id)) || json_object_set_new(o, "content", c) ||
	    json_object_set_new(o, "single_word", json_false()) || json_object_set_new(o, "lstrip", json_false()) ||
	    json_object_set_new(o, "rstrip", json_false()) || json_object_set_new(o, "normalized", json_false()) ||
	    json_object_set_new(o, "special", json_boolean(special))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* tokenizers' TemplateProcessing for [BOS] A [EOS] (either optional), as LlamaTokenizerFast builds it. */
static json_t *template_proc(const muse_str *bos, int64_t bos_id, const muse_str *eos, int64_t eos_id)
{
	json_t *single = json_array(), *pair = json_array(), *sp = json_object();
	json_t *tp = json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", single, "pair", pair,
			       "special_tokens", sp);
	if (!tp)
		return NULL;
	const muse_str *tok[2] = { bos, eos };
	int64_t ids[2] = { bos_id, eos_id };
	for (int seq = 0; seq < 2; seq++) {
		json_t *arr = seq ? pair : single;
		/* single: [BOS] A [EOS]; pair: [BOS] A [EOS] [BOS] B [EOS], B with type id 1 */
		for (int s = 0; s <= seq; s++) {
			const char *name = s ? "B" : "A";
			if (bos)
				json_array_append_new(arr, json_pack("{s:{s:s%, s:i}}", "SpecialToken", "id", bos->ptr,
								     (size_t)bos->len, "type_id", s));
			json_array_append_new(arr, json_pack("{s:{s:s, s:i}}", "Sequence", "id", name, "type_id", s));
			if (eos)
				json_array_append_new(arr, json_pack("{s:{s:s%, s:i}}", "SpecialToken", "id", eos->ptr,
								     (size_t)eos->len, "type_id", s));
		}
	}
	for (int k = 0; k < 2; k++) {
		if (!tok[k])
			continue;
		json_t *e = json_pack("{s:s%, s:[I], s:[s%]}", "id", tok[k]->ptr, (size_t)tok[k]->len, "ids",
				      (json_int_t)ids[k], "tokens", tok[k]->ptr, (size_t)tok[k]->len);
		if (!e || json_object_setn_new(sp, tok[k]->ptr, (size_t)tok[k]->len, e)) {
			json_decref(tp);
			return NULL;
		}
	}
	return tp;
}

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

muse_status muse_tokenizer_hf_build(const muse_meta *meta, const char *file, uint64_t ctx, json_t **tok_out,
				    json_t **cfg_out, muse_err *err)
{
	muse_status s = MUSE_OK;
	json_t *tok = NULL, *cfg = NULL, *vocab = NULL, *merges = NULL, *added = NULL, *pre = NULL;
	*tok_out = *cfg_out = NULL;

	const char *model = muse_meta_get_str(meta, "tokenizer.ggml.model");
	if (!model)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: no tokenizer.ggml.model key", file);
	if (strcmp(model, "gpt2"))
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: tokenizer model '%s' cannot be written as tokenizer.json yet (byte-level BPE, "
				    "\"gpt2\", only)", file, model);
	const char *pre_name = muse_meta_get_str(meta, "tokenizer.ggml.pre");
	if (!pre_name || !(pre = muse_tokenizer_hf_pre(pre_name)))
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: tokenizer.ggml.pre '%s' has no tokenizer.json pre-tokenizer in muse (llama-bpe, "
				    "qwen2, gpt-2, smollm)", file, pre_name ? pre_name : "(absent)");
	const muse_kv *tk = muse_meta_find(meta, "tokenizer.ggml.tokens");
	if (!tk || tk->type != MUSE_KV_ARRAY || tk->arr_type != MUSE_KV_STRING || !tk->n || tk->n > MAX_VOCAB) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.tokens is not an array of 1..%u strings", file,
				 MAX_VOCAB);
		goto done;
	}
	const muse_str *text = tk->arr;
	const muse_kv *ty = muse_meta_find(meta, "tokenizer.ggml.token_type");
	if (ty && (ty->type != MUSE_KV_ARRAY || !is_int_type(ty->arr_type) || ty->n != tk->n)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not %llu integers", file,
				 (unsigned long long)tk->n);
		goto done;
	}

	NOMEM(!(vocab = json_object()) || !(merges = json_array()) || !(added = json_array()));
	for (uint64_t i = 0; i < tk->n; i++) {
		int64_t t = ty ? arr_int(ty, i) : TT_NORMAL;
		const muse_str *w = &text[i];
		if (t == TT_UNUSED)
			continue; /* "[PADi]" holes: tokenizer_gguf.c writes them back for ids missing from the vocab */
		if (memchr(w->ptr, 0, (size_t)w->len)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: token %llu contains a NUL byte", file,
					 (unsigned long long)i);
			goto done;
		}
		if (t == TT_CONTROL || t == TT_USER_DEFINED) {
			json_t *a = added_token((int64_t)i, w, t == TT_CONTROL);
			if (!a) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: token %llu is not valid UTF-8", file,
						 (unsigned long long)i);
				goto done;
			}
			NOMEM(json_array_append_new(added, a));
		}
		/* A second token with the same text keeps its added_tokens entry but cannot share the vocab key. */
		if (json_object_getn(vocab, w->ptr, (size_t)w->len))
			continue;
		if (json_object_setn_new(vocab, w->ptr, (size_t)w->len, json_integer((json_int_t)i))) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: token %llu is not valid UTF-8", file,
					 (unsigned long long)i);
			goto done;
		}
	}
	const muse_kv *mk = muse_meta_find(meta, "tokenizer.ggml.merges");
	if (mk && (mk->type != MUSE_KV_ARRAY || mk->arr_type != MUSE_KV_STRING)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.merges is not an array of strings", file);
		goto done;
	}
	for (uint64_t i = 0; mk && i < mk->n; i++) {
		const muse_str *m = &((const muse_str *)mk->arr)[i];
		/* llama.cpp splits at the first space after the first byte (llama-vocab.cpp: find(' ', 1)). */
		const char *sp = m->len > 1 ? memchr(m->ptr + 1, ' ', (size_t)m->len - 1) : NULL;
		if (!sp) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] has no space", file,
					 (unsigned long long)i);
			goto done;
		}
		size_t la = (size_t)(sp - m->ptr);
		json_t *a = json_stringn(m->ptr, la), *b = json_stringn(sp + 1, (size_t)m->len - la - 1);
		json_t *pair = a && b ? json_pack("[oo]", a, b) : NULL;
		if (!pair) {
			json_decref(a);
			json_decref(b);
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is not valid UTF-8", file,
					 (unsigned long long)i);
			goto done;
		}
		NOMEM(json_array_append_new(merges, pair));
	}

	/* Special tokens: ids inside the vocabulary only (a stale id would name no token). */
	static const char *const kinds[] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask" };
	static const char *const keys[] = {
		"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
		"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
		"tokenizer.ggml.mask_token_id",
	};
	const muse_str *sp_text[7] = { 0 };
	int64_t sp_id[7];
	for (int k = 0; k < 7; k++) {
		uint64_t id;
		sp_id[k] = -1;
		if (muse_meta_get_u64(meta, keys[k], &id) && id < tk->n) {
			sp_id[k] = (int64_t)id;
			sp_text[k] = &text[id];
		}
	}
	int add_bos = get_bool(meta, "tokenizer.ggml.add_bos_token");
	int add_eos = get_bool(meta, "tokenizer.ggml.add_eos_token");
	json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
			       "use_regex", 1);
	json_t *post = bl;
	if ((add_bos == 1 && sp_text[0]) || (add_eos == 1 && sp_text[1])) {
		json_t *tp = template_proc(add_bos == 1 ? sp_text[0] : NULL, sp_id[0], add_eos == 1 ? sp_text[1] : NULL,
					   sp_id[1]);
		post = tp && bl ? json_pack("{s:s, s:[oo]}", "type", "Sequence", "processors", bl, tp) : NULL;
		if (!post) {
			json_decref(tp);
			json_decref(bl);
		}
	}
	NOMEM(!post);
	json_t *decoder = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets",
				    1, "use_regex", 1);
	json_t *bpe = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
				"continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
				"ignore_merges", 0, "vocab", vocab, "merges", merges);
	vocab = merges = NULL; /* "o" stole them, even on failure */
	tok = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation", "padding",
			"added_tokens", added, "normalizer", "pre_tokenizer", pre, "post_processor", post, "decoder",
			decoder, "model", bpe);
	added = pre = NULL;
	NOMEM(!tok);

	NOMEM(!(cfg = json_object()));
	if (add_bos >= 0)
		NOMEM(json_object_set_new(cfg, "add_bos_token", json_boolean(add_bos)));
	if (add_eos >= 0)
		NOMEM(json_object_set_new(cfg, "add_eos_token", json_boolean(add_eos)));
	int asp = get_bool(meta, "tokenizer.ggml.add_space_prefix");
	if (asp >= 0)
		NOMEM(json_object_set_new(cfg, "add_prefix_space", json_boolean(asp)));
	for (int k = 0; k < 7; k++) {
		char key[32];
		if (!sp_text[k])
			continue;
		snprintf(key, sizeof key, "%s_token", kinds[k]);
		NOMEM(json_object_set_new(cfg, key, json_stringn(sp_text[k]->ptr, (size_t)sp_text[k]->len)));
	}
	const muse_kv *ct = muse_meta_find(meta, "tokenizer.chat_template");
	if (ct && ct->type == MUSE_KV_STRING) {
		json_t *c = json_stringn(ct->v.s.ptr, (size_t)ct->v.s.len);
		if (!c) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.chat_template is not valid UTF-8", file);
			goto done;
		}
		NOMEM(json_object_set_new(cfg, "chat_template", c));
	}
	NOMEM(json_object_set_new(cfg, "clean_up_tokenization_spaces", json_false()));
	if (ctx)
		NOMEM(json_object_set_new(cfg, "model_max_length", json_integer((json_int_t)ctx)));
	/* The generic class: it takes tokenizer.json as written, where model classes may rebuild parts of it. */
	NOMEM(json_object_set_new(cfg, "tokenizer_class", json_string("PreTrainedTokenizerFast")));

	*tok_out = tok;
	*cfg_out = cfg;
	tok = cfg = NULL;
done:
	json_decref(tok);
	json_decref(cfg);
	json_decref(vocab);
	json_decref(merges);
	json_decref(added);
	json_decref(pre);
	return s;
}
