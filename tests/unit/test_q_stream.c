/* test_q_stream.c: the quantize session (quant/q_stream.c): bytes equal muse_quantize_rows for every source and
 * thread count, queue order across jobs, and the first error in order stops everything after it. */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/dtype.h"
#include "../../quant/q_stream.h"
#include "../../quant/quant.h"
#include "quant_test_data.h"
#include "unit.h"

/* ---- a sink that appends everything it gets, optionally failing at its k-th call ---- */

typedef struct {
	uint8_t *buf;
	size_t len, cap;
	int calls, fail_at; /* fail_at: 1-based call that fails, 0: never */
	int64_t rows;
	pthread_mutex_t *order; /* checks that calls never overlap */
} sink_buf;

static muse_status append(void *ctx, const void *p, size_t n, int64_t rows, muse_err *err)
{
	sink_buf *s = ctx;
	if (s->order && pthread_mutex_trylock(s->order) != 0)
		return muse_err_set(err, MUSE_ERR_USAGE, "two sink calls at once");
	s->calls++;
	muse_status st = MUSE_OK;
	if (s->fail_at && s->calls == s->fail_at) {
		st = muse_err_set(err, MUSE_ERR_IO, "disk full (test)");
	} else {
		if (s->len + n > s->cap) {
			s->cap = (s->len + n) * 2;
			s->buf = realloc(s->buf, s->cap);
		}
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		s->rows += rows;
	}
	if (s->order)
		pthread_mutex_unlock(s->order);
	return st;
}

/* ---- data ---- */

static float *make_rows(int64_t nrows, int64_t npr, uint64_t seed)
{
	rng_state = seed;
	float *x = xmalloc((size_t)(nrows * npr) * sizeof(float));
	for (int64_t i = 0; i < nrows * npr; i++)
		x[i] = rng_normal() * 0.02f * (i % 97 == 0 ? 20.f : 1.f);
	return x;
}

static size_t row_bytes(muse_dtype t, int64_t npr)
{
	const muse_dtype_traits *d = muse_dtype_info(t);
	return (size_t)(npr / d->blck) * d->block_bytes;
}

/* The reference: muse_quantize_rows one matrix at a time, each with its own importance row. */
static uint8_t *expect(muse_dtype t, const float *x, int64_t nrows, int64_t npr, const float *imp, int64_t rpm,
		       size_t *n)
{
	size_t rb = row_bytes(t, npr);
	uint8_t *out = xmalloc((size_t)nrows * rb);
	muse_err err = { 0 };
	for (int64_t r = 0; r < nrows; r += rpm)
		if (muse_quantize_rows(t, x + r * npr, out + (size_t)r * rb, rpm, npr, imp ? imp + r / rpm * npr : NULL,
				       1, &err))
			fprintf(stderr, "%s\n", err.msg);
	*n = (size_t)nrows * rb;
	return out;
}

