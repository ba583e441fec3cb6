/* packed.c: AutoAWQ GEMM, GPTQ v1 and compressed-tensors pack-quantized layouts: pack, unpack, config JSON (reference/FORMATS.md §2c-2e). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/block_layout.h"
#include "../lib/checked.h"
#include "packed.h"

#ifndef MUSE_VERSION
#define MUSE_VERSION "0.1.0"
#endif

muse_status muse_qlinear_alloc(muse_qlinear *q, uint64_t rows, uint64_t cols, int bits, int64_t group_size,
			       bool sym, bool with_g_idx, muse_err *err)
{
	memset(q, 0, sizeof *q);
	if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
		return muse_err_set(err, MUSE_ERR_USAGE, "bits %d: expected 2, 3, 4 or 8", bits);
	if (rows == 0 || cols == 0)
		return muse_err_set(err, MUSE_ERR_USAGE, "empty linear layer (%llu x %llu)", (unsigned long long)rows,
				    (unsigned long long)cols);
	if (group_size == 0 || group_size < -1)
		return muse_err_set(err, MUSE_ERR_USAGE, "group size %lld: expected -1 or a positive number",
				    (long long)group_size);
	q->rows = rows;
	q->cols = cols;
	q->bits = bits;
	q->sym = sym;
	q->group = group_size < 0 || (uint64_t)group_size > cols ? cols : (uint64_t)group_size;
	q->n_groups = (cols + q->group - 1) / q->group;
	uint64_t nq, ng;
	if (!muse_mul_u64(rows, cols, &nq) || !muse_mul_u64(rows, q->n_groups, &ng) || nq > SIZE_MAX / 4 ||
	    ng > SIZE_MAX / 8)
		return muse_err_set(err, MUSE_ERR_LIMIT, "linear layer %llu x %llu is too large",
				    (unsigned long long)rows, (unsigned long long)cols);
	q->q = calloc(nq, 1);
	q->scales = calloc(ng, sizeof(float));
	q->zeros = calloc(ng, 1);
	q->g_idx = with_g_idx ? calloc(cols, sizeof(int32_t)) : NULL;
	if (!q->q || !q->scales || !q->zeros || (with_g_idx && !q->g_idx)) {
		muse_qlinear_free(q);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for a %llu x %llu linear layer",
				    (unsigned long long)rows, (unsigned long long)cols);
	}
	return MUSE_OK;
}

void muse_qlinear_free(muse_qlinear *q)
{
	if (!q)
		return;
	free(q->q);
	free(q->scales);
	free(q->zeros);
	free(q->g_idx);
	memset(q, 0, sizeof *q);
}

void muse_qlinear_dequant(const muse_qlinear *q, float *w)
{
	for (uint64_t r = 0; r < q->rows; r++)
		for (uint64_t k = 0; k < q->cols; k++) {
			uint64_t g = r * q->n_groups + muse_qlinear_group_of(q, k);
			w[r * q->cols + k] = ((float)q->q[r * q->cols + k] - (float)q->zeros[g]) * q->scales[g];
		}
}

const char *muse_packed_kind_name(muse_packed_kind k)
{
	switch (k) {
	case MUSE_PACKED_AWQ: return "awq";
	case MUSE_PACKED_GPTQ: return "gptq";
	case MUSE_PACKED_CT: return "compressed-tensors";
	}
	return "?";
}

void muse_packed_set_free(muse_packed_set *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		free(s->t[i].data);
	memset(s, 0, sizeof *s);
}

const muse_packed_tensor *muse_packed_find(const muse_packed_set *s, const char *suffix)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->t[i].suffix, suffix))
			return &s->t[i];
	return NULL;
}

/* ---- bit streams: value t of b bits at bit b*t, LSB first, straddling 32-bit words (GPTQ's 3-bit dance) ---- */

static void put_bits(uint32_t *w, uint64_t stride, uint64_t bit, uint32_t v, int b)
{
	uint64_t wi = bit / MUSE_PACK_WORD_BITS;
	unsigned sh = (unsigned)(bit % MUSE_PACK_WORD_BITS);
	w[wi * stride] |= v << sh;
	if (sh + (unsigned)b > MUSE_PACK_WORD_BITS)
		w[(wi + 1) * stride] |= v >> (MUSE_PACK_WORD_BITS - sh);
}

