/* safetensors.c: reader for single-file and sharded (model.safetensors.index.json) safetensors checkpoints. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"
#include "reader.h"
#include "safetensors.h"

/*
 * Validation follows the reference reader (huggingface/safetensors
 * tensor.rs, read_metadata + Metadata::validate) rule for rule, plus the
 * checks the reference leaves to serde made explicit: a duplicate key is
 * an error (serde keeps the last one), and so is anything after the JSON
 * object other than JSON whitespace. Deliberate differences, all on the
 * rejecting side: tensor names holding NUL bytes (muse names are C
 * strings), rank above MUSE_MAX_DIMS, nesting deeper than 128 anywhere.
 * "__metadata__": null is accepted as "no metadata", as the reference does;
 * unknown fields inside a tensor entry are skipped, as the reference does.
 *
 * The JSON is read by a small strict parser driven by the two schemas
 * (header, index) instead of a DOM library: building a tree for a 100k-
 * tensor checkpoint cost about a second in jansson, and the schema-driven
 * walk knows the byte offset of every key it complains about and keeps
 * memory at one record per tensor.
 */

#define ST_MAX_HEADER 100000000ull /* the reference's MAX_HEADER_SIZE */
#define ST_INDEX_MAX (256u << 20)  /* an index for 10^6 tensors is about 80 MB */
#define JP_MAX_DEPTH 128           /* serde_json's default recursion limit */
#define NAME_SHOW "%.200s"         /* names are quoted in errors, cut to keep one line readable */

/* ---- strict JSON reading ---- */

typedef struct jbuf {
	char *p;
	size_t len, cap;
} jbuf;

typedef struct jp {
	const char *s;    /* the JSON text (already checked to be valid UTF-8) */
	size_t n, i;      /* length, cursor */
	uint64_t base;    /* file offset of s[0], for messages */
	const char *file; /* for messages */
	const char *what; /* "header" or "index" */
	muse_err *err;
	jbuf key, str;    /* decoded object key and string value */
} jp;

