/* calib.c: data files -> token ids -> samples, and the provenance (path, SHA-256, kind) that goes with them. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/path.h"
#include "../lib/checked.h"
#include "../lib/mapfile.h"
#include "calib.h"
#include "tokenizer.h"

muse_status muse_sha256_file(const char *path, char hex[65], muse_err *err)
{
	muse_map mp = { 0 };
	muse_status s = muse_map_open(path, &mp, err);
	if (s)
		return s;
	unsigned char md[32];
	unsigned int len = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) || !EVP_DigestUpdate(c, mp.data ? (const void *)mp.data : "", mp.size) ||
	    !EVP_DigestFinal_ex(c, md, &len)) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: SHA-256 failed", path);
	} else {
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
	}
	EVP_MD_CTX_free(c);
	muse_map_close(&mp);
	return s;
}

int32_t muse_calib_bos(const muse_model *m)
{
	const muse_meta *meta = muse_model_meta(m);
	uint64_t bos;
	if (!muse_meta_get_u64(meta, "tokenizer.ggml.bos_token_id", &bos) || bos >= (uint64_t)muse_model_hparams(m)->n_vocab)
		return -1;
	const muse_kv *kv = muse_meta_find(meta, "tokenizer.ggml.add_bos_token");
	bool add;
	if (kv && kv->type == MUSE_KV_BOOL) {
		add = kv->v.b;
	} else {
		/* llama.cpp's defaults when the key is absent: SentencePiece vocabularies and Llama-3-style BPE add BOS. */
		const char *model = muse_meta_get_str(meta, "tokenizer.ggml.model");
		const char *pre = muse_meta_get_str(meta, "tokenizer.ggml.pre");
		add = (model && !strcmp(model, "llama")) ||
		      (pre && (!strcmp(pre, "llama3") || !strcmp(pre, "llama-v3") || !strcmp(pre, "llama-bpe") ||
			       !strcmp(pre, "falcon3")));
	}
	return add ? (int32_t)bos : -1;
}

/* Decimal ids separated by whitespace, commas or brackets. */
muse_status muse_calib_parse_ids(const char *path, const uint8_t *p, size_t n, int32_t **ids, size_t *n_ids, muse_err *err)
{
	size_t cap = 0, k = 0;
	int32_t *v = NULL;
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		if (isspace(c) || c == ',' || c == '[' || c == ']') {
			i++;
			continue;
		}
		if (!isdigit(c)) {
			free(v);
			return muse_err_at(err, MUSE_ERR_FORMAT, path, i, "expected a token id, found byte 0x%02x", c);
		}
		size_t start = i;
		uint64_t val = 0;
		while (i < n && isdigit(p[i])) {
			val = val * 10 + (uint64_t)(p[i] - '0');
			if (val > INT32_MAX) {
				free(v);
				return muse_err_at(err, MUSE_ERR_FORMAT, path, start, "token id above %d", INT32_MAX);
			}
			i++;
		}
		if (k == cap) {
			size_t nc = cap ? cap * 2 : 4096;
			int32_t *nv = nc < ((size_t)1 << 40) ? realloc(v, nc * sizeof *v) : NULL;
			if (!nv) {
				free(v);
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			}
			v = nv;
			cap = nc;
		}
		v[k++] = (int32_t)val;
	}
	*ids = v;
	*n_ids = k;
	return MUSE_OK;
}

/* JSONL: the "text" field of every line, joined with blank lines. */
muse_status muse_calib_jsonl_text(const char *path, const uint8_t *p, size_t n, char **out, size_t *out_len, muse_err *err)
{
	size_t cap = n + 1, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	size_t line = 0;
	for (size_t i = 0; i < n;) {
		size_t e = i;
		while (e < n && p[e] != '\n')
			e++;
		line++;
		size_t a = i;
		while (a < e && isspace(p[a]))
			a++;
		if (a < e) {
			json_error_t je;
			json_t *o = json_loadb((const char *)p + i, e - i, JSON_REJECT_DUPLICATES, &je);
			json_t *t = o ? json_object_get(o, "text") : NULL;
			if (!o || !json_is_string(t)) {
				json_decref(o);
				free(buf);
				return muse_err_at(err, MUSE_ERR_FORMAT, path, i, "line %zu: %s", line,
						   o ? "no string field \"text\"" : je.text);
			}
			size_t tl = json_string_length(t), need = len + tl + 2;
			if (need > cap) {
				char *nb = realloc(buf, need);
				if (!nb) {
					json_decref(o);
					free(buf);
					return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				}
				buf = nb;
				cap = need;
			}
			if (len) {
				buf[len++] = '\n';
				buf[len++] = '\n';
			}
			memcpy(buf + len, json_string_value(t), tl);
			len += tl;
			json_decref(o);
		}
		i = e + 1;
	}
	*out = buf;
	*out_len = len;
	return MUSE_OK;
}

