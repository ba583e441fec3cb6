/* seqquant.c: the layer-by-layer calibration walk behind `muse quantize --method gptq|awq --calib`. */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/progress.h"
#include "forward.h"
#include "journal.h"
#include "model.h"
#include "quant.h"
#include "seqquant.h"

/* What the temporary file holds for one (weight, expert). */
typedef struct entry {
	char name[96];
	int64_t expert;
	uint64_t K, n;  /* K: columns (in); n: rows seen */
	long h_off;     /* H [K][K] F32, -1: none (fallback) */
	long x_off;     /* inputs [n][K] F32, -1: none */
	uint64_t routed; /* rows the router chose (== n unless all-experts mode) */
} entry;

/* One layer's accumulator for one (slot, expert). */
typedef struct acc {
	muse_wslot slot;
	int64_t expert;
	uint64_t K, n;
	uint64_t routed; /* rows the router chose (all-experts mode feeds every row) */
	double *xtx;    /* gptq: sum of x x^T, upper triangle */
	float *x;       /* awq: the rows, grown as events arrive */
	uint64_t x_cap;
	char name[96];
} acc;

struct muse_seq {
	FILE *f;
	long f_end;
	entry *e;
	size_t n_e, cap_e;
	muse_calib_source src;
	int64_t n_samples, seq_len, n_layer;
	/* per-layer state used by the hook */
	acc *a;
	size_t n_a, cap_a;
	const muse_seq_opts *o;
	double *tmp;
	size_t tmp_cap;
	int stage;      /* gptq true sequential: the stage being measured and quantized (-1: all at once) */
};

/*
 * True sequential order within a layer (GPTQModel, llm-compressor): a
 * stage's inputs are measured with every earlier stage already quantized.
 */
#define N_STAGES 5
static int stage_of(muse_wslot s)
{
	switch (s) {
	case MUSE_W_ATTN_Q: case MUSE_W_ATTN_K: case MUSE_W_ATTN_V: case MUSE_W_ATTN_Q_A: case MUSE_W_ATTN_KV_A_MQA:
		return 0;
	case MUSE_W_ATTN_Q_B: case MUSE_W_ATTN_KV_B: case MUSE_W_ATTN_K_B: case MUSE_W_ATTN_V_B:
		return 1;
	case MUSE_W_ATTN_O:
		return 2;
	case MUSE_W_FFN_DOWN: case MUSE_W_FFN_DOWN_EXPS: case MUSE_W_FFN_DOWN_SHEXP:
		return 4;
	default:
		return 3; /* gate/up of the MLP, the experts and the shared expert */
	}
}

static bool keeps_inputs(muse_wslot s)
{
	return s == MUSE_W_ATTN_Q || s == MUSE_W_ATTN_O || s == MUSE_W_FFN_GATE || s == MUSE_W_FFN_GATE_INP ||
	       s == MUSE_W_FFN_DOWN || s == MUSE_W_FFN_DOWN_EXPS || s == MUSE_W_FFN_DOWN_SHEXP;
}

/* Routers stay in high precision (pack_model keeps them), so GPTQ neither needs nor applies statistics there. */
static bool quantized_slot(muse_wslot s)
{
	return muse_wslot_is_linear(s) && s != MUSE_W_FFN_GATE_INP && s != MUSE_W_FFN_GATE_INP_SHEXP;
}

