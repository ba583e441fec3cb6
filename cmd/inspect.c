/* inspect.c: `muse inspect PATH [--json]`: format, metadata summary, tensor table, totals by dtype. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "../formats/hf_config.h"
#include "../formats/reader.h"
#include "../lib/utf8.h"
#include "cmds.h"
#include "options.h"

static const char *const inspect_usage[] = {
	"muse inspect PATH [--json] [--no-tensors]",
	NULL,
};

static void print_str(FILE *out, const char *s, uint64_t len, uint64_t max)
{
	fputc('"', out);
	for (uint64_t i = 0; i < len && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
	if (len > max)
		fprintf(out, "... (%" PRIu64 " bytes)", len);
}

static void print_scalar(FILE *out, muse_kv_type t, const void *p)
{
	switch (t) {
	case MUSE_KV_U8: fprintf(out, "%u", *(const uint8_t *)p); break;
	case MUSE_KV_I8: fprintf(out, "%d", *(const int8_t *)p); break;
	case MUSE_KV_U16: fprintf(out, "%u", *(const uint16_t *)p); break;
	case MUSE_KV_I16: fprintf(out, "%d", *(const int16_t *)p); break;
	case MUSE_KV_U32: fprintf(out, "%u", *(const uint32_t *)p); break;
	case MUSE_KV_I32: fprintf(out, "%d", *(const int32_t *)p); break;
	case MUSE_KV_U64: fprintf(out, "%" PRIu64, *(const uint64_t *)p); break;
	case MUSE_KV_I64: fprintf(out, "%" PRId64, *(const int64_t *)p); break;
	case MUSE_KV_F32: fprintf(out, "%.9g", *(const float *)p); break;
	case MUSE_KV_F64: fprintf(out, "%.17g", *(const double *)p); break;
	case MUSE_KV_BOOL: fputs(*(const uint8_t *)p ? "true" : "false", out); break;
	default: fputs("?", out);
	}
}

static void print_kv(FILE *out, const muse_kv *kv)
{
	fprintf(out, "  %-40s ", kv->key);
	switch (kv->type) {
	case MUSE_KV_STRING:
		fputs("str  ", out);
		print_str(out, kv->v.s.ptr, kv->v.s.len, 120);
		break;
	case MUSE_KV_ARRAY: {
		fprintf(out, "arr[%s × %" PRIu64 "] ", muse_kv_type_name(kv->arr_type), kv->n);
		uint64_t show = kv->n < 6 ? kv->n : 6;
		size_t esz = muse_kv_type_size(kv->arr_type);
		for (uint64_t i = 0; i < show; i++) {
			if (i)
				fputs(", ", out);
			if (kv->arr_type == MUSE_KV_STRING) {
				const muse_str *s = (const muse_str *)kv->arr + i;
				print_str(out, s->ptr, s->len, 40);
			} else {
				print_scalar(out, kv->arr_type, (const uint8_t *)kv->arr + i * esz);
			}
		}
		if (kv->n > show)
			fputs(", ...", out);
		break;
	}
	case MUSE_KV_F32: case MUSE_KV_F64:
		fprintf(out, "%-4s %.9g", muse_kv_type_name(kv->type), kv->v.f);
		break;
	case MUSE_KV_BOOL:
		fprintf(out, "bool %s", kv->v.b ? "true" : "false");
		break;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		fprintf(out, "%-4s %" PRId64, muse_kv_type_name(kv->type), kv->v.i);
		break;
	default:
		fprintf(out, "%-4s %" PRIu64, muse_kv_type_name(kv->type), kv->v.u);
	}
	fputc('\n', out);
}

static void shape_str(const muse_tensor *t, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "[");
	for (int d = 0; d < t->ndim && n < cap; d++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
}

static void human(uint64_t n, char *buf, size_t cap)
{
	const char *u[] = { "", "K", "M", "B", "T" };
	double v = (double)n;
	int i = 0;
	while (v >= 1000 && i < 4) {
		v /= 1000;
		i++;
	}
	snprintf(buf, cap, i ? "%.2f%s" : "%.0f%s", v, u[i]);
}

typedef struct dtype_total {
	uint64_t count, bytes, elements;
} dtype_total;

typedef struct model_totals {
	dtype_total by_dtype[MUSE_DT_COUNT];
	uint64_t params, bytes;
	uint64_t int_elements, int_tensors; /* integer/bool tensors: buffers (position_ids), packed weights, indices */
} model_totals;

