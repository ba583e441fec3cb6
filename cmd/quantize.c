/* quantize.c: `muse quantize IN OUT --type TYPE`: llama-quantize's GGUF file types and mixes, streamed one tensor at a time. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/path.h"
#include "../formats/gguf.h"
#include "../formats/hf_view.h"
#include "../formats/imatrix_file.h"
#include "../formats/reader.h"
#include "../lib/checked.h"
#include "../lib/outfile.h"
#include "../lib/progress.h"
#include "../quant/mix.h"
#include "../quant/q_stream.h"
#include "../quant/quant.h"
#include "cmds.h"
#include "options.h"

/*
 * The output is the file llama-quantize writes for the same input and
 * options: the input's metadata in its order with general.quantization_version
 * and general.file_type moved to the end (ggml's gguf_set_* remove, then
 * append), the split.* keys dropped, the quantize.imatrix.* keys appended
 * when an imatrix is used; tensors in llama.cpp's order (by layer, then
 * name); each tensor's type from quant/mix.c; the data from muse's
 * quantizers, which are byte-identical with ggml's. Differences on purpose:
 * --pure refuses rows that are not whole blocks instead of demoting them,
 * an imatrix that matches none of the tensors is refused, non-finite
 * weights are refused before anything is written (llama.cpp notices them
 * after quantizing), and a general.alignment other than 32 is honoured.
 */

static const char *const quantize_usage[] = {
	"muse quantize IN OUT --type TYPE [--pure] [--imatrix FILE] [--tensor-type REGEX=TYPE]... [--override-kv KEY=TYPE:VALUE]... [--threads N]",
	"muse quantize IN OUT --method rtn|awq|gptq ...",
	NULL,
};


#define SLAB_BYTES (64u << 20) /* F32 staging per slab of rows: memory stays this plus its quantized copy */

typedef struct qplan {
	size_t src;           /* index in the reader */
	muse_mix_tensor mt;
	muse_mix_choice ch;
	int ndim;             /* ggml_n_dims: what the output's tensor info says */
	uint64_t shape[4];    /* PyTorch order, ndim entries */
	const muse_imatrix_entry *im;
	uint32_t shard;
} qplan;

typedef struct qopts {
	const char *in, *out, *type, *imatrix, *out_type, *embd_type, *prune;
	muse_strlist rules, type_files, overrides, include_w, exclude_w;
	bool pure, leave_output, allow_requantize, keep_split, dry_run, quiet;
	long threads;
} qopts;

static bool is_plain_float(muse_dtype t) { return t == MUSE_DT_F32 || t == MUSE_DT_F16 || t == MUSE_DT_BF16; }

/* ggml's type-name parser (parse_ggml_type): any ggml type name, case-insensitive. */
static muse_status parse_ggml_type(const char *what, const char *s, muse_dtype *out, muse_err *err)
{
	muse_dtype t = muse_dtype_from_name(s);
	if (t == MUSE_DT_INVALID || muse_dtype_info(t)->ggml_id < 0)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: unknown ggml type '%s'", what, s);
	*out = t;
	return MUSE_OK;
}

