/* q_fast.c: AVX2 quantizers for Q4_0, Q8_0 and Q2_K..Q6_K that write the reference quantizers' bytes. */
/*
 * Why the bytes stay identical (the reference, q_legacy.c and q_kquants.c, is ggml's scalar code):
 *  - The k-quant searches run eight sub-blocks side by side, one per AVX2 lane. Each lane performs
 *    exactly the scalar sequence of IEEE single operations of its sub-block: the same products in
 *    the same association, the same running sums in element order, divisions and square roots
 *    (correctly rounded in both), no FMA (the target below does not enable it, and -ffp-contract=off
 *    holds anyway). Nothing is reassociated across elements; only independent sub-blocks share a
 *    register. Data-dependent control flow (the best candidate, coordinate-descent sweeps, early
 *    exits) becomes per-lane masks; a lane whose scalar code would have stopped either is masked
 *    out or provably changes nothing (a sweep that changes nothing leaves the state it starts from).
 *  - Per-element work with no reduction (requantizing with the final scales, packing) is
 *    vectorized within a sub-block; order does not matter there.
 *  - ggml's nearest_int (the 1.5 * 2^23 addition) and C's truncating float-to-int casts are
 *    reproduced lane-wise (cvttps2dq gives INT32_MIN out of range and for NaN, as cvttss2si does).
 *  - Q8_0/Q4_0 take maxima of |x| as a tree: equal to ggml's running maximum for NaN-free blocks.
 *    A block whose sum is NaN (a NaN, or +Inf and -Inf together) goes to the scalar reference.
 *    Their fp16 scales use F16C with round-to-nearest-even from the immediate, equal to
 *    muse_q_fp16 for every non-NaN float (checked over all 2^32 patterns; the unit test samples).
 *  - Rows are independent, so muse_quantize_rows' split over threads cannot change a byte.
 * The scalar parts that run once per super-block (turning the eight or sixteen sub-block scales
 * into the stored ones) are copies of the reference code, kept in its operation order.
 */
#include "q_fast.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/dtype_simd.h" /* muse_cvt_simd_get: does this CPU run AVX2+F16C */
#include "quant.h"
#include "q_search.h"
#include "quant_tables.h"

static bool simd_wanted(void)
{
	/* cached: asked once per process; racing first callers store the same value */
	static _Atomic int known; /* 0 unknown, 1 no, 2 yes */
	int k = atomic_load_explicit(&known, memory_order_relaxed);
	if (!k) {
		const char *e = getenv("MUSE_NO_SIMD");
		bool off = e && *e && strcmp(e, "0") != 0;
		k = !off && muse_cvt_simd_get() ? 2 : 1;
		atomic_store_explicit(&known, k, memory_order_relaxed);
	}
	return k == 2;
}

const char *muse_quant_fast_path(void)
{
	return simd_wanted() ? "avx2+f16c" : "reference";
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define KQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KQ_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- lane helpers ---- */

/* ggml's nearest_int on 8 lanes. */
INLINE __m256i nearest8(__m256 f)
{
	__m256i i = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
	return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

INLINE __m256i clamp8(__m256i l, int lo, int hi)
{
	return _mm256_max_epi32(_mm256_set1_epi32(lo), _mm256_min_epi32(_mm256_set1_epi32(hi), l));
}

INLINE __m256 abs8(__m256 x)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}

INLINE __m256 blend8(__m256 a, __m256 b, __m256 m)
{
	return _mm256_blendv_ps(a, b, m);
}

INLINE __m256i blendi8(__m256i a, __m256i b, __m256 m)
{
	return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
}

INLINE void transpose8(__m256 *r)
{
	__m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
	__m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
	__m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
	__m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
	__m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
	__m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
	__m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
	__m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
	r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
	r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
	r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
	r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
	r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
	r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
	r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
	r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* X[i] lane j = x[j * n + i] for i < n (n a multiple of 8): eight sub-blocks of n, one per lane. */
INLINE void load_lanes(const float *x, int n, __m256 *X)
{
	for (int i0 = 0; i0 < n; i0 += 8) {
		for (int j = 0; j < 8; j++)
			X[i0 + j] = _mm256_loadu_ps(x + j * n + i0);
		transpose8(X + i0);
	}
}

/* The search levels of the eight lanes, kept as they come out of the registers: t[i][j] is element i
 * of lane j. They are read back only for sub-blocks whose stored scale is zero (the requantization
 * skips those and keeps the search's levels, as the reference does). */
typedef struct {
	int32_t t[32][8];
} lanes_i32;

static TARGET void lanes_keep(const __m256i *L, int n, lanes_i32 *k)
{
	for (int i = 0; i < n; i++)
		_mm256_storeu_si256((__m256i *)k->t[i], L[i]);
}

static void lanes_get(const lanes_i32 *k, int n, int lane, uint8_t *out)
{
	for (int i = 0; i < n; i++)
		out[i] = (uint8_t)k->t[i][lane];
}

/* Eight int lanes 0..255 to 8 bytes at out. */
INLINE void store8_u8(uint8_t *out, __m256i v)
{
	__m128i p = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	_mm_storel_epi64((__m128i *)out, _mm_packus_epi16(p, p));
}

/* ---- the searches, eight sub-blocks at a time ---- */

/*
 * muse_q_fit_min (ggml's make_qkx2/qkx3_quants) on two groups of eight sub-blocks of n (G = 2
 * registers side by side: each candidate's sums are chains of dependent additions, and two
 * independent chains keep the adders busy). L gets the levels, scale/the_min the results, lane by
 * lane exactly as the scalar function returns them. The candidates themselves stay sequential:
 * each better one moves min, which the next candidates' scales are computed from.
 */
#define G 2
static TARGET void fit_min8x2(int n, int nmax, const __m256 (*X)[32], const __m256 (*W)[32], __m256i (*L)[32],
			      __m256 *scale_out, __m256 *the_min_out, float rmin, float rdelta, int nstep, bool use_mad)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256 min[G], max[G], sum_w[G], sum_x[G], flat[G], flat_min[G], scale[G], best_error[G];
	for (int g = 0; g < G; g++) {
		min[g] = max[g] = X[g][0];
		sum_w[g] = W[g][0];
		sum_x[g] = _mm256_mul_ps(sum_w[g], X[g][0]);
	}
	for (int i = 1; i < n; i++)
		for (int g = 0; g < G; g++) {
			min[g] = _mm256_min_ps(X[g][i], min[g]); /* x < min ? x : min */
			max[g] = _mm256_max_ps(X[g][i], max[g]); /* x > max ? x : max */
			sum_w[g] = _mm256_add_ps(sum_w[g], W[g][i]);
			sum_x[g] = _mm256_add_ps(sum_x[g], _mm256_mul_ps(W[g][i], X[g][i]));
		}
	const __m256 fnmax = _mm256_set1_ps((float)nmax);
	__m256 iscale[G];
	for (int g = 0; g < G; g++) {
		min[g] = blend8(min[g], zero, _mm256_cmp_ps(min[g], zero, _CMP_GT_OQ));
		flat[g] = _mm256_cmp_ps(max[g], min[g], _CMP_EQ_OQ);
		flat_min[g] = min[g];
		iscale[g] = _mm256_div_ps(fnmax, _mm256_sub_ps(max[g], min[g]));
		scale[g] = _mm256_div_ps(_mm256_set1_ps(1.f), iscale[g]);
		best_error[g] = zero;
	}
	for (int i = 0; i < n; i++)
		for (int g = 0; g < G; g++) {
			__m256i l = clamp8(nearest8(_mm256_mul_ps(iscale[g], _mm256_sub_ps(X[g][i], min[g]))), 0, nmax);
			L[g][i] = l;
			__m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale[g], _mm256_cvtepi32_ps(l)), min[g]), X[g][i]);
			diff = use_mad ? abs8(diff) : _mm256_mul_ps(diff, diff);
			best_error[g] = _mm256_add_ps(best_error[g], _mm256_mul_ps(W[g][i], diff));
		}
	__m256i Laux[G][32];
	__m256 Lf[G][32];
	for (int is = 0; is <= nstep; is++) {
		/* min moves with each better candidate, and ggml's next candidates use the moved one */
		const __m256 num = _mm256_set1_ps(rmin + rdelta * (float)is + (float)nmax);
		__m256 sum_l[G], sum_l2[G], sum_xl[G];
		for (int g = 0; g < G; g++) {
			iscale[g] = _mm256_div_ps(num, _mm256_sub_ps(max[g], min[g]));
			sum_l[g] = sum_l2[g] = sum_xl[g] = zero;
		}
		for (int i = 0; i < n; i++)
			for (int g = 0; g < G; g++) {
				__m256i l = clamp8(nearest8(_mm256_mul_ps(iscale[g], _mm256_sub_ps(X[g][i], min[g]))), 0, nmax);
				Laux[g][i] = l;
				__m256 lf = _mm256_cvtepi32_ps(l), wl = _mm256_mul_ps(W[g][i], lf);
				Lf[g][i] = lf;
				sum_l[g] = _mm256_add_ps(sum_l[g], wl);
				sum_l2[g] = _mm256_add_ps(sum_l2[g], _mm256_mul_ps(wl, lf));
				sum_xl[g] = _mm256_add_ps(sum_xl[g], _mm256_mul_ps(wl, X[g][i]));
			}
		__m256 ok[G], this_scale[G], this_min[G], err[G];
		for (int g = 0; g < G; g++) {
			__m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w[g], sum_l2[g]), _mm256_mul_ps(sum_l[g], sum_l[g]));
			ok[g] = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
			this_scale[g] = _mm256_div_ps(
				_mm256_sub_ps(_mm256_mul_ps(sum_w[g], sum_xl[g]), _mm256_mul_ps(sum_x[g], sum_l[g])), D);
			this_min[g] = _mm256_div_ps(
				_mm256_sub_ps(_mm256_mul_ps(sum_l2[g], sum_x[g]), _mm256_mul_ps(sum_l[g], sum_xl[g])), D);
			__m256 pos = _mm256_cmp_ps(this_min[g], zero, _CMP_GT_OQ);
			this_min[g] = blend8(this_min[g], zero, pos);
			this_scale[g] = blend8(this_scale[g], _mm256_div_ps(sum_xl[g], sum_l2[g]), pos);
			err[g] = zero;
		}
		/* lanes whose D is not positive skip the candidate (their err is computed and ignored) */
		for (int i = 0; i < n; i++)
			for (int g = 0; g < G; g++) {
				__m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale[g], Lf[g][i]), this_min[g]), X[g][i]);
				diff = use_mad ? abs8(diff) : _mm256_mul_ps(diff, diff);
				err[g] = _mm256_add_ps(err[g], _mm256_mul_ps(W[g][i], diff));
			}
		for (int g = 0; g < G; g++) {
			__m256 better = _mm256_and_ps(ok[g], _mm256_cmp_ps(err[g], best_error[g], _CMP_LT_OQ));
			if (_mm256_testz_ps(better, better))
				continue;
			for (int i = 0; i < n; i++)
				L[g][i] = blendi8(L[g][i], Laux[g][i], better);
			best_error[g] = blend8(best_error[g], err[g], better);
			scale[g] = blend8(scale[g], this_scale[g], better);
			min[g] = blend8(min[g], this_min[g], better);
		}
	}
	/* flat sub-blocks: levels 0, scale 0, the_min = -min as clamped */
	for (int g = 0; g < G; g++) {
		for (int i = 0; i < n; i++)
			L[g][i] = blendi8(L[g][i], _mm256_setzero_si256(), flat[g]);
		scale_out[g] = blend8(scale[g], zero, flat[g]);
		the_min_out[g] = _mm256_xor_ps(blend8(min[g], flat_min[g], flat[g]), _mm256_set1_ps(-0.0f));
	}
}
#undef G