static uint32_t get_bits(const uint32_t *w, uint64_t stride, uint64_t bit, int b)
{
	uint64_t wi = bit / MUSE_PACK_WORD_BITS;
	unsigned sh = (unsigned)(bit % MUSE_PACK_WORD_BITS);
	uint32_t v = w[wi * stride] >> sh;
	if (sh + (unsigned)b > MUSE_PACK_WORD_BITS)
		v |= w[(wi + 1) * stride] << (MUSE_PACK_WORD_BITS - sh);
	return v & ((1u << b) - 1);
}

/*
 * compressed-tensors (0.20) packs densely: ceil(E*b/32) words for E values, values straddling words
 * as GPTQ's do. For 4 and 8 bits this equals the older floor(32/b)-values-a-word packing.
 */
static uint64_t ct_words(uint64_t n, int bits)
{
	return MUSE_PACKED_WORDS(n, bits);
}

static muse_status add_tensor(muse_packed_set *s, const char *suffix, muse_dtype dt, int ndim, uint64_t d0,
			      uint64_t d1, muse_err *err)
{
	muse_packed_tensor *t = &s->t[s->n];
	uint64_t n = ndim == 1 ? d0 : 0, nb;
	if (ndim == 2 && !muse_mul_u64(d0, d1, &n))
		return muse_err_set(err, MUSE_ERR_LIMIT, "packed tensor '%s' is too large", suffix);
	if (!muse_dtype_nbytes(dt, n, &nb) || nb > SIZE_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "packed tensor '%s' is too large", suffix);
	t->data = calloc(nb ? (size_t)nb : 1, 1);
	if (!t->data)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for packed tensor '%s'", suffix);
	t->suffix = suffix;
	t->dtype = dt;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = ndim == 2 ? d1 : 0;
	t->nbytes = (size_t)nb;
	s->n++;
	return MUSE_OK;
}

static void store_scale(uint8_t *dst, size_t i, float v, muse_dtype dt)
{
	if (dt == MUSE_DT_F32) {
		memcpy(dst + 4 * i, &v, 4);
		return;
	}
	uint16_t h = dt == MUSE_DT_BF16 ? muse_f32_to_bf16(v) : muse_f32_to_f16(v);
	memcpy(dst + 2 * i, &h, 2);
}

static float load_scale(const uint8_t *src, size_t i, muse_dtype dt)
{
	if (dt == MUSE_DT_F32) {
		float v;
		memcpy(&v, src + 4 * i, 4);
		return v;
	}
	uint16_t h;
	memcpy(&h, src + 2 * i, 2);
	return dt == MUSE_DT_BF16 ? muse_bf16_to_f32(h) : muse_f16_to_f32(h);
}

static bool gidx_is_identity(const muse_qlinear *q)
{
	if (!q->g_idx)
		return true;
	for (uint64_t k = 0; k < q->cols; k++)
		if ((uint64_t)q->g_idx[k] != k / q->group)
			return false;
	return true;
}

muse_status muse_packed_check(muse_packed_kind kind, const muse_qlinear *q, muse_err *err)
{
	unsigned long long N = q->rows, K = q->cols;
	if (q->g_idx)
		for (uint64_t k = 0; k < q->cols; k++)
			if (q->g_idx[k] < 0 || (uint64_t)q->g_idx[k] >= q->n_groups)
				return muse_err_set(err, MUSE_ERR_FORMAT, "g_idx[%llu] = %d outside 0..%llu",
						    (unsigned long long)k, q->g_idx[k],
						    (unsigned long long)q->n_groups - 1);
	switch (kind) {
	case MUSE_PACKED_AWQ:
		if (q->bits != MUSE_AWQ_BITS)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "AutoAWQ GEMM stores 4-bit weights only, not %d-bit",
					    q->bits);
		if (!gidx_is_identity(q))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "AutoAWQ GEMM has no g_idx: act-order needs --format gptq or compressed-tensors");
		if (K % q->group)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "AutoAWQ GEMM: in_features %llu is not a multiple of the group size %llu", K,
					    (unsigned long long)q->group);
		if (N % MUSE_AWQ_PACK)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "AutoAWQ GEMM: out_features %llu is not a multiple of 8", N);
		return MUSE_OK;
	case MUSE_PACKED_GPTQ:
		if (K * (unsigned)q->bits % 32 || N * (unsigned)q->bits % 32)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "GPTQ: %llu x %llu at %d bits does not pack into 32-bit words", N, K, q->bits);
		if (!q->sym)
			for (uint64_t i = 0; i < q->rows * q->n_groups; i++)
				if (q->zeros[i] == 0)
					return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
							    "GPTQ v1 cannot store zero point 0 (stored as z-1)");
		return MUSE_OK;
	case MUSE_PACKED_CT:
		/* compressed-tensors removed actorder "group" (weight_g_idx) in 2026-08: only monotonic groups are storable. */
		if (!gidx_is_identity(q))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "compressed-tensors no longer stores g_idx (actorder \"group\" was removed): "
					    "use --static-groups (actorder \"weight\") or --format gptq");
		if (K % q->group)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "compressed-tensors: in_features %llu is not a multiple of the group size %llu", K,
					    (unsigned long long)q->group);
		if (q->sym)
			for (uint64_t i = 0; i < q->rows * q->n_groups; i++)
				if (q->zeros[i] != MUSE_PACKED_SYM_ZERO(q->bits))
					return muse_err_set(err, MUSE_ERR_FORMAT,
							    "symmetric weights with a zero point other than %u",
							    MUSE_PACKED_SYM_ZERO(q->bits));
		return MUSE_OK;
	}
	return muse_err_set(err, MUSE_ERR_USAGE, "unknown packed layout %d", (int)kind);
}

