/* q_iq_lattice.c: the lattice types IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, bit for bit as ggml. */
/*
 * Every group of 8 (IQ1, IQ2) or 4 (IQ3) magnitudes is one point of a fixed
 * lattice (quant/iq_grids.h) times a block scale. Quantizing searches block
 * scales; at each trial scale it rounds every coordinate to a level and, when
 * that level vector is not a grid point, tries the grid points nearest to it
 * (its neighbour list) under the block's weights. The maps from level vectors
 * to grid points and the neighbour lists are derived from the grids once per
 * process (pthread_once) into static storage, so they cannot fail.
 *
 * Output must equal ggml's quantize_<type> (what llama-quantize writes) byte
 * for byte, so each search reproduces ggml-quants.c's float operations in
 * their order, quirks included; each quirk is marked "as ggml" below. Where
 * ggml aborts (GGML_ASSERT on NaN scores, a missing imatrix) muse writes a
 * defined block instead and says so at the spot; muse_quantize_rows refuses
 * a missing imatrix before any of this runs.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "iq_grids.h"
#include "quant.h"
#include "quant_tables.h"

#define Q_MIN(a, b) ((a) < (b) ? (a) : (b))
#define Q_MAX(a, b) ((a) > (b) ? (a) : (b)) /* as ggml's MAX: a NaN b gives b, a NaN a gives a */

#define GROUP_MAX_EPS_IQ3_XXS 1e-8f
#define GROUP_MAX_EPS_IQ2_S 1e-8f
#define GROUP_MAX_EPS_IQ1_M 1e-7f
#define GROUP_MAX_EPS_IQ1_S 1e-12f

static inline uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/* ---- lattices: level vectors, the level-vector -> grid map, neighbour lists ---- */

/*
 * One grid as the quantizers see it. pos holds 2*level+1 per coordinate (the
 * odd integers ggml's quantizers score against). map is indexed by the packed
 * level vector (bits per coordinate, first coordinate lowest): the grid index
 * when the vector is a grid point, else -(offset+1) where nbr[offset] is the
 * count of neighbours and the indices follow. Neighbours of a vector are the
 * grid points at its nwant smallest distinct squared distances, by distance
 * then index, which is the order ggml's init qsorts them into; the quantizers
 * keep the first best, so the order is part of the output.
 */
typedef struct {
	const char *name;
	int dim;            /* coordinates per point: 8 or 4 */
	int bits;           /* bits per coordinate in a map index: 2 or 3 */
	int nlevels;        /* levels a coordinate takes: 3 or 8 */
	int npoints;
	int nwant;          /* distance shells kept per neighbour list */
	size_t nbr_cap;     /* capacity of nbr, exactly what the committed grids need */
	const uint64_t *g64; /* the grid, 8 bytes a point, or NULL */
	const uint32_t *g32; /* the grid, 4 bytes a point, or NULL */
	int8_t *pos;         /* npoints * dim */
	float *posf;         /* the same as floats, for the scoring loops */
	float *levm1;        /* level - 1 as floats (IQ1's -1, 0, 1); NULL for the other lattices */
	int32_t *map;        /* 1 << (dim * bits) */
	uint16_t *nbr;
	size_t nbr_used;     /* after init; tests compare it with nbr_cap */
} lattice;

/*
 * Storage. Capacities are the totals the six grids give (neighbour entries
 * plus one count per off-grid vector); test_quant_iq checks them, so a
 * changed grid fails a test rather than silently truncating a list.
 */
#define CAP_IQ2XXS 119462
#define CAP_IQ2XS 187770
#define CAP_IQ2S 50253
#define CAP_IQ1S 332234
#define CAP_IQ3XXS 22825
#define CAP_IQ3S 28317

static int8_t pos_iq2xxs[256 * 8], pos_iq2xs[512 * 8], pos_iq2s[1024 * 8], pos_iq1s[2048 * 8];
static int8_t pos_iq3xxs[256 * 4], pos_iq3s[512 * 4];
static float posf_iq2xxs[256 * 8], posf_iq2xs[512 * 8], posf_iq2s[1024 * 8], posf_iq1s[2048 * 8];
static float posf_iq3xxs[256 * 4], posf_iq3s[512 * 4];
static float levm1_iq1s[2048 * 8];
static int32_t map_iq2xxs[1 << 16], map_iq2xs[1 << 16], map_iq2s[1 << 16], map_iq1s[1 << 16];
static int32_t map_iq3xxs[1 << 12], map_iq3s[1 << 12];
static uint16_t nbr_iq2xxs[CAP_IQ2XXS], nbr_iq2xs[CAP_IQ2XS], nbr_iq2s[CAP_IQ2S], nbr_iq1s[CAP_IQ1S];
static uint16_t nbr_iq3xxs[CAP_IQ3XXS], nbr_iq3s[CAP_IQ3S];

enum { LAT_IQ2XXS, LAT_IQ2XS, LAT_IQ2S, LAT_IQ1S, LAT_IQ3XXS, LAT_IQ3S, LAT_COUNT };

