/* model_writer.h: one streaming writer interface over the GGUF and safetensors writers. */
#ifndef MUSE_MODEL_WRITER_H
#define MUSE_MODEL_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/kv.h"
#include "../lib/status.h"

typedef enum muse_out_format {
	MUSE_OUT_SAFETENSORS,
	MUSE_OUT_GGUF,
} muse_out_format;

typedef struct muse_model_writer muse_model_writer;

/*
 * Same lifecycle as the format writers: create, set_meta/add_tensor, begin,
 * write every tensor's bytes in declared order, finish; free removes the
 * temp files of an unfinished writer. shard_bytes == 0: one file.
 * For safetensors only string metadata is kept (it becomes __metadata__);
 * other keys are dropped and counted in *dropped (may be NULL).
 */
muse_status muse_model_writer_create(muse_model_writer **out, muse_out_format fmt, const char *path,
				     uint64_t shard_bytes, muse_err *err);
muse_status muse_model_writer_set_meta(muse_model_writer *w, const muse_meta *meta, size_t *dropped, muse_err *err);
muse_status muse_model_writer_add_tensor(muse_model_writer *w, const char *name, muse_dtype dtype, int ndim,
					 const uint64_t *shape, muse_err *err);
muse_status muse_model_writer_begin(muse_model_writer *w, muse_err *err);
muse_status muse_model_writer_write(muse_model_writer *w, size_t idx, const void *data, size_t n, muse_err *err);
muse_status muse_model_writer_finish(muse_model_writer *w, muse_err *err);
void muse_model_writer_free(muse_model_writer *w);

/* Scratch space for casts, reused across tensors; free(p) when done. */
typedef struct muse_cast_buf {
	void *p;
	size_t cap;
} muse_cast_buf;

struct muse_progress;

/*
 * Writes tensor idx from the dense row-major bytes at src (nelements of st),
 * cast to dt in bounded chunks (memory is one chunk, never the tensor); no
 * cast is a straight copy in bounded pieces. A cast to F16 that turns a
 * finite value into Inf is refused, naming the tensor and the element.
 * pg (may be NULL) advances by source bytes.
 */
muse_status muse_model_writer_put(muse_model_writer *w, size_t idx, const char *name, const uint8_t *src,
				  muse_dtype st, uint64_t nelements, muse_dtype dt, muse_cast_buf *cb,
				  struct muse_progress *pg, muse_err *err);

/* True when the format can store dtype. */
int muse_model_writer_supports(muse_out_format fmt, muse_dtype dtype);

#endif
