/* safetensors_write.c: the streaming safetensors writer (layout and byte format in safetensors.h). */
#include "safetensors.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/checked.h"
#include "../lib/kv.h"
#include "../lib/outfile.h"
#include "../lib/strmap.h"
#include "../lib/tensor.h"
#include "../lib/utf8.h"

#define ST_MAX_HEADER 100000000ull /* what every reader accepts (the reference's MAX_HEADER_SIZE) */

typedef struct st_wtensor {
	char *name;
	muse_dtype dtype;
	int ndim;
	uint64_t shape[MUSE_MAX_DIMS];
	uint64_t nbytes;
	size_t shard;
	uint64_t file_offset; /* absolute offset of its data in the shard file */
	uint64_t done;        /* bytes received so far */
} st_wtensor;

enum { SHARD_PLANNED, SHARD_OPEN, SHARD_FINISHED, SHARD_PUBLISHED };

typedef struct st_wshard {
	char *path;      /* final name */
	char *header;    /* 8-byte length + padded JSON, freed once written */
	uint64_t header_len, file_size;
	size_t left;     /* tensors not yet complete */
	int state;
	muse_outfile out;
} st_wshard;

enum { PHASE_DECLARE, PHASE_WRITE, PHASE_DONE, PHASE_FAILED };

struct muse_st_writer {
	char *path;
	uint64_t max_shard_bytes;
	st_wtensor *t;
	size_t n, cap;
	muse_strmap names; /* keys borrow t[i].name */
	muse_meta meta;
	st_wshard *shards;
	size_t n_shards;
	char *index_path;
	size_t cur;
	int phase;
};

/* ---- growable text buffer for the JSON we emit ---- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void sb_put(sbuf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_u64(sbuf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
	sb_put(b, tmp, (size_t)n);
}

/* A JSON string as serde_json writes it: short escapes, \u00xx for other controls, UTF-8 kept raw. */
static void sb_json_serde(sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	sb_put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[7] = { '\\', 0 };
		size_t n = 2;
		switch (*p) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\b': e[1] = 'b'; break;
		case '\f': e[1] = 'f'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case '\t': e[1] = 't'; break;
		default:
			if (*p >= 0x20) {
				sb_put(b, p, 1);
				continue;
			}
			memcpy(e + 1, "u00", 3);
			e[4] = hex[*p >> 4];
			e[5] = hex[*p & 15];
			n = 6;
		}
		sb_put(b, e, n);
	}
	sb_put(b, "\"", 1);
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii): everything outside ' '..'~' escaped. */
static void sb_json_py(sbuf *b, const char *s)
{
	sb_put(b, "\"", 1);
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		uint32_t c = *p;
		size_t n = 1;
		if (c >= 0x80) { /* already validated UTF-8 */
			n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
			c &= n == 4 ? 0x07 : n == 3 ? 0x0F : 0x1F;
			for (size_t i = 1; i < n; i++)
				c = c << 6 | (p[i] & 0x3F);
		}
		p += n;
		char e[16];
		switch (c) {
		case '"': sb_str(b, "\\\""); continue;
		case '\\': sb_str(b, "\\\\"); continue;
		case '\b': sb_str(b, "\\b"); continue;
		case '\f': sb_str(b, "\\f"); continue;
		case '\n': sb_str(b, "\\n"); continue;
		case '\r': sb_str(b, "\\r"); continue;
		case '\t': sb_str(b, "\\t"); continue;
		}
		if (c >= 0x20 && c <= 0x7e) {
			char ch = (char)c;
			sb_put(b, &ch, 1);
		} else if (c < 0x10000) {
			snprintf(e, sizeof e, "\\u%04x", c);
			sb_str(b, e);
		} else {
			c -= 0x10000;
			snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
			sb_str(b, e);
		}
	}
	sb_put(b, "\"", 1);
}

/* ---- declarations ---- */

