/* gguf_write.c: streaming two-phase GGUF v3 writer (layout decided up front, data streamed, atomic publish). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/outfile.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"
#include "gguf.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF writer emits host-order fields; port it before building big-endian"
#endif

typedef struct gw_tensor {
	char *name;
	size_t name_len;
	muse_dtype dtype;
	uint32_t n_dims;
	uint64_t ne[MUSE_GGUF_MAX_DIMS]; /* GGUF order: ne[0] innermost */
	uint64_t nbytes;
	uint32_t shard;
	uint64_t offset; /* relative to its shard's data section */
} gw_tensor;

enum gw_state { GW_DECLARE, GW_DATA, GW_DONE, GW_FAILED };

struct muse_gguf_writer {
	char *path;
	muse_gguf_write_opts opts;
	muse_meta meta;
	gw_tensor *t;
	size_t n, cap;
	muse_strmap names;
	uint32_t alignment;
	enum gw_state state;
	uint32_t n_shards;
	muse_outfile *out; /* n_shards */
	char **paths;      /* n_shards final names (outfile drops its copy on publish) */
	size_t cur;        /* tensor being streamed */
	uint64_t cur_done; /* its bytes written so far */
};

muse_status muse_gguf_writer_create(const char *path, const muse_gguf_write_opts *opts, muse_gguf_writer **out,
				    muse_err *err)
{
	*out = NULL;
	muse_gguf_writer *w = calloc(1, sizeof *w);
	if (!w || !(w->path = strdup(path))) {
		free(w);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	if (opts)
		w->opts = *opts;
	muse_meta_init(&w->meta);
	muse_strmap_init(&w->names);
	w->alignment = MUSE_GGUF_DEFAULT_ALIGNMENT;
	*out = w;
	return MUSE_OK;
}

void muse_gguf_writer_free(muse_gguf_writer *w)
{
	if (!w)
		return;
	for (uint32_t i = 0; i < w->n_shards; i++)
		muse_out_abort(&w->out[i]); /* no-op on published files */
	free(w->out);
	for (uint32_t i = 0; i < w->n_shards && w->paths; i++)
		free(w->paths[i]);
	free(w->paths);
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	muse_strmap_free(&w->names);
	muse_meta_free(&w->meta);
	free(w->path);
	free(w);
}

static muse_status fail(muse_gguf_writer *w, muse_status s)
{
	w->state = GW_FAILED;
	return s;
}

/* The same key rules the reader enforces, so muse never writes what it would refuse. */
static muse_status check_kv(const muse_gguf_writer *w, const muse_kv *kv, muse_err *err)
{
	size_t len = strlen(kv->key);
	if (!len)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: empty metadata key", w->path);
	if (len > MUSE_GGUF_MAX_KEY)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: metadata key of %zu bytes exceeds %d", w->path, len,
				    MUSE_GGUF_MAX_KEY);
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)kv->key[i];
		if (b < 0x20 || b == 0x7f)
			return muse_err_set(err, MUSE_ERR_USAGE, "%s: metadata key '%s' contains a control byte", w->path,
					    kv->key);
	}
	if (!muse_utf8_valid(kv->key, len))
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: metadata key '%s' is not valid UTF-8", w->path, kv->key);
	if ((unsigned)kv->type >= MUSE_KV_TYPE_COUNT)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: key '%s': invalid type %d", w->path, kv->key, (int)kv->type);
	if (kv->type == MUSE_KV_STRING && kv->v.s.len > MUSE_GGUF_MAX_STRING)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: key '%s': string exceeds 1 GiB", w->path, kv->key);
	if (kv->type == MUSE_KV_ARRAY) {
		if ((unsigned)kv->arr_type >= MUSE_KV_TYPE_COUNT || kv->arr_type == MUSE_KV_ARRAY)
			return muse_err_set(err, MUSE_ERR_USAGE, "%s: key '%s': invalid array element type %d", w->path,
					    kv->key, (int)kv->arr_type);
		if (kv->n > MUSE_GGUF_MAX_ARRAY)
			return muse_err_set(err, MUSE_ERR_LIMIT, "%s: key '%s': array of %" PRIu64 " elements exceeds 2^30",
					    w->path, kv->key, kv->n);
		if (kv->n && !kv->arr)
			return muse_err_set(err, MUSE_ERR_USAGE, "%s: key '%s': array without data", w->path, kv->key);
		if (kv->arr_type == MUSE_KV_STRING)
			for (uint64_t i = 0; i < kv->n; i++)
				if (((const muse_str *)kv->arr)[i].len > MUSE_GGUF_MAX_STRING)
					return muse_err_set(err, MUSE_ERR_LIMIT, "%s: key '%s': string exceeds 1 GiB",
							    w->path, kv->key);
	}
	if (!strcmp(kv->key, "general.alignment")) {
		if (kv->type != MUSE_KV_U32)
			return muse_err_set(err, MUSE_ERR_USAGE, "%s: key 'general.alignment' must be u32, not %s", w->path,
					    muse_kv_type_name(kv->type));
		uint64_t a = kv->v.u;
		if (a == 0 || (a & (a - 1)) || a > MUSE_GGUF_MAX_ALIGNMENT)
			return muse_err_set(err, MUSE_ERR_USAGE,
					    "%s: general.alignment %" PRIu64 " is not a power of two <= %u", w->path, a,
					    MUSE_GGUF_MAX_ALIGNMENT);
	}
	return MUSE_OK;
}

