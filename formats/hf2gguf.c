/* hf2gguf.c: HF directory -> GGUF: arch table names, llama Q/K permutation, config and tokenizer metadata, streamed. */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/progress.h"
#include "arch.h"
#include "hf2gguf.h"
#include "hf_config.h"
#include "model_writer.h"
#include "reader.h"
#include "tokenizer_gguf.h"

#define MAX_LAYERS 65536u      /* far above any model; bounds the per-block bookkeeping */

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

typedef struct plan {
	size_t src;                  /* reader index */
	const muse_arch_tensor *rule;
	muse_dtype dt;
	char name[256];
} plan;

/* The output type of a float tensor: F32 for norms and 1-D, else --outtype or (auto) the source's own. */
static muse_dtype pick_dtype(const muse_tensor *t, const muse_arch_tensor *rule, muse_dtype want)
{
	if (rule->f32 || t->ndim <= 1)
		return MUSE_DT_F32;
	if (want != MUSE_DT_INVALID)
		return want;
	if (t->dtype == MUSE_DT_F32 || t->dtype == MUSE_DT_F16 || t->dtype == MUSE_DT_BF16)
		return t->dtype;
	return MUSE_DT_F32;
}

/* HF tensors convert_hf_to_gguf.py drops: buffers, not weights. */
static int skipped(const char *name)
{
	static const char *const sfx[] = { ".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias", NULL };
	size_t n = strlen(name);
	for (size_t i = 0; sfx[i]; i++) {
		size_t k = strlen(sfx[i]);
		if (n >= k && !strcmp(name + n - k, sfx[i]))
			return 1;
	}
	return 0;
}

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

