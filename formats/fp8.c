/* fp8.c: block-scaled FP8 dequantization, a row at a time, so a converter never holds a dequantized tensor. */
#include <string.h>

#include "../lib/checked.h"
#include "fp8.h"

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

muse_status muse_fp8_scales_init(muse_fp8_scales *s, muse_dtype wdt, uint64_t rows, uint64_t cols,
				 const uint64_t *block, muse_dtype sdt, int sndim, const uint64_t *sshape,
				 const uint8_t *scale, muse_err *err)
{
	const muse_dtype_traits *wt = muse_dtype_info(wdt), *st = muse_dtype_info(sdt);
	memset(s, 0, sizeof *s);
	if (!wt || !wt->is_float || wt->blck != 1)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "scaled weights of type %s are not supported",
				    muse_dtype_name(wdt));
	if (!st || !st->is_float || st->blck != 1 || st->block_bytes < 2)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "weight scales of type %s are not supported (F32, BF16, F16)",
				    muse_dtype_name(sdt));
	uint64_t n = 1;
	for (int d = 0; d < sndim; d++)
		if (!muse_mul_u64(n, sshape[d], &n))
			return muse_err_set(err, MUSE_ERR_LIMIT, "scale element count overflows");
	s->rows = rows;
	s->cols = cols;
	s->scale = scale;
	s->wdt = wdt;
	s->sdt = sdt;
	if (block) {
		if (!block[0] || !block[1])
			return muse_err_set(err, MUSE_ERR_FORMAT, "weight_block_size %llu x %llu has a zero side",
					    (unsigned long long)block[0], (unsigned long long)block[1]);
		s->brow = block[0];
		s->bcol = block[1];
		s->srows = ceil_div(rows, block[0]);
		s->scols = ceil_div(cols, block[1]);
		if (sndim != 2 || sshape[0] != s->srows || sshape[1] != s->scols)
			return muse_err_set(err, MUSE_ERR_FORMAT,
					    "scale has %d dims (%llu x %llu), a %llu x %llu weight in %llu x %llu blocks "
					    "needs %llu x %llu", sndim, (unsigned long long)(sndim > 0 ? sshape[0] : 0),
					    (unsigned long long)(sndim > 1 ? sshape[1] : 0), (unsigned long long)rows,
					    (unsigned long long)cols, (unsigned long long)block[0],
					    (unsigned long long)block[1], (unsigned long long)s->srows,
					    (unsigned long long)s->scols);
	} else if (n == 1) {
		s->brow = rows ? rows : 1;
		s->bcol = cols ? cols : 1;
		s->srows = s->scols = 1;
	} else if (sndim == 1 && sshape[0] == rows) {
		s->brow = 1;
		s->bcol = cols ? cols : 1;
		s->srows = rows;
		s->scols = 1;
	} else {
		return muse_err_set(err, MUSE_ERR_FORMAT,
				    "scale of %llu elements fits neither the whole %llu x %llu weight nor its rows, and "
				    "config.json gives no weight_block_size", (unsigned long long)n,
				    (unsigned long long)rows, (unsigned long long)cols);
	}
	if (wt->block_bytes == 1)
		for (int v = 0; v < 256; v++) {
			uint8_t b = (uint8_t)v;
			muse_dtype_convert(MUSE_DT_F32, &s->lut[v], wdt, &b, 1, NULL);
		}
	return MUSE_OK;
}

void muse_fp8_dequant_row(const muse_fp8_scales *s, const uint8_t *q, uint64_t r, float *dst)
{
	size_t ssz = muse_dtype_info(s->sdt)->block_bytes, wsz = muse_dtype_info(s->wdt)->block_bytes;
	const uint8_t *srow = s->scale + (r / s->brow) * s->scols * ssz;
	if (wsz != 1) /* wider weights: convert first, then scale in place */
		muse_dtype_convert(MUSE_DT_F32, dst, s->wdt, q, (size_t)s->cols, NULL);
	for (uint64_t j = 0; j < s->scols; j++) {
		float sc;
		muse_dtype_convert(MUSE_DT_F32, &sc, s->sdt, srow + j * ssz, 1, NULL);
		uint64_t c0 = j * s->bcol, c1 = c0 + s->bcol < s->cols ? c0 + s->bcol : s->cols;
		if (wsz == 1)
			for (uint64_t c = c0; c < c1; c++)
				dst[c] = s->lut[q[c]] * sc;
		else
			for (uint64_t c = c0; c < c1; c++)
				dst[c] = dst[c] * sc;
	}
}