muse_status muse_gguf_writer_set_meta(muse_gguf_writer *w, const muse_meta *meta, muse_err *err)
{
	muse_meta copy;
	muse_strmap seen;
	muse_status s = MUSE_OK;
	if (w->state != GW_DECLARE)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: metadata set after writing began", w->path);
	muse_meta_init(&copy);
	muse_strmap_init(&seen);
	for (size_t i = 0; i < meta->n; i++) {
		const muse_kv *kv = &meta->kv[i];
		if ((s = check_kv(w, kv, err)))
			goto out;
		int put = muse_strmap_put(&seen, kv->key, strlen(kv->key), i, NULL);
		if (put < 0) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
			goto out;
		}
		if (put == 0) {
			s = muse_err_set(err, MUSE_ERR_USAGE, "%s: duplicate metadata key '%s'", w->path, kv->key);
			goto out;
		}
		if ((s = muse_meta_copy_kv(&copy, kv))) {
			s = muse_err_set(err, s, "%s: out of memory", w->path);
			goto out;
		}
	}
	muse_meta_free(&w->meta);
	w->meta = copy;
	muse_meta_init(&copy);
	uint64_t a;
	w->alignment = muse_meta_get_u64(&w->meta, "general.alignment", &a) ? (uint32_t)a : MUSE_GGUF_DEFAULT_ALIGNMENT;
out:
	muse_strmap_free(&seen);
	muse_meta_free(&copy);
	return s;
}

