/* arch_llama.c: the llama family (Llama 2/3, Mistral, Mixtral, SmolLM): HF <-> GGUF tensor names and hparams as table rows. */
#include "arch.h"

#define ALL MUSE_ARCH_BLK_ALL
#define DENSE MUSE_ARCH_BLK_DENSE
#define MOE MUSE_ARCH_BLK_MOE

/*
 * Names as gguf-py's tensor_mapping.py maps them for MODEL_ARCH.LLAMA; lm_head is absent when tied, biases are
 * optional. Mixtral's experts (block_sparse_moe) stack in convert_hf_to_gguf.py's order w1, w2, w3.
 */
static const muse_arch_tensor llama_tensors[] = {
	{ "model.embed_tokens.weight", "token_embd.weight", MUSE_XF_NONE, 0, 1, ALL, NULL },
	{ "model.norm.weight", "output_norm.weight", MUSE_XF_NONE, 1, 1, ALL, NULL },
	{ "lm_head.weight", "output.weight", MUSE_XF_NONE, 0, 0, ALL, NULL },
	{ "model.layers.{N}.input_layernorm.weight", "blk.{N}.attn_norm.weight", MUSE_XF_NONE, 1, 1, ALL, NULL },
	{ "model.layers.{N}.post_attention_layernorm.weight", "blk.{N}.ffn_norm.weight", MUSE_XF_NONE, 1, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.q_proj.weight", "blk.{N}.attn_q.weight", MUSE_XF_PERMUTE_Q, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.q_proj.bias", "blk.{N}.attn_q.bias", MUSE_XF_PERMUTE_Q, 0, 0, ALL, NULL },
	{ "model.layers.{N}.self_attn.k_proj.weight", "blk.{N}.attn_k.weight", MUSE_XF_PERMUTE_K, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.k_proj.bias", "blk.{N}.attn_k.bias", MUSE_XF_PERMUTE_K, 0, 0, ALL, NULL },
	{ "model.layers.{N}.self_attn.v_proj.weight", "blk.{N}.attn_v.weight", MUSE_XF_NONE, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.v_proj.bias", "blk.{N}.attn_v.bias", MUSE_XF_NONE, 0, 0, ALL, NULL },
	{ "model.layers.{N}.self_attn.o_proj.weight", "blk.{N}.attn_output.weight", MUSE_XF_NONE, 0, 1, ALL, NULL },
	{ "model.layers.{N}.self_attn.o_proj.bias", "blk.{N}.attn_output.bias", MUSE_XF_NONE, 0, 0, ALL, NULL },
	{ "model.layers.{N}.mlp.gate_proj.weight", "blk.{N}.ffn_gate.weight", MUSE_XF_NONE, 0, 1, DENSE, NULL },
	{ "model.layers.{N}.mlp.up_proj.weight", "blk.{N}.ffn_up.weight", MUSE_XF_NONE, 0, 1, DENSE, NULL },
	{ "model.layers.{N}.mlp.down_proj.weight", "blk.{N}.ffn_down.weight", MUSE_XF_NONE, 0, 1, DENSE, NULL },
	{ "model.layers.{N}.block_sparse_moe.gate.weight", "blk.{N}.ffn_gate_inp.weight", MUSE_XF_NONE, 1, 1, MOE, NULL },
	{ "model.layers.{N}.block_sparse_moe.experts.{E}.w1.weight", "blk.{N}.ffn_gate_exps.weight", MUSE_XF_NONE, 0, 1,
	  MOE, NULL },
	{ "model.layers.{N}.block_sparse_moe.experts.{E}.w2.weight", "blk.{N}.ffn_down_exps.weight", MUSE_XF_NONE, 0, 1,
	  MOE, NULL },
	{ "model.layers.{N}.block_sparse_moe.experts.{E}.w3.weight", "blk.{N}.ffn_up_exps.weight", MUSE_XF_NONE, 0, 1,
	  MOE, NULL },
	{ NULL, NULL, MUSE_XF_NONE, 0, 0, ALL, NULL },
};

/* LlamaModel.set_gguf_parameters, after the base keys. */
static const muse_arch_hparam llama_hparams[] = {
	{ MUSE_HP_U32, "vocab_size", { "vocab_size" }, 0, 0, 0, 1 },
	{ MUSE_HP_HEAD_DIM, "rope.dimension_count", { NULL }, 0, 0, 0, 0 },
	{ MUSE_HP_END, NULL, { NULL }, 0, 0, 0, 0 },
};

static const char *const llama_classes[] = { "LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM",
					     "MixtralForCausalLM", NULL };

const muse_arch muse_arch_llama = { "llama", llama_classes, llama_tensors, 1, llama_hparams };