static muse_status jp_err(jp *p, muse_status code, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static muse_status jp_err(jp *p, muse_status code, size_t at, const char *fmt, ...)
{
	char what[MUSE_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return muse_err_at(p->err, code, p->file, p->base + at, "%s", what);
}

static muse_status jp_syntax(jp *p, size_t at, const char *why)
{
	return jp_err(p, MUSE_ERR_FORMAT, at, "%s is not valid JSON: %s", p->what, why);
}

static muse_status jp_oom(jp *p)
{
	return muse_err_set(p->err, MUSE_ERR_NOMEM, "%s: out of memory", p->file);
}

static bool jbuf_put(jbuf *b, const void *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return false;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return true;
}

static void jp_ws(jp *p)
{
	while (p->i < p->n) {
		char c = p->s[p->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->i++;
	}
}

static int jp_peek(const jp *p)
{
	return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

/* What the value at the cursor is, for messages ("an object", "a real number", ...). */
static const char *jp_kind(const jp *p)
{
	int c = jp_peek(p);
	switch (c) {
	case '{': return "an object";
	case '[': return "an array";
	case '"': return "a string";
	case 't': case 'f': return "a boolean";
	case 'n': return "null";
	}
	if (c == '-' || (c >= '0' && c <= '9')) {
		for (size_t j = p->i; j < p->n; j++) {
			char d = p->s[j];
			if (d == '.' || d == 'e' || d == 'E')
				return "a real number";
			if (d != '-' && (d < '0' || d > '9'))
				break;
		}
		return c == '-' ? "a negative integer" : "an integer";
	}
	return "not a JSON value";
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool hex4(const jp *p, size_t at, uint32_t *out)
{
	if (at + 4 > p->n)
		return false;
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p->s[at + k]);
		if (h < 0)
			return false;
		v = v << 4 | (uint32_t)h;
	}
	*out = v;
	return true;
}

/* Reads the string at the cursor into out (decoded, NUL-terminated; may hold NULs), or only checks it when out is NULL. */
static muse_status jp_string(jp *p, jbuf *out)
{
	size_t start = p->i++;
	if (out)
		out->len = 0;
	for (;;) {
		size_t j = p->i;
		while (j < p->n) {
			unsigned char c = (unsigned char)p->s[j];
			if (c == '"' || c == '\\' || c < 0x20)
				break;
			j++;
		}
		if (out && j > p->i && !jbuf_put(out, p->s + p->i, j - p->i))
			return jp_oom(p);
		p->i = j;
		if (j >= p->n)
			return jp_syntax(p, start, "unterminated string");
		unsigned char c = (unsigned char)p->s[j];
		if (c == '"') {
			p->i++;
			if (out && !out->p && !jbuf_put(out, "", 0))
				return jp_oom(p);
			return MUSE_OK;
		}
		if (c < 0x20)
			return jp_syntax(p, j, "control character inside a string");
		if (j + 1 >= p->n)
			return jp_syntax(p, start, "unterminated string");
		char e = p->s[j + 1], ch[4];
		size_t len = 1;
		p->i = j + 2;
		switch (e) {
		case '"': case '\\': case '/': ch[0] = e; break;
		case 'b': ch[0] = '\b'; break;
		case 'f': ch[0] = '\f'; break;
		case 'n': ch[0] = '\n'; break;
		case 'r': ch[0] = '\r'; break;
		case 't': ch[0] = '\t'; break;
		case 'u': {
			uint32_t cp, lo;
			if (!hex4(p, p->i, &cp))
				return jp_syntax(p, j, "bad \\u escape");
			p->i += 4;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return jp_syntax(p, j, "lone surrogate in a \\u escape (invalid Unicode)");
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (p->i + 6 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
				    !hex4(p, p->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
					return jp_syntax(p, j, "lone surrogate in a \\u escape (invalid Unicode)");
				p->i += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			if (cp < 0x80) {
				ch[0] = (char)cp;
			} else if (cp < 0x800) {
				ch[0] = (char)(0xC0 | cp >> 6), ch[1] = (char)(0x80 | (cp & 0x3F)), len = 2;
			} else if (cp < 0x10000) {
				ch[0] = (char)(0xE0 | cp >> 12), ch[1] = (char)(0x80 | (cp >> 6 & 0x3F));
				ch[2] = (char)(0x80 | (cp & 0x3F)), len = 3;
			} else {
				ch[0] = (char)(0xF0 | cp >> 18), ch[1] = (char)(0x80 | (cp >> 12 & 0x3F));
				ch[2] = (char)(0x80 | (cp >> 6 & 0x3F)), ch[3] = (char)(0x80 | (cp & 0x3F)), len = 4;
			}
			break;
		}
		default:
			return jp_syntax(p, j, "invalid escape in a string");
		}
		if (out && !jbuf_put(out, ch, len))
			return jp_oom(p);
	}
}

enum { NUM_UINT, NUM_NEGATIVE, NUM_REAL, NUM_BIG };

/* Reads a number (RFC 8259 grammar) and classifies it; *v is set for NUM_UINT. */
static muse_status jp_number(jp *p, int *cls, uint64_t *v)
{
	size_t start = p->i;
	bool neg = false, real = false, big = false;
	uint64_t x = 0;
#define DIGIT(k) ((k) < p->n && p->s[k] >= '0' && p->s[k] <= '9')
	if (jp_peek(p) == '-') {
		neg = true;
		p->i++;
	}
	if (!DIGIT(p->i))
		return jp_syntax(p, start, "invalid number");
	if (p->s[p->i] == '0') {
		p->i++;
		if (DIGIT(p->i))
			return jp_syntax(p, start, "number with a leading zero");
	} else {
		while (DIGIT(p->i)) {
			if (!big && (!muse_mul_u64(x, 10, &x) || !muse_add_u64(x, (uint64_t)(p->s[p->i] - '0'), &x)))
				big = true;
			p->i++;
		}
	}
	if (jp_peek(p) == '.') {
		real = true;
		p->i++;
		if (!DIGIT(p->i))
			return jp_syntax(p, start, "invalid number");
		while (DIGIT(p->i))
			p->i++;
	}
	if (jp_peek(p) == 'e' || jp_peek(p) == 'E') {
		real = true;
		p->i++;
		if (jp_peek(p) == '+' || jp_peek(p) == '-')
			p->i++;
		if (!DIGIT(p->i))
			return jp_syntax(p, start, "invalid number");
		while (DIGIT(p->i))
			p->i++;
	}
#undef DIGIT
	*cls = real ? NUM_REAL : neg ? NUM_NEGATIVE : big ? NUM_BIG : NUM_UINT;
	*v = x;
	return MUSE_OK;
}

/*
 * Object walk: after the '{' was consumed and *first set, each call either
 * reads `"key":` (decoded into p->key, *key_at = its offset, cursor on the
 * value) and sets *more, or consumes the closing '}' and clears *more.
 */
static muse_status jp_obj_next(jp *p, bool *first, bool *more, size_t *key_at)
{
	jp_ws(p);
	int c = jp_peek(p);
	if (c == '}') {
		p->i++;
		*more = false;
		return MUSE_OK;
	}
	if (!*first) {
		if (c != ',')
			return jp_syntax(p, p->i, c < 0 ? "unexpected end inside an object" : "expected ',' or '}'");
		p->i++;
		jp_ws(p);
		c = jp_peek(p);
	}
	*first = false;
	if (c != '"')
		return jp_syntax(p, p->i, c < 0 ? "unexpected end inside an object" : "expected a string key");
	*key_at = p->i;
	muse_status s = jp_string(p, &p->key);
	if (s)
		return s;
	jp_ws(p);
	if (jp_peek(p) != ':')
		return jp_syntax(p, p->i, "expected ':' after a key");
	p->i++;
	jp_ws(p);
	*more = true;
	return MUSE_OK;
}

/* Array walk, as jp_obj_next: *more set with the cursor on the next element, or the ']' consumed. */
static muse_status jp_arr_next(jp *p, bool *first, bool *more)
{
	jp_ws(p);
	int c = jp_peek(p);
	if (c == ']') {
		p->i++;
		*more = false;
		return MUSE_OK;
	}
	if (!*first) {
		if (c != ',')
			return jp_syntax(p, p->i, c < 0 ? "unexpected end inside an array" : "expected ',' or ']'");
		p->i++;
		jp_ws(p);
		if (jp_peek(p) == ']')
			return jp_syntax(p, p->i, "trailing comma in an array");
	}
	*first = false;
	*more = true;
	return MUSE_OK;
}

static bool jp_literal(jp *p, const char *lit)
{
	size_t n = strlen(lit);
	if (p->i + n > p->n || memcmp(p->s + p->i, lit, n))
		return false;
	p->i += n;
	return true;
}

/* Checks and steps over any value; depth counts the enclosing containers. */
static muse_status jp_skip(jp *p, int depth)
{
	int c = jp_peek(p);
	bool first = true, more = true;
	size_t at;
	muse_status s = MUSE_OK;
	switch (c) {
	case '"':
		return jp_string(p, NULL);
	case '{':
	case '[':
		if (depth >= JP_MAX_DEPTH)
			return jp_syntax(p, p->i, "nesting depth above 128");
		p->i++;
		while (!s && more) {
			s = c == '{' ? jp_obj_next(p, &first, &more, &at) : jp_arr_next(p, &first, &more);
			if (!s && more)
				s = jp_skip(p, depth + 1);
		}
		return s;
	case 't':
	case 'f':
	case 'n':
		if (jp_literal(p, c == 't' ? "true" : c == 'f' ? "false" : "null"))
			return MUSE_OK;
		break;
	case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9': {
		int cls;
		uint64_t v;
		return jp_number(p, &cls, &v);
	}
	}
	return jp_syntax(p, p->i, c < 0 ? "unexpected end of text" : "expected a value");
}

/* After the top-level object: only whitespace may follow (NUL padding does not pass). */
static muse_status jp_end(jp *p)
{
	jp_ws(p);
	if (p->i == p->n)
		return MUSE_OK;
	return jp_err(p, MUSE_ERR_FORMAT, p->i, "%s is not valid JSON: byte 0x%02x after the top-level object "
		      "(only spaces may pad it)", p->what, (unsigned char)p->s[p->i]);
}

/* Expects the top-level '{' and consumes it. */
static muse_status jp_open_top(jp *p)
{
	jp_ws(p);
	if (jp_peek(p) == '{') {
		p->i++;
		return MUSE_OK;
	}
	const char *k = jp_kind(p);
	if (!strcmp(k, "not a JSON value"))
		return jp_syntax(p, p->i, p->i < p->n ? "expected '{'" : "no JSON object");
	return jp_err(p, MUSE_ERR_FORMAT, p->i, "%s is %s, expected a JSON object", p->what, k);
}

static void jp_free(jp *p)
{
	free(p->key.p);
	free(p->str.p);
}

/* Offset of the first byte that does not start a well-formed UTF-8 sequence, or len when all are fine. */
static size_t utf8_bad_at(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		uint64_t w8;
		if (len - i >= 8 && (memcpy(&w8, u + i, 8), !(w8 & 0x8080808080808080ull))) {
			i += 8; /* eight ASCII bytes */
			continue;
		}
		unsigned char c = u[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
		if (n > len - i || !muse_utf8_valid(s + i, n))
			return i;
		i += n;
	}
	return len;
}

static char *dupn(const char *s, size_t n)
{
	char *q = malloc(n + 1);
	if (q) {
		memcpy(q, s, n);
		q[n] = 0;
	}
	return q;
}

/* ---- the header schema ---- */

/* One tensor while its header entry is checked; owns name until it moves into the reader. */
typedef struct st_entry {
	char *name;
	muse_dtype dtype;
	int ndim;
	uint64_t shape[MUSE_MAX_DIMS];
	uint64_t nelements, nbytes, begin, end;
	uint64_t key_pos; /* absolute file offset of the key, for error messages */
	size_t order;     /* position in the header, the tie-break of the offset sort */
} st_entry;

/* Bits per element of a plain type (6 for F6, 4 for F4); the reference sizes tensors in bits. */
static uint64_t dtype_bits(muse_dtype t)
{
	const muse_dtype_traits *tr = muse_dtype_info(t);
	return (uint64_t)tr->block_bytes * 8 / tr->blck;
}

/* Reads an array of non-negative integers for field `field` (shape, data_offsets); *count gets its length. */
static muse_status read_u64_array(jp *p, const st_entry *e, const char *field, uint64_t *v, size_t cap,
				  size_t *count)
{
	size_t at = (size_t)(e->key_pos - p->base);
	if (jp_peek(p) != '[')
		return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': %s is %s, expected an array", e->name,
			      field, jp_kind(p));
	p->i++;
	bool first = true, more;
	size_t k = 0;
	for (;;) {
		muse_status s = jp_arr_next(p, &first, &more);
		if (s)
			return s;
		if (!more)
			break;
		int c = jp_peek(p);
		if (c != '-' && (c < '0' || c > '9'))
			return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': %s[%zu] is %s, not an integer",
				      e->name, field, k, jp_kind(p));
		int cls;
		uint64_t x;
		if ((s = jp_number(p, &cls, &x)))
			return s;
		if (cls != NUM_UINT)
			return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': %s[%zu] %s", e->name, field, k,
				      cls == NUM_REAL ? "is a real number, not an integer"
				      : cls == NUM_NEGATIVE ? "is negative" : "does not fit in 64 bits");
		if (k < cap)
			v[k] = x;
		k++;
	}
	*count = k;
	return MUSE_OK;
}

/* Reads one tensor's {"dtype", "shape", "data_offsets"} object into e and checks it against the data section. */
static muse_status read_entry(jp *p, st_entry *e, uint64_t data_len)
{
	size_t at = (size_t)(e->key_pos - p->base);
	if (jp_peek(p) != '{')
		return jp_err(p, MUSE_ERR_FORMAT, at,
			      "tensor '" NAME_SHOW "': is %s, expected an object with dtype, shape and data_offsets",
			      e->name, jp_kind(p));
	p->i++;
	bool first = true, more, have_d = false, have_s = false, have_o = false;
	size_t key_at, rank = 0, noff = 0;
	uint64_t off[2] = { 0, 0 };
	muse_status s;
	for (;;) {
		if ((s = jp_obj_next(p, &first, &more, &key_at)))
			return s;
		if (!more)
			break;
		const char *k = p->key.p;
		bool *have = !strcmp(k, "dtype") ? &have_d : !strcmp(k, "shape") ? &have_s
			     : !strcmp(k, "data_offsets") ? &have_o : NULL;
		if (have && *have)
			return jp_err(p, MUSE_ERR_FORMAT, key_at, "tensor '" NAME_SHOW "': duplicate key '%s'", e->name, k);
		if (have)
			*have = true;
		if (have == &have_d) {
			if (jp_peek(p) != '"')
				return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': dtype is %s, expected a string",
					      e->name, jp_kind(p));
			if ((s = jp_string(p, &p->str)))
				return s;
			e->dtype = strlen(p->str.p) == p->str.len ? muse_dtype_from_st(p->str.p) : MUSE_DT_INVALID;
			if (e->dtype == MUSE_DT_INVALID)
				return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': unknown dtype '%.40s'", e->name,
					      p->str.p);
		} else if (have == &have_s) {
			if ((s = read_u64_array(p, e, "shape", e->shape, MUSE_MAX_DIMS, &rank)))
				return s;
			if (rank > MUSE_MAX_DIMS)
				return jp_err(p, MUSE_ERR_LIMIT, at, "tensor '" NAME_SHOW "': rank %zu is above the cap of %d",
					      e->name, rank, MUSE_MAX_DIMS);
			e->ndim = (int)rank;
		} else if (have == &have_o) {
			if (jp_peek(p) != '[')
				return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': data_offsets must be an array "
					      "of 2 integers, got %s", e->name, jp_kind(p));
			if ((s = read_u64_array(p, e, "data_offsets", off, 2, &noff)))
				return s;
			if (noff != 2)
				return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': data_offsets must be an array "
					      "of 2 integers, got an array of %zu", e->name, noff);
		} else if ((s = jp_skip(p, 2))) { /* unknown fields are ignored, as the reference does */
			return s;
		}
	}
	const char *missing = !have_d ? "dtype" : !have_s ? "shape" : !have_o ? "data_offsets" : NULL;
	if (missing)
		return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': missing \"%s\"", e->name, missing);
	e->begin = off[0];
	e->end = off[1];

	uint64_t nbits;
	if (!muse_product_u64(e->shape, e->ndim, &e->nelements) ||
	    !muse_mul_u64(e->nelements, dtype_bits(e->dtype), &nbits))
		return jp_err(p, MUSE_ERR_LIMIT, at, "tensor '" NAME_SHOW "': shape is too large: its size overflows 64 bits",
			      e->name);
	if (nbits % 8)
		return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': %llu %s elements are not a whole number of bytes",
			      e->name, (unsigned long long)e->nelements, muse_dtype_name(e->dtype));
	e->nbytes = nbits / 8;
	if (e->end < e->begin)
		return jp_err(p, MUSE_ERR_FORMAT, at, "tensor '" NAME_SHOW "': data_offsets [%llu, %llu]: end before begin",
			      e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
	if (e->end > data_len)
		return jp_err(p, MUSE_ERR_FORMAT, at,
			      "tensor '" NAME_SHOW "': data_offsets [%llu, %llu] run past the end of the %llu-byte data "
			      "section (truncated file?)",
			      e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
			      (unsigned long long)data_len);
	if (e->end - e->begin != e->nbytes)
		return jp_err(p, MUSE_ERR_FORMAT, at,
			      "tensor '" NAME_SHOW "': data_offsets [%llu, %llu] hold %llu bytes but %s x %llu elements "
			      "need %llu",
			      e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
			      (unsigned long long)(e->end - e->begin), muse_dtype_name(e->dtype),
			      (unsigned long long)e->nelements, (unsigned long long)e->nbytes);
	return MUSE_OK;
}