muse_status muse_hf2gguf(const char *dir, const char *out, muse_dtype want, uint64_t shard_bytes, bool quiet,
			 muse_err *err)
{
	muse_status s;
	muse_hf_config cfg = { 0 };
	muse_meta hp, meta;
	muse_reader *r = NULL;
	muse_model_writer *w = NULL;
	plan *pl = NULL;
	uint8_t *seen = NULL;
	size_t n_pl = 0;
	muse_cast_buf cb = { 0 };
	muse_meta_init(&hp);
	muse_meta_init(&meta);

	if ((s = muse_hf_config_load(dir, &cfg, &hp, err)))
		goto done;
	const muse_arch *a = cfg.arch;
	if ((s = muse_reader_open(dir, &r, err)))
		goto done;
	NOMEM(!(pl = calloc(r->n_tensors ? r->n_tensors : 1, sizeof *pl)));
	/* Which required rows were seen, per block: n_rules x n_layer flags (layer count capped first). */
	if (cfg.n_layer > MAX_LAYERS) {
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s/config.json: num_hidden_layers %llu above %u", dir,
				 (unsigned long long)cfg.n_layer, MAX_LAYERS);
		goto done;
	}
	size_t n_rules = 0, slots = cfg.n_layer ? (size_t)cfg.n_layer : 1;
	while (a->tensors[n_rules].hf)
		n_rules++;
	NOMEM(!(seen = calloc(n_rules * slots, 1)));

	/* Pass 1: map every name, pick types, check shapes against the config, count parameters. */
	uint64_t n_params = 0, total = 0;
	muse_dtype ft_dt = MUSE_DT_INVALID;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		plan *p = &pl[n_pl];
		int64_t blk;
		if (skipped(t->name))
			continue;
		s = muse_arch_map_name(a, t->name, cfg.n_layer, p->name, sizeof p->name, &p->rule, &blk);
		if (s == MUSE_ERR_UNSUPPORTED) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s' has no %s mapping", r->path, t->name,
					 a->gguf_name);
			goto done;
		}
		if (s) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': block number not below num_hidden_layers %llu",
					 r->path, t->name, (unsigned long long)cfg.n_layer);
			goto done;
		}
		if (!muse_dtype_info(t->dtype)->is_float || muse_dtype_info(t->dtype)->blck != 1) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s weights are not supported", r->path,
					 t->name, muse_dtype_name(t->dtype));
			goto done;
		}
		/* The embedding and output matrices must agree with vocab_size x hidden_size. */
		if ((!strcmp(p->name, "token_embd.weight") || !strcmp(p->name, "output.weight")) &&
		    (t->ndim != 2 || t->shape[0] != cfg.vocab_size || t->shape[1] != cfg.n_embd)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT,
					 "%s: tensor '%s': shape disagrees with config.json (vocab_size %llu x hidden_size %llu)",
					 r->path, t->name, (unsigned long long)cfg.vocab_size, (unsigned long long)cfg.n_embd);
			goto done;
		}
		if (p->rule->xf != MUSE_XF_NONE) {
			uint64_t nh = p->rule->xf == MUSE_XF_PERMUTE_Q ? cfg.n_head : cfg.n_head_kv;
			if (t->ndim < 1 || t->ndim > 2 || t->shape[0] % (2 * nh)) {
				s = muse_err_set(err, MUSE_ERR_FORMAT,
						 "%s: tensor '%s': %llu rows do not split into %llu heads of an even size",
						 r->path, t->name, (unsigned long long)(t->ndim ? t->shape[0] : 0),
						 (unsigned long long)nh);
				goto done;
			}
		}
		seen[(size_t)(p->rule - a->tensors) * slots + (size_t)(blk < 0 ? 0 : blk)] = 1;
		p->src = i;
		p->dt = pick_dtype(t, p->rule, want);
		if (ft_dt == MUSE_DT_INVALID && t->ndim >= 2)
			ft_dt = p->dt;
		n_params += t->nelements;
		total += t->nbytes;
		n_pl++;
	}
	for (size_t k = 0; k < n_rules; k++) {
		const muse_arch_tensor *rule = &a->tensors[k];
		const char *ph = strstr(rule->hf, "{N}");
		for (size_t b = 0; rule->required && b < (ph ? slots : 1); b++) {
			if (seen[k * slots + b])
				continue;
			if (ph)
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%.*s%zu%s' is missing (config.json: %llu layers)",
						 r->path, (int)(ph - rule->hf), rule->hf, b, ph + 3,
						 (unsigned long long)cfg.n_layer);
			else
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is missing", r->path, rule->hf);
			goto done;
		}
	}
	if (ft_dt == MUSE_DT_INVALID)
		ft_dt = want != MUSE_DT_INVALID ? want : MUSE_DT_F32;
	/* Llama-3 rope scaling: a generated F32 tensor, first, as convert_hf_to_gguf.py's generate_extra_tensors. */
	size_t extra = cfg.n_rope_freqs ? 1 : 0;
	n_params += cfg.n_rope_freqs;

	/* Metadata in convert_hf_to_gguf.py's order. */
	char title[256], size[32];
	const char *base = strrchr(dir, '/');
	char dname[256];
	snprintf(dname, sizeof dname, "%s", base && base[1] ? base + 1 : dir);
	if (base && !base[1]) { /* "dir/": the component before the slash */
		size_t L = strlen(dir);
		while (L > 1 && dir[L - 1] == '/')
			L--;
		size_t st = L;
		while (st > 0 && dir[st - 1] != '/')
			st--;
		snprintf(dname, sizeof dname, "%.*s", (int)(L - st), dir + st);
	}
	muse_hf_name_to_title(dname, title, sizeof title);
	muse_hf_size_label(n_params, size, sizeof size);
	NOMEM(muse_meta_set_str(&meta, "general.architecture", a->gguf_name));
	NOMEM(muse_meta_set_str(&meta, "general.type", "model"));
	NOMEM(muse_meta_set_str(&meta, "general.name", title));
	char nb[256], nf[256], nv[256], ns[256];
	muse_hf_name_components(dname, n_params, nb, nf, nv, ns, sizeof nb);
	if (nb[0])
		NOMEM(muse_meta_set_str(&meta, "general.basename", nb));
	if (nf[0])
		NOMEM(muse_meta_set_str(&meta, "general.finetune", nf));
	if (nv[0])
		NOMEM(muse_meta_set_str(&meta, "general.version", nv));
	if (ns[0])
		NOMEM(muse_meta_set_str(&meta, "general.size_label", ns));
	else if (n_params)
		NOMEM(muse_meta_set_str(&meta, "general.size_label", size));
	for (size_t k = 0; k < hp.n; k++)
		NOMEM(muse_meta_copy_kv(&meta, &hp.kv[k]));
	NOMEM(muse_meta_set_u32(&meta, "general.file_type", ft_dt == MUSE_DT_F32 ? 0 : ft_dt == MUSE_DT_F16 ? 1 : 32));
	char key[128];
	snprintf(key, sizeof key, "%s.vocab_size", a->gguf_name);
	NOMEM(muse_meta_set_u32(&meta, key, (uint32_t)cfg.vocab_size));
	snprintf(key, sizeof key, "%s.rope.dimension_count", a->gguf_name);
	NOMEM(muse_meta_set_u32(&meta, key, (uint32_t)cfg.rope_dim));
	NOMEM(muse_meta_set_u32(&meta, "general.quantization_version", 2));
	if ((s = muse_tokenizer_gguf_load(dir, cfg.vocab_size, &meta, quiet ? NULL : stderr, err)))
		goto done;

	if ((s = muse_model_writer_create(&w, MUSE_OUT_GGUF, out, shard_bytes, err)) ||
	    (s = muse_model_writer_set_meta(w, &meta, NULL, err)))
		goto done;
	if (extra && (s = muse_model_writer_add_tensor(w, "rope_freqs.weight", MUSE_DT_F32, 1, &cfg.n_rope_freqs, err)))
		goto done;
	for (size_t k = 0; k < n_pl; k++) {
		const muse_tensor *t = &r->tensors[pl[k].src];
		if ((s = muse_model_writer_add_tensor(w, pl[k].name, pl[k].dt, t->ndim, t->shape, err)))
			goto done;
	}
	if ((s = muse_model_writer_begin(w, err)))
		goto done;

	/* Pass 2: data, one tensor at a time. */
	muse_progress pg;
	muse_progress_start(&pg, "convert", total, quiet);
	if (extra && (s = muse_model_writer_write(w, 0, cfg.rope_freqs, (size_t)cfg.n_rope_freqs * sizeof(float), err)))
		goto done;
	for (size_t k = 0; k < n_pl; k++) {
		muse_tensor *t = &r->tensors[pl[k].src];
		const uint8_t *src = muse_reader_view(r, pl[k].src);
		uint8_t *dense = NULL;
		if (!src) {
			NOMEM(t->nbytes > SIZE_MAX || !(dense = malloc(t->nbytes ? (size_t)t->nbytes : 1)));
			if ((s = muse_reader_read(r, pl[k].src, dense, err))) {
				free(dense);
				goto done;
			}
			src = dense;
		}
		if (pl[k].rule->xf != MUSE_XF_NONE) {
			uint64_t nh = pl[k].rule->xf == MUSE_XF_PERMUTE_Q ? cfg.n_head : cfg.n_head_kv;
			uint8_t *pb = malloc(t->nbytes ? (size_t)t->nbytes : 1);
			if (!pb) {
				free(dense);
				NOMEM(1);
			}
			s = muse_arch_permute_rows(pb, src, t->shape[0], t->nbytes / t->shape[0], nh, err);
			free(dense);
			dense = pb;
			src = pb;
			if (s) {
				free(dense);
				goto done;
			}
		}
		s = muse_model_writer_put(w, k + extra, t->name, src, t->dtype, t->nelements, pl[k].dt, &cb, &pg, err);
		free(dense);
		if (s)
			goto done;
	}
	if ((s = muse_model_writer_finish(w, err)))
		goto done;
	muse_progress_end(&pg);
	if (!quiet)
		fprintf(stderr, "muse: wrote %zu tensors (%s, %s) to %s\n", n_pl + extra, a->gguf_name,
			muse_dtype_name(ft_dt), out);
done:
	muse_hf_config_free(&cfg);
	muse_model_writer_free(w);
	muse_reader_free(r);
	muse_meta_free(&hp);
	muse_meta_free(&meta);
	free(pl);
	free(seen);
	free(cb.p);
	return s;
}