/* nwant as ggml's iq2xs_init_impl / iq3xs_init_impl choose it; IQ1_S and IQ1_M share one lattice. */
#define LATTICE(nm, dim_, bits_, nlev, np, nw, cap, g64_, g32_, lev)                                            \
	{ .name = #nm, .dim = dim_, .bits = bits_, .nlevels = nlev, .npoints = np, .nwant = nw, .nbr_cap = cap, \
	  .g64 = g64_, .g32 = g32_, .pos = pos_##nm, .posf = posf_##nm, .levm1 = lev, .map = map_##nm,          \
	  .nbr = nbr_##nm }
static lattice lattices[LAT_COUNT] = {
	[LAT_IQ2XXS] = LATTICE(iq2xxs, 8, 2, 3, 256, 2, CAP_IQ2XXS, muse_iq2xxs_grid, NULL, NULL),
	[LAT_IQ2XS] = LATTICE(iq2xs, 8, 2, 3, 512, 2, CAP_IQ2XS, muse_iq2xs_grid, NULL, NULL),
	[LAT_IQ2S] = LATTICE(iq2s, 8, 2, 3, 1024, 1, CAP_IQ2S, muse_iq2s_grid, NULL, NULL),
	[LAT_IQ1S] = LATTICE(iq1s, 8, 2, 3, 2048, 3, CAP_IQ1S, muse_iq1s_grid, NULL, levm1_iq1s),
	[LAT_IQ3XXS] = LATTICE(iq3xxs, 4, 3, 8, 256, 2, CAP_IQ3XXS, NULL, muse_iq3xxs_grid, NULL),
	[LAT_IQ3S] = LATTICE(iq3s, 4, 3, 8, 512, 3, CAP_IQ3S, NULL, muse_iq3s_grid, NULL),
};
#undef LATTICE

static inline int grid_byte(const lattice *g, int k, int i)
{
	uint64_t v = g->g64 ? g->g64[k] : g->g32[k];
	return (int)(int8_t)(uint8_t)(v >> 8 * i); /* iq1s_grid holds -1, 0, 1 as signed bytes */
}

#define MAX_D2 (4 * 14 * 14 + 1) /* largest squared distance between pos vectors: 4 coords 1 vs 15 */

/* Builds pos, map and the neighbour lists of one lattice (see the struct). */
static void lattice_build(lattice *g)
{
	/* A byte's level is its rank among the grid's distinct byte values
	 * (scripts/gen_iq_grids.py checked this gives ggml's kgrid tables). */
	bool seen[256] = { false };
	int rank[256];
	for (int k = 0; k < g->npoints; k++)
		for (int i = 0; i < g->dim; i++)
			seen[grid_byte(g, k, i) + 128] = true;
	for (int b = 0, r = 0; b < 256; b++)
		rank[b] = seen[b] ? r++ : -1;

	int mapsize = 1 << (g->dim * g->bits);
	for (int u = 0; u < mapsize; u++)
		g->map[u] = -1;
	for (int k = 0; k < g->npoints; k++) {
		int u = 0;
		for (int i = 0; i < g->dim; i++) {
			int l = rank[grid_byte(g, k, i) + 128];
			g->pos[k * g->dim + i] = (int8_t)(2 * l + 1);
			g->posf[k * g->dim + i] = (float)(2 * l + 1);
			if (g->levm1)
				g->levm1[k * g->dim + i] = (float)(l - 1);
			u |= l << g->bits * i;
		}
		g->map[u] = k;
	}

	/* Only vectors whose every level is below nlevels are ever looked up (the
	 * quantizers clamp to it), so only those get lists; ggml builds lists for
	 * every index below its map size, the extra ones unused. */
	int hist[MAX_D2], start[MAX_D2], d2s[2048];
	size_t used = 0;
	for (int u = 0; u < mapsize; u++) {
		int8_t p[8];
		bool ok = true;
		for (int i = 0; i < g->dim; i++) {
			int l = (u >> g->bits * i) & ((1 << g->bits) - 1);
			ok = ok && l < g->nlevels;
			p[i] = (int8_t)(2 * l + 1);
		}
		if (!ok || g->map[u] >= 0)
			continue;
		memset(hist, 0, sizeof hist);
		for (int k = 0; k < g->npoints; k++) {
			const int8_t *pg = g->pos + k * g->dim;
			int d2 = 0;
			for (int i = 0; i < g->dim; i++)
				d2 += (pg[i] - p[i]) * (pg[i] - p[i]);
			d2s[k] = d2;
			hist[d2]++;
		}
		/* the nwant smallest distinct distances; a counting sort keeps index order within each */
		int n = 0, shells = 0, dmax = 0;
		for (int d = 0; d < MAX_D2 && shells < g->nwant; d++)
			if (hist[d]) {
				start[d] = n;
				n += hist[d];
				shells++;
				dmax = d;
			}
		if (used + 1 + (size_t)n > g->nbr_cap) {
			/* cannot happen with the committed grids (the capacities are their totals) */
			g->nbr_used = g->nbr_cap + 1;
			return;
		}
		g->map[u] = -(int32_t)used - 1;
		g->nbr[used] = (uint16_t)n;
		for (int k = 0; k < g->npoints; k++)
			if (d2s[k] <= dmax)
				g->nbr[used + 1 + start[d2s[k]]++] = (uint16_t)k;
		used += 1 + (size_t)n;
	}
	g->nbr_used = used;
}

static pthread_once_t once[LAT_COUNT] = { PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
					  PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT };
static void build_iq2xxs(void) { lattice_build(&lattices[LAT_IQ2XXS]); }
static void build_iq2xs(void) { lattice_build(&lattices[LAT_IQ2XS]); }
static void build_iq2s(void) { lattice_build(&lattices[LAT_IQ2S]); }
static void build_iq1s(void) { lattice_build(&lattices[LAT_IQ1S]); }
static void build_iq3xxs(void) { lattice_build(&lattices[LAT_IQ3XXS]); }
static void build_iq3s(void) { lattice_build(&lattices[LAT_IQ3S]); }
static void (*const builders[LAT_COUNT])(void) = { build_iq2xxs, build_iq2xs, build_iq2s,
						   build_iq1s,   build_iq3xxs, build_iq3s };

static const lattice *lattice_get(int which)
{
	pthread_once(&once[which], builders[which]);
	return &lattices[which];
}

/* For tests: entries used by the neighbour lists of the lattice behind type t, and the capacity reserved. */
int muse_iq_lattice_stats(muse_dtype t, size_t *used, size_t *cap)
{
	int which;
	switch (t) {
	case MUSE_DT_IQ2_XXS: which = LAT_IQ2XXS; break;
	case MUSE_DT_IQ2_XS: which = LAT_IQ2XS; break;
	case MUSE_DT_IQ2_S: which = LAT_IQ2S; break;
	case MUSE_DT_IQ1_S:
	case MUSE_DT_IQ1_M: which = LAT_IQ1S; break;
	case MUSE_DT_IQ3_XXS: which = LAT_IQ3XXS; break;
	case MUSE_DT_IQ3_S: which = LAT_IQ3S; break;
	default: return -1;
	}
	const lattice *g = lattice_get(which);
	*used = g->nbr_used;
	*cap = g->nbr_cap;
	return 0;
}

/*
 * The hot helpers take the lattice shape (dim, bits) as arguments and are
 * forced inline, so each type's search compiles with constant loop bounds as
 * ggml's does (a runtime dim costs about a third of the time).
 */
#define IQ_INLINE static inline __attribute__((always_inline))

/* Packs a level vector (levels masked to the field width, so a stray value cannot shift out of range). */
IQ_INLINE int pack_levels_dim(const int8_t *L, int dim, int bits)
{
	int u = 0, mask = (1 << bits) - 1;
	for (int i = 0; i < dim; i++)
		u |= (L[i] & mask) << bits * i;
	return u;
}

static inline int pack_levels(const lattice *g, const int8_t *L)
{
	return pack_levels_dim(L, g->dim, g->bits);
}

static inline const uint16_t *neighbours_of(const lattice *g, int u)
{
	return g->nbr - g->map[u] - 1;
}

static inline void levels_of(const lattice *g, int k, int8_t *L)
{
	const int8_t *pg = g->pos + k * g->dim;
	for (int i = 0; i < g->dim; i++)
		L[i] = (int8_t)((pg[i] - 1) / 2);
}

/*
 * iq2_find_best_neighbour / iq3_find_best_neighbour: the neighbour closest to
 * xval at scale under weight (first wins ties); its levels go to L. ggml
 * asserts when every score is NaN; muse takes the first neighbour then.
 */
/*
 * The lanes of one neighbour's score, diff = scale*q - x and weight*diff*diff,
 * are independent, so they are computed four at a time (GCC vector
 * extensions: the same IEEE operations per lane, no contraction); the sum
 * then runs lane by lane from 0 in ggml's order, which is what fixes d2.
 */
typedef float v4f __attribute__((vector_size(16)));

IQ_INLINE v4f load4(const float *p)
{
	v4f v;
	memcpy(&v, p, sizeof v);
	return v;
}

IQ_INLINE int best_neighbour_dim(const float *posf, const int8_t *pos, int dim, const uint16_t *nb,
				 const float *xval, const float *weight, float scale, int8_t *L)
{
	int n = nb[0], best = -1;
	float best_d2 = FLT_MAX;
	const v4f s = { scale, scale, scale, scale };
	const v4f x0 = load4(xval), w0 = load4(weight);
	const v4f x1 = dim == 8 ? load4(xval + 4) : x0, w1 = dim == 8 ? load4(weight + 4) : w0;
	for (int j = 1; j <= n; ++j) {
		const float *pg = posf + nb[j] * dim;
		v4f d0 = s * load4(pg) - x0;
		v4f t0 = w0 * d0 * d0;
		float d2 = 0;
		d2 += t0[0];
		d2 += t0[1];
		d2 += t0[2];
		d2 += t0[3];
		if (dim == 8) {
			v4f d1 = s * load4(pg + 4) - x1;
			v4f t1 = w1 * d1 * d1;
			d2 += t1[0];
			d2 += t1[1];
			d2 += t1[2];
			d2 += t1[3];
		}
		if (d2 < best_d2) {
			best_d2 = d2;
			best = nb[j];
		}
	}
	if (best < 0)
		best = nb[1];
	const int8_t *pg = pos + best * dim;
	for (int i = 0; i < dim; i++)
		L[i] = (int8_t)((pg[i] - 1) / 2);
	return best;
}

static int best_neighbour8(const lattice *g, const uint16_t *nb, const float *xval, const float *weight, float scale,
			   int8_t *L)
{
	return best_neighbour_dim(g->posf, g->pos, 8, nb, xval, weight, scale, L);
}

static int best_neighbour4(const lattice *g, const uint16_t *nb, const float *xval, const float *weight, float scale,
			   int8_t *L)
{
	return best_neighbour_dim(g->posf, g->pos, 4, nb, xval, weight, scale, L);
}

/*
 * The grid index of L. L is always a grid point after a search over finite
 * values; ggml aborts ("found point not on grid") otherwise, muse takes the
 * first neighbour of the vector.
 */
static inline int grid_index_of(const lattice *g, const int8_t *L)
{
	int u = pack_levels(g, L);
	int k = g->map[u];
	return k >= 0 ? k : neighbours_of(g, u)[1];
}

/* ---- shared pieces of the IQ2/IQ3 searches ---- */

/*
 * Splits 8 values into magnitudes and a sign byte. With parity (IQ2_XXS,
 * IQ2_XS, IQ3_XXS store 7 sign bits and imply the 8th by even parity) an odd
 * count of negatives leaves the least important one, by weight * x * x,
 * negative in xval and its sign bit clear; the result then keeps 7 bits.
 */
static uint8_t fold_signs8(const float *xb, const float *weight, float *xval, bool parity)
{
	int nflip = 0;
	uint8_t s = 0;
	for (int i = 0; i < 8; ++i) {
		if (xb[i] >= 0) {
			xval[i] = xb[i];
		} else {
			xval[i] = -xb[i];
			++nflip;
			s |= (uint8_t)(1 << i);
		}
	}
	if (!parity)
		return s;
	if (nflip % 2) {
		int imin = 0;
		float min = weight[imin] * xb[imin] * xb[imin];
		for (int i = 1; i < 8; ++i) {
			float ax = weight[i] * xb[i] * xb[i];
			if (ax < min) {
				min = ax;
				imin = i;
			}
		}
		xval[imin] = -xval[imin];
		s ^= (uint8_t)(1 << imin);
	}
	return s & 127;
}

/* weight[i] = qw[i] * sqrt(sigma2 + x^2), the imatrix weighting every lattice type uses. */
static inline void imatrix_weights(int n, const float *qw, const float *xb, float sigma2, float *weight)
{
	for (int i = 0; i < n; ++i)
		weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
}

/*
 * ggml's make_qp_quants (IQ2_XXS's starting scale): L holds levels in
 * [0, nmax] as uint8_t, and a negative rounding (xval may hold one negative
 * value, see fold_signs8) wraps modulo 256 there exactly as in ggml, whose
 * arithmetic then reads the wrapped value.
 */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights)
{
	float max = 0;
	for (int i = 0; i < n; ++i)
		max = Q_MAX(max, x[i]);
	if (max < MUSE_GROUP_MAX_EPS) {
		for (int i = 0; i < n; ++i)
			L[i] = 0;
		return 0.f;
	}
	float iscale = (float)nmax / max;
	for (int i = 0; i < n; ++i)
		L[i] = (uint8_t)muse_q_nearest_int(iscale * x[i]);
	float scale = 1 / iscale;
	float best_mse = 0;
	for (int i = 0; i < n; ++i) {
		float diff = x[i] - scale * L[i];
		float w = quant_weights[i];
		best_mse += w * diff * diff;
	}
	for (int is = -4; is <= 4; ++is) {
		if (is == 0)
			continue;
		float iscale_is = (0.1f * (float)is + (float)nmax) / max;
		float scale_is = 1 / iscale_is;
		float mse = 0;
		for (int i = 0; i < n; ++i) {
			int l = muse_q_nearest_int(iscale_is * x[i]);
			l = Q_MIN(nmax, l);
			float diff = x[i] - scale_is * (float)l;
			float w = quant_weights[i];
			mse += w * diff * diff;
		}
		if (mse < best_mse) {
			best_mse = mse;
			iscale = iscale_is;
		}
	}
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; ++i) {
		int l = muse_q_nearest_int(iscale * x[i]);
		l = Q_MIN(nmax, l);
		L[i] = (uint8_t)l;
		float w = quant_weights[i];
		sumlx += w * x[i] * (float)l;
		suml2 += w * (float)l * (float)l;
	}
	for (int itry = 0; itry < 5; ++itry) {
		int n_changed = 0;
		for (int i = 0; i < n; ++i) {
			float w = quant_weights[i];
			float slx = sumlx - w * x[i] * L[i];
			float sl2 = suml2 - w * L[i] * L[i];
			if (slx > 0 && sl2 > 0) {
				int new_l = muse_q_nearest_int(x[i] * sl2 / slx);
				new_l = Q_MIN(nmax, new_l);
				if (new_l != L[i]) {
					slx += w * x[i] * (float)new_l;
					sl2 += w * (float)new_l * (float)new_l;
					if (slx * slx * suml2 > sumlx * sumlx * sl2) {
						L[i] = (uint8_t)new_l;
						sumlx = slx;
						suml2 = sl2;
						++n_changed;
					}
				}
			}
		}
		if (!n_changed)
			break;
	}
	return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* How a search re-fits after its scale loop (the types differ; each is ggml's). */
enum refit {
	REFIT_ALL_IF_POSITIVE, /* IQ2_XXS: every group, whenever scale > 0 */
	REFIT_OFF_GRID,        /* IQ2_XS, IQ2_S, IQ3_XXS: the off-grid groups, when any and scale > 0 */
	REFIT_ALL_IF_OFF_GRID, /* IQ3_S: every group, when any is off grid and scale > 0 */
};

typedef struct {
	int n;          /* block length: 32 or 16 */
	int kmax;       /* levels per coordinate in the search: 3 (IQ2) or 8 (IQ3) */
	int is_lo, is_hi;
	float step;     /* scale trials: id = (2*kmax - 1 + is*step) / max */
	bool on_grid0;  /* what the "on grid" flags start as before the first accepted trial */
	enum refit refit;
} search_params;

/*
 * The scale search of quantize_row_iq2_{xxs,xs,s}_impl and
 * quantize_row_iq3_{xxs,s}_impl for one block: xval magnitudes (one may be
 * negative), weight, waux = sqrt(weight). scale0 and max are the starting
 * scale and the divisor of the trials (max/(2*kmax-1) and max, or IQ2_XXS's
 * make_qp_quants scale and that scale * kmax). L gets the levels; returns the
 * scale.
 */
IQ_INLINE float lattice_search(const lattice *g, const int dim, const int bits, const search_params *sp,
			       const float *xval, const float *weight, const float *waux, float scale0, float max,
			       int8_t *L)
{
	const int n = sp->n, ngroup = sp->n / dim;
	int (*const neighbour)(const lattice *, const uint16_t *, const float *, const float *, float, int8_t *) =
		dim == 8 ? best_neighbour8 : best_neighbour4;
	int8_t Laux[32];
	bool on_grid[8], on_grid_aux[8];
	float best = 0, scale = scale0;
	for (int k = 0; k < ngroup; ++k)
		on_grid[k] = sp->on_grid0;
	for (int is = sp->is_lo; is <= sp->is_hi; ++is) {
		float id = ((float)(2 * sp->kmax - 1) + (float)is * sp->step) / max;
		float this_scale = 1 / id;
		for (int k = 0; k < ngroup; ++k) {
			for (int i = 0; i < dim; ++i) {
				int l = muse_q_nearest_int(0.5f * (id * xval[dim * k + i] - 1));
				Laux[dim * k + i] = (int8_t)Q_MAX(0, Q_MIN(sp->kmax - 1, l));
			}
			int u = pack_levels_dim(Laux + dim * k, dim, bits);
			on_grid_aux[k] = g->map[u] >= 0;
			if (!on_grid_aux[k])
				neighbour(g, neighbours_of(g, u), xval + dim * k, waux + dim * k, this_scale,
					  Laux + dim * k);
		}
		float sumqx = 0, sumq2 = 0;
		for (int i = 0; i < n; ++i) {
			float w = weight[i];
			float q = (float)(2 * Laux[i] + 1);
			sumqx += w * xval[i] * q;
			sumq2 += w * q * q;
		}
		if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
			scale = sumqx / sumq2;
			best = scale * sumqx;
			memcpy(L, Laux, (size_t)n);
			memcpy(on_grid, on_grid_aux, (size_t)ngroup * sizeof *on_grid);
		}
	}
	int n_off = 0;
	for (int k = 0; k < ngroup; ++k)
		n_off += !on_grid[k];
	bool refit = sp->refit == REFIT_ALL_IF_POSITIVE ? scale > 0 : n_off > 0 && scale > 0;
	if (refit) {
		float id = 1 / scale;
		for (int k = 0; k < ngroup; ++k) {
			if (sp->refit == REFIT_OFF_GRID && on_grid[k])
				continue;
			int8_t *Lk = L + dim * k;
			for (int i = 0; i < dim; ++i) {
				int l = muse_q_nearest_int(0.5f * (id * xval[dim * k + i] - 1));
				Lk[i] = (int8_t)Q_MAX(0, Q_MIN(sp->kmax - 1, l));
			}
			int u = pack_levels_dim(Lk, dim, bits);
			if (g->map[u] < 0)
				neighbour(g, neighbours_of(g, u), xval + dim * k, waux + dim * k, scale, Lk);
		}
		float sumqx = 0, sumq2 = 0;
		for (int i = 0; i < n; ++i) {
			float w = weight[i];
			float q = (float)(2 * L[i] + 1);
			sumqx += w * xval[i] * q;
			sumq2 += w * q * q;
		}
		if (sumq2 > 0)
			scale = sumqx / sumq2;
	}
	return scale;
}

