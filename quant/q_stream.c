/* q_stream.c: a session of worker threads quantizing queued tensors slab by slab while a writer thread writes the slabs before. */
#include "q_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant.h"

#define QS_TASK_ROWS 16                  /* rows per work item, as muse_quantize_rows */
#define QS_READ_BYTES ((size_t)256 << 10) /* F32 rows per work item read from a file: a few pread calls per MB, in L2 */
#define QS_READ_MAX_ROWS 256
#define QS_SLAB_BYTES ((size_t)1 << 20)  /* F32 input per slab and worker: the output stays in cache for the writer */
#define QS_NBUF 4                        /* output slabs in flight */
#define QS_QUEUE 64                      /* jobs queued ahead of the writer */
#define QS_MAX_THREADS 256
#define QS_PAGE ((size_t)4096)

/* ---- the first non-finite element ---- */

static int64_t first_nonfinite_scalar(const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, x + i, 4);
		if ((u & 0x7f800000u) == 0x7f800000u)
			return i;
	}
	return -1;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* The largest |x| bit pattern of each 256-element stretch, as unsigned integers (two operations per 8
 * elements, no float arithmetic, so subnormals cost nothing extra); only a stretch whose largest pattern is
 * above the largest finite one is searched element by element. */
__attribute__((target("avx2"))) static int64_t first_nonfinite_avx2(const float *x, int64_t n)
{
	const __m256i absmask = _mm256_set1_epi32(0x7fffffff), lim = _mm256_set1_epi32(0x7f7fffff);
	int64_t i = 0;
	for (; i + 256 <= n; i += 256) {
		__m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
		for (int k = 0; k < 256; k += 32) {
			const __m256i *p = (const __m256i *)(x + i + k);
			a = _mm256_max_epu32(a, _mm256_and_si256(_mm256_loadu_si256(p), absmask));
			b = _mm256_max_epu32(b, _mm256_and_si256(_mm256_loadu_si256(p + 1), absmask));
			c = _mm256_max_epu32(c, _mm256_and_si256(_mm256_loadu_si256(p + 2), absmask));
			d = _mm256_max_epu32(d, _mm256_and_si256(_mm256_loadu_si256(p + 3), absmask));
		}
		__m256i m = _mm256_max_epu32(_mm256_max_epu32(a, b), _mm256_max_epu32(c, d));
		m = _mm256_cmpgt_epi32(m, lim);
		if (!_mm256_testz_si256(m, m))
			return i + first_nonfinite_scalar(x + i, 256);
	}
	int64_t k = first_nonfinite_scalar(x + i, n - i);
	return k < 0 ? -1 : i + k;
}
#endif

static int64_t first_nonfinite(const float *x, int64_t n)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	if (__builtin_cpu_supports("avx2"))
		return first_nonfinite_avx2(x, n);
#endif
	return first_nonfinite_scalar(x, n);
}

/* ---- the session ---- */

/*
 * Own threads rather than OpenMP: an OpenMP team meets at a barrier after every slab, and libgomp's
 * waiting threads spin there. Here one mutex guards the queue: a worker claims the next task (a few
 * rows) of the first job with tasks left; the task's slab must have a free output buffer (the writer
 * has written the slab QS_NBUF before it, counted over all jobs), else the worker sleeps. The worker
 * that completes a slab wakes the writer, which hands the slabs to the sinks in order. Nobody spins,
 * and the workers go from one job to the next without waiting for the writer.
 */
typedef struct {
	muse_qs_job j;
	muse_qs_file f;                    /* j.file points here when the job reads a file */
	bool is_bytes;                     /* a bytes item: bytes to j.sink, no rows */
	const void *bytes;
	size_t nbytes;
	muse_quantize_fn fn;
	size_t row_bytes, src_row_bytes;   /* output row; a file's input row */
	int64_t rpm, trows, slab, tps, ntask, nslab;
	int64_t g0;                        /* number of the job's first slab, counted over the session */
	int64_t next;                      /* next task to claim (under mu) */
} qs_item;

typedef struct {
	muse_qs_session *s;
	float *stage;                      /* trows F32 rows (from a row source or a file) */
	uint8_t *raw;                      /* trows rows as a file holds them, when not F32 */
	size_t stage_cap, raw_cap;
} qs_worker;

