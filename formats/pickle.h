/* pickle.h: a data-only pickle interpreter for torch state dicts: it never imports or calls anything. */
#ifndef MUSE_PICKLE_H
#define MUSE_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"
#include "../lib/tensor.h"

/*
 * The interpreter mirrors torch's weights_only unpickler
 * (torch/_weights_only_unpickler.py): the same opcode allowlist (protocols
 * 2-5, plus FRAME, MEMOIZE, SHORT_BINUNICODE, BINUNICODE8 and STACK_GLOBAL,
 * which torch.save(..., pickle_protocol=4) emits), and GLOBAL names resolved
 * through a fixed table: collections.OrderedDict, the torch._utils rebuild
 * functions for plain tensors and parameters, torch._tensor._rebuild_from_type_v2,
 * torch.Tensor, torch.nn.parameter.Parameter, storage classes and dtypes. A
 * name outside the table stops the run at the GLOBAL opcode, before any
 * object is built from it, and the error names it ("global 'os.system' is
 * not allowed"). "Calling" an allowlisted function only records a tensor
 * descriptor; nothing else is ever evaluated.
 *
 * Resources: every length is checked against the bytes left before anything
 * is allocated; the memo is a hash table (LONG_BINPUT 2^32-1 costs one
 * slot); the VM's total allocation, the stack, MARK nesting and container
 * nesting are capped; the interpreter loop never recurses, and the final walk
 * over the result recurses at most MUSE_PICKLE_MAX_NEST levels.
 */

#define MUSE_PICKLE_MAX_MEMORY (256ull << 20) /* bytes the VM may allocate */
#define MUSE_PICKLE_MAX_STACK (1u << 22)      /* stack entries */
#define MUSE_PICKLE_MAX_MARKS 256             /* open MARKs */
#define MUSE_PICKLE_MAX_NEST 8                /* dict/list levels walked for tensors */
#define MUSE_PICKLE_MAX_TENSORS (1u << 20)

/* A storage named by a persistent id ('storage', <class>, key, location, numel). */
typedef struct muse_pickle_storage {
	char *key;             /* owned; [A-Za-z0-9_], 1..64 bytes */
	const char *type_name; /* static: "torch.FloatStorage", "torch.storage.UntypedStorage", ... */
	muse_dtype dtype;      /* element type of the class; U8 for UntypedStorage; INVALID when unsupported */
	bool untyped;
	uint64_t numel;        /* elements of the class (bytes when untyped) */
	uint64_t pos;          /* pickle byte of the first BINPERSID naming it */
} muse_pickle_storage;

/* A tensor view found under a (possibly nested) dict key. */
typedef struct muse_pickle_tensor {
	char *name;            /* owned: keys joined with '.', valid UTF-8 without NUL, unique */
	size_t storage;        /* index into muse_pickle_result.storages */
	muse_dtype dtype;      /* never INVALID: unsupported dtypes are refused with their name */
	int ndim;              /* 0..MUSE_MAX_DIMS */
	uint64_t size[MUSE_MAX_DIMS];
	uint64_t stride[MUSE_MAX_DIMS]; /* element strides (non-negative) */
	uint64_t offset;       /* storage offset in elements of dtype */
	uint64_t pos;          /* pickle byte of the REDUCE that built it */
} muse_pickle_tensor;

typedef struct muse_pickle_result {
	muse_pickle_tensor *tensors; /* in dict order */
	size_t n_tensors;
	muse_pickle_storage *storages; /* in first-use order, keys unique */
	size_t n_storages;
	int protocol;
} muse_pickle_result;

/* Where the pickle came from, for messages: "<file>: byte <base+pos>: <what> byte <pos>: ...". */
typedef struct muse_pickle_ctx {
	const char *file;
	uint64_t base;
	const char *what;
} muse_pickle_ctx;

/*
 * Runs the pickle p[0..n) and collects the tensors of the state dict it
 * builds: the top-level object must be a dict (or OrderedDict); tensors
 * under nested dicts, lists and tuples get '.'-joined names ("model.w",
 * "layers.0"); other values (ints, strings, dtypes, None, ...) are skipped.
 * On failure *out is zeroed and nothing needs freeing.
 */
muse_status muse_pickle_load_tensors(const uint8_t *p, size_t n, const muse_pickle_ctx *ctx,
				     muse_pickle_result *out, muse_err *err);
void muse_pickle_result_free(muse_pickle_result *r); /* NULL and zeroed results are fine */

#endif
