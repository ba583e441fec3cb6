/* vocab_hf.c: HF tokenizer files read as HF `tokenizers` reads them (tokenizer.json: vocab, added tokens, merges, normalizers, pre-tokenizers, post-processor; tokenizer_config.json: bos/eos), for the encoder; and the JSON loading vocab_convert.c shares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vocab_impl.h"
#include "vocab_spm.h"

#define VOCAB_MAX (1u << 24)

json_t *muse_vocab_hf_load(const char *dir, const char *name, bool required, size_t flags, muse_status *s,
			   muse_err *err)
{
	char path[4096];
	json_error_t je;
	*s = MUSE_OK;
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
		*s = muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
		return NULL;
	}
	FILE *f = fopen(path, "rb");
	if (!f) {
		if (required)
			*s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: missing", path);
		return NULL;
	}
	json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES | flags, &je);
	fclose(f);
	if (!j) {
		*s = muse_err_at(err, MUSE_ERR_FORMAT, path, (uint64_t)(je.position > 0 ? je.position : 0), "%s", je.text);
	} else if (!json_is_object(j)) {
		*s = muse_err_set(err, MUSE_ERR_FORMAT, "%s: not a JSON object", path);
		json_decref(j);
		j = NULL;
	}
	return j;
}

bool muse_vocab_hf_is_type(json_t *o, const char *t)
{
	json_t *v = json_object_get(o, "type");
	return json_is_string(v) && !strcmp(json_string_value(v), t);
}

const char *muse_vocab_hf_content(json_t *e)
{
	if (json_is_string(e))
		return json_string_value(e);
	json_t *c = json_object_get(e, "content");
	return json_is_string(c) ? json_string_value(c) : NULL;
}

/* ------------------------------------------------------------------ refusals */