/*
 * Parameters as transformers' num_parameters() counts them: float (and GGUF block) tensors only. An
 * integer tensor cannot be a torch Parameter; it is a buffer such as BERT's I64 position_ids, or packed
 * GPTQ/AWQ words, so it is reported beside the count, not in it.
 */
static void totals(const muse_reader *r, model_totals *m)
{
	memset(m, 0, sizeof *m);
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		const muse_dtype_traits *dt = muse_dtype_info(t->dtype);
		m->by_dtype[t->dtype].count++;
		m->by_dtype[t->dtype].bytes += t->nbytes;
		m->by_dtype[t->dtype].elements += t->nelements;
		m->bytes += t->nbytes;
		if (dt && dt->is_int) {
			m->int_elements += t->nelements;
			m->int_tensors++;
		} else {
			m->params += t->nelements;
		}
	}
}

static bool is_int_dtype(int d)
{
	const muse_dtype_traits *dt = muse_dtype_info((muse_dtype)d);
	return dt && dt->is_int;
}

/* The model's architecture: config.json's class and model_type for an HF directory, general.architecture in GGUF. */
typedef struct arch_info {
	char cls[128], model_type[64];
	bool mapped; /* muse's tables know the HF class */
} arch_info;

static void find_arch(const muse_reader *r, const char *arg, arch_info *a)
{
	struct stat st;
	memset(a, 0, sizeof *a);
	/* arg, what the user named: the reader's path of a one-file directory is its model.safetensors */
	if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
		const muse_arch *m = NULL;
		muse_err ignored = { 0 }; /* no or bad config.json: the tensors are still worth showing */
		if (!muse_hf_config_class(arg, a->cls, sizeof a->cls, a->model_type, sizeof a->model_type, &m,
					  &ignored))
			a->mapped = m != NULL;
		return;
	}
	const char *g = muse_meta_get_str(&r->meta, "general.architecture");
	if (g)
		snprintf(a->cls, sizeof a->cls, "%s", g);
}

static int print_text(const muse_reader *r, const char *arg, bool tensors)
{
	arch_info arch;
	find_arch(r, arg, &arch);
	printf("path:       %s\n", r->path);
	printf("format:     %s", r->format);
	if (r->version)
		printf(" v%u", r->version);
	if (r->alignment)
		printf(" (alignment %u)", r->alignment);
	printf("\n");
	if (arch.cls[0] && arch.model_type[0])
		printf("architecture: %s (model_type %s%s)\n", arch.cls, arch.model_type,
		       arch.mapped ? "" : "; not in muse's architecture tables");
	else if (arch.cls[0])
		printf("architecture: %s\n", arch.cls);
	printf("files:      %u\n", r->n_files);
	for (uint32_t i = 0; i < r->n_files && r->n_files > 1; i++)
		printf("  [%u] %s (%" PRIu64 " bytes)\n", i, r->files[i].path, r->files[i].size);
	printf("metadata:   %zu keys\n", r->meta.n);
	for (size_t i = 0; i < r->meta.n; i++)
		print_kv(stdout, &r->meta.kv[i]);
	printf("tensors:    %zu\n", r->n_tensors);
	if (tensors && r->n_tensors) {
		/* columns as wide as their longest entry: a fixed 48 let long names push the rest out of line */
		int wn = 4, wd = 5, ws = 5;
		char shp[256];
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			int ln = (int)strlen(t->name), ld = (int)strlen(muse_dtype_name(t->dtype));
			shape_str(t, shp, sizeof shp);
			int ls = (int)strlen(shp);
			wn = ln > wn ? ln : wn;
			wd = ld > wd ? ld : wd;
			ws = ls > ws ? ls : ws;
		}
		printf("  %-*s %-*s %-*s %14s %14s\n", wn, "name", wd, "dtype", ws, "shape", "bytes", "offset");
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			shape_str(t, shp, sizeof shp);
			printf("  %-*s %-*s %-*s %14" PRIu64 " %14" PRIu64 "%s\n", wn, t->name, wd,
			       muse_dtype_name(t->dtype), ws, shp, t->nbytes, t->offset, t->strided ? " (strided view)" : "");
		}
	}
	model_totals m;
	totals(r, &m);
	printf("totals by dtype:\n");
	for (int d = 1; d < MUSE_DT_COUNT; d++) {
		const dtype_total *tot = &m.by_dtype[d];
		if (!tot->count)
			continue;
		char hp[32];
		human(tot->elements, hp, sizeof hp);
		printf("  %-8s %8" PRIu64 " tensors %16" PRIu64 " bytes %14" PRIu64 " %s (%s)\n",
		       muse_dtype_name((muse_dtype)d), tot->count, tot->bytes, tot->elements,
		       is_int_dtype(d) ? "elements, not parameters" : "params", hp);
	}
	char hp[32];
	human(m.params, hp, sizeof hp);
	printf("parameters: %" PRIu64 " (%s)", m.params, hp);
	if (m.int_tensors)
		printf(", not counting %" PRIu64 " elements in %" PRIu64 " integer tensor%s (buffers such as "
		       "position_ids, packed weights)", m.int_elements, m.int_tensors, m.int_tensors == 1 ? "" : "s");
	printf("\nbytes:      %" PRIu64 "\n", m.bytes);
	return 0;
}

