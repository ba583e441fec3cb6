/* gguf2hf.c: GGUF -> HF directory: reversed arch names, rotate-half Q/K, dequantized blocks, config/tokenizer files, streamed. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/outfile.h"
#include "../lib/progress.h"
#include "gguf2hf.h"
#include "model_writer.h"
#include "reader.h"
#include "vocab_to_hf.h"

#define MAX_CANDIDATES 16
#define MAX_BLOCKS 65536u         /* far above any model; bounds names and loops */
#define MAX_EXPERTS 65536u
#define CHUNK_BYTES (16u << 20)   /* rows gathered or decoded per step */

/* One HF tensor to write: a whole GGUF tensor, or one expert's slice of a 3-D one. */
typedef struct item {
	size_t src;          /* reader index */
	int64_t expert;      /* slice of dim 0, or -1 */
	int64_t vsrc;        /* MLA kv_b_proj: reader index of attn_v_b (src is attn_k_b), or -1 */
	uint64_t nh;         /* heads to un-permute Q/K rows with, 0: none */
	int ndim;
	uint64_t shape[MUSE_MAX_DIMS];
	uint64_t nel;
	muse_dtype dt;       /* output type */
	char name[320];
} item;

typedef struct g2h {
	const char *in;
	muse_reader *r;
	const muse_arch *a;
	const muse_gguf2hf_opts *o;
	item *it;
	size_t n_it;
	uint64_t n_blocks, n_head, n_head_kv;
	int has_output, attn_bias, experts, router_bias;
	uint64_t mla_nope, mla_v, mla_rank; /* MLA head sizes from attn_k_b/attn_v_b; 0: no MLA */
	int64_t rope_freqs; /* reader index of rope_freqs.weight, or -1 */
	muse_dtype main_dt;
} g2h;

static const char *hp_key(const g2h *g, const char *suffix, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s.%s", g->a ? g->a->gguf_name : "", suffix);
	return buf;
}

static bool hp_u64(const g2h *g, const char *suffix, uint64_t *v)
{
	char k[160];
	return muse_meta_get_u64(&g->r->meta, hp_key(g, suffix, k, sizeof k), v);
}

static bool hp_f32(const g2h *g, const char *suffix, float *v)
{
	char k[160];
	const muse_kv *kv = muse_meta_find(&g->r->meta, hp_key(g, suffix, k, sizeof k));
	if (!kv || (kv->type != MUSE_KV_F32 && kv->type != MUSE_KV_F64) || !isfinite(kv->v.f))
		return false;
	*v = (float)kv->v.f;
	return true;
}

/* Output type: --outtype for float and block types; auto keeps floats and decodes blocks to F32. */
static muse_dtype out_type(muse_dtype src, muse_dtype want)
{
	const muse_dtype_traits *tr = muse_dtype_info(src);
	if (!tr->is_quant && !(tr->is_float && tr->blck == 1))
		return src;
	if (want != MUSE_DT_INVALID)
		return want;
	return tr->is_quant ? MUSE_DT_F32 : src;
}

/* Tries every tensor against table a; on failure *bad names the first tensor it cannot name. */
static int arch_fits(const muse_reader *r, const muse_arch *a, uint64_t n_blocks, const char **bad)
{
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_arch_tensor *rule;
		int64_t b;
		if (!strcmp(r->tensors[i].name, "rope_freqs.weight"))
			continue;
		muse_status st = muse_arch_reverse_name(a, r->tensors[i].name, n_blocks, &rule, &b);
		if (st && st != MUSE_ERR_USAGE) { /* merging rows still identify the architecture */
			*bad = r->tensors[i].name;
			return 0;
		}
	}
	return 1;
}

#define NOMEM(x) do { if (x) { s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory"); goto done; } } while (0)

static muse_status choose_arch(g2h *g, muse_err *err)
{
	const char *an = muse_meta_get_str(&g->r->meta, "general.architecture");
	const muse_arch *cand[MAX_CANDIDATES];
	if (!an)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no general.architecture key; use --raw to copy tensors "
				    "with their names unchanged", g->in);
	size_t n = muse_arch_candidates(an, cand, MAX_CANDIDATES);
	if (!n) {
		char list[1024];
		muse_arch_list(list, sizeof list);
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				    "%s: architecture '%s' has no HF mapping (supported: %s); use --raw to copy tensors "
				    "with their names unchanged", g->in, an, list);
	}
	g->a = cand[0];
	if (!hp_u64(g, "block_count", &g->n_blocks))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no integer %s.block_count key", g->in, an);
	if (g->n_blocks > MAX_BLOCKS)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: %s.block_count %llu above %u", g->in, an,
				    (unsigned long long)g->n_blocks, MAX_BLOCKS);
	const char *bad = NULL, *first_bad = NULL;
	for (size_t i = 0; i < n; i++) {
		if (arch_fits(g->r, cand[i], g->n_blocks, &bad)) {
			g->a = cand[i];
			return MUSE_OK;
		}
		if (!first_bad)
			first_bad = bad;
	}
	return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
			    "%s: tensor '%s' has no HF name in the %s table (or its block number is not below "
			    "block_count %llu); use --raw to copy tensors with their names unchanged",
			    g->in, first_bad, an, (unsigned long long)g->n_blocks);
}

static int64_t find_tensor(const muse_reader *r, const char *name)
{
	for (size_t i = 0; i < r->n_tensors; i++)
		if (!strcmp(r->tensors[i].name, name))
			return (int64_t)i;
	return -1;
}

/*
 * MLA: hf2gguf (as convert_hf_to_gguf.py) splits kv_b_proj (h*(nope+v),
 * rank) per head into attn_k_b (h, rank, nope), the first nope rows
 * transposed, and attn_v_b (h, v, rank), the last v rows. The HF tensor is
 * planned at attn_k_b's place with its partner found by name; attn_v_b
 * itself plans nothing (its partner must exist). *skip = 1 for attn_v_b.
 */
