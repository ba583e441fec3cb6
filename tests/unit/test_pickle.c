/* test_pickle.c: the data-only pickle VM: torch state dicts decoded, everything outside the allowlist refused. */
#include <sys/resource.h>

#include "../../formats/pickle.h"
#include "unit.h"
#include "zip_build.h"

static const muse_pickle_ctx ctx = { "m.bin", 1000, "m/data.pkl" };

static muse_status load(const pb *b, muse_pickle_result *r, muse_err *err)
{
	return muse_pickle_load_tensors(b->p, b->n, &ctx, r, err);
}

/* Runs b expecting failure with `what` in the message and the usual "file: byte N: where byte M:" prefix. */
static void expect_fail(const pb *b, const char *what)
{
	muse_pickle_result r;
	muse_err err = { 0 };
	muse_status s = load(b, &r, &err);
	CHECK(s != MUSE_OK);
	if (s == MUSE_OK || !strstr(err.msg, what))
		printf("#   expected '%s', got: %s\n", what, s ? err.msg : "success");
	CHECK(strstr(err.msg, what) != NULL);
	CHECK(strncmp(err.msg, "m.bin: byte ", 12) == 0);
	CHECK(strstr(err.msg, "m/data.pkl byte ") != NULL);
	CHECK(r.n_tensors == 0 && r.tensors == NULL && r.storages == NULL);
	if (!s)
		muse_pickle_result_free(&r);
}

static void begin_dict(pb *b)
{
	b->n = 0;
	pb_raw(b, "\x80\x02}(", 4);
}

static void end_dict(pb *b)
{
	pb_raw(b, "u.", 2);
}

static void test_state_dict(void)
{
	pb b;
	begin_dict(&b);
	uint32_t sz[2] = { 2, 3 }, st[2] = { 3, 1 }, tst[2] = { 1, 2 };
	pb_tensor(&b, "w", "FloatStorage", "0", 6, 0, sz, st, 2);
	pb_tensor(&b, "wt", "FloatStorage", "0", 6, 0, sz, tst, 2); /* same storage, transposed */
	pb_tensor(&b, "h", "HalfStorage", "1", 300, 7, sz + 1, st + 1, 1);
	pb_str(&b, "step");
	pb_int(&b, 5); /* a non-tensor value: skipped */
	end_dict(&b);
	muse_pickle_result r;
	muse_err err = { 0 };
	CHECK(load(&b, &r, &err) == MUSE_OK);
	if (err.code)
		printf("#   %s\n", err.msg);
	CHECK_EQ_U64(r.n_tensors, 3);
	CHECK_EQ_U64(r.n_storages, 2);
	CHECK_EQ_U64(r.protocol, 2);
	if (r.n_tensors == 3 && r.n_storages == 2) {
		CHECK(!strcmp(r.tensors[0].name, "w") && !strcmp(r.tensors[1].name, "wt"));
		CHECK(r.tensors[0].dtype == MUSE_DT_F32 && r.tensors[2].dtype == MUSE_DT_F16);
		CHECK(r.tensors[0].storage == r.tensors[1].storage);
		CHECK_EQ_U64(r.tensors[1].stride[1], 2);
		CHECK_EQ_U64(r.tensors[2].offset, 7);
		CHECK_EQ_U64(r.tensors[2].ndim, 1);
		CHECK_EQ_U64(r.tensors[2].size[0], 3);
		CHECK(!strcmp(r.storages[1].key, "1") && r.storages[1].numel == 300);
		CHECK(!strcmp(r.storages[0].type_name, "torch.FloatStorage"));
	}
	muse_pickle_result_free(&r);
	muse_pickle_result_free(&r);
}

