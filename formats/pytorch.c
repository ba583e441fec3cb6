/* pytorch.c: the torch.save (zip + pickle) reader, single files and pytorch_model.bin.index.json shards. */
#include "pytorch.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/strmap.h"
#include "pickle.h"
#include "zip.h"

#define MAX_PICKLE_BYTES (256u << 20) /* data.pkl of a 10^5-tensor state dict is a few MB */
#define MAX_SMALL_ENTRY 64            /* byteorder, version, .format_version, .storage_alignment */
#define MAX_INDEX_BYTES (64u << 20)
#define MAX_ARCHIVE_VERSION 10        /* caffe2/serialize/versions.h kMaxSupportedFileFormatVersion */

typedef struct pt_src {
	uint32_t zip;  /* index into priv->zips */
	size_t entry;  /* storage entry in that zip */
} pt_src;

typedef struct pt_priv {
	muse_zip *zips; /* one per file, same order as r->files */
	uint32_t n_zips;
	pt_src *src;    /* parallel to r->tensors */
	size_t cap_src;
} pt_priv;

static void pt_free_priv(muse_reader *r)
{
	pt_priv *p = r->priv;
	if (!p)
		return;
	for (uint32_t i = 0; i < p->n_zips; i++)
		muse_zip_close(&p->zips[i]);
	free(p->zips);
	free(p->src);
	free(p);
	r->priv = NULL;
}

/* Copies a strided view out densely, row-major. Bounds were proven at open. */
static void gather(const muse_tensor *t, const uint8_t *storage, size_t sz, uint8_t *dst)
{
	int nd = t->ndim;
	uint64_t idx[MUSE_MAX_DIMS] = { 0 };
	uint64_t inner = nd ? t->shape[nd - 1] : 1;
	int64_t inner_stride = nd ? t->elem_strides[nd - 1] : 1;
	uint64_t rows = inner ? t->nelements / inner : 0;
	for (uint64_t row = 0; row < rows; row++) {
		uint64_t e = t->elem_offset;
		for (int d = 0; d < nd - 1; d++)
			e += idx[d] * (uint64_t)t->elem_strides[d];
		const uint8_t *src = storage + e * sz;
		if (inner_stride == 1) {
			memcpy(dst, src, inner * sz);
			dst += inner * sz;
		} else {
			for (uint64_t k = 0; k < inner; k++, dst += sz)
				memcpy(dst, src + k * (uint64_t)inner_stride * sz, sz);
		}
		for (int d = nd - 2; d >= 0; d--) {
			if (++idx[d] < t->shape[d])
				break;
			idx[d] = 0;
		}
	}
}

/* Lazy storage CRC (see pytorch.h): once per storage entry, on the first read of any tensor on it. */
static muse_status check_storage(muse_reader *r, size_t i, muse_err *err)
{
	pt_priv *p = r->priv;
	muse_zip *z = &p->zips[p->src[i].zip];
	const muse_zip_entry *e = &z->entries[p->src[i].entry];
	muse_err inner;
	if (muse_zip_verify(z, p->src[i].entry, &inner))
		return muse_err_at(err, MUSE_ERR_CHECK, z->path, e->data_offset,
				   "tensor '%s': storage entry '%s' fails its CRC-32 check (central directory says %08x)",
				   r->tensors[i].name, e->name, e->crc32);
	return MUSE_OK;
}

static muse_status pt_read(muse_reader *r, size_t i, void *dst, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	muse_status s = check_storage(r, i, err);
	if (s)
		return s;
	const uint8_t *base = r->files[t->file].data;
	if (!t->nbytes)
		return MUSE_OK;
	if (!t->strided)
		memcpy(dst, base + t->offset, t->nbytes);
	else
		gather(t, base + t->offset, muse_dtype_info(t->dtype)->block_bytes, dst);
	return MUSE_OK;
}

static const muse_reader_ops pt_ops = { .read = pt_read, .free_priv = pt_free_priv };

