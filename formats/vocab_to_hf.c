/* vocab_to_hf.c: GGUF tokenizer.* keys -> tokenizer.json + tokenizer_config.json (and tokenizer.model), the inverse of vocab_convert.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vocab_impl.h"
#include "vocab_to_hf.h"

#define MAX_VOCAB (1u << 24) /* the cap vocab_convert.c reads back */

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

/* ---- SentencePiece-style BPE (tokenizer.ggml.model "llama") ---- */

/* One candidate merge: token `id` (score) is the concatenation of tokens l and r (lengths in code points). */
typedef struct spm_merge {
	float score;
	int64_t id, l, r;
	uint64_t ll, lr;
} spm_merge;

/*
 * transformers' generate_merges order: the merged piece's score, highest
 * first (its id, lowest first, for equal scores: SentencePiece numbers
 * BPE pieces by score, so the two agree), then the left and the right
 * part's length in code points, then the parts' ids.
 */
static int merge_cmp(const void *pa, const void *pb)
{
	const spm_merge *a = pa, *b = pb;
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
#define CMP(f) if (a->f != b->f) return a->f < b->f ? -1 : 1
	CMP(id);
	CMP(ll);
	CMP(lr);
	CMP(l);
	CMP(r);
#undef CMP
	return 0;
}

static uint64_t utf8_chars(const char *p, size_t n)
{
	uint64_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)p[i] & 0xC0) != 0x80;
	return c;
}

/*
 * The merges HF's converter derives from a SentencePiece BPE vocabulary
 * (convert_slow_tokenizer's SentencePieceExtractor): every split of a
 * piece at a code point boundary into two pieces of the vocabulary is a
 * merge, ranked by the merged piece's score. vocab maps text -> id (the
 * first id of a text); scores may be NULL (all equal: id order).
 */
static muse_status spm_merges(const muse_kv *tk, const muse_kv *sc, json_t *vocab, json_t *merges, const char *file,
			      muse_err *err)
{
	const muse_str *text = tk->arr;
	spm_merge *m = NULL;
	size_t n = 0, cap = 0;
	muse_status s = MUSE_OK;
	for (uint64_t i = 0; i < tk->n; i++) {
		const muse_str *w = &text[i];
		json_t *self = json_object_getn(vocab, w->ptr, (size_t)w->len);
		if (!self || json_integer_value(self) != (json_int_t)i)
			continue; /* a duplicate text, or not in the vocab */
		float score = 0;
		if (sc)
			memcpy(&score, (const uint8_t *)sc->arr + 4 * i, 4);
		for (size_t k = 1; k < (size_t)w->len; k++) {
			if (((unsigned char)w->ptr[k] & 0xC0) == 0x80)
				continue; /* inside a code point */
			json_t *l = json_object_getn(vocab, w->ptr, k), *r = json_object_getn(vocab, w->ptr + k,
											   (size_t)w->len - k);
			if (!l || !r)
				continue;
			if (n == cap) {
				size_t nc = cap ? 2 * cap : 1024;
				spm_merge *g = nc > SIZE_MAX / sizeof *g ? NULL : realloc(m, nc * sizeof *g);
				if (!g) {
					s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", file);
					goto done;
				}
				m = g;
				cap = nc;
			}
			m[n++] = (spm_merge){ score, (int64_t)i, json_integer_value(l), json_integer_value(r),
					      utf8_chars(w->ptr, k), utf8_chars(w->ptr + k, (size_t)w->len - k) };
		}
	}
	if (n)
		qsort(m, n, sizeof *m, merge_cmp);
	for (size_t i = 0; i < n; i++) {
		const muse_str *a = &text[m[i].l], *b = &text[m[i].r];
		json_t *pair = json_pack("[s%s%]", a->ptr, (size_t)a->len, b->ptr, (size_t)b->len);
		if (!pair || json_array_append_new(merges, pair)) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", file);
			goto done;
		}
	}
done:
	free(m);
	return s;
}