/* JSON_ENCODE_ANY: a bare string or number is what most unsupported values are (without it: NULL). */
static char *jdump(json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static muse_status unsupported(const char *path, const char *what, json_t *j, muse_err *err)
{
	char *d = jdump(j);
	muse_status s = muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: %s not supported: %.200s", path, what, d ? d : "?");
	free(d);
	return s;
}

/*
 * The pipeline readers below record what the encoder cannot run in the
 * section's refusal (ref) and stop there; only running out of memory fails
 * them.
 */
#define REFUSE(call) do { (call); return MUSE_OK; } while (0)

/* A {"String": s} or {"Regex": r} pattern: its text and whether it is literal; false when it is neither. */
static bool pattern(json_t *p, const char **text, size_t *len, bool *literal)
{
	json_t *str = json_object_get(p, "String"), *rx = json_object_get(p, "Regex");
	json_t *pick = json_is_string(str) ? str : json_is_string(rx) ? rx : NULL;
	if (!pick)
		return false;
	*text = json_string_value(pick);
	*len = json_string_length(pick);
	*literal = pick == str;
	return true;
}

/* ------------------------------------------------------------------ normalizer */

static muse_status add_norm(muse_vocab *v, muse_vocab_norm nm, muse_err *err)
{
	muse_vocab_norm *nn = realloc(v->norm, (v->n_norm + 1) * sizeof *nn);
	if (!nn) {
		free(nm.text);
		free(nm.pattern);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	v->norm = nn;
	v->norm[v->n_norm++] = nm;
	return MUSE_OK;
}

static muse_status read_normalizer(muse_vocab *v, json_t *n, int depth, muse_err *err)
{
	muse_err *ref = &v->norm_refusal;
	const char *path = v->source;
	muse_vocab_norm nm = { 0 };
	muse_status s;
	if (!n || json_is_null(n))
		return MUSE_OK;
	if (depth > 8)
		REFUSE(unsupported(path, "normalizer nesting", n, ref));
	if (muse_vocab_hf_is_type(n, "Sequence")) {
		json_t *arr = json_object_get(n, "normalizers");
		if (!json_is_array(arr))
			REFUSE(unsupported(path, "normalizer", n, ref));
		for (size_t i = 0; i < json_array_size(arr) && !ref->code; i++)
			if ((s = read_normalizer(v, json_array_get(arr, i), depth + 1, err)))
				return s;
		return MUSE_OK;
	}
	if (muse_vocab_hf_is_type(n, "NFC"))
		nm.kind = MUSE_NORM_NFC;
	else if (muse_vocab_hf_is_type(n, "NFD"))
		nm.kind = MUSE_NORM_NFD;
	else if (muse_vocab_hf_is_type(n, "NFKC"))
		nm.kind = MUSE_NORM_NFKC;
	else if (muse_vocab_hf_is_type(n, "NFKD"))
		nm.kind = MUSE_NORM_NFKD;
	else if (muse_vocab_hf_is_type(n, "Lowercase"))
		nm.kind = MUSE_NORM_LOWERCASE;
	else if (muse_vocab_hf_is_type(n, "Prepend") && json_is_string(json_object_get(n, "prepend"))) {
		json_t *p = json_object_get(n, "prepend");
		nm.kind = MUSE_NORM_PREPEND;
		nm.text_len = json_string_length(p);
		if (!(nm.text = strdup(json_string_value(p))))
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	} else if (muse_vocab_hf_is_type(n, "Replace") && json_is_string(json_object_get(n, "content"))) {
		json_t *c = json_object_get(n, "content");
		const char *pat;
		nm.kind = MUSE_NORM_REPLACE;
		if (!pattern(json_object_get(n, "pattern"), &pat, &nm.pattern_len, &nm.literal))
			REFUSE(unsupported(path, "pattern", json_object_get(n, "pattern"), ref));
		nm.text_len = json_string_length(c);
		if (!(nm.pattern = muse_vocab_copy(pat, nm.pattern_len)) || !(nm.text = strdup(json_string_value(c)))) {
			free(nm.pattern);
			return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
		}
	} else if (muse_vocab_hf_is_type(n, "Strip")) {
		nm.kind = MUSE_NORM_STRIP;
		nm.left = json_is_true(json_object_get(n, "strip_left"));
		nm.right = json_is_true(json_object_get(n, "strip_right"));
	} else {
		REFUSE(unsupported(path, "normalizer", n, ref));
	}
	return add_norm(v, nm, err);
}

/* ------------------------------------------------------------------ pre-tokenizer */

static muse_status add_pre(muse_vocab *v, muse_vocab_pre p, muse_err *err)
{
	muse_vocab_pre *np = realloc(v->pre_steps, (v->n_pre_steps + 1) * sizeof *np);
	if (!np) {
		free(p.pattern);
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	}
	v->pre_steps = np;
	v->pre_steps[v->n_pre_steps++] = p;
	return MUSE_OK;
}

static muse_status read_pre(muse_vocab *v, json_t *p, int depth, muse_err *err)
{
	muse_err *ref = &v->pre_refusal;
	const char *path = v->source;
	muse_vocab_pre pr = { 0 };
	muse_status s;
	const char *pat = NULL;
	if (!p || json_is_null(p))
		return MUSE_OK;
	if (depth > 8)
		REFUSE(unsupported(path, "pre_tokenizer nesting", p, ref));
	if (muse_vocab_hf_is_type(p, "Sequence")) {
		json_t *arr = json_object_get(p, "pretokenizers");
		if (!json_is_array(arr))
			REFUSE(unsupported(path, "pre_tokenizer", p, ref));
		for (size_t i = 0; i < json_array_size(arr) && !ref->code; i++)
			if ((s = read_pre(v, json_array_get(arr, i), depth + 1, err)))
				return s;
		return MUSE_OK;
	}
	if (muse_vocab_hf_is_type(p, "Split")) {
		static const char *const beh[] = { "", "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
		json_t *b = json_object_get(p, "behavior");
		pr.kind = MUSE_PRE_SPLIT;
		for (int i = 1; i <= 5; i++)
			if (json_is_string(b) && !strcmp(json_string_value(b), beh[i]))
				pr.behavior = i;
		if (!pr.behavior || json_is_true(json_object_get(p, "invert")))
			REFUSE(unsupported(path, "Split behavior/invert", p, ref));
		if (!pattern(json_object_get(p, "pattern"), &pat, &pr.pattern_len, &pr.literal))
			REFUSE(unsupported(path, "pattern", json_object_get(p, "pattern"), ref));
	} else if (muse_vocab_hf_is_type(p, "Digits")) {
		pr.kind = MUSE_PRE_SPLIT;
		pr.behavior = json_is_true(json_object_get(p, "individual_digits")) ? MUSE_SPLIT_ISOLATED : MUSE_SPLIT_CONTIGUOUS;
		pat = "\\p{N}";
		pr.pattern_len = 5;
	} else if (muse_vocab_hf_is_type(p, "ByteLevel")) {
		json_t *ur = json_object_get(p, "use_regex");
		pr.kind = MUSE_PRE_BYTELEVEL;
		pr.add_prefix_space = json_is_true(json_object_get(p, "add_prefix_space"));
		if (!ur || json_is_true(ur)) {
			pat = muse_vocab_gpt2_regex;
			pr.pattern_len = strlen(pat);
		}
	} else if (muse_vocab_hf_is_type(p, "Metaspace")) {
		json_t *r = json_object_get(p, "replacement"), *ps = json_object_get(p, "prepend_scheme");
		json_t *sp = json_object_get(p, "split");
		pr.kind = MUSE_PRE_METASPACE;
		const char *rep = json_is_string(r) ? json_string_value(r) : "\xe2\x96\x81";
		pr.repl_len = strlen(rep);
		if (!pr.repl_len || pr.repl_len >= sizeof pr.repl)
			REFUSE(unsupported(path, "Metaspace replacement", p, ref));
		memcpy(pr.repl, rep, pr.repl_len);
		pr.split = !sp || json_is_true(sp);
		if (json_is_string(ps)) {
			const char *x = json_string_value(ps);
			pr.prepend = !strcmp(x, "always") ? 1 : !strcmp(x, "first") ? 2 : !strcmp(x, "never") ? 0 : -1;
			if (pr.prepend < 0)
				REFUSE(unsupported(path, "Metaspace prepend_scheme", p, ref));
		} else {
			/* older files: add_prefix_space */
			json_t *aps = json_object_get(p, "add_prefix_space");
			pr.prepend = !aps || json_is_true(aps) ? 1 : 0;
		}
	} else {
		REFUSE(unsupported(path, "pre_tokenizer", p, ref));
	}
	if (pat && !(pr.pattern = muse_vocab_copy(pat, pr.pattern_len)))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return add_pre(v, pr, err);
}

/* ------------------------------------------------------------------ post-processor */

/* The ids a TemplateProcessing special token stands for, appended to dst; false with a refusal when malformed. */
static bool tmpl_ids(muse_vocab *v, json_t *proc, const char *name, int32_t *dst, int *n)
{
	json_t *ids = json_object_get(json_object_get(json_object_get(proc, "special_tokens"), name), "ids");
	if (!json_is_array(ids)) {
		muse_err_set(&v->post_refusal, MUSE_ERR_FORMAT, "%s: post_processor: special token '%.100s' has no ids",
			     v->source, name);
		return false;
	}
	for (size_t i = 0; i < json_array_size(ids); i++) {
		json_t *x = json_array_get(ids, i);
		if (*n >= 4 || !json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= VOCAB_MAX) {
			muse_err_set(&v->post_refusal, MUSE_ERR_FORMAT, "%s: post_processor: bad ids for '%.100s'", v->source,
				     name);
			return false;
		}
		dst[(*n)++] = (int32_t)json_integer_value(x);
	}
	return true;
}

/* The ids add_special puts around the text; a problem is left in post_refusal. */
static void read_post(muse_vocab *v, json_t *p, int depth)
{
	muse_err *ref = &v->post_refusal;
	const char *path = v->source;
	if (!p || json_is_null(p) || muse_vocab_hf_is_type(p, "ByteLevel"))
		return;
	if (depth > 8) {
		unsupported(path, "post_processor nesting", p, ref);
		return;
	}
	if (muse_vocab_hf_is_type(p, "Sequence")) {
		json_t *arr = json_object_get(p, "processors");
		for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr) && !ref->code; i++)
			read_post(v, json_array_get(arr, i), depth + 1);
		return;
	}
	if (muse_vocab_hf_is_type(p, "TemplateProcessing")) {
		json_t *single = json_object_get(p, "single");
		bool seen_a = false;
		for (size_t i = 0; json_is_array(single) && i < json_array_size(single); i++) {
			json_t *it = json_array_get(single, i);
			json_t *sp = json_object_get(json_object_get(it, "SpecialToken"), "id");
			if (json_object_get(it, "Sequence")) {
				seen_a = true;
			} else if (json_is_string(sp)) {
				if (!(seen_a ? tmpl_ids(v, p, json_string_value(sp), v->suffix, &v->n_suffix)
					     : tmpl_ids(v, p, json_string_value(sp), v->prefix, &v->n_prefix)))
					return;
			} else {
				unsupported(path, "TemplateProcessing item", it, ref);
				return;
			}
		}
		return;
	}
	if (muse_vocab_hf_is_type(p, "BertProcessing") || muse_vocab_hf_is_type(p, "RobertaProcessing")) {
		json_t *cls = json_array_get(json_object_get(p, "cls"), 1), *sep = json_array_get(json_object_get(p, "sep"), 1);
		if (!json_is_integer(cls) || !json_is_integer(sep) || v->n_prefix >= 4 || v->n_suffix >= 4) {
			unsupported(path, "post_processor", p, ref);
			return;
		}
		v->prefix[v->n_prefix++] = (int32_t)json_integer_value(cls);
		v->suffix[v->n_suffix++] = (int32_t)json_integer_value(sep);
		return;
	}
	unsupported(path, "post_processor", p, ref);
}

/* ------------------------------------------------------------------ merges */

/* model.merges as pairs; a malformed entry is left in merges_refusal, after the pairs before it. */
static muse_status read_merges(muse_vocab *v, json_t *merges, muse_err *err)
{
	muse_status s;
	for (size_t i = 0; json_is_array(merges) && i < json_array_size(merges); i++) {
		json_t *m = json_array_get(merges, i);
		if (json_is_string(m)) {
			/* tokenizers splits "a b" on ' ' and wants exactly two parts */
			const char *ms = json_string_value(m), *sp = strchr(ms, ' ');
			if (!sp || strchr(sp + 1, ' ')) {
				muse_err_set(&v->merges_refusal, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is not 'a b'", v->source,
					     i);
				return MUSE_OK;
			}
			s = muse_vocab_add_merge(v, ms, (size_t)(sp - ms), sp + 1, strlen(sp + 1), err);
		} else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
			   json_is_string(json_array_get(m, 1))) {
			json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
			s = muse_vocab_add_merge(v, json_string_value(a), json_string_length(a), json_string_value(b),
						 json_string_length(b), err);
		} else {
			muse_err_set(&v->merges_refusal, MUSE_ERR_FORMAT, "%s: model.merges[%zu] is malformed", v->source, i);
			return MUSE_OK;
		}
		if (s)
			return s;
	}
	return MUSE_OK;
}

