/* test_tokenizer.c: the encoder on hand-built GGUF vocabularies (SentencePiece scores, byte-level merges, special tokens), its refusals of malformed metadata and text, and of tokenizer.json features only encoding needs. */
#include <stdlib.h>
#include <unistd.h>

#include "../../formats/vocab.h"
#include "../../quant/tokenizer.h"
#include "../../quant/tokenizer_impl.h"
#include "unit.h"

#define U "\xe2\x96\x81" /* U+2581 */

static int32_t *enc(const muse_tokenizer *t, const char *s, bool add, bool parse, size_t *n)
{
	int32_t *ids = NULL;
	muse_err err = { 0 };
	if (muse_tokenizer_encode(t, s, strlen(s), add, parse, &ids, n, &err)) {
		printf("#   encode failed: %s\n", err.msg);
		return NULL;
	}
	return ids;
}

static int same(const int32_t *ids, size_t n, const int32_t *want, size_t nw)
{
	if (!ids || n != nw)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ids[i] != want[i])
			return 0;
	return 1;
}

static void spm_meta(muse_meta *m)
{
	static const char *const toks[] = { "<unk>", "<s>", "</s>", U, "a", "b", U "a", "ab", U "ab", "<0x63>", "<0xC3>",
					    "<0xA9>", "[X]" };
	/* scores decide the merge order: "ab" (-1) before "▁a" (-2); "▁ab" (-3) */
	float scores[] = { 0, 0, 0, -10, -11, -12, -2, -1, -3, 0, 0, 0, 0 };
	int32_t types[] = { 2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 6, 3 };
	muse_meta_init(m);
	muse_meta_set_str(m, "tokenizer.ggml.model", "llama");
	muse_meta_set_str_arr(m, "tokenizer.ggml.tokens", toks, 13);
	muse_meta_set_arr(m, "tokenizer.ggml.scores", MUSE_KV_F32, scores, 13);
	muse_meta_set_arr(m, "tokenizer.ggml.token_type", MUSE_KV_I32, types, 13);
}

static void test_spm(void)
{
	muse_meta m;
	spm_meta(&m);
	muse_tokenizer *t = NULL;
	muse_err err = { 0 };
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_OK);
	if (!t) {
		muse_meta_free(&m);
		return;
	}
	CHECK(muse_tokenizer_n_vocab(t) == 13 && muse_tokenizer_bos(t) == 1 && muse_tokenizer_eos(t) == 2);
	size_t n;
	/* "▁ab": ab merges first (-1), then ▁+ab (-3) */
	int32_t *ids = enc(t, "ab", true, false, &n);
	CHECK(same(ids, n, (int32_t[]){ 1, 8 }, 2));
	free(ids);
	/* unknown characters fall back to bytes: c -> <0x63>, é -> <0xC3><0xA9> */
	ids = enc(t, "c\xc3\xa9", false, false, &n);
	CHECK(same(ids, n, (int32_t[]){ 3, 9, 10, 11 }, 4));
	free(ids);
	/* a control token in text: only with parse_special; the fragment after it gets its space prefix again */
	ids = enc(t, "[X]a", false, true, &n);
	CHECK(same(ids, n, (int32_t[]){ 12, 6 }, 2));
	free(ids);
	ids = enc(t, "", true, false, &n);
	CHECK(same(ids, n, (int32_t[]){ 1 }, 1));
	free(ids);
	muse_tokenizer_free(t);
	muse_meta_free(&m);
}

