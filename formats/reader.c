/* reader.c: the shared reader handle and content-based format detection. */
#include "../lib/path.h"
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

muse_reader *muse_reader_new(const char *format, const char *path)
{
	muse_reader *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->format = format;
	r->path = strdup(path);
	if (!r->path) {
		free(r);
		return NULL;
	}
	muse_meta_init(&r->meta);
	return r;
}

void muse_reader_free(muse_reader *r)
{
	if (!r)
		return;
	if (r->ops && r->ops->free_priv)
		r->ops->free_priv(r);
	for (size_t i = 0; i < r->n_tensors; i++)
		free(r->tensors[i].name);
	free(r->tensors);
	for (uint32_t i = 0; i < r->n_files; i++)
		muse_map_close(&r->files[i]);
	free(r->files);
	muse_meta_free(&r->meta);
	free(r->path);
	free(r);
}

muse_status muse_reader_add_file(muse_reader *r, const char *path, uint32_t *idx, muse_err *err)
{
	muse_map *f = realloc(r->files, (r->n_files + 1) * sizeof *f);
	if (!f)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	r->files = f;
	muse_status s = muse_map_open(path, &r->files[r->n_files], err);
	if (s)
		return s;
	if (idx)
		*idx = r->n_files;
	r->n_files++;
	return MUSE_OK;
}

muse_tensor *muse_reader_add_tensor(muse_reader *r)
{
	if (r->n_tensors == r->cap_tensors) {
		size_t cap = r->cap_tensors ? r->cap_tensors * 2 : 64;
		muse_tensor *t = realloc(r->tensors, cap * sizeof *t);
		if (!t)
			return NULL;
		r->tensors = t;
		r->cap_tensors = cap;
	}
	muse_tensor *t = &r->tensors[r->n_tensors++];
	memset(t, 0, sizeof *t);
	return t;
}

const uint8_t *muse_reader_view(const muse_reader *r, size_t i)
{
	const muse_tensor *t = &r->tensors[i];
	if (t->strided || t->file >= r->n_files)
		return NULL;
	const muse_map *m = &r->files[t->file];
	return m->data ? m->data + t->offset : (const uint8_t *)"";
}

void muse_reader_release(const muse_reader *r, size_t i)
{
	const muse_tensor *t = &r->tensors[i];
	if (!t->strided && t->file < r->n_files)
		muse_map_release(&r->files[t->file], t->offset, t->nbytes);
}

muse_status muse_reader_read(muse_reader *r, size_t i, void *dst, muse_err *err)
{
	if (r->ops && r->ops->read)
		return r->ops->read(r, i, dst, err);
	if (r->ops && r->ops->read_rows)
		return r->ops->read_rows(r, i, 0, muse_reader_rows(&r->tensors[i]), dst, err);
	const uint8_t *v = muse_reader_view(r, i);
	if (!v)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s' has no contiguous view",
				    r->path, r->tensors[i].name);
	if (r->tensors[i].nbytes)
		memcpy(dst, v, r->tensors[i].nbytes);
	return MUSE_OK;
}

uint64_t muse_reader_rows(const muse_tensor *t)
{
	uint64_t cols = t->ndim >= 2 ? t->shape[t->ndim - 1] : t->nelements;
	return cols ? t->nelements / cols : 0;
}

