/* gguf2hf_dir.c: output directories built under a hidden temporary name and renamed whole. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/path.h"
#include "../lib/outfile.h"
#include "gguf2hf.h"

/* True when path is a directory with no entries besides "." and "..". */
static int empty_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

muse_status muse_outdir_begin(muse_outdir *d, const char *path, muse_err *err)
{
	struct stat st;
	d->final = d->tmp = NULL;
	if (!path[0])
		return muse_err_set(err, MUSE_ERR_USAGE, "empty output directory name");
	if (stat(path, &st) == 0 && (!S_ISDIR(st.st_mode) || !empty_dir(path)))
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: exists and is not an empty directory; choose a new name",
				    path);
	/* Parent and base name, with trailing slashes dropped ("out/" names "out"). */
	size_t n, b = muse_path_base(path, &n), L = b + n;
	size_t cap = L + 32;
	d->final = malloc(cap);
	d->tmp = malloc(cap);
	if (!d->final || !d->tmp) {
		muse_outdir_abort(d);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	snprintf(d->final, cap, "%.*s", (int)L, path);
	snprintf(d->tmp, cap, "%.*s.%.*s.muse-XXXXXX", (int)b, path, (int)n, path + b);
	if (!mkdtemp(d->tmp)) {
		int e = errno;
		free(d->tmp);
		d->tmp = NULL;
		muse_outdir_abort(d);
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot create a temporary directory beside it: %s", path,
				    strerror(e));
	}
	/* mkdtemp's 0700 would outlive the rename; give the directory the permissions mkdir would. */
	mode_t um = umask(0);
	umask(um);
	chmod(d->tmp, 0777 & ~um);
	return MUSE_OK;
}

static void sync_parent(const char *path)
{
	char *dup = strdup(path);
	if (!dup)
		return;
	char *slash = strrchr(dup, '/');
	const char *parent = ".";
	if (slash) {
		*slash = '\0';
		parent = slash == dup ? "/" : dup;
	}
	int fd = open(parent, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dup);
}

muse_status muse_outdir_commit(muse_outdir *d, muse_err *err)
{
	int fd = open(d->tmp, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) { /* the files' own names inside the directory are durable before it gets its name */
		fsync(fd);
		close(fd);
	}
	if (rename(d->tmp, d->final))
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot rename %s into place: %s", d->final, d->tmp,
				    strerror(errno));
	sync_parent(d->final);
	free(d->tmp);
	d->tmp = NULL;
	return MUSE_OK;
}

void muse_outdir_abort(muse_outdir *d)
{
	if (d->tmp) {
		/* Only flat files are ever created inside. */
		DIR *dir = opendir(d->tmp);
		struct dirent *e;
		while (dir && (e = readdir(dir))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[8192];
			if ((size_t)snprintf(p, sizeof p, "%s/%s", d->tmp, e->d_name) < sizeof p)
				unlink(p);
		}
		if (dir)
			closedir(dir);
		rmdir(d->tmp);
	}
	free(d->tmp);
	free(d->final);
	d->tmp = d->final = NULL;
}

static muse_status join(const muse_outdir *d, const char *name, char *out, size_t cap, muse_err *err)
{
	if ((size_t)snprintf(out, cap, "%s/%s", d->tmp, name) >= cap)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s/%s: path too long", d->final, name);
	return MUSE_OK;
}

muse_status muse_outdir_write(const muse_outdir *d, const char *name, const void *p, size_t n, muse_err *err)
{
	char path[8192];
	muse_status s = join(d, name, path, sizeof path, err);
	return s ? s : muse_out_write_file(path, p, n, err);
}

muse_status muse_outdir_copy(const muse_outdir *d, const char *src, const char *name, muse_err *err)
{
	char path[8192];
	muse_outfile o = MUSE_OUTFILE_INIT;
	muse_status s;
	if ((s = join(d, name, path, sizeof path, err)))
		return s;
	FILE *f = fopen(src, "rb");
	if (!f)
		return muse_err_set(err, MUSE_ERR_IO, "%s: %s", src, strerror(errno));
	if ((s = muse_out_open(&o, path, err)))
		goto done;
	char buf[1 << 16];
	size_t k;
	while ((k = fread(buf, 1, sizeof buf, f)) > 0)
		if ((s = muse_out_write(&o, buf, k, err)))
			goto done;
	if (ferror(f)) {
		s = muse_err_set(err, MUSE_ERR_IO, "%s: read error", src);
		goto done;
	}
	s = muse_out_commit(&o, err);
done:
	muse_out_abort(&o);
	fclose(f);
	return s;
}
