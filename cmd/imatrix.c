/* imatrix.c: `muse imatrix MODEL --calib FILE -o FILE`: an importance matrix in llama.cpp's GGUF layout, computed one decoder layer at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../lib/progress.h"
#include "../quant/calib.h"
#include "../quant/forward.h"
#include "../quant/act_stats.h"
#include "../quant/model.h"
#include "cmds.h"
#include "options.h"

static const char *const imatrix_usage[] = {
	"muse imatrix MODEL --calib FILE [--samples N] [--seq-len N] [--seed N] [--all-experts] -o FILE",
	"muse imatrix MODEL --tokens FILE [--samples N] [--seq-len N] [--seed N] [--all-experts] -o FILE",
	NULL,
};

int cmd_imatrix(int argc, const char **argv)
{
	const char *calib = NULL, *tokens = NULL, *out = NULL, *kind = NULL;
	long samples = 0, seq_len = 512, seed = 0, threads = 0;
	bool all_experts = false, quiet = false;
	const muse_option opts[] = {
		{ MUSE_OPT_STRING, 0, "calib", &calib, "FILE", "calibration text (.jsonl: the \"text\" field of each line)" },
		{ MUSE_OPT_STRING, 0, "tokens", &tokens, "FILE", "calibration token ids instead of text" },
		{ MUSE_OPT_STRING, 0, "kind", &kind, "KIND", "how to read --calib: text or jsonl (default: by extension)" },
		{ MUSE_OPT_INT, 0, "samples", &samples, "N", "samples to use (default: every whole window)" },
		{ MUSE_OPT_INT, 0, "seq-len", &seq_len, "N", "tokens per sample (default 512)" },
		{ MUSE_OPT_INT, 0, "seed", &seed, "N", "0: the first windows in order (llama-imatrix's chunks); else a seeded draw" },
		{ MUSE_OPT_BOOL, 0, "all-experts", &all_experts, NULL,
		  "collect every expert's statistics on every token (outputs still use the router's top-k)" },
		{ MUSE_OPT_INT, 't', "threads", &threads, "N", "threads (default: all cores)" },
		{ MUSE_OPT_STRING, 'o', "output", &out, "FILE", "the imatrix GGUF to write" },
		{ MUSE_OPT_BOOL, 'q', "quiet", &quiet, NULL, "no progress display" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, imatrix_usage);
	if (n == MUSE_PARSE_HELP)
		return MUSE_EXIT_OK;
	if (n < 0)
		return MUSE_EXIT_USAGE;
	if (n != 1 || (!calib == !tokens) || !out) {
		fprintf(stderr, "muse: error: imatrix: expected MODEL, one of --calib or --tokens, and -o FILE\n");
		return MUSE_EXIT_USAGE;
	}
	if (samples < 0 || seq_len < 2 || seq_len > (1 << 20) || seed < 0 || threads < 0) {
		fprintf(stderr, "muse: error: imatrix: --seq-len must be 2..1048576, --samples, --seed, --threads non-negative\n");
		return MUSE_EXIT_USAGE;
	}
	muse_forward_set_threads((int)threads);
	muse_err err = { 0 };
	muse_model *m = NULL;
	muse_stats *st = NULL;
	int32_t *ids = NULL, *smp = NULL;
	float *x = NULL;
	size_t n_ids = 0;
	int64_t n_samples = samples;
	muse_calib_source src;
	muse_progress pg;
	bool pg_on = false;
	int rc = MUSE_EXIT_FAIL;
	if (muse_model_open(argv[0], &m, &err) ||
	    muse_calib_load(m, tokens ? tokens : calib, tokens ? "tokens" : kind, &ids, &n_ids, &src, &err) ||
	    muse_calib_cut(ids, n_ids, &n_samples, seq_len, (uint64_t)seed, muse_calib_bos(m), &smp, &err) ||
	    muse_stats_create(0, &st, &err))
		goto fail;
	const muse_hparams *hp = muse_model_hparams(m);
	size_t rows = (size_t)n_samples * (size_t)seq_len;
	if (!(x = malloc(rows * (size_t)hp->n_embd * sizeof *x))) {
		muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory for %zu x %lld activations", rows, (long long)hp->n_embd);
		goto fail;
	}
	if (muse_model_embed(m, smp, rows, x, &err))
		goto fail;
	int64_t *expert_tokens = hp->n_expert ? calloc((size_t)hp->n_expert, sizeof *expert_tokens) : NULL;
	muse_fwd_opts fo = { .hook = muse_stats_hook, .user = st, .all_experts = all_experts, .expert_tokens = expert_tokens };
	muse_progress_start_count(&pg, "imatrix", (uint64_t)hp->n_layer, "layers", quiet);
	pg_on = true;
	for (int64_t il = 0; il < hp->n_layer; il++) {
		muse_layer l;
		if (muse_model_load_layer(m, il, &l, &err)) {
			free(expert_tokens);
			goto fail;
		}
		muse_status s = muse_forward_layer(m, &l, x, n_samples, seq_len, &fo, &err);
		muse_layer_free(&l);
		if (s) {
			free(expert_tokens);
			goto fail;
		}
		muse_progress_add(&pg, 1);
	}
	muse_progress_end(&pg);
	pg_on = false;
	free(expert_tokens);
	muse_imatrix_info info = { .dataset = src.path, .sha256 = src.sha256, .n_samples = n_samples, .seq_len = seq_len,
				   .seed = (uint64_t)seed, .all_experts = all_experts };
	if (muse_imatrix_write(st, out, &info, &err))
		goto fail;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	char a[32], b[32];
	fprintf(stderr,
		"imatrix: %s: %zu tensors from %lld samples x %lld tokens of %s (sha256 %s, seed %ld); peak RSS %s, model %s\n",
		out, muse_stats_count(st), (long long)n_samples, (long long)seq_len, src.path, src.sha256, seed,
		muse_fmt_bytes((uint64_t)ru.ru_maxrss * 1024, a, sizeof a), muse_fmt_bytes(muse_model_nbytes(m), b, sizeof b));
	rc = MUSE_EXIT_OK;
	goto done;
fail:
	if (pg_on)
		muse_progress_end(&pg);
	rc = muse_cli_fail(&err);
done:
	free(x);
	free(ids);
	free(smp);
	muse_stats_free(st);
	muse_model_free(m);
	return rc;
}
