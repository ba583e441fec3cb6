/* convert.c: `muse convert` HF -> GGUF, GGUF -> HF, GGUF -> GGUF, HF -> HF (cast/reshard/merge) and --raw: streams tensors, casting as asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "../lib/path.h"
#include "../formats/gguf2hf.h"
#include "../formats/hf2gguf.h"
#include "../formats/hf_config.h"
#include "../formats/model_writer.h"
#include "../formats/reader.h"
#include "../lib/mapfile.h"
#include "../lib/progress.h"
#include "../quant/mix.h"
#include "../quant/quant.h"
#include "cmds.h"
#include "options.h"

static const char *const convert_usage[] = {
	"muse convert HF_DIR OUT.gguf [--outtype f32|f16|bf16|q8_0|auto] [--shard-size SIZE]",
	"muse convert IN.gguf OUT_DIR [--outtype f32|f16|bf16|auto] [--shard-size SIZE]",
	"muse convert IN.gguf OUT.gguf [--outtype f32|f16|bf16|auto] [--shard-size SIZE]",
	"muse convert HF_DIR|IN.safetensors OUT_DIR|OUT.safetensors [--outtype f32|f16|bf16|auto] [--shard-size SIZE]",
	"muse convert IN OUT --raw [--to gguf|safetensors] [--outtype f32|f16|bf16|auto] [--shard-size SIZE]",
	NULL,
};

/*
 * The type tensor t is written as. Plain float and block tensors follow an
 * explicit --outtype (blocks are dequantized); with auto they keep their
 * type, except blocks bound for safetensors, which has none: they become
 * F32, as GGUF -> HF does. In GGUF, whatever llama-quantize would not
 * quantize (1-D tensors, norms, biases, routers; quant/mix.c's rule) is
 * F32 under an explicit --outtype, as convert_hf_to_gguf.py writes it:
 * llama.cpp's CPU kernels refuse an F16 norm.
 */
static muse_dtype out_dtype(const muse_tensor *t, const char *arch, muse_out_format fmt, muse_dtype want)
{
	const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
	if (!tr->is_quant && !(tr->is_float && tr->blck == 1))
		return t->dtype;
	if (want == MUSE_DT_INVALID)
		return tr->is_quant && fmt == MUSE_OUT_SAFETENSORS ? MUSE_DT_F32 : t->dtype;
	if (fmt == MUSE_OUT_GGUF) {
		muse_mix_tensor mt = { .name = t->name, .type = t->dtype, .ne = { 1, 1, 1, 1 } };
		for (int d = 0; d < t->ndim && d < 4; d++)
			mt.ne[d] = (int64_t)t->shape[t->ndim - 1 - d];
		if (t->ndim > 4 || !muse_mix_allows_quantization(arch, &mt))
			return MUSE_DT_F32;
	}
	return want;
}

#define DEQUANT_ELEMS (1u << 20) /* block-quantized elements decoded per step: whole blocks of every type */

/* A block-quantized tensor written as a float type: decoded a chunk at a time, then cast like any F32 source. */
static muse_status put_dequantized(muse_model_writer *w, size_t i, const muse_tensor *t, const uint8_t *src,
				   muse_dtype dt, muse_cast_buf *cb, muse_progress *pg, muse_err *err)
{
	const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
	if (!t->nelements)
		return muse_model_writer_put(w, i, t->name, src, MUSE_DT_F32, 0, dt, cb, pg, err);
	float *f = malloc(DEQUANT_ELEMS * sizeof *f);
	if (!f)
		return muse_err_set(err, MUSE_ERR_NOMEM, "tensor '%s': out of memory", t->name);
	muse_status s = MUSE_OK;
	for (uint64_t off = 0; off < t->nelements && !s; off += DEQUANT_ELEMS) {
		uint64_t n = t->nelements - off < DEQUANT_ELEMS ? t->nelements - off : DEQUANT_ELEMS;
		const uint8_t *blocks = src + off / tr->blck * tr->block_bytes;
		s = muse_dequantize(t->dtype, blocks, f, (int64_t)n, err);
		if (!s)
			s = muse_model_writer_put(w, i, t->name, (const uint8_t *)f, MUSE_DT_F32, n, dt, cb, NULL, err);
		if (!s && pg)
			muse_progress_add(pg, n / tr->blck * tr->block_bytes);
	}
	free(f);
	return s;
}

