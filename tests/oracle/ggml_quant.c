/* ggml_quant.c: test oracle; quantizes and dequantizes raw f32 rows with the real ggml (never used by muse). */
/*
 * Built by scripts/build_llama_cpp.sh against the ggml that llama.cpp itself links, so its bytes are what
 * llama-quantize writes for one tensor: ggml_quantize_chunk is the function llama_model_quantize calls per
 * chunk of rows, and rows are independent, so chunking and thread count do not change the output.
 *
 *   ggml_quant TYPE N_PER_ROW IN_F32.bin OUT.bin [IMATRIX_F32.bin]
 *   ggml_quant --dequant TYPE N_PER_ROW IN.bin OUT_F32.bin
 *   ggml_quant --list
 *   ggml_quant --batch JOBS.txt
 *
 * TYPE is a ggml type name in any case (q4_0, Q4_K, iq2_xxs, tq1_0, mxfp4, f16, bf16, ...) or its numeric
 * id. IN_F32.bin holds nrows * N_PER_ROW little-endian floats, row-major; IMATRIX_F32.bin holds N_PER_ROW
 * floats (one importance weight per column, the layout llama-imatrix stores per 2-D tensor). --list prints
 * "name id block_size type_size requires_imatrix" for every type ggml can quantize. --batch runs one
 * job per line of JOBS.txt (the arguments of either first form, separated by spaces; paths without
 * spaces) in one process: building the IQ1/IQ2 grids costs ggml up to 20 s of CPU per process, which
 * llama-quantize pays once per model, so tests that quantize many tensors should batch. Exit 0 on
 * success, 1 with one "ggml_quant: ..." line on stderr at the first failure.
 */
#define _POSIX_C_SOURCE 200809L /* fileno, strcasecmp under -std=c11 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ggml.h"

static int fail(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "ggml_quant: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return 1;
}

/* Types that ggml_quantize_chunk handles; the rest (Q8_1, Q8_K: the vec-dot activation formats) only
 * have a row-wise from_float_ref and take no importance weights. */
static int chunk_type(enum ggml_type t)
{
	switch (t) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
	case GGML_TYPE_Q1_0: case GGML_TYPE_Q2_0: case GGML_TYPE_MXFP4: case GGML_TYPE_NVFP4:
	case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
	case GGML_TYPE_TQ1_0: case GGML_TYPE_TQ2_0:
	case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ2_S: case GGML_TYPE_IQ3_XXS:
	case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ1_S: case GGML_TYPE_IQ1_M: case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
		return 1;
	default:
		return 0;
	}
}

static int quantizable(enum ggml_type t)
{
	const struct ggml_type_traits *tr = ggml_get_type_traits(t);
	return tr->type_name && tr->blck_size > 0 && (chunk_type(t) || tr->from_float_ref);
}

static int parse_type(const char *s, enum ggml_type *out)
{
	char *end;
	long id = strtol(s, &end, 10);
	if (*s && !*end) {
		if (id < 0 || id >= GGML_TYPE_COUNT || !ggml_get_type_traits((enum ggml_type)id)->type_name)
			return -1;
		*out = (enum ggml_type)id;
		return 0;
	}
	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		const char *name = ggml_get_type_traits((enum ggml_type)t)->type_name;
		if (name && strcasecmp(name, s) == 0) {
			*out = (enum ggml_type)t;
			return 0;
		}
	}
	return -1;
}

/* Reads a whole file; *len gets its size. */
static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	void *buf = NULL;
	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && st.st_size >= 0) {
		buf = malloc(st.st_size ? (size_t)st.st_size : 1);
		if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)st.st_size;
	}
	fclose(f);
	return buf;
}

static int spill(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t n = fwrite(buf, 1, len, f);
	return (fclose(f) != 0 || n != len) ? -1 : 0;
}

static int list_types(void)
{
	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		const struct ggml_type_traits *tr = ggml_get_type_traits((enum ggml_type)t);
		if (!quantizable((enum ggml_type)t))
			continue;
		printf("%s %d %lld %zu %d\n", tr->type_name, t, (long long)tr->blck_size, tr->type_size,
		       ggml_quantize_requires_imatrix((enum ggml_type)t) ? 1 : 0);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: ggml_quant TYPE N_PER_ROW IN_F32.bin OUT.bin [IMATRIX_F32.bin]\n"
			"       ggml_quant --dequant TYPE N_PER_ROW IN.bin OUT_F32.bin\n"
			"       ggml_quant --list\n"
			"       ggml_quant --batch JOBS.txt\n");
	return 1;
}

