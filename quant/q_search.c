/* q_search.c: ggml's weighted scale-and-min search, shared by the legacy (Q4_1, Q5_1) and k-quant types. */
#include "q_search.h"

#include <math.h>
#include <string.h>

#include "quant_tables.h"

#define Q_FIT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define Q_FIT_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * Asymmetric fit x ~ scale * L - the_min with L in [0, nmax] (ggml's make_qkx2_quants, and
 * make_qkx3_quants, which is the same computation whenever weights are given, as they always are
 * here). The min is clamped to <= 0 so zero stays representable; nstep+1 candidate scales around
 * nmax/(max-min) are refitted by weighted least squares and the lowest weighted error (absolute
 * when use_mad) wins.
 */
float muse_q_fit_min(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
			uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad)
{
	float min = x[0], max = x[0];
	float sum_w = weights[0];
	float sum_x = sum_w * x[0];
	for (int i = 1; i < n; i++) {
		if (x[i] < min)
			min = x[i];
		if (x[i] > max)
			max = x[i];
		float w = weights[i];
		sum_w += w;
		sum_x += w * x[i];
	}
	if (min > 0)
		min = 0;
	if (max == min) {
		memset(L, 0, (size_t)n);
		*the_min = -min;
		return 0.f;
	}
	float iscale = nmax / (max - min);
	float scale = 1 / iscale;
	float best_error = 0;
	for (int i = 0; i < n; i++) {
		int l = muse_q_nearest_int(iscale * (x[i] - min));
		L[i] = (uint8_t)Q_FIT_MAX(0, Q_FIT_MIN(nmax, l));
		float diff = scale * L[i] + min - x[i];
		diff = use_mad ? fabsf(diff) : diff * diff;
		best_error += weights[i] * diff;
	}
	for (int is = 0; is <= nstep; is++) {
		iscale = (rmin + rdelta * is + nmax) / (max - min);
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; i++) {
			int l = muse_q_nearest_int(iscale * (x[i] - min));
			l = Q_FIT_MAX(0, Q_FIT_MIN(nmax, l));
			Laux[i] = (uint8_t)l;
			float w = weights[i];
			sum_l += w * l;
			sum_l2 += w * l * l;
			sum_xl += w * l * x[i];
		}
		float D = sum_w * sum_l2 - sum_l * sum_l;
		if (!(D > 0))
			continue;
		float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
		float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
		if (this_min > 0) {
			this_min = 0;
			this_scale = sum_xl / sum_l2;
		}
		float err = 0;
		for (int i = 0; i < n; i++) {
			float diff = this_scale * Laux[i] + this_min - x[i];
			diff = use_mad ? fabsf(diff) : diff * diff;
			err += weights[i] * diff;
		}
		if (err < best_error) {
			memcpy(L, Laux, (size_t)n);
			best_error = err;
			scale = this_scale;
			min = this_min;
		}
	}
	*the_min = -min;
	return scale;
}

/*
 * Quantizes non-negative values (sub-block scales or mins) to [0, nmax] under weights (ggml's
 * make_qp_quants): best of 9 scales by weighted MSE, then coordinate-descent sweeps. The levels are
 * kept as uint8_t between steps while the sums use the unclamped-below int, exactly as ggml.
 */
float muse_q_fit_pos(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
	float max = 0;
	for (int i = 0; i < n; i++)
		max = Q_FIT_MAX(max, x[i]);
	if (max < MUSE_GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	float iscale = nmax / max;
	for (int i = 0; i < n; i++)
		L[i] = (uint8_t)muse_q_nearest_int(iscale * x[i]);
	float scale = 1 / iscale;
	float best_mse = 0;
	for (int i = 0; i < n; i++) {
		float diff = x[i] - scale * L[i];
		float w = qw[i];
		best_mse += w * diff * diff;
	}
	for (int is = -4; is <= 4; is++) {
		if (is == 0)
			continue;
		float iscale_is = (0.1f * is + nmax) / max;
		float scale_is = 1 / iscale_is;
		float mse = 0;
		for (int i = 0; i < n; i++) {
			int l = muse_q_nearest_int(iscale_is * x[i]);
			l = Q_FIT_MIN(nmax, l);
			float diff = x[i] - scale_is * l;
			float w = qw[i];
			mse += w * diff * diff;
		}
		if (mse < best_mse) {
			best_mse = mse;
			iscale = iscale_is;
		}
	}
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = muse_q_nearest_int(iscale * x[i]);
		l = Q_FIT_MIN(nmax, l);
		L[i] = (uint8_t)l;
		float w = qw[i];
		sumlx += w * x[i] * l;
		suml2 += w * l * l;
	}
	for (int itry = 0; itry < 5; itry++) {
		int changed = 0;
		for (int i = 0; i < n; i++) {
			float w = qw[i];
			float slx = sumlx - w * x[i] * L[i];
			float sl2 = suml2 - w * L[i] * L[i];
			if (!(slx > 0 && sl2 > 0))
				continue;
			int nl = muse_q_nearest_int(x[i] * sl2 / slx);
			nl = Q_FIT_MIN(nmax, nl);
			if (nl == L[i])
				continue;
			slx += w * x[i] * nl;
			sl2 += w * nl * nl;
			if (slx * slx * suml2 > sumlx * sumlx * sl2) {
				L[i] = (uint8_t)nl;
				sumlx = slx;
				suml2 = sl2;
				changed++;
			}
		}
		if (!changed)
			break;
	}
	return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}
