/* test_gguf2hf.c: the arch tables read backwards, the Q/K un-permutation, and GGUF tokenizer keys -> tokenizer.json. */
#include <stdint.h>
#include <string.h>

#include "../../formats/gguf2hf.h"
#include "../../formats/vocab_impl.h"
#include "../../formats/vocab_to_hf.h"
#include "unit.h"

/* Every table row, forward then backward: the HF name comes back (merging rows excepted, they refuse by name). */
static void test_tables_round_trip(void)
{
	static const char *const archs[] = { "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "deepseek2", NULL };
	int tables = 0, rows = 0;
	for (size_t ai = 0; archs[ai]; ai++) {
		const muse_arch *cand[8];
		size_t n = muse_arch_candidates(archs[ai], cand, 8);
		for (size_t c = 0; c < n; c++) {
			const muse_arch *a = cand[c];
			CHECK(!strcmp(a->gguf_name, archs[ai]));
			tables++;
			for (const muse_arch_tensor *t = a->tensors; t->hf; t++) {
				char hf[320], gg[320], back[320];
				const muse_arch_tensor *rule, *rrule;
				int64_t blk, rblk;
				CHECK(muse_arch_hf_name(t, 2, strstr(t->hf, "{E}") ? 1 : -1, hf, sizeof hf) == MUSE_OK);
				if (muse_arch_map_name(a, hf, 4, gg, sizeof gg, &rule, &blk) != MUSE_OK) {
					CHECK(0);
					continue;
				}
				muse_status s = muse_arch_reverse_name(a, gg, 4, &rrule, &rblk);
				if (s == MUSE_ERR_USAGE) { /* only a merging row produces this GGUF name */
					CHECK(rrule && rrule->xf >= MUSE_XF_KV_B_K);
					continue;
				}
				CHECK(s == MUSE_OK);
				if (s)
					continue;
				CHECK(rblk == blk);
				CHECK(muse_arch_hf_name(rrule, rblk, strstr(rrule->hf, "{E}") ? 1 : -1, back, sizeof back) ==
				      MUSE_OK);
				/* Rows sharing a GGUF name resolve to the first one-to-one row: same GGUF name either way. */
				char gg2[320];
				const muse_arch_tensor *r2;
				int64_t b2;
				CHECK(muse_arch_map_name(a, back, 4, gg2, sizeof gg2, &r2, &b2) == MUSE_OK);
				CHECK(!strcmp(gg, gg2));
				rows++;
			}
		}
	}
	CHECK(tables >= 1);
	CHECK(rows >= 16);
}

static void test_reverse_names(void)
{
	const muse_arch *a;
	const muse_arch_tensor *rule;
	int64_t blk;
	CHECK(muse_arch_candidates("llama", &a, 1) == 1);
	CHECK(muse_arch_reverse_name(a, "blk.3.attn_q.weight", 30, &rule, &blk) == MUSE_OK);
	CHECK(blk == 3 && rule->xf == MUSE_XF_PERMUTE_Q);
	char out[64];
	CHECK(muse_arch_hf_name(rule, blk, -1, out, sizeof out) == MUSE_OK);
	CHECK(!strcmp(out, "model.layers.3.self_attn.q_proj.weight"));
	CHECK(muse_arch_hf_name(rule, blk, -1, out, 10) == MUSE_ERR_LIMIT);
	CHECK(muse_arch_reverse_name(a, "blk.03.attn_q.weight", 30, &rule, &blk) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_reverse_name(a, "blk.-1.attn_q.weight", 30, &rule, &blk) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_reverse_name(a, "blk.30.attn_q.weight", 30, &rule, &blk) == MUSE_ERR_LIMIT);
	CHECK(muse_arch_reverse_name(a, "blk.99999999999999999999.attn_q.weight", 30, &rule, &blk) ==
	      MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_reverse_name(a, "blk.1.attn_q.weightx", 30, &rule, &blk) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_reverse_name(a, "token_embd.weight", 30, &rule, &blk) == MUSE_OK && blk == -1);
	CHECK(muse_arch_reverse_name(a, "", 30, &rule, &blk) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_arch_candidates("no-such-arch", &a, 1) == 0);
}

static void test_unpermute(void)
{
	enum { ROWS = 48, COLS = 3 };
	static const uint64_t heads[] = { 1, 2, 3, 4, 6, 8, 12, 24 };
	float src[ROWS * COLS], mid[ROWS * COLS], back[ROWS * COLS];
	for (int i = 0; i < ROWS * COLS; i++)
		src[i] = (float)i;
	for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
		muse_err err = { 0 };
		CHECK(muse_arch_permute_rows(mid, src, ROWS, COLS * sizeof(float), heads[h], &err) == MUSE_OK);
		CHECK(muse_arch_unpermute_rows(back, mid, ROWS, COLS * sizeof(float), heads[h], &err) == MUSE_OK);
		CHECK(!memcmp(back, src, sizeof src));
		for (uint64_t r = 0; r < ROWS; r++) /* the row-at-a-time form used by the streaming path agrees */
			CHECK(!memcmp(&back[r * COLS], &mid[muse_arch_unpermute_src(r, ROWS, heads[h]) * COLS],
				      COLS * sizeof(float)));
	}
	muse_err err = { 0 };
	CHECK(muse_arch_unpermute_rows(back, src, ROWS, 4, 5, &err) == MUSE_ERR_FORMAT);
	CHECK(muse_arch_unpermute_rows(back, src, ROWS, 4, 0, &err) == MUSE_ERR_FORMAT);
	CHECK(muse_arch_unpermute_rows(back, src, 6, 4, 6, &err) == MUSE_ERR_FORMAT); /* odd head size */
}

