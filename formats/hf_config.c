/* hf_config.c: config.json -> muse_hf_config and the "<arch>.*" GGUF keys. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_config.h"

/* First key of names present in obj (convert_hf_to_gguf.py's find_hparam), or NULL. */
static json_t *find(json_t *obj, const char *const *names)
{
	for (; *names; names++) {
		json_t *v = json_object_get(obj, *names);
		if (v && !json_is_null(v))
			return v;
	}
	return NULL;
}

/* A non-negative integer that fits u32 (every GGUF hparam here is u32). */
static muse_status get_u32(const char *path, json_t *obj, const char *const *names, int required, uint64_t *out,
			   int *found, muse_err *err)
{
	json_t *v = find(obj, names);
	*found = 0;
	if (!v) {
		if (required)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: missing \"%s\"", path, names[0]);
		return MUSE_OK;
	}
	double d = json_is_real(v) ? json_real_value(v) : -1;
	if (!json_is_real(v) || !(d >= 0 && d <= 4294967295.0) || d != floor(d))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: \"%s\" is not an integer in 0..4294967295", path,
				    names[0]);
	*out = (uint64_t)d;
	*found = 1;
	return MUSE_OK;
}

static muse_status get_num(const char *path, json_t *v, const char *what, double *out, muse_err *err)
{
	if (!json_is_number(v) || !isfinite(json_number_value(v)))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: \"%s\" is not a finite number", path, what);
	*out = json_number_value(v);
	return MUSE_OK;
}

/* A number field of a rope dict, or its default when absent. */
static muse_status rope_num(const char *path, json_t *rp, const char *key, double def, double *out, muse_err *err)
{
	json_t *v = json_object_get(rp, key);
	*out = def;
	return v && !json_is_null(v) ? get_num(path, v, key, out, err) : MUSE_OK;
}

/*
 * Llama-3 rope scaling factors, computed as LlamaModel.generate_extra_tensors
 * does in torch float32: every tensor operation rounds to float, Python
 * scalars enter as floats, the thresholds are Python doubles rounded to
 * float for the comparison.
 */
static muse_status llama3_freqs(const char *path, json_t *rp, double base, uint64_t dim, muse_hf_config *cfg,
				muse_err *err)
{
	double factor, lo, hi, old;
	muse_status s;
	if ((s = rope_num(path, rp, "factor", 8.0, &factor, err)) ||
	    (s = rope_num(path, rp, "low_freq_factor", 1.0, &lo, err)) ||
	    (s = rope_num(path, rp, "high_freq_factor", 4.0, &hi, err)) ||
	    (s = rope_num(path, rp, "original_max_position_embeddings", 8192.0, &old, err)))
		return s;
	if (dim < 2 || dim > 65536 || lo == 0 || hi == 0 || hi == lo || factor == 0)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: llama3 rope parameters out of range", path);
	cfg->n_rope_freqs = (dim + 1) / 2; /* torch.arange(0, dim, 2) */
	cfg->rope_freqs = malloc(cfg->n_rope_freqs * sizeof(float));
	if (!cfg->rope_freqs)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	double low_wavelen = old / lo, high_wavelen = old / hi;
	for (uint64_t i = 0; i < cfg->n_rope_freqs; i++) {
		float x = (float)(2 * i) / (float)dim;
		float p = (float)pow((double)(float)base, (double)x);
		float freq = 1.0f / p;
		float wavelen = (float)(2 * M_PI) / freq;
		float f;
		if (wavelen < (float)high_wavelen) {
			f = 1.0f;
		} else if (wavelen > (float)low_wavelen) {
			f = (float)factor;
		} else {
			float smooth = ((float)old / wavelen - (float)lo) / (float)(hi - lo);
			f = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
		}
		cfg->rope_freqs[i] = f;
	}
	return MUSE_OK;
}

void muse_hf_config_free(muse_hf_config *cfg)
{
	free(cfg->rope_freqs);
	cfg->rope_freqs = NULL;
	cfg->n_rope_freqs = 0;
	json_decref(cfg->root);
	cfg->root = NULL;
	cfg->rope = NULL;
}

