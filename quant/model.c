/* model.c: opens a model for the forward pass and loads its weights as F32, one decoder layer at a time. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/block_layout.h"
#include "../lib/path.h"
#include "../formats/hf_view.h"
#include "../formats/reader.h"
#include "../lib/checked.h"
#include "../lib/strmap.h"
#include "model.h"
#include "quant.h"

/* Caps on hparams read from files: far above any published model, low enough that products cannot overflow. */
#define CAP_DIM ((int64_t)1 << 20)
#define CAP_LAYERS 4096
#define CAP_EXPERTS 4096

struct muse_model {
	muse_reader *r;         /* the GGUF file, or an HF directory's GGUF view (formats/hf_view.h) */
	char *path;             /* as opened: the GGUF file or the HF directory */
	muse_meta meta;         /* owned copy of the reader's metadata */
	muse_hparams hp;
	muse_strmap names;      /* GGUF tensor name -> reader index */
	float *rope_freqs;      /* n_rot / 2 divisors, or NULL */
	uint64_t nbytes;
};

static const struct {
	const char *stem;
	const char *suffix;
	bool linear;
} slots[MUSE_W_COUNT] = {
	[MUSE_W_ATTN_NORM] = { "attn_norm", "weight", false },
	[MUSE_W_ATTN_Q] = { "attn_q", "weight", true },
	[MUSE_W_ATTN_K] = { "attn_k", "weight", true },
	[MUSE_W_ATTN_V] = { "attn_v", "weight", true },
	[MUSE_W_ATTN_O] = { "attn_output", "weight", true },
	[MUSE_W_ATTN_Q_BIAS] = { "attn_q", "bias", false },
	[MUSE_W_ATTN_K_BIAS] = { "attn_k", "bias", false },
	[MUSE_W_ATTN_V_BIAS] = { "attn_v", "bias", false },
	[MUSE_W_ATTN_O_BIAS] = { "attn_output", "bias", false },
	[MUSE_W_ATTN_Q_NORM] = { "attn_q_norm", "weight", false },
	[MUSE_W_ATTN_K_NORM] = { "attn_k_norm", "weight", false },
	[MUSE_W_ATTN_Q_A] = { "attn_q_a", "weight", true },
	[MUSE_W_ATTN_Q_A_NORM] = { "attn_q_a_norm", "weight", false },
	[MUSE_W_ATTN_Q_B] = { "attn_q_b", "weight", true },
	[MUSE_W_ATTN_KV_A_MQA] = { "attn_kv_a_mqa", "weight", true },
	[MUSE_W_ATTN_KV_A_NORM] = { "attn_kv_a_norm", "weight", false },
	[MUSE_W_ATTN_KV_B] = { "attn_kv_b", "weight", true },
	[MUSE_W_ATTN_K_B] = { "attn_k_b", "weight", true },
	[MUSE_W_ATTN_V_B] = { "attn_v_b", "weight", true },
	[MUSE_W_FFN_NORM] = { "ffn_norm", "weight", false },
	[MUSE_W_FFN_GATE] = { "ffn_gate", "weight", true },
	[MUSE_W_FFN_UP] = { "ffn_up", "weight", true },
	[MUSE_W_FFN_DOWN] = { "ffn_down", "weight", true },
	[MUSE_W_FFN_GATE_INP] = { "ffn_gate_inp", "weight", true },
	[MUSE_W_FFN_EXP_PROBS_B] = { "exp_probs_b", "bias", false },
	[MUSE_W_FFN_GATE_EXPS] = { "ffn_gate_exps", "weight", true },
	[MUSE_W_FFN_UP_EXPS] = { "ffn_up_exps", "weight", true },
	[MUSE_W_FFN_DOWN_EXPS] = { "ffn_down_exps", "weight", true },
	[MUSE_W_FFN_GATE_SHEXP] = { "ffn_gate_shexp", "weight", true },
	[MUSE_W_FFN_UP_SHEXP] = { "ffn_up_shexp", "weight", true },
	[MUSE_W_FFN_DOWN_SHEXP] = { "ffn_down_shexp", "weight", true },
	[MUSE_W_FFN_GATE_INP_SHEXP] = { "ffn_gate_inp_shexp", "weight", true },
};

const char *muse_wslot_stem(muse_wslot s)
{
	return (unsigned)s < MUSE_W_COUNT ? slots[s].stem : "?";
}

