/* test_safetensors.c: safetensors writer -> reader round trips and edge cases; with argv, a writer driver for interop tests. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../formats/reader.h"
#include "../../formats/safetensors.h"
#include "../../lib/mapfile.h"
#include "unit.h"

static char tmpdir[512];

static void make_tmpdir(void)
{
	const char *base = getenv("MUSE_TEST_TMP");
	snprintf(tmpdir, sizeof tmpdir, "%s/st-unit.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(2);
	}
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* Removes every file in the temp dir (between cases). */
static void clean_dir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char p[1024];
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))) {
			snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
}

static int count_files(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static void write_raw(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n) {
		perror(path);
		exit(2);
	}
	fclose(f);
}

/* A file from a header string and raw data: 8-byte length, header, data. */
static void write_st(const char *path, const char *hdr, const void *data, size_t dlen)
{
	size_t h = strlen(hdr);
	uint8_t *buf = malloc(8 + h + dlen + 1);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
	memcpy(buf + 8, hdr, h);
	if (dlen)
		memcpy(buf + 8 + h, data, dlen);
	write_raw(path, buf, 8 + h + dlen);
	free(buf);
}

/* Deterministic test bytes for tensor i. */
static void fill(uint8_t *p, uint64_t n, size_t i)
{
	for (uint64_t k = 0; k < n; k++)
		p[k] = (uint8_t)(k * 31 + i * 7 + 1);
}

typedef struct spec {
	const char *name;
	muse_dtype dt;
	int ndim;
	uint64_t shape[4];
} spec;

/* Writes specs through the writer, streaming each tensor in chunks of `chunk` bytes. */
static muse_status write_specs(const char *path, uint64_t max_shard, const spec *s, size_t n, size_t chunk,
			       muse_st_writer **keep, muse_err *err)
{
	muse_st_writer *w;
	muse_status st = muse_st_writer_create(&w, path, max_shard, err);
	if (st)
		return st;
	for (size_t i = 0; i < n && !st; i++)
		st = muse_st_writer_add_tensor(w, s[i].name, s[i].dt, s[i].ndim, s[i].shape, err);
	if (!st)
		st = muse_st_writer_set_meta(w, "format", "pt", err);
	if (!st)
		st = muse_st_writer_set_meta(w, "note", "muse \"unit\"\n", err);
	if (!st)
		st = muse_st_writer_begin(w, err);
	for (size_t i = 0; i < n && !st; i++) {
		uint64_t nb = muse_st_writer_tensor_bytes(w, i);
		uint8_t *buf = malloc(nb + 1);
		fill(buf, nb, i);
		for (uint64_t o = 0; o < nb && !st; o += chunk)
			st = muse_st_writer_write(w, i, buf + o, nb - o < chunk ? nb - o : chunk, err);
		free(buf);
	}
	if (!st)
		st = muse_st_writer_finish(w, err);
	if (keep && !st)
		*keep = w;
	else
		muse_st_writer_free(w);
	return st;
}

static const muse_tensor *find_tensor(const muse_reader *r, const char *name)
{
	for (size_t i = 0; i < r->n_tensors; i++)
		if (!strcmp(r->tensors[i].name, name))
			return &r->tensors[i];
	return NULL;
}

/* Every spec is in r with its dtype, shape and the bytes fill() made. */
static void check_contents(muse_reader *r, const spec *s, size_t n)
{
	CHECK_EQ_U64(r->n_tensors, n);
	for (size_t i = 0; i < n; i++) {
		const muse_tensor *t = find_tensor(r, s[i].name);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK(t->dtype == s[i].dt);
		CHECK_EQ_U64(t->ndim, s[i].ndim);
		for (int d = 0; d < t->ndim; d++)
			CHECK_EQ_U64(t->shape[d], s[i].shape[d]);
		uint8_t *want = malloc(t->nbytes + 1), *got = malloc(t->nbytes + 1);
		fill(want, t->nbytes, i);
		muse_err err = { 0 };
		CHECK(muse_reader_read(r, (size_t)(t - r->tensors), got, &err) == MUSE_OK);
		CHECK(!memcmp(want, got, t->nbytes));
		free(want);
		free(got);
	}
}