static void test_nested_and_int_keys(void)
{
	pb b;
	begin_dict(&b);
	pb_str(&b, "model");
	pb_raw(&b, "}(", 2);
	uint32_t sz = 4, st = 1;
	pb_tensor(&b, "w", "FloatStorage", "0", 4, 0, &sz, &st, 1);
	pb_op(&b, 'u');
	pb_str(&b, "opt");
	pb_raw(&b, "}(", 2);
	pb_int(&b, 3);
	pb_raw(&b, "]", 1);
	pb_tensor(&b, "ignored-key", "FloatStorage", "0", 4, 0, &sz, &st, 1);
	pb_raw(&b, "s", 1); /* stack: list, key, tensor: SETITEM into a list must fail */
	end_dict(&b);
	expect_fail(&b, "SETITEM on a list");

	begin_dict(&b);
	pb_str(&b, "model");
	pb_raw(&b, "}(", 2);
	pb_tensor(&b, "w", "FloatStorage", "0", 4, 0, &sz, &st, 1);
	pb_op(&b, 'u');
	pb_str(&b, "opt");
	pb_raw(&b, "}(", 2);
	pb_int(&b, 3);
	pb_raw(&b, "}(", 2);
	pb_tensor(&b, "m", "FloatStorage", "1", 4, 0, &sz, &st, 1);
	pb_raw(&b, "uu", 2);
	end_dict(&b);
	muse_pickle_result r;
	muse_err err = { 0 };
	CHECK(load(&b, &r, &err) == MUSE_OK);
	if (err.code)
		printf("#   %s\n", err.msg);
	CHECK_EQ_U64(r.n_tensors, 2);
	if (r.n_tensors == 2) {
		CHECK(!strcmp(r.tensors[0].name, "model.w"));
		CHECK(!strcmp(r.tensors[1].name, "opt.3.m"));
	}
	muse_pickle_result_free(&r);
}

static void test_protocol4(void)
{
	/* torch.save(..., pickle_protocol=4) shape: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, v3 + dtype. */
	static const uint8_t p4[] =
		"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" /* FRAME length patched below */
		"}\x94(\x8c\x01" "b\x94"
		"\x8c\x0ctorch._utils\x94\x8c\x12_rebuild_tensor_v3\x94\x93\x94"
		"((\x8c\x07storage\x94\x8c\x0dtorch.storage\x94\x8c\x0eUntypedStorage\x94\x93\x94"
		"\x8c\x01" "1\x94\x8c\x03" "cpu\x94K\x03t\x94Q"
		"K\x00K\x03\x85\x94K\x01\x85\x94\x89"
		"\x8c\x0b" "collections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94"
		"\x8c\x05torch\x94\x8c\x0d" "float8_e4m3fn\x94\x93\x94t\x94R\x94u.";
	pb b = { .n = 0 };
	pb_raw(&b, p4, sizeof p4 - 1);
	uint64_t flen = b.n - 11;
	memcpy(b.p + 3, &flen, 8);
	muse_pickle_result r;
	muse_err err = { 0 };
	CHECK(load(&b, &r, &err) == MUSE_OK);
	if (err.code)
		printf("#   %s\n", err.msg);
	CHECK_EQ_U64(r.n_tensors, 1);
	CHECK_EQ_U64(r.protocol, 4);
	if (r.n_tensors == 1) {
		CHECK(r.tensors[0].dtype == MUSE_DT_F8_E4M3);
		CHECK(r.storages[0].untyped && r.storages[0].numel == 3);
	}
	muse_pickle_result_free(&r);
	/* FRAME longer than the rest of the input */
	flen = 1ull << 40;
	memcpy(b.p + 3, &flen, 8);
	expect_fail(&b, "FRAME of 1099511627776 bytes");
	/* protocol-4 opcodes in a protocol-2 pickle */
	b.p[1] = 2;
	expect_fail(&b, "protocol 4 opcode");
}

