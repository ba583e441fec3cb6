/* zip.c: strict ZIP container parsing for torch.save archives: the central directory decides, local headers must agree. */
#include "zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../lib/checked.h"
#include "../lib/utf8.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_Z64_EOCD 0x06064b50u
#define SIG_Z64_LOC 0x07064b50u
#define SIG_DESC 0x08074b50u

#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define EOCD_SIZE 22u
#define Z64_LOC_SIZE 20u
#define Z64_EOCD_SIZE 56u

#define EXTRA_ZIP64 0x0001u

/* Flag bits we understand: 3 (sizes in a data descriptor, as torch's miniz writes) and 11 (UTF-8 names). */
#define FLAGS_ALLOWED 0x0808u

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Every complaint about the container: "<file>: byte N: zip: ..." */
#define ZBAD(err, z, off, ...) muse_err_at((err), MUSE_ERR_FORMAT, (z)->path, (off), "zip: " __VA_ARGS__)

/*
 * Names come from a hostile file and are later joined to a prefix and
 * looked up, never used to create files; still, anything that would be a
 * traversal or an ambiguity for another tool is refused, because a name that
 * two tools read differently is exactly what scanner bypasses are built on.
 */
static const char *name_problem(const uint8_t *s, size_t n)
{
	if (n == 0)
		return "is empty";
	if (n > MUSE_ZIP_MAX_NAME)
		return "is longer than 4096 bytes";
	if (!muse_utf8_valid((const char *)s, n))
		return "is not valid UTF-8";
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			return "contains a control byte";
		if (s[i] == '\\')
			return "contains a backslash";
	}
	if (s[0] == '/')
		return "is absolute";
	if (n >= 2 && s[1] == ':')
		return "starts with a drive letter";
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '/')
			continue;
		size_t len = i - start;
		if (len == 0)
			return "has an empty path component";
		if ((len == 1 && s[start] == '.') || (len == 2 && s[start] == '.' && s[start + 1] == '.'))
			return "has a '.' or '..' component";
		start = i + 1;
	}
	return NULL;
}

/* Checks that the extra-field records in [p, p+len) tile it exactly; returns the ZIP64 record if there is one. */
static muse_status scan_extra(const muse_zip *z, uint64_t off, uint32_t len, const uint8_t **z64, uint16_t *z64_len,
			      muse_err *err)
{
	const uint8_t *p = z->data + off;
	uint32_t pos = 0;
	*z64 = NULL;
	*z64_len = 0;
	while (pos < len) {
		if (len - pos < 4)
			return ZBAD(err, z, off + pos, "extra field header runs past the extra area (%u bytes left)",
				    len - pos);
		uint16_t id = rd16(p + pos), n = rd16(p + pos + 2);
		if (n > len - pos - 4)
			return ZBAD(err, z, off + pos, "extra field 0x%04x length %u runs past the extra area", id, n);
		if (id == EXTRA_ZIP64) {
			if (*z64)
				return ZBAD(err, z, off + pos, "two ZIP64 extra fields");
			*z64 = p + pos + 4;
			*z64_len = n;
		}
		/* Everything else ("FB" alignment padding, timestamps, ...) carries nothing we use. */
		pos += 4u + n;
	}
	return MUSE_OK;
}

static int cmp_by_header(const void *a, const void *b, void *arg)
{
	const muse_zip_entry *e = arg;
	uint64_t x = e[*(const size_t *)a].header_offset, y = e[*(const size_t *)b].header_offset;
	return x < y ? -1 : x > y;
}