/* ------------------------------------------------------------------ tokenizer.json */

static muse_status from_hf_json(muse_vocab *v, json_t *tok, json_t *tcfg, muse_err *err)
{
	const char *path = v->source;
	muse_status s;
	json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab");
	json_t *at = json_object_get(tok, "added_tokens"), *ty = json_object_get(model, "type");
	if (!muse_vocab_hf_is_type(model, "BPE") && !(json_is_object(model) && !ty && json_object_get(model, "merges")))
		/* name the type (WordPiece, Unigram, WordLevel) and what would work instead */
		return muse_err_set(err, MUSE_ERR_UNSUPPORTED, "%s: tokenizer model type '%.40s' is not supported (muse "
				    "encodes BPE: tokenizer.json with model type BPE, a SentencePiece BPE tokenizer.model, "
				    "GGUF tokenizer.ggml.model gpt2 or llama)", path,
				    json_is_string(ty) ? json_string_value(ty) : ty ? "(not a string)" : "(none)");
	if (!json_is_object(vocab))
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: model.vocab is not an object", path);
	static const char *const nulls[] = { "continuing_subword_prefix", "end_of_word_suffix" };
	for (int i = 0; i < 2; i++) {
		json_t *x = json_object_get(model, nulls[i]);
		if (x && !json_is_null(x) && !(json_is_string(x) && !json_string_length(x)))
			return unsupported(path, nulls[i], x, err);
	}
	json_t *dropout = json_object_get(model, "dropout");
	if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
		return unsupported(path, "BPE dropout", dropout, err);
	v->model = MUSE_VOCAB_BPE;
	size_t n = 0;
	const char *key;
	json_t *val;
	json_object_foreach(vocab, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= VOCAB_MAX)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: token '%.100s': id not in 0..%u", path, key, VOCAB_MAX - 1);
		if ((size_t)json_integer_value(val) + 1 > n)
			n = (size_t)json_integer_value(val) + 1;
	}
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
		if (!json_is_integer(id) || !json_is_string(c) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= VOCAB_MAX)
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: added_tokens[%zu]: bad id or content", path, i);
		if ((size_t)json_integer_value(id) + 1 > n)
			n = (size_t)json_integer_value(id) + 1;
	}
	if ((s = muse_vocab_alloc(v, n, false, false, err)))
		return s;
	json_object_foreach(vocab, key, val) {
		size_t id = (size_t)json_integer_value(val);
		if (v->text[id])
			return muse_err_set(err, MUSE_ERR_FORMAT, "%s: tokens '%.100s' and '%.100s' share id %zu", path,
					    v->text[id], key, id);
		if ((s = muse_vocab_set_text(v, id, key, strlen(key), err)))
			return s;
	}
	/* Added tokens fill only the ids the model's vocabulary leaves empty; the model looks up its own tokens only. */
	for (size_t i = 0; json_is_array(at) && i < json_array_size(at); i++) {
		json_t *a = json_array_get(at, i), *c = json_object_get(a, "content");
		if ((s = muse_vocab_add_added(v, json_string_value(c), json_string_length(c),
					      (int32_t)json_integer_value(json_object_get(a, "id")),
					      json_is_true(json_object_get(a, "special")), err)))
			return s;
		muse_vocab_added *ad = &v->added[v->n_added - 1];
		ad->lstrip = json_is_true(json_object_get(a, "lstrip"));
		ad->rstrip = json_is_true(json_object_get(a, "rstrip"));
		ad->single_word = json_is_true(json_object_get(a, "single_word"));
		ad->normalized = json_is_true(json_object_get(a, "normalized"));
	}
	if ((s = read_merges(v, json_object_get(model, "merges"), err)))
		return s;
	v->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
	v->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
	v->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
	json_t *unk = json_object_get(model, "unk_token");
	if (json_is_string(unk) && !(v->unk_text = strdup(json_string_value(unk))))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	if ((s = read_normalizer(v, json_object_get(tok, "normalizer"), 0, err)) ||
	    (s = read_pre(v, json_object_get(tok, "pre_tokenizer"), 0, err)))
		return s;
	read_post(v, json_object_get(tok, "post_processor"), 0);
	/* bos/eos for callers: tokenizer_config's, looked up by the encoder among added tokens, then the vocabulary. */
	const char *bos = muse_vocab_hf_content(json_object_get(tcfg, "bos_token"));
	const char *eos = muse_vocab_hf_content(json_object_get(tcfg, "eos_token"));
	if ((bos && !(v->bos_text = strdup(bos))) || (eos && !(v->eos_text = strdup(eos))))
		return muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
	return MUSE_OK;
}

