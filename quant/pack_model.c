/* pack_model.c: the model-level quantization pass: pick the linear weights, quantize each (RTN, GPTQ with given Hessians; AWQ once the calibration engine lands), write packed HF layouts or GGUF, and report coverage. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/path.h"
#include "../formats/hf_view.h"
#include "../formats/model_writer.h"
#include "../formats/quant_card.h"
#include "../formats/reader.h"
#include "../lib/checked.h"
#include "../lib/mapfile.h"
#include "../lib/outfile.h"
#include "../lib/progress.h"
#include "awq.h"
#include "seqquant.h"
#include "pack_model.h"
#include "quant.h"

/* Below this many elements an unquantized matrix is not worth an error (biases, small projections). */
#define LARGE_TENSOR (1u << 16)

/* The module component before ".weight": "model.layers.0.mlp.gate.weight" -> "gate". */
static void last_comp(const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	if (muse_ends_with(name, ".weight"))
		n -= 7;
	size_t b = n;
	while (b > 0 && name[b - 1] != '.')
		b--;
	size_t len = n - b < cap - 1 ? n - b : cap - 1;
	memcpy(out, name + b, len);
	out[len] = 0;
}

static bool is_router_comp(const char *c)
{
	return !strcmp(c, "gate") || !strcmp(c, "router") || !strcmp(c, "shared_expert_gate") ||
	       !strcmp(c, "ffn_gate_inp") || !strcmp(c, "ffn_gate_inp_shexp");
}

/* High precision by design: embeddings, the output head, routers (the issue: "router and gate kept in high precision"). */
static bool keep_by_design(const char *name, bool gguf)
{
	char c[128];
	last_comp(name, c, sizeof c);
	if (is_router_comp(c))
		return true;
	if (gguf)
		return !strncmp(name, "token_embd", 10) || !strcmp(name, "output.weight") || strstr(name, "rope_freqs");
	return strstr(name, "embed") || strstr(name, "lm_head") || strstr(name, "wte.") || strstr(name, "word_embeddings");
}

static bool is_embedding(const char *name)
{
	return strstr(name, "embed") || strstr(name, "wte.") || strstr(name, "wpe.") || strstr(name, "word_embeddings");
}

static bool is_linear(const muse_tensor *t, bool gguf)
{
	char c[128];
	if (!muse_ends_with(t->name, ".weight") || keep_by_design(t->name, gguf))
		return false;
	last_comp(t->name, c, sizeof c);
	if (strstr(c, "norm"))
		return false;
	if (gguf)
		return !strncmp(t->name, "blk.", 4) && (t->ndim == 2 || t->ndim == 3) &&
		       (!strncmp(c, "attn_", 5) || !strncmp(c, "ffn_", 4));
	return t->ndim == 2 && (strstr(t->name, "layers.") || strstr(t->name, ".h.") || strstr(t->name, "blocks."));
}

static bool is_expert(const char *name)
{
	return strstr(name, ".experts.") || strstr(name, "_exps.");
}

/* Dense F32 copy of tensor i (plain floats cast, GGUF block types dequantized). */
static muse_status read_f32(muse_reader *r, size_t i, float **out, muse_err *err)
{
	const muse_tensor *t = &r->tensors[i];
	*out = NULL;
	if (t->nelements > SIZE_MAX / 4 || t->nbytes > SIZE_MAX)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: tensor '%s' is too large", r->path, t->name);
	const muse_dtype_traits *tr = muse_dtype_info(t->dtype);
	if (!tr || (!tr->is_float && !tr->is_quant))
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': cannot quantize a %s tensor", r->path,
				    t->name, muse_dtype_name(t->dtype));
	float *f = malloc(t->nelements ? (size_t)t->nelements * 4 : 4);
	uint8_t *dense = NULL;
	const uint8_t *src = muse_reader_view(r, i);
	muse_status s = MUSE_OK;
	if (!f) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
		goto done;
	}
	if (!src) {
		if (!(dense = malloc(t->nbytes ? (size_t)t->nbytes : 1))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, t->name);
			goto done;
		}
		if ((s = muse_reader_read(r, i, dense, err)))
			goto done;
		src = dense;
	}
	if (tr->is_quant)
		s = muse_dequantize(t->dtype, src, f, (int64_t)t->nelements, err);
	else
		s = muse_dtype_convert(MUSE_DT_F32, f, t->dtype, src, (size_t)t->nelements, err);
	if (s)
		muse_err_prefix(err, "%s: tensor '%s'", r->path, t->name);
	for (uint64_t k = 0; !s && k < t->nelements; k++)
		if (!isfinite(f[k]))
			s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': element %llu is not finite", r->path, t->name,
					 (unsigned long long)k);
done:
	free(dense);
	if (s)
		free(f);
	else
		*out = f;
	return s;
}

/* H for weight `name` from the statistics file: [K, K] per matrix, [E, K, K] for stacked experts. */
static muse_status load_hessian(muse_reader *hs, const char *name, uint64_t E, uint64_t K, float **out, muse_err *err)
{
	*out = NULL;
	for (size_t i = 0; i < hs->n_tensors; i++) {
		const muse_tensor *t = &hs->tensors[i];
		if (strcmp(t->name, name))
			continue;
		bool ok = t->dtype == MUSE_DT_F32 &&
			  ((E == 1 && t->ndim == 2 && t->shape[0] == K && t->shape[1] == K) ||
			   (t->ndim == 3 && t->shape[0] == E && t->shape[1] == K && t->shape[2] == K));
		if (!ok)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tensor '%s': Hessian must be F32 [%s%llu, %llu]", hs->path,
					    name, E > 1 ? "E, " : "", (unsigned long long)K, (unsigned long long)K);
		return read_f32(hs, i, out, err);
	}
	return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no Hessian for weight '%s'", hs->path, name);
}

typedef struct plan {
	bool linear;
	uint64_t E, N, K;
	muse_dtype out_dt;
	size_t first_out, n_out;
} plan;

typedef struct run {
	const muse_pack_opts *o;
	muse_reader *r, *hs, *acts;
	muse_awq_model *awq;
	muse_seq *seq;           /* --calib: statistics from the layer walk */
	char (*gname)[96];       /* --calib: each tensor's GGUF name and expert (-1: dense or stacked) */
	int64_t *gexp;
	char acts_tmp[4096];     /* --calib awq: the inputs written for muse_awq_model_run (removed at the end) */
	uint64_t n_fallback;
	muse_model_writer *w, *dq;
	size_t dq_idx;
	plan *pl;
	muse_wq_config wq;
	muse_gptq_opts go;
	muse_dtype scale_dt;
	bool gguf_in;
	json_t *report;
	uint64_t q_params, lin_params, all_params, n_q, n_kept, n_experts_q;
} run;

