/* hf_config.h: Hugging Face config.json -> architecture choice and GGUF hparam metadata (as convert_hf_to_gguf.py writes them). */
#ifndef MUSE_HF_CONFIG_H
#define MUSE_HF_CONFIG_H

#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/status.h"
#include "arch.h"

/* The hparams the tensor pass needs; the rest goes straight into metadata. */
typedef struct muse_hf_config {
	const muse_arch *arch;
	uint64_t n_layer, n_embd, n_head, n_head_kv, vocab_size;
	uint64_t rope_dim;  /* head_dim, else hidden_size / num_attention_heads */
	int tie_embeddings; /* tie_word_embeddings (default true in transformers' PretrainedConfig) */
	float *rope_freqs;  /* Llama-3 rope scaling: rope_dim / 2 factors for the rope_freqs.weight tensor; owned */
	uint64_t n_rope_freqs;
	uint64_t n_expert;      /* routed experts (num_local_experts, num_experts, n_routed_experts); 0: dense */
	uint64_t n_dense_lead;  /* leading dense blocks of an MoE model (first_k_dense_replace) */
	uint64_t n_head_kv_src; /* num_key_value_heads as the checkpoint has it, before an arch override (MLA split) */
	void *root;             /* the parsed config.json (jansson json_t), owned */
	void *rope;             /* its rope_parameters / rope_scaling object or NULL, borrowed from root */
} muse_hf_config;

/*
 * Reads DIR/config.json: picks the architecture from "architectures"[0]
 * (MUSE_ERR_UNSUPPORTED listing the supported ones when unknown), checks
 * the integer hparams, and appends the "<arch>.*" keys to meta in
 * convert_hf_to_gguf.py's order: block_count, context_length,
 * embedding_length, feed_forward_length, attention.head_count,
 * head_count_kv, rope scaling, rope.freq_base, layer_norm_rms_epsilon,
 * layer_norm_epsilon, expert counts, expert groups and gating function,
 * key/value_length (when head_dim is given), after applying the
 * architecture's config overrides (MUSE_HP_CFG_* rows). A key the file
 * lacks takes its transformers config class's default where that reaches
 * the GGUF (context length, RMS epsilon, rope theta, head_dim), as
 * AutoConfig gives them to convert_hf_to_gguf.py.
 * The converter then writes general.file_type and calls
 * muse_hf_config_arch_keys; general.* is the caller's.
 */
muse_status muse_hf_config_load(const char *dir, muse_hf_config *cfg, muse_meta *meta, muse_err *err);
/* Appends the architecture's own keys (its muse_arch_hparam rows) to meta, in table order. */
muse_status muse_hf_config_arch_keys(const muse_hf_config *cfg, muse_meta *meta, muse_err *err);
/* quantization_config of an FP8 checkpoint: *mode -1 when it is not one (no quant_method "fp8"), 0 for per-tensor
 * or per-row scales, 1 for block scales of block[0] x block[1] (weight_block_size). dir names the config in errors. */
muse_status muse_hf_config_fp8(const muse_hf_config *cfg, const char *dir, int *mode, uint64_t block[2], muse_err *err);
/*
 * Only the model class config.json names ("architectures"[0]) and its model_type, each "" when absent,
 * truncated to the buffer; *arch is muse's table for the class, NULL when it has none. For displays and
 * hints (inspect, muse_cli_hint_unmapped), so an unmapped class is no error here.
 */
muse_status muse_hf_config_class(const char *dir, char *cls, size_t cls_cap, char *model_type, size_t mt_cap,
				 const muse_arch **arch, muse_err *err);
/* Frees what load allocated (rope_freqs, the JSON); safe on a zeroed or failed cfg. */
void muse_hf_config_free(muse_hf_config *cfg);

/*
 * True when config.json sets key: present, not null, not false, not 0 ("!key": the opposite). A
 * "rope:" prefix looks in the rope parameters instead.
 */
int muse_hf_config_has(const muse_hf_config *cfg, const char *key);
/* A config value as a non-negative integer that fits u32; false when absent, null or not such a number. */
int muse_hf_config_u64(const muse_hf_config *cfg, const char *key, uint64_t *out);
/* A config value as a finite number; false when absent, null or not a number. */
int muse_hf_config_num(const muse_hf_config *cfg, const char *key, double *out);

/*
 * config.json's text (n bytes at text) with the dtype set to dtype_name
 * ("bfloat16", ...): the values of the top-level "torch_dtype" and "dtype"
 * keys and of those in sub-model configs (objects under a "*_config" key,
 * quantization_config excepted) replaced, every other byte kept, so
 * integers stay integers and 0.1 stays 0.1. A top level with neither key
 * gets "torch_dtype" as its last member. *out (malloc'd, NUL-terminated,
 * *out_n bytes) is the caller's. MUSE_ERR_FORMAT, naming path, when the
 * text is not a JSON object.
 */
muse_status muse_hf_config_set_dtype(const char *path, const char *text, size_t n, const char *dtype_name, char **out,
				     size_t *out_n, muse_err *err);

#endif
