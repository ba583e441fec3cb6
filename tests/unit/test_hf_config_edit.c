/* test_hf_config_edit.c: muse_hf_config_set_dtype changes only dtype values of config.json text (issue 12 item 2). */
#include "../../formats/hf_config.h"
#include "unit.h"

/* Edits text to "bfloat16" and compares with want (NULL: expects MUSE_ERR_FORMAT). */
static int edits_to(const char *text, const char *want)
{
	char *out = NULL;
	size_t n = 0;
	muse_err err = { 0 };
	muse_status s = muse_hf_config_set_dtype("config.json", text, strlen(text), "bfloat16", &out, &n, &err);
	int ok = want ? s == MUSE_OK && n == strlen(want) && !memcmp(out, want, n) : s == MUSE_ERR_FORMAT;
	if (!ok)
		printf("#   [%s] -> status %d [%s], expected [%s]\n", text, (int)s, out ? out : err.msg, want ? want : "error");
	free(out);
	return ok;
}

/* Numbers keep their spelling (ints stay ints, 0.1 stays 0.1), both dtype keys change, order and spacing stay. */
static void test_values_replaced_in_place(void)
{
	CHECK(edits_to("{\n  \"vocab_size\": 49152,\n  \"torch_dtype\": \"float32\",\n  \"eps\": 0.1,\n"
		       "  \"dtype\": null\n}\n",
		       "{\n  \"vocab_size\": 49152,\n  \"torch_dtype\": \"bfloat16\",\n  \"eps\": 0.1,\n"
		       "  \"dtype\": \"bfloat16\"\n}\n"));
}

/* Sub-model configs follow; quantization_config, nested non-config objects and strings that look like keys do not. */
static void test_nested(void)
{
	CHECK(edits_to("{\"text_config\": {\"dtype\": \"float32\", \"a\": [1, {\"dtype\": 1}]}, "
		       "\"quantization_config\": {\"dtype\": \"int4\"}, \"other\": {\"dtype\": \"x\"}, "
		       "\"s\": \"\\\"dtype\\\": {\", \"dtype\": \"float16\"}",
		       "{\"text_config\": {\"dtype\": \"bfloat16\", \"a\": [1, {\"dtype\": 1}]}, "
		       "\"quantization_config\": {\"dtype\": \"int4\"}, \"other\": {\"dtype\": \"x\"}, "
		       "\"s\": \"\\\"dtype\\\": {\", \"dtype\": \"bfloat16\"}"));
}

/* No dtype key: "torch_dtype" appended as the last member, indented like the first; compact and empty files too. */
static void test_added(void)
{
	CHECK(edits_to("{\n  \"a\": 1,\n  \"b\": {\"c\": 2}\n}\n",
		       "{\n  \"a\": 1,\n  \"b\": {\"c\": 2},\n  \"torch_dtype\": \"bfloat16\"\n}\n"));
	CHECK(edits_to("{\"a\":1}", "{\"a\":1, \"torch_dtype\": \"bfloat16\"}"));
	CHECK(edits_to(" {} ", " {\"torch_dtype\": \"bfloat16\"} "));
	/* a sub-model's dtype does not count as the top level's */
	CHECK(edits_to("{\"text_config\": {\"dtype\": \"float32\"}}",
		       "{\"text_config\": {\"dtype\": \"bfloat16\"}, \"torch_dtype\": \"bfloat16\"}"));
}

static void test_not_an_object(void)
{
	CHECK(edits_to("[1, 2]", NULL));
	CHECK(edits_to("{\"a\": ", NULL));
	CHECK(edits_to("", NULL));
}

int main(void)
{
	unit_file_name = "test_hf_config_edit";
	RUN(test_values_replaced_in_place);
	RUN(test_nested);
	RUN(test_added);
	RUN(test_not_an_object);
	UNIT_MAIN_END();
}