bool muse_wslot_is_linear(muse_wslot s)
{
	return (unsigned)s < MUSE_W_COUNT && slots[s].linear;
}

const muse_hparams *muse_model_hparams(const muse_model *m) { return &m->hp; }
const char *muse_model_path(const muse_model *m) { return m->path; }
const muse_meta *muse_model_meta(const muse_model *m) { return &m->meta; }
uint64_t muse_model_nbytes(const muse_model *m) { return m->nbytes; }
bool muse_model_is_gguf(const muse_model *m) { return !strcmp(m->r->format, "gguf"); }
const float *muse_model_rope_freqs(const muse_model *m) { return m->rope_freqs; }

void muse_model_product_types(const muse_model *m, bool *used)
{
	size_t ti;
	memset(used, 0, MUSE_DT_COUNT * sizeof *used);
	const char *head = muse_strmap_get(&m->names, "output.weight", strlen("output.weight"), &ti) ? "output.weight"
												: "token_embd.weight";
	for (size_t i = 0; i < m->r->n_tensors; i++) {
		const muse_tensor *t = &m->r->tensors[i];
		if ((t->ndim >= 2 && !strncmp(t->name, "blk.", 4) && strstr(t->name, ".weight")) || !strcmp(t->name, head))
			if ((unsigned)t->dtype < MUSE_DT_COUNT)
				used[t->dtype] = true;
	}
}

/* ---- hparams ---- */

static bool key_u64(const muse_model *m, const char *k, uint64_t *v)
{
	char key[160];
	snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, k);
	return muse_meta_get_u64(&m->meta, key, v);
}

static bool key_f64(const muse_model *m, const char *k, double *v)
{
	char key[160];
	snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, k);
	return muse_meta_get_f64(&m->meta, key, v);
}

static bool key_bool(const muse_model *m, const char *k, bool def)
{
	char key[160];
	snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, k);
	const muse_kv *kv = muse_meta_find(&m->meta, key);
	return kv && kv->type == MUSE_KV_BOOL ? kv->v.b : def;
}

/* An integer hparam in [lo, cap]; def when absent and not required. */
static muse_status get_int(muse_model *m, const char *k, bool required, int64_t def, int64_t lo, int64_t cap,
			   int64_t *out, muse_err *err)
{
	uint64_t v;
	if (!key_u64(m, k, &v)) {
		char key[160];
		snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, k);
		if (required || muse_meta_find(&m->meta, key))
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: metadata '%s' %s", m->r->path, key,
					    required && !muse_meta_find(&m->meta, key) ? "is missing"
										     : "is not a non-negative integer");
		*out = def;
		return MUSE_OK;
	}
	if ((int64_t)v < lo || v > (uint64_t)cap)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: metadata '%s.%s' = %llu out of range %lld..%lld",
				    m->r->path, m->hp.arch_name, k, (unsigned long long)v, (long long)lo,
				    (long long)cap);
	*out = (int64_t)v;
	return MUSE_OK;
}

static float get_float(const muse_model *m, const char *k, float def)
{
	double d;
	return key_f64(m, k, &d) ? (float)d : def;
}

/* The reader index of the tensor named name. */
static muse_status find_tensor(const muse_model *m, const char *name, size_t *idx)
{
	return muse_strmap_get(&m->names, name, strlen(name), idx) ? MUSE_OK : MUSE_ERR_FORMAT;
}

