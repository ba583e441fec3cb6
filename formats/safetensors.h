/* safetensors.h: streaming safetensors writer (single file or HF-style shards + index); the readers are in reader.h. */
#ifndef MUSE_SAFETENSORS_H
#define MUSE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/*
 * Output matches what huggingface safetensors 0.8 (the Rust serializer
 * behind safetensors.torch.save_file) writes for the same tensors, byte for
 * byte: header `{"__metadata__":{...},"<name>":{"dtype":..,"shape":[..],
 * "data_offsets":[b,e]},...}` with the tensors ordered by descending dtype
 * alignment (U64 I64 F64 C64 F32 U32 I32 BF16 F16 U16 I16 F8_* I8 U8 F6_* F4
 * BOOL), then by name (bytewise), data in that order with no gaps, header
 * padded with spaces to a multiple of 8. One difference: the reference keeps
 * __metadata__ in a hash map (random key order); muse writes the keys in the
 * order they were set, so files agree byte for byte when there is at most
 * one metadata key (transformers writes just {"format": "pt"}). Every file
 * carries "format": "pt" unless set_meta replaces it.
 *
 * Sharding follows huggingface_hub's split_state_dict_into_shards: greedy in
 * declaration order on tensor bytes; a tensor above the limit gets a shard of
 * its own, placed in the shard list where it was met (before the shard being
 * filled). With one resulting shard the output is the single file `path`;
 * with more, `path` minus ".safetensors" plus "-00001-of-0000N.safetensors"
 * for each shard and `path` + ".index.json" (transformers' layout: indent 2,
 * sorted keys, ASCII escapes, {"metadata": {"total_size": <tensor bytes>},
 * "weight_map": {...}}). Every shard carries the same __metadata__.
 *
 * Lifecycle: create, add_tensor/set_meta (declaration phase), begin, write
 * every tensor's bytes in declaration order (several calls per tensor are
 * fine), finish. Nothing appears under a final name before finish: shards
 * are written under temp names (lib/outfile.h), all are fsynced, then all
 * renamed, then the index is written. free without a successful finish
 * removes every temp file. Errors leave the writer failed; only free is
 * useful afterwards.
 */
typedef struct muse_st_writer muse_st_writer;

/* max_shard_bytes == 0: always one file. path is copied. */
muse_status muse_st_writer_create(muse_st_writer **out, const char *path, uint64_t max_shard_bytes, muse_err *err);

/*
 * Declares the next tensor. shape is in PyTorch order (outermost first), ndim
 * 0..MUSE_MAX_DIMS; dtype must have a safetensors name. The name must be
 * valid UTF-8, unique, not "__metadata__". Copies everything.
 */
muse_status muse_st_writer_add_tensor(muse_st_writer *w, const char *name, muse_dtype dtype, int ndim,
				      const uint64_t *shape, muse_err *err);

/* Sets a __metadata__ string (UTF-8); setting a key again replaces its value in place. */
muse_status muse_st_writer_set_meta(muse_st_writer *w, const char *key, const char *value, muse_err *err);

/* Ends the declarations: plans shards and offsets, opens the first output. */
muse_status muse_st_writer_begin(muse_st_writer *w, muse_err *err);

/*
 * Appends n bytes (little-endian, row-major) to tensor idx. idx may move
 * forward only; moving past a tensor requires it to be complete. More bytes
 * than a tensor holds is an error.
 */
muse_status muse_st_writer_write(muse_st_writer *w, size_t idx, const void *data, size_t n, muse_err *err);

/* Checks every tensor is complete, then publishes all shards and the index. */
muse_status muse_st_writer_finish(muse_st_writer *w, muse_err *err);

/* Removes temp files of an unfinished writer; NULL is a no-op. */
void muse_st_writer_free(muse_st_writer *w);

/* After begin: the layout chosen (for progress display and tests). */
size_t muse_st_writer_n_tensors(const muse_st_writer *w);
size_t muse_st_writer_n_shards(const muse_st_writer *w);
const char *muse_st_writer_shard_path(const muse_st_writer *w, size_t shard); /* final name */
const char *muse_st_writer_index_path(const muse_st_writer *w);                /* NULL for one file */
uint64_t muse_st_writer_tensor_bytes(const muse_st_writer *w, size_t idx);

#endif
