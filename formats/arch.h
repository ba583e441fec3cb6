/* arch.h: architecture tables as data: HF tensor names <-> GGUF names, per-tensor transforms, hparam keys. */
#ifndef MUSE_ARCH_H
#define MUSE_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/status.h"

/*
 * What happens to a tensor's data on the way from HF to GGUF. Every one is a
 * row mapping (output row -> source row) except KV_B_K, a per-head transpose,
 * so the converter streams them a row at a time.
 */
typedef enum muse_arch_xform {
	MUSE_XF_NONE,
	MUSE_XF_PERMUTE_Q, /* llama rotate-half -> interleaved rows, n = n_head (FORMATS.md 2a.11) */
	MUSE_XF_PERMUTE_K, /* same with n = n_head_kv */
	MUSE_XF_KV_B_K,    /* MLA kv_b_proj (h*(nope+v), kv_lora) -> attn_k_b (h, kv_lora, nope): each head's first
			      nope rows, transposed (convert_hf_to_gguf.py's absorption layout) */
	MUSE_XF_KV_B_V,    /* kv_b_proj -> attn_v_b (h, v, kv_lora): each head's last v rows */
	MUSE_XF_HALF_0,    /* fused experts (E, 2f, n) -> (E, f, n): rows [0, f) of each expert (gate of gate_up_proj) */
	MUSE_XF_HALF_1,    /* rows [f, 2f) of each expert (up of gate_up_proj) */
} muse_arch_xform;

/* Which blocks a required row is required in (DeepSeek's first_k_dense_replace leading blocks are dense). */
enum { MUSE_ARCH_BLK_ALL = 0, MUSE_ARCH_BLK_DENSE = 1, MUSE_ARCH_BLK_MOE = 2 };

/*
 * One tensor-name rule. "{N}" in both patterns stands for the block number
 * (decimal digits, no sign, no leading zeros except "0"); a pattern without
 * it names a single tensor. "{E}" (HF side only, after "{N}") stands for
 * the expert number: all experts of a block stack into one GGUF tensor
 * (n_expert, rows, cols), expert e at index e, written expert by expert.
 * Several rows may share an HF pattern (one source, several outputs: MLA's
 * kv_b_proj). f32 marks tensors always written as F32 (norms, routers,
 * whatever their rank); 1-D tensors and names not ending in ".weight" are
 * F32 anyway. required rows must be present for every block selected by
 * blocks (a block is MoE when the config has experts and the block is not
 * among the leading dense ones) and, when if_cfg names a config.json key,
 * only when that key is set (present, not null, false or 0; "!key": only
 * when it is not). A requirement is met by any row producing the same GGUF
 * name (fused or per-expert experts, say). A checkpoint missing one is
 * refused instead of making a GGUF llama.cpp cannot load.
 * Rows are in convert_hf_to_gguf.py's emission order where it matters: the
 * stacked experts of a block appear together, in table order, where the
 * block's last expert tensor is in the source.
 */
typedef struct muse_arch_tensor {
	const char *hf;
	const char *gguf;
	muse_arch_xform xf;
	int f32;
	int required;
	int blocks;         /* MUSE_ARCH_BLK_*: where `required` applies */
	const char *if_cfg; /* NULL or a config.json key ("!key" negates) that `required` depends on */
} muse_arch_tensor;

/* How one hparam row turns config.json values into a GGUF key. */
typedef enum muse_arch_hp_kind {
	MUSE_HP_END = 0,
	MUSE_HP_U32,       /* first of hf[] present: u32; absent: def when has_def, else skipped (refused if required) */
	MUSE_HP_F32,       /* first of hf[] present: f32, times scale when scale != 0 */
	MUSE_HP_TRUE,      /* bool true when the config value is true; false or absent: not written */
	MUSE_HP_U32_SUM,   /* sum of all hf[] (each def when absent and has_def, else refused) */
	MUSE_HP_HEAD_DIM,  /* head_dim, else hidden_size / num_attention_heads (llama's rope.dimension_count) */
	MUSE_HP_CFG_SET,   /* before the base keys: config value hf[0] = def, as a converter override */
	MUSE_HP_CFG_DEFAULT, /* before the base keys: config value hf[0] = def when absent */
} muse_arch_hp_kind;

/* One hparam rule; key is the part after "<arch>.". Rows run in table order after general.file_type. */
typedef struct muse_arch_hparam {
	muse_arch_hp_kind kind;
	const char *key;
	const char *hf[4];  /* config.json names, NULL-terminated, first present wins (find_hparam) */
	int has_def;
	double def;
	double scale;
	int required;
} muse_arch_hparam;

/* One architecture: the HF class names it answers to, its GGUF name and its tensor rules. */
typedef struct muse_arch {
	const char *gguf_name;             /* general.architecture, prefix of the hparam keys */
	const char *const *hf_classes;     /* NULL-terminated "architectures" entries of config.json */
	const muse_arch_tensor *tensors;   /* terminated by a row with hf == NULL */
	int rope_permute;                  /* 1 when Q/K rows are permuted (ggml "normal" rope) */
	const muse_arch_hparam *hparams;   /* terminated by MUSE_HP_END; NULL: none */
} muse_arch;

/*
 * Adds an architecture at run time, the way tests and plug-ins add one
 * without a table file in formats/: a is borrowed (it must outlive every
 * use, a static table) and is searched after the built-in ones by
 * muse_arch_find and listed by muse_arch_list, so conversion, quantization
 * and the forward pass take its checkpoints as any other. Call it before
 * opening models (the list is not locked). MUSE_ERR_USAGE when a lacks a
 * name, classes or tensor rows, or one of its classes already names another
 * architecture; MUSE_ERR_LIMIT when the few slots are taken. Registering
 * the same a again is a no-op.
 */
muse_status muse_arch_register(const muse_arch *a);

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
 * All rules matching hf_name, in table order: call with *next = 0, then
 * again while it returns MUSE_OK; each call resumes after the last match
 * and returns MUSE_ERR_UNSUPPORTED when no further rule matches. Same
 * outputs as muse_arch_map_name plus *expert: the "{E}" number, or -1.
 */
muse_status muse_arch_map_next(const muse_arch *a, const char *hf_name, uint64_t n_blocks, size_t *next, char *out,
			       size_t cap, const muse_arch_tensor **rule, int64_t *block, int64_t *expert);

/*
 * Permutes the rows of a (rows x row_bytes) tensor from HF's rotate-half
 * order to ggml's interleaved order with n heads: within each head of hd =
 * rows / n rows, new row 2i + j = old row j * hd/2 + i. src and dst must
 * not overlap. Returns MUSE_ERR_FORMAT when rows is not a multiple of 2n.
 */
muse_status muse_arch_permute_rows(void *dst, const void *src, uint64_t rows, uint64_t row_bytes, uint64_t n,
				   muse_err *err);

/* The source row permute_rows puts at output row `row` (rows / n heads of an even size, as checked there). */
uint64_t muse_arch_permuted_row(uint64_t row, uint64_t rows, uint64_t n);

#endif
