/* arch.c: lookup over the architecture tables and the name/transform machinery they share. */
#include <stdio.h>
#include <string.h>

#include "../lib/checked.h"
#include "arch.h"

extern const muse_arch muse_arch_llama;

/* Adding an architecture: a table file plus one entry here. */
static const muse_arch *const arches[] = { &muse_arch_llama, NULL };

const muse_arch *muse_arch_find(const char *hf_class)
{
	for (size_t i = 0; arches[i]; i++)
		for (size_t j = 0; arches[i]->hf_classes[j]; j++)
			if (!strcmp(arches[i]->hf_classes[j], hf_class))
				return arches[i];
	return NULL;
}

void muse_arch_list(char *buf, size_t cap)
{
	size_t n = 0;
	if (!cap)
		return;
	buf[0] = '\0';
	for (size_t i = 0; arches[i]; i++)
		for (size_t j = 0; arches[i]->hf_classes[j] && n < cap; j++) {
			int k = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", arches[i]->hf_classes[j]);
			if (k < 0)
				return;
			n += (size_t)k;
		}
}

/* Matches name against pattern; "{N}" takes a canonical decimal number into *block. */
static int match(const char *pat, const char *name, int64_t *block)
{
	const char *ph = strstr(pat, "{N}");
	*block = -1;
	if (!ph)
		return !strcmp(pat, name);
	size_t pre = (size_t)(ph - pat);
	if (strncmp(pat, name, pre))
		return 0;
	const char *p = name + pre;
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		return 0;
	uint64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_C(1) << 40)) /* far above any block count; stops overflow */
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (strcmp(p, ph + 3))
		return 0;
	*block = (int64_t)v;
	return 1;
}

muse_status muse_arch_map_name(const muse_arch *a, const char *hf_name, uint64_t n_blocks, char *out, size_t cap,
			       const muse_arch_tensor **rule, int64_t *block)
{
	for (const muse_arch_tensor *t = a->tensors; t->hf; t++) {
		int64_t b;
		if (!match(t->hf, hf_name, &b))
			continue;
		if (b >= 0 && (uint64_t)b >= n_blocks)
			return MUSE_ERR_LIMIT;
		const char *ph = strstr(t->gguf, "{N}");
		int k = ph ? snprintf(out, cap, "%.*s%lld%s", (int)(ph - t->gguf), t->gguf, (long long)b, ph + 3)
			   : snprintf(out, cap, "%s", t->gguf);
		if (k < 0 || (size_t)k >= cap)
			return MUSE_ERR_LIMIT;
		*rule = t;
		*block = b;
		return MUSE_OK;
	}
	return MUSE_ERR_UNSUPPORTED;
}

muse_status muse_arch_permute_rows(void *dst, const void *src, uint64_t rows, uint64_t row_bytes, uint64_t n,
				   muse_err *err)
{
	if (!n || rows % n || (rows / n) % 2)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%llu rows do not split into %llu heads of an even size",
				    (unsigned long long)rows, (unsigned long long)n);
	uint64_t hd = rows / n, half = hd / 2;
	uint8_t *d = dst;
	const uint8_t *s = src;
	for (uint64_t h = 0; h < n; h++)
		for (uint64_t i = 0; i < half; i++)
			for (uint64_t j = 0; j < 2; j++) {
				uint64_t to = h * hd + 2 * i + j, from = h * hd + j * half + i;
				memcpy(d + to * row_bytes, s + from * row_bytes, (size_t)row_bytes);
			}
	return MUSE_OK;
}
