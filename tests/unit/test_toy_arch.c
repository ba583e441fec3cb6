/*
 * test_toy_arch.c: adding an architecture takes one table entry. A llama variant whose checkpoints name one tensor
 * differently is described by one muse_arch, registered at run time, and from then on converts, evaluates and
 * GPTQ-quantizes through the same library calls as the built-in architectures (issue 13, must-show 5).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../formats/arch.h"
#include "../../formats/hf2gguf.h"
#include "../../formats/model_writer.h"
#include "../../formats/reader.h"
#include "../../lib/mapfile.h"
#include "../../quant/calib.h"
#include "../../quant/evaluate.h"
#include "../../quant/model.h"
#include "../../quant/pack_model.h"
#include "unit.h"

/* ---- the new architecture: everything a contributor writes ---- */

/*
 * "ToyLlamaForCausalLM" checkpoints are llama checkpoints (same GGUF architecture, same Q/K permutation, same
 * hparams) except that the query projection is stored as self_attn.query instead of self_attn.q_proj. The rows
 * are llama's dense rows (formats/arch_llama.c) with that one HF name changed. The new name keeps q_proj's place
 * in name order: outputs follow convert_hf_to_gguf.py's reading order (a shard's tensors sorted by name), so
 * the quantized GGUF below is byte-identical to the plain llama one.
 */
#define TOY_QUERY "model.layers.{N}.self_attn.query.weight"

static const muse_arch_tensor toy_llama_tensors[] = {
	{ .hf = "model.embed_tokens.weight", .gguf = "token_embd.weight", .required = 1 },
	{ .hf = "model.norm.weight", .gguf = "output_norm.weight", .f32 = 1, .required = 1 },
	{ .hf = "lm_head.weight", .gguf = "output.weight" },
	{ .hf = "model.layers.{N}.input_layernorm.weight", .gguf = "blk.{N}.attn_norm.weight", .f32 = 1, .required = 1 },
	{ .hf = "model.layers.{N}.post_attention_layernorm.weight", .gguf = "blk.{N}.ffn_norm.weight", .f32 = 1,
	  .required = 1 },
	{ .hf = TOY_QUERY, .gguf = "blk.{N}.attn_q.weight", .xf = MUSE_XF_PERMUTE_Q, .required = 1 }, /* the rename */
	{ .hf = "model.layers.{N}.self_attn.k_proj.weight", .gguf = "blk.{N}.attn_k.weight", .xf = MUSE_XF_PERMUTE_K,
	  .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.v_proj.weight", .gguf = "blk.{N}.attn_v.weight", .required = 1 },
	{ .hf = "model.layers.{N}.self_attn.o_proj.weight", .gguf = "blk.{N}.attn_output.weight", .required = 1 },
	{ .hf = "model.layers.{N}.mlp.gate_proj.weight", .gguf = "blk.{N}.ffn_gate.weight", .required = 1 },
	{ .hf = "model.layers.{N}.mlp.up_proj.weight", .gguf = "blk.{N}.ffn_up.weight", .required = 1 },
	{ .hf = "model.layers.{N}.mlp.down_proj.weight", .gguf = "blk.{N}.ffn_down.weight", .required = 1 },
	{ 0 },
};

static const muse_arch_hparam toy_llama_hparams[] = {
	{ .kind = MUSE_HP_U32, .key = "vocab_size", .hf = { "vocab_size" }, .required = 1 },
	{ .kind = MUSE_HP_HEAD_DIM, .key = "rope.dimension_count" },
	{ 0 },
};

static const char *const toy_llama_classes[] = { "ToyLlamaForCausalLM", NULL };

static const muse_arch toy_llama = {
	.gguf_name = "llama",
	.hf_classes = toy_llama_classes,
	.tensors = toy_llama_tensors,
	.rope_permute = 1,
	.hparams = toy_llama_hparams,
};

/* ---- a tiny checkpoint of either spelling, written with muse's own safetensors writer ---- */

enum { N_LAYER = 2, N_EMBD = 32, N_FF = 64, N_HEAD = 4, N_HEAD_KV = 2, N_VOCAB = 5 };
#define HEAD_DIM (N_EMBD / N_HEAD)

/*
 * A byte-level BPE tokenizer of five ids (gpt-2 split): a=0 b=1 ab=2 <s>=3 (special) "\u0120"=4 (the space). The
 * test feeds token ids, never text; convert writes the tokenizer.* keys from it as for any checkpoint.
 */
static const char tiny_tokenizer[] =
	"{\"version\":\"1.0\",\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true,\"normalized\":false,"
	"\"lstrip\":false,\"rstrip\":false,\"single_word\":false}],\"normalizer\":null,\"pre_tokenizer\":{\"type\":"
	"\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":null,"
	"\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
	"\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
	"\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":4},\"merges\":[\"a b\"]}}";

