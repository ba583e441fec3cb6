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
	return h ^ (h >> 29); /* FNV's low bits mix poorly; fold the high ones in before masking */
}

void muse_strmap_init(muse_strmap *m)
{
	memset(m, 0, sizeof *m);
}

void muse_strmap_free(muse_strmap *m)
{
	if (!m)
		return;
	free(m->slots);
	memset(m, 0, sizeof *m);
}

static size_t find(const muse_strmap *m, const char *key, size_t len, uint64_t h, bool *found)
{
	size_t mask = m->cap - 1, i = (size_t)h & mask;
	for (;;) {
		const struct muse_strmap_slot *s = &m->slots[i];
		if (!s->key)
			break;
		if (s->hash == h && s->len == len && !memcmp(s->key, key, len)) {
			*found = true;
			return i;
		}
		i = (i + 1) & mask;
	}
	*found = false;
	return i;
}

static int rehash(muse_strmap *m, size_t cap)
{
	muse_strmap n = { calloc(cap, sizeof(struct muse_strmap_slot)), 0, cap };
	if (!n.slots)
		return -1;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].key)
			continue;
		bool f;
		size_t j = find(&n, m->slots[i].key, m->slots[i].len, m->slots[i].hash, &f);
		n.slots[j] = m->slots[i];
		n.n++;
	}
	free(m->slots);
	*m = n;
	return 0;
}

int muse_strmap_reserve(muse_strmap *m, size_t n)
{
	size_t cap = m->cap ? m->cap : 64;
	while (cap < n * 2) {
		if (cap > SIZE_MAX / 4 / sizeof(struct muse_strmap_slot))
			return -1;
		cap *= 2;
	}
	return cap == m->cap ? 0 : rehash(m, cap);
}

int muse_strmap_put(muse_strmap *m, const char *key, size_t len, size_t val, size_t *old)
{
	if ((m->n + 1) * 2 > m->cap && rehash(m, m->cap ? m->cap * 2 : 64) < 0)
		return -1;
	uint64_t h = hash(key, len);
	bool f;
	size_t i = find(m, key, len, h, &f);
	if (f) {
		if (old)
			*old = m->slots[i].val;
		return 0;
	}
	m->slots[i] = (struct muse_strmap_slot){ key, len, h, val };
	m->n++;
	return 1;
}

bool muse_strmap_get(const muse_strmap *m, const char *key, size_t len, size_t *val)
{
	if (!m->cap)
		return false;
	bool f;
	size_t i = find(m, key, len, hash(key, len), &f);
	if (f && val)
		*val = m->slots[i].val;
	return f;
}
