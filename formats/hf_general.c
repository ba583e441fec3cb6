/* hf_general.c: the general.* metadata convert_hf_to_gguf.py derives from an HF checkpoint's directory name and model card. */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hf_general.h"

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

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

/* general.* as the card and the directory name give them (hf_general.h). */
muse_status muse_hf_general_keys(muse_meta *meta, const muse_model_card *card, const char *dname, uint64_t n_params,
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