/* sum of squares of one super-block, in ggml's order */
static inline float sum_x2(const float *xbl)
{
	float sumx2 = 0;
	for (int i = 0; i < MUSE_QK_K; ++i)
		sumx2 += xbl[i] * xbl[i];
	return sumx2;
}

/*
 * The head of one group's search in every IQ2/IQ3 block: sqrt(weight) into
 * waux, the n/8 sign bytes folded out of xb into xval (see fold_signs8), and
 * the largest magnitude, taken from xval[0] on in ggml's order.
 */
static float group_prep(int n, const float *xb, const float *weight, float *waux, float *xval, uint8_t *signs,
			bool parity)
{
	for (int i = 0; i < n; ++i)
		waux[i] = sqrtf(weight[i]);
	for (int k = 0; k < n / 8; ++k)
		signs[k] = fold_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k, parity);
	float max = xval[0];
	for (int i = 1; i < n; ++i)
		max = Q_MAX(max, xval[i]);
	return max;
}

/*
 * A negative scale from the search ("should never happen" in ggml) is made
 * positive and every sign flipped: 7 bits with parity, all 8 without. A NaN
 * passes unchanged.
 */
static float unflip(float scale, uint8_t *signs, int nsigns, bool parity)
{
	if (scale < 0) {
		scale = -scale;
		for (int k = 0; k < nsigns; ++k)
			signs[k] = (uint8_t)(~signs[k] & (parity ? 127 : 255));
	}
	return scale;
}

