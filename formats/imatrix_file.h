/* imatrix_file.h: llama.cpp importance-matrix files (GGUF "<name>.in_sum2"/"<name>.counts", and the legacy .dat) as per-tensor weights. */
#ifndef MUSE_IMATRIX_FILE_H
#define MUSE_IMATRIX_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/status.h"

#define MUSE_IMATRIX_MAX_NAME 4096          /* bytes in an entry name (legacy files) */
#define MUSE_IMATRIX_MAX_ENTRIES (1u << 20) /* entries in one file */
#define MUSE_IMATRIX_MAX_VALUES (1ull << 32) /* values in one entry */

/*
 * One tensor's importance: n_mat matrices (experts; 1 for a dense tensor)
 * of n_per_row weights each, already normalized as llama-quantize does:
 * GGUF files give in_sum2 / count per matrix, and a matrix whose count is
 * 0 gets weight 1 for every column (that expert saw no tokens: it is
 * quantized as without an imatrix, the other experts keep their data);
 * legacy files give sums / ncall (raw sums when ncall <= 0).
 */
typedef struct muse_imatrix_entry {
	char *name;          /* the tensor's GGUF name, e.g. "blk.3.ffn_down_exps.weight" */
	uint64_t n_per_row;
	uint32_t n_mat;
	float *w;            /* n_mat * n_per_row weights */
	int64_t *counts;     /* n_mat token counts as read (GGUF: rounded .counts; legacy: ncall) */
	uint32_t n_empty;    /* matrices with count 0 */
} muse_imatrix_entry;

typedef struct muse_imatrix {
	char *path;
	bool legacy;                 /* the .dat format */
	muse_imatrix_entry *e;       /* sorted by name */
	size_t n;
	char **datasets;             /* imatrix.datasets, or the legacy trailing file name */
	size_t n_datasets;
	uint32_t chunk_count;        /* imatrix.chunk_count, or the legacy trailing count (0: absent) */
	uint32_t chunk_size;         /* imatrix.chunk_size (0 for legacy) */
} muse_imatrix;

/*
 * Reads path, GGUF (by magic) or legacy. Strict: every length, count and
 * name is checked against the bytes present and the caps above; GGUF files
 * must say general.type "imatrix"-style metadata (imatrix.datasets,
 * imatrix.chunk_count, imatrix.chunk_size, as llama-quantize requires),
 * pair every .in_sum2 with a .counts (F32, in_sum2 elements a multiple of
 * the count), and hold only finite, non-negative values; names are unique.
 * Errors name the file and, where one applies, the entry and byte offset.
 */
muse_status muse_imatrix_read(const char *path, muse_imatrix **out, muse_err *err);
void muse_imatrix_free(muse_imatrix *im); /* NULL is a no-op */

/* Keeps the entries for which keep(name, ctx) is true (their order kept), frees the others. */
void muse_imatrix_keep(muse_imatrix *im, bool (*keep)(const char *name, void *ctx), void *ctx);
/* The entry for a tensor name, or NULL. */
const muse_imatrix_entry *muse_imatrix_find(const muse_imatrix *im, const char *name);

#endif
