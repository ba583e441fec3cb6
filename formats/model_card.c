/* model_card.c: README.md YAML front matter: top-level scalars and scalar lists (multi-line forms too), nested structures skipped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/mapfile.h"
#include "../lib/utf8.h"
#include "model_card.h"

#define CARD_MAX_FILE (16u << 20) /* README.md read whole; model cards are kilobytes */
#define CARD_MAX_ITEMS 4096u      /* entries per card and items per list */

void muse_model_card_free(muse_model_card *card)
{
	for (size_t i = 0; i < card->n; i++) {
		free(card->e[i].key);
		for (size_t j = 0; j < card->e[i].n; j++)
			free(card->e[i].items[j]);
		free(card->e[i].items);
	}
	free(card->e);
	card->e = NULL;
	card->n = 0;
}

const muse_card_entry *muse_model_card_get(const muse_model_card *card, const char *key)
{
	for (size_t i = 0; i < card->n; i++)
		if (!strcmp(card->e[i].key, key))
			return &card->e[i];
	return NULL;
}

const char *muse_model_card_str(const muse_model_card *card, const char *key)
{
	const muse_card_entry *e = muse_model_card_get(card, key);
	return e && !e->list && e->n == 1 ? e->items[0] : NULL;
}

static char *dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static int is_null(const char *s, size_t n)
{
	return !n || (n == 1 && s[0] == '~') || (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) ||
							  !memcmp(s, "NULL", 4)));
}

/* Writes code point cp (valid, not a surrogate) as UTF-8; returns the byte count (at most 4). */
static size_t utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/*
 * One scalar at s[0..n): quoted ('' escapes a quote; "..." takes \" \\ \n \t)
 * or plain (a " #" comment cut, spaces trimmed). *out NULL for YAML nulls.
 * Returns 0 on a malformed quote.
 */
static int scalar(const char *s, size_t n, char **out, int *nomem)
{
	*out = NULL;
	while (n && (*s == ' '))
		s++, n--;
	if (n && (s[0] == '"' || s[0] == '\'')) {
		char q = s[0];
		char *b = malloc(n + 1);
		size_t k = 0, i = 1;
		if (!b) {
			*nomem = 1;
			return 0;
		}
		for (; i < n; i++) {
			char c = s[i];
			if (c == q) {
				if (q == '\'' && i + 1 < n && s[i + 1] == '\'') {
					b[k++] = '\'';
					i++;
					continue;
				}
				break;
			}
			if (q == '"' && c == '\\' && i + 1 < n) {
				char d = s[i + 1];
				size_t hex = d == 'x' ? 2 : d == 'u' ? 4 : d == 'U' ? 8 : 0;
				if (hex) { /* a code point: UTF-8; NUL, surrogates and out-of-range values stay as written */
					uint32_t cp = 0;
					size_t h = 0;
					for (; h < hex && i + 2 + h < n; h++) {
						char x = s[i + 2 + h];
						int v = x >= '0' && x <= '9' ? x - '0' : x >= 'a' && x <= 'f' ? x - 'a' + 10
							: x >= 'A' && x <= 'F' ? x - 'A' + 10 : -1;
						if (v < 0)
							break;
						cp = cp * 16 + (uint32_t)v;
					}
					if (h == hex && cp && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF)) {
						k += utf8_put(b + k, cp);
						i += 1 + hex;
						continue;
					}
					b[k++] = c;
					continue;
				}
				static const char esc[] = "n\nt\tr\rb\bf\fa\av\ve\x1b/\057 \040";
				const char *m = strchr(esc, d);
				i++;
				b[k++] = m && (size_t)(m - esc) % 2 == 0 ? m[1] : d;
				continue;
			}
			b[k++] = c;
		}
		if (i >= n) { /* no closing quote on the line */
			free(b);
			return 0;
		}
		for (i++; i < n && s[i] == ' '; i++)
			;
		if (i < n && s[i] != '#') {
			free(b);
			return 0;
		}
		b[k] = '\0';
		*out = b;
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		if (s[i] == '#' && (i == 0 || s[i - 1] == ' ')) {
			n = i;
			break;
		}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
		n--;
	if (is_null(s, n))
		return 1;
	if (!(*out = dupn(s, n)))
		*nomem = 1;
	return *out != NULL;
}

static muse_status add_item(muse_card_entry *e, char *v, const char *path, muse_err *err)
{
	if (!v)
		return MUSE_OK;
	if (e->n >= CARD_MAX_ITEMS) {
		free(v);
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: a front matter list has more than %u items", path,
				    CARD_MAX_ITEMS);
	}
	char **n = realloc(e->items, (e->n + 1) * sizeof *n);
	if (!n) {
		free(v);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	e->items = n;
	e->items[e->n++] = v;
	return MUSE_OK;
}