/* Finds the one EOCD whose comment ends exactly at EOF. */
static muse_status find_eocd(const muse_zip *z, uint64_t *eocd, muse_err *err)
{
	if (z->size < EOCD_SIZE)
		return ZBAD(err, z, 0, "file of %llu bytes is too small for a ZIP end record",
			    (unsigned long long)z->size);
	uint64_t last = z->size - EOCD_SIZE;
	uint64_t first = last > 0xFFFFu ? last - 0xFFFFu : 0;
	int found = 0;
	uint64_t where = 0;
	for (uint64_t p = last + 1; p-- > first;) {
		const uint8_t *q = z->data + p;
		if (rd32(q) != SIG_EOCD)
			continue;
		if (p + EOCD_SIZE + rd16(q + 20) != z->size)
			continue; /* a stray signature in data or a comment that does not end at EOF */
		if (found++)
			return ZBAD(err, z, p, "two end-of-central-directory records (at bytes %llu and %llu): ambiguous",
				    (unsigned long long)p, (unsigned long long)where);
		where = p;
	}
	if (!found)
		return ZBAD(err, z, last, "no end-of-central-directory record (not a ZIP archive, or truncated)");
	*eocd = where;
	return MUSE_OK;
}

/* Reads the EOCD and, where present, the ZIP64 locator and record; fills count and the CD range. */
static muse_status read_end(muse_zip *z, uint64_t eocd, uint64_t *count, uint64_t *cd_end, muse_err *err)
{
	const uint8_t *e = z->data + eocd;
	uint16_t disk = rd16(e + 4), cd_disk = rd16(e + 6), n_disk = rd16(e + 8), n_total = rd16(e + 10);
	uint32_t cd_size = rd32(e + 12), cd_off = rd32(e + 16);
	bool saturated = disk == 0xFFFF || cd_disk == 0xFFFF || n_disk == 0xFFFF || n_total == 0xFFFF ||
			 cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu;
	bool has_loc = eocd >= Z64_LOC_SIZE && rd32(z->data + eocd - Z64_LOC_SIZE) == SIG_Z64_LOC;

	if (!has_loc) {
		if (saturated)
			return ZBAD(err, z, eocd, "end record has ZIP64 placeholder values but no ZIP64 locator");
		if (disk != 0 || cd_disk != 0)
			return ZBAD(err, z, eocd, "disk number %u/%u: multi-disk (spanned) archives are not supported",
				    disk, cd_disk);
		if (n_disk != n_total)
			return ZBAD(err, z, eocd, "entries on this disk (%u) != total entries (%u): spanned archive",
				    n_disk, n_total);
		*count = n_total;
		z->cd_offset = cd_off;
		z->cd_size = cd_size;
		*cd_end = eocd;
	} else {
		uint64_t loc = eocd - Z64_LOC_SIZE;
		const uint8_t *l = z->data + loc;
		uint32_t z64_disk = rd32(l + 4), n_disks = rd32(l + 16);
		uint64_t z64 = rd64(l + 8);
		if (z64_disk != 0 || n_disks > 1)
			return ZBAD(err, z, loc, "ZIP64 locator names disk %u of %u: spanned archives are not supported",
				    z64_disk, n_disks);
		if (z64 > loc || loc - z64 < Z64_EOCD_SIZE)
			return ZBAD(err, z, loc, "ZIP64 end record offset %llu does not leave room before the locator",
				    (unsigned long long)z64);
		const uint8_t *r = z->data + z64;
		if (rd32(r) != SIG_Z64_EOCD)
			return ZBAD(err, z, z64, "no ZIP64 end-of-central-directory record where the locator points");
		uint64_t rec = rd64(r + 4);
		uint64_t rec_end;
		if (rec < Z64_EOCD_SIZE - 12 || !muse_add_u64(z64 + 12, rec, &rec_end) || rec_end != loc)
			return ZBAD(err, z, z64 + 4, "ZIP64 end record size %llu does not end at the locator",
				    (unsigned long long)rec);
		uint32_t d64 = rd32(r + 16), cd64 = rd32(r + 20);
		uint64_t nd64 = rd64(r + 24), nt64 = rd64(r + 32), size64 = rd64(r + 40), off64 = rd64(r + 48);
		if (d64 != 0 || cd64 != 0)
			return ZBAD(err, z, z64 + 16, "disk number %u/%u: multi-disk (spanned) archives are not supported",
				    d64, cd64);
		if (nd64 != nt64)
			return ZBAD(err, z, z64 + 24, "entries on this disk (%llu) != total entries (%llu)",
				    (unsigned long long)nd64, (unsigned long long)nt64);
		/* Where the classic record is not a placeholder it must tell the same story. */
		if ((disk != 0xFFFF && disk != 0) || (cd_disk != 0xFFFF && cd_disk != 0) ||
		    (n_disk != 0xFFFF && n_disk != nd64) || (n_total != 0xFFFF && n_total != nt64) ||
		    (cd_size != 0xFFFFFFFFu && cd_size != size64) || (cd_off != 0xFFFFFFFFu && cd_off != off64))
			return ZBAD(err, z, eocd, "end record disagrees with the ZIP64 end record");
		*count = nt64;
		z->cd_offset = off64;
		z->cd_size = size64;
		*cd_end = z64;
	}
	uint64_t end;
	if (!muse_add_u64(z->cd_offset, z->cd_size, &end) || end != *cd_end)
		return ZBAD(err, z, *cd_end, "central directory at %llu of %llu bytes does not end where the end record begins",
			    (unsigned long long)z->cd_offset, (unsigned long long)z->cd_size);
	if (*count > z->cd_size / CENTRAL_SIZE)
		return ZBAD(err, z, *cd_end, "%llu entries cannot fit in a central directory of %llu bytes",
			    (unsigned long long)*count, (unsigned long long)z->cd_size);
	if (*count > MUSE_ZIP_MAX_ENTRIES)
		return muse_err_at(err, MUSE_ERR_LIMIT, z->path, *cd_end, "zip: %llu entries exceed the cap of %u",
				   (unsigned long long)*count, MUSE_ZIP_MAX_ENTRIES);
	return MUSE_OK;
}

