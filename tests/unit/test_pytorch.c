/*
 * test_pytorch.c: the PyTorch reader on archives built here (views, strides, CRC policy, layout checks, shards).
 * With arguments it is also the interop driver: `test_pytorch --dump PATH OUTDIR` writes tensor i, read
 * densely through muse_reader_read, to OUTDIR/<i>.bin (tests/interop/test_pytorch.py compares them with torch).
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../formats/pytorch.h"
#include "unit.h"
#include "zip_build.h"

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
	static char buf[512];
	snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
	return buf;
}

static float storage0[24];

/* Index of the entry called name in b (the layout varies with the optional members). */
static int ent(const zb *b, const char *name)
{
	for (int i = 0; i < b->ne; i++)
		if (!strcmp(b->e[i].name, name))
			return i;
	abort();
}

/* A torch-like archive "arc/" with the given pickle and storages 0 (24 floats) and 1 (6 halves). */
static void build(zb *b, const pb *pk, bool with_version, const char *byteorder)
{
	memset(b, 0, sizeof *b);
	zb_add(b, "arc/data.pkl", pk->p, pk->n, true);
	if (byteorder)
		zb_add(b, "arc/byteorder", byteorder, strlen(byteorder), true);
	zb_add(b, "arc/data/0", storage0, sizeof storage0, true);
	uint16_t halves[6] = { 0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600 };
	zb_add(b, "arc/data/1", halves, sizeof halves, true);
	if (with_version)
		zb_add(b, "arc/version", "3\n", 2, true);
	zb_finish(b, true, NULL);
}

static void views_pickle(pb *pk)
{
	uint32_t sz[2] = { 4, 6 }, st[2] = { 6, 1 };   /* w: 4x6 contiguous */
	uint32_t tsz[2] = { 6, 4 }, tst[2] = { 1, 6 }; /* wt: its transpose */
	uint32_t ssz[2] = { 2, 3 }, sst[2] = { 12, 2 }; /* s: w[::2, 1::2] -> offset 1 */
	uint32_t rsz = 6, rst = 1;                      /* r: row 2 of w, offset 12, contiguous */
	uint32_t hsz = 3, hst = 2;                      /* h: halves[::2] */
	uint32_t none = 0;
	pk->n = 0;
	pb_raw(pk, "\x80\x02}(", 4);
	pb_tensor(pk, "w", "FloatStorage", "0", 24, 0, sz, st, 2);
	pb_tensor(pk, "wt", "FloatStorage", "0", 24, 0, tsz, tst, 2);
	pb_tensor(pk, "s", "FloatStorage", "0", 24, 1, ssz, sst, 2);
	pb_tensor(pk, "r", "FloatStorage", "0", 24, 12, &rsz, &rst, 1);
	pb_tensor(pk, "h", "HalfStorage", "1", 6, 0, &hsz, &hst, 1);
	pb_tensor(pk, "scalar", "FloatStorage", "0", 24, 23, &none, &none, 0);
	pb_raw(pk, "u.", 2);
}

static void test_views_and_strides(void)
{
	for (int i = 0; i < 24; i++)
		storage0[i] = (float)i;
	pb pk;
	views_pickle(&pk);
	zb b;
	build(&b, &pk, true, "little");
	CHECK(zb_write(&b, tmp_path("v.bin")) == 0);
	muse_reader *r = NULL;
	muse_err err = { 0 };
	CHECK(muse_pytorch_open(tmp_path("v.bin"), &r, &err) == MUSE_OK);
	if (!r) {
		printf("#   %s\n", err.msg);
		zb_free(&b);
		return;
	}
	CHECK_EQ_U64(r->n_tensors, 6);
	CHECK_EQ_U64(r->version, 3);
	CHECK(!strcmp(r->format, "pytorch"));
	const muse_tensor *w = &r->tensors[0], *wt = &r->tensors[1], *s = &r->tensors[2], *row = &r->tensors[3];
	CHECK(!w->strided && wt->strided && s->strided && !row->strided && r->tensors[4].strided);
	CHECK_EQ_U64(w->offset, b.e[ent(&b, "arc/data/0")].data_off);
	CHECK_EQ_U64(row->offset, b.e[ent(&b, "arc/data/0")].data_off + 12 * 4);
	CHECK(muse_reader_view(r, 0) == r->files[0].data + b.e[ent(&b, "arc/data/0")].data_off);
	CHECK(muse_reader_view(r, 1) == NULL);

	float got[24];
	CHECK(muse_reader_read(r, 1, got, &err) == MUSE_OK);
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < 4; j++)
			CHECK(got[i * 4 + j] == (float)(j * 6 + i));
	CHECK(muse_reader_read(r, 2, got, &err) == MUSE_OK);
	float want_s[6] = { 1, 3, 5, 13, 15, 17 };
	CHECK(!memcmp(got, want_s, sizeof want_s));
	CHECK(muse_reader_read(r, 3, got, &err) == MUSE_OK);
	CHECK(got[0] == 12 && got[5] == 17);
	uint16_t h[3];
	CHECK(muse_reader_read(r, 4, h, &err) == MUSE_OK);
	CHECK(h[0] == 0x3c00 && h[1] == 0x4200 && h[2] == 0x4500);
	CHECK_EQ_U64(r->tensors[5].ndim, 0);
	CHECK_EQ_U64(r->tensors[5].nbytes, 4);
	CHECK(muse_reader_read(r, 5, got, &err) == MUSE_OK && got[0] == 23);
	CHECK(muse_pytorch_verify(r, &err) == MUSE_OK);
	muse_reader_free(r);
	zb_free(&b);
}

