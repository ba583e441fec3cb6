/* fuzz_gguf.c: libFuzzer target for the GGUF reader: open from memory (memfd), touch every tensor's bytes, free. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../formats/reader.h"

#define READ_CAP (1u << 20) /* copy at most this much per tensor; larger ones are only probed */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t off = 0;
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);
		if (w <= 0) {
			close(fd);
			return 0;
		}
		off += (size_t)w;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	muse_reader *r = NULL;
	muse_err err = { 0 };
	if (muse_gguf_open(path, &r, &err) == MUSE_OK) {
		uint8_t *buf = malloc(READ_CAP);
		volatile uint8_t sink = 0;
		/* The reader promised every tensor lies inside its file: check by touching the ends. */
		for (size_t i = 0; i < r->n_tensors && buf; i++) {
			const muse_tensor *t = &r->tensors[i];
			if (t->file >= r->n_files || t->offset > r->files[t->file].size ||
			    t->nbytes > r->files[t->file].size - t->offset)
				abort();
			const uint8_t *v = muse_reader_view(r, i);
			if (t->nbytes) {
				sink ^= v[0];
				sink ^= v[t->nbytes - 1];
			}
			if (t->nbytes <= READ_CAP && muse_reader_read(r, i, buf, &err) != MUSE_OK)
				abort();
		}
		/* Metadata is walked the way inspect does it. */
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
		muse_reader_free(r);
	} else if (r || !err.msg[0] || strchr(err.msg, '\n')) {
		abort(); /* failure must leave *out NULL and one line in err */
	}
	close(fd);
	return 0;
}