muse_status muse_st_writer_create(muse_st_writer **out, const char *path, uint64_t max_shard_bytes, muse_err *err)
{
	*out = NULL;
	muse_st_writer *w = calloc(1, sizeof *w);
	if (!w || !(w->path = strdup(path))) {
		free(w);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	w->max_shard_bytes = max_shard_bytes;
	muse_strmap_init(&w->names);
	muse_meta_init(&w->meta);
	/* What save_pretrained writes: accelerate warns and "defaults to 'pt'" when it is missing. */
	if (muse_meta_set_str(&w->meta, "format", "pt")) {
		muse_st_writer_free(w);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	*out = w;
	return MUSE_OK;
}

static muse_status fail(muse_st_writer *w, muse_status s)
{
	w->phase = PHASE_FAILED;
	return s;
}

static muse_status check_phase(muse_st_writer *w, int phase, const char *what, muse_err *err)
{
	if (w->phase == phase)
		return MUSE_OK;
	return muse_err_set(err, MUSE_ERR_USAGE, "%s: %s: %s", w->path, what,
			    w->phase == PHASE_FAILED ? "the writer already failed" : "called out of order");
}

/* Bits per element; the reference sizes tensors in bits so F4/F6 must fill whole bytes. */
static uint64_t dtype_bits(muse_dtype t)
{
	const muse_dtype_traits *tr = muse_dtype_info(t);
	return (uint64_t)tr->block_bytes * 8 / tr->blck;
}

muse_status muse_st_writer_add_tensor(muse_st_writer *w, const char *name, muse_dtype dtype, int ndim,
				      const uint64_t *shape, muse_err *err)
{
	muse_status s = check_phase(w, PHASE_DECLARE, "add_tensor", err);
	if (s)
		return s;
	size_t len = strlen(name);
	const muse_dtype_traits *tr = muse_dtype_info(dtype);
	if (len > MUSE_MAX_NAME || !muse_utf8_valid(name, len) || !strcmp(name, "__metadata__"))
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%.200s': name is %s", w->path, name,
				    len > MUSE_MAX_NAME ? "too long" : !strcmp(name, "__metadata__") ? "reserved"
				    : "not valid UTF-8");
	if (!tr || !tr->st_name)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%.200s': dtype %s has no safetensors name",
				    w->path, name, muse_dtype_name(dtype));
	if (ndim < 0 || ndim > MUSE_MAX_DIMS || (ndim && !shape))
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%.200s': rank %d is outside 0..%d", w->path,
				    name, ndim, MUSE_MAX_DIMS);
	uint64_t nel, nbits;
	if (!muse_product_u64(shape, ndim, &nel) || !muse_mul_u64(nel, dtype_bits(dtype), &nbits))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%.200s': size overflows 64 bits", w->path, name);
	if (nbits % 8)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%.200s': %llu %s elements are not whole bytes",
				    w->path, name, (unsigned long long)nel, tr->name);
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		st_wtensor *t = realloc(w->t, cap * sizeof *t);
		if (!t)
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
		w->t = t;
		w->cap = cap;
	}
	st_wtensor *t = &w->t[w->n];
	memset(t, 0, sizeof *t);
	if (!(t->name = strdup(name)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
	int put = muse_strmap_put(&w->names, t->name, len, w->n, NULL);
	if (put <= 0) {
		free(t->name);
		return put < 0 ? muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path)
			       : muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%.200s' declared twice", w->path, name);
	}
	t->dtype = dtype;
	t->ndim = ndim;
	if (ndim)
		memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
	t->nbytes = nbits / 8;
	w->n++;
	return MUSE_OK;
}

muse_status muse_st_writer_set_meta(muse_st_writer *w, const char *key, const char *value, muse_err *err)
{
	muse_status s = check_phase(w, PHASE_DECLARE, "set_meta", err);
	if (s)
		return s;
	if (!muse_utf8_valid(key, strlen(key)) || !muse_utf8_valid(value, strlen(value)))
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: metadata '%.200s': not valid UTF-8", w->path, key);
	if (muse_meta_set_str(&w->meta, key, value))
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
	return MUSE_OK;
}

