/* fuzz_pytorch.c: libFuzzer target for the PyTorch reader (ZIP container, pickle VM, views, strided reads, CRC). */
#include "../../formats/pytorch.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = -1;
	/* Reads may fail only on a CRC mismatch, never crash or read out of bounds. */
	muse_reader *r = fuzz_open_and_check(data, size, "fuzz.bin", muse_pytorch_open, MUSE_ERR_CHECK, &fd);
	if (r) {
		muse_err err;
		muse_pytorch_verify(r, &err);
		muse_reader_free(r);
	}
	if (fd >= 0)
		close(fd);
	return 0;
}