muse_status muse_pytorch_verify(muse_reader *r, muse_err *err)
{
	pt_priv *p = r->priv;
	if (!p || r->ops != &pt_ops)
		return muse_err_set(err, MUSE_ERR_USAGE, "%s: not opened by the PyTorch reader", r->path);
	for (size_t i = 0; i < r->n_tensors; i++) {
		muse_status s = check_storage(r, i, err);
		if (s)
			return s;
	}
	return MUSE_OK;
}

/* ---- one archive ---- */

typedef struct pt_archive {
	muse_reader *r;
	pt_priv *p;
	const char *path;
	muse_zip *z;
	uint32_t file, zip;
	char prefix[MUSE_ZIP_MAX_NAME + 1];
	size_t plen;
} pt_archive;

static ptrdiff_t find_member(const pt_archive *a, const char *rel)
{
	char name[MUSE_ZIP_MAX_NAME + 80];
	snprintf(name, sizeof name, "%s/%s", a->prefix, rel);
	return muse_zip_find(a->z, name);
}

/* Reads a small CRC-checked member (NUL-terminated into buf); *found = false when absent. */
static muse_status small_member(pt_archive *a, const char *rel, char *buf, bool *found, muse_err *err)
{
	ptrdiff_t i = find_member(a, rel);
	*found = i >= 0;
	if (i < 0)
		return MUSE_OK;
	const muse_zip_entry *e = &a->z->entries[i];
	if (e->size > MAX_SMALL_ENTRY)
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, e->data_offset,
				   "'%s' is %" PRIu64 " bytes (at most %d expected)", e->name, e->size, MAX_SMALL_ENTRY);
	muse_status s = muse_zip_verify(a->z, (size_t)i, err);
	if (s)
		return s;
	memcpy(buf, a->z->data + e->data_offset, e->size);
	buf[e->size] = 0;
	return MUSE_OK;
}

/* A decimal number with an optional trailing newline. */
static bool parse_decimal(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		if (i >= 18)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		return false;
	if (s[i] == '\n')
		i++;
	if (s[i])
		return false;
	*out = v;
	return true;
}

static muse_status check_layout(pt_archive *a, muse_err *err)
{
	muse_zip *z = a->z;
	if (!z->n_entries)
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, z->cd_offset, "empty zip archive (no data.pkl)");
	/* torch names the root folder after the file (or "archive"): take it from the first entry. */
	const muse_zip_entry *first = &z->entries[0];
	const char *slash = memchr(first->name, '/', first->name_len);
	if (!slash)
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, first->cd_offset,
				   "entry '%s' is not inside a top-level folder", first->name);
	a->plen = (size_t)(slash - first->name);
	memcpy(a->prefix, first->name, a->plen);
	a->prefix[a->plen] = 0;
	for (size_t i = 0; i < z->n_entries; i++) {
		const muse_zip_entry *e = &z->entries[i];
		if (e->name_len <= a->plen || memcmp(e->name, a->prefix, a->plen) || e->name[a->plen] != '/')
			return muse_err_at(err, MUSE_ERR_FORMAT, a->path, e->cd_offset,
					   "entry '%s' is outside the archive's top-level folder '%s'", e->name, a->prefix);
		const char *rel = e->name + a->plen + 1;
		/* torch.load itself handed these to torch.jit.load: CVE-2025-32434. */
		if (!strcmp(rel, "constants.pkl") || !strncmp(rel, "code/", 5))
			return muse_err_at(err, MUSE_ERR_UNSUPPORTED, a->path, e->cd_offset,
					   "TorchScript archive ('%s'): not supported; save a state_dict with torch.save",
					   e->name);
	}
	/* Zero-copy views need stored bytes; torch.save never compresses. */
	for (size_t i = 0; i < z->n_entries; i++)
		if (z->entries[i].method != 0)
			return muse_err_at(err, MUSE_ERR_UNSUPPORTED, a->path, z->entries[i].cd_offset + 10,
					   "entry '%s': compression method %u: only stored entries are supported (torch.save writes them uncompressed)",
					   z->entries[i].name, z->entries[i].method);
	return MUSE_OK;
}

