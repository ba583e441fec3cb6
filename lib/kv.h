/* kv.h: typed metadata (GGUF's value model), the one representation of model metadata in muse. */
#ifndef MUSE_KV_H
#define MUSE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Values equal GGUF's metadata type ids so GGUF readers and writers map 1:1. */
typedef enum muse_kv_type {
	MUSE_KV_U8 = 0,
	MUSE_KV_I8 = 1,
	MUSE_KV_U16 = 2,
	MUSE_KV_I16 = 3,
	MUSE_KV_U32 = 4,
	MUSE_KV_I32 = 5,
	MUSE_KV_F32 = 6,
	MUSE_KV_BOOL = 7,
	MUSE_KV_STRING = 8,
	MUSE_KV_ARRAY = 9,
	MUSE_KV_U64 = 10,
	MUSE_KV_I64 = 11,
	MUSE_KV_F64 = 12,
	MUSE_KV_TYPE_COUNT = 13
} muse_kv_type;

/* A length-counted string; ptr is NUL-terminated for convenience but may contain NULs. */
typedef struct muse_str {
	uint64_t len;
	char *ptr;
} muse_str;

/*
 * One key/value. Scalars live in the union (strings in .s). Arrays keep
 * arr_type and n; numeric and bool elements are packed in `arr` at their
 * natural width (bool as one byte), string elements are muse_str[n].
 * Everything is owned by the muse_meta holding it.
 */
typedef struct muse_kv {
	char *key;
	muse_kv_type type;
	muse_kv_type arr_type;
	uint64_t n;
	union {
		uint64_t u;
		int64_t i;
		double f;
		bool b;
		muse_str s;
	} v;
	void *arr;
} muse_kv;

typedef struct muse_meta {
	muse_kv *kv;
	size_t n, cap;
} muse_meta;

size_t muse_kv_type_size(muse_kv_type t); /* bytes of one numeric/bool element, 0 for STRING/ARRAY */
const char *muse_kv_type_name(muse_kv_type t);

void muse_meta_init(muse_meta *m);
void muse_meta_free(muse_meta *m); /* frees contents; m itself is the caller's */

/* Lookup by key; NULL when absent. */
const muse_kv *muse_meta_find(const muse_meta *m, const char *key);
ptrdiff_t muse_meta_index(const muse_meta *m, const char *key);

/*
 * Appends a new entry and returns it zeroed with key copied, or NULL on
 * allocation failure. Does not check for duplicates (callers that parse
 * files check with muse_meta_find first; setters below replace).
 */
muse_kv *muse_meta_append(muse_meta *m, const char *key);

/* Setters replace an existing key of any type. Return MUSE_ERR_NOMEM on failure. */
muse_status muse_meta_set_u32(muse_meta *m, const char *key, uint32_t v);
muse_status muse_meta_set_i32(muse_meta *m, const char *key, int32_t v);
muse_status muse_meta_set_u64(muse_meta *m, const char *key, uint64_t v);
muse_status muse_meta_set_f32(muse_meta *m, const char *key, float v);
muse_status muse_meta_set_bool(muse_meta *m, const char *key, bool v);
muse_status muse_meta_set_str(muse_meta *m, const char *key, const char *v);
muse_status muse_meta_set_strn(muse_meta *m, const char *key, const char *v, uint64_t len);
/* Copies n elements of arr_type (not STRING) from data. */
muse_status muse_meta_set_arr(muse_meta *m, const char *key, muse_kv_type arr_type, const void *data, uint64_t n);
/* Copies n strings. */
muse_status muse_meta_set_str_arr(muse_meta *m, const char *key, const char *const *strs, uint64_t n);

/* Removes key if present. */
void muse_meta_remove(muse_meta *m, const char *key);

/* Deep copy of one entry into dst (appended or replacing). */
muse_status muse_meta_copy_kv(muse_meta *dst, const muse_kv *kv);

/* Typed getters: return false when absent or of a type that does not convert losslessly. */
bool muse_meta_get_u64(const muse_meta *m, const char *key, uint64_t *out);
bool muse_meta_get_i64(const muse_meta *m, const char *key, int64_t *out);
bool muse_meta_get_f64(const muse_meta *m, const char *key, double *out);
const char *muse_meta_get_str(const muse_meta *m, const char *key); /* NUL-terminated, NULL if absent/not string */

/* Frees the contents of one kv (not the kv itself). */
void muse_kv_clear(muse_kv *kv);

#endif
