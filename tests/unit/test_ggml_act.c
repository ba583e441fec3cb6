/* test_ggml_act.c: llama.cpp CPU's activation rounding (issue 12 item 9): vec_dot_type per weight type, Q8_0/Q8_K/F16 values on ties and scales. */
#include <math.h>
#include <string.h>

#include "../../quant/ggml_act.h"
#include "unit.h"

static void test_types(void)
{
	/* type_traits_cpu[].vec_dot_type of ggml-cpu.c */
	static const struct {
		muse_dtype w, a;
	} rows[] = {
		{ MUSE_DT_F32, MUSE_DT_F32 },     { MUSE_DT_F16, MUSE_DT_F16 },     { MUSE_DT_BF16, MUSE_DT_BF16 },
		{ MUSE_DT_Q4_0, MUSE_DT_Q8_0 },   { MUSE_DT_Q5_0, MUSE_DT_Q8_0 },   { MUSE_DT_Q8_0, MUSE_DT_Q8_0 },
		{ MUSE_DT_IQ4_NL, MUSE_DT_Q8_0 }, { MUSE_DT_MXFP4, MUSE_DT_Q8_0 },  { MUSE_DT_Q4_1, MUSE_DT_Q8_1 },
		{ MUSE_DT_Q5_1, MUSE_DT_Q8_1 },   { MUSE_DT_Q2_K, MUSE_DT_Q8_K },   { MUSE_DT_Q4_K, MUSE_DT_Q8_K },
		{ MUSE_DT_Q6_K, MUSE_DT_Q8_K },   { MUSE_DT_IQ4_XS, MUSE_DT_Q8_K }, { MUSE_DT_IQ2_XXS, MUSE_DT_Q8_K },
		{ MUSE_DT_TQ2_0, MUSE_DT_Q8_K },  { MUSE_DT_I32, MUSE_DT_F32 },
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
		CHECK(muse_ggml_act_type(rows[i].w) == rows[i].a);
}

static void test_q8_0(void)
{
	/* amax 127: d = 1 exactly, multiplier 1; x86's _mm256_round_ps sends ties to even (the reference's roundf would not). */
	float x[64] = { 2.5f, 3.5f, -2.5f, -127.0f, 0.49f, 126.5f };
	muse_ggml_act_round(MUSE_DT_Q8_0, x, 32);
	CHECK(x[0] == 2.0f && x[1] == 4.0f && x[2] == -2.0f && x[3] == -127.0f && x[4] == 0.0f && x[5] == 126.0f);
	/* amax 1: d = 1/127 stored as fp16, so 1.0 comes back as 127 * fp16(1/127), not 1.0. */
	for (int j = 0; j < 32; j++)
		x[32 + j] = j == 7 ? 1.0f : 0.25f;
	muse_ggml_act_round(MUSE_DT_Q8_1, x + 32, 32);
	float d = muse_f16_to_f32(muse_f32_to_f16(1.0f / 127.f));
	CHECK(d != 1.0f / 127.f);
	CHECK(x[39] == d * 127.0f && x[32] == d * 32.0f); /* 0.25 * 127 = 31.75 -> 32 */
	/* an all-zero block stays zero */
	float z[32] = { 0 };
	muse_ggml_act_round(MUSE_DT_Q8_0, z, 32);
	for (int j = 0; j < 32; j++)
		CHECK(z[j] == 0.0f);
}

static void test_q8_1_sum(void)
{
	/* Q8_1's s = fp16(d * sum q), d unrounded: here d = 1 and sum q = 127 + 31 * 62 = 2049, which fp16 holds as 2048. */
	float x[64], se[2];
	for (int j = 0; j < 32; j++)
		x[j] = j ? 62.0f : 127.0f;
	for (int j = 32; j < 64; j++)
		x[j] = j == 32 ? -127.0f : 1.0f; /* sum -96: exact in fp16 */
	muse_ggml_act_round_q8_1(x, 64, se);
	CHECK(se[0] == -1.0f && se[1] == 0.0f);
	CHECK(x[0] == 127.0f && x[1] == 62.0f && x[32] == -127.0f && x[33] == 1.0f);
}

static void test_q8_k(void)
{
	/* The signed element of largest magnitude sets iscale = -127 / max (here 64 exactly); d = 1 / iscale stays a float. */
	const float m = 127.0f / 64.0f;
	float x[256] = { 0 };
	x[3] = -m;
	x[5] = m;              /* a tie in magnitude: the first one wins; d * q is the same either way */
	x[9] = 1.5f / 64.0f;   /* 1.5 -> 2 */
	x[10] = 2.5f / 64.0f;  /* 2.5 -> 2: ties to even (nearest_int) */
	x[11] = -0.5f / 64.0f; /* -0.5 -> 0 */
	x[12] = 0.3f;          /* 19.2 -> 19 */
	muse_ggml_act_round(MUSE_DT_Q8_K, x, 256);
	const float d = 1.0f / 64.0f;
	CHECK(x[3] == -m && x[5] == m);
	CHECK(x[9] == 2 * d && x[10] == 2 * d && x[11] == 0.0f && x[12] == 19 * d && x[0] == 0.0f);
	float z[256] = { 0 };
	muse_ggml_act_round(MUSE_DT_Q8_K, z, 256);
	CHECK(z[0] == 0.0f && z[255] == 0.0f);
}

static void test_half(void)
{
	float x[3] = { 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 70000.0f };
	muse_ggml_act_round(MUSE_DT_F16, x, 3);
	CHECK(x[0] == 1.0f && x[1] == 1.0f + 0x1p-9f && isinf(x[2]));
	float y[2] = { 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f };
	muse_ggml_act_round(MUSE_DT_BF16, y, 2);
	CHECK(y[0] == 1.0f && y[1] == 1.0f + 0x1p-6f);
	float f[2] = { 0.1f, -3.3f };
	muse_ggml_act_round(MUSE_DT_F32, f, 2);
	CHECK(f[0] == 0.1f && f[1] == -3.3f);
}

int main(void)
{
	unit_file_name = "ggml_act";
	RUN(test_types);
	RUN(test_q8_0);
	RUN(test_q8_1_sum);
	RUN(test_q8_k);
	RUN(test_half);
	UNIT_MAIN_END();
}