/* The JSON value of key ("rope:" prefix: in the rope parameters), NULL when absent or null. */
static json_t *lookup(const muse_hf_config *cfg, const char *key)
{
	json_t *obj = cfg->root;
	if (!strncmp(key, "rope:", 5)) {
		obj = cfg->rope;
		key += 5;
	}
	json_t *v = obj ? json_object_get(obj, key) : NULL;
	return v && !json_is_null(v) ? v : NULL;
}

int muse_hf_config_has(const muse_hf_config *cfg, const char *key)
{
	int neg = key[0] == '!';
	json_t *v = lookup(cfg, key + neg);
	int set = v && !json_is_false(v) && !(json_is_number(v) && json_number_value(v) == 0);
	return set != neg;
}

int muse_hf_config_num(const muse_hf_config *cfg, const char *key, double *out)
{
	json_t *v = lookup(cfg, key);
	if (!v || !json_is_number(v) || !isfinite(json_number_value(v)))
		return 0;
	*out = json_number_value(v);
	return 1;
}

int muse_hf_config_u64(const muse_hf_config *cfg, const char *key, uint64_t *out)
{
	double d;
	if (!muse_hf_config_num(cfg, key, &d) || !(d >= 0 && d <= 4294967295.0) || d != floor(d))
		return 0;
	*out = (uint64_t)d;
	return 1;
}

#define KEY(buf, arch, suffix) (snprintf(buf, sizeof buf, "%s.%s", arch, suffix), buf)
#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

/*
 * convert_hf_to_gguf.py reads config.json through transformers'
 * AutoConfig(...).to_dict(), so a key the file lacks takes its config
 * class's default, and the GGUF gets it. The defaults that reach the GGUF
 * for the classes muse converts, per model_type, as transformers 5.23's
 * configuration_<type>.py sets them (older files lack head_dim most
 * often). Types not listed get no defaults.
 */
enum { HD_NONE, HD_PER_HEAD, HD_FIXED, HD_ROPE };
static const struct config_defaults {
	const char *model_type;
	double n_ctx, rms_eps, theta;
	int head_dim;    /* HD_NONE: none unless given; HD_PER_HEAD: hidden_size / num_attention_heads when absent;
			    HD_FIXED: head_dim_v when absent; HD_ROPE: always qk_rope_head_dim (head_dim_v when absent) */
	double head_dim_v;
} config_defaults[] = {
	{ "llama", 2048, 1e-6, 10000, HD_PER_HEAD, 0 },
	{ "mistral", 131072, 1e-6, 10000, HD_PER_HEAD, 0 },
	{ "mixtral", 131072, 1e-5, 1000000, HD_NONE, 0 },
	{ "qwen2", 32768, 1e-6, 10000, HD_NONE, 0 },
	{ "qwen3", 32768, 1e-6, 10000, HD_FIXED, 128 },
	{ "qwen2_moe", 32768, 1e-6, 10000, HD_NONE, 0 },
	{ "qwen3_moe", 32768, 1e-6, 10000, HD_NONE, 0 },
	{ "deepseek_v2", 2048, 1e-6, 10000, HD_ROPE, 64 },
	{ "deepseek_v3", 4096, 1e-6, 10000, HD_ROPE, 64 },
};

static int absent(json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return !v || json_is_null(v);
}

static muse_status set_default(json_t *root, const char *key, double v, muse_err *err)
{
	if (!absent(root, key))
		return MUSE_OK;
	return json_object_set_new(root, key, json_real(v)) ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory") : MUSE_OK;
}