static muse_status plan_kv_b(g2h *g, size_t i, const muse_arch_tensor *rule, int64_t blk, item *it, int *skip,
			     muse_err *err)
{
	const muse_reader *r = g->r;
	const muse_tensor *t = &r->tensors[i];
	int is_k = rule->xf == MUSE_XF_KV_B_K;
	const char *from = is_k ? "attn_k_b" : "attn_v_b", *to = is_k ? "attn_v_b" : "attn_k_b";
	char other[320];
	const char *at = strstr(t->name, from);
	*skip = !is_k;
	if (!at || strlen(t->name) >= sizeof other)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' has no HF name", g->in, t->name);
	snprintf(other, sizeof other, "%.*s%s%s", (int)(at - t->name), t->name, to, at + strlen(from));
	int64_t j = find_tensor(r, other);
	if (j < 0)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': '%s' is needed beside it to rebuild "
				    "kv_b_proj, and the file has none", g->in, t->name, other);
	if (!is_k)
		return MUSE_OK;
	const muse_tensor *k = t, *v = &r->tensors[j];
	if (k->ndim != 3 || v->ndim != 3 || k->shape[0] != v->shape[0] || k->shape[1] != v->shape[2] ||
	    !k->shape[0] || !k->shape[1] || !k->shape[2] || !v->shape[1] || k->shape[0] != g->n_head)
		return muse_err_set(err, MUSE_ERR_FORMAT,
				    "%s: tensor '%s': attn_k_b (heads, rank, nope) and attn_v_b (heads, v, rank) "
				    "shapes do not agree with each other or with %llu heads", g->in, t->name,
				    (unsigned long long)g->n_head);
	if (g->mla_nope && (g->mla_nope != k->shape[2] || g->mla_v != v->shape[1] || g->mla_rank != k->shape[1]))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': MLA head sizes differ from an earlier block",
				    g->in, t->name);
	g->mla_nope = k->shape[2];
	g->mla_v = v->shape[1];
	g->mla_rank = k->shape[1];
	muse_dtype kd = k->dtype, vd = v->dtype;
	muse_err e2 = { 0 };
	for (int q = 0; q < 2; q++) {
		muse_dtype d = q ? vd : kd;
		if (muse_dtype_info(d)->is_quant && (!g->o->dequant || g->o->dequant(d, NULL, NULL, 0, &e2)))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "%s: tensor '%s': muse cannot decode %s tensors yet; no output written", g->in,
					    q ? v->name : k->name, muse_dtype_name(d));
		uint64_t bytes;
		/* Heads are decoded one at a time: a head's elements must be whole blocks. */
		if (!muse_dtype_nbytes(d, (q ? v : k)->nelements / k->shape[0], &bytes))
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': a head is not whole %s blocks", g->in,
					    (q ? v : k)->name, muse_dtype_name(d));
	}
	memset(it, 0, sizeof *it);
	it->src = i;
	it->vsrc = j;
	it->expert = -1;
	/* Both halves in one type: theirs when they agree, else (or for blocks) what auto picks for F32. */
	it->dt = kd == vd ? out_type(kd, g->o->want) : out_type(MUSE_DT_F32, g->o->want);
	it->ndim = 2;
	it->shape[0] = k->shape[0] * (k->shape[2] + v->shape[1]);
	it->shape[1] = k->shape[1];
	it->nel = it->shape[0] * it->shape[1];
	if (muse_arch_hf_name(rule, blk, -1, it->name, sizeof it->name))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': HF name does not fit", g->in, t->name);
	return MUSE_OK;
}

/* Pass 1: every output tensor, its shape, type and row transform, checked before anything is written. */
static muse_status plan(g2h *g, muse_err *err)
{
	muse_status s = MUSE_OK;
	const muse_reader *r = g->r;
	size_t cap = r->n_tensors ? r->n_tensors : 1;
	NOMEM(!(g->it = calloc(cap, sizeof *g->it)));
	g->rope_freqs = -1;
	g->main_dt = MUSE_DT_INVALID;
	for (size_t i = 0; i < r->n_tensors; i++) {
		const muse_tensor *t = &r->tensors[i];
		const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
		const muse_arch_tensor *rule;
		int64_t blk;
		if (!strcmp(t->name, "rope_freqs.weight")) {
			g->rope_freqs = (int64_t)i; /* becomes rope_scaling in config.json */
			continue;
		}
		s = muse_arch_reverse_name(g->a, t->name, g->n_blocks, &rule, &blk);
		if (s == MUSE_ERR_USAGE && (rule->xf == MUSE_XF_KV_B_K || rule->xf == MUSE_XF_KV_B_V)) {
			int skip;
			if ((s = plan_kv_b(g, i, rule, blk, &g->it[g->n_it], &skip, err)))
				return s;
			if (!skip) {
				if (!muse_model_writer_supports(MUSE_OUT_SAFETENSORS, g->it[g->n_it].dt))
					return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
							    "%s: tensor '%s': %s cannot be stored in safetensors", g->in,
							    t->name, muse_dtype_name(g->it[g->n_it].dt));
				if (g->main_dt == MUSE_DT_INVALID)
					g->main_dt = g->it[g->n_it].dt;
				g->n_it++;
			}
			continue;
		}
		if (s == MUSE_ERR_USAGE) {
			char hn[320];
			if (muse_arch_hf_name(rule, blk, 0, hn, sizeof hn))
				snprintf(hn, sizeof hn, "%s", rule->hf);
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					    "%s: tensor '%s': rebuilding '%s' from several GGUF tensors is not supported "
					    "yet; use --raw to copy tensors with their names unchanged", g->in, t->name, hn);
		}
		if (s)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s' has no HF name", g->in, t->name);
		if (tr->is_quant) {
			muse_err e2 = { 0 };
			if (!g->o->dequant || g->o->dequant(t->dtype, NULL, NULL, 0, &e2))
				return muse_err_set(err, MUSE_ERR_UNSUPPORTED,
						    "%s: tensor '%s': muse cannot decode %s tensors yet; no output written",
						    g->in, t->name, muse_dtype_name(t->dtype));
		}
		muse_dtype dt = out_type(t->dtype, g->o->want);
		if (!muse_model_writer_supports(MUSE_OUT_SAFETENSORS, dt))
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s cannot be stored in safetensors",
					    g->in, t->name, muse_dtype_name(dt));
		uint64_t nh = 0;
		if (rule->xf == MUSE_XF_PERMUTE_Q || rule->xf == MUSE_XF_PERMUTE_K) {
			nh = rule->xf == MUSE_XF_PERMUTE_Q ? g->n_head : g->n_head_kv;
			uint64_t rows = t->ndim ? t->shape[0] : 0;
			if (t->ndim < 1 || t->ndim > 2 || !nh || rows % (2 * nh) ||
			    (tr->is_quant && t->ndim == 1))
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': %llu rows do not split into %llu heads of an even size",
						    g->in, t->name, (unsigned long long)rows, (unsigned long long)nh);
		}
		int split = muse_arch_rule_splits_experts(rule);
		uint64_t n_exp = 1;
		if (split) {
			if (t->ndim != 3 || !t->shape[0] || t->shape[0] > MAX_EXPERTS)
				return muse_err_set(err, MUSE_ERR_FORMAT,
						    "%s: tensor '%s': expected 3 dimensions (experts, rows, columns) with "
						    "1..%u experts", g->in, t->name, MAX_EXPERTS);
			n_exp = t->shape[0];
			size_t more;
			if (!muse_add_size(cap, (size_t)n_exp - 1, &more))
				NOMEM(1);
			item *grown = realloc(g->it, more * sizeof *grown);
			NOMEM(!grown);
			g->it = grown;
			cap = more;
		}
		g->experts |= split || strstr(t->name, "_exps.") != NULL;
		for (uint64_t e = 0; e < n_exp; e++) {
			item *it = &g->it[g->n_it++];
			memset(it, 0, sizeof *it);
			it->src = i;
			it->vsrc = -1;
			it->expert = split ? (int64_t)e : -1;
			it->nh = nh;
			it->dt = dt;
			it->ndim = split ? 2 : t->ndim;
			for (int d = 0; d < it->ndim; d++)
				it->shape[d] = t->shape[d + (split ? 1 : 0)];
			it->nel = split ? t->nelements / n_exp : t->nelements;
			if (muse_arch_hf_name(rule, blk, split ? (int64_t)e : -1, it->name, sizeof it->name))
				return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': HF name does not fit", g->in,
						    t->name);
		}
		if (!strcmp(t->name, "output.weight"))
			g->has_output = 1;
		if (strstr(t->name, ".attn_q.bias"))
			g->attn_bias = 1;
		if (strstr(t->name, ".exp_probs_b."))
			g->router_bias = 1;
		if (g->main_dt == MUSE_DT_INVALID && t->ndim >= 2)
			g->main_dt = dt;
	}
	if (g->main_dt == MUSE_DT_INVALID)
		g->main_dt = g->o->want != MUSE_DT_INVALID ? g->o->want : MUSE_DT_F32;