/* Lane-wise: amax = the largest |x|, max = the first value reaching it (the scalar update on >). */
INLINE void signed_max8(int n, const __m256 *X, __m256 *amax_out, __m256 *max_out)
{
	__m256 amax = _mm256_setzero_ps(), max = _mm256_setzero_ps();
	for (int i = 0; i < n; i++) {
		__m256 ax = abs8(X[i]);
		__m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
		amax = blend8(amax, ax, gt);
		max = blend8(max, X[i], gt);
	}
	*amax_out = amax;
	*max_out = max;
}

/*
 * q_kquants.c's kq_fit_signed without weights (w = x^2, ggml's make_qx_quants with rmse_type 1)
 * on eight sub-blocks of n: L gets level + nmax, the return is the scale.
 */
static TARGET __m256 fit_signed8(int n, int nmax, const __m256 *X, __m256i *L)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256 amax, max;
	signed_max8(n, X, &amax, &max);
	const __m256 tiny = _mm256_cmp_ps(amax, _mm256_set1_ps(MUSE_GROUP_MAX_EPS), _CMP_LT_OQ);
	__m256 W[32], WX[32];
	for (int i = 0; i < n; i++) {
		W[i] = _mm256_mul_ps(X[i], X[i]);
		WX[i] = _mm256_mul_ps(W[i], X[i]);
	}
	__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
	__m256 sumlx = zero, suml2 = zero;
	for (int i = 0; i < n; i++) {
		__m256 lf = _mm256_cvtepi32_ps(clamp8(nearest8(_mm256_mul_ps(iscale, X[i])), -nmax, nmax - 1));
		sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(WX[i], lf));
		suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(W[i], lf), lf));
	}
	/* suml2 != 0 is true for NaN, as in ggml */
	__m256 scale = blend8(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
	__m256 best = _mm256_mul_ps(scale, sumlx);
	__m256 best_iscale = iscale;
	/* The 18 nudged scales' sums do not depend on each other, only the choice among them does: the sums
	 * are taken three candidates at a time (independent add chains keep the adders busy), then the
	 * choices are made in the scalar order. The winning levels are recomputed from the winning iscale,
	 * the same expression that produced them. */
	float cand[18];
	int nc = 0;
	for (int is = -9; is <= 9; is++)
		if (is != 0)
			cand[nc++] = -((float)nmax + 0.1f * (float)is);
	for (int c = 0; c < 18; c += 3) {
		__m256 isc[3], slx[3], sl2[3];
		for (int g = 0; g < 3; g++) {
			isc[g] = _mm256_div_ps(_mm256_set1_ps(cand[c + g]), max);
			slx[g] = sl2[g] = zero;
		}
		for (int i = 0; i < n; i++)
			for (int g = 0; g < 3; g++) {
				__m256 lf = _mm256_cvtepi32_ps(clamp8(nearest8(_mm256_mul_ps(isc[g], X[i])), -nmax, nmax - 1));
				slx[g] = _mm256_add_ps(slx[g], _mm256_mul_ps(WX[i], lf));
				sl2[g] = _mm256_add_ps(sl2[g], _mm256_mul_ps(_mm256_mul_ps(W[i], lf), lf));
			}
		for (int g = 0; g < 3; g++) {
			__m256 upd = _mm256_and_ps(_mm256_cmp_ps(sl2[g], zero, _CMP_GT_OQ),
						   _mm256_cmp_ps(_mm256_mul_ps(slx[g], slx[g]), _mm256_mul_ps(best, sl2[g]), _CMP_GT_OQ));
			scale = blend8(scale, _mm256_div_ps(slx[g], sl2[g]), upd);
			best = blend8(best, _mm256_mul_ps(scale, slx[g]), upd);
			best_iscale = blend8(best_iscale, isc[g], upd);
		}
	}
	for (int i = 0; i < n; i++) {
		__m256i l = clamp8(nearest8(_mm256_mul_ps(best_iscale, X[i])), -nmax, nmax - 1);
		L[i] = blendi8(_mm256_add_epi32(l, _mm256_set1_epi32(nmax)), _mm256_setzero_si256(), tiny);
	}
	return blend8(scale, zero, tiny);
}