/*
 * Reads __metadata__ (an object of strings, or null) into r->meta. With
 * seen == NULL (single file) every key is taken; with a map (shards) the
 * first shard to define a key wins and seen records the keys taken.
 */
static muse_status read_metadata(jp *p, muse_reader *r, size_t at, muse_strmap *seen)
{
	int c = jp_peek(p);
	if (c == 'n')
		return jp_skip(p, 1);
	if (c != '{')
		return jp_err(p, MUSE_ERR_FORMAT, at,
			      "__metadata__ is %s, expected an object of strings (a tensor may not use this name)",
			      jp_kind(p));
	p->i++;
	muse_strmap keys; /* duplicates inside this object; keys borrowed from names[] */
	muse_strmap_init(&keys);
	char **names = NULL;
	size_t n = 0, cap = 0, key_at;
	bool first = true, more;
	muse_status s;
	for (;;) {
		if ((s = jp_obj_next(p, &first, &more, &key_at)) || !more)
			break;
		const char *k = p->key.p;
		if (jp_peek(p) != '"') {
			bool tensorish = !strcmp(k, "dtype") || !strcmp(k, "shape") || !strcmp(k, "data_offsets");
			s = jp_err(p, MUSE_ERR_FORMAT, at, "__metadata__ key '" NAME_SHOW "' is %s, expected a string%s", k,
				   jp_kind(p), tensorish ? " (a tensor may not use the name __metadata__)" : "");
			break;
		}
		if (strlen(k) != p->key.len) {
			s = jp_err(p, MUSE_ERR_FORMAT, key_at, "__metadata__ key '" NAME_SHOW "...' holds a NUL byte", k);
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nn = realloc(names, cap * sizeof *nn);
			if (!nn) {
				s = jp_oom(p);
				break;
			}
			names = nn;
		}
		if (!(names[n] = dupn(k, p->key.len))) {
			s = jp_oom(p);
			break;
		}
		int put = muse_strmap_put(&keys, names[n], p->key.len, n, NULL);
		n++;
		if (put <= 0) {
			s = put < 0 ? jp_oom(p)
				    : jp_err(p, MUSE_ERR_FORMAT, key_at, "__metadata__: duplicate key '" NAME_SHOW "'", k);
			break;
		}
		if ((s = jp_string(p, &p->str)))
			break;
		if (seen && muse_strmap_get(seen, names[n - 1], strlen(names[n - 1]), NULL))
			continue;
		char *val = dupn(p->str.p, p->str.len);
		muse_kv *kv = val ? muse_meta_append(&r->meta, names[n - 1]) : NULL;
		if (!kv) {
			free(val);
			s = jp_oom(p);
			break;
		}
		kv->type = MUSE_KV_STRING;
		kv->n = 1;
		kv->v.s.len = p->str.len;
		kv->v.s.ptr = val;
		if (seen && muse_strmap_put(seen, kv->key, strlen(kv->key), r->meta.n - 1, NULL) < 0) {
			s = jp_oom(p);
			break;
		}
	}
	muse_strmap_free(&keys);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return s;
}

