/* inspect.c: `muse inspect PATH [--json]`: format, metadata summary, tensor table, totals by dtype. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	uint64_t count, bytes, params;
} dtype_total;

static void totals(const muse_reader *r, dtype_total *tot, uint64_t *params, uint64_t *bytes)
{
	memset(tot, 0, sizeof(dtype_total) * MUSE_DT_COUNT);
	*params = *bytes = 0;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		tot[t->dtype].count++;
		tot[t->dtype].bytes += t->nbytes;
		tot[t->dtype].params += t->nelements;
		*params += t->nelements;
		*bytes += t->nbytes;
	}
}

static int print_text(const muse_reader *r, bool tensors)
{
	printf("path:       %s\n", r->path);
	printf("format:     %s", r->format);
	if (r->version)
		printf(" v%u", r->version);
	if (r->alignment)
		printf(" (alignment %u)", r->alignment);
	printf("\n");
	printf("files:      %u\n", r->n_files);
	for (uint32_t i = 0; i < r->n_files && r->n_files > 1; i++)
		printf("  [%u] %s (%" PRIu64 " bytes)\n", i, r->files[i].path, r->files[i].size);
	printf("metadata:   %zu keys\n", r->meta.n);
	for (size_t i = 0; i < r->meta.n; i++)
		print_kv(stdout, &r->meta.kv[i]);
	printf("tensors:    %zu\n", r->n_tensors);
	if (tensors && r->n_tensors) {
		printf("  %-48s %-8s %-24s %14s %14s\n", "name", "dtype", "shape", "bytes", "offset");
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			char shp[256];
			shape_str(t, shp, sizeof shp);
			printf("  %-48s %-8s %-24s %14" PRIu64 " %14" PRIu64 "%s\n", t->name, muse_dtype_name(t->dtype),
			       shp, t->nbytes, t->offset, t->strided ? " (strided view)" : "");
		}
	}
	dtype_total tot[MUSE_DT_COUNT];
	uint64_t params, bytes;
	totals(r, tot, &params, &bytes);
	printf("totals by dtype:\n");
	for (int d = 1; d < MUSE_DT_COUNT; d++) {
		if (!tot[d].count)
			continue;
		char hp[32];
		human(tot[d].params, hp, sizeof hp);
		printf("  %-8s %8" PRIu64 " tensors %16" PRIu64 " bytes %14" PRIu64 " params (%s)\n",
		       muse_dtype_name((muse_dtype)d), tot[d].count, tot[d].bytes, tot[d].params, hp);
	}
	char hp[32];
	human(params, hp, sizeof hp);
	printf("parameters: %" PRIu64 " (%s)\n", params, hp);
	printf("bytes:      %" PRIu64 "\n", bytes);
	return 0;
}

static json_t *jstr(const char *s, uint64_t len)
{
	char *clean = muse_utf8_sanitize(s, len);
	json_t *j = clean ? json_string(clean) : NULL;
	free(clean);
	return j ? j : json_null();
}

static json_t *jscalar(muse_kv_type t, const void *p)
{
	switch (t) {
	case MUSE_KV_U8: return json_integer(*(const uint8_t *)p);
	case MUSE_KV_I8: return json_integer(*(const int8_t *)p);
	case MUSE_KV_U16: return json_integer(*(const uint16_t *)p);
	case MUSE_KV_I16: return json_integer(*(const int16_t *)p);
	case MUSE_KV_U32: return json_integer(*(const uint32_t *)p);
	case MUSE_KV_I32: return json_integer(*(const int32_t *)p);
	case MUSE_KV_U64: {
		uint64_t v = *(const uint64_t *)p;
		return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
	}
	case MUSE_KV_I64: return json_integer(*(const int64_t *)p);
	case MUSE_KV_F32: return json_real(*(const float *)p);
	case MUSE_KV_F64: return json_real(*(const double *)p);
	case MUSE_KV_BOOL: return json_boolean(*(const uint8_t *)p);
	default: return json_null();
	}
}

static json_t *jkv(const muse_kv *kv)
{
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string(muse_kv_type_name(kv->type)));
	switch (kv->type) {
	case MUSE_KV_STRING:
		json_object_set_new(o, "value", jstr(kv->v.s.ptr, kv->v.s.len));
		break;
	case MUSE_KV_ARRAY: {
		json_object_set_new(o, "element_type", json_string(muse_kv_type_name(kv->arr_type)));
		json_t *a = json_array();
		size_t esz = muse_kv_type_size(kv->arr_type);
		for (uint64_t i = 0; i < kv->n; i++) {
			if (kv->arr_type == MUSE_KV_STRING) {
				const muse_str *s = (const muse_str *)kv->arr + i;
				json_array_append_new(a, jstr(s->ptr, s->len));
			} else {
				json_array_append_new(a, jscalar(kv->arr_type, (const uint8_t *)kv->arr + i * esz));
			}
		}
		json_object_set_new(o, "value", a);
		break;
	}
	case MUSE_KV_F32: case MUSE_KV_F64:
		json_object_set_new(o, "value", json_real(kv->v.f));
		break;
	case MUSE_KV_BOOL:
		json_object_set_new(o, "value", json_boolean(kv->v.b));
		break;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		json_object_set_new(o, "value", json_integer(kv->v.i));
		break;
	default:
		json_object_set_new(o, "value", kv->v.u <= INT64_MAX ? json_integer((json_int_t)kv->v.u)
								: json_real((double)kv->v.u));
	}
	return o;
}

static int print_json(const muse_reader *r, bool tensors)
{
	json_t *root = json_object();
	json_object_set_new(root, "path", jstr(r->path, strlen(r->path)));
	json_object_set_new(root, "format", json_string(r->format));
	if (r->version)
		json_object_set_new(root, "version", json_integer(r->version));
	if (r->alignment)
		json_object_set_new(root, "alignment", json_integer(r->alignment));
	json_t *files = json_array();
	for (uint32_t i = 0; i < r->n_files; i++) {
		json_t *f = json_object();
		json_object_set_new(f, "path", jstr(r->files[i].path, strlen(r->files[i].path)));
		json_object_set_new(f, "bytes", json_integer((json_int_t)r->files[i].size));
		json_array_append_new(files, f);
	}
	json_object_set_new(root, "files", files);
	json_t *meta = json_object();
	for (size_t i = 0; i < r->meta.n; i++) {
		char *k = muse_utf8_sanitize(r->meta.kv[i].key, strlen(r->meta.kv[i].key));
		json_object_set_new(meta, k ? k : "?", jkv(&r->meta.kv[i]));
		free(k);
	}
	json_object_set_new(root, "metadata", meta);
	if (tensors) {
		json_t *ts = json_array();
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			json_t *o = json_object();
			json_object_set_new(o, "name", jstr(t->name, strlen(t->name)));
			json_object_set_new(o, "dtype", json_string(muse_dtype_name(t->dtype)));
			json_t *shape = json_array();
			for (int d = 0; d < t->ndim; d++)
				json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
			json_object_set_new(o, "shape", shape);
			json_object_set_new(o, "nbytes", json_integer((json_int_t)t->nbytes));
			json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
			json_object_set_new(o, "file", json_integer(t->file));
			if (t->strided)
				json_object_set_new(o, "strided", json_true());
			json_array_append_new(ts, o);
		}
		json_object_set_new(root, "tensors", ts);
	}
	dtype_total tot[MUSE_DT_COUNT];
	uint64_t params, bytes;
	totals(r, tot, &params, &bytes);
	json_t *td = json_object();
	for (int d = 1; d < MUSE_DT_COUNT; d++) {
		if (!tot[d].count)
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "tensors", json_integer((json_int_t)tot[d].count));
		json_object_set_new(o, "bytes", json_integer((json_int_t)tot[d].bytes));
		json_object_set_new(o, "parameters", json_integer((json_int_t)tot[d].params));
		json_object_set_new(td, muse_dtype_name((muse_dtype)d), o);
	}
	json_object_set_new(root, "totals", td);
	json_object_set_new(root, "n_tensors", json_integer((json_int_t)r->n_tensors));
	json_object_set_new(root, "parameters", json_integer((json_int_t)params));
	json_object_set_new(root, "bytes", json_integer((json_int_t)bytes));
	int rc = json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(root);
	return rc;
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
	int rc = json ? print_json(r, !no_tensors) : print_text(r, !no_tensors);
	muse_reader_free(r);
	return rc ? MUSE_EXIT_FAIL : MUSE_EXIT_OK;
}
