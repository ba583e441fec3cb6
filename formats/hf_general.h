/* hf_general.h: general.* metadata of an HF checkpoint as convert_hf_to_gguf.py (gguf-py's Metadata) writes it. */
#ifndef MUSE_HF_GENERAL_H
#define MUSE_HF_GENERAL_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/status.h"
#include "model_card.h"

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

/*
 * general.* as convert_hf_to_gguf.py's Metadata writes them: the model
 * card's keys first (llama.cpp's own names, then "model_"-prefixed ones),
 * the directory name dname for what the card leaves out, the size label
 * (muse_hf_size_label's, or "NxSIZE" for MoE) last.
 */
muse_status muse_hf_general_keys(muse_meta *meta, const muse_model_card *card, const char *dname, uint64_t n_params,
				 const char *size, muse_err *err);

#endif
