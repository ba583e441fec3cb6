/* fuzz_pickle.c: libFuzzer target for the data-only pickle VM on raw pickle bytes (no ZIP around them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	muse_pickle_ctx ctx = { "fuzz", 0, "data.pkl" };
	muse_pickle_result r;
	muse_err err = { 0 };
	if (muse_pickle_load_tensors(data, size, &ctx, &r, &err) == MUSE_OK) {
		/* the VM promised: storage indices valid, names unique and NUL-free, ranks in range */
		for (size_t i = 0; i < r.n_tensors; i++) {
			const muse_pickle_tensor *t = &r.tensors[i];
			if (t->storage >= r.n_storages || t->ndim < 0 || t->ndim > MUSE_MAX_DIMS || !t->name[0] ||
			    t->dtype == MUSE_DT_INVALID)
				abort();
		}
		muse_pickle_result_free(&r);
	} else if (r.n_tensors || r.tensors || r.storages || !err.msg[0]) {
		abort();
	}
	return 0;
}