/*
 * q_kquants.c's kq_fit_q3 (ggml's make_q3_quants with do_rmse) on NG groups of eight sub-blocks of n
 * (the halves of one or two super-blocks: each sweep is one long dependent chain through a division per
 * element, and NG chains side by side overlap; with four the adders and the divider stay busy). L gets
 * level + nmax; out the scales.
 */
#define GMAX 4
INLINE void fit_q3_8xg(const int NG, int n, int nmax, const __m256 (*X)[32], __m256i (*L)[32], __m256 *out)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256 tiny[GMAX], W[GMAX][32], WX[GMAX][32], Lf[GMAX][32], sumlx[GMAX], suml2[GMAX];
	for (int g = 0; g < NG; g++) {
		__m256 amax, max;
		signed_max8(n, X[g], &amax, &max);
		tiny[g] = _mm256_cmp_ps(amax, _mm256_set1_ps(MUSE_GROUP_MAX_EPS), _CMP_LT_OQ);
		for (int i = 0; i < n; i++) {
			W[g][i] = _mm256_mul_ps(X[g][i], X[g][i]);
			WX[g][i] = _mm256_mul_ps(W[g][i], X[g][i]);
		}
		__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
		sumlx[g] = suml2[g] = zero;
		for (int i = 0; i < n; i++) {
			__m256i l = clamp8(nearest8(_mm256_mul_ps(iscale, X[g][i])), -nmax, nmax - 1);
			Lf[g][i] = _mm256_cvtepi32_ps(l);
			sumlx[g] = _mm256_add_ps(sumlx[g], _mm256_mul_ps(WX[g][i], Lf[g][i]));
			suml2[g] = _mm256_add_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(W[g][i], Lf[g][i]), Lf[g][i]));
		}
	}
	/* A lane that stops early in the scalar code had a sweep with no change; more sweeps from that
	 * unchanged state change nothing either, so running all lanes until none changes is exact. A group
	 * whose last sweep changed nothing is done: it is masked out of the sweeps that follow (its state
	 * stays as it is), so the remaining groups need no branch per group. */
	__m256 live[GMAX];
	for (int g = 0; g < NG; g++)
		live[g] = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
	for (int itry = 0; itry < 5; itry++) {
		__m256 changed[GMAX];
		for (int g = 0; g < NG; g++)
			changed[g] = zero;
		for (int i = 0; i < n; i++)
			for (int g = 0; g < NG; g++) {
				__m256 slx = _mm256_sub_ps(sumlx[g], _mm256_mul_ps(WX[g][i], Lf[g][i]));
				__m256 go = _mm256_and_ps(live[g], _mm256_cmp_ps(slx, zero, _CMP_GT_OQ));
				__m256 sl2 = _mm256_sub_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(W[g][i], Lf[g][i]), Lf[g][i]));
				__m256i nl = clamp8(nearest8(_mm256_div_ps(_mm256_mul_ps(X[g][i], sl2), slx)), -nmax, nmax - 1);
				__m256 nlf = _mm256_cvtepi32_ps(nl);
				go = _mm256_and_ps(go, _mm256_cmp_ps(nlf, Lf[g][i], _CMP_NEQ_OQ));
				slx = _mm256_add_ps(slx, _mm256_mul_ps(WX[g][i], nlf));
				sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(W[g][i], nlf), nlf));
				__m256 lhs = _mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2[g]);
				__m256 rhs = _mm256_mul_ps(_mm256_mul_ps(sumlx[g], sumlx[g]), sl2);
				go = _mm256_and_ps(go, _mm256_and_ps(_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ),
								     _mm256_cmp_ps(lhs, rhs, _CMP_GT_OQ)));
				Lf[g][i] = blend8(Lf[g][i], nlf, go);
				sumlx[g] = blend8(sumlx[g], slx, go);
				suml2[g] = blend8(suml2[g], sl2, go);
				changed[g] = _mm256_or_ps(changed[g], go);
			}
		bool any = false;
		for (int g = 0; g < NG; g++) {
			if (_mm256_testz_ps(changed[g], changed[g]))
				live[g] = zero;
			else
				any = true;
		}
		if (!any)
			break;
	}
	for (int g = 0; g < NG; g++) {
		for (int i = 0; i < n; i++) {
			__m256i l = _mm256_add_epi32(_mm256_cvttps_epi32(Lf[g][i]), _mm256_set1_epi32(nmax));
			L[g][i] = blendi8(l, _mm256_setzero_si256(), tiny[g]);
		}
		__m256 scale = blend8(zero, _mm256_div_ps(sumlx[g], suml2[g]), _mm256_cmp_ps(suml2[g], zero, _CMP_GT_OQ));
		out[g] = blend8(scale, zero, tiny[g]);
	}
}

static TARGET void fit_q3_8x2(int n, int nmax, const __m256 (*X)[32], __m256i (*L)[32], __m256 *out)
{
	fit_q3_8xg(2, n, nmax, X, L, out);
}

static TARGET void fit_q3_8x4(int n, int nmax, const __m256 (*X)[32], __m256i (*L)[32], __m256 *out)
{
	fit_q3_8xg(4, n, nmax, X, L, out);
}
#undef GMAX

/* ---- scale packing (copies of q_kquants.c's helpers) ---- */

static inline void put_scale_min(int j, uint8_t ls, uint8_t lm, uint8_t *q)
{
	if (j < 4) {
		q[j] = ls;
		q[j + 4] = lm;
	} else {
		q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
		q[j - 4] |= (uint8_t)((ls >> 4) << 6);
		q[j] |= (uint8_t)((lm >> 4) << 6);
	}
}

static inline void get_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

static void put_scale_q3(int j, int l, uint8_t *q)
{
	if (j < 8)
		q[j] = (uint8_t)(l & 0xF);
	else
		q[j - 8] |= (uint8_t)((l & 0xF) << 4);
	l >>= 4;
	q[j % 4 + 8] |= (uint8_t)((unsigned)l << (2 * (j / 4)));
}

