/*
 * hf_view.c: an HF checkpoint as a GGUF-named reader. Open plans every output tensor from the
 * descriptors alone (names through the arch tables, stacks, transforms, types, as
 * convert_hf_to_gguf.py orders them) and builds the GGUF metadata; reads compute rows on demand.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/path.h"
#include "../lib/strmap.h"
#include "arch.h"
#include "fp8.h"
#include "hf_config.h"
#include "hf_general.h"
#include "hf_view.h"
#include "model_card.h"
#include "vocab.h"

#define MAX_LAYERS 65536u      /* far above any model; bounds the per-block bookkeeping */
#define MAX_EXPERTS 65536u     /* DeepSeek-V3 has 256; bounds the per-stack source lists */

/* One source tensor feeding an output: the weight and, for block-scaled FP8, its weight_scale_inv. */
typedef struct seg {
	size_t src;   /* reader index; SIZE_MAX until seen (stacks) */
	size_t scale; /* reader index of the scale, or SIZE_MAX */
} seg;

/* One GGUF output tensor: its name, type and shape, and the source tensor(s) it is made of. */
typedef struct outt {
	char *name;                   /* owned */
	const muse_arch_tensor *rule;
	int64_t block;
	muse_dtype dt;
	int ndim;
	uint64_t shape[4];            /* PyTorch order, outermost first */
	size_t pos, sub;              /* emission order: source position, then rule index */
	uint64_t n_seg;               /* 1, or n_expert for a stack */
	uint64_t seg_rows;            /* output rows (units, see unit_cols) each source makes */
	uint64_t src_bytes;           /* source bytes read (progress) */
	int copy;                     /* a plain copy of one mapped source in its own type: backed by its mapping */
	seg *segs;                    /* owned when n_seg > 1, else &one */
	seg one;
} outt;

typedef struct conv {
	const char *dir;
	muse_hf_view_opts o;
	muse_hf_config cfg;
	muse_reader *r;
	muse_strmap src_names;        /* reader tensor name -> index */
	muse_strmap out_names;        /* output name -> index into outs */
	outt *outs;
	size_t n_outs, cap_outs;
	int fp8_block;                /* quantization_config.weight_block_size given */
	uint64_t block[2];
	muse_dtype fp8_auto;          /* auto's type for dequantized FP8 tensors */
	size_t *rank;                 /* reader index -> position in convert_hf_to_gguf.py's reading order */
	uint64_t nope, vdim;          /* MLA qk_nope_head_dim, v_head_dim */
	float *rope_freqs;            /* Llama-3 rope scaling: the generated rope_freqs.weight, or NULL */
	uint64_t n_rope_freqs;
	size_t extra;                 /* 1 when rope_freqs.weight is the view's first tensor */
	pthread_mutex_t lock;         /* guards the dense copy of a strided (PyTorch) source */
	size_t dense_idx;             /* reader index of that copy, SIZE_MAX: none */
	uint8_t *dense;
	char *dir_copy;
	size_t *target;               /* source index -> the first view tensor it feeds (SIZE_MAX: none) */
	int64_t *target_e;            /* ... and its expert in that stack (-1: not stacked) */
} conv;

/* HF tensors convert_hf_to_gguf.py drops: buffers, not weights. */
static int skipped(const char *name)
{
	return muse_ends_with(name, ".rotary_emb.inv_freq") || muse_ends_with(name, ".attn.bias") ||
	       muse_ends_with(name, ".attn.masked_bias");
}

