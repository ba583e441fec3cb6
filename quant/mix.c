/* mix.c: llama-quantize's per-tensor type decisions (llama-quant.cpp's llama_tensor_get_type and friends), for identical files. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "../lib/path.h"
#include "mix.h"

#include <ctype.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Everything here mirrors a decision of llama.cpp's src/llama-quant.cpp
 * (the vendored tree in .cache/llama.cpp/src): the file type table, the
 * tensor categories, which tensors are quantized at all, the mix rules
 * with their running counters, and the fallback for rows that are not
 * whole blocks. Where llama.cpp's behaviour looks accidental it is kept
 * anyway (the goal is the same file), with a comment saying so.
 */

/* ---- file types ---- */

typedef struct ftype_row {
	const char *name;
	muse_ftype ftype;
} ftype_row;

/* llama-quantize's QUANT_OPTIONS order; the aliases map to the _M mixes. */
static const ftype_row ftypes[] = {
	{ "Q1_0", MUSE_FTYPE_Q1_0 },       { "Q4_0", MUSE_FTYPE_Q4_0 },       { "Q4_1", MUSE_FTYPE_Q4_1 },
	{ "MXFP4_MOE", MUSE_FTYPE_MXFP4_MOE }, { "Q5_0", MUSE_FTYPE_Q5_0 },   { "Q5_1", MUSE_FTYPE_Q5_1 },
	{ "IQ2_XXS", MUSE_FTYPE_IQ2_XXS }, { "IQ2_XS", MUSE_FTYPE_IQ2_XS },   { "IQ2_S", MUSE_FTYPE_IQ2_S },
	{ "IQ2_M", MUSE_FTYPE_IQ2_M },     { "IQ1_S", MUSE_FTYPE_IQ1_S },     { "IQ1_M", MUSE_FTYPE_IQ1_M },
	{ "TQ1_0", MUSE_FTYPE_TQ1_0 },     { "TQ2_0", MUSE_FTYPE_TQ2_0 },     { "Q2_K", MUSE_FTYPE_Q2_K },
	{ "Q2_K_S", MUSE_FTYPE_Q2_K_S },   { "IQ3_XXS", MUSE_FTYPE_IQ3_XXS }, { "IQ3_S", MUSE_FTYPE_IQ3_S },
	{ "IQ3_M", MUSE_FTYPE_IQ3_M },     { "Q3_K", MUSE_FTYPE_Q3_K_M },     { "IQ3_XS", MUSE_FTYPE_IQ3_XS },
	{ "Q3_K_S", MUSE_FTYPE_Q3_K_S },   { "Q3_K_M", MUSE_FTYPE_Q3_K_M },   { "Q3_K_L", MUSE_FTYPE_Q3_K_L },
	{ "IQ4_NL", MUSE_FTYPE_IQ4_NL },   { "IQ4_XS", MUSE_FTYPE_IQ4_XS },   { "Q4_K", MUSE_FTYPE_Q4_K_M },
	{ "Q4_K_S", MUSE_FTYPE_Q4_K_S },   { "Q4_K_M", MUSE_FTYPE_Q4_K_M },   { "Q5_K", MUSE_FTYPE_Q5_K_M },
	{ "Q5_K_S", MUSE_FTYPE_Q5_K_S },   { "Q5_K_M", MUSE_FTYPE_Q5_K_M },   { "Q6_K", MUSE_FTYPE_Q6_K },
	{ "Q8_0", MUSE_FTYPE_Q8_0 },       { "F16", MUSE_FTYPE_F16 },         { "BF16", MUSE_FTYPE_BF16 },
	{ "F32", MUSE_FTYPE_ALL_F32 },
};
#define N_FTYPES (sizeof ftypes / sizeof *ftypes)

const char *const muse_ftype_names[] = {
	"Q1_0", "Q4_0", "Q4_1", "MXFP4_MOE", "Q5_0", "Q5_1", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M",
	"TQ1_0", "TQ2_0", "Q2_K", "Q2_K_S", "IQ3_XXS", "IQ3_S", "IQ3_M", "Q3_K", "IQ3_XS", "Q3_K_S", "Q3_K_M",
	"Q3_K_L", "IQ4_NL", "IQ4_XS", "Q4_K", "Q4_K_S", "Q4_K_M", "Q5_K", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16",
	"BF16", "F32", NULL,
};

static bool ieq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return false;
	return *a == *b;
}

muse_ftype muse_ftype_from_name(const char *name, const char **canon)
{
	for (size_t i = 0; name && i < N_FTYPES; i++)
		if (ieq(ftypes[i].name, name)) {
			if (canon)
				*canon = ftypes[i].name;
			return ftypes[i].ftype;
		}
	return MUSE_FTYPE_INVALID;
}

const char *muse_ftype_name(muse_ftype f)
{
	/* the first row for f is the canonical spelling, except for the three aliases listed before their mix */
	switch (f) {
	case MUSE_FTYPE_Q3_K_M: return "Q3_K_M";
	case MUSE_FTYPE_Q4_K_M: return "Q4_K_M";
	case MUSE_FTYPE_Q5_K_M: return "Q5_K_M";
	default: break;
	}
	for (size_t i = 0; i < N_FTYPES; i++)
		if (ftypes[i].ftype == f)
			return ftypes[i].name;
	return "?";
}

