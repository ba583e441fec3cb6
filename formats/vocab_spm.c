/* vocab_spm.c: a strict hand-written protobuf reader for SentencePiece's tokenizer.model (ModelProto), no protobuf library; and sentencepiece's reading of it as a muse_vocab. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/mapfile.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"
#include "vocab_impl.h"
#include "vocab_spm.h"

/* Caps: the largest published vocabularies are ~256k pieces; a piece is a short string. */
#define SPM_MAX_PIECES (1u << 24)
#define SPM_MAX_PIECE_LEN 65536
#define SPM_MAX_NESTED (1u << 30)

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* A cursor over one message's bytes; base is the offset of buf[0] in the file, for error messages. */
typedef struct pb {
	const uint8_t *buf;
	size_t pos, end;
	uint64_t base;
	const char *path;
	muse_err *err;
} pb;

static muse_status pb_fail(pb *p, size_t at, const char *what)
{
	return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base + at, "%s", what);
}

static muse_status pb_varint(pb *p, uint64_t *out)
{
	uint64_t v = 0;
	size_t start = p->pos;
	for (int shift = 0; shift < 70; shift += 7) {
		if (p->pos >= p->end)
			return pb_fail(p, start, "truncated varint");
		uint8_t b = p->buf[p->pos++];
		/* The tenth byte may carry only bit 63. */
		if (shift == 63 && (b & 0xfe))
			return pb_fail(p, start, "varint longer than 64 bits");
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return MUSE_OK;
		}
	}
	return pb_fail(p, start, "varint longer than 10 bytes");
}

/* Reads a tag: field number (1..2^29-1) and wire type. */
static muse_status pb_tag(pb *p, uint32_t *field, int *wt)
{
	size_t at = p->pos;
	uint64_t t;
	muse_status s = pb_varint(p, &t);
	if (s)
		return s;
	*wt = (int)(t & 7);
	if ((t >> 3) == 0 || (t >> 3) > 0x1fffffff)
		return pb_fail(p, at, "field number outside 1..536870911");
	*field = (uint32_t)(t >> 3);
	return MUSE_OK;
}

/* The byte range of a length-delimited value: [*off, *off + *len) inside the current message. */
static muse_status pb_len(pb *p, size_t *off, size_t *len)
{
	size_t at = p->pos;
	uint64_t n;
	muse_status s = pb_varint(p, &n);
	if (s)
		return s;
	if (n > p->end - p->pos)
		return pb_fail(p, at, "length runs past the end of its message");
	*off = p->pos;
	*len = (size_t)n;
	p->pos += (size_t)n;
	return MUSE_OK;
}

static muse_status pb_skip(pb *p, int wt, size_t at)
{
	size_t off, len;
	uint64_t v;
	switch (wt) {
	case WT_VARINT:
		return pb_varint(p, &v);
	case WT_I64:
		if (p->end - p->pos < 8)
			return pb_fail(p, at, "truncated fixed64");
		p->pos += 8;
		return MUSE_OK;
	case WT_I32:
		if (p->end - p->pos < 4)
			return pb_fail(p, at, "truncated fixed32");
		p->pos += 4;
		return MUSE_OK;
	case WT_LEN:
		return pb_len(p, &off, &len);
	default:
		/* Groups are deprecated and never written by SentencePiece. */
		return pb_fail(p, at, "unsupported wire type (group or reserved)");
	}
}

static muse_status pb_expect(pb *p, int wt, int want, size_t at, const char *field)
{
	if (wt == want)
		return MUSE_OK;
	return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base + at, "field '%s' has wire type %d, expected %d",
			   field, wt, want);
}

/* int32 fields are varints; negatives are sign-extended to 64 bits (10 bytes). */
static muse_status pb_int32(pb *p, size_t at, int32_t *out)
{
	uint64_t v;
	muse_status s = pb_varint(p, &v);
	if (s)
		return s;
	int64_t i = (int64_t)v;
	if (i < INT32_MIN || i > INT32_MAX)
		return pb_fail(p, at, "int32 value out of range");
	*out = (int32_t)i;
	return MUSE_OK;
}

static muse_status pb_bool(pb *p, bool *out)
{
	uint64_t v;
	muse_status s = pb_varint(p, &v);
	if (!s)
		*out = v != 0;
	return s;
}

static pb pb_sub(const pb *p, size_t off, size_t len)
{
	pb q = { p->buf + off, 0, len, p->base + off, p->path, p->err };
	return q;
}

