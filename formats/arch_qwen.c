/* arch_qwen.c: Qwen2, Qwen3 and their MoE variants: HF <-> GGUF tensor names and hparams as table rows. */
#include "arch.h"

#define DENSE MUSE_ARCH_BLK_DENSE
#define MOE MUSE_ARCH_BLK_MOE

/* Rows every Qwen shares (gguf-py tensor_mapping.py); Qwen2 has Q/K/V biases, Qwen3 Q/K norms; no Q/K permutation (NEOX rope). */
#define QWEN_COMMON                                                                                                 \
	{ .hf = "model.embed_tokens.weight", .gguf = "token_embd.weight", .required = 1 },                            \
	{ .hf = "model.norm.weight", .gguf = "output_norm.weight", .f32 = 1, .required = 1 },                         \
	{ .hf = "lm_head.weight", .gguf = "output.weight" },                                                          \
	{ .hf = "model.layers.{N}.input_layernorm.weight", .gguf = "blk.{N}.attn_norm.weight", .f32 = 1,              \
	  .required = 1 },                                                                                            \
	{ .hf = "model.layers.{N}.post_attention_layernorm.weight", .gguf = "blk.{N}.ffn_norm.weight", .f32 = 1,      \
	  .required = 1 },                                                                                            \
	{ .hf = "model.layers.{N}.self_attn.q_proj.weight", .gguf = "blk.{N}.attn_q.weight", .required = 1 },         \
	{ .hf = "model.layers.{N}.self_attn.q_proj.bias", .gguf = "blk.{N}.attn_q.bias" },                            \
	{ .hf = "model.layers.{N}.self_attn.k_proj.weight", .gguf = "blk.{N}.attn_k.weight", .required = 1 },         \
	{ .hf = "model.layers.{N}.self_attn.k_proj.bias", .gguf = "blk.{N}.attn_k.bias" },                            \
	{ .hf = "model.layers.{N}.self_attn.v_proj.weight", .gguf = "blk.{N}.attn_v.weight", .required = 1 },         \
	{ .hf = "model.layers.{N}.self_attn.v_proj.bias", .gguf = "blk.{N}.attn_v.bias" },                            \
	{ .hf = "model.layers.{N}.self_attn.o_proj.weight", .gguf = "blk.{N}.attn_output.weight", .required = 1 },    \
	{ .hf = "model.layers.{N}.mlp.gate_proj.weight", .gguf = "blk.{N}.ffn_gate.weight", .required = 1,            \
	  .blocks = DENSE },                                                                                          \
	{ .hf = "model.layers.{N}.mlp.up_proj.weight", .gguf = "blk.{N}.ffn_up.weight", .required = 1,                \
	  .blocks = DENSE },                                                                                          \
	{ .hf = "model.layers.{N}.mlp.down_proj.weight", .gguf = "blk.{N}.ffn_down.weight", .required = 1,            \
	  .blocks = DENSE }

#define QWEN3_NORMS                                                                                                 \
	{ .hf = "model.layers.{N}.self_attn.q_norm.weight", .gguf = "blk.{N}.attn_q_norm.weight", .f32 = 1,           \
	  .required = 1 },                                                                                            \
	{ .hf = "model.layers.{N}.self_attn.k_norm.weight", .gguf = "blk.{N}.attn_k_norm.weight", .f32 = 1,           \
	  .required = 1 }

/*
 * Routed experts, one tensor per expert as published (stacked in Qwen2MoeModel's order down, gate, up), or
 * already fused as transformers 5 holds them in memory (gate_up_proj (E, 2f, n) split in halves, down_proj).
 */