/*
 * What transformers' LlamaTokenizer (legacy=False) writes for a
 * SentencePiece BPE: no normalizer, a Metaspace pre-tokenizer that turns
 * spaces into "▁" and prepends one to the text's start only
 * (add_space_prefix false: never), and the decoder undoing both with the
 * byte-fallback tokens fused back into UTF-8.
 */
static json_t *spm_pre(int prefix)
{
	return json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", "\xe2\x96\x81", "prepend_scheme",
			 prefix ? "first" : "never", "split", 0);
}

static json_t *spm_decoder(int prefix)
{
	json_t *seq = json_pack("[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}]", "type", "Replace", "pattern", "String",
				"\xe2\x96\x81", "content", " ", "type", "ByteFallback", "type", "Fuse");
	if (seq && prefix &&
	    json_array_append_new(seq, json_pack("{s:s, s:s, s:i, s:i}", "type", "Strip", "content", " ", "start", 1,
						 "stop", 0))) {
		json_decref(seq);
		return NULL;
	}
	return seq ? json_pack("{s:s, s:o}", "type", "Sequence", "decoders", seq) : NULL;
}

muse_status muse_vocab_meta_to_hf(const muse_meta *meta, const char *file, uint64_t ctx, json_t **tok_out,
				  json_t **cfg_out, muse_err *err)
{
	muse_status s = MUSE_OK;
	json_t *tok = NULL, *cfg = NULL, *vocab = NULL, *merges = NULL, *added = NULL, *pre = NULL;
	*tok_out = *cfg_out = NULL;

	const char *model = muse_meta_get_str(meta, "tokenizer.ggml.model");
	if (!model)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: no tokenizer.ggml.model key", file);
	int spm = !strcmp(model, "llama");
	if (strcmp(model, "gpt2") && !spm)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: tokenizer model '%s' cannot be written as tokenizer.json yet (byte-level BPE "
				    "\"gpt2\" and SentencePiece BPE \"llama\" only)", file, model);
	/* llama.cpp prepends a space to SentencePiece text unless add_space_prefix says not to. */
	int prefix = get_bool(meta, "tokenizer.ggml.add_space_prefix") != 0;
	const char *pre_name = muse_meta_get_str(meta, "tokenizer.ggml.pre");
	if (spm)
		pre = spm_pre(prefix);
	if (!pre && spm)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if (!spm && (!pre_name || !(pre = muse_vocab_pre_json(pre_name))))
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
	int has_bytes = 0;
	for (uint64_t i = 0; i < tk->n; i++) {
		int64_t t = ty ? arr_int(ty, i) : MUSE_TOKEN_NORMAL;
		const muse_str *w = &text[i];
		if (t == MUSE_TOKEN_UNUSED && !spm)
			continue; /* "[PADi]" holes: vocab_convert.c writes them back for ids missing from the vocab */
		if (t == MUSE_TOKEN_BYTE)
			has_bytes = 1;
		if (memchr(w->ptr, 0, (size_t)w->len)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: token %llu contains a NUL byte", file,
					 (unsigned long long)i);
			goto done;
		}
		/* SentencePiece's unknown piece is a special added token in HF's conversion too. */
		if (t == MUSE_TOKEN_CONTROL || t == MUSE_TOKEN_USER_DEFINED || (spm && t == MUSE_TOKEN_UNKNOWN)) {
			json_t *a = added_token((int64_t)i, w, t != MUSE_TOKEN_USER_DEFINED);
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
	const muse_kv *sc = muse_meta_find(meta, "tokenizer.ggml.scores");
	if (spm && sc && (sc->type != MUSE_KV_ARRAY || sc->arr_type != MUSE_KV_F32 || sc->n != tk->n)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.scores is not %llu f32 values", file,
				 (unsigned long long)tk->n);
		goto done;
	}
	/* SentencePiece GGUFs carry scores, not merges: the merges come from the scores, as HF derives them. */
	if (spm && (s = spm_merges(tk, sc, vocab, merges, file, err)))
		goto done;
	for (uint64_t i = 0; mk && !spm && i < mk->n; i++) {
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
	if (spm && add_bos < 0)
		add_bos = 1; /* llama.cpp's default for SentencePiece vocabularies */
	json_t *bl = spm ? json_null()
			 : json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets",
				     0, "use_regex", 1);
	json_t *post = bl;
	if ((add_bos == 1 && sp_text[0]) || (add_eos == 1 && sp_text[1])) {
		json_t *tp = template_proc(add_bos == 1 ? sp_text[0] : NULL, sp_id[0], add_eos == 1 ? sp_text[1] : NULL,
					   sp_id[1]);
		if (spm) {
			json_decref(bl);
			post = tp;
		} else {
			post = tp && bl ? json_pack("{s:s, s:[oo]}", "type", "Sequence", "processors", bl, tp) : NULL;
			if (!post) {
				json_decref(tp);
				json_decref(bl);
			}
		}
	}
	NOMEM(!post);
	json_t *decoder = spm ? spm_decoder(prefix)
			      : json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
					  "trim_offsets", 1, "use_regex", 1);
	/* unk_token: SentencePiece's <unk> for what byte fallback cannot spell (nothing, when all 256 bytes exist) */
	json_t *unk = spm && sp_text[2] ? json_stringn(sp_text[2]->ptr, (size_t)sp_text[2]->len) : json_null();
	json_t *bpe = json_pack("{s:s, s:n, s:o, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
				"unk_token", unk, "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", spm,
				"byte_fallback", spm && has_bytes, "ignore_merges", 0, "vocab", vocab, "merges", merges);
	vocab = merges = NULL; /* "o" stole them, even on failure */
	tok = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o*, s:o}", "version", "1.0", "truncation", "padding",
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

