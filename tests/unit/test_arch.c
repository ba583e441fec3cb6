/* test_arch.c: architecture tables (name mapping, block numbers), Q/K permutation, name/size heuristics, pre-tokenizer choice. */
#include <string.h>

#include "../../formats/arch.h"
#include "../../formats/hf2gguf.h"
#include "../../formats/tokenizer_gguf.h"
#include "unit.h"

static void test_map_names(void)
{
	const muse_arch *a = muse_arch_find("LlamaForCausalLM");
	CHECK(a && !strcmp(a->gguf_name, "llama"));
	CHECK(muse_arch_find("MistralForCausalLM") == a);
	CHECK(muse_arch_find("FooForCausalLM") == NULL);
	char out[64];
	const muse_arch_tensor *rule;
	int64_t b;
	CHECK(muse_arch_map_name(a, "model.layers.11.self_attn.q_proj.weight", 12, out, sizeof out, &rule, &b) == MUSE_OK);
	CHECK(!strcmp(out, "blk.11.attn_q.weight") && b == 11 && rule->xf == MUSE_XF_PERMUTE_Q);
	CHECK(muse_arch_map_name(a, "model.layers.0.self_attn.k_proj.weight", 1, out, sizeof out, &rule, &b) == MUSE_OK);
	CHECK(!strcmp(out, "blk.0.attn_k.weight") && rule->xf == MUSE_XF_PERMUTE_K);
	CHECK(muse_arch_map_name(a, "model.norm.weight", 1, out, sizeof out, &rule, &b) == MUSE_OK);
	CHECK(!strcmp(out, "output_norm.weight") && b == -1 && rule->f32);
	CHECK(muse_arch_map_name(a, "lm_head.weight", 1, out, sizeof out, &rule, &b) == MUSE_OK);
	CHECK(!strcmp(out, "output.weight"));
	/* Block number at or above the layer count; non-canonical numbers; unknown names; overflow. */
	CHECK(muse_arch_map_name(a, "model.layers.12.mlp.up_proj.weight", 12, out, sizeof out, &rule, &b) == MUSE_ERR_LIMIT);
	CHECK(muse_arch_map_name(a, "model.layers.01.mlp.up_proj.weight", 12, out, sizeof out, &rule, &b) ==
	      MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_map_name(a, "model.layers.-1.mlp.up_proj.weight", 12, out, sizeof out, &rule, &b) ==
	      MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_map_name(a, "model.layers..mlp.up_proj.weight", 12, out, sizeof out, &rule, &b) ==
	      MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_map_name(a, "model.layers.99999999999999999999999.mlp.up_proj.weight", 12, out, sizeof out,
				 &rule, &b) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_map_name(a, "model.layers.0.mlp.up_proj.weightx", 12, out, sizeof out, &rule, &b) ==
	      MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_map_name(a, "model.layers.3.mlp.down_proj.weight", 12, out, 8, &rule, &b) == MUSE_ERR_LIMIT);
	char list[256];
	muse_arch_list(list, sizeof list);
	CHECK(strstr(list, "LlamaForCausalLM") != NULL);
}

static void test_permute(void)
{
	/* 2 heads of hd 4, one byte per row: new row 2i+j of head h = old row h*4 + j*2 + i. */
	const unsigned char src[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	unsigned char dst[8];
	CHECK(muse_arch_permute_rows(dst, src, 8, 1, 2, NULL) == MUSE_OK);
	const unsigned char want[8] = { 0, 2, 1, 3, 4, 6, 5, 7 };
	CHECK(!memcmp(dst, want, 8));
	/* Wider rows move whole. */
	unsigned short s2[8], d2[8];
	for (int i = 0; i < 8; i++)
		s2[i] = (unsigned short)(i * 257);
	CHECK(muse_arch_permute_rows(d2, s2, 4, 4, 1, NULL) == MUSE_OK);
	CHECK(d2[0] == s2[0] && d2[1] == s2[1] && d2[2] == s2[4] && d2[3] == s2[5] && d2[4] == s2[2] && d2[6] == s2[6]);
	muse_err err = { 0 };
	CHECK(muse_arch_permute_rows(dst, src, 6, 1, 2, &err) == MUSE_ERR_FORMAT); /* hd 3: odd */
	CHECK(muse_arch_permute_rows(dst, src, 8, 1, 0, &err) == MUSE_ERR_FORMAT);
}

static void test_names(void)
{
	char out[64];
	muse_hf_name_to_title("llama", out, sizeof out);
	CHECK(!strcmp(out, "Llama"));
	muse_hf_name_to_title("tiny-llama3b-v1.2", out, sizeof out);
	CHECK(!strcmp(out, "Tiny Llama3B v1.2"));
	muse_hf_name_to_title("SmolLM2-135M", out, sizeof out);
	CHECK(!strcmp(out, "SmolLM2 135M"));
	muse_hf_name_to_title("8b-instruct", out, sizeof out);
	CHECK(!strcmp(out, "8b Instruct"));
	muse_hf_size_label(125248, out, sizeof out);
	CHECK(!strcmp(out, "125K"));
	muse_hf_size_label(134515008, out, sizeof out);
	CHECK(!strcmp(out, "135M"));
	muse_hf_size_label(1235814400, out, sizeof out);
	CHECK(!strcmp(out, "1.2B"));
	muse_hf_size_label(8030261248ull, out, sizeof out);
	CHECK(!strcmp(out, "8.0B"));
}

static void test_pre(void)
{
	CHECK(!strcmp(muse_tokenizer_pre_name("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"),
		      "gpt-2"));
	CHECK(!strcmp(muse_tokenizer_pre_name("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
					      "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
					      "false,\"use_regex\":true}]}"), "smollm"));
	CHECK(!strcmp(muse_tokenizer_pre_name(
			      "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
			      "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
			      "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
			      "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
			      "false,\"use_regex\":false}]}"), "llama-bpe"));
	CHECK(muse_tokenizer_pre_name("{\"type\":\"Metaspace\"}") == NULL);
	CHECK(muse_tokenizer_pre_name("{\"type\":\"ByteLevel\",\"add_prefix_space\":true}") == NULL);
	CHECK(muse_tokenizer_pre_name("null") == NULL);
	CHECK(muse_tokenizer_pre_name("not json") == NULL);
}

int main(void)
{
	unit_file_name = "arch";
	RUN(test_map_names);
	RUN(test_permute);
	RUN(test_names);
	RUN(test_pre);
	UNIT_MAIN_END();
}