/* A one-line flow list "[a, 'b', c]"; returns 0 when it is not one (nested or unterminated). */
static int flow_list(const char *s, size_t n, muse_card_entry *e, int *nomem)
{
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
		n--;
	if (n < 2 || s[0] != '[' || s[n - 1] != ']')
		return 0;
	size_t i = 1;
	while (i < n - 1) {
		size_t j = i;
		char q = 0;
		for (; j < n - 1; j++) {
			if (q) {
				if (s[j] == q)
					q = 0;
			} else if (s[j] == '"' || s[j] == '\'') {
				q = s[j];
			} else if (s[j] == ',') {
				break;
			} else if (s[j] == '[' || s[j] == '{') {
				return 0;
			}
		}
		char *v;
		if (!scalar(s + i, j - i, &v, nomem))
			return 0;
		if (v && add_item(e, v, "", NULL))
			return 0;
		i = j + 1;
	}
	return 1;
}

/* One line of the front matter: its text without the line break (and a CR before it), its indentation. */
typedef struct card_line {
	const char *p;
	size_t n, ind;
	int blank; /* empty, spaces only, or a comment line */
} card_line;

/* Appends n bytes to the growing string *b (len *bn, capacity *bc); 0 when out of memory. */
static int cat(char **b, size_t *bn, size_t *bc, const char *p, size_t n)
{
	if (n + 1 > *bc - *bn) {
		size_t nc = *bc ? *bc : 64;
		while (nc - *bn < n + 1)
			nc *= 2;
		char *g = realloc(*b, nc);
		if (!g)
			return 0;
		*b = g;
		*bc = nc;
	}
	memcpy(*b + *bn, p, n);
	*bn += n;
	(*b)[*bn] = '\0';
	return 1;
}

/* True when a quoted scalar that opens at s[0] closes on this line (the quote run of '' counted as an escape). */
static int quote_closes(const char *s, size_t n)
{
	char q = s[0];
	for (size_t i = 1; i < n; i++) {
		if (q == '"' && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == q) {
			if (q == '\'' && i + 1 < n && s[i + 1] == '\'') {
				i++;
				continue;
			}
			return 1;
		}
	}
	return 0;
}

/*
 * YAML line folding of a multi-line scalar: v (the first line's part) then
 * lines L[*k+1 ..] while they belong to it: a line break and the next line's
 * indentation become one space, each empty line a "\n". Quoted (q != 0):
 * up to the line where the quote closes (a '\' ending a "..." line joins
 * without a space); plain: while lines are indented (ind > 0) and hold no
 * comment. *k advances to the last line used. *out is the folded text (for
 * a quoted scalar, with its quotes, to unescape as one line); NULL with
 * *nomem = 0 when a quoted scalar never closes.
 */
static void fold(const card_line *L, size_t nl, size_t *k, const char *v, size_t vn, char q, char **out, int *nomem)
{
	char *b = NULL;
	size_t bn = 0, bc = 0, breaks = 0;
	int closed = 0;
	*out = NULL;
	while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
		vn--;
	if (!cat(&b, &bn, &bc, v, vn))
		goto oom;
	for (size_t i = *k + 1; i < nl; i++) {
		const card_line *l = &L[i];
		const char *t = l->p + l->ind;
		size_t tn = l->n - l->ind;
		if (!q && (l->ind == 0 || (tn && t[0] == '#')) && tn)
			break; /* a plain scalar ends at the next key, a comment line or a less indented line */
		if (!tn) {
			breaks++;
			continue;
		}
		if (q && l->ind == 0 && tn >= 3 && (!memcmp(t, "---", 3) || !memcmp(t, "...", 3)))
			break; /* a document marker inside a quote: unterminated */
		int joined = q == '"' && bn && b[bn - 1] == '\\';
		if (joined)
			bn--;
		if (breaks) {
			for (; breaks; breaks--)
				if (!cat(&b, &bn, &bc, "\n", 1))
					goto oom;
		} else if (!joined && !cat(&b, &bn, &bc, " ", 1)) {
			goto oom;
		}
		*k = i;
		if (q) { /* does the quote close on this line? scanned with the opening quote put in front */
			char *tmp = malloc(tn + 1);
			if (!tmp)
				goto oom;
			tmp[0] = q;
			memcpy(tmp + 1, t, tn);
			closed = quote_closes(tmp, tn + 1);
			free(tmp);
		}
		while (!closed && tn && (t[tn - 1] == ' ' || t[tn - 1] == '\t'))
			tn--;
		if (!cat(&b, &bn, &bc, t, tn))
			goto oom;
		if (closed)
			break;
	}
	if (q && !closed) {
		free(b);
		return;
	}
	*out = b;
	return;
oom:
	free(b);
	*nomem = 1;
}

