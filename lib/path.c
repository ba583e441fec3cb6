/* path.c: the suffix, directory and base-name helpers of path.h, written once for every layer. */
#include <string.h>
#include <sys/stat.h>

#include "path.h"

bool muse_ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !memcmp(s + a - b, suf, b);
}

bool muse_is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

size_t muse_path_base(const char *path, size_t *len)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	size_t b = n;
	while (b > 0 && path[b - 1] != '/')
		b--;
	*len = n - b;
	return b;
}
