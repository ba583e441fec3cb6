/* arch_reverse.c: the arch tables read backwards (GGUF name -> HF name, interleaved -> rotate-half rows), generic over rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "gguf2hf.h"

/*
 * Matches a GGUF name against a gguf pattern: "{N}" takes a canonical
 * decimal block number. Same rules as the forward direction (no sign, no
 * leading zeros), so a name maps back only if the forward map produces it.
 */
static int match_gguf(const char *pat, const char *name, int64_t *block)
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

/*
 * Several HF rows may map to one GGUF name (aliases such as
 * "LLaMAForCausalLM" spellings, or tensors an HF family names two ways);
 * the first row wins, which is the spelling the table lists first and
 * therefore the one transformers' current class uses.
 */
/* Rows whose HF tensor is built from several GGUF tensors (fused gate_up, MLA's kv_b): not a 1:1 reversal. */
static int merging(const muse_arch_tensor *t)
{
	return t->xf == MUSE_XF_HALF_0 || t->xf == MUSE_XF_HALF_1 || t->xf == MUSE_XF_KV_B_K || t->xf == MUSE_XF_KV_B_V;
}

muse_status muse_arch_reverse_name(const muse_arch *a, const char *gguf_name, uint64_t n_blocks,
				   const muse_arch_tensor **rule, int64_t *block)
{
	const muse_arch_tensor *merge = NULL;
	int64_t merge_b = -1;
	*rule = NULL;
	for (const muse_arch_tensor *t = a->tensors; t->hf; t++) {
		int64_t b;
		if (!t->gguf || !match_gguf(t->gguf, gguf_name, &b))
			continue;
		if (b >= 0 && (uint64_t)b >= n_blocks)
			return MUSE_ERR_LIMIT;
		if (merging(t)) { /* a one-to-one row further down (per-expert experts) is preferred */
			if (!merge) {
				merge = t;
				merge_b = b;
			}
			continue;
		}
		*rule = t;
		*block = b;
		return MUSE_OK;
	}
	if (merge) {
		*rule = merge;
		*block = merge_b;
		return MUSE_ERR_USAGE;
	}
	return MUSE_ERR_UNSUPPORTED;
}

int muse_arch_rule_splits_experts(const muse_arch_tensor *rule)
{
	return strstr(rule->hf, "{E}") != NULL;
}

muse_status muse_arch_hf_name(const muse_arch_tensor *rule, int64_t block, int64_t expert, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = rule->hf; *p;) {
		int64_t v = -2;
		if (!strncmp(p, "{N}", 3))
			v = block;
		else if (!strncmp(p, "{E}", 3))
			v = expert;
		if (v == -2) {
			if (n + 1 >= cap)
				return MUSE_ERR_LIMIT;
			out[n++] = *p++;
			continue;
		}
		if (v < 0)
			return MUSE_ERR_USAGE; /* the pattern wants a number the caller does not have */
		int k = snprintf(out + n, cap - n, "%lld", (long long)v);
		if (k < 0 || (size_t)k >= cap - n)
			return MUSE_ERR_LIMIT;
		n += (size_t)k;
		p += 3;
	}
	if (!cap)
		return MUSE_ERR_LIMIT;
	out[n] = '\0';
	return MUSE_OK;
}

/*
 * muse_arch_permute_rows put HF row h*hd + j*half + i at GGUF row
 * h*hd + 2i + j; HF row r therefore comes from the GGUF row below.
 */
uint64_t muse_arch_unpermute_src(uint64_t r, uint64_t rows, uint64_t n)
{
	uint64_t hd = rows / n, half = hd / 2;
	uint64_t h = r / hd, w = r % hd, j = w / half, i = w % half;
	return h * hd + 2 * i + j;
}

muse_status muse_arch_unpermute_rows(void *dst, const void *src, uint64_t rows, uint64_t row_bytes, uint64_t n,
				     muse_err *err)
{
	if (!n || rows % n || (rows / n) % 2)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%llu rows do not split into %llu heads of an even size",
				    (unsigned long long)rows, (unsigned long long)n);
	uint8_t *d = dst;
	const uint8_t *s = src;
	for (uint64_t r = 0; r < rows; r++)
		memcpy(d + r * row_bytes, s + muse_arch_unpermute_src(r, rows, n) * row_bytes, (size_t)row_bytes);
	return MUSE_OK;
}

/*
 * arch.c keeps its table list private; muse_arch_list names every HF class
 * and muse_arch_find resolves each, which enumerates the tables without
 * this file knowing which exist (new architectures work unchanged).
 */
size_t muse_arch_candidates(const char *gguf_arch, const muse_arch **out, size_t cap)
{
	char list[8192];
	size_t n = 0;
	muse_arch_list(list, sizeof list);
	for (char *save = NULL, *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		const muse_arch *a = muse_arch_find(tok);
		if (!a || strcmp(a->gguf_name, gguf_arch))
			continue;
		int dup = 0;
		for (size_t i = 0; i < n; i++)
			dup |= out[i] == a;
		if (!dup && n < cap)
			out[n++] = a;
	}
	return n;
}