done:
	return s;
}

/* True when every one of n elements of st survives a round trip through dt bit for bit. */
static int cast_exact(const uint8_t *src, muse_dtype st, uint64_t n, muse_dtype dt)
{
	enum { STEP = 4096 };
	uint8_t mid[STEP * 8], back[STEP * 8];
	size_t esz = muse_dtype_info(st)->block_bytes;
	for (uint64_t off = 0; off < n; off += STEP) {
		size_t k = (size_t)(n - off < STEP ? n - off : STEP);
		if (muse_dtype_convert_ref(dt, mid, st, src + off * esz, k, NULL) ||
		    muse_dtype_convert_ref(st, back, dt, mid, k, NULL) || memcmp(back, src + off * esz, k * esz))
			return 0;
	}
	return 1;
}

/*
 * Auto type, second look: GGUF keeps norms F32 whatever the model's type.
 * An HF checkpoint has one type, so a plain-float tensor other than the
 * main type joins it when that loses nothing (every value converts back
 * exactly: norms of a BF16 model); otherwise it keeps its own type.
 */
static void unify_types(g2h *g)
{
	if (g->o->want != MUSE_DT_INVALID || (g->main_dt != MUSE_DT_F16 && g->main_dt != MUSE_DT_BF16))
		return;
	for (size_t k = 0; k < g->n_it; k++) {
		item *it = &g->it[k];
		const muse_tensor *t = &g->r->tensors[it->src];
		const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
		const uint8_t *v = muse_reader_view(g->r, it->src);
		if (it->dt == g->main_dt || !tr->is_float || tr->blck != 1 || tr->block_bytes > 8 || !v ||
		    it->expert >= 0 || it->vsrc >= 0 || t->nelements > (UINT64_C(1) << 24))
			continue;
		if (cast_exact(v, t->dtype, t->nelements, g->main_dt))
			it->dt = g->main_dt;
	}
}

/* ---- config.json ---- */

/* The shortest decimal that reads back as the same float, as a double (so "1e-05", not 9.99999974e-06). */
static double short_float(float f)
{
	char buf[32];
	for (int p = 1; p <= 9; p++) {
		snprintf(buf, sizeof buf, "%.*g", p, (double)f);
		if (strtof(buf, NULL) == f)
			break;
	}
	return strtod(buf, NULL);
}

/* transformers' model_type for a class name: "Qwen2MoeForCausalLM" -> "qwen2_moe". */
static void model_type(const char *cls, char *out, size_t cap)
{
	size_t n = 0;
	const char *end = strstr(cls, "For");
	if (!end)
		end = cls + strlen(cls);
	for (const char *p = cls; p < end && n + 2 < cap; p++) {
		int up = *p >= 'A' && *p <= 'Z';
		if (up && p > cls) {
			char prev = p[-1];
			if ((prev >= 'a' && prev <= 'z') || (prev >= '0' && prev <= '9'))
				out[n++] = '_';
		}
		out[n++] = (char)(up ? *p - 'A' + 'a' : *p);
	}
	out[n] = '\0';
}

static const char *torch_dtype(muse_dtype dt)
{
	return dt == MUSE_DT_F16 ? "float16" : dt == MUSE_DT_BF16 ? "bfloat16" : "float32";
}

/*
 * Llama-3 rope scaling back from the rope_freqs.weight factors: the
 * parameters whose factors, computed as hf_config.c (and
 * convert_hf_to_gguf.py) compute them, equal the tensor bit for bit.
 * Tries the published Llama 3.x settings with the factor the tensor's
 * largest entry gives; *ok = 0 when none reproduces it.
 */
