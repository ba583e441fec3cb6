/* model_writer.c: dispatch from the common writer interface to the GGUF or safetensors writer. */
#include "model_writer.h"

#include <stdlib.h>

#include "gguf.h"
#include "safetensors.h"

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