/* ---- tokenizer.model (SentencePiece ModelProto) ---- */

typedef struct pbuf {
	uint8_t *p;
	size_t n, cap;
	int oom;
} pbuf;

static void pb_put(pbuf *b, const void *d, size_t n)
{
	if (b->oom)
		return;
	if (n > b->cap - b->n) {
		size_t nc = b->cap ? b->cap : 4096;
		while (nc - b->n < n && nc < SIZE_MAX / 2)
			nc *= 2;
		uint8_t *g = nc - b->n >= n ? realloc(b->p, nc) : NULL;
		if (!g) {
			b->oom = 1;
			return;
		}
		b->p = g;
		b->cap = nc;
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

/* A varint; int32 fields hold negative values as their 64-bit two's complement, as protobuf writes them. */
static void pb_varint(pbuf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	pb_put(b, t, n);
}

static void pb_int(pbuf *b, unsigned field, int64_t v)
{
	pb_varint(b, (uint64_t)field << 3);
	pb_varint(b, (uint64_t)v);
}

static void pb_bytes(pbuf *b, unsigned field, const void *d, size_t n)
{
	pb_varint(b, (uint64_t)field << 3 | 2);
	pb_varint(b, n);
	pb_put(b, d, n);
}

muse_status muse_vocab_meta_to_spm(const muse_meta *meta, const char *file, uint8_t **out, size_t *out_len,
				   muse_err *err)
{
	*out = NULL;
	*out_len = 0;
	const char *model = muse_meta_get_str(meta, "tokenizer.ggml.model");
	const muse_kv *tk = muse_meta_find(meta, "tokenizer.ggml.tokens");
	const muse_kv *ty = muse_meta_find(meta, "tokenizer.ggml.token_type");
	const muse_kv *sc = muse_meta_find(meta, "tokenizer.ggml.scores");
	if (!model || strcmp(model, "llama") || !tk || tk->type != MUSE_KV_ARRAY || tk->arr_type != MUSE_KV_STRING ||
	    !tk->n || tk->n > MAX_VOCAB || !ty || ty->type != MUSE_KV_ARRAY || !is_int_type(ty->arr_type) ||
	    ty->n != tk->n || !sc || sc->type != MUSE_KV_ARRAY || sc->arr_type != MUSE_KV_F32 || sc->n != tk->n)
		return MUSE_OK;
	const muse_str *text = tk->arr;
	uint64_t unk, bos, eos, pad;
	int64_t ids[4] = { -1, -1, -1, -1 };
	if (!muse_meta_get_u64(meta, "tokenizer.ggml.unknown_token_id", &unk) || unk >= tk->n ||
	    arr_int(ty, unk) != MUSE_TOKEN_UNKNOWN)
		return MUSE_OK; /* SentencePiece refuses a model without its unknown piece */
	ids[0] = (int64_t)unk;
	if (muse_meta_get_u64(meta, "tokenizer.ggml.bos_token_id", &bos) && bos < tk->n)
		ids[1] = (int64_t)bos;
	if (muse_meta_get_u64(meta, "tokenizer.ggml.eos_token_id", &eos) && eos < tk->n)
		ids[2] = (int64_t)eos;
	/* pad only as a piece of its own: SentencePiece's ids name distinct control pieces */
	if (muse_meta_get_u64(meta, "tokenizer.ggml.padding_token_id", &pad) && pad < tk->n &&
	    arr_int(ty, pad) == MUSE_TOKEN_CONTROL && (int64_t)pad != ids[1] && (int64_t)pad != ids[2])
		ids[3] = (int64_t)pad;
	json_t *seen = json_object();
	pbuf b = { 0 }, piece = { 0 };
	int has_bytes = 0, ok = seen != NULL;
	for (uint64_t i = 0; ok && i < tk->n; i++) {
		const muse_str *w = &text[i];
		int64_t t = arr_int(ty, i);
		float f;
		memcpy(&f, (const uint8_t *)sc->arr + 4 * i, 4);
		/* SentencePiece wants unique non-empty UTF-8 pieces of its six types and finite scores */
		if (!w->len || memchr(w->ptr, 0, (size_t)w->len) || t < MUSE_TOKEN_NORMAL || t > MUSE_TOKEN_BYTE || !isfinite(f) ||
		    json_object_getn(seen, w->ptr, (size_t)w->len) ||
		    json_object_setn_new(seen, w->ptr, (size_t)w->len, json_true())) {
			ok = 0;
			break;
		}
		has_bytes |= t == MUSE_TOKEN_BYTE;
		piece.n = 0;
		pb_bytes(&piece, 1, w->ptr, (size_t)w->len);
		uint8_t fb[5] = { 2 << 3 | 5 };
		memcpy(fb + 1, &f, 4); /* fixed32, little-endian as on every host muse builds for */
		pb_put(&piece, fb, 5);
		if (t != MUSE_TOKEN_NORMAL)
			pb_int(&piece, 3, t);
		pb_bytes(&b, 1, piece.p, piece.n);
		ok = !piece.oom;
	}
	json_decref(seen);
	if (ok) {
		/* TrainerSpec: BPE, the vocabulary size, byte fallback and the special ids. */
		piece.n = 0;
		pb_int(&piece, 3, 2);
		pb_int(&piece, 4, (int64_t)tk->n);
		pb_int(&piece, 35, has_bytes);
		for (int k = 0; k < 4; k++)
			pb_int(&piece, 40 + (unsigned)k, ids[k]);
		pb_bytes(&b, 2, piece.p, piece.n);
		/*
		 * NormalizerSpec: what llama.cpp does with the text: no normalization,
		 * whitespace kept as it is and escaped to "▁", the space prefix as
		 * add_space_prefix says.
		 */
		piece.n = 0;
		pb_bytes(&piece, 1, "identity", 8);
		pb_int(&piece, 3, get_bool(meta, "tokenizer.ggml.add_space_prefix") != 0);
		pb_int(&piece, 4, 0);
		pb_int(&piece, 5, 1);
		pb_bytes(&b, 3, piece.p, piece.n);
	}
	free(piece.p);
	if (b.oom || piece.oom) {
		free(b.p);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", file);
	}
	if (!ok) {
		free(b.p);
		return MUSE_OK;
	}
	*out = b.p;
	*out_len = b.n;
	return MUSE_OK;
}
