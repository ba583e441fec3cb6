/* arch_qwen.c: Qwen2, Qwen3 and their MoE variants: HF <-> GGUF tensor names and hparams as table rows. */
#include "arch.h"

#define ALL MUSE_ARCH_BLK_ALL
#define DENSE MUSE_ARCH_BLK_DENSE
#define MOE MUSE_ARCH_BLK_MOE
#define NONE MUSE_XF_NONE

/* Rows every Qwen shares (gguf-py tensor_mapping.py); Qwen2 has Q/K/V biases, Qwen3 Q/K norms; no Q/K permutation (NEOX rope). */
#define QWEN_COMMON                                                                                               \
	{ "model.embed_tokens.weight", "token_embd.weight", NONE, 0, 1, ALL, NULL },                                \
	{ "model.norm.weight", "output_norm.weight", NONE, 1, 1, ALL, NULL },                                       \
	{ "lm_head.weight", "output.weight", NONE, 0, 0, ALL, NULL },                                               \
	{ "model.layers.{N}.input_layernorm.weight", "blk.{N}.attn_norm.weight", NONE, 1, 1, ALL, NULL },            \
	{ "model.layers.{N}.post_attention_layernorm.weight", "blk.{N}.ffn_norm.weight", NONE, 1, 1, ALL, NULL },    \
	{ "model.layers.{N}.self_attn.q_proj.weight", "blk.{N}.attn_q.weight", NONE, 0, 1, ALL, NULL },             \
	{ "model.layers.{N}.self_attn.q_proj.bias", "blk.{N}.attn_q.bias", NONE, 0, 0, ALL, NULL },                 \
	{ "model.layers.{N}.self_attn.k_proj.weight", "blk.{N}.attn_k.weight", NONE, 0, 1, ALL, NULL },             \
	{ "model.layers.{N}.self_attn.k_proj.bias", "blk.{N}.attn_k.bias", NONE, 0, 0, ALL, NULL },                 \
	{ "model.layers.{N}.self_attn.v_proj.weight", "blk.{N}.attn_v.weight", NONE, 0, 1, ALL, NULL },             \
	{ "model.layers.{N}.self_attn.v_proj.bias", "blk.{N}.attn_v.bias", NONE, 0, 0, ALL, NULL },                 \
	{ "model.layers.{N}.self_attn.o_proj.weight", "blk.{N}.attn_output.weight", NONE, 0, 1, ALL, NULL },        \
	{ "model.layers.{N}.mlp.gate_proj.weight", "blk.{N}.ffn_gate.weight", NONE, 0, 1, DENSE, NULL },            \
	{ "model.layers.{N}.mlp.up_proj.weight", "blk.{N}.ffn_up.weight", NONE, 0, 1, DENSE, NULL },                \
	{ "model.layers.{N}.mlp.down_proj.weight", "blk.{N}.ffn_down.weight", NONE, 0, 1, DENSE, NULL }

#define QWEN3_NORMS                                                                                               \
	{ "model.layers.{N}.self_attn.q_norm.weight", "blk.{N}.attn_q_norm.weight", NONE, 1, 1, ALL, NULL },       \
	{ "model.layers.{N}.self_attn.k_norm.weight", "blk.{N}.attn_k_norm.weight", NONE, 1, 1, ALL, NULL }

/*
 * Routed experts, one tensor per expert as published (stacked in Qwen2MoeModel's order down, gate, up), or
 * already fused as transformers 5 holds them in memory (gate_up_proj (E, 2f, n) split in halves, down_proj).
 */
