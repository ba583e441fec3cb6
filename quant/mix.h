/* mix.h: the per-tensor type policy of llama-quantize (file types, mixes, fallbacks, overrides), decision for decision. */
#ifndef MUSE_MIX_H
#define MUSE_MIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/kv.h"
#include "../lib/status.h"

/*
 * llama.cpp's llama_ftype values: what general.file_type holds. Only the
 * ones llama-quantize accepts are listed (NVFP4 has no default type there,
 * Q2_0 has no ggml type in muse).
 */
typedef enum muse_ftype {
	MUSE_FTYPE_ALL_F32 = 0,
	MUSE_FTYPE_F16 = 1,
	MUSE_FTYPE_Q4_0 = 2,
	MUSE_FTYPE_Q4_1 = 3,
	MUSE_FTYPE_Q8_0 = 7,
	MUSE_FTYPE_Q5_0 = 8,
	MUSE_FTYPE_Q5_1 = 9,
	MUSE_FTYPE_Q2_K = 10,
	MUSE_FTYPE_Q3_K_S = 11,
	MUSE_FTYPE_Q3_K_M = 12,
	MUSE_FTYPE_Q3_K_L = 13,
	MUSE_FTYPE_Q4_K_S = 14,
	MUSE_FTYPE_Q4_K_M = 15,
	MUSE_FTYPE_Q5_K_S = 16,
	MUSE_FTYPE_Q5_K_M = 17,
	MUSE_FTYPE_Q6_K = 18,
	MUSE_FTYPE_IQ2_XXS = 19,
	MUSE_FTYPE_IQ2_XS = 20,
	MUSE_FTYPE_Q2_K_S = 21,
	MUSE_FTYPE_IQ3_XS = 22,
	MUSE_FTYPE_IQ3_XXS = 23,
	MUSE_FTYPE_IQ1_S = 24,
	MUSE_FTYPE_IQ4_NL = 25,
	MUSE_FTYPE_IQ3_S = 26,
	MUSE_FTYPE_IQ3_M = 27,
	MUSE_FTYPE_IQ2_S = 28,
	MUSE_FTYPE_IQ2_M = 29,
	MUSE_FTYPE_IQ4_XS = 30,
	MUSE_FTYPE_IQ1_M = 31,
	MUSE_FTYPE_BF16 = 32,
	MUSE_FTYPE_TQ1_0 = 36,
	MUSE_FTYPE_TQ2_0 = 37,
	MUSE_FTYPE_MXFP4_MOE = 38,
	MUSE_FTYPE_Q1_0 = 40,
	MUSE_FTYPE_INVALID = -1,
} muse_ftype;

/*
 * The file type for a name as llama-quantize spells it, case-insensitive
 * ("Q4_K_M", "q8_0", the aliases "Q3_K", "Q4_K", "Q5_K" for the _M mixes,
 * "F16", "BF16", "F32"); MUSE_FTYPE_INVALID when unknown. *canon (may be
 * NULL) gets the canonical spelling.
 */
muse_ftype muse_ftype_from_name(const char *name, const char **canon);
const char *muse_ftype_name(muse_ftype f); /* canonical name, "?" when unknown */
/* The type every tensor starts from (llama_ftype_get_default_type); MUSE_DT_INVALID when unknown. */
muse_dtype muse_ftype_default_type(muse_ftype f);
/* Every ftype name in llama-quantize's order (NULL-terminated), for help and tests. */
extern const char *const muse_ftype_names[];

/* What the policy needs to know about the model (from its GGUF metadata). */
typedef struct muse_mix_model {
	char arch[64];          /* general.architecture */
	uint32_t n_layer;       /* <arch>.block_count (llama.cpp's n_layer_all), 0 when absent */
	uint32_t n_expert;      /* <arch>.expert_count, 0 when absent */
	uint32_t n_head;        /* <arch>.attention.head_count of layer 0 */
	uint32_t n_head_kv;     /* <arch>.attention.head_count_kv of layer 0 (defaults to n_head) */
	bool is_70b;            /* llama.cpp's LLM_TYPE_70B, the only model size the mixes look at */
} muse_mix_model;