static muse_status apply_class_defaults(const char *path, json_t *root, muse_err *err)
{
	json_t *mt = json_object_get(root, "model_type");
	const struct config_defaults *d = NULL;
	for (size_t i = 0; json_is_string(mt) && i < sizeof config_defaults / sizeof *config_defaults; i++)
		if (!strcmp(json_string_value(mt), config_defaults[i].model_type))
			d = &config_defaults[i];
	if (!d)
		return MUSE_OK;
	muse_status s;
	if ((s = set_default(root, "max_position_embeddings", d->n_ctx, err)) ||
	    (s = set_default(root, "rms_norm_eps", d->rms_eps, err)))
		return s;
	/* transformers 5 moves a top-level rope_theta into rope_parameters; with neither, the class's theta */
	if (absent(root, "rope_theta") && absent(json_object_get(root, "rope_parameters"), "rope_theta") &&
	    absent(json_object_get(root, "rope_scaling"), "rope_theta") &&
	    (s = set_default(root, "rope_theta", d->theta, err)))
		return s;
	double hd = d->head_dim_v;
	switch (d->head_dim) {
	case HD_NONE:
		return MUSE_OK;
	case HD_PER_HEAD: {
		static const char *const embd[] = { "hidden_size", NULL }, *const heads[] = { "num_attention_heads", NULL };
		uint64_t e, h;
		int f1, f2;
		if ((s = get_u32(path, root, embd, 0, &e, &f1, err)) || (s = get_u32(path, root, heads, 0, &h, &f2, err)))
			return s;
		if (!f1 || !f2 || !h)
			return MUSE_OK; /* the required-key checks that follow name what is wrong */
		hd = (double)(e / h);
		break;
	}
	case HD_ROPE: {
		json_t *rope = json_object_get(root, "qk_rope_head_dim");
		if (json_is_real(rope))
			hd = json_real_value(rope);
		return json_object_set_new(root, "head_dim", json_real(hd)) ? muse_err_set(err, MUSE_ERR_NOMEM, "out of memory")
									   : MUSE_OK;
	}
	default:
		break;
	}
	return set_default(root, "head_dim", hd, err);
}

