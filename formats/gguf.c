/* gguf.c: GGUF v2/v3 reader: every header byte is checked against the bytes left before it is used. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"
#include "gguf.h"
#include "reader.h"

/*
 * Policy (everything ggml's gguf.cpp enforces, plus the stricter choices
 * marked "ours"):
 *  - magic "GGUF"; version 2 or 3. A version whose low 16 bits are zero (or
 *    the magic read as "FUGG") is a byte-swapped, big-endian file: refused
 *    with that explanation (ours: no big-endian path).
 *  - n_tensors and n_kv must be non-negative as int64 and their minimal
 *    encodings (25 and 14 bytes) must fit in the bytes left, before any
 *    allocation (ours: stronger than ggml's SIZE_MAX/sizeof bound); at most
 *    MUSE_GGUF_MAX_TENSORS tensors (ours).
 *  - strings <= 1 GiB and <= bytes left; arrays <= 2^30 elements and
 *    n * element size (8 for strings) <= bytes left; nested arrays refused.
 *  - keys: non-empty, <= 65535 bytes (the spec's limit, ours), unique,
 *    well-formed UTF-8 with no control bytes (ours: keys are identifiers and
 *    end up in messages and JSON). Uppercase and non-ASCII are accepted.
 *  - bool values must be 0 or 1 (ours: ggml maps nonzero to true; the spec
 *    calls other values invalid, and a writer emitting them is broken).
 *  - general.alignment: u32, nonzero power of two, <= MUSE_GGUF_MAX_ALIGNMENT
 *    (cap ours). 1, 2, 4 are accepted as by ggml (its own tests use 1).
 *  - tensor names: 1..63 bytes, no NUL, unique (empty refused: ours).
 *  - n_dims 0..4; 0 is a one-element scalar as in ggml (ne all 1).
 *  - dims non-negative as int64; element count < INT64_MAX via checked
 *    products; 0-element tensors accepted; type id known to muse (removed
 *    ids 4, 5, 31-33, 36-38 named as such); ne[0] a whole number of blocks.
 *  - offsets equal the running sum of the padded sizes in tensor-info order
 *    (ggml's rule), sum overflow checked.
 *  - with tensors present, the alignment padding before the data section
 *    must be in the file, and every tensor's bytes must lie in the file
 *    (checked at open, before anyone touches the map).
 *  - bytes after the last tensor (its padding, or anything else) are
 *    accepted, as llama.cpp does; padding content is not checked (neither
 *    does ggml).
 * Split shards: given "<prefix>-00001-of-0000N.gguf" whose split.count is N,
 * all N shards are opened and presented as one reader (t->file = shard).
 */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader decodes little-endian fields with memcpy; port it before building big-endian"
#endif

#define MIN_KV_BYTES 14 /* u64 key length, 1 key byte, u32 type, 1 value byte */
#define MIN_TI_BYTES 25 /* u64 name length, 1 name byte, u32 n_dims, u32 type, u64 offset */

typedef struct gguf_cur {
	const uint8_t *p;
	uint64_t size, pos;
	const char *file;
	muse_err *err;
} gguf_cur;

/* A short printable rendering of a name from the file for messages ("..." when cut). */
static const char *quoted(const char *s, uint64_t len, char *buf, size_t cap)
{
	size_t n = 0;
	for (uint64_t i = 0; i < len && n + 5 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i >= 64) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f)
			n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
		else
			buf[n++] = (char)c;
	}
	buf[n] = 0;
	return buf;
}

static uint64_t left(const gguf_cur *c)
{
	return c->size - c->pos;
}

static muse_status truncated(gguf_cur *c, uint64_t need, const char *what, const char *ctx)
{
	return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, c->pos,
			   "truncated %s%s%s: needs %" PRIu64 " bytes, %" PRIu64 " left", ctx, *ctx ? ": " : "",
			   what, need, left(c));
}

static muse_status rd(gguf_cur *c, void *dst, size_t n, const char *what, const char *ctx)
{
	if (n > left(c))
		return truncated(c, n, what, ctx);
	memcpy(dst, c->p + c->pos, n);
	c->pos += n;
	return MUSE_OK;
}