static muse_status read_hparams(muse_model *m, muse_err *err)
{
	muse_hparams *hp = &m->hp;
	muse_status s;
	static const struct {
		const char *name;
		muse_fwd_arch arch;
		bool neox;
	} arches[] = {
		{ "llama", MUSE_FA_LLAMA, false },   { "mistral", MUSE_FA_LLAMA, false },
		{ "qwen2", MUSE_FA_QWEN2, true },    { "qwen3", MUSE_FA_QWEN3, true },
		{ "qwen2moe", MUSE_FA_QWEN2MOE, true }, { "qwen3moe", MUSE_FA_QWEN3MOE, true },
		{ "deepseek2", MUSE_FA_DEEPSEEK2, false },
	};
	size_t a;
	for (a = 0; a < sizeof arches / sizeof *arches; a++)
		if (!strcmp(arches[a].name, hp->arch_name))
			break;
	if (a == sizeof arches / sizeof *arches)
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: architecture '%s' has no forward pass (llama, mistral, qwen2, qwen3, qwen2moe, "
				    "qwen3moe, deepseek2)",
				    m->r->path, hp->arch_name);
	hp->arch = arches[a].arch;
	hp->rope_neox = arches[a].neox;

	if ((s = get_int(m, "block_count", true, 0, 1, CAP_LAYERS, &hp->n_layer, err)) ||
	    (s = get_int(m, "embedding_length", true, 0, 1, CAP_DIM, &hp->n_embd, err)) ||
	    (s = get_int(m, "attention.head_count", true, 0, 1, CAP_DIM, &hp->n_head, err)) ||
	    (s = get_int(m, "attention.head_count_kv", false, hp->n_head, 1, CAP_DIM, &hp->n_head_kv, err)) ||
	    (s = get_int(m, "feed_forward_length", false, 0, 0, CAP_DIM, &hp->n_ff, err)) ||
	    (s = get_int(m, "attention.key_length", false, hp->n_embd / hp->n_head, 1, CAP_DIM, &hp->head_dim_k,
			 err)) ||
	    (s = get_int(m, "attention.value_length", false, hp->head_dim_k, 1, CAP_DIM, &hp->head_dim_v, err)) ||
	    (s = get_int(m, "rope.dimension_count", false, hp->head_dim_k, 0, CAP_DIM, &hp->n_rot, err)) ||
	    (s = get_int(m, "expert_count", false, 0, 0, CAP_EXPERTS, &hp->n_expert, err)) ||
	    (s = get_int(m, "expert_used_count", false, 0, 0, CAP_EXPERTS, &hp->n_expert_used, err)) ||
	    (s = get_int(m, "expert_feed_forward_length", false, hp->n_ff, 0, CAP_DIM, &hp->n_ff_exp, err)) ||
	    (s = get_int(m, "expert_shared_feed_forward_length", false, 0, 0, CAP_DIM, &hp->n_ff_shexp, err)) ||
	    (s = get_int(m, "expert_shared_count", false, 0, 0, CAP_EXPERTS, &hp->n_expert_shared, err)) ||
	    (s = get_int(m, "leading_dense_block_count", false, 0, 0, CAP_LAYERS, &hp->n_leading_dense, err)) ||
	    (s = get_int(m, "expert_group_count", false, 0, 0, CAP_EXPERTS, &hp->n_expert_groups, err)) ||
	    (s = get_int(m, "expert_group_used_count", false, 0, 0, CAP_EXPERTS, &hp->n_group_used, err)) ||
	    (s = get_int(m, "attention.q_lora_rank", false, 0, 0, CAP_DIM, &hp->q_lora_rank, err)) ||
	    (s = get_int(m, "attention.kv_lora_rank", false, 0, 0, CAP_DIM, &hp->kv_lora_rank, err)) ||
	    (s = get_int(m, "rope.scaling.original_context_length", false, 0, 0, (int64_t)1 << 32, &hp->rope_orig_ctx,
			 err)))
		return s;
	hp->eps = get_float(m, "attention.layer_norm_rms_epsilon", 1e-5f);
	hp->rope_base = get_float(m, "rope.freq_base", 10000.0f);
	hp->rope_factor = get_float(m, "rope.scaling.factor", 1.0f);
	hp->yarn_beta_fast = get_float(m, "rope.scaling.yarn_beta_fast", 32.0f);
	hp->yarn_beta_slow = get_float(m, "rope.scaling.yarn_beta_slow", 1.0f);
	hp->yarn_log_mul = get_float(m, "rope.scaling.yarn_log_multiplier", 0.0f);
	hp->expert_scale = get_float(m, "expert_weights_scale", 1.0f);
	char key[160];
	snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
	const char *st = muse_meta_get_str(&m->meta, key);
	if (!st || !strcmp(st, "none"))
		hp->rope_scaling = MUSE_ROPE_NONE;
	else if (!strcmp(st, "linear"))
		hp->rope_scaling = MUSE_ROPE_LINEAR;
	else if (!strcmp(st, "yarn"))
		hp->rope_scaling = MUSE_ROPE_YARN;
	else
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: rope scaling '%s' is not supported", m->r->path, st);
	if (hp->rope_scaling == MUSE_ROPE_NONE)
		hp->rope_factor = 1.0f;
	if (!(hp->rope_factor > 0) || !(hp->rope_base > 0) || !(hp->eps >= 0))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: rope base, rope factor or norm epsilon out of range",
				    m->r->path);
	if (hp->n_head % hp->n_head_kv || hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
		return muse_err_set(err, MUSE_ERR_FORMAT,
				    "%s: head counts %lld/%lld or rope dimension %lld do not fit the head size %lld",
				    m->r->path, (long long)hp->n_head, (long long)hp->n_head_kv, (long long)hp->n_rot,
				    (long long)hp->head_dim_k);
	if (hp->n_expert && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: expert_used_count %lld not in 1..expert_count %lld",
				    m->r->path, (long long)hp->n_expert_used, (long long)hp->n_expert);
	if (hp->n_expert_groups > 1 &&
	    (hp->n_expert % hp->n_expert_groups || hp->n_group_used < 1 || hp->n_group_used > hp->n_expert_groups))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: expert groups %lld/%lld do not divide %lld experts",
				    m->r->path, (long long)hp->n_group_used, (long long)hp->n_expert_groups,
				    (long long)hp->n_expert);

	/* Gating conventions as llama.cpp's graphs fix them per architecture, overridden by explicit keys. */
	uint64_t gf = 0;
	hp->expert_sigmoid = key_u64(m, "expert_gating_func", &gf) ? gf == 2 : hp->arch == MUSE_FA_DEEPSEEK2;
	hp->expert_norm = key_bool(m, "expert_weights_norm",
				   hp->arch == MUSE_FA_LLAMA || hp->arch == MUSE_FA_QWEN3MOE);
	if (hp->arch == MUSE_FA_DEEPSEEK2) {
		/* MLA: llama.cpp writes the absorbed widths as key/value_length and the per-head q/k (nope + rope)
		 * and v widths as *_mla; older files have only the latter meaning under the plain keys. */
		if ((s = get_int(m, "attention.key_length_mla", false, hp->head_dim_k, 1, CAP_DIM, &hp->head_dim_k, err)) ||
		    (s = get_int(m, "attention.value_length_mla", false, hp->head_dim_v, 1, CAP_DIM, &hp->head_dim_v, err)))
			return s;
		if (!hp->kv_lora_rank || hp->n_rot >= hp->head_dim_k)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: deepseek2 needs kv_lora_rank and rope < key_length",
					    m->r->path);
	}

	/* n_vocab: the key when present, else the embedding's rows. */
	size_t ti;
	if (find_tensor(m, "token_embd.weight", &ti))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", m->r->path);
	const muse_tensor *te = &m->r->tensors[ti];
	if (te->ndim != 2 || te->shape[1] != (uint64_t)hp->n_embd || te->shape[0] < 1 || te->shape[0] > (1u << 24))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'token_embd.weight' shape is not [n_vocab, %lld]",
				    m->r->path, (long long)hp->n_embd);
	hp->n_vocab = (int64_t)te->shape[0];
	return MUSE_OK;
}

