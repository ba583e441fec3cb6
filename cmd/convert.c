/* convert.c: `muse convert HF_DIR OUT.gguf` (architecture-aware) and `muse convert IN OUT --raw`: streams tensors from any reader into GGUF or safetensors, casting as asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../formats/hf2gguf.h"
#include "../formats/model_writer.h"
#include "../formats/reader.h"
#include "../lib/progress.h"
#include "cmds.h"
#include "options.h"

static const char *const convert_usage[] = {
	"muse convert HF_DIR OUT.gguf [--outtype f32|f16|bf16|auto] [--shard-size SIZE]",
	"muse convert IN OUT --raw [--to gguf|safetensors] [--outtype f32|f16|bf16|auto] [--shard-size SIZE]",
	NULL,
};

/* The dtype a tensor is written as: plain float tensors follow --outtype, everything else keeps its type. */
static muse_dtype out_dtype(muse_dtype src, muse_dtype want)
{
	const muse_dtype_traits *tr = muse_dtype_info(src);
	if (want == MUSE_DT_INVALID || !tr->is_float || tr->blck != 1)
		return src;
	return want;
}

/* Contiguous tensors stream from the map; strided ones (PyTorch views) are materialized once. */
static muse_status write_tensor(muse_reader *r, size_t i, muse_dtype dt, muse_model_writer *w, muse_cast_buf *cb,
				muse_progress *pg, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	const uint8_t *view = muse_reader_view(r, i);
	if (view)
		return muse_model_writer_put(w, i, t->name, view, t->dtype, t->nelements, dt, cb, pg, err);
	uint8_t *dense = t->nbytes <= SIZE_MAX ? malloc(t->nbytes ? (size_t)t->nbytes : 1) : NULL;
	if (!dense)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
	muse_status s = muse_reader_read(r, i, dense, err);
	if (!s)
		s = muse_model_writer_put(w, i, t->name, dense, t->dtype, t->nelements, dt, cb, pg, err);
	free(dense);
	return s;
}