static const char *method_name(muse_wq_method m)
{
	return m == MUSE_METHOD_GPTQ ? "gptq" : m == MUSE_METHOD_AWQ ? "awq" : "rtn";
}

static bool has_g_idx(const muse_pack_opts *o)
{
	return o->act_order && !o->static_groups && o->group_size > 0 && o->method == MUSE_METHOD_GPTQ;
}

/* Quantizes linear i and writes its output tensor(s). */
static muse_status do_linear(run *R, size_t i, muse_err *err)
{
	const muse_tensor *t = &R->r->tensors[i];
	const plan *p = &R->pl[i];
	const muse_pack_opts *o = R->o;
	float *w = NULL, *H = NULL;
	uint8_t *dst = NULL;
	muse_qlinear q = { 0 };
	muse_packed_set set = { 0 };
	muse_gptq_stats st = { 0 };
	double loss = 0;
	muse_status s;
	if ((s = read_f32(R->r, i, &w, err)))
		return s;
	uint64_t tokens = 0, n_fb = 0;
	bool *fb = NULL; /* --calib: experts below --min-tokens, quantized by their fallback (RTN) */
	json_t *ex_tok = NULL, *ex_fb = NULL, *ex_rows = NULL; /* stacked experts: routed rows, fallback ids, statistics rows */
	uint64_t routed = 0;
	if (o->method == MUSE_METHOD_GPTQ && R->seq) {
		if (!(H = malloc((size_t)(p->E * p->K * p->K) * sizeof(float))) || !(fb = calloc((size_t)p->E, 1))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", R->r->path, t->name);
			goto done;
		}
		for (uint64_t e = 0; e < p->E; e++) {
			float *He = NULL;
			uint64_t tk = 0;
			int64_t ex = p->E > 1 ? (int64_t)e : R->gexp[i];
			if ((s = muse_seq_hessian(R->seq, R->gname[i], ex, p->K, &He, &tk, err)))
				goto named;
			tokens += tk;
			routed += muse_seq_routed(R->seq, R->gname[i], ex);
			if (p->E > 1) {
				if (!ex_tok && (!(ex_tok = json_array()) || !(ex_fb = json_array()) || !(ex_rows = json_array()))) {
					s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
					goto done;
				}
				json_array_append_new(ex_tok, json_integer((json_int_t)muse_seq_routed(R->seq, R->gname[i], ex)));
				json_array_append_new(ex_rows, json_integer((json_int_t)tk));
				if (!He)
					json_array_append_new(ex_fb, json_integer((json_int_t)e));
			}
			if (He)
				memcpy(H + e * p->K * p->K, He, (size_t)(p->K * p->K) * sizeof(float));
			else
				fb[e] = true, n_fb++;
			free(He);
		}
	} else if (o->method == MUSE_METHOD_GPTQ && (s = load_hessian(R->hs, t->name, p->E, p->K, &H, err)))
		goto done;
	if (o->gguf) {
		uint64_t nb;
		if (!muse_dtype_nbytes(o->gguf_type, p->E * p->N * p->K, &nb) || nb > SIZE_MAX ||
		    !(dst = malloc((size_t)nb))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", R->r->path, t->name);
			goto done;
		}
		size_t per = (size_t)nb / p->E, an = 0;
		const uint8_t *ab = R->awq ? muse_awq_model_gguf(R->awq, i, &an) : NULL;
		if (R->awq && (!ab || an != (size_t)nb)) {
			s = muse_err_set(err, MUSE_ERR_CHECK, "internal: AWQ produced no %s blocks", muse_dtype_name(o->gguf_type));
			goto named;
		}
		if (ab)
			memcpy(dst, ab, an);
		for (uint64_t e = 0; !ab && e < p->E; e++) {
			const float *we = w + e * p->N * p->K;
			if (o->method == MUSE_METHOD_GPTQ && !(fb && fb[e])) {
				s = muse_gptq_quantize_gguf(o->gguf_type, &R->go, we, p->N, p->K, H + e * p->K * p->K,
							    dst + e * per, &st, err);
				loss += st.loss;
			} else
				s = muse_quantize_rows(o->gguf_type, we, dst + e * per, (int64_t)p->N, (int64_t)p->K, NULL,
						       o->nthreads, err);
			if (s)
				goto named;
		}
		if ((s = muse_model_writer_write(R->w, p->first_out, dst, (size_t)nb, err)))
			goto done;
		if (R->dq) {
			if ((s = muse_dequantize(o->gguf_type, dst, w, (int64_t)(p->E * p->N * p->K), err)) ||
			    (s = muse_model_writer_write(R->dq, R->dq_idx++, w, (size_t)(p->E * p->N * p->K) * 4, err)))
				goto done;
		}
	} else {
		const muse_qlinear *qq = &q;
		if (R->awq)
			qq = muse_awq_model_linear(R->awq, i);
		else if (o->method == MUSE_METHOD_GPTQ && !(fb && fb[0]))
			s = muse_gptq_quantize(&R->wq, &R->go, w, p->N, p->K, H, &q, &st, err), loss = st.loss;
		else
			s = muse_rtn_quantize(&R->wq, w, p->N, p->K, &q, err);
		if (s || (s = muse_packed_encode(o->kind, qq, R->scale_dt, &set, err)))
			goto named;
		if ((size_t)set.n != p->n_out) {
			s = muse_err_set(err, MUSE_ERR_CHECK, "tensor '%s': packed layout changed shape", t->name);
			goto done;
		}
		for (int k = 0; k < set.n; k++)
			if ((s = muse_model_writer_write(R->w, p->first_out + k, set.t[k].data, set.t[k].nbytes, err)))
				goto done;
		if (R->dq) {
			muse_qlinear_dequant(qq, w);
			if ((s = muse_model_writer_write(R->dq, R->dq_idx++, w, (size_t)(p->N * p->K) * 4, err)))
				goto done;
		}
	}
	json_t *e = json_pack("{s:s, s:s, s:[I,I,I], s:I}", "name", t->name, "method", method_name(o->method), "shape",
			      (json_int_t)p->E, (json_int_t)p->N, (json_int_t)p->K, "params",
			      (json_int_t)(p->E * p->N * p->K));
	if (e && o->method == MUSE_METHOD_GPTQ) {
		json_object_set_new(e, "gptq_loss", json_real(loss));
		json_object_set_new(e, "damp_percent", json_real(st.damp_used));
		json_object_set_new(e, "dead_columns", json_integer((json_int_t)st.dead_cols));
		if (R->seq) {
			/* tokens: rows the statistics came from (an expert's: its routed rows). */
			json_object_set_new(e, "tokens", json_integer((json_int_t)tokens));
			if (n_fb) {
				json_object_set_new(e, "method", json_string(n_fb == p->E ? "rtn-fallback" : "gptq+rtn-fallback"));
				json_object_set_new(e, "fallback_experts", json_integer((json_int_t)n_fb));
				R->n_fallback++;
			}
			if (is_expert(t->name) || ex_tok) {
				json_object_set_new(e, "routed_tokens", json_integer((json_int_t)routed));
				json_object_set_new(e, "statistics", json_string(o->routed_only ? "routed" : "all-experts"));
			}
			if (ex_tok) {
				json_object_set_new(e, "expert_stat_rows", ex_rows);
				ex_rows = NULL;
				json_object_set_new(e, "expert_tokens", ex_tok);
				json_object_set_new(e, "fallback_expert_ids", ex_fb);
				ex_tok = ex_fb = NULL;
			}
		}
	}
	if (e && R->awq) {
		uint64_t tok;
		double gain;
		const char *m = muse_awq_model_method(R->awq, i, &tok, &gain);
		json_object_set_new(e, "method", json_string(m ? m : "awq"));
		json_object_set_new(e, "tokens", json_integer((json_int_t)tok));
		json_object_set_new(e, "awq_loss_gain", json_real(gain));
		if (m && strstr(m, "rtn-fallback"))
			R->n_fallback++;
	}
	if (e && is_expert(t->name))
		json_object_set_new(e, "expert", json_true());
	json_array_append_new(json_object_get(R->report, "tensors"), e);
	goto done;
named:
	muse_err_prefix(err, "%s: tensor '%s'", R->r->path, t->name);
done:
	json_decref(ex_tok);
	json_decref(ex_rows);
	json_decref(ex_fb);
	free(w);
	free(H);
	free(fb);
	free(dst);
	muse_qlinear_free(&q);
	muse_packed_set_free(&set);
	return s;
}

