/* test_spm.c: the SentencePiece protobuf reader on hand-encoded ModelProtos (valid, defaults, and every refusal), and the pre-tokenizer table. */
#include <math.h>

#include "../../formats/vocab_spm.h"
#include "../../formats/vocab.h"
#include "unit.h"

/* A tiny protobuf writer for the tests. */
typedef struct buf {
	uint8_t b[4096];
	size_t n;
} buf;

static void put_varint(buf *o, uint64_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		o->b[o->n++] = c | (v ? 0x80 : 0);
	} while (v);
}

static void put_tag(buf *o, unsigned field, unsigned wt) { put_varint(o, (uint64_t)field << 3 | wt); }

static void put_bytes(buf *o, unsigned field, const void *p, size_t n)
{
	put_tag(o, field, 2);
	put_varint(o, n);
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void put_f32(buf *o, unsigned field, float f)
{
	put_tag(o, field, 5);
	memcpy(o->b + o->n, &f, 4);
	o->n += 4;
}

static void put_piece(buf *o, const char *text, float score, int type)
{
	buf p = { .n = 0 };
	put_bytes(&p, 1, text, strlen(text));
	put_f32(&p, 2, score);
	if (type) {
		put_tag(&p, 3, 0);
		put_varint(&p, (uint64_t)type);
	}
	put_bytes(o, 1, p.b, p.n);
}

/* <unk>, <s>, </s>, ▁a, then a trainer spec (BPE, byte_fallback, pad_id -1) and a normalizer spec. */
static void base_model(buf *o, int with_specs)
{
	o->n = 0;
	put_piece(o, "<unk>", 0, MUSE_TOKEN_UNKNOWN);
	put_piece(o, "<s>", 0, MUSE_TOKEN_CONTROL);
	put_piece(o, "</s>", 0, MUSE_TOKEN_CONTROL);
	put_piece(o, "\xe2\x96\x81" "a", -1.5f, 0);
	if (!with_specs)
		return;
	buf t = { .n = 0 };
	put_tag(&t, 3, 0);
	put_varint(&t, MUSE_SPM_BPE);
	put_tag(&t, 35, 0);
	put_varint(&t, 1);
	put_tag(&t, 43, 0);
	put_varint(&t, (uint64_t)(int64_t)-1); /* int32 -1: ten bytes */
	put_bytes(&t, 2, "prefix", 6);         /* unknown-to-muse string field, skipped */
	put_bytes(o, 2, t.b, t.n);
	buf nz = { .n = 0 };
	put_bytes(&nz, 1, "identity", 8);
	put_tag(&nz, 3, 0);
	put_varint(&nz, 0);
	put_bytes(o, 3, nz.b, nz.n);
}

static void test_valid(void)
{
	buf o;
	base_model(&o, 1);
	muse_spm_model *m = NULL;
	muse_err err = { 0 };
	CHECK(muse_spm_parse(o.b, o.n, "t.model", &m, &err) == MUSE_OK);
	if (!m)
		return;
	CHECK_EQ_U64(m->n_pieces, 4);
	CHECK(!strcmp(m->pieces[3].text, "\xe2\x96\x81" "a") && m->pieces[3].score == -1.5f);
	CHECK(m->pieces[3].type == MUSE_TOKEN_NORMAL && m->pieces[0].type == MUSE_TOKEN_UNKNOWN);
	CHECK(m->model_type == MUSE_SPM_BPE && m->byte_fallback);
	CHECK(m->unk_id == 0 && m->bos_id == 1 && m->eos_id == 2 && m->pad_id == -1);
	CHECK(!m->add_dummy_prefix && m->remove_extra_whitespaces && m->escape_whitespaces);
	CHECK(m->normalizer_name && !strcmp(m->normalizer_name, "identity"));
	muse_spm_free(m);
}

static void test_defaults(void)
{
	buf o;
	base_model(&o, 0);
	muse_spm_model *m = NULL;
	muse_err err = { 0 };
	CHECK(muse_spm_parse(o.b, o.n, "t.model", &m, &err) == MUSE_OK);
	if (!m)
		return;
	/* proto2 defaults, as SentencePieceProcessor reports them */
	CHECK(m->model_type == MUSE_SPM_UNIGRAM && !m->byte_fallback && m->add_dummy_prefix);
	CHECK(m->pad_id == -1 && m->bos_id == 1);
	CHECK(!m->normalizer_name);
	muse_spm_free(m);
}

/* Parses o and expects a refusal whose message holds want. */
static int refused(const buf *o, const char *want)
{
	muse_spm_model *m = (muse_spm_model *)1;
	muse_err err = { 0 };
	muse_status s = muse_spm_parse(o->b, o->n, "t.model", &m, &err);
	int ok = s != MUSE_OK && m == NULL && strstr(err.msg, want) && strstr(err.msg, "t.model") && !strchr(err.msg, '\n');
	if (!ok)
		printf("#   expected refusal with '%s', got status %d: %s\n", want, (int)s, err.msg);
	if (s == MUSE_OK)
		muse_spm_free(m);
	return ok;
}

static void test_hostile(void)
{
	buf o;
	base_model(&o, 1);
	buf t = o;
	t.n -= 2;
	CHECK(refused(&t, "byte "));                    /* truncated inside the normalizer spec */
	t = o;
	t.b[t.n++] = 0x80;                              /* a tag varint that never ends */
	CHECK(refused(&t, "truncated varint"));
	t = o;
	put_tag(&t, 9, 2);
	put_varint(&t, 1000);                           /* length past the end */
	CHECK(refused(&t, "length runs past"));
	t = o;
	put_tag(&t, 1, 0);                              /* pieces as a varint */
	put_varint(&t, 5);
	CHECK(refused(&t, "wire type"));
	t = o;
	put_tag(&t, 7, 3);                              /* a group */
	CHECK(refused(&t, "group"));
	t = o;
	put_piece(&t, "<s>", 0, 0);
	CHECK(refused(&t, "are both '<s>'"));
	t = o;
	put_piece(&t, "<unk2>", 0, MUSE_TOKEN_UNKNOWN);
	CHECK(refused(&t, "UNKNOWN"));
	t = o;
	put_piece(&t, "\xff\xfe", 0, 0);
	CHECK(refused(&t, "UTF-8"));
	t = o;
	put_piece(&t, "nan", NAN, 0);
	CHECK(refused(&t, "not finite"));
	t = o;
	put_piece(&t, "x", 0, 9);
	CHECK(refused(&t, "unknown type"));
	t = o;
	put_piece(&t, "<0x4g>", 0, MUSE_TOKEN_BYTE);
	CHECK(refused(&t, "BYTE"));
	t = o;
	put_piece(&t, "", 0, 0);
	CHECK(refused(&t, "length 0"));
	buf u = { .n = 0 };
	put_tag(&u, 43, 0);
	put_varint(&u, 77);
	put_bytes(&t, 2, u.b, u.n);                     /* pad_id past the pieces (t has the empty piece; rebuild) */
	t = o;
	put_bytes(&t, 2, u.b, u.n);
	CHECK(refused(&t, "pad_id 77"));
	t.n = 0;
	CHECK(refused(&t, "no pieces"));
	t.n = 0;
	for (int i = 0; i < 11; i++)
		t.b[t.n++] = 0xff;                      /* an 11-byte varint */
	CHECK(refused(&t, "varint"));
}

static void test_pre_rules(void)
{
	const muse_pre_rule *r = muse_vocab_pre_rule("llama-bpe");
	CHECK(r && r->ignore_merges && r->add_bos && r->split[0] && !r->split[1] && !r->bytelevel_regex);
	CHECK(muse_vocab_pre_rule("dbrx") == r); /* an alias of the same regex set */
	r = muse_vocab_pre_rule("smollm");
	CHECK(r && r->digits && r->bytelevel_regex && !r->split[0]);
	r = muse_vocab_pre_rule("deepseek-v3");
	CHECK(r && r->split[2] && !r->bytelevel_regex);
	CHECK(!muse_vocab_pre_rule("no-such-pre") && !muse_vocab_pre_rule(NULL));
	CHECK(!strcmp(muse_vocab_pre_name("{\"type\":\"ByteLevel\",\"add_prefix_space\":false}"), "gpt-2"));
	CHECK(!muse_vocab_pre_name("{\"type\":\"ByteLevel\",\"add_prefix_space\":true}"));
	CHECK(!muse_vocab_pre_name("{\"type\":\"Metaspace\"}"));
}

int main(void)
{
	unit_file_name = "spm";
	RUN(test_valid);
	RUN(test_defaults);
	RUN(test_hostile);
	RUN(test_pre_rules);
	return unit_failures_total ? 1 : 0;
}
