/* fuzz_common.h: what every reader's fuzz target does: hand the bytes over as a file, check the reader's promises. */
#ifndef MUSE_FUZZ_COMMON_H
#define MUSE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../formats/reader.h"

#define FUZZ_READ_CAP (1u << 20) /* tensors above this are only probed; their bounds were still validated */

typedef muse_status (*fuzz_open_fn)(const char *path, muse_reader **out, muse_err *err);

/*
 * Opens data through open_fn (as /proc/self/fd/N of a memfd), then checks:
 * every contiguous range or strided storage lies in its file, every tensor
 * up to the cap reads back with MUSE_OK (or `also_ok`, e.g. a CRC mismatch),
 * metadata can be walked to its last byte, and a failed open leaves *out NULL
 * and exactly one line in err. Any broken promise aborts. Returns the reader
 * (for extra checks) or NULL; the caller frees it and closes *fd.
 */
static muse_reader *fuzz_open_and_check(const uint8_t *data, size_t size, const char *name, fuzz_open_fn open_fn,
					muse_status also_ok, int *fd)
{
	*fd = memfd_create(name, MFD_CLOEXEC);
	if (*fd < 0)
		return NULL;
	for (size_t off = 0; off < size;) {
		ssize_t w = write(*fd, data + off, size - off);
		if (w <= 0)
			return NULL;
		off += (size_t)w;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", *fd);
	muse_reader *r = NULL;
	muse_err err = { 0 };
	if (open_fn(path, &r, &err) != MUSE_OK) {
		if (r || !err.msg[0] || strchr(err.msg, '\n'))
			abort();
		return NULL;
	}
	uint8_t *buf = malloc(FUZZ_READ_CAP);
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < r->n_tensors && buf; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (t->file >= r->n_files)
			abort();
		uint64_t fsize = r->files[t->file].size, span = t->strided ? t->storage_nbytes : t->nbytes;
		if (t->offset > fsize || span > fsize - t->offset)
			abort();
		const uint8_t *v = muse_reader_view(r, i);
		if (v && t->nbytes)
			sink ^= v[0] ^ v[t->nbytes - 1];
		if (t->nbytes <= FUZZ_READ_CAP) {
			muse_status s = muse_reader_read(r, i, buf, &err);
			if (s != MUSE_OK && s != also_ok)
				abort();
		}
	}
	for (size_t i = 0; i < r->meta.n; i++) {
		const muse_kv *kv = &r->meta.kv[i];
		sink ^= (uint8_t)strlen(kv->key);
		if (kv->type == MUSE_KV_STRING && kv->v.s.len)
			sink ^= (uint8_t)kv->v.s.ptr[kv->v.s.len - 1];
		if (kv->type == MUSE_KV_ARRAY && kv->n) {
			if (kv->arr_type == MUSE_KV_STRING) {
				const muse_str *s = kv->arr;
				sink ^= (uint8_t)s[kv->n - 1].ptr[s[kv->n - 1].len];
			} else {
				sink ^= ((const uint8_t *)kv->arr)[kv->n * muse_kv_type_size(kv->arr_type) - 1];
			}
		}
	}
	(void)sink;
	free(buf);
	return r;
}

#endif