muse_status muse_gguf_writer_add_tensor(muse_gguf_writer *w, const char *name, muse_dtype dtype, int ndim,
					const uint64_t *shape, muse_err *err)
{
	if (w->state != GW_DECLARE)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%s' declared after writing began", w->path, name);
	size_t len = strlen(name);
	if (!len || len > MUSE_GGUF_MAX_NAME)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor name '%s' must be 1..%d bytes for GGUF", w->path, name,
				    MUSE_GGUF_MAX_NAME);
	if (ndim < 0 || ndim > MUSE_GGUF_MAX_DIMS)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': GGUF holds at most %d dimensions, not %d",
				    w->path, name, MUSE_GGUF_MAX_DIMS, ndim);
	const muse_dtype_traits *tr = muse_dtype_info(dtype);
	if (!tr || tr->ggml_id < 0 || dtype == MUSE_DT_Q8_1 || dtype == MUSE_DT_Q8_K)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be stored in GGUF", w->path,
				    name, muse_dtype_name(dtype));
	if (w->n >= MUSE_GGUF_MAX_TENSORS)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: more than %llu tensors", w->path,
				    (unsigned long long)MUSE_GGUF_MAX_TENSORS);
	gw_tensor t = { .dtype = dtype, .n_dims = (uint32_t)ndim, .name_len = len };
	for (int d = 0; d < MUSE_GGUF_MAX_DIMS; d++)
		t.ne[d] = d < ndim ? shape[ndim - 1 - d] : 1;
	uint64_t nel;
	if (!muse_product_u64(t.ne, MUSE_GGUF_MAX_DIMS, &nel) || nel >= INT64_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': element count overflows", w->path, name);
	if (t.ne[0] % tr->blck)
		return muse_err_set(err, MUSE_ERR_USAGE,
				    "%s: tensor '%s': innermost dimension %" PRIu64 " is not a multiple of the %s block (%u)",
				    w->path, name, t.ne[0], tr->name, tr->blck);
	if (!muse_dtype_nbytes(dtype, nel, &t.nbytes))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': byte size overflows", w->path, name);
	size_t dummy;
	if (muse_strmap_get(&w->names, name, len, &dummy))
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: duplicate tensor name '%s'", w->path, name);
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		gw_tensor *nt = realloc(w->t, cap * sizeof *nt);
		if (!nt)
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
		w->t = nt;
		w->cap = cap;
	}
	if (!(t.name = strdup(name)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
	if (muse_strmap_put(&w->names, t.name, len, w->n, NULL) < 0) {
		free(t.name);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
	}
	w->t[w->n++] = t;
	return MUSE_OK;
}

/* ---- serialization ---- */

static muse_status put(muse_outfile *o, const void *p, size_t n, muse_err *err)
{
	return muse_out_write(o, p, n, err);
}

static muse_status put_u32(muse_outfile *o, uint32_t v, muse_err *err)
{
	return put(o, &v, 4, err);
}

static muse_status put_u64(muse_outfile *o, uint64_t v, muse_err *err)
{
	return put(o, &v, 8, err);
}

static muse_status put_str(muse_outfile *o, const char *p, uint64_t len, muse_err *err)
{
	muse_status s = put_u64(o, len, err);
	return s ? s : put(o, p, (size_t)len, err);
}

/* One scalar of type t from the kv union, at its GGUF width. */
static muse_status put_scalar(muse_outfile *o, muse_kv_type t, const muse_kv *kv, muse_err *err)
{
	uint8_t b[8];
	switch (t) {
	case MUSE_KV_U8: case MUSE_KV_U16: case MUSE_KV_U32: case MUSE_KV_U64:
		memcpy(b, &kv->v.u, 8); /* little-endian: the low bytes come first */
		break;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		memcpy(b, &kv->v.i, 8);
		break;
	case MUSE_KV_F32: {
		float f = (float)kv->v.f;
		memcpy(b, &f, 4);
		break;
	}
	case MUSE_KV_F64:
		memcpy(b, &kv->v.f, 8);
		break;
	case MUSE_KV_BOOL:
		b[0] = kv->v.b ? 1 : 0;
		break;
	default:
		return MUSE_ERR_USAGE;
	}
	return put(o, b, muse_kv_type_size(t), err);
}

static muse_status put_kv(muse_outfile *o, const muse_kv *kv, muse_err *err)
{
	muse_status s;
	if ((s = put_str(o, kv->key, strlen(kv->key), err)) || (s = put_u32(o, (uint32_t)kv->type, err)))
		return s;
	if (kv->type == MUSE_KV_STRING)
		return put_str(o, kv->v.s.ptr, kv->v.s.len, err);
	if (kv->type != MUSE_KV_ARRAY)
		return put_scalar(o, kv->type, kv, err);
	if ((s = put_u32(o, (uint32_t)kv->arr_type, err)) || (s = put_u64(o, kv->n, err)))
		return s;
	if (kv->arr_type == MUSE_KV_STRING) {
		const muse_str *a = kv->arr;
		for (uint64_t i = 0; i < kv->n; i++)
			if ((s = put_str(o, a[i].ptr, a[i].len, err)))
				return s;
		return MUSE_OK;
	}
	if (kv->arr_type == MUSE_KV_BOOL) { /* normalized: the reader accepts only 0 and 1 */
		const uint8_t *a = kv->arr;
		for (uint64_t i = 0; i < kv->n; i++) {
			uint8_t b = a[i] ? 1 : 0;
			if ((s = put(o, &b, 1, err)))
				return s;
		}
		return MUSE_OK;
	}
	return kv->n ? put(o, kv->arr, (size_t)(kv->n * muse_kv_type_size(kv->arr_type)), err) : MUSE_OK;
}

static muse_status pad_to(muse_outfile *o, uint64_t align, muse_err *err)
{
	uint64_t up;
	if (!muse_align_up_u64(o->pos, align, &up))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: file size overflows", o->path);
	return muse_out_zeros(o, up - o->pos, err);
}

/* gguf-py's add_tensor_info split rule: a shard always takes one tensor, then closes at either limit. */
static muse_status plan_shards(muse_gguf_writer *w, muse_err *err)
{
	uint32_t shard = w->opts.small_first_shard ? 1 : 0;
	uint64_t in_shard = 0, bytes = 0;
	for (size_t i = 0; w->opts.n_shards && i < w->n; i++) {
		if (w->opts.shard_of[i] >= w->opts.n_shards)
			return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%s' given shard %u of %u", w->path,
					    w->t[i].name, w->opts.shard_of[i], w->opts.n_shards);
		w->t[i].shard = w->opts.shard_of[i];
	}
	if (w->opts.n_shards)
		shard = w->opts.n_shards - 1;
	for (size_t i = 0; !w->opts.n_shards && i < w->n; i++) {
		uint64_t sum;
		bool over_n = w->opts.split_max_tensors && in_shard >= w->opts.split_max_tensors;
		bool over_b = w->opts.split_max_bytes &&
			      (!muse_add_u64(bytes, w->t[i].nbytes, &sum) || sum > w->opts.split_max_bytes);
		if (in_shard && (over_n || over_b)) {
			shard++;
			in_shard = bytes = 0;
		}
		w->t[i].shard = shard;
		in_shard++;
		bytes += w->t[i].nbytes;
	}
	w->n_shards = shard + 1;
	if (w->n_shards > 99999)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: %u shards exceed the 99999 the shard names allow", w->path,
				    w->n_shards);
	/* Offsets: the running padded sum per shard, the one layout ggml accepts. */
	uint64_t *run = calloc(w->n_shards, sizeof *run);
	if (!run)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
	for (size_t i = 0; i < w->n; i++) {
		uint64_t padded;
		uint64_t *r = &run[w->t[i].shard];
		w->t[i].offset = *r;
		if (!muse_align_up_u64(w->t[i].nbytes, w->alignment, &padded) || !muse_add_u64(*r, padded, r)) {
			free(run);
			return muse_err_set(err, MUSE_ERR_LIMIT, "%s: data section size overflows", w->path);
		}
	}
	free(run);
	return MUSE_OK;
}

