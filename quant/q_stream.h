/* q_stream.h: quantize a tensor's rows as a stream: read (a mapping or a row source) -> quantize -> write, overlapped. */
#ifndef MUSE_Q_STREAM_H
#define MUSE_Q_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/* Rows [r0, r0 + nr) as F32 into dst (a per-thread buffer of nr rows); called from worker threads at once. */
typedef muse_status (*muse_qs_rows_fn)(void *ctx, int64_t r0, int64_t nr, float *dst, muse_err *err);
/* The next n quantized bytes (rows rows), in order; called from one thread at a time. */
typedef muse_status (*muse_qs_sink_fn)(void *ctx, const void *buf, size_t n, int64_t rows, muse_err *err);

typedef struct muse_qs_job {
	muse_dtype type;          /* a type with a quantizer (quant.h) */
	int64_t nrows, n_per_row;
	const float *f32;         /* the rows as F32 in memory (e.g. a mapping, 4-byte aligned), or NULL: */
	muse_qs_rows_fn rows;     /* ... rows come from here */
	void *rows_ctx;
	const float *importance;  /* NULL, or n_per_row values per matrix */
	int64_t rows_per_mat;     /* rows of one matrix (expert); matrix m's importance starts at m * n_per_row; 0: nrows */
	bool check_finite;        /* refuse a NaN or an infinity (MUSE_ERR_FORMAT naming the first one) */
	muse_qs_sink_fn sink;
	void *sink_ctx;
	int threads;              /* quantizer threads; <= 0: omp_get_max_threads() */
} muse_qs_job;

/*
 * The bytes muse_quantize_rows gives for all rows, handed to sink in order, slab by slab. Workers
 * quantize a slab (tasks of 16 rows, straight from f32 when given, so no staging copy) while a writer
 * thread hands the previous slabs to sink; memory stays a few slabs of output. Rows are independent,
 * so the bytes never depend on the thread count. On an error (a row source's, sink's, or a non-finite
 * element: "element E (row R) is V; cannot quantize non-finite weights", the first one in row order)
 * nothing after the failing slab reaches sink.
 */
muse_status muse_quantize_stream(const muse_qs_job *job, muse_err *err);

/* Stops OpenBLAS's idle server threads, which otherwise spin in sched_yield for about 0.1 s after the
 * process starts (they restart by themselves at the next threaded BLAS call); a no-op without OpenBLAS. */
void muse_blas_threads_idle(void);

#endif