static bool same_file(const char *a, const char *b)
{
	struct stat x, y;
	return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* strncpy(val_str, s, 127): llama-quantize's KV override strings hold at most 127 bytes. */
static muse_status set_str127(muse_meta *m, const char *key, const char *s)
{
	size_t n = strlen(s);
	muse_meta_remove(m, key);
	return muse_meta_set_strn(m, key, s, n > 127 ? 127 : n);
}

static muse_status set_u32_last(muse_meta *m, const char *key, uint32_t v)
{
	muse_meta_remove(m, key);
	return muse_meta_set_u32(m, key, v);
}

/*
 * One --override-kv KEY=TYPE:VALUE into m, read as llama.cpp's string_parse_kv_override reads it and written as
 * llama-quantize writes it: the key moves to the end (removed, then appended); int is stored as the u32 of its
 * absolute value (llama.cpp PR 14182), float as f32, bool is true or false, str at most 127 bytes.
 */
static muse_status apply_override(muse_meta *m, const char *a, muse_err *err)
{
	const char *eq = strchr(a, '=');
	if (!eq || eq - a >= 128)
		return muse_err_set(err, MUSE_ERR_USAGE, "--override-kv '%s': want KEY=TYPE:VALUE, KEY under 128 bytes", a);
	char key[128];
	memcpy(key, a, (size_t)(eq - a));
	key[eq - a] = 0;
	const char *v = eq + 1;
	muse_status st;
	muse_meta_remove(m, key);
	if (!strncmp(v, "int:", 4)) {
		long long x = strtoll(v + 4, NULL, 10);
		st = muse_meta_set_u32(m, key, (uint32_t)(x < 0 ? -(unsigned long long)x : (unsigned long long)x));
	} else if (!strncmp(v, "float:", 6)) {
		st = muse_meta_set_f32(m, key, (float)strtod(v + 6, NULL));
	} else if (!strncmp(v, "bool:", 5) && (!strcmp(v + 5, "true") || !strcmp(v + 5, "false"))) {
		st = muse_meta_set_bool(m, key, v[5] == 't');
	} else if (!strncmp(v, "str:", 4) && strlen(v + 4) <= 127) {
		st = muse_meta_set_str(m, key, v + 4);
	} else {
		return muse_err_set(err, MUSE_ERR_USAGE, "--override-kv '%s': want int:, float:, bool:true|false or "
				    "str: (at most 127 bytes) after the '='", a);
	}
	return st ? muse_err_set(err, st, "--override-kv '%s': cannot set it", a) : MUSE_OK;
}

static bool contains_any(const char *name, const muse_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (strstr(name, l->v[i]))
			return true;
	return false;
}

static bool keep_unexcluded(const char *name, void *ctx) { return !contains_any(name, ctx); }
static bool keep_included(const char *name, void *ctx) { return contains_any(name, ctx); }

/*
 * The --tensor-type rules, then every --tensor-type-file's words (NAME=TYPE separated by white space, as
 * llama-quantize reads them with >>); *bufs holds the files' contents *v points into.
 */
static muse_status collect_rules(const qopts *o, const char ***v, size_t *n, char ***bufs, muse_err *err)
{
	*v = NULL;
	*n = 0;
	size_t cap = o->rules.n;
	if (o->type_files.n && !(*bufs = calloc(o->type_files.n, sizeof **bufs)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t f = 0; f < o->type_files.n; f++) {
		size_t len;
		muse_status st = muse_read_small_file(o->type_files.v[f], (size_t)16 << 20, &(*bufs)[f], &len, err);
		if (st)
			return st;
		for (char *c = (*bufs)[f]; *c; c++)
			cap += !isspace((unsigned char)*c) && (c == (*bufs)[f] || isspace((unsigned char)c[-1]));
	}
	if (!cap)
		return MUSE_OK;
	if (!(*v = calloc(cap, sizeof **v)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < o->rules.n; i++)
		(*v)[(*n)++] = o->rules.v[i];
	for (size_t f = 0; f < o->type_files.n; f++)
		for (char *c = (*bufs)[f]; *c;) {
			while (*c && isspace((unsigned char)*c))
				c++;
			if (!*c)
				break;
			(*v)[(*n)++] = c;
			while (*c && !isspace((unsigned char)*c))
				c++;
			if (*c)
				*c++ = 0;
		}
	return MUSE_OK;
}

/* The output metadata, as llama_model_quantize_impl builds it. */
static muse_status build_meta(const muse_reader *r, const qopts *o, muse_ftype ft, const muse_imatrix *im,
			      const char *arch, int64_t n_layer_kept, muse_meta *out, muse_err *err)
{
	for (size_t k = 0; k < r->meta.n; k++)
		if (muse_meta_copy_kv(out, &r->meta.kv[k]))
			goto nomem;
	if (set_u32_last(out, "general.quantization_version", 2) || set_u32_last(out, "general.file_type", (uint32_t)ft))
		goto nomem;
	muse_meta_remove(out, "split.no");
	muse_meta_remove(out, "split.count");
	muse_meta_remove(out, "split.tensors.count");
	/* llama-quantize applies the user's overrides, then the imatrix keys it adds to the same list */
	muse_status s;
	for (size_t i = 0; i < o->overrides.n; i++)
		if ((s = apply_override(out, o->overrides.v[i], err)))
			return s;
	if (im) {
		if (set_str127(out, "quantize.imatrix.file", o->imatrix))
			goto nomem;
		if (im->n_datasets && set_str127(out, "quantize.imatrix.dataset", im->datasets[0]))
			goto nomem;
		if (set_u32_last(out, "quantize.imatrix.entries_count", (uint32_t)im->n))
			goto nomem;
		if (im->chunk_count > 0 && set_u32_last(out, "quantize.imatrix.chunks_count", im->chunk_count))
			goto nomem;
	}
	if (n_layer_kept >= 0) { /* --prune-layers: the layers left */
		char key[200];
		snprintf(key, sizeof key, "%s.block_count", arch);
		if (set_u32_last(out, key, (uint32_t)n_layer_kept))
			goto nomem;
	}
	return MUSE_OK;
nomem:
	return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Sorts v ascending and drops repeats; returns how many remain. */
static size_t sort_unique(long *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_long);
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (!u || v[u - 1] != v[i])
			v[u++] = v[i];
	return u;
}

/* --prune-layers L0,L1,...: layer numbers as llama-quantize's parse_layer_prune reads them (std::stoi of each
 * comma-separated field, so "3x" is 3), sorted, duplicates dropped. */
static muse_status parse_prune(const char *s, long **out, size_t *n, muse_err *err)
{
	size_t cap = 1;
	for (const char *c = s; *c; c++)
		cap += *c == ',';
	long *v = calloc(cap, sizeof *v);
	if (!v)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	size_t k = 0;
	for (const char *f = s;; f = strchr(f, ',') + 1) {
		char *end;
		errno = 0;
		long x = strtol(f, &end, 10);
		if (end == f || errno || x < 0 || x > INT32_MAX) {
			free(v);
			return muse_err_set(err, MUSE_ERR_USAGE, "--prune-layers '%s': invalid layer id at '%.*s'", s,
					    (int)strcspn(f, ","), f);
		}
		v[k++] = x;
		if (!strchr(f, ','))
			break;
	}
	*out = v;
	*n = sort_unique(v, k);
	return MUSE_OK;
}

/* The first "blk.N." in name: N, and where its digits start and end; -1 when there is none. */
static long blk_number(const char *name, size_t *at, size_t *len)
{
	for (const char *p = strstr(name, "blk."); p; p = strstr(p + 1, "blk.")) {
		const char *d = p + 4, *e = d;
		while (*e >= '0' && *e <= '9')
			e++;
		if (e > d && *e == '.' && e - d < 10) {
			*at = (size_t)(d - name);
			*len = (size_t)(e - d);
			return strtol(d, NULL, 10);
		}
	}
	return -1;
}

/*
 * Drops the tensors of the pruned layers from plan and renumbers the layers after the first pruned one
 * consecutively, as llama-quantize's remap_layer does over its layer-sorted tensors: a layer below the first
 * pruned keeps its number, every later kept layer takes the next free one. renamed[src] holds the new names;
 * *kept the tensors left, *n_layers the layers left (the output's block_count).
 */
static muse_status prune_plan(qplan *plan, size_t n, const long *prune, size_t n_prune, char **renamed,
			      size_t *kept, int *n_layers, muse_err *err)
{
	/* the layers present, ascending, and their new numbers (-1: pruned) */
	long *layer = malloc((n ? n : 1) * sizeof *layer), *to = malloc((n ? n : 1) * sizeof *to);
	if (!layer || !to) {
		free(layer);
		free(to);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	size_t nl = 0, at, len;
	for (size_t i = 0; i < n; i++) {
		long b = blk_number(plan[i].mt.name, &at, &len);
		if (b >= 0)
			layer[nl++] = b;
	}
	size_t u = sort_unique(layer, nl);
	long next_id = 0;
	for (size_t i = 0; i < u; i++) {
		if (bsearch(&layer[i], prune, n_prune, sizeof *prune, cmp_long)) {
			to[i] = -1;
		} else if (layer[i] < prune[0]) {
			to[i] = layer[i];
			next_id = layer[i] + 1;
		} else {
			to[i] = next_id++;
		}
	}
	muse_status st = MUSE_OK;
	size_t k = 0;
	for (size_t i = 0; i < n && !st; i++) {
		qplan q = plan[i];
		long b = blk_number(q.mt.name, &at, &len);
		if (b >= 0) {
			const long *f = bsearch(&b, layer, u, sizeof *layer, cmp_long);
			long nb = to[f - layer];
			if (nb < 0)
				continue;
			if (nb != b) {
				const char *old = q.mt.name;
				size_t cap = strlen(old) + 24;
				char *nn = malloc(cap);
				if (!nn) {
					st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
					break;
				}
				snprintf(nn, cap, "%.*s%ld%s", (int)at, old, nb, old + at + len);
				renamed[q.src] = nn;
				q.mt.name = nn;
			}
		}
		plan[k++] = q;
	}
	free(layer);
	free(to);
	*kept = k;
	*n_layers = (int)next_id;
	return st;
}

/* Tensor i of the reader as the mix sees it (ggml order, trailing 1s trimmed as ggml_n_dims does). */
static muse_status describe(const muse_reader *r, size_t i, qplan *p, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	if (t->ndim > 4)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (GGUF holds at most 4)",
				    r->path, t->name, t->ndim);
	p->src = i;
	p->mt.name = t->name;
	p->mt.type = t->dtype;
	for (int d = 0; d < 4; d++)
		p->mt.ne[d] = d < t->ndim ? (int64_t)t->shape[t->ndim - 1 - d] : 1;
	p->ndim = 1;
	for (int d = 3; d >= 1; d--)
		if (p->mt.ne[d] > 1) {
			p->ndim = d + 1;
			break;
		}
	for (int d = 0; d < p->ndim; d++)
		p->shape[d] = (uint64_t)p->mt.ne[p->ndim - 1 - d];
	p->shard = t->file;
	return MUSE_OK;
}

/* Checks what llama.cpp checks before or while quantizing, all before the output exists. */
static muse_status check_plan(const muse_reader *r, const qopts *o, muse_ftype ft, const muse_imatrix *im, qplan *p,
			      size_t n, muse_err *err)
{
	size_t matched = 0;
	/* imatrix entries carry the input's names (--prune-layers renumbers the output's) */
	for (size_t i = 0; im && i < n; i++)
		matched += muse_imatrix_find(im, r->tensors[p[i].src].name) != NULL;
	for (size_t i = 0; i < n; i++) {
		const char *name = p[i].mt.name;
		muse_dtype cur = p[i].mt.type, nt = p[i].ch.type;
		if (!p[i].ch.quantizable || cur == nt)
			continue;
		if (!is_plain_float(cur) && !muse_dtype_info(cur)->is_quant)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': cannot convert %s to %s", r->path,
					    name, muse_dtype_name(cur), muse_dtype_name(nt));
		if (muse_dtype_info(cur)->is_quant && !o->allow_requantize)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "%s: tensor '%s' is already %s; requantizing to %s loses quality twice "
					    "(--allow-requantize to do it anyway)", r->path, name, muse_dtype_name(cur),
					    muse_dtype_name(nt));
		if (muse_dtype_info(cur)->is_quant) {
			const muse_quant_traits *q = muse_quant_traits_of(cur);
			if (!q || !q->dequantize)
				return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': decoding %s is not supported",
						    r->path, name, muse_dtype_name(cur));
		}
		if (im) {
			const muse_imatrix_entry *e = muse_imatrix_find(im, r->tensors[p[i].src].name);
			if (e) {
				uint64_t want = (uint64_t)p[i].mt.ne[0] * (uint64_t)p[i].mt.ne[2];
				uint64_t have = e->n_per_row * e->n_mat;
				if (have == want) {
					p[i].im = e;
				} else if (strcmp(name, "token_embd.weight") && strcmp(name, "per_layer_token_embd.weight")) {
					/* token_embd's entry (from get_rows) never fits; llama.cpp ignores it too */
					return muse_err_set(err, MUSE_ERR_FORMAT,
							    "%s: entry '%s' holds %" PRIu64 " values but the tensor needs %" PRIu64
							    " (%" PRId64 " per row x %" PRId64 " experts): imatrix of another model?",
							    im->path, name, have, want, p[i].mt.ne[0], p[i].mt.ne[2]);
				}
			}
		}
		if (!p[i].im && p[i].ch.requires_imatrix) {
			/* "IQ2_XXS needs ..." for a type, "Q2_K (from --type Q2_K_S) needs ..." where a mix chose it */
			char how[64] = "";
			if (strcmp(muse_ftype_name(ft), muse_dtype_name(nt)))
				snprintf(how, sizeof how, " (from --type %s)", muse_ftype_name(ft));
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "tensor '%s': %s%s needs an importance matrix%s (make one with muse imatrix "
					    "or llama-imatrix, pass --imatrix)", name, muse_dtype_name(nt), how,
					    im ? " and the imatrix has none for it" : "");
		}
		if (p[i].mt.ne[3] > 1)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "%s: tensor '%s': 4-D tensors are not quantized (llama.cpp neither)", r->path, name);
		if (muse_dtype_info(nt)->is_quant) {
			const muse_quant_traits *q = muse_quant_traits_of(nt);
			if (!q || !q->quantize_ref)
				return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
						    "tensor '%s': quantizing to %s is not supported by muse yet", name,
						    muse_dtype_name(nt));
		} else if (!is_plain_float(nt)) {
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "tensor '%s': cannot write %s", name,
					    muse_dtype_name(nt));
		}
	}
	if (im && !matched)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: none of its %zu entries matches a tensor of %s: "
				    "imatrix of another model?", im->path, im->n, r->path);
	return MUSE_OK;
}