static muse_status encode_awq(const muse_qlinear *q, muse_dtype sdt, muse_packed_set *o, muse_err *err)
{
	uint64_t N = q->rows, K = q->cols, G = q->n_groups;
	muse_status s;
	if ((s = add_tensor(o, "qweight", MUSE_DT_I32, 2, K, N / MUSE_AWQ_PACK, err)) ||
	    (s = add_tensor(o, "qzeros", MUSE_DT_I32, 2, G, N / MUSE_AWQ_PACK, err)) ||
	    (s = add_tensor(o, "scales", sdt, 2, G, N, err)))
		return s;
	uint32_t *qw = (uint32_t *)o->t[0].data, *qz = (uint32_t *)o->t[1].data;
	for (uint64_t k = 0; k < K; k++)
		for (uint64_t c = 0; c < N / MUSE_AWQ_PACK; c++) {
			uint32_t word = 0;
			for (int i = 0; i < MUSE_AWQ_PACK; i++)
				word |= (uint32_t)q->q[(MUSE_AWQ_PACK * c + muse_awq_order[i]) * K + k]
					<< (MUSE_AWQ_BITS * i);
			qw[k * (N / MUSE_AWQ_PACK) + c] = word;
		}
	for (uint64_t g = 0; g < G; g++) {
		for (uint64_t c = 0; c < N / MUSE_AWQ_PACK; c++) {
			uint32_t word = 0;
			for (int i = 0; i < MUSE_AWQ_PACK; i++)
				word |= (uint32_t)q->zeros[(MUSE_AWQ_PACK * c + muse_awq_order[i]) * G + g]
					<< (MUSE_AWQ_BITS * i);
			qz[g * (N / MUSE_AWQ_PACK) + c] = word;
		}
		for (uint64_t n = 0; n < N; n++)
			store_scale(o->t[2].data, g * N + n, q->scales[n * G + g], sdt);
	}
	return MUSE_OK;
}

static muse_status encode_gptq(const muse_qlinear *q, muse_dtype sdt, muse_packed_set *o, muse_err *err)
{
	uint64_t N = q->rows, K = q->cols, G = q->n_groups;
	int b = q->bits;
	uint32_t mask = (1u << b) - 1;
	muse_status s;
	if ((s = add_tensor(o, "qweight", MUSE_DT_I32, 2, K * b / 32, N, err)) ||
	    (s = add_tensor(o, "qzeros", MUSE_DT_I32, 2, G, N * b / 32, err)) ||
	    (s = add_tensor(o, "scales", sdt, 2, G, N, err)) || (s = add_tensor(o, "g_idx", MUSE_DT_I32, 1, K, 0, err)))
		return s;
	uint32_t *qw = (uint32_t *)o->t[0].data, *qz = (uint32_t *)o->t[1].data;
	int32_t *gi = (int32_t *)o->t[3].data;
	/* qweight: column n is one bit stream down K (stride N words). */
	for (uint64_t n = 0; n < N; n++)
		for (uint64_t k = 0; k < K; k++)
			put_bits(qw + n, N, k * b, q->q[n * K + k], b);
	/* qzeros: v1 stores z - 1, one bit stream along N per group. */
	for (uint64_t g = 0; g < G; g++) {
		for (uint64_t n = 0; n < N; n++) {
			put_bits(qz + g * (N * b / 32), 1, n * b,
				 ((uint32_t)q->zeros[n * G + g] - MUSE_GPTQ_V1_ZERO_BIAS) & mask, b);
			store_scale(o->t[2].data, g * N + n, q->scales[n * G + g], sdt);
		}
	}
	for (uint64_t k = 0; k < K; k++)
		gi[k] = (int32_t)muse_qlinear_group_of(q, k);
	return MUSE_OK;
}

