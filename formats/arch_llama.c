/* arch_llama.c: the llama family (Llama 2/3, Mistral, SmolLM): HF <-> GGUF tensor names as table rows. */
#include "arch.h"

/* Names as gguf-py's tensor_mapping.py maps them for MODEL_ARCH.LLAMA; lm_head is absent when tied, biases are optional. */
static const muse_arch_tensor llama_tensors[] = {
	{ "model.embed_tokens.weight", "token_embd.weight", MUSE_XF_NONE, 0, 1 },
	{ "model.norm.weight", "output_norm.weight", MUSE_XF_NONE, 1, 1 },
	{ "lm_head.weight", "output.weight", MUSE_XF_NONE, 0, 0 },
	{ "model.layers.{N}.input_layernorm.weight", "blk.{N}.attn_norm.weight", MUSE_XF_NONE, 1, 1 },
	{ "model.layers.{N}.post_attention_layernorm.weight", "blk.{N}.ffn_norm.weight", MUSE_XF_NONE, 1, 1 },
	{ "model.layers.{N}.self_attn.q_proj.weight", "blk.{N}.attn_q.weight", MUSE_XF_PERMUTE_Q, 0, 1 },
	{ "model.layers.{N}.self_attn.q_proj.bias", "blk.{N}.attn_q.bias", MUSE_XF_PERMUTE_Q, 0, 0 },
	{ "model.layers.{N}.self_attn.k_proj.weight", "blk.{N}.attn_k.weight", MUSE_XF_PERMUTE_K, 0, 1 },
	{ "model.layers.{N}.self_attn.k_proj.bias", "blk.{N}.attn_k.bias", MUSE_XF_PERMUTE_K, 0, 0 },
	{ "model.layers.{N}.self_attn.v_proj.weight", "blk.{N}.attn_v.weight", MUSE_XF_NONE, 0, 1 },
	{ "model.layers.{N}.self_attn.v_proj.bias", "blk.{N}.attn_v.bias", MUSE_XF_NONE, 0, 0 },
	{ "model.layers.{N}.self_attn.o_proj.weight", "blk.{N}.attn_output.weight", MUSE_XF_NONE, 0, 1 },
	{ "model.layers.{N}.self_attn.o_proj.bias", "blk.{N}.attn_output.bias", MUSE_XF_NONE, 0, 0 },
	{ "model.layers.{N}.mlp.gate_proj.weight", "blk.{N}.ffn_gate.weight", MUSE_XF_NONE, 0, 1 },
	{ "model.layers.{N}.mlp.up_proj.weight", "blk.{N}.ffn_up.weight", MUSE_XF_NONE, 0, 1 },
	{ "model.layers.{N}.mlp.down_proj.weight", "blk.{N}.ffn_down.weight", MUSE_XF_NONE, 0, 1 },
	{ NULL, NULL, MUSE_XF_NONE, 0, 0 },
};

static const char *const llama_classes[] = { "LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM", NULL };

const muse_arch muse_arch_llama = { "llama", llama_classes, llama_tensors, 1 };
