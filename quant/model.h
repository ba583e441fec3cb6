/* model.h: a decoder-only model opened for the CPU forward pass: hparams from "<arch>.*" metadata, weights loaded as F32 one decoder layer at a time. */
#ifndef MUSE_MODEL_H
#define MUSE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/kv.h"
#include "../lib/status.h"

/* Which block graph a model runs (GGUF general.architecture names in comments). */
typedef enum muse_fwd_arch {
	MUSE_FA_LLAMA,     /* "llama": Llama/Mistral/SmolLM, and Mixtral when ffn_gate_inp is present */
	MUSE_FA_QWEN2,     /* "qwen2": q/k/v biases, neox rope */
	MUSE_FA_QWEN3,     /* "qwen3": per-head q/k RMSNorm, neox rope */
	MUSE_FA_QWEN2MOE,  /* "qwen2moe": softmax top-k (not renormalized), shared expert with sigmoid gate */
	MUSE_FA_QWEN3MOE,  /* "qwen3moe": q/k norm, softmax top-k renormalized */
	MUSE_FA_DEEPSEEK2, /* "deepseek2" (DeepSeek V2/V3): MLA, grouped top-k, shared experts */
} muse_fwd_arch;

typedef enum muse_rope_scaling { MUSE_ROPE_NONE, MUSE_ROPE_LINEAR, MUSE_ROPE_YARN } muse_rope_scaling;

/* Everything the forward pass needs to know, read once at open; all counts checked against caps. */
typedef struct muse_hparams {
	char arch_name[32];
	muse_fwd_arch arch;
	int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab;
	int64_t head_dim_k, head_dim_v; /* attention.key_length / value_length (MLA: per-head q/k and v widths) */
	int64_t n_rot;                  /* rope.dimension_count */
	bool rope_neox;                 /* rotate pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
	float eps, rope_base;
	muse_rope_scaling rope_scaling;
	float rope_factor;              /* rope.scaling.factor (1 when none) */
	int64_t rope_orig_ctx;          /* rope.scaling.original_context_length */
	float yarn_beta_fast, yarn_beta_slow, yarn_log_mul; /* YaRN ramp and deepseek's mscale multiplier */
	bool has_rope_freqs;            /* rope_freqs.weight (Llama-3 scaling): per-frequency divisors */
	/* MoE */
	int64_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp, n_expert_shared, n_leading_dense;
	int64_t n_expert_groups, n_group_used;
	bool expert_norm;               /* renormalize the top-k weights to sum 1 */
	bool expert_sigmoid;            /* sigmoid scores instead of softmax */
	float expert_scale;             /* routed_scaling_factor (1 when absent) */
	/* MLA */
	int64_t q_lora_rank, kv_lora_rank;
} muse_hparams;

/* Per-layer weight slots; the GGUF name of slot s in layer il is "blk.<il>.<muse_wslot_name(s)>.weight|bias". */
typedef enum muse_wslot {
	MUSE_W_ATTN_NORM, MUSE_W_ATTN_Q, MUSE_W_ATTN_K, MUSE_W_ATTN_V, MUSE_W_ATTN_O,
	MUSE_W_ATTN_Q_BIAS, MUSE_W_ATTN_K_BIAS, MUSE_W_ATTN_V_BIAS, MUSE_W_ATTN_O_BIAS,
	MUSE_W_ATTN_Q_NORM, MUSE_W_ATTN_K_NORM,
	MUSE_W_ATTN_Q_A, MUSE_W_ATTN_Q_A_NORM, MUSE_W_ATTN_Q_B, MUSE_W_ATTN_KV_A_MQA, MUSE_W_ATTN_KV_A_NORM,
	MUSE_W_ATTN_KV_B, MUSE_W_ATTN_K_B, MUSE_W_ATTN_V_B,
	MUSE_W_FFN_NORM, MUSE_W_FFN_GATE, MUSE_W_FFN_UP, MUSE_W_FFN_DOWN,
	MUSE_W_FFN_GATE_INP, MUSE_W_FFN_EXP_PROBS_B, MUSE_W_FFN_GATE_EXPS, MUSE_W_FFN_UP_EXPS, MUSE_W_FFN_DOWN_EXPS,
	MUSE_W_FFN_GATE_SHEXP, MUSE_W_FFN_UP_SHEXP, MUSE_W_FFN_DOWN_SHEXP, MUSE_W_FFN_GATE_INP_SHEXP,
	MUSE_W_COUNT
} muse_wslot;

