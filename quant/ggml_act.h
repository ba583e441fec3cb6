/* ggml_act.h: the rounding llama.cpp's CPU backend gives the activations of a matrix product, so eval scores a GGUF as llama.cpp runs it. */
#ifndef MUSE_GGML_ACT_H
#define MUSE_GGML_ACT_H

#include <stdint.h>

#include "../lib/dtype.h"

/*
 * The type ggml-cpu converts a product's F32 input rows to before it
 * multiplies them with a weight stored as w (type_traits_cpu[w].vec_dot_type
 * in ggml-cpu.c, llama.cpp 0c1e57098bba): Q8_0 for Q4_0, Q5_0, Q8_0, IQ4_NL,
 * MXFP4, NVFP4 and Q1_0; Q8_1 for Q4_1 and Q5_1; Q8_K for the k-quants and
 * the IQ and TQ types; F16 for F16; BF16 for BF16. MUSE_DT_F32 (no rounding)
 * for F32 and every other type.
 */
muse_dtype muse_ggml_act_type(muse_dtype w);

/*
 * Rounds the n floats of x in place to what ggml-cpu's from_float for t
 * (t from muse_ggml_act_type) followed by t's dequantization gives, as the
 * x86 AVX2 build of llama.cpp computes them:
 *   Q8_0, Q8_1  blocks of 32: d = amax / 127 stored fp16, q = round(x * (127 / amax)), ties to even;
 *   Q8_K        blocks of 256: iscale = -127 / (the element of largest |x|), q = nearest_int(iscale * x), d = 1 / iscale in f32;
 *   F16, BF16   round to nearest, ties to even.
 * The value is d * q, so w_dequantized . x_rounded is ggml's integer dot
 * product up to float summation order. n must be a whole number of t's
 * blocks (the caller checks); MUSE_DT_F32 leaves x as it is.
 */
void muse_ggml_act_round(muse_dtype t, float *x, int64_t n);

/*
 * Q8_1 as muse_ggml_act_round, and s_err (n / 32 floats) gets what ggml's
 * Q4_1/Q5_1 products see beyond the rounded values: they add the weight
 * block's min times Q8_1's s = fp16(d * sum q), d unrounded, where the
 * rounded values carry fp16(d) * sum q. s_err is the difference of the two,
 * so sum_j w_j x_j + min * s_err is ggml's dot product of the block.
 */
void muse_ggml_act_round_q8_1(float *x, int64_t n, float *s_err);

#endif
