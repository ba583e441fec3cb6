/* fuzz_packed.c: libFuzzer target for the packed-layout readers (AutoAWQ qweight/qzeros/scales, GPTQ with g_idx, compressed-tensors weight_packed/weight_shape). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/packed.h"

/*
 * Input: a 6-byte config (layout, bits, sym, group size as int16 LE, tensor count), then per tensor an
 * 8-byte header (suffix, dtype, ndim, d0 and d1 as uint16 LE, flags) followed by its data, taken from the
 * input and zero-padded. Flags bit 0 gives the tensor a byte count off by the next input byte (the
 * checkpoint reader promises consistent ones, the decoder still must not trust them); bit 1 turns d0
 * into a huge dimension that overflows products. tests/fuzz/make_corpus_packed.py writes seeds.
 */
static const char *const SUFFIX[] = { "qweight", "qzeros", "scales", "g_idx", "weight_packed",
				      "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx", "bias" };
static const muse_dtype DTYPE[] = { MUSE_DT_I32, MUSE_DT_F16, MUSE_DT_BF16, MUSE_DT_F32, MUSE_DT_I64, MUSE_DT_U8 };
static const int BITS[] = { 2, 3, 4, 8, 1, 5, 16, 0 };
#define TENSOR_CAP (1u << 22) /* bytes per tensor the harness materialises */

static int scale_eq(float a, float b)
{
	return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* A decoded layer keeps the struct's promises; re-encoded into its own layout it decodes to the same codes. */
static void check_decoded(muse_packed_kind kind, const muse_qlinear *q, muse_dtype sdt, int64_t gs)
{
	uint32_t mask = (1u << q->bits) - 1;
	if (!q->rows || !q->cols || !q->group || q->n_groups != (q->cols + q->group - 1) / q->group)
		abort();
	for (uint64_t i = 0; i < q->rows * q->cols; i++)
		if (q->q[i] > mask)
			abort();
	for (uint64_t i = 0; i < q->rows * q->n_groups; i++)
		if (q->zeros[i] > mask)
			abort();
	if (q->g_idx)
		for (uint64_t k = 0; k < q->cols; k++)
			if (q->g_idx[k] < 0 || (uint64_t)q->g_idx[k] >= q->n_groups)
				abort();
	float *w = malloc(q->rows * q->cols * sizeof *w);
	if (w) {
		muse_qlinear_dequant(q, w);
		free(w);
	}
	muse_err err = { 0 };
	if (muse_packed_check(kind, q, &err))
		return;
	muse_packed_set set = { 0 };
	muse_qlinear back = { 0 };
	if (muse_packed_encode(kind, q, sdt, &set, &err) == MUSE_OK &&
	    muse_packed_decode(kind, &set, q->bits, gs, q->sym, "re", &back, &err) == MUSE_OK) {
		if (back.rows != q->rows || back.cols != q->cols || back.n_groups != q->n_groups ||
		    memcmp(back.q, q->q, q->rows * q->cols) || memcmp(back.zeros, q->zeros, q->rows * q->n_groups))
			abort();
		for (uint64_t i = 0; i < q->rows * q->n_groups; i++)
			if (!scale_eq(back.scales[i], q->scales[i]))
				abort();
	}
	muse_qlinear_free(&back);
	muse_packed_set_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	muse_packed_kind kind = (muse_packed_kind)(data[0] % 3);
	int bits = BITS[data[1] & 7];
	bool sym = data[2] & 1;
	int64_t gs = (int16_t)(data[3] | data[4] << 8);
	int n = data[5] % (MUSE_PACKED_MAX + 1);
	size_t pos = 6;
	muse_packed_set set = { 0 };
	for (int i = 0; i < n && pos + 8 <= size; i++) {
		const uint8_t *h = data + pos;
		pos += 8;
		muse_packed_tensor *t = &set.t[set.n];
		t->suffix = SUFFIX[h[0] % (sizeof SUFFIX / sizeof *SUFFIX)];
		t->dtype = DTYPE[h[1] % (sizeof DTYPE / sizeof *DTYPE)];
		t->ndim = h[2] % 3;
		t->shape[0] = (uint64_t)(h[3] | h[4] << 8);
		t->shape[1] = t->ndim == 2 ? (uint64_t)(h[5] | h[6] << 8) : 0;
		if (h[7] & 2)
			t->shape[0] = UINT64_MAX / (t->shape[0] ? t->shape[0] : 1) + 1;
		uint64_t elems = t->ndim == 0 ? 1 : t->shape[0], nb = 0;
		if (t->ndim == 2 && __builtin_mul_overflow(elems, t->shape[1], &elems))
			elems = UINT64_MAX;
		if (!muse_dtype_nbytes(t->dtype, elems, &nb) || nb > TENSOR_CAP)
			nb = TENSOR_CAP + 1;
		if ((h[7] & 1) && pos < size)
			nb = nb + (int8_t)data[pos++];
		if (nb > TENSOR_CAP)
			nb = size - pos < TENSOR_CAP ? size - pos : TENSOR_CAP;
		t->nbytes = (size_t)nb;
		/* Each tensor in its own allocation, as the checkpoint reader hands them over: ASan sees every overrun. */
		t->data = malloc(nb ? nb : 1);
		if (!t->data)
			break;
		size_t take = size - pos < nb ? size - pos : nb;
		memcpy(t->data, data + pos, take);
		memset(t->data + take, 0, nb - take);
		pos += take;
		set.n++;
	}
	muse_qlinear q;
	muse_err err = { 0 };
	muse_status s = muse_packed_decode(kind, &set, bits, gs, sym, "fuzz", &q, &err);
	if (s == MUSE_OK) {
		const muse_packed_tensor *sc = muse_packed_find(&set, kind == MUSE_PACKED_CT ? "weight_scale" : "scales");
		check_decoded(kind, &q, sc ? sc->dtype : MUSE_DT_F16, gs);
	} else if (!err.msg[0] || strchr(err.msg, '\n') || q.q || q.scales || q.zeros || q.g_idx) {
		abort(); /* one line, and nothing left allocated */
	}
	muse_qlinear_free(&q);
	muse_packed_set_free(&set);
	return 0;
}
