/* outfile.c: atomic output files and the temp-file registry used for signal cleanup. */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_BUF (4u << 20)
#define OUT_DIRECT (64u << 10) /* writes at least this large skip the buffer */
#define OUT_WRITEBACK ((uint64_t)16 << 20)
#define MAX_TEMPS 4096 /* open outputs at once: shards of the largest checkpoints stay far below */

/* Registry read by the signal handler: plain pointers to strings that outlive registration. */
static char *volatile temps[MAX_TEMPS];
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
	for (int i = 0; i < MAX_TEMPS; i++)
		if (temps[i])
			unlink(temps[i]);
	static const char msg[] = "muse: error: interrupted; temporary output removed\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	_exit(1);
}

void muse_out_install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

bool muse_interrupted(void)
{
	return got_signal != 0;
}

static void block_signals(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGHUP);
	sigprocmask(SIG_BLOCK, &s, old);
}

static int reg_add(char *p)
{
	sigset_t old;
	block_signals(&old);
	int slot = -1;
	for (int i = 0; i < MAX_TEMPS; i++)
		if (!temps[i]) {
			temps[i] = p;
			slot = i;
			break;
		}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return slot;
}

static void reg_del(int slot)
{
	if (slot < 0)
		return;
	sigset_t old;
	block_signals(&old);
	temps[slot] = NULL;
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static muse_status write_all(int fd, const uint8_t *p, size_t n, const char *path, muse_err *err)
{
	while (n) {
		ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return muse_err_set(err, MUSE_ERR_IO, "%s: write failed: %s", path,
					    w < 0 ? strerror(errno) : "wrote nothing");
		p += w;
		n -= (size_t)w;
	}
	return MUSE_OK;
}

/*
 * Starts the disk write-back of what was written since the last call, every OUT_WRITEBACK bytes, without
 * waiting for it: the disk then writes while the program computes the next bytes, and the fsync at the
 * end finds little left to do (a quantizer's output otherwise waits for the whole file in fsync).
 */
static void start_writeback(muse_outfile *o)
{
	uint64_t done = o->pos - o->buf_len; /* what the file has */
	if (done - o->flushed < OUT_WRITEBACK)
		return;
	sync_file_range(o->fd, (off_t)o->flushed, (off_t)(done - o->flushed), SYNC_FILE_RANGE_WRITE);
	o->flushed = done;
}

static muse_status flush(muse_outfile *o, muse_err *err)
{
	if (!o->buf_len)
		return MUSE_OK;
	muse_status s = write_all(o->fd, o->buf, o->buf_len, o->path, err);
	o->buf_len = 0;
	if (!s)
		start_writeback(o);
	return s;
}

muse_status muse_out_open(muse_outfile *o, const char *path, muse_err *err)
{
	memset(o, 0, sizeof *o);
	o->fd = -1;
	o->slot = -1;
	o->path = strdup(path);
	char *dcopy = strdup(path), *bcopy = strdup(path);
	size_t tlen = strlen(path) + 32;
	o->tmp = malloc(tlen);
	o->buf = malloc(OUT_BUF);
	if (!o->path || !dcopy || !bcopy || !o->tmp || !o->buf) {
		free(dcopy);
		free(bcopy);
		free(o->tmp);
		o->tmp = NULL;
		muse_out_abort(o);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	o->buf_cap = OUT_BUF;
	snprintf(o->tmp, tlen, "%s/.%s.tmp-XXXXXX", dirname(dcopy), basename(bcopy));
	free(dcopy);
	free(bcopy);
	/* Register before the file exists so a signal between mkstemp and registration cannot leak it. */
	o->slot = reg_add(o->tmp);
	if (o->slot < 0) {
		free(o->tmp);
		o->tmp = NULL;
		muse_out_abort(o);
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: more than %d outputs open at once", path, MAX_TEMPS);
	}
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		int e = errno;
		reg_del(o->slot);
		o->slot = -1;
		free(o->tmp);
		o->tmp = NULL;
		muse_out_abort(o);
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot create output: %s", path, strerror(e));
	}
	fchmod(o->fd, 0644);
	return MUSE_OK;
}

muse_status muse_out_write(muse_outfile *o, const void *p, size_t n, muse_err *err)
{
	const uint8_t *b = p;
	if (muse_interrupted())
		return muse_err_set(err, MUSE_ERR_INTERRUPTED, "%s: interrupted", o->path);
	o->pos += n;
	/* large writes (a quantizer's slab) go straight to the file: copying them into the buffer first costs
	 * a pass over the bytes and pushes them out of the cache before write() reads them */
	if (n >= OUT_DIRECT || n >= o->buf_cap) {
		muse_status s = flush(o, err);
		if (!s && !(s = write_all(o->fd, b, n, o->path, err)))
			start_writeback(o);
		return s;
	}
	if (o->buf_len + n > o->buf_cap) {
		muse_status s = flush(o, err);
		if (s)
			return s;
	}
	memcpy(o->buf + o->buf_len, b, n);
	o->buf_len += n;
	return MUSE_OK;
}

muse_status muse_out_zeros(muse_outfile *o, uint64_t n, muse_err *err)
{
	static const uint8_t z[4096];
	while (n) {
		size_t k = n > sizeof z ? sizeof z : (size_t)n;
		muse_status s = muse_out_write(o, z, k, err);
		if (s)
			return s;
		n -= k;
	}
	return MUSE_OK;
}

muse_status muse_out_reserve(muse_outfile *o, uint64_t size, muse_err *err)
{
	if (size <= o->pos)
		return MUSE_OK;
	int r;
	while ((r = fallocate(o->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size)) < 0 && errno == EINTR)
		;
	if (r < 0 && (errno == ENOSPC || errno == EFBIG || errno == EDQUOT))
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot reserve %llu bytes: %s", o->path,
				    (unsigned long long)size, strerror(errno));
	return MUSE_OK; /* EOPNOTSUPP and the like: the writes allocate as they go */
}

