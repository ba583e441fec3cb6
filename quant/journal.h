/* journal.h: a resumable run's journal: a directory of atomically written blobs that a rerun with the same fingerprint picks up. */
#ifndef MUSE_JOURNAL_H
#define MUSE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/status.h"

typedef struct muse_journal muse_journal;

/*
 * SHA-256 (lowercase hex) of everything a run's result depends on: the
 * input's identity (for a directory every regular file's name, size and
 * mtime in name order; for a file its size and mtime), the calibration
 * file's bytes (NULL: none), and `options`, a caller-built text of every
 * option that changes the output, including the tool version.
 */
muse_status muse_journal_fingerprint(const char *in, const char *calib, const char *options, char hex[65], muse_err *err);

/*
 * Opens (creating it) the journal directory dir. When dir holds a journal
 * with another fingerprint (or none), its blobs are removed and
 * *discarded set when there were any; the fingerprint is then recorded.
 * The handle owns a copy of dir.
 */
muse_status muse_journal_open(const char *dir, const char *fingerprint, muse_journal **j, bool *discarded,
			      muse_err *err);
void muse_journal_free(muse_journal *j); /* NULL is a no-op; the directory stays */

/* Writes blob `name` from n parts atomically (temp name, fsync, rename): a crash leaves the old blob or the new one. */
muse_status muse_journal_put(muse_journal *j, const char *name, const void *const *parts, const size_t *sizes, int n,
			     muse_err *err);

/* Reads blob `name` into a malloc'd *data; a missing blob is MUSE_OK with *data NULL. */
muse_status muse_journal_get(muse_journal *j, const char *name, void **data, size_t *size, muse_err *err);

/* Removes the journal directory dir and the files muse put there; a missing dir is MUSE_OK. */
muse_status muse_journal_remove(const char *dir, muse_err *err);

#endif
