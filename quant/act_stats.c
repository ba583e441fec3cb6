/* act_stats.c: the statistics collector behind muse imatrix (and GPTQ/AWQ): sums over linear-layer inputs, and llama.cpp's GGUF imatrix writer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/gguf.h"
#include "../lib/checked.h"
#include "../lib/kv.h"
#include "../lib/strmap.h"
#include "act_stats.h"

struct muse_stats {
	unsigned flags;
	int64_t keep_cap;
	uint64_t keep_seed;
	bool hooked;             /* a hook call happened: the reservoir settings are fixed */
	muse_stats_entry **e;
	size_t n, cap;
	muse_strmap names;
	bool sorted;
};

/* An entry and what only this file sees: the reservoir's PRNG state per expert. */
typedef struct entry_priv {
	muse_stats_entry e;
	uint64_t *rng;
} entry_priv;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

muse_status muse_stats_create(unsigned flags, muse_stats **out, muse_err *err)
{
	muse_stats *st = calloc(1, sizeof *st);
	*out = NULL;
	if (!st)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	st->flags = flags;
	st->keep_cap = 512;
	muse_strmap_init(&st->names);
	*out = st;
	return MUSE_OK;
}

static void entry_free(muse_stats_entry *e)
{
	if (!e)
		return;
	free(e->sum2);
	free(e->abssum);
	free(e->xtx);
	free(e->counts);
	free(e->routed);
	free(e->kept);
	free(e->n_kept);
	free(((entry_priv *)e)->rng);
	free(e);
}

void muse_stats_free(muse_stats *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++)
		entry_free(st->e[i]);
	free(st->e);
	muse_strmap_free(&st->names);
	free(st);
}

static muse_stats_entry *entry_new(const muse_stats *st, const char *name, int64_t n_in, int64_t n_mat)
{
	const unsigned flags = st->flags;
	entry_priv *ep = calloc(1, sizeof *ep);
	muse_stats_entry *e = ep ? &ep->e : NULL;
	size_t nv;
	if (!e || n_in <= 0 || n_mat <= 0 || !muse_mul_size((size_t)n_in, (size_t)n_mat, &nv))
		goto fail;
	snprintf(e->name, sizeof e->name, "%s", name);
	e->n_in = n_in;
	e->n_mat = n_mat;
	if (!(e->sum2 = calloc(nv, sizeof *e->sum2)) || !(e->counts = calloc((size_t)n_mat, sizeof *e->counts)) ||
	    !(e->routed = calloc((size_t)n_mat, sizeof *e->routed)))
		goto fail;
	if ((flags & MUSE_STATS_ABSMEAN) && !(e->abssum = calloc(nv, sizeof *e->abssum)))
		goto fail;
	if (flags & MUSE_STATS_XTX) {
		size_t nx;
		if (!muse_mul_size(nv, (size_t)n_in, &nx) || !(e->xtx = calloc(nx, sizeof *e->xtx)))
			goto fail;
	}
	if (flags & MUSE_STATS_KEEP) {
		size_t nk;
		if (!muse_mul_size(nv, (size_t)st->keep_cap, &nk) || !(e->kept = malloc(nk * sizeof *e->kept)) ||
		    !(e->n_kept = calloc((size_t)n_mat, sizeof *e->n_kept)) ||
		    !(ep->rng = malloc((size_t)n_mat * sizeof *ep->rng)))
			goto fail;
		e->keep_cap = st->keep_cap;
		/* One stream per tensor and expert: the seed mixed with the name's FNV-1a hash and the expert number. */
		uint64_t h = 0xcbf29ce484222325ull;
		for (const char *p = name; *p; p++)
			h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
		for (int64_t m = 0; m < n_mat; m++) {
			uint64_t x = st->keep_seed ^ h;
			ep->rng[m] = splitmix64(&x) ^ (uint64_t)m * 0xd1b54a32d192ed03ull;
		}
	}
	return e;
fail:
	entry_free(e);
	return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp((*(muse_stats_entry *const *)a)->name, (*(muse_stats_entry *const *)b)->name);
}

/* Name order for readers; the map is rebuilt because it stores indices. */
static void sort_entries(muse_stats *st)
{
	if (st->sorted)
		return;
	qsort(st->e, st->n, sizeof *st->e, cmp_entry);
	muse_strmap_free(&st->names);
	muse_strmap_init(&st->names);
	for (size_t i = 0; i < st->n; i++)
		muse_strmap_put(&st->names, st->e[i]->name, strlen(st->e[i]->name), i, NULL);
	st->sorted = true;
}

