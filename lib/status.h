/* status.h: the one status type and the caller-owned error sink used everywhere in muse. */
#ifndef MUSE_STATUS_H
#define MUSE_STATUS_H

#include <stdarg.h>
#include <stdint.h>

typedef enum muse_status {
	MUSE_OK = 0,
	MUSE_ERR_IO,          /* open/read/write/fsync/rename failed */
	MUSE_ERR_FORMAT,      /* the input violates its format */
	MUSE_ERR_UNSUPPORTED, /* valid input we do not handle (legacy formats, TorchScript, ...) */
	MUSE_ERR_LIMIT,       /* a count, length or size is above a cap or overflows */
	MUSE_ERR_NOMEM,
	MUSE_ERR_USAGE,       /* bad arguments from the caller */
	MUSE_ERR_INTERRUPTED, /* SIGINT/SIGTERM arrived */
	MUSE_ERR_CHECK,       /* a verification failed (checksums, comparisons) */
} muse_status;

#define MUSE_ERR_MSG_MAX 1024

/*
 * Error sink. Callers own it (usually on the stack); a function that fails
 * writes one line into msg and returns the code. On success it is left
 * untouched. The message says what failed first and quotes the subject,
 * e.g. "model.safetensors: byte 8: tensor 'wq': data_offsets end 3 < begin 4".
 */
typedef struct muse_err {
	muse_status code;
	char msg[MUSE_ERR_MSG_MAX];
} muse_err;

/* Sets err (if non-NULL) and returns code. Never fails. */
muse_status muse_err_set(muse_err *err, muse_status code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
muse_status muse_err_vset(muse_err *err, muse_status code, const char *fmt, va_list ap);

/*
 * Sets the message "<file>: byte <offset>: <what>". Readers use this for
 * every complaint about file contents so the user learns where to look.
 */
muse_status muse_err_at(muse_err *err, muse_status code, const char *file, uint64_t offset,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Prefixes an existing message with "<prefix>: " (used to add context on the way up). */
void muse_err_prefix(muse_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *muse_status_name(muse_status s);

#endif