static muse_status hook(void *user, const muse_linear_event *ev, muse_err *err)
{
	muse_seq *S = user;
	bool want = S->o->gptq ? quantized_slot(ev->slot) && (S->stage < 0 || stage_of(ev->slot) == S->stage)
			       : keeps_inputs(ev->slot);
	if (!want || ev->n_rows <= 0)
		return MUSE_OK;
	acc *a = NULL;
	for (size_t i = 0; i < S->n_a; i++)
		if (S->a[i].slot == ev->slot && S->a[i].expert == ev->expert) {
			a = &S->a[i];
			break;
		}
	uint64_t K = (uint64_t)ev->n_in, n = (uint64_t)ev->n_rows;
	if (!a) {
		if (S->n_a == S->cap_a) {
			size_t nc = S->cap_a ? 2 * S->cap_a : 64;
			acc *na = realloc(S->a, nc * sizeof *na);
			if (!na)
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for calibration statistics");
			S->a = na, S->cap_a = nc;
		}
		a = &S->a[S->n_a++];
		memset(a, 0, sizeof *a);
		a->slot = ev->slot, a->expert = ev->expert, a->K = K;
		snprintf(a->name, sizeof a->name, "%s", ev->tensor);
		if (S->o->gptq && !(a->xtx = calloc(K * K, sizeof(double))))
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for a %llu x %llu Hessian", (unsigned long long)K,
					    (unsigned long long)K);
	}
	if (a->K != K)
		return muse_err_set(err, MUSE_ERR_CHECK, "%s: input width changed between batches", ev->tensor);
	if (S->o->gptq) {
		/* X^T X in double: the row count reaches millions on real calibration sets. */
		if (S->tmp_cap < n * K) {
			free(S->tmp);
			if (!(S->tmp = malloc(n * K * sizeof(double)))) {
				S->tmp_cap = 0;
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			}
			S->tmp_cap = n * K;
		}
		for (uint64_t k = 0; k < n * K; k++)
			S->tmp[k] = ev->x[k];
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)K, (int)n, 1.0, S->tmp, (int)K, 1.0, a->xtx, (int)K);
	} else {
		if (a->n + n > a->x_cap) {
			uint64_t nc = a->x_cap ? a->x_cap * 2 : n;
			while (nc < a->n + n)
				nc *= 2;
			float *nx = realloc(a->x, nc * K * sizeof(float));
			if (!nx)
				return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for calibration inputs");
			a->x = nx, a->x_cap = nc;
		}
		memcpy(a->x + a->n * K, ev->x, n * K * sizeof(float));
	}
	a->n += n;
	a->routed += ev->expert >= 0 ? (uint64_t)ev->n_routed : n;
	return MUSE_OK;
}

static muse_status put(muse_seq *S, const void *p, size_t bytes, long *off, muse_err *err)
{
	*off = S->f_end;
	if (fseek(S->f, S->f_end, SEEK_SET) || fwrite(p, 1, bytes, S->f) != bytes)
		return muse_err_set(err, MUSE_ERR_IO, "temporary statistics file: write failed");
	S->f_end += (long)bytes;
	return MUSE_OK;
}

static muse_status add_entry(muse_seq *S, const entry *e, muse_err *err)
{
	if (S->n_e == S->cap_e) {
		size_t nc = S->cap_e ? 2 * S->cap_e : 256;
		entry *ne = realloc(S->e, nc * sizeof *ne);
		if (!ne)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		S->e = ne, S->cap_e = nc;
	}
	S->e[S->n_e++] = *e;
	return MUSE_OK;
}

static acc *find_acc(muse_seq *S, muse_wslot slot, int64_t expert)
{
	for (size_t i = 0; i < S->n_a; i++)
		if (S->a[i].slot == slot && S->a[i].expert == expert)
			return &S->a[i];
	return NULL;
}

/* Quantizes one matrix w [N][K] in place to its dequantized values: GPTQ with H, or RTN when H is NULL. */
static muse_status fake_quant(const muse_seq_opts *o, float *w, uint64_t N, uint64_t K, const float *H, muse_err *err)
{
	muse_status s;
	if (o->gguf) {
		uint64_t nb;
		if (!muse_dtype_nbytes(o->gguf_type, N * K, &nb))
			return muse_err_set(err, MUSE_ERR_LIMIT, "tensor too large");
		void *dst = malloc(nb ? (size_t)nb : 1);
		if (!dst)
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		if (H)
			s = muse_gptq_quantize_gguf(o->gguf_type, o->go, w, N, K, H, dst, NULL, err);
		else
			s = muse_quantize_rows(o->gguf_type, w, dst, (int64_t)N, (int64_t)K, NULL, 0, err);
		if (!s)
			s = muse_dequantize(o->gguf_type, dst, w, (int64_t)(N * K), err);
		free(dst);
		return s;
	}
	muse_qlinear q = { 0 };
	s = H ? muse_gptq_quantize(o->wq, o->go, w, N, K, H, &q, NULL, err) : muse_rtn_quantize(o->wq, w, N, K, &q, err);
	if (!s)
		muse_qlinear_dequant(&q, w);
	muse_qlinear_free(&q);
	return s;
}