/* ---- open ---- */

void muse_model_free(muse_model *m)
{
	if (!m)
		return;
	free(m->path);
	free(m->rope_freqs);
	muse_strmap_free(&m->names);
	muse_meta_free(&m->meta);
	muse_reader_free(m->r);
	free(m);
}

muse_status muse_model_open(const char *path, muse_model **out, muse_err *err)
{
	muse_status s;
	muse_model *m = calloc(1, sizeof *m);
	*out = NULL;
	if (!m)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	muse_meta_init(&m->meta);
	muse_strmap_init(&m->names);
	if (!(m->path = strdup(path)))
		goto nomem;
	/* An HF directory is read as the GGUF its conversion would be: one tensor source, one forward graph. Its
	 * tokenizer is the directory's own files (tokenizer.json is what HF runs), not their GGUF rendering. */
	muse_hf_view_opts vo = { .want = MUSE_DT_INVALID, .quiet = true, .no_tokenizer = true };
	if ((s = muse_is_dir(path) ? muse_hf_view_open(path, &vo, &m->r, err) : muse_reader_open(path, &m->r, err)))
		goto fail;
	if (strcmp(m->r->format, "gguf") && strcmp(m->r->format, "hf")) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				 "%s: a %s file alone has no hparams: pass the model directory (with config.json) "
				 "or a GGUF file",
				 path, m->r->format);
		goto fail;
	}
	for (size_t i = 0; i < m->r->n_tensors; i++)
		if (!muse_add_u64(m->nbytes, m->r->tensors[i].nbytes, &m->nbytes)) {
			s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: total tensor size overflows", path);
			goto fail;
		}
	for (size_t i = 0; i < m->r->meta.n; i++)
		if ((s = muse_meta_copy_kv(&m->meta, &m->r->meta.kv[i])))
			goto nomem;
	for (size_t i = 0; i < m->r->n_tensors; i++)
		if (muse_strmap_put(&m->names, m->r->tensors[i].name, strlen(m->r->tensors[i].name), i, NULL) < 0)
			goto nomem;
	const char *an = muse_meta_get_str(&m->meta, "general.architecture");
	if (!an || strlen(an) >= sizeof m->hp.arch_name) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: metadata 'general.architecture' is missing or too long", path);
		goto fail;
	}
	strcpy(m->hp.arch_name, an);
	if ((s = read_hparams(m, err)))
		goto fail;
	/* GGUF Llama-3 scaling: the rope_freqs tensor (n_rot / 2 divisors). */
	size_t fi;
	if (!m->rope_freqs && !find_tensor(m, "rope_freqs.weight", &fi)) {
		const muse_tensor *t = &m->r->tensors[fi];
		if (t->nelements != (uint64_t)(m->hp.n_rot / 2) || t->dtype != MUSE_DT_F32) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' is not %lld F32 values", path,
					 (long long)(m->hp.n_rot / 2));
			goto fail;
		}
		if (!(m->rope_freqs = malloc(t->nbytes ? t->nbytes : 1)))
			goto nomem;
		if ((s = muse_reader_read(m->r, fi, m->rope_freqs, err)))
			goto fail;
		m->hp.has_rope_freqs = true;
	}
	if (m->rope_freqs)
		for (int64_t i = 0; i < m->hp.n_rot / 2; i++)
			if (!(m->rope_freqs[i] > 0)) {
				s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: rope frequency factor %lld is not positive", path,
						 (long long)i);
				goto fail;
			}
	*out = m;
	return MUSE_OK;