muse_dtype muse_ftype_default_type(muse_ftype f)
{
	switch (f) {
	case MUSE_FTYPE_Q4_0: return MUSE_DT_Q4_0;
	case MUSE_FTYPE_Q4_1: return MUSE_DT_Q4_1;
	case MUSE_FTYPE_Q5_0: return MUSE_DT_Q5_0;
	case MUSE_FTYPE_Q5_1: return MUSE_DT_Q5_1;
	case MUSE_FTYPE_Q8_0: return MUSE_DT_Q8_0;
	case MUSE_FTYPE_F16: return MUSE_DT_F16;
	case MUSE_FTYPE_BF16: return MUSE_DT_BF16;
	case MUSE_FTYPE_ALL_F32: return MUSE_DT_F32;
	case MUSE_FTYPE_Q1_0: return MUSE_DT_Q1_0;
	case MUSE_FTYPE_MXFP4_MOE: return MUSE_DT_MXFP4;
	case MUSE_FTYPE_Q2_K_S:
	case MUSE_FTYPE_Q2_K: return MUSE_DT_Q2_K;
	case MUSE_FTYPE_IQ3_XS: return MUSE_DT_IQ3_S;
	case MUSE_FTYPE_Q3_K_S:
	case MUSE_FTYPE_Q3_K_M:
	case MUSE_FTYPE_Q3_K_L: return MUSE_DT_Q3_K;
	case MUSE_FTYPE_Q4_K_S:
	case MUSE_FTYPE_Q4_K_M: return MUSE_DT_Q4_K;
	case MUSE_FTYPE_Q5_K_S:
	case MUSE_FTYPE_Q5_K_M: return MUSE_DT_Q5_K;
	case MUSE_FTYPE_Q6_K: return MUSE_DT_Q6_K;
	case MUSE_FTYPE_TQ1_0: return MUSE_DT_TQ1_0;
	case MUSE_FTYPE_TQ2_0: return MUSE_DT_TQ2_0;
	case MUSE_FTYPE_IQ2_XXS: return MUSE_DT_IQ2_XXS;
	case MUSE_FTYPE_IQ2_XS: return MUSE_DT_IQ2_XS;
	case MUSE_FTYPE_IQ2_S: return MUSE_DT_IQ2_XS; /* sic: the IQ2_S file type starts from IQ2_XS */
	case MUSE_FTYPE_IQ2_M: return MUSE_DT_IQ2_S;
	case MUSE_FTYPE_IQ3_XXS: return MUSE_DT_IQ3_XXS;
	case MUSE_FTYPE_IQ1_S: return MUSE_DT_IQ1_S;
	case MUSE_FTYPE_IQ1_M: return MUSE_DT_IQ1_M;
	case MUSE_FTYPE_IQ4_NL: return MUSE_DT_IQ4_NL;
	case MUSE_FTYPE_IQ4_XS: return MUSE_DT_IQ4_XS;
	case MUSE_FTYPE_IQ3_S:
	case MUSE_FTYPE_IQ3_M: return MUSE_DT_IQ3_S;
	default: return MUSE_DT_INVALID;
	}
}

/* ---- model hparams ---- */

static bool meta_u32_or_first(const muse_meta *meta, const char *key, uint32_t *out)
{
	const muse_kv *kv = muse_meta_find(meta, key);
	if (!kv)
		return false;
	uint64_t v;
	if (kv->type == MUSE_KV_ARRAY) {
		/* per-layer arrays: llama.cpp's n_head() and n_gqa() read layer 0 */
		if (kv->n == 0)
			return false;
		switch (kv->arr_type) {
		case MUSE_KV_U32: v = ((const uint32_t *)kv->arr)[0]; break;
		case MUSE_KV_I32: {
			int32_t x = ((const int32_t *)kv->arr)[0];
			if (x < 0)
				return false;
			v = (uint64_t)x;
			break;
		}
		default: return false;
		}
	} else if (!muse_meta_get_u64(meta, key, &v)) {
		return false;
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

muse_status muse_mix_model_from_meta(const muse_meta *meta, const char *file, muse_mix_model *m, muse_err *err)
{
	memset(m, 0, sizeof *m);
	const char *arch = muse_meta_get_str(meta, "general.architecture");
	if (!arch)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no general.architecture key; quantize needs a model GGUF",
				    file);
	if (strlen(arch) >= sizeof m->arch)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: general.architecture is too long", file);
	strcpy(m->arch, arch);
	char key[128];
	const char *keys[] = { "block_count", "expert_count", "attention.head_count", "attention.head_count_kv",
			       "nextn_predict_layers" };
	uint32_t *dst[] = { &m->n_layer, &m->n_expert, &m->n_head, &m->n_head_kv, NULL };
	uint32_t nextn = 0;
	for (int i = 0; i < 5; i++) {
		snprintf(key, sizeof key, "%s.%s", arch, keys[i]);
		uint32_t *d = dst[i] ? dst[i] : &nextn;
		if (muse_meta_find(meta, key) && !meta_u32_or_first(meta, key, d))
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: key '%s' is not a non-negative 32-bit integer", file,
					    key);
	}
	snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
	if (!muse_meta_find(meta, key))
		m->n_head_kv = m->n_head;
	/* hunyuan models with one "expert" are dense to llama.cpp */
	if ((!strcmp(arch, "hunyuan-vl") || !strcmp(arch, "hunyuan-dense")) && m->n_expert <= 1)
		m->n_expert = 0;
	/* LLM_TYPE_70B as the architectures' load_arch_hparams assign it (n_layer() excludes NextN layers) */
	uint32_t nl = m->n_layer >= nextn ? m->n_layer - nextn : 0;
	if (!strcmp(arch, "llama"))
		m->is_70b = m->n_expert != 8 && nl == 80 && m->n_head != m->n_head_kv;
	else if (!strcmp(arch, "qwen2") || !strcmp(arch, "deci") || !strcmp(arch, "olmo"))
		m->is_70b = nl == 80;
	else if (!strcmp(arch, "jais2"))
		m->is_70b = nl == 68;
	return MUSE_OK;
}

