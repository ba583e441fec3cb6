/* awq.h: AWQ (Lin et al. 2023) on the linears that share one input: per-channel scale search, clipping search, scale folding. */
#ifndef MUSE_AWQ_H
#define MUSE_AWQ_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"
#include "rtn.h"

/*
 * A block-level loss for the scale search: given the candidate scales s
 * and, for each linear, its candidate weights Q(W s) / s (what the layer
 * computes once s is folded into the preceding op), return the loss
 * (AutoAWQ: MSE of the whole attention or MLP block's output). May return
 * NAN to abort the search with an error.
 */
typedef double (*muse_awq_loss_fn)(void *ctx, const float *s, float *const *wq);

/* Linears fed by the same input (q/k/v after input_layernorm; gate/up, of every expert, after post_attention_layernorm). */
typedef struct muse_awq_group {
	size_t n_lin;
	const float *const *w;    /* n_lin weights, [out[i]][in] F32 */
	const uint64_t *out;
	uint64_t in;
	const float *x;           /* [n_tok][in] calibration inputs (a subsample is fine) */
	uint64_t n_tok;
	const float *x_mean;      /* [in] mean |x| over all calibration tokens; NULL: computed from x */
	muse_awq_loss_fn loss;    /* NULL: mean squared error of the group's own outputs X W_i^T on x */
	void *loss_ctx;
} muse_awq_group;

/*
 * A quantizer replacing the integer grid (GGUF block types): w [rows][cols]
 * becomes dequant(quant(w)) in place. w holds columns col0 .. col0+cols-1 of
 * the linears being searched, already multiplied by the candidate scales s
 * (indexed by absolute column; NULL: all 1), so the inputs they meet are
 * x / s. Must be safe to call from several threads at once; returns
 * nonzero on failure.
 */
typedef int (*muse_awq_fakeq_fn)(void *ctx, float *w, uint64_t rows, uint64_t cols, uint64_t col0, const float *s);

typedef struct muse_awq_opts {
	int n_grid;            /* ratios 0, 1/n_grid, ... (AutoAWQ: 20) */
	bool duo_scaling;      /* s = x_mean^r / w_mean^(1-r) (AutoAWQ default) instead of x_mean^r */
	int clip_grid;         /* clipping shrink steps of 1/clip_grid (20) */
	double max_shrink;     /* clip at most this fraction (0.5) */
	uint64_t clip_tokens;  /* tokens used by the clipping search (512) */
	muse_awq_fakeq_fn fakeq; /* NULL: the integer grid of the wq config; else this quantizer (the grid's group
				    size then only sets the clipping and w_mean groups: the block size) */
	void *fakeq_ctx;
} muse_awq_opts;

#define MUSE_AWQ_OPTS_DEFAULT { .n_grid = 20, .duo_scaling = true, .clip_grid = 20, .max_shrink = 0.5, .clip_tokens = 512 }

typedef struct muse_awq_result {
	double best_loss;     /* loss at the chosen scales */
	double identity_loss; /* loss with s = 1 (plain RTN), for the report */
	double best_ratio;    /* -1 when s = 1 won */
} muse_awq_result;

/*
 * AutoAWQ's _search_best_scale: for each ratio r on the grid, s from the
 * activation and weight magnitudes, normalised by sqrt(max s * min s);
 * every linear becomes Q(W s)/s (c's grid, AWQ style) and the loss is
 * measured; the best s goes to scales[in]. Unlike AutoAWQ, s = 1 is also a
 * candidate, so the result is never worse than RTN on the loss.
 */
muse_status muse_awq_search_scale(const muse_awq_group *g, const muse_wq_config *c, const muse_awq_opts *o,
				  float *scales, muse_awq_result *res, muse_err *err);

/*
 * AutoAWQ's _search_best_clip on one linear whose weights w [rows][in] were
 * already multiplied by the scales and whose inputs x [n_tok][in] were
 * divided by them: per (row, group) the clamp |w| <= max * (1 - i/clip_grid)
 * minimising the group's output error on up to clip_tokens tokens; w is
 * clamped in place. (AutoAWQ skips q/k projections: the caller decides.)
 */
muse_status muse_awq_search_clip(const muse_wq_config *c, const muse_awq_opts *o, float *w, uint64_t rows,
				 uint64_t in, const float *x, uint64_t n_tok, muse_err *err);