static muse_status check_small_members(pt_archive *a, muse_err *err)
{
	char buf[MAX_SMALL_ENTRY + 1];
	bool found;
	muse_status s = small_member(a, "byteorder", buf, &found, err);
	if (s)
		return s;
	if (found && strcmp(buf, "little")) {
		const muse_zip_entry *e = &a->z->entries[find_member(a, "byteorder")];
		if (!strcmp(buf, "big"))
			return muse_err_at(err, MUSE_ERR_UNSUPPORTED, a->path, e->data_offset,
					   "big-endian archive ('%s' says \"big\"): not supported", e->name);
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, e->data_offset,
				   "'%s' is neither \"little\" nor \"big\"", e->name);
	}
	/* torch prefers .data/version (TorchScript-era writers) and falls back to version. */
	const char *vname = ".data/version";
	if ((s = small_member(a, vname, buf, &found, err)))
		return s;
	if (!found) {
		vname = "version";
		if ((s = small_member(a, vname, buf, &found, err)))
			return s;
	}
	if (!found)
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, a->z->cd_offset, "no '%s/version' entry", a->prefix);
	uint64_t v;
	const muse_zip_entry *ve = &a->z->entries[find_member(a, vname)];
	if (!parse_decimal(buf, &v))
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, ve->data_offset, "'%s' is not a decimal number",
				   ve->name);
	if (v < 1 || v > MAX_ARCHIVE_VERSION)
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, a->path, ve->data_offset,
				   "archive version %" PRIu64 " is not supported (1-%d are)", v, MAX_ARCHIVE_VERSION);
	if (!a->r->version)
		a->r->version = (uint32_t)v;
	static const char *const numeric[] = { ".format_version", ".storage_alignment" };
	for (int k = 0; k < 2; k++) {
		if ((s = small_member(a, numeric[k], buf, &found, err)))
			return s;
		if (found && !parse_decimal(buf, &v)) {
			const muse_zip_entry *e = &a->z->entries[find_member(a, numeric[k])];
			return muse_err_at(err, MUSE_ERR_FORMAT, a->path, e->data_offset, "'%s' is not a decimal number",
					   e->name);
		}
	}
	return MUSE_OK;
}

static bool is_contiguous(const muse_pickle_tensor *t, uint64_t nel)
{
	if (!nel)
		return true; /* no bytes to place; and the stride products below could wrap */
	uint64_t expect = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		if (t->size[d] != 1 && t->stride[d] != expect)
			return false;
		expect *= t->size[d]; /* cannot overflow: the element count was checked first */
	}
	return true;
}