static const spec all_dtypes[] = {
	{ "bool", MUSE_DT_BOOL, 1, { 3 } },
	{ "f4", MUSE_DT_F4, 2, { 3, 2 } },
	{ "f6a", MUSE_DT_F6_E2M3, 1, { 8 } },
	{ "f6b", MUSE_DT_F6_E3M2, 1, { 4 } },
	{ "u8", MUSE_DT_U8, 1, { 5 } },
	{ "i8", MUSE_DT_I8, 1, { 7 } },
	{ "f8e5m2", MUSE_DT_F8_E5M2, 2, { 2, 3 } },
	{ "f8e4m3", MUSE_DT_F8_E4M3, 1, { 9 } },
	{ "f8e8m0", MUSE_DT_F8_E8M0, 1, { 2 } },
	{ "f8e4m3fnuz", MUSE_DT_F8_E4M3FNUZ, 1, { 1 } },
	{ "f8e5m2fnuz", MUSE_DT_F8_E5M2FNUZ, 1, { 1 } },
	{ "i16", MUSE_DT_I16, 1, { 3 } },
	{ "u16", MUSE_DT_U16, 1, { 3 } },
	{ "f16", MUSE_DT_F16, 3, { 1, 2, 3 } },
	{ "bf16", MUSE_DT_BF16, 1, { 5 } },
	{ "i32", MUSE_DT_I32, 1, { 1 } },
	{ "u32", MUSE_DT_U32, 1, { 2 } },
	{ "f32", MUSE_DT_F32, 2, { 4, 4 } },
	{ "c64", MUSE_DT_C64, 1, { 2 } },
	{ "f64", MUSE_DT_F64, 0, { 0 } },     /* rank 0: one element */
	{ "i64", MUSE_DT_I64, 2, { 0, 4096 } }, /* zero-size */
	{ "u64", MUSE_DT_U64, 1, { 1 } },
	{ "a.b/c \xc3\xa9\"\\\t", MUSE_DT_F32, 1, { 1 } }, /* a name that needs escaping */
};
#define N_ALL (sizeof all_dtypes / sizeof all_dtypes[0])

static void roundtrip_single_all_dtypes(void)
{
	char p[1024];
	path_in(p, sizeof p, "all.safetensors");
	muse_err err = { 0 };
	CHECK(write_specs(p, 0, all_dtypes, N_ALL, 3, NULL, &err) == MUSE_OK);
	CHECK_EQ_U64(count_files(), 1);
	muse_reader *r = NULL;
	CHECK(muse_reader_open(p, &r, &err) == MUSE_OK);
	if (!r) {
		printf("#   %s\n", err.msg);
		return;
	}
	CHECK(!strcmp(r->format, "safetensors"));
	CHECK(r->data_offset % 8 == 0);
	check_contents(r, all_dtypes, N_ALL);
	/* File order: descending dtype alignment, then name; offsets strictly tile the data. */
	static const char *order[] = { "u64", "i64", "f64", "c64", "a.b/c \xc3\xa9\"\\\t", "f32", "u32", "i32",
				       "bf16", "f16", "u16", "i16", "f8e5m2fnuz", "f8e4m3fnuz", "f8e8m0", "f8e4m3",
				       "f8e5m2", "i8", "u8", "f6b", "f6a", "f4", "bool" };
	uint64_t off = r->data_offset;
	for (size_t i = 0; i < r->n_tensors && i < 23; i++) {
		CHECK(!strcmp(r->tensors[i].name, order[i]));
		CHECK_EQ_U64(r->tensors[i].offset, off);
		off += r->tensors[i].nbytes;
	}
	CHECK_EQ_U64(off, r->files[0].size);
	CHECK_EQ_U64(r->meta.n, 2);
	CHECK(r->meta.n == 2 && !strcmp(r->meta.kv[0].key, "format") && !strcmp(r->meta.kv[0].v.s.ptr, "pt"));
	CHECK(r->meta.n == 2 && !strcmp(r->meta.kv[1].v.s.ptr, "muse \"unit\"\n"));
	muse_reader_free(r);
	clean_dir();
}