static muse_status encode_ct(const muse_qlinear *q, muse_dtype sdt, muse_packed_set *o, muse_err *err)
{
	uint64_t N = q->rows, K = q->cols, G = q->n_groups;
	int b = q->bits;
	uint64_t kw = ct_words(K, b), nw = ct_words(N, b);
	muse_status s;
	if ((s = add_tensor(o, "weight_packed", MUSE_DT_I32, 2, N, kw, err)) ||
	    (s = add_tensor(o, "weight_scale", sdt, 2, N, G, err)) ||
	    (s = add_tensor(o, "weight_shape", MUSE_DT_I64, 1, 2, 0, err)))
		return s;
	uint32_t *wp = (uint32_t *)o->t[0].data;
	for (uint64_t n = 0; n < N; n++)
		for (uint64_t k = 0; k < K; k++)
			put_bits(wp + n * kw, 1, k * b, q->q[n * K + k], b);
	for (uint64_t i = 0; i < N * G; i++)
		store_scale(o->t[1].data, i, q->scales[i], sdt);
	int64_t shp[2] = { (int64_t)N, (int64_t)K };
	memcpy(o->t[2].data, shp, sizeof shp);
	if (!q->sym) {
		if ((s = add_tensor(o, "weight_zero_point", MUSE_DT_I32, 2, nw, G, err)))
			return s;
		uint32_t *zp = (uint32_t *)o->t[o->n - 1].data;
		for (uint64_t n = 0; n < N; n++)
			for (uint64_t g = 0; g < G; g++)
				put_bits(zp + g, G, n * b, q->zeros[n * G + g], b);
	}
	return MUSE_OK;
}

muse_status muse_packed_shapes(muse_packed_kind kind, uint64_t rows, uint64_t cols, int bits, int64_t group_size,
			       bool sym, bool has_g_idx, muse_dtype scale_dtype, muse_packed_set *out, muse_err *err)
{
	memset(out, 0, sizeof *out);
	/* A one-row probe would not see row-count constraints, so check the real shape without codes. */
	muse_qlinear q = { .rows = rows, .cols = cols, .bits = bits, .sym = sym };
	if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
		return muse_err_set(err, MUSE_ERR_USAGE, "bits %d: expected 2, 3, 4 or 8", bits);
	q.group = group_size < 0 || (uint64_t)group_size > cols ? cols : (uint64_t)group_size;
	q.n_groups = (cols + q.group - 1) / q.group;
	uint64_t N = rows, K = cols, G = q.n_groups;
	int b = bits;
	switch (kind) {
	case MUSE_PACKED_AWQ:
		if (b != MUSE_AWQ_BITS || has_g_idx || K % q.group || N % MUSE_AWQ_PACK) {
			q.g_idx = NULL;
			muse_status s = muse_packed_check(kind, &q, err);
			return s ? s : muse_err_set(err, MUSE_ERR_UNSUPPORTED, "AutoAWQ GEMM has no g_idx (act-order)");
		}
		out->t[0] = (muse_packed_tensor){ "qweight", MUSE_DT_I32, 2, { K, N / MUSE_AWQ_PACK }, NULL, 0 };
		out->t[1] = (muse_packed_tensor){ "qzeros", MUSE_DT_I32, 2, { G, N / MUSE_AWQ_PACK }, NULL, 0 };
		out->t[2] = (muse_packed_tensor){ "scales", scale_dtype, 2, { G, N }, NULL, 0 };
		out->n = 3;
		return MUSE_OK;
	case MUSE_PACKED_GPTQ:
		if (K * (unsigned)b % 32 || N * (unsigned)b % 32)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "GPTQ: %llu x %llu at %d bits does not pack into 32-bit words",
					    (unsigned long long)N, (unsigned long long)K, b);
		out->t[0] = (muse_packed_tensor){ "qweight", MUSE_DT_I32, 2, { K * b / 32, N }, NULL, 0 };
		out->t[1] = (muse_packed_tensor){ "qzeros", MUSE_DT_I32, 2, { G, N * b / 32 }, NULL, 0 };
		out->t[2] = (muse_packed_tensor){ "scales", scale_dtype, 2, { G, N }, NULL, 0 };
		out->t[3] = (muse_packed_tensor){ "g_idx", MUSE_DT_I32, 1, { K, 0 }, NULL, 0 };
		out->n = 4;
		return MUSE_OK;
	case MUSE_PACKED_CT:
		out->t[0] = (muse_packed_tensor){ "weight_packed", MUSE_DT_I32, 2, { N, ct_words(K, b) }, NULL, 0 };
		out->t[1] = (muse_packed_tensor){ "weight_scale", scale_dtype, 2, { N, G }, NULL, 0 };
		out->t[2] = (muse_packed_tensor){ "weight_shape", MUSE_DT_I64, 1, { 2, 0 }, NULL, 0 };
		out->n = 3;
		if (!sym)
			out->t[out->n++] = (muse_packed_tensor){ "weight_zero_point", MUSE_DT_I32, 2, { ct_words(N, b), G }, NULL, 0 };
		if (has_g_idx)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "compressed-tensors no longer stores g_idx (actorder \"group\" was removed): "
					    "use --static-groups (actorder \"weight\") or --format gptq");
		return MUSE_OK;
	}
	return muse_err_set(err, MUSE_ERR_USAGE, "unknown packed layout %d", (int)kind);
}