/* Contiguous tensors stream from the map; strided ones (PyTorch views) are materialized once. */
static muse_status write_tensor(muse_reader *r, size_t i, muse_dtype dt, muse_model_writer *w, muse_cast_buf *cb,
				muse_progress *pg, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	bool dequant = muse_dtype_info(t->dtype)->is_quant && dt != t->dtype;
	const uint8_t *view = muse_reader_view(r, i);
	if (view)
		return dequant ? put_dequantized(w, i, t, view, dt, cb, pg, err)
			       : muse_model_writer_put(w, i, t->name, view, t->dtype, t->nelements, dt, cb, pg, err);
	uint8_t *dense = t->nbytes <= SIZE_MAX ? malloc(t->nbytes ? (size_t)t->nbytes : 1) : NULL;
	if (!dense)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
	muse_status s = muse_reader_read(r, i, dense, err);
	if (!s)
		s = dequant ? put_dequantized(w, i, t, dense, dt, cb, pg, err)
			    : muse_model_writer_put(w, i, t->name, dense, t->dtype, t->nelements, dt, cb, pg, err);
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

static muse_status convert_stream(const char *in, const char *out, muse_out_format fmt, muse_dtype want,
				  uint64_t shard, bool quiet, const char *shown, muse_err *errp);

/* Formats are told apart by content, as the readers do: a GGUF file starts with "GGUF". */
static int is_gguf(const char *p)
{
	char m[4];
	FILE *f = muse_is_dir(p) ? NULL : fopen(p, "rb");
	int yes = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
	if (f)
		fclose(f);
	return yes;
}

/* Files of an HF directory that are weights (rewritten by the conversion) rather than files kept beside them. */
static int is_weights(const char *name)
{
	static const char *const sfx[] = { ".safetensors", ".index.json", ".bin", ".pt", ".pth", ".gguf", ".ckpt",
					   ".h5", ".msgpack", ".onnx", NULL };
	for (size_t i = 0; sfx[i]; i++)
		if (muse_ends_with(name, sfx[i]))
			return 1;
	return 0;
}

/* config.json with its dtype following --outtype; every other byte of the file kept (formats/hf_config.c). */
static muse_status copy_config(const muse_outdir *d, const char *src, muse_dtype want, muse_err *err)
{
	if (want == MUSE_DT_INVALID)
		return muse_outdir_copy(d, src, "config.json", err);
	char *txt = NULL, *edited = NULL;
	size_t n = 0, en = 0;
	muse_status s = muse_read_small_file(src, 64u << 20, &txt, &n, err);
	if (s)
		return s;
	const char *name = want == MUSE_DT_F16 ? "float16" : want == MUSE_DT_BF16 ? "bfloat16" : "float32";
	muse_err e2 = { 0 };
	if (muse_hf_config_set_dtype(src, txt, n, name, &edited, &en, &e2) == MUSE_ERR_FORMAT)
		s = muse_outdir_copy(d, src, "config.json", err); /* not ours to judge: kept as it is */
	else if (e2.code)
		s = muse_err_set(err, e2.code, "%s", e2.msg);
	else
		s = muse_outdir_write(d, "config.json", edited, en, err);
	free(txt);
	free(edited);
	return s;
}

/*
 * HF checkpoint (directory, safetensors file or index) -> HF directory:
 * weights cast, resharded or merged into DIR/model.safetensors (or shards
 * plus index), every other file of the source directory copied beside
 * them. Built under a temporary name: the directory appears whole or not.
 */
static int run_reshard_dir(const char *in, const char *out, muse_dtype want, uint64_t shard, bool quiet)
{
	muse_err err = { 0 };
	muse_outdir d = MUSE_OUTDIR_INIT;
	char path[8192], src[8192], srcdir[4096] = "";
	DIR *dir = NULL;
	if (muse_outdir_begin(&d, out, &err))
		goto fail;
	snprintf(path, sizeof path, "%s/model.safetensors", d.tmp);
	if (convert_stream(in, path, MUSE_OUT_SAFETENSORS, want, shard, quiet, out, &err))
		goto fail;
	if (muse_is_dir(in)) {
		snprintf(srcdir, sizeof srcdir, "%s", in);
	} else if (muse_ends_with(in, ".index.json")) {
		const char *slash = strrchr(in, '/');
		snprintf(srcdir, sizeof srcdir, "%.*s", slash ? (int)(slash - in) : 1, slash ? in : ".");
	}
	if (srcdir[0] && (dir = opendir(srcdir))) {
		struct dirent *e;
		while ((e = readdir(dir))) {
			struct stat st;
			if (e->d_name[0] == '.' || is_weights(e->d_name))
				continue;
			if ((size_t)snprintf(src, sizeof src, "%s/%s", srcdir, e->d_name) >= sizeof src || stat(src, &st) ||
			    !S_ISREG(st.st_mode))
				continue;
			muse_status s = !strcmp(e->d_name, "config.json") ? copy_config(&d, src, want, &err)
									: muse_outdir_copy(&d, src, e->d_name, &err);
			if (s)
				goto fail;
		}
	}
	if (muse_outdir_commit(&d, &err))
		goto fail;
	if (dir)
		closedir(dir);
	muse_outdir_abort(&d);
	return MUSE_EXIT_OK;
fail:
	if (dir)
		closedir(dir);
	muse_outdir_abort(&d);
	return muse_cli_fail(&err);
}

/*
 * GGUF's general.file_type describes what was written: the source's value
 * while every tensor keeps its type, else the type llama.cpp's loader
 * infers from the tensors (quant/mix.c), as for a file without the key.
 */
static muse_status set_file_type(muse_meta *m, const muse_reader *r, const muse_dtype *dts, muse_err *err)
{
	size_t changed = 0;
	for (size_t i = 0; i < r->n_tensors; i++)
		changed += dts[i] != r->tensors[i].dtype;
	if (!changed)
		return MUSE_OK;
	const char **names = malloc((r->n_tensors ? r->n_tensors : 1) * sizeof *names);
	if (!names)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->n_tensors; i++)
		names[i] = r->tensors[i].name;
	muse_ftype ft;
	muse_status s = muse_ftype_of_tensors(names, dts, r->n_tensors, &ft, err);
	free(names);
	if (!s && muse_meta_set_u32(m, "general.file_type", (uint32_t)ft))
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return s;
}

