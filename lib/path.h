/* path.h: small string and path helpers every layer uses (suffix test, directory test, last path component). */
#ifndef MUSE_PATH_H
#define MUSE_PATH_H

#include <stdbool.h>
#include <stddef.h>

/* s ends with suf (both NUL-terminated). */
bool muse_ends_with(const char *s, const char *suf);

/* p names a directory (following links); false when it does not exist. */
bool muse_is_dir(const char *p);

/* The last component of path with trailing slashes dropped ("a/b/" -> "b", "b" -> "b", "/" -> ""): its offset
 * in path is returned and its length stored in *len. The span borrows path. */
size_t muse_path_base(const char *path, size_t *len);

#endif