/* Validates one pickled view against its storage and appends it to the reader. */
static muse_status add_tensor(pt_archive *a, const muse_pickle_result *pr, muse_pickle_tensor *pt,
			      const size_t *storage_entry, uint64_t pkl_base, muse_err *err)
{
	const muse_pickle_storage *st = &pr->storages[pt->storage];
	const muse_zip_entry *e = &a->z->entries[storage_entry[pt->storage]];
	uint64_t at = pkl_base + pt->pos;
	size_t sz = muse_dtype_info(pt->dtype)->block_bytes;
	uint64_t st_bytes;
	if (!muse_mul_u64(st->numel, st->untyped ? 1 : muse_dtype_info(st->dtype)->block_bytes, &st_bytes))
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, at, "tensor '%s': storage size overflows", pt->name);
	uint64_t st_elems = st_bytes / sz;

	uint64_t nel;
	if (!muse_product_u64(pt->size, pt->ndim, &nel))
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, at, "tensor '%s': element count overflows", pt->name);
	uint64_t nbytes;
	if (!muse_mul_u64(nel, sz, &nbytes))
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, at, "tensor '%s': byte size overflows", pt->name);
	/* The last element a view touches: offset + sum((size-1) * stride), in elements of its dtype. */
	uint64_t last = pt->offset;
	bool ok = true;
	if (nel) {
		for (int d = 0; d < pt->ndim && ok; d++) {
			uint64_t step;
			ok = muse_mul_u64(pt->size[d] - 1, pt->stride[d], &step) && muse_add_u64(last, step, &last);
		}
		ok = ok && last < st_elems;
	} else {
		ok = pt->offset <= st_elems;
	}
	if (!ok)
		return muse_err_at(err, MUSE_ERR_FORMAT, a->path, at,
				   "tensor '%s': view (offset %" PRIu64 ", %d dims) reaches past its storage '%s' of %" PRIu64
				   " elements",
				   pt->name, pt->offset, pt->ndim, st->key, st_elems);

	muse_reader *r = a->r;
	pt_priv *p = a->p;
	if (r->n_tensors == p->cap_src) {
		size_t cap = p->cap_src ? p->cap_src * 2 : 64;
		pt_src *ns = realloc(p->src, cap * sizeof *ns);
		if (!ns)
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", a->path);
		p->src = ns;
		p->cap_src = cap;
	}
	muse_tensor *t = muse_reader_add_tensor(r);
	if (!t)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", a->path);
	p->src[r->n_tensors - 1] = (pt_src){ a->zip, storage_entry[pt->storage] };
	t->name = pt->name;
	pt->name = NULL;
	t->dtype = pt->dtype;
	t->ndim = pt->ndim;
	memcpy(t->shape, pt->size, sizeof t->shape);
	t->nelements = nel;
	t->nbytes = nbytes;
	t->file = a->file;
	t->header_offset = at;
	if (is_contiguous(pt, nel)) {
		/* Zero-copy: the view is a plain byte range of the storage entry. */
		t->offset = e->data_offset + pt->offset * sz; /* <= entry end, proven above */
	} else {
		t->strided = true;
		t->offset = e->data_offset;
		t->elem_offset = pt->offset;
		t->storage_nbytes = st_bytes;
		for (int d = 0; d < pt->ndim; d++)
			t->elem_strides[d] = (int64_t)pt->stride[d];
	}
	return MUSE_OK;
}