static muse_status rd_u32(gguf_cur *c, uint32_t *v, const char *what, const char *ctx)
{
	return rd(c, v, 4, what, ctx);
}

static muse_status rd_u64(gguf_cur *c, uint64_t *v, const char *what, const char *ctx)
{
	return rd(c, v, 8, what, ctx);
}

/* Reads a gguf string (u64 length + bytes) into a fresh NUL-terminated buffer. */
static muse_status rd_str(gguf_cur *c, muse_str *out, uint64_t cap, const char *what, const char *ctx)
{
	uint64_t at = c->pos, len;
	muse_status s = rd_u64(c, &len, what, ctx);
	if (s)
		return s;
	if (len > cap)
		return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, at, "%s%s%s length %" PRIu64 " exceeds the cap of %" PRIu64,
				   ctx, *ctx ? ": " : "", what, len, cap);
	if (len > left(c))
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at,
				   "%s%s%s length %" PRIu64 " exceeds the %" PRIu64 " bytes left in the file", ctx,
				   *ctx ? ": " : "", what, len, left(c));
	char *p = malloc((size_t)len + 1); /* len <= 1 GiB: no wrap */
	if (!p)
		return muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory reading %s", c->file, what);
	memcpy(p, c->p + c->pos, (size_t)len);
	p[len] = 0;
	c->pos += len;
	out->len = len;
	out->ptr = p;
	return MUSE_OK;
}

static bool valid_kv_type(uint32_t t)
{
	return t < MUSE_KV_TYPE_COUNT;
}

/* Bool bytes must be 0 or 1 (see policy). */
static muse_status check_bools(gguf_cur *c, uint64_t at, const uint8_t *b, uint64_t n, const char *ctx)
{
	for (uint64_t i = 0; i < n; i++)
		if (b[i] > 1)
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at + i,
					   "%s: bool value %u is not 0 or 1", ctx, b[i]);
	return MUSE_OK;
}

static muse_status read_scalar(gguf_cur *c, muse_kv *kv, muse_kv_type t, const char *ctx)
{
	uint64_t at = c->pos;
	size_t esz = muse_kv_type_size(t);
	uint8_t b[8];
	muse_status s = rd(c, b, esz, "value", ctx);
	if (s)
		return s;
	switch (t) {
	case MUSE_KV_U8: kv->v.u = b[0]; break;
	case MUSE_KV_I8: { int8_t v; memcpy(&v, b, 1); kv->v.i = v; break; }
	case MUSE_KV_U16: { uint16_t v; memcpy(&v, b, 2); kv->v.u = v; break; }
	case MUSE_KV_I16: { int16_t v; memcpy(&v, b, 2); kv->v.i = v; break; }
	case MUSE_KV_U32: { uint32_t v; memcpy(&v, b, 4); kv->v.u = v; break; }
	case MUSE_KV_I32: { int32_t v; memcpy(&v, b, 4); kv->v.i = v; break; }
	case MUSE_KV_U64: { uint64_t v; memcpy(&v, b, 8); kv->v.u = v; break; }
	case MUSE_KV_I64: { int64_t v; memcpy(&v, b, 8); kv->v.i = v; break; }
	case MUSE_KV_F32: { float v; memcpy(&v, b, 4); kv->v.f = v; break; }
	case MUSE_KV_F64: { double v; memcpy(&v, b, 8); kv->v.f = v; break; }
	case MUSE_KV_BOOL:
		s = check_bools(c, at, b, 1, ctx);
		if (s)
			return s;
		kv->v.b = b[0] != 0;
		break;
	default:
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at, "%s: invalid value type %u", ctx, (unsigned)t);
	}
	kv->type = t;
	kv->n = 1;
	return MUSE_OK;
}