nomem:
	s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
fail:
	muse_model_free(m);
	return s;
}

/* ---- weights ---- */

/*
 * Q4_1 and Q5_1 blocks: the min m of every block (fp16, at the same offset
 * in both layouts). ggml's products with these types add m times the activation
 * block's fp16 sum (Q8_1's s), which d * q alone does not reproduce. Read as
 * bytes: a mapped tensor need not be aligned for the struct.
 */
MUSE_STATIC_ASSERT(offsetof(muse_block_q4_1, m) == offsetof(muse_block_q5_1, m), "Q4_1 and Q5_1 keep m alike");
static muse_status block_mins(const muse_tensor *t, const uint8_t *src, float **out, muse_err *err)
{
	const muse_dtype_traits *dt = muse_dtype_info(t->dtype);
	uint64_t nb = t->nelements / dt->blck;
	*out = NULL;
	if (!(*out = malloc((size_t)(nb ? nb : 1) * sizeof(float))))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (uint64_t b = 0; b < nb; b++) {
		const uint8_t *p = src + b * dt->block_bytes + offsetof(muse_block_q4_1, m);
		(*out)[b] = muse_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
	}
	return MUSE_OK;
}

/* Reads reader tensor ti as F32 into dst (its nelements floats): ggml blocks dequantized, floats converted.
 * mins (may be NULL): for Q4_1 and Q5_1, gets block_mins' malloc'd array, else NULL. */
static muse_status read_f32(muse_model *m, size_t ti, float *dst, float **mins, muse_err *err)
{
	const muse_tensor *t = &m->r->tensors[ti];
	const muse_dtype_traits *dt = muse_dtype_info(t->dtype);
	muse_status s = MUSE_OK;
	uint8_t *tmp = NULL;
	size_t n = (size_t)t->nelements;
	const uint8_t *src = muse_reader_view(m->r, ti);
	if (!src) { /* a computed tensor (an HF view's) or strided storage */
		if (!(tmp = malloc(t->nbytes ? t->nbytes : 1)))
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		if ((s = muse_reader_read(m->r, ti, tmp, err)))
			goto done;
		src = tmp;
	}
	if (dt && dt->is_quant) {
		if ((s = muse_dequantize(t->dtype, src, dst, (int64_t)n, err)))
			muse_err_prefix(err, "%s: tensor '%s'", m->r->path, t->name);
		else if (mins && (t->dtype == MUSE_DT_Q4_1 || t->dtype == MUSE_DT_Q5_1))
			s = block_mins(t, src, mins, err);
	} else if (dt && dt->is_float) {
		if ((s = muse_dtype_convert(MUSE_DT_F32, dst, t->dtype, src, n, err)))
			muse_err_prefix(err, "%s: tensor '%s'", m->r->path, t->name);
	} else {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s weights cannot feed the forward pass",
				 m->r->path, t->name, muse_dtype_name(t->dtype));
	}