static inline int get_scale_q3(int j, const uint8_t *q)
{
	int sc = j < 8 ? q[j] & 0xF : q[j - 8] >> 4;
	return (sc | (((q[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

INLINE __m256i ld32(const uint8_t *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

INLINE void st32(uint8_t *p, __m256i v)
{
	_mm256_storeu_si256((__m256i *)p, v);
}

/* Bytes shifted left by s; every caller's values stay below 256 >> s, so no bit crosses into the next byte. */
#define SHL8(v, s) _mm256_slli_epi16((v), (s))

/* 2-bit levels (0..3) packed: byte 32h + l holds elements 128h + l, +32, +64, +96 (Q2_K and Q3_K). */
static TARGET void pack2(const uint8_t *L, uint8_t *qs)
{
	for (int h = 0; h < 2; h++) {
		const uint8_t *p = L + 128 * h;
		st32(qs + 32 * h, _mm256_or_si256(_mm256_or_si256(ld32(p), SHL8(ld32(p + 32), 2)),
						  _mm256_or_si256(SHL8(ld32(p + 64), 4), SHL8(ld32(p + 96), 6))));
	}
}

/* L[0..n) = clamp(nearest((x + dm) / d), lo, hi) + bias, n a multiple of 8. */
INLINE void requant(const float *x, int n, float dm, float d, int lo, int hi, int bias, uint8_t *L)
{
	const __m256 vdm = _mm256_set1_ps(dm), vd = _mm256_set1_ps(d);
	for (int i = 0; i < n; i += 8) {
		__m256 v = _mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + i), vdm), vd);
		__m256i l = _mm256_add_epi32(clamp8(nearest8(v), lo, hi), _mm256_set1_epi32(bias));
		store8_u8(L + i, l);
	}
}

/* L[0..n) = clamp(nearest(x / d), -nmax, nmax - 1) + nmax (Q3_K, Q6_K). */
INLINE void requant_signed(const float *x, int n, float d, int nmax, uint8_t *L)
{
	const __m256 vd = _mm256_set1_ps(d);
	for (int i = 0; i < n; i += 8) {
		__m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), vd);
		__m256i l = _mm256_add_epi32(clamp8(nearest8(v), -nmax, nmax - 1), _mm256_set1_epi32(nmax));
		store8_u8(L + i, l);
	}
}

/* ---- Q2_K ---- */

static TARGET void q2_block(const float *x, muse_block_q2_k *y)
{
	__m256 X[2][32], W[2][32], sc[2], mn[2];
	__m256i Lv[2][32];
	lanes_i32 Lfit[2];
	uint8_t L[MUSE_QK_K];
	float scales[16], mins[16];
	for (int h = 0; h < 2; h++) {
		load_lanes(x + 128 * h, 16, X[h]);
		for (int i = 0; i < 16; i++)
			W[h][i] = abs8(X[h][i]);
	}
	fit_min8x2(16, 3, (const __m256(*)[32])X, (const __m256(*)[32])W, Lv, sc, mn, -0.5f, 0.1f, 15, true);
	for (int h = 0; h < 2; h++) {
		_mm256_storeu_ps(scales + 8 * h, sc[h]);
		_mm256_storeu_ps(mins + 8 * h, mn[h]);
		lanes_keep(Lv[h], 16, &Lfit[h]);
	}
	float max_scale = 0, max_min = 0;
	for (int j = 0; j < 16; j++) {
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	if (max_scale > 0) {
		float iscale = 15.f / max_scale;
		for (int j = 0; j < 16; j++)
			y->scales[j] = (uint8_t)muse_q_nearest_int(iscale * scales[j]);
		y->d = muse_q_fp16(max_scale / 15.f);
	} else {
		memset(y->scales, 0, sizeof y->scales);
		y->d = muse_q_fp16(0.f);
	}
	if (max_min > 0) {
		float iscale = 15.f / max_min;
		for (int j = 0; j < 16; j++)
			y->scales[j] |= (uint8_t)((unsigned)muse_q_nearest_int(iscale * mins[j]) << 4);
		y->dmin = muse_q_fp16(max_min / 15.f);
	} else {
		y->dmin = muse_q_fp16(0.f);
	}
	float dall = muse_f16_to_f32(y->d), mall = muse_f16_to_f32(y->dmin);
	for (int j = 0; j < 16; j++) {
		const float d = dall * (y->scales[j] & 0xF);
		if (!d) {
			lanes_get(&Lfit[j / 8], 16, j % 8, L + 16 * j);
			continue;
		}
		const float dm = mall * (y->scales[j] >> 4);
		requant(x + 16 * j, 16, dm, d, 0, 3, 0, L + 16 * j);
	}
	pack2(L, y->qs);
}

/* ---- Q3_K ---- */

/* The rest of a super-block once its sixteen sub-block scales (sc: halves h = 0, 1) and levels are known. */
static TARGET void q3_finish(const float *x, const __m256 *sc, const __m256i (*Lv)[32], muse_block_q3_k *y)
{
	lanes_i32 Lfit[2];
	uint8_t L[MUSE_QK_K];
	float scales[16];
	for (int h = 0; h < 2; h++) {
		_mm256_storeu_ps(scales + 8 * h, sc[h]);
		lanes_keep(Lv[h], 16, &Lfit[h]);
	}
	float max_scale = 0, amax = 0;
	for (int j = 0; j < 16; j++) {
		float a = fabsf(scales[j]);
		if (a > amax) {
			amax = a;
			max_scale = scales[j];
		}
	}
	memset(y->scales, 0, sizeof y->scales);
	if (max_scale != 0) {
		float iscale = -32.f / max_scale;
		for (int j = 0; j < 16; j++) {
			int8_t l = (int8_t)muse_q_nearest_int(iscale * scales[j]); /* narrowed before the clamp, as ggml */
			put_scale_q3(j, KQ_MAX(-32, KQ_MIN(31, l)) + 32, y->scales);
		}
		y->d = muse_q_fp16(1 / iscale);
	} else {
		y->d = muse_q_fp16(0.f);
	}
	float dall = muse_f16_to_f32(y->d);
	for (int j = 0; j < 16; j++) {
		float d = dall * get_scale_q3(j, y->scales);
		if (!d) {
			lanes_get(&Lfit[j / 8], 16, j % 8, L + 16 * j);
			continue;
		}
		requant_signed(x + 16 * j, 16, d, 4, L + 16 * j);
	}
	/* element e's high bit (level > 3) goes to bit e/32 of hmask[e % 32]; the level keeps its low 2 bits */
	__m256i hm = _mm256_setzero_si256();
	for (int k = 0; k < 8; k++) {
		__m256i v = ld32(L + 32 * k);
		hm = _mm256_or_si256(hm, _mm256_and_si256(_mm256_cmpgt_epi8(v, _mm256_set1_epi8(3)),
							  _mm256_set1_epi8((char)(1u << k))));
		st32(L + 32 * k, _mm256_and_si256(v, _mm256_set1_epi8(3)));
	}
	st32(y->hmask, hm);
	pack2(L, y->qs);
}

static TARGET void q3_block(const float *x, muse_block_q3_k *y)
{
	__m256 X[2][32], sc[2];
	__m256i Lv[2][32];
	for (int h = 0; h < 2; h++)
		load_lanes(x + 128 * h, 16, X[h]);
	fit_q3_8x2(16, 4, (const __m256(*)[32])X, Lv, sc);
	q3_finish(x, sc, (const __m256i(*)[32])Lv, y);
}

/* Two super-blocks: their four halves' searches side by side. */
static TARGET void q3_block2(const float *x, muse_block_q3_k *y)
{
	__m256 X[4][32], sc[4];
	__m256i Lv[4][32];
	for (int h = 0; h < 4; h++)
		load_lanes(x + 128 * h, 16, X[h]);
	fit_q3_8x4(16, 4, (const __m256(*)[32])X, Lv, sc);
	q3_finish(x, sc, (const __m256i(*)[32])Lv, y);
	q3_finish(x + MUSE_QK_K, sc + 2, (const __m256i(*)[32])(Lv + 2), y + 1);
}

static TARGET void q3_rows(const float *src, void *dst, int64_t nb)
{
	int64_t i = 0;
	for (; i + 2 <= nb; i += 2)
		q3_block2(src + MUSE_QK_K * i, (muse_block_q3_k *)dst + i);
	for (; i < nb; i++)
		q3_block(src + MUSE_QK_K * i, (muse_block_q3_k *)dst + i);
}

/* ---- Q4_K and Q5_K ---- */

/* The sub-block scales and mins of two super-blocks (x[0], x[1]) at once: sc[b][j], mn[b][j], levels in Lfit[b]. */
static TARGET void q45_search2(const float *const *x, int nmax, float rmin, float rdelta, int nstep, float (*sc)[8],
			       float (*mn)[8], lanes_i32 *Lfit)
{
	__m256 X[2][32], W[2][32], scv[2], mnv[2];
	__m256i Lv[2][32];
	for (int b = 0; b < 2; b++) {
		load_lanes(x[b], 32, X[b]);
		__m256 sum_x2 = _mm256_setzero_ps();
		for (int l = 0; l < 32; l++)
			sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(X[b][l], X[b][l]));
		__m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.f)));
		for (int l = 0; l < 32; l++)
			W[b][l] = _mm256_add_ps(av_x, abs8(X[b][l]));
	}
	fit_min8x2(32, nmax, (const __m256(*)[32])X, (const __m256(*)[32])W, Lv, scv, mnv, rmin, rdelta, nstep, false);
	for (int b = 0; b < 2; b++) {
		_mm256_storeu_ps(sc[b], scv[b]);
		_mm256_storeu_ps(mn[b], mnv[b]);
		lanes_keep(Lv[b], 32, &Lfit[b]);
	}
}