/* Output dtype of a tensor kept in high precision: packed HF outputs are fp16/bf16 checkpoints. */
static muse_dtype keep_dtype(const run *R, muse_dtype src)
{
	if (R->o->gguf || !muse_dtype_info(src)->is_float || muse_dtype_info(src)->blck != 1)
		return src;
	return src == MUSE_DT_BF16 ? MUSE_DT_BF16 : MUSE_DT_F16;
}

static muse_status do_keep(run *R, size_t i, muse_cast_buf *cb, muse_err *err)
{
	const muse_tensor *t = &R->r->tensors[i];
	const uint8_t *view = muse_reader_view(R->r, i);
	muse_status s;
	const float *ov = R->awq ? muse_awq_model_dense(R->awq, i) : NULL;
	if (ov) /* AWQ folded its scales into this norm, bias or router */
		return muse_model_writer_put(R->w, R->pl[i].first_out, t->name, (const uint8_t *)ov, MUSE_DT_F32,
					     t->nelements, R->pl[i].out_dt, cb, NULL, err);
	if (view)
		return muse_model_writer_put(R->w, R->pl[i].first_out, t->name, view, t->dtype, t->nelements,
					     R->pl[i].out_dt, cb, NULL, err);
	uint8_t *dense = t->nbytes <= SIZE_MAX ? malloc(t->nbytes ? (size_t)t->nbytes : 1) : NULL;
	if (!dense)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: tensor '%s': out of memory", R->r->path, t->name);
	s = muse_reader_read(R->r, i, dense, err);
	if (!s)
		s = muse_model_writer_put(R->w, R->pl[i].first_out, t->name, dense, t->dtype, t->nelements,
					  R->pl[i].out_dt, cb, NULL, err);
	free(dense);
	return s;
}

/* llama.cpp's general.file_type for a whole-model type (the "_S" variants where several exist). */
static int ftype_of(muse_dtype t)
{
	switch (t) {
	case MUSE_DT_Q4_0: return 2;
	case MUSE_DT_Q4_1: return 3;
	case MUSE_DT_Q8_0: return 7;
	case MUSE_DT_Q5_0: return 8;
	case MUSE_DT_Q5_1: return 9;
	case MUSE_DT_Q2_K: return 10;
	case MUSE_DT_Q3_K: return 11;
	case MUSE_DT_Q4_K: return 14;
	case MUSE_DT_Q5_K: return 16;
	case MUSE_DT_Q6_K: return 18;
	case MUSE_DT_IQ4_NL: return 25;
	case MUSE_DT_IQ4_XS: return 30;
	default: return -1;
	}
}

static muse_status mkdir_p(const char *dir, muse_err *err)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return muse_err_set(err, MUSE_ERR_USAGE, "%s: exists and is not a directory", dir);
		return MUSE_OK;
	}
	if (mkdir(dir, 0755) != 0)
		return muse_err_set(err, MUSE_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
	return MUSE_OK;
}

/* Files of an HF directory that travel unchanged (tokenizer, generation config, chat template, ...). */
static bool copy_aux(const char *n)
{
	/* README.md is the source's model card: the output gets its own (formats/quant_card.h). */
	return strcmp(n, "config.json") && strcmp(n, "quantize_config.json") && strcmp(n, "quant_report.json") &&
	       strcmp(n, "README.md") &&
	       !muse_ends_with(n, ".safetensors") && !muse_ends_with(n, ".bin") && !muse_ends_with(n, ".pt") && !muse_ends_with(n, ".pth") &&
	       !muse_ends_with(n, ".index.json") && !muse_ends_with(n, ".gguf") && n[0] != '.';
}

/* Whether the checkpoint stores no output head although the model has one (tied embeddings in a *ForCausalLM). */
static bool head_is_tied(const run *R, json_t *cfg)
{
	for (size_t i = 0; i < R->r->n_tensors; i++)
		if (!strcmp(R->r->tensors[i].name, "lm_head.weight"))
			return false;
	const char *a = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
	return a && muse_ends_with(a, "ForCausalLM");
}

/* README.md: a card for the quantized directory, from the run's options and its calibration record. */
static muse_status write_card(run *R, muse_err *err)
{
	const muse_pack_opts *o = R->o;
	json_t *c = json_object_get(R->report, "calibration");
	muse_quant_card qc = { .method = method_name(o->method), .format = muse_packed_kind_name(o->kind),
			       .bits = o->bits, .group_size = o->group_size, .sym = o->sym,
			       .act_order = o->act_order && o->method == MUSE_METHOD_GPTQ,
			       .static_groups = o->static_groups && o->method == MUSE_METHOD_GPTQ,
			       .calib_file = json_string_value(json_object_get(c, "file")),
			       .calib_sha256 = json_string_value(json_object_get(c, "sha256")),
			       .samples = (int64_t)json_integer_value(json_object_get(c, "samples")),
			       .seq_len = (int64_t)json_integer_value(json_object_get(c, "seq_len")),
			       .seed = o->seed, .quantized_params = R->q_params, .total_params = R->all_params };
	return muse_quant_card_write(o->in, o->out, &qc, err);
}

