/* bench_quant.c: quantizer throughput (fast vs reference), and whole-model runs to set beside llama-quantize. */
/*
 * usage:
 *   bench_quant path                     prints the path the fast quantizers take here ("avx2+f16c" or "reference")
 *   bench_quant micro [MiB]              per type, MB/s of f32 input, 1 thread: reference vs fast (cache-warm
 *                                        synthetic Student-t data, best of 3)
 *   bench_quant quant IN TYPE THREADS OUT
 *                                        quantizes every tensor llama-quantize --pure quantizes (2-D+, name
 *                                        ending in "weight", not a norm) of IN with muse_quantize_stream (the
 *                                        pipeline of `muse quantize`: workers pread their rows, a writer
 *                                        thread) and writes the quantized bytes, tensor after tensor, to OUT: the
 *                                        work llama-quantize does minus the GGUF header, for scripts/bench_quant.sh
 *                                        to time from outside as it times llama-quantize. Non-F32 dtypes are
 *                                        converted whole first
 *   bench_quant sums IN TYPE THREADS     the same quantization; prints "name sha256" per tensor, sorted by name
 *   bench_quant gguf-sums FILE TYPE      "name sha256" of every TYPE tensor's bytes in a GGUF, sorted by name
 * scripts/bench.sh compares `sums` of the input with `gguf-sums` of llama-quantize's output: the speed ratio
 * is only reported next to identical bytes.
 */
#include <math.h>
#include <omp.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../formats/reader.h"
#include "../../lib/dtype.h"
#include "../../quant/q_fast.h"
#include "../../quant/q_stream.h"
#include "../../lib/mapfile.h"
#include "../../quant/quant.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "bench_quant: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static void die(const char *what, const muse_err *err)
{
	fprintf(stderr, "bench_quant: %s: %s\n", what, err ? err->msg : "failed");
	exit(1);
}

/* ---- micro ---- */

static uint64_t rng_state = 42;
static double rng_u(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return ((double)(rng_state >> 11) + 0.5) * 0x1p-53;
}

static int micro(size_t mib)
{
	static const muse_dtype types[] = { MUSE_DT_Q4_0, MUSE_DT_Q8_0, MUSE_DT_Q2_K, MUSE_DT_Q3_K,
					    MUSE_DT_Q4_K, MUSE_DT_Q5_K, MUSE_DT_Q6_K };
	size_t n = (mib << 20) / sizeof(float);
	n -= n % 4096;
	float *x = xalloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++) { /* Student t(5): normal / sqrt(chi2_5 / 5), std about 0.02 */
		double z = sqrt(-2 * log(rng_u())) * cos(6.283185307179586 * rng_u()), c = 0;
		for (int k = 0; k < 5; k++) {
			double g = sqrt(-2 * log(rng_u())) * cos(6.283185307179586 * rng_u());
			c += g * g;
		}
		x[i] = (float)(0.02 * z / sqrt(c / 5));
	}
	void *a = xalloc(n * 2), *b = xalloc(n * 2);
	printf("quantize_fast path: %s; %zu MiB of f32, 1 thread, rows of 4096\n\n", muse_quant_fast_path(), mib);
	printf("| type | reference MB/s | fast MB/s | fast/reference | bytes equal |\n|---|---|---|---|---|\n");
	for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
		const muse_quant_traits *q = muse_quant_traits_of(types[t]);
		double best[2] = { 1e30, 1e30 };
		for (int rep = 0; rep < 3; rep++)
			for (int k = 0; k < 2; k++) {
				muse_quantize_fn fn = k ? q->quantize_fast : q->quantize_ref;
				double t0 = now();
				fn(x, k ? b : a, (int64_t)(n / 4096), 4096, NULL);
				double dt = now() - t0;
				if (dt < best[k])
					best[k] = dt;
			}
		uint64_t bytes = 0;
		muse_dtype_nbytes(types[t], n, &bytes);
		double mb = (double)(n * sizeof(float)) / 1e6;
		printf("| %s | %.1f | %.1f | %.2f | %s |\n", muse_dtype_name(types[t]), mb / best[0], mb / best[1],
		       best[0] / best[1], memcmp(a, b, bytes) ? "NO" : "yes");
	}
	free(x);
	free(a);
	free(b);
	return 0;
}