/* ---- planning ---- */

/* The reference's Dtype enum order (declared by increasing alignment); files list higher ranks first. */
static int st_rank(muse_dtype t)
{
	static const muse_dtype order[] = {
		MUSE_DT_BOOL, MUSE_DT_F4, MUSE_DT_F6_E2M3, MUSE_DT_F6_E3M2, MUSE_DT_U8, MUSE_DT_I8,
		MUSE_DT_F8_E5M2, MUSE_DT_F8_E4M3, MUSE_DT_F8_E8M0, MUSE_DT_F8_E4M3FNUZ, MUSE_DT_F8_E5M2FNUZ,
		MUSE_DT_I16, MUSE_DT_U16, MUSE_DT_F16, MUSE_DT_BF16, MUSE_DT_I32, MUSE_DT_U32, MUSE_DT_F32,
		MUSE_DT_C64, MUSE_DT_F64, MUSE_DT_I64, MUSE_DT_U64,
	};
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		if (order[i] == t)
			return (int)i;
	return -1;
}

static int file_order_cmp(const void *a, const void *b, void *arg)
{
	const st_wtensor *base = arg;
	const st_wtensor *x = &base[*(const size_t *)a], *y = &base[*(const size_t *)b];
	int rx = st_rank(x->dtype), ry = st_rank(y->dtype);
	if (rx != ry)
		return rx > ry ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int name_cmp(const void *a, const void *b, void *arg)
{
	const st_wtensor *base = arg;
	return strcmp(base[*(const size_t *)a].name, base[*(const size_t *)b].name);
}

/* huggingface_hub's greedy split; returns the shard count and sets t[i].shard. */
static size_t plan_shards(muse_st_writer *w, size_t *group_pos)
{
	size_t ngroups = 0, nplaced = 0;
	size_t cur = SIZE_MAX;
	uint64_t cur_size = 0, max = w->max_shard_bytes;
	/* group_pos[g] = position of group g in the shard list; groups enter the list when closed. */
	for (size_t i = 0; i < w->n; i++) {
		uint64_t sz = w->t[i].nbytes;
		if (max && sz > max) {
			group_pos[ngroups] = nplaced++;
			w->t[i].shard = ngroups++;
			continue;
		}
		if (max && cur != SIZE_MAX && sz > max - cur_size) {
			group_pos[cur] = nplaced++;
			cur = SIZE_MAX;
		}
		if (cur == SIZE_MAX) {
			cur = ngroups++;
			cur_size = 0;
		}
		w->t[i].shard = cur;
		cur_size += sz;
	}
	if (cur != SIZE_MAX)
		group_pos[cur] = nplaced++;
	for (size_t i = 0; i < w->n; i++)
		w->t[i].shard = group_pos[w->t[i].shard];
	return nplaced ? nplaced : 1; /* no tensors: one file with an empty header */
}

/* Builds shard sh's header over its tensors idx[0..k) (sorted here into file order) and sets their offsets. */
static muse_status build_header(muse_st_writer *w, st_wshard *sh, size_t *idx, size_t k, muse_err *err)
{
	if (k)
		qsort_r(idx, k, sizeof *idx, file_order_cmp, w->t);
	sbuf b = { 0 };
	sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
	bool first = true;
	if (w->meta.n) {
		sb_str(&b, "\"__metadata__\":{");
		for (size_t i = 0; i < w->meta.n; i++) {
			if (i)
				sb_put(&b, ",", 1);
			sb_json_serde(&b, w->meta.kv[i].key);
			sb_put(&b, ":", 1);
			sb_json_serde(&b, w->meta.kv[i].v.s.ptr);
		}
		sb_put(&b, "}", 1);
		first = false;
	}
	uint64_t off = 0;
	for (size_t j = 0; j < k; j++) {
		st_wtensor *t = &w->t[idx[j]];
		if (!first)
			sb_put(&b, ",", 1);
		first = false;
		sb_json_serde(&b, t->name);
		sb_str(&b, ":{\"dtype\":\"");
		sb_str(&b, muse_dtype_info(t->dtype)->st_name);
		sb_str(&b, "\",\"shape\":[");
		for (int d = 0; d < t->ndim; d++) {
			if (d)
				sb_put(&b, ",", 1);
			sb_u64(&b, t->shape[d]);
		}
		sb_str(&b, "],\"data_offsets\":[");
		sb_u64(&b, off);
		sb_put(&b, ",", 1);
		if (!muse_add_u64(off, t->nbytes, &off)) {
			free(b.p);
			return muse_err_set(err, MUSE_ERR_LIMIT, "%s: shard data size overflows 64 bits", sh->path);
		}
		sb_u64(&b, off);
		sb_str(&b, "]}");
		t->file_offset = off - t->nbytes; /* relative for now; made absolute below */
	}
	sb_put(&b, "}", 1);
	while ((b.len - 8) % 8)
		sb_put(&b, " ", 1);
	if (b.oom) {
		free(b.p);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", sh->path);
	}
	uint64_t n = b.len - 8;
	if (n > ST_MAX_HEADER) {
		free(b.p);
		return muse_err_set(err, MUSE_ERR_LIMIT,
				    "%s: header would be %llu bytes, above the %llu bytes readers accept; use more shards",
				    sh->path, (unsigned long long)n, ST_MAX_HEADER);
	}
	for (int i = 0; i < 8; i++)
		b.p[i] = (char)(n >> (8 * i) & 0xFF);
	for (size_t j = 0; j < k; j++)
		w->t[idx[j]].file_offset += b.len;
	sh->header = b.p;
	sh->header_len = b.len;
	if (!muse_add_u64(b.len, off, &sh->file_size))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: file size overflows 64 bits", sh->path);
	return MUSE_OK;
}

static muse_status shard_open(muse_st_writer *w, st_wshard *sh, muse_err *err)
{
	if (sh->state != SHARD_PLANNED)
		return MUSE_OK;
	muse_status s = muse_out_open(&sh->out, sh->path, err);
	if (s)
		return s;
	sh->state = SHARD_OPEN;
	/*
	 * Tensors arrive in declaration order but sit in the file in dtype/name
	 * order, so the file is sized up front (sparse, no zero-fill pass) and
	 * every piece is written at its place.
	 */
	if (ftruncate(sh->out.fd, (off_t)sh->file_size) < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot size output to %llu bytes: %s", sh->path,
				    (unsigned long long)sh->file_size, strerror(errno));
	s = muse_out_pwrite(&sh->out, sh->header, (size_t)sh->header_len, 0, err);
	free(sh->header);
	sh->header = NULL;
	return s;
}

static muse_status shard_finish(muse_st_writer *w, st_wshard *sh, muse_err *err)
{
	muse_status s = shard_open(w, sh, err);
	if (s)
		return s;
	if (sh->state != SHARD_OPEN)
		return MUSE_OK;
	s = muse_out_finish(&sh->out, err);
	if (!s)
		sh->state = SHARD_FINISHED;
	return s;
}

muse_status muse_st_writer_begin(muse_st_writer *w, muse_err *err)
{
	muse_status s = check_phase(w, PHASE_DECLARE, "begin", err);
	if (s)
		return s;
	size_t *tmp = malloc((w->n ? w->n : 1) * sizeof *tmp);
	size_t *fill = NULL;
	if (!tmp)
		return fail(w, muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path));
	w->n_shards = plan_shards(w, tmp);
	w->shards = calloc(w->n_shards, sizeof *w->shards);
	fill = calloc(w->n_shards + 1, sizeof *fill);
	if (!w->shards || !fill) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
		goto out;
	}
	for (size_t i = 0; i < w->n_shards; i++) {
		w->shards[i].out = (muse_outfile)MUSE_OUTFILE_INIT;
		w->shards[i].state = SHARD_PLANNED;
	}

	/* Names: one shard keeps `path`; several follow HF's model-00001-of-00003.safetensors pattern. */
	if (w->n_shards == 1) {
		w->shards[0].path = strdup(w->path);
		if (!w->shards[0].path) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
			goto out;
		}
	} else {
		size_t plen = strlen(w->path), stem = plen;
		static const char suf[] = ".safetensors";
		if (plen >= sizeof suf - 1 && !strcmp(w->path + plen - (sizeof suf - 1), suf))
			stem = plen - (sizeof suf - 1);
		size_t cap = stem + 64;
		w->index_path = malloc(stem + sizeof suf + 11);
		if (w->index_path)
			sprintf(w->index_path, "%.*s%s.index.json", (int)stem, w->path, suf);
		for (size_t i = 0; i < w->n_shards && w->index_path; i++) {
			if (!(w->shards[i].path = malloc(cap)))
				break;
			snprintf(w->shards[i].path, cap, "%.*s-%05zu-of-%05zu.safetensors", (int)stem, w->path, i + 1,
				 w->n_shards);
		}
		if (!w->index_path || !w->shards[w->n_shards - 1].path) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
			goto out;
		}
	}

	/* Bucket tensor indices by shard (counting sort keeps declaration order inside a shard). */
	for (size_t i = 0; i < w->n; i++)
		fill[w->t[i].shard + 1]++;
	for (size_t i = 0; i < w->n_shards; i++) {
		w->shards[i].left = fill[i + 1];
		fill[i + 1] += fill[i];
	}
	for (size_t i = 0; i < w->n; i++)
		tmp[fill[w->t[i].shard]++] = i;
	size_t start = 0;
	for (size_t i = 0; i < w->n_shards; i++) {
		size_t k = w->shards[i].left;
		s = build_header(w, &w->shards[i], tmp + start, k, err);
		if (s)
			goto out;
		start += k;
	}
	w->phase = PHASE_WRITE;
	w->cur = 0;
	/* Open the first output now so a bad directory or permission shows up before any work is done. */
	s = shard_open(w, &w->shards[w->n ? w->t[0].shard : 0], err);
