/* q_stream.c: quantize rows slab by slab, straight from the input, while a writer thread writes the slabs before. */
#include "q_stream.h"

#include <inttypes.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "quant.h"

#define QS_TASK_ROWS 16                  /* rows per work item, as muse_quantize_rows */
#define QS_SLAB_BYTES ((size_t)4 << 20)  /* F32 input per slab and thread: the output stays in cache for the writer */
#define QS_NBUF 4                        /* output slabs in flight */
#define QS_MAX_THREADS 256

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
__attribute__((target("avx2"))) static int64_t first_nonfinite_avx2(const float *x, int64_t n)
{
	const __m256i absmask = _mm256_set1_epi32(0x7fffffff), lim = _mm256_set1_epi32(0x7f7fffff);
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		/* |x| as bits above the largest finite pattern: an infinity or a NaN */
		__m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), absmask);
		__m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), absmask);
		__m256i c = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 16)), absmask);
		__m256i d = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 24)), absmask);
		__m256i m = _mm256_or_si256(_mm256_or_si256(_mm256_cmpgt_epi32(a, lim), _mm256_cmpgt_epi32(b, lim)),
					    _mm256_or_si256(_mm256_cmpgt_epi32(c, lim), _mm256_cmpgt_epi32(d, lim)));
		if (!_mm256_testz_si256(m, m))
			return i + first_nonfinite_scalar(x + i, 32);
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

/* ---- workers and the writer ---- */

/*
 * Own threads rather than OpenMP: an OpenMP team meets at a barrier after every slab, and libgomp's
 * waiting threads spin there (on a loaded machine that is most of the CPU time of Q8_0). Here each
 * worker claims the next 16-row task of the whole tensor from one counter; the task's slab must have
 * a free output buffer (the writer has written the slab nbuf before it), else the worker sleeps on the
 * condition variable. The worker that completes a slab wakes the writer, which writes the slabs in
 * order. Nobody spins.
 */
typedef struct {
	const muse_qs_job *j;
	muse_quantize_fn fn;
	size_t row_bytes;
	int64_t npr, nrows, rpm, slab, tps, ntask, nslab;
	int nbuf;
	uint8_t *buf[QS_NBUF];
	float **stage;

	_Atomic int64_t next;               /* next task to claim */
	_Atomic int64_t done[QS_NBUF];       /* tasks finished in the slab that buffer b holds */
	_Atomic int64_t consumed;            /* slabs written; changed under mu */
	_Atomic bool stop;                   /* an error: claim nothing more; changed under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* the first failing task's error (under mu) */
	int64_t err_row;
	muse_status st;
	muse_err err;
} qs_ctx;

static int64_t slab_tasks(const qs_ctx *c, int64_t s)
{
	int64_t t0 = s * c->tps, t1 = t0 + c->tps < c->ntask ? t0 + c->tps : c->ntask;
	return t1 - t0;
}

static void fail(qs_ctx *c, int64_t row, muse_status st, const muse_err *e)
{
	pthread_mutex_lock(&c->mu);
	if (row < c->err_row) {
		c->err_row = row;
		c->st = st;
		c->err = *e;
	}
	atomic_store(&c->stop, true);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void work(qs_ctx *c, int tid)
{
	const muse_qs_job *j = c->j;
	const int64_t npr = c->npr;
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		int64_t k = atomic_fetch_add(&c->next, 1);
		if (k >= c->ntask)
			break;
		const int64_t s = k / c->tps, b = s % c->nbuf;
		if (s >= c->nbuf && atomic_load(&c->consumed) <= s - c->nbuf) {
			pthread_mutex_lock(&c->mu);
			while (atomic_load(&c->consumed) <= s - c->nbuf && !atomic_load(&c->stop))
				pthread_cond_wait(&c->cv, &c->mu);
			bool ok = atomic_load(&c->consumed) > s - c->nbuf;
			pthread_mutex_unlock(&c->mu);
			if (!ok)
				break;
		}
		const int64_t a = k * QS_TASK_ROWS, n = c->nrows - a < QS_TASK_ROWS ? c->nrows - a : QS_TASK_ROWS;
		const float *x;
		if (j->f32) {
			x = j->f32 + a * npr;
		} else {
			muse_err e = { 0 };
			muse_status rs = j->rows(j->rows_ctx, a, n, c->stage[tid], &e);
			if (rs) {
				fail(c, a * npr, rs, &e);
				break;
			}
			x = c->stage[tid];
		}
		if (j->check_finite) {
			int64_t i = first_nonfinite(x, n * npr);
			if (i >= 0) {
				muse_err e = { 0 };
				muse_status fs = muse_err_set(&e, MUSE_ERR_FORMAT,
							      "element %" PRId64 " (row %" PRId64 ") is %g; cannot quantize "
							      "non-finite weights", a * npr + i, a + i / npr, (double)x[i]);
				fail(c, a * npr + i, fs, &e);
				break;
			}
		}
		uint8_t *out = c->buf[b] + (size_t)(a - s * c->slab) * c->row_bytes;
		/* a call never crosses a matrix: each has its own importance */
		for (int64_t d = 0; d < n;) {
			int64_t m = (a + d) / c->rpm, left = c->rpm - (a + d) % c->rpm, cnt = n - d < left ? n - d : left;
			const float *imp = j->importance ? j->importance + m * npr : NULL;
			c->fn(x + d * npr, out + (size_t)d * c->row_bytes, cnt, npr, imp);
			d += cnt;
		}
		if (atomic_fetch_add(&c->done[b], 1) + 1 == slab_tasks(c, s)) {
			pthread_mutex_lock(&c->mu);
			pthread_cond_broadcast(&c->cv);
			pthread_mutex_unlock(&c->mu);
		}
	}
}

