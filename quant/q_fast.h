/* q_fast.h: fast quantizers (AVX2, chosen at run time) that give the reference quantizers' bytes. */
#ifndef MUSE_Q_FAST_H
#define MUSE_Q_FAST_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/*
 * Same signature and contract as the _ref functions of quant.h; the traits
 * table's quantize_fast column points at these. Each checks once per process
 * whether the CPU runs AVX2+F16C and whether MUSE_NO_SIMD is set (to any
 * value but "" or "0"); without the vector path it calls the reference
 * function itself, so the fallback is the reference by construction.
 * Weighted (importance) rows of Q2_K, Q3_K and Q6_K go to the reference for now.
 */
#define MUSE_QF_DECL(name) \
	size_t muse_quantize_##name##_fast(const float *src, void *dst, int64_t nrows, int64_t n_per_row, \
					   const float *importance);
MUSE_QF_DECL(q4_0)
MUSE_QF_DECL(q8_0)
MUSE_QF_DECL(q2_k)
MUSE_QF_DECL(q3_k)
MUSE_QF_DECL(q4_k)
MUSE_QF_DECL(q5_k)
MUSE_QF_DECL(q6_k)
#undef MUSE_QF_DECL

/* "avx2+f16c" when the fast functions take their vector path in this process, else "reference". */
const char *muse_quant_fast_path(void);

#endif