static int entry_cmp(const void *a, const void *b)
{
	const st_entry *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * Parses and validates the header of file r->files[fi], appending its
 * tensors to r in data order (t->file = fi) and its __metadata__ to r->meta.
 * *data_offset gets 8 + N. With meta_seen (shards of an index) repeated
 * tensor names are left to the caller, whose weight_map lookup of every
 * name catches them at no extra cost.
 */
static muse_status read_shard(muse_reader *r, uint32_t fi, muse_strmap *meta_seen, uint64_t *data_offset,
			      muse_err *err)
{
	const muse_map *m = &r->files[fi];
	const char *file = m->path;
	if (m->size < 8)
		return muse_err_at(err, MUSE_ERR_FORMAT, file, 0,
				   "file is %llu bytes, too small for the 8-byte safetensors header length",
				   (unsigned long long)m->size);
	uint64_t n = 0, data_start;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | m->data[i];
	if (n > ST_MAX_HEADER)
		return muse_err_at(err, MUSE_ERR_LIMIT, file, 0, "header length %llu is above the %llu-byte cap",
				   (unsigned long long)n, ST_MAX_HEADER);
	if (!muse_add_u64(8, n, &data_start) || data_start > m->size)
		return muse_err_at(err, MUSE_ERR_FORMAT, file, 0,
				   "header length %llu runs past the end of the file (%llu bytes)", (unsigned long long)n,
				   (unsigned long long)m->size);
	if (n == 0)
		return muse_err_at(err, MUSE_ERR_FORMAT, file, 8, "header is empty, expected a JSON object");
	const char *hdr = (const char *)m->data + 8;
	uint64_t data_len = m->size - data_start;
	size_t bad = utf8_bad_at(hdr, (size_t)n);
	if (bad < n)
		return muse_err_at(err, MUSE_ERR_FORMAT, file, 8 + bad, "header is not valid UTF-8 (byte 0x%02x)",
				   (unsigned char)hdr[bad]);

	jp p = { .s = hdr, .n = (size_t)n, .base = 8, .file = file, .what = "header", .err = err };
	st_entry *ents = NULL;
	size_t ne = 0, cap = 0, key_at;
	muse_strmap names;
	muse_strmap_init(&names);
	bool first = true, more, have_meta = false;
	muse_status s = jp_open_top(&p);
	while (!s) {
		if ((s = jp_obj_next(&p, &first, &more, &key_at)) || !more)
			break;
		const char *k = p.key.p;
		size_t klen = p.key.len;
		if (klen == 12 && !memcmp(k, "__metadata__", 12)) {
			if (have_meta) {
				s = jp_err(&p, MUSE_ERR_FORMAT, key_at, "duplicate key '__metadata__'");
				break;
			}
			have_meta = true;
			s = read_metadata(&p, r, key_at, meta_seen);
			continue;
		}
		if (strlen(k) != klen) {
			s = jp_err(&p, MUSE_ERR_FORMAT, key_at, "tensor name '" NAME_SHOW "...' holds a NUL byte (not supported)", k);
			break;
		}
		if (klen > MUSE_MAX_NAME) {
			s = jp_err(&p, MUSE_ERR_LIMIT, key_at, "tensor name '%.60s...' is %zu bytes, above the cap of %d", k, klen,
				   MUSE_MAX_NAME);
			break;
		}
		if (ne == cap) {
			cap = cap ? cap * 2 : 64;
			st_entry *ee = realloc(ents, cap * sizeof *ee);
			if (!ee) {
				s = jp_oom(&p);
				break;
			}
			ents = ee;
		}
		st_entry *e = &ents[ne];
		memset(e, 0, sizeof *e);
		if (!(e->name = dupn(k, klen))) {
			s = jp_oom(&p);
			break;
		}
		ne++;
		e->key_pos = 8 + key_at;
		e->order = ne;
		int put = meta_seen ? 1 : muse_strmap_put(&names, e->name, klen, ne - 1, NULL);
		if (put <= 0) {
			s = put < 0 ? jp_oom(&p) : jp_err(&p, MUSE_ERR_FORMAT, key_at, "duplicate tensor '" NAME_SHOW "'", k);
			break;
		}
		s = read_entry(&p, e, data_len);
	}
	if (!s)
		s = jp_end(&p);
	jp_free(&p);
	muse_strmap_free(&names);
	if (s)
		goto out;

	/* The reference's tiling rule: sorted by offsets, the ranges cover [0, data_len) exactly once. */
	if (ne)
		qsort(ents, ne, sizeof *ents, entry_cmp);
	uint64_t prev_end = 0;
	for (size_t i = 0; i < ne && !s; i++) {
		const st_entry *e = &ents[i];
		if (e->begin > prev_end && i)
			s = muse_err_at(err, MUSE_ERR_FORMAT, file, e->key_pos,
					"tensor '" NAME_SHOW "': data_offsets [%llu, %llu] leave a gap of %llu bytes after "
					"tensor '" NAME_SHOW "'",
					e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
					(unsigned long long)(e->begin - prev_end), ents[i - 1].name);
		else if (e->begin > prev_end)
			s = muse_err_at(err, MUSE_ERR_FORMAT, file, e->key_pos,
					"tensor '" NAME_SHOW "': data_offsets [%llu, %llu] leave a gap of %llu bytes at the "
					"start of the data section",
					e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
					(unsigned long long)e->begin);
		else if (e->begin < prev_end)
			s = muse_err_at(err, MUSE_ERR_FORMAT, file, e->key_pos,
					"tensor '" NAME_SHOW "': data_offsets [%llu, %llu] overlap tensor '" NAME_SHOW
					"' by %llu bytes",
					e->name, (unsigned long long)e->begin, (unsigned long long)e->end, ents[i - 1].name,
					(unsigned long long)(prev_end - e->begin));
		prev_end = e->end;
	}
	if (!s && prev_end != data_len)
		s = muse_err_at(err, MUSE_ERR_FORMAT, file, data_start + prev_end,
				"%llu bytes after the last tensor are not covered by the header (the data section "
				"must end where the file ends)",
				(unsigned long long)(data_len - prev_end));
	for (size_t i = 0; i < ne && !s; i++) {
		st_entry *e = &ents[i];
		muse_tensor *t = muse_reader_add_tensor(r);
		if (!t) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", file);
			break;
		}
		t->name = e->name;
		e->name = NULL;
		t->dtype = e->dtype;
		t->ndim = e->ndim;
		memcpy(t->shape, e->shape, sizeof t->shape);
		t->nelements = e->nelements;
		t->nbytes = e->nbytes;
		t->file = fi;
		t->offset = data_start + e->begin;
		t->header_offset = e->key_pos;
	}
	*data_offset = data_start;
out:
	for (size_t i = 0; i < ne; i++)
		free(ents[i].name);
	free(ents);
	return s;
}

