/* tokenizer.c: text -> ids as HF `tokenizers` does for tokenizer.json (added tokens, normalizers, pre-tokenizers with PCRE2, BPE) and as llama.cpp does for GGUF vocabularies and SentencePiece models, built from a muse_vocab. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "../lib/utf8.h"
#include "tokenizer_impl.h"

/* ------------------------------------------------------------------ lifecycle */

void muse_tokenizer_free(muse_tokenizer *t)
{
	if (!t)
		return;
	for (size_t i = 0; t->text && i < t->n_vocab; i++)
		free(t->text[i]);
	free(t->text);
	free(t->len);
	free(t->scores);
	muse_strmap_free(&t->map);
	free(t->merges);
	for (size_t i = 0; i < t->n_norm; i++) {
		free(t->norm[i].text);
		free(t->norm[i].pattern);
		pcre2_code_free(t->norm_re ? t->norm_re[i] : NULL);
	}
	free(t->norm);
	free(t->norm_re);
	for (size_t i = 0; i < t->n_pre; i++) {
		free(t->pre[i].pattern);
		pcre2_code_free(t->pre_re ? t->pre_re[i] : NULL);
	}
	free(t->pre);
	free(t->pre_re);
	for (size_t i = 0; i < t->n_added; i++)
		free(t->added[i].text);
	free(t->added);
	free(t);
}

size_t muse_tokenizer_n_vocab(const muse_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t muse_tokenizer_bos(const muse_tokenizer *t) { return t ? t->bos : -1; }
int32_t muse_tokenizer_eos(const muse_tokenizer *t) { return t ? t->eos : -1; }

static muse_tokenizer *tk_new(void)
{
	muse_tokenizer *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	muse_strmap_init(&t->map);
	t->unk = t->bos = t->eos = -1;
	for (int i = 0; i < 256; i++)
		t->byte_tok[i] = -1;
	return t;
}

static muse_status tk_set_text(muse_tokenizer *t, size_t id, const char *s, size_t len, muse_err *err)
{
	char *c = malloc(len + 1);
	if (!c)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	memcpy(c, s, len);
	c[len] = '\0';
	free(t->text[id]);
	t->text[id] = c;
	t->len[id] = len;
	return MUSE_OK;
}

/*
 * Builds text -> id once every text is set. Where two ids share a text the
 * lower id wins for model lookups (HF's vocab is a map; GGUF vocabularies
 * with duplicates resolve like llama.cpp's token_to_id, which keeps the last;
 * such vocabularies are malformed anyway).
 */
static muse_status tk_index(muse_tokenizer *t, muse_err *err)
{
	if (muse_strmap_reserve(&t->map, t->n_vocab) < 0)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < t->n_vocab; i++) {
		if (!t->text[i] && tk_set_text(t, i, "", 0, err))
			return MUSE_ERR_NOMEM;
		if (!t->len[i])
			continue;
		if (muse_strmap_put(&t->map, t->text[i], t->len[i], i, NULL) < 0)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	for (int b = 0; b < 256; b++) {
		char name[8];
		size_t v;
		snprintf(name, sizeof name, "<0x%02X>", b);
		if (muse_strmap_get(&t->map, name, 6, &v))
			t->byte_tok[b] = (int32_t)v;
	}
	return MUSE_OK;
}

static int32_t tk_lookup(const muse_tokenizer *t, const char *s)
{
	size_t v;
	return s && muse_strmap_get(&t->map, s, strlen(s), &v) ? (int32_t)v : -1;
}

static muse_status tk_merges_alloc(muse_tokenizer *t, size_t n, muse_err *err)
{
	size_t cap = 16;
	while (cap < 2 * n + 16)
		cap *= 2;
	t->merges = calloc(cap, sizeof *t->merges);
	if (!t->merges)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	t->merges_cap = cap;
	return MUSE_OK;
}

/* Adds merge "a"+"b" at rank; the merged text must be a token. */
static muse_status tk_merge(muse_tokenizer *t, const char *a, size_t la, const char *b, size_t lb, size_t rank,
			    bool first_wins, const char *src, muse_err *err)
{
	size_t ia, ib, im;
	char stackbuf[256], *cat = la + lb < sizeof stackbuf ? stackbuf : malloc(la + lb + 1);
	if (!cat)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	memcpy(cat, a, la);
	memcpy(cat + la, b, lb);
	muse_status s = MUSE_OK;
	if (!muse_strmap_get(&t->map, a, la, &ia) || !muse_strmap_get(&t->map, b, lb, &ib) ||
	    !muse_strmap_get(&t->map, cat, la + lb, &im))
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: merge %zu '%.*s %.*s': a part or the result is not a token", src,
				 rank, (int)(la > 60 ? 60 : la), a, (int)(lb > 60 ? 60 : lb), b);
	else if (muse_tk_merge_put(t, (int32_t)ia, (int32_t)ib, (int32_t)rank, (int32_t)im, first_wins) < 0)
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if (cat != stackbuf)
		free(cat);
	return s;
}

