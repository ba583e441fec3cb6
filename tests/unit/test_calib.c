/* test_calib.c: calibration-data readers (token-id and JSONL parsing), sample cutting with a seed, the file hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../quant/calib.h"
#include "unit.h"

static int one_line(const muse_err *e)
{
	return e->msg[0] && !strchr(e->msg, '\n');
}

static void test_parse_ids(void)
{
	const char *s = "[1, 2,3]\n\t4 2147483647";
	int32_t *ids = NULL;
	size_t n = 0;
	muse_err err = { 0 };
	CHECK(muse_calib_parse_ids("t", (const uint8_t *)s, strlen(s), &ids, &n, &err) == MUSE_OK);
	CHECK_EQ_U64(n, 5);
	if (n == 5) {
		CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3 && ids[3] == 4 && ids[4] == INT32_MAX);
	}
	free(ids);
	/* empty and separator-only inputs hold no ids (the sample cutter refuses them) */
	ids = NULL;
	CHECK(muse_calib_parse_ids("t", (const uint8_t *)" ,[]\n", 5, &ids, &n, &err) == MUSE_OK && n == 0);
	free(ids);
	/* refusals: one line naming the file and the byte */
	const char *bad[] = { "1 2 x", "1 -2", "2147483648", "1.5" };
	const char *where[] = { "t: byte 4:", "t: byte 2:", "t: byte 0:", "t: byte 1:" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		muse_err e = { 0 };
		ids = (int32_t *)1;
		CHECK(muse_calib_parse_ids("t", (const uint8_t *)bad[i], strlen(bad[i]), &ids, &n, &e) == MUSE_ERR_FORMAT);
		CHECK(one_line(&e));
		CHECK(strstr(e.msg, where[i]) != NULL);
	}
}

static void test_jsonl(void)
{
	const char *s = "{\"text\": \"a b\", \"id\": 1}\n\n  \n{\"text\": \"\\u00e9\"}";
	char *t = NULL;
	size_t len = 0;
	muse_err err = { 0 };
	CHECK(muse_calib_jsonl_text("d.jsonl", (const uint8_t *)s, strlen(s), &t, &len, &err) == MUSE_OK);
	CHECK_EQ_U64(len, 7);
	CHECK(t && !memcmp(t, "a b\n\n\xc3\xa9", 7));
	free(t);
	/* bad JSON on line 2, a missing field, a non-string field, an array line, a duplicate key */
	const char *bad[] = { "{\"text\": \"a\"}\n{\"text\": ", "{\"txt\": \"a\"}", "{\"text\": 3}", "[\"text\"]",
			      "{\"text\": \"a\", \"text\": \"b\"}" };
	const char *what[] = { "line 2:", "line 1: no string field \"text\"", "no string field", "line 1:", "line 1:" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		muse_err e = { 0 };
		t = NULL;
		CHECK(muse_calib_jsonl_text("d.jsonl", (const uint8_t *)bad[i], strlen(bad[i]), &t, &len, &e) ==
		      MUSE_ERR_FORMAT);
		CHECK(t == NULL);
		CHECK(one_line(&e));
		CHECK(strstr(e.msg, "d.jsonl: byte ") == e.msg);
		CHECK(strstr(e.msg, what[i]) != NULL);
	}
}

static void test_cut(void)
{
	int32_t ids[105];
	for (int i = 0; i < 105; i++)
		ids[i] = 1000 + i;
	int32_t *out = NULL;
	muse_err err = { 0 };
	/* seed 0: the first windows in order, 5 tokens left over */
	int64_t n = 3;
	CHECK(muse_calib_cut(ids, 105, &n, 10, 0, -1, &out, &err) == MUSE_OK);
	for (int i = 0; out && i < 30; i++)
		CHECK(out[i] == 1000 + i);
	free(out);
	/* n 0: every whole window; bos replaces each sample's first token */
	n = 0;
	CHECK(muse_calib_cut(ids, 105, &n, 10, 0, 7, &out, &err) == MUSE_OK);
	CHECK_EQ_U64(n, 10);
	for (int k = 0; out && k < 10; k++) {
		CHECK(out[k * 10] == 7);
		CHECK(out[k * 10 + 9] == 1000 + k * 10 + 9);
	}
	free(out);
	/* seed 7: splitmix64 Fisher-Yates over the 10 windows; order from an independent Python implementation */
	static const int order7[10] = { 8, 1, 5, 9, 0, 4, 3, 2, 6, 7 };
	n = 10;
	CHECK(muse_calib_cut(ids, 105, &n, 10, 7, -1, &out, &err) == MUSE_OK);
	for (int k = 0; out && k < 10; k++)
		for (int j = 0; j < 10; j++)
			CHECK(out[k * 10 + j] == 1000 + order7[k] * 10 + j);
	free(out);
	/* a prefix of the same draw for fewer samples; another seed draws differently */
	n = 4;
	CHECK(muse_calib_cut(ids, 105, &n, 10, 7, -1, &out, &err) == MUSE_OK);
	for (int k = 0; out && k < 4; k++)
		CHECK(out[k * 10] == 1000 + order7[k] * 10);
	free(out);
	n = 10;
	int32_t *b = NULL;
	CHECK(muse_calib_cut(ids, 105, &n, 10, 8, -1, &b, &err) == MUSE_OK);
	int same = 1;
	for (int k = 0; b && k < 10; k++)
		same &= b[k * 10] == 1000 + order7[k] * 10;
	CHECK(!same);
	free(b);
	/* too few tokens, too many samples, bad sizes: refused, nothing allocated */
	struct {
		size_t n_ids;
		int64_t n, len;
		muse_status want;
		const char *what;
	} bad[] = {
		{ 9, 1, 10, MUSE_ERR_FORMAT, "the data has 9 tokens, not one whole sample of 10" },
		{ 0, 0, 10, MUSE_ERR_FORMAT, "the data has 0 tokens" },
		{ 105, 11, 10, MUSE_ERR_USAGE, "fewer than the 11 asked for" },
		{ 105, 1, 0, MUSE_ERR_USAGE, "not positive" },
		{ 105, -1, 10, MUSE_ERR_USAGE, "negative" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		muse_err e = { 0 };
		out = (int32_t *)1;
		n = bad[i].n;
		CHECK(muse_calib_cut(ids, bad[i].n_ids, &n, bad[i].len, 1, -1, &out, &e) == bad[i].want);
		CHECK(out == NULL);
		CHECK(one_line(&e) && strstr(e.msg, bad[i].what));
	}
}

static void test_sha256(void)
{
	char path[] = "/tmp/muse_test_calib_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, "abc", 3) == 3);
	close(fd);
	char hex[65];
	muse_err err = { 0 };
	CHECK(muse_sha256_file(path, hex, &err) == MUSE_OK);
	CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")); /* FIPS 180-2 */
	fd = open(path, O_WRONLY | O_TRUNC);
	close(fd);
	CHECK(muse_sha256_file(path, hex, &err) == MUSE_OK);
	CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	unlink(path);
}

int main(void)
{
	unit_file_name = "calib";
	RUN(test_parse_ids);
	RUN(test_jsonl);
	RUN(test_cut);
	RUN(test_sha256);
	UNIT_MAIN_END();
}
