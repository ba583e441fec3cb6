/* dtype.c: the dtype traits table and name/id lookups. Conversions live in dtype_convert.c. */
#include "dtype.h"

#include <string.h>
#include <strings.h>

#include "block_layout.h"
#include "checked.h"

/* name, blck, block_bytes, ggml_id, safetensors name, float, int, quant; block types from block_layout.h */
static const muse_dtype_traits traits[MUSE_DT_COUNT] = {
	[MUSE_DT_INVALID] = { "INVALID", 0, 0, -1, NULL, false, false, false },
	[MUSE_DT_F64] = { "F64", 1, 8, 28, "F64", true, false, false },
	[MUSE_DT_F32] = { "F32", 1, 4, 0, "F32", true, false, false },
	[MUSE_DT_F16] = { "F16", 1, 2, 1, "F16", true, false, false },
	[MUSE_DT_BF16] = { "BF16", 1, 2, 30, "BF16", true, false, false },
	[MUSE_DT_F8_E4M3] = { "F8_E4M3", 1, 1, -1, "F8_E4M3", true, false, false },
	[MUSE_DT_F8_E5M2] = { "F8_E5M2", 1, 1, -1, "F8_E5M2", true, false, false },
	[MUSE_DT_F8_E8M0] = { "F8_E8M0", 1, 1, -1, "F8_E8M0", true, false, false },
	[MUSE_DT_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 1, 1, -1, "F8_E4M3FNUZ", true, false, false },
	[MUSE_DT_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 1, 1, -1, "F8_E5M2FNUZ", true, false, false },
	[MUSE_DT_F6_E2M3] = { "F6_E2M3", 4, 3, -1, "F6_E2M3", true, false, false },
	[MUSE_DT_F6_E3M2] = { "F6_E3M2", 4, 3, -1, "F6_E3M2", true, false, false },
	[MUSE_DT_F4] = { "F4", 2, 1, -1, "F4", true, false, false },
	[MUSE_DT_I8] = { "I8", 1, 1, 24, "I8", false, true, false },
	[MUSE_DT_I16] = { "I16", 1, 2, 25, "I16", false, true, false },
	[MUSE_DT_I32] = { "I32", 1, 4, 26, "I32", false, true, false },
	[MUSE_DT_I64] = { "I64", 1, 8, 27, "I64", false, true, false },
	[MUSE_DT_U8] = { "U8", 1, 1, -1, "U8", false, true, false },
	[MUSE_DT_U16] = { "U16", 1, 2, -1, "U16", false, true, false },
	[MUSE_DT_U32] = { "U32", 1, 4, -1, "U32", false, true, false },
	[MUSE_DT_U64] = { "U64", 1, 8, -1, "U64", false, true, false },
	[MUSE_DT_BOOL] = { "BOOL", 1, 1, -1, "BOOL", false, true, false },
	[MUSE_DT_C64] = { "C64", 1, 8, -1, "C64", false, false, false },
	[MUSE_DT_C128] = { "C128", 1, 16, -1, NULL, false, false, false },
	[MUSE_DT_Q4_0] = { "Q4_0", MUSE_QK4_0, sizeof(muse_block_q4_0), 2, NULL, false, false, true },
	[MUSE_DT_Q4_1] = { "Q4_1", MUSE_QK4_1, sizeof(muse_block_q4_1), 3, NULL, false, false, true },
	[MUSE_DT_Q5_0] = { "Q5_0", MUSE_QK5_0, sizeof(muse_block_q5_0), 6, NULL, false, false, true },
	[MUSE_DT_Q5_1] = { "Q5_1", MUSE_QK5_1, sizeof(muse_block_q5_1), 7, NULL, false, false, true },
	[MUSE_DT_Q8_0] = { "Q8_0", MUSE_QK8_0, sizeof(muse_block_q8_0), 8, NULL, false, false, true },
	[MUSE_DT_Q8_1] = { "Q8_1", MUSE_QK8_1, sizeof(muse_block_q8_1), 9, NULL, false, false, true },
	[MUSE_DT_Q2_K] = { "Q2_K", MUSE_QK_K, sizeof(muse_block_q2_k), 10, NULL, false, false, true },
	[MUSE_DT_Q3_K] = { "Q3_K", MUSE_QK_K, sizeof(muse_block_q3_k), 11, NULL, false, false, true },
	[MUSE_DT_Q4_K] = { "Q4_K", MUSE_QK_K, sizeof(muse_block_q4_k), 12, NULL, false, false, true },
	[MUSE_DT_Q5_K] = { "Q5_K", MUSE_QK_K, sizeof(muse_block_q5_k), 13, NULL, false, false, true },
	[MUSE_DT_Q6_K] = { "Q6_K", MUSE_QK_K, sizeof(muse_block_q6_k), 14, NULL, false, false, true },
	[MUSE_DT_Q8_K] = { "Q8_K", MUSE_QK_K, sizeof(muse_block_q8_k), 15, NULL, false, false, true },
	[MUSE_DT_IQ2_XXS] = { "IQ2_XXS", MUSE_QK_K, sizeof(muse_block_iq2_xxs), 16, NULL, false, false, true },
	[MUSE_DT_IQ2_XS] = { "IQ2_XS", MUSE_QK_K, sizeof(muse_block_iq2_xs), 17, NULL, false, false, true },
	[MUSE_DT_IQ3_XXS] = { "IQ3_XXS", MUSE_QK_K, sizeof(muse_block_iq3_xxs), 18, NULL, false, false, true },
	[MUSE_DT_IQ1_S] = { "IQ1_S", MUSE_QK_K, sizeof(muse_block_iq1_s), 19, NULL, false, false, true },
	[MUSE_DT_IQ4_NL] = { "IQ4_NL", MUSE_QK4_NL, sizeof(muse_block_iq4_nl), 20, NULL, false, false, true },
	[MUSE_DT_IQ3_S] = { "IQ3_S", MUSE_QK_K, sizeof(muse_block_iq3_s), 21, NULL, false, false, true },
	[MUSE_DT_IQ2_S] = { "IQ2_S", MUSE_QK_K, sizeof(muse_block_iq2_s), 22, NULL, false, false, true },
	[MUSE_DT_IQ4_XS] = { "IQ4_XS", MUSE_QK_K, sizeof(muse_block_iq4_xs), 23, NULL, false, false, true },
	[MUSE_DT_IQ1_M] = { "IQ1_M", MUSE_QK_K, sizeof(muse_block_iq1_m), 29, NULL, false, false, true },
	[MUSE_DT_TQ1_0] = { "TQ1_0", MUSE_QK_K, sizeof(muse_block_tq1_0), 34, NULL, false, false, true },
	[MUSE_DT_TQ2_0] = { "TQ2_0", MUSE_QK_K, sizeof(muse_block_tq2_0), 35, NULL, false, false, true },
	[MUSE_DT_MXFP4] = { "MXFP4", MUSE_QK_MXFP4, sizeof(muse_block_mxfp4), 39, NULL, false, false, true },
	[MUSE_DT_NVFP4] = { "NVFP4", MUSE_QK_NVFP4, sizeof(muse_block_nvfp4), 40, NULL, false, false, true },
	[MUSE_DT_Q1_0] = { "Q1_0", MUSE_QK1_0, sizeof(muse_block_q1_0), 41, NULL, false, false, true },
};