/* The HF name a rule gives for block b and expert e (for "is missing" messages). */
static void rule_hf_name(const muse_arch_tensor *rule, uint64_t b, uint64_t e, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = rule->hf; *p && n + 1 < cap;) {
		if (p[0] == '{' && (p[1] == 'N' || p[1] == 'E') && p[2] == '}') {
			int k = snprintf(out + n, cap - n, "%llu", (unsigned long long)(p[1] == 'N' ? b : e));
			if (k < 0 || (size_t)k >= cap - n)
				break;
			n += (size_t)k;
			p += 3;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
}

/* A block is MoE when the config has experts and the block is past the leading dense ones. */
static int block_is_moe(const muse_hf_config *cfg, uint64_t b)
{
	return cfg->n_expert && b >= cfg->n_dense_lead;
}

static int rule_required(const muse_hf_config *cfg, const muse_arch_tensor *rule, uint64_t b)
{
	if (!rule->required || (rule->if_cfg && !muse_hf_config_has(cfg, rule->if_cfg)))
		return 0;
	if (rule->blocks == MUSE_ARCH_BLK_DENSE)
		return !block_is_moe(cfg, b);
	if (rule->blocks == MUSE_ARCH_BLK_MOE)
		return block_is_moe(cfg, b);
	return 1;
}

/* Source bytes an output reads (progress units): a split reads its share of the source. */
static uint64_t out_src_bytes(const conv *c, const outt *o)
{
	uint64_t n = 0;
	for (uint64_t e = 0; e < o->n_seg; e++)
		n += c->r->tensors[o->segs[e].src].nbytes;
	switch (o->rule->xf) {
	case MUSE_XF_KV_B_K:
		return n / (c->nope + c->vdim) * c->nope;
	case MUSE_XF_KV_B_V:
		return n / (c->nope + c->vdim) * c->vdim;
	case MUSE_XF_HALF_0:
	case MUSE_XF_HALF_1:
		return n / 2;
	default:
		return n;
	}
}

/*
 * The output type: F32 for norms, routers, 1-D tensors and non-".weight"
 * names (biases); else --outtype, where Q8_0 falls back to F16 for rows that
 * are not whole blocks (as convert_hf_to_gguf.py's QuantError fallback);
 * auto keeps the source type (dequantized FP8: c->fp8_auto).
 */
static muse_dtype pick_dtype(const conv *c, const outt *o, muse_dtype src, int scaled)
{
	if (o->rule->f32 || o->ndim <= 1 || !muse_ends_with(o->name, ".weight"))
		return MUSE_DT_F32;
	muse_dtype want = c->o.want;
	if (want == MUSE_DT_Q8_0)
		return o->shape[o->ndim - 1] % 32 ? MUSE_DT_F16 : MUSE_DT_Q8_0;
	if (want != MUSE_DT_INVALID)
		return want;
	if (scaled)
		return c->fp8_auto;
	if (src == MUSE_DT_F32 || src == MUSE_DT_F16 || src == MUSE_DT_BF16)
		return src;
	return MUSE_DT_F32;
}

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

/* The output named name (an existing stack, or a new entry); *fresh says which. */
static muse_status get_out(conv *c, const char *name, size_t *idx, int *fresh, muse_err *err)
{
	size_t k;
	if (muse_strmap_get(&c->out_names, name, strlen(name), &k)) {
		*idx = k;
		*fresh = 0;
		return MUSE_OK;
	}
	if (c->n_outs == c->cap_outs) {
		size_t cap = c->cap_outs ? c->cap_outs * 2 : 256;
		outt *n = realloc(c->outs, cap * sizeof *n);
		if (!n)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		c->outs = n;
		c->cap_outs = cap;
		/* segs of single outputs point into the array: re-point them after the move */
		for (size_t i = 0; i < c->n_outs; i++)
			if (c->outs[i].n_seg == 1)
				c->outs[i].segs = &c->outs[i].one;
	}
	outt *o = &c->outs[c->n_outs];
	memset(o, 0, sizeof *o);
	if (!(o->name = strdup(name)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	c->n_outs++;
	if (muse_strmap_put(&c->out_names, o->name, strlen(o->name), c->n_outs - 1, NULL) < 0)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	*idx = c->n_outs - 1;
	*fresh = 1;
	return MUSE_OK;
}

typedef struct order_key {
	const char *file, *name;
	size_t idx;
} order_key;

static int cmp_key(const void *x, const void *y)
{
	const order_key *a = x, *b = y;
	int k = strcmp(a->file, b->file);
	return k ? k : strcmp(a->name, b->name);
}

/*
 * convert_hf_to_gguf.py reads safetensors shards in file-name order and each
 * shard's tensors sorted by name (safetensors' keys()); PyTorch files in
 * state-dict order, which is the reader's. Outputs follow that order.
 */
static muse_status reading_order(conv *c, muse_err *err)
{
	muse_reader *r = c->r;
	if (!(c->rank = malloc((r->n_tensors ? r->n_tensors : 1) * sizeof *c->rank)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->n_tensors; i++)
		c->rank[i] = i;
	if (strcmp(r->format, "safetensors"))
		return MUSE_OK;
	order_key *k = malloc((r->n_tensors ? r->n_tensors : 1) * sizeof *k);
	if (!k)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->n_tensors; i++)
		k[i] = (order_key){ r->files[r->tensors[i].file].path, r->tensors[i].name, i };
	qsort(k, r->n_tensors, sizeof *k, cmp_key);
	for (size_t i = 0; i < r->n_tensors; i++)
		c->rank[k[i].idx] = i;
	free(k);
	return MUSE_OK;
}

/* Pass 1a: map every source tensor to its output(s). */
static muse_status map_sources(conv *c, muse_err *err)
{
	muse_reader *r = c->r;
	const muse_arch *a = c->cfg.arch;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (skipped(t->name))
			continue;
		if (muse_ends_with(t->name, "_scale_inv")) {
			/* paired from its weight's side; one without a weight is an error */
			size_t L = strlen(t->name) - strlen("_scale_inv"), w;
			if (!muse_strmap_get(&c->src_names, t->name, L, &w))
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' scales a weight '%.*s' that is "
						    "not in the checkpoint", r->path, t->name, (int)L, t->name);
			continue;
		}
		if (c->fp8_block >= 0 && (muse_ends_with(t->name, ".activation_scale") || muse_ends_with(t->name, "_activation_scale")))
			continue; /* FP8 activation scales: unused for weights-only inference, dropped as convert does */
		seg sg = { i, SIZE_MAX };
		char sname[MUSE_MAX_NAME + 16];
		size_t k;
		snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
		if (muse_strmap_get(&c->src_names, sname, strlen(sname), &k))
			sg.scale = k;
		const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
		if (!tr->is_float || tr->blck != 1)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s weights are not supported",
					    r->path, t->name, muse_dtype_name(t->dtype));
		if (tr->block_bytes == 1 && sg.scale == SIZE_MAX)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': %s weight without its scale "
					    "'%s' (block-scaled FP8 cannot be read without it)", r->path, t->name,
					    muse_dtype_name(t->dtype), sname);
		size_t next = 0;
		int n_match = 0;
		for (;;) {
			char gname[256];
			const muse_arch_tensor *rule;
			int64_t blk, ex;
			muse_status s = muse_arch_map_next(a, t->name, c->cfg.n_layer, &next, gname, sizeof gname, &rule,
							   &blk, &ex);
			if (s == MUSE_ERR_UNSUPPORTED && n_match)
				break;
			if (s == MUSE_ERR_UNSUPPORTED)
				return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s' has no %s mapping", r->path,
						    t->name, a->gguf_name);
			if (s)
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': block number not below num_hidden_layers %llu", r->path,
						    t->name, (unsigned long long)c->cfg.n_layer);
			n_match++;
			if (ex >= 0 && (uint64_t)ex >= c->cfg.n_expert)
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': expert number not below the %llu experts of config.json",
						    r->path, t->name, (unsigned long long)c->cfg.n_expert);
			size_t oi = 0;
			int fresh = 0;
			if ((s = get_out(c, gname, &oi, &fresh, err)))
				return s;
			outt *o = &c->outs[oi];
			if (fresh) {
				o->rule = rule;
				o->block = blk;
				o->sub = (size_t)(rule - a->tensors);
				o->pos = c->rank[i];
				o->n_seg = ex >= 0 ? c->cfg.n_expert : 1;
				if (ex < 0) {
					o->segs = &o->one;
				} else {
					if (!(o->segs = malloc(o->n_seg * sizeof *o->segs)))
						return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
					for (uint64_t e = 0; e < o->n_seg; e++)
						o->segs[e] = (seg){ SIZE_MAX, SIZE_MAX };
				}
			} else if (ex < 0 || o->rule != rule) {
				/* two sources for one output: fused and per-expert experts, say */
				const outt *p = o;
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensors '%s' and '%s' both make '%s'", r->path,
						    r->tensors[p->segs[0].src == SIZE_MAX ? i : p->segs[0].src].name,
						    t->name, gname);
			}
			o->segs[ex >= 0 ? (size_t)ex : 0] = sg;
			if (c->rank[i] > o->pos)
				o->pos = c->rank[i];
		}
	}
	return MUSE_OK;
}