static void test_crc_policy(void)
{
	pb pk;
	views_pickle(&pk);
	zb b;
	build(&b, &pk, true, "little");
	b.p[b.e[ent(&b, "arc/data/0")].data_off + 5] ^= 0x40; /* a storage byte: open succeeds, reads through the reader fail */
	CHECK(zb_write(&b, tmp_path("crc.bin")) == 0);
	muse_reader *r = NULL;
	muse_err err = { 0 };
	CHECK(muse_pytorch_open(tmp_path("crc.bin"), &r, &err) == MUSE_OK);
	if (r) {
		float got[24];
		CHECK(muse_reader_read(r, 0, got, &err) == MUSE_ERR_CHECK);
		CHECK(strstr(err.msg, "tensor 'w'") && strstr(err.msg, "fails its CRC-32 check"));
		CHECK(muse_reader_read(r, 4, got, &err) == MUSE_OK); /* other storage is fine */
		CHECK(muse_pytorch_verify(r, &err) == MUSE_ERR_CHECK);
		muse_reader_free(r);
	}
	/* data.pkl is checked at open */
	b.p[b.e[ent(&b, "arc/data/0")].data_off + 5] ^= 0x40;
	b.p[b.e[ent(&b, "arc/data.pkl")].data_off + 10] ^= 0x01;
	CHECK(zb_write(&b, tmp_path("crc2.bin")) == 0);
	r = NULL;
	CHECK(muse_pytorch_open(tmp_path("crc2.bin"), &r, &err) == MUSE_ERR_CHECK);
	CHECK(r == NULL);
	CHECK(strstr(err.msg, "arc/data.pkl") != NULL);
	zb_free(&b);
}

static void expect_open_fail(const zb *b, const char *what)
{
	CHECK(zb_write(b, tmp_path("bad.bin")) == 0);
	muse_reader *r = NULL;
	muse_err err = { 0 };
	muse_status s = muse_pytorch_open(tmp_path("bad.bin"), &r, &err);
	CHECK(s != MUSE_OK && r == NULL);
	if (!strstr(err.msg, what))
		printf("#   expected '%s', got: %s\n", what, s ? err.msg : "success");
	CHECK(strstr(err.msg, what) != NULL);
	CHECK(strstr(err.msg, "bad.bin: byte ") != NULL);
	muse_reader_free(r);
}

