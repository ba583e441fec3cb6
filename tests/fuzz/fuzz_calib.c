/* fuzz_calib.c: libFuzzer target for the calibration-data readers (token ids, JSONL "text" lines) and the sample cutter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../quant/calib.h"

/*
 * The first byte picks the reader and the sample shape; the rest is the
 * file. Promises checked: a refusal leaves the output NULL and one
 * non-empty line in err; parsed ids lie in 0..INT32_MAX; JSONL text is
 * never longer than the input plus its separators; a cut is n_samples
 * whole windows of the stream (bos first when asked), the same for the
 * same seed, and is refused when the stream is shorter than one sample.
 */
static void refused(muse_status s, const void *out, const muse_err *e)
{
	if (s == MUSE_OK)
		return;
	if (out || !e->msg[0] || strchr(e->msg, '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	muse_err err = { 0 };
	int32_t *ids = NULL;
	size_t n_ids = 0;
	if (mode & 1) {
		char *text = NULL;
		size_t len = 0;
		muse_status s = muse_calib_jsonl_text("f.jsonl", data, size, &text, &len, &err);
		refused(s, text, &err);
		if (!s && len > size + 2 * (size / 2 + 1))
			abort();
		if (!s) {
			/* the joined text parsed again as ids: the same readers, other bytes */
			memset(&err, 0, sizeof err);
			s = muse_calib_parse_ids("f.txt", (const uint8_t *)text, len, &ids, &n_ids, &err);
			refused(s, ids, &err);
		}
		free(text);
		if (s)
			return 0;
	} else {
		muse_status s = muse_calib_parse_ids("f.txt", data, size, &ids, &n_ids, &err);
		refused(s, ids, &err);
		if (s)
			return 0;
	}
	for (size_t i = 0; i < n_ids; i++)
		if (ids[i] < 0)
			abort();
	int64_t seq_len = 1 + ((mode >> 1) & 7), want = (mode >> 4) & 3;
	uint64_t seed = mode >> 6;
	int32_t bos = (mode & 8) ? 5 : -1;
	int64_t n = want;
	int32_t *out = NULL, *again = NULL;
	memset(&err, 0, sizeof err);
	muse_status s = muse_calib_cut(ids, n_ids, &n, seq_len, seed, bos, &out, &err);
	refused(s, out, &err);
	size_t windows = n_ids / (size_t)seq_len;
	if ((!windows || (uint64_t)want > windows) != (s != MUSE_OK))
		abort();
	if (!s) {
		if (n < 1 || (uint64_t)n > windows || (want && n != want))
			abort();
		for (int64_t k = 0; k < n; k++) {
			const int32_t *smp = out + k * seq_len;
			/* each sample is one whole window: find it */
			int found = 0;
			for (size_t w = 0; w < windows && !found; w++) {
				const int32_t *win = ids + w * (size_t)seq_len;
				found = (bos >= 0 ? smp[0] == bos : smp[0] == win[0]) &&
					!memcmp(smp + 1, win + 1, (size_t)(seq_len - 1) * sizeof *smp);
			}
			if (!found)
				abort();
		}
		int64_t n2 = want;
		if (muse_calib_cut(ids, n_ids, &n2, seq_len, seed, bos, &again, &err) || n2 != n ||
		    memcmp(out, again, (size_t)(n * seq_len) * sizeof *out))
			abort();
	}
	free(again);
	free(out);
	free(ids);
	return 0;
}