static muse_status read_array(gguf_cur *c, muse_kv *kv, const char *ctx)
{
	uint64_t at = c->pos, n;
	uint32_t et;
	muse_status s = rd_u32(c, &et, "array element type", ctx);
	if (s)
		return s;
	if (et == MUSE_KV_ARRAY)
		return muse_err_at(c->err, MUSE_ERR_UNSUPPORTED, c->file, at,
				   "%s: nested arrays are not supported (as in llama.cpp)", ctx);
	if (!valid_kv_type(et))
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at, "%s: invalid array element type %" PRIu32, ctx, et);
	at = c->pos;
	s = rd_u64(c, &n, "array length", ctx);
	if (s)
		return s;
	if (n > MUSE_GGUF_MAX_ARRAY)
		return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, at,
				   "%s: array of %" PRIu64 " elements exceeds the cap of %llu", ctx, n,
				   (unsigned long long)MUSE_GGUF_MAX_ARRAY);
	/* Strings are at least their 8-byte length: either way n * esz bounds the bytes the array needs. */
	uint64_t esz = et == MUSE_KV_STRING ? 8 : muse_kv_type_size(et), need;
	if (!muse_mul_u64(n, esz, &need) || need > left(c))
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at,
				   "%s: array of %" PRIu64 " %s elements (at least %" PRIu64
				   " bytes each) exceeds the %" PRIu64 " bytes left in the file",
				   ctx, n, muse_kv_type_name(et), esz, left(c));
	if (et == MUSE_KV_STRING) {
		muse_str *arr = calloc(n ? n : 1, sizeof *arr);
		if (!arr)
			return muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory reading %s", c->file, ctx);
		/* Published before filling so a failure part-way frees through muse_kv_clear. */
		kv->type = MUSE_KV_ARRAY;
		kv->arr_type = MUSE_KV_STRING;
		kv->n = n;
		kv->arr = arr;
		for (uint64_t i = 0; i < n; i++) {
			char what[48];
			snprintf(what, sizeof what, "string %" PRIu64, i);
			s = rd_str(c, &arr[i], MUSE_GGUF_MAX_STRING, what, ctx);
			if (s)
				return s;
		}
		return MUSE_OK;
	}
	void *arr = malloc(need ? (size_t)need : 1);
	if (!arr)
		return muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory reading %s", c->file, ctx);
	memcpy(arr, c->p + c->pos, (size_t)need);
	if (et == MUSE_KV_BOOL && (s = check_bools(c, c->pos, arr, n, ctx))) {
		free(arr);
		return s;
	}
	c->pos += need;
	kv->type = MUSE_KV_ARRAY;
	kv->arr_type = et;
	kv->n = n;
	kv->arr = arr;
	return MUSE_OK;
}

/* A key must be an identifier we can print: UTF-8 without control bytes (see policy). */
static muse_status check_key(gguf_cur *c, uint64_t at, const muse_str *k, uint64_t i)
{
	char q[300];
	if (k->len == 0)
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at, "key %" PRIu64 " is empty", i);
	for (uint64_t j = 0; j < k->len; j++) {
		unsigned char b = (unsigned char)k->ptr[j];
		if (b < 0x20 || b == 0x7f)
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at + 8 + j,
					   "key '%s' contains control byte 0x%02x", quoted(k->ptr, k->len, q, sizeof q), b);
	}
	if (!muse_utf8_valid(k->ptr, (size_t)k->len))
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at + 8, "key '%s' is not valid UTF-8",
				   quoted(k->ptr, k->len, q, sizeof q));
	return MUSE_OK;
}

/* Where the keys checked after the KV table start, so those errors can point at them. */
typedef struct kv_marks {
	uint64_t align_at, split_at;
} kv_marks;

