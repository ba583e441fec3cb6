/* mapfile.c: mmap of input files and small-file reads. */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

muse_status muse_map_open(const char *path, muse_map *m, muse_err *err)
{
	memset(m, 0, sizeof *m);
	m->fd = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return muse_err_set(err, MUSE_ERR_IO, "%s: not a regular file", path);
	}
	m->path = strdup(path);
	if (!m->path) {
		close(fd);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	m->size = (uint64_t)st.st_size;
	m->fd = fd;
	if (m->size) {
		void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			int e = errno;
			muse_map_close(m);
			return muse_err_set(err, MUSE_ERR_IO, "%s: cannot map: %s", path, strerror(e));
		}
		m->data = p;
	}
	return MUSE_OK;
}

void muse_map_close(muse_map *m)
{
	if (!m)
		return;
	if (m->data)
		munmap((void *)m->data, (size_t)m->size);
	if (m->fd >= 0 && m->path)
		close(m->fd);
	free(m->path);
	memset(m, 0, sizeof *m);
	m->fd = -1;
}

void muse_map_advise_seq(const muse_map *m, uint64_t off, uint64_t len)
{
	if (!m->data || off >= m->size)
		return;
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t start = off - off % (uint64_t)pg;
	if (len > m->size - off)
		len = m->size - off;
	/* advice values are not flags (SEQUENTIAL | WILLNEED == WILLNEED): one call each */
	madvise((void *)(m->data + start), (size_t)(len + (off - start)), MADV_SEQUENTIAL);
	madvise((void *)(m->data + start), (size_t)(len + (off - start)), MADV_WILLNEED);
}

void muse_fd_advise_seq(int fd, uint64_t off, uint64_t len)
{
	/* a hint, failures ignored. Not WILLNEED: issued tensor after tensor ahead of the readers, it made cold
	 * reads 1.5-3x slower (scripts/bench_quant.sh's cold rows: 0.33-0.71 s against 0.20-0.21 s) */
	posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_SEQUENTIAL);
}

void muse_map_release(const muse_map *m, uint64_t off, uint64_t len)
{
	if (!m->data || off >= m->size || !len)
		return;
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t start = off - off % (uint64_t)pg;
	if (len > m->size - off)
		len = m->size - off;
	madvise((void *)(m->data + start), (size_t)(len + (off - start)), MADV_DONTNEED);
}

muse_status muse_read_small_file(const char *path, size_t cap, char **out, size_t *len, muse_err *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return muse_err_set(err, MUSE_ERR_IO, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > cap) {
		close(fd);
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: file is %lld bytes, above the %zu-byte cap", path,
				    (long long)st.st_size, cap);
	}
	size_t n = (size_t)st.st_size, got = 0;
	char *buf = malloc(n + 1);
	if (!buf) {
		close(fd);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : 0;
			free(buf);
			close(fd);
			return muse_err_set(err, MUSE_ERR_IO, "%s: read failed: %s", path, e ? strerror(e) : "file shrank");
		}
		got += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	*out = buf;
	if (len)
		*len = n;
	return MUSE_OK;
}
