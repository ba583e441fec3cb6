/* quant.h: ggml block quantizers: one signature, one traits table indexed by muse_dtype. */
#ifndef MUSE_QUANT_H
#define MUSE_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/*
 * Quantizes nrows rows of n_per_row floats (n_per_row a multiple of the
 * type's block size) into dst, rows back to back; returns the bytes written.
 * importance: NULL, or n_per_row weights (an imatrix column), applied to
 * every row exactly as ggml's quantize_<type>(...) does. The reference
 * function reproduces ggml's scalar arithmetic bit for bit (no FMA
 * contraction, same float operation order); a fast function, when present,
 * must give identical bytes.
 */
typedef size_t (*muse_quantize_fn)(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
				   const float *importance);
/* Dequantizes n elements (a multiple of the block size) from src to dst, as ggml's to_float does. */
typedef void (*muse_dequantize_fn)(const void *src, float *dst, int64_t n);

typedef struct muse_quant_traits {
	muse_dtype type;
	muse_quantize_fn quantize_ref;  /* NULL when muse cannot produce this type yet */
	muse_quantize_fn quantize_fast; /* NULL: use quantize_ref */
	muse_dequantize_fn dequantize;  /* NULL when muse cannot decode this type yet */
	bool needs_importance;          /* ggml refuses to quantize without an imatrix (IQ2_*, IQ1_*) */
	size_t align;                   /* alignment of the type's block struct (lib/block_layout.h) */
} muse_quant_traits;

/* The row for t; NULL for non-block types and unknown values. */
const muse_quant_traits *muse_quant_traits_of(muse_dtype t);

/*
 * Threaded driver: splits rows over OpenMP threads (nthreads <= 0: all).
 * Output is byte-identical for every thread count. Fails for types without
 * a quantizer, rows that are not whole blocks, missing importance where
 * the type needs it, and a dst not aligned for the type's block struct.
 */
muse_status muse_quantize_rows(muse_dtype t, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
			       const float *importance, int nthreads, muse_err *err);
/* Dequantizes n elements (threaded for large n); src may have any alignment (a tensor mapped from a GGUF file). */
muse_status muse_dequantize(muse_dtype t, const void *src, float *dst, int64_t n, muse_err *err);

/* ---- per-type functions (quant/q_*.c); the traits table in quant.c points at them ---- */
#define MUSE_Q_DECL(name)                                                                                  \
	size_t muse_quantize_##name##_ref(const float *src, void *dst, int64_t nrows, int64_t n_per_row, \
					  const float *importance);                                         \
	void muse_dequantize_##name(const void *src, float *dst, int64_t n);
MUSE_Q_DECL(q4_0)
MUSE_Q_DECL(q4_1)
MUSE_Q_DECL(q5_0)
MUSE_Q_DECL(q5_1)
MUSE_Q_DECL(q8_0)
MUSE_Q_DECL(q2_k)
MUSE_Q_DECL(q3_k)
MUSE_Q_DECL(q4_k)
MUSE_Q_DECL(q5_k)
MUSE_Q_DECL(q6_k)
MUSE_Q_DECL(iq4_nl)
MUSE_Q_DECL(iq4_xs)
MUSE_Q_DECL(mxfp4)
MUSE_Q_DECL(tq1_0)
MUSE_Q_DECL(tq2_0)
/* the lattice types (quant/q_iq_lattice.c) */
MUSE_Q_DECL(iq2_xxs)
MUSE_Q_DECL(iq2_xs)
MUSE_Q_DECL(iq2_s)
MUSE_Q_DECL(iq3_xxs)
MUSE_Q_DECL(iq3_s)
MUSE_Q_DECL(iq1_s)
MUSE_Q_DECL(iq1_m)
#undef MUSE_Q_DECL

/*
 * For tests: *used gets the entries the neighbour lists of t's lattice hold
 * (building them on first use), *cap the static capacity reserved for them;
 * they are equal for the grids ggml ships. -1 for non-lattice types.
 */
int muse_iq_lattice_stats(muse_dtype t, size_t *used, size_t *cap);

#endif
