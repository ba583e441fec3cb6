/* quant.c: the quantizer traits table and the threaded row driver. */
#include "quant.h"
#include "q_fast.h"

#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/block_layout.h"

#define BLOCK_ALIGN(name) _Alignof(muse_block_##name) /* what the decoders need of a source */
#define ROW(T, name) \
	{ MUSE_DT_##T, muse_quantize_##name##_ref, NULL, muse_dequantize_##name, false, BLOCK_ALIGN(name) }
/* the types ggml_quantize_requires_imatrix names (IQ1_M is commented out there: ggml quantizes it without) */
#define ROW_IMATRIX(T, name) \
	{ MUSE_DT_##T, muse_quantize_##name##_ref, NULL, muse_dequantize_##name, true, BLOCK_ALIGN(name) }
/* A row with a fast quantizer (q_fast.c): vector code with the reference's bytes, the reference itself without AVX2. */
#define ROWF(T, name)                                                                                          \
	{ MUSE_DT_##T, muse_quantize_##name##_ref, muse_quantize_##name##_fast, muse_dequantize_##name, false, \
	  BLOCK_ALIGN(name) }

static const muse_quant_traits table[] = {
	ROWF(Q4_0, q4_0), ROW(Q4_1, q4_1), ROW(Q5_0, q5_0), ROW(Q5_1, q5_1), ROWF(Q8_0, q8_0),
	ROWF(Q2_K, q2_k), ROWF(Q3_K, q3_k), ROWF(Q4_K, q4_k), ROWF(Q5_K, q5_k), ROWF(Q6_K, q6_k),
	ROW(IQ4_NL, iq4_nl), ROW(IQ4_XS, iq4_xs), ROW(MXFP4, mxfp4), ROW(TQ1_0, tq1_0), ROW(TQ2_0, tq2_0),
	ROW_IMATRIX(IQ2_XXS, iq2_xxs), ROW_IMATRIX(IQ2_XS, iq2_xs), ROW(IQ2_S, iq2_s), ROW(IQ3_XXS, iq3_xxs),
	ROW(IQ3_S, iq3_s), ROW_IMATRIX(IQ1_S, iq1_s), ROW(IQ1_M, iq1_m),
};

const muse_quant_traits *muse_quant_traits_of(muse_dtype t)
{
	for (size_t i = 0; i < sizeof table / sizeof *table; i++)
		if (table[i].type == t)
			return &table[i];
	return NULL;
}

muse_status muse_quantize_rows(muse_dtype t, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
			       const float *importance, int nthreads, muse_err *err)
{
	const muse_quant_traits *q = muse_quant_traits_of(t);
	const muse_dtype_traits *dt = muse_dtype_info(t);
	if (!q || !q->quantize_ref)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "quantizing to %s is not supported", muse_dtype_name(t));
	if (n_per_row <= 0 || n_per_row % dt->blck)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: row of %lld elements is not a whole number of %u-element blocks",
				    muse_dtype_name(t), (long long)n_per_row, dt->blck);
	if (q->needs_importance && !importance)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s needs an importance matrix (--imatrix)", muse_dtype_name(t));
	if ((uintptr_t)dst % q->align) /* a caller's bug: every output buffer is allocated or page-aligned */
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: output buffer is not %zu-byte aligned", muse_dtype_name(t),
				    q->align);
	muse_quantize_fn fn = q->quantize_fast ? q->quantize_fast : q->quantize_ref;
	size_t row_bytes = (size_t)(n_per_row / dt->blck) * dt->block_bytes;
	if (nthreads <= 0)
		nthreads = omp_get_max_threads();
	/* Rows are independent, so any split gives the same bytes. */
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
	for (int64_t r0 = 0; r0 < nrows; r0 += 16) {
		int64_t n = nrows - r0 < 16 ? nrows - r0 : 16;
		fn(src + r0 * n_per_row, (uint8_t *)dst + (size_t)r0 * row_bytes, n, n_per_row, importance);
	}
	return MUSE_OK;
}

/*
 * The decoders read blocks through their structs, which need their alignment; a tensor mapped from a GGUF file
 * whose general.alignment is below it (1 is legal) is decoded from an aligned copy, a chunk at a time.
 */
static muse_status dequantize_bounced(const muse_quant_traits *q, const muse_dtype_traits *dt, const void *src,
				      float *dst, int64_t nblk, muse_err *err)
{
	const int64_t per = 1024; /* blocks per copy */
	uint8_t *tmp = malloc((size_t)per * dt->block_bytes);
	if (!tmp)
		return muse_err_set(err, MUSE_ERR_NOMEM, "decoding %s: out of memory", dt->name);
	for (int64_t b = 0; b < nblk; b += per) {
		int64_t k = nblk - b < per ? nblk - b : per;
		memcpy(tmp, (const uint8_t *)src + (size_t)b * dt->block_bytes, (size_t)k * dt->block_bytes);
		q->dequantize(tmp, dst + b * dt->blck, k * dt->blck);
	}
	free(tmp);
	return MUSE_OK;
}

muse_status muse_dequantize(muse_dtype t, const void *src, float *dst, int64_t n, muse_err *err)
{
	const muse_quant_traits *q = muse_quant_traits_of(t);
	const muse_dtype_traits *dt = muse_dtype_info(t);
	if (!q || !q->dequantize)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "decoding %s is not supported", muse_dtype_name(t));
	if (n < 0 || n % dt->blck)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: %lld elements are not whole blocks", muse_dtype_name(t),
				    (long long)n);
	int64_t nblk = n / dt->blck, per = 4096; /* blocks per task */
	if ((uintptr_t)src % q->align)
		return dequantize_bounced(q, dt, src, dst, nblk, err);
#pragma omp parallel for schedule(static) if (nblk > 4 * per)
	for (int64_t b = 0; b < nblk; b += per) {
		int64_t k = nblk - b < per ? nblk - b : per;
		q->dequantize((const uint8_t *)src + (size_t)b * dt->block_bytes, dst + b * dt->blck, k * dt->blck);
	}
	return MUSE_OK;
}