struct muse_qs_session {
	int nth, started;
	bool writer_started;
	pthread_t writer;
	pthread_t *tids;
	qs_worker *w;
	pthread_mutex_t mu;
	pthread_cond_t cv;                 /* every change: queue, claims, slabs done or written, errors */
	qs_item q[QS_QUEUE];
	int64_t tail;                      /* items queued */
	int64_t claim;                     /* first item that may have tasks left to claim */
	int64_t written;                   /* items handed to their sinks in full */
	int64_t next_g;                    /* slab number of the next item's first slab */
	int64_t consumed;                  /* slabs written */
	int64_t done[QS_NBUF];             /* tasks finished of the slab buffer b holds */
	uint8_t *buf[QS_NBUF];
	size_t cap[QS_NBUF];
	int busy;                          /* tasks running, and the writer inside a sink */
	bool stop, closing;
	/* the first error in (slab, position) order */
	int64_t err_g, err_pos;
	muse_status st;
	muse_err err;
};

static int64_t slab_tasks(const qs_item *it, int64_t sl)
{
	int64_t t0 = sl * it->tps, t1 = t0 + it->tps < it->ntask ? t0 + it->tps : it->ntask;
	return t1 - t0;
}

static int64_t slab_rows(const qs_item *it, int64_t sl)
{
	int64_t r0 = sl * it->slab;
	return it->j.nrows - r0 < it->slab ? it->j.nrows - r0 : it->slab;
}

/* Records an error at (g, pos) and stops the session; under mu. */
static void fail_locked(muse_qs_session *s, int64_t g, int64_t pos, muse_status st, const muse_err *e)
{
	if (!s->st || g < s->err_g || (g == s->err_g && pos < s->err_pos)) {
		s->err_g = g;
		s->err_pos = pos;
		s->st = st;
		s->err = *e;
	}
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
}

/* Grows *p to at least need bytes, page-aligned (contents not kept); false when out of memory. */
static bool grow(void **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	free(*p);
	*p = aligned_alloc(QS_PAGE, (need + QS_PAGE - 1) / QS_PAGE * QS_PAGE);
	*cap = *p ? need : 0;
	return *p != NULL;
}

/*
 * Rows [a, a + n) of the item's file into the worker's stage (via its raw buffer when the file's type is not
 * F32); *x: where the F32 rows start. The bytes land at the page offset they have in the file: the kernel's
 * copy (rep movsb) runs 4-5x slower when the destination sits a few bytes past the source's page offset
 * (16 bytes, malloc's, is such a distance: 2.4 GB/s against 12 GB/s here).
 */
