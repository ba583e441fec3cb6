/* cmds.h: subcommand entry points (one file each in cmd/) and shared CLI helpers. */
#ifndef MUSE_CMDS_H
#define MUSE_CMDS_H

#include "../lib/status.h"

#ifndef MUSE_VERSION
#define MUSE_VERSION "0.1.0"
#endif

/* Exit codes of the command-line contract. */
enum { MUSE_EXIT_OK = 0, MUSE_EXIT_FAIL = 1, MUSE_EXIT_USAGE = 2 };

int cmd_convert(int argc, const char **argv);
int cmd_inspect(int argc, const char **argv);
int cmd_quantize(int argc, const char **argv);
/* quantize --method rtn|awq|gptq (cmd/quantize_method.c), entered from cmd_quantize. */
int cmd_quantize_method(int argc, const char **argv);
int cmd_imatrix(int argc, const char **argv);
int cmd_eval(int argc, const char **argv);
int cmd_tokenize(int argc, const char **argv);
int cmd_help(int argc, const char **argv);
int cmd_version(int argc, const char **argv);

/* Prints "muse: error: <msg>" and returns MUSE_EXIT_FAIL (MUSE_EXIT_USAGE for MUSE_ERR_USAGE). */
int muse_cli_fail(const muse_err *err);
/*
 * When err is an MUSE_ERR_UNSUPPORTED failure on the HF directory dir whose config.json names a class
 * muse has no table for, appends "; <hint>": each command says what works for it (convert: --raw), since
 * the library's message is shared by commands with different options.
 */
void muse_cli_hint_unmapped(const char *dir, muse_err *err, const char *hint);

#endif