/* Converts rows [r0, r0+nr) of tensor t from its source type to F32. */
static muse_status to_f32(const muse_tensor *t, const uint8_t *src, int64_t n_per_row, int64_t r0, int64_t nr,
			  float *dst, muse_err *err)
{
	const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
	uint64_t row_bytes = (uint64_t)n_per_row / tr->blck * tr->block_bytes;
	const uint8_t *p = src + (uint64_t)r0 * row_bytes;
	size_t n = (size_t)(nr * n_per_row);
	if (tr->is_quant)
		return muse_dequantize(t->dtype, p, dst, (int64_t)n, err);
	return muse_dtype_convert(MUSE_DT_F32, dst, t->dtype, p, n, err);
}

/* A tensor's place in the quantize session: its sink and its label for errors; lives until the session is
 * drained. */
typedef struct {
	const muse_tensor *t;
	muse_gguf_writer *w;
	muse_progress *pg;
	uint64_t src_row;
	const muse_map *m;   /* the file the tensor is in (bytes items: its pages dropped once written), or NULL: */
	muse_reader *r;      /* ... a computed tensor (an HF checkpoint's view), read as rows from r */
	size_t idx;
	uint8_t *owned;      /* a computed tensor kept as it is: its bytes, freed once the session is drained */
	char what[320];      /* "FILE: tensor 'NAME'" */
} qstream_ctx;