static muse_status read_kvs(gguf_cur *c, uint64_t n_kv, muse_meta *meta, kv_marks *marks)
{
	muse_strmap seen;
	muse_strmap_init(&seen);
	muse_status s = MUSE_OK;
	muse_str key = { 0, NULL };
	for (uint64_t i = 0; i < n_kv; i++) {
		char ctx[320], q[300];
		uint64_t at = c->pos;
		snprintf(ctx, sizeof ctx, "key %" PRIu64, i);
		if ((s = rd_str(c, &key, MUSE_GGUF_MAX_KEY, "key", ctx)))
			goto out;
		if ((s = check_key(c, at, &key, i)))
			goto out;
		snprintf(ctx, sizeof ctx, "key '%s'", quoted(key.ptr, key.len, q, sizeof q));
		if (!strcmp(key.ptr, "general.alignment"))
			marks->align_at = at;
		if (!strncmp(key.ptr, "split.", 6) && !marks->split_at)
			marks->split_at = at;
		size_t prev;
		if (muse_strmap_get(&seen, key.ptr, (size_t)key.len, &prev)) {
			s = muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at, "%s: duplicate key (also key %zu)", ctx, prev);
			goto out;
		}
		muse_kv *kv = muse_meta_append(meta, key.ptr);
		if (!kv) {
			s = muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory", c->file);
			goto out;
		}
		free(key.ptr);
		key.ptr = NULL;
		if (muse_strmap_put(&seen, kv->key, strlen(kv->key), (size_t)i, NULL) < 0) {
			s = muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory", c->file);
			goto out;
		}
		uint64_t tat = c->pos;
		uint32_t type;
		if ((s = rd_u32(c, &type, "value type", ctx)))
			goto out;
		if (!valid_kv_type(type)) {
			s = muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, tat, "%s: invalid value type %" PRIu32, ctx, type);
			goto out;
		}
		if (type == MUSE_KV_ARRAY) {
			s = read_array(c, kv, ctx);
		} else if (type == MUSE_KV_STRING) {
			muse_str v;
			s = rd_str(c, &v, MUSE_GGUF_MAX_STRING, "string value", ctx);
			if (!s) {
				kv->type = MUSE_KV_STRING;
				kv->n = 1;
				kv->v.s = v;
			}
		} else {
			s = read_scalar(c, kv, type, ctx);
		}
		if (s)
			goto out;
	}
out:
	free(key.ptr);
	muse_strmap_free(&seen);
	return s;
}

/* general.alignment: must be a u32 power of two within our cap; 32 when absent. */
static muse_status get_alignment(gguf_cur *c, const muse_meta *meta, uint64_t kv_at, uint32_t *align)
{
	const muse_kv *kv = muse_meta_find(meta, "general.alignment");
	*align = MUSE_GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return MUSE_OK;
	if (kv->type != MUSE_KV_U32)
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, kv_at,
				   "key 'general.alignment' must be of type u32, not %s", muse_kv_type_name(kv->type));
	uint64_t a = kv->v.u;
	if (a == 0 || (a & (a - 1)))
		return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, kv_at,
				   "key 'general.alignment': %" PRIu64 " is not a nonzero power of two", a);
	if (a > MUSE_GGUF_MAX_ALIGNMENT)
		return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, kv_at,
				   "key 'general.alignment': %" PRIu64 " exceeds the cap of %u", a, MUSE_GGUF_MAX_ALIGNMENT);
	*align = (uint32_t)a;
	return MUSE_OK;
}

/* Why a ggml type id is not accepted; removed ids get their history. */
static const char *bad_type_why(uint32_t id)
{
	if (id == 4 || id == 5)
		return "removed type (Q4_2/Q4_3)";
	if (id >= 31 && id <= 33)
		return "removed type (Q4_0_4_4/Q4_0_4_8/Q4_0_8_8; requantize with a current llama.cpp)";
	if (id >= 36 && id <= 38)
		return "removed type (IQ4_NL_4_4/4_8/8_8; requantize with a current llama.cpp)";
	return "unknown type";
}

typedef struct gguf_info {
	uint64_t at;      /* where the tensor info starts */
	uint64_t off_at;  /* where its offset field is */
	uint64_t offset;  /* relative to the data section */
} gguf_info;

/*
 * Reads one file's tensor infos into r (file index fidx). names holds the
 * names of every tensor read so far (across shards). infos gets, per
 * tensor, its relative offset for the bounds check.
 */