static char scratch[64];

static void path_in(char *out, size_t cap, const char *rel)
{
	snprintf(out, cap, "%s/%s", scratch, rel);
}

static int put_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(data, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* splitmix64: the same weights on every machine and for both spellings. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float rng_uniform(uint64_t *s) /* in [-1, 1) */
{
	return (float)((double)(rng_next(s) >> 40) / (double)(1ull << 23) - 1.0);
}

typedef struct fixture_tensor {
	const char *name; /* "{N}" for the block number */
	uint64_t rows, cols; /* cols 0: a 1-D tensor of rows elements */
} fixture_tensor;

static const fixture_tensor fixture_tensors[] = {
	{ "model.embed_tokens.weight", N_VOCAB, N_EMBD },
	{ "model.norm.weight", N_EMBD, 0 },
	{ "model.layers.{N}.input_layernorm.weight", N_EMBD, 0 },
	{ "model.layers.{N}.post_attention_layernorm.weight", N_EMBD, 0 },
	{ "model.layers.{N}.self_attn.q_proj.weight", N_EMBD, N_EMBD }, /* named by the fixture's spelling */
	{ "model.layers.{N}.self_attn.k_proj.weight", N_HEAD_KV * HEAD_DIM, N_EMBD },
	{ "model.layers.{N}.self_attn.v_proj.weight", N_HEAD_KV * HEAD_DIM, N_EMBD },
	{ "model.layers.{N}.self_attn.o_proj.weight", N_EMBD, N_EMBD },
	{ "model.layers.{N}.mlp.gate_proj.weight", N_FF, N_EMBD },
	{ "model.layers.{N}.mlp.up_proj.weight", N_FF, N_EMBD },
	{ "model.layers.{N}.mlp.down_proj.weight", N_EMBD, N_FF },
};
#define N_FIXTURE_TENSORS (sizeof fixture_tensors / sizeof *fixture_tensors)
#define MAX_TENSORS (2 + N_LAYER * (N_FIXTURE_TENSORS - 2))

/* "{N}" of pattern replaced by block (pattern used as is without one). */
static void expand_name(char *out, size_t cap, const char *pattern, int block)
{
	const char *ph = strstr(pattern, "{N}");
	if (ph)
		snprintf(out, cap, "%.*s%d%s", (int)(ph - pattern), pattern, block, ph + 3);
	else
		snprintf(out, cap, "%s", pattern);
}

/* The source rows of block 0's query projection, kept to check the converted attn_q against. */
static float query0[N_EMBD * N_EMBD];

/*
 * Writes an HF checkpoint directory dir (config.json, tokenizer.json, model.safetensors of F32 weights from a fixed
 * seed) for the HF class cls, whose query projection is named query_pattern. Same weights for every spelling.
 */
static int write_checkpoint(const char *dir, const char *cls, const char *query_pattern)
{
	char path[512], names[MAX_TENSORS][128];
	uint64_t shapes[MAX_TENSORS][2];
	int ndims[MAX_TENSORS];
	size_t n = 0, query0_idx = 0;
	muse_err err = { 0 };
	if (mkdir(dir, 0755))
		return -1;
	char cfg[1024];
	int k = snprintf(cfg, sizeof cfg,
			 "{\"architectures\": [\"%s\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
			 "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
			 "\"num_key_value_heads\": %d, \"vocab_size\": %d, \"rms_norm_eps\": 1e-5, "
			 "\"max_position_embeddings\": 64, \"tie_word_embeddings\": true, \"bos_token_id\": 3}\n",
			 cls, N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV, N_VOCAB);
	snprintf(path, sizeof path, "%s/config.json", dir);
	if (put_file(path, cfg, (size_t)k))
		return -1;
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	if (put_file(path, tiny_tokenizer, sizeof tiny_tokenizer - 1))
		return -1;

	/* Non-block tensors once, then every block's. */
	for (int b = -1; b < N_LAYER; b++)
		for (size_t i = 0; i < N_FIXTURE_TENSORS; i++) {
			const fixture_tensor *ft = &fixture_tensors[i];
			int in_block = strstr(ft->name, "{N}") != NULL;
			if (in_block != (b >= 0))
				continue;
			int is_query = strstr(ft->name, "q_proj") != NULL;
			if (is_query && b == 0)
				query0_idx = n;
			expand_name(names[n], sizeof names[n], is_query ? query_pattern : ft->name, b);
			shapes[n][0] = ft->rows;
			shapes[n][1] = ft->cols;
			ndims[n] = ft->cols ? 2 : 1;
			n++;
		}
	muse_model_writer *w = NULL;
	float *data = malloc(N_FF * N_EMBD * sizeof *data);
	uint64_t seed = 13;
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	int rc = -1;
	if (!data || muse_model_writer_create(&w, MUSE_OUT_SAFETENSORS, path, 0, &err))
		goto done;
	for (size_t i = 0; i < n; i++)
		if (muse_model_writer_add_tensor(w, names[i], MUSE_DT_F32, ndims[i], shapes[i], &err))
			goto done;
	if (muse_model_writer_begin(w, &err))
		goto done;
	for (size_t i = 0; i < n; i++) {
		size_t count = shapes[i][0] * (ndims[i] == 2 ? shapes[i][1] : 1);
		for (size_t j = 0; j < count; j++) /* norms near 1, matrices small: a well-behaved forward pass */
			data[j] = ndims[i] == 1 ? 1.0f + 0.1f * rng_uniform(&seed) : 0.3f * rng_uniform(&seed);
		if (i == query0_idx)
			memcpy(query0, data, sizeof query0);
		if (muse_model_writer_write(w, i, data, count * sizeof *data, &err))
			goto done;
	}
	rc = muse_model_writer_finish(w, &err) ? -1 : 0;
done:
	if (rc)
		printf("#   write_checkpoint %s: %s\n", dir, err.msg);
	muse_model_writer_free(w);
	free(data);
	return rc;
}

/* 64 token ids (0..4) from a fixed seed, as a token-id file (muse's --tokens / --calib --kind tokens input). */
static int32_t token_ids[64];

static int write_token_ids(const char *path)
{
	char text[64 * 3 + 1];
	size_t n = 0;
	uint64_t seed = 7;
	for (size_t i = 0; i < 64; i++) {
		token_ids[i] = (int32_t)(rng_next(&seed) % N_VOCAB);
		n += (size_t)snprintf(text + n, sizeof text - n, "%d ", token_ids[i]);
	}
	return put_file(path, text, n);
}

/* ---- the pipelines, through the library entry points the commands call ---- */

static char toy_dir[256], plain_dir[256], ids_path[256];

static int find_tensor(const muse_reader *r, const char *name)
{
	for (size_t i = 0; i < r->n_tensors; i++)
		if (!strcmp(r->tensors[i].name, name))
			return (int)i;
	return -1;
}

/* Unknown until registered: the one table entry is what makes the checkpoint readable. */
static void test_register(void)
{
	char out[512];
	muse_err err = { 0 };
	path_in(out, sizeof out, "unregistered.gguf");
	CHECK(muse_arch_find("ToyLlamaForCausalLM") == NULL);
	CHECK(muse_hf2gguf(toy_dir, out, MUSE_DT_INVALID, 0, true, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(strstr(err.msg, "ToyLlamaForCausalLM") != NULL);
	CHECK(access(out, F_OK) != 0);

	CHECK(muse_arch_register(&toy_llama) == MUSE_OK);
	CHECK(muse_arch_find("ToyLlamaForCausalLM") == &toy_llama);
	CHECK(muse_arch_register(&toy_llama) == MUSE_OK); /* again: a no-op */
	/* a class name answers to one table */
	static const char *const taken[] = { "LlamaForCausalLM", NULL };
	static const muse_arch clash = { .gguf_name = "llama", .hf_classes = taken, .tensors = toy_llama_tensors };
	CHECK(muse_arch_register(&clash) == MUSE_ERR_USAGE);
	CHECK(muse_arch_find("LlamaForCausalLM") != &clash);
	char list[1024];
	muse_arch_list(list, sizeof list);
	CHECK(strstr(list, "ToyLlamaForCausalLM") != NULL);
}

/* (a) convert: the renamed source lands in blk.0.attn_q.weight, rows permuted for ggml's rope like llama's q_proj. */
static void test_convert(void)
{
	char out[512];
	muse_err err = { 0 };
	muse_reader *r = NULL;
	path_in(out, sizeof out, "toy.gguf");
	CHECK(muse_hf2gguf(toy_dir, out, MUSE_DT_INVALID, 0, true, &err) == MUSE_OK);
	if (err.msg[0])
		printf("#   %s\n", err.msg);
	CHECK(muse_reader_open(out, &r, &err) == MUSE_OK);
	if (!r)
		return;
	CHECK(!strcmp(muse_meta_get_str(&r->meta, "general.architecture"), "llama"));
	int q = find_tensor(r, "blk.0.attn_q.weight");
	CHECK(q >= 0);
	if (q >= 0) {
		const muse_tensor *t = &r->tensors[q];
		CHECK(t->dtype == MUSE_DT_F32 && t->ndim == 2 && t->shape[0] == N_EMBD && t->shape[1] == N_EMBD);
		float *got = malloc(sizeof query0);
		CHECK(got && muse_reader_read(r, (size_t)q, got, &err) == MUSE_OK);
		/* in each head of HEAD_DIM rows, GGUF row 2i + j is HF row j * HEAD_DIM/2 + i (rotate-half -> interleaved) */
		int same = got != NULL;
		for (int h = 0; h < N_HEAD && same; h++)
			for (int i = 0; i < HEAD_DIM / 2; i++)
				for (int j = 0; j < 2; j++) {
					int to = h * HEAD_DIM + 2 * i + j, from = h * HEAD_DIM + j * HEAD_DIM / 2 + i;
					same &= !memcmp(got + to * N_EMBD, query0 + from * N_EMBD, N_EMBD * sizeof(float));
				}
		CHECK(same);
		free(got);
	}
	muse_reader_free(r);
}

/*
 * Perplexity of the token ids as `muse eval --exact` computes it (cmd/eval.c), and the BOS it put first. Exact F32
 * for both inputs: by default a GGUF runs with llama.cpp's arithmetic, which an HF directory has no counterpart for.
 */
static muse_status perplexity(const char *model_path, int32_t *bos, muse_eval_result *res, muse_err *err)
{
	muse_model *m = NULL;
	muse_status s = muse_model_open(model_path, &m, err);
	if (!s) {
		muse_eval_opts eo = { .ctx = 16, .bos = muse_calib_bos(m), .quiet = true, .exact = true };
		*bos = eo.bos;
		s = muse_eval_run(m, NULL, token_ids, sizeof token_ids / sizeof *token_ids, &eo, res, err);
	}
	muse_model_free(m);
	return s;
}

/* (b) evaluate: the directory through the HF view and the converted GGUF give the same perplexity, bit for bit. */
static void test_evaluate(void)
{
	char gguf[512];
	muse_err err = { 0 };
	muse_eval_result from_dir, from_gguf;
	int32_t bos_dir = -2, bos_gguf = -2;
	path_in(gguf, sizeof gguf, "toy.gguf");
	CHECK(perplexity(toy_dir, &bos_dir, &from_dir, &err) == MUSE_OK);
	CHECK(perplexity(gguf, &bos_gguf, &from_gguf, &err) == MUSE_OK);
	if (err.msg[0]) {
		printf("#   %s\n", err.msg);
		return;
	}
	CHECK(bos_dir == bos_gguf);
	CHECK(from_dir.n_chunks == 4 && from_dir.n_scored == from_gguf.n_scored);
	CHECK(isfinite(from_dir.ppl) && from_dir.ppl > 1);
	CHECK(!memcmp(&from_dir.ppl, &from_gguf.ppl, sizeof(double)));
	CHECK(!memcmp(&from_dir.nll, &from_gguf.nll, sizeof(double)));
	if (from_dir.ppl != from_gguf.ppl)
		printf("#   ppl %.17g (directory) vs %.17g (GGUF)\n", from_dir.ppl, from_gguf.ppl);
}

/*
 * `muse quantize DIR OUT --method gptq --format gguf:Q4_0|gptq --calib IDS --kind tokens --seq-len 16 -q`
 * (cmd/quantize_method.c): gguf true for gguf:Q4_0, false for the packed GPTQ layout (an HF directory).
 */
static muse_status gptq(const char *dir, const char *out, bool gguf, muse_err *err)
{
	muse_pack_opts o = { .in = dir, .out = out, .method = MUSE_METHOD_GPTQ, .bits = 4, .group_size = 16,
			     .sym = true, .gguf = gguf, .kind = MUSE_PACKED_GPTQ, .gguf_type = MUSE_DT_Q4_0,
			     .damp_percent = 0.01, .calib = ids_path, .calib_kind = "tokens", .seq_len = 16,
			     .min_tokens = 16, .quiet = true };
	return muse_pack_model(&o, err);
}

static int same_bytes(const char *a, const char *b)
{
	muse_map ma = { 0 }, mb = { 0 };
	muse_err err = { 0 };
	int same = !muse_map_open(a, &ma, &err) && !muse_map_open(b, &mb, &err) && ma.size == mb.size &&
		   !memcmp(ma.data, mb.data, (size_t)ma.size);
	muse_map_close(&ma);
	muse_map_close(&mb);
	return same;
}

/*
 * (c) GPTQ: the toy checkpoint quantizes (calibration walk through the forward pass, Hessians keyed by the view's
 * GGUF names) into a loadable GGUF, byte-identical to the plain llama checkpoint's with the same weights.
 */
static void test_gptq_gguf(void)
{
	char toy_out[512], plain_out[512];
	muse_err err = { 0 };
	muse_reader *r = NULL;
	path_in(toy_out, sizeof toy_out, "toy-q4_0.gguf");
	path_in(plain_out, sizeof plain_out, "plain-q4_0.gguf");
	CHECK(gptq(toy_dir, toy_out, true, &err) == MUSE_OK);
	CHECK(gptq(plain_dir, plain_out, true, &err) == MUSE_OK);
	if (err.msg[0]) {
		printf("#   %s\n", err.msg);
		return;
	}
	CHECK(muse_reader_open(toy_out, &r, &err) == MUSE_OK);
	int q = r ? find_tensor(r, "blk.1.attn_q.weight") : -1;
	CHECK(q >= 0 && r->tensors[q].dtype == MUSE_DT_Q4_0);
	muse_reader_free(r);
	CHECK(same_bytes(toy_out, plain_out));
}

/*
 * The packed GPTQ layout keeps the checkpoint's own names: the toy's query projection is packed as
 * self_attn.query.{qweight,scales,...}, with the bytes the plain checkpoint's q_proj gets; every tensor agrees.
 */
static void test_gptq_packed(void)
{
	char toy_out[512], plain_out[512], toy_st[600], plain_st[600];
	muse_err err = { 0 };
	muse_reader *toy = NULL, *plain = NULL;
	path_in(toy_out, sizeof toy_out, "toy-gptq");
	path_in(plain_out, sizeof plain_out, "plain-gptq");
	CHECK(gptq(toy_dir, toy_out, false, &err) == MUSE_OK);
	CHECK(gptq(plain_dir, plain_out, false, &err) == MUSE_OK);
	snprintf(toy_st, sizeof toy_st, "%s/model.safetensors", toy_out);
	snprintf(plain_st, sizeof plain_st, "%s/model.safetensors", plain_out);
	CHECK(muse_reader_open(toy_st, &toy, &err) == MUSE_OK);
	CHECK(muse_reader_open(plain_st, &plain, &err) == MUSE_OK);
	if (!toy || !plain) {
		printf("#   %s\n", err.msg);
		goto done;
	}
	CHECK(find_tensor(toy, "model.layers.0.self_attn.query.qweight") >= 0);
	CHECK(find_tensor(toy, "model.layers.0.self_attn.q_proj.qweight") < 0);
	CHECK_EQ_U64(toy->n_tensors, plain->n_tensors);
	for (size_t i = 0; i < toy->n_tensors; i++) {
		const muse_tensor *t = &toy->tensors[i];
		char name[256];
		const char *q = strstr(t->name, "self_attn.query.");
		if (q)
			snprintf(name, sizeof name, "%.*sself_attn.q_proj.%s", (int)(q - t->name), t->name,
				 q + strlen("self_attn.query."));
		else
			snprintf(name, sizeof name, "%s", t->name);
		int j = find_tensor(plain, name);
		const uint8_t *a = muse_reader_view(toy, i), *b = j >= 0 ? muse_reader_view(plain, (size_t)j) : NULL;
		CHECK(a && b && t->nbytes == plain->tensors[j].nbytes && !memcmp(a, b, (size_t)t->nbytes));
	}
done:
	muse_reader_free(toy);
	muse_reader_free(plain);
}

int main(void)
{
	unit_file_name = "toy_arch";
	snprintf(scratch, sizeof scratch, "/tmp/muse_toy_arch_XXXXXX");
	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	/* The same weights in both spellings; the same directory name, which general.name is derived from. */
	char toy_parent[256], plain_parent[256];
	path_in(toy_parent, sizeof toy_parent, "toy");
	path_in(plain_parent, sizeof plain_parent, "plain");
	snprintf(toy_dir, sizeof toy_dir, "%s/tiny-llama", toy_parent);
	snprintf(plain_dir, sizeof plain_dir, "%s/tiny-llama", plain_parent);
	path_in(ids_path, sizeof ids_path, "calib.ids");
	if (mkdir(toy_parent, 0755) || mkdir(plain_parent, 0755) ||
	    write_checkpoint(toy_dir, "ToyLlamaForCausalLM", TOY_QUERY) ||
	    write_checkpoint(plain_dir, "LlamaForCausalLM", "model.layers.{N}.self_attn.q_proj.weight") ||
	    write_token_ids(ids_path)) {
		printf("FAIL: toy_arch/fixtures\n");
		return 1;
	}
	RUN(test_register);
	RUN(test_convert);
	RUN(test_evaluate);
	RUN(test_gptq_gguf);
	RUN(test_gptq_packed);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
	if (system(cmd))
		printf("#   could not remove %s\n", scratch);
	UNIT_MAIN_END();
}