/* ggml's 4-bit block-scale code: nearest_int(0.5 * (id * scale - 1)) clamped to [0, lmax]. */
static inline int scale_code(float id, float scale, int lmax)
{
	int l = muse_q_nearest_int(0.5f * (id * scale - 1));
	return Q_MAX(0, Q_MIN(lmax, l));
}

/* The 16 block scales of IQ2_XS and IQ2_S as 4-bit codes, two a byte, low nibble first. */
static void pack_scales16(float id, const float *scales, uint8_t *out)
{
	for (int ib = 0; ib < MUSE_QK_K / 16; ++ib) {
		int l = scale_code(id, scales[ib], 15);
		if (ib % 2 == 0)
			out[ib / 2] = (uint8_t)l;
		else
			out[ib / 2] |= (uint8_t)(l << 4);
	}
}

/* IQ3's weights of one group of 32: the imatrix weighting with qw, x * x without. */
static void iq3_weights(const float *qw, const float *xb, float sigma2, float *weight)
{
	if (qw) {
		imatrix_weights(32, qw, xb, sigma2, weight);
	} else {
		for (int i = 0; i < 32; ++i)
			weight[i] = xb[i] * xb[i];
	}
}

/* ---- IQ2_XXS ---- */

static const float ONES[MUSE_QK_K] = {
#define ONE8 1, 1, 1, 1, 1, 1, 1, 1
#define ONE64 ONE8, ONE8, ONE8, ONE8, ONE8, ONE8, ONE8, ONE8
	ONE64, ONE64, ONE64, ONE64,
#undef ONE64
#undef ONE8
};

static void iq2_xxs_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq2_xxs *y)
{
	static const search_params sp = { 32, 3, -6, 6, 0.1f, true, REFIT_ALL_IF_POSITIVE };
	float scales[MUSE_QK_K / 32], weight[32], xval[32], waux[32];
	int8_t L[32];
	uint8_t block_signs[4], q2[64] = { 0 };
	float max_scale = 0;
	float sigma2 = sum_x2(xbl) / MUSE_QK_K;

	y->d = muse_q_fp16(0.f);
	for (int ib = 0; ib < MUSE_QK_K / 32; ++ib) {
		const float *xb = xbl + 32 * ib;
		imatrix_weights(32, qwbl + 32 * ib, xb, sigma2, weight);
		float max = group_prep(32, xb, weight, waux, xval, block_signs, true);
		if (max < MUSE_GROUP_MAX_EPS) {
			scales[ib] = 0;
			continue;
		}
		float scale = make_qp_quants(32, sp.kmax + 1, xval, (uint8_t *)L, weight);
		float eff_max = scale * (float)sp.kmax;
		if (eff_max <= 0) {
			scales[ib] = 0;
			continue;
		}
		scale = lattice_search(g, 8, 2, &sp, xval, weight, waux, scale, eff_max, L);
		scale = unflip(scale, block_signs, 4, true);
		uint32_t idx = 0, sgn = 0;
		for (int k = 0; k < 4; ++k) {
			idx |= (uint32_t)grid_index_of(g, L + 8 * k) << 8 * k;
			sgn |= (uint32_t)block_signs[k] << 7 * k;
		}
		put_u32(q2 + 8 * ib, idx);
		put_u32(q2 + 8 * ib + 4, sgn);
		scales[ib] = scale; /* ggml asserts scale >= 0; only a NaN gets past, and muse keeps it */
		max_scale = Q_MAX(max_scale, scale);
	}
	if (!max_scale) {
		memset(y->qs, 0, sizeof y->qs);
		return;
	}
	float d = max_scale / 31;
	y->d = muse_q_fp16(d);
	float id = 1 / d;
	for (int ib = 0; ib < MUSE_QK_K / 32; ++ib)
		q2[8 * ib + 7] |= (uint8_t)(scale_code(id, scales[ib], 15) << 4);
	memcpy(y->qs, q2, sizeof y->qs);
}

/* ---- IQ2_XS ---- */

static void iq2_xs_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq2_xs *y)
{
	static const search_params sp = { 16, 3, -9, 9, 0.1f, true, REFIT_OFF_GRID };
	float scales[MUSE_QK_K / 16], weight[16], xval[16], waux[16];
	int8_t L[16];
	uint8_t block_signs[2], q2[64] = { 0 };
	float max_scale = 0;
	float sigma2 = sum_x2(xbl) / MUSE_QK_K;

	y->d = muse_q_fp16(0.f);
	memset(y->scales, 0, sizeof y->scales);
	for (int ib = 0; ib < MUSE_QK_K / 16; ++ib) {
		const float *xb = xbl + 16 * ib;
		imatrix_weights(16, qwbl + 16 * ib, xb, sigma2, weight);
		float max = group_prep(16, xb, weight, waux, xval, block_signs, true);
		memset(L, 0, sizeof L);
		if (max < MUSE_GROUP_MAX_EPS) {
			scales[ib] = 0;
			continue;
		}
		float scale = lattice_search(g, 8, 2, &sp, xval, weight, waux, max / 5, max, L);
		scale = unflip(scale, block_signs, 2, true);
		for (int k = 0; k < 2; ++k)
			put_u16(q2 + 2 * (2 * ib + k), (uint16_t)(grid_index_of(g, L + 8 * k) | block_signs[k] << 9));
		scales[ib] = scale;
		max_scale = Q_MAX(max_scale, scale);
	}
	if (!max_scale) {
		memset(y->qs, 0, sizeof y->qs);
		return;
	}
	float d = max_scale / 31;
	y->d = muse_q_fp16(d);
	float id = 1 / d;
	pack_scales16(id, scales, y->scales);
	memcpy(y->qs, q2, sizeof y->qs);
}

/* ---- IQ2_S ---- */

