/* pending.c: TEMPORARY weak entry points for commands still being written; each cmd/<name>.c overrides one. Deleted when all have landed. */
#include <stdio.h>

#include "cmds.h"

static int pending(const char *name)
{
	fprintf(stderr, "muse: error: %s: not implemented yet\n", name);
	return MUSE_EXIT_FAIL;
}

__attribute__((weak)) int cmd_quantize(int argc, const char **argv) { return pending("quantize"); }
__attribute__((weak)) int cmd_imatrix(int argc, const char **argv) { return pending("imatrix"); }
__attribute__((weak)) int cmd_eval(int argc, const char **argv) { return pending("eval"); }
__attribute__((weak)) int cmd_tokenize(int argc, const char **argv) { return pending("tokenize"); }