static void test_disallowed_globals(void)
{
	const char *mods[] = { "os", "posix", "nt", "builtins", "builtins", "subprocess", "runpy", "pip", "torch",
			       "torch._utils", "__builtin__" };
	const char *names[] = { "system", "system", "system", "eval", "getattr", "Popen", "_run_code", "main",
				"load", "_rebuild_qtensor", "exec" };
	for (size_t i = 0; i < sizeof mods / sizeof *mods; i++) {
		pb b = { .n = 0 };
		pb_raw(&b, "\x80\x02", 2);
		pb_global(&b, mods[i], names[i]);
		pb_str(&b, "touch /tmp/pwned");
		pb_raw(&b, "\x85R.", 3);
		char full[128];
		snprintf(full, sizeof full, "global '%s.%s'", mods[i], names[i]);
		expect_fail(&b, full);
		/* the error points at the GLOBAL opcode: pickle byte 2 = file byte 1002 */
		muse_pickle_result r;
		muse_err err = { 0 };
		load(&b, &r, &err);
		CHECK(strstr(err.msg, "m.bin: byte 1002: m/data.pkl byte 2: ") == err.msg);
	}
	/* STACK_GLOBAL with strings fetched from the memo */
	pb b = { .n = 0 };
	pb_raw(&b, "\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93)R.", 25);
	expect_fail(&b, "global 'os.system' is not allowed");
	/* malformed and oversized names */
	b.n = 0;
	pb_raw(&b, "\x80\x02" "cos system\nx\n)R.", 18);
	expect_fail(&b, "malformed global name");
	b.n = 0;
	pb_raw(&b, "\x80\x02" "c", 3);
	for (int i = 0; i < 300; i++)
		pb_op(&b, 'a');
	expect_fail(&b, "GLOBAL module longer than 256 bytes");
	b.n = 0;
	pb_raw(&b, "\x80\x02" "cos", 5);
	expect_fail(&b, "no terminating newline");
}

static void test_refused_opcodes(void)
{
	const char *ops[] = { "i", "o", "\x92", "\x82", "\x83", "\x84", "P", "0", "2", "\x97", "\x98", "\x8e",
			      "\x8b", "B", "\x90", "l", "d", "S", "I" };
	for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
		pb b = { .n = 0 };
		pb_raw(&b, "\x80\x02", 2);
		pb_raw(&b, ops[i], 1);
		pb_raw(&b, ".", 1);
		expect_fail(&b, "is not allowed");
	}
	pb b = { .n = 0 };
	pb_raw(&b, "\x80\x06}.", 4);
	expect_fail(&b, "protocol 6");
	b.n = 0;
	pb_raw(&b, "}.", 2);
	expect_fail(&b, "does not start with PROTO");
}

