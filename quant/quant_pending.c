/* quant_pending.c: TEMPORARY weak fallbacks so the tree links while the per-type quantizers are written.
 * A real definition overrides its weak one; a fallback quantizer writes nothing and returns 0, which the
 * tests catch. Deleted once every type in quant.c's table is implemented. */
#include "quant.h"

#define PENDING(name)                                                                                         \
	__attribute__((weak)) size_t muse_quantize_##name##_ref(const float *src, void *dst, int64_t nrows,     \
								int64_t n_per_row, const float *importance)     \
	{                                                                                                     \
		return 0;                                                                                     \
	}                                                                                                     \
	__attribute__((weak)) void muse_dequantize_##name(const void *src, float *dst, int64_t n)             \
	{                                                                                                     \
		for (int64_t i = 0; i < n; i++)                                                               \
			dst[i] = __builtin_nanf("");                                                          \
	}
PENDING(q4_0)
PENDING(q4_1)
PENDING(q5_0)
PENDING(q5_1)
PENDING(q8_0)
PENDING(q2_k)
PENDING(q3_k)
PENDING(q4_k)
PENDING(q5_k)
PENDING(q6_k)
PENDING(iq4_nl)
PENDING(iq4_xs)
PENDING(mxfp4)
PENDING(tq1_0)
PENDING(tq2_0)
