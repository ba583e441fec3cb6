/* test_lib.c: unit tests of lib/ basics: checked arithmetic, strmap, utf8, kv metadata, atomic outputs. */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/checked.h"
#include "../../lib/dtype.h"
#include "../../lib/kv.h"
#include "../../lib/mapfile.h"
#include "../../lib/outfile.h"
#include "../../lib/path.h"
#include "../../lib/strmap.h"
#include "../../lib/utf8.h"
#include "unit.h"

static void checked_arith(void)
{
	uint64_t r;
	CHECK(muse_add_u64(1, 2, &r) && r == 3);
	CHECK(!muse_add_u64(UINT64_MAX, 1, &r));
	CHECK(!muse_mul_u64(1ull << 32, 1ull << 32, &r));
	CHECK(muse_mul_u64(1ull << 31, 1ull << 32, &r) && r == 1ull << 63);
	CHECK(muse_align_up_u64(33, 32, &r) && r == 64);
	CHECK(muse_align_up_u64(64, 32, &r) && r == 64);
	CHECK(!muse_align_up_u64(UINT64_MAX - 3, 32, &r)); /* the GGML_PAD wrap */
	uint64_t dims[] = { 1ull << 32, 1ull << 32, 2 };
	CHECK(!muse_product_u64(dims, 3, &r));
	CHECK(muse_product_u64(dims, 0, &r) && r == 1);
	CHECK(muse_range_ok(10, 5, 15));
	CHECK(!muse_range_ok(10, 6, 15));
	CHECK(!muse_range_ok(UINT64_MAX, 2, UINT64_MAX));
}

static void dtype_table(void)
{
	uint64_t n;
	CHECK(muse_dtype_from_ggml(12) == MUSE_DT_Q4_K);
	CHECK(muse_dtype_from_ggml(4) == MUSE_DT_INVALID);
	CHECK(muse_dtype_from_ggml(31) == MUSE_DT_INVALID);
	CHECK(muse_dtype_from_ggml(1000) == MUSE_DT_INVALID);
	CHECK(muse_dtype_from_st("BF16") == MUSE_DT_BF16);
	CHECK(muse_dtype_from_st("bf16") == MUSE_DT_INVALID);
	CHECK(muse_dtype_from_name("q4_k") == MUSE_DT_Q4_K);
	CHECK(muse_dtype_nbytes(MUSE_DT_Q4_K, 512, &n) && n == 288);
	CHECK(!muse_dtype_nbytes(MUSE_DT_Q4_K, 100, &n));
	CHECK(muse_dtype_nbytes(MUSE_DT_F4, 6, &n) && n == 3);
	CHECK(!muse_dtype_nbytes(MUSE_DT_F4, 3, &n));
	CHECK(muse_dtype_nbytes(MUSE_DT_F6_E2M3, 8, &n) && n == 6);
	CHECK(!muse_dtype_nbytes(MUSE_DT_F32, 1ull << 63, &n));
	CHECK(muse_dtype_info((muse_dtype)9999) == NULL);
	/* every ggml id maps back to itself */
	for (int t = 1; t < MUSE_DT_COUNT; t++) {
		const muse_dtype_traits *tr = muse_dtype_info((muse_dtype)t);
		if (tr->ggml_id >= 0)
			CHECK(muse_dtype_from_ggml((uint32_t)tr->ggml_id) == (muse_dtype)t);
		if (tr->st_name)
			CHECK(muse_dtype_from_st(tr->st_name) == (muse_dtype)t);
	}
}

static void strmap_basic(void)
{
	muse_strmap m;
	muse_strmap_init(&m);
	static char keys[20000][16];
	for (int i = 0; i < 20000; i++) {
		snprintf(keys[i], sizeof keys[i], "k%d", i);
		CHECK(muse_strmap_put(&m, keys[i], strlen(keys[i]), (size_t)i, NULL) == 1);
	}
	size_t old = 0, v = 0;
	CHECK(muse_strmap_put(&m, "k77", 3, 5, &old) == 0 && old == 77);
	CHECK(muse_strmap_get(&m, "k19999", 6, &v) && v == 19999);
	CHECK(!muse_strmap_get(&m, "k20000", 6, &v));
	CHECK(m.n == 20000);
	muse_strmap_free(&m);
	muse_strmap_free(&m); /* double free is safe */
}