/* ---- tensor categories ---- */

typedef enum cat {
	CAT_TOKEN_EMBD,
	CAT_ATTN_Q,
	CAT_ATTN_V,
	CAT_ATTN_K,
	CAT_ATTN_QKV,
	CAT_ATTN_KV_B,
	CAT_ATTN_OUTPUT,
	CAT_FFN_UP,
	CAT_FFN_GATE,
	CAT_FFN_DOWN,
	CAT_OUTPUT,
	CAT_OTHER,
} cat;

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static bool is_token_embd(const char *n)
{
	return !strcmp(n, "token_embd.weight") || !strcmp(n, "per_layer_token_embd.weight");
}

static cat category(const char *n)
{
	if (!strcmp(n, "output.weight"))
		return CAT_OUTPUT;
	if (is_token_embd(n))
		return CAT_TOKEN_EMBD;
	/* order matters: "attn_qkv.weight" before the single projections, substrings anywhere in the name */
	static const struct { const char *sub; cat c; } rows[] = {
		{ "attn_qkv.weight", CAT_ATTN_QKV },     { "attn_kv_b.weight", CAT_ATTN_KV_B },
		{ "attn_v.weight", CAT_ATTN_V },         { "attn_k.weight", CAT_ATTN_K },
		{ "attn_q.weight", CAT_ATTN_Q },         { "attn_output.weight", CAT_ATTN_OUTPUT },
		{ "ffn_up", CAT_FFN_UP },                { "ffn_gate", CAT_FFN_GATE },
		{ "ffn_down", CAT_FFN_DOWN },
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
		if (has(n, rows[i].sub))
			return rows[i].c;
	return CAT_OTHER;
}

static bool is_attn_v_like(cat c) { return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B; }

/* ggml_n_dims: trailing dimensions of 1 do not count, and every tensor has at least one. */
static int n_dims(const int64_t ne[4])
{
	for (int i = 3; i >= 1; i--)
		if (ne[i] > 1)
			return i + 1;
	return 1;
}

/* tensor_allows_quantization: 2-D and up, names ending in "weight", minus the small or sensitive ones. */
bool muse_mix_allows_quantization(const char *arch, const muse_mix_tensor *t)
{
	if (n_dims(t->ne) < 2)
		return false;
	const char *n = t->name;
	/* llama.cpp tests name.rfind("weight") == name.size() - 6. For a 5-byte name the right side wraps to npos,
	   which is what rfind returns when there is no match: such names count as ending in "weight". Kept. */
	if (!muse_ends_with(n, "weight") && strlen(n) != 5)
		return false;
	if (has(n, "_norm.weight"))
		return false;
	static const char *const never[] = {
		"ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
		"ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
		"time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
		"time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
		"time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
		"time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
		"attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
		".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
	};
	for (size_t i = 0; i < sizeof never / sizeof *never; i++)
		if (has(n, never[i]))
			return false;
	/* LLM_TN(arch)(POS_EMBD / TOKEN_TYPES, "weight") */
	if (!strcmp(n, "position_embd.weight") || !strcmp(n, "token_types.weight"))
		return false;
	if (!strcmp(arch, "glm5-next")) {
		static const char *const glm[] = {
			"hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
			"indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight",
			"ssm_g_b.weight", "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight",
			"attn_v_b.weight",
		};
		for (size_t i = 0; i < sizeof glm / sizeof *glm; i++)
			if (has(n, glm[i]))
				return false;
	}
	return true;
}

static bool allows_quantization(const muse_mix_opts *o, const char *arch, const muse_mix_tensor *t)
{
	if (o->leave_output && !strcmp(t->name, "output.weight"))
		return false;
	return muse_mix_allows_quantization(arch, t);
}

bool muse_mix_requires_imatrix(const char *name, muse_dtype type, muse_ftype ftype)
{
	if (is_token_embd(name) || !strcmp(name, "output.weight"))
		return false;
	switch (type) {
	case MUSE_DT_IQ3_XXS:
	case MUSE_DT_IQ2_XXS:
	case MUSE_DT_IQ2_XS:
	case MUSE_DT_IQ2_S:
	case MUSE_DT_IQ1_M:
	case MUSE_DT_IQ1_S: return true;
	case MUSE_DT_Q2_K: return ftype == MUSE_FTYPE_Q2_K_S; /* only the Q2_K_S mix insists */
	default: return false;
	}
}

/* ---- layer numbers ---- */

/*
 * sscanf(name, "blk.%d.", &l) == 1: the literal "blk.", then %d (leading
 * white space, a sign, digits). The trailing '.' need not match for the
 * count to be 1. Out-of-range numbers follow glibc (strtol saturates, the
 * store truncates to int).
 */
static bool blk_layer(const char *name, int *out)
{
	if (strncmp(name, "blk.", 4))
		return false;
	const char *p = name + 4;
	while (isspace((unsigned char)*p))
		p++;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!isdigit((unsigned char)*p))
		return false;
	unsigned long long v = 0;
	bool sat = false;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (ULLONG_MAX - 9) / 10)
			sat = true;
		else
			v = v * 10 + (unsigned)(*p - '0');
	}
	long l;
	if (!neg)
		l = sat || v > (unsigned long long)LONG_MAX ? LONG_MAX : (long)v;
	else
		l = sat || v > (unsigned long long)LONG_MAX + 1 ? LONG_MIN : (long)(0 - v);
	*out = (int)(unsigned)(unsigned long)l; /* gcc: modular conversion */
	return true;
}