muse_status muse_safetensors_open(const char *path, muse_reader **out, muse_err *err)
{
	*out = NULL;
	muse_reader *r = muse_reader_new("safetensors", path);
	if (!r)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	uint32_t fi;
	muse_status s = muse_reader_add_file(r, path, &fi, err);
	if (!s)
		s = read_shard(r, fi, NULL, &r->data_offset, err);
	if (s) {
		muse_reader_free(r);
		return s;
	}
	*out = r;
	return MUSE_OK;
}

/* ---- sharded checkpoints ---- */

/* A shard name from weight_map: a plain file name in the index's directory, nothing else. */
static const char *shard_name_problem(const char *s, size_t len)
{
	if (!len)
		return "is empty";
	if (strlen(s) != len)
		return "holds a NUL byte";
	if (strchr(s, '/') || strchr(s, '\\'))
		return "is not a plain file name (holds a path separator)";
	if (!strcmp(s, ".") || !strcmp(s, ".."))
		return "is not a file name";
	if (len > 255)
		return "is longer than a file name may be";
	return NULL;
}

/*
 * True when the file starts with a plausible safetensors header length.
 * Content sniffing that looks at the first byte alone sends safetensors
 * files whose header length ends in 0x0a, 0x20 or 0x7b here; JSON text
 * never qualifies (its 8th byte alone puts the value above 2^56).
 */
