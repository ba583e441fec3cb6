/* strmap.c: FNV-1a hashed open-addressing map with linear probing; load factor kept under 1/2. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

void muse_strmap_init(muse_strmap *m)
{
	memset(m, 0, sizeof *m);
}

void muse_strmap_free(muse_strmap *m)
{
	if (!m)
		return;
	free(m->keys);
	free(m->keylens);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

static size_t find(const muse_strmap *m, const char *key, size_t len, bool *found)
{
	size_t mask = m->cap - 1, i = (size_t)hash(key, len) & mask;
	while (m->keys[i]) {
		if (m->keylens[i] == len && !memcmp(m->keys[i], key, len)) {
			*found = true;
			return i;
		}
		i = (i + 1) & mask;
	}
	*found = false;
	return i;
}

static int grow(muse_strmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	muse_strmap n = { calloc(cap, sizeof(char *)), calloc(cap, sizeof(size_t)), calloc(cap, sizeof(size_t)), 0, cap };
	if (!n.keys || !n.keylens || !n.vals) {
		muse_strmap_free(&n);
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		bool f;
		size_t j = find(&n, m->keys[i], m->keylens[i], &f);
		n.keys[j] = m->keys[i];
		n.keylens[j] = m->keylens[i];
		n.vals[j] = m->vals[i];
		n.n++;
	}
	muse_strmap_free(m);
	*m = n;
	return 0;
}

int muse_strmap_put(muse_strmap *m, const char *key, size_t len, size_t val, size_t *old)
{
	if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
		return -1;
	bool f;
	size_t i = find(m, key, len, &f);
	if (f) {
		if (old)
			*old = m->vals[i];
		return 0;
	}
	m->keys[i] = key;
	m->keylens[i] = len;
	m->vals[i] = val;
	m->n++;
	return 1;
}

bool muse_strmap_get(const muse_strmap *m, const char *key, size_t len, size_t *val)
{
	if (!m->cap)
		return false;
	bool f;
	size_t i = find(m, key, len, &f);
	if (f && val)
		*val = m->vals[i];
	return f;
}
