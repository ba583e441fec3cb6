/* options.h: options as data; one parser for every subcommand. */
#ifndef MUSE_OPTIONS_H
#define MUSE_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

typedef enum muse_opt_type {
	MUSE_OPT_END = 0,
	MUSE_OPT_BOOL,    /* bool *: set to true */
	MUSE_OPT_STRING,  /* const char **: last one wins */
	MUSE_OPT_INT,     /* long *: decimal */
	MUSE_OPT_SIZE,    /* uint64_t *: bytes with optional K/M/G/T (1000-based) or KiB/MiB/GiB/TiB suffix */
	MUSE_OPT_LIST,    /* muse_strlist *: repeatable */
} muse_opt_type;

typedef struct muse_strlist {
	const char **v;
	size_t n;
} muse_strlist;

typedef struct muse_option {
	muse_opt_type type;
	char short_name;      /* 0 for none */
	const char *long_name;
	void *value;
	const char *argh;     /* placeholder in help, e.g. "N"; NULL for bool */
	const char *help;     /* lowercase, no final period */
} muse_option;

#define MUSE_OPT_END_ROW { MUSE_OPT_END, 0, NULL, NULL, NULL, NULL }

enum { MUSE_PARSE_HELP = -2, MUSE_PARSE_ERROR = -1 };

/*
 * Parses argv[1..argc) (argv[0] is the command name). Positional arguments
 * are compacted into argv[0..n) and n is returned; MUSE_PARSE_HELP when
 * -h/--help was given (usage printed to stdout), MUSE_PARSE_ERROR after
 * printing a one-line usage error to stderr. "--" ends option parsing.
 */
int muse_parse_options(int argc, const char **argv, const muse_option *opts, const char *const *usage);
void muse_usage(FILE *out, const muse_option *opts, const char *const *usage);
/* Parses a size ("512M", "5GB", "2GiB", "1000"). False when malformed or overflowing. */
bool muse_parse_size(const char *s, uint64_t *out);
void muse_strlist_free(muse_strlist *l);

#endif