muse_status muse_packed_encode(muse_packed_kind kind, const muse_qlinear *q, muse_dtype scale_dtype,
			       muse_packed_set *out, muse_err *err)
{
	memset(out, 0, sizeof *out);
	if (scale_dtype != MUSE_DT_F16 && scale_dtype != MUSE_DT_BF16 && scale_dtype != MUSE_DT_F32)
		return muse_err_set(err, MUSE_ERR_USAGE, "scale dtype %s: expected F16, BF16 or F32",
				    muse_dtype_name(scale_dtype));
	muse_status s = muse_packed_check(kind, q, err);
	if (s)
		return s;
	s = kind == MUSE_PACKED_AWQ ? encode_awq(q, scale_dtype, out, err)
	  : kind == MUSE_PACKED_GPTQ ? encode_gptq(q, scale_dtype, out, err)
				     : encode_ct(q, scale_dtype, out, err);
	if (s)
		muse_packed_set_free(out);
	return s;
}

/* ---- decoding ---- */

static muse_status need(const muse_packed_set *in, const char *name, const char *suffix, muse_dtype dt, int ndim,
			uint64_t d0, uint64_t d1, const muse_packed_tensor **out, muse_err *err)
{
	const muse_packed_tensor *t = muse_packed_find(in, suffix);
	if (!t)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is missing", name, suffix);
	bool scale = dt == MUSE_DT_F16;
	if (scale ? (t->dtype != MUSE_DT_F16 && t->dtype != MUSE_DT_BF16 && t->dtype != MUSE_DT_F32) : t->dtype != dt)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", name, suffix,
				    muse_dtype_name(t->dtype), scale ? "F16, BF16 or F32" : muse_dtype_name(dt));
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' has shape [%llu%s%llu], expected [%llu%s%llu]",
				    name, suffix, (unsigned long long)t->shape[0], t->ndim == 2 ? ", " : "",
				    t->ndim == 2 ? (unsigned long long)t->shape[1] : 0ull, (unsigned long long)d0,
				    ndim == 2 ? ", " : "", ndim == 2 ? (unsigned long long)d1 : 0ull);
	uint64_t n = d0, nb;
	/* Checked: dimensions from a hostile header can wrap d0 * d1 around to the byte count present. */
	if ((ndim == 2 && !muse_mul_u64(d0, d1, &n)) || !muse_dtype_nbytes(t->dtype, n, &nb) || nb != t->nbytes)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' holds %zu bytes for its shape", name, suffix,
				    t->nbytes);
	*out = t;
	return MUSE_OK;
}

