/* hf2gguf.c: HF directory -> GGUF: the HF view (hf_view.h) copied into a GGUF writer. */
#include <stdio.h>

#include "../lib/progress.h"
#include "hf2gguf.h"
#include "hf_view.h"
#include "model_copy.h"
#include "model_writer.h"
#include "reader.h"

muse_status muse_hf2gguf(const char *dir, const char *out, muse_dtype want, uint64_t shard_bytes, bool quiet,
			 muse_err *err)
{
	muse_hf2gguf_opts o = { .want = want, .shard_bytes = shard_bytes, .quiet = quiet };
	return muse_hf2gguf_ex(dir, out, &o, err);
}

muse_status muse_hf2gguf_ex(const char *dir, const char *out, const muse_hf2gguf_opts *opt, muse_err *err)
{
	muse_hf_view_opts vo = { .want = opt->want, .quantize = opt->quantize, .quiet = opt->quiet };
	muse_reader *v = NULL;
	muse_model_writer *w = NULL;
	muse_status s;
	if ((s = muse_hf_view_open(dir, &vo, &v, err)) ||
	    (s = muse_model_writer_create(&w, MUSE_OUT_GGUF, out, opt->shard_bytes, err)) ||
	    (s = muse_model_writer_set_meta(w, &v->meta, NULL, err)) || (s = muse_model_copy_declare(v, w, err)) ||
	    (s = muse_model_writer_begin(w, err)))
		goto done;
	uint64_t total = 0;
	for (size_t i = 0; i < v->n_tensors; i++)
		total += muse_hf_view_source_bytes(v, i);
	muse_progress pg;
	muse_progress_start(&pg, "convert", total, opt->quiet);
	if ((s = muse_model_copy_data(v, w, 0, &pg, muse_hf_view_source_bytes, err)) ||
	    (s = muse_model_writer_finish(w, err)))
		goto done;
	muse_progress_end(&pg);
	if (!opt->quiet) {
		uint64_t ft = 0;
		muse_meta_get_u64(&v->meta, "general.file_type", &ft);
		fprintf(stderr, "muse: wrote %zu tensors (%s, %s) to %s\n", v->n_tensors,
			muse_meta_get_str(&v->meta, "general.architecture"),
			ft == 0 ? "F32" : ft == 1 ? "F16" : ft == 7 ? "Q8_0" : "BF16", out);
	}
done:
	muse_model_writer_free(w);
	muse_reader_free(v);
	return s;
}