/* hf_config.c's (and convert_hf_to_gguf.py's) float32 computation of one Llama-3 factor list, compared with fr. */
static int llama3_same(const float *fr, uint64_t n, float base, uint64_t dim, float factor, double lo, double hi,
		       double old)
{
	double low_wavelen = old / lo, high_wavelen = old / hi;
	for (uint64_t i = 0; i < n; i++) {
		float x = (float)(2 * i) / (float)dim;
		float p = (float)pow((double)base, (double)x);
		float freq = 1.0f / p;
		float wavelen = (float)(2 * M_PI) / freq;
		float f;
		if (wavelen < (float)high_wavelen) {
			f = 1.0f;
		} else if (wavelen > (float)low_wavelen) {
			f = factor;
		} else {
			float smooth = ((float)old / wavelen - (float)lo) / (float)(hi - lo);
			f = 1.0f / ((1.0f - smooth) / factor + smooth);
		}
		if (memcmp(&f, &fr[i], sizeof f))
			return 0;
	}
	return 1;
}

/*
 * Llama-3 rope scaling back from the rope_freqs.weight factors: parameters
 * whose factors equal the tensor bit for bit. factor is the largest entry;
 * low/high_freq_factor and original_max_position_embeddings are searched
 * over the values published configs use (1 and 2; 2, 4, 8, 16; powers of
 * two and their 1.5x). Any exact match gives back the same tensor on the
 * way to GGUF. *ok = 0 when none does.
 */
static void llama3_params(const float *fr, uint64_t n, float base, uint64_t dim, double *out, int *ok)
{
	static const double los[] = { 1, 2 }, his[] = { 4, 2, 8, 16 };
	float factor = 0;
	*ok = 0;
	for (uint64_t i = 0; i < n; i++)
		if (fr[i] > factor)
			factor = fr[i];
	if (!(factor > 0) || dim < 2 || (dim + 1) / 2 != n)
		return;
	for (int k = 4; k <= 22; k++)
		for (int h = 0; h < 2; h++) {
			double old = ldexp(h ? 1.5 : 1.0, k);
			for (size_t a = 0; a < 2; a++)
				for (size_t b = 0; b < 4; b++) {
					if (his[b] <= los[a] || !llama3_same(fr, n, base, dim, factor, los[a], his[b], old))
						continue;
					out[0] = short_float(factor);
					out[1] = los[a];
					out[2] = his[b];
					out[3] = old;
					*ok = 1;
					return;
				}
		}
}

#define SETJ(obj, key, val) NOMEM(json_object_set_new(obj, key, val))

/*
 * The HF class: the table's first, or with experts present its first MoE
 * class (llama's table holds Mixtral). A router score-correction bias
 * (exp_probs_b, noaux_tc routing) exists only in DeepSeek-V3 of the
 * deepseek2 table's classes; V2 has none.
 */
static const char *hf_class(const g2h *g)
{
	for (size_t i = 0; g->router_bias && g->a->hf_classes[i]; i++)
		if (strstr(g->a->hf_classes[i], "V3"))
			return g->a->hf_classes[i];
	for (size_t i = 0; g->experts && g->a->hf_classes[i]; i++)
		if (strstr(g->a->hf_classes[i], "Moe") || strstr(g->a->hf_classes[i], "Mixtral"))
			return g->a->hf_classes[i];
	return g->a->hf_classes[0];
}

/*
 * config.json keys llama.cpp's graph implies rather than stores, per
 * model_type: qwen2moe never renormalizes the top-k router weights,
 * qwen3moe always does (llm_build_qwen*moe), and transformers' defaults
 * for those flags differ from that.
 */
static const struct { const char *model_type, *key; int value; } implied[] = {
	{ "qwen2_moe", "norm_topk_prob", 0 },
	{ "qwen3_moe", "norm_topk_prob", 1 },
};