/* Pass 1b: complete stacks, shapes against each other and config.json, required tensors, output types. */
static muse_status check_outs(conv *c, muse_err *err)
{
	muse_reader *r = c->r;
	const muse_hf_config *cfg = &c->cfg;
	for (size_t k = 0; k < c->n_outs; k++) {
		outt *o = &c->outs[k];
		const muse_tensor *t0 = NULL;
		for (uint64_t e = 0; e < o->n_seg; e++) {
			if (o->segs[e].src == SIZE_MAX) {
				char hn[512];
				rule_hf_name(o->rule, (uint64_t)o->block, e, hn, sizeof hn);
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is missing (config.json: %llu experts)",
						    r->path, hn, (unsigned long long)cfg->n_expert);
			}
			const muse_tensor *t = &r->tensors[o->segs[e].src];
			if (!t0) {
				t0 = t;
				continue;
			}
			int same = t->ndim == t0->ndim && t->dtype == t0->dtype &&
				   (o->segs[e].scale == SIZE_MAX) == (o->segs[0].scale == SIZE_MAX);
			for (int d = 0; same && d < t->ndim; d++)
				same = t->shape[d] == t0->shape[d];
			if (!same)
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': shape or type differs from '%s' "
						    "(experts of one block must agree)", r->path, t->name, t0->name);
		}
		if (o->n_seg > 1 && t0->ndim != 2)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': an expert weight has 2 dimensions, not %d",
					    r->path, t0->name, t0->ndim);
		int scaled = o->segs[0].scale != SIZE_MAX;
		if (scaled && t0->ndim != 2)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': scaled weights of %d dimensions are "
					    "not supported", r->path, t0->name, t0->ndim);
		if (t0->ndim > 3 || t0->ndim < 1)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions", r->path, t0->name,
					    t0->ndim);
		/* Shape of the output. */
		o->ndim = t0->ndim;
		memcpy(o->shape, t0->shape, sizeof o->shape[0] * (size_t)t0->ndim);
		uint64_t rows = t0->shape[0];
		switch (o->rule->xf) {
		case MUSE_XF_NONE:
			break;
		case MUSE_XF_PERMUTE_Q:
		case MUSE_XF_PERMUTE_K: {
			uint64_t nh = o->rule->xf == MUSE_XF_PERMUTE_Q ? cfg->n_head : cfg->n_head_kv;
			if (t0->ndim > 2 || rows % (2 * nh))
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': %llu rows do not split into %llu heads of an even size",
						    r->path, t0->name, (unsigned long long)rows, (unsigned long long)nh);
			break;
		}
		case MUSE_XF_KV_B_K:
		case MUSE_XF_KV_B_V: {
			uint64_t h = cfg->n_head_kv_src, per = c->nope + c->vdim;
			if (!c->nope || !c->vdim)
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s/config.json: qk_nope_head_dim and v_head_dim are "
						    "needed to split '%s'", c->dir, t0->name);
			if (t0->ndim != 2 || rows != h * per)
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': %llu rows, config.json says %llu heads x (%llu + %llu)",
						    r->path, t0->name, (unsigned long long)rows, (unsigned long long)h,
						    (unsigned long long)c->nope, (unsigned long long)c->vdim);
			o->ndim = 3;
			o->shape[0] = h;
			o->shape[1] = o->rule->xf == MUSE_XF_KV_B_K ? t0->shape[1] : c->vdim;
			o->shape[2] = o->rule->xf == MUSE_XF_KV_B_K ? c->nope : t0->shape[1];
			break;
		}
		case MUSE_XF_HALF_0:
		case MUSE_XF_HALF_1:
			if (t0->ndim != 3 || t0->shape[1] % 2 || t0->shape[0] != cfg->n_expert)
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': expected (%llu experts, 2 x ff, n)",
						    r->path, t0->name, (unsigned long long)cfg->n_expert);
			o->shape[1] /= 2;
			break;
		}
		if (o->n_seg > 1) {
			o->ndim = 3;
			o->shape[0] = o->n_seg;
			o->shape[1] = t0->shape[0];
			o->shape[2] = t0->shape[1];
		}
		/* The embedding and output matrices must agree with vocab_size x hidden_size. */
		if ((!strcmp(o->name, "token_embd.weight") || !strcmp(o->name, "output.weight")) &&
		    (t0->ndim != 2 || t0->shape[0] != cfg->vocab_size || t0->shape[1] != cfg->n_embd))
			return muse_err_set(err, MUSE_ERR_FORMAT,
					    "%s: tensor '%s': shape disagrees with config.json (vocab_size %llu x hidden_size %llu)",
					    r->path, t0->name, (unsigned long long)cfg->vocab_size, (unsigned long long)cfg->n_embd);
		/* A router has one row per expert. */
		if (muse_ends_with(o->name, ".ffn_gate_inp.weight") && cfg->n_expert &&
		    (t0->ndim != 2 || t0->shape[0] != cfg->n_expert))
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': %llu rows, config.json says %llu experts",
					    r->path, t0->name, (unsigned long long)t0->shape[0],
					    (unsigned long long)cfg->n_expert);
		if (scaled) {
			const muse_tensor *st = &r->tensors[o->segs[0].scale];
			muse_fp8_scales fs;
			for (uint64_t e = 0; e < o->n_seg; e++) {
				st = &r->tensors[o->segs[e].scale];
				if (muse_fp8_scales_init(&fs, t0->dtype, t0->shape[0], t0->shape[1], c->fp8_block > 0 ? c->block : NULL,
							 st->dtype, st->ndim, st->shape, NULL, err)) {
					muse_err_prefix(err, "%s: tensor '%s'", r->path, st->name);
					return err ? err->code : MUSE_ERR_FORMAT;
				}
			}
		}
		o->dt = pick_dtype(c, o, t0->dtype, scaled);
	}
	/* Stacks come out together, in table order, where their block's last expert tensor is. */
	for (size_t k = 0; k < c->n_outs; k++) {
		if (c->outs[k].n_seg < 2)
			continue;
		size_t pos = c->outs[k].pos;
		for (size_t j = 0; j < c->n_outs; j++)
			if (c->outs[j].n_seg > 1 && c->outs[j].block == c->outs[k].block && c->outs[j].pos > pos)
				pos = c->outs[j].pos;
		c->outs[k].pos = pos;
	}
	/* Required tensors, by the GGUF name any of the rows for it makes. */
	const muse_arch *a = cfg->arch;
	for (const muse_arch_tensor *rule = a->tensors; rule->hf; rule++) {
		int per_block = strstr(rule->hf, "{N}") != NULL;
		for (uint64_t b = 0; b < (per_block ? cfg->n_layer : 1); b++) {
			if (!rule_required(cfg, rule, b))
				continue;
			char gname[256];
			const char *ph = strstr(rule->gguf, "{N}");
			if (ph)
				snprintf(gname, sizeof gname, "%.*s%llu%s", (int)(ph - rule->gguf), rule->gguf,
					 (unsigned long long)b, ph + 3);
			else
				snprintf(gname, sizeof gname, "%s", rule->gguf);
			size_t dummy;
			if (muse_strmap_get(&c->out_names, gname, strlen(gname), &dummy))
				continue;
			char hn[512];
			rule_hf_name(rule, b, 0, hn, sizeof hn);
			if (per_block)
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is missing (config.json: %llu layers)",
						    r->path, hn, (unsigned long long)cfg->n_layer);
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is missing", r->path, hn);
		}
	}
	return MUSE_OK;
}