/* ------------------------------------------------------------------ regexes */

static pcre2_code *tk_regex(const char *pat, size_t len, bool literal, const char *src, muse_err *err)
{
	int ec;
	PCRE2_SIZE eo;
	uint32_t opts = literal ? PCRE2_LITERAL | PCRE2_UTF : PCRE2_UTF | PCRE2_UCP;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: regex '%.100s' does not compile with PCRE2 at offset %zu: %s",
			     src, pat, (size_t)eo, (const char *)msg);
		return NULL;
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: without JIT the interpreter runs */
	return re;
}

/*
 * Calls fn(start, end) for each non-overlapping match of re in s[0..len),
 * left to right, stepping one character past empty matches (as onig's
 * find_iter). Returns a status from fn or a match error.
 */
typedef muse_status (*match_fn)(void *ctx, size_t start, size_t end);

static muse_status tk_find_all(const pcre2_code *re, const char *s, size_t len, match_fn fn, void *ctx, muse_err *err)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	if (!md)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	muse_status st = MUSE_OK;
	size_t pos = 0;
	while (pos <= len) {
		int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof msg);
			st = muse_err_set(err, MUSE_ERR_LIMIT, "tokenizer: regex match failed: %s", (const char *)msg);
			break;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t a = ov[0], b = ov[1];
		if ((st = fn(ctx, a, b)))
			break;
		if (b > a) {
			pos = b;
		} else {
			if (a >= len)
				break;
			pos = a + 1;
			while (pos < len && ((uint8_t)s[pos] & 0xc0) == 0x80)
				pos++;
		}
	}
	pcre2_match_data_free(md);
	return st;
}

/* ------------------------------------------------------------------ piece lists */

/* Pieces of text in one arena; first: the piece starts at offset 0 of the original input (Metaspace "first"). */
typedef struct piece {
	size_t off, len;
	bool first;
} piece;

typedef struct plist {
	char *buf;
	size_t n_buf, cap_buf;
	piece *p;
	size_t n, cap;
} plist;

static void pl_free(plist *l)
{
	free(l->buf);
	free(l->p);
	memset(l, 0, sizeof *l);
}

static void pl_clear(plist *l)
{
	l->n_buf = 0;
	l->n = 0;
}

static muse_status pl_reserve_buf(plist *l, size_t more, muse_err *err)
{
	if (l->cap_buf - l->n_buf >= more)
		return MUSE_OK;
	size_t nc = l->cap_buf ? l->cap_buf : 4096;
	while (nc - l->n_buf < more) {
		if (nc > SIZE_MAX / 2)
			return muse_err_set(err, MUSE_ERR_LIMIT, "tokenizer: text too large");
		nc *= 2;
	}
	char *nb = realloc(l->buf, nc);
	if (!nb)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	l->buf = nb;
	l->cap_buf = nc;
	return MUSE_OK;
}

/* Starts a new empty piece. */
static muse_status pl_begin(plist *l, bool first, muse_err *err)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		piece *np = realloc(l->p, nc * sizeof *np);
		if (!np)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		l->p = np;
		l->cap = nc;
	}
	l->p[l->n++] = (piece){ l->n_buf, 0, first };
	return MUSE_OK;
}

/* Appends bytes to the last piece. */
static muse_status pl_append(plist *l, const char *s, size_t n, muse_err *err)
{
	muse_status st = pl_reserve_buf(l, n, err);
	if (st)
		return st;
	memcpy(l->buf + l->n_buf, s, n);
	l->n_buf += n;
	l->p[l->n - 1].len += n;
	return MUSE_OK;
}

static muse_status pl_add(plist *l, const char *s, size_t n, bool first, muse_err *err)
{
	muse_status st = pl_begin(l, first, err);
	return st ? st : pl_append(l, s, n, err);
}

/* Drops the last piece when it came out empty (HF drops empty splits). */
static void pl_drop_empty(plist *l)
{
	if (l->n && !l->p[l->n - 1].len)
		l->n--;
}

/* ------------------------------------------------------------------ normalizers */