/* One quantize or dequantize job; argv[0] is unused, as in main. */
static int run_job(int argc, char **argv)
{
	int dequant = 0, rc = 1;
	enum ggml_type type;
	void *in = NULL, *out = NULL;
	float *imatrix = NULL;
	size_t in_len = 0, im_len = 0, out_len;
	char nbuf[32];

	if (argc > 1 && strcmp(argv[1], "--dequant") == 0) {
		dequant = 1;
		argv++;
		argc--;
	}
	if (argc != 5 && !(argc == 6 && !dequant))
		return usage();
	if (parse_type(argv[1], &type) != 0 || !quantizable(type))
		return fail("unknown or unquantizable ggml type '%s'%s", argv[1], "");
	const struct ggml_type_traits *tr = ggml_get_type_traits(type);

	char *end;
	errno = 0;
	long long n_per_row = strtoll(argv[2], &end, 10);
	if (errno || *end || n_per_row <= 0 || n_per_row > (1LL << 40) || n_per_row % tr->blck_size != 0) {
		snprintf(nbuf, sizeof nbuf, "%lld", (long long)tr->blck_size);
		return fail("N_PER_ROW '%s' is not a positive multiple of the block size %s", argv[2], nbuf);
	}
	size_t row_size = ggml_row_size(type, n_per_row);

	in = slurp(argv[3], &in_len);
	if (!in)
		return fail("cannot read '%s': %s", argv[3], strerror(errno));

	size_t in_row = dequant ? row_size : (size_t)n_per_row * sizeof(float);
	if (in_len % in_row != 0) {
		snprintf(nbuf, sizeof nbuf, "%zu", in_row);
		fail("'%s' is not a whole number of rows of %s bytes", argv[3], nbuf);
		goto out;
	}
	int64_t nrows = (int64_t)(in_len / in_row);

	if (dequant) {
		if (!tr->to_float && type != GGML_TYPE_F32) {
			fail("ggml type '%s' has no to_float%s", argv[1], "");
			goto out;
		}
		out_len = (size_t)nrows * (size_t)n_per_row * sizeof(float);
		out = malloc(out_len ? out_len : 1);
		if (!out)
			goto nomem;
		/* Row by row, as ggml's get_rows does: a row is a whole number of blocks. */
		if (type == GGML_TYPE_F32)
			memcpy(out, in, out_len);
		else
			for (int64_t r = 0; r < nrows; r++)
				tr->to_float((const char *)in + r * row_size, (float *)out + r * n_per_row, n_per_row);
	} else {
		if (argc == 6) {
			imatrix = slurp(argv[5], &im_len);
			if (!imatrix) {
				fail("cannot read '%s': %s", argv[5], strerror(errno));
				goto out;
			}
			if (im_len != (size_t)n_per_row * sizeof(float)) {
				fail("'%s' must hold exactly N_PER_ROW floats (%s)", argv[5], argv[2]);
				goto out;
			}
		}
		if (ggml_quantize_requires_imatrix(type) && !imatrix) {
			fail("ggml type '%s' requires an importance matrix%s", argv[1], "");
			goto out;
		}
		out_len = (size_t)nrows * row_size;
		out = malloc(out_len ? out_len : 1);
		if (!out)
			goto nomem;
		if (chunk_type(type)) {
			/* The IQ grids are built on first use; init explicitly so a failure shows here. */
			ggml_quantize_init(type);
			if (nrows > 0 &&
			    ggml_quantize_chunk(type, in, out, 0, nrows, n_per_row, imatrix) != out_len) {
				fail("ggml_quantize_chunk returned a short size for '%s'%s", argv[3], "");
				goto out;
			}
		} else {
			if (imatrix) {
				fail("ggml type '%s' takes no importance matrix%s", argv[1], "");
				goto out;
			}
			for (int64_t r = 0; r < nrows; r++)
				tr->from_float_ref((const float *)in + r * n_per_row, (char *)out + r * row_size,
						   n_per_row);
		}
	}
	if (spill(argv[4], out, out_len) != 0) {
		fail("cannot write '%s': %s", argv[4], strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
nomem:
	fail("out of memory for '%s'%s", argv[3], "");
out:
	free(in);
	free(out);
	free(imatrix);
	return rc;
}

static int run_batch(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	int lineno = 0;
	if (!f)
		return fail("cannot read '%s': %s", path, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		static char prog[] = "ggml_quant";
		char *argv[8] = {prog};
		int argc = 1;
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			fclose(f);
			return fail("'%s': line too long%s", path, "");
		}
		for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
			if (argc == 8) {
				fclose(f);
				return fail("'%s': too many arguments on a line%s", path, "");
			}
			argv[argc++] = tok;
		}
		if (argc == 1)
			continue;
		if (run_job(argc, argv) != 0) {
			fprintf(stderr, "ggml_quant: in '%s' line %d\n", path, lineno);
			fclose(f);
			return 1;
		}
	}
	int bad = ferror(f);
	fclose(f);
	return bad ? fail("cannot read '%s'%s", path, "") : 0;
}

int main(int argc, char **argv)
{
	int rc;
	if (argc == 2 && strcmp(argv[1], "--list") == 0)
		return list_types();
	if (argc == 3 && strcmp(argv[1], "--batch") == 0)
		rc = run_batch(argv[2]);
	else
		rc = run_job(argc, argv);
	ggml_quantize_free();
	return rc;
}