/* After the statistics pass of a layer: store H (gptq) or inputs (awq) and, for gptq, quantize the layer in place. */
static muse_status flush_layer(muse_seq *S, muse_layer *l, muse_err *err)
{
	const muse_seq_opts *o = S->o;
	muse_status s = MUSE_OK;
	float *H = NULL;
	if (!o->gptq) {
		for (size_t i = 0; i < S->n_a; i++) {
			acc *a = &S->a[i];
			entry e = { .expert = a->expert, .K = a->K, .n = a->n, .h_off = -1, .x_off = -1, .routed = a->routed };
			snprintf(e.name, sizeof e.name, "%s", a->name);
			if ((s = put(S, a->x, a->n * a->K * sizeof(float), &e.x_off, err)) || (s = add_entry(S, &e, err)))
				return s;
		}
		return MUSE_OK;
	}
	for (int sl = 0; sl < MUSE_W_COUNT; sl++) {
		muse_weight *w = &l->w[sl];
		if (!w->data || !quantized_slot((muse_wslot)sl) || w->ndim < 2 ||
		    (S->stage >= 0 && stage_of((muse_wslot)sl) != S->stage))
			continue;
		uint64_t E = w->ndim == 3 ? (uint64_t)w->shape[0] : 1;
		uint64_t N = (uint64_t)w->shape[w->ndim - 2], K = (uint64_t)w->shape[w->ndim - 1];
		for (uint64_t ex = 0; ex < E; ex++) {
			int64_t expert = w->ndim == 3 ? (int64_t)ex : -1;
			acc *a = find_acc(S, (muse_wslot)sl, expert);
			entry e = { .expert = expert, .K = K, .n = a ? a->n : 0, .h_off = -1, .x_off = -1,
				    .routed = a ? a->routed : 0 };
			snprintf(e.name, sizeof e.name, "%s", w->name);
			bool enough = a && a->n > 0 && (expert < 0 || a->n >= o->min_tokens);
			if (a && a->K != K) {
				s = muse_err_set(err, MUSE_ERR_CHECK, "%s: hook input width %llu != weight's %llu", w->name,
						 (unsigned long long)a->K, (unsigned long long)K);
				goto done;
			}
			free(H);
			H = NULL;
			if (enough) {
				if (!(H = malloc(K * K * sizeof(float)))) {
					s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
					goto done;
				}
				double sc = 2.0 / (double)a->n;
				for (uint64_t r = 0; r < K; r++)
					for (uint64_t c = r; c < K; c++)
						H[r * K + c] = H[c * K + r] = (float)(a->xtx[r * K + c] * sc);
				if ((s = put(S, H, K * K * sizeof(float), &e.h_off, err)))
					goto done;
			}
			if ((s = add_entry(S, &e, err)))
				goto done;
			if ((s = fake_quant(o, w->data + ex * N * K, N, K, H, err))) {
				muse_err_prefix(err, "%s%s", w->name, expert >= 0 ? " (an expert)" : "");
				goto done;
			}
		}
	}
done:
	free(H);
	return s;
}

/* ---- resume journal: layer-NNNN.blob (that layer's entries + data), hidden.blob (the next layer's input) ---- */

typedef struct jhead {
	char magic[8];   /* "MUSELAY1" or "MUSEHID1" */
	uint64_t a, b, c; /* layer: index, entries, data bytes; hidden: layers done, rows, width */
} jhead;

/* Saves layer il (the entries from e0, the data from f0 on) and x, the input of layer il + 1. */
static muse_status journal_layer(muse_seq *S, muse_journal *J, int64_t il, size_t e0, long f0, const float *x, uint64_t rows,
				 uint64_t width, muse_err *err)
{
	size_t ne = S->n_e - e0, nb = (size_t)(S->f_end - f0);
	entry *es = malloc(ne ? ne * sizeof *es : 1);
	void *data = malloc(nb ? nb : 1);
	muse_status s = MUSE_OK;
	if (!es || !data) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for the journal");
		goto done;
	}
	for (size_t i = 0; i < ne; i++) {
		es[i] = S->e[e0 + i];
		if (es[i].h_off >= 0)
			es[i].h_off -= f0;
		if (es[i].x_off >= 0)
			es[i].x_off -= f0;
	}
	if (nb && (fseek(S->f, f0, SEEK_SET) || fread(data, 1, nb, S->f) != nb)) {
		s = muse_err_set(err, MUSE_ERR_IO, "temporary statistics file: read failed");
		goto done;
	}
	char name[32];
	snprintf(name, sizeof name, "layer-%04lld.blob", (long long)il);
	jhead lh = { "MUSELAY1", (uint64_t)il, ne, nb };
	const void *lp[3] = { &lh, es, data };
	size_t ls[3] = { sizeof lh, ne * sizeof *es, nb };
	jhead hh = { "MUSEHID1", (uint64_t)il + 1, rows, width };
	const void *hp[2] = { &hh, x };
	size_t hs[2] = { sizeof hh, rows * width * sizeof *x };
	/* Layer first: a crash between the two leaves hidden.blob at the previous layer, which then reruns. */
	if ((s = muse_journal_put(J, name, lp, ls, 3, err)) || (s = muse_journal_put(J, "hidden.blob", hp, hs, 2, err)))
		goto done;
	/* Test hook: die as a SIGKILL would, right after layer N is journaled. */
	const char *stop = getenv("MUSE_TEST_STOP_AFTER_LAYER");
	if (stop && atoll(stop) == il + 1)
		raise(SIGKILL);