/* A small gpt2 vocabulary in GGUF keys. */
static void vocab(muse_meta *m, const char *const *toks, const int32_t *types, size_t n)
{
	muse_meta_set_str(m, "tokenizer.ggml.model", "gpt2");
	muse_meta_set_str(m, "tokenizer.ggml.pre", "smollm");
	muse_meta_set_str_arr(m, "tokenizer.ggml.tokens", toks, n);
	muse_meta_set_arr(m, "tokenizer.ggml.token_type", MUSE_KV_I32, types, n);
}

static void test_tokenizer_json(void)
{
	static const char *const toks[] = { "<|endoftext|>", "a", "b", "ab", "[PAD4]", "my word", "\xc4\xa0" };
	static const int32_t types[] = { 3, 1, 1, 1, 5, 4, 1 };
	static const char *const merges[] = { "a b" };
	muse_meta m;
	muse_meta_init(&m);
	vocab(&m, toks, types, 7);
	muse_meta_set_str_arr(&m, "tokenizer.ggml.merges", merges, 1);
	muse_meta_set_u32(&m, "tokenizer.ggml.eos_token_id", 0);
	muse_meta_set_u32(&m, "tokenizer.ggml.bos_token_id", 0);
	muse_meta_set_bool(&m, "tokenizer.ggml.add_bos_token", true);
	muse_meta_set_str(&m, "tokenizer.chat_template", "{{ x }}");
	json_t *tok = NULL, *cfg = NULL;
	muse_err err = { 0 };
	CHECK(muse_vocab_meta_to_hf(&m, "t.gguf", 128, &tok, &cfg, &err) == MUSE_OK);
	json_t *model = json_object_get(tok, "model"), *v = json_object_get(model, "vocab");
	CHECK(json_object_size(v) == 6); /* the UNUSED hole is left out */
	CHECK(json_integer_value(json_object_get(v, "ab")) == 3);
	CHECK(!json_object_get(v, "[PAD4]"));
	json_t *mg = json_array_get(json_object_get(model, "merges"), 0);
	CHECK(!strcmp(json_string_value(json_array_get(mg, 0)), "a") &&
	      !strcmp(json_string_value(json_array_get(mg, 1)), "b"));
	json_t *added = json_object_get(tok, "added_tokens");
	CHECK(json_array_size(added) == 2);
	CHECK(json_is_true(json_object_get(json_array_get(added, 0), "special")));
	CHECK(json_is_false(json_object_get(json_array_get(added, 1), "special")));
	CHECK(!strcmp(json_string_value(json_object_get(json_object_get(tok, "post_processor"), "type")), "Sequence"));
	CHECK(!strcmp(json_string_value(json_object_get(cfg, "bos_token")), "<|endoftext|>"));
	CHECK(json_is_true(json_object_get(cfg, "add_bos_token")));
	CHECK(!strcmp(json_string_value(json_object_get(cfg, "chat_template")), "{{ x }}"));
	CHECK(json_integer_value(json_object_get(cfg, "model_max_length")) == 128);
	json_decref(tok);
	json_decref(cfg);
	muse_meta_free(&m);
}