/* Writes n bytes to a new temporary file; returns its fd (the path is unlinked). */
static int temp_file(const void *p, size_t n, char *path, size_t cap)
{
	snprintf(path, cap, "/tmp/test_q_stream.XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n)
		exit(2);
	return fd;
}

static muse_status rows_from(void *ctx, int64_t r0, int64_t nr, float *dst, muse_err *err)
{
	const int64_t *c = ctx; /* { (intptr) data, npr } */
	const float *x = (const float *)(intptr_t)c[0];
	memcpy(dst, x + r0 * c[1], (size_t)(nr * c[1]) * sizeof(float));
	(void)err;
	return MUSE_OK;
}

/* ---- tests ---- */

/*
 * One session, six items: a file F32 job, a bytes item, a file BF16 job (converted by the workers), an
 * in-memory F32 job, a row-source job with importance per matrix (4 experts), and a file F16 job of
 * one row. The sink sees exactly the reference bytes in queue order, for 1, 2 and 3 workers.
 */
static void queue_order_and_bytes(void)
{
	const int64_t npr = 512, nr_a = 300, nr_b = 77, nr_c = 129, nr_d = 4 * 40;
	float *a = make_rows(nr_a, npr, 1), *b = make_rows(nr_b, npr, 2), *c = make_rows(nr_c, npr, 3);
	float *d = make_rows(nr_d, npr, 4), *e = make_rows(1, npr, 5);
	float *imp = xmalloc(4 * (size_t)npr * sizeof(float));
	for (int64_t i = 0; i < 4 * npr; i++)
		imp[i] = 0.5f + (float)(i % 13);
	/* b and e as the file holds them: BF16 and F16; the reference quantizes their F32 values */
	uint16_t *b16 = xmalloc((size_t)(nr_b * npr) * 2), *e16 = xmalloc((size_t)npr * 2);
	muse_err err = { 0 };
	CHECK(!muse_dtype_convert(MUSE_DT_BF16, b16, MUSE_DT_F32, b, (size_t)(nr_b * npr), &err));
	CHECK(!muse_dtype_convert(MUSE_DT_F32, b, MUSE_DT_BF16, b16, (size_t)(nr_b * npr), &err));
	CHECK(!muse_dtype_convert(MUSE_DT_F16, e16, MUSE_DT_F32, e, (size_t)npr, &err));
	CHECK(!muse_dtype_convert(MUSE_DT_F32, e, MUSE_DT_F16, e16, (size_t)npr, &err));
	/* one file: 64 bytes of something else, a as F32, b as BF16, e as F16 */
	size_t off_a = 64, off_b = off_a + (size_t)(nr_a * npr) * 4, off_e = off_b + (size_t)(nr_b * npr) * 2;
	size_t flen = off_e + (size_t)npr * 2;
	uint8_t *fbytes = xmalloc(flen);
	memcpy(fbytes + off_a, a, (size_t)(nr_a * npr) * 4);
	memcpy(fbytes + off_b, b16, (size_t)(nr_b * npr) * 2);
	memcpy(fbytes + off_e, e16, (size_t)npr * 2);
	char path[64];
	int fd = temp_file(fbytes, flen, path, sizeof path);
	static const uint8_t raw[] = "kept as it is";

	size_t n1, n3, n4, n5, n6;
	uint8_t *x1 = expect(MUSE_DT_Q8_0, a, nr_a, npr, NULL, nr_a, &n1);
	uint8_t *x3 = expect(MUSE_DT_Q4_K, b, nr_b, npr, NULL, nr_b, &n3);
	uint8_t *x4 = expect(MUSE_DT_Q4_0, c, nr_c, npr, NULL, nr_c, &n4);
	uint8_t *x5 = expect(MUSE_DT_Q4_K, d, nr_d, npr, imp, nr_d / 4, &n5);
	uint8_t *x6 = expect(MUSE_DT_Q6_K, e, 1, npr, NULL, 1, &n6);
	size_t total = n1 + sizeof raw + n3 + n4 + n5 + n6;
	uint8_t *want = xmalloc(total);
	size_t at = 0;
	memcpy(want + at, x1, n1), at += n1;
	memcpy(want + at, raw, sizeof raw), at += sizeof raw;
	memcpy(want + at, x3, n3), at += n3;
	memcpy(want + at, x4, n4), at += n4;
	memcpy(want + at, x5, n5), at += n5;
	memcpy(want + at, x6, n6);

	for (int th = 1; th <= 3; th++) {
		pthread_mutex_t order = PTHREAD_MUTEX_INITIALIZER;
		sink_buf sb = { .order = &order };
		muse_qs_session *s = NULL;
		CHECK(!muse_qs_open(th, &s, &err));
		muse_qs_file fa = { fd, off_a, MUSE_DT_F32, path }, fb = { fd, off_b, MUSE_DT_BF16, path };
		muse_qs_file fe = { fd, off_e, MUSE_DT_F16, path };
		int64_t rc[2] = { (int64_t)(intptr_t)d, npr };
		muse_qs_job j1 = { .type = MUSE_DT_Q8_0, .nrows = nr_a, .n_per_row = npr, .file = &fa, .check_finite = true,
				   .sink = append, .sink_ctx = &sb };
		muse_qs_job j3 = { .type = MUSE_DT_Q4_K, .nrows = nr_b, .n_per_row = npr, .file = &fb, .sink = append,
				   .sink_ctx = &sb };
		muse_qs_job j4 = { .type = MUSE_DT_Q4_0, .nrows = nr_c, .n_per_row = npr, .f32 = c, .check_finite = true,
				   .sink = append, .sink_ctx = &sb };
		muse_qs_job j5 = { .type = MUSE_DT_Q4_K, .nrows = nr_d, .n_per_row = npr, .rows = rows_from, .rows_ctx = rc,
				   .importance = imp, .rows_per_mat = nr_d / 4, .sink = append, .sink_ctx = &sb };
		muse_qs_job j6 = { .type = MUSE_DT_Q6_K, .nrows = 1, .n_per_row = npr, .file = &fe, .sink = append,
				   .sink_ctx = &sb };
		CHECK(!muse_qs_submit(s, &j1, &err));
		CHECK(!muse_qs_submit_bytes(s, raw, sizeof raw, append, &sb, &err));
		CHECK(!muse_qs_submit(s, &j3, &err));
		CHECK(!muse_qs_submit(s, &j4, &err));
		CHECK(!muse_qs_submit(s, &j5, &err));
		CHECK(!muse_qs_submit(s, &j6, &err));
		CHECK(!muse_qs_drain(s, &err));
		/* drained: a second drain has nothing to wait for, and the session takes more work */
		CHECK(!muse_qs_drain(s, &err));
		muse_qs_close(s);
		CHECK_EQ_U64(sb.len, total);
		CHECK(sb.len == total && !memcmp(sb.buf, want, total));
		CHECK_EQ_U64(sb.rows, nr_a + nr_b + nr_c + nr_d + 1);
		free(sb.buf);
	}
	close(fd);
	unlink(path);
	free(a), free(b), free(c), free(d), free(e), free(imp), free(b16), free(e16), free(fbytes);
	free(x1), free(x3), free(x4), free(x5), free(x6), free(want);
}

/*
 * A NaN in the second job (and a later one there, and one in the third job): the error names the first
 * NaN of the second job with its prefix, what reached the sink is a prefix of the right bytes that
 * stops before the failing row, and later submits report the same error. The same for every thread count.
 */
static void first_error_in_order(void)
{
	const int64_t npr = 256, nr = 2000;
	float *a = make_rows(nr, npr, 11), *b = make_rows(nr, npr, 12), *c = make_rows(nr, npr, 13);
	const int64_t bad = 1500 * npr + 7;
	b[bad] = __builtin_nanf("");
	b[1900 * npr] = __builtin_inff();
	c[3] = __builtin_nanf("");
	size_t n1, n2;
	uint8_t *x1 = expect(MUSE_DT_Q8_0, a, nr, npr, NULL, nr, &n1);
	uint8_t *xb = expect(MUSE_DT_Q8_0, b, 1500, npr, NULL, 1500, &n2);
	for (int th = 1; th <= 3; th++) {
		sink_buf sb = { 0 };
		muse_err err = { 0 };
		muse_qs_session *s = NULL;
		CHECK(!muse_qs_open(th, &s, &err));
		muse_qs_job ja = { .type = MUSE_DT_Q8_0, .nrows = nr, .n_per_row = npr, .f32 = a, .check_finite = true,
				   .sink = append, .sink_ctx = &sb, .what = "a.gguf: tensor 'a'" };
		muse_qs_job jb = ja, jc = ja;
		jb.f32 = b, jb.what = "a.gguf: tensor 'b'";
		jc.f32 = c, jc.what = "a.gguf: tensor 'c'";
		CHECK(!muse_qs_submit(s, &ja, &err));
		muse_status st = muse_qs_submit(s, &jb, &err);
		if (!st)
			st = muse_qs_submit(s, &jc, &err);
		if (!st)
			st = muse_qs_drain(s, &err);
		CHECK(st == MUSE_ERR_FORMAT);
		char want[200];
		snprintf(want, sizeof want, "a.gguf: tensor 'b': element %lld (row 1500) is nan", (long long)bad);
		CHECK(strstr(err.msg, want) != NULL);
		if (!strstr(err.msg, want))
			printf("#   threads %d: %s\n", th, err.msg);
		muse_err e2 = { 0 };
		CHECK(muse_qs_drain(s, &e2) == MUSE_ERR_FORMAT && !strcmp(e2.msg, err.msg));
		CHECK(muse_qs_submit(s, &ja, &e2) == MUSE_ERR_FORMAT);
		muse_qs_close(s);
		/* what reached the sink is a prefix of a then b, ending before b's failing row */
		CHECK(sb.len <= n1 + (size_t)1500 * row_bytes(MUSE_DT_Q8_0, npr));
		CHECK(!sb.len || !memcmp(sb.buf, x1, sb.len < n1 ? sb.len : n1));
		CHECK(sb.len <= n1 || !memcmp(sb.buf + n1, xb, sb.len - n1));
		free(sb.buf);
	}
	free(a), free(b), free(c), free(x1), free(xb);
}

/* The first non-finite element is found wherever it lies (stretch edges, the tail), whatever its kind;
 * the largest finite magnitude and subnormals pass. */
static void nonfinite_positions(void)
{
	const int64_t npr = 96, nr = 11; /* 1056 elements: four 256-element stretches and a tail */
	float *a = make_rows(nr, npr, 61);
	a[5] = 3.4028235e38f, a[6] = -3.4028235e38f, a[7] = 1e-45f, a[8] = -1e-45f;
	const int64_t pos[] = { 0, 9, 255, 256, 511, 700, 1023, 1024, 1055 };
	const float bad[] = { __builtin_inff(), -__builtin_inff(), __builtin_nanf(""), -__builtin_nanf("") };
	sink_buf sb = { 0 };
	muse_err err = { 0 };
	muse_qs_job j = { .type = MUSE_DT_Q8_0, .nrows = nr, .n_per_row = npr, .f32 = a, .check_finite = true,
			  .sink = append, .sink_ctx = &sb, .threads = 1 };
	CHECK(!muse_quantize_stream(&j, &err));
	for (size_t p = 0; p < sizeof pos / sizeof *pos; p++)
		for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
			float keep = a[pos[p]], keep2 = a[pos[p] + (1055 - pos[p]) / 2];
			a[pos[p]] = bad[k];
			a[pos[p] + (1055 - pos[p]) / 2] = bad[(k + 1) % 4]; /* a second one after it (or the same place) */
			char want[64];
			snprintf(want, sizeof want, "element %lld (row %lld) is ", (long long)pos[p], (long long)(pos[p] / npr));
			CHECK(muse_quantize_stream(&j, &err) == MUSE_ERR_FORMAT && strstr(err.msg, want) == err.msg);
			a[pos[p] + (1055 - pos[p]) / 2] = keep2;
			a[pos[p]] = keep;
		}
	free(sb.buf);
	free(a);
}

