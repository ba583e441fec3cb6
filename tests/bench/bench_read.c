/* bench_read.c: reads every tensor byte of a model through the reader API (views where possible) and
 * prints seconds and GB/s; used by scripts/bench.sh against `cat FILE > /dev/null`. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../formats/reader.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sums 8-byte words so the compiler cannot drop the reads. */
static uint64_t touch(const uint8_t *p, uint64_t n)
{
	uint64_t acc = 0;
#pragma omp parallel for reduction(^ : acc) schedule(static)
	for (uint64_t i = 0; i < n / 8; i++) {
		uint64_t w;
		memcpy(&w, p + i * 8, 8);
		acc ^= w;
	}
	for (uint64_t i = n / 8 * 8; i < n; i++)
		acc ^= p[i];
	return acc;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: bench_read MODEL\n");
		return 2;
	}
	double t0 = now();
	muse_err err = { 0 };
	muse_reader *r = NULL;
	if (muse_reader_open(argv[1], &r, &err)) {
		fprintf(stderr, "muse: error: %s\n", err.msg);
		return 1;
	}
	uint64_t bytes = 0, acc = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		const uint8_t *v = muse_reader_view(r, i);
		if (!v) {
			if (t->nbytes > cap) {
				free(buf);
				cap = t->nbytes;
				buf = malloc(cap);
			}
			if (!buf || muse_reader_read(r, i, buf, &err)) {
				fprintf(stderr, "muse: error: %s\n", buf ? err.msg : "out of memory");
				return 1;
			}
			v = buf;
		}
		acc ^= touch(v, t->nbytes);
		bytes += t->nbytes;
	}
	double dt = now() - t0;
	printf("%.4f %llu %.3f %llx\n", dt, (unsigned long long)bytes, bytes / dt / 1e9, (unsigned long long)acc);
	free(buf);
	muse_reader_free(r);
	return 0;
}