/* Reads the hparams above from GGUF metadata; file names the source in messages. */
muse_status muse_mix_model_from_meta(const muse_meta *meta, const char *file, muse_mix_model *m, muse_err *err);

/* One --tensor-type rule: the first pattern found (regex search) in a tensor's name wins. */
typedef struct muse_mix_rule {
	const char *pattern;   /* borrowed; llama-quantize lower-cases it, so does the caller */
	muse_dtype type;
} muse_mix_rule;

typedef struct muse_mix_opts {
	muse_ftype ftype;
	bool pure;                  /* --pure: no mix rules (and rows must divide: see muse_mix_plan) */
	bool has_imatrix;           /* an importance matrix was given (some mixes depend on it) */
	bool leave_output;          /* --leave-output-tensor: output.weight keeps its type */
	muse_dtype output_type;     /* --output-tensor-type, MUSE_DT_INVALID: by the mix */
	muse_dtype token_embd_type; /* --token-embedding-type, MUSE_DT_INVALID: by the mix */
	const muse_mix_rule *rules; /* --tensor-type, in command-line order */
	size_t n_rules;
} muse_mix_opts;

/* A tensor as the policy sees it: ne in ggml order (ne[0] is the row length), unused dims 1. */
typedef struct muse_mix_tensor {
	const char *name;
	muse_dtype type;
	int64_t ne[4];
} muse_mix_tensor;

typedef struct muse_mix_choice {
	muse_dtype type;        /* what the tensor is written as */
	bool quantizable;       /* llama.cpp's tensor_allows_quantization */
	bool requires_imatrix;  /* llama.cpp refuses this target without importance data */
	bool fallback;          /* the row length did not divide the chosen type's block: demoted */
} muse_mix_choice;

typedef struct muse_mix muse_mix;

/* Compiles the --tensor-type patterns (PCRE2); a bad pattern is a usage error naming it. */
muse_status muse_mix_create(const muse_mix_model *m, const muse_mix_opts *o, muse_mix **out, muse_err *err);
void muse_mix_free(muse_mix *x);

/*
 * Decides every tensor's type, in the order given, which must be the order
 * llama-quantize walks them (muse_mix_order): the attn_v and ffn counters
 * of the mixes depend on it. Fails on what llama.cpp throws on (an expert
 * tensor whose layer cannot be read from its name, a type with no
 * fallback), and, unlike llama.cpp, under --pure when a tensor's rows are
 * not whole blocks of its type (llama.cpp silently demotes it; --pure asks
 * for one type). *n_fallback counts demotions.
 */
muse_status muse_mix_plan(muse_mix *x, const muse_mix_tensor *t, size_t n, muse_mix_choice *out, size_t *n_fallback,
			  muse_err *err);

/*
 * llama-quantize's tensor order: by the layer number after "blk." (names
 * without one first), then by name; with keep_split, by (file, offset).
 * Fills perm[0..n) with indices into the arrays. file/offset may be NULL
 * without keep_split.
 */
muse_status muse_mix_order(const char *const *names, const uint32_t *file, const uint64_t *offset, size_t n,
			   bool keep_split, size_t *perm, muse_err *err);

/*
 * llama.cpp's tensor_allows_quantization without --leave-output-tensor:
 * whether llama-quantize changes tensor t's type in a model of
 * architecture arch (2-D and up, a name ending in "weight", not a norm,
 * router, positional embedding or one of the small tensors it lists).
 */
bool muse_mix_allows_quantization(const char *arch, const muse_mix_tensor *t);

/*
 * The general.file_type llama.cpp's model loader infers from the tensor
 * types when a file has none (the most frequent type; F32 when it knows
 * no file type for it): for a file muse writes with types of its own
 * choosing. names[i] and types[i] describe tensor i; fails only on memory.
 */
muse_status muse_ftype_of_tensors(const char *const *names, const muse_dtype *types, size_t n, muse_ftype *out,
				  muse_err *err);

/* llama.cpp's tensor_requires_imatrix, for a tensor name and target type under ftype. */
bool muse_mix_requires_imatrix(const char *name, muse_dtype type, muse_ftype ftype);

#endif