muse_status muse_hf_config_load(const char *dir, muse_hf_config *cfg, muse_meta *meta, muse_err *err)
{
	char path[4096], k[256];
	muse_status s = MUSE_OK;
	json_error_t je;
	uint64_t v;
	int f;
	memset(cfg, 0, sizeof *cfg);
	if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
	/* Reals for every number: configs carry integers beyond int64 (1e30 limits) that jansson would refuse. */
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
	if (!root)
		return muse_err_at(err, MUSE_ERR_FORMAT, path, (uint64_t)(je.position > 0 ? je.position : 0),
				   "config.json: %s", je.text);
	if (!json_is_object(root)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: not a JSON object", path);
		goto done;
	}
	/* Multimodal wrappers keep the text model's hparams in text_config; the converter merges them up. */
	json_t *tc = json_object_get(root, "text_config");
	if (json_is_object(tc))
		json_object_update(root, tc);

	json_t *archs = json_object_get(root, "architectures");
	json_t *a0 = json_is_array(archs) ? json_array_get(archs, 0) : NULL;
	if (!json_is_string(a0)) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: no \"architectures\" entry naming the model class", path);
		goto done;
	}
	cfg->arch = muse_arch_find(json_string_value(a0));
	if (!cfg->arch) {
		char list[512];
		muse_arch_list(list, sizeof list);
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				 "%s: architecture '%s' is not supported (supported: %s)", path, json_string_value(a0),
				 list);
		goto done;
	}
	const char *an = cfg->arch->gguf_name;
	cfg->root = root;
	json_incref(root);

	/* The checkpoint's own KV head count (MLA splits kv_b_proj by it) before any override below. */
	static const char *const n_kv0[] = { "num_key_value_heads", "n_kv_heads", NULL };
	static const char *const n_head0[] = { "num_attention_heads", "n_head", "n_heads", NULL };
	if ((s = get_u32(path, root, n_kv0, 0, &cfg->n_head_kv_src, &f, err)))
		goto done;
	if (!f && (s = get_u32(path, root, n_head0, 0, &cfg->n_head_kv_src, &f, err)))
		goto done;
	if ((s = apply_class_defaults(path, root, err)))
		goto done;
	/* Converter overrides of config values (DeepseekV2Model: MLA as MQA, a default epsilon). */
	for (const muse_arch_hparam *h = cfg->arch->hparams; h && h->kind != MUSE_HP_END; h++) {
		if (h->kind != MUSE_HP_CFG_SET && h->kind != MUSE_HP_CFG_DEFAULT)
			continue;
		json_t *cur = json_object_get(root, h->hf[0]);
		if (h->kind == MUSE_HP_CFG_DEFAULT && cur && !json_is_null(cur))
			continue;
		NOMEM(json_object_set_new(root, h->hf[0], json_real(h->def)));
	}

	static const char *const n_layer[] = { "n_layers", "num_hidden_layers", "n_layer", "num_layers", NULL };
	static const char *const n_ctx[] = { "max_position_embeddings", "n_ctx", "n_positions", "max_length",
					     "max_sequence_length", "model_max_length", NULL };
	static const char *const n_embd[] = { "hidden_size", "n_embd", "dim", NULL };
	static const char *const n_ff[] = { "prefix_dense_intermediate_size", "dense_intermediate_size",
					    "intermediate_size", "n_inner", "hidden_dim", NULL };
	static const char *const n_head[] = { "num_attention_heads", "n_head", "n_heads", NULL };
	static const char *const n_kv[] = { "num_key_value_heads", "n_kv_heads", NULL };
	static const char *const vocab[] = { "vocab_size", NULL };
	static const char *const head_dim[] = { "head_dim", NULL };

	if ((s = get_u32(path, root, n_layer, 1, &cfg->n_layer, &f, err)))
		goto done;
	NOMEM(muse_meta_set_u32(meta, KEY(k, an, "block_count"), (uint32_t)cfg->n_layer));
	if ((s = get_u32(path, root, n_ctx, 0, &v, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "context_length"), (uint32_t)v));
	if ((s = get_u32(path, root, n_embd, 1, &cfg->n_embd, &f, err)))
		goto done;
	NOMEM(muse_meta_set_u32(meta, KEY(k, an, "embedding_length"), (uint32_t)cfg->n_embd));
	if ((s = get_u32(path, root, n_ff, 0, &v, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "feed_forward_length"), (uint32_t)v));
	if ((s = get_u32(path, root, n_head, 1, &cfg->n_head, &f, err)))
		goto done;
	if (!cfg->n_head) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: \"num_attention_heads\" is 0", path);
		goto done;
	}
	NOMEM(muse_meta_set_u32(meta, KEY(k, an, "attention.head_count"), (uint32_t)cfg->n_head));
	if ((s = get_u32(path, root, n_kv, 0, &cfg->n_head_kv, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "attention.head_count_kv"), (uint32_t)cfg->n_head_kv));
	else
		cfg->n_head_kv = cfg->n_head;
	if (!cfg->n_head_kv) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: \"num_key_value_heads\" is 0", path);
		goto done;
	}

	/* rope_parameters (transformers 5) or rope_scaling (4.x); theta may sit at the top level. */
	json_t *rp = json_object_get(root, "rope_parameters");
	if (!json_is_object(rp) || !json_object_size(rp))
		rp = json_object_get(root, "rope_scaling");
	if (!json_is_object(rp))
		rp = NULL;
	json_t *full = rp ? json_object_get(rp, "full_attention") : NULL;
	if (json_is_object(full))
		rp = full;
	cfg->rope = rp;
	json_t *llama3 = NULL;
	json_t *rtype = rp ? json_object_get(rp, "rope_type") : NULL;
	if (rp && !rtype)
		rtype = json_object_get(rp, "type");
	if (rtype && json_is_string(rtype)) {
		const char *t = json_string_value(rtype);
		json_t *fac = json_object_get(rp, "factor");
		double d;
		if ((!strcmp(t, "linear") || !strcmp(t, "yarn")) && fac && !json_is_null(fac)) {
			if ((s = get_num(path, fac, "factor", &d, err)))
				goto done;
			NOMEM(muse_meta_set_str(meta, KEY(k, an, "rope.scaling.type"), t));
			NOMEM(muse_meta_set_f32(meta, KEY(k, an, "rope.scaling.factor"), (float)d));
			if (!strcmp(t, "yarn")) {
				static const char *const orig[] = { "original_max_position_embeddings", NULL };
				if ((s = get_u32(path, rp, orig, 1, &v, &f, err)))
					goto done;
				NOMEM(muse_meta_set_u32(meta, KEY(k, an, "rope.scaling.original_context_length"),
							(uint32_t)v));
				static const struct { const char *hf, *gg; } yk[] = {
					{ "extrapolation_factor", "rope.scaling.yarn_ext_factor" },
					{ "attention_factor", "rope.scaling.yarn_attn_factor" },
					{ "beta_fast", "rope.scaling.yarn_beta_fast" },
					{ "beta_slow", "rope.scaling.yarn_beta_slow" },
				};
				for (size_t i = 0; i < sizeof yk / sizeof yk[0]; i++) {
					json_t *x = json_object_get(rp, yk[i].hf);
					if (!x && !strcmp(yk[i].hf, "attention_factor"))
						x = json_object_get(rp, "attn_factor");
					if (!x || json_is_null(x))
						continue;
					if ((s = get_num(path, x, yk[i].hf, &d, err)))
						goto done;
					NOMEM(muse_meta_set_f32(meta, KEY(k, an, yk[i].gg), (float)d));
				}
			}
		} else if (!strcmp(t, "su") || !strcmp(t, "longrope")) {
			NOMEM(muse_meta_set_str(meta, KEY(k, an, "rope.scaling.type"), "longrope"));
		} else if (!strcmp(t, "llama3")) {
			llama3 = rp;
		} else if (strcmp(t, "default") && strcmp(t, "dynamic")) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported", path, t);
			goto done;
		}
	}
	json_t *theta = rp ? json_object_get(rp, "rope_theta") : NULL;
	if (!theta || json_is_null(theta)) {
		static const char *const th[] = { "global_rope_theta", "rope_global_theta", "rope_theta_global",
						  "rope_theta", "rotary_emb_base", NULL };
		theta = find(root, th);
	}
	double base = 10000.0;
	if (theta) {
		if ((s = get_num(path, theta, "rope_theta", &base, err)))
			goto done;
		NOMEM(muse_meta_set_f32(meta, KEY(k, an, "rope.freq_base"), (float)base));
	}
	static const char *const rms[] = { "rms_norm_eps", "norm_eps", NULL };
	json_t *eps = find(root, rms);
	if (eps) {
		double d;
		if ((s = get_num(path, eps, "rms_norm_eps", &d, err)))
			goto done;
		NOMEM(muse_meta_set_f32(meta, KEY(k, an, "attention.layer_norm_rms_epsilon"), (float)d));
	}
	static const char *const ln[] = { "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", NULL };
	if ((eps = find(root, ln))) {
		double d;
		if ((s = get_num(path, eps, "layer_norm_eps", &d, err)))
			goto done;
		NOMEM(muse_meta_set_f32(meta, KEY(k, an, "attention.layer_norm_epsilon"), (float)d));
	}
	/* MoE keys of TextModel.set_gguf_parameters. */
	static const char *const n_exp[] = { "num_local_experts", "num_experts", "n_routed_experts", NULL };
	static const char *const n_used[] = { "num_experts_per_tok", "num_experts_per_token", "top_k_experts", NULL };
	static const char *const n_grp[] = { "n_group", NULL };
	static const char *const n_grp_used[] = { "topk_group", NULL };
	if ((s = get_u32(path, root, n_exp, 0, &cfg->n_expert, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "expert_count"), (uint32_t)cfg->n_expert));
	if ((s = get_u32(path, root, n_used, 0, &v, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "expert_used_count"), (uint32_t)v));
	if (f && cfg->n_expert && v > cfg->n_expert) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: %llu experts used per token but only %llu experts", path,
				 (unsigned long long)v, (unsigned long long)cfg->n_expert);
		goto done;
	}
	if ((s = get_u32(path, root, n_grp, 0, &v, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "expert_group_count"), (uint32_t)v));
	if ((s = get_u32(path, root, n_grp_used, 0, &v, &f, err)))
		goto done;
	if (f)
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "expert_group_used_count"), (uint32_t)v));
	static const char *const score[] = { "score_function", "scoring_func", "score_func", "moe_router_activation",
					     "moe_router_activation_func", "expert_selection_fn", NULL };
	json_t *sf = find(root, score);
	if (sf) {
		/* gguf ExpertGatingFuncType */
		const char *fn = json_is_string(sf) ? json_string_value(sf) : "";
		uint32_t g = !strcmp(fn, "softmax") ? 1 : !strcmp(fn, "sigmoid") ? 2 : !strcmp(fn, "sqrtsoftplus") ? 4 : 0;
		if (!g) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: expert scoring function '%s' is not supported", path,
					 fn);
			goto done;
		}
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "expert_gating_func"), g));
	}
	cfg->n_dense_lead = 0;
	static const char *const dense[] = { "first_k_dense_replace", NULL };
	if ((s = get_u32(path, root, dense, 0, &v, &f, err)))
		goto done;
	if (f)
		cfg->n_dense_lead = v;
	uint64_t hd = 0;
	if ((s = get_u32(path, root, head_dim, 0, &hd, &f, err)))
		goto done;
	if (f) {
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "attention.key_length"), (uint32_t)hd));
		NOMEM(muse_meta_set_u32(meta, KEY(k, an, "attention.value_length"), (uint32_t)hd));
	} else {
		hd = cfg->n_embd / cfg->n_head;
	}
	if (llama3 && (s = llama3_freqs(path, llama3, base, hd, cfg, err)))
		goto done;
	json_t *tie = json_object_get(root, "tie_word_embeddings");
	cfg->tie_embeddings = tie ? json_is_true(tie) : 1;

	/* LlamaModel.set_gguf_parameters: after the base keys (file_type sits between, the caller's). */
	if ((s = get_u32(path, root, vocab, 1, &cfg->vocab_size, &f, err)))
		goto done;
	cfg->rope_dim = hd;