static muse_status decode_awq(const muse_packed_set *in, const char *name, muse_qlinear *q, muse_err *err)
{
	const muse_packed_tensor *qw, *qz, *sc;
	muse_status s;
	if (!muse_packed_find(in, "qweight"))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'qweight' is missing", name);
	uint64_t K = muse_packed_find(in, "qweight")->shape[0];
	uint64_t N8 = muse_packed_find(in, "qweight")->shape[1];
	if ((s = need(in, name, "qweight", MUSE_DT_I32, 2, K, N8, &qw, err)))
		return s;
	uint64_t N = N8 * MUSE_AWQ_PACK;
	if (q->group == 0 || K % q->group)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: in_features %llu is not a multiple of the group size", name,
				    (unsigned long long)K);
	uint64_t G = K / q->group;
	if ((s = need(in, name, "qzeros", MUSE_DT_I32, 2, G, N8, &qz, err)) ||
	    (s = need(in, name, "scales", MUSE_DT_F16, 2, G, N, &sc, err)))
		return s;
	int bits = q->bits;
	bool sym = q->sym;
	int64_t gs = (int64_t)q->group;
	if ((s = muse_qlinear_alloc(q, N, K, bits, gs, sym, false, err)))
		return s;
	const uint32_t *w = (const uint32_t *)qw->data, *z = (const uint32_t *)qz->data;
	const uint32_t nibble = (1u << MUSE_AWQ_BITS) - 1;
	for (uint64_t k = 0; k < K; k++)
		for (uint64_t c = 0; c < N8; c++)
			for (int i = 0; i < MUSE_AWQ_PACK; i++)
				q->q[(MUSE_AWQ_PACK * c + muse_awq_order[i]) * K + k] = (w[k * N8 + c] >> (MUSE_AWQ_BITS * i)) & nibble;
	for (uint64_t g = 0; g < G; g++)
		for (uint64_t c = 0; c < N8; c++)
			for (int i = 0; i < MUSE_AWQ_PACK; i++) {
				uint64_t n = MUSE_AWQ_PACK * c + muse_awq_order[i];
				q->zeros[n * G + g] = (z[g * N8 + c] >> (MUSE_AWQ_BITS * i)) & nibble;
				q->scales[n * G + g] = load_scale(sc->data, g * N + n, sc->dtype);
			}
	return MUSE_OK;
}

static muse_status decode_gptq(const muse_packed_set *in, const char *name, muse_qlinear *q, muse_err *err)
{
	const muse_packed_tensor *qw, *qz, *sc, *gi;
	muse_status s;
	int b = q->bits;
	const muse_packed_tensor *g0 = muse_packed_find(in, "g_idx");
	if (!g0 || g0->ndim != 1)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'g_idx' is missing or not 1-D", name);
	uint64_t K = g0->shape[0];
	const muse_packed_tensor *s0 = muse_packed_find(in, "scales");
	if (!s0 || s0->ndim != 2)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'scales' is missing or not 2-D", name);
	uint64_t N = s0->shape[1];
	if (!K || !N)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: empty layer (g_idx [%llu], scales [.., %llu])", name,
				    (unsigned long long)K, (unsigned long long)N);
	uint64_t grp = q->group ? q->group : K;
	if (grp > K)
		grp = K;
	uint64_t G = (K + grp - 1) / grp;
	if (K * b % 32 || N * b % 32)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: %llu x %llu does not pack into 32-bit words", name,
				    (unsigned long long)N, (unsigned long long)K);
	if ((s = need(in, name, "qweight", MUSE_DT_I32, 2, K * b / 32, N, &qw, err)) ||
	    (s = need(in, name, "qzeros", MUSE_DT_I32, 2, G, N * b / 32, &qz, err)) ||
	    (s = need(in, name, "scales", MUSE_DT_F16, 2, G, N, &sc, err)) ||
	    (s = need(in, name, "g_idx", MUSE_DT_I32, 1, K, 0, &gi, err)))
		return s;
	bool sym = q->sym;
	if ((s = muse_qlinear_alloc(q, N, K, b, (int64_t)grp, sym, true, err)))
		return s;
	const uint32_t *w = (const uint32_t *)qw->data, *z = (const uint32_t *)qz->data;
	memcpy(q->g_idx, gi->data, K * sizeof(int32_t));
	for (uint64_t k = 0; k < K; k++)
		if (q->g_idx[k] < 0 || (uint64_t)q->g_idx[k] >= G) {
			int32_t bad = q->g_idx[k];
			muse_qlinear_free(q);
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: g_idx[%llu] = %d outside 0..%llu", name,
					    (unsigned long long)k, bad, (unsigned long long)G - 1);
		}
	uint32_t mask = (1u << b) - 1;
	for (uint64_t n = 0; n < N; n++)
		for (uint64_t k = 0; k < K; k++)
			q->q[n * K + k] = (uint8_t)get_bits(w + n, N, k * b, b);
	for (uint64_t g = 0; g < G; g++)
		for (uint64_t n = 0; n < N; n++) {
			/* v1: the stored value is z - 1; a stored 2^b - 1 would read back as 2^b, which no code reaches. */
			uint32_t zv = get_bits(z + g * (N * b / 32), 1, n * b, b) + MUSE_GPTQ_V1_ZERO_BIAS;
			if (zv > mask) {
				muse_qlinear_free(q);
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: qzeros[%llu] column %llu reads as zero point %u (v1 underflow)",
						    name, (unsigned long long)g, (unsigned long long)n, zv);
			}
			q->zeros[n * G + g] = (uint8_t)zv;
			q->scales[n * G + g] = load_scale(sc->data, g * N + n, sc->dtype);
		}
	return MUSE_OK;
}

