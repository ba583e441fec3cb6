/* fuzz_safetensors.c: libFuzzer target for the single-file safetensors reader (header parse, offsets, data reads). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = -1;
	muse_reader_free(fuzz_open_and_check(data, size, "fuzz.safetensors", muse_safetensors_open, MUSE_OK, &fd));
	if (fd >= 0)
		close(fd);
	return 0;
}