done:
	/* Read once, now F32: layer-at-a-time work keeps one layer's file pages resident, not every layer's. */
	muse_reader_release(m->r, ti);
	free(tmp);
	return s;
}

static float *alloc_f32(uint64_t n)
{
	size_t bytes;
	return muse_mul_size(n ? (size_t)n : 1, sizeof(float), &bytes) ? malloc(bytes) : NULL;
}

/* Loads name into w when present (*found false otherwise), checking it has exactly the expected element count and shape. */
static muse_status load_weight(muse_model *m, const char *name, int ndim, const int64_t *shape, muse_weight *w,
			       bool *found, muse_err *err)
{
	size_t ti;
	int td = 0;
	uint64_t tsh[MUSE_MAX_DIMS], nel = 1, hoff;
	muse_status s;
	*found = false;
	if (!muse_strmap_get(&m->names, name, strlen(name), &ti))
		return MUSE_OK;
	const muse_tensor *t = &m->r->tensors[ti];
	td = t->ndim;
	memcpy(tsh, t->shape, sizeof tsh);
	hoff = t->header_offset;
	for (int d = 0; d < td; d++)
		nel *= tsh[d];
	uint64_t want = 1;
	for (int d = 0; d < ndim; d++)
		want *= (uint64_t)shape[d];
	/* Compare shapes ignoring leading 1s (a [1, n] gate vector is the same as [n]). */
	int k = 0;
	while (k < td - 1 && tsh[k] == 1 && td - k > ndim)
		k++;
	bool ok = td - k == ndim && nel == want;
	for (int d = 0; ok && d < ndim; d++)
		ok = tsh[k + d] == (uint64_t)shape[d];
	if (!ok) {
		char want_s[96], got_s[96];
		int n = 0;
		for (int d = 0; d < ndim; d++)
			n += snprintf(want_s + n, sizeof want_s - (size_t)n, "%s%lld", d ? ", " : "", (long long)shape[d]);
		n = 0;
		got_s[0] = 0;
		for (int d = 0; d < td && n < (int)sizeof got_s - 24; d++)
			n += snprintf(got_s + n, sizeof got_s - (size_t)n, "%s%llu", d ? ", " : "", (unsigned long long)tsh[d]);
		return muse_err_at(err, MUSE_ERR_FORMAT, m->r->path, hoff, "tensor '%s' has shape [%s], the hparams say [%s]",
				   name, got_s, want_s);
	}
	if (!(w->data = alloc_f32(nel))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory for %llu floats", m->r->path, name,
				 (unsigned long long)nel);
	} else if ((s = read_f32(m, ti, w->data, &w->bmin, err))) {
		free(w->data);
		w->data = NULL;
	}
	if (s)
		return s;
	w->stored = t->dtype;
	w->ndim = ndim;
	for (int d = 0; d < ndim; d++)
		w->shape[d] = shape[d];
	snprintf(w->name, sizeof w->name, "%s", name);
	*found = true;
	return MUSE_OK;
}

void muse_layer_free(muse_layer *l)
{
	if (!l)
		return;
	for (int i = 0; i < MUSE_W_COUNT; i++) {
		free(l->w[i].data);
		free(l->w[i].bmin);
	}
	memset(l, 0, sizeof *l);
}