/*
 * A block scalar ("|" literal or ">" folded, with an optional chomping
 * indicator "-"/"+" and indentation digit) from lines L[*k+1 ..] indented
 * more than the key. Literal keeps line breaks; folded joins lines with a
 * space except where empty or more-indented lines keep the breaks. Clip
 * keeps one final line break, strip none, keep all. Returns 0 for a header
 * muse does not read (then the value is skipped). Whitespace-only lines
 * count as empty.
 */
static int block_scalar(const card_line *L, size_t nl, size_t *k, const char *h, size_t hn, char **out, int *nomem)
{
	char style = h[0], chomp = 0;
	size_t indent = 0;
	*out = NULL;
	for (size_t i = 1; i < hn; i++) {
		if ((h[i] == '-' || h[i] == '+') && !chomp)
			chomp = h[i];
		else if (h[i] >= '1' && h[i] <= '9' && !indent)
			indent = (size_t)(h[i] - '0');
		else if ((h[i] == ' ' || h[i] == '\t') && (i + 1 == hn || h[i + 1] == ' ' || h[i + 1] == '#'))
			break; /* a comment may follow */
		else
			return 0;
	}
	size_t first = *k + 1, end = first, last = 0; /* lines [first, end); last content line + 1 */
	for (; end < nl; end++) {
		if (!L[end].n)
			continue;
		if (!indent)
			indent = L[end].ind;
		if (!indent || L[end].ind < indent)
			break;
		last = end + 1;
	}
	char *b = NULL;
	size_t bn = 0, bc = 0, breaks = 0;
	int have = 0, prev_more = 0;
	if (!cat(&b, &bn, &bc, "", 0))
		goto oom;
	for (size_t i = first; i < last; i++) {
		if (!L[i].n) {
			breaks++;
			continue;
		}
		const char *t = L[i].p + indent;
		size_t tn = L[i].n - indent;
		int more = t[0] == ' ' || t[0] == '\t';
		/* breaks before this line: literal keeps all; folded turns a single one between normal lines into a space */
		size_t nb = have ? breaks + 1 : breaks;
		if (have && style == '>' && !more && !prev_more) {
			if (!breaks && !cat(&b, &bn, &bc, " ", 1))
				goto oom;
			nb = breaks;
		}
		for (size_t x = 0; x < nb; x++)
			if (!cat(&b, &bn, &bc, "\n", 1))
				goto oom;
		if (!cat(&b, &bn, &bc, t, tn))
			goto oom;
		breaks = 0;
		have = 1;
		prev_more = more;
	}
	size_t trail = end - (have ? last : first); /* empty lines after the last content line */
	if (have && chomp != '-' && !cat(&b, &bn, &bc, "\n", 1))
		goto oom;
	for (size_t x = 0; chomp == '+' && x < trail; x++)
		if (!cat(&b, &bn, &bc, "\n", 1))
			goto oom;
	*k = end - 1;
	*out = b;
	return 1;
oom:
	free(b);
	*nomem = 1;
	return 1;
}

/* A flow list "[...]" that may continue over the following lines: joined with spaces up to its closing bracket. */
static char *flow_join(const card_line *L, size_t nl, size_t *k, const char *v, size_t vn, int *nomem)
{
	char *b = NULL;
	size_t bn = 0, bc = 0;
	int depth = 0;
	char q = 0;
	size_t i = *k;
	for (;;) {
		for (size_t j = 0; j < vn; j++) {
			char c = v[j];
			if (q) {
				if (c == q)
					q = 0;
			} else if (c == '"' || c == '\'') {
				q = c;
			} else if (c == '#' && (j == 0 || v[j - 1] == ' ')) {
				vn = j; /* a comment ends the line */
				break;
			} else if (c == '[' || c == '{') {
				depth++;
			} else if (c == ']' || c == '}') {
				depth--;
			}
		}
		if ((bn && !cat(&b, &bn, &bc, " ", 1)) || !cat(&b, &bn, &bc, v, vn)) {
			free(b);
			*nomem = 1;
			return NULL;
		}
		if (depth <= 0 || ++i >= nl || (L[i].ind == 0 && L[i].n && !L[i].blank))
			break;
		v = L[i].p + L[i].ind;
		vn = L[i].n - L[i].ind;
		*k = i;
	}
	if (depth != 0) {
		free(b);
		return NULL;
	}
	return b;
}

