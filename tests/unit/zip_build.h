/* zip_build.h: a tiny ZIP writer for tests: torch.save-style stored entries (FB padding, data descriptors, ZIP64 end). */
#ifndef MUSE_ZIP_BUILD_H
#define MUSE_ZIP_BUILD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct zb_entry {
	char name[512];
	uint64_t lho, data_off, cd_off;
	size_t size;
	uint32_t crc;
	uint16_t flags;
} zb_entry;

typedef struct zb {
	uint8_t *p;
	size_t n, cap;
	zb_entry e[64];
	int ne;
	uint64_t cd_off, cd_size, eocd;
} zb;

static inline void zb_put(zb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 256;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	if (n)
		memcpy(b->p + b->n, d, n);
	b->n += n;
}

static inline void zb_u16(zb *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	zb_put(b, x, 2);
}

static inline void zb_u32(zb *b, uint32_t v)
{
	zb_u16(b, (uint16_t)v);
	zb_u16(b, (uint16_t)(v >> 16));
}

static inline void zb_u64(zb *b, uint64_t v)
{
	zb_u32(b, (uint32_t)v);
	zb_u32(b, (uint32_t)(v >> 32));
}

/* torch_style: flags 0x0808, zeroed local CRC/sizes, "FB" padding to 64 bytes, data descriptor when non-empty. */
static inline void zb_add(zb *b, const char *name, const void *data, size_t n, bool torch_style)
{
	zb_entry *e = &b->e[b->ne++];
	snprintf(e->name, sizeof e->name, "%s", name);
	e->size = n;
	e->crc = (uint32_t)crc32(0L, data, (uInt)n);
	e->flags = torch_style ? 0x0808 : 0;
	e->lho = b->n;
	size_t nlen = strlen(name);
	uint16_t xlen = 0;
	if (torch_style) {
		size_t before = b->n + 30 + nlen + 4;
		xlen = (uint16_t)(4 + (64 - before % 64) % 64);
	}
	zb_u32(b, 0x04034b50);
	zb_u16(b, 20);
	zb_u16(b, e->flags);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u32(b, torch_style ? 0 : e->crc);
	zb_u32(b, torch_style ? 0 : (uint32_t)n);
	zb_u32(b, torch_style ? 0 : (uint32_t)n);
	zb_u16(b, (uint16_t)nlen);
	zb_u16(b, xlen);
	zb_put(b, name, nlen);
	if (xlen) {
		zb_put(b, "FB", 2);
		zb_u16(b, (uint16_t)(xlen - 4));
		for (int i = 0; i < xlen - 4; i++)
			zb_put(b, "Z", 1);
	}
	e->data_off = b->n;
	zb_put(b, data, n);
	if (torch_style && n) {
		zb_u32(b, 0x08074b50);
		zb_u32(b, e->crc);
		zb_u32(b, (uint32_t)n);
		zb_u32(b, (uint32_t)n);
	}
}

/* Writes the central directory and the end records (ZIP64 ones too when zip64). */
static inline void zb_finish(zb *b, bool zip64, const char *comment)
{
	b->cd_off = b->n;
	for (int i = 0; i < b->ne; i++) {
		zb_entry *e = &b->e[i];
		e->cd_off = b->n;
		size_t nlen = strlen(e->name);
		zb_u32(b, 0x02014b50);
		zb_u16(b, 0);
		zb_u16(b, 20);
		zb_u16(b, e->flags);
		zb_u16(b, 0);
		zb_u16(b, 0);
		zb_u16(b, 0);
		zb_u32(b, e->crc);
		zb_u32(b, (uint32_t)e->size);
		zb_u32(b, (uint32_t)e->size);
		zb_u16(b, (uint16_t)nlen);
		zb_u16(b, 0);
		zb_u16(b, 0);
		zb_u16(b, 0);
		zb_u16(b, 0);
		zb_u32(b, 0);
		zb_u32(b, (uint32_t)e->lho);
		zb_put(b, e->name, nlen);
	}
	b->cd_size = b->n - b->cd_off;
	if (zip64) {
		uint64_t z64 = b->n;
		zb_u32(b, 0x06064b50);
		zb_u64(b, 44);
		zb_u16(b, 45);
		zb_u16(b, 45);
		zb_u32(b, 0);
		zb_u32(b, 0);
		zb_u64(b, (uint64_t)b->ne);
		zb_u64(b, (uint64_t)b->ne);
		zb_u64(b, b->cd_size);
		zb_u64(b, b->cd_off);
		zb_u32(b, 0x07064b50);
		zb_u32(b, 0);
		zb_u64(b, z64);
		zb_u32(b, 1);
	}
	b->eocd = b->n;
	size_t clen = comment ? strlen(comment) : 0;
	zb_u32(b, 0x06054b50);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u16(b, (uint16_t)b->ne);
	zb_u16(b, (uint16_t)b->ne);
	zb_u32(b, (uint32_t)b->cd_size);
	zb_u32(b, (uint32_t)b->cd_off);
	zb_u16(b, (uint16_t)clen);
	zb_put(b, comment ? comment : "", clen);
}

