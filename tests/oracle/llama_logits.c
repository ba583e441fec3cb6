/* llama_logits.c: test oracle; runs a GGUF model in the real llama.cpp and dumps the logits of every position. */
/*
 * Built by scripts/build_llama_cpp.sh. The upstream tools print at most the last position's logits
 * (llama-debug) or a perplexity number, so conversion parity tests use this instead: one llama_decode
 * over the whole prompt with an output at every position, f32 KV cache and no flash attention, so the
 * only precision loss against a float32 reference is the model's own weights and ggml's kernels.
 *
 *   llama_logits MODEL.gguf OUT_F32.bin (--tokens ID,ID,... | --prompt TEXT) [--threads N] [--f16-kv]
 *
 * OUT_F32.bin gets n_tokens * n_vocab little-endian floats, position-major. stdout gets one line:
 * "n_tokens n_vocab" followed by the token ids used (with --prompt: the model's tokenizer with its
 * special tokens added, e.g. BOS). llama.cpp's own log goes to stderr only when LLAMA_LOGITS_VERBOSE
 * is set; errors always do. Exit 0 on success, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
	(void)user;
	if (level == GGML_LOG_LEVEL_ERROR || getenv("LLAMA_LOGITS_VERBOSE"))
		fputs(text, stderr);
}

static int usage(void)
{
	fprintf(stderr, "usage: llama_logits MODEL.gguf OUT_F32.bin (--tokens ID,ID,... | --prompt TEXT)"
			" [--threads N] [--f16-kv]\n");
	return 1;
}

/* Parses "1,2,3" into a freshly allocated array. */
static llama_token *parse_tokens(const char *s, int *n)
{
	int cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	llama_token *t = malloc(sizeof *t * (size_t)cap);
	if (!t)
		return NULL;
	*n = 0;
	while (*s) {
		char *end;
		long v = strtol(s, &end, 10);
		if (end == s || v < 0 || v > 0x7fffffff || (*end && *end != ',')) {
			free(t);
			return NULL;
		}
		t[(*n)++] = (llama_token)v;
		s = *end ? end + 1 : end;
	}
	return t;
}

int main(int argc, char **argv)
{
	const char *model_path, *out_path, *tokens_arg = NULL, *prompt = NULL;
	int threads = 2, f16_kv = 0, rc = 1, n_tok = 0;
	llama_token *tok = NULL;
	struct llama_model *model = NULL;
	struct llama_context *ctx = NULL;
	struct llama_batch batch = {0};
	int batch_ok = 0;
	FILE *out = NULL;

	if (argc < 5)
		return usage();
	model_path = argv[1];
	out_path = argv[2];
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc)
			tokens_arg = argv[++i];
		else if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc)
			prompt = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--f16-kv") == 0)
			f16_kv = 1;
		else
			return usage();
	}
	if (!tokens_arg == !prompt || threads <= 0)
		return usage();

	llama_log_set(quiet_log, NULL);
	llama_backend_init();

	struct llama_model_params mp = llama_model_default_params();
	mp.n_gpu_layers = 0;
	model = llama_model_load_from_file(model_path, mp);
	if (!model) {
		fprintf(stderr, "llama_logits: cannot load '%s'\n", model_path);
		goto out;
	}
	const struct llama_vocab *vocab = llama_model_get_vocab(model);
	int n_vocab = llama_vocab_n_tokens(vocab);

	if (tokens_arg) {
		tok = parse_tokens(tokens_arg, &n_tok);
		if (!tok) {
			fprintf(stderr, "llama_logits: bad --tokens '%s'\n", tokens_arg);
			goto out;
		}
	} else {
		int len = (int)strlen(prompt);
		int cap = len + 8;
		tok = malloc(sizeof *tok * (size_t)cap);
		if (!tok)
			goto out;
		n_tok = llama_tokenize(vocab, prompt, len, tok, cap, true, false);
		if (n_tok < 0) {
			fprintf(stderr, "llama_logits: tokenizing the prompt failed\n");
			goto out;
		}
	}
	if (n_tok <= 0) {
		fprintf(stderr, "llama_logits: no tokens\n");
		goto out;
	}
	for (int i = 0; i < n_tok; i++) {
		if (tok[i] >= n_vocab) {
			fprintf(stderr, "llama_logits: token %d out of range (n_vocab %d)\n", tok[i], n_vocab);
			goto out;
		}
	}

	struct llama_context_params cp = llama_context_default_params();
	/* One batch, one ubatch: every position is computed by a single graph, in order. */
	cp.n_ctx = (uint32_t)(n_tok < 16 ? 16 : n_tok);
	cp.n_batch = cp.n_ctx;
	cp.n_ubatch = cp.n_ctx;
	cp.n_seq_max = 1;
	cp.n_threads = threads;
	cp.n_threads_batch = threads;
	cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
	cp.no_perf = true;
	if (!f16_kv) {
		cp.type_k = GGML_TYPE_F32;
		cp.type_v = GGML_TYPE_F32;
	}
	ctx = llama_init_from_model(model, cp);
	if (!ctx) {
		fprintf(stderr, "llama_logits: cannot create a context for '%s'\n", model_path);
		goto out;
	}

	batch = llama_batch_init(n_tok, 0, 1);
	batch_ok = 1;
	for (int i = 0; i < n_tok; i++) {
		batch.token[i] = tok[i];
		batch.pos[i] = i;
		batch.n_seq_id[i] = 1;
		batch.seq_id[i][0] = 0;
		batch.logits[i] = 1;
	}
	batch.n_tokens = n_tok;
	if (llama_decode(ctx, batch) != 0) {
		fprintf(stderr, "llama_logits: llama_decode failed\n");
		goto out;
	}

	out = fopen(out_path, "wb");
	if (!out) {
		perror(out_path);
		goto out;
	}
	for (int i = 0; i < n_tok; i++) {
		const float *row = llama_get_logits_ith(ctx, i);
		if (!row || fwrite(row, sizeof *row, (size_t)n_vocab, out) != (size_t)n_vocab) {
			fprintf(stderr, "llama_logits: cannot write the logits of position %d\n", i);
			goto out;
		}
	}
	if (fclose(out) != 0) {
		out = NULL;
		perror(out_path);
		goto out;
	}
	out = NULL;

	printf("%d %d", n_tok, n_vocab);
	for (int i = 0; i < n_tok; i++)
		printf(" %d", tok[i]);
	printf("\n");
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	if (out)
		fclose(out);
	if (batch_ok)
		llama_batch_free(batch);
	llama_free(ctx);
	llama_model_free(model);
	llama_backend_free();
	free(tok);
	return rc;
}