static bool looks_like_safetensors(const char *path)
{
	uint8_t b[8];
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t got = fread(b, 1, sizeof b, f);
	fclose(f);
	if (got != sizeof b)
		return false;
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | b[i];
	return n <= ST_MAX_HEADER;
}

typedef struct st_shard {
	char *name;    /* owned */
	uint64_t at;   /* where weight_map first names it */
	uint32_t file; /* index into r->files once opened */
	size_t orig;   /* order of first mention */
} st_shard;

/* The weight_map, as read: entry k maps wname[k] to shard wshard[k]; wpos[k] is where it was declared. */
typedef struct st_wmap {
	char **wname;
	size_t *wshard;
	uint64_t *wpos;
	size_t n, cap;
	muse_strmap map;    /* name -> k */
	st_shard *shards;
	size_t n_shards, cap_shards;
	muse_strmap by_name; /* shard name -> index into shards (before sorting) */
} st_wmap;

static void wmap_free(st_wmap *w)
{
	for (size_t k = 0; k < w->n; k++)
		free(w->wname[k]);
	free(w->wname);
	free(w->wshard);
	free(w->wpos);
	for (size_t i = 0; i < w->n_shards; i++)
		free(w->shards[i].name);
	free(w->shards);
	muse_strmap_free(&w->map);
	muse_strmap_free(&w->by_name);
}

