/* kv.c: metadata list operations. Linear lookup: models carry tens of keys, not thousands. */
#include "kv.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	size_t size;
} kv_types[MUSE_KV_TYPE_COUNT] = {
	[MUSE_KV_U8] = { "u8", 1 },     [MUSE_KV_I8] = { "i8", 1 },
	[MUSE_KV_U16] = { "u16", 2 },   [MUSE_KV_I16] = { "i16", 2 },
	[MUSE_KV_U32] = { "u32", 4 },   [MUSE_KV_I32] = { "i32", 4 },
	[MUSE_KV_F32] = { "f32", 4 },   [MUSE_KV_BOOL] = { "bool", 1 },
	[MUSE_KV_STRING] = { "str", 0 }, [MUSE_KV_ARRAY] = { "arr", 0 },
	[MUSE_KV_U64] = { "u64", 8 },   [MUSE_KV_I64] = { "i64", 8 },
	[MUSE_KV_F64] = { "f64", 8 },
};

size_t muse_kv_type_size(muse_kv_type t)
{
	return (unsigned)t < MUSE_KV_TYPE_COUNT ? kv_types[t].size : 0;
}

const char *muse_kv_type_name(muse_kv_type t)
{
	return (unsigned)t < MUSE_KV_TYPE_COUNT ? kv_types[t].name : "?";
}

void muse_meta_init(muse_meta *m)
{
	m->kv = NULL;
	m->n = m->cap = 0;
}

void muse_kv_clear(muse_kv *kv)
{
	if (kv->type == MUSE_KV_STRING)
		free(kv->v.s.ptr);
	if (kv->type == MUSE_KV_ARRAY && kv->arr_type == MUSE_KV_STRING && kv->arr) {
		muse_str *s = kv->arr;
		for (uint64_t i = 0; i < kv->n; i++)
			free(s[i].ptr);
	}
	free(kv->arr);
	free(kv->key);
	memset(kv, 0, sizeof *kv);
}

void muse_meta_free(muse_meta *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		muse_kv_clear(&m->kv[i]);
	free(m->kv);
	muse_meta_init(m);
}

ptrdiff_t muse_meta_index(const muse_meta *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->kv[i].key, key))
			return (ptrdiff_t)i;
	return -1;
}

const muse_kv *muse_meta_find(const muse_meta *m, const char *key)
{
	ptrdiff_t i = muse_meta_index(m, key);
	return i < 0 ? NULL : &m->kv[i];
}

muse_kv *muse_meta_append(muse_meta *m, const char *key)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		muse_kv *kv = realloc(m->kv, cap * sizeof *kv);
		if (!kv)
			return NULL;
		m->kv = kv;
		m->cap = cap;
	}
	char *k = strdup(key);
	if (!k)
		return NULL;
	muse_kv *kv = &m->kv[m->n++];
	memset(kv, 0, sizeof *kv);
	kv->key = k;
	return kv;
}

/* Returns the slot for key: an existing entry cleared (keeping its position) or a new one. */
static muse_kv *slot(muse_meta *m, const char *key)
{
	ptrdiff_t i = muse_meta_index(m, key);
	if (i < 0)
		return muse_meta_append(m, key);
	muse_kv *kv = &m->kv[i];
	char *k = kv->key;
	kv->key = NULL;
	muse_kv_clear(kv);
	kv->key = k;
	return kv;
}

#define SETTER(fn, ctype, kvtype, field)                                      \
	muse_status fn(muse_meta *m, const char *key, ctype v)                \
	{                                                                     \
		muse_kv *kv = slot(m, key);                                   \
		if (!kv)                                                      \
			return MUSE_ERR_NOMEM;                                \
		kv->type = kvtype;                                            \
		kv->n = 1;                                                    \
		kv->v.field = v;                                              \
		return MUSE_OK;                                               \
	}

SETTER(muse_meta_set_u32, uint32_t, MUSE_KV_U32, u)
SETTER(muse_meta_set_u64, uint64_t, MUSE_KV_U64, u)
SETTER(muse_meta_set_i32, int32_t, MUSE_KV_I32, i)
SETTER(muse_meta_set_f32, float, MUSE_KV_F32, f)
SETTER(muse_meta_set_bool, bool, MUSE_KV_BOOL, b)

static char *dupn(const char *s, uint64_t len)
{
	char *p = malloc(len + 1);
	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = 0;
	return p;
}

muse_status muse_meta_set_strn(muse_meta *m, const char *key, const char *v, uint64_t len)
{
	char *p = dupn(v, len);
	if (!p)
		return MUSE_ERR_NOMEM;
	muse_kv *kv = slot(m, key);
	if (!kv) {
		free(p);
		return MUSE_ERR_NOMEM;
	}
	kv->type = MUSE_KV_STRING;
	kv->n = 1;
	kv->v.s.len = len;
	kv->v.s.ptr = p;
	return MUSE_OK;
}

muse_status muse_meta_set_str(muse_meta *m, const char *key, const char *v)
{
	return muse_meta_set_strn(m, key, v, strlen(v));
}

muse_status muse_meta_set_arr(muse_meta *m, const char *key, muse_kv_type arr_type, const void *data, uint64_t n)
{
	size_t esz = muse_kv_type_size(arr_type);
	if (!esz)
		return MUSE_ERR_USAGE;
	void *copy = malloc(n ? n * esz : 1);
	if (!copy)
		return MUSE_ERR_NOMEM;
	if (n)
		memcpy(copy, data, n * esz);
	muse_kv *kv = slot(m, key);
	if (!kv) {
		free(copy);
		return MUSE_ERR_NOMEM;
	}
	kv->type = MUSE_KV_ARRAY;
	kv->arr_type = arr_type;
	kv->n = n;
	kv->arr = copy;
	return MUSE_OK;
}

