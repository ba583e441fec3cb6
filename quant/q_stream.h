/* q_stream.h: quantize tensors' rows as one stream: read (a file, a mapping or a row source) -> quantize -> write, overlapped. */
#ifndef MUSE_Q_STREAM_H
#define MUSE_Q_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/* Rows [r0, r0 + nr) as F32 into dst (a per-thread buffer of nr rows); called from worker threads at once. */
typedef muse_status (*muse_qs_rows_fn)(void *ctx, int64_t r0, int64_t nr, float *dst, muse_err *err);
/* The next n bytes (rows rows, 0 for a bytes item), in order; called from one thread at a time. */
typedef muse_status (*muse_qs_sink_fn)(void *ctx, const void *buf, size_t n, int64_t rows, muse_err *err);

/* Rows read with pread from a file (no mapping): dense row-major rows of dtype starting at offset. */
typedef struct muse_qs_file {
	int fd;
	uint64_t offset;          /* the tensor's first byte in fd */
	muse_dtype dtype;         /* F32, another float type, or a quantized type (dequantized first) */
	const char *path;         /* for errors */
} muse_qs_file;

typedef struct muse_qs_job {
	muse_dtype type;          /* a type with a quantizer (quant.h) */
	int64_t nrows, n_per_row;
	const muse_qs_file *file; /* the rows in a file, read with pread into each worker's buffer, or NULL: */
	const float *f32;         /* the rows as F32 in memory (e.g. a mapping, 4-byte aligned), or NULL: */
	muse_qs_rows_fn rows;     /* ... rows come from here */
	void *rows_ctx;
	const float *importance;  /* NULL, or n_per_row values per matrix */
	int64_t rows_per_mat;     /* rows of one matrix (expert); matrix m's importance starts at m * n_per_row; 0: nrows */
	bool check_finite;        /* refuse a NaN or an infinity (MUSE_ERR_FORMAT naming the first one) */
	muse_qs_sink_fn sink;
	void *sink_ctx;
	const char *what;         /* NULL, or the prefix of the errors found quantizing ("FILE: tensor 'NAME'") */
	int threads;              /* muse_quantize_stream's quantizer threads; <= 0: omp_get_max_threads() */
} muse_qs_job;

/*
 * A session: worker threads that quantize the jobs queued to it, a few hundred KB of rows per task
 * (read from file into a cache-sized buffer of their own, or straight from f32, or from the row
 * source), and a writer thread that hands each job's bytes to its sink in queue order, slab by slab,
 * while the workers go on with the next slabs and the next jobs: no pause between tensors, and memory
 * stays a few slabs of output. Reading a file with pread scales with the workers where page faults on
 * a shared mapping do not. Rows are independent, so the bytes never depend on the thread count.
 *
 * Errors (a row source's, a sink's, a failed read, or a non-finite element with check_finite:
 * "element E (row R) is V; cannot quantize non-finite weights") stop the session: the first one in
 * queue and row order is reported, and nothing after the failing slab reaches a sink. Errors found
 * quantizing (all but the sinks') get the job's what as prefix, else a file job's path.
 */
typedef struct muse_qs_session muse_qs_session;

/* Starts threads workers (<= 0: omp_get_max_threads()) and the writer. */
muse_status muse_qs_open(int threads, muse_qs_session **out, muse_err *err);
/*
 * Queues a job (copied, *job->file included); waits while the queue is full. What the job points at
 * (rows, rows_ctx, importance, sink_ctx, f32) must stay valid until muse_qs_drain returns. Returns the
 * session's error once it has one (the job is then not queued).
 */
muse_status muse_qs_submit(muse_qs_session *s, const muse_qs_job *job, muse_err *err);
/* Queues n bytes for sink (a tensor kept as it is), handed over in queue order; valid until drained. */
muse_status muse_qs_submit_bytes(muse_qs_session *s, const void *bytes, size_t n, muse_qs_sink_fn sink, void *ctx,
				 muse_err *err);
/* Waits until every queued job has reached its sink, or the session failed; returns its error. */
muse_status muse_qs_drain(muse_qs_session *s, muse_err *err);
/* Stops and joins the threads (queued work not yet written is dropped); NULL is a no-op. */
void muse_qs_close(muse_qs_session *s);

/* One job in a session of its own: the bytes muse_quantize_rows gives for all rows, handed to sink in order. */
muse_status muse_quantize_stream(const muse_qs_job *job, muse_err *err);

/* Stops OpenBLAS's idle server threads, which otherwise spin in sched_yield for about 0.1 s after the
 * process starts (they restart by themselves at the next threaded BLAS call); a no-op without OpenBLAS. */
void muse_blas_threads_idle(void);

#endif
