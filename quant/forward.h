/* forward.h: the F32 CPU forward pass, one decoder layer at a time, with a hook on the input of every matrix product. */
#ifndef MUSE_FORWARD_H
#define MUSE_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/status.h"
#include "model.h"

/*
 * What a statistics hook sees: the exact input of one matrix product.
 *
 * Dense linears get one event per call with every row of the batch.
 * Stacked experts get one event per expert that received rows: x holds
 * only that expert's rows (rows[] gives each one's index in the batch),
 * or, in all-experts mode, every row of the batch while n_routed still
 * counts the rows the router chose. Q, K and V (and gate and up) see the
 * same x, each in its own event, as llama.cpp's imatrix collector does.
 * Everything is borrowed for the duration of the call only.
 */
typedef struct muse_linear_event {
	int64_t layer;
	muse_wslot slot;          /* which weight of the layer */
	const char *tensor;       /* its GGUF name, e.g. "blk.3.ffn_up_exps.weight" */
	int64_t expert;           /* -1 for a dense linear */
	int64_t n_expert;         /* experts in the stacked tensor (0 for dense) */
	const float *x;           /* n_rows x n_in, row-major */
	int64_t n_rows, n_in;
	const int32_t *rows;      /* experts: batch row of each x row (NULL for dense or all-experts mode) */
	int64_t n_routed;         /* experts: rows the router assigned to this expert (== n_rows unless all-experts) */
	const float *w;           /* the weight matrix used, n_out x n_in (for experts: this expert's slice) */
	int64_t n_out;
} muse_linear_event;

/* Returns MUSE_OK to go on; any other status stops the forward pass with err as the hook set it. */
typedef muse_status (*muse_linear_hook)(void *user, const muse_linear_event *ev, muse_err *err);

typedef struct muse_fwd_opts {
	muse_linear_hook hook;    /* NULL: no statistics */
	void *user;
	bool all_experts;         /* run every row through every expert for the hook; outputs still use top-k */
	int64_t max_rows;         /* rows per internal batch (whole sequences; 0: 4096) bounding scratch memory */
	int64_t *expert_tokens;   /* optional n_expert counters: rows the router sent to each expert, accumulated */
	/*
	 * llama.cpp's CPU arithmetic instead of exact F32 (eval of a GGUF; calibration keeps F32): round the input
	 * rows of every product to the weight's vec_dot_type (quant/ggml_act.h: Q8_0, Q8_1, Q8_K, F16, BF16) before
	 * the F32 product with the dequantized weight, which is ggml's integer dot product up to float summation
	 * order (Q4_1/Q5_1 also get Q8_1's fp16 sum term). llama.cpp's F16 KV cache is not emulated: rounding K and
	 * V to fp16 moved SmolLM2's perplexity by 0.01%. Hooks still see the unrounded input.
	 */
	bool ggml_act;
} muse_fwd_opts;

/*
 * Runs decoder layer l over x in place: n_seq sequences of seq_len rows of
 * n_embd floats each (the residual stream), positions 0..seq_len-1 in each
 * sequence, causal attention within a sequence. opts may be NULL. The result
 * does not depend on the thread count.
 */
muse_status muse_forward_layer(const muse_model *m, const muse_layer *l, float *x, int64_t n_seq, int64_t seq_len,
			       const muse_fwd_opts *opts, muse_err *err);

/* Final norm and output head for n_rows rows of x: logits gets n_rows x n_vocab. opts (may be NULL): ggml_act. */
muse_status muse_forward_logits(const muse_model *m, const muse_head *h, const float *x, int64_t n_rows,
				const muse_fwd_opts *opts, float *logits, muse_err *err);

/*
 * Convenience for small inputs: embeds the ids of n_seq sequences of
 * seq_len tokens, runs every layer (loading each in turn) and writes all
 * logits (n_seq * seq_len x n_vocab). The layer-at-a-time pattern in one
 * call; calibration drivers use the pieces above instead.
 */
muse_status muse_forward_all(muse_model *m, const int32_t *ids, int64_t n_seq, int64_t seq_len,
			     const muse_fwd_opts *opts, float *logits, muse_err *err);

/* Threads for the forward pass (OpenMP and OpenBLAS); n <= 0 keeps the default. */
void muse_forward_set_threads(int n);

#endif