out:
	free(tmp);
	free(fill);
	return s ? fail(w, s) : MUSE_OK;
}

/* ---- data ---- */

/* Closes tensor i: it must be complete; its shard is finished when it was the shard's last. */
static muse_status close_tensor(muse_st_writer *w, size_t i, muse_err *err)
{
	st_wtensor *t = &w->t[i];
	if (t->done != t->nbytes)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%.200s': got %llu of its %llu bytes",
				    w->shards[t->shard].path, t->name, (unsigned long long)t->done,
				    (unsigned long long)t->nbytes);
	st_wshard *sh = &w->shards[t->shard];
	if (--sh->left == 0)
		return shard_finish(w, sh, err);
	return MUSE_OK;
}

muse_status muse_st_writer_write(muse_st_writer *w, size_t idx, const void *data, size_t n, muse_err *err)
{
	muse_status s = check_phase(w, PHASE_WRITE, "write", err);
	if (s)
		return s;
	if (idx >= w->n || idx < w->cur)
		return fail(w, muse_err_set(err, MUSE_ERR_USAGE, "%s: write to tensor %zu: %s", w->path, idx,
					    idx >= w->n ? "no such tensor" : "tensors are written in declaration order"));
	for (; w->cur < idx; w->cur++)
		if ((s = close_tensor(w, w->cur, err)))
			return fail(w, s);
	st_wtensor *t = &w->t[idx];
	st_wshard *sh = &w->shards[t->shard];
	if (n > t->nbytes - t->done)
		return fail(w, muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%.200s': %llu bytes written, it holds %llu",
					    sh->path, t->name, (unsigned long long)(t->done + n),
					    (unsigned long long)t->nbytes));
	if (!n)
		return MUSE_OK;
	if ((s = shard_open(w, sh, err)))
		return fail(w, s);
	if ((s = muse_out_pwrite(&sh->out, data, n, t->file_offset + t->done, err)))
		return fail(w, s);
	t->done += n;
	return MUSE_OK;
}