static char *shard_name(const char *path, uint32_t i, uint32_t n)
{
	size_t len = strlen(path);
	if (len >= 5 && !strcmp(path + len - 5, ".gguf"))
		len -= 5;
	size_t cap = len + 32;
	char *p = malloc(cap);
	if (p)
		snprintf(p, cap, "%.*s-%05u-of-%05u.gguf", (int)len, path, i + 1, n);
	return p;
}

/* Shard metadata as gguf-py builds it: shard 0 all keys, the others only split.*. */
static muse_status shard_meta(muse_gguf_writer *w, uint32_t i, muse_meta *m, muse_err *err)
{
	muse_meta_init(m);
	if (i == 0)
		for (size_t k = 0; k < w->meta.n; k++)
			if (muse_meta_copy_kv(m, &w->meta.kv[k]))
				goto nomem;
	if (w->n_shards == 1) {
		/* The writer owns split.*: keys copied from a sharded input would misdescribe one file. */
		muse_meta_remove(m, "split.no");
		muse_meta_remove(m, "split.count");
		muse_meta_remove(m, "split.tensors.count");
		return MUSE_OK;
	}
	if (muse_meta_set_u32(m, "split.no", i) || muse_meta_set_u32(m, "split.count", w->n_shards) ||
	    muse_meta_set_i32(m, "split.tensors.count", (int32_t)w->n))
		goto nomem;
	m->kv[muse_meta_index(m, "split.no")].type = MUSE_KV_U16;
	m->kv[muse_meta_index(m, "split.count")].type = MUSE_KV_U16;
	/*
	 * gguf-py writes general.alignment into shard 0 only, so its later
	 * shards misread with a custom alignment; we repeat the key there
	 * (the one place our bytes differ from gguf-py's, by design).
	 */
	if (i > 0 && w->alignment != MUSE_GGUF_DEFAULT_ALIGNMENT && muse_meta_set_u32(m, "general.alignment", w->alignment))
		goto nomem;
	return MUSE_OK;
nomem:
	muse_meta_free(m);
	return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path);
}