muse_status muse_model_load_layer(muse_model *m, int64_t il, muse_layer *l, muse_err *err)
{
	const muse_hparams *hp = &m->hp;
	memset(l, 0, sizeof *l);
	l->il = il;
	if (il < 0 || il >= hp->n_layer)
		return muse_err_set(err, MUSE_ERR_USAGE, "layer %lld out of range", (long long)il);
	const int64_t E = hp->n_embd, H = hp->n_head, HK = hp->n_head_kv, dk = hp->head_dim_k, dv = hp->head_dim_v;
	const bool mla = hp->arch == MUSE_FA_DEEPSEEK2;
	const bool moe = hp->n_expert > 0 && il >= hp->n_leading_dense;
	const int64_t nope = dk - hp->n_rot, kvl = hp->kv_lora_rank, ql = hp->q_lora_rank;
	const int64_t X = hp->n_expert, ffe = hp->n_ff_exp;
	const int64_t ffs = hp->n_ff_shexp ? hp->n_ff_shexp : hp->n_ff_exp * (hp->n_expert_shared ? hp->n_expert_shared : 1);
	struct want {
		int64_t shape[3];
		int ndim;
		bool required;
	} want[MUSE_W_COUNT] = { 0 };
#define WANT(slot, req, nd, a, b, c) want[slot] = (struct want){ { a, b, c }, nd, req }
	WANT(MUSE_W_ATTN_NORM, true, 1, E, 0, 0);
	WANT(MUSE_W_FFN_NORM, true, 1, E, 0, 0);
	WANT(MUSE_W_ATTN_O, true, 2, E, H * dv, 0);
	WANT(MUSE_W_ATTN_O_BIAS, false, 1, E, 0, 0);
	if (!mla) {
		WANT(MUSE_W_ATTN_Q, true, 2, H * dk, E, 0);
		WANT(MUSE_W_ATTN_K, true, 2, HK * dk, E, 0);
		WANT(MUSE_W_ATTN_V, true, 2, HK * dv, E, 0);
		WANT(MUSE_W_ATTN_Q_BIAS, false, 1, H * dk, 0, 0);
		WANT(MUSE_W_ATTN_K_BIAS, false, 1, HK * dk, 0, 0);
		WANT(MUSE_W_ATTN_V_BIAS, false, 1, HK * dv, 0, 0);
		WANT(MUSE_W_ATTN_Q_NORM, hp->arch == MUSE_FA_QWEN3 || hp->arch == MUSE_FA_QWEN3MOE, 1, dk, 0, 0);
		WANT(MUSE_W_ATTN_K_NORM, hp->arch == MUSE_FA_QWEN3 || hp->arch == MUSE_FA_QWEN3MOE, 1, dk, 0, 0);
	} else {
		if (ql) {
			WANT(MUSE_W_ATTN_Q_A, true, 2, ql, E, 0);
			WANT(MUSE_W_ATTN_Q_A_NORM, true, 1, ql, 0, 0);
			WANT(MUSE_W_ATTN_Q_B, true, 2, H * dk, ql, 0);
		} else {
			WANT(MUSE_W_ATTN_Q, true, 2, H * dk, E, 0);
		}
		WANT(MUSE_W_ATTN_KV_A_MQA, true, 2, kvl + hp->n_rot, E, 0);
		WANT(MUSE_W_ATTN_KV_A_NORM, true, 1, kvl, 0, 0);
		WANT(MUSE_W_ATTN_KV_B, false, 2, H * (nope + dv), kvl, 0);
		WANT(MUSE_W_ATTN_K_B, false, 3, H, kvl, nope);
		WANT(MUSE_W_ATTN_V_B, false, 3, H, dv, kvl);
	}
	if (!moe) {
		WANT(MUSE_W_FFN_GATE, true, 2, hp->n_ff, E, 0);
		WANT(MUSE_W_FFN_UP, true, 2, hp->n_ff, E, 0);
		WANT(MUSE_W_FFN_DOWN, true, 2, E, hp->n_ff, 0);
	} else {
		WANT(MUSE_W_FFN_GATE_INP, true, 2, X, E, 0);
		WANT(MUSE_W_FFN_EXP_PROBS_B, false, 1, X, 0, 0);
		WANT(MUSE_W_FFN_GATE_EXPS, true, 3, X, ffe, E);
		WANT(MUSE_W_FFN_UP_EXPS, true, 3, X, ffe, E);
		WANT(MUSE_W_FFN_DOWN_EXPS, true, 3, X, E, ffe);
		WANT(MUSE_W_FFN_GATE_SHEXP, false, 2, ffs, E, 0);
		WANT(MUSE_W_FFN_UP_SHEXP, false, 2, ffs, E, 0);
		WANT(MUSE_W_FFN_DOWN_SHEXP, false, 2, E, ffs, 0);
		WANT(MUSE_W_FFN_GATE_INP_SHEXP, false, 1, E, 0, 0);
	}
#undef WANT
	muse_status s = MUSE_OK;
	for (int i = 0; i < MUSE_W_COUNT; i++) {
		if (!want[i].ndim)
			continue;
		char name[96];
		bool found;
		snprintf(name, sizeof name, "blk.%lld.%s.%s", (long long)il, slots[i].stem, slots[i].suffix);
		if ((s = load_weight(m, name, want[i].ndim, want[i].shape, &l->w[i], &found, err)))
			goto fail;
		if (!found && want[i].required) {
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is missing", m->r->path, name);
			goto fail;
		}
	}
	if (mla && !l->w[MUSE_W_ATTN_KV_B].data && !(l->w[MUSE_W_ATTN_K_B].data && l->w[MUSE_W_ATTN_V_B].data)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: layer %lld has neither attn_kv_b nor attn_k_b + attn_v_b",
				 m->r->path, (long long)il);
		goto fail;
	}
	if (moe && l->w[MUSE_W_FFN_GATE_SHEXP].data && !(l->w[MUSE_W_FFN_UP_SHEXP].data && l->w[MUSE_W_FFN_DOWN_SHEXP].data)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: layer %lld has an incomplete shared expert", m->r->path,
				 (long long)il);
		goto fail;
	}
	return MUSE_OK;