static const spec shard_specs[] = {
	{ "model.embed", MUSE_DT_BF16, 2, { 16, 8 } }, /* 256 bytes */
	{ "layer.0.w", MUSE_DT_F32, 2, { 8, 8 } },     /* 256 */
	{ "layer.0.b", MUSE_DT_F32, 1, { 8 } },        /* 32 */
	{ "big", MUSE_DT_F32, 1, { 300 } },            /* 1200: above the limit, a shard of its own */
	{ "layer.1.w", MUSE_DT_F16, 2, { 8, 8 } },     /* 128 */
	{ "layer.1.s", MUSE_DT_F32, 0, { 0 } },        /* 4 */
	{ "empty", MUSE_DT_F32, 1, { 0 } },            /* 0 */
	{ "layer.2.w", MUSE_DT_F32, 2, { 8, 8 } },     /* 256 */
};
#define N_SHARD (sizeof shard_specs / sizeof shard_specs[0])

static void roundtrip_sharded(void)
{
	char p[1024], q[1024];
	path_in(p, sizeof p, "model.safetensors");
	muse_err err = { 0 };
	muse_st_writer *w = NULL;
	CHECK(write_specs(p, 600, shard_specs, N_SHARD, 100, &w, &err) == MUSE_OK);
	if (!w) {
		printf("#   %s\n", err.msg);
		return;
	}
	/* huggingface_hub's split: "big" is placed in the list when met, before the shard being filled
	 * (embed, l0.w, l0.b = 544 bytes), which closes at l1.w (544 + 128 > 600); the rest make shard 3. */
	CHECK_EQ_U64(muse_st_writer_n_shards(w), 3);
	path_in(q, sizeof q, "model.safetensors.index.json");
	CHECK(muse_st_writer_index_path(w) && !strcmp(muse_st_writer_index_path(w), q));
	path_in(q, sizeof q, "model-00001-of-00003.safetensors");
	CHECK(!strcmp(muse_st_writer_shard_path(w, 0), q));
	muse_st_writer_free(w);
	CHECK_EQ_U64(count_files(), 4);

	muse_reader *r = NULL;
	CHECK(muse_reader_open(tmpdir, &r, &err) == MUSE_OK);
	if (!r) {
		printf("#   %s\n", err.msg);
		return;
	}
	CHECK_EQ_U64(r->n_files, 3);
	check_contents(r, shard_specs, N_SHARD);
	const muse_tensor *t = find_tensor(r, "big");
	CHECK(t && t->file == 0);
	t = find_tensor(r, "model.embed");
	CHECK(t && t->file == 1);
	t = find_tensor(r, "layer.2.w");
	CHECK(t && t->file == 2);
	/* tensors come in shard order, then offset order */
	for (size_t i = 1; i < r->n_tensors; i++)
		CHECK(r->tensors[i].file > r->tensors[i - 1].file ||
		      (r->tensors[i].file == r->tensors[i - 1].file && r->tensors[i].offset >= r->tensors[i - 1].offset));
	CHECK_EQ_U64(r->meta.n, 2);
	muse_reader_free(r);

	/* the index is what transformers writes */
	char *text = NULL;
	path_in(q, sizeof q, "model.safetensors.index.json");
	CHECK(muse_read_small_file(q, 1 << 20, &text, NULL, &err) == MUSE_OK);
	const char *want = "{\n  \"metadata\": {\n    \"total_size\": 2132\n  },\n  \"weight_map\": {\n    \"big\": "
			   "\"model-00001-of-00003.safetensors\",\n";
	CHECK(text && !strncmp(text, want, strlen(want)));
	free(text);
	clean_dir();
}

static void limit_fits_one_shard(void)
{
	char p[1024];
	path_in(p, sizeof p, "one.safetensors");
	muse_err err = { 0 };
	muse_st_writer *w = NULL;
	CHECK(write_specs(p, 1ull << 30, shard_specs, N_SHARD, 7, &w, &err) == MUSE_OK);
	CHECK(w && muse_st_writer_n_shards(w) == 1 && !muse_st_writer_index_path(w));
	muse_st_writer_free(w);
	CHECK_EQ_U64(count_files(), 1);
	muse_reader *r = NULL;
	CHECK(muse_safetensors_open(p, &r, &err) == MUSE_OK);
	if (r)
		check_contents(r, shard_specs, N_SHARD);
	muse_reader_free(r);
	clean_dir();
}