static muse_status read_infos(gguf_cur *c, muse_reader *r, uint32_t fidx, uint64_t n_tensors, uint32_t align,
			      muse_strmap *names, gguf_info *infos)
{
	uint64_t expect = 0; /* the running sum of padded sizes: the offset ggml requires */
	for (uint64_t i = 0; i < n_tensors; i++) {
		char ctx[128], q[300];
		muse_status s;
		uint64_t at = c->pos;
		snprintf(ctx, sizeof ctx, "tensor %" PRIu64, i);
		uint64_t len;
		if ((s = rd_u64(c, &len, "name length", ctx)))
			return s;
		if (len == 0)
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at, "%s has an empty name", ctx);
		if (len > MUSE_GGUF_MAX_NAME)
			return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, at,
					   "%s: name of %" PRIu64 " bytes exceeds GGUF's %d-byte limit (GGML_MAX_NAME)", ctx,
					   len, MUSE_GGUF_MAX_NAME);
		if (len > left(c))
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at,
					   "%s: name length %" PRIu64 " exceeds the %" PRIu64 " bytes left", ctx, len, left(c));
		const char *np = (const char *)c->p + c->pos;
		if (memchr(np, 0, (size_t)len))
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at + 8, "%s: name '%s' contains a NUL byte", ctx,
					   quoted(np, len, q, sizeof q));
		size_t prev;
		if (muse_strmap_get(names, np, (size_t)len, &prev))
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, at, "tensor '%s': duplicate tensor name",
					   quoted(np, len, q, sizeof q));
		muse_tensor *t = muse_reader_add_tensor(r);
		if (!t)
			return muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory", c->file);
		t->name = malloc((size_t)len + 1);
		if (!t->name)
			return muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory", c->file);
		memcpy(t->name, np, (size_t)len);
		t->name[len] = 0;
		c->pos += len;
		t->file = fidx;
		t->header_offset = at;
		if (muse_strmap_put(names, t->name, (size_t)len, r->n_tensors - 1, NULL) < 0)
			return muse_err_set(c->err, MUSE_ERR_NOMEM, "%s: out of memory", c->file);
		snprintf(ctx, sizeof ctx, "tensor '%s'", quoted(t->name, len, q, sizeof q));

		uint64_t dat = c->pos;
		uint32_t n_dims;
		if ((s = rd_u32(c, &n_dims, "n_dims", ctx)))
			return s;
		if (n_dims > MUSE_GGUF_MAX_DIMS)
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, dat, "%s: n_dims %" PRIu32 " exceeds %d", ctx,
					   n_dims, MUSE_GGUF_MAX_DIMS);
		uint64_t ne[MUSE_GGUF_MAX_DIMS] = { 1, 1, 1, 1 };
		for (uint32_t d = 0; d < n_dims; d++) {
			dat = c->pos;
			if ((s = rd_u64(c, &ne[d], "dimension", ctx)))
				return s;
			if (ne[d] > INT64_MAX)
				return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, dat,
						   "%s: dimension %" PRIu32 " is negative (%" PRId64 ")", ctx, d, (int64_t)ne[d]);
		}
		uint64_t nel;
		if (!muse_product_u64(ne, MUSE_GGUF_MAX_DIMS, &nel) || nel >= INT64_MAX)
			return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, at,
					   "%s: element count of shape (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
					   ") overflows int64",
					   ctx, ne[0], ne[1], ne[2], ne[3]);
		uint64_t tat = c->pos;
		uint32_t tid;
		if ((s = rd_u32(c, &tid, "type", ctx)))
			return s;
		muse_dtype dt = muse_dtype_from_ggml(tid);
		if (dt == MUSE_DT_INVALID)
			return muse_err_at(c->err, MUSE_ERR_UNSUPPORTED, c->file, tat, "%s: ggml type %" PRIu32 ": %s", ctx,
					   tid, bad_type_why(tid));
		const muse_dtype_traits *tr = muse_dtype_info(dt);
		if (ne[0] % tr->blck)
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, tat,
					   "%s: row of %" PRIu64 " elements is not a multiple of the %s block size %" PRIu32,
					   ctx, ne[0], tr->name, tr->blck);
		uint64_t nbytes, padded;
		if (!muse_dtype_nbytes(dt, nel, &nbytes) || !muse_align_up_u64(nbytes, align, &padded))
			return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, tat, "%s: byte size of %" PRIu64 " %s elements overflows",
					   ctx, nel, tr->name);
		uint64_t oat = c->pos, off;
		if ((s = rd_u64(c, &off, "offset", ctx)))
			return s;
		if (off != expect)
			return muse_err_at(c->err, MUSE_ERR_FORMAT, c->file, oat,
					   "%s: offset %" PRIu64 ", expected %" PRIu64
					   " (tensors must follow each other in info order, each padded to %" PRIu32 " bytes)",
					   ctx, off, expect, align);
		if (!muse_add_u64(expect, padded, &expect))
			return muse_err_at(c->err, MUSE_ERR_LIMIT, c->file, oat, "%s: data section size overflows", ctx);

		t->dtype = dt;
		t->ndim = (int)n_dims;
		for (uint32_t d = 0; d < n_dims; d++)
			t->shape[d] = ne[n_dims - 1 - d];
		t->nelements = nel;
		t->nbytes = nbytes;
		infos[i].at = at;
		infos[i].off_at = oat;
		infos[i].offset = off;
	}
	return MUSE_OK;
}