muse_status muse_stats_hook(void *user, const muse_linear_event *ev, muse_err *err)
{
	muse_stats *st = user;
	size_t idx;
	st->hooked = true;
	muse_stats_entry *e;
	int64_t n_mat = ev->expert >= 0 ? ev->n_expert : 1, mat = ev->expert >= 0 ? ev->expert : 0;
	if (muse_strmap_get(&st->names, ev->tensor, strlen(ev->tensor), &idx)) {
		e = st->e[idx];
		if (e->n_in != ev->n_in || e->n_mat != n_mat)
			return muse_err_set(err, MUSE_ERR_CHECK, "statistics for '%s': input width changed from %lld to %lld",
					    ev->tensor, (long long)e->n_in, (long long)ev->n_in);
	} else {
		if (st->n == st->cap) {
			size_t nc = st->cap ? st->cap * 2 : 64;
			muse_stats_entry **ne = realloc(st->e, nc * sizeof *ne);
			if (!ne)
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			st->e = ne;
			st->cap = nc;
		}
		if (!(e = entry_new(st, ev->tensor, ev->n_in, n_mat)))
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the statistics of '%s'", ev->tensor);
		st->e[st->n] = e;
		if (muse_strmap_put(&st->names, e->name, strlen(e->name), st->n, NULL) < 0) {
			entry_free(e);
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		}
		st->n++;
		st->sorted = false;
	}
	const int64_t n = ev->n_in, R = ev->n_rows;
	double *s2 = e->sum2 + mat * n, *sa = e->abssum ? e->abssum + mat * n : NULL;
	const float *x = ev->x;
	/* Columns split over threads, rows summed in order: the same sums for any thread count. */
#pragma omp parallel for schedule(static)
	for (int64_t j = 0; j < n; j++) {
		double a = 0, b = 0;
		for (int64_t r = 0; r < R; r++) {
			double v = x[r * n + j];
			a += v * v;
			b += fabs(v);
		}
		s2[j] += a;
		if (sa)
			sa[j] += b;
	}
	if (e->xtx) {
		/* X^T X in double: rows converted in blocks, accumulated with a symmetric rank-k update in plain loops. */
		double *H = e->xtx + (size_t)mat * (size_t)n * (size_t)n;
#pragma omp parallel for schedule(dynamic, 8)
		for (int64_t i = 0; i < n; i++)
			for (int64_t r = 0; r < R; r++) {
				double xi = x[r * n + i];
				if (xi == 0)
					continue;
				const float *xr = x + r * n;
				double *Hi = H + i * n;
				for (int64_t j = 0; j < n; j++)
					Hi[j] += xi * xr[j];
			}
	}
	if (e->kept) {
		/* Algorithm R: row t of the stream (t = rows seen before it) replaces slot j < cap with probability cap / (t + 1). */
		uint64_t *rng = &((entry_priv *)e)->rng[mat];
		const int64_t cap = e->keep_cap;
		float *K = e->kept + (size_t)mat * (size_t)cap * (size_t)n;
		for (int64_t r = 0; r < R; r++) {
			int64_t t = e->counts[mat] + r, slot = t;
			if (t >= cap) {
				slot = (int64_t)(splitmix64(rng) % (uint64_t)(t + 1));
				if (slot >= cap)
					continue;
			}
			memcpy(K + (size_t)slot * (size_t)n, x + (size_t)r * (size_t)n, (size_t)n * sizeof *K);
		}
		e->n_kept[mat] = e->counts[mat] + R < cap ? e->counts[mat] + R : cap;
	}
	e->counts[mat] += R;
	e->routed[mat] += ev->n_routed;
	return MUSE_OK;
}

muse_status muse_stats_set_keep(muse_stats *st, int64_t max_rows, uint64_t seed, muse_err *err)
{
	if (st->hooked || st->n)
		return muse_err_set(err, MUSE_ERR_USAGE, "the kept-sample reservoir is set before statistics are collected");
	if (max_rows < 1 || max_rows > ((int64_t)1 << 24))
		return muse_err_set(err, MUSE_ERR_USAGE, "kept samples %lld not in 1..16777216", (long long)max_rows);
	st->keep_cap = max_rows;
	st->keep_seed = seed;
	return MUSE_OK;
}

double muse_stats_absmean(const muse_stats_entry *e, int64_t expert, int64_t j)
{
	if (!e->abssum || expert < 0 || expert >= e->n_mat || j < 0 || j >= e->n_in || !e->counts[expert])
		return 0;
	return e->abssum[expert * e->n_in + j] / (double)e->counts[expert];
}

size_t muse_stats_count(const muse_stats *st)
{
	return st->n;
}

