/* rtn.c: round-to-nearest onto integer grids: GPTQ's and AutoAWQ's scale/zero rules, scales rounded to the stored dtype first. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rtn.h"

#include "../lib/block_layout.h"

muse_status muse_wq_config_check(const muse_wq_config *c, uint64_t cols, muse_err *err)
{
	if (c->bits != 2 && c->bits != 3 && c->bits != 4 && c->bits != 8)
		return muse_err_set(err, MUSE_ERR_USAGE, "--bits %d: expected 2, 3, 4 or 8", c->bits);
	if (c->group_size == 0 || c->group_size < -1)
		return muse_err_set(err, MUSE_ERR_USAGE, "--group-size %lld: expected -1 (per channel) or a positive number",
				    (long long)c->group_size);
	if (c->style != MUSE_WQ_MINMAX && c->style != MUSE_WQ_AWQ)
		return muse_err_set(err, MUSE_ERR_USAGE, "unknown grid style %d", (int)c->style);
	if (c->zero_min < 0 || c->zero_min >= (1 << c->bits) - 1)
		return muse_err_set(err, MUSE_ERR_USAGE, "zero_min %d outside the %d-bit grid", c->zero_min, c->bits);
	if (c->scale_dtype != MUSE_DT_F16 && c->scale_dtype != MUSE_DT_BF16 && c->scale_dtype != MUSE_DT_F32)
		return muse_err_set(err, MUSE_ERR_USAGE, "scale dtype %s: expected F16, BF16 or F32",
				    muse_dtype_name(c->scale_dtype));
	(void)cols;
	return MUSE_OK;
}

/* The scale as it will be stored; a positive finite value (tiny groups get the smallest one, huge ones the largest). */
static float round_scale(double s, muse_dtype dt)
{
	float f = (float)s;
	if (dt == MUSE_DT_F16) {
		f = muse_f16_to_f32(muse_f32_to_f16(f));
		if (!(f > 0))
			f = muse_f16_to_f32(0x0001);
		if (isinf(f))
			f = 65504.0f;
	} else if (dt == MUSE_DT_BF16) {
		f = muse_bf16_to_f32(muse_f32_to_bf16(f));
		if (!(f > 0))
			f = muse_bf16_to_f32(0x0001);
		if (isinf(f))
			f = muse_bf16_to_f32(0x7f7f);
	} else {
		if (!(f > 0))
			f = FLT_MIN;
		if (isinf(f))
			f = FLT_MAX;
	}
	return f;
}

void muse_wq_params(const muse_wq_config *c, double xmin, double xmax, float *scale, uint8_t *zero)
{
	int maxq = (1 << c->bits) - 1;
	int half = 1 << (c->bits - 1);
	if (!isfinite(xmin) || !isfinite(xmax)) {
		xmin = -1;
		xmax = 1;
	}
	if (c->style == MUSE_WQ_AWQ) {
		if (c->sym) {
			double amax = fmax(fabs(xmin), fabs(xmax));
			*scale = round_scale(fmax(amax, 1e-5) / (double)(half - 1 > 0 ? half - 1 : 1), c->scale_dtype);
			*zero = (uint8_t)MUSE_PACKED_SYM_ZERO(c->bits);
			return;
		}
		*scale = round_scale(fmax(xmax - xmin, 1e-5) / maxq, c->scale_dtype);
		double z = -__builtin_nearbyint(xmin / (double)*scale);
		z = z < c->zero_min ? c->zero_min : z > maxq ? maxq : z;
		*zero = (uint8_t)z;
		return;
	}
	/* GPTQ's Quantizer: the grid always represents 0; an all-zero group gets [-1, 1]. */
	xmin = fmin(xmin, 0);
	xmax = fmax(xmax, 0);
	if (c->sym) {
		xmax = fmax(fabs(xmin), xmax);
		if (xmin < 0)
			xmin = -xmax;
	}
	if (xmin == 0 && xmax == 0) {
		xmin = -1;
		xmax = 1;
	}
	double s = (xmax - xmin) / maxq;
	if (c->sym) {
		*scale = round_scale(s, c->scale_dtype);
		*zero = (uint8_t)MUSE_PACKED_SYM_ZERO(c->bits);
		return;
	}
	*scale = round_scale(s, c->scale_dtype);
	double z = __builtin_nearbyint(-xmin / (double)*scale);
	if (z < c->zero_min) {
		/* GPTQ v1 stores z-1, so z = 0 is not storable: stretch the scale so [xmin, xmax] fits with z = zero_min. */
		z = c->zero_min;
		*scale = round_scale(fmax(xmax / (maxq - z), -xmin / z), c->scale_dtype);
	}
	*zero = (uint8_t)(z > maxq ? maxq : z);
}

static void row_minmax(const float *w, uint64_t n, double *mn, double *mx)
{
	double a = INFINITY, b = -INFINITY;
	for (uint64_t i = 0; i < n; i++) {
		if (w[i] < a)
			a = w[i];
		if (w[i] > b)
			b = w[i];
	}
	*mn = a;
	*mx = b;
}

muse_status muse_rtn_quantize(const muse_wq_config *c, const float *w, uint64_t rows, uint64_t cols,
			      muse_qlinear *out, muse_err *err)
{
	muse_status s = muse_wq_config_check(c, cols, err);
	if (s || (s = muse_qlinear_alloc(out, rows, cols, c->bits, c->group_size, c->sym, false, err)))
		return s;
	uint64_t G = out->n_groups, g = out->group;
#pragma omp parallel for schedule(static) if (rows * cols > (1u << 16))
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t gi = 0; gi < G; gi++) {
			uint64_t k0 = gi * g, k1 = k0 + g < cols ? k0 + g : cols;
			double mn, mx;
			row_minmax(w + r * cols + k0, k1 - k0, &mn, &mx);
			float sc;
			uint8_t z;
			muse_wq_params(c, mn, mx, &sc, &z);
			out->scales[r * G + gi] = sc;
			out->zeros[r * G + gi] = z;
			for (uint64_t k = k0; k < k1; k++)
				out->q[r * cols + k] = muse_wq_code(w[r * cols + k], sc, z, c->bits);
		}
	return MUSE_OK;
}

void muse_rtn_fake_quant(const muse_wq_config *c, float *w, uint64_t rows, uint64_t cols)
{
	uint64_t g = c->group_size < 0 || (uint64_t)c->group_size > cols ? cols : (uint64_t)c->group_size;
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t k0 = 0; k0 < cols; k0 += g) {
			uint64_t k1 = k0 + g < cols ? k0 + g : cols;
			double mn, mx;
			row_minmax(w + r * cols + k0, k1 - k0, &mn, &mx);
			float sc;
			uint8_t z;
			muse_wq_params(c, mn, mx, &sc, &z);
			for (uint64_t k = k0; k < k1; k++)
				w[r * cols + k] = muse_wq_value(muse_wq_code(w[r * cols + k], sc, z, c->bits), sc, z);
		}
}
