/* tokenizer_bpe.c: the merge models: HF tokenizers' BPE (ranked merges, heap + linked symbols, byte fallback, unk fusing) and llama.cpp's SentencePiece BPE (score-ordered bigrams). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"

muse_status muse_tk_ids_push(tk_ids *o, int32_t id, muse_err *err)
{
	if (o->n == o->cap) {
		size_t nc = o->cap ? o->cap * 2 : 256;
		int32_t *nv = realloc(o->v, nc * sizeof *nv);
		if (!nv)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		o->v = nv;
		o->cap = nc;
	}
	o->v[o->n++] = id;
	return MUSE_OK;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards. */
static char bc_tab[256][3];
static uint8_t bc_len[256];
static pthread_once_t bc_once = PTHREAD_ONCE_INIT;

static void bc_init(void)
{
	int n = 0;
	for (int c = 0; c < 256; c++) {
		int cp;
		if ((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff))
			cp = c;
		else
			cp = 256 + n++;
		if (cp < 0x80) {
			bc_tab[c][0] = (char)cp;
			bc_len[c] = 1;
		} else {
			bc_tab[c][0] = (char)(0xc0 | (cp >> 6));
			bc_tab[c][1] = (char)(0x80 | (cp & 0x3f));
			bc_len[c] = 2;
		}
	}
}

const char *muse_tk_byte_char(uint8_t b, size_t *len)
{
	pthread_once(&bc_once, bc_init);
	*len = bc_len[b];
	return bc_tab[b];
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static const tk_merge_slot *merge_get(const muse_tokenizer *t, int32_t a, int32_t b)
{
	if (!t->merges_cap)
		return NULL;
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
	size_t mask = t->merges_cap - 1;
	for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
		const tk_merge_slot *s = &t->merges[i];
		if (s->key == key)
			return s;
		if (!s->key)
			return NULL;
	}
}

int muse_tk_merge_put(muse_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id, bool first_wins)
{
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
	size_t mask = t->merges_cap - 1;
	for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
		tk_merge_slot *s = &t->merges[i];
		if (s->key == key) {
			if (!first_wins) {
				s->rank = rank;
				s->id = id;
			}
			return 0;
		}
		if (!s->key) {
			s->key = key;
			s->rank = rank;
			s->id = id;
			return 1;
		}
	}
}

/* UTF-8 sequence length from the lead byte (the text was validated). */
static size_t u8len(uint8_t c)
{
	return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

typedef struct sym {
	int32_t id;
	int32_t prev, next;
	uint32_t start, len; /* bytes of the word; len 0: merged away */
} sym;

typedef struct heap_item {
	int32_t rank, pos, id;
} heap_item;

/* One binary heap for both merge models: elements of `size` bytes, `before` orders them. */
typedef struct heap {
	unsigned char *v;
	size_t n, cap, size;
	int (*before)(const void *, const void *);
} heap;

static int heap_push(heap *h, const void *it)
{
	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 64;
		unsigned char *nv = realloc(h->v, nc * h->size);
		if (!nv)
			return -1;
		h->v = nv;
		h->cap = nc;
	}
	size_t i = h->n++, sz = h->size;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!h->before(it, h->v + p * sz))
			break;
		memcpy(h->v + i * sz, h->v + p * sz, sz);
		i = p;
	}
	memcpy(h->v + i * sz, it, sz);
	return 0;
}

/* Removes the first element into *top; the slot past the end holds the last one while it sifts down. */
static void heap_pop(heap *h, void *top)
{
	size_t sz = h->size;
	memcpy(top, h->v, sz);
	const unsigned char *last = h->v + --h->n * sz;
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const unsigned char *best = last;
		if (l < h->n && h->before(h->v + l * sz, best)) {
			m = l;
			best = h->v + l * sz;
		}
		if (r < h->n && h->before(h->v + r * sz, best))
			m = r;
		if (m == i)
			break;
		memcpy(h->v + i * sz, h->v + m * sz, sz);
		i = m;
	}
	if (h->n)
		memcpy(h->v + i * sz, last, sz);
}