/* Folding: W[:, k] *= s[k] for the linears; the preceding RMSNorm weight /= s, or the preceding linear's output row k /= s[k]. */
void muse_awq_scale_columns(float *w, uint64_t rows, uint64_t in, const float *s);
void muse_awq_fold_norm(float *norm_w, uint64_t in, const float *s);
void muse_awq_fold_linear(float *prev_w, uint64_t prev_rows, uint64_t prev_cols, const float *s);


/* ---- whole-model AWQ over an HF checkpoint with given activations (the calibration engine will supply them) ---- */

struct muse_reader;
typedef struct muse_awq_model muse_awq_model;

typedef struct muse_awq_model_opts {
	muse_wq_config wq;     /* the final grid (style forced to MUSE_WQ_AWQ) */
	muse_awq_opts ao;
	uint64_t min_tokens;   /* an expert's down projection with fewer routed tokens falls back to RTN (its declared fallback) */
} muse_awq_model_opts;

/*
 * Runs AWQ on every decoder layer of the llama-family checkpoint r (names
 * model.layers.L.{input_layernorm, self_attn.{q,k,v,o}_proj,
 * post_attention_layernorm, mlp.{gate,up,down}_proj | mlp.experts.E.* |
 * block_sparse_moe.experts.E.w1/w2/w3, routers, shared experts}), as AutoAWQ
 * does: scales searched on the original weights for q/k/v (folded into
 * input_layernorm), o (folded into v_proj when shapes allow), every MLP and
 * expert gate/up together (folded into post_attention_layernorm; routers take
 * the scales too, unquantized), each down (folded into its up); clipping on
 * all but q/k; then the AWQ grid. acts holds F32 [n_tok, in] inputs named
 * "<L prefix>input_layernorm.output", "<L prefix>post_attention_layernorm.output",
 * "<o_proj module>.input" and "<down module>.input" (an expert's: its routed tokens).
 * is_linear[i] marks the reader's tensors to quantize. Everything stays in memory (codes at one byte a weight).
 */
muse_status muse_awq_model_run(struct muse_reader *r, struct muse_reader *acts, const bool *is_linear,
			       const muse_awq_model_opts *o, muse_awq_model **out, muse_err *err);
/* Tensor i's quantized form (NULL when i was not quantized). */
const muse_qlinear *muse_awq_model_linear(const muse_awq_model *m, size_t i);
/* Tensor i's new values when AWQ changed an unquantized tensor (norm, router, bias), else NULL; F32, nelements long. */
const float *muse_awq_model_dense(const muse_awq_model *m, size_t i);
/* How tensor i was quantized ("awq", "awq-no-scale", "rtn-fallback") and the tokens its statistics came from. */
const char *muse_awq_model_method(const muse_awq_model *m, size_t i, uint64_t *tokens, double *gain);
void muse_awq_model_free(muse_awq_model *m);

/*
 * AWQ for a GGUF output (`--format gguf:TYPE`): the same groups, searches
 * and folds as muse_awq_model_run, on a model with GGUF names (blk.L.
 * attn_norm, attn_q/k/v, attn_output, ffn_norm, ffn_gate/up/down, stacked
 * ffn_*_exps [E][N][K] and ffn_*_shexp, routers ffn_gate_inp*), with the
 * type's own block quantizer as the quantization function of the scale and
 * clipping searches and of the result (importance: mean x^2 of the inputs
 * the scaled weights meet, as an imatrix). acts holds F32 [n_tok, in]
 * inputs "blk.L.attn_norm.output", "blk.L.ffn_norm.output",
 * "blk.L.attn_output.input", "blk.L.ffn_down.input",
 * "blk.L.ffn_down_shexp.input" and "blk.L.ffn_down_exps.input.E" (expert
 * E's routed rows; fewer than min_tokens: the plain type quantizer).
 */
muse_status muse_awq_gguf_run(struct muse_reader *r, struct muse_reader *acts, const bool *is_linear, muse_dtype type,
			      const muse_awq_opts *ao, uint64_t min_tokens, muse_awq_model **out, muse_err *err);
/* Tensor i's blocks of the run's type (every expert of a stacked tensor), or NULL. */
const uint8_t *muse_awq_model_gguf(const muse_awq_model *m, size_t i, size_t *nbytes);

#endif