muse_status muse_calib_load(muse_model *m, const char *path, const char *kind, int32_t **ids, size_t *n_ids,
			    muse_calib_source *src, muse_err *err)
{
	muse_map mp = { 0 };
	muse_tokenizer *tok = NULL;
	char *text = NULL;
	size_t text_len = 0;
	muse_status s;
	*ids = NULL;
	*n_ids = 0;
	memset(src, 0, sizeof *src);
	if (!kind)
		kind = muse_ends_with(path, ".jsonl") ? "jsonl" : "text";
	if (strcmp(kind, "text") && strcmp(kind, "jsonl") && strcmp(kind, "tokens"))
		return muse_err_set(err, MUSE_ERR_USAGE, "data kind '%s' is not text, jsonl or tokens", kind);
	snprintf(src->path, sizeof src->path, "%s", path);
	snprintf(src->kind, sizeof src->kind, "%s", kind);
	if ((s = muse_sha256_file(path, src->sha256, err)) || (s = muse_map_open(path, &mp, err)))
		return s;
	const uint8_t *p = mp.data;
	size_t n = (size_t)mp.size;
	if (!strcmp(kind, "tokens")) {
		if ((s = muse_calib_parse_ids(path, p, n, ids, n_ids, err)))
			goto done;
		for (size_t i = 0; i < *n_ids; i++)
			if ((*ids)[i] >= muse_model_hparams(m)->n_vocab) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: token %zu: id %d is outside the vocabulary (0..%lld)",
						 path, i, (*ids)[i], (long long)muse_model_hparams(m)->n_vocab - 1);
				goto done;
			}
		src->n_tokens = *n_ids;
		goto done;
	}
	if (!strcmp(kind, "jsonl")) {
		if ((s = muse_calib_jsonl_text(path, p, n, &text, &text_len, err)))
			goto done;
	}
	/* The tokenizer: GGUF tokenizer.* keys, or the HF directory's files. */
	const char *mp_path = muse_model_path(m);
	if (muse_meta_find(muse_model_meta(m), "tokenizer.ggml.model"))
		s = muse_tokenizer_from_meta(muse_model_meta(m), mp_path, &tok, err);
	else
		s = muse_tokenizer_from_dir(mp_path, &tok, err);
	if (s) {
		muse_err_prefix(err, "cannot tokenize %s (pass token ids with --tokens)", path);
		goto done;
	}
	if ((s = muse_tokenizer_encode(tok, text ? text : (const char *)p, text ? text_len : n, true, false, ids, n_ids,
				       err)))
		goto done;
	src->n_tokens = *n_ids;
done:
	if (s) {
		free(*ids);
		*ids = NULL;
		*n_ids = 0;
	}
	muse_tokenizer_free(tok);
	free(text);
	muse_map_close(&mp);
	return s;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

muse_status muse_calib_cut(const int32_t *ids, size_t n_ids, int64_t *n_samples, int64_t seq_len, uint64_t seed,
			   int32_t bos, int32_t **out, muse_err *err)
{
	*out = NULL;
	if (seq_len < 1)
		return muse_err_set(err, MUSE_ERR_USAGE, "sequence length %lld is not positive", (long long)seq_len);
	size_t windows = n_ids / (size_t)seq_len;
	if (*n_samples < 0)
		return muse_err_set(err, MUSE_ERR_USAGE, "sample count %lld is negative", (long long)*n_samples);
	if (*n_samples == 0)
		*n_samples = (int64_t)windows;
	if (!windows)
		return muse_err_set(err, MUSE_ERR_FORMAT, "the data has %zu tokens, not one whole sample of %lld", n_ids,
				    (long long)seq_len);
	if ((uint64_t)*n_samples > windows)
		return muse_err_set(err, MUSE_ERR_USAGE,
				    "the data has %zu tokens: %zu samples of %lld tokens, fewer than the %lld asked for",
				    n_ids, windows, (long long)seq_len, (long long)*n_samples);
	size_t *order = malloc(windows * sizeof *order);
	size_t total;
	if (!order || !muse_mul_size((size_t)*n_samples, (size_t)seq_len, &total) || !(*out = malloc(total * sizeof **out))) {
		free(order);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < windows; i++)
		order[i] = i;
	if (seed) {
		uint64_t st = seed;
		for (size_t i = windows - 1; i > 0; i--) {
			size_t j = (size_t)(splitmix64(&st) % (uint64_t)(i + 1));
			size_t t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
	}
	for (int64_t k = 0; k < *n_samples; k++) {
		memcpy(*out + (size_t)k * (size_t)seq_len, ids + order[k] * (size_t)seq_len, (size_t)seq_len * sizeof **out);
		if (bos >= 0)
			(*out)[(size_t)k * (size_t)seq_len] = bos;
	}
	free(order);
	return MUSE_OK;
}
