/* gptq.h: GPTQ (Frantar et al. 2022) on one linear layer, onto an integer grid or through a GGUF block quantizer. */
#ifndef MUSE_GPTQ_H
#define MUSE_GPTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "../formats/packed.h"
#include "../lib/dtype.h"
#include "../lib/status.h"
#include "rtn.h"

typedef struct muse_gptq_opts {
	double damp_percent; /* dampening: damp_percent * mean(diag H) added to the diagonal (GPTQModel default 0.01) */
	double damp_step;    /* when the Cholesky fails, damp_percent grows by this until it reaches 1 (0.0025) */
	int block_size;      /* columns per lazy batch update (128) */
	bool act_order;      /* process columns by descending diag(H) (desc_act) */
	bool static_groups;  /* with act_order: group grids fixed from the unpermuted weights first (g_idx monotonic) */
	int nthreads;        /* for the GGUF block quantizer calls; <= 0: all */
} muse_gptq_opts;

#define MUSE_GPTQ_OPTS_DEFAULT { .damp_percent = 0.01, .damp_step = 0.0025, .block_size = 128 }

typedef struct muse_gptq_stats {
	double loss;         /* sum over columns of (w - q)^2 / Hinv_jj^2 / 2 (GPTQ's reported loss) */
	double damp_used;    /* the damp_percent that made H positive definite */
	uint64_t dead_cols;  /* columns with H_jj == 0 (never activated): zeroed, as GPTQ does */
} muse_gptq_stats;

/*
 * GPTQ on W [rows = out][cols = in] (F32) with H [cols][cols] = 2 X^T X / n
 * (symmetric, F32, from the calibration engine). As GPTQModel's gptq.py:
 * dead columns, dampening, H^-1 through Cholesky (LAPACK, double), its upper
 * Cholesky factor driving column-by-column quantization with error
 * compensation, lazy block updates (BLAS), act-order, static groups. The
 * grid of a group is taken from the error-updated weights when the group's
 * first column is reached (GPTQModel), with every earlier update applied
 * (block boundaries are aligned to groups for that). out gets g_idx only
 * with act_order && !static_groups. st may be NULL.
 */
muse_status muse_gptq_quantize(const muse_wq_config *c, const muse_gptq_opts *o, const float *w, uint64_t rows,
			       uint64_t cols, const float *H, muse_qlinear *out, muse_gptq_stats *st, muse_err *err);

/*
 * GPTQ whose quantizer is a GGUF block type's own (quant/quant.h): at the
 * first column of every type block the error-updated columns of the block
 * are quantized together by muse_quantize_rows (importance = diag H, as an
 * imatrix), their decoded values fixed, and each column's error is then
 * compensated as GPTQ does. dst gets rows * row_bytes of the type (the
 * same layout muse_quantize_rows writes for the whole matrix). No act-order
 * (GGUF blocks are contiguous).
 */
muse_status muse_gptq_quantize_gguf(muse_dtype type, const muse_gptq_opts *o, const float *w, uint64_t rows,
				    uint64_t cols, const float *H, void *dst, muse_gptq_stats *st, muse_err *err);

/*
 * The output error of replacing w by q [rows][cols] on the calibration data,
 * through H: sum over rows of (w - q)^T H (w - q); with H = 2 X^T X / n that
 * is 2/n * ||(W - Q) X^T||^2. Double accumulation.
 */
double muse_gptq_hessian_error(const float *w, const float *q, uint64_t rows, uint64_t cols, const float *H);

#endif