/* The sink fails at its third call: that error comes back, and the sink is not called again. */
static void sink_error_stops(void)
{
	const int64_t npr = 1024, nr = 3000;
	float *a = make_rows(nr, npr, 21);
	for (int th = 1; th <= 2; th++) {
		sink_buf sb = { .fail_at = 3 };
		muse_err err = { 0 };
		muse_qs_job j = { .type = MUSE_DT_Q4_0, .nrows = nr, .n_per_row = npr, .f32 = a, .sink = append,
				  .sink_ctx = &sb, .threads = th, .what = "not used for sink errors" };
		CHECK(muse_quantize_stream(&j, &err) == MUSE_ERR_IO);
		CHECK(!strcmp(err.msg, "disk full (test)"));
		CHECK_EQ_U64(sb.calls, 3);
		free(sb.buf);
	}
	free(a);
}

/* A file shorter than the job says: a read error with the job's prefix, the rows and the offset. */
static void short_file(void)
{
	const int64_t npr = 256, nr = 100;
	float *a = make_rows(nr, npr, 31);
	char path[64];
	int fd = temp_file(a, (size_t)(nr * npr) * 4 - 100, path, sizeof path);
	sink_buf sb = { 0 };
	muse_err err = { 0 };
	muse_qs_file f = { fd, 0, MUSE_DT_F32, path };
	muse_qs_job j = { .type = MUSE_DT_Q8_0, .nrows = nr, .n_per_row = npr, .file = &f, .sink = append, .sink_ctx = &sb,
			  .threads = 2 };
	CHECK(muse_quantize_stream(&j, &err) == MUSE_ERR_IO);
	CHECK(!strncmp(err.msg, path, strlen(path)) && strstr(err.msg, "file shrank") && strstr(err.msg, "at offset"));
	/* the rows before the short read's slab may be written, never the rows after it */
	CHECK(sb.len < (size_t)nr * row_bytes(MUSE_DT_Q8_0, npr));
	close(fd);
	unlink(path);
	free(sb.buf);
	free(a);
}