/* Reads the "weight_map" object at the cursor. */
static muse_status read_weight_map(jp *p, st_wmap *w, size_t at)
{
	if (jp_peek(p) != '{')
		return jp_err(p, MUSE_ERR_FORMAT, at, "\"weight_map\" is %s, expected an object", jp_kind(p));
	p->i++;
	bool first = true, more;
	size_t key_at;
	muse_status s;
	for (;;) {
		if ((s = jp_obj_next(p, &first, &more, &key_at)) || !more)
			return s;
		const char *name = p->key.p;
		if (strlen(name) != p->key.len)
			return jp_err(p, MUSE_ERR_FORMAT, key_at,
				      "weight_map: tensor name '" NAME_SHOW "...' holds a NUL byte (not supported)", name);
		if (jp_peek(p) != '"')
			return jp_err(p, MUSE_ERR_FORMAT, key_at,
				      "weight_map: tensor '" NAME_SHOW "': shard is %s, expected a file name", name, jp_kind(p));
		if ((s = jp_string(p, &p->str)))
			return s;
		const char *why = shard_name_problem(p->str.p, p->str.len);
		if (why)
			return jp_err(p, MUSE_ERR_FORMAT, key_at, "weight_map: tensor '" NAME_SHOW "': shard '" NAME_SHOW "' %s",
				      name, p->str.p, why);
		if (w->n == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 256;
			char **a = realloc(w->wname, cap * sizeof *a);
			if (a)
				w->wname = a;
			size_t *b = realloc(w->wshard, cap * sizeof *b);
			if (b)
				w->wshard = b;
			uint64_t *c = realloc(w->wpos, cap * sizeof *c);
			if (c)
				w->wpos = c;
			if (!a || !b || !c)
				return jp_oom(p);
			w->cap = cap;
		}
		/* Consecutive entries mostly name the same shard: check the last one before hashing. */
		size_t si = w->n ? w->wshard[w->n - 1] : SIZE_MAX;
		bool same = si != SIZE_MAX && !strcmp(w->shards[si].name, p->str.p);
		if (!same && !muse_strmap_get(&w->by_name, p->str.p, p->str.len, &si)) {
			if (w->n_shards == w->cap_shards) {
				size_t cap = w->cap_shards ? w->cap_shards * 2 : 16;
				st_shard *sh = realloc(w->shards, cap * sizeof *sh);
				if (!sh)
					return jp_oom(p);
				w->shards = sh;
				w->cap_shards = cap;
			}
			si = w->n_shards;
			st_shard *sh = &w->shards[si];
			memset(sh, 0, sizeof *sh);
			if (!(sh->name = dupn(p->str.p, p->str.len)))
				return jp_oom(p);
			w->n_shards++;
			sh->at = p->base + key_at;
			sh->orig = si;
			if (muse_strmap_put(&w->by_name, sh->name, p->str.len, si, NULL) < 0)
				return jp_oom(p);
		}
		size_t k = w->n;
		if (!(w->wname[k] = dupn(name, p->key.len)))
			return jp_oom(p);
		w->wshard[k] = si;
		w->wpos[k] = p->base + key_at;
		w->n++;
		int put = muse_strmap_put(&w->map, w->wname[k], p->key.len, k, NULL);
		if (put <= 0)
			return put < 0 ? jp_oom(p)
				       : jp_err(p, MUSE_ERR_FORMAT, key_at, "weight_map: duplicate tensor '" NAME_SHOW "'", name);
	}
}

static int shard_cmp(const void *a, const void *b)
{
	return strcmp(((const st_shard *)a)->name, ((const st_shard *)b)->name);
}

/* Reads and checks the index document. */
static muse_status read_index(const char *file, const char *text, size_t tlen, st_wmap *w, muse_err *err)
{
	size_t bad = utf8_bad_at(text, tlen);
	if (bad < tlen)
		return muse_err_at(err, MUSE_ERR_FORMAT, file, bad, "index is not valid UTF-8 (byte 0x%02x)",
				   (unsigned char)text[bad]);
	jp p = { .s = text, .n = tlen, .base = 0, .file = file, .what = "index", .err = err };
	muse_strmap top;
	muse_strmap_init(&top);
	char *top_keys[8];
	size_t n_top = 0, key_at;
	bool first = true, more, have_wm = false;
	muse_status s = jp_open_top(&p);
	while (!s) {
		if ((s = jp_obj_next(&p, &first, &more, &key_at)) || !more)
			break;
		/* Duplicate top-level keys are refused like any other; the few known ones are all that matter. */
		const char *k = p.key.p;
		bool is_wm = !strcmp(k, "weight_map"), is_md = !strcmp(k, "metadata");
		if (is_wm || is_md) {
			if (muse_strmap_get(&top, k, p.key.len, NULL)) {
				s = jp_err(&p, MUSE_ERR_FORMAT, key_at, "index: duplicate key '%s'", k);
				break;
			}
			if (!(top_keys[n_top] = dupn(k, p.key.len)) ||
			    muse_strmap_put(&top, top_keys[n_top], p.key.len, 0, NULL) < 0) {
				n_top += top_keys[n_top] != NULL;
				s = jp_oom(&p);
				break;
			}
			n_top++;
		}
		/*
		 * metadata.total_size is informational. huggingface_hub sums
		 * storage sizes (a view counts its whole storage, shared
		 * storages once) and transformers never reads it back, so
		 * published indexes disagree with the tensor bytes often enough
		 * that checking it would refuse models every other tool loads.
		 * Only the shape of "metadata" is checked.
		 */
		if (is_md && jp_peek(&p) != '{' && jp_peek(&p) != 'n')
			s = jp_err(&p, MUSE_ERR_FORMAT, key_at, "index \"metadata\" is %s, expected an object", jp_kind(&p));
		else if (is_wm)
			s = read_weight_map(&p, w, key_at);
		else
			s = jp_skip(&p, 1);
		have_wm |= is_wm;
	}
	if (!s)
		s = jp_end(&p);
	if (!s && !have_wm)
		s = muse_err_at(err, MUSE_ERR_FORMAT, file, 0, "index has no \"weight_map\" object");
	jp_free(&p);
	muse_strmap_free(&top);
	for (size_t i = 0; i < n_top; i++)
		free(top_keys[i]);
	return s;
}