/* Streams every tensor of in into the file(s) out; the one path for --raw, GGUF -> GGUF and safetensors resharding. */
static muse_status convert_stream(const char *in, const char *out, muse_out_format fmt, muse_dtype want,
				  uint64_t shard, bool quiet, const char *shown, muse_err *errp)
{
	muse_err err = { 0 };
	muse_reader *r = NULL;
	muse_model_writer *w = NULL;
	muse_cast_buf cb = { 0 };
	muse_dtype *dts = NULL;
	muse_meta meta;
	muse_meta_init(&meta);
	char path[4096];
	int rc = MUSE_EXIT_FAIL;

	if (muse_reader_open(in, &r, &err))
		goto fail;
	/* A directory (or a name ending in '/') gets an HF layout: DIR/model.safetensors. */
	if (fmt == MUSE_OUT_SAFETENSORS && (muse_is_dir(out) || muse_ends_with(out, "/")))
		snprintf(path, sizeof path, "%s%smodel.safetensors", out, muse_ends_with(out, "/") ? "" : "/");
	else
		snprintf(path, sizeof path, "%s", out);

	const char *arch = muse_meta_get_str(&r->meta, "general.architecture");
	if (!(dts = malloc((r->n_tensors ? r->n_tensors : 1) * sizeof *dts))) {
		muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < r->n_tensors; i++)
		dts[i] = out_dtype(&r->tensors[i], arch ? arch : "", fmt, want);
	/* Metadata travels only between files of the same format; GGUF's file_type follows the cast. */
	if (!strcmp(r->format, fmt == MUSE_OUT_GGUF ? "gguf" : "safetensors"))
		for (size_t k = 0; k < r->meta.n; k++)
			if (muse_meta_copy_kv(&meta, &r->meta.kv[k])) {
				muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
				goto fail;
			}
	if (fmt == MUSE_OUT_GGUF && !strcmp(r->format, "gguf") && set_file_type(&meta, r, dts, &err))
		goto fail;
	if (muse_model_writer_create(&w, fmt, path, shard, &err) || muse_model_writer_set_meta(w, &meta, NULL, &err))
		goto fail;
	uint64_t total = 0;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		muse_dtype dt = dts[i];
		const muse_quant_traits *q = muse_quant_traits_of(t->dtype);
		if (q && dt != t->dtype && !q->dequantize) {
			muse_err_set(&err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': muse cannot decode %s tensors yet", in,
				     t->name, muse_dtype_name(t->dtype));
			goto fail;
		}
		if (!muse_model_writer_supports(fmt, dt)) {
			muse_err_set(&err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s cannot be stored in %s%s", in,
				     t->name, muse_dtype_name(dt), fmt == MUSE_OUT_GGUF ? "GGUF" : "safetensors",
				     muse_dtype_info(dt)->is_float ? "; choose --outtype f32, f16 or bf16" : "");
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
		if (write_tensor(r, i, dts[i], w, &cb, &pg, &err))
			goto fail;
	if (muse_model_writer_finish(w, &err))
		goto fail;
	muse_progress_end(&pg);
	if (!quiet)
		fprintf(stderr, "muse: wrote %zu tensors to %s\n", r->n_tensors, shown ? shown : path);
	rc = MUSE_EXIT_OK;
	goto done;
fail:
	*errp = err;
done:
	muse_model_writer_free(w);
	muse_reader_free(r);
	muse_meta_free(&meta);
	free(dts);
	free(cb.p);
	return rc == MUSE_EXIT_OK ? MUSE_OK : err.code ? err.code : MUSE_ERR_IO;
}

static int run_convert(const char *in, const char *out, muse_out_format fmt, muse_dtype want, uint64_t shard,
		       bool quiet)
{
	muse_err err = { 0 };
	return convert_stream(in, out, fmt, want, shard, quiet, NULL, &err) ? muse_cli_fail(&err) : MUSE_EXIT_OK;
}

int cmd_convert(int argc, const char **argv)
{
	const char *to = NULL, *outtype = NULL;
	uint64_t shard = 0;
	bool raw = false, quiet = false;
	muse_option opts[] = {
		{ MUSE_OPT_BOOL, 0, "raw", &raw, NULL, "copy tensors with their names unchanged (no architecture mapping)" },
		{ MUSE_OPT_STRING, 0, "to", &to, "FORMAT", "gguf or safetensors (default: from OUT's extension)" },
		{ MUSE_OPT_STRING, 0, "outtype", &outtype, "TYPE", "f32, f16, bf16 (block tensors dequantized), q8_0 (HF -> GGUF only) or auto (keep the source type)" },
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
	bool q8 = outtype && !strcmp(outtype, "q8_0"); /* HF -> GGUF only, checked below */
	if (q8)
		want = MUSE_DT_Q8_0;
	else if (parse_outtype(outtype, &want) < 0) {
		fprintf(stderr, "muse: error: convert: unknown --outtype '%s' (f32, f16, bf16, q8_0, auto)\n", outtype);
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
		fmt = muse_ends_with(argv[1], ".gguf") ? MUSE_OUT_GGUF : MUSE_OUT_SAFETENSORS;
	if (q8 && (raw || fmt != MUSE_OUT_GGUF || is_gguf(argv[0]) || !muse_is_dir(argv[0]))) {
		fprintf(stderr, "muse: error: convert: --outtype q8_0 is for HF checkpoint directory -> GGUF conversion; "
				"use muse quantize for other inputs\n");
		return MUSE_EXIT_USAGE;
	}
	if (!raw && is_gguf(argv[0])) {
		if (fmt == MUSE_OUT_GGUF) /* GGUF -> GGUF: names already GGUF's; cast, reshard or merge */
			return run_convert(argv[0], argv[1], fmt, want, shard, quiet);
		/* Architecture-aware GGUF -> HF directory (formats/gguf2hf.c); blocks decoded by quant/. */
		if (muse_ends_with(argv[1], ".safetensors")) {
			fprintf(stderr, "muse: error: convert: GGUF -> HF writes a directory, not '%s'; name a directory, "
					"or use --raw for a bare safetensors file with GGUF tensor names\n", argv[1]);
			return MUSE_EXIT_USAGE;
		}
		muse_err err = { 0 };
		muse_gguf2hf_opts o = { .want = want, .shard_bytes = shard, .quiet = quiet, .dequant = muse_dequantize };
		return muse_gguf2hf(argv[0], argv[1], &o, &err) ? muse_cli_fail(&err) : MUSE_EXIT_OK;
	}
	if (!raw && fmt == MUSE_OUT_SAFETENSORS) {
		/* HF -> HF: cast, reshard or merge safetensors; a directory output keeps the other files. */
		if (muse_is_dir(argv[1]) || muse_ends_with(argv[1], "/") || !muse_ends_with(argv[1], ".safetensors"))
			return run_reshard_dir(argv[0], argv[1], want, shard, quiet);
		return run_convert(argv[0], argv[1], fmt, want, shard, quiet);
	}
	if (!raw) {
		/* Architecture-aware: an HF checkpoint directory into GGUF (formats/hf2gguf.c). */
		if (fmt != MUSE_OUT_GGUF || !muse_is_dir(argv[0])) {
			fprintf(stderr, "muse: error: convert: architecture-aware conversion reads an HF checkpoint "
					"directory and writes GGUF; use --raw to copy tensors with their names unchanged\n");
			return MUSE_EXIT_USAGE;
		}
		/* Q8_0 rows come from quant/'s reference quantizer (byte-identical with ggml's); formats/ may not call it. */
		muse_err err = { 0 };
		muse_hf2gguf_opts o = { .want = want, .shard_bytes = shard, .quiet = quiet,
					.quantize = q8 ? muse_quantize_q8_0_ref : NULL };
		if (muse_hf2gguf_ex(argv[0], argv[1], &o, &err)) {
			muse_cli_hint_unmapped(argv[0], &err, "use --raw to copy tensors with their names unchanged");
			return muse_cli_fail(&err);
		}
		return MUSE_EXIT_OK;
	}
	/* --raw into a directory that does not exist yet (OUT without .safetensors): created whole, as HF -> HF does. */
	if (fmt == MUSE_OUT_SAFETENSORS && !muse_is_dir(argv[1]) && !muse_ends_with(argv[1], ".safetensors"))
		return run_reshard_dir(argv[0], argv[1], want, shard, quiet);
	return run_convert(argv[0], argv[1], fmt, want, shard, quiet);
}
