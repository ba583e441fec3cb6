/* imatrix_file.c: reads llama.cpp importance matrices (GGUF and legacy .dat) into normalized per-tensor weights, strictly. */
#include "imatrix_file.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/kv.h"
#include "../lib/mapfile.h"
#include "../lib/strmap.h"
#include "reader.h"

/*
 * The normalization is llama-quantize's (tools/quantize/quantize.cpp,
 * load_imatrix): GGUF entries become in_sum2[j] / (float)lround(counts[j])
 * per matrix, with weight 1 for a matrix whose count is 0; legacy entries
 * become sums / (float)ncall, or the sums themselves when ncall <= 0.
 * Where llama.cpp is lenient (trailing bytes, odd tensors, a name cut at a
 * NUL, a later duplicate silently replacing an earlier one) we refuse.
 */

static void entry_free(muse_imatrix_entry *e)
{
	free(e->name);
	free(e->w);
	free(e->counts);
}

void muse_imatrix_free(muse_imatrix *im)
{
	if (!im)
		return;
	for (size_t i = 0; i < im->n; i++)
		entry_free(&im->e[i]);
	free(im->e);
	for (size_t i = 0; i < im->n_datasets; i++)
		free(im->datasets[i]);
	free(im->datasets);
	free(im->path);
	free(im);
}

void muse_imatrix_keep(muse_imatrix *im, bool (*keep)(const char *name, void *ctx), void *ctx)
{
	size_t k = 0;
	for (size_t i = 0; i < im->n; i++) {
		if (keep(im->e[i].name, ctx))
			im->e[k++] = im->e[i];
		else
			entry_free(&im->e[i]);
	}
	im->n = k;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const muse_imatrix_entry *)a)->name, ((const muse_imatrix_entry *)b)->name);
}

const muse_imatrix_entry *muse_imatrix_find(const muse_imatrix *im, const char *name)
{
	if (!im || !im->n)
		return NULL;
	muse_imatrix_entry key = { .name = (char *)name };
	return bsearch(&key, im->e, im->n, sizeof *im->e, cmp_entry);
}