/* ---- whole files ---- */

static bool eligible(const muse_tensor *t, muse_dtype type)
{
	size_t len = strlen(t->name);
	const muse_dtype_traits *dt = muse_dtype_info(type);
	if (t->ndim < 2 || len < 6 || strcmp(t->name + len - 6, "weight") || strstr(t->name, "_norm.weight"))
		return false;
	if (t->dtype != MUSE_DT_F32 && t->dtype != MUSE_DT_F16 && t->dtype != MUSE_DT_BF16)
		return false;
	return t->shape[t->ndim - 1] % dt->blck == 0;
}

typedef struct {
	char *name;
	char hex[65];
} named_sum;

static int by_name(const void *a, const void *b)
{
	return strcmp(((const named_sum *)a)->name, ((const named_sum *)b)->name);
}

static void sha256_hex(const void *p, size_t n, char hex[65])
{
	unsigned char md[32];
	unsigned len = 0;
	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
}

static void print_sums(named_sum *s, size_t n)
{
	qsort(s, n, sizeof *s, by_name);
	for (size_t i = 0; i < n; i++)
		printf("%s %s\n", s[i].name, s[i].hex);
}

typedef struct {
	int fd;          /* output, or -1 */
	EVP_MD_CTX *md;  /* running sha256 of the tensor, or NULL */
} bench_sink;

static muse_status sink_fn(void *ctx, const void *buf, size_t n, int64_t rows, muse_err *err)
{
	bench_sink *k = ctx;
	for (size_t done = 0; k->fd >= 0 && done < n;) {
		ssize_t w = write(k->fd, (const uint8_t *)buf + done, n - done);
		if (w <= 0)
			return muse_err_set(err, MUSE_ERR_IO, "write failed");
		done += (size_t)w;
	}
	if (k->md)
		EVP_DigestUpdate(k->md, buf, n);
	return MUSE_OK;
}

/* Quantizes every eligible tensor with muse_quantize_stream (what `muse quantize` runs): rows read from the
 * file by the workers (pread), a tensor that is not in one piece in a file converted whole first; writes the bytes to fd (may be -1) and/or collects sums. */
