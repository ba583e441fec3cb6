/* checked.h: overflow-checked arithmetic for every value that came from a file. */
#ifndef MUSE_CHECKED_H
#define MUSE_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Each returns false (and leaves *out unspecified) when the result does not fit. */
static inline bool muse_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

static inline bool muse_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

static inline bool muse_sub_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_sub_overflow(a, b, out);
}

static inline bool muse_add_size(size_t a, size_t b, size_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

static inline bool muse_mul_size(size_t a, size_t b, size_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

/* Rounds x up to a multiple of align (a power of two); false on overflow (the GGML_PAD wrap). */
static inline bool muse_align_up_u64(uint64_t x, uint64_t align, uint64_t *out)
{
	uint64_t r = align ? x % align : 0;
	if (r == 0) {
		*out = x;
		return true;
	}
	return muse_add_u64(x, align - r, out);
}

/* Product of n values; false on overflow. The product of zero values is 1. */
static inline bool muse_product_u64(const uint64_t *v, int n, uint64_t *out)
{
	uint64_t p = 1;
	for (int i = 0; i < n; i++)
		if (!muse_mul_u64(p, v[i], &p))
			return false;
	*out = p;
	return true;
}

/* True when [off, off+len) lies inside [0, size). */
static inline bool muse_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	uint64_t end;
	return muse_add_u64(off, len, &end) && end <= size;
}

#endif