static muse_status build_config(g2h *g, json_t **out, json_t **gen, muse_err *err)
{
	muse_status s = MUSE_OK;
	const muse_meta *m = &g->r->meta;
	json_t *c = json_object(), *gc = json_object();
	*out = *gen = NULL;
	NOMEM(!c || !gc);
	uint64_t v;
	float f;
	char mt[128];
	const char *cls = hf_class(g);
	model_type(cls, mt, sizeof mt);
	SETJ(c, "architectures", json_pack("[s]", cls));
	SETJ(c, "model_type", json_string(mt));
	uint64_t n_embd = 0;
	if (!hp_u64(g, "embedding_length", &n_embd) || !n_embd) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: no %s.embedding_length key", g->in, g->a->gguf_name);
		goto done;
	}
	SETJ(c, "hidden_size", json_integer((json_int_t)n_embd));
	if (hp_u64(g, "feed_forward_length", &v))
		SETJ(c, "intermediate_size", json_integer((json_int_t)v));
	SETJ(c, "num_attention_heads", json_integer((json_int_t)g->n_head));
	/* MLA is stored as MQA (head_count_kv 1, a converter override); HF's kv_b_proj has a KV head per query head. */
	SETJ(c, "num_key_value_heads", json_integer((json_int_t)(g->mla_nope ? g->n_head : g->n_head_kv)));
	SETJ(c, "num_hidden_layers", json_integer((json_int_t)g->n_blocks));
	if (hp_f32(g, "attention.layer_norm_rms_epsilon", &f))
		SETJ(c, "rms_norm_eps", json_real(short_float(f)));
	float base = 10000.0f;
	if (hp_f32(g, "rope.freq_base", &base))
		SETJ(c, "rope_theta", json_real(short_float(base)));
	if (hp_u64(g, "context_length", &v))
		SETJ(c, "max_position_embeddings", json_integer((json_int_t)v));
	/* head_dim only where the GGUF states it: HF -> GGUF then writes key_length back, and nothing more. */
	uint64_t head_dim = n_embd / g->n_head;
	if (g->mla_nope) {
		/* MLA's key_length is rank + rope (the absorbed MQA head); HF derives head_dim, qk_head_dim itself. */
		SETJ(c, "kv_lora_rank", json_integer((json_int_t)g->mla_rank));
		SETJ(c, "qk_nope_head_dim", json_integer((json_int_t)g->mla_nope));
		SETJ(c, "v_head_dim", json_integer((json_int_t)g->mla_v));
		/* No q_lora_rank key (V2-Lite, plain attn_q): null, or transformers' default rank builds q_a/q_b */
		if (!hp_u64(g, "attention.q_lora_rank", &v))
			SETJ(c, "q_lora_rank", json_null());
		if (hp_u64(g, "rope.dimension_count", &v)) {
			head_dim = v;
			SETJ(c, "head_dim", json_integer((json_int_t)v));
		}
	} else if (hp_u64(g, "attention.key_length", &v)) {
		head_dim = v;
		SETJ(c, "head_dim", json_integer((json_int_t)v));
	}
	uint64_t vocab = 0;
	const muse_kv *toks = muse_meta_find(m, "tokenizer.ggml.tokens");
	if (!hp_u64(g, "vocab_size", &vocab) && toks && toks->type == MUSE_KV_ARRAY)
		vocab = toks->n;
	for (size_t i = 0; !vocab && i < g->n_it; i++) /* no key, no tokenizer: the embedding's rows */
		if (!strcmp(g->r->tensors[g->it[i].src].name, "token_embd.weight"))
			vocab = g->it[i].shape[0];
	SETJ(c, "vocab_size", json_integer((json_int_t)vocab));
	SETJ(c, "tie_word_embeddings", json_boolean(!g->has_output));
	SETJ(c, "hidden_act", json_string("silu"));
	SETJ(c, "attention_bias", json_boolean(g->attn_bias));
	SETJ(c, "mlp_bias", json_false());
	int own_count = 0; /* the table names expert_count itself (DeepSeek's n_routed_experts) */
	for (const muse_arch_hparam *h = g->a->hparams; h && h->kind != MUSE_HP_END; h++)
		own_count |= h->key && !strcmp(h->key, "expert_count");
	if (hp_u64(g, "expert_count", &v) && v) {
		/* Mixtral spells it num_local_experts, the Qwen MoE models num_experts; each ignores the other. */
		if (!own_count) {
			SETJ(c, "num_local_experts", json_integer((json_int_t)v));
			SETJ(c, "num_experts", json_integer((json_int_t)v));
		}
		if (hp_u64(g, "expert_used_count", &v))
			SETJ(c, "num_experts_per_tok", json_integer((json_int_t)v));
		if (hp_u64(g, "expert_feed_forward_length", &v))
			SETJ(c, "moe_intermediate_size", json_integer((json_int_t)v));
		if (hp_u64(g, "expert_shared_feed_forward_length", &v))
			SETJ(c, "shared_expert_intermediate_size", json_integer((json_int_t)v));
		/* Grouped routing and the gating function (TextModel.set_gguf_parameters' MoE keys, reversed). */
		if (hp_u64(g, "expert_group_count", &v))
			SETJ(c, "n_group", json_integer((json_int_t)v));
		if (hp_u64(g, "expert_group_used_count", &v))
			SETJ(c, "topk_group", json_integer((json_int_t)v));
		static const char *const gating[] = { NULL, "softmax", "sigmoid", NULL, "sqrtsoftplus" };
		if (hp_u64(g, "expert_gating_func", &v)) {
			if (v >= sizeof gating / sizeof gating[0] || !gating[v]) {
				s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: %s.expert_gating_func %llu has no "
						 "config.json form in muse", g->in, g->a->gguf_name, (unsigned long long)v);
				goto done;
			}
			SETJ(c, "scoring_func", json_string(gating[v]));
		}
	}

	/* The table's own hparam rows read backwards: "<arch>.<key>" -> its first config.json name. */
	for (const muse_arch_hparam *h = g->a->hparams; h && h->kind != MUSE_HP_END; h++) {
		const char *hk = h->hf[0];
		if (!hk || !h->key || !h->key[0] || strchr(hk, ':') || json_object_get(c, hk))
			continue;
		if (h->kind == MUSE_HP_U32 && hp_u64(g, h->key, &v)) {
			SETJ(c, hk, json_integer((json_int_t)v));
		} else if (h->kind == MUSE_HP_F32 && hp_f32(g, h->key, &f)) {
			SETJ(c, hk, json_real(short_float(h->scale != 0 ? (float)(f / h->scale) : f)));
		} else if (h->kind == MUSE_HP_TRUE) {
			char kk[160];
			const muse_kv *kv = muse_meta_find(m, hp_key(g, h->key, kk, sizeof kk));
			if (kv && kv->type == MUSE_KV_BOOL && kv->v.b)
				SETJ(c, hk, json_true());
		}
	}
	for (size_t i = 0; i < sizeof implied / sizeof implied[0]; i++)
		if (!strcmp(implied[i].model_type, mt) && !json_object_get(c, implied[i].key))
			SETJ(c, implied[i].key, json_boolean(implied[i].value));

	/* Rope scaling: linear/yarn keys, or Llama-3 factors recovered from rope_freqs.weight. */
	char k[160];
	const char *st = muse_meta_get_str(m, hp_key(g, "rope.scaling.type", k, sizeof k));
	json_t *rs = NULL;
	if (st && (!strcmp(st, "linear") || !strcmp(st, "yarn")) && hp_f32(g, "rope.scaling.factor", &f)) {
		rs = json_pack("{s:s, s:f}", "rope_type", st, "factor", short_float(f));
		NOMEM(!rs);
		if (!strcmp(st, "yarn")) {
			static const struct { const char *gg, *hf; } yk[] = {
				{ "rope.scaling.yarn_ext_factor", "extrapolation_factor" },
				{ "rope.scaling.yarn_attn_factor", "attention_factor" },
				{ "rope.scaling.yarn_beta_fast", "beta_fast" },
				{ "rope.scaling.yarn_beta_slow", "beta_slow" },
			};
			if (hp_u64(g, "rope.scaling.original_context_length", &v))
				SETJ(rs, "original_max_position_embeddings", json_integer((json_int_t)v));
			for (size_t i = 0; i < sizeof yk / sizeof yk[0]; i++)
				if (hp_f32(g, yk[i].gg, &f))
					SETJ(rs, yk[i].hf, json_real(short_float(f)));
		}
		/* Table rows "rope:X": rope_scaling keys stored scaled (DeepSeek's 0.1 * mscale_all_dim). */
		for (const muse_arch_hparam *h = g->a->hparams; h && h->kind != MUSE_HP_END; h++) {
			if (h->kind != MUSE_HP_F32 || !h->hf[0] || strncmp(h->hf[0], "rope:", 5) ||
			    !hp_f32(g, h->key, &f))
				continue;
			const char *rk = h->hf[0] + 5;
			double val = short_float(h->scale != 0 ? (float)(f / h->scale) : f);
			SETJ(rs, rk, json_real(val));
			/*
			 * llama.cpp's deepseek2 graph has no separate mscale: it computes
			 * what transformers does when mscale equals mscale_all_dim (as in
			 * every published DeepSeek config), so that is the one to write.
			 */
			if (!strcmp(rk, "mscale_all_dim") && !json_object_get(rs, "mscale"))
				SETJ(rs, "mscale", json_real(val));
		}
	} else if (st && strcmp(st, "none")) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: rope scaling type '%s' has no config.json form in muse",
				 g->in, st);
		goto done;
	}
	if (g->rope_freqs >= 0) {
		const muse_tensor *t = &g->r->tensors[g->rope_freqs];
		const uint8_t *fr = muse_reader_view(g->r, (size_t)g->rope_freqs);
		double p[4];
		int ok = 0;
		if (t->dtype == MUSE_DT_F32 && fr && t->nelements <= 65536) {
			float *tmp = malloc(t->nelements ? (size_t)t->nelements * sizeof(float) : 1);
			NOMEM(!tmp);
			memcpy(tmp, fr, (size_t)t->nelements * sizeof(float));
			llama3_params(tmp, t->nelements, base, head_dim, p, &ok);
			free(tmp);
		}
		if (!ok || rs) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					 "%s: tensor 'rope_freqs.weight' matches no Llama-3 rope_scaling muse can write", g->in);
			goto done;
		}
		rs = json_pack("{s:s, s:f, s:f, s:f, s:I}", "rope_type", "llama3", "factor", p[0], "low_freq_factor", p[1],
			       "high_freq_factor", p[2], "original_max_position_embeddings", (json_int_t)p[3]);
		NOMEM(!rs);
	}
	SETJ(c, "rope_scaling", rs ? rs : json_null());
	/* transformers 5 reads "dtype", 4.x "torch_dtype". */
	SETJ(c, "dtype", json_string(torch_dtype(g->main_dt)));
	SETJ(c, "torch_dtype", json_string(torch_dtype(g->main_dt)));
	SETJ(c, "use_cache", json_true());

	static const char *const sp[][2] = { { "tokenizer.ggml.bos_token_id", "bos_token_id" },
					     { "tokenizer.ggml.eos_token_id", "eos_token_id" },
					     { "tokenizer.ggml.padding_token_id", "pad_token_id" } };
	for (size_t i = 0; i < 3; i++)
		if (muse_meta_get_u64(m, sp[i][0], &v) && (!vocab || v < vocab)) {
			SETJ(c, sp[i][1], json_integer((json_int_t)v));
			SETJ(gc, sp[i][1], json_integer((json_int_t)v));
		}
	SETJ(gc, "_from_model_config", json_true());
	*out = c;
	*gen = gc;
	c = gc = NULL;