static void no_tensors(void)
{
	char p[1024];
	path_in(p, sizeof p, "empty.safetensors");
	muse_err err = { 0 };
	muse_st_writer *w;
	CHECK(muse_st_writer_create(&w, p, 0, &err) == MUSE_OK);
	CHECK(muse_st_writer_begin(w, &err) == MUSE_OK);
	CHECK(muse_st_writer_finish(w, &err) == MUSE_OK);
	muse_st_writer_free(w);
	muse_map m;
	CHECK(muse_map_open(p, &m, &err) == MUSE_OK);
	/* Even an empty file says it holds PyTorch tensors, as save_pretrained's do. */
	static const char want[] = "\x20\0\0\0\0\0\0\0{\"__metadata__\":{\"format\":\"pt\"}}";
	CHECK(m.size == sizeof want - 1 && !memcmp(m.data, want, sizeof want - 1));
	muse_map_close(&m);
	muse_reader *r = NULL;
	CHECK(muse_safetensors_open(p, &r, &err) == MUSE_OK && r && r->n_tensors == 0);
	muse_reader_free(r);
	clean_dir();
}

/* The reference pads with spaces but does not require alignment: an F32 at byte offset 3 of the data. */
static void unaligned_f32(void)
{
	char p[1024];
	path_in(p, sizeof p, "unaligned.safetensors");
	const char *hdr = "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
			  "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}";
	float v[2] = { 1.5f, -2.25f };
	uint8_t data[11] = { 1, 2, 3 };
	memcpy(data + 3, v, 8);
	write_st(p, hdr, data, sizeof data);
	muse_err err = { 0 };
	muse_reader *r = NULL;
	CHECK(muse_safetensors_open(p, &r, &err) == MUSE_OK);
	if (!r) {
		printf("#   %s\n", err.msg);
		return;
	}
	CHECK_EQ_U64(r->n_tensors, 2);
	CHECK(!strcmp(r->tensors[0].name, "u") && !strcmp(r->tensors[1].name, "f"));
	CHECK_EQ_U64(r->tensors[1].offset, 8 + strlen(hdr) + 3);
	CHECK((r->tensors[1].offset % 4) != 0);
	float got[2];
	CHECK(muse_reader_read(r, 1, got, &err) == MUSE_OK);
	CHECK(got[0] == 1.5f && got[1] == -2.25f);
	muse_reader_free(r);
	clean_dir();
}

/* Error text names the file, the byte and the tensor. */
static void error_messages(void)
{
	char p[1024];
	path_in(p, sizeof p, "bad.safetensors");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,3]}}", "abcd", 4);
	muse_err err = { 0 };
	muse_reader *r = NULL;
	CHECK(muse_safetensors_open(p, &r, &err) == MUSE_ERR_FORMAT);
	CHECK(r == NULL);
	CHECK(strstr(err.msg, "bad.safetensors: byte 9: tensor 'w': data_offsets [4, 3]: end before begin") != NULL);
	write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		    " \"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[5,9]}}", "abcdefghi", 9);
	CHECK(muse_safetensors_open(p, &r, &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "byte 63: tensor 'b': data_offsets [5, 9] leave a gap of 1 bytes after tensor 'a'") !=
	      NULL);
	write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", "abcd", 4);
	CHECK(muse_safetensors_open(p, &r, &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "duplicate") != NULL);
	clean_dir();
}

