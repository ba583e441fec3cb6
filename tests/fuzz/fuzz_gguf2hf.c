/* fuzz_gguf2hf.c: libFuzzer target for GGUF -> HF: the arch reversal, config and tokenizer files built from hostile metadata. */
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#include "../../formats/gguf2hf.h"
#include "../../quant/quant.h"

static char out_dir[128], parent[64];

static void drop_parent(void)
{
	rmdir(parent);
}

/* Removes the flat output directory a successful run leaves. */
static void clear(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!out_dir[0]) {
		snprintf(parent, sizeof parent, "/tmp/fuzz_gguf2hf.%d", (int)getpid());
		mkdir(parent, 0700);
		atexit(drop_parent);
		snprintf(out_dir, sizeof out_dir, "%s/out", parent);
	}
	int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
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
	muse_err err = { 0 };
	muse_gguf2hf_opts o = { .want = MUSE_DT_INVALID, .quiet = true, .dequant = muse_dequantize };
	struct stat st;
	if (muse_gguf2hf(path, out_dir, &o, &err) != MUSE_OK) {
		/* The promises: one line of error, and nothing at the output name. */
		if (!err.msg[0] || strchr(err.msg, '\n') || stat(out_dir, &st) == 0)
			abort();
	} else if (stat(out_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		abort();
	}
	clear(out_dir);
	close(fd);
	return 0;
}