static muse_status open_archive(muse_reader *r, const char *path, muse_err *err)
{
	pt_priv *p = r->priv;
	pt_archive a = { .r = r, .p = p };
	muse_pickle_result pr = { 0 };
	size_t *storage_entry = NULL;
	muse_status s = muse_reader_add_file(r, path, &a.file, err);
	if (s)
		return s;
	const muse_map *m = &r->files[a.file];
	a.path = m->path;
	if (m->size >= 2 && m->data[0] == 0x80 && m->data[1] <= 5)
		return muse_err_at(err, MUSE_ERR_UNSUPPORTED, a.path, 0,
				   "legacy (pre-1.6, non-zip) PyTorch format is not supported; re-save it with a current torch.save");
	if (m->size < 4 || memcmp(m->data, "PK\3\4", 4))
		return muse_err_at(err, MUSE_ERR_FORMAT, a.path, 0, "not a PyTorch zip archive (no ZIP local header)");

	muse_zip *zs = realloc(p->zips, (p->n_zips + 1) * sizeof *zs);
	if (!zs)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", a.path);
	p->zips = zs;
	a.zip = p->n_zips;
	a.z = &p->zips[a.zip];
	if ((s = muse_zip_open(a.z, a.path, m->data, m->size, err)))
		return s;
	p->n_zips++;
	if ((s = check_layout(&a, err)) || (s = check_small_members(&a, err)))
		return s;

	ptrdiff_t pk = find_member(&a, "data.pkl");
	if (pk < 0)
		return muse_err_at(err, MUSE_ERR_FORMAT, a.path, a.z->cd_offset, "no '%s/data.pkl' entry", a.prefix);
	const muse_zip_entry *pe = &a.z->entries[pk];
	if (pe->size > MAX_PICKLE_BYTES)
		return muse_err_at(err, MUSE_ERR_LIMIT, a.path, pe->data_offset,
				   "'%s' is %" PRIu64 " bytes (cap %u MiB)", pe->name, pe->size, MAX_PICKLE_BYTES >> 20);
	if ((s = muse_zip_verify(a.z, (size_t)pk, err)))
		return s;
	muse_pickle_ctx ctx = { a.path, pe->data_offset, pe->name };
	if ((s = muse_pickle_load_tensors(a.z->data + pe->data_offset, (size_t)pe->size, &ctx, &pr, err)))
		return s;

	/* Every storage the pickle names must exist and hold its declared bytes. */
	storage_entry = malloc((pr.n_storages ? pr.n_storages : 1) * sizeof *storage_entry);
	if (!storage_entry) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", a.path);
		goto done;
	}
	for (size_t i = 0; i < pr.n_storages; i++) {
		const muse_pickle_storage *st = &pr.storages[i];
		uint64_t at = pe->data_offset + st->pos;
		char rel[96];
		snprintf(rel, sizeof rel, "data/%s", st->key);
		ptrdiff_t k = find_member(&a, rel);
		if (k < 0) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, a.path, at, "storage '%s': no entry '%s/%s'", st->key,
					a.prefix, rel);
			goto done;
		}
		uint64_t bytes;
		if (st->dtype == MUSE_DT_INVALID && !st->untyped) {
			s = muse_err_at(err, MUSE_ERR_UNSUPPORTED, a.path, at, "storage '%s': type %s is not supported",
					st->key, st->type_name);
			goto done;
		}
		if (!muse_mul_u64(st->numel, st->untyped ? 1 : muse_dtype_info(st->dtype)->block_bytes, &bytes) ||
		    bytes > a.z->entries[k].size) {
			s = muse_err_at(err, MUSE_ERR_FORMAT, a.path, at,
					"storage '%s': %" PRIu64 " elements of %s need more than the %" PRIu64
					" bytes of its entry",
					st->key, st->numel, st->type_name, a.z->entries[k].size);
			goto done;
		}
		storage_entry[i] = (size_t)k;
	}
	for (size_t i = 0; i < pr.n_tensors; i++)
		if ((s = add_tensor(&a, &pr, &pr.tensors[i], storage_entry, pe->data_offset, err)))
			goto done;
done:
	free(storage_entry);
	muse_pickle_result_free(&pr);
	return s;
}

static muse_status new_reader(const char *path, muse_reader **out, muse_err *err)
{
	muse_reader *r = muse_reader_new("pytorch", path);
	pt_priv *p = calloc(1, sizeof *p);
	if (!r || !p) {
		free(p);
		muse_reader_free(r);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", path);
	}
	r->ops = &pt_ops;
	r->priv = p;
	*out = r;
	return MUSE_OK;
}

muse_status muse_pytorch_open(const char *path, muse_reader **out, muse_err *err)
{
	*out = NULL;
	muse_reader *r;
	muse_status s = new_reader(path, &r, err);
	if (s)
		return s;
	if ((s = open_archive(r, path, err))) {
		muse_reader_free(r);
		return s;
	}
	*out = r;
	return MUSE_OK;
}

/* ---- sharded checkpoints: pytorch_model.bin.index.json ---- */