/* Wrong amounts of data, bad declarations, out-of-order writes: errors, and no file left behind. */
static void writer_misuse(void)
{
	char p[1024];
	path_in(p, sizeof p, "w.safetensors");
	muse_err err = { 0 };
	muse_st_writer *w;
	uint64_t shp[2] = { 2, 3 };
	uint8_t buf[64] = { 0 };

	CHECK(muse_st_writer_create(&w, p, 0, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "a", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "a", MUSE_DT_F32, 2, shp, &err) == MUSE_ERR_USAGE);
	CHECK(muse_st_writer_add_tensor(w, "__metadata__", MUSE_DT_F32, 2, shp, &err) == MUSE_ERR_USAGE);
	CHECK(muse_st_writer_add_tensor(w, "q", MUSE_DT_Q4_K, 1, shp, &err) == MUSE_ERR_UNSUPPORTED);
	uint64_t odd = 3;
	CHECK(muse_st_writer_add_tensor(w, "f4", MUSE_DT_F4, 1, &odd, &err) == MUSE_ERR_USAGE);
	CHECK(muse_st_writer_add_tensor(w, "bad\xff", MUSE_DT_F32, 1, &odd, &err) == MUSE_ERR_USAGE);
	uint64_t huge[2] = { 1ull << 62, 8 };
	CHECK(muse_st_writer_add_tensor(w, "huge", MUSE_DT_F32, 2, huge, &err) == MUSE_ERR_LIMIT);
	CHECK(muse_st_writer_add_tensor(w, "b", MUSE_DT_F16, 1, &odd, &err) == MUSE_OK);
	CHECK(muse_st_writer_begin(w, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "late", MUSE_DT_F32, 1, &odd, &err) == MUSE_ERR_USAGE);
	CHECK_EQ_U64(count_files(), 1); /* the temp file */
	CHECK(muse_st_writer_write(w, 0, buf, 20, &err) == MUSE_OK);
	/* moving on while "a" has 20 of 24 bytes */
	CHECK(muse_st_writer_write(w, 1, buf, 6, &err) == MUSE_ERR_USAGE);
	CHECK(strstr(err.msg, "tensor 'a': got 20 of its 24 bytes") != NULL);
	CHECK(muse_st_writer_finish(w, &err) == MUSE_ERR_USAGE);
	muse_st_writer_free(w);
	CHECK_EQ_U64(count_files(), 0);

	/* too many bytes */
	CHECK(muse_st_writer_create(&w, p, 0, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "a", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_begin(w, &err) == MUSE_OK);
	CHECK(muse_st_writer_write(w, 0, buf, 25, &err) == MUSE_ERR_USAGE);
	muse_st_writer_free(w);
	CHECK_EQ_U64(count_files(), 0);

	/* short at finish */
	CHECK(muse_st_writer_create(&w, p, 0, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "a", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_begin(w, &err) == MUSE_OK);
	CHECK(muse_st_writer_write(w, 0, buf, 23, &err) == MUSE_OK);
	CHECK(muse_st_writer_finish(w, &err) == MUSE_ERR_USAGE);
	muse_st_writer_free(w);
	CHECK_EQ_U64(count_files(), 0);

	/* abandoned sharded write: temps of every opened shard go */
	CHECK(muse_st_writer_create(&w, p, 30, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "a", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "b", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "c", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_begin(w, &err) == MUSE_OK);
	CHECK_EQ_U64(muse_st_writer_n_shards(w), 3);
	CHECK(muse_st_writer_write(w, 0, buf, 24, &err) == MUSE_OK);
	CHECK(muse_st_writer_write(w, 1, buf, 24, &err) == MUSE_OK);
	CHECK_EQ_U64(count_files(), 2);
	muse_st_writer_free(w);
	CHECK_EQ_U64(count_files(), 0);

	/* missing output directory: begin fails, nothing created */
	CHECK(muse_st_writer_create(&w, "/nonexistent-dir/x.safetensors", 0, &err) == MUSE_OK);
	CHECK(muse_st_writer_add_tensor(w, "a", MUSE_DT_F32, 2, shp, &err) == MUSE_OK);
	CHECK(muse_st_writer_begin(w, &err) == MUSE_ERR_IO);
	CHECK(muse_st_writer_write(w, 0, buf, 24, &err) == MUSE_ERR_USAGE);
	muse_st_writer_free(w);
}

/* Sharded reader cross-checks, done on files this writer produced then edited. */
static void index_checks(void)
{
	char p[1024], q[1024];
	path_in(p, sizeof p, "model.safetensors");
	path_in(q, sizeof q, "model.safetensors.index.json");
	muse_err err = { 0 };
	CHECK(write_specs(p, 600, shard_specs, N_SHARD, 64, NULL, &err) == MUSE_OK);
	muse_reader *r = NULL;
	const char *bad[] = {
		"{\"weight_map\":{\"a\":\"../x.safetensors\"}}",
		"{\"weight_map\":{\"a\":\"/etc/passwd\"}}",
		"{\"weight_map\":{\"layer.2.w\":\"model-00003-of-00003.safetensors\"}}", /* shard holds unlisted tensors */
		"{\"weight_map\":{\"big\":\"model-00001-of-00003.safetensors\",\"x\":\"model-00001-of-00003.safetensors\"}}",
		"{\"weight_map\":{\"big\":\"model-00009-of-00009.safetensors\"}}", /* missing shard */
		"[]",
		"{\"metadata\":{}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_raw(q, bad[i], strlen(bad[i]));
		CHECK(muse_safetensors_open_index(q, &r, &err) != MUSE_OK);
		CHECK(r == NULL);
		CHECK(strstr(err.msg, "model") != NULL);
	}
	clean_dir();
}

/* ---- driver for tests/interop: test_safetensors write SPEC.json DATA OUT MAX_SHARD_BYTES ---- */

static int driver(int argc, char **argv)
{
	if (argc != 6 || strcmp(argv[1], "write")) {
		fprintf(stderr, "usage: %s write SPEC.json DATA OUT MAX_SHARD_BYTES\n", argv[0]);
		return 2;
	}
	json_error_t je;
	json_t *spec = json_load_file(argv[2], 0, &je);
	if (!spec) {
		fprintf(stderr, "%s: %s\n", argv[2], je.text);
		return 2;
	}
	muse_err err = { 0 };
	muse_st_writer *w = NULL;
	muse_map data = { 0 };
	muse_status s = muse_map_open(argv[3], &data, &err);
	if (!s)
		s = muse_st_writer_create(&w, argv[4], strtoull(argv[5], NULL, 10), &err);
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(spec, "metadata"), k, v) if (!s) s =
		muse_st_writer_set_meta(w, k, json_string_value(v), &err);
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(spec, "tensors"), i, t) {
		uint64_t shape[MUSE_MAX_DIMS];
		json_t *js = json_object_get(t, "shape"), *d;
		size_t j;
		json_array_foreach(js, j, d) shape[j] = (uint64_t)json_integer_value(d);
		if (!s)
			s = muse_st_writer_add_tensor(w, json_string_value(json_object_get(t, "name")),
						      muse_dtype_from_st(json_string_value(json_object_get(t, "dtype"))),
						      (int)json_array_size(js), shape, &err);
	}
	if (!s)
		s = muse_st_writer_begin(w, &err);
	size_t chunk = (size_t)json_integer_value(json_object_get(spec, "chunk"));
	uint64_t pos = 0;
	for (i = 0; !s && i < muse_st_writer_n_tensors(w); i++) {
		uint64_t nb = muse_st_writer_tensor_bytes(w, i);
		for (uint64_t o = 0; !s && o < nb; o += chunk) {
			size_t c = nb - o < chunk ? (size_t)(nb - o) : chunk;
			if (pos + c > data.size)
				s = muse_err_set(&err, MUSE_ERR_USAGE, "data file too short");
			else
				s = muse_st_writer_write(w, i, data.data + pos, c, &err);
			pos += c;
		}
	}
	if (!s)
		s = muse_st_writer_finish(w, &err);
	muse_st_writer_free(w);
	muse_map_close(&data);
	json_decref(spec);
	if (s) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		return driver(argc, argv);
	unit_file_name = "safetensors";
	make_tmpdir();
	RUN(roundtrip_single_all_dtypes);
	RUN(roundtrip_sharded);
	RUN(limit_fits_one_shard);
	RUN(no_tensors);
	RUN(unaligned_f32);
	RUN(error_messages);
	RUN(writer_misuse);
	RUN(index_checks);
	clean_dir();
	rmdir(tmpdir);
	UNIT_MAIN_END();
}