static void iq2_s_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq2_s *y)
{
	static const search_params sp = { 16, 3, -9, 9, 0.1f, true, REFIT_OFF_GRID };
	float scales[MUSE_QK_K / 16], weight[16], xval[16], waux[16];
	int8_t L[16];
	uint8_t block_signs[2];
	float max_scale = 0;
	float sigma2 = 2 * sum_x2(xbl) / MUSE_QK_K;

	memset(y, 0, sizeof *y);
	y->d = muse_q_fp16(0.f);
	for (int ib = 0; ib < MUSE_QK_K / 16; ++ib) {
		const float *xb = xbl + 16 * ib;
		if (qwbl) {
			imatrix_weights(16, qwbl + 16 * ib, xb, sigma2, weight);
		} else {
			for (int i = 0; i < 16; ++i)
				weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
		}
		float max = group_prep(16, xb, weight, waux, xval, block_signs, false);
		memset(L, 0, sizeof L);
		if (max < GROUP_MAX_EPS_IQ2_S) {
			scales[ib] = 0;
			continue;
		}
		float scale = lattice_search(g, 8, 2, &sp, xval, weight, waux, max / 5, max, L);
		scale = unflip(scale, block_signs, 2, false);
		for (int k = 0; k < 2; ++k) {
			int gi = grid_index_of(g, L + 8 * k), i8 = 2 * ib + k;
			y->qs[i8] = (uint8_t)(gi & 255);
			y->qh[i8 / 4] |= (uint8_t)((gi >> 8) << 2 * (i8 % 4));
			y->qs[MUSE_QK_K / 8 + i8] = block_signs[k];
		}
		scales[ib] = scale;
		max_scale = Q_MAX(max_scale, scale);
	}
	if (!max_scale)
		return;
	float d = max_scale / 31;
	y->d = muse_q_fp16(d * 0.9875f);
	float id = 1 / d;
	pack_scales16(id, scales, y->scales);
}

/* ---- IQ3_XXS ---- */

static void iq3_xxs_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq3_xxs *y)
{
	static const search_params sp = { 32, 8, -15, 15, 0.2f, true, REFIT_OFF_GRID };
	float scales[MUSE_QK_K / 32], weight[32], xval[32], waux[32];
	int8_t L[32];
	uint8_t block_signs[4], q3[96] = { 0 };
	float max_scale = 0;
	float sigma2 = 2 * sum_x2(xbl) / MUSE_QK_K;

	y->d = muse_q_fp16(0.f);
	for (int ib = 0; ib < MUSE_QK_K / 32; ++ib) {
		const float *xb = xbl + 32 * ib;
		iq3_weights(qwbl ? qwbl + 32 * ib : NULL, xb, sigma2, weight);
		float max = group_prep(32, xb, weight, waux, xval, block_signs, true);
		memset(L, 0, sizeof L);
		if (max < GROUP_MAX_EPS_IQ3_XXS) {
			scales[ib] = 0;
			continue;
		}
		float scale = lattice_search(g, 4, 3, &sp, xval, weight, waux, max / 15, max, L);
		scale = unflip(scale, block_signs, 4, true);
		for (int k = 0; k < 8; ++k)
			q3[8 * ib + k] = (uint8_t)grid_index_of(g, L + 4 * k);
		put_u32(q3 + 64 + 4 * ib, (uint32_t)block_signs[0] | (uint32_t)block_signs[1] << 7 |
						   (uint32_t)block_signs[2] << 14 | (uint32_t)block_signs[3] << 21);
		scales[ib] = scale;
		max_scale = Q_MAX(max_scale, scale);
	}
	if (!max_scale) {
		memset(y->qs, 0, sizeof y->qs);
		return;
	}
	float d = max_scale / 31;
	y->d = muse_q_fp16(d * 1.0125f);
	float id = 1 / d;
	for (int ib = 0; ib < MUSE_QK_K / 32; ++ib)
		q3[64 + 4 * ib + 3] |= (uint8_t)(scale_code(id, scales[ib], 15) << 4);
	memcpy(y->qs, q3, sizeof y->qs);
}

/* ---- IQ3_S ---- */

static void iq3_s_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq3_s *y)
{
	static const search_params sp = { 32, 8, -9, 9, 0.2f, false, REFIT_ALL_IF_OFF_GRID };
	float scales[MUSE_QK_K / 32], weight[32], xval[32], waux[32];
	int8_t L[32];
	uint8_t block_signs[4];
	float max_scale = 0;
	float sigma2 = 2 * sum_x2(xbl) / MUSE_QK_K;

	memset(y, 0, sizeof *y);
	y->d = muse_q_fp16(0.f);
	uint8_t *qs = y->qs, *signs = y->signs;
	for (int ib = 0; ib < MUSE_QK_K / 32; ++ib) {
		const float *xb = xbl + 32 * ib;
		iq3_weights(qwbl ? qwbl + 32 * ib : NULL, xb, sigma2, weight);
		float max = group_prep(32, xb, weight, waux, xval, block_signs, false);
		memset(L, 0, sizeof L);
		/* As ggml: an all-zero block skips the advance of qs and signs below, so
		 * the blocks after it land one slot early and the last slots stay zero
		 * (qh and scales are indexed by block and stay in place). Decoders read
		 * them by position; the bytes are what ggml writes. */
		if (!max) {
			scales[ib] = 0;
			continue;
		}
		float scale = lattice_search(g, 4, 3, &sp, xval, weight, waux, max / 15, max, L);
		scale = unflip(scale, block_signs, 4, false);
		for (int k = 0; k < 8; ++k) {
			int gi = grid_index_of(g, L + 4 * k);
			qs[k] = (uint8_t)(gi & 255);
			y->qh[(ib * 8 + k) / 8] |= (uint8_t)((gi >> 8) << ((ib * 8 + k) % 8));
		}
		qs += 8;
		memcpy(signs, block_signs, 4);
		signs += 4;
		scales[ib] = scale;
		max_scale = Q_MAX(max_scale, scale);
	}
	if (!max_scale)
		return;
	float d = max_scale / 31;
	y->d = muse_q_fp16(d * 1.033f);
	float id = 1 / d;
	for (int ib = 0; ib < MUSE_QK_K / 32; ib += 2) {
		int l1 = scale_code(id, scales[ib], 15), l2 = scale_code(id, scales[ib + 1], 15);
		y->scales[ib / 2] = (uint8_t)(l1 | l2 << 4);
	}
}

/* ---- IQ1_S, IQ1_M ---- */

/*
 * Value and column of one element, sorted by value as ggml sorts them: glibc's
 * qsort, which for these sizes is a top-down merge sort (left half n/2) that
 * takes from the left run on a tie. This is that sort, so equal values (and a
 * NaN's comparisons, all "equal") land in the same order as in ggml.
 */
typedef struct {
	float v;
	int i;
} vpair;

static void merge_sort_pairs(vpair *b, vpair *tmp, int n)
{
	if (n <= 1)
		return;
	int n1 = n / 2, n2 = n - n1;
	vpair *b1 = b, *b2 = b + n1, *t = tmp;
	merge_sort_pairs(b1, tmp, n1);
	merge_sort_pairs(b2, tmp, n2);
	while (n1 > 0 && n2 > 0) {
		int c = b1->v < b2->v ? -1 : b1->v > b2->v ? 1 : 0;
		if (c <= 0) {
			*t++ = *b1++;
			n1--;
		} else {
			*t++ = *b2++;
			n2--;
		}
	}
	while (n1 > 0) {
		*t++ = *b1++;
		n1--;
	}
	for (int i = 0; i < n - n2; i++) /* the right run's tail is already in place */
		b[i] = tmp[i];
}

static void sort_block(const float *xb, int n, vpair *pairs)
{
	vpair tmp[32];
	for (int j = 0; j < n; ++j) {
		pairs[j].v = xb[j];
		pairs[j].i = j;
	}
	merge_sort_pairs(pairs, tmp, n);
}

/*
 * iq1_find_best_neighbour2: the neighbour of xval (signed values) closest at
 * scale with levels read through xg (the block's three shifted values); first
 * wins ties. When no score is below FLT_MAX ggml scans the whole grid with a
 * wrong index (xval[i], i a grid index: a read past the block) and then
 * asserts; muse takes the first neighbour instead. xg[l] is (l - 1) + delta,
 * both exact in float, so the lanes compute it from the level table rather
 * than look it up, and score four lanes at a time as best_neighbour_dim does.
 */
static int iq1_best_neighbour(const lattice *g, const uint16_t *nb, const float *xval, const float *weight,
			      float scale, float delta, int8_t *L)
{
	int n = nb[0], best = -1;
	float best_score = FLT_MAX;
	const v4f s = { scale, scale, scale, scale }, dv = { delta, delta, delta, delta };
	const v4f x0 = load4(xval), x1 = load4(xval + 4), w0 = load4(weight), w1 = load4(weight + 4);
	for (int j = 1; j <= n; ++j) {
		const float *lv = g->levm1 + nb[j] * 8;
		v4f d0 = s * (load4(lv) + dv) - x0, d1 = s * (load4(lv + 4) + dv) - x1;
		v4f t0 = w0 * d0 * d0, t1 = w1 * d1 * d1;
		float d2 = 0;
		d2 += t0[0];
		d2 += t0[1];
		d2 += t0[2];
		d2 += t0[3];
		d2 += t1[0];
		d2 += t1[1];
		d2 += t1[2];
		d2 += t1[3];
		if (d2 < best_score) {
			best_score = d2;
			best = nb[j];
		}
	}
	if (best < 0)
		best = nb[1];
	levels_of(g, best, L);
	return best;
}

