/* test_arch.c: architecture tables (name mapping, block numbers), Q/K permutation, name/size heuristics, pre-tokenizer choice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../formats/arch.h"
#include "../../formats/hf2gguf.h"
#include "../../formats/hf_config.h"
#include "../../formats/model_card.h"
#include "../../formats/vocab.h"
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
	CHECK(!strcmp(muse_vocab_pre_name("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"),
		      "gpt-2"));
	CHECK(!strcmp(muse_vocab_pre_name("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
					      "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
					      "false,\"use_regex\":true}]}"), "smollm"));
	CHECK(!strcmp(muse_vocab_pre_name(
			      "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
			      "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
			      "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
			      "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
			      "false,\"use_regex\":false}]}"), "llama-bpe"));
	CHECK(muse_vocab_pre_name("{\"type\":\"Metaspace\"}") == NULL);
	CHECK(muse_vocab_pre_name("{\"type\":\"ByteLevel\",\"add_prefix_space\":true}") == NULL);
	CHECK(muse_vocab_pre_name("null") == NULL);
	CHECK(muse_vocab_pre_name("not json") == NULL);
}


/* Expected values printed by gguf-py's Metadata.get_model_id_components (llama.cpp 0c1e57098bba). */
static void test_name_components(void)
{
	static const struct {
		const char *id;
		unsigned long long total;
		const char *base, *ft, *ver, *size;
	} cases[] = {
		{ "llama", 125248ull, "", "", "", "" },
		{ "SmolLM2-135M-Instruct", 125248ull, "SmolLM2", "135m-Instruct", "", "" },
		{ "Meta-Llama-3.1-8B-Instruct", 125248ull, "Meta-Llama-3.1", "8b-Instruct", "", "" },
		{ "Mistral-7B-v0.3", 125248ull, "Mistral", "7b", "v0.3", "" },
		{ "bloom-7b1", 125248ull, "bloom", "7.1b", "", "" },
		{ "Mixtral-8x7B-Instruct-v0.1", 125248ull, "Mixtral", "Instruct", "v0.1", "8x7B" },
		{ "Qwen2.5-0.5B", 125248ull, "Qwen2.5", "0.5b", "", "" },
		{ "tiny-llama-v1.2-chat", 125248ull, "tiny-llama-v1.2", "chat", "", "" },
		{ "gpt2-small", 125248ull, "gpt2", "", "", "small" },
		{ "llama-2-7b-hf", 125248ull, "llama-2", "7b-hf", "", "" },
		{ "Phi-3-mini-128k-instruct", 125248ull, "Phi-3-mini", "instruct", "", "128K" },
		{ "model-Q4_K-bf16", 125248ull, "", "", "", "" },
		{ "a--b", 125248ull, "", "", "", "" },
		{ "x-32k", 125248ull, "x", "", "", "32K" },
		{ "TinyLlama-1.1B-Chat-v1.0", 125248ull, "TinyLlama", "1.1b-Chat", "v1.0", "" },
		{ "llama", 8030261248ull, "", "", "", "" },
		{ "SmolLM2-135M-Instruct", 8030261248ull, "SmolLM2", "135m-Instruct", "", "" },
		{ "Meta-Llama-3.1-8B-Instruct", 8030261248ull, "Meta-Llama-3.1", "Instruct", "", "8B" },
		{ "Mistral-7B-v0.3", 8030261248ull, "Mistral", "", "v0.3", "7B" },
		{ "bloom-7b1", 8030261248ull, "bloom", "", "", "7.1B" },
		{ "Mixtral-8x7B-Instruct-v0.1", 8030261248ull, "Mixtral", "Instruct", "v0.1", "8x7B" },
		{ "Qwen2.5-0.5B", 8030261248ull, "Qwen2.5", "0.5b", "", "" },
		{ "tiny-llama-v1.2-chat", 8030261248ull, "tiny-llama-v1.2", "chat", "", "" },
		{ "gpt2-small", 8030261248ull, "gpt2", "", "", "small" },
		{ "llama-2-7b-hf", 8030261248ull, "llama-2", "hf", "", "7B" },
		{ "Phi-3-mini-128k-instruct", 8030261248ull, "Phi-3", "128k-instruct", "", "mini" },
		{ "model-Q4_K-bf16", 8030261248ull, "", "", "", "" },
		{ "a--b", 8030261248ull, "", "", "", "" },
		{ "x-32k", 8030261248ull, "x", "32k", "", "" },
		{ "TinyLlama-1.1B-Chat-v1.0", 8030261248ull, "TinyLlama", "Chat", "v1.0", "1.1B" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char b[128], f[128], v[128], sz[128];
		muse_hf_name_components(cases[i].id, cases[i].total, b, f, v, sz, sizeof b);
		int ok = !strcmp(b, cases[i].base) && !strcmp(f, cases[i].ft) && !strcmp(v, cases[i].ver) &&
			 !strcmp(sz, cases[i].size);
		CHECK(ok);
		if (!ok)
			printf("  %s %llu: got '%s' '%s' '%s' '%s'\n", cases[i].id, cases[i].total, b, f, v, sz);
	}
}

/* ---- config.json and tokenizer files from a scratch directory ---- */

static char scratch[64];

static void put(const char *name, const char *text)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", scratch, name);
	FILE *f = fopen(p, "wb");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

static void drop(const char *name)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", scratch, name);
	unlink(p);
}