/* Parses one central directory record at *pos (advanced past it) into e. */
static muse_status read_central(muse_zip *z, uint64_t *pos, uint64_t cd_end, muse_zip_entry *e, uint16_t *flags_out,
				muse_err *err)
{
	uint64_t p = *pos;
	if (cd_end - p < CENTRAL_SIZE)
		return ZBAD(err, z, p, "central directory record runs past the directory end");
	const uint8_t *c = z->data + p;
	if (rd32(c) != SIG_CENTRAL)
		return ZBAD(err, z, p, "bad central directory signature 0x%08x", rd32(c));
	uint16_t flags = rd16(c + 8), method = rd16(c + 10);
	uint32_t crc = rd32(c + 16), csize = rd32(c + 20), usize = rd32(c + 24);
	uint16_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32), disk = rd16(c + 34);
	uint32_t lho = rd32(c + 42);
	uint64_t var = (uint64_t)nlen + xlen + clen;
	if (cd_end - p - CENTRAL_SIZE < var)
		return ZBAD(err, z, p, "central directory record's name/extra/comment run past the directory end");

	if (flags & 0x0001)
		return ZBAD(err, z, p + 8, "entry is encrypted (flag bit 0): not supported");
	if (flags & ~FLAGS_ALLOWED)
		return ZBAD(err, z, p + 8, "unsupported general-purpose flag bits 0x%04x", flags & ~FLAGS_ALLOWED);

	const uint8_t *name = c + CENTRAL_SIZE;
	const char *why = name_problem(name, nlen);
	if (why) {
		/* Quote the name when it is printable text (control bytes become '?' in the message anyway). */
		bool show = nlen <= 256 && muse_utf8_valid((const char *)name, nlen) && !memchr(name, 0, nlen);
		return ZBAD(err, z, p + CENTRAL_SIZE, "entry name '%.*s' %s", show ? (int)nlen : 0, (const char *)name,
			    why);
	}

	const uint8_t *z64;
	uint16_t z64_len;
	muse_status s = scan_extra(z, p + CENTRAL_SIZE + nlen, xlen, &z64, &z64_len, err);
	if (s)
		return s;
	uint64_t u = usize, cs = csize, off = lho;
	uint32_t need = (usize == 0xFFFFFFFFu) * 8u + (csize == 0xFFFFFFFFu) * 8u + (lho == 0xFFFFFFFFu) * 8u +
			(disk == 0xFFFF) * 4u;
	if (need || z64) {
		if (!z64)
			return ZBAD(err, z, p, "entry has ZIP64 placeholder values but no ZIP64 extra field");
		if (z64_len != need)
			return ZBAD(err, z, p + CENTRAL_SIZE + nlen, "ZIP64 extra field has %u bytes, expected %u",
				    z64_len, need);
		const uint8_t *q = z64;
		if (usize == 0xFFFFFFFFu)
			u = rd64(q), q += 8;
		if (csize == 0xFFFFFFFFu)
			cs = rd64(q), q += 8;
		if (lho == 0xFFFFFFFFu)
			off = rd64(q), q += 8;
		if (disk == 0xFFFF)
			disk = rd32(q) ? 1 : 0;
	}
	if (disk != 0)
		return ZBAD(err, z, p + 34, "entry starts on disk %u: spanned archives are not supported", disk);
	if (method == 0 && cs != u)
		return ZBAD(err, z, p + 20, "stored entry has compressed size %llu != uncompressed size %llu",
			    (unsigned long long)cs, (unsigned long long)u);

	e->name = malloc((size_t)nlen + 1);
	if (!e->name)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", z->path);
	memcpy(e->name, name, nlen);
	e->name[nlen] = 0;
	e->name_len = nlen;
	e->header_offset = off;
	e->cd_offset = p;
	e->size = u;
	e->csize = cs;
	e->method = method;
	e->crc32 = crc;
	*flags_out = flags;
	*pos = p + CENTRAL_SIZE + var;
	return MUSE_OK;
}

