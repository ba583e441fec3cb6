/* gguf.h: GGUF limits shared by the reader and the writer, and the streaming two-phase GGUF writer. */
#ifndef MUSE_GGUF_H
#define MUSE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/kv.h"
#include "../lib/status.h"

/*
 * Limits. The reader refuses files beyond them and the writer refuses to
 * produce such files, so whatever muse writes it can read back.
 */
#define MUSE_GGUF_VERSION 3                 /* written; 2 and 3 are read */
#define MUSE_GGUF_DEFAULT_ALIGNMENT 32      /* when general.alignment is absent */
#define MUSE_GGUF_MAX_ALIGNMENT (1u << 20)  /* our cap; ggml has none (real files use 32..4096) */
#define MUSE_GGUF_MAX_STRING (1ull << 30)   /* bytes in one string: ggml's GGUF_MAX_STRING_LENGTH */
#define MUSE_GGUF_MAX_ARRAY (1ull << 30)    /* elements in one array: ggml's GGUF_MAX_ARRAY_ELEMENTS */
#define MUSE_GGUF_MAX_KEY 65535             /* key bytes: the spec's limit */
#define MUSE_GGUF_MAX_NAME 63               /* tensor name bytes: GGML_MAX_NAME - 1 */
#define MUSE_GGUF_MAX_DIMS 4                /* GGML_MAX_DIMS */
#define MUSE_GGUF_MAX_TENSORS (1ull << 20)  /* our cap; the largest real models hold ~10^4-10^5 */

/*
 * Streaming GGUF writer (always GGUF v3, little-endian).
 *
 * Phase 1 declares everything: metadata (muse_gguf_writer_set_meta, written
 * in the given order) and tensors (muse_gguf_writer_add_tensor, written in
 * declaration order). Phase 2, muse_gguf_writer_begin, computes every
 * offset up front (alignment = general.alignment, a u32 power of two, or
 * 32), then writes the header, the KVs, the tensor infos and the padding
 * before the data. Then the caller streams the tensors' bytes in declared
 * order with muse_gguf_writer_write (any chunking, chunks may span
 * tensors); the writer inserts the zero padding after every tensor,
 * the last included, as gguf-py does. muse_gguf_writer_finish checks that
 * every declared byte arrived, fsyncs and renames the output(s) into place
 * (lib/outfile.h): the file appears complete or not at all. For the same
 * metadata and tensors the bytes equal gguf-py's GGUFWriter output.
 *
 * Sharding (opts.split_max_tensors / split_max_bytes) follows gguf-py and
 * gguf-split: tensors go to the current shard until it holds max tensors or
 * adding the next would pass max bytes (unpadded sizes; a shard always
 * takes at least one tensor); with more than one shard the files are named
 * "<path without .gguf>-%05d-of-%05d.gguf", shard 0 carries all metadata
 * plus split.no (u16), split.count (u16), split.tensors.count (i32), and the
 * other shards carry only the split.* keys. small_first_shard puts no
 * tensors in shard 0 (gguf-split --no-tensor-first-split). All shards are
 * fsynced before any is renamed into place.
 *
 * A refused set_meta/add_tensor leaves the writer as it was; an error in
 * begin, write or finish leaves it unusable. muse_gguf_writer_free removes
 * every temporary file of an unfinished writer.
 */
typedef struct muse_gguf_writer muse_gguf_writer;

typedef struct muse_gguf_write_opts {
	uint64_t split_max_tensors; /* 0: no limit */
	uint64_t split_max_bytes;   /* 0: no limit */
	bool small_first_shard;     /* only metadata in shard 0 (forces sharding) */
	/* or a given layout: shard_of[i] is declared tensor i's shard, of n_shards (0: the limits above
	 * decide; read at begin); a shard may hold no tensor. What --keep-split copies from an input's shards. */
	const uint32_t *shard_of;
	uint32_t n_shards;
} muse_gguf_write_opts;

/* path: the output name (the single file, or the base name for shards). opts may be NULL. */
muse_status muse_gguf_writer_create(const char *path, const muse_gguf_write_opts *opts, muse_gguf_writer **out,
				    muse_err *err);
/* NULL is a no-op; an unfinished writer's temporary files are removed. */
void muse_gguf_writer_free(muse_gguf_writer *w);

/*
 * Copies meta (deep) as the file's metadata, replacing any set before.
 * Refuses empty, over-long or duplicate keys, invalid types, nested arrays,
 * more than MUSE_GGUF_MAX_ARRAY elements, and a general.alignment that is
 * not a u32 power of two <= MUSE_GGUF_MAX_ALIGNMENT. Only before begin.
 */
muse_status muse_gguf_writer_set_meta(muse_gguf_writer *w, const muse_meta *meta, muse_err *err);

/*
 * Declares the next tensor. shape is in PyTorch order (outermost first) and
 * is written reversed as GGUF ne[]; ndim 0..4. The innermost dimension must
 * be a whole number of dtype's blocks. Refuses types GGUF has no id for and
 * the intermediate-only Q8_1/Q8_K. Only before begin.
 */
muse_status muse_gguf_writer_add_tensor(muse_gguf_writer *w, const char *name, muse_dtype dtype, int ndim,
					const uint64_t *shape, muse_err *err);

/* Opens the output(s) and writes everything up to the first tensor's data. */
muse_status muse_gguf_writer_begin(muse_gguf_writer *w, muse_err *err);

/* Appends n bytes of tensor data (declared order); more bytes than declared is an error. */
muse_status muse_gguf_writer_write(muse_gguf_writer *w, const void *data, size_t n, muse_err *err);

/* Checks that all data arrived, then fsyncs and publishes every output file. */
muse_status muse_gguf_writer_finish(muse_gguf_writer *w, muse_err *err);

/* ---- queries (valid after add_tensor / begin) ---- */
uint32_t muse_gguf_writer_alignment(const muse_gguf_writer *w);
size_t muse_gguf_writer_n_tensors(const muse_gguf_writer *w);
/* Bytes of tensor i's data (unpadded); 0 for i out of range. */
uint64_t muse_gguf_writer_tensor_nbytes(const muse_gguf_writer *w, size_t i);
/* Number of output files and their final names (valid after begin). */
uint32_t muse_gguf_writer_n_files(const muse_gguf_writer *w);
const char *muse_gguf_writer_file_path(const muse_gguf_writer *w, uint32_t i);

#endif