static muse_status write_head(muse_gguf_writer *w, uint32_t i, muse_err *err)
{
	muse_outfile *o = &w->out[i];
	muse_meta m;
	muse_status s;
	uint64_t nt = 0;
	for (size_t k = 0; k < w->n; k++)
		nt += w->t[k].shard == i;
	if ((s = shard_meta(w, i, &m, err)))
		return s;
	if ((s = put(o, "GGUF", 4, err)) || (s = put_u32(o, MUSE_GGUF_VERSION, err)) || (s = put_u64(o, nt, err)) ||
	    (s = put_u64(o, m.n, err)))
		goto out;
	for (size_t k = 0; k < m.n; k++)
		if ((s = put_kv(o, &m.kv[k], err)))
			goto out;
	for (size_t k = 0; k < w->n; k++) {
		const gw_tensor *t = &w->t[k];
		if (t->shard != i)
			continue;
		if ((s = put_str(o, t->name, t->name_len, err)) || (s = put_u32(o, t->n_dims, err)))
			goto out;
		for (uint32_t d = 0; d < t->n_dims; d++)
			if ((s = put_u64(o, t->ne[d], err)))
				goto out;
		if ((s = put_u32(o, (uint32_t)muse_dtype_info(t->dtype)->ggml_id, err)) || (s = put_u64(o, t->offset, err)))
			goto out;
	}
	/* gguf-py pads before the data section even when there are no tensors. */
	s = pad_to(o, w->alignment, err);
out:
	muse_meta_free(&m);
	return s;
}

/* Pads after finished tensors and skips empty ones, so cur always names a tensor still owed bytes. */
static muse_status advance(muse_gguf_writer *w, muse_err *err)
{
	while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) {
		muse_status s = pad_to(&w->out[w->t[w->cur].shard], w->alignment, err);
		if (s)
			return s;
		w->cur++;
		w->cur_done = 0;
	}
	return MUSE_OK;
}