/* A byte-level vocabulary: the 256 GPT-2 byte characters, then merges "a b" -> ab and "Ġ ab" -> Ġab. */
static void test_bpe(void)
{
	char *toks[262];
	for (int b = 0; b < 256; b++) {
		size_t l;
		const char *c = muse_tk_byte_char((uint8_t)b, &l);
		toks[b] = calloc(1, 4);
		memcpy(toks[b], c, l);
	}
	toks[256] = strdup("ab");
	toks[257] = strdup("\xc4\xa0" "ab");
	toks[258] = strdup("<|eot|>");
	toks[259] = strdup("12");
	toks[260] = strdup("\xc4\xa0" "a");
	toks[261] = strdup("<tool>");
	const char *merges[] = { "a b", "\xc4\xa0 ab", "1 2", "\xc4\xa0 a" };
	int32_t types[262];
	for (int i = 0; i < 262; i++)
		types[i] = 1;
	types[258] = 3;
	types[261] = 4;
	muse_meta m;
	muse_meta_init(&m);
	muse_meta_set_str(&m, "tokenizer.ggml.model", "gpt2");
	muse_meta_set_str(&m, "tokenizer.ggml.pre", "qwen2");
	muse_meta_set_str_arr(&m, "tokenizer.ggml.tokens", (const char *const *)toks, 262);
	muse_meta_set_arr(&m, "tokenizer.ggml.token_type", MUSE_KV_I32, types, 262);
	muse_meta_set_str_arr(&m, "tokenizer.ggml.merges", merges, 4);
	muse_meta_set_u32(&m, "tokenizer.ggml.bos_token_id", 258);
	muse_meta_set_bool(&m, "tokenizer.ggml.add_bos_token", true);
	muse_tokenizer *t = NULL;
	muse_err err = { 0 };
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_OK);
	if (t) {
		size_t n;
		/* " ab" is one pre-token: Ġ a b -> (a b) first by rank -> Ġ ab -> Ġab */
		int32_t *ids = enc(t, "x ab", false, false, &n);
		CHECK(same(ids, n, (int32_t[]){ 'x', 257 }, 2));
		free(ids);
		/* qwen2 splits digits one by one, so "12" never merges; BOS added */
		ids = enc(t, "12", true, false, &n);
		CHECK(same(ids, n, (int32_t[]){ 258, '1', '2' }, 3));
		free(ids);
		/* special token only with parse_special; the user-defined one always */
		ids = enc(t, "<|eot|><tool>", false, true, &n);
		CHECK(same(ids, n, (int32_t[]){ 258, 261 }, 2));
		free(ids);
		ids = enc(t, "<tool>", false, false, &n);
		CHECK(same(ids, n, (int32_t[]){ 261 }, 1));
		free(ids);
		/* invalid UTF-8 is refused with its byte offset */
		int32_t *bad = NULL;
		CHECK(muse_tokenizer_encode(t, "ok\xff", 3, false, false, &bad, &n, &err) == MUSE_ERR_FORMAT &&
		      strstr(err.msg, "byte 2") && !bad);
		muse_tokenizer_free(t);
	}
	/* refusals: unknown pre, type array of another length, no merges */
	muse_meta_set_str(&m, "tokenizer.ggml.pre", "no-such-pre");
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_ERR_UNSUPPORTED && !t && strstr(err.msg, "no-such-pre"));
	muse_meta_set_str(&m, "tokenizer.ggml.pre", "gpt-2");
	muse_meta_set_arr(&m, "tokenizer.ggml.token_type", MUSE_KV_I32, types, 10);
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_ERR_FORMAT && !t && strstr(err.msg, "token_type"));
	muse_meta_set_arr(&m, "tokenizer.ggml.token_type", MUSE_KV_I32, types, 262);
	muse_meta_remove(&m, "tokenizer.ggml.merges");
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_ERR_FORMAT && !t && strstr(err.msg, "merges"));
	muse_meta_set_str(&m, "tokenizer.ggml.model", "bert");
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_ERR_UNSUPPORTED && !t);
	muse_meta_remove(&m, "tokenizer.ggml.model");
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_ERR_FORMAT && !t && strstr(err.msg, "t.gguf"));
	const char *badtok[] = { "ok", "\xff" };
	muse_meta_set_str(&m, "tokenizer.ggml.model", "llama");
	muse_meta_remove(&m, "tokenizer.ggml.token_type");
	muse_meta_set_str_arr(&m, "tokenizer.ggml.tokens", badtok, 2);
	CHECK(muse_tokenizer_from_meta(&m, "t.gguf", &t, &err) == MUSE_ERR_FORMAT && !t && strstr(err.msg, "UTF-8"));
	muse_meta_free(&m);
	for (int i = 0; i < 262; i++)
		free(toks[i]);
}

/* Writes dir/tokenizer.json and returns the encoder's build status (err holds the message). */
static muse_status build_from_json(const char *dir, const char *json, muse_err *err)
{
	char path[512];
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return MUSE_ERR_IO;
	fputs(json, f);
	fclose(f);
	muse_tokenizer *t = NULL;
	muse_status s = muse_tokenizer_from_dir(dir, &t, err);
	muse_tokenizer_free(t);
	return s;
}

#define TJ_MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}"
#define TJ_BL "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}"

/*
 * What only encoding needs is refused when the encoder is built, not when
 * the files are read (convert reads the same tokenizer.json and must not be
 * refused for it), and in the order tokenizers reads the file.
 */
static void test_hf_refusals(void)
{
	char dir[] = "/tmp/muse-test-tok.XXXXXX";
	if (!mkdtemp(dir)) {
		CHECK(0);
		return;
	}
	muse_err err = { 0 };
	const char *strip = "{" TJ_MODEL ",\"merges\":[\"a b\"]}," TJ_BL ",\"normalizer\":{\"type\":\"StripAccents\"}}";
	CHECK(build_from_json(dir, strip, &err) == MUSE_ERR_UNSUPPORTED && strstr(err.msg, "normalizer not supported"));
	muse_vocab *v = NULL;
	CHECK(muse_vocab_convert_hf(dir, 3, NULL, &v, &err) == MUSE_OK && v && v->strip_accents == 1 && v->n_merges == 1);
	muse_vocab_free(v);
	/* a regex that does not compile comes before a later unsupported step */
	const char *order = "{" TJ_MODEL ",\"merges\":[\"a b\"]},\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
			    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(\"},\"content\":\"x\"},"
			    "{\"type\":\"StripAccents\"}]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}";
	CHECK(build_from_json(dir, order, &err) == MUSE_ERR_UNSUPPORTED && strstr(err.msg, "does not compile"));
	/* a merge naming no token before a malformed one: the first is reported */
	const char *merges = "{" TJ_MODEL ",\"merges\":[[\"a\",\"q\"],\"a b c\"]}," TJ_BL "}";
	CHECK(build_from_json(dir, merges, &err) == MUSE_ERR_FORMAT && strstr(err.msg, "merge 0 'a q'"));
	merges = "{" TJ_MODEL ",\"merges\":[\"a b\",\"a b c\"]}," TJ_BL "}";
	CHECK(build_from_json(dir, merges, &err) == MUSE_ERR_FORMAT && strstr(err.msg, "model.merges[1] is not 'a b'"));
	/* the post-processor after the pre-tokenizer */
	const char *post = "{" TJ_MODEL "},\"pre_tokenizer\":{\"type\":\"Whitespace\"},"
			   "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}}]}}";
	CHECK(build_from_json(dir, post, &err) == MUSE_ERR_UNSUPPORTED && strstr(err.msg, "pre_tokenizer not supported"));
	post = "{" TJ_MODEL "}," TJ_BL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
	       "{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}]}}";
	CHECK(build_from_json(dir, post, &err) == MUSE_ERR_FORMAT && strstr(err.msg, "'<s>' has no ids"));
	char path[512];
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	unit_file_name = "tokenizer";
	RUN(test_spm);
	RUN(test_bpe);
	RUN(test_hf_refusals);
	return unit_failures_total ? 1 : 0;
}
