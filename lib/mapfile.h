/* mapfile.h: read-only memory-mapped input files; tensors are borrowed views into them. */
#ifndef MUSE_MAPFILE_H
#define MUSE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/*
 * One owner per input file. data is NULL for an empty file. Views handed
 * out from data stay valid until muse_map_close. Only regular files are
 * accepted (FIFOs, devices and directories are refused).
 */
typedef struct muse_map {
	char *path;            /* owned copy of the path used in error messages */
	const uint8_t *data;   /* borrowed by everyone else */
	uint64_t size;
	int fd;
} muse_map;

muse_status muse_map_open(const char *path, muse_map *m, muse_err *err);
void muse_map_close(muse_map *m); /* no-op on a zeroed or closed map */

/* Advises the kernel that [off, off+len) will be read sequentially soon. */
void muse_map_advise_seq(const muse_map *m, uint64_t off, uint64_t len);
/* The same for reads of fd with read/pread (a larger readahead window for the page cache). */
void muse_fd_advise_seq(int fd, uint64_t off, uint64_t len);

/*
 * Drops [off, off+len) (rounded out to pages) from this process's resident
 * set once its bytes have been consumed. The mapping is read-only, so the
 * pages simply fault back in from the page cache if touched again: views
 * stay valid. Streaming passes call it so that RSS stays about one tensor
 * instead of growing to the whole input.
 */
void muse_map_release(const muse_map *m, uint64_t off, uint64_t len);

/* Reads a whole small file (config/index JSON) into a NUL-terminated buffer, refusing files above cap. */
muse_status muse_read_small_file(const char *path, size_t cap, char **out, size_t *len, muse_err *err);

#endif
