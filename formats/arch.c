/* arch.c: lookup over the architecture tables and the name/transform machinery they share. */
#include <stdio.h>
#include <string.h>

#include "../lib/checked.h"
#include "arch.h"

extern const muse_arch muse_arch_llama, muse_arch_qwen2, muse_arch_qwen3, muse_arch_qwen2moe, muse_arch_qwen3moe,
	muse_arch_deepseek2;

/* Adding an architecture: a table file plus one entry here (or, at run time, muse_arch_register). */
static const muse_arch *const arches[] = { &muse_arch_llama,    &muse_arch_qwen2,    &muse_arch_qwen3,
					   &muse_arch_qwen2moe, &muse_arch_qwen3moe, &muse_arch_deepseek2, NULL };

/* Architectures added at run time, searched after the built-in ones: a few slots are plenty for tests and plug-ins. */
#define MAX_REGISTERED 8
static const muse_arch *registered[MAX_REGISTERED];
static size_t n_registered;

/* The i-th architecture known, built-in ones first; NULL past the last. */
static const muse_arch *arch_at(size_t i)
{
	size_t n_builtin = sizeof arches / sizeof *arches - 1;
	if (i < n_builtin)
		return arches[i];
	return i - n_builtin < n_registered ? registered[i - n_builtin] : NULL;
}

muse_status muse_arch_register(const muse_arch *a)
{
	if (!a || !a->gguf_name || !a->hf_classes || !a->tensors)
		return MUSE_ERR_USAGE;
	for (size_t j = 0; a->hf_classes[j]; j++) {
		const muse_arch *known = muse_arch_find(a->hf_classes[j]);
		if (known == a)
			return MUSE_OK; /* registered before */
		if (known)
			return MUSE_ERR_USAGE; /* a class name answers to one table */
	}
	if (n_registered == MAX_REGISTERED)
		return MUSE_ERR_LIMIT;
	registered[n_registered++] = a;
	return MUSE_OK;
}

const muse_arch *muse_arch_find(const char *hf_class)
{
	const muse_arch *a;
	for (size_t i = 0; (a = arch_at(i)) != NULL; i++)
		for (size_t j = 0; a->hf_classes[j]; j++)
			if (!strcmp(a->hf_classes[j], hf_class))
				return a;
	return NULL;
}

void muse_arch_list(char *buf, size_t cap)
{
	const muse_arch *a;
	size_t n = 0;
	if (!cap)
		return;
	buf[0] = '\0';
	for (size_t i = 0; (a = arch_at(i)) != NULL; i++)
		for (size_t j = 0; a->hf_classes[j] && n < cap; j++) {
			int k = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", a->hf_classes[j]);
			if (k < 0)
				return;
			n += (size_t)k;
		}
}

/* A canonical decimal number (no sign, no leading zeros but "0") at *p; advances *p. */
static int number(const char **p, uint64_t *out)
{
	const char *q = *p;
	if (*q < '0' || *q > '9' || (q[0] == '0' && q[1] >= '0' && q[1] <= '9'))
		return 0;
	uint64_t v = 0;
	for (; *q >= '0' && *q <= '9'; q++) {
		if (v > (UINT64_C(1) << 40)) /* far above any block or expert count; stops overflow */
			return 0;
		v = v * 10 + (uint64_t)(*q - '0');
	}
	*p = q;
	*out = v;
	return 1;
}

/* Matches name against pattern; "{N}" takes the block number into *block, "{E}" the expert number into *expert. */
static int match(const char *pat, const char *name, int64_t *block, int64_t *expert)
{
	*block = *expert = -1;
	while (*pat) {
		if (pat[0] == '{' && (pat[1] == 'N' || pat[1] == 'E') && pat[2] == '}') {
			uint64_t v;
			if (!number(&name, &v))
				return 0;
			*(pat[1] == 'N' ? block : expert) = (int64_t)v;
			pat += 3;
			continue;
		}
		if (*pat++ != *name++)
			return 0;
	}
	return *name == '\0';
}

muse_status muse_arch_map_next(const muse_arch *a, const char *hf_name, uint64_t n_blocks, size_t *next, char *out,
			       size_t cap, const muse_arch_tensor **rule, int64_t *block, int64_t *expert)
{
	for (size_t i = *next; a->tensors[i].hf; i++) {
		const muse_arch_tensor *t = &a->tensors[i];
		int64_t b, e;
		if (!match(t->hf, hf_name, &b, &e))
			continue;
		*next = i + 1;
		if (b >= 0 && (uint64_t)b >= n_blocks)
			return MUSE_ERR_LIMIT;
		const char *ph = strstr(t->gguf, "{N}");
		int k = ph ? snprintf(out, cap, "%.*s%lld%s", (int)(ph - t->gguf), t->gguf, (long long)b, ph + 3)
			   : snprintf(out, cap, "%s", t->gguf);
		if (k < 0 || (size_t)k >= cap)
			return MUSE_ERR_LIMIT;
		*rule = t;
		*block = b;
		*expert = e;
		return MUSE_OK;
	}
	return MUSE_ERR_UNSUPPORTED;
}

muse_status muse_arch_map_name(const muse_arch *a, const char *hf_name, uint64_t n_blocks, char *out, size_t cap,
			       const muse_arch_tensor **rule, int64_t *block)
{
	size_t next = 0;
	int64_t expert;
	return muse_arch_map_next(a, hf_name, n_blocks, &next, out, cap, rule, block, &expert);
}

uint64_t muse_arch_permuted_row(uint64_t row, uint64_t rows, uint64_t n)
{
	uint64_t hd = rows / n, half = hd / 2;
	uint64_t h = row / hd, k = row % hd;
	return h * hd + (k % 2) * half + k / 2;
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