done:
	if (s)
		muse_hf_config_free(cfg);
	json_decref(root);
	return s;
}

muse_status muse_hf_config_arch_keys(const muse_hf_config *cfg, muse_meta *meta, muse_err *err)
{
	const char *an = cfg->arch->gguf_name;
	char k[256];
	muse_status s = MUSE_OK;
	for (const muse_arch_hparam *h = cfg->arch->hparams; h && h->kind != MUSE_HP_END; h++) {
		if (h->kind == MUSE_HP_CFG_SET || h->kind == MUSE_HP_CFG_DEFAULT)
			continue;
		KEY(k, an, h->key);
		if (h->kind == MUSE_HP_HEAD_DIM) {
			NOMEM(muse_meta_set_u32(meta, k, (uint32_t)cfg->rope_dim));
			continue;
		}
		if (h->kind == MUSE_HP_U32_SUM) {
			/* The default stands in for the first name only (DeepseekV2Model: kv_lora_rank defaults to 512). */
			uint64_t sum = 0, x;
			for (size_t i = 0; i < 4 && h->hf[i]; i++) {
				if (muse_hf_config_u64(cfg, h->hf[i], &x))
					sum += x;
				else if (!i && h->has_def && !lookup(cfg, h->hf[i]))
					sum += (uint64_t)h->def;
				else
					return muse_err_set(err, MUSE_ERR_FORMAT, "config.json: \"%s\" is missing or not an "
							    "integer in 0..4294967295 (for %s)", h->hf[i], k);
			}
			if (sum > UINT32_MAX)
				return muse_err_set(err, MUSE_ERR_FORMAT, "config.json: %s %llu above 4294967295", k,
						    (unsigned long long)sum);
			NOMEM(muse_meta_set_u32(meta, k, (uint32_t)sum));
			continue;
		}
		const char *name = NULL;
		json_t *v = NULL;
		for (size_t i = 0; i < 4 && h->hf[i] && !v; i++)
			if ((v = lookup(cfg, h->hf[i])))
				name = h->hf[i];
		if (!v) {
			if (h->kind == MUSE_HP_U32 && h->has_def) {
				NOMEM(muse_meta_set_u32(meta, k, (uint32_t)h->def));
			} else if (h->required) {
				return muse_err_set(err, MUSE_ERR_FORMAT, "config.json: missing \"%s\" (for %s)", h->hf[0], k);
			}
			continue;
		}
		if (h->kind == MUSE_HP_TRUE) {
			if (json_is_true(v))
				NOMEM(muse_meta_set_bool(meta, k, true));
			continue;
		}
		double d;
		if (!muse_hf_config_num(cfg, name, &d))
			return muse_err_set(err, MUSE_ERR_FORMAT, "config.json: \"%s\" is not a finite number", name);
		if (h->kind == MUSE_HP_U32) {
			uint64_t x;
			if (!muse_hf_config_u64(cfg, name, &x))
				return muse_err_set(err, MUSE_ERR_FORMAT, "config.json: \"%s\" is not an integer in "
						    "0..4294967295", name);
			NOMEM(muse_meta_set_u32(meta, k, (uint32_t)x));
		} else {
			NOMEM(muse_meta_set_f32(meta, k, (float)(h->scale != 0 ? h->scale * d : d)));
		}
	}
done:
	return s;
}