muse_status muse_reader_read_rows(muse_reader *r, size_t i, uint64_t r0, uint64_t nr, void *dst, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	uint64_t rows = muse_reader_rows(t);
	if (r0 > rows || nr > rows - r0)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: tensor '%s': rows %llu..%llu of %llu", r->path, t->name,
				    (unsigned long long)r0, (unsigned long long)(r0 + nr), (unsigned long long)rows);
	if (r->ops && r->ops->read_rows)
		return r->ops->read_rows(r, i, r0, nr, dst, err);
	uint64_t row_bytes = rows ? t->nbytes / rows : 0;
	const uint8_t *v = muse_reader_view(r, i);
	if (v) {
		if (nr)
			memcpy(dst, v + r0 * row_bytes, (size_t)(nr * row_bytes));
		return MUSE_OK;
	}
	if (r0 == 0 && nr == rows)
		return muse_reader_read(r, i, dst, err);
	/* strided storage: the whole tensor once, then the rows (readers of strided data are small PyTorch files) */
	uint8_t *all = t->nbytes <= SIZE_MAX ? malloc(t->nbytes ? (size_t)t->nbytes : 1) : NULL;
	if (!all)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
	muse_status s = muse_reader_read(r, i, all, err);
	if (!s && nr)
		memcpy(dst, all + r0 * row_bytes, (size_t)(nr * row_bytes));
	free(all);
	return s;
}

static int exists(const char *dir, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", dir, name);
	struct stat st;
	return stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

/* An HF checkpoint directory: sharded index first, then single files; safetensors before .bin. */
static muse_status open_dir(const char *path, muse_reader **out, muse_err *err)
{
	char p[4096];
	if (exists(path, "model.safetensors.index.json", p, sizeof p))
		return muse_safetensors_open_index(p, out, err);
	if (exists(path, "model.safetensors", p, sizeof p))
		return muse_safetensors_open(p, out, err);
	if (exists(path, "pytorch_model.bin.index.json", p, sizeof p))
		return muse_pytorch_open_index(p, out, err);
	if (exists(path, "pytorch_model.bin", p, sizeof p))
		return muse_pytorch_open(p, out, err);
	return muse_err_set(err, MUSE_ERR_FORMAT,
			    "%s: no model.safetensors[.index.json] or pytorch_model.bin[.index.json] in directory",
			    path);
}

muse_status muse_reader_open(const char *path, muse_reader **out, muse_err *err)
{
	*out = NULL;
	struct stat st;
	if (stat(path, &st) < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return open_dir(path, out, err);
	if (!S_ISREG(st.st_mode))
		return muse_err_set(err, MUSE_ERR_IO, "%s: not a regular file", path);

	uint8_t head[16] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	ssize_t n = read(fd, head, sizeof head);
	close(fd);
	if (n < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: read failed: %s", path, strerror(errno));

	if (n >= 4 && !memcmp(head, "GGUF", 4))
		return muse_gguf_open(path, out, err);
	if (n >= 4 && (!memcmp(head, "FUGG", 4)))
		return muse_gguf_open(path, out, err); /* the reader explains the byte order */
	if (n >= 4 && (!memcmp(head, "ggml", 4) || !memcmp(head, "lmgg", 4) || !memcmp(head, "ggjt", 4) ||
		       !memcmp(head, "tjgg", 4) || !memcmp(head, "fmgg", 4) || !memcmp(head, "ggmf", 4)))
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: byte 0: legacy GGML/GGJT file; convert it to GGUF with llama.cpp first", path);
	if (n >= 4 && !memcmp(head, "PK", 2))
		return muse_pytorch_open(path, out, err);
	/* a pickle's PROTO opcode; a safetensors header of 128, 384, ... bytes starts the same way, then '{' at 8 */
	if (n >= 2 && head[0] == 0x80 && head[1] <= 5 && !(n >= 9 && head[8] == '{'))
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: byte 0: legacy (pre-1.6, non-zip) PyTorch file: not supported", path);
	/*
	 * safetensors starts with a little-endian u64 header length capped at 10^8;
	 * JSON text (an index file) read as such a number is always far larger.
	 */
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | head[i];
	if (n >= 8 && hlen > 100000000ull && (head[0] == '{' || head[0] == ' ' || head[0] == '\n' || head[0] == '\t')) {
		if (muse_ends_with(path, ".bin.index.json") || muse_ends_with(path, ".pt.index.json"))
			return muse_pytorch_open_index(path, out, err);
		return muse_safetensors_open_index(path, out, err);
	}
	return muse_safetensors_open(path, out, err);
}
