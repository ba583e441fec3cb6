/* bench_qraw.c: the quantize session on raw F32 rows, with no model reader: small enough to link statically and
 * carry to another machine (scripts/bench_qraw_scaling.sh runs it on many cores against dd). */
/*
 * usage:
 *   bench_qraw gen OUT NROWS NPR      writes NROWS x NPR F32 rows of Student-t(5)-like weights (std ~0.02), fixed seed
 *   bench_qraw quant IN NPR TYPE THREADS OUT
 *                                     quantizes IN's rows (tensors of at most 4096 rows, as a model's matrices
 *                                     come) to TYPE through one session (workers pread their rows, a writer writes
 *                                     OUT), the output's blocks reserved first, as muse quantize does
 *   bench_qraw sum FILE               prints the FNV-1a hash of FILE (to check two runs' bytes)
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/dtype.h"
#include "../../lib/mapfile.h"
#include "../../quant/q_stream.h"
#include "../../quant/quant.h"

static uint64_t rng_state = 42;

static uint32_t rng32(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 32);
}

static float unit(void)
{
	return ((float)(rng32() >> 8) + 0.5f) * 0x1p-24f;
}

/* Heavier tails than a gaussian: a normal (Irwin-Hall of 4) scaled by a random factor. */
static float weight(void)
{
	float g = unit() + unit() + unit() + unit() - 2.0f;
	float s = unit() < 0.05f ? 4.0f : 1.0f;
	return g * s * 0.035f;
}

static int gen(const char *out, long nrows, long npr)
{
	FILE *f = fopen(out, "wb");
	if (!f)
		return perror(out), 1;
	float *row = malloc((size_t)npr * sizeof(float));
	for (long r = 0; r < nrows; r++) {
		for (long i = 0; i < npr; i++)
			row[i] = weight();
		if (fwrite(row, sizeof(float), (size_t)npr, f) != (size_t)npr)
			return perror(out), 1;
	}
	free(row);
	return fclose(f) ? 1 : 0;
}

static muse_status sink(void *ctx, const void *buf, size_t n, int64_t rows, muse_err *err)
{
	int fd = *(int *)ctx;
	(void)rows;
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, (const uint8_t *)buf + done, n - done);
		if (w <= 0)
			return muse_err_set(err, MUSE_ERR_IO, "write failed");
		done += (size_t)w;
	}
	return MUSE_OK;
}

static int quant(const char *in, long npr, const char *type_name, int threads, const char *out)
{
	muse_dtype type = muse_dtype_from_name(type_name);
	const muse_dtype_traits *dt = muse_dtype_info(type);
	if (!muse_quant_traits_of(type) || npr % (long)dt->blck)
		return fprintf(stderr, "bench_qraw: bad type %s for rows of %ld\n", type_name, npr), 1;
	int fd = open(in, O_RDONLY | O_CLOEXEC), ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	struct stat st;
	if (fd < 0 || ofd < 0 || fstat(fd, &st))
		return perror(fd < 0 ? in : out), 1;
	long nrows = (long)(st.st_size / (off_t)(npr * 4));
	fallocate(ofd, FALLOC_FL_KEEP_SIZE, 0, (off_t)((uint64_t)nrows * (uint64_t)(npr / dt->blck) * dt->block_bytes));
	muse_err err = { 0 };
	muse_qs_session *s = NULL;
	muse_blas_threads_idle(); /* a build linked with OpenBLAS: its idle threads would spin at start */
	if (muse_qs_open(threads, &s, &err))
		return fprintf(stderr, "bench_qraw: %s\n", err.msg), 1;
	enum { TENSOR_ROWS = 4096 };
	muse_qs_file *files = calloc((size_t)(nrows / TENSOR_ROWS + 1), sizeof *files);
	for (long r = 0, k = 0; r < nrows; r += TENSOR_ROWS, k++) {
		long n = nrows - r < TENSOR_ROWS ? nrows - r : TENSOR_ROWS;
		files[k] = (muse_qs_file){ fd, (uint64_t)r * (uint64_t)npr * 4, MUSE_DT_F32, in };
		muse_fd_advise_seq(fd, files[k].offset, (uint64_t)n * (uint64_t)npr * 4);
		muse_qs_job j = { .type = type, .nrows = n, .n_per_row = npr, .file = &files[k], .check_finite = true,
				  .sink = sink, .sink_ctx = &ofd };
		if (muse_qs_submit(s, &j, &err))
			break;
	}
	int rc = muse_qs_drain(s, &err) ? 1 : 0;
	if (rc)
		fprintf(stderr, "bench_qraw: %s\n", err.msg);
	muse_qs_close(s);
	free(files);
	close(fd);
	return close(ofd) || rc;
}

static int sum(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return perror(path), 1;
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t buf[1 << 16];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		for (size_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 0x100000001b3ull;
	fclose(f);
	printf("%016llx\n", (unsigned long long)h);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "gen"))
		return gen(argv[2], atol(argv[3]), atol(argv[4]));
	if (argc == 7 && !strcmp(argv[1], "quant"))
		return quant(argv[2], atol(argv[3]), argv[4], atoi(argv[5]), argv[6]);
	if (argc == 3 && !strcmp(argv[1], "sum"))
		return sum(argv[2]);
	fprintf(stderr, "usage: bench_qraw gen OUT NROWS NPR | quant IN NPR TYPE THREADS OUT | sum FILE\n");
	return 2;
}
