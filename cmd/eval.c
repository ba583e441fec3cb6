/* eval.c: `muse eval MODEL --text FILE [--ref MODEL] [--ctx N]`: perplexity, and KL statistics against a reference model. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/outfile.h"
#include "../quant/calib.h"
#include "../quant/evaluate.h"
#include "../quant/forward.h"
#include "../quant/ggml_act.h"
#include "../quant/model.h"
#include "cmds.h"
#include "options.h"

static const char *const eval_usage[] = {
	"muse eval MODEL --text FILE [--ref MODEL] [--ctx N] [--chunks N] [--threads N] [--exact] [--json]",
	"muse eval MODEL --tokens FILE [--ref MODEL] [--ctx N] [--chunks N] [--threads N] [--exact] [--json]",
	"muse eval MODEL --tokens FILE --dump-logits OUT.f32 [--exact]",
	NULL,
};

/*
 * The arithmetic eval runs m with, in words: "exact f32", or llama.cpp's CPU
 * backend with the activation type each weight type gets, e.g. "activations
 * as llama.cpp's CPU backend: Q8_0 for Q4_0, Q8_K for Q6_K".
 */
static void arith_text(const muse_model *m, bool exact, char *buf, size_t cap)
{
	if (!muse_eval_ggml_arith(m, exact)) {
		snprintf(buf, cap, "exact f32");
		return;
	}
	bool used[MUSE_DT_COUNT];
	muse_model_product_types(m, used);
	size_t n = (size_t)snprintf(buf, cap, "activations as llama.cpp's CPU backend:");
	int parts = 0;
	for (int t = 0; t < MUSE_DT_COUNT && n < cap; t++) {
		muse_dtype a = muse_ggml_act_type((muse_dtype)t);
		if (!used[t])
			continue;
		if (a == MUSE_DT_F32)
			n += (size_t)snprintf(buf + n, cap - n, "%s f32 for %s", parts++ ? "," : "", muse_dtype_name((muse_dtype)t));
		else
			n += (size_t)snprintf(buf + n, cap - n, "%s %s for %s", parts++ ? "," : "", muse_dtype_name(a),
					      muse_dtype_name((muse_dtype)t));
	}
}

