/* test_model_card.c: README.md front matter: block lists, nested maps skipped, block scalars, multi-line scalars and flow lists. */
#include "../../formats/model_card.h"
#include "unit.h"

static muse_model_card parse(const char *fm, muse_status want)
{
	muse_model_card c;
	muse_err err = { 0 };
	muse_status s = muse_model_card_parse(fm, strlen(fm), "README.md", &c, &err);
	if (s != want)
		printf("#   status %d, %s\n", (int)s, err.msg);
	CHECK(s == want);
	return c;
}

static int str_is(const muse_model_card *c, const char *key, const char *want)
{
	const char *v = muse_model_card_str(c, key);
	if (!v || strcmp(v, want))
		printf("#   %s = [%s], expected [%s]\n", key, v ? v : "(null)", want);
	return v && !strcmp(v, want);
}

/* HF card shapes: model-index and widget (lists of maps), nested maps, base_model lists; license_* flat. */
static void test_hf_card(void)
{
	muse_model_card c = parse("license: other\nlicense_name: foo-license\nlicense_link: LICENSE\n"
				  "base_model:\n- meta-llama/Llama-3.1-8B\n- Qwen/Qwen2-7B\n"
				  "model-index:\n- name: Foo\n  results:\n  - task:\n      type: text-generation\n"
				  "    metrics:\n    - type: acc\n      value: 0.5\n"
				  "inference:\n  parameters:\n    temperature: 0.7\n"
				  "\"quoted_key\": v\n"
				  "language:\n- en\n",
				  MUSE_OK);
	CHECK(str_is(&c, "license", "other") && str_is(&c, "license_name", "foo-license"));
	CHECK(str_is(&c, "license_link", "LICENSE") && str_is(&c, "quoted_key", "v"));
	const muse_card_entry *e = muse_model_card_get(&c, "base_model");
	CHECK(e && e->list == 1 && e->n == 2 && !strcmp(e->items[1], "Qwen/Qwen2-7B"));
	e = muse_model_card_get(&c, "model-index");
	CHECK(e && e->list < 0 && e->n == 0);
	e = muse_model_card_get(&c, "inference");
	CHECK(e && e->list < 0 && e->n == 0);
	e = muse_model_card_get(&c, "language");
	CHECK(e && e->list == 1 && e->n == 1 && !strcmp(e->items[0], "en"));
	muse_model_card_free(&c);
}

/* Values as PyYAML's safe_load gives them (checked there for each string). */
static void test_multiline(void)
{
	muse_model_card c = parse("a: |\n  one\n  two\n\n  after\nb: |-\n  strip\n\n\nc: |+\n  keep\n\n\n"
				  "d: >\n  f1\n  f2\n\n  p\n    more\n  back\ne: >-\n  x\n  y\n"
				  "f: \"multi\n  line\n\n  q\"\ng: 'it''s\n  two'\nh: plain\n  goes on\n"
				  "i: [a, b,\n  c, 'd e']\nj: \"esc \\\"q\\\" \\\n  joined\"\nk: |2\n    two\n  base\n"
				  "l:\n- \"item\n  folded\"\n- b\n",
				  MUSE_OK);
	CHECK(str_is(&c, "a", "one\ntwo\n\nafter\n") && str_is(&c, "b", "strip") && str_is(&c, "c", "keep\n\n\n"));
	CHECK(str_is(&c, "d", "f1 f2\np\n  more\nback\n") && str_is(&c, "e", "x y"));
	CHECK(str_is(&c, "f", "multi line\nq") && str_is(&c, "g", "it's two") && str_is(&c, "h", "plain goes on"));
	CHECK(str_is(&c, "j", "esc \"q\" joined") && str_is(&c, "k", "  two\nbase\n"));
	const muse_card_entry *e = muse_model_card_get(&c, "i");
	CHECK(e && e->list == 1 && e->n == 4 && !strcmp(e->items[3], "d e"));
	e = muse_model_card_get(&c, "l");
	CHECK(e && e->list == 1 && e->n == 2 && !strcmp(e->items[0], "item folded"));
	muse_model_card_free(&c);
}

/* Double-quoted escapes as YAML (and the JSON strings gguf2hf writes) spell them; invalid code points kept as written. */
static void test_escapes(void)
{
	muse_model_card c = parse("a: \"caf\\u00e9 \\x41 \\U0001F600 \\t\\/\\e\"\nb: \"\\ud800 \\u0000\"\n", MUSE_OK);
	CHECK(str_is(&c, "a", "caf\xc3\xa9 A \xf0\x9f\x98\x80 \t/\x1b"));
	CHECK(str_is(&c, "b", "\\ud800 \\u0000"));
	muse_model_card_free(&c);
}

static void test_refusals(void)
{
	muse_model_card c = parse("name: 'unterminated\n  still open\n", MUSE_ERR_FORMAT);
	CHECK(!c.n && !c.e);
	c = parse("tags:\n- \"open\nname: x\n", MUSE_ERR_FORMAT);
	CHECK(!c.n && !c.e);
	c = parse("tags: [a, [b\nname: x\n", MUSE_OK); /* an unclosed flow list is skipped, the next key read */
	CHECK(str_is(&c, "name", "x"));
	CHECK(muse_model_card_get(&c, "tags") && !muse_model_card_get(&c, "tags")->n);
	muse_model_card_free(&c);
}

int main(void)
{
	unit_file_name = "model_card";
	RUN(test_hf_card);
	RUN(test_multiline);
	RUN(test_escapes);
	RUN(test_refusals);
	return unit_failures_total ? 1 : 0;
}