/* Grid indices of the groups of 8 in L (searching neighbours where needed); false if any was off grid. */
static bool iq1_grid_indices(const lattice *g, int ngroup, const float *xb, const float *weight, float scale,
			     const float *const *xx, int8_t *L, uint16_t *index)
{
	bool all_on_grid = true;
	for (int k = 0; k < ngroup; ++k) {
		int u = pack_levels(g, L + 8 * k);
		int gi = g->map[u];
		if (gi < 0) {
			all_on_grid = false;
			gi = iq1_best_neighbour(g, neighbours_of(g, u), xb + 8 * k, weight + 8 * k, scale, xx[k][1],
						L + 8 * k);
		}
		index[k] = (uint16_t)gi;
	}
	return all_on_grid;
}

/* Least-squares scale of xb against the chosen grid points (each group of 8 through its xx). */
static float iq1_refit(const lattice *g, int ngroup, const float *xb, const float *weight, const float *const *xx,
		       const uint16_t *index, float scale)
{
	float sumqx = 0, sumq2 = 0;
	for (int k = 0; k < ngroup; ++k) {
		const int8_t *pg = g->pos + index[k] * 8;
		for (int j = 0; j < 8; ++j) {
			float w = weight[8 * k + j];
			float q = xx[k][(pg[j] - 1) / 2];
			sumqx += w * q * xb[8 * k + j];
			sumq2 += w * q * q;
		}
	}
	return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

static const float IQ1_XP[3] = { -1 + MUSE_IQ1S_DELTA, MUSE_IQ1S_DELTA, 1 + MUSE_IQ1S_DELTA };
static const float IQ1_XM[3] = { -1 - MUSE_IQ1S_DELTA, -MUSE_IQ1S_DELTA, 1 - MUSE_IQ1S_DELTA };

static void iq1_s_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq1_s *y)
{
	enum { BS = 32 };
	float scales[MUSE_QK_K / BS], weight[BS], sumx[BS + 1], sumw[BS + 1];
	int8_t L[BS], shifts[MUSE_QK_K / BS];
	uint16_t index[BS / 8], qh[MUSE_QK_K / BS] = { 0 };
	vpair pairs[BS];
	const float *x_p = IQ1_XP, *x_m = IQ1_XM;
	float max_scale = 0;
	float sigma2 = 2 * sum_x2(xbl) / MUSE_QK_K;

	y->d = muse_q_fp16(0.f);
	memset(y->qs, 0, sizeof y->qs);
	for (int ib = 0; ib < MUSE_QK_K / BS; ++ib) {
		const float *xb = xbl + BS * ib;
		imatrix_weights(BS, qwbl + BS * ib, xb, sigma2, weight);
		float max = fabsf(xb[0]);
		for (int i = 1; i < BS; ++i)
			max = Q_MAX(max, fabsf(xb[i]));
		if (max < GROUP_MAX_EPS_IQ1_S) {
			scales[ib] = 0;
			shifts[ib] = 1;
			continue;
		}
		/* Exhaustive over the two boundaries splitting the sorted values into
		 * the levels -1, 0, 1, with either sign of the delta shift. */
		sort_block(xb, BS, pairs);
		sumx[0] = sumw[0] = 0;
		for (int j = 0; j < BS; ++j) {
			int i = pairs[j].i;
			sumx[j + 1] = sumx[j] + weight[i] * xb[i];
			sumw[j + 1] = sumw[j] + weight[i];
		}
		float best_score = -FLT_MAX, scale = max;
		int besti1 = -1, besti2 = -1, best_shift = 0;
		for (int i1 = 0; i1 <= BS; ++i1) {
			for (int i2 = i1; i2 <= BS; ++i2) {
				float a = sumx[i1] - sumx[0], b = sumx[i2] - sumx[i1], c = sumx[BS] - sumx[i2];
				float wa = sumw[i1] - sumw[0], wb = sumw[i2] - sumw[i1], wc = sumw[BS] - sumw[i2];
				float sumqx = a * x_p[0] + b * x_p[1] + c * x_p[2];
				float sumq2 = wa * x_p[0] * x_p[0] + wb * x_p[1] * x_p[1] + wc * x_p[2] * x_p[2];
				if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
					scale = sumqx / sumq2;
					best_score = scale * sumqx;
					besti1 = i1;
					besti2 = i2;
					best_shift = 1;
				}
				sumqx = a * x_m[0] + b * x_m[1] + c * x_m[2];
				sumq2 = wa * x_m[0] * x_m[0] + wb * x_m[1] * x_m[1] + wc * x_m[2] * x_m[2];
				if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
					scale = sumqx / sumq2;
					best_score = scale * sumqx;
					besti1 = i1;
					besti2 = i2;
					best_shift = -1;
				}
			}
		}
		if (besti1 < 0 || besti2 < 0 || best_shift == 0) {
			scales[ib] = 0;
			shifts[ib] = 1;
			continue;
		}
		for (int j = 0; j < besti1; ++j)
			L[pairs[j].i] = 0;
		for (int j = besti1; j < besti2; ++j)
			L[pairs[j].i] = 1;
		for (int j = besti2; j < BS; ++j)
			L[pairs[j].i] = 2;
		if (scale < 0) {
			for (int j = 0; j < BS; ++j)
				L[j] = (int8_t)(2 - L[j]);
			scale = -scale;
			best_shift = -best_shift;
		}
		const float *xx = best_shift == 1 ? x_p : x_m;
		const float *xxs[BS / 8] = { xx, xx, xx, xx };
		if (!iq1_grid_indices(g, BS / 8, xb, weight, scale, xxs, L, index))
			scale = iq1_refit(g, BS / 8, xb, weight, xxs, index, scale);
		uint16_t h = 0;
		for (int k = 0; k < BS / 8; ++k) {
			y->qs[(BS / 8) * ib + k] = (uint8_t)(index[k] & 255);
			h |= (uint16_t)((index[k] >> 8) << 3 * k);
		}
		qh[ib] = h;
		scales[ib] = scale;
		shifts[ib] = (int8_t)best_shift;
		max_scale = Q_MAX(max_scale, scale);
	}
	if (max_scale) {
		float d = max_scale / 15;
		y->d = muse_q_fp16(d * 1.125f);
		float id = 1 / d;
		for (int ib = 0; ib < MUSE_QK_K / BS; ++ib) {
			int l = muse_q_nearest_int(0.5f * (id * scales[ib] - 1));
			l = Q_MAX(0, Q_MIN(7, l));
			if (shifts[ib] == -1)
				l |= 8;
			qh[ib] |= (uint16_t)(l << 12);
		}
	}
	for (int ib = 0; ib < MUSE_QK_K / BS; ++ib)
		y->qh[ib] = qh[ib];
}

