/* tokenize.c: `muse tokenize MODEL (--text STR | --file F)`: prints the token ids the model's tokenizer gives (GGUF vocabulary or HF tokenizer files). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../lib/path.h"
#include "../formats/reader.h"
#include "../lib/mapfile.h"
#include "../quant/tokenizer.h"
#include "cmds.h"
#include "options.h"

static const char *const tokenize_usage[] = {
	"muse tokenize MODEL (--text STR | --file F) [--no-special] [--no-parse-special] [--json] [--time]",
	"  MODEL: a GGUF file (its tokenizer.* vocabulary) or an HF model directory (tokenizer.json, else tokenizer.model)",
	NULL,
};

/* The tokenizer of a GGUF file or an HF directory. */
static muse_status open_tokenizer(const char *model, muse_tokenizer **t, muse_err *err)
{
	if (muse_is_dir(model))
		return muse_tokenizer_from_dir(model, t, err);
	muse_reader *r = NULL;
	muse_status s = muse_reader_open(model, &r, err);
	if (s)
		return s;
	if (strcmp(r->format, "gguf"))
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: a %s file carries no vocabulary (give a GGUF file or an HF "
				 "directory)", model, r->format);
	else
		s = muse_tokenizer_from_meta(&r->meta, model, t, err);
	muse_reader_free(r);
	return s;
}

int cmd_tokenize(int argc, const char **argv)
{
	const char *text = NULL, *file = NULL;
	bool no_special = false, parse_special = false, no_parse_special = false, json = false, timing = false;
	muse_option opts[] = {
		{ MUSE_OPT_STRING, 0, "text", &text, "STR", "the text to tokenize" },
		{ MUSE_OPT_STRING, 0, "file", &file, "F", "tokenize the contents of file F (UTF-8)" },
		{ MUSE_OPT_BOOL, 0, "no-special", &no_special, NULL, "do not add BOS/EOS as the tokenizer would" },
		{ MUSE_OPT_BOOL, 0, "no-parse-special", &no_parse_special, NULL,
		  "read special tokens written in the text (<|im_start|>) as plain text, as llama-tokenize "
		  "--no-parse-special does (user-defined added tokens still match)" },
		{ MUSE_OPT_BOOL, 0, "parse-special", &parse_special, NULL,
		  "match special tokens written in the text as single ids (the default)" },
		{ MUSE_OPT_BOOL, 0, "json", &json, NULL, "print {\"ids\": [...]} for machines" },
		{ MUSE_OPT_BOOL, 0, "time", &timing, NULL, "print the encoding time and MB/s to stderr" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, tokenize_usage);
	if (n == MUSE_PARSE_HELP)
		return MUSE_EXIT_OK;
	if (n < 0)
		return MUSE_EXIT_USAGE;
	if (n != 1 || !text == !file) {
		fprintf(stderr, "muse: error: tokenize: expected one MODEL and exactly one of --text or --file\n");
		muse_usage(stderr, opts, tokenize_usage);
		return MUSE_EXIT_USAGE;
	}
	if (parse_special && no_parse_special) {
		fprintf(stderr, "muse: error: tokenize: --parse-special and --no-parse-special contradict each other\n");
		return MUSE_EXIT_USAGE;
	}
	muse_err err = { 0 };
	muse_tokenizer *t = NULL;
	muse_map map = { 0 };
	int32_t *ids = NULL;
	size_t n_ids = 0;
	int rc = MUSE_EXIT_OK;
	const char *src = text;
	size_t len = text ? strlen(text) : 0;
	if (open_tokenizer(argv[0], &t, &err)) {
		rc = muse_cli_fail(&err);
		goto done;
	}
	if (file) {
		if (muse_map_open(file, &map, &err)) {
			rc = muse_cli_fail(&err);
			goto done;
		}
		src = map.data ? (const char *)map.data : "";
		len = (size_t)map.size;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/*
	 * Special tokens in the text are single ids by default, as llama-tokenize (parse_special unless
	 * --no-parse-special) and HF tokenizers' encode() (encode_special_tokens false) give them; eval and
	 * calibration text are tokenized without, as llama-perplexity and llama-imatrix do.
	 */
	if (muse_tokenizer_encode(t, src, len, !no_special, !no_parse_special, &ids, &n_ids, &err)) {
		/* name the input the offsets refer to */
		muse_err_prefix(&err, "%s", file ? file : "--text");
		rc = muse_cli_fail(&err);
		goto done;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (timing) {
		double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
		fprintf(stderr, "muse: tokenize: %zu bytes -> %zu tokens in %.3f s (%.2f MB/s)\n", len, n_ids, sec,
			sec > 0 ? (double)len / 1e6 / sec : 0.0);
	}
	if (json)
		fputs("{\"ids\": [", stdout);
	for (size_t i = 0; i < n_ids; i++)
		printf(json ? "%s%d" : "%s%d", i ? (json ? ", " : " ") : "", ids[i]);
	puts(json ? "]}" : "");
done:
	free(ids);
	muse_map_close(&map);
	muse_tokenizer_free(t);
	return rc;
}
