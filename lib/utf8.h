/* utf8.h: UTF-8 validation and repair for strings that came from files. */
#ifndef MUSE_UTF8_H
#define MUSE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). NUL bytes are allowed. */
bool muse_utf8_valid(const char *s, size_t len);
/* A malloc'd NUL-terminated copy with invalid sequences and NUL bytes replaced by U+FFFD; NULL on no memory. */
char *muse_utf8_sanitize(const char *s, size_t len);

#endif
