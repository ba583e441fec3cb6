/* outfile.h: atomic output files: temp name in the same directory, fsync, rename, fsync the directory. */
#ifndef MUSE_OUTFILE_H
#define MUSE_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/*
 * An output being written. Nothing appears at `path` until publish; a
 * failed or interrupted run leaves nothing behind (the temp file is
 * registered and removed by the signal handler installed with
 * muse_out_install_signals, or by muse_out_abort).
 *
 * Sharded writers call finish on every shard, then publish on every shard,
 * so all final names appear only once all data is on disk.
 */
typedef struct muse_outfile {
	char *path;        /* final name (owned) */
	char *tmp;         /* temp name (owned), NULL after publish/abort */
	int fd;
	uint64_t pos;      /* bytes written so far (logical end of file) */
	uint64_t flushed;  /* bytes whose write-back to the disk has been started */
	uint8_t *buf;      /* write buffer */
	size_t buf_len, buf_cap;
	int slot;          /* registry slot for signal cleanup, -1 if none */
} muse_outfile;

#define MUSE_OUTFILE_INIT { .fd = -1, .slot = -1 }

/* Call once from main: SIGINT/SIGTERM/SIGHUP remove every open temp file and exit with status 1. */
void muse_out_install_signals(void);

muse_status muse_out_open(muse_outfile *o, const char *path, muse_err *err);
muse_status muse_out_write(muse_outfile *o, const void *p, size_t n, muse_err *err);
muse_status muse_out_zeros(muse_outfile *o, uint64_t n, muse_err *err);
/*
 * Reserves the disk blocks of a file that will be size bytes in all (its length is left as it is): a
 * full disk fails here, before any work, with ENOSPC named, and the writes that follow skip the file
 * system's block allocation (ext4 writes a quarter faster). File systems without fallocate: a no-op.
 */
muse_status muse_out_reserve(muse_outfile *o, uint64_t size, muse_err *err);
/* Writes at an absolute offset below the current end (patching a header); bypasses the buffer. */
muse_status muse_out_pwrite(muse_outfile *o, const void *p, size_t n, uint64_t off, muse_err *err);
/* Flush, fsync and close; the data stays under the temp name. */
muse_status muse_out_finish(muse_outfile *o, muse_err *err);
/* Rename to the final name and fsync the directory. Only after finish. */
muse_status muse_out_publish(muse_outfile *o, muse_err *err);
/* finish + publish. */
muse_status muse_out_commit(muse_outfile *o, muse_err *err);
/* Closes and removes the temp file; safe after any failure, after publish, and on MUSE_OUTFILE_INIT. */
void muse_out_abort(muse_outfile *o);

/* Writes a whole small file atomically (configs, manifests). */
muse_status muse_out_write_file(const char *path, const void *p, size_t n, muse_err *err);

/* True once a termination signal arrived; long loops poll it and stop with MUSE_ERR_INTERRUPTED. */
bool muse_interrupted(void);

#endif