static void print_text(const muse_eval_result *r, const muse_calib_source *src, int64_t ctx, const char *model,
		       const char *ref, const char *arith, const char *arith_ref)
{
	printf("protocol: data %s (%s, sha256 %s, %zu tokens), ctx %lld, chunks %lld, tokens scored %lld "
	       "(second half of each chunk, llama-perplexity's convention)\n",
	       src->path, src->kind, src->sha256, src->n_tokens, (long long)ctx, (long long)r->n_chunks,
	       (long long)r->n_scored);
	printf("model: %s\n", model);
	printf("arithmetic: %s\n", arith);
	if (!r->has_ref) {
		printf("PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_unc);
		return;
	}
	printf("reference: %s\n", ref);
	printf("reference arithmetic: %s\n\n", arith_ref);
	printf("====== Perplexity statistics ======\n");
	printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", r->ppl, r->ppl_unc);
	printf("Mean PPL(base)                : %10.6f ± %10.6f\n", r->ppl_base, r->ppl_base_unc);
	printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * r->ppl_cor);
	printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", r->ln_ppl_ratio, r->ln_ppl_ratio_unc);
	printf("\n====== KL divergence statistics ======\n");
	printf("Mean    KLD: %10.6f ± %10.6f\n", r->kld, r->kld_unc);
	static const char *const kl[MUSE_EVAL_N_PCT] = { "Maximum KLD", "99.9%   KLD", "99.0%   KLD", "95.0%   KLD",
							 "90.0%   KLD", "Median  KLD", "10.0%   KLD", " 5.0%   KLD",
							 " 1.0%   KLD", " 0.1%   KLD", "Minimum KLD" };
	for (int i = 0; i < MUSE_EVAL_N_PCT; i++)
		printf("%s: %10.6f\n", kl[i], r->kld_pct[i]);
	printf("\n====== Token probability statistics ======\n");
	printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * r->dp_mean, 100.0 * r->dp_unc);
	static const char *const dp[13] = { "Maximum Δp", "99.9%   Δp", "99.0%   Δp", "95.0%   Δp", "90.0%   Δp",
					    "75.0%   Δp", "Median  Δp", "25.0%   Δp", "10.0%   Δp", " 5.0%   Δp",
					    " 1.0%   Δp", " 0.1%   Δp", "Minimum Δp" };
	for (int i = 0; i < 13; i++)
		printf("%s: %6.3f%%\n", dp[i], 100.0 * r->dp_pct[i]);
	printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * r->dp_rms, 100.0 * r->dp_rms_unc);
	printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * r->same_top, 100.0 * r->same_top_unc);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json(const muse_eval_result *r, const muse_calib_source *src, int64_t ctx, const char *model,
		       const char *ref, const char *arith, const char *arith_ref)
{
	printf("{\"model\": ");
	json_str(model);
	printf(", \"arithmetic\": ");
	json_str(arith);
	printf(", \"data\": {\"path\": ");
	json_str(src->path);
	printf(", \"kind\": \"%s\", \"sha256\": \"%s\", \"tokens\": %zu}", src->kind, src->sha256, src->n_tokens);
	printf(", \"ctx\": %lld, \"chunks\": %lld, \"tokens_scored\": %lld", (long long)ctx, (long long)r->n_chunks,
	       (long long)r->n_scored);
	printf(", \"ppl\": %.9g, \"ppl_unc\": %.9g, \"nll\": %.9g", r->ppl, r->ppl_unc, r->nll);
	if (r->has_ref) {
		printf(", \"ref\": ");
		json_str(ref);
		printf(", \"ref_arithmetic\": ");
		json_str(arith_ref);
		printf(", \"ppl_base\": %.9g, \"ln_ppl_ratio\": %.9g, \"kld\": %.9g, \"kld_unc\": %.9g", r->ppl_base,
		       r->ln_ppl_ratio, r->kld, r->kld_unc);
		static const char *const kn[MUSE_EVAL_N_PCT] = { "max", "99.9", "99", "95", "90", "median", "10", "5",
								 "1", "0.1", "min" };
		printf(", \"kld_pct\": {");
		for (int i = 0; i < MUSE_EVAL_N_PCT; i++)
			printf("%s\"%s\": %.9g", i ? ", " : "", kn[i], r->kld_pct[i]);
		printf("}, \"same_top\": %.9g, \"dp_mean\": %.9g, \"dp_rms\": %.9g", r->same_top, r->dp_mean, r->dp_rms);
		static const char *const dn[13] = { "max", "99.9", "99", "95", "90", "75", "median", "25", "10", "5",
						    "1", "0.1", "min" };
		printf(", \"dp_pct\": {");
		for (int i = 0; i < 13; i++)
			printf("%s\"%s\": %.9g", i ? ", " : "", dn[i], r->dp_pct[i]);
		printf("}");
	}
	printf("}\n");
}

