/* quant_test_data.h: deterministic test data shared by the quantizer unit tests (libm-free, so golden hashes do not depend on the C library).
 * Functions are static inline so a test that uses only some of them compiles without unused-function warnings. */
#ifndef MUSE_QUANT_TEST_DATA_H
#define MUSE_QUANT_TEST_DATA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline void *xmalloc(size_t n)
{
	void *p = calloc(n ? n : 1, 1);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* Deterministic data without libm: the golden hashes must not depend on the C library. */
static uint64_t rng_state;
static inline uint32_t rng32(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 32);
}

/* Irwin-Hall: sum of 12 uniforms on [0,1) minus 6, every step exact or fixed-order float arithmetic. */
static inline float rng_normal(void)
{
	float s = 0;
	for (int i = 0; i < 12; i++)
		s += (float)(rng32() >> 8) * 0x1p-24f;
	return s - 6.0f;
}

static inline uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

#endif