/* q_kquants.c's q45_requant: levels from the stored scales; a sub-block whose scale is zero keeps the search's. */
static TARGET void q45_requant(const float *x, const lanes_i32 *Lfit, int nmax, uint8_t *L, const uint8_t *scales,
			       uint16_t d16, uint16_t dmin16)
{
	const float dall = muse_f16_to_f32(d16), mall = muse_f16_to_f32(dmin16);
	for (int j = 0; j < 8; j++) {
		uint8_t s, m;
		get_scale_min(j, scales, &s, &m);
		const float d = dall * s;
		if (!d) {
			lanes_get(Lfit, 32, j, L + 32 * j);
			continue;
		}
		const float dm = mall * m;
		requant(x + 32 * j, 32, dm, d, 0, nmax, 0, L + 32 * j);
	}
}

/* One super-block from its searched scales: q_kquants.c's q45_scales_ref tail and q45_requant. */
static TARGET void q45_finish(const float *x, const float *scales, const float *mins, const lanes_i32 *Lfit, int nmax,
			      uint8_t *L, uint8_t *scales_out, uint16_t *d16, uint16_t *dmin16)
{
	float max_scale = 0, max_min = 0;
	for (int j = 0; j < 8; j++) {
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
	float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
	for (int j = 0; j < 8; j++) {
		uint8_t ls = (uint8_t)muse_q_nearest_int(inv_scale * scales[j]); /* narrowed before the clamp, as ggml */
		uint8_t lm = (uint8_t)muse_q_nearest_int(inv_min * mins[j]);
		put_scale_min(j, KQ_MIN(63, ls), KQ_MIN(63, lm), scales_out);
	}
	*d16 = muse_q_fp16(max_scale / 63.f);
	*dmin16 = muse_q_fp16(max_min / 63.f);
	q45_requant(x, Lfit, nmax, L, scales_out, *d16, *dmin16);
}

static TARGET void q4_pack(const uint8_t *L, muse_block_q4_k *y)
{
	for (int j = 0; j < MUSE_QK_K; j += 64)
		st32(y->qs + j / 2, _mm256_or_si256(ld32(L + j), SHL8(ld32(L + j + 32), 4)));
}

static TARGET void q5_pack(const uint8_t *L, muse_block_q5_k *y)
{
	/* chunk c of 64: low nibbles as Q4_K, 5th bits (level > 15) at bit 2c (first 32) and 2c+1 of qh[l] */
	const __m256i lo4 = _mm256_set1_epi8(0xF), fifteen = _mm256_set1_epi8(15);
	__m256i qh = _mm256_setzero_si256();
	for (int c = 0; c < 4; c++) {
		__m256i a = ld32(L + 64 * c), b = ld32(L + 64 * c + 32);
		st32(y->qs + 32 * c, _mm256_or_si256(_mm256_and_si256(a, lo4), SHL8(_mm256_and_si256(b, lo4), 4)));
		qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_cmpgt_epi8(a, fifteen), _mm256_set1_epi8((char)(1u << (2 * c)))));
		qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_cmpgt_epi8(b, fifteen), _mm256_set1_epi8((char)(2u << (2 * c)))));
	}
	st32(y->qh, qh);
}

/* Q4_K/Q5_K rows, two super-blocks per search; an odd last one is searched beside a copy of itself. */
#define Q45_ROWS(blk, nmax, rmin, rdelta, nstep, pack)                                                           \
	do {                                                                                                     \
		blk *y = dst;                                                                                    \
		for (int64_t i = 0; i < nb; i += 2) {                                                            \
			const float *x[2] = { src + MUSE_QK_K * i, src + MUSE_QK_K * (i + 1 < nb ? i + 1 : i) }; \
			float sc[2][8], mn[2][8];                                                                \
			lanes_i32 Lfit[2];                                                                       \
			uint8_t L[MUSE_QK_K];                                                                    \
			q45_search2(x, nmax, rmin, rdelta, nstep, sc, mn, Lfit);                                 \
			for (int b = 0; b < 2 && i + b < nb; b++) {                                              \
				q45_finish(x[b], sc[b], mn[b], &Lfit[b], nmax, L, y[i + b].scales, &y[i + b].d,  \
					   &y[i + b].dmin);                                                      \
				pack(L, &y[i + b]);                                                              \
			}                                                                                        \
		}                                                                                                \
	} while (0)

static TARGET void q4_rows(const float *src, void *dst, int64_t nb)
{
	Q45_ROWS(muse_block_q4_k, 15, -1.f, 0.1f, 20, q4_pack);
}

static TARGET void q5_rows(const float *src, void *dst, int64_t nb)
{
	Q45_ROWS(muse_block_q5_k, 31, -0.5f, 0.1f, 15, q5_pack);
}