/* ---- ordering ---- */

typedef struct ord {
	const char *name;
	int layer;
	uint32_t file;
	uint64_t offset;
	size_t idx;
} ord;

static int cmp_layer_name(const void *a, const void *b)
{
	const ord *x = a, *y = b;
	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return strcmp(x->name, y->name); /* std::string's operator< compares bytes as unsigned, as strcmp does */
}

static int cmp_file_offset(const void *a, const void *b)
{
	const ord *x = a, *y = b;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return 0;
}

muse_status muse_mix_order(const char *const *names, const uint32_t *file, const uint64_t *offset, size_t n,
			   bool keep_split, size_t *perm, muse_err *err)
{
	ord *o = calloc(n ? n : 1, sizeof *o);
	if (!o)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory ordering %zu tensors", n);
	for (size_t i = 0; i < n; i++) {
		o[i].name = names[i];
		if (!blk_layer(names[i], &o[i].layer))
			o[i].layer = -1;
		o[i].file = file ? file[i] : 0;
		o[i].offset = offset ? offset[i] : 0;
		o[i].idx = i;
	}
	/* names are unique, so the layer/name order is total and qsort's instability cannot show */
	qsort(o, n, sizeof *o, cmp_layer_name);
	/* keep_split re-sorts the map order by (split, offset) with std::sort; offsets are unique within a file */
	if (keep_split)
		qsort(o, n, sizeof *o, cmp_file_offset);
	for (size_t i = 0; i < n; i++)
		perm[i] = o[i].idx;
	free(o);
	return MUSE_OK;
}

/*
 * llama_model_loader's file-type guess: the type of the most tensors, the
 * first to reach that count in its weights_map order (weight_name_comparer,
 * muse_mix_order's), mapped to the mix named for it.
 */
muse_status muse_ftype_of_tensors(const char *const *names, const muse_dtype *types, size_t n, muse_ftype *out,
				  muse_err *err)
{
	size_t *perm = malloc((n ? n : 1) * sizeof *perm);
	if (!perm)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	muse_status s = muse_mix_order(names, NULL, NULL, n, false, perm, err);
	if (s) {
		free(perm);
		return s;
	}
	uint32_t count[MUSE_DT_COUNT] = { 0 }, most = 0;
	muse_dtype top = MUSE_DT_F32;
	for (size_t i = 0; i < n; i++) {
		muse_dtype t = types[perm[i]];
		if (t <= MUSE_DT_INVALID || t >= MUSE_DT_COUNT)
			continue;
		if (most < ++count[t]) {
			most = count[t];
			top = t;
		}
	}
	free(perm);
	switch (top) {
	case MUSE_DT_F16: *out = MUSE_FTYPE_F16; break;
	case MUSE_DT_BF16: *out = MUSE_FTYPE_BF16; break;
	case MUSE_DT_Q4_0: *out = MUSE_FTYPE_Q4_0; break;
	case MUSE_DT_Q4_1: *out = MUSE_FTYPE_Q4_1; break;
	case MUSE_DT_Q5_0: *out = MUSE_FTYPE_Q5_0; break;
	case MUSE_DT_Q5_1: *out = MUSE_FTYPE_Q5_1; break;
	case MUSE_DT_Q8_0: *out = MUSE_FTYPE_Q8_0; break;
	case MUSE_DT_Q2_K: *out = MUSE_FTYPE_Q2_K; break;
	case MUSE_DT_Q3_K: *out = MUSE_FTYPE_Q3_K_M; break;
	case MUSE_DT_Q4_K: *out = MUSE_FTYPE_Q4_K_M; break;
	case MUSE_DT_Q5_K: *out = MUSE_FTYPE_Q5_K_M; break;
	case MUSE_DT_Q6_K: *out = MUSE_FTYPE_Q6_K; break;
	case MUSE_DT_TQ1_0: *out = MUSE_FTYPE_TQ1_0; break;
	case MUSE_DT_TQ2_0: *out = MUSE_FTYPE_TQ2_0; break;
	case MUSE_DT_IQ2_XXS: *out = MUSE_FTYPE_IQ2_XXS; break;
	case MUSE_DT_IQ2_XS: *out = MUSE_FTYPE_IQ2_XS; break;
	case MUSE_DT_IQ2_S: *out = MUSE_FTYPE_IQ2_S; break;
	case MUSE_DT_IQ3_XXS: *out = MUSE_FTYPE_IQ3_XXS; break;
	case MUSE_DT_IQ1_S: *out = MUSE_FTYPE_IQ1_S; break;
	case MUSE_DT_IQ1_M: *out = MUSE_FTYPE_IQ1_M; break;
	case MUSE_DT_IQ4_NL: *out = MUSE_FTYPE_IQ4_NL; break;
	case MUSE_DT_IQ4_XS: *out = MUSE_FTYPE_IQ4_XS; break;
	case MUSE_DT_IQ3_S: *out = MUSE_FTYPE_IQ3_S; break;
	case MUSE_DT_Q1_0: *out = MUSE_FTYPE_Q1_0; break;
	case MUSE_DT_NVFP4: *out = (muse_ftype)39; break; /* LLAMA_FTYPE_MOSTLY_NVFP4, which llama-quantize cannot make */
	default: *out = MUSE_FTYPE_ALL_F32; break; /* F32, and what llama.cpp warns about as unknown */
	}
	return MUSE_OK;
}