static const char *shard_name_problem(const char *s, size_t len)
{
	if (len == 0)
		return "is empty";
	if (len > 255)
		return "is longer than 255 bytes";
	if (strlen(s) != len)
		return "contains a NUL byte";
	if (strchr(s, '/') || strchr(s, '\\'))
		return "is not a plain file name (it has a path separator)";
	if (!strcmp(s, ".") || !strcmp(s, ".."))
		return "is not a file name";
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

muse_status muse_pytorch_open_index(const char *index_path, muse_reader **out, muse_err *err)
{
	*out = NULL;
	char *text = NULL, *dir = NULL, *shard_path = NULL;
	const char **shards = NULL;
	size_t len, n_shards = 0;
	json_t *root = NULL;
	muse_reader *r = NULL;
	muse_strmap names;
	muse_strmap_init(&names);
	muse_status s = muse_read_small_file(index_path, MAX_INDEX_BYTES, &text, &len, err);
	if (s)
		goto fail;
	json_error_t je;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		s = muse_err_at(err, MUSE_ERR_FORMAT, index_path, (uint64_t)(je.position > 0 ? je.position : 0),
				"invalid JSON: %s", je.text);
		goto fail;
	}
	json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
	if (!json_is_object(wm) || json_object_size(wm) == 0) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: no non-empty \"weight_map\" object", index_path);
		goto fail;
	}
	size_t n_map = json_object_size(wm);
	shards = malloc(n_map * sizeof *shards);
	const char *slash = strrchr(index_path, '/');
	dir = slash ? strndup(index_path, (size_t)(slash - index_path) + 1) : strdup("");
	shard_path = malloc(strlen(dir ? dir : "") + 257);
	if (!shards || !dir || !shard_path) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", index_path);
		goto fail;
	}
	const char *key;
	json_t *val;
	json_object_foreach(wm, key, val) {
		if (!json_is_string(val)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: weight_map entry for tensor '%s' is not a string",
					 index_path, key);
			goto fail;
		}
		const char *why = shard_name_problem(json_string_value(val), json_string_length(val));
		if (why) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: shard name for tensor '%s' %s", index_path, key, why);
			goto fail;
		}
		shards[n_shards++] = json_string_value(val);
	}
	qsort(shards, n_shards, sizeof *shards, cmp_str);
	size_t u = 0;
	for (size_t i = 0; i < n_shards; i++)
		if (!u || strcmp(shards[u - 1], shards[i]))
			shards[u++] = shards[i];
	n_shards = u;

	if ((s = new_reader(index_path, &r, err)))
		goto fail;
	for (size_t i = 0; i < n_shards; i++) {
		size_t before = r->n_tensors;
		sprintf(shard_path, "%s%s", dir, shards[i]);
		if ((s = open_archive(r, shard_path, err)))
			goto fail;
		/* Each tensor must be listed, under this shard, exactly once across all shards. */
		for (size_t k = before; k < r->n_tensors; k++) {
			const char *name = r->tensors[k].name;
			json_t *where = json_object_get(wm, name);
			if (!where) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' in shard '%s' is not in weight_map",
						 index_path, name, shards[i]);
				goto fail;
			}
			if (strcmp(json_string_value(where), shards[i])) {
				s = muse_err_set(err, MUSE_ERR_FORMAT,
						 "%s: tensor '%s' is in shard '%s' but weight_map says '%s'", index_path,
						 name, shards[i], json_string_value(where));
				goto fail;
			}
			size_t old;
			int put = muse_strmap_put(&names, name, strlen(name), k, &old);
			if (put < 0) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", index_path);
				goto fail;
			}
			if (put == 0) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' appears in more than one shard",
						 index_path, name);
				goto fail;
			}
		}
	}
	json_object_foreach(wm, key, val) {
		size_t v;
		if (!muse_strmap_get(&names, key, strlen(key), &v)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is listed in weight_map but shard '%s' lacks it",
					 index_path, key, json_string_value(val));
			goto fail;
		}
	}
	muse_strmap_free(&names);
	json_decref(root);
	free(shards);
	free(dir);
	free(shard_path);
	free(text);
	*out = r;
	return MUSE_OK;
fail:
	muse_strmap_free(&names);
	muse_reader_free(r);
	json_decref(root);
	free(shards);
	free(dir);
	free(shard_path);
	free(text);
	return s;
}
