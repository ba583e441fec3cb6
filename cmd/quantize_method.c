/* quantize_method.c: `muse quantize IN OUT --method rtn|gptq|awq ...`: integer weight quantization into AutoAWQ, GPTQ, compressed-tensors or GGUF block types. */
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/journal.h"
#include "../quant/pack_model.h"
#include "../quant/quant.h"
#include "cmds.h"
#include "options.h"

static const char *const method_usage[] = {
	"muse quantize IN OUT --method rtn|awq|gptq --bits 2|3|4|8 --group-size N [--sym|--asym] [--act-order] [--static-groups]",
	"        --format awq|gptq|compressed-tensors|gguf:TYPE [--calib FILE [--samples N] [--seq-len N] [--seed N] [--min-tokens N]] [--hessians FILE] [--damp-percent X]",
	"        [--no-resume] [-v] [--routed-only] [--true-sequential]",
	NULL,
};

/*
 * A GPTQ checkpoint some named consumer refuses is still written (the user asked for it), with one line per
 * refusal naming the consumer and what loads instead. The rules: vLLM's GPTQ path (gptq_marlin.py,
 * GPTQMarlinConfig.TYPE_MAP) takes symmetric 4- and 8-bit and refuses desc_act true by default; GPTQModel's
 * loader (models/loader.py) refuses sym false in format gptq unless meta.quantizer names gptqmodel >= 0.9.
 */
static void warn_gptq_consumers(const muse_pack_opts *o)
{
	if (o->gguf || o->kind != MUSE_PACKED_GPTQ)
		return;
	if (!o->sym)
		fprintf(stderr, "muse: warning: --format gptq with --asym: vLLM loads only symmetric GPTQ and GPTQModel "
				"refuses sym: false from other quantizers; use --sym, or --format compressed-tensors, "
				"which carries zero points that vLLM loads\n");
	else if (o->bits != 4 && o->bits != 8)
		fprintf(stderr, "muse: warning: --format gptq --bits %d: vLLM's GPTQ loader takes 4 and 8 bits only; "
				"use --bits 4 or 8 for vLLM\n", o->bits);
	if (o->act_order && !o->static_groups && o->group_size > 0)
		fprintf(stderr, "muse: warning: --act-order without --static-groups writes desc_act: true, which vLLM "
				"refuses by default; add --static-groups (desc_act: false, plain g_idx), or use "
				"--format compressed-tensors with --static-groups\n");
}