/* Python's json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers writes it. */
static muse_status write_index(muse_st_writer *w, muse_err *err)
{
	size_t *idx = malloc((w->n ? w->n : 1) * sizeof *idx);
	if (!idx)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->index_path);
	uint64_t total = 0;
	bool wrap = false;
	for (size_t i = 0; i < w->n; i++) {
		idx[i] = i;
		wrap |= !muse_add_u64(total, w->t[i].nbytes, &total);
	}
	if (wrap) {
		free(idx);
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: total size overflows 64 bits", w->index_path);
	}
	if (w->n)
		qsort_r(idx, w->n, sizeof *idx, name_cmp, w->t);
	sbuf b = { 0 };
	sb_str(&b, "{\n  \"metadata\": {\n    \"total_size\": ");
	sb_u64(&b, total);
	sb_str(&b, "\n  },\n  \"weight_map\": {");
	for (size_t j = 0; j < w->n; j++) {
		const st_wtensor *t = &w->t[idx[j]];
		const char *path = w->shards[t->shard].path, *base = strrchr(path, '/');
		sb_str(&b, j ? ",\n    " : "\n    ");
		sb_json_py(&b, t->name);
		sb_str(&b, ": ");
		sb_json_py(&b, base ? base + 1 : path);
	}
	sb_str(&b, w->n ? "\n  }\n}\n" : "}\n}\n");
	free(idx);
	if (b.oom) {
		free(b.p);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->index_path);
	}
	muse_status s = muse_out_write_file(w->index_path, b.p, b.len, err);
	free(b.p);
	return s;
}