done:
	free(es);
	free(data);
	return s;
}

/* Loads one journaled layer into the statistics file; false (nothing added) when the blob is missing or malformed. */
static bool journal_load_layer(muse_seq *S, muse_journal *J, int64_t il, muse_err *err)
{
	char name[32];
	snprintf(name, sizeof name, "layer-%04lld.blob", (long long)il);
	void *b = NULL;
	size_t n = 0;
	bool ok = false;
	if (muse_journal_get(J, name, &b, &n, err) || !b || n < sizeof(jhead))
		goto done;
	jhead h;
	memcpy(&h, b, sizeof h);
	if (memcmp(h.magic, "MUSELAY1", 8) || h.a != (uint64_t)il || h.b > (n - sizeof h) / sizeof(entry) ||
	    h.c != n - sizeof h - h.b * sizeof(entry))
		goto done;
	const entry *es = (const entry *)((const char *)b + sizeof h);
	const char *data = (const char *)(es + h.b);
	size_t e0 = S->n_e;
	long f0 = S->f_end, dummy;
	for (uint64_t i = 0; i < h.b; i++) {
		entry e = es[i];
		e.name[sizeof e.name - 1] = 0;
		uint64_t hb = e.h_off >= 0 ? e.K * e.K * sizeof(float) : 0, xb = e.x_off >= 0 ? e.n * e.K * sizeof(float) : 0;
		if ((e.h_off >= 0 && ((uint64_t)e.h_off > h.c || hb > h.c - (uint64_t)e.h_off)) ||
		    (e.x_off >= 0 && ((uint64_t)e.x_off > h.c || xb > h.c - (uint64_t)e.x_off)))
			goto undo;
		if (e.h_off >= 0)
			e.h_off += f0;
		if (e.x_off >= 0)
			e.x_off += f0;
		if (add_entry(S, &e, err))
			goto undo;
	}
	if (h.c && put(S, data, h.c, &dummy, err))
		goto undo;
	ok = true;
	goto done;
undo:
	S->n_e = e0;
	S->f_end = f0;
done:
	free(b);
	return ok;
}

/* Opens the journal and restores what it holds: *start layers done and x their output (0: start from the embeddings). */
static muse_status journal_resume(muse_seq *S, const muse_seq_opts *o, muse_journal **J, int64_t *start, float *x,
				  uint64_t rows, uint64_t width, muse_err *err)
{
	*start = 0;
	bool discarded;
	muse_status s = muse_journal_open(o->journal, o->fingerprint, J, &discarded, err);
	if (s)
		return s;
	if (discarded)
		fprintf(stderr, "muse: %s: journal from a run with other inputs or options: starting over\n", o->journal);
	void *b = NULL;
	size_t n = 0;
	if ((s = muse_journal_get(*J, "hidden.blob", &b, &n, err)) || !b)
		return s;
	jhead h;
	int64_t done = 0;
	if (n >= sizeof h) {
		memcpy(&h, b, sizeof h);
		if (!memcmp(h.magic, "MUSEHID1", 8) && h.a <= (uint64_t)S->n_layer && h.b == rows && h.c == width &&
		    n - sizeof h == rows * width * sizeof *x)
			done = (int64_t)h.a;
	}
	int64_t il = 0;
	while (il < done && journal_load_layer(S, *J, il, err))
		il++;
	if (il == done && done > 0) {
		memcpy(x, (const char *)b + sizeof h, rows * width * sizeof *x);
		*start = done;
		if (!o->quiet)
			fprintf(stderr, "muse: %s: resuming after layer %lld of %lld\n", o->journal, (long long)done,
				(long long)S->n_layer);
	} else {
		/* A torn or foreign journal: drop what was loaded and start from the embeddings. */
		S->n_e = 0;
		S->f_end = 0;
	}
	free(b);
	return MUSE_OK;
}