static void iq1_m_block(const lattice *g, const float *xbl, const float *qwbl, muse_block_iq1_m *y)
{
	enum { BS = 16 };
	static const uint8_t masks[4] = { 0x00, 0x80, 0x08, 0x88 };
	float scales[MUSE_QK_K / BS], weight[BS];
	int8_t L[BS], shifts[MUSE_QK_K / BS];
	uint16_t index[BS / 8];
	vpair pairs[BS];
	const float *x_p = IQ1_XP, *x_m = IQ1_XM; /* IQ1M_DELTA == IQ1S_DELTA, checked below */
	float max_scale = 0;
	float sigma2 = 2 * sum_x2(xbl) / MUSE_QK_K;
	/* Both deltas are 0.125f in quant/iq_grids.h (a _Static_assert on floats does not compile under clang). */

	memset(y, 0, sizeof *y);
	for (int ib = 0; ib < MUSE_QK_K / BS; ++ib) {
		const float *xb = xbl + BS * ib;
		if (qwbl) {
			imatrix_weights(BS, qwbl + BS * ib, xb, sigma2, weight);
		} else {
			for (int i = 0; i < BS; ++i)
				weight[i] = xb[i] * xb[i];
		}
		float max = fabsf(xb[0]);
		for (int i = 1; i < BS; ++i)
			max = Q_MAX(max, fabsf(xb[i]));
		if (max < GROUP_MAX_EPS_IQ1_M) {
			scales[ib] = 0;
			shifts[ib] = 0;
			continue;
		}
		sort_block(xb, BS, pairs);
		/* best_k: shift signs of the two halves, 0 (+,+) 1 (+,-) 2 (-,+) 3 (-,-). Prefix
		 * sums per half; the 3-group sums collapse to T*v[2] - px[i1] - px[i2] because
		 * v[0]-v[1] = v[1]-v[2] = -1 for both shifts (ggml's own derivation and order). */
		float best_score = -FLT_MAX, scale = max;
		int besti1 = -1, besti2 = -1, best_k = -1;
		float px[2][BS + 1], pw[2][BS + 1];
		px[0][0] = px[1][0] = 0;
		pw[0][0] = pw[1][0] = 0;
		for (int j = 0; j < BS; ++j) {
			const int i = pairs[j].i;
			const int h = i < BS / 2 ? 0 : 1;
			px[h][j + 1] = px[h][j] + weight[i] * xb[i];
			px[1 - h][j + 1] = px[1 - h][j];
			pw[h][j + 1] = pw[h][j] + weight[i];
			pw[1 - h][j + 1] = pw[1 - h][j];
		}
		const float txs[2] = { px[0][BS], px[1][BS] }, tws[2] = { pw[0][BS], pw[1][BS] };
		const float p2 = x_p[2], m2 = x_m[2];
		const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1], cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
		const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1], cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
		for (int i1 = 0; i1 <= BS; ++i1) {
			for (int i2 = i1; i2 <= BS; ++i2) {
				float qx_p[2], qx_m[2], q2_p[2], q2_m[2], sumqx[4], sumq2[4];
#pragma GCC unroll 2
				for (int h = 0; h < 2; ++h) {
					const float sx = px[h][i1] + px[h][i2];
					qx_p[h] = txs[h] * p2 - sx;
					qx_m[h] = txs[h] * m2 - sx;
					q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
					q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
				}
				sumqx[0] = qx_p[0] + qx_p[1];
				sumqx[1] = qx_p[0] + qx_m[1];
				sumqx[2] = qx_m[0] + qx_p[1];
				sumqx[3] = qx_m[0] + qx_m[1];
				sumq2[0] = q2_p[0] + q2_p[1];
				sumq2[1] = q2_p[0] + q2_m[1];
				sumq2[2] = q2_m[0] + q2_p[1];
				sumq2[3] = q2_m[0] + q2_m[1];
#pragma GCC unroll 4
				for (int k = 0; k < 4; ++k) {
					if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
						scale = sumqx[k] / sumq2[k];
						best_score = scale * sumqx[k];
						besti1 = i1;
						besti2 = i2;
						best_k = k;
					}
				}
			}
		}
		if (besti1 < 0 || besti2 < 0 || best_k < 0) {
			scales[ib] = 0;
			shifts[ib] = 0;
			continue;
		}
		for (int j = 0; j < besti1; ++j)
			L[pairs[j].i] = 0;
		for (int j = besti1; j < besti2; ++j)
			L[pairs[j].i] = 1;
		for (int j = besti2; j < BS; ++j)
			L[pairs[j].i] = 2;
		if (scale < 0) {
			for (int j = 0; j < BS; ++j)
				L[j] = (int8_t)(2 - L[j]);
			scale = -scale;
			best_k = 3 - best_k;
		}
		const float *xxs[2] = { best_k < 2 ? x_p : x_m, best_k % 2 == 0 ? x_p : x_m };
		if (!iq1_grid_indices(g, BS / 8, xb, weight, scale, xxs, L, index))
			scale = iq1_refit(g, BS / 8, xb, weight, xxs, index, scale);
		y->qs[2 * ib + 0] = (uint8_t)(index[0] & 255);
		y->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
		y->qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
		scales[ib] = scale;
		shifts[ib] = (int8_t)best_k;
		max_scale = Q_MAX(max_scale, scale);
	}
	if (!max_scale)
		return;

	/* 3-bit block scales, then the super-block scale refitted against the
	 * chosen points at those scales (a skipped all-zero block takes part as
	 * grid point 0 with shift 0, as in ggml) */
	uint16_t sc[4] = { 0 };
	float d = max_scale / 15;
	float id = 1 / d;
	float sumqx_f = 0, sumq2_f = 0;
	for (int ib = 0; ib < MUSE_QK_K / BS; ++ib) {
		int l = muse_q_nearest_int(0.5f * (id * scales[ib + 0] - 1));
		l = Q_MAX(0, Q_MIN(7, l));
		sc[ib / 4] |= (uint16_t)(l << 3 * (ib % 4));
		y->qh[ib] |= masks[shifts[ib]];
		const float *xb = xbl + BS * ib;
		if (qwbl) {
			imatrix_weights(BS, qwbl + BS * ib, xb, sigma2, weight);
		} else {
			for (int i = 0; i < BS; ++i)
				weight[i] = xb[i] * xb[i];
		}
		for (int k = 0; k < BS / 8; ++k) {
			const float *xx = k == 0 ? (shifts[ib] < 2 ? x_p : x_m) : (shifts[ib] % 2 == 0 ? x_p : x_m);
			int gi = y->qs[2 * ib + k] + ((y->qh[ib] << (8 - 4 * k)) & 0x700);
			const int8_t *pg = g->pos + gi * 8;
			for (int j = 0; j < 8; ++j) {
				float w = weight[8 * k + j];
				float q = xx[(pg[j] - 1) / 2] * (float)(2 * l + 1);
				sumqx_f += w * q * xb[8 * k + j];
				sumq2_f += w * q * q;
			}
		}
	}
	if (sumq2_f > 0)
		d = sumqx_f / sumq2_f;
	uint16_t s = muse_q_fp16(d * 1.1125f);
	sc[0] |= (uint16_t)((s & 0x000f) << 12);
	sc[1] |= (uint16_t)((s & 0x00f0) << 8);
	sc[2] |= (uint16_t)((s & 0x0f00) << 4);
	sc[3] |= (uint16_t)(s & 0xf000);
	for (int i = 0; i < 4; ++i)
		put_u16(y->scales + 2 * i, sc[i]);
}

/* ---- row drivers ---- */

/*
 * ggml refuses IQ2_XXS, IQ2_XS and IQ1_S without importance weights
 * (ggml_quantize_requires_imatrix; their traits rows say needs_importance and
 * muse_quantize_rows refuses too). Called directly with NULL, muse weighs
 * every column 1: defined output that no ggml output can be compared with.
 */
#define LATTICE_ROWS(name, LAT, blk, fn, needs)                                                                     \
	size_t muse_quantize_##name##_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row,            \
					  const float *importance)                                                  \
	{                                                                                                           \
		const lattice *g = lattice_get(LAT);                                                                \
		int64_t nblock = n_per_row / MUSE_QK_K;                                                             \
		blk *y = dst;                                                                                       \
		for (int64_t row = 0; row < nrows; ++row, src += n_per_row, y += nblock)                            \
			for (int64_t ib = 0; ib < nblock; ++ib) {                                                   \
				const float *qw = importance ? importance + MUSE_QK_K * ib : (needs) ? ONES : NULL; \
				fn(g, src + MUSE_QK_K * ib, qw, y + ib);                                            \
			}                                                                                           \
		return (size_t)(nrows * nblock) * sizeof(blk);                                                      \
	}

LATTICE_ROWS(iq2_xxs, LAT_IQ2XXS, muse_block_iq2_xxs, iq2_xxs_block, true)
LATTICE_ROWS(iq2_xs, LAT_IQ2XS, muse_block_iq2_xs, iq2_xs_block, true)
LATTICE_ROWS(iq2_s, LAT_IQ2S, muse_block_iq2_s, iq2_s_block, false)
LATTICE_ROWS(iq3_xxs, LAT_IQ3XXS, muse_block_iq3_xxs, iq3_xxs_block, false)
LATTICE_ROWS(iq3_s, LAT_IQ3S, muse_block_iq3_s, iq3_s_block, false)
LATTICE_ROWS(iq1_s, LAT_IQ1S, muse_block_iq1_s, iq1_s_block, true)
LATTICE_ROWS(iq1_m, LAT_IQ1S, muse_block_iq1_m, iq1_m_block, false)

