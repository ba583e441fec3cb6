/* test_zip.c: the strict ZIP parser: torch-style archives accepted, every ambiguity refused with an offset. */
#include "../../formats/zip.h"
#include "unit.h"
#include "zip_build.h"

static const char pkl[] = "\x80\x02}q\x00.";
static const uint8_t blob[100] = { 1, 2, 3, 4, 5 };

static void torch_like(zb *b)
{
	memset(b, 0, sizeof *b);
	zb_add(b, "arc/data.pkl", pkl, sizeof pkl - 1, true);
	zb_add(b, "arc/byteorder", "little", 6, true);
	zb_add(b, "arc/data/0", blob, sizeof blob, true);
	zb_add(b, "arc/data/1", "", 0, true);
	zb_add(b, "arc/version", "3\n", 2, true);
}

/* Opens b's bytes; returns the status and leaves the message in err. */
static muse_status try_open(zb *b, muse_err *err)
{
	muse_zip z;
	muse_status s = muse_zip_open(&z, "t.zip", b->p, b->n, err);
	if (!s)
		muse_zip_close(&z);
	return s;
}

static void test_accepts_torch_layout(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	muse_zip z;
	muse_err err = { 0 };
	CHECK(muse_zip_open(&z, "t.zip", b.p, b.n, &err) == MUSE_OK);
	CHECK_EQ_U64(z.n_entries, 5);
	ptrdiff_t i = muse_zip_find(&z, "arc/data/0");
	CHECK(i == 2);
	if (i == 2) {
		CHECK_EQ_U64(z.entries[i].data_offset % 64, 0);
		CHECK_EQ_U64(z.entries[i].data_offset, b.e[2].data_off);
		CHECK_EQ_U64(z.entries[i].size, sizeof blob);
		CHECK(muse_zip_verify(&z, (size_t)i, &err) == MUSE_OK);
	}
	CHECK(muse_zip_find(&z, "arc/data/9") == -1);
	ptrdiff_t e = muse_zip_find(&z, "arc/data/1");
	CHECK(e >= 0 && z.entries[e].size == 0);
	if (e >= 0)
		CHECK(muse_zip_verify(&z, (size_t)e, &err) == MUSE_OK);
	muse_zip_close(&z);
	muse_zip_close(&z); /* closing twice is harmless */
	zb_free(&b);
}

static void test_accepts_plain_zip(void)
{
	zb b = { 0 };
	zb_add(&b, "a/x", "hello", 5, false);
	zb_add(&b, "a/y", "world", 5, false);
	zb_finish(&b, false, "a comment");
	muse_err err = { 0 };
	CHECK(try_open(&b, &err) == MUSE_OK);
	zb_free(&b);
}

static void test_crc_checked_lazily(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].data_off + 50] ^= 1;
	muse_zip z;
	muse_err err = { 0 };
	CHECK(muse_zip_open(&z, "t.zip", b.p, b.n, &err) == MUSE_OK);
	CHECK(muse_zip_verify(&z, 2, &err) == MUSE_ERR_CHECK);
	CHECK(strstr(err.msg, "CRC-32 mismatch") != NULL);
	CHECK(muse_zip_verify(&z, 2, &err) == MUSE_ERR_CHECK); /* cached */
	CHECK(muse_zip_verify(&z, 0, &err) == MUSE_OK);
	muse_zip_close(&z);
	zb_free(&b);
}

static void expect_fail(zb *b, const char *what)
{
	muse_err err = { 0 };
	muse_status s = try_open(b, &err);
	CHECK(s != MUSE_OK);
	if (s == MUSE_OK || !strstr(err.msg, what) || !strstr(err.msg, "t.zip: byte "))
		printf("#   expected '%s', got: %s\n", what, err.msg);
	CHECK(strstr(err.msg, what) != NULL);
	CHECK(strstr(err.msg, "t.zip: byte ") == err.msg);
}

static void test_rejects_no_eocd(void)
{
	zb b;
	torch_like(&b);
	expect_fail(&b, "no end-of-central-directory");
	zb_free(&b);
	zb e = { 0 };
	zb_put(&e, "PK", 2);
	expect_fail(&e, "too small");
	zb_free(&e);
}

static void test_rejects_two_eocd(void)
{
	/* A second end record hidden in the comment that also ends at EOF. */
	zb b;
	torch_like(&b);
	zb_finish(&b, false, NULL);
	zb c = { 0 };
	zb_put(&c, b.p, b.n);
	uint8_t *eocd = c.p + b.eocd;
	uint8_t fake[22];
	memcpy(fake, eocd, 22);
	fake[20] = fake[21] = 0;
	eocd[20] = 22; /* the real record's comment is now the fake record */
	zb_put(&c, fake, 22);
	expect_fail(&c, "two end-of-central-directory records");
	zb_free(&b);
	zb_free(&c);
}

static void test_rejects_method_and_flags(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].cd_off + 10] = 8; /* deflate in the CD only */
	expect_fail(&b, "local compression method 0 != central directory method 8");
	b.p[b.e[2].lho + 8] = 8; /* and locally: parsed and placed, never read */
	muse_zip z;
	muse_err err = { 0 };
	CHECK(muse_zip_open(&z, "t.zip", b.p, b.n, &err) == MUSE_OK);
	if (!err.code) {
		CHECK(z.entries[2].method == 8);
		CHECK(muse_zip_verify(&z, 2, &err) == MUSE_ERR_UNSUPPORTED);
		CHECK(strstr(err.msg, "compression method 8") != NULL);
		muse_zip_close(&z);
	}
	b.p[b.e[2].cd_off + 10] = 0;
	b.p[b.e[2].lho + 8] = 0;
	b.p[b.e[2].cd_off + 8] |= 1; /* encrypted */
	expect_fail(&b, "encrypted");
	b.p[b.e[2].cd_off + 8] = 0x08 | 0x40;
	expect_fail(&b, "flag bits 0x0040");
	b.p[b.e[2].cd_off + 8] = 0x00; /* CD says no descriptor, local says so */
	expect_fail(&b, "local flags");
	zb_free(&b);
}

