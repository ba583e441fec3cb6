/* tokenizer_pending.c: TEMPORARY weak fallbacks so the tree links while quant/tokenizer*.c is written; deleted once it lands. */
#include <stdlib.h>

#include "tokenizer.h"

__attribute__((weak)) muse_status muse_tokenizer_from_meta(const muse_meta *meta, const char *path,
							    muse_tokenizer **out, muse_err *err)
{
	*out = NULL;
	return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer not implemented yet", path);
}

__attribute__((weak)) muse_status muse_tokenizer_from_dir(const char *dir, muse_tokenizer **out, muse_err *err)
{
	*out = NULL;
	return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer not implemented yet", dir);
}

__attribute__((weak)) muse_status muse_tokenizer_encode(const muse_tokenizer *t, const char *text, size_t len,
							 bool add_special, bool parse_special, int32_t **ids,
							 size_t *n_ids, muse_err *err)
{
	*ids = NULL;
	*n_ids = 0;
	return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "tokenizer not implemented yet");
}

__attribute__((weak)) size_t muse_tokenizer_n_vocab(const muse_tokenizer *t) { return 0; }
__attribute__((weak)) int32_t muse_tokenizer_bos(const muse_tokenizer *t) { return -1; }
__attribute__((weak)) int32_t muse_tokenizer_eos(const muse_tokenizer *t) { return -1; }
__attribute__((weak)) void muse_tokenizer_free(muse_tokenizer *t) { free(t); }