static muse_status add_dataset(muse_imatrix *im, const char *s, size_t len, muse_err *err)
{
	char **d = realloc(im->datasets, (im->n_datasets + 1) * sizeof *d);
	if (!d)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", im->path);
	im->datasets = d;
	if (!(d[im->n_datasets] = malloc(len + 1)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", im->path);
	memcpy(d[im->n_datasets], s, len);
	d[im->n_datasets][len] = 0;
	im->n_datasets++;
	return MUSE_OK;
}

static float rd_f32(const uint8_t *p)
{
	float f;
	memcpy(&f, p, 4);
	return f;
}

static int32_t rd_i32(const uint8_t *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* ---- legacy .dat ---- */

/* A little-endian i32 at *pos, or an error naming what was expected there. */
static muse_status take_i32(const muse_map *m, uint64_t *pos, const char *what, int32_t *out, muse_err *err)
{
	if (!muse_range_ok(*pos, 4, m->size))
		return muse_err_at(err, MUSE_ERR_FORMAT, m->path, *pos, "file ends inside %s", what);
	*out = rd_i32(m->data + *pos);
	*pos += 4;
	return MUSE_OK;
}

static muse_status read_legacy(const muse_map *m, muse_imatrix *im, muse_strmap *names, muse_err *err)
{
	uint64_t pos = 0;
	int32_t n_entries = 0;
	muse_status s;
	if ((s = take_i32(m, &pos, "the entry count", &n_entries, err)))
		return s;
	/* each entry needs at least 4+1+4+4+4 bytes: the count cannot promise more than the file holds */
	if (n_entries < 1 || (uint64_t)n_entries > MUSE_IMATRIX_MAX_ENTRIES || (uint64_t)n_entries > m->size / 17)
		return muse_err_at(err, MUSE_ERR_FORMAT, m->path, 0,
				   "entry count %" PRId32 " is not in 1..%u or exceeds what the file can hold", n_entries,
				   MUSE_IMATRIX_MAX_ENTRIES);
	if (!(im->e = calloc((size_t)n_entries, sizeof *im->e)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", m->path);
	for (int32_t i = 0; i < n_entries; i++) {
		uint64_t at = pos;
		int32_t len = 0, ncall = 0, nval = 0;
		if ((s = take_i32(m, &pos, "an entry's name length", &len, err)))
			return s;
		if (len < 1 || len > MUSE_IMATRIX_MAX_NAME)
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, at, "entry %" PRId32 ": name length %" PRId32
					   " is not in 1..%d", i, len, MUSE_IMATRIX_MAX_NAME);
		if (!muse_range_ok(pos, (uint64_t)len, m->size))
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos, "entry %" PRId32 ": file ends inside its name", i);
		const char *nm = (const char *)m->data + pos;
		if (memchr(nm, 0, (size_t)len))
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos, "entry %" PRId32 ": name holds a NUL byte", i);
		muse_imatrix_entry *e = &im->e[im->n];
		if (!(e->name = malloc((size_t)len + 1)))
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", m->path);
		memcpy(e->name, nm, (size_t)len);
		e->name[len] = 0;
		im->n++;
		pos += (uint64_t)len;
		if (muse_strmap_put(names, e->name, (size_t)len, im->n - 1, NULL) != 1)
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, at, "entry '%s' appears twice", e->name);
		if ((s = take_i32(m, &pos, "an entry's call count", &ncall, err)) ||
		    (s = take_i32(m, &pos, "an entry's value count", &nval, err)))
			return s;
		if (nval < 1)
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos - 4, "entry '%s': value count %" PRId32 " < 1",
					   e->name, nval);
		if (!muse_range_ok(pos, (uint64_t)nval * 4, m->size))
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos,
					   "entry '%s': %" PRId32 " values need %" PRIu64 " bytes, the file has %" PRIu64 " left",
					   e->name, nval, (uint64_t)nval * 4, m->size - pos);
		e->n_per_row = (uint64_t)nval; /* the legacy format does not say how many experts: one flat row */
		e->n_mat = 1;
		e->w = malloc((size_t)nval * sizeof *e->w);
		e->counts = malloc(sizeof *e->counts);
		if (!e->w || !e->counts)
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", m->path);
		e->counts[0] = ncall;
		e->n_empty = ncall == 0;
		for (int32_t j = 0; j < nval; j++) {
			float v = rd_f32(m->data + pos + 4 * (uint64_t)j);
			if (!isfinite(v) || v < 0)
				return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos + 4 * (uint64_t)j,
						   "entry '%s': value %" PRId32 " is %g; importance must be finite and >= 0",
						   e->name, j, (double)v);
			e->w[j] = ncall > 0 ? v / (float)ncall : v;
		}
		pos += (uint64_t)nval * 4;
	}
	/* optional trailer: i32 chunk count, then i32 length and the dataset's file name */
	if (pos == m->size)
		return MUSE_OK;
	uint64_t at = pos;
	int32_t chunks = 0, len = 0;
	if ((s = take_i32(m, &pos, "the chunk count", &chunks, err)))
		return s;
	im->chunk_count = chunks > 0 ? (uint32_t)chunks : 0;
	if (pos == m->size)
		return MUSE_OK;
	if ((s = take_i32(m, &pos, "the dataset name length", &len, err)))
		return s;
	if (len < 0 || (uint64_t)len != m->size - pos)
		return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos - 4,
				   "dataset name length %" PRId32 " does not match the %" PRIu64 " bytes left after the entries",
				   len, m->size - pos);
	(void)at;
	if (len > 0) {
		if (memchr(m->data + pos, 0, (size_t)len))
			return muse_err_at(err, MUSE_ERR_FORMAT, m->path, pos, "dataset name holds a NUL byte");
		if ((s = add_dataset(im, (const char *)m->data + pos, (size_t)len, err)))
			return s;
	}
	return MUSE_OK;
}

/* ---- GGUF ---- */

static bool strip_suffix(const char *name, const char *suf, size_t *base_len)
{
	size_t a = strlen(name), b = strlen(suf);
	if (a <= b || strcmp(name + a - b, suf))
		return false;
	*base_len = a - b;
	return true;
}

