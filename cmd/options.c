/* options.c: the shared option parser and usage printer. */
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void muse_usage(FILE *out, const muse_option *opts, const char *const *usage)
{
	for (size_t i = 0; usage && usage[i]; i++)
		fprintf(out, "%s%s\n", i ? "   or: " : "usage: ", usage[i]);
	if (opts && opts[0].type != MUSE_OPT_END)
		fputc('\n', out);
	for (const muse_option *o = opts; o && o->type != MUSE_OPT_END; o++) {
		char left[96];
		int n = 0;
		if (o->short_name)
			n = snprintf(left, sizeof left, "-%c, ", o->short_name);
		else
			n = snprintf(left, sizeof left, "    ");
		snprintf(left + n, sizeof left - (size_t)n, "--%s%s%s", o->long_name, o->argh ? " " : "",
			 o->argh ? o->argh : "");
		fprintf(out, "    %-30s %s\n", left, o->help);
	}
	fprintf(out, "    %-30s %s\n", "-h, --help", "show this help");
}

bool muse_parse_size(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return false;
	uint64_t mult = 1;
	if (*end) {
		static const struct {
			const char *suf;
			uint64_t mult;
		} sfx[] = {
			{ "K", 1000ull }, { "KB", 1000ull }, { "KiB", 1024ull },
			{ "M", 1000000ull }, { "MB", 1000000ull }, { "MiB", 1048576ull },
			{ "G", 1000000000ull }, { "GB", 1000000000ull }, { "GiB", 1073741824ull },
			{ "T", 1000000000000ull }, { "TB", 1000000000000ull }, { "TiB", 1099511627776ull },
		};
		size_t k;
		for (k = 0; k < sizeof sfx / sizeof *sfx; k++)
			if (!strcmp(end, sfx[k].suf))
				break;
		if (k == sizeof sfx / sizeof *sfx)
			return false;
		mult = sfx[k].mult;
	}
	double r = v * (double)mult;
	if (r >= 18446744073709551616.0)
		return false;
	*out = (uint64_t)r;
	return true;
}

void muse_strlist_free(muse_strlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int take_value(const muse_option *o, const char *val, const char *cmd)
{
	switch (o->type) {
	case MUSE_OPT_STRING:
		*(const char **)o->value = val;
		return 0;
	case MUSE_OPT_INT: {
		errno = 0;
		char *end;
		long v = strtol(val, &end, 10);
		if (errno || end == val || *end) {
			fprintf(stderr, "muse: error: %s: option '--%s' expects an integer, got '%s'\n", cmd,
				o->long_name, val);
			return -1;
		}
		*(long *)o->value = v;
		return 0;
	}
	case MUSE_OPT_SIZE:
		if (!muse_parse_size(val, (uint64_t *)o->value)) {
			fprintf(stderr, "muse: error: %s: option '--%s' expects a size like 5GB or 512MiB, got '%s'\n",
				cmd, o->long_name, val);
			return -1;
		}
		return 0;
	case MUSE_OPT_LIST: {
		muse_strlist *l = o->value;
		const char **v = realloc(l->v, (l->n + 1) * sizeof *v);
		if (!v) {
			fprintf(stderr, "muse: error: out of memory\n");
			return -1;
		}
		l->v = v;
		l->v[l->n++] = val;
		return 0;
	}
	default:
		return -1;
	}
}

int muse_parse_options(int argc, const char **argv, const muse_option *opts, const char *const *usage)
{
	const char *cmd = argv[0];
	int npos = 0;
	bool only_pos = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || !a[1]) {
			argv[npos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			muse_usage(stdout, opts, usage);
			return MUSE_PARSE_HELP;
		}
		const muse_option *o = NULL;
		const char *inline_val = NULL;
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			for (const muse_option *p = opts; p && p->type != MUSE_OPT_END; p++)
				if (strlen(p->long_name) == len && !strncmp(p->long_name, name, len))
					o = p;
			if (eq)
				inline_val = eq + 1;
		} else if (!a[2]) {
			for (const muse_option *p = opts; p && p->type != MUSE_OPT_END; p++)
				if (p->short_name == a[1])
					o = p;
		}
		if (!o) {
			fprintf(stderr, "muse: error: %s: unknown option '%s' (see 'muse help %s')\n", cmd, a, cmd);
			return MUSE_PARSE_ERROR;
		}
		if (o->type == MUSE_OPT_BOOL) {
			if (inline_val) {
				fprintf(stderr, "muse: error: %s: option '--%s' takes no value\n", cmd, o->long_name);
				return MUSE_PARSE_ERROR;
			}
			*(bool *)o->value = true;
			continue;
		}
		const char *val = inline_val;
		if (!val) {
			if (i + 1 >= argc) {
				fprintf(stderr, "muse: error: %s: option '--%s' needs a value\n", cmd, o->long_name);
				return MUSE_PARSE_ERROR;
			}
			val = argv[++i];
		}
		if (take_value(o, val, cmd) < 0)
			return MUSE_PARSE_ERROR;
	}
	return npos;
}
