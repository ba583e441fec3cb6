/* evaluate.h: perplexity and, against a reference model, KL divergence / top-1 agreement / Δp as llama-perplexity reports them, without storing reference logits on disk. */
#ifndef MUSE_EVALUATE_H
#define MUSE_EVALUATE_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/status.h"
#include "model.h"

typedef struct muse_eval_opts {
	int64_t ctx;          /* tokens per chunk (llama-perplexity -c) */
	int64_t max_chunks;   /* 0: every whole chunk of the text */
	int32_t bos;          /* >= 0: replaces the first token of every chunk (llama-perplexity with add_bos) */
	int64_t group_chunks; /* chunks run through a layer together (0: as many as fit 256 MiB of activations) */
	bool quiet;           /* no progress */
	bool exact;           /* exact F32 for every model; false: a GGUF runs with llama.cpp's CPU arithmetic (muse_eval_ggml_arith) */
} muse_eval_opts;

/* Percentile points reported (fractions), in llama-perplexity's order. */
#define MUSE_EVAL_N_PCT 11

typedef struct muse_eval_result {
	int64_t n_chunks, n_scored;         /* scored tokens: n_chunks * (ctx - 1 - ctx/2) */
	double nll, nll_unc, ppl, ppl_unc;  /* mean negative log-likelihood (nats) and its uncertainty */
	/* With a reference model (has_ref): */
	bool has_ref;
	double nll_base, nll_base_unc, ppl_base, ppl_base_unc, ln_ppl_ratio, ln_ppl_ratio_unc, ppl_cor;
	double kld, kld_unc;                /* mean KL(ref || model) per token */
	double kld_pct[MUSE_EVAL_N_PCT];    /* max, 99.9, 99, 95, 90, median, 10, 5, 1, 0.1, min */
	double same_top, same_top_unc;      /* fraction of tokens where both argmaxes agree */
	double dp_mean, dp_unc, dp_rms, dp_rms_unc; /* Δp = p_model(token) - p_ref(token) */
	double dp_pct[13];                  /* max, 99.9, 99, 95, 90, 75, median, 25, 10, 5, 1, 0.1, min */
} muse_eval_result;

/*
 * Splits ids into floor(n / ctx) chunks (at most max_chunks), runs them
 * layer by layer (one decoder layer's weights in memory per model), and
 * scores the second half of every chunk as llama-perplexity does: the
 * logits at positions ctx/2 .. ctx-2 predict the tokens after them. With
 * ref, the reference model runs on the same chunks and the comparison is
 * done chunk by chunk in memory.
 */
muse_status muse_eval_run(muse_model *m, muse_model *ref, const int32_t *ids, size_t n_ids,
			  const muse_eval_opts *opts, muse_eval_result *res, muse_err *err);

/*
 * Logits of every position of one sequence (n_ids x n_vocab floats into
 * *logits, malloc'd): the check against other implementations. exact as in
 * muse_eval_opts.
 */
muse_status muse_eval_logits(muse_model *m, const int32_t *ids, size_t n_ids, bool exact, float **logits,
			     muse_err *err);

/*
 * Whether eval runs m with llama.cpp's CPU arithmetic (muse_fwd_opts
 * ggml_act) rather than exact F32: for a GGUF file, unless
 * exact. llama-perplexity's numbers are a GGUF's numbers as llama.cpp runs
 * it; HF checkpoints have no such runtime and stay exact.
 */
bool muse_eval_ggml_arith(const muse_model *m, bool exact);

#endif