/* A computed tensor's rows [r0, r0 + nr) as F32 (a q_stream row source; runs on several workers at once). */
static muse_status view_rows(void *ctx, int64_t r0, int64_t nr, float *dst, muse_err *err)
{
	qstream_ctx *c = ctx;
	const muse_dtype_traits *tr = muse_dtype_info(c->t->dtype);
	size_t bytes = (size_t)(c->src_row * (uint64_t)nr);
	uint8_t *raw = malloc(bytes ? bytes : 1);
	if (!raw)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", c->what);
	muse_status s = muse_reader_read_rows(c->r, c->idx, (uint64_t)r0, (uint64_t)nr, raw, err);
	size_t n = bytes / tr->block_bytes * tr->blck;
	if (!s)
		s = tr->is_quant ? muse_dequantize(c->t->dtype, raw, dst, (int64_t)n, err)
				 : muse_dtype_convert(MUSE_DT_F32, dst, c->t->dtype, raw, n, err);
	free(raw);
	return s;
}

static muse_status stream_sink(void *ctx, const void *buf, size_t n, int64_t rows, muse_err *err)
{
	qstream_ctx *c = ctx;
	muse_status s = muse_gguf_writer_write(c->w, buf, n, err);
	if (!s)
		muse_progress_add(c->pg, (uint64_t)rows * c->src_row);
	return s;
}

/* A tensor kept as it is: its bytes from the mapping, whose pages are dropped from the resident set after. */
static muse_status bytes_sink(void *ctx, const void *buf, size_t n, int64_t rows, muse_err *err)
{
	qstream_ctx *c = ctx;
	(void)rows;
	muse_status s = muse_gguf_writer_write(c->w, buf, n, err);
	if (!s) {
		muse_progress_add(c->pg, n);
		if (c->m)
			muse_map_release(c->m, c->t->offset, c->t->nbytes);
	}
	free(c->owned); /* the one call for a bytes item: a computed tensor's copy is done with */
	c->owned = NULL;
	return s;
}

/*
 * Tensor p into the output: quantized tensors and tensors kept as they are go to the session qs (in
 * order; qc lives until it is drained); a conversion to a float type waits for the session to write
 * everything before it, then writes here.
 */