static int run_file(const char *in, muse_dtype type, int threads, int fd, bool sums)
{
	muse_err err = { 0 };
	muse_reader *r = NULL;
	muse_qs_session *qs = NULL;
	muse_blas_threads_idle();
	if (muse_reader_open(in, &r, &err) != MUSE_OK || muse_qs_open(threads, &qs, &err) != MUSE_OK)
		die(in, &err);
	named_sum *s = xalloc(sizeof *s * (r->n_tensors + 1));
	bench_sink *k = xalloc(sizeof *k * (r->n_tensors + 1));
	/* the output's blocks reserved first, as muse quantize's GGUF writer does (muse_out_reserve) */
	if (fd >= 0) {
		const muse_dtype_traits *dt = muse_dtype_info(type);
		uint64_t total = 0;
		for (size_t i = 0; i < r->n_tensors; i++)
			if (eligible(&r->tensors[i], type))
				total += r->tensors[i].nelements / dt->blck * dt->block_bytes;
		if (total)
			fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)total);
	}
	size_t ns = 0;
	float *conv = NULL;
	size_t conv_cap = 0;
	/* one session for the whole file, as muse quantize: the workers go from tensor to tensor while the
	 * writer writes; every sink stays valid until the drain at the end */
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (!eligible(t, type))
			continue;
		int64_t npr = (int64_t)t->shape[t->ndim - 1], nrows = (int64_t)(t->nelements / (uint64_t)npr);
		const uint8_t *view = muse_reader_view(r, i);
		const muse_map *m = view && t->file < r->n_files ? &r->files[t->file] : NULL;
		muse_qs_file qf = { m ? m->fd : -1, t->offset, t->dtype, in };
		const float *src = NULL;
		if (m && m->fd >= 0) {
			muse_fd_advise_seq(m->fd, t->offset, t->nbytes);
		} else {
			/* the conversion buffer is reused: the tensor before it must be written first */
			if (muse_qs_drain(qs, &err) != MUSE_OK)
				die(in, &err);
			if (t->nelements * 4 > conv_cap) {
				free(conv);
				conv_cap = t->nelements * 4;
				conv = xalloc(conv_cap);
			}
			void *raw = xalloc(t->nbytes);
			if (muse_reader_read(r, i, raw, &err) != MUSE_OK ||
			    muse_dtype_convert(MUSE_DT_F32, conv, t->dtype, raw, t->nelements, &err) != MUSE_OK)
				die(t->name, &err);
			free(raw);
			src = conv;
		}
		k[ns] = (bench_sink){ fd, sums ? EVP_MD_CTX_new() : NULL };
		if (k[ns].md)
			EVP_DigestInit_ex(k[ns].md, EVP_sha256(), NULL);
		s[ns].name = t->name;
		muse_qs_job job = { .type = type, .nrows = nrows, .n_per_row = npr, .file = src ? NULL : &qf, .f32 = src,
				    .check_finite = true, .sink = sink_fn, .sink_ctx = &k[ns] };
		if (muse_qs_submit(qs, &job, &err) != MUSE_OK)
			die(t->name, &err);
		ns++;
	}
	if (muse_qs_drain(qs, &err) != MUSE_OK)
		die(in, &err);
	muse_qs_close(qs);
	for (size_t i = 0; i < ns && sums; i++) {
		unsigned char md[32];
		unsigned len = 0;
		EVP_DigestFinal_ex(k[i].md, md, &len);
		EVP_MD_CTX_free(k[i].md);
		for (int b = 0; b < 32; b++)
			sprintf(s[i].hex + 2 * b, "%02x", md[b]);
	}
	if (sums)
		print_sums(s, ns);
	free(conv);
	free(k);
	free(s);
	muse_reader_free(r);
	return 0;
}

static int gguf_sums(const char *path, muse_dtype type)
{
	muse_err err = { 0 };
	muse_reader *r = NULL;
	if (muse_reader_open(path, &r, &err) != MUSE_OK)
		die(path, &err);
	named_sum *s = xalloc(sizeof *s * (r->n_tensors + 1));
	size_t ns = 0;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (t->dtype != type)
			continue;
		s[ns].name = t->name;
		sha256_hex(muse_reader_view(r, i), t->nbytes, s[ns].hex);
		ns++;
	}
	print_sums(s, ns);
	free(s);
	muse_reader_free(r);
	return 0;
}

static muse_dtype parse_type(const char *name)
{
	muse_dtype t = muse_dtype_from_name(name);
	const muse_quant_traits *q = muse_quant_traits_of(t);
	if (!q || !q->quantize_ref) {
		fprintf(stderr, "bench_quant: %s: not a type muse quantizes\n", name);
		exit(2);
	}
	return t;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "path")) {
		printf("%s\n", muse_quant_fast_path());
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "micro"))
		return micro(argc > 2 ? (size_t)atoi(argv[2]) : 32);
	if (argc == 6 && !strcmp(argv[1], "quant")) {
		int fd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			perror(argv[5]);
			return 1;
		}
		int rc = run_file(argv[2], parse_type(argv[3]), atoi(argv[4]), fd, false);
		if (close(fd) != 0)
			rc = 1;
		return rc;
	}
	if (argc == 5 && !strcmp(argv[1], "sums"))
		return run_file(argv[2], parse_type(argv[3]), atoi(argv[4]), -1, true);
	if (argc == 4 && !strcmp(argv[1], "gguf-sums"))
		return gguf_sums(argv[2], parse_type(argv[3]));
	fprintf(stderr, "usage: bench_quant path | micro [MiB] | quant IN TYPE THREADS OUT | sums IN TYPE THREADS | "
			"gguf-sums FILE TYPE\n");
	return 2;
}
