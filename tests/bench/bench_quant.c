/* bench_quant.c: quantizer throughput (fast vs reference), and whole-model runs to set beside llama-quantize. */
/*
 * usage:
 *   bench_quant path                     prints the path the fast quantizers take here ("avx2+f16c" or "reference")
 *   bench_quant micro [MiB]              per type, MB/s of f32 input, 1 thread: reference vs fast (cache-warm
 *                                        synthetic Student-t data, best of 3)
 *   bench_quant quant IN TYPE THREADS OUT
 *                                        quantizes every tensor llama-quantize --pure quantizes (2-D+, name
 *                                        ending in "weight", not a norm) of IN with muse_quantize_rows and writes
 *                                        the quantized bytes, tensor after tensor, to OUT: the work llama-quantize
 *                                        does, for scripts/bench_quant.sh to time from outside as it times
 *                                        llama-quantize. F32 tensors of a single file are streamed with pread in
 *                                        chunks of rows (1 MiB with one thread, as cat reads; 16 MiB a thread with more), other dtypes converted whole
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

/* Quantizes every eligible tensor; writes the bytes to out (may be NULL) and/or collects sums. */
static int run_file(const char *in, muse_dtype type, int threads, FILE *out, bool sums)
{
	muse_err err = { 0 };
	muse_reader *r = NULL;
	if (muse_reader_open(in, &r, &err) != MUSE_OK)
		die(in, &err);
	const muse_dtype_traits *dt = muse_dtype_info(type);
	named_sum *s = xalloc(sizeof *s * (r->n_tensors + 1));
	size_t ns = 0;
	float *conv = NULL;
	void *dst = NULL;
	size_t conv_cap = 0, dst_cap = 0;
	int fd = open(in, O_RDONLY);
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (!eligible(t, type))
			continue;
		int64_t npr = (int64_t)t->shape[t->ndim - 1], nrows = (int64_t)(t->nelements / (uint64_t)npr);
		const float *src;
		size_t bytes = (size_t)(t->nelements / dt->blck) * dt->block_bytes;
		if (t->dtype == MUSE_DT_F32 && !t->strided && r->n_files == 1 && fd >= 0) {
			/* streamed: about 1 MiB of rows at a time into one reused buffer, quantized while it is
			 * still in cache (what cat does with its buffer; no page faults on a mapping) */
			size_t row_in = (size_t)npr * 4, row_out = (size_t)(npr / dt->blck) * dt->block_bytes;
			/* 1 MiB for one thread; with more, 16 MiB per thread, so each parallel region has many
			 * 16-row tasks to balance and the team meets at few barriers */
			size_t chunk_in = threads == 1 ? (size_t)1 << 20 : ((size_t)16 << 20) * (size_t)threads;
			int64_t chunk_rows = (int64_t)(chunk_in / row_in);
			if (chunk_rows < 1)
				chunk_rows = 1;
			if ((size_t)chunk_rows * row_in > conv_cap) {
				free(conv);
				conv_cap = (size_t)chunk_rows * row_in;
				conv = xalloc(conv_cap);
			}
			if ((size_t)chunk_rows * row_out > dst_cap && !sums) {
				free(dst);
				dst_cap = (size_t)chunk_rows * row_out;
				dst = xalloc(dst_cap);
			}
			if (sums && bytes > dst_cap) {
				free(dst);
				dst_cap = bytes;
				dst = xalloc(dst_cap);
			}
			for (int64_t r0 = 0; r0 < nrows; r0 += chunk_rows) {
				int64_t nr = nrows - r0 < chunk_rows ? nrows - r0 : chunk_rows;
				size_t want = (size_t)nr * row_in;
				if (pread(fd, conv, want, (off_t)(t->offset + (uint64_t)r0 * row_in)) != (ssize_t)want) {
					fprintf(stderr, "bench_quant: %s: short read\n", t->name);
					return 1;
				}
				uint8_t *o = (uint8_t *)dst + (sums ? (size_t)r0 * row_out : 0);
				if (muse_quantize_rows(type, conv, o, nr, npr, NULL, threads, &err) != MUSE_OK)
					die(t->name, &err);
				if (out && fwrite(o, 1, (size_t)nr * row_out, out) != (size_t)nr * row_out) {
					fprintf(stderr, "bench_quant: write failed\n");
					return 1;
				}
			}
			if (sums) {
				s[ns].name = t->name;
				sha256_hex(dst, bytes, s[ns].hex);
				ns++;
			}
			continue;
		} else {
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
		if (bytes > dst_cap) {
			free(dst);
			dst_cap = bytes;
			dst = xalloc(dst_cap);
		}
		if (muse_quantize_rows(type, src, dst, nrows, npr, NULL, threads, &err) != MUSE_OK)
			die(t->name, &err);
		if (out && fwrite(dst, 1, bytes, out) != bytes) {
			fprintf(stderr, "bench_quant: write failed\n");
			return 1;
		}
		if (sums) {
			s[ns].name = t->name;
			sha256_hex(dst, bytes, s[ns].hex);
			ns++;
		}
	}
	if (sums)
		print_sums(s, ns);
	free(conv);
	free(dst);
	free(s);
	muse_reader_free(r);
	if (fd >= 0)
		close(fd);
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
		FILE *out = fopen(argv[5], "wb");
		if (!out) {
			perror(argv[5]);
			return 1;
		}
		int rc = run_file(argv[2], parse_type(argv[3]), atoi(argv[4]), out, false);
		if (fclose(out) != 0)
			rc = 1;
		return rc;
	}
	if (argc == 5 && !strcmp(argv[1], "sums"))
		return run_file(argv[2], parse_type(argv[3]), atoi(argv[4]), NULL, true);
	if (argc == 4 && !strcmp(argv[1], "gguf-sums"))
		return gguf_sums(argv[2], parse_type(argv[3]));
	fprintf(stderr, "usage: bench_quant path | micro [MiB] | quant IN TYPE THREADS OUT | sums IN TYPE THREADS | "
			"gguf-sums FILE TYPE\n");
	return 2;
}