static muse_status read_gguf(const char *path, muse_imatrix *im, muse_strmap *names, muse_err *err)
{
	muse_reader *r = NULL;
	muse_status s = muse_gguf_open(path, &r, err);
	if (s)
		return s;
	const muse_meta *meta = &r->meta;
	const char *gt = muse_meta_get_str(meta, "general.type");
	if (gt && strcmp(gt, "imatrix")) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: not an importance matrix (general.type is '%s')", path, gt);
		goto out;
	}
	/* llama-quantize refuses GGUF imatrix files without these three keys */
	const muse_kv *ds = muse_meta_find(meta, "imatrix.datasets");
	const muse_kv *cc = muse_meta_find(meta, "imatrix.chunk_count");
	const muse_kv *cs = muse_meta_find(meta, "imatrix.chunk_size");
	if (!ds || !cc || !cs) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: not an importance matrix: key '%s' missing", path,
				 !ds ? "imatrix.datasets" : !cc ? "imatrix.chunk_count" : "imatrix.chunk_size");
		goto out;
	}
	if (ds->type != MUSE_KV_ARRAY || ds->arr_type != MUSE_KV_STRING || cc->type != MUSE_KV_U32 ||
	    cs->type != MUSE_KV_U32) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: key '%s' has the wrong type (%s)", path,
				 ds->type != MUSE_KV_ARRAY || ds->arr_type != MUSE_KV_STRING ? "imatrix.datasets"
				 : cc->type != MUSE_KV_U32 ? "imatrix.chunk_count" : "imatrix.chunk_size",
				 ds->type != MUSE_KV_ARRAY || ds->arr_type != MUSE_KV_STRING ? "want an array of strings"
											 : "want u32");
		goto out;
	}
	im->chunk_count = (uint32_t)cc->v.u;
	im->chunk_size = (uint32_t)cs->v.u;
	for (uint64_t i = 0; i < ds->n; i++) {
		const muse_str *str = &((const muse_str *)ds->arr)[i];
		if (memchr(str->ptr, 0, (size_t)str->len)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: imatrix.datasets[%" PRIu64 "] holds a NUL byte", path, i);
			goto out;
		}
		if ((s = add_dataset(im, str->ptr, (size_t)str->len, err)))
			goto out;
	}
	if (r->n_tensors == 0) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: holds no importance data (no tensors)", path);
		goto out;
	}
	if (!(im->e = calloc(r->n_tensors, sizeof *im->e))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	/* pair every "<name>.in_sum2" with its "<name>.counts" (tensor names are unique in a GGUF) */
	muse_strmap counts_of;
	muse_strmap_init(&counts_of);
	for (size_t i = 0; i < r->n_tensors && !s; i++) {
		size_t bl;
		const muse_tensor *t = &r->tensors[i];
		if (strip_suffix(t->name, ".counts", &bl)) {
			if (muse_strmap_put(&counts_of, t->name, bl, i, NULL) < 0)
				s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
		} else if (!strip_suffix(t->name, ".in_sum2", &bl)) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, t->header_offset,
					"tensor '%s' is neither '<name>.in_sum2' nor '<name>.counts'", t->name);
		}
	}
	size_t n_sums = 0;
	for (size_t i = 0; i < r->n_tensors && !s; i++) {
		const muse_tensor *t = &r->tensors[i];
		size_t bl, ci;
		if (!strip_suffix(t->name, ".in_sum2", &bl))
			continue;
		n_sums++;
		if (!muse_strmap_get(&counts_of, t->name, bl, &ci)) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, t->header_offset, "tensor '%s' has no '%.*s.counts'",
					t->name, (int)bl, t->name);
			break;
		}
		const muse_tensor *c = &r->tensors[ci];
		if (t->dtype != MUSE_DT_F32 || c->dtype != MUSE_DT_F32) {
			const muse_tensor *bad = t->dtype != MUSE_DT_F32 ? t : c;
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, bad->header_offset, "tensor '%s' is %s, not F32",
					bad->name, muse_dtype_name(bad->dtype));
			break;
		}
		uint64_t nval = t->nelements, nmat = c->nelements;
		uint64_t row = t->ndim ? t->shape[t->ndim - 1] : 1;
		if (nmat < 1 || nmat > UINT32_MAX || nval < 1 || nval > MUSE_IMATRIX_MAX_VALUES || nval % nmat ||
		    nval / nmat != row) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, t->header_offset,
					"tensor '%s': %" PRIu64 " sums do not make %" PRIu64 " rows of %" PRIu64
					" (one per count in '%s')", t->name, nval, nmat, row, c->name);
			break;
		}
		muse_imatrix_entry *e = &im->e[im->n];
		e->name = malloc(bl + 1);
		e->w = malloc((size_t)nval * sizeof *e->w);
		e->counts = malloc((size_t)nmat * sizeof *e->counts);
		if (!e->name || !e->w || !e->counts) {
			entry_free(e);
			memset(e, 0, sizeof *e);
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
			break;
		}
		memcpy(e->name, t->name, bl);
		e->name[bl] = 0;
		im->n++;
		e->n_per_row = row;
		e->n_mat = (uint32_t)nmat;
		if (muse_strmap_put(names, e->name, bl, im->n - 1, NULL) != 1) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, t->header_offset, "entry '%s' appears twice", e->name);
			break;
		}
		const uint8_t *sv = muse_reader_view(r, i), *cv = muse_reader_view(r, ci);
		if (!sv || !cv) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': data not contiguous", path, t->name);
			break;
		}
		for (uint64_t j = 0; j < nmat && !s; j++) {
			float cf = rd_f32(cv + 4 * j);
			if (!isfinite(cf) || cf < 0 || cf > 9.2e18f) {
				s = muse_err_at(err, MUSE_ERR_FORMAT, path, c->offset + 4 * j,
						"tensor '%s': count %" PRIu64 " is %g; counts must be finite and >= 0", c->name,
						j, (double)cf);
				break;
			}
			e->counts[j] = (int64_t)llroundf(cf);
			float count = (float)e->counts[j];
			e->n_empty += e->counts[j] == 0;
			for (uint64_t k = 0; k < row; k++) {
				uint64_t at = j * row + k;
				float v = rd_f32(sv + 4 * at);
				if (!isfinite(v) || v < 0) {
					s = muse_err_at(err, MUSE_ERR_FORMAT, path, t->offset + 4 * at,
							"tensor '%s': value %" PRIu64 " is %g; sums of squares must be finite "
							"and >= 0", t->name, at, (double)v);
					break;
				}
				/* an expert that saw no tokens gets neutral weights; the others keep theirs */
				e->w[at] = e->counts[j] > 0 ? v / count : 1.0f;
			}
		}
	}
	/* a .counts whose .in_sum2 is missing */
	for (size_t i = 0; i < r->n_tensors && !s; i++) {
		size_t bl, dummy;
		const muse_tensor *t = &r->tensors[i];
		if (strip_suffix(t->name, ".counts", &bl) && !muse_strmap_get(names, t->name, bl, &dummy))
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, t->header_offset, "tensor '%s' has no '%.*s.in_sum2'",
					t->name, (int)bl, t->name);
	}
	(void)n_sums;
	muse_strmap_free(&counts_of);
out:
	muse_reader_free(r);
	return s;
}

muse_status muse_imatrix_read(const char *path, muse_imatrix **out, muse_err *err)
{
	*out = NULL;
	muse_map m;
	muse_strmap names;
	muse_status s = muse_map_open(path, &m, err);
	if (s)
		return s;
	muse_strmap_init(&names);
	muse_imatrix *im = calloc(1, sizeof *im);
	if (!im || !(im->path = strdup(path))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
		goto fail;
	}
	if (m.size >= 4 && !memcmp(m.data, "GGUF", 4)) {
		s = read_gguf(path, im, &names, err);
	} else {
		im->legacy = true;
		if (m.size < 4)
			s = muse_err_at(err, MUSE_ERR_FORMAT, path, 0, "too short (%" PRIu64 " bytes) for an importance matrix",
					m.size);
		else
			s = read_legacy(&m, im, &names, err);
	}
	if (s)
		goto fail;
	qsort(im->e, im->n, sizeof *im->e, cmp_entry);
	muse_strmap_free(&names);
	muse_map_close(&m);
	*out = im;
	return MUSE_OK;
fail:
	muse_strmap_free(&names);
	muse_map_close(&m);
	muse_imatrix_free(im);
	return s;
}
