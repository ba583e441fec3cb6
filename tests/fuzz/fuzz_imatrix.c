/* fuzz_imatrix.c: libFuzzer target for the importance-matrix reader (GGUF and legacy .dat): open, check every entry, free. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../formats/imatrix_file.h"

/*
 * Promises checked: a failed read leaves *out NULL and one non-empty line
 * in err; a successful one gives entries sorted by unique name, each with
 * n_mat * n_per_row finite non-negative weights and n_mat counts, and
 * muse_imatrix_find finds every entry by its name.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.imatrix", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	for (size_t off = 0; off < size;) {
		ssize_t w = write(fd, data + off, size - off);
		if (w <= 0) {
			close(fd);
			return 0;
		}
		off += (size_t)w;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	muse_imatrix *im = NULL;
	muse_err err = { 0 };
	if (muse_imatrix_read(path, &im, &err) != MUSE_OK) {
		if (im || !err.msg[0] || strchr(err.msg, '\n'))
			abort();
		close(fd);
		return 0;
	}
	if (!im || im->n == 0)
		abort();
	for (size_t i = 0; i < im->n; i++) {
		const muse_imatrix_entry *e = &im->e[i];
		if (!e->name || !e->name[0] || e->n_mat == 0 || e->n_per_row == 0 || e->n_empty > e->n_mat)
			abort();
		if (i && strcmp(im->e[i - 1].name, e->name) >= 0)
			abort();
		if (muse_imatrix_find(im, e->name) != e)
			abort();
		for (uint64_t k = 0; k < (uint64_t)e->n_mat * e->n_per_row; k++)
			if (!isfinite(e->w[k]) || e->w[k] < 0)
				abort();
		volatile int64_t sink = 0;
		for (uint32_t j = 0; j < e->n_mat; j++)
			sink += e->counts[j];
		(void)sink;
	}
	for (size_t i = 0; i < im->n_datasets; i++)
		if (!im->datasets[i])
			abort();
	muse_imatrix_free(im);
	close(fd);
	return 0;
}