muse_status muse_hf_config_fp8(const muse_hf_config *cfg, const char *dir, int *mode, uint64_t block[2], muse_err *err)
{
	json_t *qc = json_object_get(cfg->root, "quantization_config");
	*mode = -1;
	if (!json_is_object(qc))
		return MUSE_OK;
	json_t *qm = json_object_get(qc, "quant_method");
	if (!json_is_string(qm) || strcmp(json_string_value(qm), "fp8"))
		return MUSE_OK;
	*mode = 0;
	json_t *b = json_object_get(qc, "weight_block_size");
	if (!b || json_is_null(b))
		return MUSE_OK;
	if (!json_is_array(b) || json_array_size(b) != 2)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s/config.json: weight_block_size is not [rows, cols]", dir);
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_array_get(b, i);
		double d = json_is_number(v) ? json_number_value(v) : -1; /* the config is parsed with ints as reals */
		if (!(d >= 1 && d <= 1048576) || d != floor(d))
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s/config.json: weight_block_size entries must be "
					    "integers in 1..1048576", dir);
		block[i] = (uint64_t)d;
	}
	*mode = 1;
	return MUSE_OK;
}

muse_status muse_hf_config_class(const char *dir, char *cls, size_t cls_cap, char *model_type, size_t mt_cap,
				 const muse_arch **arch, muse_err *err)
{
	char path[4096];
	json_error_t je;
	if (cls_cap)
		cls[0] = 0;
	if (mt_cap)
		model_type[0] = 0;
	*arch = NULL;
	if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
	json_t *root = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je);
	if (!root)
		return muse_err_at(err, MUSE_ERR_FORMAT, path, (uint64_t)(je.position > 0 ? je.position : 0),
				   "config.json: %s", je.text);
	json_t *a0 = json_array_get(json_object_get(root, "architectures"), 0);
	json_t *mt = json_object_get(root, "model_type");
	if (json_is_string(a0)) {
		snprintf(cls, cls_cap, "%s", json_string_value(a0));
		*arch = muse_arch_find(json_string_value(a0));
	}
	if (json_is_string(mt))
		snprintf(model_type, mt_cap, "%s", json_string_value(mt));
	json_decref(root);
	return MUSE_OK;
}

