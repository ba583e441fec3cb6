/* status.c: formatting of error messages into the caller's sink. */
#include "status.h"

#include <stdio.h>
#include <string.h>

/* Control bytes and non-ASCII from hostile files are escaped so one error stays one line. */
static void sanitize(char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			*s = '?';
	}
}

muse_status muse_err_vset(muse_err *err, muse_status code, const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	sanitize(err->msg);
	return code;
}

muse_status muse_err_set(muse_err *err, muse_status code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	muse_err_vset(err, code, fmt, ap);
	va_end(ap);
	return code;
}

muse_status muse_err_at(muse_err *err, muse_status code, const char *file, uint64_t offset,
			const char *fmt, ...)
{
	if (!err)
		return code;
	char what[MUSE_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return muse_err_set(err, code, "%s: byte %llu: %s", file ? file : "<input>",
			    (unsigned long long)offset, what);
}

void muse_err_prefix(muse_err *err, const char *fmt, ...)
{
	if (!err)
		return;
	char pre[MUSE_ERR_MSG_MAX], old[MUSE_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	snprintf(err->msg, sizeof err->msg, "%s: %s", pre, old);
	sanitize(err->msg);
}

const char *muse_status_name(muse_status s)
{
	switch (s) {
	case MUSE_OK: return "ok";
	case MUSE_ERR_IO: return "I/O error";
	case MUSE_ERR_FORMAT: return "format error";
	case MUSE_ERR_UNSUPPORTED: return "unsupported";
	case MUSE_ERR_LIMIT: return "limit exceeded";
	case MUSE_ERR_NOMEM: return "out of memory";
	case MUSE_ERR_USAGE: return "usage error";
	case MUSE_ERR_INTERRUPTED: return "interrupted";
	case MUSE_ERR_CHECK: return "check failed";
	}
	return "unknown error";
}