static muse_status write_hf_files(run *R, const char *const *ignore_in, size_t n_ignore, muse_err *err)
{
	const muse_pack_opts *o = R->o;
	char path[4096];
	muse_status s = MUSE_OK;
	json_error_t je;
	snprintf(path, sizeof path, "%s/config.json", o->in);
	json_t *cfg = json_load_file(path, 0, &je);
	if (!cfg || !json_is_object(cfg)) {
		json_decref(cfg);
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
	}
	/*
	 * A tied head has no tensor of its own, but transformers builds lm_head as a Linear, which
	 * compressed-tensors' "Linear" target would expect quantized: name it with the rest.
	 */
	const char **ignore = calloc(n_ignore + 1, sizeof *ignore);
	if (!ignore) {
		json_decref(cfg);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	memcpy(ignore, ignore_in, n_ignore * sizeof *ignore);
	if (o->kind == MUSE_PACKED_CT && head_is_tied(R, cfg))
		ignore[n_ignore++] = "lm_head";
	muse_packed_config pc = { .kind = o->kind, .bits = o->bits, .group_size = o->group_size, .sym = o->sym,
				  .desc_act = o->act_order && o->method == MUSE_METHOD_GPTQ,
				  .static_groups = o->static_groups && o->method == MUSE_METHOD_GPTQ,
				  .true_sequential = o->true_seq && R->seq && o->method == MUSE_METHOD_GPTQ,
				  .damp_percent = o->damp_percent, .method = method_name(o->method), .ignore = ignore,
				  .n_ignore = n_ignore, .scale_dtype = R->scale_dt };
	char *qc = NULL;
	if ((s = muse_packed_config_json(&pc, &qc, err)))
		goto done;
	json_t *qj = json_loads(qc, 0, &je);
	if (!qj) {
		s = muse_err_set(err, MUSE_ERR_CHECK, "internal: quantization_config is not JSON");
		goto done;
	}
	if (o->kind == MUSE_PACKED_GPTQ && n_ignore) {
		/* GPTQModel's "dynamic" skip rules keep routers out of QuantLinear replacement. */
		json_t *dyn = json_object();
		for (size_t k = 0; k < n_ignore; k++) {
			char rx[1024];
			if (!strcmp(ignore[k], "lm_head"))
				continue; /* GPTQ loaders never convert lm_head unless "lm_head": true */
			snprintf(rx, sizeof rx, "-:^%s$", ignore[k]);
			json_object_set_new(dyn, rx, json_object());
		}
		json_object_set_new(qj, "dynamic", dyn);
	}
	if (o->kind == MUSE_PACKED_GPTQ) {
		char *d = json_dumps(qj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		snprintf(path, sizeof path, "%s/quantize_config.json", o->out);
		s = d ? muse_out_write_file(path, d, strlen(d), err) : muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		free(d);
		if (s) {
			json_decref(qj);
			goto done;
		}
	}
	json_object_set_new(cfg, "quantization_config", qj);
	const char *dt = R->scale_dt == MUSE_DT_BF16 ? "bfloat16" : "float16";
	json_object_set_new(cfg, "torch_dtype", json_string(dt));
	if (json_object_get(cfg, "dtype"))
		json_object_set_new(cfg, "dtype", json_string(dt));
	char *d = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	snprintf(path, sizeof path, "%s/config.json", o->out);
	s = d ? muse_out_write_file(path, d, strlen(d), err) : muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	free(d);
	if (s)
		goto done;
	DIR *dir = opendir(o->in);
	struct dirent *de;
	while (dir && !s && (de = readdir(dir))) {
		char src[4096];
		struct stat st;
		snprintf(src, sizeof src, "%s/%s", o->in, de->d_name);
		if (!copy_aux(de->d_name) || stat(src, &st) || !S_ISREG(st.st_mode))
			continue;
		char *buf = NULL;
		size_t len = 0;
		if ((s = muse_read_small_file(src, 256u << 20, &buf, &len, err)))
			break;
		snprintf(path, sizeof path, "%s/%s", o->out, de->d_name);
		s = muse_out_write_file(path, buf, len, err);
		free(buf);
	}
	if (dir)
		closedir(dir);
	if (!s)
		s = write_card(R, err);
done:
	free(qc);
	free(ignore);
	json_decref(cfg);
	return s;
}

static muse_status write_report(run *R, const char *path, muse_err *err)
{
	json_t *rep = R->report;
	json_object_set_new(rep, "quantized_params", json_integer((json_int_t)R->q_params));
	json_object_set_new(rep, "linear_params", json_integer((json_int_t)R->lin_params));
	json_object_set_new(rep, "total_params", json_integer((json_int_t)R->all_params));
	json_object_set_new(rep, "fraction_of_linear_params_quantized",
			    json_real(R->lin_params ? (double)R->q_params / (double)R->lin_params : 1.0));
	json_object_set_new(rep, "fraction_of_all_params_quantized",
			    json_real(R->all_params ? (double)R->q_params / (double)R->all_params : 0.0));
	json_t *ex = json_object();
	json_object_set_new(ex, "expert_tensors_quantized", json_integer((json_int_t)R->n_experts_q));
	json_object_set_new(ex, "min_tokens", json_integer((json_int_t)R->o->min_tokens));
	json_object_set_new(ex, "fallback_tensors", json_integer((json_int_t)R->n_fallback));
	json_object_set_new(ex, "note", json_string(R->o->method == MUSE_METHOD_RTN
							    ? "rtn needs no calibration: every expert is quantized data-free"
							    : R->o->method == MUSE_METHOD_AWQ
							    ? "gate/up of every expert use the whole MoE input (all-experts statistics); "
							      "each down projection its routed tokens (see tensors[].tokens)"
							    : R->seq && !R->o->routed_only
							    ? "all-experts statistics: every calibration row goes through every expert for its "
							      "Hessian (tensors[].tokens) while the layer output follows the router's top-k; "
							      "tensors[].routed_tokens / expert_tokens count the rows the router chose"
							    : R->seq ? "each expert's Hessian comes from its routed tokens (tensors[].tokens); "
								       "experts below min_tokens use rtn (method rtn-fallback)"
							    : "statistics given per weight (--hessians): no routing counts"));
	json_object_set_new(rep, "experts", ex);
	char *d = json_dumps(rep, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	muse_status s = d ? muse_out_write_file(path, d, strlen(d), err) : muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	free(d);
	return s;
}

/* The layer prefix "model.layers.N." of an HF tensor name (empty when it has none). */
static void layer_prefix(const char *nm, char *P, size_t cap)
{
	const char *q = strstr(nm, "layers.");
	P[0] = 0;
	if (!q)
		return;
	q += 7;
	while (*q >= '0' && *q <= '9')
		q++;
	if (*q == '.')
		snprintf(P, cap, "%.*s", (int)(q + 1 - nm), nm);
}

/* The GGUF stem of "blk.N.STEM.weight". */
static const char *gguf_stem(const char *g, char *buf, size_t cap)
{
	const char *a = strchr(g, '.');
	a = a ? strchr(a + 1, '.') : NULL;
	buf[0] = 0;
	if (a && muse_ends_with(a + 1, ".weight"))
		snprintf(buf, cap, "%.*s", (int)(strlen(a + 1) - 7), a + 1);
	return buf;
}

/*
 * --calib awq: the layer walk's inputs written as the activations file
 * muse_awq_model_run reads (names from quant/awq.h), in a temporary
 * safetensors file beside the output.
 */
static muse_status write_awq_inputs(run *R, muse_err *err)
{
	typedef struct { char name[MUSE_MAX_NAME + 64]; char g[96]; int64_t ex; uint64_t n, in; } item;
	size_t nt = R->r->n_tensors, ni = 0, cap = nt * 2 + 1;
	for (size_t i = 0; i < nt; i++)
		if (R->r->tensors[i].ndim == 3)
			cap += (size_t)R->r->tensors[i].shape[0]; /* one input per expert of a stacked down projection */
	item *it = calloc(cap, sizeof *it);
	muse_model_writer *w = NULL;
	muse_status s = MUSE_OK;
	float *x = NULL;
	if (!it)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < nt && R->gguf_in; i++) {
		/* GGUF names (muse_awq_gguf_run): "blk.L.<input>" and one tensor per expert of a stacked down projection. */
		const muse_tensor *t = &R->r->tensors[i];
		char stem[64], P[MUSE_MAX_NAME];
		if (!R->pl[i].linear || !gguf_stem(t->name, stem, sizeof stem)[0])
			continue;
		snprintf(P, sizeof P, "%.*s", (int)(strlen(t->name) - strlen(stem) - 7), t->name);
		item a = { .ex = -1, .in = t->shape[t->ndim - 1] };
		snprintf(a.g, sizeof a.g, "%s", t->name);
		bool dup = false;
		if (!strcmp(stem, "attn_q"))
			snprintf(a.name, sizeof a.name, "%sattn_norm.output", P);
		else if (!strcmp(stem, "ffn_gate"))
			snprintf(a.name, sizeof a.name, "%sffn_norm.output", P);
		else if (!strcmp(stem, "ffn_gate_exps")) {
			snprintf(a.name, sizeof a.name, "%sffn_norm.output", P);
			snprintf(a.g, sizeof a.g, "%sffn_gate_inp.weight", P); /* the MoE block's input is the router's */
		} else if (!strcmp(stem, "attn_output") || !strcmp(stem, "ffn_down") || !strcmp(stem, "ffn_down_shexp"))
			snprintf(a.name, sizeof a.name, "%s%s.input", P, stem);
		else if (!strcmp(stem, "ffn_down_exps")) {
			for (uint64_t e = 0; e < t->shape[0]; e++) {
				item b = a;
				b.ex = (int64_t)e;
				snprintf(b.name, sizeof b.name, "%s%s.input.%llu", P, stem, (unsigned long long)e);
				it[ni++] = b;
			}
			continue;
		} else
			continue;
		for (size_t k = 0; k < ni; k++)
			dup |= !strcmp(it[k].name, a.name);
		if (!dup)
			it[ni++] = a;
	}
	for (size_t i = 0; i < R->r->n_tensors && !R->gguf_in; i++) {
		if (!R->pl[i].linear)
			continue;
		const char *nm = R->r->tensors[i].name;
		char P[MUSE_MAX_NAME], stem[64];
		layer_prefix(nm, P, sizeof P);
		gguf_stem(R->gname[i], stem, sizeof stem);
		const muse_tensor *t = &R->r->tensors[i];
		item a = { .ex = -1, .in = t->shape[t->ndim - 1] };
		snprintf(a.g, sizeof a.g, "%s", R->gname[i]);
		if (!strcmp(stem, "attn_q"))
			snprintf(a.name, sizeof a.name, "%sinput_layernorm.output", P);
		else if (!strcmp(stem, "ffn_gate"))
			snprintf(a.name, sizeof a.name, "%spost_attention_layernorm.output", P);
		else if (!strcmp(stem, "ffn_gate_exps") && R->gexp[i] == 0) {
			/* The MoE block's input is the router's. */
			snprintf(a.name, sizeof a.name, "%spost_attention_layernorm.output", P);
			snprintf(a.g, sizeof a.g, "%.*sffn_gate_inp.weight", (int)(strlen(R->gname[i]) - strlen(stem) - 7),
				 R->gname[i]);
		} else if (!strcmp(stem, "attn_output") || !strcmp(stem, "ffn_down") || !strcmp(stem, "ffn_down_shexp") ||
			   !strcmp(stem, "ffn_down_exps")) {
			snprintf(a.name, sizeof a.name, "%.*s.input", (int)(strlen(nm) - 7), nm);
			a.ex = R->gexp[i];
		} else
			continue;
		bool dup = false;
		for (size_t k = 0; k < ni; k++)
			dup |= !strcmp(it[k].name, a.name);
		if (!dup)
			it[ni++] = a;
	}
	snprintf(R->acts_tmp, sizeof R->acts_tmp, "%s.muse-awq-inputs-%d.safetensors", R->o->out, (int)getpid());
	if ((s = muse_model_writer_create(&w, MUSE_OUT_SAFETENSORS, R->acts_tmp, 0, err)))
		goto done;
	for (size_t k = 0; k < ni; k++) {
		uint64_t in = 0;
		if ((s = muse_seq_inputs(R->seq, it[k].g, it[k].ex, &x, &it[k].n, &in, err)))
			goto done;
		free(x);
		x = NULL;
		if (it[k].n && in != it[k].in) {
			s = muse_err_set(err, MUSE_ERR_CHECK, "calibration walk: inputs of '%s' are %llu wide, expected %llu",
					 it[k].name, (unsigned long long)in, (unsigned long long)it[k].in);
			goto done;
		}
		/* A weight the walk never fed (an expert no token reached) gets one zero row: below any useful --min-tokens. */
		uint64_t shape[2] = { it[k].n ? it[k].n : 1, it[k].in };
		if ((s = muse_model_writer_add_tensor(w, it[k].name, MUSE_DT_F32, 2, shape, err)))
			goto done;
	}
	if ((s = muse_model_writer_begin(w, err)))
		goto done;
	for (size_t k = 0; k < ni; k++) {
		uint64_t n, in;
		if ((s = muse_seq_inputs(R->seq, it[k].g, it[k].ex, &x, &n, &in, err)))
			goto done;
		if (!n) {
			free(x);
			if (!(x = calloc((size_t)it[k].in, sizeof(float)))) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto done;
			}
			n = 1;
		}
		if ((s = muse_model_writer_write(w, k, x, (size_t)(n * it[k].in) * sizeof(float), err)))
			goto done;
		free(x);
		x = NULL;
	}
	if ((s = muse_model_writer_finish(w, err)))
		goto done;
	s = muse_reader_open(R->acts_tmp, &R->acts, err);
done:
	free(x);
	free(it);
	muse_model_writer_free(w);
	return s;
}

/* --calib: each linear's GGUF name (and expert) as the forward engine calls it, then the layer walk. */
static muse_status calib_walk(run *R, muse_err *err)
{
	const muse_pack_opts *o = R->o;
	muse_status s = MUSE_OK;
	size_t nt = R->r->n_tensors ? R->r->n_tensors : 1;
	if (!(R->gname = calloc(nt, sizeof *R->gname)) || !(R->gexp = calloc(nt, sizeof *R->gexp)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	/* the GGUF name (and expert) of each HF tensor: the one the HF view gives it, which the forward pass reads */
	muse_reader *view = NULL;
	muse_hf_view_opts vo = { .want = MUSE_DT_INVALID, .quiet = true, .no_tokenizer = true };
	if (!R->gguf_in && (s = muse_hf_view_open(o->in, &vo, &view, err)))
		goto done;
	for (size_t i = 0; i < R->r->n_tensors; i++) {
		const char *nm = R->r->tensors[i].name;
		size_t vi;
		R->gexp[i] = -1;
		if (!R->pl[i].linear)
			continue;
		if (R->gguf_in) {
			snprintf(R->gname[i], sizeof R->gname[i], "%s", nm);
			continue;
		}
		if (!muse_hf_view_target(view, nm, &vi, &R->gexp[i])) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': no GGUF name for the calibration walk",
					 o->in, nm);
			goto done;
		}
		snprintf(R->gname[i], sizeof R->gname[i], "%s", view->tensors[vi].name);
	}
	muse_seq_opts so = { .calib = o->calib, .kind = o->calib_kind, .n_samples = o->samples,
			     .seq_len = o->seq_len > 0 ? o->seq_len : 512, .seed = o->seed, .min_tokens = o->min_tokens,
			     .gptq = o->method == MUSE_METHOD_GPTQ, .awq = o->method == MUSE_METHOD_AWQ, .wq = &R->wq,
			     .go = &R->go, .gguf = o->gguf, .gguf_type = o->gguf_type, .quiet = o->quiet,
			     .verbose = o->verbose, .journal = o->journal, .fingerprint = o->fingerprint,
			     .routed_only = o->routed_only, .true_seq = o->true_seq };
	/* The forward engine reads an HF directory through its GGUF view (stacked experts, tokenizer.* keys): names
	 * then match R->gname. */
	const char *src_path = R->gguf_in ? R->r->path : o->in;
	if ((s = muse_seq_run(src_path, &so, &R->seq, err)))
		goto done;
	int64_t ns, sl;
	const muse_calib_source *src = muse_seq_source(R->seq, &ns, &sl);
	json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "file", src->path, "sha256", src->sha256, "kind",
			      src->kind, "file_tokens", (json_int_t)src->n_tokens, "samples", (json_int_t)ns, "seq_len",
			      (json_int_t)sl, "seed", (json_int_t)o->seed, "sequential", o->method == MUSE_METHOD_GPTQ);
	if (o->method == MUSE_METHOD_GPTQ) {
		json_object_set_new(c, "true_sequential", json_boolean(o->true_seq));
		json_object_set_new(c, "expert_statistics", json_string(o->routed_only ? "routed" : "all-experts"));
	}
	json_object_set_new(R->report, "calibration", c);
	if (o->method == MUSE_METHOD_AWQ)
		s = write_awq_inputs(R, err);
done:
	muse_reader_free(view);
	return s;
}

