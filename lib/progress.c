/* progress.c: the progress bar and its plain-text fallback. */
#include "progress.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double muse_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *muse_fmt_bytes(uint64_t n, char *buf, size_t cap)
{
	const char *u[] = { "B", "kB", "MB", "GB", "TB", "PB" };
	double v = (double)n;
	int i = 0;
	while (v >= 1000 && i < 5) {
		v /= 1000;
		i++;
	}
	snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", v, u[i]);
	return buf;
}

static void fmt_time(double s, char *buf, size_t cap)
{
	if (s < 0 || s > 1e7) {
		snprintf(buf, cap, "--:--");
		return;
	}
	unsigned t = (unsigned)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, cap, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, cap, "%02u:%02u", t / 60, t % 60);
}

void muse_progress_start(muse_progress *p, const char *label, uint64_t total, bool quiet)
{
	memset(p, 0, sizeof *p);
	p->out = stderr;
	p->label = label;
	p->total = total;
	const char *env = getenv("MUSE_PROGRESS");
	p->enabled = !quiet && !(env && !strcmp(env, "0"));
	p->tty = isatty(fileno(stderr)) && !(env && !strcmp(env, "plain"));
	p->interval = p->tty ? 0.1 : 5.0;
	p->t_start = p->t_last = muse_now();
}

void muse_progress_start_count(muse_progress *p, const char *label, uint64_t total, const char *unit, bool quiet)
{
	muse_progress_start(p, label, total, quiet);
	p->unit = unit;
}

/*
 * "1.20 GB/2.00 GB" and "12.3 MB/s" for bytes; "12/30 layers" and "0.46 layers/s" for counts (a byte
 * formatter made layers read "30 B in 00:26, 1 B/s").
 */
static void fmt_amount(const muse_progress *p, double rate, char *amount, size_t acap, char *speed, size_t scap)
{
	if (p->unit) {
		snprintf(amount, acap, "%" PRIu64 "/%" PRIu64 " %s", p->done, p->total, p->unit);
		snprintf(speed, scap, "%.3g %s/s", rate, p->unit);
		return;
	}
	char d[32], t[32], r[32];
	snprintf(amount, acap, "%s/%s", muse_fmt_bytes(p->done, d, sizeof d), muse_fmt_bytes(p->total, t, sizeof t));
	snprintf(speed, scap, "%s/s", muse_fmt_bytes((uint64_t)rate, r, sizeof r));
}

static void draw(muse_progress *p, double now)
{
	double el = now - p->t_start;
	double rate = el > 0 ? (double)p->done / el : 0;
	double frac = p->total ? (double)p->done / (double)p->total : 1;
	if (frac > 1)
		frac = 1;
	char eta[32], amount[96], speed[64];
	fmt_time(rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate : -1, eta, sizeof eta);
	fmt_amount(p, rate, amount, sizeof amount, speed, sizeof speed);
	if (p->tty) {
		char bar[31];
		int fill = (int)(frac * 30);
		for (int i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = 0;
		fprintf(p->out, "\r%s [%s] %3.0f%% %s %s ETA %s\033[K", p->label, bar, frac * 100, amount, speed, eta);
	} else {
		fprintf(p->out, "%s: %3.0f%% %s %s ETA %s\n", p->label, frac * 100, amount, speed, eta);
	}
	fflush(p->out);
	p->drew = true;
}

void muse_progress_add(muse_progress *p, uint64_t n)
{
	p->done += n;
	if (!p->enabled)
		return;
	double now = muse_now();
	if (now - p->t_last >= p->interval) {
		p->t_last = now;
		draw(p, now);
	}
}

void muse_progress_end(muse_progress *p)
{
	if (!p->enabled)
		return;
	double el = muse_now() - p->t_start;
	char amount[96], speed[64], t[32];
	fmt_amount(p, el > 0 ? (double)p->done / el : 0, amount, sizeof amount, speed, sizeof speed);
	if (!p->unit) /* bytes: the total is known from the file sizes the user already sees */
		muse_fmt_bytes(p->done, amount, sizeof amount);
	fmt_time(el, t, sizeof t);
	if (p->tty && p->drew)
		fprintf(p->out, "\r\033[K");
	fprintf(p->out, "%s: %s in %s (%.2f s, %s)\n", p->label, amount, t, el, speed);
	fflush(p->out);
}