muse_status muse_st_writer_finish(muse_st_writer *w, muse_err *err)
{
	muse_status s = check_phase(w, PHASE_WRITE, "finish", err);
	if (s)
		return s;
	for (; w->cur < w->n; w->cur++)
		if ((s = close_tensor(w, w->cur, err)))
			return fail(w, s);
	for (size_t i = 0; i < w->n_shards; i++)
		if ((s = shard_finish(w, &w->shards[i], err)))
			return fail(w, s);
	/* All data is on disk under temp names; now the final names appear, the index last. */
	for (size_t i = 0; i < w->n_shards && !s; i++) {
		s = muse_out_publish(&w->shards[i].out, err);
		if (!s)
			w->shards[i].state = SHARD_PUBLISHED;
	}
	if (!s && w->index_path)
		s = write_index(w, err);
	if (s) {
		/* Take back what was published so no partial checkpoint stays behind. */
		for (size_t i = 0; i < w->n_shards; i++)
			if (w->shards[i].state == SHARD_PUBLISHED)
				unlink(w->shards[i].path);
		return fail(w, s);
	}
	w->phase = PHASE_DONE;
	return MUSE_OK;
}

void muse_st_writer_free(muse_st_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_shards; i++) {
		muse_out_abort(&w->shards[i].out);
		free(w->shards[i].path);
		free(w->shards[i].header);
	}
	free(w->shards);
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	muse_strmap_free(&w->names);
	muse_meta_free(&w->meta);
	free(w->index_path);
	free(w->path);
	free(w);
}

size_t muse_st_writer_n_tensors(const muse_st_writer *w)
{
	return w->n;
}

size_t muse_st_writer_n_shards(const muse_st_writer *w)
{
	return w->n_shards;
}

const char *muse_st_writer_shard_path(const muse_st_writer *w, size_t shard)
{
	return shard < w->n_shards ? w->shards[shard].path : NULL;
}

const char *muse_st_writer_index_path(const muse_st_writer *w)
{
	return w->index_path;
}

uint64_t muse_st_writer_tensor_bytes(const muse_st_writer *w, size_t idx)
{
	return idx < w->n ? w->t[idx].nbytes : 0;
}
