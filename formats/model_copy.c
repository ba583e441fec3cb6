/* model_copy.c: a reader's tensors into a writer. */
#include <stdlib.h>
#include <string.h>

#include "model_copy.h"

#define CHUNK_BYTES ((uint64_t)4 << 20) /* rows per read: a few MB, whatever the tensor's size */

muse_status muse_model_copy_declare(const muse_reader *r, muse_model_writer *w, muse_err *err)
{
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		muse_status s = muse_model_writer_add_tensor(w, t->name, t->dtype, t->ndim, t->shape, err);
		if (s)
			return s;
	}
	return MUSE_OK;
}

muse_status muse_model_copy_data(muse_reader *r, muse_model_writer *w, size_t first_idx, muse_progress *pg,
				 uint64_t (*src_bytes)(const muse_reader *r, size_t i), muse_err *err)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	muse_status s = MUSE_OK;
	for (size_t i = 0; i < r->n_tensors && !s; i++) {
		const muse_tensor *t = &r->tensors[i];
		const uint64_t rows = muse_reader_rows(t), rb = rows ? t->nbytes / rows : 0;
		const uint64_t units = src_bytes ? src_bytes(r, i) : t->nbytes;
		const uint8_t *view = muse_reader_view(r, i);
		uint64_t step = rb ? CHUNK_BYTES / rb : rows;
		if (step < 1)
			step = 1;
		if (!view && (size_t)(step * rb) > cap) {
			free(buf);
			cap = (size_t)(step * rb);
			if (!(buf = malloc(cap ? cap : 1))) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
				break;
			}
		}
		uint64_t done = 0;
		for (uint64_t r0 = 0; r0 < rows && !s; r0 += step) {
			uint64_t nr = rows - r0 < step ? rows - r0 : step;
			const uint8_t *p = view ? view + r0 * rb : buf;
			if (!view)
				s = muse_reader_read_rows(r, i, r0, nr, buf, err);
			if (!s)
				s = muse_model_writer_write(w, first_idx + i, p, (size_t)(nr * rb), err);
			if (!s && pg) {
				uint64_t to = r0 + nr == rows ? units : (uint64_t)((double)units * (double)(r0 + nr) / (double)rows);
				muse_progress_add(pg, to - done);
				done = to;
			}
		}
		if (!s && view)
			muse_reader_release(r, i);
		if (!s && !rows) /* an empty tensor: nothing to write */
			s = muse_model_writer_write(w, first_idx + i, "", 0, err);
	}
	free(buf);
	return s;
}
