/* tokenizer.c: text -> ids as HF `tokenizers` does for tokenizer.json (added tokens, normalizers, pre-tokenizers with PCRE2, BPE) and as llama.cpp does for GGUF vocabularies and SentencePiece models. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "../formats/spm.h"
#include "../formats/tokenizer_gguf.h"
#include "../lib/utf8.h"
#include "tokenizer_impl.h"

#define TK_MAX_VOCAB (1u << 24)
#define META_SOURCE "GGUF tokenizer metadata"

/* HF ByteLevel's own split regex (GPT-2's, with the trailing \s+ tokenizers adds). */
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

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
		free(t->norm[i].a);
		pcre2_code_free(t->norm[i].re);
	}
	free(t->norm);
	for (size_t i = 0; i < t->n_pre; i++)
		pcre2_code_free(t->pre[i].re);
	free(t->pre);
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

/* Sizes the vocabulary: n entries, all holes (""). */
static muse_status tk_vocab_alloc(muse_tokenizer *t, size_t n, const char *src, muse_err *err)
{
	if (n == 0 || n > TK_MAX_VOCAB)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: vocabulary size %zu outside 1..%u", src, n, TK_MAX_VOCAB);
	t->n_vocab = n;
	t->text = calloc(n, sizeof *t->text);
	t->len = calloc(n, sizeof *t->len);
	if (!t->text || !t->len)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return MUSE_OK;
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
	t->len[id] = (uint32_t)len;
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
	const tk_norm *nm;
	muse_err *err;
} repl_ctx;

