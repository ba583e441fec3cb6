/* strmap.h: string -> index hash map (open addressing), for duplicate checks and name lookups over 10^5+ tensors. */
#ifndef MUSE_STRMAP_H
#define MUSE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keys are borrowed: they must outlive the map. The full hash is kept per slot so probes rarely touch key bytes. */
struct muse_strmap_slot {
	const char *key; /* NULL: empty */
	size_t len;
	uint64_t hash;
	size_t val;
};

typedef struct muse_strmap {
	struct muse_strmap_slot *slots;
	size_t n, cap;
} muse_strmap;

void muse_strmap_init(muse_strmap *m);
void muse_strmap_free(muse_strmap *m);
/* Sizes the table for n keys up front (optional); -1 on no memory. */
int muse_strmap_reserve(muse_strmap *m, size_t n);
/* Inserts key -> val. Returns 1 when inserted, 0 when key was present (*old gets its value), -1 on no memory. */
int muse_strmap_put(muse_strmap *m, const char *key, size_t len, size_t val, size_t *old);
/* Returns true and sets *val when found. */
bool muse_strmap_get(const muse_strmap *m, const char *key, size_t len, size_t *val);

#endif
