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
} muse_stats_entry;

typedef struct muse_stats muse_stats;

muse_status muse_stats_create(unsigned flags, muse_stats **out, muse_err *err);
void muse_stats_free(muse_stats *st); /* NULL is a no-op */

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
