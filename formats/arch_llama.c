/* arch_llama.c: the llama family (Llama 2/3, Mistral, Mixtral, SmolLM): HF <-> GGUF tensor names and hparams as table rows. */
#include "arch.h"

#define DENSE MUSE_ARCH_BLK_DENSE
#define MOE MUSE_ARCH_BLK_MOE

/*
 * Names as gguf-py's tensor_mapping.py maps them for MODEL_ARCH.LLAMA; lm_head is absent when tied, biases are
 * optional. Mixtral's experts (block_sparse_moe) stack in convert_hf_to_gguf.py's order w1, w2, w3.
 */
static const muse_arch_tensor llama_tensors[] = {
	{ .hf = "model.embed_tokens.weight", .gguf = "token_embd.weight", .required = 1 },
	{ .hf = "model.norm.weight", .gguf = "output_norm.weight", .f32 = 1, .required = 1 },
	{ .hf = "lm_head.weight", .gguf = "output.weight" },
	{ .hf = "model.layers.{N}.input_layernorm.weight", .gguf = "blk.{N}.attn_norm.weight", .f32 = 1, .required = 1 },
	{ .hf = "model.layers.{N}.post_attention_layernorm.weight", .gguf = "blk.{N}.ffn_norm.weight", .f32 = 1,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.q_proj.weight", .gguf = "blk.{N}.attn_q.weight", .xf = MUSE_XF_PERMUTE_Q,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.q_proj.bias", .gguf = "blk.{N}.attn_q.bias", .xf = MUSE_XF_PERMUTE_Q },
	{ .hf = "model.layers.{N}.self_attn.k_proj.weight", .gguf = "blk.{N}.attn_k.weight", .xf = MUSE_XF_PERMUTE_K,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.k_proj.bias", .gguf = "blk.{N}.attn_k.bias", .xf = MUSE_XF_PERMUTE_K },
	{ .hf = "model.layers.{N}.self_attn.v_proj.weight", .gguf = "blk.{N}.attn_v.weight", .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.v_proj.bias", .gguf = "blk.{N}.attn_v.bias" },
	{ .hf = "model.layers.{N}.self_attn.o_proj.weight", .gguf = "blk.{N}.attn_output.weight", .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.o_proj.bias", .gguf = "blk.{N}.attn_output.bias" },
	{ .hf = "model.layers.{N}.mlp.gate_proj.weight", .gguf = "blk.{N}.ffn_gate.weight", .required = 1,
	  .blocks = DENSE },
	{ .hf = "model.layers.{N}.mlp.up_proj.weight", .gguf = "blk.{N}.ffn_up.weight", .required = 1, .blocks = DENSE },
	{ .hf = "model.layers.{N}.mlp.down_proj.weight", .gguf = "blk.{N}.ffn_down.weight", .required = 1,
	  .blocks = DENSE },
	{ .hf = "model.layers.{N}.block_sparse_moe.gate.weight", .gguf = "blk.{N}.ffn_gate_inp.weight", .f32 = 1,
	  .required = 1, .blocks = MOE },
	{ .hf = "model.layers.{N}.block_sparse_moe.experts.{E}.w1.weight", .gguf = "blk.{N}.ffn_gate_exps.weight",
	  .required = 1, .blocks = MOE },
	{ .hf = "model.layers.{N}.block_sparse_moe.experts.{E}.w2.weight", .gguf = "blk.{N}.ffn_down_exps.weight",
	  .required = 1, .blocks = MOE },
	{ .hf = "model.layers.{N}.block_sparse_moe.experts.{E}.w3.weight", .gguf = "blk.{N}.ffn_up_exps.weight",
	  .required = 1, .blocks = MOE },
	{ 0 },
};

/* LlamaModel.set_gguf_parameters, after the base keys. */
static const muse_arch_hparam llama_hparams[] = {
	{ .kind = MUSE_HP_U32, .key = "vocab_size", .hf = { "vocab_size" }, .required = 1 },
	{ .kind = MUSE_HP_HEAD_DIM, .key = "rope.dimension_count" },
	{ 0 },
};

static const char *const llama_classes[] = { "LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM",
					     "MixtralForCausalLM", NULL };

const muse_arch muse_arch_llama = {
	.gguf_name = "llama",
	.hf_classes = llama_classes,
	.tensors = llama_tensors,
	.rope_permute = 1,
	.hparams = llama_hparams,
};
