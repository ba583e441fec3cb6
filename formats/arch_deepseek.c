/* arch_deepseek.c: DeepSeek V2/V3 (MLA attention, routed + shared experts, leading dense blocks) as table rows. */
#include "arch.h"

#define DENSE MUSE_ARCH_BLK_DENSE
#define MOE MUSE_ARCH_BLK_MOE

/*
 * gguf-py's MODEL_ARCH.DEEPSEEK2 names. q_proj replaces q_a/q_b when the
 * config has no q_lora_rank (V2-Lite). kv_b_proj becomes attn_k_b
 * (transposed per head) and attn_v_b, as DeepseekV2Model.modify_tensors
 * splits it for llama.cpp's absorbed MLA. Experts stack in its order down,
 * gate, up; e_score_correction_bias (V3's noaux_tc routing) is exp_probs_b.
 */
static const muse_arch_tensor deepseek2_tensors[] = {
	{ .hf = "model.embed_tokens.weight", .gguf = "token_embd.weight", .required = 1 },
	{ .hf = "model.norm.weight", .gguf = "output_norm.weight", .f32 = 1, .required = 1 },
	{ .hf = "lm_head.weight", .gguf = "output.weight" },
	{ .hf = "model.layers.{N}.input_layernorm.weight", .gguf = "blk.{N}.attn_norm.weight", .f32 = 1, .required = 1 },
	{ .hf = "model.layers.{N}.post_attention_layernorm.weight", .gguf = "blk.{N}.ffn_norm.weight", .f32 = 1,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.q_proj.weight", .gguf = "blk.{N}.attn_q.weight", .required = 1,
	  .if_cfg = "!q_lora_rank" },
	{ .hf = "model.layers.{N}.self_attn.q_a_proj.weight", .gguf = "blk.{N}.attn_q_a.weight", .required = 1,
	  .if_cfg = "q_lora_rank" },
	{ .hf = "model.layers.{N}.self_attn.q_a_layernorm.weight", .gguf = "blk.{N}.attn_q_a_norm.weight", .f32 = 1,
	  .required = 1, .if_cfg = "q_lora_rank" },
	{ .hf = "model.layers.{N}.self_attn.q_b_proj.weight", .gguf = "blk.{N}.attn_q_b.weight", .required = 1,
	  .if_cfg = "q_lora_rank" },
	{ .hf = "model.layers.{N}.self_attn.kv_a_proj_with_mqa.weight", .gguf = "blk.{N}.attn_kv_a_mqa.weight",
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.kv_a_layernorm.weight", .gguf = "blk.{N}.attn_kv_a_norm.weight", .f32 = 1,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.kv_b_proj.weight", .gguf = "blk.{N}.attn_k_b.weight", .xf = MUSE_XF_KV_B_K,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.kv_b_proj.weight", .gguf = "blk.{N}.attn_v_b.weight", .xf = MUSE_XF_KV_B_V,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.o_proj.weight", .gguf = "blk.{N}.attn_output.weight", .required = 1 },
	{ .hf = "model.layers.{N}.mlp.gate_proj.weight", .gguf = "blk.{N}.ffn_gate.weight", .required = 1,
	  .blocks = DENSE },
	{ .hf = "model.layers.{N}.mlp.up_proj.weight", .gguf = "blk.{N}.ffn_up.weight", .required = 1, .blocks = DENSE },
	{ .hf = "model.layers.{N}.mlp.down_proj.weight", .gguf = "blk.{N}.ffn_down.weight", .required = 1,
	  .blocks = DENSE },
	{ .hf = "model.layers.{N}.mlp.gate.weight", .gguf = "blk.{N}.ffn_gate_inp.weight", .f32 = 1, .required = 1,
	  .blocks = MOE },
	{ .hf = "model.layers.{N}.mlp.gate.e_score_correction_bias", .gguf = "blk.{N}.exp_probs_b.bias", .f32 = 1,
	  .blocks = MOE },
	{ .hf = "model.layers.{N}.mlp.experts.{E}.down_proj.weight", .gguf = "blk.{N}.ffn_down_exps.weight",
	  .required = 1, .blocks = MOE },
	{ .hf = "model.layers.{N}.mlp.experts.{E}.gate_proj.weight", .gguf = "blk.{N}.ffn_gate_exps.weight",
	  .required = 1, .blocks = MOE },
	{ .hf = "model.layers.{N}.mlp.experts.{E}.up_proj.weight", .gguf = "blk.{N}.ffn_up_exps.weight",
	  .required = 1, .blocks = MOE },
	{ .hf = "model.layers.{N}.mlp.shared_experts.gate_proj.weight", .gguf = "blk.{N}.ffn_gate_shexp.weight",
	  .required = 1, .blocks = MOE, .if_cfg = "n_shared_experts" },
	{ .hf = "model.layers.{N}.mlp.shared_experts.up_proj.weight", .gguf = "blk.{N}.ffn_up_shexp.weight",
	  .required = 1, .blocks = MOE, .if_cfg = "n_shared_experts" },
	{ .hf = "model.layers.{N}.mlp.shared_experts.down_proj.weight", .gguf = "blk.{N}.ffn_down_shexp.weight",
	  .required = 1, .blocks = MOE, .if_cfg = "n_shared_experts" },
	{ 0 },
};