static int parse_outtype(const char *s, muse_dtype *out)
{
	if (!s || !strcmp(s, "auto")) {
		*out = MUSE_DT_INVALID;
		return 0;
	}
	if (!strcmp(s, "f32"))
		*out = MUSE_DT_F32;
	else if (!strcmp(s, "f16"))
		*out = MUSE_DT_F16;
	else if (!strcmp(s, "bf16"))
		*out = MUSE_DT_BF16;
	else
		return -1;
	return 0;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* GGUF's general.file_type follows the float type all float tensors were cast to. */
static muse_status fix_file_type(muse_meta *m, muse_dtype want)
{
	if (!muse_meta_find(m, "general.file_type") || want == MUSE_DT_INVALID)
		return MUSE_OK;
	uint32_t ft = want == MUSE_DT_F32 ? 0 : want == MUSE_DT_F16 ? 1 : 32;
	return muse_meta_set_u32(m, "general.file_type", ft);
}

static int run_convert(const char *in, const char *out, muse_out_format fmt, muse_dtype want, uint64_t shard,
		       bool quiet)
{
	muse_err err = { 0 };
	muse_reader *r = NULL;
	muse_model_writer *w = NULL;
	muse_cast_buf cb = { 0 };
	muse_meta meta;
	muse_meta_init(&meta);
	char path[4096];
	int rc = MUSE_EXIT_FAIL;

	if (muse_reader_open(in, &r, &err))
		goto fail;
	/* A directory (or a name ending in '/') gets an HF layout: DIR/model.safetensors. */
	if (fmt == MUSE_OUT_SAFETENSORS && (is_dir(out) || ends_with(out, "/")))
		snprintf(path, sizeof path, "%s%smodel.safetensors", out, ends_with(out, "/") ? "" : "/");
	else
		snprintf(path, sizeof path, "%s", out);

	/* Metadata travels only between files of the same format; GGUF's file_type follows the cast. */
	if (!strcmp(r->format, fmt == MUSE_OUT_GGUF ? "gguf" : "safetensors"))
		for (size_t k = 0; k < r->meta.n; k++)
			if (muse_meta_copy_kv(&meta, &r->meta.kv[k])) {
				muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
				goto fail;
			}
	if (fmt == MUSE_OUT_GGUF && fix_file_type(&meta, want)) {
		muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (muse_model_writer_create(&w, fmt, path, shard, &err) || muse_model_writer_set_meta(w, &meta, NULL, &err))
		goto fail;
	uint64_t total = 0;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		muse_dtype dt = out_dtype(t->dtype, want);
		if (!muse_model_writer_supports(fmt, dt)) {
			muse_err_set(&err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s cannot be stored in %s%s", in,
				     t->name, muse_dtype_name(dt), fmt == MUSE_OUT_GGUF ? "GGUF" : "safetensors",
				     muse_dtype_info(dt)->is_float ? "; choose --outtype" : "");
			goto fail;
		}
		if (muse_model_writer_add_tensor(w, t->name, dt, t->ndim, t->shape, &err))
			goto fail;
		total += t->nbytes;
	}
	if (muse_model_writer_begin(w, &err))
		goto fail;
	muse_progress pg;
	muse_progress_start(&pg, "convert", total, quiet);
	for (size_t i = 0; i < r->n_tensors; i++)
		if (write_tensor(r, i, out_dtype(r->tensors[i].dtype, want), w, &cb, &pg, &err))
			goto fail;
	if (muse_model_writer_finish(w, &err))
		goto fail;
	muse_progress_end(&pg);
	if (!quiet)
		fprintf(stderr, "muse: wrote %zu tensors to %s\n", r->n_tensors, path);
	rc = MUSE_EXIT_OK;
	goto done;
fail:
	rc = muse_cli_fail(&err);
done:
	muse_model_writer_free(w);
	muse_reader_free(r);
	muse_meta_free(&meta);
	free(cb.p);
	return rc;
}

int cmd_convert(int argc, const char **argv)
{
	const char *to = NULL, *outtype = NULL;
	uint64_t shard = 0;
	bool raw = false, quiet = false;
	muse_option opts[] = {
		{ MUSE_OPT_BOOL, 0, "raw", &raw, NULL, "copy tensors with their names unchanged (no architecture mapping)" },
		{ MUSE_OPT_STRING, 0, "to", &to, "FORMAT", "gguf or safetensors (default: from OUT's extension)" },
		{ MUSE_OPT_STRING, 0, "outtype", &outtype, "TYPE", "f32, f16, bf16 or auto (keep the source type)" },
		{ MUSE_OPT_SIZE, 0, "shard-size", &shard, "SIZE", "split the output into shards of at most SIZE (e.g. 5GB)" },
		{ MUSE_OPT_BOOL, 'q', "quiet", &quiet, NULL, "no progress display" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, convert_usage);
	if (n == MUSE_PARSE_HELP)
		return MUSE_EXIT_OK;
	if (n < 0)
		return MUSE_EXIT_USAGE;
	if (n != 2) {
		fprintf(stderr, "muse: error: convert: expected IN and OUT, got %d arguments\n", n);
		return MUSE_EXIT_USAGE;
	}
	muse_dtype want;
	if (parse_outtype(outtype, &want) < 0) {
		fprintf(stderr, "muse: error: convert: unknown --outtype '%s' (f32, f16, bf16, auto)\n", outtype);
		return MUSE_EXIT_USAGE;
	}
	muse_out_format fmt;
	if (to && !strcmp(to, "gguf"))
		fmt = MUSE_OUT_GGUF;
	else if (to && !strcmp(to, "safetensors"))
		fmt = MUSE_OUT_SAFETENSORS;
	else if (to) {
		fprintf(stderr, "muse: error: convert: unknown --to '%s' (gguf, safetensors)\n", to);
		return MUSE_EXIT_USAGE;
	} else
		fmt = ends_with(argv[1], ".gguf") ? MUSE_OUT_GGUF : MUSE_OUT_SAFETENSORS;
	if (!raw) {
		/* Architecture-aware: an HF checkpoint directory into GGUF (formats/hf2gguf.c). */
		if (fmt != MUSE_OUT_GGUF || !is_dir(argv[0])) {
			fprintf(stderr, "muse: error: convert: architecture-aware conversion reads an HF checkpoint "
					"directory and writes GGUF; use --raw to copy tensors with their names unchanged\n");
			return MUSE_EXIT_USAGE;
		}
		muse_err err = { 0 };
		if (muse_hf2gguf(argv[0], argv[1], want, shard, quiet, &err))
			return muse_cli_fail(&err);
		return MUSE_EXIT_OK;
	}
	return run_convert(argv[0], argv[1], fmt, want, shard, quiet);
}