fail:
	muse_layer_free(l);
	return s;
}

void muse_head_free(muse_head *h)
{
	if (!h)
		return;
	free(h->norm.data);
	free(h->output.data);
	free(h->norm.bmin);
	free(h->output.bmin);
	memset(h, 0, sizeof *h);
}

muse_status muse_model_load_head(muse_model *m, muse_head *h, muse_err *err)
{
	const int64_t E = m->hp.n_embd, V = m->hp.n_vocab;
	int64_t ns[1] = { E }, os[2] = { V, E };
	bool found;
	muse_status s;
	memset(h, 0, sizeof *h);
	if ((s = load_weight(m, "output_norm.weight", 1, ns, &h->norm, &found, err)))
		goto fail;
	if (!found) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'output_norm.weight' is missing", m->r->path);
		goto fail;
	}
	if ((s = load_weight(m, "output.weight", 2, os, &h->output, &found, err)))
		goto fail;
	if (!found) {
		if ((s = load_weight(m, "token_embd.weight", 2, os, &h->output, &found, err)))
			goto fail;
		h->tied = true;
	}
	return MUSE_OK;
fail:
	muse_head_free(h);
	return s;
}

muse_status muse_model_embed(muse_model *m, const int32_t *ids, size_t n, float *x, muse_err *err)
{
	size_t ti;
	const int64_t E = m->hp.n_embd;
	if (find_tensor(m, "token_embd.weight", &ti))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", m->r->path);
	const muse_tensor *t = &m->r->tensors[ti];
	uint64_t row_bytes;
	if (!muse_dtype_nbytes(t->dtype, (uint64_t)E, &row_bytes))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor 'token_embd.weight': rows of %lld are not whole %s blocks",
				    m->r->path, (long long)E, muse_dtype_name(t->dtype));
	const uint8_t *base = muse_reader_view(m->r, ti);
	uint8_t *tmp = NULL;
	if (!base && !(tmp = malloc((size_t)row_bytes))) /* a computed or strided tensor: one row at a time */
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	const muse_dtype_traits *dt = muse_dtype_info(t->dtype);
	muse_status s = MUSE_OK;
	for (size_t i = 0; i < n && !s; i++) {
		if (ids[i] < 0 || ids[i] >= m->hp.n_vocab) {
			s = muse_err_set(err, MUSE_ERR_USAGE, "token id %d at position %zu is outside the vocabulary (0..%lld)",
					 ids[i], i, (long long)m->hp.n_vocab - 1);
			break;
		}
		const uint8_t *row = base ? base + (size_t)ids[i] * row_bytes : tmp;
		if (!base && (s = muse_reader_read_rows(m->r, ti, (uint64_t)ids[i], 1, tmp, err)))
			break;
		if (dt->is_quant)
			s = muse_dequantize(t->dtype, row, x + i * (size_t)E, E, err);
		else
			s = muse_dtype_convert(MUSE_DT_F32, x + i * (size_t)E, t->dtype, row, (size_t)E, err);
	}
	free(tmp);
	return s;
}