/* The parsed header of one file. */
typedef struct gguf_file {
	uint32_t version, alignment;
	uint64_t n_tensors, data_start;
	size_t first_tensor; /* index of its first tensor in the reader */
	uint64_t split_at;   /* where the first split.* key starts (for messages) */
} gguf_file;

/*
 * Parses one GGUF file already mapped as r->files[fidx]: metadata into
 * meta, tensors appended to r with absolute offsets. names is shared
 * across shards for the duplicate check.
 */
static muse_status parse_file(muse_reader *r, uint32_t fidx, muse_meta *meta, muse_strmap *names, gguf_file *gf,
			      muse_err *err)
{
	const muse_map *m = &r->files[fidx];
	gguf_cur cc = { m->data, m->size, 0, m->path, err }, *c = &cc;
	gguf_info *infos = NULL;
	muse_status s;
	uint8_t magic[4];
	uint32_t version;
	uint64_t n_tensors, n_kv, need_t, need_kv, need;

	gf->first_tensor = r->n_tensors;
	if (m->size < 4)
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 0, "file of %" PRIu64 " bytes is too small for GGUF",
				   m->size);
	memcpy(magic, m->data, 4);
	if (!memcmp(magic, "FUGG", 4))
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, c->file, 0,
				   "magic 'FUGG' is byte-swapped GGUF: big-endian GGUF files are not supported");
	if (memcmp(magic, "GGUF", 4)) {
		char q[32];
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 0, "bad magic '%s', expected 'GGUF'",
				   quoted((const char *)magic, 4, q, sizeof q));
	}
	c->pos = 4;
	if ((s = rd_u32(c, &version, "version", "header")))
		return s;
	if (version == 0)
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 4, "invalid GGUF version 0");
	if ((version & 0xFFFF) == 0)
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, c->file, 4,
				   "version 0x%08" PRIx32 " looks byte-swapped: big-endian GGUF files are not supported",
				   version);
	if (version == 1)
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, c->file, 4,
				   "GGUF v1 is not supported; convert it with a current llama.cpp");
	if (version > MUSE_GGUF_VERSION)
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, c->file, 4, "GGUF version %" PRIu32
				   " is newer than the supported version %d", version, MUSE_GGUF_VERSION);
	if ((s = rd_u64(c, &n_tensors, "tensor count", "header")))
		return s;
	if ((s = rd_u64(c, &n_kv, "metadata count", "header")))
		return s;
	if (n_tensors > INT64_MAX)
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 8, "tensor count %" PRId64 " is negative",
				   (int64_t)n_tensors);
	if (n_kv > INT64_MAX)
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 16, "metadata count %" PRId64 " is negative",
				   (int64_t)n_kv);
	/* Both tables must fit in the file before anything is allocated for them. */
	if (!muse_mul_u64(n_tensors, MIN_TI_BYTES, &need_t) || need_t > left(c))
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 8,
				   "tensor count %" PRIu64 " (at least %d bytes of tensor info each) exceeds the %" PRIu64
				   " bytes left in the file", n_tensors, MIN_TI_BYTES, left(c));
	if (!muse_mul_u64(n_kv, MIN_KV_BYTES, &need_kv) || !muse_add_u64(need_t, need_kv, &need) || need > left(c))
		return muse_err_at(err, MUSE_ERR_FORMAT, c->file, 16,
				   "metadata count %" PRIu64 " (at least %d bytes each) exceeds the %" PRIu64
				   " bytes left in the file besides the tensor infos", n_kv, MIN_KV_BYTES,
				   left(c) - need_t);
	if (n_tensors > MUSE_GGUF_MAX_TENSORS)
		return muse_err_at(err, MUSE_ERR_LIMIT, c->file, 8, "tensor count %" PRIu64 " exceeds the cap of %llu",
				   n_tensors, (unsigned long long)MUSE_GGUF_MAX_TENSORS);
	kv_marks marks = { 0, 0 };
	if ((s = read_kvs(c, n_kv, meta, &marks)))
		return s;
	gf->split_at = marks.split_at;
	if ((s = get_alignment(c, meta, marks.align_at, &gf->alignment)))
		return s;

	infos = calloc(n_tensors ? n_tensors : 1, sizeof *infos); /* bounded by the file size above */
	if (!infos)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", c->file);
	if ((s = read_infos(c, r, fidx, n_tensors, gf->alignment, names, infos)))
		goto out;

	uint64_t data_start;
	if (!muse_align_up_u64(c->pos, gf->alignment, &data_start) || (n_tensors && data_start > m->size)) {
		s = muse_err_at(err, MUSE_ERR_FORMAT, c->file, c->pos,
				"file ends inside the padding before the data section (aligned start %" PRIu64
				", file size %" PRIu64 ")", data_start, m->size);
		goto out;
	}
	if (data_start > m->size)
		data_start = c->pos; /* no tensors: nothing to align */
	for (uint64_t i = 0; i < n_tensors; i++) {
		muse_tensor *t = &r->tensors[gf->first_tensor + i];
		uint64_t abs, end;
		char q[300];
		if (!muse_add_u64(data_start, infos[i].offset, &abs) || !muse_add_u64(abs, t->nbytes, &end) ||
		    end > m->size) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, c->file, infos[i].off_at,
					"tensor '%s': not enough data: bytes [%" PRIu64 ", %" PRIu64
					") lie past the end of the file (%" PRIu64 " bytes)",
					quoted(t->name, strlen(t->name), q, sizeof q), abs, abs + t->nbytes, m->size);
			goto out;
		}
		t->offset = abs;
	}
	gf->version = version;
	gf->n_tensors = n_tensors;
	gf->data_start = data_start;