/* Bad jobs are refused at submit, with the job's prefix, and leave the session working. */
static void bad_jobs(void)
{
	float x[64] = { 0 };
	sink_buf sb = { 0 };
	muse_err err = { 0 };
	muse_qs_session *s = NULL;
	CHECK(!muse_qs_open(2, &s, &err));
	muse_qs_job j = { .type = MUSE_DT_Q4_K, .nrows = 1, .n_per_row = 64, .f32 = x, .sink = append, .sink_ctx = &sb,
			  .what = "m.gguf: tensor 'x'" };
	CHECK(muse_qs_submit(s, &j, &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "m.gguf: tensor 'x': Q4_K: row of 64 elements") == err.msg);
	j.type = MUSE_DT_IQ2_XS;
	j.n_per_row = 256;
	CHECK(muse_qs_submit(s, &j, &err) == MUSE_ERR_USAGE && strstr(err.msg, "needs an importance matrix"));
	j.type = MUSE_DT_F16;
	CHECK(muse_qs_submit(s, &j, &err) == MUSE_ERR_UNSUPPORTED);
	muse_qs_file f = { 0, 0, MUSE_DT_I32, "x" };
	j.type = MUSE_DT_Q8_0;
	j.n_per_row = 64;
	j.file = &f;
	CHECK(muse_qs_submit(s, &j, &err) == MUSE_ERR_UNSUPPORTED && strstr(err.msg, "cannot read I32 rows"));
	/* still working: an empty job and a one-row job */
	j.file = NULL;
	j.nrows = 0;
	CHECK(!muse_qs_submit(s, &j, &err));
	j.nrows = 1;
	CHECK(!muse_qs_submit(s, &j, &err));
	CHECK(!muse_qs_drain(s, &err));
	CHECK_EQ_U64(sb.len, row_bytes(MUSE_DT_Q8_0, 64));
	CHECK_EQ_U64(sb.calls, 1);
	muse_qs_close(s);
	free(sb.buf);
}