/*
 * DeepseekV2Model.set_gguf_parameters: MLA is written as MQA (one KV head of
 * kv_lora_rank + rope dims) that llama.cpp decompresses; rms_norm_eps
 * defaults to 1e-6. The CFG rows run before the base keys, the rest after
 * general.file_type; keys set twice keep their first position, as in gguf-py.
 */
static const muse_arch_hparam deepseek2_hparams[] = {
	{ .kind = MUSE_HP_CFG_SET, .key = "", .hf = { "num_key_value_heads" }, .has_def = 1, .def = 1 },
	{ .kind = MUSE_HP_CFG_DEFAULT, .key = "", .hf = { "rms_norm_eps" }, .has_def = 1, .def = 1e-6 },
	{ .kind = MUSE_HP_U32, .key = "leading_dense_block_count", .hf = { "first_k_dense_replace" }, .has_def = 1 },
	{ .kind = MUSE_HP_U32, .key = "vocab_size", .hf = { "vocab_size" }, .required = 1 },
	{ .kind = MUSE_HP_U32, .key = "attention.q_lora_rank", .hf = { "q_lora_rank" } },
	{ .kind = MUSE_HP_U32, .key = "attention.kv_lora_rank", .hf = { "kv_lora_rank" }, .has_def = 1, .def = 512 },
	{ .kind = MUSE_HP_U32_SUM, .key = "attention.key_length", .hf = { "kv_lora_rank", "qk_rope_head_dim" },
	  .has_def = 1, .def = 512, .required = 1 },
	{ .kind = MUSE_HP_U32, .key = "attention.value_length", .hf = { "kv_lora_rank" }, .has_def = 1, .def = 512 },
	{ .kind = MUSE_HP_U32_SUM, .key = "attention.key_length_mla", .hf = { "qk_nope_head_dim", "qk_rope_head_dim" },
	  .required = 1 },
	{ .kind = MUSE_HP_U32, .key = "attention.value_length_mla", .hf = { "v_head_dim" }, .required = 1 },
	{ .kind = MUSE_HP_U32, .key = "expert_feed_forward_length",
	  .hf = { "moe_intermediate_size", "intermediate_size" }, .required = 1 },
	{ .kind = MUSE_HP_U32, .key = "expert_count", .hf = { "n_routed_experts" } },
	{ .kind = MUSE_HP_U32, .key = "expert_shared_count", .hf = { "n_shared_experts" }, .has_def = 1 },
	{ .kind = MUSE_HP_F32, .key = "expert_weights_scale", .hf = { "routed_scaling_factor" } },
	{ .kind = MUSE_HP_TRUE, .key = "expert_weights_norm", .hf = { "norm_topk_prob" } },
	{ .kind = MUSE_HP_U32, .key = "rope.dimension_count", .hf = { "qk_rope_head_dim" }, .required = 1 },
	/* [TAG_DEEPSEEK2_YARN_LOG_MUL_FIX]: 0.1 * mscale_all_dim, which llama.cpp divides back out */
	{ .kind = MUSE_HP_F32, .key = "rope.scaling.yarn_log_multiplier", .hf = { "rope:mscale_all_dim" },
	  .scale = 0.1 },
	{ 0 },
};

static const char *const deepseek2_classes[] = { "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", NULL };

const muse_arch muse_arch_deepseek2 = {
	.gguf_name = "deepseek2",
	.hf_classes = deepseek2_classes,
	.tensors = deepseek2_tensors,
	.hparams = deepseek2_hparams,
};