/*
 * JSON output is streamed by hand: a tree library costs more than the reader
 * itself at 10^5 tensors. Integers are printed exactly (u64 too); floats with
 * 17 significant digits; non-finite floats as NaN/Infinity/-Infinity, as
 * Python's json module writes and reads them. Strings with invalid UTF-8 or NUL
 * bytes get U+FFFD (exact bytes: use the unit tests or the format's own tools).
 */
static void jstr(FILE *o, const char *s, uint64_t len)
{
	char *clean = muse_utf8_sanitize(s, (size_t)len);
	const unsigned char *p = (const unsigned char *)(clean ? clean : "");
	fputc('"', o);
	for (; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", o); break;
		case '\\': fputs("\\\\", o); break;
		case '\n': fputs("\\n", o); break;
		case '\r': fputs("\\r", o); break;
		case '\t': fputs("\\t", o); break;
		default:
			if (*p < 0x20)
				fprintf(o, "\\u%04x", *p);
			else
				fputc(*p, o);
		}
	}
	fputc('"', o);
	free(clean);
}

static void jreal(FILE *o, double v)
{
	if (isnan(v))
		fputs("NaN", o);
	else if (isinf(v))
		fputs(v > 0 ? "Infinity" : "-Infinity", o);
	else if (v == (double)(int64_t)v && fabs(v) < 1e15)
		fprintf(o, "%.1f", v); /* keep it a real for readers that care about the type */
	else
		fprintf(o, "%.17g", v);
}

static void jscalar(FILE *o, muse_kv_type t, const void *p)
{
	switch (t) {
	case MUSE_KV_F32: jreal(o, *(const float *)p); break;
	case MUSE_KV_F64: jreal(o, *(const double *)p); break;
	default: print_scalar(o, t, p);
	}
}

static void jkv(FILE *o, const muse_kv *kv)
{
	fprintf(o, "{\"type\": \"%s\", ", muse_kv_type_name(kv->type));
	switch (kv->type) {
	case MUSE_KV_STRING:
		fputs("\"value\": ", o);
		jstr(o, kv->v.s.ptr, kv->v.s.len);
		break;
	case MUSE_KV_ARRAY: {
		fprintf(o, "\"element_type\": \"%s\", \"value\": [", muse_kv_type_name(kv->arr_type));
		size_t esz = muse_kv_type_size(kv->arr_type);
		for (uint64_t i = 0; i < kv->n; i++) {
			if (i)
				fputs(", ", o);
			if (kv->arr_type == MUSE_KV_STRING) {
				const muse_str *s = (const muse_str *)kv->arr + i;
				jstr(o, s->ptr, s->len);
			} else {
				jscalar(o, kv->arr_type, (const uint8_t *)kv->arr + i * esz);
			}
		}
		fputc(']', o);
		break;
	}
	case MUSE_KV_F32: case MUSE_KV_F64:
		fputs("\"value\": ", o);
		jreal(o, kv->v.f);
		break;
	case MUSE_KV_BOOL:
		fprintf(o, "\"value\": %s", kv->v.b ? "true" : "false");
		break;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		fprintf(o, "\"value\": %" PRId64, kv->v.i);
		break;
	default:
		fprintf(o, "\"value\": %" PRIu64, kv->v.u);
	}
	fputc('}', o);
}

