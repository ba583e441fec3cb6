/* bench_dtype.c: throughput of the hot dtype conversions (GB/s of input), 1 thread and all threads, against memcpy. */
/*
 * usage: bench_dtype [MiB]   (input bytes per case, default 256)
 * Prints a markdown table. Each number is the best of 5 runs over a buffer already faulted in, so
 * it measures conversion and memory bandwidth, not page faults. With 256 MiB the conversions are
 * bound by DRAM (the destination also pays read-for-ownership, memcpy's streaming stores do not);
 * with 1 MiB (cache-resident, repeated) the numbers show the kernels' own speed, which is what
 * muse's chunked streaming (convert a chunk, write it out) sees.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../lib/dtype.h"

#define REPS 5

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "bench_dtype: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	memset(p, 0, n); /* fault the pages in before timing */
	return p;
}

/* memcpy split across the current OpenMP threads the way muse_dtype_convert splits its work. */
static void par_memcpy(void *dst, const void *src, size_t n)
{
	const size_t chunk = (size_t)1 << 20;
	size_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
	for (size_t c = 0; c < nchunks; c++) {
		size_t off = c * chunk, len = n - off < chunk ? n - off : chunk;
		memcpy((char *)dst + off, (const char *)src + off, len);
	}
}

enum how { FAST, REF, MEMCPY };

static double best_gbs(enum how how, int threads, muse_dtype dt, void *dst, muse_dtype st, const void *src,
		       size_t n, size_t in_bytes)
{
	omp_set_num_threads(threads);
	/* small (cache-resident) buffers are converted repeatedly so each timing covers >= 256 MiB */
	size_t inner = in_bytes >= ((size_t)256 << 20) ? 1 : ((size_t)256 << 20) / in_bytes;
	if (how == REF && inner > 1)
		inner = inner / 8 + 1; /* the reference is ~10x slower; keep the run short */
	double best = 1e30;
	for (int r = 0; r < REPS; r++) {
		muse_err err;
		double t0 = now();
		muse_status s = MUSE_OK;
		for (size_t k = 0; k < inner && s == MUSE_OK; k++) {
			if (how == FAST)
				s = muse_dtype_convert(dt, dst, st, src, n, &err);
			else if (how == REF)
				s = muse_dtype_convert_ref(dt, dst, st, src, n, &err);
			else
				par_memcpy(dst, src, in_bytes);
		}
		double t = (now() - t0) / (double)inner;
		if (s != MUSE_OK) {
			fprintf(stderr, "bench_dtype: %s\n", err.msg);
			exit(1);
		}
		if (t < best)
			best = t;
	}
	return (double)in_bytes / best / 1e9;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	if (!mib)
		mib = 256;
	size_t in_bytes = mib << 20;
	int nthreads = omp_get_num_procs();
	struct {
		muse_dtype st, dt;
	} cases[] = {
		{ MUSE_DT_F32, MUSE_DT_F16 },	 { MUSE_DT_F16, MUSE_DT_F32 },	   { MUSE_DT_F32, MUSE_DT_BF16 },
		{ MUSE_DT_BF16, MUSE_DT_F32 },	 { MUSE_DT_F8_E4M3, MUSE_DT_F32 }, { MUSE_DT_F32, MUSE_DT_F8_E4M3 },
		{ MUSE_DT_F16, MUSE_DT_BF16 },
	};
	/* realistic weights: f32 values spread over about [-4, 4] with a few large ones, no NaN */
	size_t nf = in_bytes / 4;
	float *f = xalloc(nf * 4);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < nf; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		f[i] = (float)((double)(int32_t)(x >> 32) / 536870912.0) * ((x & 0xFF) == 0 ? 100.0f : 1.0f);
	}
	printf("simd: %s, threads: %d, input per case: %zu MiB\n\n", muse_dtype_simd_name(), nthreads, mib);
	printf("| conversion | scalar ref, 1 thread | fast, 1 thread | fast, %d threads | memcpy, 1 thread | memcpy, %d threads |\n",
	       nthreads, nthreads);
	printf("|---|---:|---:|---:|---:|---:|\n");
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		muse_dtype st = cases[k].st, dt = cases[k].dt;
		size_t ssize = muse_dtype_info(st)->block_bytes, dsize = muse_dtype_info(dt)->block_bytes;
		size_t n = in_bytes / ssize;
		void *src = xalloc(n * ssize), *dst = xalloc(n * dsize > in_bytes ? n * dsize : in_bytes);
		muse_err err;
		/* the source: the same values, converted (f32 itself is a copy of f) */
		for (size_t i = 0; i < n; i += nf) {
			size_t m = n - i < nf ? n - i : nf;
			if (muse_dtype_convert(st, (char *)src + i * ssize, MUSE_DT_F32, f, m, &err) != MUSE_OK) {
				fprintf(stderr, "bench_dtype: %s\n", err.msg);
				return 1;
			}
		}
		double ref1 = best_gbs(REF, 1, dt, dst, st, src, n, in_bytes);
		double fast1 = best_gbs(FAST, 1, dt, dst, st, src, n, in_bytes);
		double fastn = best_gbs(FAST, nthreads, dt, dst, st, src, n, in_bytes);
		double mc1 = best_gbs(MEMCPY, 1, dt, dst, st, src, n, in_bytes);
		double mcn = best_gbs(MEMCPY, nthreads, dt, dst, st, src, n, in_bytes);
		printf("| %s -> %s | %.2f GB/s | %.2f GB/s | %.2f GB/s | %.2f GB/s | %.2f GB/s |\n", muse_dtype_name(st),
		       muse_dtype_name(dt), ref1, fast1, fastn, mc1, mcn);
		fflush(stdout);
		free(src);
		free(dst);
	}
	free(f);
	return 0;
}