int cmd_quantize_method(int argc, const char **argv)
{
	const char *method = NULL, *format = NULL, *calib = NULL, *hessians = NULL, *damp = NULL, *dequant = NULL, *acts = NULL;
	long bits = 4, group = 128, threads = 0, samples = 0, seq_len = LONG_MIN, min_tokens = 16, seed = 0;
	const char *calib_kind = NULL;
	bool sym = false, asym = false, act_order = false, static_groups = false, quiet = false, verbose = false, no_resume = false;
	bool routed_only = false, true_seq = false;
	muse_option opts[] = {
		{ MUSE_OPT_STRING, 0, "method", &method, "METHOD", "rtn, gptq or awq" },
		{ MUSE_OPT_INT, 0, "bits", &bits, "N", "bits per weight: 2, 3, 4 or 8 (default 4)" },
		{ MUSE_OPT_INT, 0, "group-size", &group, "N", "columns per scale group, -1 for one per output row (default 128)" },
		{ MUSE_OPT_BOOL, 0, "sym", &sym, NULL, "symmetric grid, no zero points (default, except for awq)" },
		{ MUSE_OPT_BOOL, 0, "asym", &asym, NULL, "asymmetric grid with zero points (default for awq outside the gptq layout: AutoAWQ's zero_point)" },
		{ MUSE_OPT_BOOL, 0, "act-order", &act_order, NULL, "gptq: quantize columns by descending activation energy (desc_act)" },
		{ MUSE_OPT_BOOL, 0, "static-groups", &static_groups, NULL, "gptq with --act-order: fix group grids first (monotonic g_idx)" },
		{ MUSE_OPT_STRING, 0, "format", &format, "FORMAT", "awq, gptq, compressed-tensors or gguf:TYPE (e.g. gguf:Q4_K)" },
		{ MUSE_OPT_STRING, 0, "calib", &calib, "FILE", "calibration text (gptq, awq)" },
		{ MUSE_OPT_INT, 0, "samples", &samples, "N", "calibration samples" },
		{ MUSE_OPT_INT, 0, "seq-len", &seq_len, "N", "tokens per calibration sample (default 512)" },
		{ MUSE_OPT_INT, 0, "seed", &seed, "N", "0: the first windows in order; else a seeded draw of --samples windows" },
		{ MUSE_OPT_STRING, 0, "kind", &calib_kind, "KIND", "how to read --calib: text or jsonl (default: by extension)" },
		{ MUSE_OPT_STRING, 0, "hessians", &hessians, "FILE", "gptq: precomputed H = 2 X^T X / n per weight (safetensors/GGUF, F32)" },
		{ MUSE_OPT_STRING, 0, "activations", &acts, "FILE", "awq: precomputed calibration inputs per layer (F32 [tokens, in])" },
		{ MUSE_OPT_INT, 0, "min-tokens", &min_tokens, "N", "gptq/awq: experts routed fewer tokens fall back to rtn (default 16)" },
		{ MUSE_OPT_BOOL, 0, "routed-only", &routed_only, NULL, "gptq: expert Hessians from routed tokens only (default: all experts see every token)" },
		{ MUSE_OPT_BOOL, 0, "true-sequential", &true_seq, NULL, "gptq: measure q/k/v, o, gate/up, down in turn, each after the earlier ones are quantized" },
		{ MUSE_OPT_STRING, 0, "damp-percent", &damp, "X", "gptq dampening as a fraction of mean(diag H) (default 0.01)" },
		{ MUSE_OPT_STRING, 0, "dequant-out", &dequant, "FILE", "also write muse's own dequantization of every quantized weight (F32 safetensors)" },
		{ MUSE_OPT_INT, 0, "threads", &threads, "N", "worker threads (default: all)" },
		{ MUSE_OPT_BOOL, 'q', "quiet", &quiet, NULL, "no progress display" },
		{ MUSE_OPT_BOOL, 'v', "verbose", &verbose, NULL, "--calib: one line per decoder layer with its time" },
		{ MUSE_OPT_BOOL, 0, "no-resume", &no_resume, NULL, "--calib: keep no OUT.journal to resume an interrupted run from" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, method_usage);
	if (n == MUSE_PARSE_HELP)
		return MUSE_EXIT_OK;
	if (n < 0)
		return MUSE_EXIT_USAGE;
	if (n != 2) {
		fprintf(stderr, "muse: error: quantize: expected IN and OUT, got %d arguments\n", n);
		return MUSE_EXIT_USAGE;
	}
	muse_pack_opts o = { .in = argv[0], .out = argv[1], .bits = (int)bits, .group_size = group, .sym = sym,
			     .act_order = act_order, .static_groups = static_groups, .calib = calib,
			     .hessians = hessians, .dequant_out = dequant, .activations = acts,
			     .min_tokens = min_tokens < 0 ? 0 : (uint64_t)min_tokens, .nthreads = (int)threads, .quiet = quiet, .damp_percent = 0.01 };
	if (!method || !strcmp(method, "rtn"))
		o.method = MUSE_METHOD_RTN;
	else if (!strcmp(method, "gptq"))
		o.method = MUSE_METHOD_GPTQ;
	else if (!strcmp(method, "awq"))
		o.method = MUSE_METHOD_AWQ;
	else {
		fprintf(stderr, "muse: error: quantize: unknown --method '%s' (rtn, gptq, awq)\n", method);
		return MUSE_EXIT_USAGE;
	}
	if (!format) {
		fprintf(stderr, "muse: error: quantize: --method needs --format awq|gptq|compressed-tensors|gguf:TYPE\n");
		return MUSE_EXIT_USAGE;
	}
	if (!strcmp(format, "awq"))
		o.kind = MUSE_PACKED_AWQ;
	else if (!strcmp(format, "gptq"))
		o.kind = MUSE_PACKED_GPTQ;
	else if (!strcmp(format, "compressed-tensors") || !strcmp(format, "ct"))
		o.kind = MUSE_PACKED_CT;
	else if (!strncmp(format, "gguf:", 5)) {
		o.gguf = true;
		o.gguf_type = muse_dtype_from_name(format + 5);
		const muse_dtype_traits *tr = muse_dtype_info(o.gguf_type);
		if (o.gguf_type == MUSE_DT_INVALID || !tr || !tr->is_quant) {
			fprintf(stderr, "muse: error: quantize: --format %s: not a GGUF block type (Q4_0, Q4_K, Q8_0, ...)\n",
				format);
			return MUSE_EXIT_USAGE;
		}
	} else {
		fprintf(stderr, "muse: error: quantize: unknown --format '%s' (awq, gptq, compressed-tensors, gguf:TYPE)\n",
			format);
		return MUSE_EXIT_USAGE;
	}
	if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
		fprintf(stderr, "muse: error: quantize: --bits %ld: expected 2, 3, 4 or 8\n", bits);
		return MUSE_EXIT_USAGE;
	}
	if (group == 0 || group < -1) {
		fprintf(stderr, "muse: error: quantize: --group-size %ld: expected -1 or a positive number\n", group);
		return MUSE_EXIT_USAGE;
	}
	if (static_groups && !act_order) {
		fprintf(stderr, "muse: error: quantize: --static-groups only applies with --act-order\n");
		return MUSE_EXIT_USAGE;
	}
	if (act_order && o.method != MUSE_METHOD_GPTQ) {
		fprintf(stderr, "muse: error: quantize: --act-order needs --method gptq (it orders GPTQ's columns)\n");
		return MUSE_EXIT_USAGE;
	}
	if (damp) {
		char *end;
		o.damp_percent = strtod(damp, &end);
		if (*end || !(o.damp_percent > 0 && o.damp_percent < 1)) {
			fprintf(stderr, "muse: error: quantize: --damp-percent '%s': expected a number in (0, 1)\n", damp);
			return MUSE_EXIT_USAGE;
		}
	}
	if (hessians && o.method != MUSE_METHOD_GPTQ) {
		fprintf(stderr, "muse: error: quantize: --hessians applies to --method gptq\n");
		return MUSE_EXIT_USAGE;
	}
	if (sym && asym) {
		fprintf(stderr, "muse: error: quantize: --sym and --asym exclude each other\n");
		return MUSE_EXIT_USAGE;
	}
	/*
	 * The default grid is what each method's own tools default to: symmetric for GPTQ and RTN (GPTQModel's
	 * QuantizeConfig sym=True, llm-compressor's W4A16 preset), asymmetric for AWQ (AutoAWQ's zero_point=True),
	 * and always symmetric in the GPTQ layout, the only grid its consumers all load.
	 */
	bool awq_like = o.method == MUSE_METHOD_AWQ || (!o.gguf && o.kind == MUSE_PACKED_AWQ);
	o.sym = sym || (!asym && ((!o.gguf && o.kind == MUSE_PACKED_GPTQ) || !awq_like));
	/*
	 * One script can run rtn, gptq and awq with the same flags: round-to-nearest reads no calibration data,
	 * so the calibration options are accepted and dropped, with one note.
	 */
	if (o.method == MUSE_METHOD_RTN && (calib || samples || seq_len != LONG_MIN || seed || calib_kind)) {
		fprintf(stderr, "muse: note: --method rtn ignores %s (round-to-nearest needs no calibration data)\n",
			calib ? "--calib" : "the calibration options");
		o.calib = calib = NULL;
		calib_kind = NULL;
		samples = seed = 0;
		seq_len = LONG_MIN;
	}
	if (acts && o.method != MUSE_METHOD_AWQ) {
		fprintf(stderr, "muse: error: quantize: --activations applies to --method awq\n");
		return MUSE_EXIT_USAGE;
	}
	if (o.method != MUSE_METHOD_RTN && !calib && !hessians && !acts) {
		fprintf(stderr, "muse: error: quantize: --method %s needs --calib FILE\n", method);
		return MUSE_EXIT_USAGE;
	}
	if (seq_len == LONG_MIN)
		seq_len = 512;
	if (samples < 0 || seed < 0 || seq_len < 2 || seq_len > (1 << 20)) {
		fprintf(stderr, "muse: error: quantize: --seq-len must be 2..1048576, --samples and --seed non-negative\n");
		return MUSE_EXIT_USAGE;
	}
	if (calib && (hessians || acts)) {
		fprintf(stderr, "muse: error: quantize: --calib and precomputed --hessians/--activations exclude each other\n");
		return MUSE_EXIT_USAGE;
	}
	o.calib_kind = calib_kind;
	o.samples = samples;
	o.seq_len = seq_len;
	o.seed = (uint64_t)seed;
	o.verbose = verbose;
	o.routed_only = routed_only;
	o.true_seq = true_seq;
	muse_err err = { 0 };
	/*
	 * The calibration walk journals every finished layer in OUT.journal; the fingerprint covers the input's
	 * files, the calibration bytes and every option that changes the output (not --threads: the output does
	 * not depend on it), so a rerun continues only where it would reach the same bytes.
	 */
	char jdir[4096], fp[65], text[2048];
	if (calib && !no_resume) {
		size_t ol = strlen(o.out);
		while (ol > 1 && o.out[ol - 1] == '/')
			ol--;
		snprintf(jdir, sizeof jdir, "%.*s.journal", (int)ol, o.out);
		snprintf(text, sizeof text,
			 "version=%s\nmethod=%d\nbits=%ld\ngroup=%ld\nsym=%d\nact_order=%d\nstatic_groups=%d\nformat=%s\n"
			 "kind=%s\nsamples=%ld\nseq_len=%ld\nseed=%ld\nmin_tokens=%ld\ndamp=%.17g\ndequant=%d\n"
			 "routed_only=%d\ntrue_seq=%d\n",
			 MUSE_VERSION, (int)o.method, bits, group, o.sym, act_order, static_groups, format,
			 calib_kind ? calib_kind : "", samples, seq_len, seed, min_tokens, o.damp_percent, dequant != NULL,
			 routed_only, true_seq);
		if (muse_journal_fingerprint(o.in, calib, text, fp, &err))
			return muse_cli_fail(&err);
		o.journal = jdir;
		o.fingerprint = fp;
	}
	warn_gptq_consumers(&o);
	if (muse_pack_model(&o, &err))
		return muse_cli_fail(&err);
	/* Published: the journal has served its purpose. */
	if (o.journal && muse_journal_remove(o.journal, &err))
		return muse_cli_fail(&err);
	return MUSE_EXIT_OK;
}