#define QWEN_EXPERTS                                                                                                \
	{ .hf = "model.layers.{N}.mlp.gate.weight", .gguf = "blk.{N}.ffn_gate_inp.weight", .f32 = 1, .required = 1,   \
	  .blocks = MOE },                                                                                            \
	{ .hf = "model.layers.{N}.mlp.experts.{E}.down_proj.weight", .gguf = "blk.{N}.ffn_down_exps.weight",          \
	  .required = 1, .blocks = MOE },                                                                             \
	{ .hf = "model.layers.{N}.mlp.experts.{E}.gate_proj.weight", .gguf = "blk.{N}.ffn_gate_exps.weight",          \
	  .required = 1, .blocks = MOE },                                                                             \
	{ .hf = "model.layers.{N}.mlp.experts.{E}.up_proj.weight", .gguf = "blk.{N}.ffn_up_exps.weight",              \
	  .required = 1, .blocks = MOE },                                                                             \
	{ .hf = "model.layers.{N}.mlp.experts.down_proj", .gguf = "blk.{N}.ffn_down_exps.weight", .blocks = MOE },    \
	{ .hf = "model.layers.{N}.mlp.experts.gate_up_proj", .gguf = "blk.{N}.ffn_gate_exps.weight",                  \
	  .xf = MUSE_XF_HALF_0, .blocks = MOE },                                                                      \
	{ .hf = "model.layers.{N}.mlp.experts.gate_up_proj", .gguf = "blk.{N}.ffn_up_exps.weight",                    \
	  .xf = MUSE_XF_HALF_1, .blocks = MOE }

static const muse_arch_tensor qwen2_tensors[] = { QWEN_COMMON, { 0 } };
static const muse_arch_tensor qwen3_tensors[] = { QWEN_COMMON, QWEN3_NORMS, { 0 } };

static const muse_arch_tensor qwen2moe_tensors[] = {
	QWEN_COMMON,
	QWEN_EXPERTS,
	{ .hf = "model.layers.{N}.mlp.shared_expert.gate_proj.weight", .gguf = "blk.{N}.ffn_gate_shexp.weight",
	  .required = 1, .blocks = MOE, .if_cfg = "shared_expert_intermediate_size" },
	{ .hf = "model.layers.{N}.mlp.shared_expert.up_proj.weight", .gguf = "blk.{N}.ffn_up_shexp.weight",
	  .required = 1, .blocks = MOE, .if_cfg = "shared_expert_intermediate_size" },
	{ .hf = "model.layers.{N}.mlp.shared_expert.down_proj.weight", .gguf = "blk.{N}.ffn_down_shexp.weight",
	  .required = 1, .blocks = MOE, .if_cfg = "shared_expert_intermediate_size" },
	/* (1, n_embd) but a router: F32 like FFN_GATE_INP_SHEXP in convert_hf_to_gguf.py */
	{ .hf = "model.layers.{N}.mlp.shared_expert_gate.weight", .gguf = "blk.{N}.ffn_gate_inp_shexp.weight",
	  .f32 = 1, .required = 1, .blocks = MOE, .if_cfg = "shared_expert_intermediate_size" },
	{ 0 },
};

static const muse_arch_tensor qwen3moe_tensors[] = { QWEN_COMMON, QWEN3_NORMS, QWEN_EXPERTS, { 0 } };

/* Qwen2MoeModel.set_gguf_parameters (Qwen3Moe inherits it); plain Qwen2/Qwen3 add nothing to the base keys. */
static const muse_arch_hparam moe_hparams[] = {
	{ .kind = MUSE_HP_U32, .key = "expert_feed_forward_length", .hf = { "moe_intermediate_size" } },
	{ .kind = MUSE_HP_U32, .key = "expert_shared_feed_forward_length", .hf = { "shared_expert_intermediate_size" } },
	{ 0 },
};

static const char *const qwen2_classes[] = { "Qwen2ForCausalLM", NULL };
static const char *const qwen3_classes[] = { "Qwen3ForCausalLM", NULL };
static const char *const qwen2moe_classes[] = { "Qwen2MoeForCausalLM", NULL };
static const char *const qwen3moe_classes[] = { "Qwen3MoeForCausalLM", NULL };

/* NEOX rope: no Q/K permutation (.rope_permute left 0). */
const muse_arch muse_arch_qwen2 = { .gguf_name = "qwen2", .hf_classes = qwen2_classes, .tensors = qwen2_tensors };
const muse_arch muse_arch_qwen3 = { .gguf_name = "qwen3", .hf_classes = qwen3_classes, .tensors = qwen3_tensors };
const muse_arch muse_arch_qwen2moe = {
	.gguf_name = "qwen2moe",
	.hf_classes = qwen2moe_classes,
	.tensors = qwen2moe_tensors,
	.hparams = moe_hparams,
};
const muse_arch muse_arch_qwen3moe = {
	.gguf_name = "qwen3moe",
	.hf_classes = qwen3moe_classes,
	.tensors = qwen3moe_tensors,
	.hparams = moe_hparams,
};