static muse_status quantize_tensor(muse_reader *r, const qplan *p, muse_gguf_writer *w, muse_qs_session *qs,
				   qstream_ctx *qc, float **stage, size_t *stage_cap, uint8_t **qbuf, size_t *qcap,
				   muse_progress *pg, muse_err *err)
{
	const muse_tensor *t = &r->tensors[p->src];
	const uint8_t *src = muse_reader_view(r, p->src);
	muse_status s;
	/* a mapped tensor (a GGUF's, or an HF view's plain copy) is read from its file; a computed one as rows */
	const muse_map *m = src && t->file < r->n_files ? &r->files[t->file] : NULL;
	if (src && !m)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': data not contiguous", r->path, t->name);
	muse_dtype nt = p->ch.type;
	const int64_t npr = p->mt.ne[0], rows_per_mat = p->mt.ne[1], nmat = p->mt.ne[2];
	const int64_t nrows = rows_per_mat * nmat;
	*qc = (qstream_ctx){ t, w, pg, t->nbytes / (uint64_t)(nrows ? nrows : 1), m, r, p->src, NULL, "" };
	snprintf(qc->what, sizeof qc->what, "%s: tensor '%s'", r->path, t->name);
	if (t->dtype == nt) { /* same type: the bytes as they are */
		if (!src) {
			if (t->nbytes > SIZE_MAX || !(qc->owned = malloc(t->nbytes ? (size_t)t->nbytes : 1)))
				return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", qc->what);
			if ((s = muse_reader_read(r, p->src, qc->owned, err)))
				return s;
			src = qc->owned;
		}
		return muse_qs_submit_bytes(qs, src, (size_t)t->nbytes, bytes_sink, qc, err);
	}
	const muse_dtype_traits *dt = muse_dtype_info(nt);
	if (dt->is_quant && !m) {
		muse_qs_job job = { .type = nt, .nrows = nrows, .n_per_row = npr, .rows = view_rows, .rows_ctx = qc,
				    .importance = p->im ? p->im->w : NULL, .rows_per_mat = rows_per_mat,
				    .check_finite = true, .sink = stream_sink, .sink_ctx = qc, .what = qc->what };
		return muse_qs_submit(qs, &job, err);
	}
	if (dt->is_quant) {
		/* each worker reads its rows from the file with pread into a buffer of its own (F32 used as read,
		 * other types converted there); the session's writer writes while the workers go on. Matrix m
		 * (expert) takes importance row m: a legacy entry is one flat row of ne0*n_expert values, the same
		 * layout. */
		muse_qs_file qf = { m->fd, t->offset, t->dtype, m->path };
		muse_fd_advise_seq(qf.fd, t->offset, t->nbytes);
		muse_qs_job job = { .type = nt, .nrows = nrows, .n_per_row = npr, .file = &qf,
				    .importance = p->im ? p->im->w : NULL, .rows_per_mat = rows_per_mat,
				    .check_finite = true, .sink = stream_sink, .sink_ctx = qc, .what = qc->what };
		return muse_qs_submit(qs, &job, err);
	}
	/* a float type: written here, after everything queued before it */
	if ((s = muse_qs_drain(qs, err)))
		return s;
	const uint64_t out_row = (uint64_t)npr / dt->blck * dt->block_bytes;
	int64_t slab = npr > 0 ? (int64_t)(SLAB_BYTES / sizeof(float) / (uint64_t)npr) : 1;
	if (slab < 1)
		slab = 1;
	size_t need = (size_t)(slab < nrows ? slab : nrows) * (size_t)npr;
	if (need > *stage_cap) {
		float *ns = realloc(*stage, need * sizeof(float));
		if (!ns)
			return muse_err_set(err, MUSE_ERR_NOMEM, "tensor '%s': out of memory", t->name);
		*stage = ns;
		*stage_cap = need;
	}
	size_t qneed = (size_t)(slab < nrows ? slab : nrows) * (size_t)out_row;
	if (qneed > *qcap) {
		uint8_t *nq = realloc(*qbuf, qneed ? qneed : 1);
		if (!nq)
			return muse_err_set(err, MUSE_ERR_NOMEM, "tensor '%s': out of memory", t->name);
		*qbuf = nq;
		*qcap = qneed;
	}
	const uint64_t src_row = t->nbytes / (uint64_t)(nrows ? nrows : 1);
	for (int64_t r0 = 0; r0 < nrows;) {
		int64_t nr = slab < nrows - r0 ? slab : nrows - r0;
		if (!src) { /* a computed tensor: its rows straight into F32 (errors name the source) */
			if ((s = view_rows(qc, r0, nr, *stage, err)))
				return s;
		} else if ((s = to_f32(t, src, npr, r0, nr, *stage, err))) {
			muse_err_prefix(err, "%s: tensor '%s'", r->path, t->name);
			return s;
		}
		size_t n = (size_t)(nr * npr);
		for (size_t k = 0; k < n; k++)
			if (!isfinite((*stage)[k])) {
				uint64_t flat = (uint64_t)r0 * (uint64_t)npr + k;
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': element %" PRIu64 " (row %" PRIu64 ") is %g; cannot quantize "
						    "non-finite weights", r->path, t->name, flat, flat / (uint64_t)npr,
						    (double)(*stage)[k]);
			}
		if ((s = muse_dtype_convert(nt, *qbuf, MUSE_DT_F32, *stage, n, err)))
			return s;
		if (nt == MUSE_DT_F16 || nt == MUSE_DT_BF16)
			for (size_t k = 0; k < n; k++) {
				uint16_t h;
				memcpy(&h, *qbuf + 2 * k, 2);
				uint16_t e = nt == MUSE_DT_F16 ? (h & 0x7c00) != 0x7c00 : (h & 0x7f80) != 0x7f80;
				if (!e)
					return muse_err_set(err, MUSE_ERR_FORMAT,
							    "%s: tensor '%s': element %" PRIu64 " (%g) overflows %s", r->path,
							    t->name, (uint64_t)r0 * (uint64_t)npr + k, (double)(*stage)[k],
							    muse_dtype_name(nt));
			}
		if ((s = muse_gguf_writer_write(w, *qbuf, (size_t)nr * (size_t)out_row, err)))
			return s;
		muse_progress_add(pg, (uint64_t)nr * src_row);
		r0 += nr;
	}
	if (m)
		muse_map_release(m, t->offset, t->nbytes);
	return MUSE_OK;
}

/* The names llama-quantize gives --keep-split outputs: OUT without ".gguf", then -%05d-of-%05d.gguf. */
static void split_name(const char *out, uint32_t i, uint32_t n, char *buf, size_t cap)
{
	size_t len = strlen(out);
	/* sic: llama-quantize cuts the last five bytes whenever ".gguf" occurs anywhere in the name */
	if (strstr(out, ".gguf") && len >= 5)
		len -= 5;
	snprintf(buf, cap, "%.*s-%05u-of-%05u.gguf", (int)len, out, i + 1, n);
}