static muse_status repl_cb(void *c, size_t a, size_t b)
{
	repl_ctx *r = c;
	muse_status st = pl_append(r->out, r->s + r->prev, a - r->prev, r->err);
	if (!st)
		st = pl_append(r->out, r->nm->a, r->nm->a_len, r->err);
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
		const tk_norm *nm = &t->norm[k];
		piece cur = out->p[out->n - 1];
		pl_clear(tmp);
		if ((st = pl_begin(tmp, first, err)))
			return st;
		const char *c = out->buf + cur.off;
		switch (nm->kind) {
		case NM_NFC: case NM_NFD: case NM_NFKC: case NM_NFKD: {
			int opt = UTF8PROC_STABLE | (nm->kind == NM_NFC || nm->kind == NM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
				  (nm->kind == NM_NFKC || nm->kind == NM_NFKD ? UTF8PROC_COMPAT : 0);
			utf8proc_uint8_t *dst = NULL;
			utf8proc_ssize_t n = cur.len ? utf8proc_map((const utf8proc_uint8_t *)c, (utf8proc_ssize_t)cur.len, &dst,
								  (utf8proc_option_t)opt) : 0;
			if (n < 0)
				return muse_err_set(err, MUSE_ERR_FORMAT, "tokenizer: normalization failed: %s", utf8proc_errmsg(n));
			st = pl_append(tmp, (const char *)dst, (size_t)n, err);
			free(dst);
			break;
		}
		case NM_LOWERCASE:
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
		case NM_PREPEND:
			if (cur.len)
				st = pl_append(tmp, nm->a, nm->a_len, err);
			if (!st)
				st = pl_append(tmp, c, cur.len, err);
			break;
		case NM_REPLACE: {
			repl_ctx r = { tmp, c, 0, nm, err };
			st = tk_find_all(nm->re, c, cur.len, repl_cb, &r, err);
			if (!st)
				st = pl_append(tmp, c + r.prev, cur.len - r.prev, err);
			break;
		}
		case NM_STRIP: {
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
			if (behavior == SB_MERGED_NEXT && have && prev_match) {
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
		if (mb > ma || behavior == SB_ISOLATED) {
			switch (behavior) {
			case SB_REMOVED:
				EMIT();
				break;
			case SB_MERGED_PREV:
				if (have && !prev_match) {
					cur_b = mb;
				} else {
					EMIT();
					cur_a = ma;
					cur_b = mb;
					have = true;
				}
				break;
			case SB_CONTIGUOUS:
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

/* One pre-tokenizer step over every piece of in, into out (tmp: scratch). */
static muse_status pre_step(const tk_pre *pre, const plist *in, plist *out, plist *tmp, spans *sp, muse_err *err)
{
	muse_status st = MUSE_OK;
	pl_clear(out);
	for (size_t i = 0; i < in->n && !st; i++) {
		const char *s = in->buf + in->p[i].off;
		size_t len = in->p[i].len;
		bool first = in->p[i].first;
		if (pre->kind == PT_SPLIT) {
			st = split_piece(pre->re, pre->behavior, s, len, first, out, sp, err);
		} else if (pre->kind == PT_BYTELEVEL) {
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
			if (pre->re)
				st = split_piece(pre->re, SB_ISOLATED, w, wl, first, out, sp, err);
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
		} else { /* PT_METASPACE: ' ' -> replacement, prepend by scheme, optional split before each replacement */
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
	const tk_added *x = a, *y = b;
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

static muse_status tk_added_push(muse_tokenizer *t, const char *s, size_t len, int32_t id, bool special, muse_err *err)
{
	tk_added *na = realloc(t->added, (t->n_added + 1) * sizeof *na);
	if (!na)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	t->added = na;
	tk_added *a = &t->added[t->n_added];
	memset(a, 0, sizeof *a);
	if (!(a->text = malloc(len + 1)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	memcpy(a->text, s, len);
	a->text[len] = '\0';
	a->len = len;
	a->id = id;
	a->special = special;
	t->n_added++;
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
			const tk_added *a = &t->added[k];
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
		const tk_added *a = &t->added[best];
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
		if ((st = pre_step(&t->pre[k], in, out, &e->scratch, &e->sp, e->err)))
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
	if (t->model == TK_SPM) {
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

/* ------------------------------------------------------------------ loading: tokenizer.json */

static int jtype(json_t *o, const char *t)
{
	json_t *v = json_object_get(o, "type");
	return json_is_string(v) && !strcmp(json_string_value(v), t);
}

static muse_status add_norm(muse_tokenizer *t, tk_norm nm, muse_err *err)
{
	tk_norm *nn = realloc(t->norm, (t->n_norm + 1) * sizeof *nn);
	if (!nn) {
		free(nm.a);
		pcre2_code_free(nm.re);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	t->norm = nn;
	t->norm[t->n_norm++] = nm;
	return MUSE_OK;
}

static muse_status add_pre(muse_tokenizer *t, tk_pre p, muse_err *err)
{
	tk_pre *np = realloc(t->pre, (t->n_pre + 1) * sizeof *np);
	if (!np) {
		pcre2_code_free(p.re);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	t->pre = np;
	t->pre[t->n_pre++] = p;
	return MUSE_OK;
}

/* JSON_ENCODE_ANY: a bare string or number is what most unsupported values are (without it: NULL). */
static char *jdump(json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static muse_status unsupported(const char *path, const char *what, json_t *j, muse_err *err)
{
	char *d = jdump(j);
	muse_status s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: %s not supported: %.200s", path, what, d ? d : "?");
	free(d);
	return s;
}

/* A {"String": s} or {"Regex": r} pattern compiled for PCRE2. */
static pcre2_code *pattern(json_t *p, const char *path, muse_err *err)
{
	json_t *str = json_object_get(p, "String"), *rx = json_object_get(p, "Regex");
	if (json_is_string(str))
		return tk_regex(json_string_value(str), json_string_length(str), true, path, err);
	if (json_is_string(rx))
		return tk_regex(json_string_value(rx), json_string_length(rx), false, path, err);
	unsupported(path, "pattern", p, err);
	return NULL;
}

typedef muse_status (*tk_load_fn)(muse_tokenizer *t, json_t *j, const char *path, int depth, muse_err *err);

/* A normalizer or pre_tokenizer {"type": "Sequence", key: [...]}: each element through load, one level deeper. */
static muse_status load_sequence(muse_tokenizer *t, json_t *j, const char *key, const char *what, tk_load_fn load, const char *path, int depth, muse_err *err)
{
	json_t *arr = json_object_get(j, key);
	if (!json_is_array(arr))
		return unsupported(path, what, j, err);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		muse_status s = load(t, json_array_get(arr, i), path, depth + 1, err);
		if (s)
			return s;
	}
	return MUSE_OK;
}

static muse_status load_normalizer(muse_tokenizer *t, json_t *n, const char *path, int depth, muse_err *err)
{
	tk_norm nm = { 0 };
	if (!n || json_is_null(n))
		return MUSE_OK;
	if (depth > 8)
		return unsupported(path, "normalizer nesting", n, err);
	if (jtype(n, "Sequence"))
		return load_sequence(t, n, "normalizers", "normalizer", load_normalizer, path, depth, err);
	if (jtype(n, "NFC"))
		nm.kind = NM_NFC;
	else if (jtype(n, "NFD"))
		nm.kind = NM_NFD;
	else if (jtype(n, "NFKC"))
		nm.kind = NM_NFKC;
	else if (jtype(n, "NFKD"))
		nm.kind = NM_NFKD;
	else if (jtype(n, "Lowercase"))
		nm.kind = NM_LOWERCASE;
	else if (jtype(n, "Prepend") && json_is_string(json_object_get(n, "prepend"))) {
		nm.kind = NM_PREPEND;
		nm.a_len = json_string_length(json_object_get(n, "prepend"));
		if (!(nm.a = strdup(json_string_value(json_object_get(n, "prepend")))))
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	} else if (jtype(n, "Replace") && json_is_string(json_object_get(n, "content"))) {
		nm.kind = NM_REPLACE;
		if (!(nm.re = pattern(json_object_get(n, "pattern"), path, err)))
			return err->code;
		nm.a_len = json_string_length(json_object_get(n, "content"));
		if (!(nm.a = strdup(json_string_value(json_object_get(n, "content"))))) {
			pcre2_code_free(nm.re);
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		}
	} else if (jtype(n, "Strip")) {
		nm.kind = NM_STRIP;
		nm.left = json_is_true(json_object_get(n, "strip_left"));
		nm.right = json_is_true(json_object_get(n, "strip_right"));
	} else {
		return unsupported(path, "normalizer", n, err);
	}
	return add_norm(t, nm, err);
}

static muse_status load_pre(muse_tokenizer *t, json_t *p, const char *path, int depth, muse_err *err)
{
	tk_pre pr = { 0 };
	if (!p || json_is_null(p))
		return MUSE_OK;
	if (depth > 8)
		return unsupported(path, "pre_tokenizer nesting", p, err);
	if (jtype(p, "Sequence"))
		return load_sequence(t, p, "pretokenizers", "pre_tokenizer", load_pre, path, depth, err);
	if (jtype(p, "Split")) {
		static const char *const beh[] = { "", "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
		json_t *b = json_object_get(p, "behavior");
		pr.kind = PT_SPLIT;
		for (int i = 1; i <= 5; i++)
			if (json_is_string(b) && !strcmp(json_string_value(b), beh[i]))
				pr.behavior = i;
		if (!pr.behavior || json_is_true(json_object_get(p, "invert")))
			return unsupported(path, "Split behavior/invert", p, err);
		if (!(pr.re = pattern(json_object_get(p, "pattern"), path, err)))
			return err->code;
	} else if (jtype(p, "Digits")) {
		int ind = json_is_true(json_object_get(p, "individual_digits"));
		pr.kind = PT_SPLIT;
		pr.behavior = ind ? SB_ISOLATED : SB_CONTIGUOUS;
		if (!(pr.re = tk_regex("\\p{N}", 5, false, path, err)))
			return err->code;
	} else if (jtype(p, "ByteLevel")) {
		json_t *ur = json_object_get(p, "use_regex");
		pr.kind = PT_BYTELEVEL;
		pr.add_prefix_space = json_is_true(json_object_get(p, "add_prefix_space"));
		t->byte_level = true;
		if ((!ur || json_is_true(ur)) && !(pr.re = tk_regex(GPT2_REGEX, strlen(GPT2_REGEX), false, path, err)))
			return err->code;
	} else if (jtype(p, "Metaspace")) {
		json_t *r = json_object_get(p, "replacement"), *ps = json_object_get(p, "prepend_scheme");
		json_t *sp = json_object_get(p, "split");
		pr.kind = PT_METASPACE;
		const char *rep = json_is_string(r) ? json_string_value(r) : "\xe2\x96\x81";
		pr.repl_len = strlen(rep);
		if (!pr.repl_len || pr.repl_len >= sizeof pr.repl)
			return unsupported(path, "Metaspace replacement", p, err);
		memcpy(pr.repl, rep, pr.repl_len);
		pr.split = !sp || json_is_true(sp);
		if (json_is_string(ps)) {
			const char *v = json_string_value(ps);
			pr.prepend = !strcmp(v, "always") ? 1 : !strcmp(v, "first") ? 2 : !strcmp(v, "never") ? 0 : -1;
			if (pr.prepend < 0)
				return unsupported(path, "Metaspace prepend_scheme", p, err);
		} else {
			/* older files: add_prefix_space */
			json_t *aps = json_object_get(p, "add_prefix_space");
			pr.prepend = !aps || json_is_true(aps) ? 1 : 0;
		}
	} else {
		return unsupported(path, "pre_tokenizer", p, err);
	}
	return add_pre(t, pr, err);
}

/* The ids a TemplateProcessing special token stands for. */
static muse_status tmpl_ids(json_t *proc, const char *name, int32_t *dst, int *n, const char *path, muse_err *err)
{
	json_t *ids = json_object_get(json_object_get(json_object_get(proc, "special_tokens"), name), "ids");
	if (!json_is_array(ids))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: post_processor: special token '%.100s' has no ids", path, name);
	for (size_t i = 0; i < json_array_size(ids); i++) {
		json_t *v = json_array_get(ids, i);
		if (*n >= 4 || !json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TK_MAX_VOCAB)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: post_processor: bad ids for '%.100s'", path, name);
		dst[(*n)++] = (int32_t)json_integer_value(v);
	}
	return MUSE_OK;
}

static muse_status load_post(muse_tokenizer *t, json_t *p, const char *path, int depth, muse_err *err)
{
	muse_status s;
	if (!p || json_is_null(p) || jtype(p, "ByteLevel"))
		return MUSE_OK;
	if (depth > 8)
		return unsupported(path, "post_processor nesting", p, err);
	if (jtype(p, "Sequence")) {
		json_t *arr = json_object_get(p, "processors");
		for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++)
			if ((s = load_post(t, json_array_get(arr, i), path, depth + 1, err)))
				return s;
		return MUSE_OK;
	}
	if (jtype(p, "TemplateProcessing")) {
		json_t *single = json_object_get(p, "single");
		bool seen_a = false;
		for (size_t i = 0; json_is_array(single) && i < json_array_size(single); i++) {
			json_t *it = json_array_get(single, i);
			json_t *sp = json_object_get(json_object_get(it, "SpecialToken"), "id");
			if (json_object_get(it, "Sequence")) {
				seen_a = true;
			} else if (json_is_string(sp)) {
				if ((s = seen_a ? tmpl_ids(p, json_string_value(sp), t->suffix, &t->n_suffix, path, err)
						: tmpl_ids(p, json_string_value(sp), t->prefix, &t->n_prefix, path, err)))
					return s;
			} else {
				return unsupported(path, "TemplateProcessing item", it, err);
			}
		}
		return MUSE_OK;
	}
	if (jtype(p, "BertProcessing") || jtype(p, "RobertaProcessing")) {
		json_t *cls = json_array_get(json_object_get(p, "cls"), 1), *sep = json_array_get(json_object_get(p, "sep"), 1);
		if (!json_is_integer(cls) || !json_is_integer(sep) || t->n_prefix >= 4 || t->n_suffix >= 4)
			return unsupported(path, "post_processor", p, err);
		t->prefix[t->n_prefix++] = (int32_t)json_integer_value(cls);
		t->suffix[t->n_suffix++] = (int32_t)json_integer_value(sep);
		return MUSE_OK;
	}
	return unsupported(path, "post_processor", p, err);
}

static const char *tc_content(json_t *e)
{
	if (json_is_string(e))
		return json_string_value(e);
	json_t *c = json_object_get(e, "content");
	return json_is_string(c) ? json_string_value(c) : NULL;
}

static json_t *load_json_file(const char *path, size_t flags, muse_status *s, muse_err *err)
{
	json_error_t je;
	*s = MUSE_OK;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES | flags, &je);
	if (!j) {
		*s = muse_err_at(err, MUSE_ERR_FORMAT, path, (uint64_t)(je.position > 0 ? je.position : 0), "%s", je.text);
	} else if (!json_is_object(j)) {
		*s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: not a JSON object", path);
		json_decref(j);
		j = NULL;
	}
	return j;
}

static muse_status from_hf_json(muse_tokenizer *t, json_t *tok, json_t *tcfg, const char *path, muse_err *err)
{
	muse_status s;
	json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab");
	json_t *at = json_object_get(tok, "added_tokens"), *ty = json_object_get(model, "type");
	if (!jtype(model, "BPE") && !(json_is_object(model) && !ty && json_object_get(model, "merges")))
		/* name the type (WordPiece, Unigram, WordLevel) and what would work instead */
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer model type '%.40s' is not supported (muse "
				    "encodes BPE: tokenizer.json with model type BPE, a SentencePiece BPE tokenizer.model, "
				    "GGUF tokenizer.ggml.model gpt2 or llama)", path,
				    json_is_string(ty) ? json_string_value(ty) : ty ? "(not a string)" : "(none)");
	if (!json_is_object(vocab))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.vocab is not an object", path);
	static const char *const nulls[] = { "continuing_subword_prefix", "end_of_word_suffix" };
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(model, nulls[i]);
		if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)))
			return unsupported(path, nulls[i], v, err);
	}
	json_t *dropout = json_object_get(model, "dropout");
	if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
		return unsupported(path, "BPE dropout", dropout, err);
	t->model = TK_BPE;
	size_t n = 0;
	const char *key;
	json_t *val;
	json_object_foreach(vocab, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= TK_MAX_VOCAB)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: token '%.100s': id not in 0..%u", path, key, TK_MAX_VOCAB - 1);
		if ((size_t)json_integer_value(val) + 1 > n)
			n = (size_t)json_integer_value(val) + 1;
	}
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
		if (!json_is_integer(id) || !json_is_string(c) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= TK_MAX_VOCAB)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: added_tokens[%zu]: bad id or content", path, i);
		if ((size_t)json_integer_value(id) + 1 > n)
			n = (size_t)json_integer_value(id) + 1;
	}
	if ((s = tk_vocab_alloc(t, n, path, err)))
		return s;
	json_object_foreach(vocab, key, val) {
		size_t id = (size_t)json_integer_value(val);
		if (t->text[id])
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokens '%.100s' and '%.100s' share id %zu", path,
					    t->text[id], key, id);
		if ((s = tk_set_text(t, id, key, strlen(key), err)))
			return s;
	}
	/* Only the model's vocabulary is looked up by the model (added tokens are matched before it). */
	if ((s = tk_index(t, err)))
		return s;
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i);
		size_t id = (size_t)json_integer_value(json_object_get(a, "id"));
		json_t *c = json_object_get(a, "content");
		if (!t->len[id] && (s = tk_set_text(t, id, json_string_value(c), json_string_length(c), err)))
			return s;
		if ((s = tk_added_push(t, json_string_value(c), json_string_length(c), (int32_t)id,
				       json_is_true(json_object_get(a, "special")), err)))
			return s;
		tk_added *ad = &t->added[t->n_added - 1];
		ad->lstrip = json_is_true(json_object_get(a, "lstrip"));
		ad->rstrip = json_is_true(json_object_get(a, "rstrip"));
		ad->single_word = json_is_true(json_object_get(a, "single_word"));
		ad->normalized = json_is_true(json_object_get(a, "normalized"));
	}
	if ((s = tk_added_finish(t, err)))
		return s;
	json_t *merges = json_object_get(model, "merges");
	size_t nm = json_is_array(merges) ? json_array_size(merges) : 0;
	if ((s = tk_merges_alloc(t, nm, err)))
		return s;
	for (size_t i = 0; i < nm; i++) {
		json_t *m = json_array_get(merges, i);
		if (json_is_string(m)) {
			/* tokenizers splits "a b" on ' ' and wants exactly two parts */
			const char *ms = json_string_value(m), *sp = strchr(ms, ' ');
			if (!sp || strchr(sp + 1, ' '))
				return muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is not 'a b'", path, i);
			s = tk_merge(t, ms, (size_t)(sp - ms), sp + 1, strlen(sp + 1), i, false, path, err);
		} else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
			   json_is_string(json_array_get(m, 1))) {
			json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
			s = tk_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
				     json_string_length(b), i, false, path, err);
		} else {
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is malformed", path, i);
		}
		if (s)
			return s;
	}
	t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
	t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
	t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
	json_t *unk = json_object_get(model, "unk_token");
	if (json_is_string(unk)) {
		t->unk = tk_lookup(t, json_string_value(unk));
		if (t->unk < 0)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.unk_token '%.100s' is not a token", path,
					    json_string_value(unk));
	}
	if ((s = load_normalizer(t, json_object_get(tok, "normalizer"), path, 0, err)) ||
	    (s = load_pre(t, json_object_get(tok, "pre_tokenizer"), path, 0, err)) ||
	    (s = load_post(t, json_object_get(tok, "post_processor"), path, 0, err)))
		return s;
	for (int i = 0; i < t->n_prefix; i++)
		if ((size_t)t->prefix[i] >= t->n_vocab)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: post_processor id %d outside the vocabulary", path, t->prefix[i]);
	for (int i = 0; i < t->n_suffix; i++)
		if ((size_t)t->suffix[i] >= t->n_vocab)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: post_processor id %d outside the vocabulary", path, t->suffix[i]);
	/* bos/eos for callers: tokenizer_config's, looked up among added tokens, then the vocabulary. */
	const char *names[2] = { tc_content(json_object_get(tcfg, "bos_token")), tc_content(json_object_get(tcfg, "eos_token")) };
	int32_t *dst[2] = { &t->bos, &t->eos };
	for (int k = 0; k < 2; k++) {
		if (!names[k])
			continue;
		for (size_t i = 0; i < t->n_added && *dst[k] < 0; i++)
			if (!strcmp(t->added[i].text, names[k]))
				*dst[k] = t->added[i].id;
		if (*dst[k] < 0)
			*dst[k] = tk_lookup(t, names[k]);
	}
	return MUSE_OK;
}

/* ------------------------------------------------------------------ loading: SentencePiece and GGUF */

/* Added tokens from token types: CONTROL/UNKNOWN special, USER_DEFINED not (llama.cpp's partition set). */
static muse_status added_from_types(muse_tokenizer *t, const int32_t *types, muse_err *err)
{
	muse_status s;
	for (size_t i = 0; i < t->n_vocab; i++) {
		int ty = types ? types[i] : 1;
		if ((ty == 2 || ty == 3 || ty == 4) && t->len[i] &&
		    (s = tk_added_push(t, t->text[i], t->len[i], (int32_t)i, ty != 4, err)))
			return s;
	}
	return tk_added_finish(t, err);
}

static void set_post(muse_tokenizer *t, bool add_bos, bool add_eos)
{
	if (add_bos && t->bos >= 0 && (size_t)t->bos < t->n_vocab)
		t->prefix[t->n_prefix++] = t->bos;
	if (add_eos && t->eos >= 0 && (size_t)t->eos < t->n_vocab)
		t->suffix[t->n_suffix++] = t->eos;
}

static muse_status from_spm_model(muse_tokenizer *t, const char *path, json_t *tcfg, muse_err *err)
{
	muse_spm_model *m = NULL;
	int32_t *types = NULL;
	muse_status s = muse_spm_load(path, &m, err);
	if (s)
		return s;
	if (m->model_type != MUSE_SPM_BPE) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: SentencePiece model type %d is not supported (BPE only)", path,
				 m->model_type);
		goto done;
	}
	if ((m->normalizer_name && strcmp(m->normalizer_name, "identity")) ||
	    (!m->normalizer_name && m->has_precompiled_charsmap)) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: SentencePiece normalizer '%s' is not supported (identity only)",
				 path, m->normalizer_name ? m->normalizer_name : "precompiled");
		goto done;
	}
	t->model = TK_SPM;
	if ((s = tk_vocab_alloc(t, m->n_pieces, path, err)))
		goto done;
	t->scores = calloc(m->n_pieces, sizeof *t->scores);
	types = calloc(m->n_pieces, sizeof *types);
	if (!t->scores || !types) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < m->n_pieces; i++) {
		if ((s = tk_set_text(t, i, m->pieces[i].text, m->pieces[i].len, err)))
			goto done;
		t->scores[i] = m->pieces[i].score;
		types[i] = m->pieces[i].type;
		if (m->pieces[i].type == MUSE_SPM_UNKNOWN)
			t->unk = (int32_t)i;
	}
	if ((s = tk_index(t, err)) || (s = added_from_types(t, types, err)))
		goto done;
	t->add_space_prefix = m->add_dummy_prefix;
	t->bos = m->bos_id;
	t->eos = m->eos_id;
	json_t *ab = json_object_get(tcfg, "add_bos_token"), *ae = json_object_get(tcfg, "add_eos_token");
	set_post(t, ab ? json_is_true(ab) : true, ae ? json_is_true(ae) : false);