static void test_rejects_local_mismatch(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].lho + 30 + 4] = 'X'; /* local name arc/Xata/0 */
	expect_fail(&b, "local header name differs");
	zb_free(&b);
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].lho + 8] = 8;
	expect_fail(&b, "local compression method 8 != central directory method 0");
	zb_free(&b);
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].data_off + sizeof blob + 8] ^= 1; /* descriptor size */
	expect_fail(&b, "data descriptor");
	zb_free(&b);
}

static void test_rejects_sizes(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].cd_off + 20] = 99; /* compressed size != uncompressed */
	expect_fail(&b, "compressed size 99");
	zb_free(&b);
	torch_like(&b);
	zb_finish(&b, true, NULL);
	b.p[b.e[2].cd_off + 20] = 200;
	b.p[b.e[2].cd_off + 24] = 200; /* both sizes grow: descriptor no longer matches */
	expect_fail(&b, "entry 'arc/data/0'");
	zb_free(&b);
}

static void test_rejects_duplicates_and_names(void)
{
	zb b = { 0 };
	zb_add(&b, "arc/data/0", "a", 1, true);
	zb_add(&b, "arc/data/0", "b", 1, true);
	zb_finish(&b, true, NULL);
	expect_fail(&b, "duplicate entry 'arc/data/0'");
	zb_free(&b);
	const char *names[] = { "../../etc/passwd", "/abs", "C:x", "a\\..\\b", "a//b", "a/./b", "a/" };
	const char *why[] = { "'..' component", "is absolute", "drive letter", "backslash", "empty path component", "'.'",
			      "empty path component" };
	for (int i = 0; i < 7; i++) {
		zb c = { 0 };
		zb_add(&c, names[i], "x", 1, false);
		zb_finish(&c, false, NULL);
		expect_fail(&c, why[i]);
		zb_free(&c);
	}
	zb d = { 0 };
	zb_add(&d, "a/b\x01", "x", 1, false);
	zb_finish(&d, false, NULL);
	expect_fail(&d, "control byte");
	zb_free(&d);
}

static void test_rejects_overlap_and_gaps(void)
{
	/* Entry a/x's data is itself a complete entry a/y: both CD records are consistent, the bytes overlap. */
	zb inner = { 0 };
	zb_add(&inner, "a/y", "world", 5, false);
	zb b = { 0 };
	zb_add(&b, "a/x", inner.p, inner.n, false);
	b.e[b.ne] = inner.e[0];
	b.e[b.ne].lho += b.e[0].data_off;
	b.e[b.ne].data_off += b.e[0].data_off;
	b.ne++;
	zb_finish(&b, false, NULL);
	expect_fail(&b, "overlaps");
	zb_free(&b);
	zb_free(&inner);

	zb g = { 0 };
	zb_add(&g, "a/x", "hello", 5, false);
	zb_put(&g, "junk", 4);
	zb_add(&g, "a/y", "world", 5, false);
	zb_finish(&g, false, NULL);
	expect_fail(&g, "4 unaccounted bytes before entry 'a/y'");
	zb_free(&g);
}

static void test_rejects_counts_and_spans(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	/* ZIP64 record claims 2^63 entries. */
	uint64_t z64 = b.cd_off + b.cd_size;
	uint64_t huge = 1ull << 63;
	memcpy(b.p + z64 + 24, &huge, 8);
	memcpy(b.p + z64 + 32, &huge, 8);
	b.p[b.eocd + 8] = b.p[b.eocd + 9] = b.p[b.eocd + 10] = b.p[b.eocd + 11] = 0xFF;
	expect_fail(&b, "cannot fit in a central directory");
	zb_free(&b);

	torch_like(&b);
	zb_finish(&b, false, NULL);
	b.p[b.eocd + 4] = 1; /* disk 1 */
	expect_fail(&b, "spanned");
	zb_free(&b);

	torch_like(&b);
	zb_finish(&b, false, NULL);
	b.p[b.eocd + 16] = 0xF0; /* CD offset moved */
	expect_fail(&b, "does not end where the end record begins");
	zb_free(&b);
}

static void test_rejects_bad_extra(void)
{
	zb b;
	torch_like(&b);
	zb_finish(&b, true, NULL);
	/* The FB extra of entry 2 claims more bytes than the extra area has. */
	uint64_t x = b.e[2].lho + 30 + strlen(b.e[2].name);
	b.p[x + 2] = 0xF0;
	expect_fail(&b, "runs past the extra area");
	zb_free(&b);

	/* CD record saying "see ZIP64" with no ZIP64 extra. */
	torch_like(&b);
	zb_finish(&b, true, NULL);
	memset(b.p + b.e[2].cd_off + 20, 0xFF, 8);
	expect_fail(&b, "no ZIP64 extra field");
	zb_free(&b);
}

int main(void)
{
	unit_file_name = "zip";
	RUN(test_accepts_torch_layout);
	RUN(test_accepts_plain_zip);
	RUN(test_crc_checked_lazily);
	RUN(test_rejects_no_eocd);
	RUN(test_rejects_two_eocd);
	RUN(test_rejects_method_and_flags);
	RUN(test_rejects_local_mismatch);
	RUN(test_rejects_sizes);
	RUN(test_rejects_duplicates_and_names);
	RUN(test_rejects_overlap_and_gaps);
	RUN(test_rejects_counts_and_spans);
	RUN(test_rejects_bad_extra);
	UNIT_MAIN_END();
}