/*
 * With importance (q_kquants.c's q45_scales_imp, ggml's quantize_row_q4_K_impl/q5_K_impl): weights
 * qw * sqrt(sigma2 + x^2) with sigma2 = 2 * (sum of x^2 over the super-block) / 256, the same search
 * with ggml's qkx3 parameters (-0.9, 0.05, 36 steps), then the eight scales and the eight mins
 * quantized to 6 bits by make_qp_quants under the sub-blocks' weight sums.
 */

/* The weighted search of two super-blocks x[b] with importance qw[b]: sc, mn as q45_search2, sw the weight sums. */
static TARGET void q45_search2_imp(const float *const *x, const float *const *qw, int nmax, float (*sc)[8],
				   float (*mn)[8], float (*sw)[8], lanes_i32 *Lfit)
{
	__m256 X[2][32], W[2][32], scv[2], mnv[2];
	__m256i Lv[2][32];
	/* the super-blocks' sums of squares, each in element order (two independent chains) */
	float s0 = 0, s1 = 0;
	for (int j = 0; j < MUSE_QK_K; j++) {
		s0 += x[0][j] * x[0][j];
		s1 += x[1][j] * x[1][j];
	}
	const float sigma2[2] = { 2 * s0 / MUSE_QK_K, 2 * s1 / MUSE_QK_K };
	for (int b = 0; b < 2; b++) {
		load_lanes(x[b], 32, X[b]);
		load_lanes(qw[b], 32, W[b]);
		const __m256 s2 = _mm256_set1_ps(sigma2[b]);
		__m256 sumw = _mm256_setzero_ps();
		for (int l = 0; l < 32; l++) {
			W[b][l] = _mm256_mul_ps(W[b][l], _mm256_sqrt_ps(_mm256_add_ps(s2, _mm256_mul_ps(X[b][l], X[b][l]))));
			sumw = _mm256_add_ps(sumw, W[b][l]);
		}
		_mm256_storeu_ps(sw[b], sumw);
	}
	fit_min8x2(32, nmax, (const __m256(*)[32])X, (const __m256(*)[32])W, Lv, scv, mnv, -0.9f, 0.05f, 36, false);
	for (int b = 0; b < 2; b++) {
		_mm256_storeu_ps(sc[b], scv[b]);
		_mm256_storeu_ps(mn[b], mnv[b]);
		lanes_keep(Lv[b], 32, &Lfit[b]);
	}
}

/* One super-block from its weighted search: q45_scales_imp's tail (clamp63: Q5_K's clamp) and q45_requant. */
static TARGET void q45_finish_imp(const float *x, const float *scales, const float *mins, const float *sw,
				  const lanes_i32 *Lfit, int nmax, bool clamp63, uint8_t *L, uint8_t *scales_out,
				  uint16_t *d16, uint16_t *dmin16)
{
	uint8_t Ls[8], Lm[8];
	float d_block = muse_q_fit_pos(8, 63, scales, Ls, sw);
	float m_block = muse_q_fit_pos(8, 63, mins, Lm, sw);
	for (int j = 0; j < 8; j++) {
		uint8_t ls = Ls[j], lm = Lm[j];
		if (clamp63) {
			ls = KQ_MIN(63, ls);
			lm = KQ_MIN(63, lm);
		}
		put_scale_min(j, ls, lm, scales_out);
	}
	*d16 = muse_q_fp16(d_block);
	*dmin16 = muse_q_fp16(m_block);
	q45_requant(x, Lfit, nmax, L, scales_out, *d16, *dmin16);
}

/* Weighted Q4_K/Q5_K rows: block i of the run is block i % bpr of its row, whose weights are imp + 256 * that. */
#define Q45_ROWS_IMP(blk, nmax, clamp63, pack)                                                               \
	do {                                                                                                 \
		blk *y = dst;                                                                                \
		for (int64_t i = 0; i < nb; i += 2) {                                                        \
			const int64_t i1 = i + 1 < nb ? i + 1 : i;                                           \
			const float *x[2] = { src + MUSE_QK_K * i, src + MUSE_QK_K * i1 };                   \
			const float *qw[2] = { imp + MUSE_QK_K * (i % bpr), imp + MUSE_QK_K * (i1 % bpr) };  \
			float sc[2][8], mn[2][8], sw[2][8];                                                  \
			lanes_i32 Lfit[2];                                                                   \
			uint8_t L[MUSE_QK_K];                                                                \
			q45_search2_imp(x, qw, nmax, sc, mn, sw, Lfit);                                      \
			for (int b = 0; b < 2 && i + b < nb; b++) {                                          \
				q45_finish_imp(x[b], sc[b], mn[b], sw[b], &Lfit[b], nmax, clamp63, L,        \
					       y[i + b].scales, &y[i + b].d, &y[i + b].dmin);                \
				pack(L, &y[i + b]);                                                          \
			}                                                                                    \
		}                                                                                            \
	} while (0)

static TARGET void q4_rows_imp(const float *src, void *dst, int64_t nb, int64_t bpr, const float *imp)
{
	Q45_ROWS_IMP(muse_block_q4_k, 15, false, q4_pack);
}

static TARGET void q5_rows_imp(const float *src, void *dst, int64_t nb, int64_t bpr, const float *imp)
{
	Q45_ROWS_IMP(muse_block_q5_k, 31, true, q5_pack);
}

/* ---- Q6_K ---- */

static TARGET void q6_block(const float *x, muse_block_q6_k *y)
{
	__m256 X[16];
	__m256i Lv[16];
	lanes_i32 Lfit[2];
	uint8_t L[MUSE_QK_K];
	float scales[16];
	for (int h = 0; h < 2; h++) {
		load_lanes(x + 128 * h, 16, X);
		_mm256_storeu_ps(scales + 8 * h, fit_signed8(16, 32, X, Lv));
		lanes_keep(Lv, 16, &Lfit[h]);
	}
	float max_scale = 0, max_abs = 0;
	for (int ib = 0; ib < 16; ib++) {
		float a = fabsf(scales[ib]);
		if (a > max_abs) {
			max_abs = a;
			max_scale = scales[ib];
		}
	}
	if (max_abs < MUSE_GROUP_MAX_EPS) {
		memset(y, 0, sizeof *y);
		y->d = muse_q_fp16(0.f);
		return;
	}
	float iscale = -128.f / max_scale;
	y->d = muse_q_fp16(1 / iscale);
	for (int ib = 0; ib < 16; ib++)
		y->scales[ib] = (int8_t)KQ_MIN(127, muse_q_nearest_int(iscale * scales[ib]));
	const float dall = muse_f16_to_f32(y->d);
	for (int j = 0; j < 16; j++) {
		float d = dall * y->scales[j];
		if (!d) {
			lanes_get(&Lfit[j / 8], 16, j % 8, L + 16 * j);
			continue;
		}
		requant_signed(x + 16 * j, 16, d, 32, L + 16 * j);
	}
	/* half h: ql[64h + l] = elems l | l+64 (nibbles), ql[64h + 32 + l] = l+32 | l+96, qh[32h + l] = top bits */
	const __m256i lo4 = _mm256_set1_epi8(0xF), two = _mm256_set1_epi8(3);
	for (int h = 0; h < 2; h++) {
		const uint8_t *p = L + 128 * h;
		__m256i a = ld32(p), b = ld32(p + 32), c = ld32(p + 64), d = ld32(p + 96);
		st32(y->ql + 64 * h, _mm256_or_si256(_mm256_and_si256(a, lo4), SHL8(_mm256_and_si256(c, lo4), 4)));
		st32(y->ql + 64 * h + 32, _mm256_or_si256(_mm256_and_si256(b, lo4), SHL8(_mm256_and_si256(d, lo4), 4)));
		/* levels are 0..63: the top two bits, masked after the 16-bit shift pulls in the next byte */
		__m256i ha = _mm256_and_si256(_mm256_srli_epi16(a, 4), two), hb = _mm256_and_si256(_mm256_srli_epi16(b, 4), two);
		__m256i hc = _mm256_and_si256(_mm256_srli_epi16(c, 4), two), hd = _mm256_and_si256(_mm256_srli_epi16(d, 4), two);
		st32(y->qh + 32 * h, _mm256_or_si256(_mm256_or_si256(ha, SHL8(hb, 2)), _mm256_or_si256(SHL8(hc, 4), SHL8(hd, 6))));
	}
}