static inline void zb_free(zb *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* Writes the buffer to path; returns 0 on success. */
static inline int zb_write(const zb *b, const char *path)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(b->p, 1, b->n, f);
	return (fclose(f) == 0 && w == b->n) ? 0 : -1;
}

/* ---- hand-assembled pickles ---- */

typedef struct pb {
	uint8_t p[8192];
	size_t n;
} pb;

static inline void pb_raw(pb *b, const void *d, size_t n)
{
	if (b->n + n > sizeof b->p)
		abort();
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static inline void pb_op(pb *b, uint8_t op)
{
	pb_raw(b, &op, 1);
}

static inline void pb_str(pb *b, const char *s) /* BINUNICODE */
{
	uint32_t n = (uint32_t)strlen(s);
	uint8_t h[5] = { 'X', (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };
	pb_raw(b, h, 5);
	pb_raw(b, s, n);
}

static inline void pb_int(pb *b, uint32_t v) /* BININT1 / BININT (v < 2^31) */
{
	if (v < 256) {
		uint8_t h[2] = { 'K', (uint8_t)v };
		pb_raw(b, h, 2);
	} else {
		uint8_t h[5] = { 'J', (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
		pb_raw(b, h, 5);
	}
}

static inline void pb_global(pb *b, const char *mod, const char *name)
{
	pb_op(b, 'c');
	pb_raw(b, mod, strlen(mod));
	pb_op(b, '\n');
	pb_raw(b, name, strlen(name));
	pb_op(b, '\n');
}

static inline void pb_tuple_ints(pb *b, const uint32_t *v, int n)
{
	pb_op(b, '(');
	for (int i = 0; i < n; i++)
		pb_int(b, v[i]);
	pb_op(b, 't');
}

/*
 * Emits key -> _rebuild_tensor_v2(('storage', torch.<cls>, skey, 'cpu', numel), off, size, stride, False, OrderedDict())
 * as one SETITEM pair (key, value) on the stack; the caller wraps with MARK ... SETITEMS.
 */
static inline void pb_tensor(pb *b, const char *key, const char *cls, const char *skey, uint32_t numel, uint32_t off,
		      const uint32_t *size, const uint32_t *stride, int nd)
{
	pb_str(b, key);
	pb_global(b, "torch._utils", "_rebuild_tensor_v2");
	pb_op(b, '(');
	pb_op(b, '(');
	pb_str(b, "storage");
	pb_global(b, "torch", cls);
	pb_str(b, skey);
	pb_str(b, "cpu");
	pb_int(b, numel);
	pb_op(b, 't');
	pb_op(b, 'Q');
	pb_int(b, off);
	pb_tuple_ints(b, size, nd);
	pb_tuple_ints(b, stride, nd);
	pb_op(b, 0x89);
	pb_global(b, "collections", "OrderedDict");
	pb_op(b, ')');
	pb_op(b, 'R');
	pb_op(b, 't');
	pb_op(b, 'R');
}

#endif