/* Lower rank first, then leftmost position: tokenizers' Merge ordering. */
static int h_less(const void *pa, const void *pb)
{
	const heap_item *a = pa, *b = pb;
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int h_push(heap *h, heap_item it)
{
	return heap_push(h, &it);
}

static bool vocab_get(const muse_tokenizer *t, const char *s, size_t len, int32_t *id)
{
	size_t v;
	if (!muse_strmap_get(&t->map, s, len, &v))
		return false;
	*id = (int32_t)v;
	return true;
}

muse_status muse_tk_bpe_word(const muse_tokenizer *t, const char *w, size_t len, tk_ids *out, muse_err *err)
{
	muse_status s = MUSE_OK;
	int32_t id;
	if (!len)
		return MUSE_OK;
	if (t->ignore_merges && vocab_get(t, w, len, &id))
		return muse_tk_ids_push(out, id, err);
	sym *sy = malloc(len * sizeof *sy);
	heap h = { .size = sizeof(heap_item), .before = h_less };
	if (!sy)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	/* One symbol per character; unknown characters become byte tokens, unk (fused) or nothing, as HF does. */
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		size_t cl = u8len((uint8_t)w[i]);
		if (cl > len - i)
			cl = len - i;
		if (vocab_get(t, w + i, cl, &id)) {
			sy[n++] = (sym){ id, 0, 0, (uint32_t)i, (uint32_t)cl };
		} else {
			bool done = false;
			if (t->byte_fallback) {
				done = true;
				for (size_t k = 0; k < cl; k++)
					done &= t->byte_tok[(uint8_t)w[i + k]] >= 0;
				for (size_t k = 0; done && k < cl; k++)
					sy[n++] = (sym){ t->byte_tok[(uint8_t)w[i + k]], 0, 0, (uint32_t)(i + k), 1 };
			}
			if (!done && t->unk >= 0) {
				if (t->fuse_unk && n && sy[n - 1].id == t->unk)
					sy[n - 1].len += (uint32_t)cl;
				else
					sy[n++] = (sym){ t->unk, 0, 0, (uint32_t)i, (uint32_t)cl };
			}
		}
		i += cl;
	}
	for (size_t i = 0; i < n; i++) {
		sy[i].prev = (int32_t)i - 1;
		sy[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		const tk_merge_slot *m = merge_get(t, sy[i].id, sy[i + 1].id);
		if (m && h_push(&h, (heap_item){ m->rank, (int32_t)i, m->id })) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
	}
	while (h.n) {
		heap_item top;
		heap_pop(&h, &top);
		sym *a = &sy[top.pos];
		if (!a->len || a->next < 0)
			continue;
		sym *b = &sy[a->next];
		const tk_merge_slot *m = merge_get(t, a->id, b->id);
		if (!m || m->id != top.id)
			continue; /* stale: one side changed since the pair was queued */
		a->id = top.id;
		a->len += b->len;
		b->len = 0;
		a->next = b->next;
		if (a->next >= 0)
			sy[a->next].prev = top.pos;
		if (a->prev >= 0) {
			const tk_merge_slot *pm = merge_get(t, sy[a->prev].id, a->id);
			if (pm && h_push(&h, (heap_item){ pm->rank, a->prev, pm->id })) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
		}
		if (a->next >= 0) {
			const tk_merge_slot *nm = merge_get(t, a->id, sy[a->next].id);
			if (nm && h_push(&h, (heap_item){ nm->rank, top.pos, nm->id })) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
		}
	}
	for (int32_t i = n ? 0 : -1; i >= 0 && !s; i = sy[i].next)
		s = muse_tk_ids_push(out, sy[i].id, err);
done:
	free(sy);
	free(h.v);
	return s;
}

/* llama.cpp's llm_bigram_spm: highest score first, then leftmost. */
typedef struct bigram {
	float score;
	int32_t left, right;
	uint32_t size;
} bigram;

static int b_before(const void *pa, const void *pb)
{
	const bigram *a = pa, *b = pb;
	return a->score != b->score ? a->score > b->score : a->left < b->left;
}

static int try_bigram(const muse_tokenizer *t, const char *s, const sym *sy, int32_t l, int32_t r, heap *h)
{
	int32_t id;
	if (l < 0 || r < 0)
		return 0;
	uint32_t size = sy[l].len + sy[r].len;
	if (!vocab_get(t, s + sy[l].start, size, &id))
		return 0;
	return heap_push(h, &(bigram){ t->scores[id], l, r, size });
}

muse_status muse_tk_spm_text(const muse_tokenizer *t, const char *s, size_t len, tk_ids *out, muse_err *err)
{
	muse_status st = MUSE_OK;
	if (!len)
		return MUSE_OK;
	sym *sy = malloc(len * sizeof *sy);
	heap h = { .size = sizeof(bigram), .before = b_before };
	if (!sy)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		size_t cl = u8len((uint8_t)s[i]);
		if (cl > len - i)
			cl = len - i;
		sy[n] = (sym){ -1, (int32_t)n - 1, -1, (uint32_t)i, (uint32_t)cl };
		if (n)
			sy[n - 1].next = (int32_t)n;
		n++;
		i += cl;
	}
	for (size_t i = 1; i < n; i++)
		if (try_bigram(t, s, sy, (int32_t)i - 1, (int32_t)i, &h)) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
	while (h.n) {
		bigram b;
		heap_pop(&h, &b);
		sym *l = &sy[b.left], *r = &sy[b.right];
		if (!l->len || !r->len || l->len + r->len != b.size)
			continue;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			sy[r->next].prev = b.left;
		if (try_bigram(t, s, sy, l->prev, b.left, &h) || try_bigram(t, s, sy, b.left, l->next, &h)) {
			st = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
	}
	/* Every merged symbol is a token (bigrams exist only for tokens); a lone unknown character becomes bytes. */
	for (int32_t i = 0; i >= 0 && !st; i = sy[i].next) {
		int32_t id;
		if (vocab_get(t, s + sy[i].start, sy[i].len, &id)) {
			st = muse_tk_ids_push(out, id, err);
			continue;
		}
		for (uint32_t k = 0; k < sy[i].len && !st; k++) {
			int32_t bt = t->byte_tok[(uint8_t)s[sy[i].start + k]];
			if (bt < 0)
				bt = t->unk;
			if (bt >= 0)
				st = muse_tk_ids_push(out, bt, err);
		}
	}
done:
	free(sy);
	free(h.v);
	return st;
}