static void test_layout_errors(void)
{
	pb pk;
	views_pickle(&pk);
	zb b;
	build(&b, &pk, false, "little");
	expect_open_fail(&b, "no 'arc/version' entry");
	zb_free(&b);
	build(&b, &pk, true, "big");
	expect_open_fail(&b, "big-endian");
	zb_free(&b);
	build(&b, &pk, true, "middle");
	expect_open_fail(&b, "neither \"little\" nor \"big\"");
	zb_free(&b);

	memset(&b, 0, sizeof b);
	zb_add(&b, "arc/data.pkl", pk.p, pk.n, true);
	zb_add(&b, "arc/code/__torch__.py", "x", 1, true);
	zb_add(&b, "arc/version", "3\n", 2, true);
	zb_finish(&b, true, NULL);
	expect_open_fail(&b, "TorchScript");
	zb_free(&b);

	memset(&b, 0, sizeof b);
	zb_add(&b, "arc/data.pkl", pk.p, pk.n, true);
	zb_add(&b, "other/version", "3\n", 2, true);
	zb_finish(&b, true, NULL);
	expect_open_fail(&b, "outside the archive's top-level folder 'arc'");
	zb_free(&b);

	memset(&b, 0, sizeof b);
	zb_add(&b, "arc/version", "3\n", 2, true);
	zb_finish(&b, true, NULL);
	expect_open_fail(&b, "no 'arc/data.pkl' entry");
	zb_free(&b);

	memset(&b, 0, sizeof b);
	zb_add(&b, "arc/data.pkl", pk.p, pk.n, true);
	zb_add(&b, "arc/version", "x3\n", 3, true);
	zb_finish(&b, true, NULL);
	expect_open_fail(&b, "not a decimal number");
	zb_free(&b);

	memset(&b, 0, sizeof b);
	zb_put(&b, "\x80\x02\x8a\x0alZ\xf9", 7);
	expect_open_fail(&b, "legacy (pre-1.6");
	zb_free(&b);
}