static void utf8_rules(void)
{
	CHECK(muse_utf8_valid("abc", 3));
	CHECK(muse_utf8_valid("\xC3\xA9", 2));
	CHECK(muse_utf8_valid("\xF0\x9F\x98\x80", 4));
	CHECK(!muse_utf8_valid("\xC3\x28", 2));
	CHECK(!muse_utf8_valid("\xC0\x80", 2));         /* overlong NUL */
	CHECK(!muse_utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
	CHECK(!muse_utf8_valid("\xF4\x90\x80\x80", 4)); /* > U+10FFFF */
	CHECK(!muse_utf8_valid("\xE2\x82", 2));         /* truncated */
	char *s = muse_utf8_sanitize("a\xFF" "b\0c", 5);
	CHECK(s && !strcmp(s, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c"));
	free(s);
}

static void kv_ops(void)
{
	muse_meta m;
	muse_meta_init(&m);
	CHECK(!muse_meta_set_u32(&m, "a.u32", 7));
	CHECK(!muse_meta_set_i32(&m, "a.i32", -3));
	CHECK(!muse_meta_set_f32(&m, "a.f32", 0.5f));
	CHECK(!muse_meta_set_str(&m, "a.s", "hello"));
	const char *strs[] = { "x", "", "zz" };
	CHECK(!muse_meta_set_str_arr(&m, "a.sa", strs, 3));
	int32_t ints[] = { 1, -2, 3 };
	CHECK(!muse_meta_set_arr(&m, "a.ia", MUSE_KV_I32, ints, 3));
	uint64_t u;
	int64_t i;
	double f;
	CHECK(muse_meta_get_u64(&m, "a.u32", &u) && u == 7);
	CHECK(!muse_meta_get_u64(&m, "a.i32", &u));
	CHECK(muse_meta_get_i64(&m, "a.i32", &i) && i == -3);
	CHECK(muse_meta_get_f64(&m, "a.f32", &f) && f == 0.5);
	CHECK(!strcmp(muse_meta_get_str(&m, "a.s"), "hello"));
	CHECK(!muse_meta_set_str(&m, "a.s", "bye")); /* replace keeps one entry */
	CHECK(m.n == 6 && !strcmp(muse_meta_get_str(&m, "a.s"), "bye"));
	muse_meta c;
	muse_meta_init(&c);
	for (size_t k = 0; k < m.n; k++)
		CHECK(!muse_meta_copy_kv(&c, &m.kv[k]));
	const muse_kv *sa = muse_meta_find(&c, "a.sa");
	CHECK(sa && sa->n == 3 && !strcmp(((muse_str *)sa->arr)[2].ptr, "zz"));
	muse_meta_remove(&c, "a.sa");
	CHECK(c.n == 5 && !muse_meta_find(&c, "a.sa"));
	muse_meta_free(&c);
	muse_meta_free(&m);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static void outfile_atomic(void)
{
	char dir[] = "/tmp/muse-unit-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof path, "%s/out.bin", dir);
	muse_err err = { 0 };
	muse_outfile o = MUSE_OUTFILE_INIT;
	CHECK(!muse_out_open(&o, path, &err));
	CHECK(!muse_out_write(&o, "abc", 3, &err));
	CHECK(!muse_out_zeros(&o, 5000000, &err));
	CHECK(access(path, F_OK) != 0);            /* nothing at the final name yet */
	CHECK(count_entries(dir) == 1);            /* only the temp file */
	muse_out_abort(&o);
	CHECK(count_entries(dir) == 0);            /* abort leaves nothing */
	CHECK(!muse_out_open(&o, path, &err));
	CHECK(!muse_out_write(&o, "hdr0", 4, &err));
	CHECK(!muse_out_write(&o, "data", 4, &err));
	CHECK(!muse_out_pwrite(&o, "HDR", 3, 0, &err));
	CHECK(!muse_out_commit(&o, &err));
	muse_out_abort(&o);                        /* after publish: a no-op */
	char *buf = NULL;
	size_t len = 0;
	CHECK(!muse_read_small_file(path, 100, &buf, &len, &err));
	CHECK(len == 8 && !memcmp(buf, "HDR0data", 8));
	free(buf);
	CHECK(muse_read_small_file(path, 4, &buf, &len, &err) == MUSE_ERR_LIMIT);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
	CHECK(count_entries(dir) == 1);
	unlink(path);
	/* an output in a missing directory fails cleanly */
	snprintf(path, sizeof path, "%s/missing/out.bin", dir);
	muse_outfile o2 = MUSE_OUTFILE_INIT;
	CHECK(muse_out_open(&o2, path, &err) == MUSE_ERR_IO && strstr(err.msg, "missing/out.bin"));
	muse_out_abort(&o2);
	rmdir(dir);
}

static void mapfile_rules(void)
{
	muse_map m;
	muse_err err = { 0 };
	CHECK(muse_map_open("/dev/null", &m, &err) == MUSE_ERR_IO && strstr(err.msg, "not a regular file"));
	CHECK(muse_map_open("/tmp", &m, &err) == MUSE_ERR_IO);
	CHECK(muse_map_open("/nonexistent/x", &m, &err) == MUSE_ERR_IO && strstr(err.msg, "/nonexistent/x"));
	muse_map_close(&m);
}

static void err_format(void)
{
	muse_err err = { 0 };
	CHECK(muse_err_at(&err, MUSE_ERR_FORMAT, "f.gguf", 123, "key '%s' bad\n", "a\tb") == MUSE_ERR_FORMAT);
	CHECK(!strcmp(err.msg, "f.gguf: byte 123: key 'a?b' bad?")); /* control bytes never break the one line */
	muse_err_prefix(&err, "while reading %s", "x");
	CHECK(!strncmp(err.msg, "while reading x: f.gguf", 23));
	CHECK(muse_err_set(NULL, MUSE_ERR_IO, "ignored") == MUSE_ERR_IO);
}

static void path_helpers(void)
{
	size_t n, b;
	CHECK(muse_ends_with("model.safetensors", ".safetensors") && !muse_ends_with("x", ".gguf"));
	CHECK(muse_ends_with("abc", "") && !muse_ends_with("", "a"));
	CHECK(muse_is_dir("/tmp") && !muse_is_dir("/dev/null") && !muse_is_dir("/nonexistent/x"));
	b = muse_path_base("a/dir//", &n);
	CHECK(b == 2 && n == 3);
	b = muse_path_base("dir", &n);
	CHECK(b == 0 && n == 3);
	b = muse_path_base("/x", &n);
	CHECK(b == 1 && n == 1);
	b = muse_path_base("/", &n);
	CHECK(n == 0);
}

int main(void)
{
	unit_file_name = "lib";
	RUN(checked_arith);
	RUN(dtype_table);
	RUN(strmap_basic);
	RUN(utf8_rules);
	RUN(kv_ops);
	RUN(outfile_atomic);
	RUN(mapfile_rules);
	RUN(err_format);
	RUN(path_helpers);
	UNIT_MAIN_END();
}