static int cmp_out(const void *x, const void *y)
{
	const outt *a = x, *b = y;
	if (a->pos != b->pos)
		return a->pos < b->pos ? -1 : 1;
	return a->sub < b->sub ? -1 : a->sub > b->sub;
}

/* ---- pass 2: rows into the writer ---- */

/* ---- reads: output rows computed from source rows ---- */

/* Elements of one emission unit: a row of the output (its last dimension), or one element of a 1-D output (a
 * permuted bias is permuted element by element). */
static uint64_t unit_cols(const outt *o)
{
	return o->ndim >= 2 ? o->shape[o->ndim - 1] : 1;
}

/* Output units source segment t makes, as the transform maps them. */
static uint64_t seg_units(const conv *c, const outt *o, const muse_tensor *t)
{
	uint64_t cols = t->ndim >= 2 ? t->shape[t->ndim - 1] : 1;
	switch (o->rule->xf) {
	case MUSE_XF_KV_B_K:
		return c->cfg.n_head_kv_src * t->shape[1];
	case MUSE_XF_KV_B_V:
		return c->cfg.n_head_kv_src * c->vdim;
	case MUSE_XF_HALF_0:
	case MUSE_XF_HALF_1:
		return t->nelements / cols / 2;
	default:
		return t->nelements / cols;
	}
}

static muse_status overflow(const muse_reader *r, const muse_tensor *t, uint64_t elem, muse_err *err)
{
	return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': element %llu overflows F16; use --outtype bf16 or f32",
			    r->files[t->file].path, t->name, (unsigned long long)elem);
}

/*
 * The float row f (n elements) into dst as dt. An element that overflows F16 gives MUSE_ERR_LIMIT with its index
 * in *bad (err untouched; the caller names the source element); other failures set err.
 */
