/* hf2gguf.h: architecture-aware HF checkpoint directory -> GGUF conversion (names, Q/K permutation, hparams, tokenizer). */
#ifndef MUSE_HF2GGUF_H
#define MUSE_HF2GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/*
 * Converts the HF directory dir (config.json, safetensors or PyTorch
 * weights, tokenizer.json) into the GGUF file out, in one streaming pass:
 * peak memory is one tensor (the permuted Q/K ones) plus a cast chunk.
 * want: MUSE_DT_F32/F16/BF16, or MUSE_DT_INVALID for "auto" (keep the
 * source precision). Norms and 1-D tensors are always F32. An F16 cast
 * that overflows is refused with the tensor's name. shard_bytes 0: one
 * file. Progress goes to stderr unless quiet; on failure no output file
 * is left.
 */
muse_status muse_hf2gguf(const char *dir, const char *out, muse_dtype want, uint64_t shard_bytes, bool quiet,
			 muse_err *err);

/*
 * convert_hf_to_gguf.py's general.name for a directory name
 * (gguf.Metadata.id_to_title): '-' -> ' ', words all lower case title-cased
 * unless they look like versions ("v1.2") or start with a digit. ASCII
 * letters only; other bytes are kept. Writes into out (cap bytes).
 */
void muse_hf_name_to_title(const char *id, char *out, size_t cap);

/*
 * gguf.Metadata.get_model_id_components for a directory name: the
 * basename, finetune, version and size label convert_hf_to_gguf.py derives
 * from "SmolLM2-135M-Instruct"-style names (each "" when absent). ASCII
 * only, like muse_hf_name_to_title. Each output holds cap bytes.
 */
void muse_hf_name_components(const char *id, uint64_t total_params, char *basename, char *finetune, char *version,
			     char *size_label, size_t cap);

/* gguf.size_label for a parameter count: "125K", "1.2M", "7.0B" ... into out. */
void muse_hf_size_label(uint64_t n_params, char *out, size_t cap);

#endif