static bool is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

muse_status muse_vocab_from_dir(const char *dir, muse_vocab **out, muse_err *err)
{
	char path[4096], cpath[4096], mpath[4096];
	muse_status s = MUSE_OK;
	json_t *tok = NULL, *tcfg = NULL;
	muse_vocab *v = NULL;
	*out = NULL;
	if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path)
		return muse_err_set(err, MUSE_ERR_LIMIT, "%s: path too long", dir);
	snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
	snprintf(mpath, sizeof mpath, "%s/tokenizer.model", dir);
	bool have_json = is_file(path), have_model = is_file(mpath);
	if (!have_json && !have_model)
		return muse_err_set(err, MUSE_ERR_FORMAT, "%s: no tokenizer.json or tokenizer.model", dir);
	if (is_file(cpath) &&
	    !(tcfg = muse_vocab_hf_load(dir, "tokenizer_config.json", false, JSON_DECODE_INT_AS_REAL, &s, err)))
		goto done;
	if (have_json) {
		if (!(tok = muse_vocab_hf_load(dir, "tokenizer.json", false, 0, &s, err)))
			goto done;
		if (!(v = muse_vocab_create()) || !(v->source = strdup(path))) {
			s = muse_err_set(err, MUSE_ERR_NOMEM, "out of memory");
			goto done;
		}
		s = from_hf_json(v, tok, tcfg, err);
	} else {
		json_t *ab = json_object_get(tcfg, "add_bos_token"), *ae = json_object_get(tcfg, "add_eos_token");
		s = muse_vocab_from_spm(mpath, ab ? json_is_true(ab) : true, ae ? json_is_true(ae) : false, &v, err);
	}
done:
	json_decref(tok);
	json_decref(tcfg);
	if (s) {
		muse_vocab_free(v);
		return s;
	}
	*out = v;
	return MUSE_OK;
}