#define KQ_FAST(name, blk, rows_fn)                                                                         \
	size_t muse_quantize_##name##_fast(const float *src, void *dst, int64_t nrows, int64_t n_per_row,   \
					   const float *importance)                                         \
	{                                                                                                   \
		if (importance || !simd_wanted())                                                           \
			return muse_quantize_##name##_ref(src, dst, nrows, n_per_row, importance);          \
		int64_t nb = nrows * (n_per_row / MUSE_QK_K);                                               \
		rows_fn(src, dst, nb);                                                                      \
		return (size_t)nb * sizeof(blk);                                                            \
	}

/* Q4_K and Q5_K take importance on the vector path too. */
#define KQ_FAST_IMP(name, blk, rows_fn, rows_imp_fn)                                                        \
	size_t muse_quantize_##name##_fast(const float *src, void *dst, int64_t nrows, int64_t n_per_row,   \
					   const float *importance)                                         \
	{                                                                                                   \
		if (!simd_wanted())                                                                         \
			return muse_quantize_##name##_ref(src, dst, nrows, n_per_row, importance);          \
		int64_t bpr = n_per_row / MUSE_QK_K, nb = nrows * bpr;                                      \
		if (importance)                                                                             \
			rows_imp_fn(src, dst, nb, bpr, importance);                                         \
		else                                                                                        \
			rows_fn(src, dst, nb);                                                              \
		return (size_t)nb * sizeof(blk);                                                            \
	}

/* Super-blocks one at a time. */
#define EACH_BLOCK(fn_name, blk, block_fn)                                                                  \
	static TARGET void fn_name(const float *src, void *dst, int64_t nb)                                 \
	{                                                                                                   \
		for (int64_t i = 0; i < nb; i++)                                                            \
			block_fn(src + MUSE_QK_K * i, (blk *)dst + i);                                      \
	}
EACH_BLOCK(q2_rows, muse_block_q2_k, q2_block)
EACH_BLOCK(q6_rows, muse_block_q6_k, q6_block)

KQ_FAST(q2_k, muse_block_q2_k, q2_rows)
KQ_FAST(q3_k, muse_block_q3_k, q3_rows)
KQ_FAST_IMP(q4_k, muse_block_q4_k, q4_rows, q4_rows_imp)
KQ_FAST_IMP(q5_k, muse_block_q5_k, q5_rows, q5_rows_imp)
KQ_FAST(q6_k, muse_block_q6_k, q6_rows)

/* ---- Q8_0 and Q4_0: one streaming pass ---- */

/* Largest lane of v. */
INLINE float hmax8(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_movehdup_ps(m));
	return _mm_cvtss_f32(m);
}

/* A block with a NaN (or +Inf and -Inf) has a NaN sum: those take the scalar reference. */
INLINE bool block_unsafe(__m256 v0, __m256 v1, __m256 v2, __m256 v3)
{
	__m256 s = _mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3));
	return _mm256_movemask_ps(_mm256_cmp_ps(s, s, _CMP_UNORD_Q)) != 0;
}

/* roundf (half away from zero) on 8 lanes; v - trunc(v) is exact. */
INLINE __m256 round_away8(__m256 v)
{
	__m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m256 frac = abs8(_mm256_sub_ps(v, t));
	__m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
	__m256 one = _mm256_or_ps(_mm256_set1_ps(1.f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
	return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

/* fp16 of eight non-NaN floats, as muse_q_fp16 (F16C rounding from the immediate: nearest even). */
INLINE void put_fp16x8(uint16_t h[8], __m256 d)
{
	_mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
}

/* Lane b: the largest (is_max) or smallest lane of m[b]: eight horizontal reductions at once, for eight blocks. */
INLINE __m256 hred8x8(const __m256 m[8], bool is_max)
{
#define RED(a, b) (is_max ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b))
	__m256 a01 = RED(_mm256_unpacklo_ps(m[0], m[1]), _mm256_unpackhi_ps(m[0], m[1]));
	__m256 a23 = RED(_mm256_unpacklo_ps(m[2], m[3]), _mm256_unpackhi_ps(m[2], m[3]));
	__m256 a45 = RED(_mm256_unpacklo_ps(m[4], m[5]), _mm256_unpackhi_ps(m[4], m[5]));
	__m256 a67 = RED(_mm256_unpacklo_ps(m[6], m[7]), _mm256_unpackhi_ps(m[6], m[7]));
	__m256 b03 = RED(_mm256_shuffle_ps(a01, a23, 0x44), _mm256_shuffle_ps(a01, a23, 0xEE));
	__m256 b47 = RED(_mm256_shuffle_ps(a45, a67, 0x44), _mm256_shuffle_ps(a45, a67, 0xEE));
	return RED(_mm256_permute2f128_ps(b03, b47, 0x20), _mm256_permute2f128_ps(b03, b47, 0x31));
#undef RED
}

/* Blocks (bits of the mask) whose scale or inverse scale is not finite: the level casts see infinities or
 * NaNs there, which the fast paths leave to the scalar reference (ggml keeps a cast's low byte). */
INLINE unsigned scales_unsafe(__m256 amax, __m256 id)
{
	const __m256 big = _mm256_set1_ps(FLT_MAX);
	return (unsigned)_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(amax, big, _CMP_GT_OQ),
							 _mm256_cmp_ps(id, big, _CMP_GT_OQ)));
}

/*
 * Q8_0's level roundf(x * id) on 8 lanes, for |x| * id <= 127.00003 (finite scales): trunc(|x| * id +
 * 0.49999997f) with x's sign. Adding the float just below one half and truncating is roundf (half away
 * from zero) for every float in [0, 128]: checked exhaustively; adding 0.5 would round up at 0.49999997.
 * |x * id| == |x| * id exactly, id being positive.
 */
INLINE __m256i q8_0_level8(__m256 x, __m256 id)
{
	__m256 a = _mm256_mul_ps(abs8(x), id);
	__m256i q = _mm256_cvttps_epi32(_mm256_add_ps(a, _mm256_set1_ps(0x1.fffffep-2f)));
	return _mm256_sign_epi32(q, _mm256_castps_si256(x));
}

static TARGET void q8_0_blocks(const float *x, muse_block_q8_0 *y, int64_t nb)
{
	int64_t i = 0;
	for (; i + 8 <= nb; i += 8) {
		__m256 m[8];
		unsigned unsafe = 0;
		for (int b = 0; b < 8; b++) {
			const float *xb = x + 32 * (i + b);
			__m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
			__m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
			if (block_unsafe(v0, v1, v2, v3))
				unsafe |= 1u << b;
			m[b] = _mm256_max_ps(_mm256_max_ps(abs8(v0), abs8(v1)), _mm256_max_ps(abs8(v2), abs8(v3)));
		}
		__m256 amax = hred8x8(m, true);
		__m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.f));
		__m256 nz = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
		__m256 idv = _mm256_and_ps(nz, _mm256_div_ps(_mm256_set1_ps(1.f), d));
		unsafe |= scales_unsafe(amax, idv);
		float id[8];
		uint16_t h[8];
		_mm256_storeu_ps(id, idv);
		put_fp16x8(h, d);
		for (int b = 0; b < 8; b++) {
			const float *xb = x + 32 * (i + b);
			muse_block_q8_0 *yb = y + i + b;
			if (unsafe >> b & 1) {
				muse_quantize_q8_0_ref(xb, yb, 1, 32, NULL);
				continue;
			}
			__m256 vid = _mm256_set1_ps(id[b]);
			__m256i q0 = q8_0_level8(_mm256_loadu_ps(xb), vid), q1 = q8_0_level8(_mm256_loadu_ps(xb + 8), vid);
			__m256i q2 = q8_0_level8(_mm256_loadu_ps(xb + 16), vid), q3 = q8_0_level8(_mm256_loadu_ps(xb + 24), vid);
			/* levels in -127..127: the saturating packs keep them as they are */
			__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
			p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			_mm256_storeu_si256((__m256i *)yb->qs, p);
			yb->d = h[b];
		}
	}
	if (i < nb)
		muse_quantize_q8_0_ref(x + 32 * i, y + i, 1, 32 * (nb - i), NULL);
}

