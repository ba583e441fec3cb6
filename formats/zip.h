/* zip.h: a strict read-only ZIP parser over a mapped file, for the stored-only archives torch.save writes. */
#ifndef MUSE_ZIP_H
#define MUSE_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/status.h"
#include "../lib/strmap.h"

/*
 * What is accepted (everything else is refused at open with the byte offset):
 * - exactly one End Of Central Directory record whose comment ends at EOF
 *   (a second candidate that also ends at EOF is ambiguous and refused);
 * - ZIP64 (locator + record) where present; the 32-bit fields, where not
 *   saturated, must agree with it; one disk only;
 * - the central directory (CD) is the source of truth and must end exactly
 *   where the (ZIP64) EOCD begins; every local header is cross-checked
 *   against it (name, method, flags, and CRC/sizes unless deferred to a data
 *   descriptor, which must then match the CD);
 * - flag bits limited to 3 (data descriptor) and 11 (UTF-8 names); stored
 *   entries (method 0) have compressed size == uncompressed size. Entries of
 *   other methods are parsed and placed (so a caller can say what the archive
 *   is, e.g. TorchScript, before refusing it) but never read: muse_zip_verify
 *   refuses them and callers must check `method`;
 * - names: non-empty UTF-8 relative paths without "." / ".." / empty
 *   components, backslashes, control bytes or drive letters; no duplicates;
 * - each entry's bytes (local header .. data descriptor) lie before the CD
 *   and overlap no other entry.
 * CRC-32 is not checked at open (a multi-GB checkpoint would be read twice);
 * muse_zip_verify checks one entry and remembers the answer.
 */

#define MUSE_ZIP_MAX_ENTRIES (1u << 20)
#define MUSE_ZIP_MAX_NAME 4096

typedef struct muse_zip_entry {
	char *name;             /* owned, NUL-terminated, validated as above */
	uint32_t name_len;
	uint64_t header_offset; /* local header */
	uint64_t cd_offset;     /* this entry's central directory record */
	uint64_t data_offset;   /* first byte of the stored data */
	uint64_t size;          /* uncompressed size (== bytes at data_offset when method is 0) */
	uint64_t csize;         /* bytes at data_offset */
	uint16_t method;        /* 0 = stored; anything else cannot be read here */
	uint64_t end;           /* one past the entry's last byte (data descriptor included) */
	uint32_t crc32;         /* from the central directory */
	int crc_state;          /* 0 unchecked, 1 good, -1 bad; accessed atomically */
} muse_zip_entry;

typedef struct muse_zip {
	const char *path;       /* borrowed, for messages */
	const uint8_t *data;    /* borrowed: the caller's map outlives the zip */
	uint64_t size;
	muse_zip_entry *entries; /* in central directory order */
	size_t n_entries;
	uint64_t cd_offset, cd_size;
	muse_strmap by_name;
} muse_zip;

/* Parses and validates the container in data[0..size). On failure z holds nothing to free. */
muse_status muse_zip_open(muse_zip *z, const char *path, const uint8_t *data, uint64_t size, muse_err *err);
void muse_zip_close(muse_zip *z); /* no-op on a zeroed or closed zip */

/* Index of the entry named name (exact bytes), or -1. */
ptrdiff_t muse_zip_find(const muse_zip *z, const char *name);

/* Checks entry i's CRC-32 against the central directory once; later calls return the cached answer. Thread-safe. */
muse_status muse_zip_verify(muse_zip *z, size_t i, muse_err *err);

#endif