static bool is_ws(utf8proc_int32_t c)
{
	/* Rust's char::is_whitespace: the White_Space property. */
	return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

typedef struct repl_ctx {
	plist *out;
	const char *s;
	size_t prev;
	const muse_vocab_norm *nm;
	muse_err *err;
} repl_ctx;

static muse_status repl_cb(void *c, size_t a, size_t b)
{
	repl_ctx *r = c;
	muse_status st = pl_append(r->out, r->s + r->prev, a - r->prev, r->err);
	if (!st)
		st = pl_append(r->out, r->nm->text, r->nm->text_len, r->err);
	r->prev = b;
	return st;
}

/* Applies the normalizer chain to s, writing the result as one new piece of out. */
static muse_status normalize(const muse_tokenizer *t, const char *s, size_t len, bool first, plist *out, plist *tmp,
			     muse_err *err)
{
	muse_status st;
	if ((st = pl_add(out, s, len, first, err)))
		return st;
	for (size_t k = 0; k < t->n_norm; k++) {
		const muse_vocab_norm *nm = &t->norm[k];
		piece cur = out->p[out->n - 1];
		pl_clear(tmp);
		if ((st = pl_begin(tmp, first, err)))
			return st;
		const char *c = out->buf + cur.off;
		switch (nm->kind) {
		case MUSE_NORM_NFC: case MUSE_NORM_NFD: case MUSE_NORM_NFKC: case MUSE_NORM_NFKD: {
			bool compose = nm->kind == MUSE_NORM_NFC || nm->kind == MUSE_NORM_NFKC;
			bool compat = nm->kind == MUSE_NORM_NFKC || nm->kind == MUSE_NORM_NFKD;
			int opt = UTF8PROC_STABLE | (compose ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) | (compat ? UTF8PROC_COMPAT : 0);
			utf8proc_uint8_t *dst = NULL;
			utf8proc_ssize_t n = cur.len ? utf8proc_map((const utf8proc_uint8_t *)c, (utf8proc_ssize_t)cur.len, &dst,
								  (utf8proc_option_t)opt) : 0;
			if (n < 0)
				return muse_err_set(err, MUSE_ERR_FORMAT, "tokenizer: normalization failed: %s", utf8proc_errmsg(n));
			st = pl_append(tmp, (const char *)dst, (size_t)n, err);
			free(dst);
			break;
		}
		case MUSE_NORM_LOWERCASE:
			for (size_t i = 0; i < cur.len && !st;) {
				utf8proc_int32_t cp;
				utf8proc_ssize_t k2 = utf8proc_iterate((const utf8proc_uint8_t *)c + i, (utf8proc_ssize_t)(cur.len - i), &cp);
				if (k2 <= 0)
					return muse_err_set(err, MUSE_ERR_FORMAT, "tokenizer: invalid UTF-8 while lowercasing");
				utf8proc_uint8_t enc[4];
				utf8proc_ssize_t e = utf8proc_encode_char(utf8proc_tolower(cp), enc);
				st = pl_append(tmp, (const char *)enc, (size_t)e, err);
				i += (size_t)k2;
			}
			break;
		case MUSE_NORM_PREPEND:
			if (cur.len)
				st = pl_append(tmp, nm->text, nm->text_len, err);
			if (!st)
				st = pl_append(tmp, c, cur.len, err);
			break;
		case MUSE_NORM_REPLACE: {
			repl_ctx r = { tmp, c, 0, nm, err };
			st = tk_find_all(t->norm_re[k], c, cur.len, repl_cb, &r, err);
			if (!st)
				st = pl_append(tmp, c + r.prev, cur.len - r.prev, err);
			break;
		}
		case MUSE_NORM_STRIP: {
			size_t a = 0, b = cur.len;
			while (nm->left && a < b) {
				utf8proc_int32_t cp;
				utf8proc_ssize_t k2 = utf8proc_iterate((const utf8proc_uint8_t *)c + a, (utf8proc_ssize_t)(b - a), &cp);
				if (k2 <= 0 || !is_ws(cp))
					break;
				a += (size_t)k2;
			}
			while (nm->right && b > a) {
				size_t q = b - 1;
				while (q > a && ((uint8_t)c[q] & 0xc0) == 0x80)
					q--;
				utf8proc_int32_t cp;
				if (utf8proc_iterate((const utf8proc_uint8_t *)c + q, (utf8proc_ssize_t)(b - q), &cp) <= 0 || !is_ws(cp))
					break;
				b = q;
			}
			st = pl_append(tmp, c + a, b - a, err);
			break;
		}
		}
		if (st)
			return st;
		/* Replace out's last piece by tmp's result. */
		out->n_buf = cur.off;
		out->p[out->n - 1].len = 0;
		if ((st = pl_append(out, tmp->buf + tmp->p[0].off, tmp->p[0].len, err)))
			return st;
	}
	return MUSE_OK;
}

/* ------------------------------------------------------------------ pre-tokenizers */

/* Match spans of one regex over one piece. */
typedef struct spans {
	size_t (*v)[2];
	size_t n, cap;
	muse_err *err;
} spans;

static muse_status span_cb(void *c, size_t a, size_t b)
{
	spans *x = c;
	if (x->n == x->cap) {
		size_t nc = x->cap ? x->cap * 2 : 64;
		size_t (*nv)[2] = realloc(x->v, nc * sizeof *nv);
		if (!nv)
			return muse_err_set(x->err, MUSE_ERR_NOMEM, "out of memory");
		x->v = nv;
		x->cap = nc;
	}
	x->v[x->n][0] = a;
	x->v[x->n][1] = b;
	x->n++;
	return MUSE_OK;
}

/*
 * tokenizers' NormalizedString::split: the string cut into alternating
 * non-match/match parts, then shaped by the behavior, empty parts dropped.
 * Parts are emitted into out with `first` on the part starting at 0.
 */
static muse_status split_piece(const pcre2_code *re, int behavior, const char *s, size_t len, bool first, plist *out,
			       spans *sp, muse_err *err)
{
	muse_status st;
	sp->n = 0;
	if ((st = tk_find_all(re, s, len, span_cb, sp, err)))
		return st;
	size_t prev = 0;
	/* cur: the part being built [cur_a, cur_b); open: it may still grow (merge rules) */
	size_t cur_a = 0, cur_b = 0;
	bool have = false, prev_match = false;
#define EMIT()                                                                                     \
	do {                                                                                       \
		if (have && cur_b > cur_a && (st = pl_add(out, s + cur_a, cur_b - cur_a, first && cur_a == 0, err))) \
			return st;                                                                 \
		have = false;                                                                      \
	} while (0)
	for (size_t i = 0; i <= sp->n; i++) {
		size_t ma = i < sp->n ? sp->v[i][0] : len, mb = i < sp->n ? sp->v[i][1] : len;
		/* the non-match before this match */
		if (ma > prev) {
			if (behavior == MUSE_SPLIT_MERGED_NEXT && have && prev_match) {
				cur_b = ma; /* a match waiting for what follows */
			} else {
				EMIT();
				cur_a = prev;
				cur_b = ma;
				have = true;
			}
			prev_match = false;
		}
		if (i == sp->n)
			break;
		if (mb > ma || behavior == MUSE_SPLIT_ISOLATED) {
			switch (behavior) {
			case MUSE_SPLIT_REMOVED:
				EMIT();
				break;
			case MUSE_SPLIT_MERGED_PREV:
				if (have && !prev_match) {
					cur_b = mb;
				} else {
					EMIT();
					cur_a = ma;
					cur_b = mb;
					have = true;
				}
				break;
			case MUSE_SPLIT_CONTIGUOUS:
				if (have && prev_match) {
					cur_b = mb;
				} else {
					EMIT();
					cur_a = ma;
					cur_b = mb;
					have = true;
				}
				break;
			default: /* ISOLATED, MERGED_NEXT */
				EMIT();
				cur_a = ma;
				cur_b = mb;
				have = true;
			}
			prev_match = true;
		}
		prev = mb;
	}
	EMIT();
#undef EMIT
	return MUSE_OK;
}

/* One pre-tokenizer step (re: its compiled pattern) over every piece of in, into out (tmp: scratch). */
static muse_status pre_step(const muse_vocab_pre *pre, const pcre2_code *re, const plist *in, plist *out, plist *tmp,
			    spans *sp, muse_err *err)
{
	muse_status st = MUSE_OK;
	pl_clear(out);
	for (size_t i = 0; i < in->n && !st; i++) {
		const char *s = in->buf + in->p[i].off;
		size_t len = in->p[i].len;
		bool first = in->p[i].first;
		if (pre->kind == MUSE_PRE_SPLIT) {
			st = split_piece(re, pre->behavior, s, len, first, out, sp, err);
		} else if (pre->kind == MUSE_PRE_BYTELEVEL) {
			/* optional prefix space, GPT-2 regex split, then bytes -> code points */
			pl_clear(tmp);
			if ((st = pl_begin(tmp, first, err)))
				break;
			if (pre->add_prefix_space && (!len || s[0] != ' ') && (st = pl_append(tmp, " ", 1, err)))
				break;
			if ((st = pl_append(tmp, s, len, err)))
				break;
			const char *w = tmp->buf;
			size_t wl = tmp->n_buf;
			size_t start = out->n;
			if (re)
				st = split_piece(re, MUSE_SPLIT_ISOLATED, w, wl, first, out, sp, err);
			else if (wl)
				st = pl_add(out, w, wl, first, err);
			if (st)
				break;
			/* Re-emit the new pieces mapped; their raw bytes sit at the arena's end, copied to tmp first. */
			size_t base = start < out->n ? out->p[start].off : out->n_buf;
			pl_clear(tmp);
			if ((st = pl_add(tmp, out->buf + base, out->n_buf - base, false, err)))
				break;
			size_t n_new = out->n - start;
			piece *saved = malloc((n_new ? n_new : 1) * sizeof *saved);
			if (!saved)
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			memcpy(saved, out->p + start, n_new * sizeof *saved);
			out->n = start;
			out->n_buf = base;
			for (size_t k = 0; k < n_new && !st; k++) {
				if ((st = pl_begin(out, saved[k].first, err)))
					break;
				const char *raw = tmp->buf + (saved[k].off - base);
				for (size_t q = 0; q < saved[k].len && !st; q++) {
					size_t cl;
					const char *m = muse_tk_byte_char((uint8_t)raw[q], &cl);
					st = pl_append(out, m, cl, err);
				}
			}
			free(saved);
		} else { /* MUSE_PRE_METASPACE: ' ' -> replacement, prepend by scheme, optional split before each replacement */
			if ((st = pl_begin(out, first, err)))
				break;
			bool starts = (len && s[0] == ' ') || (len >= pre->repl_len && !memcmp(s, pre->repl, pre->repl_len));
			if ((pre->prepend == 1 || (pre->prepend == 2 && first)) && !starts)
				st = pl_append(out, pre->repl, pre->repl_len, err);
			for (size_t q = 0; q < len && !st;) {
				bool is_rep = s[q] == ' ' || (len - q >= pre->repl_len && !memcmp(s + q, pre->repl, pre->repl_len));
				if (is_rep) {
					if (pre->split && out->p[out->n - 1].len && (st = pl_begin(out, false, err)))
						break;
					st = pl_append(out, pre->repl, pre->repl_len, err);
					q += s[q] == ' ' ? 1 : pre->repl_len;
				} else {
					st = pl_append(out, s + q, 1, err);
					q++;
				}
			}
			pl_drop_empty(out);
		}
	}
	return st;
}

/* ------------------------------------------------------------------ added tokens */

static int cmp_added(const void *a, const void *b)
{
	const muse_vocab_added *x = a, *y = b;
	uint8_t cx = (uint8_t)x->text[0], cy = (uint8_t)y->text[0];
	if (cx != cy)
		return cx < cy ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static muse_status tk_added_finish(muse_tokenizer *t, muse_err *err)
{
	/* Empty contents can never match; drop them. */
	size_t w = 0;
	for (size_t i = 0; i < t->n_added; i++) {
		if (t->added[i].len)
			t->added[w++] = t->added[i];
		else
			free(t->added[i].text);
	}
	t->n_added = w;
	if (t->n_added) /* qsort's base must not be NULL, even for no elements */
		qsort(t->added, t->n_added, sizeof *t->added, cmp_added);
	size_t k = 0;
	for (int b = 0; b <= 256; b++) {
		while (b < 256 && k < t->n_added && (uint8_t)t->added[k].text[0] < b)
			k++;
		t->added_start[b] = (uint32_t)(b == 256 ? t->n_added : k);
	}
	(void)err;
	return MUSE_OK;
}

static bool is_word_cp(utf8proc_int32_t c)
{
	utf8proc_category_t k = utf8proc_category(c);
	return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) ||
	       c == '_' || (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME);
}

/* The code point ending just before s[i] (i > 0). */
static utf8proc_int32_t cp_before(const char *s, size_t i)
{
	size_t q = i - 1;
	while (q > 0 && ((uint8_t)s[q] & 0xc0) == 0x80)
		q--;
	utf8proc_int32_t c = -1;
	utf8proc_iterate((const utf8proc_uint8_t *)s + q, (utf8proc_ssize_t)(i - q), &c);
	return c;
}

static utf8proc_int32_t cp_at(const char *s, size_t i, size_t len)
{
	utf8proc_int32_t c = -1;
	utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
	return c;
}

/*
 * Finds the leftmost-longest added token in s[from..len) that this phase
 * may match (normalized tokens on normalized text, the others on raw text;
 * special ones only when parse_special). On a hit sets the token index and
 * the span to cut, widened by lstrip/rstrip whitespace.
 */
static bool find_added(const muse_tokenizer *t, const char *s, size_t from, size_t len, bool normalized_phase,
		       bool parse_special, size_t *tok, size_t *cut_a, size_t *cut_b)
{
	for (size_t i = from; i < len; i++) {
		uint8_t c = (uint8_t)s[i];
		uint32_t lo = t->added_start[c], hi = t->added_start[c + 1];
		size_t best = SIZE_MAX;
		for (uint32_t k = lo; k < hi; k++) {
			const muse_vocab_added *a = &t->added[k];
			if (a->normalized != normalized_phase || (a->special && !parse_special) || a->len > len - i ||
			    memcmp(s + i, a->text, a->len))
				continue;
			if (a->single_word && ((i > 0 && is_word_cp(cp_before(s, i))) ||
					       (i + a->len < len && is_word_cp(cp_at(s, i + a->len, len)))))
				continue;
			if (best == SIZE_MAX || a->len > t->added[best].len)
				best = k;
		}
		if (best == SIZE_MAX)
			continue;
		const muse_vocab_added *a = &t->added[best];
		size_t ca = i, cb = i + a->len;
		if (a->lstrip)
			while (ca > from) {
				size_t q = ca - 1;
				while (q > from && ((uint8_t)s[q] & 0xc0) == 0x80)
					q--;
				if (!is_ws(cp_at(s, q, len)))
					break;
				ca = q;
			}
		if (a->rstrip)
			while (cb < len) {
				utf8proc_int32_t cp;
				utf8proc_ssize_t k2 = utf8proc_iterate((const utf8proc_uint8_t *)s + cb, (utf8proc_ssize_t)(len - cb), &cp);
				if (k2 <= 0 || !is_ws(cp))
					break;
				cb += (size_t)k2;
			}
		*tok = best;
		*cut_a = ca;
		*cut_b = cb;
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------ encode */

/*
 * Per-call cache of word -> ids for the BPE model: natural text repeats its
 * words, and a lookup is far cheaper than a merge loop (tokenizers keeps a
 * cache for the same reason). Keys live in stable blocks (the map borrows
 * them); the cache stops growing at WC_MAX entries.
 */
#define WC_MAX_WORD 256
#define WC_MAX (1u << 18)
#define WC_BLOCK (1u << 16)
typedef struct wcache {
	muse_strmap map;
	char **blocks;
	size_t n_blocks, used;
	uint32_t (*ent)[2]; /* (first index in ids, count) */
	size_t n_ent, cap_ent;
	tk_ids ids;
} wcache;

static void wc_free(wcache *c)
{
	muse_strmap_free(&c->map);
	for (size_t i = 0; i < c->n_blocks; i++)
		free(c->blocks[i]);
	free(c->blocks);
	free(c->ent);
	free(c->ids.v);
}

/* Remembers w -> ids[from..from+n); failures only mean the word is not cached. */
static void wc_put(wcache *c, const char *w, size_t len, const int32_t *ids, size_t n)
{
	if (c->n_ent >= WC_MAX || len > WC_MAX_WORD || n > WC_MAX_WORD)
		return;
	if (!c->n_blocks || c->used + len > WC_BLOCK) {
		char **nb = realloc(c->blocks, (c->n_blocks + 1) * sizeof *nb);
		if (!nb)
			return;
		c->blocks = nb;
		if (!(c->blocks[c->n_blocks] = malloc(WC_BLOCK)))
			return;
		c->n_blocks++;
		c->used = 0;
	}
	if (c->n_ent == c->cap_ent) {
		size_t nc = c->cap_ent ? c->cap_ent * 2 : 1024;
		uint32_t (*ne)[2] = realloc(c->ent, nc * sizeof *ne);
		if (!ne)
			return;
		c->ent = ne;
		c->cap_ent = nc;
	}
	size_t first = c->ids.n;
	for (size_t i = 0; i < n; i++)
		if (muse_tk_ids_push(&c->ids, ids[i], NULL)) {
			c->ids.n = first;
			return;
		}
	char *key = c->blocks[c->n_blocks - 1] + c->used;
	memcpy(key, w, len);
	if (muse_strmap_put(&c->map, key, len, c->n_ent, NULL) != 1) {
		c->ids.n = first;
		return;
	}
	c->used += len;
	c->ent[c->n_ent][0] = (uint32_t)first;
	c->ent[c->n_ent][1] = (uint32_t)n;
	c->n_ent++;
}

typedef struct enc {
	const muse_tokenizer *t;
	bool parse_special;
	tk_ids *out;
	plist a, b, nrm, tmp, scratch;
	spans sp;
	wcache wc;
	bool prev_special; /* SPM: the previous fragment was a token (llama.cpp's is_prev_special) */
	muse_err *err;
} enc;

/* Pre-tokenizes and runs the model over one normalized text piece (BPE kind). */
static muse_status bpe_text(enc *e, const char *s, size_t len, bool first)
{
	const muse_tokenizer *t = e->t;
	muse_status st;
	pl_clear(&e->a);
	if ((st = pl_add(&e->a, s, len, first, e->err)))
		return st;
	plist *in = &e->a, *out = &e->b;
	for (size_t k = 0; k < t->n_pre; k++) {
		if ((st = pre_step(&t->pre[k], t->pre_re[k], in, out, &e->scratch, &e->sp, e->err)))
			return st;
		plist *x = in;
		in = out;
		out = x;
	}
	for (size_t i = 0; i < in->n; i++) {
		const char *w = in->buf + in->p[i].off;
		size_t wl = in->p[i].len, v;
		if (wl <= WC_MAX_WORD && muse_strmap_get(&e->wc.map, w, wl, &v)) {
			for (uint32_t k = 0; k < e->wc.ent[v][1]; k++)
				if ((st = muse_tk_ids_push(e->out, e->wc.ids.v[e->wc.ent[v][0] + k], e->err)))
					return st;
			continue;
		}
		size_t before = e->out->n;
		if ((st = muse_tk_bpe_word(t, w, wl, e->out, e->err)))
			return st;
		wc_put(&e->wc, w, wl, e->out->v + before, e->out->n - before);
	}
	return MUSE_OK;
}

/* A raw text segment: normalize, split normalized added tokens, then the model. */
static muse_status text_segment(enc *e, const char *s, size_t len, bool first)
{
	const muse_tokenizer *t = e->t;
	muse_status st;
	if (t->model == MUSE_VOCAB_SPM) {
		/* llama.cpp: a space before the fragment when it starts the text or follows a token, then ' ' -> U+2581 */
		pl_clear(&e->nrm);
		if ((st = pl_begin(&e->nrm, first, e->err)))
			return st;
		if (t->add_space_prefix && e->prev_special && (st = pl_append(&e->nrm, "\xe2\x96\x81", 3, e->err)))
			return st;
		for (size_t i = 0; i < len && !st; i++)
			st = s[i] == ' ' ? pl_append(&e->nrm, "\xe2\x96\x81", 3, e->err) : pl_append(&e->nrm, s + i, 1, e->err);
		e->prev_special = false;
		return st ? st : muse_tk_spm_text(t, e->nrm.buf, e->nrm.n_buf, e->out, e->err);
	}
	pl_clear(&e->nrm);
	if ((st = normalize(t, s, len, first, &e->nrm, &e->tmp, e->err)))
		return st;
	const char *n = e->nrm.buf + e->nrm.p[0].off;
	size_t nl = e->nrm.p[0].len;
	/* Copy: bpe_text reuses the arenas. */
	char *copy = malloc(nl ? nl : 1);
	if (!copy)
		return muse_err_set(e->err, MUSE_ERR_NOMEM, "out of memory");
	memcpy(copy, n, nl);
	size_t pos = 0, k, ca, cb;
	while (!st && find_added(t, copy, pos, nl, true, e->parse_special, &k, &ca, &cb)) {
		if (ca > pos)
			st = bpe_text(e, copy + pos, ca - pos, first && pos == 0);
		if (!st)
			st = muse_tk_ids_push(e->out, t->added[k].id, e->err);
		pos = cb;
	}
	if (!st && pos < nl)
		st = bpe_text(e, copy + pos, nl - pos, first && pos == 0);
	free(copy);
	return st;
}

muse_status muse_tokenizer_encode(const muse_tokenizer *t, const char *text, size_t len, bool add_special,
				  bool parse_special, int32_t **ids, size_t *n_ids, muse_err *err)
{
	*ids = NULL;
	*n_ids = 0;
	if (!muse_utf8_valid(text, len)) {
		/* One linear scan for where the first bad sequence starts. */
		size_t bad = 0;
		while (bad < len) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + bad, (utf8proc_ssize_t)(len - bad), &cp);
			if (k <= 0)
				break;
			bad += (size_t)k;
		}
		return muse_err_set(err, MUSE_ERR_FORMAT, "byte %zu: invalid UTF-8", bad < len ? bad : 0);
	}
	enc e = { .t = t, .parse_special = parse_special, .sp = { .err = err }, .prev_special = true, .err = err };
	muse_strmap_init(&e.wc.map);
	tk_ids out = { 0 };
	e.out = &out;
	muse_status st = MUSE_OK;
	if (add_special)
		for (int i = 0; i < t->n_prefix && !st; i++)
			st = muse_tk_ids_push(&out, t->prefix[i], err);
	size_t pos = 0, k, ca, cb;
	while (!st && find_added(t, text, pos, len, false, parse_special, &k, &ca, &cb)) {
		if (ca > pos)
			st = text_segment(&e, text + pos, ca - pos, pos == 0);
		if (!st)
			st = muse_tk_ids_push(&out, t->added[k].id, err);
		e.prev_special = true;
		pos = cb;
	}
	if (!st && pos < len)
		st = text_segment(&e, text + pos, len - pos, pos == 0);
	if (add_special)
		for (int i = 0; i < t->n_suffix && !st; i++)
			st = muse_tk_ids_push(&out, t->suffix[i], err);
	pl_free(&e.a);
	pl_free(&e.b);
	pl_free(&e.nrm);
	pl_free(&e.tmp);
	pl_free(&e.scratch);
	free(e.sp.v);
	wc_free(&e.wc);
	if (st) {
		free(out.v);
		return st;
	}
	*ids = out.v ? out.v : malloc(sizeof(int32_t));
	if (!*ids)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	*n_ids = out.n;
	return MUSE_OK;
}

/* ------------------------------------------------------------------ building */

/* A refusal the reading left (MUSE_OK: none) becomes this build's error. */
static muse_status refused(const muse_err *ref, muse_err *err)
{
	if (ref->code && err)
		*err = *ref;
	return ref->code;
}

/* The merges as (left id, right id) -> (rank, merged id); see muse_vocab.llama_merges for the two readings. */
static muse_status build_merges(muse_tokenizer *t, const muse_vocab *v, muse_err *err)
{
	muse_status s;
	if ((s = tk_merges_alloc(t, v->n_merges, err)))
		return s;
	for (size_t i = 0; i < v->n_merges; i++) {
		const muse_vocab_merge *m = &v->merges[i];
		if (!v->llama_merges) {
			if ((s = tk_merge(t, m->a, m->la, m->b, m->lb, i, false, v->source, err)))
				return s;
			continue;
		}
		muse_err ignore = { 0 };
		if (m->b && tk_merge(t, m->a, m->la, m->b, m->lb, i, true, v->source, &ignore) == MUSE_ERR_NOMEM)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	return refused(&v->merges_refusal, err);
}

/* The normalizer and pre-tokenizer steps move in with their regexes compiled, each section's refusal after its steps. */
static muse_status build_pipeline(muse_tokenizer *t, muse_vocab *v, muse_err *err)
{
	t->norm = v->norm;
	t->n_norm = v->n_norm;
	t->pre = v->pre_steps;
	t->n_pre = v->n_pre_steps;
	v->norm = NULL;
	v->n_norm = 0;
	v->pre_steps = NULL;
	v->n_pre_steps = 0;
	t->norm_re = calloc(t->n_norm ? t->n_norm : 1, sizeof *t->norm_re);
	t->pre_re = calloc(t->n_pre ? t->n_pre : 1, sizeof *t->pre_re);
	if (!t->norm_re || !t->pre_re)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < t->n_norm; i++) {
		const muse_vocab_norm *d = &t->norm[i];
		if (d->pattern && !(t->norm_re[i] = tk_regex(d->pattern, d->pattern_len, d->literal, v->source, err)))
			return err->code;
	}
	muse_status s = refused(&v->norm_refusal, err);
	for (size_t i = 0; i < t->n_pre && !s; i++) {
		const muse_vocab_pre *d = &t->pre[i];
		if (d->pattern && !(t->pre_re[i] = tk_regex(d->pattern, d->pattern_len, d->literal, v->source, err)))
			return err->code;
	}
	return s ? s : refused(&v->pre_refusal, err);
}

/* An id by name: among the added tokens first, then the model's vocabulary (-1: neither). */
static int32_t lookup_special(const muse_tokenizer *t, const char *name)
{
	for (size_t i = 0; i < t->n_added; i++)
		if (!strcmp(t->added[i].text, name))
			return t->added[i].id;
	return tk_lookup(t, name);
}

static muse_status build(muse_tokenizer *t, muse_vocab *v, muse_err *err)
{
	muse_status s;
	const char *src = v->source;
	/* The vocabulary moves into the tokenizer. */
	t->model = v->model;
	t->n_vocab = v->n;
	t->text = v->text;
	t->len = v->len;
	t->scores = v->scores;
	v->text = NULL;
	v->len = NULL;
	v->scores = NULL;
	/* Only the model's vocabulary is looked up by the model (added tokens are matched before it). */
	if ((s = tk_index(t, err)))
		return s;
	/* Added tokens move in; they fill only the ids the vocabulary leaves empty. */
	t->added = v->added;
	t->n_added = v->n_added;
	v->added = NULL;
	v->n_added = 0;
	for (size_t i = 0; i < t->n_added; i++) {
		const muse_vocab_added *a = &t->added[i];
		if (!t->len[a->id] && (s = tk_set_text(t, (size_t)a->id, a->text, a->len, err)))
			return s;
	}
	if ((s = tk_added_finish(t, err)) || (s = build_merges(t, v, err)))
		return s;
	t->byte_fallback = v->byte_fallback;
	t->fuse_unk = v->fuse_unk;
	t->ignore_merges = v->ignore_merges;
	t->unk = v->unk;
	if (v->unk_text && (t->unk = tk_lookup(t, v->unk_text)) < 0)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.unk_token '%.100s' is not a token", src, v->unk_text);
	if ((s = build_pipeline(t, v, err)) || (s = refused(&v->post_refusal, err)))
		return s;
	memcpy(t->prefix, v->prefix, sizeof t->prefix);
	memcpy(t->suffix, v->suffix, sizeof t->suffix);
	t->n_prefix = v->n_prefix;
	t->n_suffix = v->n_suffix;
	for (int i = 0; i < t->n_prefix; i++)
		if ((size_t)t->prefix[i] >= t->n_vocab)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: post_processor id %d outside the vocabulary", src, t->prefix[i]);
	for (int i = 0; i < t->n_suffix; i++)
		if ((size_t)t->suffix[i] >= t->n_vocab)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: post_processor id %d outside the vocabulary", src, t->suffix[i]);
	t->bos = v->bos_text ? lookup_special(t, v->bos_text) : v->bos;
	t->eos = v->eos_text ? lookup_special(t, v->eos_text) : v->eos;
	t->add_space_prefix = v->spm_space_prefix;
	return MUSE_OK;
}

muse_status muse_tokenizer_create(muse_vocab *v, muse_tokenizer **out, muse_err *err)
{
	*out = NULL;
	muse_tokenizer *t = tk_new();
	muse_status s = t ? build(t, v, err) : muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	muse_vocab_free(v);
	if (s) {
		muse_tokenizer_free(t);
		return s;
	}
	*out = t;
	return MUSE_OK;
}

muse_status muse_tokenizer_from_meta(const muse_meta *meta, const char *path, muse_tokenizer **out, muse_err *err)
{
	muse_vocab *v = NULL;
	*out = NULL;
	muse_status s = muse_vocab_from_meta(meta, path, &v, err);
	return s ? s : muse_tokenizer_create(v, out, err);
}

muse_status muse_tokenizer_from_dir(const char *dir, muse_tokenizer **out, muse_err *err)
{
	muse_vocab *v = NULL;
	*out = NULL;
	muse_status s = muse_vocab_from_dir(dir, &v, err);
	return s ? s : muse_tokenizer_create(v, out, err);
}