/* Hostile or unsupported metadata: one error each, nothing returned, no leak (ASan). */
static void test_tokenizer_refusals(void)
{
	static const char *const toks[] = { "a", "b" };
	static const int32_t types[] = { 1, 1 };
	static const char *const bad_utf8[] = { "a", "\xff\xfe" };
	static const char *const nul_merge[] = { "ab" };
	struct {
		const char *what;
		muse_status want;
	} cases[] = {
		{ "no model", MUSE_ERR_UNSUPPORTED }, { "t5 model", MUSE_ERR_UNSUPPORTED },
		{ "unknown pre", MUSE_ERR_UNSUPPORTED }, { "type count", MUSE_ERR_FORMAT },
		{ "tokens not strings", MUSE_ERR_FORMAT }, { "bad utf8", MUSE_ERR_FORMAT },
		{ "merge without space", MUSE_ERR_FORMAT }, { "merges not strings", MUSE_ERR_FORMAT },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		muse_meta m;
		muse_meta_init(&m);
		if (i != 0)
			vocab(&m, toks, types, 2);
		if (i == 1)
			muse_meta_set_str(&m, "tokenizer.ggml.model", "t5");
		if (i == 2)
			muse_meta_set_str(&m, "tokenizer.ggml.pre", "no-such-pre");
		if (i == 3)
			muse_meta_set_arr(&m, "tokenizer.ggml.token_type", MUSE_KV_I32, types, 1);
		if (i == 4)
			muse_meta_set_arr(&m, "tokenizer.ggml.tokens", MUSE_KV_I32, types, 2);
		if (i == 5)
			muse_meta_set_str_arr(&m, "tokenizer.ggml.tokens", bad_utf8, 2);
		if (i == 6)
			muse_meta_set_str_arr(&m, "tokenizer.ggml.merges", nul_merge, 1);
		if (i == 7)
			muse_meta_set_arr(&m, "tokenizer.ggml.merges", MUSE_KV_I32, types, 2);
		json_t *tok = (json_t *)1, *cfg = (json_t *)1;
		muse_err err = { 0 };
		muse_status s = muse_vocab_meta_to_hf(&m, "t.gguf", 0, &tok, &cfg, &err);
		if (s != cases[i].want)
			printf("#   case '%s': status %d, %s\n", cases[i].what, (int)s, err.msg);
		CHECK(s == cases[i].want);
		CHECK(!tok && !cfg);
		CHECK(!strncmp(err.msg, "t.gguf: ", 8));
		muse_meta_free(&m);
	}
}

static void test_pre_tokenizers(void)
{
	static const char *const names[] = { "llama-bpe", "qwen2", "gpt-2", "smollm" };
	for (size_t i = 0; i < 4; i++) {
		json_t *p = muse_vocab_pre_json(names[i]);
		CHECK(json_is_object(p));
		json_decref(p);
	}
	CHECK(!muse_vocab_pre_json("default"));
}

int main(void)
{
	unit_file_name = "gguf2hf";
	RUN(test_tables_round_trip);
	RUN(test_reverse_names);
	RUN(test_unpermute);
	RUN(test_tokenizer_json);
	RUN(test_tokenizer_refusals);
	RUN(test_pre_tokenizers);
	UNIT_MAIN_END();
}