/* Does a data descriptor of the given shape sit at d and agree with the CD? Returns its length or 0. */
static uint64_t match_descriptor(const muse_zip *z, uint64_t d, const muse_zip_entry *e, bool sig, bool wide)
{
	uint64_t len = (sig ? 4u : 0u) + 4u + (wide ? 16u : 8u);
	if (d > z->cd_offset || z->cd_offset - d < len)
		return 0;
	const uint8_t *q = z->data + d;
	if (sig) {
		if (rd32(q) != SIG_DESC)
			return 0;
		q += 4;
	}
	if (rd32(q) != e->crc32)
		return 0;
	uint64_t cs = wide ? rd64(q + 4) : rd32(q + 4), us = wide ? rd64(q + 12) : rd32(q + 8);
	return cs == e->csize && us == e->size ? len : 0;
}

/* Cross-checks the local header of e (its CD record had flags) and sets data_offset and end. */
static muse_status check_local(muse_zip *z, muse_zip_entry *e, uint16_t flags, muse_err *err)
{
	uint64_t h = e->header_offset;
	if (h > z->cd_offset || z->cd_offset - h < LOCAL_SIZE)
		return ZBAD(err, z, e->cd_offset + 42, "entry '%s': local header offset %llu is not before the central directory",
			    e->name, (unsigned long long)h);
	const uint8_t *l = z->data + h;
	if (rd32(l) != SIG_LOCAL)
		return ZBAD(err, z, h, "entry '%s': no local header signature at its offset", e->name);
	uint16_t lflags = rd16(l + 6), lmethod = rd16(l + 8), nlen = rd16(l + 26), xlen = rd16(l + 28);
	uint32_t lcrc = rd32(l + 14), lcs = rd32(l + 18), lus = rd32(l + 22);
	if (lflags != flags)
		return ZBAD(err, z, h + 6, "entry '%s': local flags 0x%04x != central directory flags 0x%04x", e->name,
			    lflags, flags);
	if (lmethod != e->method)
		return ZBAD(err, z, h + 8, "entry '%s': local compression method %u != central directory method %u",
			    e->name, lmethod, e->method);
	uint64_t var = (uint64_t)nlen + xlen;
	if (z->cd_offset - h - LOCAL_SIZE < var)
		return ZBAD(err, z, h + 26, "entry '%s': local name/extra run into the central directory", e->name);
	if (nlen != e->name_len || memcmp(l + LOCAL_SIZE, e->name, nlen) != 0)
		return ZBAD(err, z, h + LOCAL_SIZE, "entry '%s': local header name differs from the central directory name",
			    e->name);
	const uint8_t *z64;
	uint16_t z64_len;
	muse_status s = scan_extra(z, h + LOCAL_SIZE + nlen, xlen, &z64, &z64_len, err);
	if (s)
		return s;

	bool deferred = (flags & 0x0008) && lcrc == 0 && lcs == 0 && lus == 0;
	if (!deferred) {
		/* The local copy of CRC and sizes is present: it must match the CD exactly. */
		uint64_t lc = lcs, lu = lus;
		if (lcs == 0xFFFFFFFFu || lus == 0xFFFFFFFFu) {
			if (!z64 || z64_len < 16)
				return ZBAD(err, z, h + 18, "entry '%s': local ZIP64 sizes missing", e->name);
			lu = rd64(z64);
			lc = rd64(z64 + 8);
		}
		if (lcrc != e->crc32 || lc != e->csize || lu != e->size)
			return ZBAD(err, z, h + 14,
				    "entry '%s': local CRC/sizes (%08x, %llu, %llu) differ from the central directory (%08x, %llu, %llu)",
				    e->name, lcrc, (unsigned long long)lc, (unsigned long long)lu, e->crc32,
				    (unsigned long long)e->csize, (unsigned long long)e->size);
	}
	e->data_offset = h + LOCAL_SIZE + var;
	uint64_t data_end;
	if (!muse_add_u64(e->data_offset, e->csize, &data_end) || data_end > z->cd_offset)
		return ZBAD(err, z, e->data_offset, "entry '%s': %llu bytes of data run into the central directory",
			    e->name, (unsigned long long)e->csize);
	e->end = data_end;
	if (flags & 0x0008) {
		/* torch's miniz writes "PK\7\10", CRC, and 32- or 64-bit sizes, and nothing for empty entries. */
		uint64_t len = match_descriptor(z, data_end, e, true, false);
		if (!len)
			len = match_descriptor(z, data_end, e, true, true);
		if (!len && e->csize)
			len = match_descriptor(z, data_end, e, false, false);
		if (!len && e->csize)
			len = match_descriptor(z, data_end, e, false, true);
		if (!len && e->csize)
			return ZBAD(err, z, data_end, "entry '%s': data descriptor missing or differs from the central directory",
				    e->name);
		e->end += len;
	}
	return MUSE_OK;
}