done:
	json_decref(c);
	json_decref(gc);
	return s;
}

/* Dumps j as save_pretrained does (indent 2, sorted keys for configs), newline-terminated, into dir/name. */
static muse_status write_json(const muse_outdir *d, const char *name, json_t *j, size_t flags, muse_err *err)
{
	char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(9) | flags);
	if (!txt)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", name);
	size_t n = strlen(txt);
	char *buf = realloc(txt, n + 2);
	if (!buf) {
		free(txt);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", name);
	}
	buf[n] = '\n';
	muse_status s = muse_outdir_write(d, name, buf, n + 1, err);
	free(buf);
	return s;
}

/*
 * README.md with a YAML front matter carrying the GGUF's general.* keys
 * under the names gguf-py's Metadata reads from a model card (name,
 * basename, finetune, license, language, ...), so HF -> GGUF gives them
 * back instead of deriving a name from the directory. Values are written
 * as JSON strings and flow lists, which YAML reads unchanged.
 */
static char *model_card(const muse_meta *m, const char *in)
{
	static const char *const keys[][2] = {
		{ "general.name", "name" }, { "general.author", "author" }, { "general.version", "version" },
		{ "general.organization", "organization" }, { "general.description", "description" },
		{ "general.finetune", "finetune" }, { "general.basename", "basename" },
		{ "general.size_label", "size_label" }, { "general.url", "url" }, { "general.doi", "doi" },
		{ "general.uuid", "uuid" }, { "general.repo_url", "repo_url" }, { "general.license", "license" },
		{ "general.license.name", "license_name" }, { "general.license.link", "license_link" },
		{ "general.tags", "tags" }, { "general.languages", "language" }, { "general.datasets", "datasets" },
	};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	fputs("---\n", f);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const muse_kv *kv = muse_meta_find(m, keys[i][0]);
		json_t *v = NULL;
		if (kv && kv->type == MUSE_KV_STRING) {
			v = json_stringn(kv->v.s.ptr, (size_t)kv->v.s.len);
		} else if (kv && kv->type == MUSE_KV_ARRAY && kv->arr_type == MUSE_KV_STRING) {
			v = json_array();
			for (uint64_t k = 0; v && k < kv->n; k++) {
				const muse_str *e = &((const muse_str *)kv->arr)[k];
				json_array_append_new(v, json_stringn(e->ptr, (size_t)e->len));
			}
		}
		char *txt = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
		if (txt && !memchr(txt, '\n', strlen(txt))) /* invalid UTF-8 or odd values: left out */
			fprintf(f, "%s: %s\n", keys[i][1], txt);
		free(txt);
		json_decref(v);
	}
	const char *slash = strrchr(in, '/');
	fprintf(f, "---\n\nConverted from the GGUF file `%s` by muse.\n", slash ? slash + 1 : in);
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}

/* ---- pass 2: tensor data ---- */

