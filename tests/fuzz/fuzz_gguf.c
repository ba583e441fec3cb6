/* fuzz_gguf.c: libFuzzer target for the GGUF reader: open from memory, touch every tensor and metadata value, free. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = -1;
	muse_reader_free(fuzz_open_and_check(data, size, "fuzz.gguf", muse_gguf_open, MUSE_OK, &fd));
	if (fd >= 0)
		close(fd);
	return 0;
}