int cmd_eval(int argc, const char **argv)
{
	const char *text = NULL, *tokens = NULL, *refp = NULL, *dump = NULL, *kind = NULL;
	long ctx = 512, chunks = 0, threads = 0, group = 0;
	bool json = false, quiet = false, exact = false;
	const muse_option opts[] = {
		{ MUSE_OPT_STRING, 0, "text", &text, "FILE", "text to score (.jsonl: the \"text\" field of each line)" },
		{ MUSE_OPT_STRING, 0, "tokens", &tokens, "FILE", "token ids to score instead of text (whitespace or commas)" },
		{ MUSE_OPT_STRING, 0, "kind", &kind, "KIND", "how to read --text: text or jsonl (default: by extension)" },
		{ MUSE_OPT_STRING, 0, "ref", &refp, "MODEL", "reference model: KL divergence, top-1 agreement and Δp" },
		{ MUSE_OPT_INT, 'c', "ctx", &ctx, "N", "tokens per chunk (default 512)" },
		{ MUSE_OPT_INT, 0, "chunks", &chunks, "N", "score at most N chunks (default: all)" },
		{ MUSE_OPT_INT, 0, "group", &group, "N", "chunks run through a layer together (default: by memory)" },
		{ MUSE_OPT_INT, 't', "threads", &threads, "N", "threads (default: all cores)" },
		{ MUSE_OPT_STRING, 0, "dump-logits", &dump, "FILE", "write the logits of every position as float32" },
		{ MUSE_OPT_BOOL, 0, "exact", &exact, NULL,
		  "exact f32 products (default for a GGUF: activations rounded as llama.cpp's CPU backend does)" },
		{ MUSE_OPT_BOOL, 0, "json", &json, NULL, "print the results as JSON" },
		{ MUSE_OPT_BOOL, 'q', "quiet", &quiet, NULL, "no progress display" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, eval_usage);
	if (n == MUSE_PARSE_HELP)
		return MUSE_EXIT_OK;
	if (n < 0)
		return MUSE_EXIT_USAGE;
	if (n != 1 || (!text == !tokens)) {
		fprintf(stderr, "muse: error: eval: expected MODEL and one of --text or --tokens\n");
		return MUSE_EXIT_USAGE;
	}
	if (ctx < 4 || ctx > (1 << 20) || chunks < 0 || threads < 0 || group < 0) {
		fprintf(stderr, "muse: error: eval: --ctx must be 4..1048576, --chunks, --group and --threads non-negative\n");
		return MUSE_EXIT_USAGE;
	}
	muse_forward_set_threads((int)threads);
	muse_err err = { 0 };
	muse_model *m = NULL, *ref = NULL;
	int32_t *ids = NULL;
	float *logits = NULL;
	size_t n_ids = 0;
	muse_calib_source src;
	int rc = MUSE_EXIT_FAIL;
	if (muse_model_open(argv[0], &m, &err) || (refp && muse_model_open(refp, &ref, &err)) ||
	    muse_calib_load(m, tokens ? tokens : text, tokens ? "tokens" : kind, &ids, &n_ids, &src, &err)) {
		rc = muse_cli_fail(&err);
		goto done;
	}
	if (dump) {
		if (muse_eval_logits(m, ids, n_ids, exact, &logits, &err) ||
		    muse_out_write_file(dump, logits, n_ids * (size_t)muse_model_hparams(m)->n_vocab * sizeof(float), &err)) {
			rc = muse_cli_fail(&err);
			goto done;
		}
		printf("%zu %lld\n", n_ids, (long long)muse_model_hparams(m)->n_vocab);
		rc = MUSE_EXIT_OK;
		goto done;
	}
	muse_eval_opts eo = { .ctx = ctx, .max_chunks = chunks, .bos = muse_calib_bos(m), .group_chunks = group,
			      .quiet = quiet || json, .exact = exact };
	muse_eval_result res;
	if (muse_eval_run(m, ref, ids, n_ids, &eo, &res, &err)) {
		rc = muse_cli_fail(&err);
		goto done;
	}
	char arith[512], arith_ref[512] = "";
	arith_text(m, exact, arith, sizeof arith);
	if (ref)
		arith_text(ref, exact, arith_ref, sizeof arith_ref);
	if (json)
		print_json(&res, &src, ctx, argv[0], refp, arith, arith_ref);
	else
		print_text(&res, &src, ctx, argv[0], refp, arith, arith_ref);
	rc = MUSE_EXIT_OK;
done:
	free(logits);
	free(ids);
	muse_model_free(m);
	muse_model_free(ref);
	return rc;
}
