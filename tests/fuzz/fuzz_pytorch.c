/* fuzz_pytorch.c: libFuzzer target for the PyTorch reader (ZIP container, pickle VM, views, strided reads, CRC). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../formats/pytorch.h"

#define READ_CAP (1u << 20) /* tensors above this are not copied; their bounds were still validated */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.bin", MFD_CLOEXEC);
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
	if (muse_pytorch_open(path, &r, &err) == MUSE_OK) {
		uint8_t *buf = malloc(READ_CAP);
		for (size_t i = 0; buf && i < r->n_tensors; i++) {
			const muse_tensor *t = &r->tensors[i];
			uint64_t fsize = r->files[t->file].size;
			/* the reader promised: contiguous views and strided storages lie in their file */
			uint64_t span = t->strided ? t->storage_nbytes : t->nbytes;
			if (t->offset > fsize || span > fsize - t->offset)
				abort();
			/* reads may fail only on a CRC mismatch, never crash or read out of bounds */
			if (t->nbytes <= READ_CAP) {
				muse_status s = muse_reader_read(r, i, buf, &err);
				if (s != MUSE_OK && s != MUSE_ERR_CHECK)
					abort();
			}
		}
		free(buf);
		muse_pytorch_verify(r, &err);
		muse_reader_free(r);
	}
	close(fd);
	return 0;
}