static muse_status decode_ct(const muse_packed_set *in, const char *name, muse_qlinear *q, muse_err *err)
{
	const muse_packed_tensor *wp, *sc, *sh, *zp = NULL, *gi = NULL;
	muse_status s;
	int b = q->bits;
	if ((s = need(in, name, "weight_shape", MUSE_DT_I64, 1, 2, 0, &sh, err)))
		return s;
	int64_t shp[2];
	memcpy(shp, sh->data, sizeof shp);
	if (shp[0] <= 0 || shp[1] <= 0 || shp[0] > (int64_t)1 << 40 || shp[1] > (int64_t)1 << 40)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: weight_shape [%lld, %lld] is not a matrix shape", name,
				    (long long)shp[0], (long long)shp[1]);
	uint64_t N = (uint64_t)shp[0], K = (uint64_t)shp[1];
	uint64_t grp = q->group ? q->group : K;
	if (grp > K)
		grp = K;
	uint64_t G = (K + grp - 1) / grp, kw = ct_words(K, b), nw = ct_words(N, b);
	if ((s = need(in, name, "weight_packed", MUSE_DT_I32, 2, N, kw, &wp, err)) ||
	    (s = need(in, name, "weight_scale", MUSE_DT_F16, 2, N, G, &sc, err)))
		return s;
	if (!q->sym && (s = need(in, name, "weight_zero_point", MUSE_DT_I32, 2, nw, G, &zp, err)))
		return s;
	if (muse_packed_find(in, "weight_g_idx") && (s = need(in, name, "weight_g_idx", MUSE_DT_I32, 1, K, 0, &gi, err)))
		return s;
	bool sym = q->sym;
	if ((s = muse_qlinear_alloc(q, N, K, b, (int64_t)grp, sym, gi != NULL, err)))
		return s;
	const uint32_t *w = (const uint32_t *)wp->data;
	for (uint64_t n = 0; n < N; n++)
		for (uint64_t k = 0; k < K; k++)
			q->q[n * K + k] = (uint8_t)get_bits(w + n * kw, 1, k * b, b);
	for (uint64_t i = 0; i < N * G; i++) {
		q->scales[i] = load_scale(sc->data, i, sc->dtype);
		q->zeros[i] = (uint8_t)MUSE_PACKED_SYM_ZERO(b);
	}
	if (zp) {
		const uint32_t *z = (const uint32_t *)zp->data;
		for (uint64_t n = 0; n < N; n++)
			for (uint64_t g = 0; g < G; g++)
				q->zeros[n * G + g] = (uint8_t)get_bits(z + g, G, n * b, b);
	}
	if (gi) {
		memcpy(q->g_idx, gi->data, K * sizeof(int32_t));
		for (uint64_t k = 0; k < K; k++)
			if (q->g_idx[k] < 0 || (uint64_t)q->g_idx[k] >= G) {
				int32_t bad = q->g_idx[k];
				muse_qlinear_free(q);
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: weight_g_idx[%llu] = %d outside 0..%llu", name,
						    (unsigned long long)k, bad, (unsigned long long)G - 1);
			}
	}
	return MUSE_OK;
}

muse_status muse_packed_decode(muse_packed_kind kind, const muse_packed_set *in, int bits, int64_t group_size,
			       bool sym, const char *name, muse_qlinear *out, muse_err *err)
{
	memset(out, 0, sizeof *out);
	if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: bits %d: expected 2, 3, 4 or 8", name, bits);
	if (kind == MUSE_PACKED_AWQ && bits != MUSE_AWQ_BITS)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: AutoAWQ GEMM is 4-bit, config says %d", name, bits);
	if (group_size == 0 || group_size < -1)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: group size %lld", name, (long long)group_size);
	/* Carry the config through *out until the shapes are known (0 = per-channel). */
	out->bits = bits;
	out->sym = sym;
	out->group = group_size < 0 ? 0 : (uint64_t)group_size;
	if (kind == MUSE_PACKED_AWQ && group_size < 0) {
		const muse_packed_tensor *t = muse_packed_find(in, "qweight");
		out->group = t ? t->shape[0] : 0;
	}
	muse_status s = kind == MUSE_PACKED_AWQ ? decode_awq(in, name, out, err)
		      : kind == MUSE_PACKED_GPTQ ? decode_gptq(in, name, out, err)
						 : decode_ct(in, name, out, err);
	if (s)
		muse_qlinear_free(out);
	return s;
}