/* ---- the policy ---- */

struct muse_mix {
	muse_mix_model m;
	muse_mix_opts o;
	muse_mix_rule *rules;
	pcre2_code **re;
	pcre2_match_data *md;
	/* llama.cpp's quantize_state_impl counters */
	int n_attention_wv, i_attention_wv;
	int n_ffn_down, n_ffn_gate, n_ffn_up, i_ffn_down, i_ffn_gate, i_ffn_up;
	bool tied;
};

muse_status muse_mix_create(const muse_mix_model *m, const muse_mix_opts *o, muse_mix **out, muse_err *err)
{
	*out = NULL;
	muse_mix *x = calloc(1, sizeof *x);
	if (!x)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	x->m = *m;
	x->o = *o;
	x->o.rules = NULL;
	if (o->n_rules) {
		x->rules = calloc(o->n_rules, sizeof *x->rules);
		x->re = calloc(o->n_rules, sizeof *x->re);
		x->md = pcre2_match_data_create(1, NULL);
		if (!x->rules || !x->re || !x->md) {
			muse_mix_free(x);
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		}
		for (size_t i = 0; i < o->n_rules; i++) {
			int ec;
			PCRE2_SIZE eo;
			x->rules[i] = o->rules[i];
			x->re[i] = pcre2_compile((PCRE2_SPTR)o->rules[i].pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
			if (!x->re[i]) {
				PCRE2_UCHAR msg[160];
				pcre2_get_error_message(ec, msg, sizeof msg);
				muse_status s = muse_err_set(err, MUSE_ERR_USAGE,
							     "--tensor-type: pattern '%s': %s at offset %zu",
							     o->rules[i].pattern, (const char *)msg, (size_t)eo);
				muse_mix_free(x);
				return s;
			}
		}
		x->o.rules = x->rules;
	}
	*out = x;
	return MUSE_OK;
}

void muse_mix_free(muse_mix *x)
{
	if (!x)
		return;
	for (size_t i = 0; x->re && i < x->o.n_rules; i++)
		pcre2_code_free(x->re[i]);
	free(x->re);
	free(x->rules);
	pcre2_match_data_free(x->md);
	free(x);
}

/* The first --tensor-type rule whose pattern occurs in name; -1 when none. */
static ptrdiff_t match_rule(const muse_mix *x, const char *name)
{
	for (size_t i = 0; i < x->o.n_rules; i++)
		if (pcre2_match(x->re[i], (PCRE2_SPTR)name, strlen(name), 0, 0, x->md, NULL) >= 0)
			return (ptrdiff_t)i;
	return -1;
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool is_quant(muse_dtype t) { return muse_dtype_info(t) && muse_dtype_info(t)->is_quant; }

static int64_t blck(muse_dtype t) { return muse_dtype_info(t)->blck; }

/* For expert models the layer comes from the name ("experts are not consecutive"); otherwise the running counter. */
static muse_status layer_info(const muse_mix *x, int counter, int n_layer, const char *name, int *il, muse_err *err)
{
	*il = counter;
	int n_expert = x->m.n_expert > 1 ? (int)x->m.n_expert : 1;
	if (n_expert > 1) {
		if (!blk_layer(name, il))
			return muse_err_set(err, MUSE_ERR_FORMAT, "tensor '%s': cannot tell its layer (no 'blk.N.' prefix)",
					    name);
		if (*il < 0 || *il >= n_layer)
			return muse_err_set(err, MUSE_ERR_FORMAT, "tensor '%s': layer %d is outside 0..%d (block_count %d)",
					    name, *il, n_layer - 1, n_layer);
	}
	return MUSE_OK;
}

static bool ft_in(muse_ftype f, const muse_ftype *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == f)
			return true;
	return false;
}
#define FT_IN(f, ...) ft_in((f), (const muse_ftype[]){ __VA_ARGS__ }, sizeof((const muse_ftype[]){ __VA_ARGS__ }) / sizeof(muse_ftype))

/* llama_tensor_get_type_impl: the mix rules proper. */
static muse_status mix_rules(muse_mix *x, muse_dtype *type, const muse_mix_tensor *t, cat c, muse_err *err)
{
	const muse_ftype ft = x->o.ftype;
	const char *name = t->name, *arch = x->m.arch;
	const bool falcon = !strcmp(arch, "falcon");
	const uint32_t n_expert = x->m.n_expert;
	const uint32_t n_gqa = x->m.n_head_kv ? x->m.n_head / x->m.n_head_kv : 0;
	muse_dtype nt = *type;
	int il = 0, nl = 0;
	muse_status s;

	/* glm5-next keeps these at Q8_0 or better */
	if (!strcmp(arch, "glm5-next") && (has(name, "attn_q_a") || has(name, "attn_q_b") || has(name, "nextn.eh_proj"))) {
		if (nt != MUSE_DT_F32 && nt != MUSE_DT_BF16 && nt != MUSE_DT_F16)
			*type = MUSE_DT_Q8_0;
		return MUSE_OK;
	}

	const bool iq_low = FT_IN(ft, MUSE_FTYPE_IQ2_XXS, MUSE_FTYPE_IQ2_XS, MUSE_FTYPE_IQ1_S, MUSE_FTYPE_IQ2_S,
				  MUSE_FTYPE_IQ2_M, MUSE_FTYPE_IQ1_M);
	if (c == CAT_OUTPUT || (x->tied && c == CAT_TOKEN_EMBD)) {
		/* tied embeddings: token_embd doubles as the output head and gets its type */
		if (x->o.output_type != MUSE_DT_INVALID) {
			nt = x->o.output_type;
		} else {
			if (ft == MUSE_FTYPE_MXFP4_MOE)
				nt = MUSE_DT_Q8_0;
			else if (falcon || t->ne[0] % blck(nt) != 0)
				nt = MUSE_DT_Q8_0;
			else if (FT_IN(ft, MUSE_FTYPE_IQ2_XXS, MUSE_FTYPE_IQ2_XS, MUSE_FTYPE_IQ3_XXS, MUSE_FTYPE_IQ1_S,
				       MUSE_FTYPE_IQ2_S, MUSE_FTYPE_IQ2_M, MUSE_FTYPE_IQ1_M))
				nt = MUSE_DT_Q5_K;
			else if (nt != MUSE_DT_Q8_0)
				nt = MUSE_DT_Q6_K;
		}
	} else if (ft == MUSE_FTYPE_MXFP4_MOE) {
		/* expert tensors (3-D) to MXFP4, the rest Q8_0; bailingmoe3's 3-D MLA projections are not experts */
		bool expert_role = c == CAT_FFN_UP || c == CAT_FFN_GATE || c == CAT_FFN_DOWN;
		bool bailing = !strcmp(arch, "bailingmoe3");
		nt = t->ne[2] > 1 && (!bailing || expert_role) ? MUSE_DT_MXFP4 : MUSE_DT_Q8_0;
	} else if (c == CAT_TOKEN_EMBD) {
		if (x->o.token_embd_type != MUSE_DT_INVALID)
			nt = x->o.token_embd_type;
		else if (FT_IN(ft, MUSE_FTYPE_IQ2_XXS, MUSE_FTYPE_IQ2_XS, MUSE_FTYPE_IQ1_S, MUSE_FTYPE_IQ1_M))
			nt = MUSE_DT_Q2_K;
		else if (FT_IN(ft, MUSE_FTYPE_IQ2_S, MUSE_FTYPE_IQ2_M, MUSE_FTYPE_IQ3_XXS))
			nt = MUSE_DT_IQ3_S;
		else if (FT_IN(ft, MUSE_FTYPE_TQ1_0, MUSE_FTYPE_TQ2_0))
			nt = MUSE_DT_Q4_K;
	} else if (iq_low) {
		const bool iq2sm = ft == MUSE_FTYPE_IQ2_S || ft == MUSE_FTYPE_IQ2_M;
		if (is_attn_v_like(c)) {
			if (n_gqa >= 4 || n_expert >= 4)
				nt = MUSE_DT_Q4_K;
			else
				nt = iq2sm ? MUSE_DT_IQ3_S : MUSE_DT_Q2_K;
			x->i_attention_wv++;
		} else if (n_expert == 8 && c == CAT_ATTN_K) {
			nt = MUSE_DT_Q4_K;
		} else if (c == CAT_FFN_DOWN) {
			if (x->i_ffn_down < x->n_ffn_down / 8)
				nt = iq2sm ? MUSE_DT_IQ3_S : MUSE_DT_Q2_K;
			x->i_ffn_down++;
		} else if (c == CAT_ATTN_OUTPUT) {
			if (n_expert == 8)
				nt = MUSE_DT_Q5_K;
			else if (ft == MUSE_FTYPE_IQ1_S || ft == MUSE_FTYPE_IQ1_M)
				nt = MUSE_DT_IQ2_XXS;
			else if (iq2sm)
				nt = MUSE_DT_IQ3_S;
		}
	} else if (is_attn_v_like(c)) {
		if (ft == MUSE_FTYPE_Q2_K)
			nt = n_gqa >= 4 ? MUSE_DT_Q4_K : MUSE_DT_Q3_K;
		else if (ft == MUSE_FTYPE_Q2_K_S && n_gqa >= 4)
			nt = MUSE_DT_Q4_K;
		else if (ft == MUSE_FTYPE_IQ3_XXS)
			nt = n_gqa >= 4 ? MUSE_DT_Q4_K : !x->o.has_imatrix ? MUSE_DT_IQ3_S : MUSE_DT_IQ3_XXS;
		else if ((ft == MUSE_FTYPE_IQ3_XS || ft == MUSE_FTYPE_IQ3_S) && n_gqa >= 4)
			nt = MUSE_DT_Q4_K;
		else if (ft == MUSE_FTYPE_IQ3_M)
			nt = MUSE_DT_Q4_K;
		else if (ft == MUSE_FTYPE_Q3_K_M)
			nt = x->i_attention_wv < 2 ? MUSE_DT_Q5_K : MUSE_DT_Q4_K;
		else if (ft == MUSE_FTYPE_Q3_K_L)
			nt = MUSE_DT_Q5_K;
		else if ((ft == MUSE_FTYPE_IQ4_NL || ft == MUSE_FTYPE_IQ4_XS) && n_gqa >= 4)
			nt = MUSE_DT_Q5_K;
		else if ((ft == MUSE_FTYPE_Q4_K_M || ft == MUSE_FTYPE_Q5_K_M) &&
			 use_more_bits(x->i_attention_wv, x->n_attention_wv))
			nt = MUSE_DT_Q6_K;
		else if (ft == MUSE_FTYPE_Q4_K_S && x->i_attention_wv < 4)
			nt = MUSE_DT_Q5_K;
		/* 70B: attn_v is 8x smaller than attn_q (GQA), so more bits cost little */
		if (x->m.is_70b && (nt == MUSE_DT_Q3_K || nt == MUSE_DT_Q4_K))
			nt = MUSE_DT_Q5_K;
		if (n_expert == 8)
			nt = MUSE_DT_Q8_0;
		x->i_attention_wv++;
	} else if (c == CAT_ATTN_K) {
		if (n_expert == 8)
			nt = MUSE_DT_Q8_0;
		else if (ft == MUSE_FTYPE_IQ3_XS)
			nt = MUSE_DT_IQ3_XXS;
		else if (ft == MUSE_FTYPE_IQ3_XXS)
			nt = MUSE_DT_IQ2_S;
	} else if (c == CAT_ATTN_Q) {
		if (ft == MUSE_FTYPE_IQ3_XS)
			nt = MUSE_DT_IQ3_XXS;
		else if (ft == MUSE_FTYPE_IQ3_XXS)
			nt = MUSE_DT_IQ2_S;
	} else if (c == CAT_FFN_DOWN) {
		if ((s = layer_info(x, x->i_ffn_down, x->n_ffn_down, name, &il, err)))
			return s;
		nl = x->n_ffn_down;
		if (ft == MUSE_FTYPE_Q2_K)
			nt = MUSE_DT_Q3_K;
		else if (ft == MUSE_FTYPE_Q2_K_S) {
			if (il < nl / 8)
				nt = MUSE_DT_Q4_K;
		} else if (ft == MUSE_FTYPE_IQ3_XXS && !x->o.has_imatrix)
			nt = il < nl / 8 ? MUSE_DT_Q4_K : MUSE_DT_Q3_K;
		else if (ft == MUSE_FTYPE_Q3_K_M)
			/* sic: "!falcon || use_more_bits" makes every non-Falcon layer past the first 1/16 Q4_K */
			nt = il < nl / 16 ? MUSE_DT_Q5_K
			     : !falcon || use_more_bits(il, nl) ? MUSE_DT_Q4_K
								: MUSE_DT_Q3_K;
		else if (ft == MUSE_FTYPE_IQ3_M && (il < nl / 8 || (n_expert == 8 && use_more_bits(il, nl))))
			nt = MUSE_DT_Q4_K;
		else if (ft == MUSE_FTYPE_Q3_K_L)
			nt = falcon ? MUSE_DT_Q4_K : MUSE_DT_Q5_K;
		else if (ft == MUSE_FTYPE_Q4_K_M) {
			if (falcon)
				nt = il < nl / 16 ? MUSE_DT_Q6_K : use_more_bits(il, nl) ? MUSE_DT_Q5_K : MUSE_DT_Q4_K;
			else if (use_more_bits(il, nl))
				nt = MUSE_DT_Q6_K;
		} else if (il < nl / 8 && (ft == MUSE_FTYPE_IQ4_NL || ft == MUSE_FTYPE_IQ4_XS) && !x->o.has_imatrix)
			nt = MUSE_DT_Q5_K;
		else if (ft == MUSE_FTYPE_Q5_K_M && use_more_bits(il, nl))
			nt = MUSE_DT_Q6_K;
		else if (ft == MUSE_FTYPE_Q4_K_S && !falcon && il < nl / 8)
			nt = MUSE_DT_Q5_K;
		else if ((ft == MUSE_FTYPE_Q4_0 || ft == MUSE_FTYPE_Q5_0) && x->o.has_imatrix && il < nl / 8)
			/* the first ffn_down layers go wild even with an imatrix; only with one, so that without an
			   imatrix the file stays what it always was */
			nt = ft == MUSE_FTYPE_Q4_0 ? MUSE_DT_Q4_1 : MUSE_DT_Q5_1;
		x->i_ffn_down++;
	} else if (c == CAT_ATTN_OUTPUT) {
		if (!falcon) {
			if (n_expert == 8) {
				if (FT_IN(ft, MUSE_FTYPE_Q2_K, MUSE_FTYPE_IQ3_XS, MUSE_FTYPE_IQ3_XXS, MUSE_FTYPE_Q3_K_S,
					  MUSE_FTYPE_Q3_K_M, MUSE_FTYPE_IQ4_NL, MUSE_FTYPE_Q4_K_S, MUSE_FTYPE_Q4_K_M,
					  MUSE_FTYPE_IQ3_S, MUSE_FTYPE_IQ3_M, MUSE_FTYPE_IQ4_XS))
					nt = MUSE_DT_Q5_K;
			} else {
				if (ft == MUSE_FTYPE_Q2_K)
					nt = MUSE_DT_Q3_K;
				else if (ft == MUSE_FTYPE_IQ3_XXS)
					nt = MUSE_DT_IQ3_S;
				else if (ft == MUSE_FTYPE_Q3_K_M)
					nt = MUSE_DT_Q4_K;
				else if (ft == MUSE_FTYPE_Q3_K_L)
					nt = MUSE_DT_Q5_K;
				else if (ft == MUSE_FTYPE_IQ3_M)
					nt = MUSE_DT_Q4_K;
			}
		} else if (ft == MUSE_FTYPE_Q3_K_L) {
			nt = MUSE_DT_Q4_K;
		}
	} else if (c == CAT_ATTN_QKV) {
		/* unreachable: attn_qkv is attn_v-like and handled above (llama.cpp keeps this branch too) */
	} else if (c == CAT_FFN_GATE || c == CAT_FFN_UP) {
		int *ctr = c == CAT_FFN_GATE ? &x->i_ffn_gate : &x->i_ffn_up;
		int n = c == CAT_FFN_GATE ? x->n_ffn_gate : x->n_ffn_up;
		if ((s = layer_info(x, *ctr, n, name, &il, err)))
			return s;
		if (ft == MUSE_FTYPE_IQ3_XS && il >= n / 8 && il < 7 * n / 8)
			nt = MUSE_DT_IQ3_XXS;
		(*ctr)++;
	}
	*type = nt;
	return MUSE_OK;
}

/* tensor_type_fallback: a type whose block does not divide the row gives way to a 32-block one, then F16. */
static muse_status fallback(const muse_mix_tensor *t, muse_dtype target, muse_dtype *out, bool *fell, muse_err *err)
{
	*out = target;
	*fell = false;
	int64_t qk = blck(target);
	if (t->ne[0] % qk == 0)
		return MUSE_OK;
	*fell = true;
	muse_dtype r;
	switch (target) {
	case MUSE_DT_IQ1_S:
	case MUSE_DT_IQ1_M:
	case MUSE_DT_IQ2_XXS:
	case MUSE_DT_IQ2_XS:
	case MUSE_DT_IQ2_S:
	case MUSE_DT_IQ3_XXS:
	case MUSE_DT_IQ3_S:
	case MUSE_DT_IQ4_XS: r = MUSE_DT_IQ4_NL; break;
	case MUSE_DT_Q2_K:
	case MUSE_DT_Q3_K:
	case MUSE_DT_TQ1_0:
	case MUSE_DT_TQ2_0: r = MUSE_DT_Q4_0; break;
	case MUSE_DT_Q4_K: r = MUSE_DT_Q5_0; break;
	case MUSE_DT_Q5_K: r = MUSE_DT_Q5_1; break;
	case MUSE_DT_Q6_K: r = MUSE_DT_Q8_0; break;
	default:
		if (qk > 32)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "tensor '%s': rows of %lld are not whole %s blocks and llama.cpp defines no "
					    "fallback for %s", t->name, (long long)t->ne[0], muse_dtype_name(target),
					    muse_dtype_name(target));
		r = target; /* a 32-block type has nowhere smaller to go: F16 below */
		break;
	}
	if (t->ne[0] % blck(r) != 0)
		r = MUSE_DT_F16;
	*out = r;
	return MUSE_OK;
}

