/* hf2gguf.c: HF directory -> GGUF: arch table names, llama Q/K permutation, config and tokenizer metadata, streamed. */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../lib/path.h"
#include "../lib/checked.h"
#include "../lib/progress.h"
#include "../lib/strmap.h"
#include "arch.h"
#include "fp8.h"
#include "hf2gguf.h"
#include "hf_config.h"
#include "model_card.h"
#include "model_writer.h"
#include "reader.h"
#include "vocab.h"

#define MAX_LAYERS 65536u      /* far above any model; bounds the per-block bookkeeping */
#define MAX_EXPERTS 65536u     /* DeepSeek-V3 has 256; bounds the per-stack source lists */

void muse_hf_name_to_title(const char *id, char *out, size_t cap)
{
	size_t n = 0;
	const char *p = id;
	if (!cap)
		return;
	while (*p) {
		while (*p == ' ' || *p == '-' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		const char *e = p;
		while (*e && *e != ' ' && *e != '-' && *e != '\t' && *e != '\n')
			e++;
		/* str.islower(): some cased letter and no upper case one. */
		int lower = 0, upper = 0;
		for (const char *q = p; q < e; q++) {
			lower |= islower((unsigned char)*q) != 0;
			upper |= isupper((unsigned char)*q) != 0;
		}
		int version = isdigit((unsigned char)*p);
		if (*p == 'v' && e > p + 1 && isdigit((unsigned char)p[1])) {
			const char *q = p + 1;
			version = 1;
			while (q < e) {
				if (!isdigit((unsigned char)*q)) {
					version = 0;
					break;
				}
				while (q < e && isdigit((unsigned char)*q))
					q++;
				if (q < e && (*q != '.' || q + 1 >= e || !isdigit((unsigned char)q[1]))) {
					version = 0;
					break;
				}
				if (q < e)
					q++;
			}
		}
		int title = lower && !upper && !version;
		if (n && n + 1 < cap)
			out[n++] = ' ';
		int prev_alpha = 0;
		for (const char *q = p; q < e && n + 1 < cap; q++) {
			char c = *q;
			if (title && isalpha((unsigned char)c))
				c = (char)(prev_alpha ? tolower((unsigned char)c) : toupper((unsigned char)c));
			prev_alpha = isalpha((unsigned char)c) != 0;
			out[n++] = c;
		}
		p = e;
	}
	out[n] = '\0';
}

/* Anchored, case-insensitive POSIX ERE match. */
static int rx(const char *pat, const char *s)
{
	regex_t re;
	if (regcomp(&re, pat, REG_EXTENDED | REG_ICASE | REG_NOSUB))
		return 0;
	int ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

enum { NT_BASE = 1, NT_SIZE = 2, NT_FT = 4, NT_VER = 8, NT_TYPE = 16 };
#define MAX_PARTS 64

static void join(char *out, size_t cap, char parts[][128], const int *types, int n, int want, int without)
{
	size_t k = 0;
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (!(types[i] & want) || (types[i] & without))
			continue;
		if (want == NT_SIZE) { /* dict.fromkeys: first occurrence only */
			int dup = 0;
			for (int j = 0; j < i; j++)
				dup |= (types[j] & NT_SIZE) && !strcmp(parts[j], parts[i]);
			if (dup)
				continue;
		}
		int w = snprintf(out + k, cap - k, "%s%s", k ? "-" : "", parts[i]);
		if (w < 0 || (size_t)w >= cap - k)
			return;
		k += (size_t)w;
	}
}

void muse_hf_name_components(const char *id, uint64_t total, char *basename, char *finetune, char *version,
			     char *size_label, size_t cap)
{
	char parts[MAX_PARTS][128];
	int types[MAX_PARTS] = { 0 }, n = 0;
	basename[0] = finetune[0] = version[0] = size_label[0] = '\0';
	if (strchr(id, ' ') || strchr(id, '/'))
		return;
	for (const char *p = id; *p;) {
		const char *e = strchr(p, '-');
		size_t L = e ? (size_t)(e - p) : strlen(p);
		if (L) {
			if (n == MAX_PARTS || L + 2 >= sizeof parts[0]) /* + 2: the bloom rewrite grows a part by one */
				return; /* nothing sensible to derive from such a name */
			memcpy(parts[n], p, L);
			parts[n++][L] = '\0';
		}
		p += L + (e != NULL);
	}
	for (int i = 0; i < n; i++) {
		char *part = parts[i];
		size_t L = strlen(part);
		if (rx("^(v|iter)?[0-9]+([.][0-9]+)*$", part)) {
			types[i] |= NT_VER;
		} else if (rx("^(i?q[0-9](_[A-Za-z0-9_])*|b?fp?(16|32))$", part)) {
			types[i] |= NT_TYPE;
			for (char *c = part; *c; c++)
				*c = (char)toupper((unsigned char)*c);
		} else if (i > 0 && rx("^((a|[0-9]+x)?[0-9]+([._][0-9]+)?[kmbt][0-9]?|small|mini|medium|large|x?xl)$", part)) {
			for (char *c = part; *c; c++)
				if (*c == '_')
					*c = '.';
			if (isdigit((unsigned char)part[L - 1])) { /* bloom-7b1 -> 7.1b */
				char last = part[L - 1], prev = part[L - 2];
				part[L - 2] = '.';
				part[L - 1] = last;
				part[L] = prev;
				part[L + 1] = '\0';
				L++;
			}
			if (L > 1 && isdigit((unsigned char)part[L - 2]) && strchr("kmbt", part[L - 1]))
				part[L - 1] = (char)toupper((unsigned char)part[L - 1]);
			/* float(part[:-1]) * 1000 ** " KMBT".find(part[-1]); names float() refuses are kept. */
			char num[128];
			snprintf(num, sizeof num, "%.*s", (int)(L - 1), part);
			/* float() accepts digits with at most one '.'; anything else (8x7, small) stays a size label. */
			const char *dot = strchr(num, '.');
			int numeric_only = num[0] != '\0' && num[strspn(num, "0123456789.")] == '\0' &&
					   (!dot || !strchr(dot + 1, '.')) && strcmp(num, ".");
			if (total && numeric_only) {
				double v = strtod(num, NULL);
				const char *sfx = " KMBT", *f = strchr(sfx, part[L - 1]);
				double label = v * pow(1000.0, f ? (double)(f - sfx) : -1.0);
				double t = (double)total;
				if (fabs(label - t) > (double)(7 * total / 8)) {
					types[i] |= NT_FT;
					part[L - 1] = (char)tolower((unsigned char)part[L - 1]);
				}
			}
			if (!types[i])
				types[i] |= NT_SIZE;
		} else if (i > 0 && rx("^(chat|instruct|vision|lora)$", part)) {
			types[i] |= NT_FT;
		}
	}
	/* Word sizes ("small") give way to numeric ones. */
	int numeric = 0;
	for (int i = 0; i < n; i++)
		numeric |= (types[i] & NT_SIZE) && strpbrk(parts[i], "0123456789");
	for (int i = 0; numeric && i < n; i++) {
		int alpha = 1;
		for (const char *c = parts[i]; *c; c++)
			alpha &= isalpha((unsigned char)*c) != 0;
		if ((types[i] & NT_SIZE) && alpha)
			types[i] &= ~NT_SIZE;
	}
	int at_start = 1;
	for (int i = 0; i < n; i++) {
		if (at_start && ((!types[i] && isalpha((unsigned char)parts[i][0])) || (types[i] & NT_VER))) {
			types[i] |= NT_BASE;
		} else {
			at_start = 0;
			if (!types[i])
				types[i] |= NT_FT;
		}
	}
	for (int i = n - 1; i >= 0; i--) {
		if ((types[i] & NT_BASE) && (types[i] & ~NT_BASE))
			types[i] &= ~NT_BASE;
		else
			break;
	}
	join(basename, cap, parts, types, n, NT_BASE, 0);
	join(size_label, cap, parts, types, n, NT_SIZE, 0);
	join(finetune, cap, parts, types, n, NT_FT, 0);
	join(version, cap, parts, types, n, NT_VER, NT_BASE);
	if (!size_label[0] && !finetune[0] && !version[0])
		basename[0] = '\0';
}

void muse_hf_size_label(uint64_t n, char *out, size_t cap)
{
	double x = (double)n;
	double v;
	char suf;
	if (x > 1e12) {
		v = x * 1e-12;
		suf = 'T';
	} else if (x > 1e9) {
		v = x * 1e-9;
		suf = 'B';
	} else if (x > 1e6) {
		v = x * 1e-6;
		suf = 'M';
	} else {
		v = x * 1e-3;
		suf = 'K';
	}
	/* fix = max(2 - len(str(round(v)).lstrip('0')), 0) */
	char r[32];
	snprintf(r, sizeof r, "%.0f", nearbyint(v));
	const char *d = r;
	while (*d == '0')
		d++;
	int fix = 2 - (int)strlen(d);
	snprintf(out, cap, "%.*f%c", fix > 0 ? fix : 0, v, suf);
}

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
	seg *segs;                    /* owned when n_seg > 1, else &one */
	seg one;
} outt;