static muse_status parse_piece(pb *p, muse_spm_piece *pc, size_t index)
{
	bool have_piece = false;
	pc->type = MUSE_TOKEN_NORMAL;
	pc->score = 0.0f;
	while (p->pos < p->end) {
		size_t at = p->pos, off, len;
		uint32_t f = 0;
		int wt;
		muse_status s = pb_tag(p, &f, &wt);
		if (s)
			return s;
		if (f == 1) {
			if ((s = pb_expect(p, wt, WT_LEN, at, "piece")) || (s = pb_len(p, &off, &len)))
				return s;
			if (len == 0 || len > SPM_MAX_PIECE_LEN)
				return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base + at,
						   "piece %zu: length %zu outside 1..%u", index, len, SPM_MAX_PIECE_LEN);
			if (!muse_utf8_valid((const char *)p->buf + off, len) || memchr(p->buf + off, 0, len))
				return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base + at,
						   "piece %zu: not valid UTF-8 (or holds a NUL byte)", index);
			char *t = malloc(len + 1);
			if (!t)
				return muse_err_set(p->err, MUSE_ERR_NOMEM, "out of memory");
			memcpy(t, p->buf + off, len);
			t[len] = '\0';
			free(pc->text);
			pc->text = t;
			pc->len = len;
			have_piece = true;
		} else if (f == 2) {
			if ((s = pb_expect(p, wt, WT_I32, at, "score")))
				return s;
			if (p->end - p->pos < 4)
				return pb_fail(p, at, "truncated score");
			const uint8_t *b = p->buf + p->pos;
			uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
			float x;
			memcpy(&x, &u, 4);
			if (!isfinite(x))
				return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base + at,
						   "piece %zu: score is not finite", index);
			pc->score = x;
			p->pos += 4;
		} else if (f == 3) {
			uint64_t v;
			if ((s = pb_expect(p, wt, WT_VARINT, at, "type")) || (s = pb_varint(p, &v)))
				return s;
			if (v < MUSE_TOKEN_NORMAL || v > MUSE_TOKEN_BYTE)
				return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base + at,
						   "piece %zu: unknown type %llu", index, (unsigned long long)v);
			pc->type = (int)v;
		} else if ((s = pb_skip(p, wt, at))) {
			return s;
		}
	}
	if (!have_piece)
		return muse_err_at(p->err, MUSE_ERR_FORMAT, p->path, p->base, "piece %zu: no piece text", index);
	return MUSE_OK;
}

static muse_status parse_trainer(pb *p, muse_spm_model *m)
{
	while (p->pos < p->end) {
		size_t at = p->pos;
		uint32_t f = 0;
		int wt;
		muse_status s = pb_tag(p, &f, &wt);
		if (s)
			return s;
		switch (f) {
		case 3: {
			uint64_t v;
			if ((s = pb_expect(p, wt, WT_VARINT, at, "model_type")) || (s = pb_varint(p, &v)))
				return s;
			if (v < MUSE_SPM_UNIGRAM || v > MUSE_SPM_CHAR)
				return pb_fail(p, at, "unknown trainer_spec.model_type");
			m->model_type = (int)v;
			break;
		}
		case 24:
			if ((s = pb_expect(p, wt, WT_VARINT, at, "treat_whitespace_as_suffix")) ||
			    (s = pb_bool(p, &m->treat_whitespace_as_suffix)))
				return s;
			break;
		case 25:
			if ((s = pb_expect(p, wt, WT_VARINT, at, "split_digits")) || (s = pb_bool(p, &m->split_digits)))
				return s;
			break;
		case 35:
			if ((s = pb_expect(p, wt, WT_VARINT, at, "byte_fallback")) || (s = pb_bool(p, &m->byte_fallback)))
				return s;
			break;
		case 40: case 41: case 42: case 43: {
			static const char *const names[] = { "unk_id", "bos_id", "eos_id", "pad_id" };
			int32_t *dst[] = { &m->unk_id, &m->bos_id, &m->eos_id, &m->pad_id };
			if ((s = pb_expect(p, wt, WT_VARINT, at, names[f - 40])) || (s = pb_int32(p, at, dst[f - 40])))
				return s;
			break;
		}
		default:
			if ((s = pb_skip(p, wt, at)))
				return s;
		}
	}
	return MUSE_OK;
}