muse_status muse_pack_model(const muse_pack_opts *o, muse_err *err)
{
	run R = { .o = o };
	muse_cast_buf cb = { 0 };
	muse_meta meta;
	muse_meta_init(&meta);
	char path[4096], report_path[4096];
	const char **ignore = NULL;
	size_t n_ignore = 0;
	bool published = false, made_dir = false;
	muse_status s;
	struct stat sb;

	if ((o->method == MUSE_METHOD_AWQ && !o->activations && !o->calib) ||
	    (o->method == MUSE_METHOD_GPTQ && !o->hessians && !o->calib))
		return muse_err_set(err, MUSE_ERR_USAGE, "--method %s needs --calib FILE (or precomputed %s FILE)",
				    method_name(o->method), o->method == MUSE_METHOD_GPTQ ? "--hessians" : "--activations");
	if (o->calib && (o->hessians || o->activations))
		return muse_err_set(err, MUSE_ERR_USAGE, "--calib and precomputed statistics exclude each other");
	R.wq = (muse_wq_config){ o->bits, o->group_size, o->sym, MUSE_WQ_MINMAX,
				 !o->gguf && o->kind == MUSE_PACKED_GPTQ && !o->sym ? 1 : 0, MUSE_DT_F16 };
	R.go = (muse_gptq_opts)MUSE_GPTQ_OPTS_DEFAULT;
	R.go.damp_percent = o->damp_percent > 0 ? o->damp_percent : 0.01;
	R.go.act_order = o->act_order;
	R.go.static_groups = o->static_groups;
	R.go.nthreads = o->nthreads;
	if (!o->gguf && (s = muse_wq_config_check(&R.wq, 0, err)))
		return s;
	if (o->gguf) {
		const muse_quant_traits *qt = muse_quant_traits_of(o->gguf_type);
		if (!qt || !qt->quantize_ref)
			return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "gguf:%s: muse has no quantizer for this type",
					    muse_dtype_name(o->gguf_type));
		if (qt->needs_importance && o->method == MUSE_METHOD_RTN)
			return muse_err_set(err, MUSE_ERR_USAGE, "gguf:%s needs importance data: use --method gptq",
					    muse_dtype_name(o->gguf_type));
	}
	/* An HF directory into GGUF is read through its GGUF view (names, Q/K permutation, metadata, as convert). */
	bool in_dir = stat(o->in, &sb) == 0 && S_ISDIR(sb.st_mode);
	muse_hf_view_opts vo = { .want = MUSE_DT_INVALID, .quiet = true };
	if ((s = o->gguf && in_dir ? muse_hf_view_open(o->in, &vo, &R.r, err) : muse_reader_open(o->in, &R.r, err)))
		goto fail;
	R.gguf_in = !strcmp(R.r->format, "gguf") || !strcmp(R.r->format, "hf");
	if (!o->gguf && (!in_dir || R.gguf_in)) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
				 "%s: packed layouts (awq, gptq, compressed-tensors) need an HF checkpoint directory with config.json",
				 o->in);
		goto fail;
	}
	if (o->hessians && (s = muse_reader_open(o->hessians, &R.hs, err)))
		goto fail;
	if (o->method == MUSE_METHOD_AWQ && o->activations && (s = muse_reader_open(o->activations, &R.acts, err)))
		goto fail;
	if (!o->gguf && o->kind == MUSE_PACKED_CT && o->act_order && !o->static_groups) {
		s = muse_err_set(err, MUSE_ERR_USAGE,
				 "compressed-tensors no longer stores g_idx (actorder \"group\" was removed): use --act-order "
				 "--static-groups (actorder \"weight\") or --format gptq");
		goto fail;
	}
	if (!(R.pl = calloc(R.r->n_tensors ? R.r->n_tensors : 1, sizeof(plan))) ||
	    !(ignore = calloc(R.r->n_tensors ? R.r->n_tensors : 1, sizeof(char *))) || !(R.report = json_object())) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* Model dtype: the first floating linear's source type decides the CT scale dtype. */
	R.scale_dt = MUSE_DT_F16;
	for (size_t i = 0; i < R.r->n_tensors; i++)
		if (is_linear(&R.r->tensors[i], R.gguf_in)) {
			if (R.r->tensors[i].dtype == MUSE_DT_BF16 && o->kind == MUSE_PACKED_CT)
				R.scale_dt = MUSE_DT_BF16;
			break;
		}
	R.wq.scale_dtype = R.scale_dt;
	json_object_set_new(R.report, "method", json_string(method_name(o->method)));
	{
		char fmt[64];
		snprintf(fmt, sizeof fmt, "%s%s", o->gguf ? "gguf:" : muse_packed_kind_name(o->kind),
			 o->gguf ? muse_dtype_name(o->gguf_type) : "");
		json_object_set_new(R.report, "format", json_string(fmt));
	}
	json_object_set_new(R.report, "bits", o->gguf ? json_null() : json_integer(o->bits));
	json_object_set_new(R.report, "group_size", o->gguf ? json_null() : json_integer(o->group_size));
	json_object_set_new(R.report, "sym", json_boolean(o->sym));
	json_object_set_new(R.report, "act_order", json_boolean(o->act_order));
	json_object_set_new(R.report, "tensors", json_array());
	json_object_set_new(R.report, "kept", json_array());

	/* Output path(s). */
	if (o->gguf) {
		snprintf(path, sizeof path, "%s", o->out);
		snprintf(report_path, sizeof report_path, "%s.quant_report.json", o->out);
	} else {
		made_dir = stat(o->out, &sb) != 0;
		if ((s = mkdir_p(o->out, err)))
			goto fail;
		snprintf(path, sizeof path, "%s/model.safetensors", o->out);
		snprintf(report_path, sizeof report_path, "%s/quant_report.json", o->out);
	}
	if ((s = muse_model_writer_create(&R.w, o->gguf ? MUSE_OUT_GGUF : MUSE_OUT_SAFETENSORS, path, 0, err)))
		goto fail;
	if (o->dequant_out && (s = muse_model_writer_create(&R.dq, MUSE_OUT_SAFETENSORS, o->dequant_out, 0, err)))
		goto fail;
	if (o->gguf) {
		for (size_t k = 0; k < R.r->meta.n; k++)
			if (muse_meta_copy_kv(&meta, &R.r->meta.kv[k])) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto fail;
			}
		if (ftype_of(o->gguf_type) >= 0 && muse_meta_set_u32(&meta, "general.file_type", (uint32_t)ftype_of(o->gguf_type))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		if ((s = muse_model_writer_set_meta(R.w, &meta, NULL, err)))
			goto fail;
	}
	/* Plan and declare every output tensor. */
	size_t n_out = 0;
	for (size_t i = 0; i < R.r->n_tensors; i++) {
		const muse_tensor *t = &R.r->tensors[i];
		plan *p = &R.pl[i];
		R.all_params += t->nelements;
		p->first_out = n_out;
		if (is_linear(t, R.gguf_in)) {
			p->linear = true;
			p->E = t->ndim == 3 ? t->shape[0] : 1;
			p->N = t->shape[t->ndim - 2];
			p->K = t->shape[t->ndim - 1];
			R.lin_params += t->nelements;
			if (o->gguf) {
				uint32_t blck = muse_dtype_info(o->gguf_type)->blck;
				if (p->K % blck) {
					s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
							 "%s: tensor '%s': row length %llu is not a multiple of %s's block of %u",
							 R.r->path, t->name, (unsigned long long)p->K, muse_dtype_name(o->gguf_type), blck);
					goto fail;
				}
				p->out_dt = o->gguf_type;
				p->n_out = 1;
				if ((s = muse_model_writer_add_tensor(R.w, t->name, o->gguf_type, t->ndim, t->shape, err)))
					goto fail;
				n_out++;
			} else {
				muse_packed_set sh;
				/* AutoAWQ's and compressed-tensors' loaders split K into K / group_size groups exactly (GPTQ takes a partial last group). */
				if (o->kind != MUSE_PACKED_GPTQ && o->group_size > 0 && p->K % (uint64_t)o->group_size) {
					s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
							 "%s: tensor '%s': in_features %llu is not a multiple of --group-size %lld (%s)",
							 R.r->path, t->name, (unsigned long long)p->K, (long long)o->group_size,
							 muse_packed_kind_name(o->kind));
					goto fail;
				}
				if ((s = muse_packed_shapes(o->kind, p->N, p->K, o->bits, o->group_size, o->sym, has_g_idx(o),
							    R.scale_dt, &sh, err))) {
					muse_err_prefix(err, "%s: tensor '%s'", R.r->path, t->name);
					goto fail;
				}
				size_t base = strlen(t->name) - 7; /* without ".weight" */
				for (int k = 0; k < sh.n; k++) {
					char nm[MUSE_MAX_NAME + 64];
					snprintf(nm, sizeof nm, "%.*s.%s", (int)base, t->name, sh.t[k].suffix);
					if ((s = muse_model_writer_add_tensor(R.w, nm, sh.t[k].dtype, sh.t[k].ndim, sh.t[k].shape,
									      err)))
						goto fail;
				}
				p->n_out = (size_t)sh.n;
				n_out += (size_t)sh.n;
			}
			if (R.dq && (s = muse_model_writer_add_tensor(R.dq, t->name, MUSE_DT_F32, t->ndim, t->shape, err)))
				goto fail;
			R.q_params += t->nelements;
			R.n_q++;
			if (is_expert(t->name))
				R.n_experts_q += p->E;
			continue;
		}
		/* Kept in high precision. A large matrix that is neither an embedding, the head nor a router is an error. */
		if (t->ndim >= 2 && t->nelements >= LARGE_TENSOR && !keep_by_design(t->name, R.gguf_in)) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED,
					 "%s: tensor '%s' (%llu parameters) would stay unquantized: muse does not know it as a linear weight",
					 R.r->path, t->name, (unsigned long long)t->nelements);
			goto fail;
		}
		/*
		 * Every Linear left in high precision is named for the loaders: compressed-tensors targets every
		 * Linear that "ignore" does not list. Embeddings are nn.Embedding and norms are 1-D.
		 */
		if (t->ndim == 2 && muse_ends_with(t->name, ".weight") && !is_embedding(t->name) && !R.gguf_in) {
			ignore[n_ignore] = strndup(t->name, strlen(t->name) - 7);
			if (!ignore[n_ignore]) {
				s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
				goto fail;
			}
			n_ignore++;
		}
		p->out_dt = keep_dtype(&R, t->dtype);
		p->n_out = 1;
		if (!muse_model_writer_supports(o->gguf ? MUSE_OUT_GGUF : MUSE_OUT_SAFETENSORS, p->out_dt)) {
			s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tensor '%s': %s cannot be stored in the output",
					 R.r->path, t->name, muse_dtype_name(p->out_dt));
			goto fail;
		}
		if ((s = muse_model_writer_add_tensor(R.w, t->name, p->out_dt, t->ndim, t->shape, err)))
			goto fail;
		n_out++;
		R.n_kept++;
		json_array_append_new(json_object_get(R.report, "kept"),
				      json_pack("{s:s, s:I}", "name", t->name, "params", (json_int_t)t->nelements));
	}
	if (R.n_q == 0) {
		s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: no linear weights found to quantize", R.r->path);
		goto fail;
	}
	if (o->calib && (s = calib_walk(&R, err)))
		goto fail;
	if (o->method == MUSE_METHOD_AWQ) {
		bool *lin = calloc(R.r->n_tensors, sizeof(bool));
		if (!lin) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < R.r->n_tensors; i++)
			lin[i] = R.pl[i].linear;
		muse_awq_model_opts ao = { R.wq, MUSE_AWQ_OPTS_DEFAULT, o->min_tokens };
		ao.wq.style = MUSE_WQ_AWQ;
		if (o->gguf)
			s = muse_awq_gguf_run(R.r, R.acts, lin, o->gguf_type, &ao.ao, o->min_tokens, &R.awq, err);
		else
			s = muse_awq_model_run(R.r, R.acts, lin, &ao, &R.awq, err);
		free(lin);
		if (s)
			goto fail;
	}
	if ((s = muse_model_writer_begin(R.w, err)) || (R.dq && (s = muse_model_writer_begin(R.dq, err))))
		goto fail;
	muse_progress pg;
	uint64_t total_bytes = 0;
	for (size_t i = 0; i < R.r->n_tensors; i++)
		total_bytes += R.r->tensors[i].nbytes;
	muse_progress_start(&pg, "quantize", total_bytes, o->quiet);
	for (size_t i = 0; i < R.r->n_tensors; i++) {
		if (muse_interrupted()) {
			s = muse_err_set(err, MUSE_ERR_INTERRUPTED, "interrupted");
			goto fail;
		}
		if ((s = R.pl[i].linear ? do_linear(&R, i, err) : do_keep(&R, i, &cb, err)))
			goto fail;
		muse_progress_add(&pg, R.r->tensors[i].nbytes);
	}
	if ((R.dq && (s = muse_model_writer_finish(R.dq, err))) || (s = muse_model_writer_finish(R.w, err)))
		goto fail;
	muse_progress_end(&pg);
	published = true;
	if (!o->gguf && (s = write_hf_files(&R, ignore, n_ignore, err)))
		goto fail;
	if ((s = write_report(&R, report_path, err)))
		goto fail;
	if (!o->quiet)
		fprintf(stderr,
			"muse: %s: quantized %llu linear tensors (%llu expert matrices) with %s: %llu of %llu linear parameters "
			"(%.1f%%), %.1f%% of all; kept %llu tensors in high precision; report: %s\n",
			o->out, (unsigned long long)R.n_q, (unsigned long long)R.n_experts_q, method_name(o->method),
			(unsigned long long)R.q_params, (unsigned long long)R.lin_params,
			R.lin_params ? 100.0 * (double)R.q_params / (double)R.lin_params : 100.0,
			R.all_params ? 100.0 * (double)R.q_params / (double)R.all_params : 0.0, (unsigned long long)R.n_kept,
			report_path);
	if (!o->quiet && R.awq)
		fprintf(stderr, "muse: awq: %llu tensors below --min-tokens %llu fell back to rtn\n",
			(unsigned long long)R.n_fallback, (unsigned long long)o->min_tokens);
	goto done;