static void test_structure_errors(void)
{
	pb b = { .n = 0 };
	pb_raw(&b, "\x80\x02}(.", 5);
	expect_fail(&b, "unclosed MARK");
	b.n = 0;
	pb_raw(&b, "\x80\x02}s.", 5);
	expect_fail(&b, "SETITEM needs 3 stack items");
	b.n = 0;
	pb_raw(&b, "\x80\x02}(Ns.", 7);
	expect_fail(&b, "above the last MARK");
	b.n = 0;
	pb_raw(&b, "\x80\x02}h\x05.", 6);
	expect_fail(&b, "memo index 5, which was never set");
	b.n = 0;
	pb_raw(&b, "\x80\x02}", 3);
	expect_fail(&b, "ends without STOP");
	b.n = 0;
	pb_raw(&b, "\x80\x02}.\x80\x02}.", 8);
	expect_fail(&b, "4 bytes after STOP");
	b.n = 0;
	pb_raw(&b, "\x80\x02X\xff\xff\xff\x7f", 7);
	expect_fail(&b, "truncated");
	b.n = 0;
	pb_raw(&b, "\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x80", 11);
	expect_fail(&b, "BINUNICODE8 of 9223372036854775808 bytes");
	b.n = 0;
	pb_raw(&b, "\x80\x02X\x02\x00\x00\x00\xc3\x28.", 10);
	expect_fail(&b, "not valid UTF-8");
	b.n = 0;
	pb_raw(&b, "\x80\x02]N.", 5);
	expect_fail(&b, "STOP with 2 stack items");
	b.n = 0;
	pb_raw(&b, "\x80\x02](NNu.", 8);
	expect_fail(&b, "SETITEMS on a list");
	b.n = 0;
	pb_raw(&b, "\x80\x02}(Nu.", 7);
	expect_fail(&b, "odd number");
	b.n = 0;
	pb_raw(&b, "\x80\x02]}b.", 6);
	expect_fail(&b, "BUILD on a list");
	b.n = 0;
	pb_raw(&b, "\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R.", 33);
	expect_fail(&b, "OrderedDict called with 1 arguments");
	b.n = 0;
	pb_raw(&b, "\x80\x02" "ctorch\nFloatStorage\n)R.", 24);
	expect_fail(&b, "cannot be called");
	b.n = 0;
	pb_raw(&b, "\x80\x02]K\x01\x85Q.", 8);
	expect_fail(&b, "persistent id is not ('storage'");
	b.n = 0;
	pb_raw(&b, "\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14);
	expect_fail(&b, "does not fit in 64 bits");
	b.n = 0;
	pb_raw(&b, "\x80\x02K\x01.", 5);
	expect_fail(&b, "top-level object is a int");
}

static void test_sparse_memo(void)
{
	/* LONG_BINPUT 2^32-1 is one hash slot, not a 32 GiB array. */
	pb b = { .n = 0 };
	pb_raw(&b, "\x80\x02}r\xff\xff\xff\xff" "0.", 9);
	b.n = 0;
	pb_raw(&b, "\x80\x02]r\xff\xff\xff\xffj\xff\xff\xff\xff" "a}.", 16);
	/* the list got itself appended, then a dict replaced... STOP sees 2 items */
	expect_fail(&b, "STOP with 2 stack items");
	b.n = 0;
	pb_raw(&b, "\x80\x02}r\xff\xff\xff\xff" "j\xff\xff\xff\xff" "N" "s.", 15);
	muse_pickle_result r;
	muse_err err = { 0 };
	CHECK(load(&b, &r, &err) != MUSE_OK || r.n_tensors == 0);
	muse_pickle_result_free(&r);
}

static void test_deep_nesting(void)
{
	/* {"x": [[[[...]]]]} 200000 levels: built without recursion, refused by the walk's depth cap. */
	size_t depth = 200000;
	size_t cap = 16 + 2 * depth + 8;
	uint8_t *p = malloc(cap);
	size_t n = 0;
	memcpy(p, "\x80\x02}X\x01\x00\x00\x00x", 9);
	n = 9;
	for (size_t i = 0; i < depth; i++)
		p[n++] = ']';
	for (size_t i = 0; i + 1 < depth; i++)
		p[n++] = 'a';
	p[n++] = 's';
	p[n++] = '.';
	muse_pickle_result r;
	muse_err err = { 0 };
	muse_status s = muse_pickle_load_tensors(p, n, &ctx, &r, &err);
	CHECK(s == MUSE_ERR_LIMIT);
	CHECK(strstr(err.msg, "nested deeper than 8") != NULL);
	free(p);

	/* 300 open MARKs */
	pb m = { .n = 0 };
	pb_raw(&m, "\x80\x02", 2);
	for (int i = 0; i < 300; i++)
		pb_op(&m, '(');
	expect_fail(&m, "more than 256 nested MARKs");
}

static void test_tensor_args(void)
{
	uint32_t sz[2] = { 2, 3 }, st[2] = { 3, 1 };
	pb b;
	begin_dict(&b);
	pb_tensor(&b, "q", "QInt8Storage", "0", 6, 0, sz, st, 2);
	end_dict(&b);
	expect_fail(&b, "tensor 'q': element type torch.QInt8Storage is not supported");

	begin_dict(&b);
	pb_tensor(&b, "w", "FloatStorage", "0", 6, 0, sz, st, 2);
	pb_tensor(&b, "w", "FloatStorage", "0", 6, 0, sz, st, 2);
	end_dict(&b);
	expect_fail(&b, "duplicate tensor name 'w'");

	begin_dict(&b);
	pb_tensor(&b, "a", "FloatStorage", "0", 6, 0, sz, st, 2);
	pb_tensor(&b, "b", "HalfStorage", "0", 6, 0, sz, st, 2);
	end_dict(&b);
	expect_fail(&b, "storage '0' declared again as torch.HalfStorage");

	begin_dict(&b);
	pb_tensor(&b, "a", "FloatStorage", "../x", 6, 0, sz, st, 2);
	end_dict(&b);
	expect_fail(&b, "storage key '../x'");

	begin_dict(&b);
	pb_tensor(&b, "a", "FooStorage", "0", 6, 0, sz, st, 2);
	end_dict(&b);
	expect_fail(&b, "global 'torch.FooStorage' is not allowed");

	uint32_t big[10] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	begin_dict(&b);
	pb_tensor(&b, "a", "FloatStorage", "0", 6, 0, big, big, 10);
	end_dict(&b);
	expect_fail(&b, "10 dimensions");

	begin_dict(&b);
	pb_tensor(&b, "a", "FloatStorage", "0", 6, 0, sz, st, 1);
	/* patch: size tuple has 1 dim, stride 1 dim: fine; now a mismatch */
	end_dict(&b);
	muse_pickle_result r;
	muse_err err = { 0 };
	CHECK(load(&b, &r, &err) == MUSE_OK);
	muse_pickle_result_free(&r);

	/* negative size via BININT -1 */
	begin_dict(&b);
	pb_str(&b, "neg");
	pb_global(&b, "torch._utils", "_rebuild_tensor_v2");
	pb_raw(&b, "((", 2);
	pb_str(&b, "storage");
	pb_global(&b, "torch", "FloatStorage");
	pb_str(&b, "0");
	pb_str(&b, "cpu");
	pb_int(&b, 4);
	pb_raw(&b, "tQK\x00(J\xff\xff\xff\xfft(K\x01t\x89", 16);
	pb_global(&b, "collections", "OrderedDict");
	pb_raw(&b, ")RtR", 4);
	end_dict(&b);
	expect_fail(&b, "size[0] is negative");
}

static void test_self_reference(void)
{
	/* {"x": L} where L holds itself 2^21 times: no recursion, no blow-up, refused by the walk's depth cap. */
	size_t reps = 1u << 21;
	uint8_t *p = malloc(32 + reps * 3);
	size_t n = 0;
	memcpy(p, "\x80\x02}X\x01\x00\x00\x00x]q\x00", 12);
	n = 12;
	for (size_t i = 0; i < reps; i++) {
		p[n++] = 'h';
		p[n++] = 0;
		p[n++] = 'a';
	}
	p[n++] = 's';
	p[n++] = '.';
	muse_pickle_result r;
	muse_err err = { 0 };
	muse_status s = muse_pickle_load_tensors(p, n, &ctx, &r, &err);
	CHECK(s == MUSE_ERR_LIMIT);
	CHECK(strstr(err.msg, "nested deeper than 8") != NULL);
	free(p);
}

int main(void)
{
	unit_file_name = "pickle";
	RUN(test_state_dict);
	RUN(test_nested_and_int_keys);
	RUN(test_protocol4);
	RUN(test_disallowed_globals);
	RUN(test_refused_opcodes);
	RUN(test_structure_errors);
	RUN(test_sparse_memo);
	RUN(test_deep_nesting);
	RUN(test_tensor_args);
	RUN(test_self_reference);
	UNIT_MAIN_END();
}