/* Maps the input rows of slab s in (a mapping's page tables filled here, off the workers' path), when the
 * kernel knows MADV_POPULATE_READ (Linux 5.14); otherwise the workers fault the pages in themselves. */
static void prefault(const qs_ctx *c, int64_t s)
{
#ifdef MADV_POPULATE_READ
	if (!c->j->f32 || s >= c->nslab)
		return;
	const int64_t r0 = s * c->slab, nr = c->nrows - r0 < c->slab ? c->nrows - r0 : c->slab;
	uintptr_t a = (uintptr_t)(c->j->f32 + r0 * c->npr), e = a + (uintptr_t)nr * (uintptr_t)c->npr * sizeof(float);
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	a -= a % pg;
	madvise((void *)a, e - a, MADV_POPULATE_READ); /* a hint: any failure leaves the faults to the workers */
#else
	(void)c;
	(void)s;
#endif
}

/* Writes slab after slab as they complete; meanwhile maps in the input of the slab after the one waited for. */
static void write_slabs(qs_ctx *c)
{
	for (int64_t s = 0; s < c->nslab; s++) {
		const int b = (int)(s % c->nbuf);
		const int64_t want = slab_tasks(c, s);
		prefault(c, s + 1);
		pthread_mutex_lock(&c->mu);
		while (atomic_load(&c->done[b]) < want && !atomic_load(&c->stop))
			pthread_cond_wait(&c->cv, &c->mu);
		bool ok = atomic_load(&c->done[b]) >= want && !atomic_load(&c->stop);
		pthread_mutex_unlock(&c->mu);
		if (!ok)
			return;
		const int64_t r0 = s * c->slab, nr = c->nrows - r0 < c->slab ? c->nrows - r0 : c->slab;
		muse_err e = { 0 };
		muse_status ws = c->j->sink(c->j->sink_ctx, c->buf[b], (size_t)nr * c->row_bytes, nr, &e);
		if (ws) {
			fail(c, INT64_MAX - 1, ws, &e);
			return;
		}
		pthread_mutex_lock(&c->mu);
		atomic_store(&c->done[b], 0);
		atomic_store(&c->consumed, s + 1);
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
}

typedef struct {
	qs_ctx *c;
	int tid;
} qs_arg;

static void *worker_main(void *p)
{
	qs_arg *a = p;
	omp_set_num_threads(1); /* a row source's OpenMP loops run inline, not as one more team per worker */
	work(a->c, a->tid);
	return NULL;
}

static void *writer_main(void *p)
{
	write_slabs(p);
	return NULL;
}

/* ---- the output ring, kept from one tensor to the next ---- */

/* A model is many tensors in a row: freeing the ring after each and allocating it again for the next
 * would give the pages back (heap trimmed, or munmap) and fault them in zeroed again every time. */
static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *ring_keep;
static size_t ring_keep_cap;

/* A block of at least *cap bytes; *cap becomes its size. */
static uint8_t *ring_get(size_t *cap)
{
	uint8_t *p = NULL;
	pthread_mutex_lock(&ring_mu);
	if (ring_keep && ring_keep_cap >= *cap) {
		p = ring_keep;
		*cap = ring_keep_cap;
		ring_keep = NULL;
	}
	pthread_mutex_unlock(&ring_mu);
	return p ? p : malloc(*cap ? *cap : 1);
}

static void ring_put(uint8_t *p, size_t cap)
{
	if (!p)
		return;
	pthread_mutex_lock(&ring_mu);
	if (!ring_keep || ring_keep_cap < cap) {
		uint8_t *old = ring_keep;
		ring_keep = p;
		ring_keep_cap = cap;
		p = old;
	}
	pthread_mutex_unlock(&ring_mu);
	free(p);
}

/* ---- the stream ---- */

muse_status muse_quantize_stream(const muse_qs_job *j, muse_err *err)
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
	if (!j->f32 && !j->rows)
		return muse_err_set(err, MUSE_ERR_USAGE, "quantize stream: no rows");
	if (nrows <= 0)
		return MUSE_OK;
	int nth = j->threads > 0 ? j->threads : omp_get_max_threads();
	qs_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return muse_err_set(err, MUSE_ERR_NOMEM, "quantize: out of memory");
	c->j = j;
	c->fn = q->quantize_fast ? q->quantize_fast : q->quantize_ref;
	c->row_bytes = (size_t)(npr / dt->blck) * dt->block_bytes;
	c->npr = npr;
	c->nrows = nrows;
	c->rpm = j->rows_per_mat > 0 ? j->rows_per_mat : nrows;
	c->ntask = (nrows + QS_TASK_ROWS - 1) / QS_TASK_ROWS;
	if (nth > c->ntask)
		nth = (int)c->ntask;
	int64_t slab = (int64_t)(QS_SLAB_BYTES * (size_t)nth / ((size_t)npr * sizeof(float)));
	slab -= slab % QS_TASK_ROWS;
	if (slab < QS_TASK_ROWS)
		slab = QS_TASK_ROWS;
	c->slab = slab;
	c->tps = slab / QS_TASK_ROWS;
	c->nslab = (c->ntask + c->tps - 1) / c->tps;
	c->nbuf = c->nslab > 1 ? QS_NBUF : 1;
	c->err_row = INT64_MAX;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	muse_status st = MUSE_OK;
	pthread_t tids[QS_MAX_THREADS + 1];
	qs_arg args[QS_MAX_THREADS];
	int started = 0;
	bool writer = false;
	if (nth > QS_MAX_THREADS)
		nth = QS_MAX_THREADS;
	size_t ring_have = (size_t)c->nbuf * (size_t)slab * c->row_bytes;
	uint8_t *ring = ring_get(&ring_have);
	if (!ring) {
		st = muse_err_set(err, MUSE_ERR_NOMEM, "quantize: out of memory");
		goto out;
	}
	for (int b = 0; b < c->nbuf; b++)
		c->buf[b] = ring + (size_t)b * (size_t)slab * c->row_bytes;
	if (!j->f32) {
		c->stage = calloc((size_t)nth, sizeof *c->stage);
		if (!c->stage) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "quantize: out of memory");
			goto out;
		}
		for (int t = 0; t < nth; t++)
			if (!(c->stage[t] = malloc((size_t)QS_TASK_ROWS * (size_t)npr * sizeof(float)))) {
				st = muse_err_set(err, MUSE_ERR_NOMEM, "quantize: out of memory");
				goto out;
			}
	}
	/* more than one slab: a writer thread writes slab s while the workers quantize the next ones */
	if (c->nslab > 1) {
		if (pthread_create(&tids[0], NULL, writer_main, c)) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "quantize: cannot start the writer thread");
			goto out;
		}
		writer = true;
	}
	for (int t = 1; t < nth; t++) {
		args[t] = (qs_arg){ c, t };
		if (pthread_create(&tids[t], NULL, worker_main, &args[t]))
			break; /* fewer workers: the same bytes */
		started++;
	}
	int omp_prev = omp_get_max_threads();
	omp_set_num_threads(1);
	work(c, 0);
	omp_set_num_threads(omp_prev);
	for (int t = 1; t <= started; t++)
		pthread_join(tids[t], NULL);
	if (writer)
		pthread_join(tids[0], NULL);
	else if (!atomic_load(&c->stop))
		write_slabs(c);
	if (c->st) {
		st = c->st;
		if (err)
			*err = c->err;
	}
out:
	ring_put(ring, ring_have);
	if (c->stage)
		for (int t = 0; t < nth; t++)
			free(c->stage[t]);
	free(c->stage);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return st;
}

/* OpenBLAS (0.3.x) exports this; weak, so a build against another BLAS links and skips it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

void muse_blas_threads_idle(void)
{
	if (blas_thread_shutdown_)
		blas_thread_shutdown_();
}
