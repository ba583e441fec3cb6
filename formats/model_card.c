/* model_card.c: README.md YAML front matter, the flat subset model cards use for name, license, tags and sources. */
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
				char d = s[++i];
				b[k++] = d == 'n' ? '\n' : d == 't' ? '\t' : d;
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

muse_status muse_model_card_parse(const char *text, size_t len, const char *path, muse_model_card *card,
				  muse_err *err)
{
	muse_status s = MUSE_OK;
	size_t line_no = 1;
	muse_card_entry *cur = NULL; /* the key whose block list may follow */
	memset(card, 0, sizeof *card);
	/* GGUF strings are UTF-8 and C strings end at NUL: refuse both kinds of bytes up front */
	if (!muse_utf8_valid(text, len) || memchr(text, '\0', len))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: front matter is not UTF-8 text (or holds a NUL byte)", path);
	for (size_t p = 0; p < len; line_no++) {
		const char *l = text + p;
		const char *nl = memchr(l, '\n', len - p);
		size_t n = nl ? (size_t)(nl - l) : len - p;
		p += n + (nl != NULL);
		if (n && l[n - 1] == '\r')
			n--;
		size_t ind = 0;
		while (ind < n && (l[ind] == ' ' || l[ind] == '\t'))
			ind++;
		if (ind == n || l[ind] == '#')
			continue;
		if (l[ind] == '-' && (ind + 1 == n || l[ind + 1] == ' ')) {
			/* a block list item: belongs to cur when cur takes one (a scalar item); else skipped */
			if (!cur)
				continue;
			char *v;
			int nomem = 0;
			const char *it = l + ind + 1;
			size_t in = n - ind - 1;
			while (in && *it == ' ')
				it++, in--;
			/* "- key: value" (a list of maps) is nothing muse reads: drop the key */
			const char *colon = memchr(it, ':', in);
			if ((colon && (colon + 1 == it + in || colon[1] == ' ') && *it != '"' && *it != '\'') ||
			    (in && (*it == '[' || *it == '{'))) {
				cur->list = -1;
				continue;
			}
			if (!scalar(it, in, &v, &nomem)) {
				s = nomem ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory")
					  : muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %zu: unterminated quoted scalar", path,
							 line_no + 1);
				goto done;
			}
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
			if (l[i] == ':' && (i + 1 == n || l[i + 1] == ' ')) {
				colon = l + i;
				break;
			}
		if (!colon || colon == l)
			continue; /* not a "key: value" line (a stray scalar or a complex key): skipped */
		size_t kn = (size_t)(colon - l);
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
		if (!(e->key = dupn(l, kn))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		card->n++;
		const char *v = colon + 1;
		size_t vn = n - kn - 1;
		while (vn && *v == ' ')
			v++, vn--;
		int nomem = 0;
		if (vn && v[0] == '[') {
			if (!flow_list(v, vn, e, &nomem)) {
				if (nomem) {
					s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
					goto done;
				}
				e->list = -1; /* nested or multi-line: not read */
			} else {
				e->list = 1;
			}
			continue;
		}
		if (vn && (v[0] == '{' || v[0] == '|' || v[0] == '>' || v[0] == '&' || v[0] == '*' || v[0] == '!')) {
			e->list = -1; /* maps, block scalars, anchors, tags: not read */
			continue;
		}
		char *sv;
		if (!scalar(v, vn, &sv, &nomem)) {
			s = nomem ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory")
				  : muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %zu: unterminated quoted scalar", path,
						 line_no + 1);
			goto done;
		}
		if (sv) {
			if ((s = add_item(e, sv, path, err)))
				goto done;
		} else {
			cur = e; /* "key:" alone: a block list may follow */
		}
	}
	/* Entries that turned out to be something else are dropped as unread. */
	for (size_t i = 0; i < card->n; i++)
		if (card->e[i].list < 0) {
			for (size_t j = 0; j < card->e[i].n; j++)
				free(card->e[i].items[j]);
			free(card->e[i].items);
			card->e[i].items = NULL;
			card->e[i].n = 0;
		}
done:
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