muse_status muse_mix_plan(muse_mix *x, const muse_mix_tensor *t, size_t n, muse_mix_choice *out, size_t *n_fallback,
			  muse_err *err)
{
	muse_dtype def = muse_ftype_default_type(x->o.ftype);
	if (def == MUSE_DT_INVALID)
		return muse_err_set(err, MUSE_ERR_USAGE, "invalid file type %d", (int)x->o.ftype);
	/* init_quantize_state_counters: attn_v-like tensors counted by name, tied until output.weight shows up */
	x->n_attention_wv = x->i_attention_wv = x->i_ffn_down = x->i_ffn_gate = x->i_ffn_up = 0;
	x->tied = true;
	for (size_t i = 0; i < n; i++) {
		cat c = category(t[i].name);
		if (is_attn_v_like(c))
			x->n_attention_wv++;
		if (c == CAT_OUTPUT)
			x->tied = false;
	}
	x->n_ffn_down = x->n_ffn_gate = x->n_ffn_up = (int)x->m.n_layer;
	*n_fallback = 0;

	for (size_t i = 0; i < n; i++) {
		const muse_mix_tensor *ti = &t[i];
		muse_mix_choice *ch = &out[i];
		memset(ch, 0, sizeof *ch);
		ch->type = ti->type;
		ch->quantizable = allows_quantization(&x->o, x->m.arch, ti);
		if (ch->quantizable) {
			cat c = category(ti->name);
			ptrdiff_t rule = -1;
			bool decided = false;
			if (x->o.token_embd_type != MUSE_DT_INVALID && c == CAT_TOKEN_EMBD) {
				/* per_layer_token_embd follows --token-embedding-type unless a --tensor-type names it */
				if (!(strcmp(ti->name, "per_layer_token_embd.weight") == 0 && match_rule(x, ti->name) >= 0)) {
					ch->type = x->o.token_embd_type;
					decided = true;
				}
			}
			if (!decided && x->o.output_type != MUSE_DT_INVALID && c == CAT_OUTPUT) {
				ch->type = x->o.output_type;
				decided = true;
			}
			if (!decided) {
				muse_dtype nt = def;
				if (is_quant(def)) {
					rule = match_rule(x, ti->name);
					if (rule >= 0)
						nt = x->rules[rule].type;
					muse_status s;
					if (rule < 0 && !x->o.pure && (s = mix_rules(x, &nt, ti, c, err)))
						return s;
					if (x->o.pure && ti->ne[0] % blck(nt) != 0)
						return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
								    "tensor '%s': rows of %lld elements are not whole %u-element "
								    "%s blocks; --pure asks for one type (without --pure, llama.cpp's "
								    "fallback picks another)",
								    ti->name, (long long)ti->ne[0], (unsigned)blck(nt),
								    muse_dtype_name(nt));
					if ((s = fallback(ti, nt, &nt, &ch->fallback, err)))
						return s;
					if (ch->fallback)
						(*n_fallback)++;
				}
				ch->type = nt;
			}
		}
		ch->requires_imatrix = muse_mix_requires_imatrix(ti->name, ch->type, x->o.ftype);
	}
	return MUSE_OK;
}