static int print_json(const muse_reader *r, const char *arg, bool tensors)
{
	FILE *o = stdout;
	arch_info arch;
	find_arch(r, arg, &arch);
	fputs("{\n \"path\": ", o);
	jstr(o, r->path, strlen(r->path));
	fprintf(o, ",\n \"format\": \"%s\"", r->format);
	if (arch.cls[0]) {
		fputs(",\n \"architecture\": ", o);
		jstr(o, arch.cls, strlen(arch.cls));
	}
	if (arch.model_type[0]) {
		fputs(",\n \"model_type\": ", o);
		jstr(o, arch.model_type, strlen(arch.model_type));
	}
	if (r->version)
		fprintf(o, ",\n \"version\": %u", r->version);
	if (r->alignment)
		fprintf(o, ",\n \"alignment\": %u", r->alignment);
	fputs(",\n \"files\": [", o);
	for (uint32_t i = 0; i < r->n_files; i++) {
		fputs(i ? ", {\"path\": " : "{\"path\": ", o);
		jstr(o, r->files[i].path, strlen(r->files[i].path));
		fprintf(o, ", \"bytes\": %" PRIu64 "}", r->files[i].size);
	}
	fputs("],\n \"metadata\": {", o);
	for (size_t i = 0; i < r->meta.n; i++) {
		fputs(i ? ",\n  " : "\n  ", o);
		jstr(o, r->meta.kv[i].key, strlen(r->meta.kv[i].key));
		fputs(": ", o);
		jkv(o, &r->meta.kv[i]);
	}
	fputs(r->meta.n ? "\n },\n" : "},\n", o);
	if (tensors) {
		fputs(" \"tensors\": [", o);
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", o);
			jstr(o, t->name, strlen(t->name));
			fprintf(o, ", \"dtype\": \"%s\", \"shape\": [", muse_dtype_name(t->dtype));
			for (int d = 0; d < t->ndim; d++)
				fprintf(o, d ? ", %" PRIu64 : "%" PRIu64, t->shape[d]);
			fprintf(o, "], \"nbytes\": %" PRIu64 ", \"offset\": %" PRIu64 ", \"file\": %u%s}", t->nbytes,
				t->offset, t->file, t->strided ? ", \"strided\": true" : "");
		}
		fputs(r->n_tensors ? "\n ],\n" : "],\n", o);
	}
	model_totals m;
	totals(r, &m);
	fputs(" \"totals\": {", o);
	bool first = true;
	for (int d = 1; d < MUSE_DT_COUNT; d++) {
		const dtype_total *tot = &m.by_dtype[d];
		if (!tot->count)
			continue;
		fprintf(o, "%s\"%s\": {\"tensors\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"elements\": %" PRIu64
			", \"parameters\": %" PRIu64 "}", first ? "" : ", ", muse_dtype_name((muse_dtype)d), tot->count,
			tot->bytes, tot->elements, is_int_dtype(d) ? 0 : tot->elements);
		first = false;
	}
	fprintf(o, "},\n \"n_tensors\": %zu,\n \"parameters\": %" PRIu64 ",\n \"integer_elements\": %" PRIu64
		",\n \"bytes\": %" PRIu64 "\n}\n", r->n_tensors, m.params, m.int_elements, m.bytes);
	return 0;
}

int cmd_inspect(int argc, const char **argv)
{
	bool json = false, no_tensors = false;
	muse_option opts[] = {
		{ MUSE_OPT_BOOL, 0, "json", &json, NULL, "print one JSON document for machines" },
		{ MUSE_OPT_BOOL, 0, "no-tensors", &no_tensors, NULL, "omit the per-tensor table" },
		MUSE_OPT_END_ROW,
	};
	int n = muse_parse_options(argc, argv, opts, inspect_usage);
	if (n == MUSE_PARSE_HELP)
		return MUSE_EXIT_OK;
	if (n < 0)
		return MUSE_EXIT_USAGE;
	if (n != 1) {
		fprintf(stderr, "muse: error: inspect: expected one PATH, got %d\n", n);
		muse_usage(stderr, opts, inspect_usage);
		return MUSE_EXIT_USAGE;
	}
	muse_err err = { 0 };
	muse_reader *r = NULL;
	if (muse_reader_open(argv[0], &r, &err))
		return muse_cli_fail(&err);
	int rc = json ? print_json(r, argv[0], !no_tensors) : print_text(r, argv[0], !no_tensors);
	muse_reader_free(r);
	return rc ? MUSE_EXIT_FAIL : MUSE_EXIT_OK;
}
