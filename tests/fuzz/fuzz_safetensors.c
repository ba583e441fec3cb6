/* fuzz_safetensors.c: libFuzzer target for the single-file safetensors reader (header parse, offsets, data reads). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../formats/reader.h"

#define READ_CAP (1u << 20) /* tensors above this are not copied; their bounds were still validated */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
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
	muse_err err = { 0 };
	muse_reader *r = NULL;
	if (muse_safetensors_open(path, &r, &err) == MUSE_OK) {
		uint8_t *buf = malloc(READ_CAP);
		for (size_t i = 0; buf && i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			/* the reader promised: every range lies in its file */
			if (t->offset > r->files[t->file].size || t->nbytes > r->files[t->file].size - t->offset)
				abort();
			if (t->nbytes <= READ_CAP && muse_reader_read(r, i, buf, &err) != MUSE_OK)
				abort();
		}
		free(buf);
		muse_reader_free(r);
	}
	close(fd);
	return 0;
}