static void reset_accs(muse_seq *S)
{
	for (size_t i = 0; i < S->n_a; i++) {
		free(S->a[i].xtx);
		free(S->a[i].x);
	}
	S->n_a = 0;
}

muse_status muse_seq_run(const char *path, const muse_seq_opts *o, muse_seq **out, muse_err *err)
{
	*out = NULL;
	muse_seq *S = calloc(1, sizeof *S);
	muse_model *m = NULL;
	int32_t *ids = NULL, *smp = NULL;
	float *x = NULL, *x2 = NULL;
	int64_t *expert_tokens = NULL;
	size_t n_ids = 0;
	muse_status s;
	muse_progress pg;
	muse_journal *J = NULL;
	bool pg_on = false;
	if (!S)
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	S->o = o;
	if (o->gptq == o->awq) {
		s = muse_err_set(err, MUSE_ERR_USAGE, "calibration walk: exactly one of gptq or awq");
		goto fail;
	}
	if (!(S->f = tmpfile())) {
		s = muse_err_set(err, MUSE_ERR_IO, "cannot create a temporary file for calibration statistics");
		goto fail;
	}
	S->n_samples = o->n_samples;
	S->seq_len = o->seq_len;
	if ((s = muse_model_open(path, &m, err)) ||
	    (s = muse_calib_load(m, o->calib, o->kind, &ids, &n_ids, &S->src, err)) ||
	    (s = muse_calib_cut(ids, n_ids, &S->n_samples, o->seq_len, o->seed, muse_calib_bos(m), &smp, err)))
		goto fail;
	const muse_hparams *hp = muse_model_hparams(m);
	S->n_layer = hp->n_layer;
	size_t rows = (size_t)S->n_samples * (size_t)S->seq_len;
	if (!(x = malloc(rows * (size_t)hp->n_embd * sizeof *x)) ||
	    (o->gptq && !(x2 = malloc(rows * (size_t)hp->n_embd * sizeof *x2)))) {
		s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory for %zu x %lld activations", rows, (long long)hp->n_embd);
		goto fail;
	}
	int64_t start = 0;
	if (o->journal && (s = journal_resume(S, o, &J, &start, x, rows, (uint64_t)hp->n_embd, err)))
		goto fail;
	if (!start && (s = muse_model_embed(m, smp, rows, x, err)))
		goto fail;
	muse_fwd_opts fo = { .hook = hook, .user = S, .all_experts = o->gptq && !o->routed_only };
	S->stage = -1;
	muse_progress_start_count(&pg, o->gptq ? "gptq" : "awq", (uint64_t)hp->n_layer, "layers",
				  o->quiet || o->verbose);
	pg_on = true;
	muse_progress_add(&pg, (uint64_t)start);
	for (int64_t il = start; il < hp->n_layer; il++) {
		muse_layer l;
		size_t e0 = S->n_e;
		long f0 = S->f_end;
		double t0 = muse_now();
		clock_t c0 = clock();
		if ((s = muse_model_load_layer(m, il, &l, err)))
			goto fail;
		reset_accs(S);
		if (o->gptq) {
			/*
			 * Statistics on a copy, then the layer is quantized and re-run on the original input;
			 * true sequential: one pass per stage present in the layer, each with the earlier stages quantized.
			 */
			for (int st = o->true_seq ? 0 : -1; !s && st < (o->true_seq ? N_STAGES : 0); st++) {
				bool present = st < 0;
				for (int sl = 0; !present && sl < MUSE_W_COUNT; sl++)
					present = l.w[sl].data && l.w[sl].ndim >= 2 && quantized_slot((muse_wslot)sl) &&
						  stage_of((muse_wslot)sl) == st;
				if (!present)
					continue;
				S->stage = st;
				reset_accs(S);
				memcpy(x2, x, rows * (size_t)hp->n_embd * sizeof *x);
				if (!(s = muse_forward_layer(m, &l, x2, S->n_samples, S->seq_len, &fo, err)))
					s = flush_layer(S, &l, err);
			}
			S->stage = -1;
			if (!s)
				s = muse_forward_layer(m, &l, x, S->n_samples, S->seq_len, NULL, err);
		} else {
			if (!(s = muse_forward_layer(m, &l, x, S->n_samples, S->seq_len, &fo, err)))
				s = flush_layer(S, &l, err);
		}
		muse_layer_free(&l);
		if (s)
			goto fail;
		if (o->verbose)
			fprintf(stderr, "muse: %s layer %lld/%lld: %.3f s (cpu %.3f s)\n", o->gptq ? "gptq" : "awq",
				(long long)il + 1, (long long)hp->n_layer, muse_now() - t0,
				(double)(clock() - c0) / CLOCKS_PER_SEC);
		if (J && (s = journal_layer(S, J, il, e0, f0, x, rows, (uint64_t)hp->n_embd, err)))
			goto fail;
		muse_progress_add(&pg, 1);
	}
	muse_progress_end(&pg);
	pg_on = false;
	reset_accs(S);
	free(S->a);
	S->a = NULL, S->cap_a = 0;
	free(S->tmp);
	S->tmp = NULL, S->tmp_cap = 0;
	*out = S;
	S = NULL;
	s = MUSE_OK;
	goto done;
fail:
	if (pg_on)
		muse_progress_end(&pg);
	muse_seq_free(S);
done:
	free(expert_tokens);
	free(x);
	free(x2);
	free(ids);
	free(smp);
	muse_journal_free(J);
	muse_model_free(m);
	return s;
}