static muse_status read_rows(const qs_item *it, qs_worker *w, int64_t a, int64_t n, const float **x, muse_err *err)
{
	const muse_qs_file *f = &it->f;
	const size_t len = (size_t)n * it->src_row_bytes;
	const uint64_t off = f->offset + (uint64_t)a * it->src_row_bytes;
	/* (an offset that is not a multiple of 4, possible with a GGUF alignment below 4, reads to the start) */
	uint8_t *dst = (it->j.file->dtype == MUSE_DT_F32 ? (uint8_t *)w->stage : w->raw) + (off % 4 ? 0 : off % QS_PAGE);
	for (size_t got = 0; got < len;) {
		ssize_t r = pread(f->fd, dst + got, len - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return muse_err_set(err, MUSE_ERR_IO, "read of rows %" PRId64 "..%" PRId64 " at offset %" PRIu64
					    " failed: %s", a, a + n - 1, off + got, r < 0 ? strerror(errno) : "file shrank");
		got += (size_t)r;
	}
	if (f->dtype == MUSE_DT_F32) {
		*x = (const float *)(const void *)dst;
		return MUSE_OK;
	}
	*x = w->stage;
	size_t ne = (size_t)(n * it->j.n_per_row);
	if (muse_dtype_info(f->dtype)->is_quant)
		return muse_dequantize(f->dtype, dst, w->stage, (int64_t)ne, err);
	return muse_dtype_convert(MUSE_DT_F32, w->stage, f->dtype, dst, ne, err);
}

/* Task k of the item into out (its slab's buffer); *pos: where an error lies, in elements of the job. */
static muse_status run_task(const qs_item *it, qs_worker *w, int64_t k, uint8_t *out, int64_t *pos, muse_err *err)
{
	const muse_qs_job *j = &it->j;
	const int64_t npr = j->n_per_row, a = k * it->trows;
	const int64_t n = j->nrows - a < it->trows ? j->nrows - a : it->trows;
	const int64_t sl = k / it->tps;
	muse_status st;
	*pos = a * npr;
	const float *x;
	if (j->file || !j->f32) {
		const size_t fl = (size_t)it->trows * (size_t)npr * sizeof(float);
		if (!grow((void **)&w->stage, &w->stage_cap, fl + QS_PAGE) ||
		    (j->file && j->file->dtype != MUSE_DT_F32 &&
		     !grow((void **)&w->raw, &w->raw_cap, (size_t)it->trows * it->src_row_bytes + QS_PAGE)))
			return muse_err_set(err, MUSE_ERR_NOMEM, "quantize: out of memory");
		x = w->stage;
		if ((st = j->file ? read_rows(it, w, a, n, &x, err) : j->rows(j->rows_ctx, a, n, w->stage, err)))
			return st;
	} else {
		x = j->f32 + a * npr;
	}
	if (j->check_finite) {
		int64_t i = first_nonfinite(x, n * npr);
		if (i >= 0) {
			*pos = a * npr + i;
			return muse_err_set(err, MUSE_ERR_FORMAT, "element %" PRId64 " (row %" PRId64 ") is %g; cannot "
					    "quantize non-finite weights", a * npr + i, a + i / npr, (double)x[i]);
		}
	}
	out += (size_t)(a - sl * it->slab) * it->row_bytes;
	/* a call never crosses a matrix: each has its own importance */
	for (int64_t d = 0; d < n;) {
		int64_t m = (a + d) / it->rpm, left = it->rpm - (a + d) % it->rpm, cnt = n - d < left ? n - d : left;
		const float *imp = j->importance ? j->importance + m * npr : NULL;
		it->fn(x + d * npr, out + (size_t)d * it->row_bytes, cnt, npr, imp);
		d += cnt;
	}
	return MUSE_OK;
}

static void *worker_main(void *p)
{
	qs_worker *w = p;
	muse_qs_session *s = w->s;
	pthread_setname_np(pthread_self(), "muse-quant");
	omp_set_num_threads(1); /* a row source's OpenMP loops run inline, not as one more team per worker */
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		if (s->claim == s->tail) {
			if (s->closing)
				break;
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		qs_item *it = &s->q[s->claim % QS_QUEUE];
		if (it->is_bytes || it->next >= it->ntask) {
			s->claim++;
			continue;
		}
		const int64_t k = it->next, sl = k / it->tps, g = it->g0 + sl;
		const int b = (int)(g % QS_NBUF);
		if (g >= s->consumed + QS_NBUF) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		/* the slab's first task sizes its buffer: nobody else uses that buffer until this slab is claimed */
		const size_t need = (size_t)slab_rows(it, sl) * it->row_bytes;
		if (k == sl * it->tps && !grow((void **)&s->buf[b], &s->cap[b], need)) {
			muse_err e = { 0 };
			fail_locked(s, g, 0, muse_err_set(&e, MUSE_ERR_NOMEM, "quantize: out of memory"), &e);
			break;
		}
		it->next++;
		s->busy++;
		uint8_t *out = s->buf[b];
		pthread_mutex_unlock(&s->mu);
		muse_err e = { 0 };
		int64_t pos = 0;
		muse_status st = run_task(it, w, k, out, &pos, &e);
		const char *pre = it->j.what ? it->j.what : it->j.file ? (it->f.path ? it->f.path : "input") : NULL;
		if (st && pre)
			muse_err_prefix(&e, "%s", pre);
		pthread_mutex_lock(&s->mu);
		s->busy--;
		if (st)
			fail_locked(s, g, pos, st, &e);
		else if (++s->done[b] == slab_tasks(it, sl))
			pthread_cond_broadcast(&s->cv);
		else if (s->stop)
			pthread_cond_broadcast(&s->cv); /* drain waits for the last task to end */
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* The item at written is handed over in full; under mu. Its queue slot is free for the next submit, so no
 * worker may look at it again: the writer can pass workers that have not come back to the queue yet (over
 * bytes items, which need no worker), and their claim index moves up with it. */
static void item_written(muse_qs_session *s)
{
	s->written++;
	if (s->claim < s->written)
		s->claim = s->written;
	pthread_cond_broadcast(&s->cv);
}

/* Hands the items to their sinks in queue order, each job slab by slab as its slabs complete. */
static void *writer_main(void *p)
{
	muse_qs_session *s = p;
	pthread_setname_np(pthread_self(), "muse-write");
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		if (s->written == s->tail) {
			if (s->closing)
				break;
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		qs_item *it = &s->q[s->written % QS_QUEUE];
		muse_err e = { 0 };
		muse_status st;
		if (it->is_bytes) {
			s->busy++;
			pthread_mutex_unlock(&s->mu);
			st = it->j.sink(it->j.sink_ctx, it->bytes, it->nbytes, 0, &e);
			pthread_mutex_lock(&s->mu);
			s->busy--;
			if (st) {
				fail_locked(s, it->g0, -1, st, &e);
				break;
			}
			item_written(s);
			continue;
		}
		const int64_t sl = s->consumed - it->g0;
		if (sl >= it->nslab) {
			item_written(s);
			continue;
		}
		const int64_t g = s->consumed;
		const int b = (int)(g % QS_NBUF);
		if (s->done[b] < slab_tasks(it, sl)) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		s->busy++;
		pthread_mutex_unlock(&s->mu);
		int64_t nr = slab_rows(it, sl);
		st = it->j.sink(it->j.sink_ctx, s->buf[b], (size_t)nr * it->row_bytes, nr, &e);
		pthread_mutex_lock(&s->mu);
		s->busy--;
		if (st) {
			fail_locked(s, g, INT64_MAX, st, &e);
			break;
		}
		s->done[b] = 0;
		s->consumed = g + 1;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

muse_status muse_qs_open(int threads, muse_qs_session **out, muse_err *err)
{
	*out = NULL;
	int nth = threads > 0 ? threads : omp_get_max_threads();
	if (nth > QS_MAX_THREADS)
		nth = QS_MAX_THREADS;
	if (nth < 1)
		nth = 1;
	muse_qs_session *s = calloc(1, sizeof *s);
	if (!s || !(s->tids = calloc((size_t)nth, sizeof *s->tids)) || !(s->w = calloc((size_t)nth, sizeof *s->w))) {
		if (s)
			free(s->tids);
		free(s);
		return muse_err_set(err, MUSE_ERR_NOMEM, "quantize: out of memory");
	}
	s->nth = nth;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if (pthread_create(&s->writer, NULL, writer_main, s)) {
		muse_qs_close(s);
		return muse_err_set(err, MUSE_ERR_NOMEM, "quantize: cannot start the writer thread");
	}
	s->writer_started = true;
	for (int t = 0; t < nth; t++) {
		s->w[t] = (qs_worker){ .s = s };
		if (pthread_create(&s->tids[t], NULL, worker_main, &s->w[t]))
			break; /* fewer workers: the same bytes */
		s->started++;
	}
	if (!s->started) {
		muse_qs_close(s);
		return muse_err_set(err, MUSE_ERR_NOMEM, "quantize: cannot start a worker thread");
	}
	*out = s;
	return MUSE_OK;
}

/* The session's error into err (under mu). */
static muse_status session_error(const muse_qs_session *s, muse_err *err)
{
	if (err)
		*err = s->err;
	return s->st;
}

/* Appends a filled item once the queue has room; under no lock. */
static muse_status enqueue(muse_qs_session *s, const qs_item *it, muse_err *err)
{
	pthread_mutex_lock(&s->mu);
	while (!s->stop && s->tail - s->written >= QS_QUEUE)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->stop) {
		/* a stop without an error is a closing session */
		muse_status st = s->st ? session_error(s, err) : muse_err_set(err, MUSE_ERR_USAGE, "quantize: session closed");
		pthread_mutex_unlock(&s->mu);
		return st;
	}
	qs_item *q = &s->q[s->tail % QS_QUEUE];
	*q = *it;
	if (q->j.file)
		q->j.file = &q->f;
	q->g0 = s->next_g;
	s->next_g += q->nslab;
	s->tail++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return MUSE_OK;
}

/* Checks job j and fills the item's layout; errors name the job's type. */
static muse_status plan_item(const muse_qs_job *j, int workers, qs_item *it, muse_err *err)
{
	const muse_quant_traits *q = muse_quant_traits_of(j->type);
	const muse_dtype_traits *dt = muse_dtype_info(j->type);
	if (!q || !q->quantize_ref)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "quantizing to %s is not supported", muse_dtype_name(j->type));
	const int64_t npr = j->n_per_row, nrows = j->nrows;
	if (npr <= 0 || npr % dt->blck)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: row of %lld elements is not a whole number of %u-element blocks",
				    muse_dtype_name(j->type), (long long)npr, dt->blck);
	if (q->needs_importance && !j->importance)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s needs an importance matrix (--imatrix)", muse_dtype_name(j->type));
	if (!j->file && !j->f32 && !j->rows)
		return muse_err_set(err, MUSE_ERR_USAGE, "quantize stream: no rows");
	if (!j->sink)
		return muse_err_set(err, MUSE_ERR_USAGE, "quantize stream: no sink");
	*it = (qs_item){ .j = *j, .fn = q->quantize_fast ? q->quantize_fast : q->quantize_ref };
	if (j->file) {
		const muse_dtype_traits *st = muse_dtype_info(j->file->dtype);
		const muse_quant_traits *sq = muse_quant_traits_of(j->file->dtype);
		if (!st || !st->blck || npr % st->blck || (st->is_quant ? !sq || !sq->dequantize : !st->is_float))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "quantize stream: cannot read %s rows as F32",
					    muse_dtype_name(j->file->dtype));
		it->f = *j->file;
		it->src_row_bytes = (size_t)(npr / st->blck) * st->block_bytes;
	}
	it->row_bytes = (size_t)(npr / dt->blck) * dt->block_bytes;
	it->rpm = j->rows_per_mat > 0 ? j->rows_per_mat : nrows;
	/* a file's rows come a few hundred KB per pread: the syscall's cost stays small, the rows stay in L2 */
	it->trows = QS_TASK_ROWS;
	if (j->file) {
		int64_t t = (int64_t)(QS_READ_BYTES / ((size_t)npr * sizeof(float)));
		it->trows = t < 1 ? 1 : t > QS_READ_MAX_ROWS ? QS_READ_MAX_ROWS : t;
	}
	int64_t slab = (int64_t)(QS_SLAB_BYTES * (size_t)workers / ((size_t)npr * sizeof(float)));
	slab -= slab % it->trows;
	it->slab = slab < it->trows ? it->trows : slab;
	it->tps = it->slab / it->trows;
	it->ntask = nrows > 0 ? (nrows + it->trows - 1) / it->trows : 0;
	it->nslab = (it->ntask + it->tps - 1) / it->tps;
	return MUSE_OK;
}

muse_status muse_qs_submit(muse_qs_session *s, const muse_qs_job *j, muse_err *err)
{
	qs_item it;
	muse_status st = plan_item(j, s->started, &it, err);
	if (st) {
		if (j->what)
			muse_err_prefix(err, "%s", j->what);
		return st;
	}
	return enqueue(s, &it, err);
}

muse_status muse_qs_submit_bytes(muse_qs_session *s, const void *bytes, size_t n, muse_qs_sink_fn sink, void *ctx,
				 muse_err *err)
{
	qs_item it = { .is_bytes = true, .bytes = bytes, .nbytes = n };
	it.j.sink = sink;
	it.j.sink_ctx = ctx;
	return enqueue(s, &it, err);
}

muse_status muse_qs_drain(muse_qs_session *s, muse_err *err)
{
	pthread_mutex_lock(&s->mu);
	/* after an error, the tasks still running may find an earlier one: wait for them */
	while (!(s->stop ? s->busy == 0 : s->written == s->tail))
		pthread_cond_wait(&s->cv, &s->mu);
	muse_status st = s->st ? session_error(s, err) : MUSE_OK;
	pthread_mutex_unlock(&s->mu);
	return st;
}

void muse_qs_close(muse_qs_session *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (int t = 0; t < s->started; t++)
		pthread_join(s->tids[t], NULL);
	if (s->writer_started)
		pthread_join(s->writer, NULL);
	for (int t = 0; t < s->nth; t++) {
		free(s->w[t].stage);
		free(s->w[t].raw);
	}
	for (int b = 0; b < QS_NBUF; b++)
		free(s->buf[b]);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->tids);
	free(s->w);
	free(s);
}

muse_status muse_quantize_stream(const muse_qs_job *job, muse_err *err)
{
	muse_qs_session *s;
	muse_status st = muse_qs_open(job->threads, &s, err);
	if (st)
		return st;
	if (!(st = muse_qs_submit(s, job, err)))
		st = muse_qs_drain(s, err);
	muse_qs_close(s);
	return st;
}

/* OpenBLAS (0.3.x) exports this; weak, so a build against another BLAS links and skips it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

void muse_blas_threads_idle(void)
{
	if (blas_thread_shutdown_)
		blas_thread_shutdown_();
}
