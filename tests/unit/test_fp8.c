/* test_fp8.c: block-scaled FP8 dequantization (formats/fp8.c) against values worked out by hand. */
#include <math.h>
#include <string.h>

#include "../../formats/fp8.h"
#include "unit.h"

/* E4M3 bytes: 0x38 = 1.0, 0x40 = 2.0, 0xB8 = -1.0, 0x7E = 448 (max), 0x01 = 2^-9 (min subnormal), 0x7F = NaN. */
static void test_values(void)
{
	muse_fp8_scales s;
	const float scale[1] = { 0.5f };
	uint64_t one = 1;
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 1, 6, NULL, MUSE_DT_F32, 1, &one, (const uint8_t *)scale, NULL) ==
	      MUSE_OK);
	const uint8_t q[6] = { 0x38, 0x40, 0xB8, 0x7E, 0x01, 0x7F };
	float d[6];
	muse_fp8_dequant_row(&s, q, 0, d);
	CHECK(d[0] == 0.5f && d[1] == 1.0f && d[2] == -0.5f && d[3] == 224.0f && d[4] == ldexpf(1.0f, -10));
	CHECK(isnan(d[5]));
}

/* A 3 x 5 weight in 2 x 2 blocks: a 2 x 3 grid whose last row and column are partial. */
static void test_blocks(void)
{
	muse_fp8_scales s;
	const float grid[6] = { 1, 2, 4, 8, 16, 32 };
	const uint64_t gshape[2] = { 2, 3 }, block[2] = { 2, 2 };
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, block, MUSE_DT_F32, 2, gshape, (const uint8_t *)grid,
				   NULL) == MUSE_OK);
	uint8_t q[5];
	memset(q, 0x38, sizeof q); /* 1.0 */
	float d[5];
	const float want[3][5] = { { 1, 1, 2, 2, 4 }, { 1, 1, 2, 2, 4 }, { 8, 8, 16, 16, 32 } };
	for (uint64_t r = 0; r < 3; r++) {
		muse_fp8_dequant_row(&s, q, r, d);
		CHECK(!memcmp(d, want[r], sizeof d));
	}
	/* BF16 scales: 0x4040 = 3.0; one product, no double rounding: 1.125 * 3 = 3.375 exactly. */
	const uint16_t bgrid[6] = { 0x4040, 0x4040, 0x4040, 0x4040, 0x4040, 0x4040 };
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, block, MUSE_DT_BF16, 2, gshape, (const uint8_t *)bgrid,
				   NULL) == MUSE_OK);
	memset(q, 0x39, sizeof q); /* 1.125 */
	muse_fp8_dequant_row(&s, q, 2, d);
	CHECK(d[0] == 3.375f && d[4] == 3.375f);
	/* Per-row scales without a block size. */
	const float rows[3] = { 1, 2, 3 };
	uint64_t three = 3;
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E5M2, 3, 5, NULL, MUSE_DT_F32, 1, &three, (const uint8_t *)rows, NULL) ==
	      MUSE_OK);
	memset(q, 0x3C, sizeof q); /* E5M2 1.0 */
	muse_fp8_dequant_row(&s, q, 2, d);
	CHECK(d[0] == 3.0f && d[4] == 3.0f);
}

static void test_refusals(void)
{
	muse_fp8_scales s;
	muse_err err = { 0 };
	const uint64_t block[2] = { 2, 2 }, zero[2] = { 0, 2 };
	uint64_t g[2] = { 2, 2 }; /* a 3 x 5 weight needs 2 x 3 */
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, block, MUSE_DT_F32, 2, g, NULL, &err) == MUSE_ERR_FORMAT);
	CHECK(strstr(err.msg, "needs 2 x 3") != NULL);
	g[1] = 3;
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, zero, MUSE_DT_F32, 2, g, NULL, &err) == MUSE_ERR_FORMAT);
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, block, MUSE_DT_F8_E4M3, 2, g, NULL, &err) ==
	      MUSE_ERR_UNSUPPORTED);
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_Q8_0, 3, 5, block, MUSE_DT_F32, 2, g, NULL, &err) == MUSE_ERR_UNSUPPORTED);
	uint64_t four = 4; /* neither one scale nor one per row */
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, NULL, MUSE_DT_F32, 1, &four, NULL, &err) == MUSE_ERR_FORMAT);
	uint64_t huge[2] = { UINT64_MAX, 3 };
	CHECK(muse_fp8_scales_init(&s, MUSE_DT_F8_E4M3, 3, 5, NULL, MUSE_DT_F32, 2, huge, NULL, &err) == MUSE_ERR_LIMIT);
}

int main(void)
{
	unit_file_name = "fp8";
	RUN(test_values);
	RUN(test_blocks);
	RUN(test_refusals);
	UNIT_MAIN_END();
}