const muse_stats_entry *muse_stats_get(const muse_stats *st, size_t i)
{
	sort_entries((muse_stats *)st);
	return i < st->n ? st->e[i] : NULL;
}

const muse_stats_entry *muse_stats_find(const muse_stats *st, const char *name)
{
	size_t i;
	return muse_strmap_get(&st->names, name, strlen(name), &i) ? st->e[i] : NULL;
}

muse_status muse_imatrix_write(const muse_stats *st, const char *path, const muse_imatrix_info *info, muse_err *err)
{
	muse_meta meta;
	muse_gguf_writer *w = NULL;
	float *buf = NULL;
	muse_status s;
	muse_meta_init(&meta);
	sort_entries((muse_stats *)st);
	const char *ds[1] = { info->dataset ? info->dataset : "" };
	if (!st->n) {
		s = muse_err_set(err, MUSE_ERR_USAGE, "%s: no statistics were collected", path);
		goto done;
	}
	if (info->n_samples < 0 || info->n_samples > UINT32_MAX || info->seq_len < 0 || info->seq_len > UINT32_MAX) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: sample count or length does not fit u32", path);
		goto done;
	}
	if ((s = muse_meta_set_str(&meta, "general.type", "imatrix")) ||
	    (s = muse_meta_set_str_arr(&meta, "imatrix.datasets", ds, 1)) ||
	    (s = muse_meta_set_u32(&meta, "imatrix.chunk_count", (uint32_t)info->n_samples)) ||
	    (s = muse_meta_set_u32(&meta, "imatrix.chunk_size", (uint32_t)info->seq_len)) ||
	    (s = muse_meta_set_str(&meta, "muse.calib.sha256", info->sha256 ? info->sha256 : "")) ||
	    (s = muse_meta_set_u32(&meta, "muse.calib.samples", (uint32_t)info->n_samples)) ||
	    (s = muse_meta_set_u32(&meta, "muse.calib.seq_len", (uint32_t)info->seq_len)) ||
	    (s = muse_meta_set_u64(&meta, "muse.calib.seed", info->seed)) ||
	    (s = muse_meta_set_bool(&meta, "muse.imatrix.all_experts", info->all_experts))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	if ((s = muse_gguf_writer_create(path, NULL, &w, err)) || (s = muse_gguf_writer_set_meta(w, &meta, err)))
		goto done;
	size_t maxv = 0;
	for (size_t i = 0; i < st->n; i++) {
		const muse_stats_entry *e = st->e[i];
		char name[128];
		uint64_t sh[2] = { (uint64_t)e->n_mat, (uint64_t)e->n_in }, shc[2] = { (uint64_t)e->n_mat, 1 };
		snprintf(name, sizeof name, "%s.in_sum2", e->name);
		if ((s = muse_gguf_writer_add_tensor(w, name, MUSE_DT_F32, 2, sh, err)))
			goto done;
		snprintf(name, sizeof name, "%s.counts", e->name);
		if ((s = muse_gguf_writer_add_tensor(w, name, MUSE_DT_F32, 2, shc, err)))
			goto done;
		if (info->all_experts && e->n_mat > 1) {
			snprintf(name, sizeof name, "%s.routed", e->name);
			if ((s = muse_gguf_writer_add_tensor(w, name, MUSE_DT_F32, 2, shc, err)))
				goto done;
		}
		size_t nv = (size_t)(e->n_mat * e->n_in);
		if (nv > maxv)
			maxv = nv;
	}
	if (!(buf = malloc(maxv * sizeof *buf))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	if ((s = muse_gguf_writer_begin(w, err)))
		goto done;
	for (size_t i = 0; i < st->n; i++) {
		const muse_stats_entry *e = st->e[i];
		size_t nv = (size_t)(e->n_mat * e->n_in);
		for (size_t j = 0; j < nv; j++)
			buf[j] = (float)e->sum2[j];
		if ((s = muse_gguf_writer_write(w, buf, nv * sizeof *buf, err)))
			goto done;
		for (int64_t j = 0; j < e->n_mat; j++)
			buf[j] = (float)e->counts[j];
		if ((s = muse_gguf_writer_write(w, buf, (size_t)e->n_mat * sizeof *buf, err)))
			goto done;
		if (info->all_experts && e->n_mat > 1) {
			for (int64_t j = 0; j < e->n_mat; j++)
				buf[j] = (float)e->routed[j];
			if ((s = muse_gguf_writer_write(w, buf, (size_t)e->n_mat * sizeof *buf, err)))
				goto done;
		}
	}
	s = muse_gguf_writer_finish(w, err);
done:
	muse_gguf_writer_free(w);
	muse_meta_free(&meta);
	free(buf);
	return s;
}
