/* tensor.h: the tensor descriptor every reader yields and every writer consumes. */
#ifndef MUSE_TENSOR_H
#define MUSE_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

#define MUSE_MAX_DIMS 8        /* rank cap for every format (GGUF itself allows 4) */
#define MUSE_MAX_NAME 4096     /* tensor-name length cap in bytes */

/*
 * A tensor as found in a file. shape is in PyTorch/numpy order, outermost
 * first (GGUF readers reverse GGUF's ne[]). Data is described, not held:
 * `file` indexes the reader's file list, `offset` is the absolute byte
 * offset of the first element in that file and `nbytes` the contiguous
 * length. Readers whose tensors are not contiguous in a file (strided
 * PyTorch views) set `strided` and fill elem_strides/elem_offset; their
 * data is reached only through the reader's read function.
 */
typedef struct muse_tensor {
	char *name;              /* owned by the reader, NUL-terminated (may hold no NUL inside) */
	muse_dtype dtype;
	int ndim;
	uint64_t shape[MUSE_MAX_DIMS];
	uint64_t nelements;
	uint64_t nbytes;         /* bytes of the dense row-major tensor */
	uint32_t file;           /* index into the reader's files */
	uint64_t offset;         /* absolute byte offset in that file (storage start for strided) */
	bool strided;            /* true when not a dense row-major range of the file */
	int64_t elem_strides[MUSE_MAX_DIMS]; /* element strides, meaningful when strided */
	uint64_t storage_nbytes; /* bytes in the backing storage (strided tensors) */
	uint64_t elem_offset;    /* storage offset in elements (strided tensors) */
	uint64_t header_offset;  /* where the tensor was declared (for error messages) */
} muse_tensor;

#endif