static int run_quantize(const qopts *o)
{
	muse_err err = { 0 };
	muse_reader *r = NULL;
	muse_imatrix *im = NULL;
	muse_mix *mix = NULL;
	qplan *plan = NULL;
	muse_mix_choice *choice = NULL;
	muse_mix_tensor *mts = NULL;
	const char **names = NULL;
	uint32_t *files = NULL;
	uint64_t *offs = NULL;
	size_t *perm = NULL;
	muse_mix_rule *rules = NULL;
	char **patterns = NULL;
	muse_gguf_writer *w = NULL;
	muse_qs_session *qs = NULL;
	qstream_ctx *qcs = NULL;
	char **renamed = NULL; /* --prune-layers: the output names that differ from the input's */
	const char **rule_v = NULL;
	size_t n_rules = 0;
	char **rule_bufs = NULL; /* the --tensor-type-file contents rule_v points into */
	uint32_t *shard_of = NULL;
	muse_meta meta;
	float *stage = NULL;
	uint8_t *qbuf = NULL;
	size_t stage_cap = 0, qcap = 0;
	int rc = MUSE_EXIT_FAIL;
	muse_meta_init(&meta);

	const char *canon = NULL;
	muse_ftype ft = muse_ftype_from_name(o->type, &canon);
	if (ft == MUSE_FTYPE_INVALID) {
		/* the contract: an unknown type is bad input (exit 1), not a usage slip */
		fprintf(stderr, "muse: error: quantize: unknown --type '%s' (one of:", o->type);
		for (const char *const *n = muse_ftype_names; *n; n++)
			fprintf(stderr, " %s", *n);
		fprintf(stderr, ")\n");
		return MUSE_EXIT_FAIL;
	}
	muse_mix_opts mo = { .ftype = ft, .pure = o->pure, .leave_output = o->leave_output,
			     .output_type = MUSE_DT_INVALID, .token_embd_type = MUSE_DT_INVALID };
	if (o->out_type && parse_ggml_type("--output-tensor-type", o->out_type, &mo.output_type, &err))
		goto fail;
	if (o->embd_type && parse_ggml_type("--token-embedding-type", o->embd_type, &mo.token_embd_type, &err))
		goto fail;
	/* the --tensor-type rules, then each --tensor-type-file's (NAME=TYPE separated by white space) */
	if (collect_rules(o, &rule_v, &n_rules, &rule_bufs, &err))
		goto fail;
	if (n_rules) {
		rules = calloc(n_rules, sizeof *rules);
		patterns = calloc(n_rules, sizeof *patterns);
		if (!rules || !patterns) {
			muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < n_rules; i++) {
			const char *a = rule_v[i], *eq = strchr(a, '=');
			if (!eq || eq == a || !eq[1]) {
				muse_err_set(&err, MUSE_ERR_USAGE, "--tensor-type '%s': want REGEX=TYPE", a);
				goto fail;
			}
			if (!(patterns[i] = strndup(a, (size_t)(eq - a)))) {
				muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
				goto fail;
			}
			/* llama-quantize lower-cases the pattern (tensor names are lower case) */
			for (char *c = patterns[i]; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			rules[i].pattern = patterns[i];
			if (parse_ggml_type("--tensor-type", eq + 1, &rules[i].type, &err))
				goto fail;
		}
		mo.rules = rules;
		mo.n_rules = n_rules;
	}
	if (!o->dry_run && same_file(o->in, o->out)) {
		muse_err_set(&err, MUSE_ERR_IO, "%s: input and output are the same file", o->out);
		goto fail;
	}

	/* An HF checkpoint directory is read through its GGUF view: the tensors convert would write, computed as read. */
	if (muse_is_dir(o->in)) {
		muse_hf_view_opts vo = { .want = MUSE_DT_INVALID, .quiet = true };
		if (muse_hf_view_open(o->in, &vo, &r, &err)) {
			muse_cli_hint_unmapped(o->in, &err, "llama.cpp's convert_hf_to_gguf.py may convert it, and muse "
					       "quantize --type takes a GGUF of any architecture");
			goto fail;
		}
	} else if (muse_reader_open(o->in, &r, &err)) {
		goto fail;
	}
	if (strcmp(r->format, "gguf") && strcmp(r->format, "hf")) {
		muse_err_set(&err, MUSE_ERR_UNSUPPORTED,
			     "%s: quantize reads GGUF files and HF checkpoint directories, not a lone %s file "
			     "(muse convert its directory, or pass the directory)", o->in, r->format);
		goto fail;
	}
	muse_mix_model mm;
	if (muse_mix_model_from_meta(&r->meta, o->in, &mm, &err))
		goto fail;
	if (!mm.n_layer && !o->pure) {
		muse_err_set(&err, MUSE_ERR_FORMAT, "%s: key '%s.block_count' missing; the %s mix needs the layer count",
			     o->in, mm.arch, canon);
		goto fail;
	}
	if (o->imatrix) {
		if (muse_imatrix_read(o->imatrix, &im, &err))
			goto fail;
		/* --exclude-weights, then --include-weights: name substrings, as llama-quantize's prepare_imatrix; an
		 * imatrix left empty is no imatrix (no quantize.imatrix.* keys), as there */
		if (o->exclude_w.n)
			muse_imatrix_keep(im, keep_unexcluded, (void *)&o->exclude_w);
		if (o->include_w.n)
			muse_imatrix_keep(im, keep_included, (void *)&o->include_w);
		if (!im->n) {
			muse_imatrix_free(im);
			im = NULL;
		}
		mo.has_imatrix = im != NULL;
	}
	if (muse_mix_create(&mm, &mo, &mix, &err))
		goto fail;

	size_t n = r->n_tensors;
	plan = calloc(n ? n : 1, sizeof *plan);
	choice = calloc(n ? n : 1, sizeof *choice);
	mts = calloc(n ? n : 1, sizeof *mts);
	names = calloc(n ? n : 1, sizeof *names);
	files = calloc(n ? n : 1, sizeof *files);
	offs = calloc(n ? n : 1, sizeof *offs);
	perm = calloc(n ? n : 1, sizeof *perm);
	if (!plan || !choice || !mts || !names || !files || !offs || !perm) {
		muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* an HF directory's view is one GGUF (its shards are not GGUF shards): one input file, in the view's order */
	const bool view = !strcmp(r->format, "hf");
	for (size_t i = 0; i < n; i++) {
		names[i] = r->tensors[i].name;
		files[i] = view ? 0 : r->tensors[i].file;
		offs[i] = view ? i : r->tensors[i].offset;
	}
	bool keep_split = o->keep_split;
	if (muse_mix_order(names, files, offs, n, keep_split, perm, &err))
		goto fail;
	for (size_t k = 0; k < n; k++)
		if (describe(r, perm[k], &plan[k], &err))
			goto fail;
	/* --prune-layers: the pruned layers' tensors dropped, the layers after them renumbered */
	size_t n_prune = 0;
	int n_kept_layers = 0;
	long *prune = NULL;
	if (o->prune) {
		if (parse_prune(o->prune, &prune, &n_prune, &err))
			goto fail;
		if (!(renamed = calloc(n ? n : 1, sizeof *renamed))) {
			free(prune);
			muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		size_t kept = 0;
		muse_status ps = prune_plan(plan, n, prune, n_prune, renamed, &kept, &n_kept_layers, &err);
		free(prune);
		if (ps)
			goto fail;
		n = kept;
	}
	for (size_t k = 0; k < n; k++)
		mts[k] = plan[k].mt;
	size_t n_fallback = 0;
	if (muse_mix_plan(mix, mts, n, choice, &n_fallback, &err)) {
		muse_err_prefix(&err, "%s", o->in);
		goto fail;
	}
	for (size_t k = 0; k < n; k++)
		plan[k].ch = choice[k];

	/* the plan only: what llama-quantize --dry-run lists (no imatrix or quantizer checks) */
	if (o->dry_run) {
		for (size_t k = 0; k < n; k++)
			printf("%s\t%s\t%s\n", plan[k].mt.name, muse_dtype_name(plan[k].mt.type),
			       muse_dtype_name(plan[k].ch.type));
		if (n_fallback)
			fprintf(stderr, "muse: %zu of %zu tensors needed a fallback type\n", n_fallback, n);
		rc = MUSE_EXIT_OK;
		goto done;
	}

	if (check_plan(r, o, ft, im, plan, n, &err))
		goto fail;
	uint64_t total_in = 0, total_out = 0, n_elem = 0;
	for (size_t k = 0; k < n; k++) {
		const muse_tensor *t = &r->tensors[plan[k].src];
		uint64_t ob = 0;
		muse_dtype_nbytes(plan[k].ch.type, t->nelements, &ob);
		total_in += t->nbytes;
		total_out += ob;
		n_elem += t->nelements;
	}
	if (build_meta(r, o, ft, im, mm.arch, n_prune ? n_kept_layers : -1, &meta, &err))
		goto fail;
	/*
	 * --keep-split: one output shard per input shard, with llama-quantize's names and split.* keys, each
	 * tensor in its source's shard. One input file: one output file named like a shard, without split keys,
	 * as llama-quantize does.
	 */
	muse_gguf_write_opts wo = { 0 };
	uint32_t n_out = keep_split && !view ? r->n_files : 1;
	char pbuf[4200];
	if (keep_split)
		split_name(o->out, 0, n_out, pbuf, sizeof pbuf);
	else
		snprintf(pbuf, sizeof pbuf, "%s", o->out);
	if (n_out > 1) {
		/* every tensor in the shard its source is in, as llama-quantize --keep-split does, however the input
		 * was split (by tensor count or by size, metadata alone in the first shard) */
		if (!(shard_of = calloc(n ? n : 1, sizeof *shard_of))) {
			muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		for (size_t k = 0; k < n; k++)
			shard_of[k] = r->tensors[plan[k].src].file;
		wo.shard_of = shard_of;
		wo.n_shards = n_out;
		/* the writer names shards "<OUT without .gguf>-%05d-of-%05d.gguf", llama-quantize's names */
		snprintf(pbuf, sizeof pbuf, "%s", o->out);
	}
	if (muse_gguf_writer_create(pbuf, n_out > 1 ? &wo : NULL, &w, &err) || muse_gguf_writer_set_meta(w, &meta, &err))
		goto fail;
	for (size_t k = 0; k < n; k++)
		if (muse_gguf_writer_add_tensor(w, plan[k].mt.name, plan[k].ch.type, plan[k].ndim, plan[k].shape, &err))
			goto fail;
	if (muse_gguf_writer_begin(w, &err))
		goto fail;
	if (muse_gguf_writer_n_files(w) != n_out) {
		muse_err_set(&err, MUSE_ERR_UNSUPPORTED, "%s: --keep-split: %u output shards for %u input shards", o->in,
			     muse_gguf_writer_n_files(w), n_out);
		goto fail;
	}

	muse_progress pg;
	muse_blas_threads_idle(); /* no BLAS below: OpenBLAS's idle threads would spin through the first 0.1 s */
	/* one session for the whole model: its workers go from tensor to tensor while its writer writes */
	if (!(qcs = calloc(n ? n : 1, sizeof *qcs))) {
		muse_err_set(&err, MUSE_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (muse_qs_open((int)o->threads, &qs, &err))
		goto fail;
	muse_progress_start(&pg, "quantize", total_in, o->quiet);
	for (size_t k = 0; k < n; k++) {
		if (muse_interrupted()) {
			muse_err_set(&err, MUSE_ERR_INTERRUPTED, "interrupted");
			goto fail;
		}
		if (quantize_tensor(r, &plan[k], w, qs, &qcs[k], &stage, &stage_cap, &qbuf, &qcap, &pg, &err))
			goto fail;
	}
	if (muse_qs_drain(qs, &err) || muse_gguf_writer_finish(w, &err))
		goto fail;
	muse_progress_end(&pg);
	if (!o->quiet) {
		char a[32], b[32];
		fprintf(stderr, "muse: wrote %s: %zu tensors as %s, %s -> %s (%.2f bits per weight)", muse_gguf_writer_file_path(w, 0), n, canon,
			muse_fmt_bytes(total_in, a, sizeof a), muse_fmt_bytes(total_out, b, sizeof b),
			n_elem ? (double)total_out * 8.0 / (double)n_elem : 0.0);
		if (n_fallback)
			fprintf(stderr, "; %zu of %zu tensors needed a fallback type (rows not whole blocks)", n_fallback, n);
		fprintf(stderr, "\n");
	}
	rc = MUSE_EXIT_OK;
	goto done;
fail:
	rc = muse_cli_fail(&err);
done:
	free(rule_v);
	for (size_t i = 0; rule_bufs && i < o->type_files.n; i++)
		free(rule_bufs[i]);
	free(rule_bufs);
	muse_qs_close(qs); /* before the writer and the reader its sinks use */
	for (size_t k = 0; qcs && k < n; k++)
		free(qcs[k].owned);
	free(qcs);
	for (size_t i = 0; renamed && i < r->n_tensors; i++)
		free(renamed[i]);
	free(renamed);
	free(shard_of);
	muse_gguf_writer_free(w);
	muse_meta_free(&meta);
	free(stage);
	free(qbuf);
	free(plan);
	free(choice);
	free(mts);
	free(names);
	free(files);
	free(offs);
	free(perm);
	for (size_t i = 0; patterns && i < n_rules; i++)
		free(patterns[i]);
	free(patterns);
	free(rules);
	muse_mix_free(mix);
	muse_imatrix_free(im);
	muse_reader_free(r);
	return rc;
}

int cmd_quantize(int argc, const char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--method") || !strncmp(argv[i], "--method=", 9))
			return cmd_quantize_method(argc, argv);
	}
	qopts o = { .threads = 0 };
	muse_option opts[] = {
		{ MUSE_OPT_STRING, 0, "type", &o.type, "TYPE", "file type as llama-quantize names it: Q4_K_M, Q8_0, IQ4_XS, ..." },
		{ MUSE_OPT_BOOL, 0, "pure", &o.pure, NULL, "one type for every quantized tensor, no mix rules" },
		{ MUSE_OPT_STRING, 0, "imatrix", &o.imatrix, "FILE", "importance matrix (llama.cpp GGUF or legacy .dat)" },
		{ MUSE_OPT_LIST, 0, "tensor-type", &o.rules, "REGEX=TYPE", "tensors whose name matches REGEX get TYPE (first match wins)" },
		{ MUSE_OPT_LIST, 0, "tensor-type-file", &o.type_files, "FILE",
		  "more REGEX=TYPE rules, separated by white space (after the --tensor-type ones)" },
		{ MUSE_OPT_STRING, 0, "output-tensor-type", &o.out_type, "TYPE", "type of output.weight" },
		{ MUSE_OPT_STRING, 0, "token-embedding-type", &o.embd_type, "TYPE", "type of token_embd.weight" },
		{ MUSE_OPT_BOOL, 0, "leave-output-tensor", &o.leave_output, NULL, "keep output.weight as it is" },
		{ MUSE_OPT_BOOL, 0, "allow-requantize", &o.allow_requantize, NULL, "dequantize quantized tensors and quantize them again" },
		{ MUSE_OPT_BOOL, 0, "keep-split", &o.keep_split, NULL, "write one output shard per input shard" },
		{ MUSE_OPT_LIST, 0, "include-weights", &o.include_w, "NAME",
		  "use the imatrix only for tensors whose name contains NAME (repeatable)" },
		{ MUSE_OPT_LIST, 0, "exclude-weights", &o.exclude_w, "NAME",
		  "do not use the imatrix for tensors whose name contains NAME (repeatable)" },
		{ MUSE_OPT_STRING, 0, "prune-layers", &o.prune, "L0,L1,...",
		  "drop these layers and renumber the ones after them (block_count follows)" },
		{ MUSE_OPT_LIST, 0, "override-kv", &o.overrides, "KEY=TYPE:VALUE",
		  "set a metadata key in the output (TYPE: int, float, bool, str), as llama-quantize" },
		{ MUSE_OPT_INT, 0, "threads", &o.threads, "N", "quantizer threads (default: all cores)" },
		{ MUSE_OPT_BOOL, 0, "dry-run", &o.dry_run, NULL, "print each tensor's name, type and new type; write nothing" },
		{ MUSE_OPT_BOOL, 'q', "quiet", &o.quiet, NULL, "no progress display" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, quantize_usage);
	int rc;
	if (n == MUSE_PARSE_HELP) {
		rc = MUSE_EXIT_OK;
	} else if (n < 0) {
		rc = MUSE_EXIT_USAGE;
	} else if (n != 2 && !(o.dry_run && n == 1)) {
		fprintf(stderr, "muse: error: quantize: expected IN and OUT, got %d arguments\n", n);
		rc = MUSE_EXIT_USAGE;
	} else if (!o.type) {
		fprintf(stderr, "muse: error: quantize: --type TYPE is required (or --method for AWQ/GPTQ/RTN)\n");
		rc = MUSE_EXIT_USAGE;
	} else if (o.include_w.n && o.exclude_w.n) {
		fprintf(stderr, "muse: error: quantize: --include-weights and --exclude-weights exclude each other\n");
		rc = MUSE_EXIT_USAGE;
	} else if (o.threads < 0 || o.threads > 4096) {
		fprintf(stderr, "muse: error: quantize: --threads %ld is not in 0..4096\n", o.threads);
		rc = MUSE_EXIT_USAGE;
	} else {
		o.in = argv[0];
		o.out = n == 2 ? argv[1] : "";
		rc = run_quantize(&o);
	}
	muse_strlist_free(&o.rules);
	muse_strlist_free(&o.overrides);
	muse_strlist_free(&o.type_files);
	muse_strlist_free(&o.include_w);
	muse_strlist_free(&o.exclude_w);
	return rc;
}