out:
	free(infos);
	return s;
}

/* split.* keys, when present, must be consistent with the file (HOSTILE G48). */
static muse_status check_split(const muse_reader *r, uint32_t fidx, const muse_meta *meta, const gguf_file *gf,
			       uint64_t *count, uint64_t *no, uint64_t *total, muse_err *err)
{
	const char *f = r->files[fidx].path;
	uint64_t at = gf->split_at, n_tensors = gf->n_tensors;
	bool has_c = muse_meta_find(meta, "split.count") != NULL;
	bool has_n = muse_meta_find(meta, "split.no") != NULL;
	bool has_t = muse_meta_find(meta, "split.tensors.count") != NULL;
	*count = 1;
	*no = 0;
	*total = n_tensors;
	if (!has_c && !has_n && !has_t)
		return MUSE_OK;
	if (!has_c || !has_n || !has_t)
		return muse_err_at(err, MUSE_ERR_FORMAT, f, at,
				   "split metadata incomplete: split.count, split.no and split.tensors.count go together");
	if (!muse_meta_get_u64(meta, "split.count", count) || *count == 0 || *count > 99999)
		return muse_err_at(err, MUSE_ERR_FORMAT, f, at, "key 'split.count' must be an integer in 1..99999");
	if (!muse_meta_get_u64(meta, "split.no", no) || *no >= *count)
		return muse_err_at(err, MUSE_ERR_FORMAT, f, at,
				   "key 'split.no' must be an integer below split.count (%" PRIu64 ")", *count);
	if (!muse_meta_get_u64(meta, "split.tensors.count", total) || *total < n_tensors ||
	    (*count == 1 && *total != n_tensors))
		return muse_err_at(err, MUSE_ERR_FORMAT, f, at,
				   "key 'split.tensors.count' must be an integer >= this shard's %" PRIu64 " tensors",
				   n_tensors);
	return MUSE_OK;
}

