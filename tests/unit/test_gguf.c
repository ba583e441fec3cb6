/* test_gguf.c: GGUF writer -> reader round trips, layout rules, writer refusals, truncation sweep;
 * with "--write SPEC.json OUT.gguf" it is the driver the interop test uses to make muse-written files. */
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../formats/gguf.h"
#include "../../formats/reader.h"
#include "../../lib/mapfile.h"
#include "unit.h"

static char tmpdir[512];

static const char *tpath(const char *name)
{
	static char buf[4][1024];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
	return buf[k];
}

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Number of entries in tmpdir (temp files left behind show up here). */
static int dir_entries(void)
{
	DIR *d = opendir(tmpdir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static void clean_dir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[1200];
		snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
}

/* Deterministic test bytes for tensor i. */
static uint8_t tbyte(size_t i, uint64_t j)
{
	return (uint8_t)(i * 131 + j * 7 + (j >> 8));
}

typedef struct tdecl {
	const char *name;
	muse_dtype dt;
	int ndim;
	uint64_t shape[4];
} tdecl;

/* Writes meta + tensors (data from tbyte) to path; chunk = bytes per write call (0: one call per tensor). */
static muse_status write_file(const char *path, const muse_meta *meta, const tdecl *t, size_t n, size_t chunk,
			      const muse_gguf_write_opts *opts, muse_err *err)
{
	muse_gguf_writer *w = NULL;
	muse_status s = muse_gguf_writer_create(path, opts, &w, err);
	uint8_t *all = NULL;
	if (s)
		return s;
	if (meta && (s = muse_gguf_writer_set_meta(w, meta, err)))
		goto out;
	for (size_t i = 0; i < n; i++)
		if ((s = muse_gguf_writer_add_tensor(w, t[i].name, t[i].dt, t[i].ndim, t[i].shape, err)))
			goto out;
	if ((s = muse_gguf_writer_begin(w, err)))
		goto out;
	/* Concatenate all tensors so chunks can span tensor boundaries. */
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += muse_gguf_writer_tensor_nbytes(w, i);
	all = malloc(total ? total : 1);
	uint64_t k = 0;
	for (size_t i = 0; i < n; i++)
		for (uint64_t j = 0; j < muse_gguf_writer_tensor_nbytes(w, i); j++)
			all[k++] = tbyte(i, j);
	if (chunk == 0) {
		k = 0;
		for (size_t i = 0; i < n && !s; i++) {
			uint64_t nb = muse_gguf_writer_tensor_nbytes(w, i);
			s = muse_gguf_writer_write(w, all + k, nb, err);
			k += nb;
		}
	} else {
		for (k = 0; k < total && !s; k += chunk)
			s = muse_gguf_writer_write(w, all + k, total - k < chunk ? total - k : chunk, err);
	}
	if (s)
		goto out;
	s = muse_gguf_writer_finish(w, err);
out:
	free(all);
	muse_gguf_writer_free(w);
	return s;
}

static int kv_equal(const muse_kv *a, const muse_kv *b)
{
	if (strcmp(a->key, b->key) || a->type != b->type)
		return 0;
	switch (a->type) {
	case MUSE_KV_STRING:
		return a->v.s.len == b->v.s.len && !memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len);
	case MUSE_KV_ARRAY:
		if (a->arr_type != b->arr_type || a->n != b->n)
			return 0;
		if (a->arr_type == MUSE_KV_STRING) {
			const muse_str *x = a->arr, *y = b->arr;
			for (uint64_t i = 0; i < a->n; i++)
				if (x[i].len != y[i].len || memcmp(x[i].ptr, y[i].ptr, x[i].len))
					return 0;
			return 1;
		}
		return !a->n || !memcmp(a->arr, b->arr, a->n * muse_kv_type_size(a->arr_type));
	case MUSE_KV_F32: case MUSE_KV_F64:
		return !memcmp(&a->v.f, &b->v.f, sizeof a->v.f) || (isnan(a->v.f) && isnan(b->v.f));
	case MUSE_KV_BOOL:
		return a->v.b == b->v.b;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		return a->v.i == b->v.i;
	default:
		return a->v.u == b->v.u;
	}
}