size_t muse_quantize_q8_0_fast(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	if (!simd_wanted())
		return muse_quantize_q8_0_ref(src, dst, nrows, n_per_row, importance);
	int64_t nb = nrows * (n_per_row / MUSE_QK8_0);
	q8_0_blocks(src, dst, nb);
	return (size_t)nb * sizeof(muse_block_q8_0);
}

/* Q4_0's level MIN(15, (int8_t)(x * id + 8.5f)) for finite scales: x * id is in [-8, 8] (x's magnitude is at
 * most the block's, whose level is 0), so the sum is in [0.5, 16.5] and the int8 cast keeps the value. */
INLINE __m256i q4_0_level8(__m256 x, __m256 id)
{
	return _mm256_min_epi32(_mm256_set1_epi32(15), _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(x, id), _mm256_set1_ps(8.5f))));
}

static TARGET void q4_0_blocks(const float *x, muse_block_q4_0 *y, int64_t nb)
{
	int64_t i = 0;
	for (; i + 8 <= nb; i += 8) {
		__m256 hi[8], lo[8];
		unsigned unsafe = 0;
		for (int b = 0; b < 8; b++) {
			const float *xb = x + 32 * (i + b);
			__m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
			__m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
			if (block_unsafe(v0, v1, v2, v3))
				unsafe |= 1u << b;
			hi[b] = _mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3));
			lo[b] = _mm256_min_ps(_mm256_min_ps(v0, v1), _mm256_min_ps(v2, v3));
		}
		/*
		 * ggml keeps the first element of the largest magnitude, sign included. The largest and the
		 * smallest element decide it unless they have the same magnitude (both signs present: the first
		 * one found below); an all-zero block keeps ggml's +0.
		 */
		const __m256 vmax = hred8x8(hi, true), vmin = hred8x8(lo, false);
		const __m256 nmin = _mm256_xor_ps(vmin, _mm256_set1_ps(-0.0f));
		__m256 mxv = _mm256_blendv_ps(vmax, vmin, _mm256_cmp_ps(nmin, vmax, _CMP_GT_OQ));
		mxv = _mm256_and_ps(mxv, _mm256_cmp_ps(_mm256_max_ps(vmax, nmin), _mm256_setzero_ps(), _CMP_GT_OQ));
		unsigned tie = (unsigned)_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(nmin, vmax, _CMP_EQ_OQ),
									  _mm256_cmp_ps(vmax, _mm256_setzero_ps(), _CMP_GT_OQ)));
		if (tie) {
			float mx[8];
			_mm256_storeu_ps(mx, mxv);
			for (int b = 0; b < 8; b++) {
				if (!(tie >> b & 1))
					continue;
				const float *xb = x + 32 * (i + b);
				int k = 0;
				while (fabsf(xb[k]) != mx[b] && k < 31)
					k++;
				mx[b] = xb[k];
			}
			mxv = _mm256_loadu_ps(mx);
		}
		__m256 d = _mm256_div_ps(mxv, _mm256_set1_ps(-8.f));
		__m256 nz = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
		__m256 idv = _mm256_and_ps(nz, _mm256_div_ps(_mm256_set1_ps(1.f), d));
		unsafe |= scales_unsafe(abs8(mxv), abs8(idv));
		float id[8];
		uint16_t h[8];
		_mm256_storeu_ps(id, idv);
		put_fp16x8(h, d);
		for (int b = 0; b < 8; b++) {
			const float *xb = x + 32 * (i + b);
			muse_block_q4_0 *yb = y + i + b;
			if (unsafe >> b & 1) {
				muse_quantize_q4_0_ref(xb, yb, 1, 32, NULL);
				continue;
			}
			__m256 vid = _mm256_set1_ps(id[b]);
			__m256i lo = _mm256_or_si256(q4_0_level8(_mm256_loadu_ps(xb), vid),
						     _mm256_slli_epi32(q4_0_level8(_mm256_loadu_ps(xb + 16), vid), 4));
			__m256i hi = _mm256_or_si256(q4_0_level8(_mm256_loadu_ps(xb + 8), vid),
						     _mm256_slli_epi32(q4_0_level8(_mm256_loadu_ps(xb + 24), vid), 4));
			__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
			_mm_storeu_si128((__m128i *)yb->qs,
					 _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
			yb->d = h[b];
		}
	}
	if (i < nb)
		muse_quantize_q4_0_ref(x + 32 * i, y + i, 1, 32 * (nb - i), NULL);
}

size_t muse_quantize_q4_0_fast(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *importance)
{
	/* with importance Q4_0 runs a per-row search using the row's mean square: the reference does it */
	if (importance || !simd_wanted())
		return muse_quantize_q4_0_ref(src, dst, nrows, n_per_row, importance);
	int64_t nb = nrows * (n_per_row / MUSE_QK4_0);
	q4_0_blocks(src, dst, nb);
	return (size_t)nb * sizeof(muse_block_q4_0);
}

#else /* not x86-64: the reference is the fast path */

#define REF_ONLY(name)                                                                                    \
	size_t muse_quantize_##name##_fast(const float *src, void *dst, int64_t nrows, int64_t n_per_row, \
					   const float *importance)                                       \
	{                                                                                                 \
		return muse_quantize_##name##_ref(src, dst, nrows, n_per_row, importance);                \
	}
REF_ONLY(q4_0)
REF_ONLY(q8_0)
REF_ONLY(q2_k)
REF_ONLY(q3_k)
REF_ONLY(q4_k)
REF_ONLY(q5_k)
REF_ONLY(q6_k)

#endif