/* "<prefix>-00001-of-NNNNN.gguf" with NNNNN == count: the prefix length, else 0. */
static size_t first_shard_prefix(const char *path, uint64_t count)
{
	char suf[40];
	snprintf(suf, sizeof suf, "-00001-of-%05" PRIu64 ".gguf", count);
	size_t a = strlen(path), b = strlen(suf);
	if (a <= b || strcmp(path + a - b, suf))
		return 0;
	return a - b;
}

static muse_status open_shards(muse_reader *r, const char *path, size_t plen, uint64_t count, uint64_t total,
			       uint64_t split_at, muse_strmap *names, muse_err *err)
{
	char *sp = malloc(plen + 40);
	muse_meta sm;
	muse_status s = MUSE_OK;
	muse_meta_init(&sm);
	if (!sp)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	for (uint64_t i = 1; i < count; i++) {
		snprintf(sp, plen + 40, "%.*s-%05" PRIu64 "-of-%05" PRIu64 ".gguf", (int)plen, path, i + 1, count);
		uint32_t fidx;
		gguf_file gf;
		uint64_t c, no, t;
		if ((s = muse_reader_add_file(r, sp, &fidx, err)))
			goto out;
		if ((s = parse_file(r, fidx, &sm, names, &gf, err)))
			goto out;
		if ((s = check_split(r, fidx, &sm, &gf, &c, &no, &t, err)))
			goto out;
		if (c != count || no != i || t != total) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, sp, gf.split_at,
					"split keys say shard %" PRIu64 " of %" PRIu64 " with %" PRIu64
					" tensors in all; expected shard %" PRIu64 " of %" PRIu64 " with %" PRIu64,
					no, c, t, i, count, total);
			goto out;
		}
		/* Later shards carry only split.* keys (gguf-split); shard 0's metadata is the model's. */
		muse_meta_free(&sm);
	}
	if (r->n_tensors != total)
		s = muse_err_at(err, MUSE_ERR_FORMAT, path, split_at,
				"split.tensors.count is %" PRIu64 " but the %" PRIu64 " shards hold %zu tensors", total, count,
				r->n_tensors);
out:
	muse_meta_free(&sm);
	free(sp);
	return s;
}

muse_status muse_gguf_open(const char *path, muse_reader **out, muse_err *err)
{
	muse_strmap names;
	muse_status s;
	gguf_file gf;
	uint64_t count, no, total;
	muse_reader *r = muse_reader_new("gguf", path);

	*out = NULL;
	muse_strmap_init(&names);
	if (!r)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	if ((s = muse_reader_add_file(r, path, NULL, err)))
		goto fail;
	if ((s = parse_file(r, 0, &r->meta, &names, &gf, err)))
		goto fail;
	r->version = gf.version;
	r->alignment = gf.alignment;
	r->data_offset = gf.data_start;
	if ((s = check_split(r, 0, &r->meta, &gf, &count, &no, &total, err)))
		goto fail;
	size_t plen;
	if (count > 1 && no == 0 && (plen = first_shard_prefix(path, count))) {
		if ((s = open_shards(r, path, plen, count, total, gf.split_at, &names, err)))
			goto fail;
		r->data_offset = 0; /* several data sections: offsets are per file */
	}
	muse_strmap_free(&names);
	*out = r;
	return MUSE_OK;
fail:
	muse_strmap_free(&names);
	muse_reader_free(r);
	return s;
}