static muse_status put_row(const conv *c, muse_dtype dt, const float *f, uint64_t n, uint8_t *dst, uint64_t *bad,
			   muse_err *err)
{
	*bad = UINT64_MAX;
	if (dt == MUSE_DT_Q8_0) {
		c->o.quantize(f, dst, 1, (int64_t)n, NULL);
		return MUSE_OK;
	}
	if (dt == MUSE_DT_F32) {
		memcpy(dst, f, (size_t)n * sizeof(float));
		return MUSE_OK;
	}
	muse_status s = muse_dtype_convert(dt, dst, MUSE_DT_F32, f, (size_t)n, err);
	if (s || dt != MUSE_DT_F16)
		return s;
	for (uint64_t j = 0; j < n; j++) {
		uint16_t h = (uint16_t)(dst[2 * j] | dst[2 * j + 1] << 8);
		if ((h & 0x7fff) == 0x7c00 && !isinf(f[j])) {
			*bad = j;
			return MUSE_ERR_LIMIT;
		}
	}
	return MUSE_OK;
}

/* Source row r (cols elements) of tensor t at base, through its FP8 scales when fs is set, into f. */
static void load_row(const muse_tensor *t, const uint8_t *base, const muse_fp8_scales *fs, uint64_t r, uint64_t cols,
		     float *f)
{
	size_t esz = muse_dtype_info(t->dtype)->block_bytes;
	const uint8_t *row = base + r * cols * esz;
	if (fs)
		muse_fp8_dequant_row(fs, row, r, f);
	else
		muse_dtype_convert(MUSE_DT_F32, f, t->dtype, row, (size_t)cols, NULL);
}

/*
 * Drops tensor i's mapped pages after use, with a margin: a page fault maps
 * more than the page (fault-around, whole large folios of the page cache),
 * and a stack reads every third tensor of a layer, so without the margin the
 * edges of neighbours already written stay resident and add up over the
 * model (measured on a 209 MB MoE: 70 MB resident with no margin, 14 MB with
 * 256 KiB, 5 MB with 4 MiB). A neighbour not yet read faults back in from
 * the page cache.
 */
static void release_around(const muse_reader *r, size_t i)
{
	const muse_tensor *t = &r->tensors[i];
	const uint64_t margin = 4u << 20;
	if (t->strided || t->file >= r->n_files)
		return;
	uint64_t off = t->offset > margin ? t->offset - margin : 0;
	muse_map_release(&r->files[t->file], off, t->nbytes + (t->offset - off) + margin);
}

/*
 * Source tensor i's bytes: its mapping, or (strided PyTorch storage) one dense copy shared by the reads, which
 * then hold c->lock until done_bytes.
 */
static muse_status source_bytes(conv *c, size_t i, const uint8_t **p, muse_err *err)
{
	muse_reader *r = c->r;
	if ((*p = muse_reader_view(r, i)))
		return MUSE_OK;
	const muse_tensor *t = &r->tensors[i];
	pthread_mutex_lock(&c->lock);
	if (c->dense_idx != i) {
		free(c->dense);
		c->dense = NULL;
		c->dense_idx = SIZE_MAX;
		if (t->nbytes > SIZE_MAX || !(c->dense = malloc(t->nbytes ? (size_t)t->nbytes : 1))) {
			pthread_mutex_unlock(&c->lock);
			return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
		}
		muse_status s = muse_reader_read(r, i, c->dense, err);
		if (s) {
			pthread_mutex_unlock(&c->lock);
			return s;
		}
		c->dense_idx = i;
	}
	*p = c->dense;
	return MUSE_OK;
}

static void done_bytes(conv *c, size_t i)
{
	if (!muse_reader_view(c->r, i))
		pthread_mutex_unlock(&c->lock);
}

/* Output units [u0, u0 + n) of segment e of o (rows of that source's share) into dst, ob bytes per unit. */
static muse_status seg_read(conv *c, const outt *o, uint64_t e, uint64_t u0, uint64_t n, uint8_t *dst, size_t ob,
			    float *f, float *scratch, muse_err *err)
{
	muse_reader *r = c->r;
	const seg *sg = &o->segs[e];
	const muse_tensor *t = &r->tensors[sg->src];
	const uint8_t *base = NULL, *sbase = NULL;
	muse_fp8_scales fs, *fsp = NULL;
	muse_status s;
	if ((s = source_bytes(c, sg->src, &base, err)))
		return s;
	if (sg->scale != SIZE_MAX) {
		const muse_tensor *st = &r->tensors[sg->scale];
		if (!(sbase = muse_reader_view(r, sg->scale))) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': scales must be stored contiguously",
					 r->path, st->name);
			goto done;
		}
		if ((s = muse_fp8_scales_init(&fs, t->dtype, t->shape[0], t->shape[1], c->fp8_block > 0 ? c->block : NULL,
					      st->dtype, st->ndim, st->shape, sbase, err)))
			goto done;
		fsp = &fs;
	}
	const uint64_t cols = t->ndim >= 2 ? t->shape[t->ndim - 1] : 1, oc = unit_cols(o);
	const size_t esz = muse_dtype_info(t->dtype)->block_bytes;
	uint64_t rows = t->ndim ? t->shape[0] : 1, bad;
	if (t->ndim == 3)
		rows *= t->shape[1];
	if (o->rule->xf == MUSE_XF_KV_B_K) {
		/* unit (h, j): column j of head h's first nope rows; scratch holds one head's rows */
		const uint64_t per = c->nope + c->vdim;
		uint64_t loaded = UINT64_MAX;
		for (uint64_t u = u0; u < u0 + n && !s; u++) {
			uint64_t h = u / cols, j = u % cols;
			if (loaded != h) {
				for (uint64_t k = 0; k < c->nope; k++)
					load_row(t, base, fsp, h * per + k, cols, scratch + k * cols);
				loaded = h;
			}
			for (uint64_t k = 0; k < c->nope; k++)
				f[k] = scratch[k * cols + j];
			s = put_row(c, o->dt, f, oc, dst + (u - u0) * ob, &bad, err);
			if (s == MUSE_ERR_LIMIT && bad != UINT64_MAX)
				s = overflow(r, t, (h * per + bad) * cols + j, err);
		}
		goto done;
	}
	for (uint64_t u = u0; u < u0 + n && !s; u++) {
		uint64_t sr = u;
		switch (o->rule->xf) {
		case MUSE_XF_PERMUTE_Q:
			sr = muse_arch_permuted_row(u, rows, c->cfg.n_head);
			break;
		case MUSE_XF_PERMUTE_K:
			sr = muse_arch_permuted_row(u, rows, c->cfg.n_head_kv);
			break;
		case MUSE_XF_KV_B_V:
			sr = u / c->vdim * (c->nope + c->vdim) + c->nope + u % c->vdim;
			break;
		case MUSE_XF_HALF_0:
		case MUSE_XF_HALF_1: {
			uint64_t fh = t->shape[1] / 2;
			sr = u / fh * 2 * fh + (o->rule->xf == MUSE_XF_HALF_1 ? fh : 0) + u % fh;
			break;
		}
		default:
			break;
		}
		uint8_t *out = dst + (u - u0) * ob;
		if (!fsp && t->dtype == o->dt) { /* no cast: the row's bytes as they are */
			memcpy(out, base + sr * cols * esz, (size_t)(cols * esz));
			continue;
		}
		load_row(t, base, fsp, sr, cols, f);
		s = put_row(c, o->dt, f, oc, out, &bad, err);
		if (s == MUSE_ERR_LIMIT && bad != UINT64_MAX)
			s = overflow(r, t, sr * cols + bad, err);
	}
