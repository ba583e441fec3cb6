/* test_calib_stats.c: the statistics collector's AWQ side: per-channel mean |x| and the seeded reservoir of kept input rows. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../quant/act_stats.h"
#include "unit.h"

/* Row r of the stream: every channel j holds r * 100 + j (so a kept row names itself). */
static void rows(float *x, int64_t r0, int64_t n, int64_t n_in)
{
	for (int64_t r = 0; r < n; r++)
		for (int64_t j = 0; j < n_in; j++)
			x[r * n_in + j] = (float)((r0 + r) * 100 + j);
}

/* Feeds rows [0, total) of a dense linear in events of `step` rows. */
static muse_status feed(muse_stats *st, const char *name, int64_t total, int64_t step, int64_t n_in, muse_err *err)
{
	float *x = malloc((size_t)(step * n_in) * sizeof *x);
	muse_status s = MUSE_OK;
	for (int64_t r0 = 0; r0 < total && !s; r0 += step) {
		int64_t n = total - r0 < step ? total - r0 : step;
		rows(x, r0, n, n_in);
		muse_linear_event ev = { .layer = 0, .slot = MUSE_W_ATTN_Q, .tensor = name, .expert = -1, .x = x,
					 .n_rows = n, .n_in = n_in, .n_routed = n };
		s = muse_stats_hook(st, &ev, err);
	}
	free(x);
	return s;
}

static void test_absmean(void)
{
	muse_stats *st = NULL;
	muse_err err = { 0 };
	CHECK(muse_stats_create(MUSE_STATS_ABSMEAN, &st, &err) == MUSE_OK);
	float x[6] = { 1, -2, -3, 4, 0.5f, -0.5f };
	muse_linear_event ev = { .tensor = "blk.0.ffn_up_exps.weight", .expert = 2, .n_expert = 4, .x = x, .n_rows = 3,
				 .n_in = 2, .n_routed = 3 };
	CHECK(muse_stats_hook(st, &ev, &err) == MUSE_OK);
	const muse_stats_entry *e = muse_stats_find(st, "blk.0.ffn_up_exps.weight");
	CHECK(e != NULL);
	if (e) {
		CHECK(fabs(muse_stats_absmean(e, 2, 0) - 4.5 / 3) < 1e-12);
		CHECK(fabs(muse_stats_absmean(e, 2, 1) - 6.5 / 3) < 1e-12);
		CHECK(muse_stats_absmean(e, 1, 0) == 0); /* an expert that saw nothing */
		CHECK(e->kept == NULL);                  /* no reservoir unless asked */
	}
	muse_stats_free(st);
}

static void test_keep_all_when_few(void)
{
	muse_stats *st = NULL;
	muse_err err = { 0 };
	CHECK(muse_stats_create(MUSE_STATS_KEEP, &st, &err) == MUSE_OK);
	CHECK(muse_stats_set_keep(st, 16, 1, &err) == MUSE_OK);
	CHECK(feed(st, "a", 10, 3, 4, &err) == MUSE_OK);
	const muse_stats_entry *e = muse_stats_find(st, "a");
	CHECK(e && e->kept && e->n_kept[0] == 10 && e->keep_cap == 16);
	for (int64_t r = 0; e && r < 10; r++)
		for (int64_t j = 0; j < 4; j++)
			CHECK(e->kept[r * 4 + j] == (float)(r * 100 + j));
	/* settings are fixed once collection started; bad sizes refused */
	CHECK(muse_stats_set_keep(st, 8, 1, &err) == MUSE_ERR_USAGE);
	muse_stats_free(st);
	CHECK(muse_stats_create(MUSE_STATS_KEEP, &st, &err) == MUSE_OK);
	CHECK(muse_stats_set_keep(st, 0, 1, &err) == MUSE_ERR_USAGE);
	muse_stats_free(st);
}