static muse_status grow(muse_cast_buf *b, size_t n, muse_err *err)
{
	if (n <= b->cap)
		return MUSE_OK;
	free(b->p);
	b->p = malloc(n);
	b->cap = b->p ? n : 0;
	return b->p ? MUSE_OK : muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
}

/* n elements of t (whole blocks) at src as floats: ggml's decoding for blocks, an exact widening for floats. */
static muse_status to_f32(const g2h *g, const muse_tensor *t, const uint8_t *src, float *dst, uint64_t n,
			  muse_err *err)
{
	muse_status s = muse_dtype_info(t->dtype)->is_quant ? g->o->dequant(t->dtype, src, dst, (int64_t)n, err)
							   : muse_dtype_convert_ref(MUSE_DT_F32, dst, t->dtype, src,
										    (size_t)n, err);
	if (s)
		muse_err_prefix(err, "%s: tensor '%s'", g->in, t->name);
	return s;
}

/*
 * MLA kv_b_proj, one head at a time: its first nope rows are attn_k_b's
 * head (rank, nope) transposed back, its last v rows attn_v_b's head as it
 * is. Values pass through F32, which holds every F16/BF16/F32 value and
 * every decoded block exactly, so a float source comes back bit for bit.
 */
static muse_status put_kv_b(g2h *g, muse_model_writer *w, size_t k, muse_cast_buf *rows_buf, muse_cast_buf *cb,
			    muse_progress *pg, muse_err *err)
{
	const item *it = &g->it[k];
	const muse_tensor *tk = &g->r->tensors[it->src], *tv = &g->r->tensors[it->vsrc];
	const uint8_t *bk = muse_reader_view(g->r, it->src), *bv = muse_reader_view(g->r, (size_t)it->vsrc);
	uint64_t h = tk->shape[0], rank = tk->shape[1], nope = tk->shape[2], vd = tv->shape[1];
	muse_status s;
	if (!bk || !bv)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is not contiguous", g->in,
				    bk ? tv->name : tk->name);
	/* floats: one head of attn_k_b, then one head of kv_b (nope + v rows) */
	size_t need;
	if (!muse_mul_size((size_t)rank, (size_t)(nope + nope + vd), &need) ||
	    !muse_mul_size(need, sizeof(float), &need))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': head too large", g->in, tk->name);
	if ((s = grow(rows_buf, need, err)))
		return s;
	float *kh = (float *)(void *)rows_buf->p, *out = kh + rank * nope;
	uint64_t kbytes = tk->nbytes / h, vbytes = tv->nbytes / h;
	for (uint64_t hd = 0; hd < h; hd++) {
		if ((s = to_f32(g, tk, bk + hd * kbytes, kh, rank * nope, err)) ||
		    (s = to_f32(g, tv, bv + hd * vbytes, out + nope * rank, vd * rank, err)))
			return s;
		for (uint64_t n = 0; n < nope; n++)
			for (uint64_t j = 0; j < rank; j++)
				out[n * rank + j] = kh[j * nope + n];
		if ((s = muse_model_writer_put(w, k, it->name, (const uint8_t *)out, MUSE_DT_F32, (nope + vd) * rank,
					       it->dt, cb, pg, err)))
			return s;
		if (muse_interrupted())
			return muse_err_set(err, MUSE_ERR_INTERRUPTED, "interrupted");
	}
	return MUSE_OK;
}

/*
 * Writes one item. Plain tensors stream straight from the map through the
 * writer's chunked cast. Permuted or block-quantized ones go by chunks of
 * whole rows: each HF row is copied (or decoded) from the GGUF row that
 * holds it, so memory is one chunk whatever the tensor's size.
 */
static muse_status put_item(g2h *g, muse_model_writer *w, size_t k, muse_cast_buf *rows_buf, muse_cast_buf *cb,
			    muse_progress *pg, muse_err *err)
{
	const item *it = &g->it[k];
	const muse_tensor *t = &g->r->tensors[it->src];
	const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
	const uint8_t *base = muse_reader_view(g->r, it->src);
	muse_status s;
	if (it->vsrc >= 0)
		return put_kv_b(g, w, k, rows_buf, cb, pg, err);
	if (!base)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s' is not contiguous", g->in, t->name);
	uint64_t slice_bytes = t->nbytes;
	if (it->expert >= 0) {
		slice_bytes = t->nbytes / t->shape[0];
		base += (uint64_t)it->expert * slice_bytes;
	}
	if (!it->nh && !tr->is_quant)
		return muse_model_writer_put(w, k, it->name, base, t->dtype, it->nel, it->dt, cb, pg, err);

	/* Rows: the permuted dimension for Q/K (dim 0), else the innermost one that ggml blocks run along. */
	uint64_t rows = it->nh ? it->shape[0] : (it->ndim ? it->nel / it->shape[it->ndim - 1] : 1);
	if (!rows)
		return muse_model_writer_put(w, k, it->name, base, t->dtype, 0, it->dt, cb, pg, err);
	uint64_t row_elems = it->nel / rows, row_bytes = slice_bytes / rows;
	uint64_t fed = tr->is_quant ? row_elems * sizeof(float) : row_bytes; /* bytes per row handed to put */
	uint64_t per = fed ? CHUNK_BYTES / fed : rows;
	if (!per)
		per = 1;
	if (per > rows)
		per = rows;
	size_t need;
	if (!muse_mul_size((size_t)per, (size_t)fed, &need))
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s': row too large", g->in, t->name);
	if ((s = grow(rows_buf, need ? need : 1, err)))
		return s;
	for (uint64_t r0 = 0; r0 < rows; r0 += per) {
		uint64_t n = rows - r0 < per ? rows - r0 : per;
		uint8_t *dst = rows_buf->p;
		for (uint64_t r = r0; r < r0 + n; r++) {
			uint64_t from = it->nh ? muse_arch_unpermute_src(r, rows, it->nh) : r;
			const uint8_t *src = base + from * row_bytes;
			if (tr->is_quant) {
				if ((s = g->o->dequant(t->dtype, src, (float *)(void *)dst, (int64_t)row_elems, err))) {
					muse_err_prefix(err, "%s: tensor '%s'", g->in, t->name);
					return s;
				}
			} else {
				memcpy(dst, src, (size_t)row_bytes);
			}
			dst += fed;
		}
		if ((s = muse_model_writer_put(w, k, it->name, rows_buf->p, tr->is_quant ? MUSE_DT_F32 : t->dtype,
					       n * row_elems, it->dt, cb, pg, err)))
			return s;
		if (muse_interrupted())
			return muse_err_set(err, MUSE_ERR_INTERRUPTED, "interrupted");
	}
	return MUSE_OK;
}