fail:
	if (published) {
		/* The weights were published before the configs failed: take them back so no half model remains. */
		unlink(path);
		if (!o->gguf) {
			char p2[4096];
			snprintf(p2, sizeof p2, "%s/config.json", o->out);
			unlink(p2);
			snprintf(p2, sizeof p2, "%s/quantize_config.json", o->out);
			unlink(p2);
			snprintf(p2, sizeof p2, "%s/README.md", o->out);
			unlink(p2);
		}
	}
	if (made_dir) {
		/* Everything in a directory this run created is this run's: remove it all (temp files first, via the writers). */
		muse_model_writer_free(R.w);
		muse_model_writer_free(R.dq);
		R.w = R.dq = NULL;
		DIR *dd = opendir(o->out);
		struct dirent *de;
		while (dd && (de = readdir(dd))) {
			char f[4096];
			if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
				continue;
			snprintf(f, sizeof f, "%s/%s", o->out, de->d_name);
			unlink(f);
		}
		if (dd)
			closedir(dd);
		rmdir(o->out);
	}
done:
	muse_model_writer_free(R.w);
	muse_model_writer_free(R.dq);
	muse_reader_free(R.r);
	muse_reader_free(R.hs);
	muse_reader_free(R.acts);
	muse_awq_model_free(R.awq);
	muse_seq_free(R.seq);
	free(R.gname);
	free(R.gexp);
	if (R.acts_tmp[0])
		unlink(R.acts_tmp);
	muse_meta_free(&meta);
	free(cb.p);
	free(R.pl);
	for (size_t k = 0; k < n_ignore; k++)
		free((void *)ignore[k]);
	free(ignore);
	json_decref(R.report);
	return s;
}