/* The rows kept of `total` with cap and seed, as a bitmap; events of `step` rows. */
static void kept_set(int64_t total, int64_t step, int64_t cap, uint64_t seed, const char *name, unsigned char *seen)
{
	muse_stats *st = NULL;
	muse_err err = { 0 };
	memset(seen, 0, (size_t)total);
	if (muse_stats_create(MUSE_STATS_KEEP, &st, &err) || muse_stats_set_keep(st, cap, seed, &err) ||
	    feed(st, name, total, step, 3, &err)) {
		CHECK(0);
		muse_stats_free(st);
		return;
	}
	const muse_stats_entry *e = muse_stats_find(st, name);
	CHECK(e && e->n_kept[0] == cap);
	for (int64_t k = 0; e && k < cap; k++) {
		int64_t r = (int64_t)e->kept[k * 3] / 100;
		CHECK(r >= 0 && r < total);
		CHECK(e->kept[k * 3 + 2] == (float)(r * 100 + 2)); /* whole rows */
		if (r >= 0 && r < total) {
			CHECK(!seen[r]); /* without replacement */
			seen[r] = 1;
		}
	}
	muse_stats_free(st);
}

static void test_reservoir(void)
{
	enum { N = 40, CAP = 10, SEEDS = 2000 };
	unsigned char a[N], b[N];
	/* the same seed keeps the same rows whatever the batching */
	kept_set(N, 7, CAP, 42, "blk.1.attn_q.weight", a);
	kept_set(N, 40, CAP, 42, "blk.1.attn_q.weight", b);
	CHECK(!memcmp(a, b, N));
	kept_set(N, 1, CAP, 42, "blk.1.attn_q.weight", b);
	CHECK(!memcmp(a, b, N));
	/* another seed, or another tensor, draws other rows */
	kept_set(N, 7, CAP, 43, "blk.1.attn_q.weight", b);
	CHECK(memcmp(a, b, N));
	kept_set(N, 7, CAP, 42, "blk.1.attn_k.weight", b);
	CHECK(memcmp(a, b, N));
	/* uniform: over many seeds every row is kept with probability CAP / N = 0.25 (binomial sd 0.0097 at 2000; 4 sd) */
	int hits[N] = { 0 };
	for (uint64_t s = 0; s < SEEDS; s++) {
		kept_set(N, 9, CAP, s, "u", a);
		for (int r = 0; r < N; r++)
			hits[r] += a[r];
	}
	for (int r = 0; r < N; r++) {
		double p = (double)hits[r] / SEEDS;
		CHECK(p > 0.21 && p < 0.29);
	}
}

static void test_experts(void)
{
	muse_stats *st = NULL;
	muse_err err = { 0 };
	CHECK(muse_stats_create(MUSE_STATS_KEEP | MUSE_STATS_ABSMEAN, &st, &err) == MUSE_OK);
	CHECK(muse_stats_set_keep(st, 2, 5, &err) == MUSE_OK);
	float x[6];
	rows(x, 0, 3, 2);
	muse_linear_event ev = { .tensor = "blk.0.ffn_down_exps.weight", .expert = 1, .n_expert = 3, .x = x,
				 .n_rows = 3, .n_in = 2, .n_routed = 3 };
	CHECK(muse_stats_hook(st, &ev, &err) == MUSE_OK);
	ev.expert = 0;
	ev.n_rows = 1;
	ev.n_routed = 1;
	CHECK(muse_stats_hook(st, &ev, &err) == MUSE_OK);
	const muse_stats_entry *e = muse_stats_find(st, "blk.0.ffn_down_exps.weight");
	CHECK(e && e->n_mat == 3);
	if (e) {
		CHECK(e->n_kept[0] == 1 && e->n_kept[1] == 2 && e->n_kept[2] == 0);
		CHECK(e->kept[0] == 0 && e->kept[1] == 1); /* expert 0's one row */
		CHECK(e->counts[1] == 3);
	}
	muse_stats_free(st);
}

int main(void)
{
	unit_file_name = "calib_stats";
	RUN(test_absmean);
	RUN(test_keep_all_when_few);
	RUN(test_reservoir);
	RUN(test_experts);
	UNIT_MAIN_END();
}