/* ---- editing config.json in place: a few values replaced, every other byte kept ---- */

static const char *js_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at an opening quote: just past the closing one (e when unterminated). */
static const char *js_str_end(const char *p, const char *e)
{
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return e;
}

/* Just past the value starting at p: a string, a container (brackets counted outside strings) or a scalar. */
static const char *js_value_end(const char *p, const char *e)
{
	if (p < e && *p == '"')
		return js_str_end(p, e);
	if (p < e && (*p == '{' || *p == '[')) {
		int depth = 0;
		while (p < e) {
			if (*p == '"') {
				p = js_str_end(p, e);
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				return p + 1;
			p++;
		}
		return e;
	}
	while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
		p++;
	return p;
}

#define MAX_DTYPE_EDITS 64

typedef struct dtype_edits {
	const char *at[MAX_DTYPE_EDITS][2]; /* value spans to replace, in text order */
	size_t n;
	int top_found;         /* the top level has torch_dtype or dtype */
	const char *top_last;  /* end of the top level's last member value, NULL when empty */
	const char *indent[2]; /* the whitespace before the top level's first key */
} dtype_edits;

static int key_is(const char *k, const char *kend, const char *name)
{
	size_t n = strlen(name);
	return (size_t)(kend - k) == n + 2 && !memcmp(k + 1, name, n);
}

/* Walks the object at p (depth 0: the top level; 1: a sub-model's *_config) collecting the dtype values. */
static int scan_dtype_object(const char *p, const char *e, int depth, dtype_edits *ed)
{
	p = js_ws(p + 1, e);
	if (depth == 0) {
		ed->indent[0] = NULL;
		ed->top_last = NULL;
	}
	while (p < e && *p == '"') {
		const char *k = p, *kend = js_str_end(p, e);
		if (depth == 0 && !ed->indent[0]) {
			const char *w = k;
			while (w > ed->indent[1] && (w[-1] == ' ' || w[-1] == '\t' || w[-1] == '\n' || w[-1] == '\r'))
				w--;
			ed->indent[0] = w;
			ed->indent[1] = k;
		}
		p = js_ws(kend, e);
		if (p >= e || *p != ':')
			return -1;
		const char *v = js_ws(p + 1, e), *vend = js_value_end(v, e);
		if (key_is(k, kend, "torch_dtype") || key_is(k, kend, "dtype")) {
			if (ed->n == MAX_DTYPE_EDITS)
				return -1;
			ed->at[ed->n][0] = v;
			ed->at[ed->n++][1] = vend;
			if (depth == 0)
				ed->top_found = 1;
		} else if (depth == 0 && *v == '{' && kend - k > 9 && !memcmp(kend - 8, "_config\"", 8) &&
			   !key_is(k, kend, "quantization_config") && scan_dtype_object(v, e, 1, ed)) {
			return -1;
		}
		if (depth == 0)
			ed->top_last = vend;
		p = js_ws(vend, e);
		if (p < e && *p == ',')
			p = js_ws(p + 1, e);
	}
	return p < e && *p == '}' ? 0 : -1;
}

muse_status muse_hf_config_set_dtype(const char *path, const char *text, size_t n, const char *dtype_name, char **out,
				     size_t *out_n, muse_err *err)
{
	*out = NULL;
	*out_n = 0;
	json_error_t je;
	json_t *j = json_loadb(text, n, 0, &je);
	int is_obj = json_is_object(j);
	json_decref(j);
	if (!is_obj)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: not a JSON object", path);
	const char *e = text + n, *p = js_ws(text, e);
	dtype_edits ed = { .indent = { NULL, p } };
	if (scan_dtype_object(p, e, 0, &ed))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: cannot find the members of the JSON object", path);
	char val[64];
	int vn = snprintf(val, sizeof val, "\"%s\"", dtype_name);
	if (vn < 0 || (size_t)vn >= sizeof val)
		return muse_err_set(err, MUSE_ERR_USAGE, "dtype name '%s' too long", dtype_name);
	size_t indent_n = ed.indent[0] ? (size_t)(ed.indent[1] - ed.indent[0]) : 0;
	size_t cap = n + (ed.n + 1) * (size_t)vn + indent_n + 32;
	char *o = malloc(cap), *q = o;
	if (!o)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	const char *from = text;
	for (size_t i = 0; i < ed.n; i++) {
		memcpy(q, from, (size_t)(ed.at[i][0] - from));
		q += ed.at[i][0] - from;
		memcpy(q, val, (size_t)vn);
		q += vn;
		from = ed.at[i][1];
	}
	if (!ed.top_found) {
		/* a new last member, indented like the first one (compact files stay compact) */
		const char *at = ed.top_last ? ed.top_last : js_ws(p + 1, e);
		memcpy(q, from, (size_t)(at - from));
		q += at - from;
		if (ed.top_last)
			*q++ = ',';
		if (ed.top_last && indent_n) {
			memcpy(q, ed.indent[0], indent_n);
			q += indent_n;
		} else if (ed.top_last) {
			*q++ = ' ';
		}
		q += sprintf(q, "\"torch_dtype\": %s", val);
		from = at;
	}
	memcpy(q, from, (size_t)(e - from));
	q += e - from;
	*q = '\0';
	*out = o;
	*out_n = (size_t)(q - o);
	return MUSE_OK;
}