static void test_storage_errors(void)
{
	pb pk;
	uint32_t sz[2] = { 5, 6 }, st[2] = { 6, 1 };
	pk.n = 0;
	pb_raw(&pk, "\x80\x02}(", 4);
	pb_tensor(&pk, "w", "FloatStorage", "0", 30, 0, sz, st, 2); /* 30 floats, entry has 24 */
	pb_raw(&pk, "u.", 2);
	zb b;
	build(&b, &pk, true, NULL);
	expect_open_fail(&b, "storage '0': 30 elements of torch.FloatStorage need more than the 96 bytes");
	zb_free(&b);

	pk.n = 0;
	pb_raw(&pk, "\x80\x02}(", 4);
	uint32_t six = 6;
	pb_tensor(&pk, "w", "FloatStorage", "0", 24, 1, &six, &six, 1); /* 6 elements from offset 1 stride 6: 31 > 23 */
	pb_raw(&pk, "u.", 2);
	build(&b, &pk, true, NULL);
	expect_open_fail(&b, "tensor 'w': view (offset 1, 1 dims) reaches past its storage '0' of 24 elements");
	zb_free(&b);

	pk.n = 0;
	pb_raw(&pk, "\x80\x02}(", 4);
	pb_tensor(&pk, "w", "FloatStorage", "7", 24, 0, st, st + 1, 1);
	pb_raw(&pk, "u.", 2);
	build(&b, &pk, true, NULL);
	expect_open_fail(&b, "storage '7': no entry 'arc/data/7'");
	zb_free(&b);

	/* An empty tensor at the very end of its storage is fine; one past it is not. */
	uint32_t zero = 0, one = 1;
	pk.n = 0;
	pb_raw(&pk, "\x80\x02}(", 4);
	pb_tensor(&pk, "e", "FloatStorage", "0", 24, 24, &zero, &one, 1);
	pb_raw(&pk, "u.", 2);
	build(&b, &pk, true, NULL);
	CHECK(zb_write(&b, tmp_path("empty.bin")) == 0);
	muse_reader *r = NULL;
	muse_err err = { 0 };
	CHECK(muse_pytorch_open(tmp_path("empty.bin"), &r, &err) == MUSE_OK);
	if (r) {
		CHECK_EQ_U64(r->tensors[0].nbytes, 0);
		CHECK(muse_reader_read(r, 0, NULL, &err) == MUSE_OK);
	}
	muse_reader_free(r);
	zb_free(&b);
	pk.n = 0;
	pb_raw(&pk, "\x80\x02}(", 4);
	pb_tensor(&pk, "e", "FloatStorage", "0", 24, 25, &zero, &one, 1);
	pb_raw(&pk, "u.", 2);
	build(&b, &pk, true, NULL);
	expect_open_fail(&b, "reaches past its storage");
	zb_free(&b);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_index(void)
{
	uint32_t n6 = 6, one = 1;
	for (int k = 0; k < 2; k++) {
		pb pk;
		pk.n = 0;
		pb_raw(&pk, "\x80\x02}(", 4);
		pb_tensor(&pk, k ? "b" : "a", "FloatStorage", "0", 24, 0, &n6, &one, 1);
		pb_raw(&pk, "u.", 2);
		zb b;
		build(&b, &pk, true, "little");
		CHECK(zb_write(&b, tmp_path(k ? "m-00002.bin" : "m-00001.bin")) == 0);
		zb_free(&b);
	}
	char idx[300];
	snprintf(idx, sizeof idx, "%s", tmp_path("pytorch_model.bin.index.json"));
	write_text(idx, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {\"b\": \"m-00002.bin\", \"a\": \"m-00001.bin\"}}");
	muse_reader *r = NULL;
	muse_err err = { 0 };
	CHECK(muse_reader_open(idx, &r, &err) == MUSE_OK);
	if (r) {
		CHECK_EQ_U64(r->n_files, 2);
		CHECK_EQ_U64(r->n_tensors, 2);
		CHECK(!strcmp(r->tensors[0].name, "a") && r->tensors[0].file == 0);
		CHECK(!strcmp(r->tensors[1].name, "b") && r->tensors[1].file == 1);
		float got[6];
		CHECK(muse_reader_read(r, 1, got, &err) == MUSE_OK);
	} else {
		printf("#   %s\n", err.msg);
	}
	muse_reader_free(r);

	const char *bad[] = {
		"{\"weight_map\": {\"a\": \"\"}}",
		"{\"weight_map\": {\"a\": \"m-00002.bin\", \"b\": \"m-00001.bin\"}}",
		"{\"weight_map\": {\"a\": \"m-00001.bin\", \"b\": \"m-00002.bin\", \"c\": \"m-00002.bin\"}}",
		"{\"weight_map\": {\"a\": \"../m-00001.bin\"}}",
		"{\"weight_map\": {}}",
		"{\"weight_map\": {\"a\": 3}}",
		"{\"weight_map\": {\"a\": \"m-00001.bin\"}, \"weight_map\": {}}",
		"{\"weight_map\": {\"a\": \"missing.bin\"}}",
	};
	const char *why[] = {
		"shard name for tensor 'a' is empty",
		"tensor 'a' is in shard 'm-00001.bin' but weight_map says 'm-00002.bin'",
		"tensor 'c' is listed in weight_map but shard 'm-00002.bin' lacks it",
		"path separator",
		"non-empty \"weight_map\"",
		"is not a string",
		"invalid JSON",
		"missing.bin",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		write_text(idx, bad[i]);
		r = NULL;
		muse_status s = muse_pytorch_open_index(idx, &r, &err);
		CHECK(s != MUSE_OK && r == NULL);
		if (!strstr(err.msg, why[i]))
			printf("#   case %zu: expected '%s', got: %s\n", i, why[i], s ? err.msg : "success");
		CHECK(strstr(err.msg, why[i]) != NULL);
	}
}

/* ---- interop driver ---- */

static int dump(const char *path, const char *outdir)
{
	muse_reader *r = NULL;
	muse_err err = { 0 };
	if (muse_reader_open(path, &r, &err)) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		return 1;
	}
	int rc = 0;
	for (size_t i = 0; i < r->n_tensors && !rc; i++) {
		const muse_tensor *t = &r->tensors[i];
		void *buf = malloc(t->nbytes ? t->nbytes : 1);
		char p[4096];
		snprintf(p, sizeof p, "%s/%zu.bin", outdir, i);
		FILE *f = fopen(p, "wb");
		if (!buf || !f || muse_reader_read(r, i, buf, &err) ||
		    fwrite(buf, 1, t->nbytes, f) != t->nbytes) {
			fprintf(stderr, "muse: error: dump of tensor %zu failed: %s\n", i, err.msg);
			rc = 1;
		}
		if (f && fclose(f))
			rc = 1;
		free(buf);
	}
	muse_reader_free(r);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--dump"))
		return dump(argv[2], argv[3]);
	unit_file_name = "pytorch";
	const char *base = getenv("MUSE_TEST_TMP");
	snprintf(tmpdir, sizeof tmpdir, "%s/pytorch.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("FAIL: pytorch/setup: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	RUN(test_views_and_strides);
	RUN(test_crc_policy);
	RUN(test_layout_errors);
	RUN(test_storage_errors);
	RUN(test_index);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	UNIT_MAIN_END();
}
