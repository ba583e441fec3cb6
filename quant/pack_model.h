/* pack_model.h: whole-model weight quantization (RTN, GPTQ, AWQ) into AutoAWQ / GPTQ / compressed-tensors HF directories or GGUF block types. */
#ifndef MUSE_PACK_MODEL_H
#define MUSE_PACK_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../formats/packed.h"
#include "../lib/dtype.h"
#include "../lib/status.h"
#include "gptq.h"
#include "rtn.h"

typedef enum muse_wq_method { MUSE_METHOD_RTN, MUSE_METHOD_GPTQ, MUSE_METHOD_AWQ } muse_wq_method;

typedef struct muse_pack_opts {
	const char *in;          /* HF checkpoint directory, or a GGUF file (gguf:TYPE output) */
	const char *out;         /* output directory (packed layouts) or .gguf file */
	muse_wq_method method;
	int bits;
	int64_t group_size;      /* -1: per channel */
	bool sym;
	bool act_order, static_groups;
	bool gguf;               /* true: GGUF output of gguf_type; false: the packed layout `kind` */
	muse_packed_kind kind;
	muse_dtype gguf_type;
	double damp_percent;
	const char *calib;       /* calibration text or .jsonl: gptq and awq walk the model layer by layer (quant/seqquant.h) */
	const char *calib_kind;  /* "text" or "jsonl"; NULL: by extension */
	int64_t samples;         /* calibration samples (0: every whole window) */
	int64_t seq_len;         /* tokens per sample (0: 512) */
	uint64_t seed;           /* 0: the first windows in order; else a seeded draw (quant/calib.h) */
	const char *hessians;    /* safetensors/GGUF file of per-weight H = 2 X^T X / n ([K, K] or [E, K, K] F32), keyed by weight name */
	const char *activations; /* awq: safetensors/GGUF of calibration inputs per layer (quant/awq.h names them) */
	uint64_t min_tokens;     /* awq: experts with fewer routed tokens fall back to RTN */
	const char *dequant_out; /* optional: safetensors file of muse's own dequantization of every quantized weight (F32) */
	int nthreads;
	bool quiet;
	bool verbose;            /* --calib walk: one line per layer with its time */
	bool routed_only;        /* gptq --calib: expert Hessians from routed rows only (default: all-experts statistics) */
	bool true_seq;           /* gptq --calib: true sequential within a layer (default: one statistics pass per layer) */
	const char *journal;     /* --calib walk: resume journal directory (quant/journal.h), NULL: none */
	const char *fingerprint; /* the journal's fingerprint (sha256 hex) */
} muse_pack_opts;

/*
 * Quantizes every linear weight of the model (attention, MLP, every MoE
 * expert; routers, norms, embeddings and lm_head stay in high precision)
 * and writes the output: for packed layouts a full HF directory (packed
 * tensors + non-linear tensors as F16/BF16 in model.safetensors, config.json
 * with quantization_config, quantize_config.json for GPTQ, the tokenizer
 * and other files copied), for gguf:TYPE a GGUF file. Writes
 * quant_report.json (per-tensor method, parameter coverage, experts) beside
 * the output and prints its summary to stderr unless quiet. A large 2-D+
 * tensor left unquantized (other than embeddings, lm_head, routers) is an
 * error. Nothing is left behind on failure.
 */
muse_status muse_pack_model(const muse_pack_opts *o, muse_err *err);

#endif