/* ---- config JSON ---- */

static json_t *ignore_list(const muse_packed_config *c)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < c->n_ignore; i++)
		json_array_append_new(a, json_string(c->ignore[i]));
	return a;
}

muse_status muse_packed_config_json(const muse_packed_config *c, char **json, muse_err *err)
{
	*json = NULL;
	json_t *o = json_object();
	if (!o)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	switch (c->kind) {
	case MUSE_PACKED_AWQ:
		json_object_set_new(o, "quant_method", json_string("awq"));
		json_object_set_new(o, "bits", json_integer(c->bits));
		json_object_set_new(o, "group_size", json_integer(c->group_size));
		json_object_set_new(o, "zero_point", json_boolean(!c->sym));
		json_object_set_new(o, "version", json_string("gemm"));
		json_object_set_new(o, "modules_to_not_convert", c->n_ignore ? ignore_list(c) : json_null());
		break;
	case MUSE_PACKED_GPTQ: {
		json_object_set_new(o, "quant_method", json_string("gptq"));
		json_object_set_new(o, "bits", json_integer(c->bits));
		json_object_set_new(o, "group_size", json_integer(c->group_size));
		/*
		 * With static groups (or one group per row) every column keeps group k / group: the checkpoint is the plain layout and
		 * desc_act true would only make loaders take their act-order path (vLLM's default path refuses it).
		 */
		json_object_set_new(o, "desc_act", json_boolean(c->desc_act && !c->static_groups && c->group_size > 0));
		json_object_set_new(o, "sym", json_boolean(c->sym));
		json_object_set_new(o, "damp_percent", json_real(c->damp_percent));
		json_object_set_new(o, "true_sequential", json_boolean(c->true_sequential));
		json_object_set_new(o, "static_groups", json_boolean(c->static_groups));
		json_object_set_new(o, "lm_head", json_false());
		json_object_set_new(o, "checkpoint_format", json_string("gptq"));
		json_object_set_new(o, "format", json_string("gptq"));
		json_object_set_new(o, "pack_dtype", json_string("int32"));
		json_t *meta = json_object();
		json_object_set_new(meta, "quantizer", json_pack("[s]", "muse:" MUSE_VERSION));
		json_object_set_new(meta, "method", json_string(c->method ? c->method : "gptq"));
		/* GPTQModel's QuantizeConfig.from_quant_config reads these from meta. */
		json_object_set_new(meta, "damp_percent", json_real(c->damp_percent));
		json_object_set_new(meta, "true_sequential", json_boolean(c->true_sequential));
		json_object_set_new(meta, "static_groups", json_boolean(c->static_groups));
		json_object_set_new(o, "meta", meta);
		break;
	}
	case MUSE_PACKED_CT: {
		json_t *w = json_object();
		json_object_set_new(w, "num_bits", json_integer(c->bits));
		json_object_set_new(w, "type", json_string("int"));
		json_object_set_new(w, "symmetric", json_boolean(c->sym));
		json_object_set_new(w, "group_size", c->group_size > 0 ? json_integer(c->group_size) : json_null());
		json_object_set_new(w, "strategy", json_string(c->group_size > 0 ? "group" : "channel"));
		json_object_set_new(w, "block_structure", json_null());
		json_object_set_new(w, "dynamic", json_false());
		/* act-order with static groups changes only the calibration order: actorder "weight", no g_idx. */
		if (c->desc_act)
			json_object_set_new(w, "actorder", json_string("weight"));
		json_object_set_new(w, "observer", json_string("minmax"));
		json_object_set_new(w, "observer_kwargs", json_object());
		json_t *g = json_object();
		json_object_set_new(g, "targets", json_pack("[s]", "Linear"));
		json_object_set_new(g, "weights", w);
		json_object_set_new(g, "input_activations", json_null());
		json_object_set_new(g, "output_activations", json_null());
		json_object_set_new(g, "format", json_string("pack-quantized"));
		json_t *groups = json_object();
		json_object_set_new(groups, "group_0", g);
		json_object_set_new(o, "quant_method", json_string("compressed-tensors"));
		json_object_set_new(o, "format", json_string("pack-quantized"));
		json_object_set_new(o, "quantization_status", json_string("compressed"));
		json_object_set_new(o, "config_groups", groups);
		json_object_set_new(o, "ignore", ignore_list(c));
		json_object_set_new(o, "kv_cache_scheme", json_null());
		json_object_set_new(o, "global_compression_ratio", json_null());
		break;
	}
	}
	*json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!*json)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return MUSE_OK;
}