const muse_dtype_traits *muse_dtype_info(muse_dtype t)
{
	if ((int)t <= MUSE_DT_INVALID || t >= MUSE_DT_COUNT)
		return NULL;
	return &traits[t];
}

const char *muse_dtype_name(muse_dtype t)
{
	const muse_dtype_traits *tr = muse_dtype_info(t);
	return tr ? tr->name : "?";
}

muse_dtype muse_dtype_from_ggml(uint32_t ggml_id)
{
	for (int t = 1; t < MUSE_DT_COUNT; t++)
		if (traits[t].ggml_id >= 0 && (uint32_t)traits[t].ggml_id == ggml_id)
			return (muse_dtype)t;
	return MUSE_DT_INVALID;
}

muse_dtype muse_dtype_from_st(const char *st_name)
{
	for (int t = 1; t < MUSE_DT_COUNT; t++)
		if (traits[t].st_name && !strcmp(traits[t].st_name, st_name))
			return (muse_dtype)t;
	return MUSE_DT_INVALID;
}

muse_dtype muse_dtype_from_name(const char *name)
{
	for (int t = 1; t < MUSE_DT_COUNT; t++)
		if (!strcasecmp(traits[t].name, name))
			return (muse_dtype)t;
	return MUSE_DT_INVALID;
}

bool muse_dtype_nbytes(muse_dtype t, uint64_t n, uint64_t *out)
{
	const muse_dtype_traits *tr = muse_dtype_info(t);
	if (!tr || n % tr->blck)
		return false;
	return muse_mul_u64(n / tr->blck, tr->block_bytes, out);
}