static muse_status parse_lines(const card_line *L, size_t nl, const char *path, muse_model_card *card,
			       muse_err *err)
{
	muse_status s = MUSE_OK;
	muse_card_entry *cur = NULL; /* the key whose block list may follow */
	for (size_t k = 0; k < nl; k++) {
		const char *l = L[k].p;
		size_t n = L[k].n, ind = L[k].ind;
		if (L[k].blank)
			continue;
		if (l[ind] == '-' && (ind + 1 == n || l[ind + 1] == ' ')) {
			/* a block list item: belongs to cur when cur takes one (a scalar item); else skipped */
			if (!cur)
				continue;
			char *v, *joined = NULL;
			int nomem = 0;
			const char *it = l + ind + 1;
			size_t in = n - ind - 1;
			while (in && *it == ' ')
				it++, in--;
			/* "- key: value" (a list of maps) is nothing muse reads: drop the key */
			const char *colon = memchr(it, ':', in);
			if ((colon && (colon + 1 == it + in || colon[1] == ' ') && *it != '"' && *it != '\'') ||
			    (in && (*it == '[' || *it == '{' || *it == '|' || *it == '>' || *it == '&' || *it == '*' ||
				    *it == '!'))) {
				cur->list = -1;
				continue;
			}
			if (in && (*it == '"' || *it == '\'') && !quote_closes(it, in)) {
				size_t k0 = k;
				fold(L, nl, &k, it, in, *it, &joined, &nomem);
				if (!joined && !nomem) {
					s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %zu: unterminated quoted scalar", path,
							 k0 + 2);
					goto done;
				}
				if (joined) {
					it = joined;
					in = strlen(joined);
				}
			}
			if (nomem || !scalar(it, in, &v, &nomem)) {
				free(joined);
				s = nomem ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory")
					  : muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %zu: unterminated quoted scalar", path,
							 k + 2);
				goto done;
			}
			free(joined);
			cur->list = cur->list < 0 ? -1 : 1;
			if ((s = add_item(cur, v, path, err)))
				goto done;
			continue;
		}
		if (ind > 0) { /* inside a nested map: the key above holds a map, not a list */
			if (cur)
				cur->list = -1;
			continue;
		}
		cur = NULL;
		const char *colon = NULL;
		for (size_t i = 0; i < n; i++)
			if (l[i] == ':' && (i + 1 == n || l[i + 1] == ' ' || l[i + 1] == '\t')) {
				colon = l + i;
				break;
			}
		if (!colon || colon == l)
			continue; /* not a "key: value" line (a stray scalar or a complex key): skipped */
		size_t kn = (size_t)(colon - l);
		while (kn && (l[kn - 1] == ' ' || l[kn - 1] == '\t'))
			kn--;
		if (!kn)
			continue;
		if (card->n >= CARD_MAX_ITEMS) {
			s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: more than %u front matter keys", path, CARD_MAX_ITEMS);
			goto done;
		}
		muse_card_entry *e = realloc(card->e, (card->n + 1) * sizeof *e);
		if (!e) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		card->e = e;
		e = &card->e[card->n];
		memset(e, 0, sizeof *e);
		/* a quoted key ("base_model": x) is its text */
		const char *kp = l;
		if (kn >= 2 && (l[0] == '"' || l[0] == '\'') && l[kn - 1] == l[0])
			kp++, kn -= 2;
		if (!kn || !(e->key = dupn(kp, kn))) {
			if (!kn) {
				free(e->key);
				continue;
			}
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		card->n++;
		const char *v = colon + 1;
		size_t vn = n - (size_t)(colon + 1 - l);
		while (vn && (*v == ' ' || *v == '\t'))
			v++, vn--;
		int nomem = 0;
		if (vn && v[0] == '[') {
			char *fl = flow_join(L, nl, &k, v, vn, &nomem);
			if (!fl || !flow_list(fl, strlen(fl), e, &nomem)) {
				free(fl);
				if (nomem) {
					s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
					goto done;
				}
				e->list = -1; /* nested or unterminated: not read */
			} else {
				free(fl);
				e->list = 1;
			}
			continue;
		}
		if (vn && (v[0] == '|' || v[0] == '>')) {
			char *bs;
			if (!block_scalar(L, nl, &k, v, vn, &bs, &nomem)) {
				e->list = -1; /* a header muse does not read */
				continue;
			}
			if (nomem) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			if (bs && (s = add_item(e, bs, path, err)))
				goto done;
			continue;
		}
		if (vn && (v[0] == '{' || v[0] == '&' || v[0] == '*' || v[0] == '!')) {
			e->list = -1; /* maps, anchors, tags: not read */
			continue;
		}
		char *joined = NULL;
		int quoted = vn && (v[0] == '"' || v[0] == '\'');
		if (vn && v[0] != '#' && (quoted ? !quote_closes(v, vn) : !memmem(v, vn, " #", 2))) {
			/* a scalar that goes on over the next lines (quoted, or plain with indented lines after it) */
			size_t k0 = k;
			fold(L, nl, &k, v, vn, quoted ? v[0] : 0, &joined, &nomem);
			if (!joined && !nomem) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %zu: unterminated quoted scalar", path, k0 + 2);
				goto done;
			}
			if (joined) {
				v = joined;
				vn = strlen(joined);
			}
		}
		char *sv = NULL;
		if (nomem || !scalar(v, vn, &sv, &nomem)) {
			free(joined);
			s = nomem ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory")
				  : muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %zu: unterminated quoted scalar", path, k + 2);
			goto done;
		}
		free(joined);
		if (sv) {
			if ((s = add_item(e, sv, path, err)))
				goto done;
		} else {
			cur = e; /* "key:" alone: a block list may follow */
		}
	}