done:
	done_bytes(c, sg->src);
	if (!s && u0 + n == o->seg_rows) { /* this source is read to its end */
		release_around(r, sg->src);
		if (sg->scale != SIZE_MAX)
			release_around(r, sg->scale);
	}
	return s;
}

static muse_status view_read_rows(muse_reader *v, size_t i, uint64_t r0, uint64_t nr, void *dst, muse_err *err)
{
	conv *c = v->priv;
	const muse_tensor *vt = &v->tensors[i];
	uint64_t rows = muse_reader_rows(vt), row_bytes = rows ? vt->nbytes / rows : 0;
	if (i < c->extra) {
		memcpy(dst, (const uint8_t *)c->rope_freqs + r0 * row_bytes, (size_t)(nr * row_bytes));
		return MUSE_OK;
	}
	const outt *o = &c->outs[i - c->extra];
	if (o->copy) {
		const uint8_t *p = muse_reader_view(v, i);
		memcpy(dst, p + r0 * row_bytes, (size_t)(nr * row_bytes));
		return MUSE_OK;
	}
	/* rows -> units: a 1-D output is one row of single-element units */
	uint64_t oc = unit_cols(o), per_row = o->ndim >= 2 ? 1 : vt->nelements;
	uint64_t u0 = r0 * per_row, n = nr * per_row, ob;
	if (!muse_dtype_nbytes(o->dt, oc, &ob))
		return muse_err_set(err, MUSE_ERR_FORMAT, "tensor '%s': rows of %llu are not whole %s blocks", o->name,
				    (unsigned long long)oc, muse_dtype_name(o->dt));
	const muse_tensor *t0 = &c->r->tensors[o->segs[0].src];
	uint64_t fl = oc;
	if (t0->ndim >= 2 && t0->shape[t0->ndim - 1] > fl)
		fl = t0->shape[t0->ndim - 1]; /* source rows longer than output rows (attn_k_b) */
	float *f = malloc((size_t)fl * sizeof(float)), *scratch = NULL;
	if (o->rule->xf == MUSE_XF_KV_B_K)
		scratch = malloc((size_t)(c->nope * t0->shape[1]) * sizeof(float));
	muse_status s = MUSE_OK;
	if (!f || (o->rule->xf == MUSE_XF_KV_B_K && !scratch)) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "tensor '%s': out of memory", o->name);
		goto done;
	}
	uint8_t *out = dst;
	for (uint64_t u = u0; u < u0 + n && !s;) {
		uint64_t e = u / o->seg_rows, k = u % o->seg_rows;
		uint64_t cnt = o->seg_rows - k < u0 + n - u ? o->seg_rows - k : u0 + n - u;
		s = seg_read(c, o, e, k, cnt, out, (size_t)ob, f, scratch, err);
		out += cnt * ob;
		u += cnt;
	}
done:
	free(f);
	free(scratch);
	return s;
}

static void view_free_conv(conv *c)
{
	for (size_t k = 0; k < c->n_outs; k++) {
		free(c->outs[k].name);
		if (c->outs[k].n_seg > 1)
			free(c->outs[k].segs);
	}
	free(c->outs);
	free(c->rank);
	free(c->rope_freqs);
	free(c->dense);
	free(c->target);
	free(c->target_e);
	pthread_mutex_destroy(&c->lock);
	muse_strmap_free(&c->src_names);
	muse_strmap_free(&c->out_names);
	muse_hf_config_free(&c->cfg);
	if (c->r) { /* the view owns the source's mappings (its copies point into them) */
		c->r->files = NULL;
		c->r->n_files = 0;
		muse_reader_free(c->r);
	}
	free(c->dir_copy);
	free(c);
}

static void view_free(muse_reader *v)
{
	if (v->priv)
		view_free_conv(v->priv);
	v->priv = NULL;
}

static const muse_reader_ops view_ops = { .read = NULL, .read_rows = view_read_rows, .free_priv = view_free };