muse_status muse_meta_set_str_arr(muse_meta *m, const char *key, const char *const *strs, uint64_t n)
{
	muse_str *arr = calloc(n ? n : 1, sizeof *arr);
	if (!arr)
		return MUSE_ERR_NOMEM;
	for (uint64_t i = 0; i < n; i++) {
		arr[i].len = strlen(strs[i]);
		arr[i].ptr = dupn(strs[i], arr[i].len);
		if (!arr[i].ptr) {
			while (i--)
				free(arr[i].ptr);
			free(arr);
			return MUSE_ERR_NOMEM;
		}
	}
	muse_kv *kv = slot(m, key);
	if (!kv) {
		for (uint64_t i = 0; i < n; i++)
			free(arr[i].ptr);
		free(arr);
		return MUSE_ERR_NOMEM;
	}
	kv->type = MUSE_KV_ARRAY;
	kv->arr_type = MUSE_KV_STRING;
	kv->n = n;
	kv->arr = arr;
	return MUSE_OK;
}

void muse_meta_remove(muse_meta *m, const char *key)
{
	ptrdiff_t i = muse_meta_index(m, key);
	if (i < 0)
		return;
	muse_kv_clear(&m->kv[i]);
	memmove(&m->kv[i], &m->kv[i + 1], (m->n - (size_t)i - 1) * sizeof *m->kv);
	m->n--;
}

muse_status muse_meta_copy_kv(muse_meta *dst, const muse_kv *src)
{
	if (src->type == MUSE_KV_STRING)
		return muse_meta_set_strn(dst, src->key, src->v.s.ptr, src->v.s.len);
	if (src->type == MUSE_KV_ARRAY && src->arr_type != MUSE_KV_STRING)
		return muse_meta_set_arr(dst, src->key, src->arr_type, src->arr, src->n);
	if (src->type == MUSE_KV_ARRAY) {
		const muse_str *s = src->arr;
		muse_str *arr = calloc(src->n ? src->n : 1, sizeof *arr);
		if (!arr)
			return MUSE_ERR_NOMEM;
		for (uint64_t i = 0; i < src->n; i++) {
			arr[i].len = s[i].len;
			arr[i].ptr = dupn(s[i].ptr, s[i].len);
			if (!arr[i].ptr) {
				while (i--)
					free(arr[i].ptr);
				free(arr);
				return MUSE_ERR_NOMEM;
			}
		}
		muse_kv *kv = slot(dst, src->key);
		if (!kv) {
			for (uint64_t i = 0; i < src->n; i++)
				free(arr[i].ptr);
			free(arr);
			return MUSE_ERR_NOMEM;
		}
		kv->type = MUSE_KV_ARRAY;
		kv->arr_type = MUSE_KV_STRING;
		kv->n = src->n;
		kv->arr = arr;
		return MUSE_OK;
	}
	muse_kv *kv = slot(dst, src->key);
	if (!kv)
		return MUSE_ERR_NOMEM;
	kv->type = src->type;
	kv->n = 1;
	kv->v = src->v;
	return MUSE_OK;
}

bool muse_meta_get_u64(const muse_meta *m, const char *key, uint64_t *out)
{
	const muse_kv *kv = muse_meta_find(m, key);
	if (!kv)
		return false;
	switch (kv->type) {
	case MUSE_KV_U8: case MUSE_KV_U16: case MUSE_KV_U32: case MUSE_KV_U64:
		*out = kv->v.u;
		return true;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		if (kv->v.i < 0)
			return false;
		*out = (uint64_t)kv->v.i;
		return true;
	default:
		return false;
	}
}

bool muse_meta_get_i64(const muse_meta *m, const char *key, int64_t *out)
{
	const muse_kv *kv = muse_meta_find(m, key);
	if (!kv)
		return false;
	switch (kv->type) {
	case MUSE_KV_U8: case MUSE_KV_U16: case MUSE_KV_U32: case MUSE_KV_U64:
		if (kv->v.u > INT64_MAX)
			return false;
		*out = (int64_t)kv->v.u;
		return true;
	case MUSE_KV_I8: case MUSE_KV_I16: case MUSE_KV_I32: case MUSE_KV_I64:
		*out = kv->v.i;
		return true;
	default:
		return false;
	}
}

bool muse_meta_get_f64(const muse_meta *m, const char *key, double *out)
{
	const muse_kv *kv = muse_meta_find(m, key);
	if (!kv)
		return false;
	if (kv->type == MUSE_KV_F32 || kv->type == MUSE_KV_F64) {
		*out = kv->v.f;
		return true;
	}
	int64_t i;
	uint64_t u;
	if (muse_meta_get_i64(m, key, &i)) {
		*out = (double)i;
		return true;
	}
	if (muse_meta_get_u64(m, key, &u)) {
		*out = (double)u;
		return true;
	}
	return false;
}

const char *muse_meta_get_str(const muse_meta *m, const char *key)
{
	const muse_kv *kv = muse_meta_find(m, key);
	return kv && kv->type == MUSE_KV_STRING ? kv->v.s.ptr : NULL;
}
