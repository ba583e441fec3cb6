/* q_search.h: scale searches several ggml block types share (their float operation order is part of the format's bytes). */
#ifndef MUSE_Q_SEARCH_H
#define MUSE_Q_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Asymmetric fit x ~ scale * L - *the_min with L in [0, nmax] under weights,
 * as ggml's make_qkx2_quants / make_qkx3_quants (identical when weights are
 * given): nstep+1 candidate scales from (rmin + nmax)/(max - min) in steps of
 * rdelta, weighted least squares at each, lowest weighted error (absolute when
 * use_mad, else squared) wins. Laux is n bytes of scratch. Returns the scale.
 */
float muse_q_fit_min(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
		     uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad);

/*
 * Non-negative values (sub-block scales or mins) to levels in [0, nmax] under weights qw, as ggml's
 * make_qp_quants: best of 9 scales by weighted squared error, then coordinate-descent sweeps. Returns
 * the scale.
 */
float muse_q_fit_pos(int n, int nmax, const float *x, uint8_t *L, const float *qw);

#endif
