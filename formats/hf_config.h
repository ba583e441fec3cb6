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
} muse_hf_config;

/*
 * Reads DIR/config.json: picks the architecture from "architectures"[0]
 * (MUSE_ERR_UNSUPPORTED listing the supported ones when unknown), checks
 * the integer hparams, and appends the "<arch>.*" keys to meta in
 * convert_hf_to_gguf.py's order: block_count, context_length,
 * embedding_length, feed_forward_length, attention.head_count,
 * head_count_kv, rope scaling, rope.freq_base, layer_norm_rms_epsilon,
 * key/value_length (when head_dim is given). The converter then writes
 * general.file_type, "<arch>.vocab_size" and "<arch>.rope.dimension_count"
 * (cfg->vocab_size, cfg->rope_dim): those are the caller's, as is general.*.
 */
muse_status muse_hf_config_load(const char *dir, muse_hf_config *cfg, muse_meta *meta, muse_err *err);
/* Frees what load allocated (rope_freqs); safe on a zeroed or failed cfg. */
void muse_hf_config_free(muse_hf_config *cfg);

#endif