muse_status muse_gguf2hf(const char *in, const char *out_dir, const muse_gguf2hf_opts *o, muse_err *err)
{
	muse_status s;
	g2h g = { .in = in, .o = o, .rope_freqs = -1 };
	muse_model_writer *w = NULL;
	muse_outdir d = MUSE_OUTDIR_INIT;
	muse_cast_buf rows_buf = { 0 }, cb = { 0 };
	json_t *cfg = NULL, *gen = NULL, *tok = NULL, *tcfg = NULL;
	char path[8192];

	if ((s = muse_reader_open(in, &g.r, err)))
		goto done;
	if (strcmp(g.r->format, "gguf")) {
		s = muse_err_set(err, MUSE_ERR_USAGE, "%s: not a GGUF file", in);
		goto done;
	}
	/* The output name first: a directory in the way is reported before any long work. */
	if ((s = muse_outdir_begin(&d, out_dir, err)) || (s = choose_arch(&g, err)))
		goto done;
	if (!hp_u64(&g, "attention.head_count", &g.n_head) || !g.n_head) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: no nonzero integer %s.attention.head_count key", in,
				 g.a->gguf_name);
		goto done;
	}
	if (!hp_u64(&g, "attention.head_count_kv", &g.n_head_kv))
		g.n_head_kv = g.n_head;
	if (!g.n_head_kv) {
		s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: %s.attention.head_count_kv is 0", in, g.a->gguf_name);
		goto done;
	}
	if ((s = plan(&g, err)))
		goto done;
	unify_types(&g);
	if ((s = build_config(&g, &cfg, &gen, err)))
		goto done;
	uint64_t ctx = 0;
	hp_u64(&g, "context_length", &ctx);
	int has_tok = muse_meta_find(&g.r->meta, "tokenizer.ggml.model") != NULL;
	if (has_tok && (s = muse_vocab_meta_to_hf(&g.r->meta, in, ctx, &tok, &tcfg, err)))
		goto done;

	snprintf(path, sizeof path, "%s/model.safetensors", d.tmp);
	if ((s = muse_model_writer_create(&w, MUSE_OUT_SAFETENSORS, path, o->shard_bytes, err)))
		goto done;
	muse_meta stm;
	muse_meta_init(&stm);
	if (muse_meta_set_str(&stm, "format", "pt")) { /* what save_pretrained writes; transformers checks it */
		muse_meta_free(&stm);
		NOMEM(1);
	}
	s = muse_model_writer_set_meta(w, &stm, NULL, err);
	muse_meta_free(&stm);
	if (s)
		goto done;
	uint64_t total = 0;
	for (size_t k = 0; k < g.n_it; k++) {
		const item *it = &g.it[k];
		if ((s = muse_model_writer_add_tensor(w, it->name, it->dt, it->ndim, it->shape, err)))
			goto done;
		const muse_tensor *t = &g.r->tensors[it->src];
		total += it->vsrc >= 0 || muse_dtype_info(t->dtype)->is_quant
				 ? it->nel * sizeof(float)
				 : (it->expert >= 0 ? t->nbytes / t->shape[0] : t->nbytes);
	}
	if ((s = muse_model_writer_begin(w, err)))
		goto done;
	muse_progress pg;
	muse_progress_start(&pg, "gguf->hf", total, o->quiet);
	for (size_t k = 0; k < g.n_it; k++) {
		if ((s = put_item(&g, w, k, &rows_buf, &cb, &pg, err)))
			goto done;
		if (k + 1 == g.n_it || g.it[k + 1].src != g.it[k].src)
			muse_reader_release(g.r, g.it[k].src);
		if (g.it[k].vsrc >= 0)
			muse_reader_release(g.r, (size_t)g.it[k].vsrc);
	}
	if ((s = muse_model_writer_finish(w, err)))
		goto done;
	muse_progress_end(&pg);
	/* The small files last: until the weights are whole, only registered temp files exist. */
	if ((s = write_json(&d, "config.json", cfg, JSON_SORT_KEYS, err)) ||
	    (s = write_json(&d, "generation_config.json", gen, JSON_SORT_KEYS, err)))
		goto done;
	if (tok && ((s = write_json(&d, "tokenizer.json", tok, 0, err)) ||
		    (s = write_json(&d, "tokenizer_config.json", tcfg, JSON_SORT_KEYS, err))))
		goto done;
	if (tok) { /* SentencePiece vocabularies: tokenizer.model too, so HF -> GGUF keeps scores and types */
		uint8_t *spm = NULL;
		size_t spm_len = 0;
		if ((s = muse_vocab_meta_to_spm(&g.r->meta, in, &spm, &spm_len, err)))
			goto done;
		if (spm)
			s = muse_outdir_write(&d, "tokenizer.model", spm, spm_len, err);
		free(spm);
		if (s)
			goto done;
	}
	char *card = model_card(&g.r->meta, in);
	NOMEM(!card);
	s = muse_outdir_write(&d, "README.md", card, strlen(card), err);
	free(card);
	if (s)
		goto done;
	if ((s = muse_outdir_commit(&d, err)))
		goto done;
	if (!o->quiet)
		fprintf(stderr, "muse: wrote %zu tensors (%s as %s, %s)%s to %s\n", g.n_it, g.a->gguf_name,
			hf_class(&g), muse_dtype_name(g.main_dt),
			has_tok ? "" : " without tokenizer files (the GGUF has none)", out_dir);
done:
	muse_model_writer_free(w);
	muse_outdir_abort(&d);
	muse_reader_free(g.r);
	free(g.it);
	free(rows_buf.p);
	free(cb.p);
	json_decref(cfg);
	json_decref(gen);
	json_decref(tok);
	json_decref(tcfg);
	return s;
}
