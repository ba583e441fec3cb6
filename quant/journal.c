/* journal.c: a resumable run's journal directory: fingerprint, atomic blobs, removal. */
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/outfile.h"
#include "calib.h"
#include "journal.h"

struct muse_journal {
	char *dir;
};

/* Blob files end in .blob; muse_outfile's temp names are ".NAME.tmp-XXXXXX". Only these are ever removed. */
static bool ours(const char *name)
{
	size_t n = strlen(name);
	return !strcmp(name, "fingerprint") || (n > 5 && !strcmp(name + n - 5, ".blob")) ||
	       (name[0] == '.' && strstr(name, ".tmp-"));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void hash_stat(EVP_MD_CTX *c, const char *name, const struct stat *st)
{
	char line[4352];
	int n = snprintf(line, sizeof line, "%s\t%lld\t%lld.%09ld\n", name, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
			 (long)st->st_mtim.tv_nsec);
	EVP_DigestUpdate(c, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}

/* Identity of the input: name, size and mtime of the file or of every regular file of the directory (sorted). */
static muse_status hash_input(EVP_MD_CTX *c, const char *in, muse_err *err)
{
	struct stat st;
	if (stat(in, &st))
		return muse_err_set(err, MUSE_ERR_IO, "%s: %s", in, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		hash_stat(c, "", &st);
		return MUSE_OK;
	}
	DIR *d = opendir(in);
	if (!d)
		return muse_err_set(err, MUSE_ERR_IO, "%s: %s", in, strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	muse_status s = MUSE_OK;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 32;
			char **nn = realloc(names, nc * sizeof *nn);
			if (!nn) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			names = nn, cap = nc;
		}
		if (!(names[n] = strdup(de->d_name))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		n++;
	}
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", in, names[i]);
		if (!stat(p, &st) && S_ISREG(st.st_mode))
			hash_stat(c, names[i], &st);
	}
done:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return s;
}

muse_status muse_journal_fingerprint(const char *in, const char *calib, const char *options, char hex[65], muse_err *err)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	muse_status s = MUSE_OK;
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "SHA-256 failed");
		goto done;
	}
	EVP_DigestUpdate(c, "muse journal v1\n", 16);
	if ((s = hash_input(c, in, err)))
		goto done;
	if (calib) {
		/* The calibration file's own SHA-256, as the quant report records it. */
		char ch[65];
		if ((s = muse_sha256_file(calib, ch, err)))
			goto done;
		EVP_DigestUpdate(c, "calib\t", 6);
		EVP_DigestUpdate(c, ch, 64);
	}
	EVP_DigestUpdate(c, "\noptions\t", 9);
	EVP_DigestUpdate(c, options, strlen(options));
	unsigned char md[32];
	unsigned int len = 0;
	if (!EVP_DigestFinal_ex(c, md, &len)) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "SHA-256 failed");
		goto done;
	}
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
done:
	EVP_MD_CTX_free(c);
	return s;
}

/* Removes our files in dir; *any set when a blob was among them. */
static muse_status clear_dir(const char *dir, bool *any, muse_err *err)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? MUSE_OK : muse_err_set(err, MUSE_ERR_IO, "%s: %s", dir, strerror(errno));
	struct dirent *de;
	muse_status s = MUSE_OK;
	while ((de = readdir(d))) {
		if (!ours(de->d_name))
			continue;
		size_t n = strlen(de->d_name);
		if (any && n > 5 && !strcmp(de->d_name + n - 5, ".blob"))
			*any = true;
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		if (unlink(p) && errno != ENOENT && !s)
			s = muse_err_set(err, MUSE_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
	}
	closedir(d);
	return s;
}

muse_status muse_journal_open(const char *dir, const char *fingerprint, muse_journal **out, bool *discarded,
			      muse_err *err)
{
	*out = NULL;
	*discarded = false;
	if (mkdir(dir, 0777) && errno != EEXIST)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot create the journal directory: %s", dir, strerror(errno));
	muse_journal *j = calloc(1, sizeof *j);
	if (!j || !(j->dir = strdup(dir))) {
		free(j);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	void *fp = NULL;
	size_t n = 0;
	muse_status s = muse_journal_get(j, "fingerprint", &fp, &n, err);
	if (s)
		goto fail;
	if (!fp || n != strlen(fingerprint) || memcmp(fp, fingerprint, n)) {
		const void *parts[1] = { fingerprint };
		size_t sizes[1] = { strlen(fingerprint) };
		if ((s = clear_dir(dir, discarded, err)) || (s = muse_journal_put(j, "fingerprint", parts, sizes, 1, err)))
			goto fail;
	}
	free(fp);
	*out = j;
	return MUSE_OK;
fail:
	free(fp);
	muse_journal_free(j);
	return s;
}

void muse_journal_free(muse_journal *j)
{
	if (!j)
		return;
	free(j->dir);
	free(j);
}

muse_status muse_journal_put(muse_journal *j, const char *name, const void *const *parts, const size_t *sizes, int n,
			     muse_err *err)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", j->dir, name);
	muse_outfile o = MUSE_OUTFILE_INIT;
	muse_status s = muse_out_open(&o, p, err);
	for (int i = 0; !s && i < n; i++)
		s = muse_out_write(&o, parts[i], sizes[i], err);
	if (!s)
		s = muse_out_commit(&o, err);
	if (s)
		muse_out_abort(&o);
	return s;
}

muse_status muse_journal_get(muse_journal *j, const char *name, void **data, size_t *size, muse_err *err)
{
	*data = NULL;
	*size = 0;
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", j->dir, name);
	FILE *f = fopen(p, "rb");
	if (!f)
		return errno == ENOENT ? MUSE_OK : muse_err_set(err, MUSE_ERR_IO, "%s: %s", p, strerror(errno));
	muse_status s = MUSE_OK;
	struct stat st;
	if (fstat(fileno(f), &st) || st.st_size < 0) {
		s = muse_err_set(err, MUSE_ERR_IO, "%s: %s", p, strerror(errno));
		goto done;
	}
	size_t n = (size_t)st.st_size;
	void *b = malloc(n ? n : 1);
	if (!b) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory for %zu bytes", p, n);
		goto done;
	}
	if (fread(b, 1, n, f) != n) {
		free(b);
		s = muse_err_set(err, MUSE_ERR_IO, "%s: read failed", p);
		goto done;
	}
	*data = b, *size = n;
done:
	fclose(f);
	return s;
}

muse_status muse_journal_remove(const char *dir, muse_err *err)
{
	muse_status s = clear_dir(dir, NULL, err);
	if (!s && rmdir(dir) && errno != ENOENT)
		s = muse_err_set(err, MUSE_ERR_IO, "%s: cannot remove the journal directory: %s", dir, strerror(errno));
	return s;
}