/* ---- decoders: dequantize_row_<type> of ggml-quants.c, same float operations ---- */

static inline float sign_of(uint8_t signs, int j)
{
	return signs & muse_iq_kmask[j] ? -1.f : 1.f;
}

void muse_dequantize_iq2_xxs(const void *src, float *dst, int64_t n)
{
	const muse_block_iq2_xxs *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		for (int ib32 = 0; ib32 < MUSE_QK_K / 32; ++ib32) {
			const uint8_t *q = (const uint8_t *)x[i].qs + 8 * ib32;
			uint32_t aux1 = get_u32(q + 4);
			const float db = d * (0.5f + (float)(aux1 >> 28)) * 0.25f;
			for (int l = 0; l < 4; ++l, dst += 8) {
				uint64_t grid = muse_iq2xxs_grid[q[l]];
				uint8_t signs = muse_iq_ksigns[(aux1 >> 7 * l) & 127];
				for (int j = 0; j < 8; ++j)
					dst[j] = db * (float)(uint8_t)(grid >> 8 * j) * sign_of(signs, j);
			}
		}
	}
}

void muse_dequantize_iq2_xs(const void *src, float *dst, int64_t n)
{
	const muse_block_iq2_xs *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		for (int ib32 = 0; ib32 < MUSE_QK_K / 32; ++ib32) {
			float db[2];
			db[0] = d * (0.5f + (float)(x[i].scales[ib32] & 0xf)) * 0.25f;
			db[1] = d * (0.5f + (float)(x[i].scales[ib32] >> 4)) * 0.25f;
			for (int l = 0; l < 4; ++l, dst += 8) {
				uint16_t q = x[i].qs[4 * ib32 + l];
				uint64_t grid = muse_iq2xs_grid[q & 511];
				uint8_t signs = muse_iq_ksigns[q >> 9];
				for (int j = 0; j < 8; ++j)
					dst[j] = db[l / 2] * (float)(uint8_t)(grid >> 8 * j) * sign_of(signs, j);
			}
		}
	}
}

void muse_dequantize_iq2_s(const void *src, float *dst, int64_t n)
{
	const muse_block_iq2_s *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		const uint8_t *qs = x[i].qs, *signs = x[i].qs + MUSE_QK_K / 8;
		for (int ib32 = 0; ib32 < MUSE_QK_K / 32; ++ib32, qs += 4, signs += 4) {
			float db[2];
			db[0] = d * (0.5f + (float)(x[i].scales[ib32] & 0xf)) * 0.25f;
			db[1] = d * (0.5f + (float)(x[i].scales[ib32] >> 4)) * 0.25f;
			for (int l = 0; l < 4; ++l, dst += 8) {
				const float dl = db[l / 2];
				uint64_t grid = muse_iq2s_grid[qs[l] | (x[i].qh[ib32] << (8 - 2 * l) & 0x300)];
				for (int j = 0; j < 8; ++j)
					dst[j] = dl * (float)(uint8_t)(grid >> 8 * j) * sign_of(signs[l], j);
			}
		}
	}
}

void muse_dequantize_iq3_xxs(const void *src, float *dst, int64_t n)
{
	const muse_block_iq3_xxs *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		const uint8_t *qs = x[i].qs;
		for (int ib32 = 0; ib32 < MUSE_QK_K / 32; ++ib32, qs += 8) {
			uint32_t aux32 = get_u32(x[i].qs + MUSE_QK_K / 4 + 4 * ib32);
			const float db = d * (0.5f + (float)(aux32 >> 28)) * 0.5f;
			for (int l = 0; l < 4; ++l, dst += 8) {
				uint8_t signs = muse_iq_ksigns[(aux32 >> 7 * l) & 127];
				uint32_t g1 = muse_iq3xxs_grid[qs[2 * l + 0]], g2 = muse_iq3xxs_grid[qs[2 * l + 1]];
				for (int j = 0; j < 4; ++j) {
					dst[j + 0] = db * (float)(uint8_t)(g1 >> 8 * j) * sign_of(signs, j + 0);
					dst[j + 4] = db * (float)(uint8_t)(g2 >> 8 * j) * sign_of(signs, j + 4);
				}
			}
		}
	}
}

void muse_dequantize_iq3_s(const void *src, float *dst, int64_t n)
{
	const muse_block_iq3_s *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		const uint8_t *qs = x[i].qs, *qh = x[i].qh, *signs = x[i].signs;
		for (int ib32 = 0; ib32 < MUSE_QK_K / 32; ib32 += 2, qh += 2) {
			const float db[2] = { d * (float)(1 + 2 * (x[i].scales[ib32 / 2] & 0xf)),
					      d * (float)(1 + 2 * (x[i].scales[ib32 / 2] >> 4)) };
			for (int h = 0; h < 2; ++h, qs += 8, signs += 4) {
				for (int l = 0; l < 4; ++l, dst += 8) {
					uint32_t g1 = muse_iq3s_grid[qs[2 * l + 0] | ((qh[h] << (8 - 2 * l)) & 256)];
					uint32_t g2 = muse_iq3s_grid[qs[2 * l + 1] | ((qh[h] << (7 - 2 * l)) & 256)];
					for (int j = 0; j < 4; ++j) {
						dst[j + 0] = db[h] * (float)(uint8_t)(g1 >> 8 * j) * sign_of(signs[l], j + 0);
						dst[j + 4] = db[h] * (float)(uint8_t)(g2 >> 8 * j) * sign_of(signs[l], j + 4);
					}
				}
			}
		}
	}
}

void muse_dequantize_iq1_s(const void *src, float *dst, int64_t n)
{
	const muse_block_iq1_s *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		const float d = muse_f16_to_f32(x[i].d);
		const uint8_t *qs = x[i].qs;
		for (int ib = 0; ib < MUSE_QK_K / 32; ++ib, qs += 4) {
			uint16_t qh = x[i].qh[ib];
			const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
			const float delta = qh & 0x8000 ? -MUSE_IQ1S_DELTA : MUSE_IQ1S_DELTA;
			for (int l = 0; l < 4; ++l, dst += 8) {
				uint64_t grid = muse_iq1s_grid[qs[l] | (((qh >> 3 * l) & 7) << 8)];
				for (int j = 0; j < 8; ++j)
					dst[j] = dl * ((float)(int8_t)(uint8_t)(grid >> 8 * j) + delta);
			}
		}
	}
}

void muse_dequantize_iq1_m(const void *src, float *dst, int64_t n)
{
	const muse_block_iq1_m *x = src;
	for (int64_t i = 0; i < n / MUSE_QK_K; i++) {
		uint16_t sc[4];
		for (int k = 0; k < 4; ++k)
			sc[k] = get_u16(x[i].scales + 2 * k);
		uint16_t s16 = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
					  (sc[3] & 0xf000));
		const float d = muse_f16_to_f32(s16);
		const uint8_t *qs = x[i].qs, *qh = x[i].qh;
		for (int ib = 0; ib < MUSE_QK_K / 32; ++ib, qs += 4, qh += 2) {
			const float dl1 = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1);
			const float dl2 = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
			const int idx[4] = { qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
					     qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700) };
			const float delta[4] = { qh[0] & 0x08 ? -MUSE_IQ1M_DELTA : MUSE_IQ1M_DELTA,
						 qh[0] & 0x80 ? -MUSE_IQ1M_DELTA : MUSE_IQ1M_DELTA,
						 qh[1] & 0x08 ? -MUSE_IQ1M_DELTA : MUSE_IQ1M_DELTA,
						 qh[1] & 0x80 ? -MUSE_IQ1M_DELTA : MUSE_IQ1M_DELTA };
			for (int l = 0; l < 4; ++l, dst += 8) {
				const float dl = l < 2 ? dl1 : dl2;
				uint64_t grid = muse_iq1s_grid[idx[l]];
				for (int j = 0; j < 8; ++j)
					dst[j] = dl * ((float)(int8_t)(uint8_t)(grid >> 8 * j) + delta[l]);
			}
		}
	}
}
