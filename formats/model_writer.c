/* model_writer.c: dispatch from the common writer interface to the GGUF or safetensors writer. */
#include "model_writer.h"

#include <math.h>
#include <stdlib.h>

#include "gguf.h"
#include "safetensors.h"
#include "../lib/progress.h"

#define CHUNK_ELEMS (4u << 20) /* elements cast per step */
#define COPY_BYTES (64u << 20) /* bytes handed to the writer per step when no cast is needed */

struct muse_model_writer {
	muse_out_format fmt;
	muse_gguf_writer *gguf;
	muse_st_writer *st;
};

muse_status muse_model_writer_create(muse_model_writer **out, muse_out_format fmt, const char *path,
				     uint64_t shard_bytes, muse_err *err)
{
	*out = NULL;
	muse_model_writer *w = calloc(1, sizeof *w);
	if (!w)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	w->fmt = fmt;
	muse_status s;
	if (fmt == MUSE_OUT_GGUF) {
		muse_gguf_write_opts o = { .split_max_bytes = shard_bytes };
		s = muse_gguf_writer_create(path, &o, &w->gguf, err);
	} else {
		s = muse_st_writer_create(&w->st, path, shard_bytes, err);
	}
	if (s) {
		free(w);
		return s;
	}
	*out = w;
	return MUSE_OK;
}

muse_status muse_model_writer_set_meta(muse_model_writer *w, const muse_meta *meta, size_t *dropped, muse_err *err)
{
	if (dropped)
		*dropped = 0;
	if (w->fmt == MUSE_OUT_GGUF)
		return muse_gguf_writer_set_meta(w->gguf, meta, err);
	for (size_t i = 0; i < meta->n; i++) {
		const muse_kv *kv = &meta->kv[i];
		if (kv->type != MUSE_KV_STRING) {
			if (dropped)
				(*dropped)++;
			continue;
		}
		muse_status s = muse_st_writer_set_meta(w->st, kv->key, kv->v.s.ptr, err);
		if (s)
			return s;
	}
	return MUSE_OK;
}

muse_status muse_model_writer_add_tensor(muse_model_writer *w, const char *name, muse_dtype dtype, int ndim,
					 const uint64_t *shape, muse_err *err)
{
	if (w->fmt == MUSE_OUT_GGUF)
		return muse_gguf_writer_add_tensor(w->gguf, name, dtype, ndim, shape, err);
	return muse_st_writer_add_tensor(w->st, name, dtype, ndim, shape, err);
}

muse_status muse_model_writer_begin(muse_model_writer *w, muse_err *err)
{
	return w->fmt == MUSE_OUT_GGUF ? muse_gguf_writer_begin(w->gguf, err) : muse_st_writer_begin(w->st, err);
}

muse_status muse_model_writer_write(muse_model_writer *w, size_t idx, const void *data, size_t n, muse_err *err)
{
	if (w->fmt == MUSE_OUT_GGUF)
		return muse_gguf_writer_write(w->gguf, data, n, err);
	return muse_st_writer_write(w->st, idx, data, n, err);
}

muse_status muse_model_writer_finish(muse_model_writer *w, muse_err *err)
{
	return w->fmt == MUSE_OUT_GGUF ? muse_gguf_writer_finish(w->gguf, err) : muse_st_writer_finish(w->st, err);
}

void muse_model_writer_free(muse_model_writer *w)
{
	if (!w)
		return;
	muse_gguf_writer_free(w->gguf);
	muse_st_writer_free(w->st);
	free(w);
}

int muse_model_writer_supports(muse_out_format fmt, muse_dtype dtype)
{
	const muse_dtype_traits *tr = muse_dtype_info(dtype);
	if (!tr)
		return 0;
	if (fmt == MUSE_OUT_GGUF)
		return tr->ggml_id >= 0 && dtype != MUSE_DT_Q8_1 && dtype != MUSE_DT_Q8_K;
	return tr->st_name != NULL;
}

/* Index of the first element that became +-Inf in F16 although its source was finite, or n. */
static size_t f16_overflow_at(const uint16_t *h, const uint8_t *src, muse_dtype st, size_t n)
{
	size_t esz = muse_dtype_info(st)->block_bytes;
	for (size_t i = 0; i < n; i++) {
		if ((h[i] & 0x7fff) != 0x7c00)
			continue;
		float f;
		if (muse_dtype_convert(MUSE_DT_F32, &f, st, src + i * esz, 1, NULL) == MUSE_OK && !isinf(f))
			return i;
	}
	return n;
}

static void advance(muse_progress *pg, uint64_t n)
{
	if (pg)
		muse_progress_add(pg, n);
}

muse_status muse_model_writer_put(muse_model_writer *w, size_t idx, const char *name, const uint8_t *src,
				  muse_dtype st, uint64_t nelements, muse_dtype dt, muse_cast_buf *cb,
				  muse_progress *pg, muse_err *err)
{
	uint64_t nbytes;
	if (!muse_dtype_nbytes(st, nelements, &nbytes))
		return muse_err_set(err, MUSE_ERR_LIMIT, "tensor '%s': size overflows", name);
	if (dt == st) {
		uint64_t off = 0;
		do {
			size_t n = (size_t)(nbytes - off < COPY_BYTES ? nbytes - off : COPY_BYTES);
			muse_status s = muse_model_writer_write(w, idx, src + off, n, err);
			if (s)
				return s;
			advance(pg, n);
			off += n;
		} while (off < nbytes);
		return MUSE_OK;
	}
	size_t sesz = muse_dtype_info(st)->block_bytes, desz = muse_dtype_info(dt)->block_bytes;
	for (uint64_t off = 0; off < nelements; off += CHUNK_ELEMS) {
		size_t n = (size_t)(nelements - off < CHUNK_ELEMS ? nelements - off : CHUNK_ELEMS);
		if (n * desz > cb->cap) {
			free(cb->p);
			cb->cap = n * desz;
			cb->p = malloc(cb->cap);
			if (!cb->p) {
				cb->cap = 0;
				return muse_err_set(err, MUSE_ERR_NOMEM, "tensor '%s': out of memory", name);
			}
		}
		const uint8_t *in = src + off * sesz;
		muse_status s = muse_dtype_convert(dt, cb->p, st, in, n, err);
		if (s)
			return s;
		size_t at = dt == MUSE_DT_F16 ? f16_overflow_at(cb->p, in, st, n) : n;
		if (at < n)
			return muse_err_set(err, MUSE_ERR_LIMIT,
					    "tensor '%s': element %llu overflows F16; use --outtype bf16 or f32", name,
					    (unsigned long long)(off + at));
		if ((s = muse_model_writer_write(w, idx, cb->p, n * desz, err)))
			return s;
		advance(pg, n * sesz);
	}
	return nelements ? MUSE_OK : muse_model_writer_write(w, idx, src, 0, err);
}
