/* pending.c: TEMPORARY weak fallbacks so the tree links while format readers are being written.
 * Each real definition overrides its weak one; this file is deleted once all readers exist. */
#include "reader.h"

#define PENDING(fn, ...)                                                                         \
	__attribute__((weak)) muse_status fn(const char *path, muse_reader **out, muse_err *err) \
	{                                                                                        \
		*out = NULL;                                                                     \
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: reader not built", path);    \
	}
PENDING(muse_safetensors_open)
PENDING(muse_safetensors_open_index)
PENDING(muse_gguf_open)
PENDING(muse_pytorch_open)
PENDING(muse_pytorch_open_index)

__attribute__((weak)) muse_status muse_dtype_convert(muse_dtype dt, void *dst, muse_dtype st, const void *src, size_t n,
						     muse_err *err)
{
	return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "dtype conversion not built");
}
