/* muse.c: the command table, argv[0] dispatch (muse-convert, muse-quantize) and the exit-status contract. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/hf_config.h"
#include "../lib/outfile.h"
#include "cmds.h"

typedef struct muse_command {
	const char *name;
	int (*fn)(int argc, const char **argv);
	const char *summary;
} muse_command;

static const muse_command commands[] = {
	{ "convert", cmd_convert, "convert a model between safetensors, GGUF and PyTorch layouts" },
	{ "inspect", cmd_inspect, "show the format, metadata and tensors of a model file or directory" },
	{ "quantize", cmd_quantize, "quantize a model to GGUF types and mixes, or with RTN/AWQ/GPTQ" },
	{ "imatrix", cmd_imatrix, "compute a llama.cpp importance matrix from calibration text" },
	{ "eval", cmd_eval, "perplexity of a model on a text; KL divergence against a reference model" },
	{ "tokenize", cmd_tokenize, "print the token ids of a text under a model's tokenizer" },
	{ "help", cmd_help, "show help for muse or one command" },
	{ "version", cmd_version, "print the version" },
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static const muse_command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void list_commands(FILE *out)
{
	fprintf(out, "usage: muse [--version] [--help] <command> [<args>]\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "    %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'muse help <command>' shows a command's options.\n");
}

int muse_cli_fail(const muse_err *err)
{
	fprintf(stderr, "muse: error: %s\n", err->msg);
	return err->code == MUSE_ERR_USAGE ? MUSE_EXIT_USAGE : MUSE_EXIT_FAIL;
}

void muse_cli_hint_unmapped(const char *dir, muse_err *err, const char *hint)
{
	char cls[128], mt[64];
	const muse_arch *a;
	muse_err ignored = { 0 };
	size_t n = strlen(err->msg);
	if (err->code == MUSE_ERR_UNSUPPORTED &&
	    !muse_hf_config_class(dir, cls, sizeof cls, mt, sizeof mt, &a, &ignored) && cls[0] && !a)
		snprintf(err->msg + n, sizeof err->msg - n, "; %s", hint);
}

int cmd_version(int argc, const char **argv)
{
	(void)argc;
	(void)argv;
	printf("muse %s\n", MUSE_VERSION);
	return MUSE_EXIT_OK;
}

int cmd_help(int argc, const char **argv)
{
	if (argc < 2) {
		list_commands(stdout);
		return MUSE_EXIT_OK;
	}
	const muse_command *c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "muse: error: unknown command '%s' (see 'muse help')\n", argv[1]);
		return MUSE_EXIT_USAGE;
	}
	const char *hargv[] = { c->name, "--help", NULL };
	return c->fn(2, hargv);
}

static int run(const muse_command *c, int argc, const char **argv)
{
	int rc = c->fn(argc, argv);
	/* A full disk or closed pipe on stdout is a failure, not a silent truncation. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno != EPIPE)
			fprintf(stderr, "muse: error: writing to standard output failed: %s\n", strerror(errno));
		return MUSE_EXIT_FAIL;
	}
	return rc;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

int main(int argc, char **argv_)
{
	const char **argv = (const char **)argv_;
	muse_out_install_signals();
	const char *self = base_name(argv[0]);
	/* muse-convert / muse-quantize are this binary under another name. */
	if (!strncmp(self, "muse-", 5) && self[5]) {
		const muse_command *c = find_command(self + 5);
		if (!c) {
			fprintf(stderr, "muse: error: '%s' is not a muse command\n", self);
			return MUSE_EXIT_USAGE;
		}
		argv[0] = c->name;
		return run(c, argc, argv);
	}
	if (argc < 2) {
		list_commands(stderr);
		return MUSE_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-v"))
		return run(find_command("version"), 1, argv + 1);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return run(find_command("help"), 1, argv + 1);
	const muse_command *c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "muse: error: unknown command '%s' (see 'muse help')\n", argv[1]);
		return MUSE_EXIT_USAGE;
	}
	return run(c, argc - 1, argv + 1);
}
