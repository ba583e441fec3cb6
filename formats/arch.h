/* arch.h: architecture tables as data: HF tensor names <-> GGUF names, per-tensor transforms, hparam keys. */
#ifndef MUSE_ARCH_H
#define MUSE_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/status.h"

/* What happens to a tensor's data on the way from HF to GGUF. */
typedef enum muse_arch_xform {
	MUSE_XF_NONE,
	MUSE_XF_PERMUTE_Q, /* llama rotate-half -> interleaved rows, n = n_head (FORMATS.md 2a.11) */
	MUSE_XF_PERMUTE_K, /* same with n = n_head_kv */
} muse_arch_xform;

/*
 * One tensor-name rule. "{N}" in both patterns stands for the block number
 * (decimal digits, no sign, no leading zeros except "0"); a pattern without
 * it names a single tensor. f32 marks tensors always written as F32
 * (norms, whatever their rank); 1-D tensors are F32 anyway. required
 * rows must be present (for every block when the pattern has "{N}"):
 * a checkpoint missing one is refused instead of making a GGUF llama.cpp
 * cannot load.
 */
typedef struct muse_arch_tensor {
	const char *hf;
	const char *gguf;
	muse_arch_xform xf;
	int f32;
	int required;
} muse_arch_tensor;

/* One architecture: the HF class names it answers to, its GGUF name and its tensor rules. */
typedef struct muse_arch {
	const char *gguf_name;             /* general.architecture, prefix of the hparam keys */
	const char *const *hf_classes;     /* NULL-terminated "architectures" entries of config.json */
	const muse_arch_tensor *tensors;   /* terminated by a row with hf == NULL */
	int rope_permute;                  /* 1 when Q/K rows are permuted (ggml "normal" rope) */
} muse_arch;

/* The architecture for an HF class name ("LlamaForCausalLM"), or NULL. */
const muse_arch *muse_arch_find(const char *hf_class);
/* Writes the supported HF class names, comma-separated, into buf (for error messages). */
void muse_arch_list(char *buf, size_t cap);

/*
 * Maps an HF tensor name through a's rules. On a match writes the GGUF
 * name into out (cap bytes), *rule gets the row and *block the block number
 * (-1 for non-block tensors), and returns MUSE_OK; MUSE_ERR_UNSUPPORTED
 * when no rule matches, MUSE_ERR_LIMIT when the name does not fit, or the
 * block number exceeds n_blocks - 1 (n_blocks from the config).
 */
muse_status muse_arch_map_name(const muse_arch *a, const char *hf_name, uint64_t n_blocks, char *out, size_t cap,
			       const muse_arch_tensor **rule, int64_t *block);

/*
 * Permutes the rows of a (rows x row_bytes) tensor from HF's rotate-half
 * order to ggml's interleaved order with n heads: within each head of hd =
 * rows / n rows, new row 2i + j = old row j * hd/2 + i. src and dst must
 * not overlap. Returns MUSE_ERR_FORMAT when rows is not a multiple of 2n.
 */
muse_status muse_arch_permute_rows(void *dst, const void *src, uint64_t rows, uint64_t row_bytes, uint64_t n,
				   muse_err *err);

#endif
