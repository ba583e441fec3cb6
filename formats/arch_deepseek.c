/* arch_deepseek.c: DeepSeek V2/V3 (MLA attention, routed + shared experts, leading dense blocks) as table rows. */
#include "arch.h"

#define ALL MUSE_ARCH_BLK_ALL
#define DENSE MUSE_ARCH_BLK_DENSE
#define MOE MUSE_ARCH_BLK_MOE
#define NONE MUSE_XF_NONE

/*
 * gguf-py's MODEL_ARCH.DEEPSEEK2 names. q_proj replaces q_a/q_b when the
 * config has no q_lora_rank (V2-Lite). kv_b_proj becomes attn_k_b
 * (transposed per head) and attn_v_b, as DeepseekV2Model.modify_tensors
 * splits it for llama.cpp's absorbed MLA. Experts stack in its order down,
 * gate, up; e_score_correction_bias (V3's noaux_tc routing) is exp_probs_b.
 */
static const muse_arch_tensor deepseek2_tensors[] = {
	{ "model.embed_tokens.weight", "token_embd.weight", NONE, 0, 1, ALL, NULL },
	{ "model.norm.weight", "output_norm.weight", NONE, 1, 1, ALL, NULL },
	{ "lm_head.weight", "output.weight", NONE, 0, 0, ALL, NULL },
	{ "model.layers.{N}.input_layernorm.weight", "blk.{N}.attn_norm.weight", NONE, 1, 1, ALL, NULL },
	{ "model.layers.{N}.post_attention_layernorm.weight", "blk.{N}.ffn_norm.weight", NONE, 1, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.q_proj.weight", "blk.{N}.attn_q.weight", NONE, 0, 1, ALL, "!q_lora_rank" },
	{ "model.layers.{N}.self_attn.q_a_proj.weight", "blk.{N}.attn_q_a.weight", NONE, 0, 1, ALL, "q_lora_rank" },
	{ "model.layers.{N}.self_attn.q_a_layernorm.weight", "blk.{N}.attn_q_a_norm.weight", NONE, 1, 1, ALL,
	  "q_lora_rank" },
	{ "model.layers.{N}.self_attn.q_b_proj.weight", "blk.{N}.attn_q_b.weight", NONE, 0, 1, ALL, "q_lora_rank" },
	{ "model.layers.{N}.self_attn.kv_a_proj_with_mqa.weight", "blk.{N}.attn_kv_a_mqa.weight", NONE, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.kv_a_layernorm.weight", "blk.{N}.attn_kv_a_norm.weight", NONE, 1, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.kv_b_proj.weight", "blk.{N}.attn_k_b.weight", MUSE_XF_KV_B_K, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.kv_b_proj.weight", "blk.{N}.attn_v_b.weight", MUSE_XF_KV_B_V, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.o_proj.weight", "blk.{N}.attn_output.weight", NONE, 0, 1, ALL, NULL },
	{ "model.layers.{N}.mlp.gate_proj.weight", "blk.{N}.ffn_gate.weight", NONE, 0, 1, DENSE, NULL },
	{ "model.layers.{N}.mlp.up_proj.weight", "blk.{N}.ffn_up.weight", NONE, 0, 1, DENSE, NULL },
	{ "model.layers.{N}.mlp.down_proj.weight", "blk.{N}.ffn_down.weight", NONE, 0, 1, DENSE, NULL },
	{ "model.layers.{N}.mlp.gate.weight", "blk.{N}.ffn_gate_inp.weight", NONE, 1, 1, MOE, NULL },
	{ "model.layers.{N}.mlp.gate.e_score_correction_bias", "blk.{N}.exp_probs_b.bias", NONE, 1, 0, MOE, NULL },
	{ "model.layers.{N}.mlp.experts.{E}.down_proj.weight", "blk.{N}.ffn_down_exps.weight", NONE, 0, 1, MOE, NULL },
	{ "model.layers.{N}.mlp.experts.{E}.gate_proj.weight", "blk.{N}.ffn_gate_exps.weight", NONE, 0, 1, MOE, NULL },
	{ "model.layers.{N}.mlp.experts.{E}.up_proj.weight", "blk.{N}.ffn_up_exps.weight", NONE, 0, 1, MOE, NULL },
	{ "model.layers.{N}.mlp.shared_experts.gate_proj.weight", "blk.{N}.ffn_gate_shexp.weight", NONE, 0, 1, MOE,
	  "n_shared_experts" },
	{ "model.layers.{N}.mlp.shared_experts.up_proj.weight", "blk.{N}.ffn_up_shexp.weight", NONE, 0, 1, MOE,
	  "n_shared_experts" },
	{ "model.layers.{N}.mlp.shared_experts.down_proj.weight", "blk.{N}.ffn_down_shexp.weight", NONE, 0, 1, MOE,
	  "n_shared_experts" },
	{ NULL, NULL, NONE, 0, 0, ALL, NULL },
};

/*
 * DeepseekV2Model.set_gguf_parameters: MLA is written as MQA (one KV head of
 * kv_lora_rank + rope dims) that llama.cpp decompresses; rms_norm_eps
 * defaults to 1e-6. The CFG rows run before the base keys, the rest after
 * general.file_type; keys set twice keep their first position, as in gguf-py.
 */
static const muse_arch_hparam deepseek2_hparams[] = {
	{ MUSE_HP_CFG_SET, "", { "num_key_value_heads" }, 1, 1, 0, 0 },
	{ MUSE_HP_CFG_DEFAULT, "", { "rms_norm_eps" }, 1, 1e-6, 0, 0 },
	{ MUSE_HP_U32, "leading_dense_block_count", { "first_k_dense_replace" }, 1, 0, 0, 0 },
	{ MUSE_HP_U32, "vocab_size", { "vocab_size" }, 0, 0, 0, 1 },
	{ MUSE_HP_U32, "attention.q_lora_rank", { "q_lora_rank" }, 0, 0, 0, 0 },
	{ MUSE_HP_U32, "attention.kv_lora_rank", { "kv_lora_rank" }, 1, 512, 0, 0 },
	{ MUSE_HP_U32_SUM, "attention.key_length", { "kv_lora_rank", "qk_rope_head_dim" }, 1, 512, 0, 1 },
	{ MUSE_HP_U32, "attention.value_length", { "kv_lora_rank" }, 1, 512, 0, 0 },
	{ MUSE_HP_U32_SUM, "attention.key_length_mla", { "qk_nope_head_dim", "qk_rope_head_dim" }, 0, 0, 0, 1 },
	{ MUSE_HP_U32, "attention.value_length_mla", { "v_head_dim" }, 0, 0, 0, 1 },
	{ MUSE_HP_U32, "expert_feed_forward_length", { "moe_intermediate_size", "intermediate_size" }, 0, 0, 0, 1 },
	{ MUSE_HP_U32, "expert_count", { "n_routed_experts" }, 0, 0, 0, 0 },
	{ MUSE_HP_U32, "expert_shared_count", { "n_shared_experts" }, 1, 0, 0, 0 },
	{ MUSE_HP_F32, "expert_weights_scale", { "routed_scaling_factor" }, 0, 0, 0, 0 },
	{ MUSE_HP_TRUE, "expert_weights_norm", { "norm_topk_prob" }, 0, 0, 0, 0 },
	{ MUSE_HP_U32, "rope.dimension_count", { "qk_rope_head_dim" }, 0, 0, 0, 1 },
	/* [TAG_DEEPSEEK2_YARN_LOG_MUL_FIX]: 0.1 * mscale_all_dim, which llama.cpp divides back out */
	{ MUSE_HP_F32, "rope.scaling.yarn_log_multiplier", { "rope:mscale_all_dim" }, 0, 0, 0.1, 0 },
	{ MUSE_HP_END, NULL, { NULL }, 0, 0, 0, 0 },
};

static const char *const deepseek2_classes[] = { "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", NULL };

const muse_arch muse_arch_deepseek2 = { "deepseek2", deepseek2_classes, deepseek2_tensors, 0, deepseek2_hparams };