done:
	free(types);
	muse_spm_free(m);
	return s;
}

static const muse_kv *meta_arr(const muse_meta *meta, const char *key, muse_kv_type want)
{
	const muse_kv *kv = muse_meta_find(meta, key);
	return kv && kv->type == MUSE_KV_ARRAY && kv->arr_type == want ? kv : NULL;
}

static int meta_bool(const muse_meta *meta, const char *key, int def)
{
	const muse_kv *kv = muse_meta_find(meta, key);
	return kv && kv->type == MUSE_KV_BOOL ? kv->v.b : def;
}

static int32_t meta_id(const muse_meta *meta, const char *key, int32_t def, size_t n)
{
	uint64_t v;
	if (!muse_meta_get_u64(meta, key, &v))
		return def;
	return v < n ? (int32_t)v : -1;
}

muse_status muse_tokenizer_from_meta(const muse_meta *meta, const char *path, muse_tokenizer **out, muse_err *err)
{
	muse_status s;
	*out = NULL;
	const char *src = path ? path : META_SOURCE;
	const char *model = muse_meta_get_str(meta, "tokenizer.ggml.model");
	if (!model)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no tokenizer.ggml.model (the file carries no vocabulary)", src);
	bool gpt2 = !strcmp(model, "gpt2"), spm = !strcmp(model, "llama");
	if (!gpt2 && !spm)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.60s' is not supported (gpt2, llama)",
				    src, model);
	const muse_kv *toks = meta_arr(meta, "tokenizer.ggml.tokens", MUSE_KV_STRING);
	if (!toks)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not a string array", src);
	const muse_kv *types = muse_meta_find(meta, "tokenizer.ggml.token_type");
	const muse_kv *scores = muse_meta_find(meta, "tokenizer.ggml.scores");
	if (types && (types->type != MUSE_KV_ARRAY || types->arr_type != MUSE_KV_I32 || types->n != toks->n))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an int32 array of %llu", src,
				    (unsigned long long)toks->n);
	if (scores && (scores->type != MUSE_KV_ARRAY || scores->arr_type != MUSE_KV_F32 || scores->n != toks->n))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.scores is not a float32 array of %llu", src,
				    (unsigned long long)toks->n);
	const muse_pre_rule *rule = NULL;
	if (gpt2) {
		const char *pre = muse_meta_get_str(meta, "tokenizer.ggml.pre");
		if (!(rule = muse_tokenizer_pre_rule(pre)))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%.60s' is not supported", src,
					    pre ? pre : "(missing)");
	}
	muse_tokenizer *t = tk_new();
	if (!t)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	t->model = gpt2 ? TK_BPE : TK_SPM;
	if ((s = tk_vocab_alloc(t, (size_t)toks->n, src, err)))
		goto fail;
	const muse_str *st = toks->arr;
	for (size_t i = 0; i < t->n_vocab; i++) {
		if (!muse_utf8_valid(st[i].ptr, (size_t)st[i].len) || memchr(st[i].ptr, 0, (size_t)st[i].len)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] is not valid UTF-8", src, i);
			goto fail;
		}
		if ((s = tk_set_text(t, i, st[i].ptr, (size_t)st[i].len, err)))
			goto fail;
	}
	if ((s = tk_index(t, err)) || (s = added_from_types(t, types ? types->arr : NULL, err)))
		goto fail;
	if (spm) {
		if (!(t->scores = calloc(t->n_vocab, sizeof *t->scores))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		if (scores)
			memcpy(t->scores, scores->arr, t->n_vocab * sizeof *t->scores);
		/* llama.cpp's SPM defaults */
		t->bos = meta_id(meta, "tokenizer.ggml.bos_token_id", 1, t->n_vocab);
		t->eos = meta_id(meta, "tokenizer.ggml.eos_token_id", 2, t->n_vocab);
		t->unk = meta_id(meta, "tokenizer.ggml.unknown_token_id", 0, t->n_vocab);
		t->add_space_prefix = meta_bool(meta, "tokenizer.ggml.add_space_prefix", 1);
		set_post(t, meta_bool(meta, "tokenizer.ggml.add_bos_token", 1), meta_bool(meta, "tokenizer.ggml.add_eos_token", 0));
	} else {
		const muse_kv *mg = meta_arr(meta, "tokenizer.ggml.merges", MUSE_KV_STRING);
		if (!mg) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokenizer.ggml.merges missing or not a string array", src);
			goto fail;
		}
		if ((s = tk_merges_alloc(t, (size_t)mg->n, err)))
			goto fail;
		const muse_str *ms = mg->arr;
		for (size_t i = 0; i < mg->n; i++) {
			/* llama.cpp splits at the first ' ' after the first byte; merges naming no tokens are skipped */
			const char *w = ms[i].ptr;
			size_t wl = (size_t)ms[i].len;
			const char *sp = wl > 1 ? memchr(w + 1, ' ', wl - 1) : NULL;
			if (!sp)
				continue;
			muse_err ignore = { 0 };
			muse_status ms_ = tk_merge(t, w, (size_t)(sp - w), sp + 1, wl - (size_t)(sp - w) - 1, i, true, src, &ignore);
			if (ms_ == MUSE_ERR_NOMEM) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto fail;
			}
		}
		t->ignore_merges = rule->ignore_merges;
		if (rule->digits) {
			tk_pre p = { .kind = PT_SPLIT, .behavior = SB_ISOLATED };
			if (!(p.re = tk_regex("\\p{N}", 5, false, src, err)) || (s = add_pre(t, p, err))) {
				s = err->code ? err->code : MUSE_ERR_NOMEM;
				goto fail;
			}
		}
		for (int k = 0; k < MUSE_PRE_MAX_SPLITS && rule->split[k]; k++) {
			tk_pre p = { .kind = PT_SPLIT, .behavior = SB_ISOLATED };
			if (!(p.re = tk_regex(rule->split[k], strlen(rule->split[k]), false, src, err)) || (s = add_pre(t, p, err))) {
				s = err->code ? err->code : MUSE_ERR_NOMEM;
				goto fail;
			}
		}
		tk_pre bl = { .kind = PT_BYTELEVEL };
		if (rule->bytelevel_regex && !(bl.re = tk_regex(GPT2_REGEX, strlen(GPT2_REGEX), false, src, err))) {
			s = err->code;
			goto fail;
		}
		if ((s = add_pre(t, bl, err)))
			goto fail;
		t->byte_level = true;
		t->bos = meta_id(meta, "tokenizer.ggml.bos_token_id", -1, t->n_vocab);
		t->eos = meta_id(meta, "tokenizer.ggml.eos_token_id", -1, t->n_vocab);
		set_post(t, meta_bool(meta, "tokenizer.ggml.add_bos_token", rule->add_bos),
			 meta_bool(meta, "tokenizer.ggml.add_eos_token", 0));
	}
	*out = t;
	return MUSE_OK;
fail:
	muse_tokenizer_free(t);
	return s;
}

static bool is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

muse_status muse_tokenizer_from_dir(const char *dir, muse_tokenizer **out, muse_err *err)
{
	char path[4096], cpath[4096], mpath[4096];
	muse_status s = MUSE_OK;
	json_t *tok = NULL, *tcfg = NULL;
	*out = NULL;
	if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
	snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
	snprintf(mpath, sizeof mpath, "%s/tokenizer.model", dir);
	bool have_json = is_file(path), have_model = is_file(mpath);
	if (!have_json && !have_model)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no tokenizer.json or tokenizer.model", dir);
	muse_tokenizer *t = tk_new();
	if (!t)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if (is_file(cpath) && !(tcfg = load_json_file(cpath, JSON_DECODE_INT_AS_REAL, &s, err)))
		goto done;
	if (have_json) {
		if (!(tok = load_json_file(path, 0, &s, err)))
			goto done;
		s = from_hf_json(t, tok, tcfg, path, err);
	} else {
		s = from_spm_model(t, mpath, tcfg, err);
	}
done:
	json_decref(tok);
	json_decref(tcfg);
	if (s) {
		muse_tokenizer_free(t);
		return s;
	}
	*out = t;
	return MUSE_OK;
}