done:
	return s;
}

muse_status muse_model_card_parse(const char *text, size_t len, const char *path, muse_model_card *card,
				  muse_err *err)
{
	muse_status s = MUSE_OK;
	card_line *L = NULL;
	size_t nl = 0, cap = 0;
	memset(card, 0, sizeof *card);
	/* GGUF strings are UTF-8 and C strings end at NUL: refuse both kinds of bytes up front */
	if (!muse_utf8_valid(text, len) || memchr(text, '\0', len))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: front matter is not UTF-8 text (or holds a NUL byte)", path);
	for (size_t p = 0; p < len;) {
		const char *l = text + p;
		const char *nlp = memchr(l, '\n', len - p);
		size_t n = nlp ? (size_t)(nlp - l) : len - p;
		p += n + (nlp != NULL);
		if (n && l[n - 1] == '\r')
			n--;
		size_t ind = 0;
		while (ind < n && (l[ind] == ' ' || l[ind] == '\t'))
			ind++;
		if (nl == cap) {
			size_t nc = cap ? 2 * cap : 64;
			card_line *g = realloc(L, nc * sizeof *g);
			if (!g) {
				free(L);
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			}
			L = g;
			cap = nc;
		}
		/* a whitespace-only line is an empty line of its scalar (its spaces are not content) */
		L[nl++] = (card_line){ l, ind == n ? 0 : n, ind == n ? 0 : ind, ind == n || l[ind] == '#' };
	}
	s = parse_lines(L, nl, path, card, err);
	free(L);
	/* Entries that turned out to be something else are dropped as unread. */
	for (size_t i = 0; !s && i < card->n; i++)
		if (card->e[i].list < 0) {
			for (size_t j = 0; j < card->e[i].n; j++)
				free(card->e[i].items[j]);
			free(card->e[i].items);
			card->e[i].items = NULL;
			card->e[i].n = 0;
		}
	if (s)
		muse_model_card_free(card);
	return s;
}

muse_status muse_model_card_load(const char *dir, muse_model_card *card, muse_err *err)
{
	char path[4096];
	struct stat st;
	memset(card, 0, sizeof *card);
	if ((size_t)snprintf(path, sizeof path, "%s/README.md", dir) >= sizeof path)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return MUSE_OK;
	char *buf;
	size_t len;
	muse_status s = muse_read_small_file(path, CARD_MAX_FILE, &buf, &len, err);
	if (s)
		return s;
	/* gguf-py: the first line must be exactly "---", the front matter ends at the next "---" line */
	if (len < 4 || memcmp(buf, "---", 3) || (buf[3] != '\n' && !(buf[3] == '\r' && len > 4 && buf[4] == '\n'))) {
		free(buf);
		return MUSE_OK;
	}
	size_t start = buf[3] == '\n' ? 4 : 5, end = start;
	int closed = 0;
	while (end < len) {
		const char *nl = memchr(buf + end, '\n', len - end);
		size_t n = nl ? (size_t)(nl - (buf + end)) : len - end;
		if ((n == 3 || (n == 4 && buf[end + 3] == '\r')) && !memcmp(buf + end, "---", 3)) {
			closed = 1;
			break;
		}
		end += n + (nl != NULL);
	}
	if (!closed)
		end = len; /* gguf-py reads to the end when the closing marker is missing */
	s = muse_model_card_parse(buf + start, end - start, path, card, err);
	free(buf);
	return s;
}
