/* act_stats.h: per-linear activation statistics collected through the forward hook: sums of squares and counts (importance matrix, llama.cpp's GGUF layout), optionally X^T X and mean magnitudes. */
#ifndef MUSE_ACT_STATS_H
#define MUSE_ACT_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/status.h"
#include "forward.h"

/* What to accumulate besides the sums of squares and counts every entry has. */
enum {
	MUSE_STATS_XTX = 1u << 0,    /* X^T X per linear (per expert), n_in x n_in doubles: GPTQ's Hessian */
	MUSE_STATS_ABSMEAN = 1u << 1, /* sum of |x| per channel: AWQ's activation scale */
	MUSE_STATS_KEEP = 1u << 2,    /* a seeded reservoir of input rows per linear (per expert): AWQ's kept samples */
};

/*
 * One tensor's statistics (experts of a stacked tensor side by side):
 * sum2[e * n_in + j] = sum over the rows seen by expert e of x_j^2;
 * counts[e] = rows seen; routed[e] = rows the router chose (== counts
 * unless all-experts mode ran every row through every expert).
 */
typedef struct muse_stats_entry {
	char name[96];           /* GGUF tensor name, e.g. "blk.0.ffn_up_exps.weight" */
	int64_t n_in, n_mat;     /* n_mat: experts (1 for a dense linear) */
	double *sum2;            /* n_mat x n_in */
	double *abssum;          /* n_mat x n_in, MUSE_STATS_ABSMEAN only */
	double *xtx;             /* n_mat x n_in x n_in, MUSE_STATS_XTX only */
	int64_t *counts, *routed;
	/*
	 * MUSE_STATS_KEEP only: kept[(e * keep_cap + k) * n_in + j] is input
	 * row k of expert e's reservoir, n_kept[e] = min(counts[e], keep_cap)
	 * rows filled. A uniform sample without replacement of the rows the
	 * expert saw (reservoir sampling, algorithm R, one splitmix64 stream
	 * per tensor and expert seeded from the seed and the name), so the
	 * same data and seed keep the same rows whatever the batching, thread
	 * count or hook order. Q/K/V (gate/up) see the same rows, each in its
	 * own entry. Rows are kept in reservoir order, not stream order.
	 */
	float *kept;             /* n_mat x keep_cap x n_in */
	int64_t *n_kept;         /* n_mat */
	int64_t keep_cap;
} muse_stats_entry;

typedef struct muse_stats muse_stats;

muse_status muse_stats_create(unsigned flags, muse_stats **out, muse_err *err);
void muse_stats_free(muse_stats *st); /* NULL is a no-op */

/*
 * MUSE_STATS_KEEP: at most max_rows rows per tensor and expert, drawn with
 * seed. Call before the first hook call (MUSE_ERR_USAGE after, or when
 * max_rows is not in 1..2^24); without a call the reservoir keeps 512 rows
 * with seed 0. Memory: max_rows x n_in floats per tensor and expert.
 */
muse_status muse_stats_set_keep(muse_stats *st, int64_t max_rows, uint64_t seed, muse_err *err);

/* Mean |x| of channel j over the rows expert e saw (MUSE_STATS_ABSMEAN; 0 when it saw none). */
double muse_stats_absmean(const muse_stats_entry *e, int64_t expert, int64_t j);

/* The hook for muse_fwd_opts (user = the muse_stats). Thread-count independent sums. */
muse_status muse_stats_hook(void *user, const muse_linear_event *ev, muse_err *err);

size_t muse_stats_count(const muse_stats *st);
/* Entry i in name order (valid until the next hook call), or NULL. */
const muse_stats_entry *muse_stats_get(const muse_stats *st, size_t i);
const muse_stats_entry *muse_stats_find(const muse_stats *st, const char *name);

/* Provenance written with the matrix. */
typedef struct muse_imatrix_info {
	const char *dataset;     /* the calibration file as named */
	const char *sha256;      /* its SHA-256 */
	int64_t n_samples, seq_len;
	uint64_t seed;
	bool all_experts;
} muse_imatrix_info;

/*
 * Writes llama.cpp's GGUF imatrix: general.type "imatrix",
 * imatrix.datasets, imatrix.chunk_count (= n_samples), imatrix.chunk_size
 * (= seq_len), then for every entry in name order "<name>.in_sum2" (F32,
 * [n_mat, n_in]) and "<name>.counts" (F32, [n_mat, 1]), as llama-imatrix
 * writes them. muse.calib.* keys carry the data's hash, sample count,
 * length and seed; in all-experts mode "<name>.routed" (F32, [n_mat, 1])
 * adds the router's counts (llama.cpp's loader ignores other suffixes).
 * The file appears complete or not at all.
 */
muse_status muse_imatrix_write(const muse_stats *st, const char *path, const muse_imatrix_info *info, muse_err *err);

#endif
