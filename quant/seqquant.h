/* seqquant.h: calibration statistics for GPTQ and AWQ gathered by walking the model one decoder layer at a time, GPTQ sequentially (each layer's input comes from the already quantized layers). */
#ifndef MUSE_SEQQUANT_H
#define MUSE_SEQQUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"
#include "calib.h"
#include "gptq.h"
#include "rtn.h"

typedef struct muse_seq_opts {
	const char *calib;        /* calibration file (text or .jsonl) */
	const char *kind;         /* NULL: by extension */
	int64_t n_samples;        /* 0: every whole window */
	int64_t seq_len;          /* tokens per sample */
	uint64_t seed;
	uint64_t min_tokens;      /* experts routed fewer rows get no statistics (their declared fallback is RTN) */
	bool gptq;                /* collect H = 2 X^T X / n per linear and expert, quantizing each layer before the next */
	bool awq;                 /* keep the inputs AWQ needs (full precision walk, as AutoAWQ) */
	bool routed_only;         /* gptq: an expert's H from its routed rows only (default: all-experts mode, every row through every expert) */
	bool true_seq;            /* gptq: true sequential within a layer (q/k/v, o, gate/up, down measured in turn, each with the earlier ones quantized); false: one statistics pass per layer */
	/* The quantizer the sequential walk applies (gptq): the same one the writer applies afterwards. */
	const muse_wq_config *wq;
	const muse_gptq_opts *go;
	bool gguf;
	muse_dtype gguf_type;
	bool quiet;
	bool verbose;             /* one line per layer with its wall time */
	/*
	 * Resume (quant/journal.h): with journal set, each finished layer's
	 * statistics and the next layer's input are saved there; a rerun whose
	 * fingerprint matches continues after the last saved layer.
	 */
	const char *journal;      /* directory, NULL: no journal */
	const char *fingerprint;  /* sha256 hex of everything the result depends on */
} muse_seq_opts;

typedef struct muse_seq muse_seq;

/*
 * Opens the model at path with the forward engine (quant/model.h), loads and
 * cuts the calibration data, embeds every sample and runs each decoder layer
 * in turn. Statistics go to an anonymous temporary file (tmpfile: nothing
 * left behind) so memory stays at one layer's weights, statistics and the
 * activations. With gptq, every linear of a layer is quantized (GPTQ, or
 * RTN for an expert below min_tokens) and the layer re-run with those
 * dequantized weights to make the next layer's input (GPTQModel's
 * sequential mode). Routers stay unquantized.
 */
muse_status muse_seq_run(const char *path, const muse_seq_opts *o, muse_seq **out, muse_err *err);
void muse_seq_free(muse_seq *s); /* NULL is a no-op */

/* Provenance: the calibration file (path, sha256), samples and tokens per sample actually used. */
const muse_calib_source *muse_seq_source(const muse_seq *s, int64_t *n_samples, int64_t *seq_len);
int64_t muse_seq_n_layer(const muse_seq *s);

/*
 * H [K][K] for expert `expert` (-1: dense) of the GGUF-named weight `name`.
 * *H is malloc'd, or NULL when the weight had fewer than min_tokens rows
 * (the caller falls back to RTN); *tokens gets the rows seen. Unknown
 * weight or wrong K: MUSE_ERR_CHECK.
 */
muse_status muse_seq_hessian(muse_seq *s, const char *name, int64_t expert, uint64_t K, float **H, uint64_t *tokens,
			     muse_err *err);

/*
 * AWQ inputs [n][in] of the GGUF-named weight (expert -1: dense; routed
 * rows for an expert). *x is malloc'd; n may be 0 (then *x is NULL).
 */
/* Rows the router sent to expert `expert` of `name` (all rows for a dense weight); 0 when unknown. */
uint64_t muse_seq_routed(const muse_seq *s, const char *name, int64_t expert);

muse_status muse_seq_inputs(muse_seq *s, const char *name, int64_t expert, float **x, uint64_t *n, uint64_t *in,
			    muse_err *err);

#endif
