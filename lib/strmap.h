/* strmap.h: string -> index hash map (open addressing), for duplicate checks and name lookups over 10^5+ tensors. */
#ifndef MUSE_STRMAP_H
#define MUSE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keys are borrowed: they must outlive the map. */
typedef struct muse_strmap {
	const char **keys;
	size_t *keylens;
	size_t *vals;
	size_t n, cap;
} muse_strmap;

void muse_strmap_init(muse_strmap *m);
void muse_strmap_free(muse_strmap *m);
/* Inserts key -> val. Returns 1 when inserted, 0 when key was present (*old gets its value), -1 on no memory. */
int muse_strmap_put(muse_strmap *m, const char *key, size_t len, size_t val, size_t *old);
/* Returns true and sets *val when found. */
bool muse_strmap_get(const muse_strmap *m, const char *key, size_t len, size_t *val);

#endif