static muse_status parse_normalizer(pb *p, muse_spm_model *m)
{
	while (p->pos < p->end) {
		size_t at = p->pos, off, len;
		uint32_t f = 0;
		int wt;
		muse_status s = pb_tag(p, &f, &wt);
		if (s)
			return s;
		switch (f) {
		case 1:
			if ((s = pb_expect(p, wt, WT_LEN, at, "name")) || (s = pb_len(p, &off, &len)))
				return s;
			if (len > 256 || !muse_utf8_valid((const char *)p->buf + off, len) || memchr(p->buf + off, 0, len))
				return pb_fail(p, at, "normalizer_spec.name: longer than 256 bytes or not UTF-8");
			free(m->normalizer_name);
			if (!(m->normalizer_name = malloc(len + 1)))
				return muse_err_set(p->err, MUSE_ERR_NOMEM, "out of memory");
			memcpy(m->normalizer_name, p->buf + off, len);
			m->normalizer_name[len] = '\0';
			break;
		case 2:
			if ((s = pb_expect(p, wt, WT_LEN, at, "precompiled_charsmap")) || (s = pb_len(p, &off, &len)))
				return s;
			m->has_precompiled_charsmap = len > 0;
			break;
		case 3:
			if ((s = pb_expect(p, wt, WT_VARINT, at, "add_dummy_prefix")) || (s = pb_bool(p, &m->add_dummy_prefix)))
				return s;
			break;
		case 4:
			if ((s = pb_expect(p, wt, WT_VARINT, at, "remove_extra_whitespaces")) ||
			    (s = pb_bool(p, &m->remove_extra_whitespaces)))
				return s;
			break;
		case 5:
			if ((s = pb_expect(p, wt, WT_VARINT, at, "escape_whitespaces")) ||
			    (s = pb_bool(p, &m->escape_whitespaces)))
				return s;
			break;
		default:
			if ((s = pb_skip(p, wt, at)))
				return s;
		}
	}
	return MUSE_OK;
}

void muse_spm_free(muse_spm_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_pieces; i++)
		free(m->pieces[i].text);
	free(m->pieces);
	free(m->normalizer_name);
	free(m);
}

/* "<0xXX>" with two upper-case hex digits: the only spelling SentencePiece gives byte pieces. */
static bool is_byte_piece(const char *t, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	return len == 6 && !memcmp(t, "<0x", 3) && t[5] == '>' && t[3] && strchr(hex, t[3]) && t[4] &&
	       strchr(hex, t[4]);
}

