/* model_copy.h: a reader's tensors into a writer, row chunks at a time (the one data path of convert). */
#ifndef MUSE_MODEL_COPY_H
#define MUSE_MODEL_COPY_H

#include <stddef.h>

#include "../lib/progress.h"
#include "../lib/status.h"
#include "model_writer.h"
#include "reader.h"

/*
 * Declares every tensor of r (name, type, shape) in w, after the first
 * tensors the caller declared itself (w's indexes start at first_idx).
 */
muse_status muse_model_copy_declare(const muse_reader *r, muse_model_writer *w, muse_err *err);

/*
 * Writes the bytes of every tensor of r, in order, to w's tensors
 * first_idx, first_idx + 1, ... (declared and begun): mapped tensors
 * straight from the mapping, computed ones (a view's) a few MB of rows at a
 * time. pg (may be NULL) advances by src_bytes(r, i) per tensor when given,
 * else by the tensor's bytes.
 */
muse_status muse_model_copy_data(muse_reader *r, muse_model_writer *w, size_t first_idx, muse_progress *pg,
				 uint64_t (*src_bytes)(const muse_reader *r, size_t i), muse_err *err);

#endif
