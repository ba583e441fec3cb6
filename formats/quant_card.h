/* quant_card.h: the model card (README.md) of a quantized HF directory: what it is, how it was made, what it derives from. */
#ifndef MUSE_QUANT_CARD_H
#define MUSE_QUANT_CARD_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/status.h"

/* What the card states; every string is borrowed. */
typedef struct muse_quant_card {
	const char *method;       /* "rtn", "gptq", "awq" */
	const char *format;       /* "gptq", "awq", "compressed-tensors" */
	int bits;
	int64_t group_size;       /* -1: one group per output row */
	bool sym;
	bool act_order, static_groups;
	const char *calib_file;   /* NULL: no calibration data (rtn, or precomputed statistics) */
	const char *calib_sha256;
	int64_t samples, seq_len;
	uint64_t seed;
	uint64_t quantized_params, total_params;
} muse_quant_card;

/*
 * Writes OUT_DIR/README.md: YAML front matter as the Hugging Face Hub reads
 * it (base_model, base_model_relation: quantized, the source card's license,
 * license_name, license_link, language and pipeline_tag carried over,
 * library_name, tags) and a body stating the method, layout, grid,
 * calibration data (file name, SHA-256, samples x tokens, seed) and muse
 * version. base_model is the source config.json's "_name_or_path" when it is
 * a Hub id (owner/name), else the source directory's name. The source's own
 * README.md is not copied: it describes another model.
 */
muse_status muse_quant_card_write(const char *src_dir, const char *out_dir, const muse_quant_card *c, muse_err *err);

#endif