muse_status muse_safetensors_open_index(const char *index_path, muse_reader **out, muse_err *err)
{
	*out = NULL;
	const char *file = index_path;
	char *text = NULL, *dir = NULL, *shard_path = NULL;
	size_t tlen = 0, *remap = NULL;
	muse_reader *r = NULL;
	st_wmap w;
	memset(&w, 0, sizeof w);
	size_t *found_in = NULL, n_found = 0; /* per weight_map entry: the shard it was found in */
	muse_strmap meta_seen;
	muse_strmap_init(&meta_seen);
	muse_status s;

	if (looks_like_safetensors(index_path)) {
		s = muse_safetensors_open(index_path, out, err);
		goto out;
	}
	if ((s = muse_read_small_file(index_path, ST_INDEX_MAX, &text, &tlen, err)))
		goto out;
	if ((s = read_index(file, text, tlen, &w, err)))
		goto out;

	/* Shard order is by name, which is numeric order for HF's model-%05d-of-%05d names. */
	if (w.n_shards)
		qsort(w.shards, w.n_shards, sizeof *w.shards, shard_cmp);
	remap = malloc((w.n_shards ? w.n_shards : 1) * sizeof *remap);
	found_in = malloc((w.n ? w.n : 1) * sizeof *found_in);
	r = muse_reader_new("safetensors", index_path);
	dir = strdup(index_path);
	if (!remap || !found_in || !r || !dir) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", file);
		goto out;
	}
	for (size_t i = 0; i < w.n_shards; i++)
		remap[w.shards[i].orig] = i;
	for (size_t k = 0; k < w.n; k++) {
		w.wshard[k] = remap[w.wshard[k]];
		found_in[k] = SIZE_MAX;
	}
	char *slash = strrchr(dir, '/');
	if (slash)
		slash[1] = 0;
	else
		dir[0] = 0;
	size_t dlen = strlen(dir);
	if (!(shard_path = malloc(dlen + 257))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", file);
		goto out;
	}

	for (size_t si = 0; si < w.n_shards; si++) {
		memcpy(shard_path, dir, dlen);
		strcpy(shard_path + dlen, w.shards[si].name);
		if ((s = muse_reader_add_file(r, shard_path, &w.shards[si].file, err))) {
			char why[MUSE_ERR_MSG_MAX];
			snprintf(why, sizeof why, "%s", err ? err->msg : "");
			muse_err_at(err, s, file, w.shards[si].at, "shard '" NAME_SHOW "' named in weight_map: %s",
				    w.shards[si].name, why);
			goto out;
		}
		size_t first = r->n_tensors;
		uint64_t dofs;
		if ((s = read_shard(r, w.shards[si].file, &meta_seen, &dofs, err)))
			goto out;
		/* Every tensor of the shard must be listed under this shard, and in no other shard. */
		for (size_t ti = first; ti < r->n_tensors; ti++) {
			const muse_tensor *t = &r->tensors[ti];
			size_t k;
			if (!muse_strmap_get(&w.map, t->name, strlen(t->name), &k)) {
				s = muse_err_at(err, MUSE_ERR_FORMAT, shard_path, t->header_offset,
						"tensor '" NAME_SHOW "' is not listed in the index weight_map (%s)", t->name,
						index_path);
				goto out;
			}
			if (found_in[k] == si) {
				s = muse_err_at(err, MUSE_ERR_FORMAT, shard_path, t->header_offset,
						"duplicate tensor '" NAME_SHOW "'", t->name);
				goto out;
			}
			if (found_in[k] != SIZE_MAX) {
				s = muse_err_at(err, MUSE_ERR_FORMAT, shard_path, t->header_offset,
						"tensor '" NAME_SHOW "' is also in shard '" NAME_SHOW "'", t->name,
						w.shards[found_in[k]].name);
				goto out;
			}
			found_in[k] = si;
			n_found++;
			if (w.wshard[k] != si) {
				s = muse_err_at(err, MUSE_ERR_FORMAT, shard_path, t->header_offset,
						"tensor '" NAME_SHOW "' is listed in the index under shard '" NAME_SHOW
						"', not this one",
						t->name, w.shards[w.wshard[k]].name);
				goto out;
			}
		}
	}
	/* Every name in weight_map was found: each found name is distinct and listed, so counting suffices. */
	if (n_found != w.n) {
		for (size_t k = 0; k < w.n; k++)
			if (found_in[k] == SIZE_MAX) {
				s = muse_err_at(err, MUSE_ERR_FORMAT, file, w.wpos[k],
						"weight_map: tensor '" NAME_SHOW "' is missing from shard '" NAME_SHOW "'",
						w.wname[k], w.shards[w.wshard[k]].name);
				goto out;
			}
	}
	*out = r;
	r = NULL;
out:
	free(found_in);
	muse_strmap_free(&meta_seen);
	muse_reader_free(r);
	wmap_free(&w);
	free(remap);
	free(shard_path);
	free(dir);
	free(text);
	return s;
}