muse_status muse_spm_parse(const uint8_t *data, size_t len, const char *path, muse_spm_model **out, muse_err *err)
{
	muse_status s = MUSE_OK;
	muse_strmap seen;
	muse_strmap_init(&seen);
	*out = NULL;
	muse_spm_model *m = calloc(1, sizeof *m);
	if (!m)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	m->model_type = MUSE_SPM_UNIGRAM;
	m->unk_id = 0;
	m->bos_id = 1;
	m->eos_id = 2;
	m->pad_id = -1;
	m->add_dummy_prefix = m->remove_extra_whitespaces = m->escape_whitespaces = true;

	pb p = { data, 0, len, 0, path, err };
	size_t cap = 0;
	/* Where the first piece of each kind starts, for errors about pieces found after the whole file is read. */
	while (p.pos < p.end) {
		size_t at = p.pos, off, n;
		uint32_t f = 0;
		int wt;
		if ((s = pb_tag(&p, &f, &wt)))
			goto done;
		if (f == 1 || f == 2 || f == 3) {
			static const char *const names[] = { "", "pieces", "trainer_spec", "normalizer_spec" };
			if ((s = pb_expect(&p, wt, WT_LEN, at, names[f])) || (s = pb_len(&p, &off, &n)))
				goto done;
			pb q = pb_sub(&p, off, n);
			if (f == 1) {
				if (m->n_pieces == SPM_MAX_PIECES) {
					s = muse_err_at(err, MUSE_ERR_LIMIT, path, at, "more than %u pieces", SPM_MAX_PIECES);
					goto done;
				}
				if (m->n_pieces == cap) {
					size_t nc = cap ? cap * 2 : 1024;
					muse_spm_piece *np = realloc(m->pieces, nc * sizeof *np);
					if (!np) {
						s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
						goto done;
					}
					m->pieces = np;
					cap = nc;
				}
				muse_spm_piece *pc = &m->pieces[m->n_pieces++];
				memset(pc, 0, sizeof *pc);
				if ((s = parse_piece(&q, pc, m->n_pieces - 1)))
					goto done;
			} else if (f == 2) {
				if ((s = parse_trainer(&q, m)))
					goto done;
			} else if ((s = parse_normalizer(&q, m))) {
				goto done;
			}
		} else if ((s = pb_skip(&p, wt, at))) {
			goto done;
		}
	}
	if (m->n_pieces == 0) {
		s = muse_err_at(err, MUSE_ERR_FORMAT, path, 0, "no pieces (not a SentencePiece model)");
		goto done;
	}
	/* SentencePiece refuses a model with a duplicate piece, no unknown piece, or two of them. */
	if (muse_strmap_reserve(&seen, m->n_pieces) < 0) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto done;
	}
	size_t n_unk = 0;
	for (size_t i = 0; i < m->n_pieces; i++) {
		muse_spm_piece *pc = &m->pieces[i];
		size_t old;
		int r = muse_strmap_put(&seen, pc->text, pc->len, i, &old);
		if (r < 0) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		if (r == 0) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: pieces %zu and %zu are both '%.100s'", path, old, i,
					 pc->text);
			goto done;
		}
		if (pc->type == MUSE_TOKEN_UNKNOWN)
			n_unk++;
		if (pc->type == MUSE_TOKEN_BYTE && !is_byte_piece(pc->text, pc->len)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: piece %zu '%.100s' has type BYTE but is not <0xXX>",
					 path, i, pc->text);
			goto done;
		}
	}
	if (n_unk != 1) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: %zu pieces of type UNKNOWN (SentencePiece needs exactly one)",
				 path, n_unk);
		goto done;
	}
	int32_t ids[] = { m->unk_id, m->bos_id, m->eos_id, m->pad_id };
	static const char *const idn[] = { "unk_id", "bos_id", "eos_id", "pad_id" };
	for (int i = 0; i < 4; i++) {
		if (ids[i] < -1 || (ids[i] >= 0 && (size_t)ids[i] >= m->n_pieces)) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: trainer_spec.%s %d outside -1..%zu", path, idn[i], ids[i],
					 m->n_pieces - 1);
			goto done;
		}
	}
done:
	muse_strmap_free(&seen);
	if (s) {
		muse_spm_free(m);
		return s;
	}
	*out = m;
	return MUSE_OK;
}

muse_status muse_spm_load(const char *path, muse_spm_model **out, muse_err *err)
{
	muse_map map = { 0 };
	*out = NULL;
	muse_status s = muse_map_open(path, &map, err);
	if (s)
		return s;
	if (map.size > (uint64_t)SPM_MAX_NESTED)
		s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: larger than 1 GiB", path);
	else
		s = muse_spm_parse(map.data ? map.data : (const uint8_t *)"", (size_t)map.size, path, out, err);
	muse_map_close(&map);
	return s;
}

muse_status muse_vocab_from_spm(const char *path, bool add_bos, bool add_eos, muse_vocab **out, muse_err *err)
{
	muse_spm_model *m = NULL;
	muse_status s;
	*out = NULL;
	muse_vocab *v = muse_vocab_create();
	if (!v || !(v->source = strdup(path))) {
		muse_vocab_free(v);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	if ((s = muse_spm_load(path, &m, err)))
		goto done;
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
	v->model = MUSE_VOCAB_SPM;
	if ((s = muse_vocab_alloc(v, m->n_pieces, true, true, err)))
		goto done;
	for (size_t i = 0; i < m->n_pieces; i++) {
		if ((s = muse_vocab_set_text(v, i, m->pieces[i].text, m->pieces[i].len, err)))
			goto done;
		v->scores[i] = m->pieces[i].score;
		v->types[i] = m->pieces[i].type;
		if (m->pieces[i].type == MUSE_TOKEN_UNKNOWN)
			v->unk = (int32_t)i;
	}
	if ((s = muse_vocab_added_from_types(v, err)))
		goto done;
	v->spm_space_prefix = m->add_dummy_prefix;
	v->bos = m->bos_id;
	v->eos = m->eos_id;
	muse_vocab_set_post(v, add_bos, add_eos);
done:
	muse_spm_free(m);
	if (s) {
		muse_vocab_free(v);
		return s;
	}
	*out = v;
	return MUSE_OK;
}