/* The tensor stem of a slot ("attn_q", "ffn_down_exps", ...). */
const char *muse_wslot_stem(muse_wslot s);
/* True for slots that are matrix products (the ones statistics hooks see). */
bool muse_wslot_is_linear(muse_wslot s);

/*
 * One weight as dense F32, shape outermost first (PyTorch order): a linear
 * layer is [out, in], stacked experts [n_expert, out, in], a norm [n].
 * data == NULL: the tensor is absent.
 */
typedef struct muse_weight {
	float *data;
	int ndim;
	int64_t shape[3];
	char name[96];        /* full GGUF tensor name */
	muse_dtype stored;    /* the type the file holds it in (for HF sources: the first source tensor's) */
	float *bmin;          /* stored Q4_1/Q5_1: the min of each 32-block, row-major (rows x in/32); else NULL */
} muse_weight;

/* One decoder layer's weights (owned; the caller may rewrite data in place, e.g. to fake-quantize). */
typedef struct muse_layer {
	int64_t il;
	muse_weight w[MUSE_W_COUNT];
} muse_layer;

/* Embedding, final norm and output head. output.data is token_embd's when tied (then tied is true). */
typedef struct muse_head {
	muse_weight norm, output;
	bool tied;
} muse_head;

typedef struct muse_model muse_model;

/*
 * Opens any model muse reads (GGUF, safetensors, HF directory, .bin) for the
 * forward pass. GGUF: hparams from "<arch>.*" keys. HF directory: config.json
 * through formats/hf_config.h, tensor names mapped to GGUF names through the
 * arch tables and llama Q/K rows permuted as the converter does, so one
 * forward graph serves both. Nothing but metadata is read here.
 */
muse_status muse_model_open(const char *path, muse_model **out, muse_err *err);
void muse_model_free(muse_model *m); /* NULL is a no-op */

const muse_hparams *muse_model_hparams(const muse_model *m);
const char *muse_model_path(const muse_model *m);
/* The model's metadata ("<arch>.*" and tokenizer.* keys for GGUF; the config's keys for HF dirs). */
const muse_meta *muse_model_meta(const muse_model *m);
/* True when the model is one GGUF file (what llama.cpp runs), false for HF directories and checkpoints. */
bool muse_model_is_gguf(const muse_model *m);
/*
 * Marks in used[] (MUSE_DT_COUNT entries, cleared first) the stored types
 * of the weights that enter matrix products: every 2-D or larger "blk.*"
 * weight and the output head (token_embd when the head is tied).
 */
void muse_model_product_types(const muse_model *m, bool *used);
/* Total bytes of the model's tensors as stored (for memory reports). */
uint64_t muse_model_nbytes(const muse_model *m);

/*
 * Loads decoder layer il as F32 (GGUF block types dequantized, F16/BF16
 * converted). Shapes are checked against the hparams; a missing required
 * tensor or a wrong shape is MUSE_ERR_FORMAT naming the file and tensor.
 * muse_layer_free releases the data; the struct itself is the caller's.
 */
muse_status muse_model_load_layer(muse_model *m, int64_t il, muse_layer *l, muse_err *err);
void muse_layer_free(muse_layer *l);

/* Loads output_norm and output (or token_embd when the head is tied) as F32. */
muse_status muse_model_load_head(muse_model *m, muse_head *h, muse_err *err);
void muse_head_free(muse_head *h);

/*
 * Writes the embeddings of n token ids into x (n x n_embd), dequantizing
 * only the rows used. Ids outside [0, n_vocab) are MUSE_ERR_USAGE.
 */
muse_status muse_model_embed(muse_model *m, const int32_t *ids, size_t n, float *x, muse_err *err);

/* Rope frequency divisors (n_rot / 2 floats) from rope_freqs.weight, or NULL when the model has none. */
const float *muse_model_rope_freqs(const muse_model *m);

#endif
