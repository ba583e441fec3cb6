/* reader.h: the common reader handle every input format yields (open, iterate tensors, read data, close). */
#ifndef MUSE_READER_H
#define MUSE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/kv.h"
#include "../lib/mapfile.h"
#include "../lib/status.h"
#include "../lib/tensor.h"

typedef struct muse_reader muse_reader;

typedef struct muse_reader_ops {
	/* Copies tensor i, dense row-major, into dst (t->nbytes bytes). NULL: contiguous copy from the map. */
	muse_status (*read)(muse_reader *r, size_t i, void *dst, muse_err *err);
	/* Copies rows [r0, r0 + nr) of tensor i into dst (muse_reader_read_rows); NULL: through read or the map. */
	muse_status (*read_rows)(muse_reader *r, size_t i, uint64_t r0, uint64_t nr, void *dst, muse_err *err);
	/* Frees priv. */
	void (*free_priv)(muse_reader *r);
} muse_reader_ops;

/*
 * An opened model: its files (mmapped, owned), tensors in file order
 * (owned), and metadata (owned). For GGUF the metadata is the file's KV
 * list; for safetensors it is __metadata__ (strings), for PyTorch files it
 * is empty. Readers validate everything at open: once open succeeds every
 * descriptor's bytes lie inside its file.
 */
struct muse_reader {
	const char *format;       /* static string: "safetensors", "gguf", "pytorch" */
	char *path;               /* what the user named (file, index or directory) */
	muse_map *files;
	uint32_t n_files;
	muse_tensor *tensors;
	size_t n_tensors, cap_tensors;
	muse_meta meta;
	uint32_t version;         /* format version where there is one (GGUF 2/3, torch archive version) */
	uint64_t data_offset;     /* start of the data section in a single-file format, else 0 */
	uint32_t alignment;       /* GGUF alignment; 0 elsewhere */
	const muse_reader_ops *ops;
	void *priv;
};

/* Detects the format by content (never by extension) and opens it. Directories are HF checkpoints. */
muse_status muse_reader_open(const char *path, muse_reader **out, muse_err *err);
void muse_reader_free(muse_reader *r); /* NULL is a no-op */

/* A borrowed view of tensor i's bytes in the mmap, or NULL when the tensor is strided or computed (a view's). */
const uint8_t *muse_reader_view(const muse_reader *r, size_t i);
/* Drops tensor i's mapped pages from the resident set after use (views stay valid; see muse_map_release). */
void muse_reader_release(const muse_reader *r, size_t i);
/* Copies tensor i (dense, row-major, t->nbytes bytes) into dst. */
muse_status muse_reader_read(muse_reader *r, size_t i, void *dst, muse_err *err);
/*
 * Rows of a tensor: a row is its last dimension (a 1-D tensor is one row);
 * muse_reader_rows gives the count, and a row's bytes are nbytes / rows.
 */
uint64_t muse_reader_rows(const muse_tensor *t);
/* Copies rows [r0, r0 + nr) of tensor i (dense, in its dtype) into dst; safe from several threads at once. */
muse_status muse_reader_read_rows(muse_reader *r, size_t i, uint64_t r0, uint64_t nr, void *dst, muse_err *err);
/* The file index a computed tensor has (no bytes in any file: read it through muse_reader_read*). */
#define MUSE_READER_NO_FILE UINT32_MAX

/* ---- for format implementations ---- */
muse_reader *muse_reader_new(const char *format, const char *path);
/* Maps path and appends it to r->files; *idx gets its index. */
muse_status muse_reader_add_file(muse_reader *r, const char *path, uint32_t *idx, muse_err *err);
/* Appends a zeroed tensor; NULL on allocation failure. */
muse_tensor *muse_reader_add_tensor(muse_reader *r);

/* Format entry points (each fills a fresh reader; on failure *out is NULL). */
muse_status muse_safetensors_open(const char *path, muse_reader **out, muse_err *err);      /* single file */
muse_status muse_safetensors_open_index(const char *index_path, muse_reader **out, muse_err *err); /* sharded */
muse_status muse_gguf_open(const char *path, muse_reader **out, muse_err *err);
muse_status muse_pytorch_open(const char *path, muse_reader **out, muse_err *err);          /* .bin/.pt zip */
muse_status muse_pytorch_open_index(const char *index_path, muse_reader **out, muse_err *err);

#endif