muse_status muse_out_pwrite(muse_outfile *o, const void *p, size_t n, uint64_t off, muse_err *err)
{
	muse_status s = flush(o, err);
	if (s)
		return s;
	const uint8_t *b = p;
	while (n) {
		ssize_t w = pwrite(o->fd, b, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return muse_err_set(err, MUSE_ERR_IO, "%s: write failed: %s", o->path,
					    w < 0 ? strerror(errno) : "wrote nothing");
		b += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return MUSE_OK;
}

muse_status muse_out_finish(muse_outfile *o, muse_err *err)
{
	muse_status s = flush(o, err);
	if (s)
		return s;
	/* An fsync failure is final: the page cache may have dropped the data (fsyncgate). */
	if (fsync(o->fd) < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: fsync failed: %s", o->path, strerror(errno));
	int fd = o->fd;
	o->fd = -1;
	if (close(fd) < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: close failed: %s", o->path, strerror(errno));
	return MUSE_OK;
}

muse_status muse_out_publish(muse_outfile *o, muse_err *err)
{
	if (rename(o->tmp, o->path) < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot rename into place: %s", o->path, strerror(errno));
	reg_del(o->slot);
	o->slot = -1;
	free(o->tmp);
	o->tmp = NULL;
	char *dcopy = strdup(o->path);
	if (dcopy) {
		int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dcopy);
	}
	muse_out_abort(o); /* releases the remaining buffers; nothing to unlink */
	return MUSE_OK;
}

muse_status muse_out_commit(muse_outfile *o, muse_err *err)
{
	muse_status s = muse_out_finish(o, err);
	return s ? s : muse_out_publish(o, err);
}

void muse_out_abort(muse_outfile *o)
{
	if (!o)
		return;
	if (o->fd >= 0)
		close(o->fd);
	if (o->tmp && o->tmp[0])
		unlink(o->tmp);
	reg_del(o->slot);
	free(o->tmp);
	free(o->path);
	free(o->buf);
	memset(o, 0, sizeof *o);
	o->fd = -1;
	o->slot = -1;
}

muse_status muse_out_write_file(const char *path, const void *p, size_t n, muse_err *err)
{
	muse_outfile o;
	muse_status s = muse_out_open(&o, path, err);
	if (s)
		return s;
	s = muse_out_write(&o, p, n, err);
	if (!s)
		s = muse_out_commit(&o, err);
	if (s)
		muse_out_abort(&o);
	return s;
}