typedef struct conv {
	const char *dir;
	const muse_hf2gguf_opts *o;
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
	muse_dtype want = c->o->want;
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

typedef struct sink {
	muse_model_writer *w;
	size_t idx;
	muse_dtype dt;
	uint64_t cols;
	float *f;      /* one row as float32 */
	uint8_t *o;    /* one output row */
	size_t obytes;
	muse_hf2gguf_quantize_fn quantize;
	muse_progress *pg;
} sink;

static muse_status overflow(const char *name, uint64_t elem, muse_err *err)
{
	return muse_err_set(err, MUSE_ERR_LIMIT, "tensor '%s': element %llu overflows F16; use --outtype bf16 or f32",
			    name, (unsigned long long)elem);
}

/*
 * Writes the float row k->f. An element that overflows F16 returns
 * MUSE_ERR_LIMIT with its index in *bad and err untouched (the caller knows
 * the source element); other failures set err and leave *bad UINT64_MAX.
 */
static muse_status sink_put(sink *k, uint64_t *bad, muse_err *err)
{
	*bad = UINT64_MAX;
	const void *data = k->f;
	size_t n = (size_t)k->cols * sizeof(float);
	if (k->dt == MUSE_DT_Q8_0) {
		n = k->quantize(k->f, k->o, 1, (int64_t)k->cols, NULL);
		data = k->o;
	} else if (k->dt != MUSE_DT_F32) {
		muse_status s = muse_dtype_convert(k->dt, k->o, MUSE_DT_F32, k->f, (size_t)k->cols, err);
		if (s)
			return s;
		if (k->dt == MUSE_DT_F16) {
			const uint16_t *h = (const uint16_t *)k->o;
			for (uint64_t j = 0; j < k->cols; j++)
				if ((h[j] & 0x7fff) == 0x7c00 && !isinf(k->f[j])) {
					*bad = j;
					return MUSE_ERR_LIMIT;
				}
		}
		data = k->o;
		n = k->obytes;
	}
	return muse_model_writer_write(k->w, k->idx, data, n, err);
}

/* Source row r (cols elements) of tensor t at base, through its FP8 scales when fs is set, into k->f. */
static void load_row(sink *k, const muse_tensor *t, const uint8_t *base, const muse_fp8_scales *fs, uint64_t r,
		     uint64_t cols)
{
	size_t esz = muse_dtype_info(t->dtype)->block_bytes;
	const uint8_t *row = base + r * cols * esz;
	if (fs)
		muse_fp8_dequant_row(fs, row, r, k->f);
	else
		muse_dtype_convert(MUSE_DT_F32, k->f, t->dtype, row, (size_t)cols, NULL);
}

/* One source through a row mapping: output row i (of n_rows) comes from source row map(i). */
static muse_status emit_rows(const conv *c, const outt *o, sink *k, const muse_tensor *t, const uint8_t *base,
			     const muse_fp8_scales *fs, uint64_t n_rows, uint64_t cols, muse_err *err)
{
	size_t esz = muse_dtype_info(t->dtype)->block_bytes;
	uint64_t rows = t->ndim ? t->shape[0] : 1;
	if (t->ndim == 3)
		rows *= t->shape[1];
	for (uint64_t i = 0; i < n_rows; i++) {
		uint64_t r = i;
		switch (o->rule->xf) {
		case MUSE_XF_PERMUTE_Q:
			r = muse_arch_permuted_row(i, rows, c->cfg.n_head);
			break;
		case MUSE_XF_PERMUTE_K:
			r = muse_arch_permuted_row(i, rows, c->cfg.n_head_kv);
			break;
		case MUSE_XF_KV_B_V:
			r = i / c->vdim * (c->nope + c->vdim) + c->nope + i % c->vdim;
			break;
		case MUSE_XF_HALF_0:
		case MUSE_XF_HALF_1: {
			uint64_t f = t->shape[1] / 2;
			r = i / f * 2 * f + (o->rule->xf == MUSE_XF_HALF_1 ? f : 0) + i % f;
			break;
		}
		default:
			break;
		}
		muse_status s;
		if (!fs && t->dtype == k->dt) { /* no cast: the row's bytes as they are */
			s = muse_model_writer_write(k->w, k->idx, base + r * cols * esz, (size_t)(cols * esz), err);
		} else {
			uint64_t bad;
			load_row(k, t, base, fs, r, cols);
			s = sink_put(k, &bad, err);
			if (s == MUSE_ERR_LIMIT && bad != UINT64_MAX)
				s = overflow(t->name, r * cols + bad, err);
		}
		if (s)
			return s;
		if (k->pg)
			muse_progress_add(k->pg, cols * esz);
	}
	return MUSE_OK;
}

/* MLA attn_k_b: per head, the first nope rows of kv_b transposed to (kv_lora, nope); scratch holds one head. */
static muse_status emit_kb(const conv *c, sink *k, const muse_tensor *t, const uint8_t *base,
			   const muse_fp8_scales *fs, float *scratch, muse_err *err)
{
	uint64_t cols = t->shape[1], per = c->nope + c->vdim;
	size_t esz = muse_dtype_info(t->dtype)->block_bytes;
	float *row = k->f;
	for (uint64_t h = 0; h < c->cfg.n_head_kv_src; h++) {
		for (uint64_t n = 0; n < c->nope; n++) {
			k->f = scratch + n * cols;
			load_row(k, t, base, fs, h * per + n, cols);
		}
		k->f = row;
		for (uint64_t j = 0; j < cols; j++) {
			for (uint64_t n = 0; n < c->nope; n++)
				row[n] = scratch[n * cols + j];
			uint64_t bad;
			muse_status s = sink_put(k, &bad, err);
			if (s == MUSE_ERR_LIMIT && bad != UINT64_MAX)
				s = overflow(t->name, (h * per + bad) * cols + j, err);
			if (s)
				return s;
		}
		if (k->pg)
			muse_progress_add(k->pg, c->nope * cols * esz);
	}
	return MUSE_OK;
}

/*
 * Drops tensor i's mapped pages after use, with a margin: a page fault maps
 * more than the page (fault-around, whole large folios of the page cache),
 * and a stack reads every third tensor of a layer, so without the margin the
 * edges of neighbours already written stay resident and add up over the
 * model (measured on a 209 MB MoE: 70 MB resident with no margin, 14 MB with
 * 256 KiB, 5 MB with 4 MiB). A neighbour not yet written faults back in from
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

/* Tensor data, views or (strided PyTorch storage) one dense copy; *owned gets what to free. */
static muse_status source_bytes(muse_reader *r, size_t i, const uint8_t **p, uint8_t **owned, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	*owned = NULL;
	*p = muse_reader_view(r, i);
	if (*p)
		return MUSE_OK;
	if (t->nbytes > SIZE_MAX || !(*owned = malloc(t->nbytes ? (size_t)t->nbytes : 1)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
	muse_status s = muse_reader_read(r, i, *owned, err);
	if (s) {
		free(*owned);
		*owned = NULL;
		return s;
	}
	*p = *owned;
	return MUSE_OK;
}

static muse_status write_out(conv *c, size_t idx, const outt *o, muse_model_writer *w, muse_cast_buf *cb,
			     muse_progress *pg, muse_err *err)
{
	muse_reader *r = c->r;
	muse_status s = MUSE_OK;
	/* 1-D outputs (permuted biases) go a row of one element at a time */
	sink k = { .w = w, .idx = idx, .dt = o->dt, .cols = o->ndim >= 2 ? o->shape[o->ndim - 1] : 1,
		   .quantize = c->o->quantize, .pg = pg };
	float *scratch = NULL;
	uint8_t *own = NULL, *sown = NULL;
	int rowwise = o->rule->xf != MUSE_XF_NONE || o->segs[0].scale != SIZE_MAX || o->dt == MUSE_DT_Q8_0;
	if (rowwise) {
		uint64_t rb;
		if (!muse_dtype_nbytes(o->dt, k.cols, &rb))
			return muse_err_set(err, MUSE_ERR_FORMAT, "tensor '%s': rows of %llu are not whole %s blocks", o->name,
					    (unsigned long long)k.cols, muse_dtype_name(o->dt));
		k.obytes = (size_t)rb;
		uint64_t fl = k.cols;
		const muse_tensor *t0 = &r->tensors[o->segs[0].src];
		if (t0->ndim >= 2 && t0->shape[t0->ndim - 1] > fl)
			fl = t0->shape[t0->ndim - 1]; /* source rows longer than output rows (attn_k_b) */
		k.f = malloc((size_t)fl * sizeof(float));
		k.o = malloc(k.obytes > fl * sizeof(float) ? k.obytes : (size_t)fl * sizeof(float));
		if (o->rule->xf == MUSE_XF_KV_B_K)
			scratch = malloc((size_t)(c->nope * t0->shape[1]) * sizeof(float));
		if (!k.f || !k.o || (o->rule->xf == MUSE_XF_KV_B_K && !scratch)) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "tensor '%s': out of memory", o->name);
			goto done;
		}
	}
	for (uint64_t e = 0; e < o->n_seg; e++) {
		const muse_tensor *t = &r->tensors[o->segs[e].src];
		const uint8_t *p, *sp = NULL;
		if ((s = source_bytes(r, o->segs[e].src, &p, &own, err)))
			goto done;
		if (!rowwise) {
			s = muse_model_writer_put(w, idx, t->name, p, t->dtype, t->nelements, o->dt, cb, pg, err);
		} else {
			muse_fp8_scales fs, *fsp = NULL;
			if (o->segs[e].scale != SIZE_MAX) {
				const muse_tensor *st = &r->tensors[o->segs[e].scale];
				if ((s = source_bytes(r, o->segs[e].scale, &sp, &sown, err)))
					goto done;
				if ((s = muse_fp8_scales_init(&fs, t->dtype, t->shape[0], t->shape[1],
							      c->fp8_block > 0 ? c->block : NULL, st->dtype, st->ndim,
							      st->shape, sp, err)))
					goto done;
				fsp = &fs;
			}
			uint64_t cols = t->ndim >= 2 ? t->shape[t->ndim - 1] : 1;
			uint64_t n_rows = o->rule->xf == MUSE_XF_KV_B_V ? c->cfg.n_head_kv_src * c->vdim
					  : (o->rule->xf == MUSE_XF_HALF_0 || o->rule->xf == MUSE_XF_HALF_1)
						  ? t->nelements / cols / 2
						  : t->nelements / cols;
			if (o->rule->xf == MUSE_XF_KV_B_K)
				s = emit_kb(c, &k, t, p, fsp, scratch, err);
			else
				s = emit_rows(c, o, &k, t, p, fsp, n_rows, cols, err);
			if (o->segs[e].scale != SIZE_MAX)
				release_around(r, o->segs[e].scale);
			free(sown);
			sown = NULL;
		}
		release_around(r, o->segs[e].src);
		free(own);
		own = NULL;
		if (s == MUSE_ERR_LIMIT) /* an F16 overflow names the tensor; say which file holds it */
			muse_err_prefix(err, "%s", r->files[t->file].path);
		if (s)
			goto done;
	}
done:
	free(own);
	free(sown);
	free(k.f);
	free(k.o);
	free(scratch);
	return s;
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

/* The first of keys (NULL-terminated) the card has as a scalar, else NULL. */
static const char *card_first(const muse_model_card *card, const char *const *keys)
{
	for (; *keys; keys++) {
		const char *v = muse_model_card_str(card, *keys);
		if (v)
			return v;
	}
	return NULL;
}

/* Appends key's items (a scalar counts as one) to the string list *v of *n. */
static int card_items(const muse_model_card *card, const char *key, const char ***v, size_t *n)
{
	const muse_card_entry *e = muse_model_card_get(card, key);
	if (!e || e->list < 0)
		return 0;
	const char **nv = realloc(*v, (*n + e->n + 1) * sizeof *nv);
	if (!nv)
		return -1;
	*v = nv;
	for (size_t i = 0; i < e->n; i++)
		nv[(*n)++] = e->items[i];
	return 1;
}

/*
 * gguf-py's base_model / dataset entries: an HF id "org/Name-7B-v1" or a
 * huggingface.co URL gives name, organization, version and repo_url; other
 * URLs give repo_url only. prefix is "general.base_model" or "general.dataset".
 */
static muse_status card_sources(muse_meta *meta, const muse_model_card *card, const char *const *keys,
				const char *prefix, uint64_t n_params, muse_err *err)
{
	const muse_card_entry *e = NULL;
	for (; *keys && !e; keys++)
		e = muse_model_card_get(card, *keys);
	if (!e || e->list < 0)
		return MUSE_OK;
	char k[256];
	snprintf(k, sizeof k, "%s.count", prefix);
	if (muse_meta_set_u32(meta, k, (uint32_t)e->n))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < e->n; i++) {
		const char *id = e->items[i], *url = NULL;
		char rep[1024] = "", name[512] = "", org[512] = "", ver[256] = "";
		int is_url = !strncmp(id, "http://", 7) || !strncmp(id, "https://", 8) || !strncmp(id, "ssh://", 6);
		if (is_url) {
			url = id;
			const char *h = strstr(id, "://huggingface.co/");
			id = NULL;
			if (h && (h - url == 4 || h - url == 5)) {
				const char *r = h + strlen("://huggingface.co/"), *sl = strchr(r, '/');
				if (sl && sl > r && sl[1] && !strchr(sl + 1, '/'))
					id = r;
			}
		}
		if (id && strchr(id, ' ')) {
			muse_hf_name_to_title(id, name, sizeof name);
		} else if (id) {
			const char *sl = strchr(id, '/'), *full = sl ? sl + 1 : id;
			char o[256] = "";
			if (sl && sl > id && id[0] != '.')
				snprintf(o, sizeof o, "%.*s", (int)(sl - id), id);
			char b[256], f[256], sz[256];
			muse_hf_name_components(full, n_params, b, f, ver, sz, sizeof b);
			muse_hf_name_to_title(full, name, sizeof name);
			if (o[0])
				muse_hf_name_to_title(o, org, sizeof org);
			if (!is_url && o[0])
				snprintf(rep, sizeof rep, "https://huggingface.co/%s/%s", o, full);
		}
		if (url)
			snprintf(rep, sizeof rep, "%s", url);
		const struct { const char *sfx, *v; } kv[] = { { "name", name }, { "version", ver }, { "organization", org },
							      { "repo_url", rep } };
		for (size_t j = 0; j < 4; j++) {
			if (!kv[j].v[0])
				continue;
			snprintf(k, sizeof k, "%s.%zu.%s", prefix, i, kv[j].sfx);
			if (muse_meta_set_str(meta, k, kv[j].v))
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		}
	}
	return MUSE_OK;
}

/*
 * general.* as convert_hf_to_gguf.py's Metadata writes them: the model
 * card's keys first (llama.cpp's own names, then "model_"-prefixed ones),
 * the directory name for what the card leaves out, the computed size label
 * last.
 */
static muse_status general_keys(muse_meta *meta, const muse_model_card *card, const char *dname, uint64_t n_params,
				const char *size, muse_err *err)
{
	char title[256], nb[256], nf[256], nv[256], ns[256];
	muse_status s = MUSE_OK;
	muse_hf_name_to_title(dname, title, sizeof title);
	muse_hf_name_components(dname, n_params, nb, nf, nv, ns, sizeof nb);
	static const char *const k_name[] = { "name", "model_name", NULL },
				 *const k_author[] = { "author", "model_author", "model_creator", NULL },
				 *const k_version[] = { "version", "model_version", NULL },
				 *const k_org[] = { "organization", "model_organization", NULL },
				 *const k_ft[] = { "finetune", "model_finetune", NULL },
				 *const k_base[] = { "basename", "model_basename", "model_type", NULL },
				 *const k_desc[] = { "description", "model_description", NULL },
				 *const k_size[] = { "size_label", "model_size_label", NULL },
				 *const k_url[] = { "url", "model_url", NULL }, *const k_doi[] = { "doi", "model_doi", NULL },
				 *const k_uuid[] = { "uuid", "model_uuid", NULL },
				 *const k_repo[] = { "repo_url", "model_repo_url", NULL },
				 *const k_lname[] = { "license_name", NULL }, *const k_llink[] = { "license_link", NULL };
	const char *v;
	const char *lic = NULL;
	char *lic_joined = NULL;
	const char **items = NULL;
	size_t n_items = 0;
	const struct { const char *key; const char *const *card; const char *fallback; } rows[] = {
		{ "general.name", k_name, title },
		{ "general.author", k_author, NULL },
		{ "general.version", k_version, nv },
		{ "general.organization", k_org, NULL },
		{ "general.finetune", k_ft, nf },
		{ "general.basename", k_base, nb },
		{ "general.description", k_desc, NULL },
		{ "general.size_label", k_size, ns[0] ? ns : n_params ? size : NULL },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		v = card_first(card, rows[i].card);
		if (!v)
			v = rows[i].fallback && rows[i].fallback[0] ? rows[i].fallback : NULL;
		if (v)
			NOMEM(muse_meta_set_str(meta, rows[i].key, v));
	}
	/* license: a list is joined with "," */
	const muse_card_entry *le = muse_model_card_get(card, "license");
	if (le && le->list >= 0 && le->n) {
		size_t L = 0;
		for (size_t i = 0; i < le->n; i++)
			L += strlen(le->items[i]) + 1;
		NOMEM(!(lic_joined = malloc(L)));
		lic_joined[0] = '\0';
		for (size_t i = 0; i < le->n; i++) {
			if (i)
				strcat(lic_joined, ",");
			strcat(lic_joined, le->items[i]);
		}
		lic = lic_joined;
		NOMEM(muse_meta_set_str(meta, "general.license", lic));
	}
	const struct { const char *key; const char *const *card; } more[] = {
		{ "general.license.name", k_lname }, { "general.license.link", k_llink },
		{ "general.source.url", k_url },     { "general.source.doi", k_doi },
		{ "general.source.uuid", k_uuid },   { "general.source.repo_url", k_repo },
	};
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		if ((v = card_first(card, more[i].card)))
			NOMEM(muse_meta_set_str(meta, more[i].key, v));
	static const char *const k_bm[] = { "base_model", "base_models", "base_model_sources", NULL };
	static const char *const k_ds[] = { "datasets", "dataset", "dataset_sources", NULL };
	if ((s = card_sources(meta, card, k_bm, "general.base_model", n_params, err)) ||
	    (s = card_sources(meta, card, k_ds, "general.dataset", n_params, err)))
		goto done;
	static const char *const lists[][3] = { { "general.tags", "tags", "pipeline_tag" },
						{ "general.languages", "languages", "language" } };
	for (size_t i = 0; i < 2; i++) {
		int got = 0;
		n_items = 0;
		for (size_t j = 1; j < 3; j++) {
			int r = card_items(card, lists[i][j], &items, &n_items);
			NOMEM(r < 0);
			got |= r;
		}
		if (got)
			NOMEM(muse_meta_set_str_arr(meta, lists[i][0], items, n_items));
	}
done:
	free(items);
	free(lic_joined);
	return s;
}

muse_status muse_hf2gguf(const char *dir, const char *out, muse_dtype want, uint64_t shard_bytes, bool quiet,
			 muse_err *err)
{
	muse_hf2gguf_opts o = { .want = want, .shard_bytes = shard_bytes, .quiet = quiet };
	return muse_hf2gguf_ex(dir, out, &o, err);
}

muse_status muse_hf2gguf_ex(const char *dir, const char *out, const muse_hf2gguf_opts *opt, muse_err *err)
{
	muse_status s;
	conv c = { .dir = dir, .o = opt };
	muse_meta hp, meta;
	muse_model_writer *w = NULL;
	muse_cast_buf cb = { 0 };
	muse_model_card card = { 0 };
	muse_strmap_init(&c.src_names);
	muse_strmap_init(&c.out_names);
	muse_meta_init(&hp);
	muse_meta_init(&meta);

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
	if ((s = muse_hf_config_load(dir, &c.cfg, &hp, err)))
		goto done;
	const muse_arch *a = c.cfg.arch;
	if (c.cfg.n_layer > MAX_LAYERS) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s/config.json: num_hidden_layers %llu above %u", dir,
				 (unsigned long long)c.cfg.n_layer, MAX_LAYERS);
		goto done;
	}
	if (c.cfg.n_expert > MAX_EXPERTS) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s/config.json: %llu experts above %u", dir,
				 (unsigned long long)c.cfg.n_expert, MAX_EXPERTS);
		goto done;
	}
	muse_hf_config_u64(&c.cfg, "qk_nope_head_dim", &c.nope);
	muse_hf_config_u64(&c.cfg, "v_head_dim", &c.vdim);
	if ((s = muse_hf_config_fp8(&c.cfg, c.dir, &c.fp8_block, c.block, err)))
		goto done;
	if ((s = muse_reader_open(dir, &c.r, err)))
		goto done;
	muse_reader *r = c.r;
	NOMEM(muse_strmap_reserve(&c.src_names, r->n_tensors) < 0);
	for (size_t i = 0; i < r->n_tensors; i++)
		NOMEM(muse_strmap_put(&c.src_names, r->tensors[i].name, strlen(r->tensors[i].name), i, NULL) < 0);
	/* auto for dequantized FP8: the precision of the checkpoint's unquantized matrices */
	c.fp8_auto = MUSE_DT_BF16;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		if (t->ndim >= 2 && (t->dtype == MUSE_DT_F32 || t->dtype == MUSE_DT_F16 || t->dtype == MUSE_DT_BF16) &&
		    !muse_ends_with(t->name, "_scale_inv")) {
			c.fp8_auto = t->dtype;
			break;
		}
	}

	/* Pass 1: every output's name, type and shape from the descriptors alone. */
	if ((s = reading_order(&c, err)) || (s = map_sources(&c, err)) || (s = check_outs(&c, err)))
		goto done;
	qsort(c.outs, c.n_outs, sizeof *c.outs, cmp_out);
	for (size_t k = 0; k < c.n_outs; k++)
		if (c.outs[k].n_seg == 1)
			c.outs[k].segs = &c.outs[k].one;
	muse_dtype ft_dt = MUSE_DT_INVALID;
	uint64_t total = 0;
	for (size_t k = 0; k < c.n_outs; k++) {
		if (ft_dt == MUSE_DT_INVALID && c.outs[k].ndim >= 2)
			ft_dt = c.outs[k].dt;
		total += out_src_bytes(&c, &c.outs[k]);
	}
	if (opt->want == MUSE_DT_Q8_0)
		ft_dt = MUSE_DT_Q8_0;
	if (ft_dt == MUSE_DT_INVALID)
		ft_dt = opt->want != MUSE_DT_INVALID ? opt->want : MUSE_DT_F32;
	/* Llama-3 rope scaling: a generated F32 tensor, first, as convert_hf_to_gguf.py's generate_extra_tensors. */
	size_t extra = c.cfg.n_rope_freqs ? 1 : 0;
	uint64_t n_params;
	char size[64];
	size_label(&c, c.cfg.n_rope_freqs, &n_params, size, sizeof size);

	/* Metadata in convert_hf_to_gguf.py's order. */
	char dname[256];
	size_t dlen, dbase = muse_path_base(dir, &dlen); /* "a/dir/" names "dir" */
	snprintf(dname, sizeof dname, "%.*s", (int)dlen, dir + dbase);
	NOMEM(muse_meta_set_str(&meta, "general.architecture", a->gguf_name));
	NOMEM(muse_meta_set_str(&meta, "general.type", "model"));
	if ((s = muse_model_card_load(dir, &card, err)) || (s = general_keys(&meta, &card, dname, n_params, size, err)))
		goto done;
	for (size_t k = 0; k < hp.n; k++)
		NOMEM(muse_meta_copy_kv(&meta, &hp.kv[k]));
	NOMEM(muse_meta_set_u32(&meta, "general.file_type",
				ft_dt == MUSE_DT_F32 ? 0 : ft_dt == MUSE_DT_F16 ? 1 : ft_dt == MUSE_DT_Q8_0 ? 7 : 32));
	if ((s = muse_hf_config_arch_keys(&c.cfg, &meta, err))) {
		muse_err_prefix(err, "%s", dir);
		goto done;
	}
	NOMEM(muse_meta_set_u32(&meta, "general.quantization_version", 2));
	if ((s = muse_vocab_hf_to_meta(dir, c.cfg.vocab_size, &meta, opt->quiet ? NULL : stderr, err)))
		goto done;

	if ((s = muse_model_writer_create(&w, MUSE_OUT_GGUF, out, opt->shard_bytes, err)) ||
	    (s = muse_model_writer_set_meta(w, &meta, NULL, err)))
		goto done;
	if (extra && (s = muse_model_writer_add_tensor(w, "rope_freqs.weight", MUSE_DT_F32, 1, &c.cfg.n_rope_freqs, err)))
		goto done;
	for (size_t k = 0; k < c.n_outs; k++)
		if ((s = muse_model_writer_add_tensor(w, c.outs[k].name, c.outs[k].dt, c.outs[k].ndim, c.outs[k].shape, err)))
			goto done;
	if ((s = muse_model_writer_begin(w, err)))
		goto done;

	/* Pass 2: data, one output at a time, each source row by row or in cast chunks. */
	muse_progress pg;
	muse_progress_start(&pg, "convert", total, opt->quiet);
	if (extra && (s = muse_model_writer_write(w, 0, c.cfg.rope_freqs, (size_t)c.cfg.n_rope_freqs * sizeof(float), err)))
		goto done;
	for (size_t k = 0; k < c.n_outs; k++)
		if ((s = write_out(&c, k + extra, &c.outs[k], w, &cb, &pg, err)))
			goto done;
	if ((s = muse_model_writer_finish(w, err)))
		goto done;
	muse_progress_end(&pg);
	if (!opt->quiet)
		fprintf(stderr, "muse: wrote %zu tensors (%s, %s) to %s\n", c.n_outs + extra, a->gguf_name,
			muse_dtype_name(ft_dt), out);
done:
	for (size_t k = 0; k < c.n_outs; k++) {
		free(c.outs[k].name);
		if (c.outs[k].n_seg > 1)
			free(c.outs[k].segs);
	}
	free(c.outs);
	free(c.rank);
	muse_model_card_free(&card);
	muse_strmap_free(&c.src_names);
	muse_strmap_free(&c.out_names);
	muse_hf_config_free(&c.cfg);
	muse_model_writer_free(w);
	muse_reader_free(c.r);
	muse_meta_free(&hp);
	muse_meta_free(&meta);
	free(cb.p);
	return s;
}