bool muse_hf_view_target(const muse_reader *v, const char *name, size_t *idx, int64_t *expert)
{
	if (!v->ops || v->ops != &view_ops)
		return false;
	const conv *c = v->priv;
	size_t i;
	if (!muse_strmap_get(&c->src_names, name, strlen(name), &i) || c->target[i] == SIZE_MAX)
		return false;
	*idx = c->target[i];
	*expert = c->target_e[i];
	return true;
}

uint64_t muse_hf_view_source_bytes(const muse_reader *v, size_t i)
{
	if (!v->ops || v->ops != &view_ops)
		return 0;
	const conv *c = v->priv;
	return i < c->extra ? c->n_rope_freqs * sizeof(float) : c->outs[i - c->extra].src_bytes;
}

/* gguf-py's get_total_parameter_count + size_label: experts count once per expert ("4x126K"). */
static void size_label(const conv *c, uint64_t extra, uint64_t *total, char *out, size_t cap)
{
	uint64_t all = extra, shared = extra, expert = 0, sum = 0, n_exp = 0;
	for (size_t k = 0; k < c->n_outs; k++) {
		const outt *o = &c->outs[k];
		uint64_t n = 1;
		for (int d = 0; d < o->ndim; d++)
			n *= o->shape[d];
		all += n;
		if (strstr(o->name, "_exps.") && o->ndim >= 3) {
			expert += n / o->shape[0];
			sum += o->shape[0];
			n_exp++;
		} else {
			shared += n;
		}
	}
	*total = all;
	if (n_exp) {
		char lab[32];
		muse_hf_size_label(shared + expert, lab, sizeof lab);
		snprintf(out, cap, "%llux%s", (unsigned long long)(sum / n_exp), lab);
	} else {
		muse_hf_size_label(all, out, cap);
	}
}

/* Adds the view's tensor for output o (or rope_freqs when o is NULL). */
static muse_status add_view_tensor(muse_reader *v, conv *c, const outt *o, muse_err *err)
{
	muse_tensor *t = muse_reader_add_tensor(v);
	if (!t || !(t->name = strdup(o ? o->name : "rope_freqs.weight")))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	t->file = MUSE_READER_NO_FILE;
	if (!o) {
		t->dtype = MUSE_DT_F32;
		t->ndim = 1;
		t->shape[0] = t->nelements = c->n_rope_freqs;
		t->nbytes = c->n_rope_freqs * sizeof(float);
		return MUSE_OK;
	}
	const muse_tensor *s0 = &c->r->tensors[o->segs[0].src];
	t->dtype = o->dt;
	t->ndim = o->ndim;
	t->nelements = 1;
	for (int d = 0; d < o->ndim; d++) {
		t->shape[d] = o->shape[d];
		t->nelements *= o->shape[d];
	}
	uint64_t cols = o->ndim >= 2 ? o->shape[o->ndim - 1] : t->nelements, rb;
	if (!muse_dtype_nbytes(o->dt, cols, &rb))
		return muse_err_set(err, MUSE_ERR_FORMAT, "tensor '%s': rows of %llu are not whole %s blocks", o->name,
				    (unsigned long long)cols, muse_dtype_name(o->dt));
	t->nbytes = rb * (cols ? t->nelements / cols : 0);
	t->header_offset = s0->header_offset;
	if (o->copy) {
		t->file = s0->file;
		t->offset = s0->offset;
	}
	return MUSE_OK;
}