/*
 * Many more items than the queue holds, small jobs between bytes items (a model's norms between its
 * matrices): the queue's slots are reused only once no worker can still be looking at them, and the
 * bytes come out in order. Repeated, for the thread interleavings.
 */
static bool bytes_item(int i)
{
	return i < 8 || i % 2; /* the writer can run through the first ones before any worker looks */
}

static void many_small_items(void)
{
	const int64_t npr = 256;
	const int n_items = 400;
	float *a = make_rows(64, npr, 51);
	size_t n1;
	uint8_t *x1 = expect(MUSE_DT_Q8_0, a, 64, npr, NULL, 64, &n1);
	static const uint8_t raw[] = "norm";
	for (int rep = 0; rep < 20; rep++) {
		for (int th = 1; th <= 3; th++) {
			sink_buf sb = { 0 };
			muse_err err = { 0 };
			muse_qs_session *s = NULL;
			CHECK(!muse_qs_open(th, &s, &err));
			/* jobs of 1, 16 and 64 rows: one task, and a few */
			for (int i = 0; i < n_items; i++) {
				int64_t nr = i % 3 == 0 ? 1 : i % 3 == 1 ? 16 : 64;
				muse_qs_job j = { .type = MUSE_DT_Q8_0, .nrows = nr, .n_per_row = npr, .f32 = a, .sink = append,
						  .sink_ctx = &sb };
				CHECK(!(bytes_item(i) ? muse_qs_submit_bytes(s, raw, sizeof raw, append, &sb, &err)
						      : muse_qs_submit(s, &j, &err)));
			}
			CHECK(!muse_qs_drain(s, &err));
			muse_qs_close(s);
			size_t at = 0;
			bool same = true;
			for (int i = 0; i < n_items && same; i++) {
				int64_t nr = i % 3 == 0 ? 1 : i % 3 == 1 ? 16 : 64;
				const void *want = bytes_item(i) ? (const void *)raw : x1;
				size_t len = bytes_item(i) ? sizeof raw : (size_t)nr * row_bytes(MUSE_DT_Q8_0, npr);
				same = at + len <= sb.len && !memcmp(sb.buf + at, want, len);
				at += len;
			}
			CHECK(same && at == sb.len);
			free(sb.buf);
		}
	}
	free(a);
	free(x1);
}

/* Closing with work queued and never drained: the threads stop, nothing leaks (ASan), no hang. */
static void close_undrained(void)
{
	const int64_t npr = 4096, nr = 64;
	float *a = make_rows(nr, npr, 41);
	sink_buf sb = { 0 };
	muse_err err = { 0 };
	muse_qs_session *s = NULL;
	CHECK(!muse_qs_open(2, &s, &err));
	muse_qs_job j = { .type = MUSE_DT_Q6_K, .nrows = nr, .n_per_row = npr, .f32 = a, .sink = append, .sink_ctx = &sb };
	for (int i = 0; i < 100; i++)
		CHECK(!muse_qs_submit(s, &j, &err));
	muse_qs_close(s);
	CHECK(sb.len <= 100 * (size_t)nr * row_bytes(MUSE_DT_Q6_K, npr));
	free(sb.buf);
	free(a);
}

int main(void)
{
	unit_file_name = "q_stream";
	RUN(queue_order_and_bytes);
	RUN(first_error_in_order);
	RUN(nonfinite_positions);
	RUN(sink_error_stops);
	RUN(short_file);
	RUN(bad_jobs);
	RUN(many_small_items);
	RUN(close_undrained);
	UNIT_MAIN_END();
}
