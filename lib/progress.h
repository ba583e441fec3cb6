/* progress.h: progress display for long work: a bar with rate and ETA on a terminal, plain periodic lines otherwise. */
#ifndef MUSE_PROGRESS_H
#define MUSE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct muse_progress {
	FILE *out;          /* stderr by default */
	const char *label;  /* borrowed */
	const char *unit;   /* borrowed; NULL: bytes, shown as "1.23 GB"; else counted things, "12/30 layers" */
	uint64_t total, done;
	double t_start, t_last;
	bool tty, enabled, drew;
	double interval;    /* seconds between updates: 0.1 on a terminal, 5 otherwise */
} muse_progress;

/*
 * Starts a display of `total` units (bytes). Quiet when quiet is set or
 * MUSE_PROGRESS=0 is in the environment; plain lines when stderr is not a
 * terminal (or MUSE_PROGRESS=plain).
 */
void muse_progress_start(muse_progress *p, const char *label, uint64_t total, bool quiet);
/* The same for `total` counted things named by unit (plural, e.g. "layers"): "12/30 layers, 0.5 layers/s". */
void muse_progress_start_count(muse_progress *p, const char *label, uint64_t total, const char *unit, bool quiet);
/* Adds n units; redraws at most every interval. Cheap enough to call per chunk. */
void muse_progress_add(muse_progress *p, uint64_t n);
/* Final line with the elapsed time and average rate. */
void muse_progress_end(muse_progress *p);

/* Formats a byte count as "1.23 GB" into buf. */
const char *muse_fmt_bytes(uint64_t n, char *buf, size_t cap);
/* Monotonic seconds. */
double muse_now(void);

#endif