muse_status muse_gguf_writer_begin(muse_gguf_writer *w, muse_err *err)
{
	muse_status s;
	if (w->state != GW_DECLARE)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: begin called twice", w->path);
	if ((s = plan_shards(w, err)))
		return fail(w, s);
	w->out = calloc(w->n_shards, sizeof *w->out);
	w->paths = calloc(w->n_shards, sizeof *w->paths);
	if (!w->out || !w->paths) {
		w->n_shards = 0;
		return fail(w, muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path));
	}
	for (uint32_t i = 0; i < w->n_shards; i++) {
		w->out[i] = (muse_outfile)MUSE_OUTFILE_INIT;
	}
	for (uint32_t i = 0; i < w->n_shards; i++) {
		char *name = w->n_shards == 1 ? strdup(w->path) : shard_name(w->path, i, w->n_shards);
		if (!name)
			return fail(w, muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", w->path));
		w->paths[i] = name;
		if ((s = muse_out_open(&w->out[i], name, err)))
			return fail(w, s);
		if ((s = write_head(w, i, err)))
			return fail(w, s);
		/* the shard's whole size is known now: every tensor is padded to the alignment, the last one too */
		uint64_t size = w->out[i].pos, padded;
		for (size_t k = 0; k < w->n; k++)
			if (w->t[k].shard == i && muse_align_up_u64(w->t[k].nbytes, w->alignment, &padded))
				size += padded;
		if ((s = muse_out_reserve(&w->out[i], size, err)))
			return fail(w, s);
	}
	w->state = GW_DATA;
	w->cur = 0;
	w->cur_done = 0;
	if ((s = advance(w, err)))
		return fail(w, s);
	return MUSE_OK;
}

muse_status muse_gguf_writer_write(muse_gguf_writer *w, const void *data, size_t n, muse_err *err)
{
	const uint8_t *p = data;
	if (w->state != GW_DATA)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor data written outside begin..finish", w->path);
	while (n) {
		if (w->cur >= w->n)
			return fail(w, muse_err_set(err, MUSE_ERR_USAGE, "%s: %zu bytes of tensor data beyond the declared tensors",
						    w->path, n));
		const gw_tensor *t = &w->t[w->cur];
		uint64_t want = t->nbytes - w->cur_done;
		size_t k = want < n ? (size_t)want : n;
		muse_status s = muse_out_write(&w->out[t->shard], p, k, err);
		if (s)
			return fail(w, s);
		w->cur_done += k;
		p += k;
		n -= k;
		if ((s = advance(w, err)))
			return fail(w, s);
	}
	return MUSE_OK;
}

muse_status muse_gguf_writer_finish(muse_gguf_writer *w, muse_err *err)
{
	muse_status s;
	if (w->state != GW_DATA)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: finish without a successful begin", w->path);
	if (w->cur < w->n)
		return fail(w, muse_err_set(err, MUSE_ERR_USAGE,
					    "%s: tensor '%s' got %" PRIu64 " of its %" PRIu64 " bytes before finish", w->path,
					    w->t[w->cur].name, w->cur_done, w->t[w->cur].nbytes));
	/* Every shard is on disk before any final name appears. */
	for (uint32_t i = 0; i < w->n_shards; i++)
		if ((s = muse_out_finish(&w->out[i], err)))
			return fail(w, s);
	for (uint32_t i = 0; i < w->n_shards; i++)
		if ((s = muse_out_publish(&w->out[i], err)))
			return fail(w, s);
	w->state = GW_DONE;
	return MUSE_OK;
}

uint32_t muse_gguf_writer_alignment(const muse_gguf_writer *w)
{
	return w->alignment;
}

size_t muse_gguf_writer_n_tensors(const muse_gguf_writer *w)
{
	return w->n;
}

uint64_t muse_gguf_writer_tensor_nbytes(const muse_gguf_writer *w, size_t i)
{
	return i < w->n ? w->t[i].nbytes : 0;
}

uint32_t muse_gguf_writer_n_files(const muse_gguf_writer *w)
{
	return w->n_shards;
}

const char *muse_gguf_writer_file_path(const muse_gguf_writer *w, uint32_t i)
{
	return i < w->n_shards && w->paths ? w->paths[i] : NULL;
}