muse_status muse_hf_view_open(const char *dir, const muse_hf_view_opts *opt, muse_reader **out, muse_err *err)
{
	muse_status s;
	muse_reader *v = NULL;
	muse_meta hp;
	muse_model_card card = { 0 };
	conv *c = calloc(1, sizeof *c);
	*out = NULL;
	muse_meta_init(&hp);
	if (!c)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&c->lock, NULL);
	c->dense_idx = SIZE_MAX;
	c->o = *opt;
	muse_strmap_init(&c->src_names);
	muse_strmap_init(&c->out_names);
	if (!(c->dir_copy = strdup(dir)) || !(v = muse_reader_new("hf", dir))) {
		view_free_conv(c);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	c->dir = c->dir_copy;
	v->priv = c;
	v->ops = &view_ops;

	if (opt->want == MUSE_DT_Q8_0 && !opt->quantize) {
		s = muse_err_set(err, MUSE_ERR_USAGE, "Q8_0 output needs a quantizer");
		goto done;
	}
	if (opt->want != MUSE_DT_INVALID && opt->want != MUSE_DT_F32 && opt->want != MUSE_DT_F16 &&
	    opt->want != MUSE_DT_BF16 && opt->want != MUSE_DT_Q8_0) {
		s = muse_err_set(err, MUSE_ERR_USAGE, "output type %s is not one of F32, F16, BF16, Q8_0",
				 muse_dtype_name(opt->want));
		goto done;
	}
	if ((s = muse_hf_config_load(dir, &c->cfg, &hp, err)))
		goto done;
	const muse_arch *a = c->cfg.arch;
	if (c->cfg.n_layer > MAX_LAYERS) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s/config.json: num_hidden_layers %llu above %u", dir,
				 (unsigned long long)c->cfg.n_layer, MAX_LAYERS);
		goto done;
	}
	if (c->cfg.n_expert > MAX_EXPERTS) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s/config.json: %llu experts above %u", dir,
				 (unsigned long long)c->cfg.n_expert, MAX_EXPERTS);
		goto done;
	}
	muse_hf_config_u64(&c->cfg, "qk_nope_head_dim", &c->nope);
	muse_hf_config_u64(&c->cfg, "v_head_dim", &c->vdim);
	if ((s = muse_hf_config_fp8(&c->cfg, c->dir, &c->fp8_block, c->block, err)))
		goto done;
	if ((s = muse_reader_open(dir, &c->r, err)))
		goto done;
	muse_reader *r = c->r;
	/* the view shares the source's mappings (copies are views into them) and closes them */
	v->files = r->files;
	v->n_files = r->n_files;
	NOMEM(muse_strmap_reserve(&c->src_names, r->n_tensors) < 0);
	for (size_t i = 0; i < r->n_tensors; i++)
		NOMEM(muse_strmap_put(&c->src_names, r->tensors[i].name, strlen(r->tensors[i].name), i, NULL) < 0);
	/* auto for dequantized FP8: the precision of the checkpoint's unquantized matrices */
	c->fp8_auto = MUSE_DT_BF16;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (t->ndim >= 2 && (t->dtype == MUSE_DT_F32 || t->dtype == MUSE_DT_F16 || t->dtype == MUSE_DT_BF16) &&
		    !muse_ends_with(t->name, "_scale_inv")) {
			c->fp8_auto = t->dtype;
			break;
		}
	}

	/* Every output's name, type and shape from the descriptors alone. */
	if ((s = reading_order(c, err)) || (s = map_sources(c, err)) || (s = check_outs(c, err)))
		goto done;
	qsort(c->outs, c->n_outs, sizeof *c->outs, cmp_out);
	muse_dtype ft_dt = MUSE_DT_INVALID;
	for (size_t k = 0; k < c->n_outs; k++) {
		outt *o = &c->outs[k];
		if (o->n_seg == 1)
			o->segs = &o->one;
		const muse_tensor *t0 = &r->tensors[o->segs[0].src];
		o->seg_rows = seg_units(c, o, t0);
		o->src_bytes = out_src_bytes(c, o);
		o->copy = o->n_seg == 1 && o->rule->xf == MUSE_XF_NONE && o->segs[0].scale == SIZE_MAX &&
			  t0->dtype == o->dt && !t0->strided && t0->file < r->n_files;
		if (ft_dt == MUSE_DT_INVALID && o->ndim >= 2)
			ft_dt = o->dt;
	}
	NOMEM(!(c->target = malloc((r->n_tensors ? r->n_tensors : 1) * sizeof *c->target)) ||
	      !(c->target_e = malloc((r->n_tensors ? r->n_tensors : 1) * sizeof *c->target_e)));
	for (size_t i = 0; i < r->n_tensors; i++)
		c->target[i] = SIZE_MAX;
	c->extra = c->cfg.n_rope_freqs ? 1 : 0;
	for (size_t k = 0; k < c->n_outs; k++)
		for (uint64_t e = 0; e < c->outs[k].n_seg; e++) {
			size_t i = c->outs[k].segs[e].src;
			if (c->target[i] == SIZE_MAX) {
				c->target[i] = k + c->extra;
				c->target_e[i] = c->outs[k].n_seg > 1 ? (int64_t)e : -1;
			}
		}
	if (opt->want == MUSE_DT_Q8_0)
		ft_dt = MUSE_DT_Q8_0;
	if (ft_dt == MUSE_DT_INVALID)
		ft_dt = opt->want != MUSE_DT_INVALID ? opt->want : MUSE_DT_F32;
	/* Llama-3 rope scaling: a generated F32 tensor, first, as convert_hf_to_gguf.py's generate_extra_tensors. */
	if (c->cfg.n_rope_freqs) {
		c->n_rope_freqs = c->cfg.n_rope_freqs;
		NOMEM(!(c->rope_freqs = malloc((size_t)c->n_rope_freqs * sizeof(float))));
		memcpy(c->rope_freqs, c->cfg.rope_freqs, (size_t)c->n_rope_freqs * sizeof(float));
	}
	uint64_t n_params;
	char size[64];
	size_label(c, c->cfg.n_rope_freqs, &n_params, size, sizeof size);

	/* Metadata in convert_hf_to_gguf.py's order. */
	muse_meta *meta = &v->meta;
	char dname[256];
	size_t dlen, dbase = muse_path_base(dir, &dlen); /* "a/dir/" names "dir" */
	snprintf(dname, sizeof dname, "%.*s", (int)dlen, dir + dbase);
	NOMEM(muse_meta_set_str(meta, "general.architecture", a->gguf_name));
	NOMEM(muse_meta_set_str(meta, "general.type", "model"));
	if ((s = muse_model_card_load(dir, &card, err)) ||
	    (s = muse_hf_general_keys(meta, &card, dname, n_params, size, err)))
		goto done;
	for (size_t k = 0; k < hp.n; k++)
		NOMEM(muse_meta_copy_kv(meta, &hp.kv[k]));
	NOMEM(muse_meta_set_u32(meta, "general.file_type",
				ft_dt == MUSE_DT_F32 ? 0 : ft_dt == MUSE_DT_F16 ? 1 : ft_dt == MUSE_DT_Q8_0 ? 7 : 32));
	if ((s = muse_hf_config_arch_keys(&c->cfg, meta, err))) {
		muse_err_prefix(err, "%s", dir);
		goto done;
	}
	NOMEM(muse_meta_set_u32(meta, "general.quantization_version", 2));
	if (!opt->no_tokenizer &&
	    (s = muse_vocab_hf_to_meta(dir, c->cfg.vocab_size, meta, opt->quiet ? NULL : stderr, err)))
		goto done;

	if (c->extra && (s = add_view_tensor(v, c, NULL, err)))
		goto done;
	for (size_t k = 0; k < c->n_outs; k++)
		if ((s = add_view_tensor(v, c, &c->outs[k], err)))
			goto done;
done:
	muse_model_card_free(&card);
	muse_meta_free(&hp);
	if (s) {
		muse_reader_free(v);
		return s;
	}
	*out = v;
	return MUSE_OK;
}