#define QWEN_EXPERTS                                                                                              \
	{ "model.layers.{N}.mlp.gate.weight", "blk.{N}.ffn_gate_inp.weight", NONE, 1, 1, MOE, NULL },               \
	{ "model.layers.{N}.mlp.experts.{E}.down_proj.weight", "blk.{N}.ffn_down_exps.weight", NONE, 0, 1, MOE, NULL }, \
	{ "model.layers.{N}.mlp.experts.{E}.gate_proj.weight", "blk.{N}.ffn_gate_exps.weight", NONE, 0, 1, MOE, NULL }, \
	{ "model.layers.{N}.mlp.experts.{E}.up_proj.weight", "blk.{N}.ffn_up_exps.weight", NONE, 0, 1, MOE, NULL },   \
	{ "model.layers.{N}.mlp.experts.down_proj", "blk.{N}.ffn_down_exps.weight", NONE, 0, 0, MOE, NULL },        \
	{ "model.layers.{N}.mlp.experts.gate_up_proj", "blk.{N}.ffn_gate_exps.weight", MUSE_XF_HALF_0, 0, 0, MOE, NULL }, \
	{ "model.layers.{N}.mlp.experts.gate_up_proj", "blk.{N}.ffn_up_exps.weight", MUSE_XF_HALF_1, 0, 0, MOE, NULL }

#define END { NULL, NULL, NONE, 0, 0, ALL, NULL }

static const muse_arch_tensor qwen2_tensors[] = { QWEN_COMMON, END };
static const muse_arch_tensor qwen3_tensors[] = { QWEN_COMMON, QWEN3_NORMS, END };

static const muse_arch_tensor qwen2moe_tensors[] = {
	QWEN_COMMON,
	QWEN_EXPERTS,
	{ "model.layers.{N}.mlp.shared_expert.gate_proj.weight", "blk.{N}.ffn_gate_shexp.weight", NONE, 0, 1, MOE,
	  "shared_expert_intermediate_size" },
	{ "model.layers.{N}.mlp.shared_expert.up_proj.weight", "blk.{N}.ffn_up_shexp.weight", NONE, 0, 1, MOE,
	  "shared_expert_intermediate_size" },
	{ "model.layers.{N}.mlp.shared_expert.down_proj.weight", "blk.{N}.ffn_down_shexp.weight", NONE, 0, 1, MOE,
	  "shared_expert_intermediate_size" },
	/* (1, n_embd) but a router: F32 like FFN_GATE_INP_SHEXP in convert_hf_to_gguf.py */
	{ "model.layers.{N}.mlp.shared_expert_gate.weight", "blk.{N}.ffn_gate_inp_shexp.weight", NONE, 1, 1, MOE,
	  "shared_expert_intermediate_size" },
	END,
};

static const muse_arch_tensor qwen3moe_tensors[] = { QWEN_COMMON, QWEN3_NORMS, QWEN_EXPERTS, END };

/* Qwen2MoeModel.set_gguf_parameters (Qwen3Moe inherits it); plain Qwen2/Qwen3 add nothing to the base keys. */
static const muse_arch_hparam moe_hparams[] = {
	{ MUSE_HP_U32, "expert_feed_forward_length", { "moe_intermediate_size" }, 0, 0, 0, 0 },
	{ MUSE_HP_U32, "expert_shared_feed_forward_length", { "shared_expert_intermediate_size" }, 0, 0, 0, 0 },
	{ MUSE_HP_END, NULL, { NULL }, 0, 0, 0, 0 },
};

static const char *const qwen2_classes[] = { "Qwen2ForCausalLM", NULL };
static const char *const qwen3_classes[] = { "Qwen3ForCausalLM", NULL };
static const char *const qwen2moe_classes[] = { "Qwen2MoeForCausalLM", NULL };
static const char *const qwen3moe_classes[] = { "Qwen3MoeForCausalLM", NULL };

const muse_arch muse_arch_qwen2 = { "qwen2", qwen2_classes, qwen2_tensors, 0, NULL };
const muse_arch muse_arch_qwen3 = { "qwen3", qwen3_classes, qwen3_tensors, 0, NULL };
const muse_arch muse_arch_qwen2moe = { "qwen2moe", qwen2moe_classes, qwen2moe_tensors, 0, moe_hparams };
const muse_arch muse_arch_qwen3moe = { "qwen3moe", qwen3moe_classes, qwen3moe_tensors, 0, moe_hparams };