#define CFG_HEAD "{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":64,"
#define CFG_TAIL "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":8,\"rms_norm_eps\":1e-5}"

static muse_status cfg_with(const char *text, muse_err *err)
{
	muse_hf_config c;
	muse_meta m;
	muse_meta_init(&m);
	put("config.json", text);
	muse_status s = muse_hf_config_load(scratch, &c, &m, err);
	if (!s)
		muse_hf_config_free(&c);
	muse_meta_free(&m);
	return s;
}

static void test_config(void)
{
	muse_err err = { 0 };
	muse_hf_config c;
	muse_meta m;
	muse_meta_init(&m);
	put("config.json", CFG_HEAD "\"max_position_embeddings\":1e30,\"rope_theta\":500000," CFG_TAIL);
	/* 1e30 does not fit u32: refused, not wrapped. */
	CHECK(muse_hf_config_load(scratch, &c, &m, &err) == MUSE_ERR_FORMAT);
	put("config.json", CFG_HEAD "\"max_position_embeddings\":256,\"rope_theta\":500000," CFG_TAIL);
	CHECK(muse_hf_config_load(scratch, &c, &m, &err) == MUSE_OK);
	CHECK(c.n_layer == 2 && c.n_head == 4 && c.n_head_kv == 2 && c.rope_dim == 16 && c.tie_embeddings);
	double d;
	CHECK(muse_meta_get_f64(&m, "llama.rope.freq_base", &d) && d == 500000);
	uint64_t u;
	CHECK(muse_meta_get_u64(&m, "llama.context_length", &u) && u == 256);
	muse_hf_config_free(&c);
	muse_meta_free(&m);

	CHECK(cfg_with("[]", &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with("{\"architectures\":[\"LlamaForCausalLM\"]", &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "byte ") != NULL);
	CHECK(cfg_with("{\"architectures\":[\"X\"]}", &err) == MUSE_ERR_UNSUPPORTED);
	/* The library names what it supports; each command adds its own way out (convert: --raw), issue 12 item 11. */
	CHECK(strstr(err.msg, "LlamaForCausalLM") && !strstr(err.msg, "--raw"));
	CHECK(cfg_with("{\"architectures\":[]}", &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with(CFG_HEAD "\"num_attention_heads\":0,\"vocab_size\":8}", &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with(CFG_HEAD "\"num_attention_heads\":-4,\"vocab_size\":8}", &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with(CFG_HEAD "\"num_attention_heads\":4.5,\"vocab_size\":8}", &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with(CFG_HEAD "\"num_attention_heads\":\"4\",\"vocab_size\":8}", &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with(CFG_HEAD "\"num_attention_heads\":4}", &err) == MUSE_ERR_FORMAT); /* no vocab_size */
	CHECK(cfg_with(CFG_HEAD "\"hidden_size\":1," CFG_TAIL, &err) == MUSE_ERR_FORMAT); /* duplicate key */
	CHECK(cfg_with(CFG_HEAD "\"rope_scaling\":{\"rope_type\":\"weird\"}," CFG_TAIL, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(cfg_with(CFG_HEAD "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}," CFG_TAIL, &err) ==
	      MUSE_ERR_FORMAT); /* yarn needs original_max_position_embeddings */
	CHECK(cfg_with(CFG_HEAD "\"rope_scaling\":{\"rope_type\":\"llama3\",\"low_freq_factor\":4,"
			       "\"high_freq_factor\":4}," CFG_TAIL, &err) == MUSE_ERR_FORMAT);
	CHECK(cfg_with(CFG_HEAD "\"rope_scaling\":{\"rope_type\":\"llama3\"}," CFG_TAIL, &err) == MUSE_OK);
	CHECK(cfg_with(CFG_HEAD "\"rope_theta\":\"x\"," CFG_TAIL, &err) == MUSE_ERR_FORMAT);
	put("config.json", CFG_HEAD "\"bos_token_id\":1,\"eos_token_id\":99," CFG_TAIL);
}

static muse_status tok_with(const char *tok, uint64_t n_vocab, muse_meta *m, muse_err *err)
{
	put("tokenizer.json", tok);
	return muse_vocab_hf_to_meta(scratch, n_vocab, m, NULL, err);
}

#define BL "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"

static void test_tokenizer(void)
{
	muse_err err = { 0 };
	muse_meta m;
	muse_meta_init(&m);
	put("tokenizer_config.json", "{\"bos_token\":{\"content\":\"<s>\"},\"eos_token\":\"</s>\",\"add_bos_token\":true,"
				     "\"model_max_length\":1000000000000000019884624838656,\"chat_template\":\"T\\u00e9\"}");
	CHECK(tok_with("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":3,\"b\":4,\"ab\":5},\"merges\":[[\"a\",\"b\"],"
		       "[\"a \",\"b\"]]},\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true},"
		       "{\"id\":1,\"content\":\"</s>\",\"special\":true},{\"id\":2,\"content\":\"x\\u2581y\","
		       "\"special\":false}]," BL "}", 8, &m, &err) == MUSE_OK);
	const muse_kv *kv = muse_meta_find(&m, "tokenizer.ggml.tokens");
	CHECK(kv && kv->n == 8);
	if (kv && kv->n == 8) {
		const muse_str *t = kv->arr;
		CHECK(!strcmp(t[0].ptr, "<s>") && !strcmp(t[2].ptr, "x y") && !strcmp(t[6].ptr, "[PAD6]"));
	}
	kv = muse_meta_find(&m, "tokenizer.ggml.token_type");
	CHECK(kv && kv->n == 8);
	if (kv && kv->n == 8) {
		const int32_t *tt = kv->arr;
		CHECK(tt[0] == 3 && tt[2] == 4 && tt[3] == 1 && tt[7] == 5);
	}
	kv = muse_meta_find(&m, "tokenizer.ggml.merges");
	CHECK(kv && kv->n == 2);
	if (kv && kv->n == 2)
		CHECK(!strcmp(((const muse_str *)kv->arr)[1].ptr, "a\xc4\xa0 b"));
	uint64_t u;
	CHECK(muse_meta_get_u64(&m, "tokenizer.ggml.bos_token_id", &u) && u == 0);
	CHECK(muse_meta_get_u64(&m, "tokenizer.ggml.eos_token_id", &u) && u == 1); /* config's 99 is out of range */
	CHECK(muse_meta_find(&m, "tokenizer.ggml.add_bos_token") && muse_meta_find(&m, "tokenizer.ggml.add_bos_token")->v.b);
	CHECK(!strcmp(muse_meta_get_str(&m, "tokenizer.chat_template"), "T\xc3\xa9"));
	CHECK(!strcmp(muse_meta_get_str(&m, "tokenizer.ggml.pre"), "gpt-2"));
	muse_meta_free(&m);

	/* Hostile or unsupported tokenizers: refused with an error, nothing leaked (ASan). */
	const char *bad[] = {
		"{\"model\":{\"type\":\"Unigram\"}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":8}}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":1}}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":[]}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1},\"merges\":[[\"a\"]]}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1},\"merges\":[7]}," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1}},\"added_tokens\":[{\"id\":9,\"content\":\"z\"}]," BL "}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1}},\"pre_tokenizer\":{\"type\":\"Metaspace\"}}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1}}}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1}}," BL,
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"a\":2}}," BL "}",
		"[1]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		muse_meta_init(&m);
		muse_status s = tok_with(bad[i], 8, &m, &err);
		CHECK(s != MUSE_OK);
		if (s == MUSE_OK)
			printf("  accepted bad tokenizer %zu\n", i);
		muse_meta_free(&m);
	}
	muse_meta_init(&m);
	CHECK(tok_with("{\"model\":{\"vocab\":{}}," BL "}", 0, &m, &err) == MUSE_ERR_LIMIT);
	drop("tokenizer.json");
	CHECK(muse_vocab_hf_to_meta(scratch, 8, &m, NULL, &err) == MUSE_ERR_UNSUPPORTED);
	muse_meta_free(&m);
}

/* "{E}" rows, several rows for one HF name (MLA's kv_b_proj), every supported class listed. */
static void test_experts(void)
{
	const muse_arch *a = muse_arch_find("MixtralForCausalLM");
	CHECK(a && !strcmp(a->gguf_name, "llama"));
	char out[64];
	const muse_arch_tensor *rule;
	int64_t b, e;
	size_t next = 0;
	CHECK(muse_arch_map_next(a, "model.layers.3.block_sparse_moe.experts.17.w2.weight", 4, &next, out, sizeof out,
				 &rule, &b, &e) == MUSE_OK);
	CHECK(!strcmp(out, "blk.3.ffn_down_exps.weight") && b == 3 && e == 17);
	CHECK(muse_arch_map_next(a, "model.layers.3.block_sparse_moe.experts.17.w2.weight", 4, &next, out, sizeof out,
				 &rule, &b, &e) == MUSE_ERR_UNSUPPORTED);
	next = 0;
	CHECK(muse_arch_map_next(a, "model.layers.3.block_sparse_moe.experts.017.w2.weight", 4, &next, out, sizeof out,
				 &rule, &b, &e) == MUSE_ERR_UNSUPPORTED);
	const muse_arch *d = muse_arch_find("DeepseekV3ForCausalLM");
	CHECK(d && !strcmp(d->gguf_name, "deepseek2"));
	next = 0;
	CHECK(muse_arch_map_next(d, "model.layers.0.self_attn.kv_b_proj.weight", 2, &next, out, sizeof out, &rule, &b,
				 &e) == MUSE_OK);
	CHECK(!strcmp(out, "blk.0.attn_k_b.weight") && rule->xf == MUSE_XF_KV_B_K && e == -1);
	CHECK(muse_arch_map_next(d, "model.layers.0.self_attn.kv_b_proj.weight", 2, &next, out, sizeof out, &rule, &b,
				 &e) == MUSE_OK);
	CHECK(!strcmp(out, "blk.0.attn_v_b.weight") && rule->xf == MUSE_XF_KV_B_V);
	CHECK(muse_arch_map_next(d, "model.layers.0.self_attn.kv_b_proj.weight", 2, &next, out, sizeof out, &rule, &b,
				 &e) == MUSE_ERR_UNSUPPORTED);
	next = 0;
	CHECK(muse_arch_map_next(d, "model.layers.1.mlp.gate.e_score_correction_bias", 2, &next, out, sizeof out, &rule,
				 &b, &e) == MUSE_OK);
	CHECK(!strcmp(out, "blk.1.exp_probs_b.bias") && rule->f32);
	const muse_arch *q = muse_arch_find("Qwen2MoeForCausalLM");
	next = 0;
	CHECK(q && muse_arch_map_next(q, "model.layers.0.mlp.shared_expert_gate.weight", 1, &next, out, sizeof out, &rule,
				      &b, &e) == MUSE_OK);
	CHECK(!strcmp(out, "blk.0.ffn_gate_inp_shexp.weight") && rule->f32);
	char list[1024];
	muse_arch_list(list, sizeof list);
	const char *classes[] = { "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM",
				  "Qwen3ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM",
				  "DeepseekV3ForCausalLM", NULL };
	for (size_t i = 0; classes[i]; i++)
		CHECK(strstr(list, classes[i]) != NULL);
	/* Streaming permutation: the row muse_arch_permute_rows puts at each output row. */
	unsigned char src[12], dst[12];
	for (int i = 0; i < 12; i++)
		src[i] = (unsigned char)i;
	CHECK(muse_arch_permute_rows(dst, src, 12, 1, 3, NULL) == MUSE_OK);
	for (uint64_t i = 0; i < 12; i++)
		CHECK(dst[i] == muse_arch_permuted_row(i, 12, 3));
}

static void test_model_card(void)
{
	static const char fm[] = "license: [mit, 'apache-2.0']\n"
				 "tags:\n  - a\n  - \"b # not a comment\"\n"
				 "model-index:\n- name: x\n  results: []\n"
				 "nested:\n  k:\n    - z\n"
				 "name: 'It''s'   # trailing\n"
				 "empty:\n"
				 "nothing: null\n"
				 "desc: |\n  block scalar\n";
	muse_model_card c;
	muse_err err = { 0 };
	CHECK(muse_model_card_parse(fm, sizeof fm - 1, "README.md", &c, &err) == MUSE_OK);
	const muse_card_entry *e = muse_model_card_get(&c, "license");
	CHECK(e && e->list == 1 && e->n == 2 && !strcmp(e->items[1], "apache-2.0"));
	e = muse_model_card_get(&c, "tags");
	CHECK(e && e->n == 2 && !strcmp(e->items[1], "b # not a comment"));
	e = muse_model_card_get(&c, "model-index");
	CHECK(e && e->n == 0);
	e = muse_model_card_get(&c, "nested");
	CHECK(e && e->n == 0);
	CHECK(muse_model_card_str(&c, "name") && !strcmp(muse_model_card_str(&c, "name"), "It's"));
	CHECK(!muse_model_card_str(&c, "empty") && !muse_model_card_str(&c, "nothing"));
	CHECK(muse_model_card_str(&c, "desc") && !strcmp(muse_model_card_str(&c, "desc"), "block scalar\n"));
	muse_model_card_free(&c);
	static const char bad[] = "name: 'unterminated\n";
	CHECK(muse_model_card_parse(bad, sizeof bad - 1, "README.md", &c, &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "README.md: line 2") != NULL);
}

int main(void)
{
	snprintf(scratch, sizeof scratch, "/tmp/muse_test_arch_XXXXXX");
	if (!mkdtemp(scratch))
		return 1;
	unit_file_name = "arch";
	RUN(test_map_names);
	RUN(test_permute);
	RUN(test_names);
	RUN(test_name_components);
	RUN(test_pre);
	RUN(test_config);
	RUN(test_tokenizer);
	RUN(test_experts);
	RUN(test_model_card);
	drop("config.json");
	drop("tokenizer.json");
	drop("tokenizer_config.json");
	rmdir(scratch);
	UNIT_MAIN_END();
}