muse_status muse_zip_open(muse_zip *z, const char *path, const uint8_t *data, uint64_t size, muse_err *err)
{
	memset(z, 0, sizeof *z);
	z->path = path;
	z->data = data;
	z->size = size;
	muse_strmap_init(&z->by_name);
	muse_status s;
	size_t *order = NULL;

	uint64_t eocd = 0, count = 0, cd_end = 0;
	if ((s = find_eocd(z, &eocd, err)) || (s = read_end(z, eocd, &count, &cd_end, err)))
		goto fail;
	if (count) {
		z->entries = calloc((size_t)count, sizeof *z->entries);
		order = malloc((size_t)count * sizeof *order);
		if (!z->entries || !order) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
			goto fail;
		}
	}
	uint64_t pos = z->cd_offset;
	for (uint64_t i = 0; i < count; i++) {
		muse_zip_entry *e = &z->entries[i];
		uint16_t flags = 0;
		if ((s = read_central(z, &pos, cd_end, e, &flags, err)))
			goto fail;
		z->n_entries++;
		size_t old;
		int r = muse_strmap_put(&z->by_name, e->name, e->name_len, (size_t)i, &old);
		if (r < 0) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
			goto fail;
		}
		if (r == 0) {
			s = ZBAD(err, z, e->cd_offset, "duplicate entry '%s' (also entry %zu)", e->name, old);
			goto fail;
		}
		if ((s = check_local(z, e, flags, err)))
			goto fail;
		order[i] = (size_t)i;
	}
	if (pos != cd_end) {
		s = ZBAD(err, z, pos, "%llu unaccounted bytes at the end of the central directory",
			 (unsigned long long)(cd_end - pos));
		goto fail;
	}
	/*
	 * Coverage: entries tile the file from byte 0 to the central directory
	 * with no gaps and no overlaps. Overlaps are how zip bombs and
	 * two-readers-disagree tricks work; gaps could hide a second payload
	 * (and a file that does not start with an entry is a polyglot).
	 */
	if (count)
		qsort_r(order, (size_t)count, sizeof *order, cmp_by_header, z->entries);
	uint64_t expect = 0;
	for (uint64_t i = 0; i < count; i++) {
		const muse_zip_entry *e = &z->entries[order[i]];
		if (e->header_offset < expect) {
			s = ZBAD(err, z, e->header_offset, "entry '%s' overlaps the entry before it (which ends at byte %llu)",
				 e->name, (unsigned long long)expect);
			goto fail;
		}
		if (e->header_offset > expect) {
			s = ZBAD(err, z, expect, "%llu unaccounted bytes before entry '%s'",
				 (unsigned long long)(e->header_offset - expect), e->name);
			goto fail;
		}
		expect = e->end;
	}
	if (expect != z->cd_offset) {
		s = ZBAD(err, z, expect, "%llu unaccounted bytes before the central directory",
			 (unsigned long long)(z->cd_offset - expect));
		goto fail;
	}
	free(order);
	return MUSE_OK;