void muse_seq_free(muse_seq *S)
{
	if (!S)
		return;
	reset_accs(S);
	free(S->a);
	free(S->tmp);
	free(S->e);
	if (S->f)
		fclose(S->f);
	free(S);
}

const muse_calib_source *muse_seq_source(const muse_seq *S, int64_t *n_samples, int64_t *seq_len)
{
	if (n_samples)
		*n_samples = S->n_samples;
	if (seq_len)
		*seq_len = S->seq_len;
	return &S->src;
}

int64_t muse_seq_n_layer(const muse_seq *S)
{
	return S->n_layer;
}

static const entry *lookup(const muse_seq *S, const char *name, int64_t expert)
{
	for (size_t i = 0; i < S->n_e; i++)
		if (S->e[i].expert == expert && !strcmp(S->e[i].name, name))
			return &S->e[i];
	return NULL;
}

static muse_status get(muse_seq *S, long off, size_t bytes, float **p, muse_err *err)
{
	if (!(*p = malloc(bytes ? bytes : 1)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if (fseek(S->f, off, SEEK_SET) || fread(*p, 1, bytes, S->f) != bytes) {
		free(*p);
		*p = NULL;
		return muse_err_set(err, MUSE_ERR_IO, "temporary statistics file: read failed");
	}
	return MUSE_OK;
}

muse_status muse_seq_hessian(muse_seq *S, const char *name, int64_t expert, uint64_t K, float **H, uint64_t *tokens,
			     muse_err *err)
{
	*H = NULL;
	*tokens = 0;
	const entry *e = lookup(S, name, expert);
	if (!e)
		return muse_err_set(err, MUSE_ERR_CHECK, "calibration walk has no statistics for '%s'%s", name,
				    expert >= 0 ? " (expert)" : "");
	if (e->K != K)
		return muse_err_set(err, MUSE_ERR_CHECK, "'%s': calibration statistics are %llu wide, weight %llu", name,
				    (unsigned long long)e->K, (unsigned long long)K);
	*tokens = e->n;
	return e->h_off < 0 ? MUSE_OK : get(S, e->h_off, K * K * sizeof(float), H, err);
}

uint64_t muse_seq_routed(const muse_seq *S, const char *name, int64_t expert)
{
	const entry *e = lookup(S, name, expert);
	return e ? e->routed : 0;
}

muse_status muse_seq_inputs(muse_seq *S, const char *name, int64_t expert, float **x, uint64_t *n, uint64_t *in,
			    muse_err *err)
{
	*x = NULL;
	*n = *in = 0;
	const entry *e = lookup(S, name, expert);
	if (!e || e->x_off < 0)
		return MUSE_OK;
	*n = e->n, *in = e->K;
	return e->n ? get(S, e->x_off, e->n * e->K * sizeof(float), x, err) : MUSE_OK;
}