static void set_typed(muse_meta *m, const char *key, muse_kv_type t, uint64_t u, int64_t i, double f)
{
	muse_kv *kv = muse_meta_append(m, key);
	kv->type = t;
	kv->n = 1;
	if (t == MUSE_KV_F32 || t == MUSE_KV_F64)
		kv->v.f = f;
	else if (t == MUSE_KV_I8 || t == MUSE_KV_I16 || t == MUSE_KV_I32 || t == MUSE_KV_I64)
		kv->v.i = i;
	else if (t == MUSE_KV_BOOL)
		kv->v.b = u != 0;
	else
		kv->v.u = u;
}

static void build_all_types(muse_meta *m)
{
	muse_meta_init(m);
	muse_meta_set_str(m, "general.architecture", "llama");
	set_typed(m, "t.u8", MUSE_KV_U8, 255, 0, 0);
	set_typed(m, "t.i8", MUSE_KV_I8, 0, -128, 0);
	set_typed(m, "t.u16", MUSE_KV_U16, 65535, 0, 0);
	set_typed(m, "t.i16", MUSE_KV_I16, 0, -32768, 0);
	set_typed(m, "t.u32", MUSE_KV_U32, 4294967295u, 0, 0);
	set_typed(m, "t.i32", MUSE_KV_I32, 0, INT32_MIN, 0);
	set_typed(m, "t.u64", MUSE_KV_U64, UINT64_MAX, 0, 0);
	set_typed(m, "t.i64", MUSE_KV_I64, 0, INT64_MIN, 0);
	set_typed(m, "t.f32", MUSE_KV_F32, 0, 0, (double)1.17549435e-38f);
	set_typed(m, "t.f32nan", MUSE_KV_F32, 0, 0, (double)NAN);
	set_typed(m, "t.f64", MUSE_KV_F64, 0, 0, -4.9406564584124654e-324);
	set_typed(m, "t.f64inf", MUSE_KV_F64, 0, 0, INFINITY);
	set_typed(m, "t.true", MUSE_KV_BOOL, 1, 0, 0);
	set_typed(m, "t.false", MUSE_KV_BOOL, 0, 0, 0);
	muse_meta_set_strn(m, "t.str_nul", "a\0b\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 12);
	muse_meta_set_str(m, "t.str_empty", "");
	muse_meta_set_str(m, "t.ключ.ünïcode", "UTF-8 key");
	static const uint8_t u8[] = { 0, 1, 255 };
	static const int8_t i8[] = { -128, 0, 127 };
	static const uint16_t u16[] = { 0, 65535 };
	static const int16_t i16[] = { -32768, 32767 };
	static const uint32_t u32[] = { 0, 4294967295u, 7 };
	static const int32_t i32[] = { INT32_MIN, -1, INT32_MAX };
	static const uint64_t u64[] = { 0, UINT64_MAX };
	static const int64_t i64[] = { INT64_MIN, INT64_MAX };
	static const float f32[] = { 1.5f, -0.0f, 3.4028235e38f };
	static const double f64[] = { 1e-300, -2.5, 1e300 };
	static const uint8_t bools[] = { 1, 0, 1, 1 };
	muse_meta_set_arr(m, "a.u8", MUSE_KV_U8, u8, 3);
	muse_meta_set_arr(m, "a.i8", MUSE_KV_I8, i8, 3);
	muse_meta_set_arr(m, "a.u16", MUSE_KV_U16, u16, 2);
	muse_meta_set_arr(m, "a.i16", MUSE_KV_I16, i16, 2);
	muse_meta_set_arr(m, "a.u32", MUSE_KV_U32, u32, 3);
	muse_meta_set_arr(m, "a.i32", MUSE_KV_I32, i32, 3);
	muse_meta_set_arr(m, "a.u64", MUSE_KV_U64, u64, 2);
	muse_meta_set_arr(m, "a.i64", MUSE_KV_I64, i64, 2);
	muse_meta_set_arr(m, "a.f32", MUSE_KV_F32, f32, 3);
	muse_meta_set_arr(m, "a.f64", MUSE_KV_F64, f64, 3);
	muse_meta_set_arr(m, "a.bool", MUSE_KV_BOOL, bools, 4);
	const char *strs[] = { "", "hello", "Ġt", "\xe2\x96\x81\xe2\x96\x81" };
	muse_meta_set_str_arr(m, "a.str", strs, 4);
	/* A string element with an embedded NUL. */
	muse_kv *kv = &m->kv[muse_meta_index(m, "a.str")];
	muse_str *s = kv->arr;
	free(s[0].ptr);
	s[0].ptr = malloc(4);
	memcpy(s[0].ptr, "x\0y", 4);
	s[0].len = 3;
	/* Empty arrays of every element type (gguf-py cannot write these; GGUF allows them). */
	for (int t = 0; t < MUSE_KV_TYPE_COUNT; t++) {
		if (t == MUSE_KV_ARRAY)
			continue;
		char key[64];
		snprintf(key, sizeof key, "empty.%s", muse_kv_type_name((muse_kv_type)t));
		if (t == MUSE_KV_STRING)
			muse_meta_set_str_arr(m, key, NULL, 0);
		else
			muse_meta_set_arr(m, key, (muse_kv_type)t, NULL, 0);
	}
}

static void test_meta_roundtrip(void)
{
	muse_meta m;
	muse_err err = { 0 };
	build_all_types(&m);
	const char *p = tpath("meta.gguf");
	CHECK(write_file(p, &m, NULL, 0, 0, NULL, &err) == MUSE_OK);
	muse_reader *r = NULL;
	CHECK(muse_gguf_open(p, &r, &err) == MUSE_OK);
	if (r) {
		CHECK_EQ_U64(r->meta.n, m.n);
		for (size_t i = 0; i < m.n && i < r->meta.n; i++) {
			if (!kv_equal(&m.kv[i], &r->meta.kv[i]))
				printf("#   key %s differs\n", m.kv[i].key);
			CHECK(kv_equal(&m.kv[i], &r->meta.kv[i]));
		}
		CHECK_EQ_U64(r->version, 3);
		CHECK_EQ_U64(r->alignment, 32);
		CHECK_EQ_U64(r->n_tensors, 0);
		CHECK_EQ_U64(r->data_offset % 32, 0);
		CHECK_EQ_U64(r->data_offset, r->files[0].size); /* padded, then nothing */
		/* Scalars land in the documented union members. */
		int64_t i;
		uint64_t u;
		CHECK(muse_meta_get_i64(&r->meta, "t.i8", &i) && i == -128);
		CHECK(muse_meta_get_u64(&r->meta, "t.u64", &u) && u == UINT64_MAX);
		CHECK(muse_meta_find(&r->meta, "t.str_nul")->v.s.ptr[12] == 0);
	}
	muse_reader_free(r);
	muse_meta_free(&m);
	clean_dir();
}

/* Every dtype GGUF can store: sizes, offsets, reversed shapes and data survive. */
static void test_all_dtypes(void)
{
	tdecl t[MUSE_DT_COUNT];
	char names[MUSE_DT_COUNT][32];
	size_t n = 0;
	for (int d = 1; d < MUSE_DT_COUNT; d++) {
		const muse_dtype_traits *tr = muse_dtype_info((muse_dtype)d);
		if (tr->ggml_id < 0 || d == MUSE_DT_Q8_1 || d == MUSE_DT_Q8_K)
			continue;
		snprintf(names[n], sizeof names[n], "t.%s", tr->name);
		t[n] = (tdecl){ names[n], (muse_dtype)d, 3, { 2, 3, tr->blck * 3 } };
		n++;
	}
	CHECK(n >= 30);
	muse_err err = { 0 };
	const char *p = tpath("dtypes.gguf");
	CHECK(write_file(p, NULL, t, n, 0, NULL, &err) == MUSE_OK);
	muse_reader *r = NULL;
	CHECK(muse_gguf_open(p, &r, &err) == MUSE_OK);
	if (!r) {
		printf("#   %s\n", err.msg);
		return;
	}
	CHECK_EQ_U64(r->n_tensors, n);
	uint64_t expect = 0;
	for (size_t i = 0; i < n && i < r->n_tensors; i++) {
		const muse_tensor *x = &r->tensors[i];
		const muse_dtype_traits *tr = muse_dtype_info(t[i].dt);
		CHECK(!strcmp(x->name, t[i].name));
		CHECK(x->dtype == t[i].dt);
		CHECK(x->ndim == 3 && x->shape[0] == 2 && x->shape[1] == 3 && x->shape[2] == tr->blck * 3);
		CHECK_EQ_U64(x->nelements, 2 * 3 * tr->blck * 3);
		CHECK_EQ_U64(x->nbytes, 2 * 3 * 3 * tr->block_bytes);
		CHECK_EQ_U64(x->offset, r->data_offset + expect);
		expect += (x->nbytes + 31) / 32 * 32;
		const uint8_t *v = muse_reader_view(r, i);
		int ok = 1;
		for (uint64_t j = 0; j < x->nbytes; j++)
			ok &= v[j] == tbyte(i, j);
		CHECK(ok);
	}
	/* gguf-py pads after the last tensor too. */
	CHECK_EQ_U64(r->files[0].size, r->data_offset + expect);
	muse_reader_free(r);
	clean_dir();
}

static void test_alignments(void)
{
	static const uint32_t aligns[] = { 1, 2, 8, 32, 64, 4096, MUSE_GGUF_MAX_ALIGNMENT };
	tdecl t[] = {
		{ "a", MUSE_DT_I8, 1, { 3 } },
		{ "b", MUSE_DT_F16, 2, { 5, 7 } },
		{ "c", MUSE_DT_F32, 0, { 0 } },     /* scalar */
		{ "d", MUSE_DT_F32, 2, { 0, 4 } },  /* zero elements */
		{ "e", MUSE_DT_Q4_0, 2, { 3, 64 } },
	};
	for (size_t k = 0; k < sizeof aligns / sizeof *aligns; k++) {
		muse_meta m;
		muse_err err = { 0 };
		muse_meta_init(&m);
		muse_meta_set_str(&m, "general.architecture", "x");
		muse_meta_set_u32(&m, "general.alignment", aligns[k]);
		const char *p = tpath("align.gguf");
		/* chunk 5: writes span tensor boundaries and the zero-size tensor. */
		CHECK(write_file(p, &m, t, 5, 5, NULL, &err) == MUSE_OK);
		muse_reader *r = NULL;
		CHECK(muse_gguf_open(p, &r, &err) == MUSE_OK);
		if (!r) {
			printf("#   align %u: %s\n", aligns[k], err.msg);
			muse_meta_free(&m);
			continue;
		}
		CHECK_EQ_U64(r->alignment, aligns[k]);
		CHECK_EQ_U64(r->data_offset % aligns[k], 0);
		uint64_t run = 0;
		for (size_t i = 0; i < r->n_tensors; i++) {
			const muse_tensor *x = &r->tensors[i];
			CHECK_EQ_U64(x->offset, r->data_offset + run);
			run += (x->nbytes + aligns[k] - 1) / aligns[k] * aligns[k];
			const uint8_t *v = muse_reader_view(r, i);
			int ok = 1;
			for (uint64_t j = 0; j < x->nbytes; j++)
				ok &= v[j] == tbyte(i, j);
			CHECK(ok);
		}
		CHECK(r->tensors[2].ndim == 0 && r->tensors[2].nelements == 1 && r->tensors[2].nbytes == 4);
		CHECK(r->tensors[3].nelements == 0 && r->tensors[3].nbytes == 0);
		CHECK(r->tensors[3].shape[0] == 0 && r->tensors[3].shape[1] == 4);
		CHECK_EQ_U64(r->files[0].size, r->data_offset + run);
		muse_reader_free(r);
		muse_meta_free(&m);
		clean_dir();
	}
}

/* Writes a file with chunk sizes 1 and "all at once" and checks they are byte-identical. */
static void test_chunking_identical(void)
{
	tdecl t[] = { { "x", MUSE_DT_BF16, 2, { 3, 3 } }, { "y", MUSE_DT_Q8_0, 1, { 64 } }, { "z", MUSE_DT_I64, 1, { 1 } } };
	muse_err err = { 0 };
	CHECK(write_file(tpath("c1.gguf"), NULL, t, 3, 1, NULL, &err) == MUSE_OK);
	CHECK(write_file(tpath("c2.gguf"), NULL, t, 3, 1 << 20, NULL, &err) == MUSE_OK);
	CHECK(write_file(tpath("c3.gguf"), NULL, t, 3, 0, NULL, &err) == MUSE_OK);
	muse_map a, b, c;
	CHECK(muse_map_open(tpath("c1.gguf"), &a, &err) == MUSE_OK);
	CHECK(muse_map_open(tpath("c2.gguf"), &b, &err) == MUSE_OK);
	CHECK(muse_map_open(tpath("c3.gguf"), &c, &err) == MUSE_OK);
	CHECK(a.size == b.size && b.size == c.size && !memcmp(a.data, b.data, a.size) && !memcmp(b.data, c.data, b.size));
	muse_map_close(&a);
	muse_map_close(&b);
	muse_map_close(&c);
	clean_dir();
}

static void test_writer_refusals(void)
{
	muse_gguf_writer *w = NULL;
	muse_err err = { 0 };
	const char *p = tpath("refuse.gguf");
	uint64_t sh[5] = { 1, 1, 1, 1, 1 };
	CHECK(muse_gguf_writer_create(p, NULL, &w, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123",
					  MUSE_DT_F32, 1, sh, &err) != MUSE_OK); /* 64 bytes */
	CHECK(muse_gguf_writer_add_tensor(w, "", MUSE_DT_F32, 1, sh, &err) != MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_F32, 5, sh, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_Q8_K, 1, (uint64_t[]){ 256 }, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_U16, 1, sh, &err) == MUSE_ERR_UNSUPPORTED);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_Q4_0, 1, (uint64_t[]){ 33 }, &err) != MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_I8, 2, (uint64_t[]){ 1ull << 62, 4 }, &err) != MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_F32, 1, (uint64_t[]){ 3 }, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_F32, 1, (uint64_t[]){ 3 }, &err) != MUSE_OK); /* dup */
	muse_meta m;
	muse_meta_init(&m);
	muse_meta_set_i32(&m, "general.alignment", 32);
	CHECK(muse_gguf_writer_set_meta(w, &m, &err) != MUSE_OK);
	muse_meta_set_u32(&m, "general.alignment", 24);
	CHECK(muse_gguf_writer_set_meta(w, &m, &err) != MUSE_OK);
	muse_meta_set_u32(&m, "general.alignment", 64);
	muse_meta_append(&m, "general.alignment")->type = MUSE_KV_U8; /* duplicate key */
	CHECK(muse_gguf_writer_set_meta(w, &m, &err) != MUSE_OK);
	muse_meta_free(&m);
	muse_meta_init(&m);
	muse_meta_set_str(&m, "", "x");
	CHECK(muse_gguf_writer_set_meta(w, &m, &err) != MUSE_OK);
	muse_meta_free(&m);
	muse_meta_init(&m);
	muse_meta_set_str(&m, "bad\nkey", "x");
	CHECK(muse_gguf_writer_set_meta(w, &m, &err) != MUSE_OK);
	muse_meta_free(&m);
	/* Too many bytes, then finish refused; nothing published, temp removed by free. */
	CHECK(muse_gguf_writer_begin(w, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "late", MUSE_DT_F32, 1, sh, &err) == MUSE_ERR_USAGE);
	uint8_t buf[16] = { 0 };
	CHECK(muse_gguf_writer_write(w, buf, 16, &err) != MUSE_OK);
	CHECK(muse_gguf_writer_finish(w, &err) != MUSE_OK);
	muse_gguf_writer_free(w);
	CHECK(!file_exists(p));
	CHECK(dir_entries() == 0);
	/* Too few bytes: finish refuses, no output. */
	w = NULL;
	CHECK(muse_gguf_writer_create(p, NULL, &w, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_add_tensor(w, "a", MUSE_DT_F32, 1, (uint64_t[]){ 3 }, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_begin(w, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_write(w, buf, 11, &err) == MUSE_OK);
	CHECK(muse_gguf_writer_finish(w, &err) == MUSE_ERR_USAGE);
	CHECK(strstr(err.msg, "11 of its 12 bytes") != NULL);
	muse_gguf_writer_free(w);
	CHECK(!file_exists(p));
	CHECK(dir_entries() == 0);
	clean_dir();
}

/* Every proper prefix of a valid file that cuts into the header or a tensor's data is refused. */
static void test_truncation_sweep(void)
{
	muse_meta m;
	muse_err err = { 0 };
	build_all_types(&m);
	tdecl t[] = { { "w", MUSE_DT_Q4_0, 2, { 2, 32 } }, { "b", MUSE_DT_F32, 1, { 3 } } };
	const char *p = tpath("full.gguf");
	CHECK(write_file(p, &m, t, 2, 0, NULL, &err) == MUSE_OK);
	muse_meta_free(&m);
	muse_map full;
	CHECK(muse_map_open(p, &full, &err) == MUSE_OK);
	muse_reader *r = NULL;
	CHECK(muse_gguf_open(p, &r, &err) == MUSE_OK);
	uint64_t data_end = r ? r->tensors[1].offset + r->tensors[1].nbytes : 0;
	muse_reader_free(r);
	int bad = 0;
	const char *q = tpath("cut.gguf");
	for (uint64_t len = 0; len < full.size; len++) {
		FILE *f = fopen(q, "wb");
		fwrite(full.data, 1, len, f);
		fclose(f);
		r = NULL;
		muse_err e2 = { 0 };
		muse_status s = muse_gguf_open(q, &r, &e2);
		/* Cuts inside the last tensor's trailing padding are accepted (as llama.cpp does). */
		int want_ok = len >= data_end;
		if ((s == MUSE_OK) != want_ok || (!want_ok && (r || !strstr(e2.msg, "byte ")))) {
			if (!bad)
				printf("#   prefix %" PRIu64 ": status %d msg %s\n", len, s, e2.msg);
			bad++;
		}
		muse_reader_free(r);
	}
	CHECK(bad == 0);
	muse_map_close(&full);
	clean_dir();
}

static void test_shards(void)
{
	tdecl t[] = {
		{ "t0", MUSE_DT_F32, 1, { 8 } }, { "t1", MUSE_DT_F16, 2, { 2, 3 } }, { "t2", MUSE_DT_I32, 1, { 1 } },
		{ "t3", MUSE_DT_Q8_0, 1, { 32 } }, { "t4", MUSE_DT_F32, 1, { 2 } },
	};
	muse_meta m;
	muse_err err = { 0 };
	muse_meta_init(&m);
	muse_meta_set_str(&m, "general.architecture", "llama");
	muse_meta_set_u32(&m, "general.alignment", 64);
	muse_gguf_write_opts o = { .split_max_tensors = 2 };
	CHECK(write_file(tpath("m.gguf"), &m, t, 5, 3, &o, &err) == MUSE_OK);
	CHECK(!file_exists(tpath("m.gguf")));
	CHECK(file_exists(tpath("m-00001-of-00003.gguf")) && file_exists(tpath("m-00003-of-00003.gguf")));
	muse_reader *r = NULL;
	CHECK(muse_gguf_open(tpath("m-00001-of-00003.gguf"), &r, &err) == MUSE_OK);
	if (r) {
		CHECK_EQ_U64(r->n_files, 3);
		CHECK_EQ_U64(r->n_tensors, 5);
		for (size_t i = 0; i < r->n_tensors; i++) {
			CHECK(!strcmp(r->tensors[i].name, t[i].name));
			CHECK_EQ_U64(r->tensors[i].file, i / 2);
			const uint8_t *v = muse_reader_view(r, i);
			int ok = 1;
			for (uint64_t j = 0; j < r->tensors[i].nbytes; j++)
				ok &= v[j] == tbyte(i, j);
			CHECK(ok);
		}
		const muse_kv *kv = muse_meta_find(&r->meta, "split.count");
		CHECK(kv && kv->type == MUSE_KV_U16 && kv->v.u == 3);
		kv = muse_meta_find(&r->meta, "split.tensors.count");
		CHECK(kv && kv->type == MUSE_KV_I32 && kv->v.i == 5);
		CHECK(muse_meta_get_str(&r->meta, "general.architecture") != NULL);
	} else {
		printf("#   %s\n", err.msg);
	}
	muse_reader_free(r);
	/* A later shard alone reads as itself. */
	r = NULL;
	CHECK(muse_gguf_open(tpath("m-00002-of-00003.gguf"), &r, &err) == MUSE_OK);
	if (r) {
		CHECK_EQ_U64(r->n_tensors, 2);
		CHECK_EQ_U64(r->alignment, 64);
	}
	muse_reader_free(r);
	/* A missing shard fails the whole open. */
	unlink(tpath("m-00003-of-00003.gguf"));
	r = NULL;
	CHECK(muse_gguf_open(tpath("m-00001-of-00003.gguf"), &r, &err) != MUSE_OK && !r);
	clean_dir();
	/* small_first_shard: metadata only in shard 1. */
	muse_gguf_write_opts o2 = { .small_first_shard = true };
	CHECK(write_file(tpath("s.gguf"), &m, t, 5, 0, &o2, &err) == MUSE_OK);
	r = NULL;
	CHECK(muse_gguf_open(tpath("s-00001-of-00002.gguf"), &r, &err) == MUSE_OK);
	if (r) {
		CHECK_EQ_U64(r->n_tensors, 5);
		CHECK(r->tensors[0].file == 1);
	}
	muse_reader_free(r);
	/* Stale split keys in the metadata are dropped for a single file. */
	clean_dir();
	muse_meta_set_u32(&m, "split.count", 7);
	muse_meta_set_u32(&m, "split.no", 0);
	muse_meta_set_i32(&m, "split.tensors.count", 99);
	CHECK(write_file(tpath("one.gguf"), &m, t, 5, 0, NULL, &err) == MUSE_OK);
	r = NULL;
	CHECK(muse_gguf_open(tpath("one.gguf"), &r, &err) == MUSE_OK);
	CHECK(r && !muse_meta_find(&r->meta, "split.count") && r->n_tensors == 5);
	muse_reader_free(r);
	muse_meta_free(&m);
	clean_dir();
}

/* ---- driver for tests/interop/test_gguf.py: --write SPEC.json OUT.gguf ---- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static char *unhex(const char *h, uint64_t *len)
{
	size_t n = strlen(h) / 2;
	char *p = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
	p[n] = 0;
	*len = n;
	return p;
}

static muse_kv_type kv_type_by_name(const char *s)
{
	for (int t = 0; t < MUSE_KV_TYPE_COUNT; t++)
		if (!strcmp(muse_kv_type_name((muse_kv_type)t), s))
			return (muse_kv_type)t;
	return MUSE_KV_TYPE_COUNT;
}

/* Integers travel as decimal strings (u64 does not fit JSON doubles); floats as JSON numbers or "nan"/"inf"/"-inf". */
static void scalar_from_json(muse_kv_type t, json_t *v, void *dst)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	double f = s ? strtod(s, NULL) : json_number_value(v);
	switch (t) {
	case MUSE_KV_U8: *(uint8_t *)dst = (uint8_t)strtoull(s, NULL, 10); break;
	case MUSE_KV_U16: *(uint16_t *)dst = (uint16_t)strtoull(s, NULL, 10); break;
	case MUSE_KV_U32: *(uint32_t *)dst = (uint32_t)strtoull(s, NULL, 10); break;
	case MUSE_KV_U64: *(uint64_t *)dst = strtoull(s, NULL, 10); break;
	case MUSE_KV_I8: *(int8_t *)dst = (int8_t)strtoll(s, NULL, 10); break;
	case MUSE_KV_I16: *(int16_t *)dst = (int16_t)strtoll(s, NULL, 10); break;
	case MUSE_KV_I32: *(int32_t *)dst = (int32_t)strtoll(s, NULL, 10); break;
	case MUSE_KV_I64: *(int64_t *)dst = strtoll(s, NULL, 10); break;
	case MUSE_KV_F32: *(float *)dst = (float)f; break;
	case MUSE_KV_F64: *(double *)dst = f; break;
	case MUSE_KV_BOOL: *(uint8_t *)dst = json_is_true(v); break;
	default: break;
	}
}

static int driver_write(const char *spec_path, const char *out)
{
	json_error_t je;
	json_t *spec = json_load_file(spec_path, 0, &je);
	if (!spec) {
		fprintf(stderr, "spec: %s\n", je.text);
		return 2;
	}
	muse_meta m;
	muse_meta_init(&m);
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(spec, "kv"), i, e) {
		const char *key = json_string_value(json_object_get(e, "key"));
		muse_kv_type t = kv_type_by_name(json_string_value(json_object_get(e, "type")));
		json_t *v = json_object_get(e, "value");
		if (t == MUSE_KV_STRING) {
			uint64_t len;
			char *p = unhex(json_string_value(v), &len);
			muse_meta_set_strn(&m, key, p, len);
			free(p);
		} else if (t == MUSE_KV_ARRAY) {
			muse_kv_type et = kv_type_by_name(json_string_value(json_object_get(e, "element_type")));
			size_t n = json_array_size(v);
			if (et == MUSE_KV_STRING) {
				muse_meta_set_str_arr(&m, key, NULL, 0);
				muse_kv *kv = &m.kv[muse_meta_index(&m, key)];
				muse_str *a = calloc(n ? n : 1, sizeof *a);
				for (size_t j = 0; j < n; j++)
					a[j].ptr = unhex(json_string_value(json_array_get(v, j)), &a[j].len);
				free(kv->arr);
				kv->arr = a;
				kv->n = n;
			} else {
				size_t esz = muse_kv_type_size(et);
				uint8_t *a = calloc(n ? n : 1, esz);
				for (size_t j = 0; j < n; j++)
					scalar_from_json(et, json_array_get(v, j), a + j * esz);
				muse_meta_set_arr(&m, key, et, a, n);
				free(a);
			}
		} else {
			union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64;
				int64_t i64; float f32; double f64; } x;
			scalar_from_json(t, v, &x);
			muse_kv *kv = muse_meta_append(&m, key);
			kv->type = t;
			kv->n = 1;
			switch (t) {
			case MUSE_KV_U8: kv->v.u = x.u8; break;
			case MUSE_KV_U16: kv->v.u = x.u16; break;
			case MUSE_KV_U32: kv->v.u = x.u32; break;
			case MUSE_KV_U64: kv->v.u = x.u64; break;
			case MUSE_KV_I8: kv->v.i = x.i8; break;
			case MUSE_KV_I16: kv->v.i = x.i16; break;
			case MUSE_KV_I32: kv->v.i = x.i32; break;
			case MUSE_KV_I64: kv->v.i = x.i64; break;
			case MUSE_KV_F32: kv->v.f = x.f32; break;
			case MUSE_KV_F64: kv->v.f = x.f64; break;
			case MUSE_KV_BOOL: kv->v.b = x.u8; break;
			default: break;
			}
		}
	}
	muse_gguf_write_opts o = {
		.split_max_tensors = (uint64_t)json_integer_value(json_object_get(spec, "split_max_tensors")),
		.split_max_bytes = (uint64_t)json_integer_value(json_object_get(spec, "split_max_bytes")),
		.small_first_shard = json_is_true(json_object_get(spec, "small_first_shard")),
	};
	muse_err err = { 0 };
	muse_gguf_writer *w = NULL;
	muse_status s = muse_gguf_writer_create(out, &o, &w, &err);
	if (!s)
		s = muse_gguf_writer_set_meta(w, &m, &err);
	json_t *ts = json_object_get(spec, "tensors");
	json_array_foreach(ts, i, e) {
		if (s)
			break;
		uint64_t shape[8];
		json_t *sh = json_object_get(e, "shape");
		for (size_t d = 0; d < json_array_size(sh) && d < 8; d++)
			shape[d] = (uint64_t)json_integer_value(json_array_get(sh, d));
		s = muse_gguf_writer_add_tensor(w, json_string_value(json_object_get(e, "name")),
						muse_dtype_from_name(json_string_value(json_object_get(e, "dtype"))),
						(int)json_array_size(sh), shape, &err);
	}
	if (!s)
		s = muse_gguf_writer_begin(w, &err);
	json_array_foreach(ts, i, e) {
		if (s)
			break;
		muse_map d;
		if ((s = muse_map_open(json_string_value(json_object_get(e, "data")), &d, &err)))
			break;
		/* Odd chunk size: exercises chunks that do not line up with anything. */
		for (uint64_t k = 0; k < d.size && !s; k += 997)
			s = muse_gguf_writer_write(w, d.data + k, d.size - k < 997 ? d.size - k : 997, &err);
		muse_map_close(&d);
	}
	if (!s)
		s = muse_gguf_writer_finish(w, &err);
	muse_gguf_writer_free(w);
	muse_meta_free(&m);
	json_decref(spec);
	if (s) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--write"))
		return driver_write(argv[2], argv[3]);
	unit_file_name = "gguf";
	const char *base = getenv("MUSE_TEST_TMP");
	snprintf(tmpdir, sizeof tmpdir, "%s/gguf-unit.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_meta_roundtrip);
	RUN(test_all_dtypes);
	RUN(test_alignments);
	RUN(test_chunking_identical);
	RUN(test_writer_refusals);
	RUN(test_truncation_sweep);
	RUN(test_shards);
	clean_dir();
	rmdir(tmpdir);
	UNIT_MAIN_END();
}