fail:
	free(order);
	muse_zip_close(z);
	return s;
}

void muse_zip_close(muse_zip *z)
{
	if (!z)
		return;
	for (size_t i = 0; i < z->n_entries; i++)
		free(z->entries[i].name);
	free(z->entries);
	muse_strmap_free(&z->by_name);
	memset(z, 0, sizeof *z);
}

ptrdiff_t muse_zip_find(const muse_zip *z, const char *name)
{
	size_t v;
	if (!z->n_entries || !muse_strmap_get(&z->by_name, name, strlen(name), &v))
		return -1;
	return (ptrdiff_t)v;
}

muse_status muse_zip_verify(muse_zip *z, size_t i, muse_err *err)
{
	muse_zip_entry *e = &z->entries[i];
	if (e->method != 0)
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, z->path, e->cd_offset + 10,
				   "zip: entry '%s': compression method %u: only stored entries can be read", e->name,
				   e->method);
	int st = __atomic_load_n(&e->crc_state, __ATOMIC_ACQUIRE);
	if (st == 0) {
		/* crc32_z takes a size_t length, so multi-GB storages need no chunking. */
		uLong crc = crc32_z(0L, Z_NULL, 0);
		if (e->size)
			crc = crc32_z(crc, z->data + e->data_offset, (z_size_t)e->size);
		st = (uint32_t)crc == e->crc32 ? 1 : -1;
		__atomic_store_n(&e->crc_state, st, __ATOMIC_RELEASE);
	}
	if (st < 0)
		return muse_err_at(err, MUSE_ERR_CHECK, z->path, e->data_offset,
				   "zip: entry '%s': CRC-32 mismatch (the central directory says %08x)", e->name, e->crc32);
	return MUSE_OK;
}
