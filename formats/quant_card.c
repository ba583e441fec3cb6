/* quant_card.c: README.md for a quantized HF directory: Hub front matter (base_model, quantized, license carried over) and what was done. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/path.h"
#include "../lib/outfile.h"
#include "model_card.h"
#include "quant_card.h"

#ifndef MUSE_VERSION
#define MUSE_VERSION "0.1.0"
#endif

/* A Hub repository id: owner/name of [A-Za-z0-9._-], neither part starting with '.' (a local path is not one). */
static bool is_hub_id(const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') || s[0] == '.' || slash[1] == '.')
		return false;
	for (const char *p = s; *p; p++)
		if (*p != '/' && *p != '.' && *p != '-' && *p != '_' && !(*p >= '0' && *p <= '9') &&
		    !(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z'))
			return false;
	return true;
}

/* The model the directory derives from, as the Hub names it when the source says so (malloc'd). */
static char *base_model_of(const char *src_dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config.json", src_dir);
	json_t *cfg = json_load_file(path, 0, NULL);
	const char *id = json_string_value(json_object_get(cfg, "_name_or_path"));
	char *out = NULL;
	if (id && is_hub_id(id)) {
		out = strdup(id);
	} else {
		size_t n, b = muse_path_base(src_dir, &n);
		out = strndup(src_dir + b, n);
	}
	json_decref(cfg);
	return out;
}

/* key: value as YAML, the value written as a JSON string or flow list (both are YAML). */
static void put_yaml(FILE *f, const char *key, json_t *v)
{
	char *txt = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	if (txt && !strchr(txt, '\n'))
		fprintf(f, "%s: %s\n", key, txt);
	free(txt);
	json_decref(v);
}

/* A scalar or scalar list of the source card, carried over unchanged. */
static void carry(FILE *f, const muse_model_card *card, const char *key)
{
	const muse_card_entry *e = muse_model_card_get(card, key);
	if (!e || e->list < 0 || !e->n)
		return;
	json_t *v;
	if (!e->list) {
		v = json_string(e->items[0]);
	} else {
		v = json_array();
		for (size_t i = 0; v && i < e->n; i++)
			json_array_append_new(v, json_string(e->items[i]));
	}
	put_yaml(f, key, v);
}

static const char *group_text(int64_t g, char *buf, size_t cap)
{
	if (g < 0)
		return "per output channel (-1)";
	snprintf(buf, cap, "%lld", (long long)g);
	return buf;
}

muse_status muse_quant_card_write(const char *src_dir, const char *out_dir, const muse_quant_card *c, muse_err *err)
{
	muse_model_card card = { 0 };
	muse_status s = muse_model_card_load(src_dir, &card, err);
	if (s)
		return s;
	char *base = base_model_of(src_dir), *text = NULL, path[4096], gbuf[32];
	size_t len = 0;
	FILE *f = base ? open_memstream(&text, &len) : NULL;
	if (!f) {
		free(base);
		muse_model_card_free(&card);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s/README.md: out of memory", out_dir);
	}
	char bits_tag[16];
	snprintf(bits_tag, sizeof bits_tag, "%d-bit", c->bits);
	fputs("---\n", f);
	put_yaml(f, "base_model", json_string(base));
	fputs("base_model_relation: quantized\n", f);
	carry(f, &card, "license");
	carry(f, &card, "license_name");
	carry(f, &card, "license_link");
	carry(f, &card, "language");
	carry(f, &card, "pipeline_tag");
	fputs("library_name: transformers\n", f);
	put_yaml(f, "tags", json_pack("[s,s,s,s]", "muse", c->format, c->method, bits_tag));
	fputs("---\n\n", f);

	fprintf(f, "# %s, %d-bit %s (%s)\n\n", base, c->bits, c->format, c->method);
	fprintf(f, "This directory holds `%s` with its linear layers quantized to %d-bit integers by muse %s "
		   "(method `%s`, `%s` layout); embeddings, norms, the output head and routers stay in 16-bit floats. "
		   "It is not the source model: the source's own model card is not carried over.\n\n",
		base, c->bits, MUSE_VERSION, c->method, c->format);
	fputs("| | |\n|---|---|\n", f);
	fprintf(f, "| method | %s |\n", c->method);
	fprintf(f, "| layout | %s |\n", c->format);
	fprintf(f, "| bits | %d |\n", c->bits);
	fprintf(f, "| group size | %s |\n", group_text(c->group_size, gbuf, sizeof gbuf));
	fprintf(f, "| symmetric | %s |\n", c->sym ? "yes (no zero points)" : "no (zero points)");
	if (c->act_order)
		fprintf(f, "| act-order | yes%s |\n", c->static_groups ? ", static groups (groups in column order)" : "");
	if (c->calib_file) {
		const char *slash = strrchr(c->calib_file, '/');
		fprintf(f, "| calibration file | `%s` |\n", slash ? slash + 1 : c->calib_file);
		fprintf(f, "| calibration SHA-256 | `%s` |\n", c->calib_sha256 ? c->calib_sha256 : "?");
		fprintf(f, "| calibration samples | %lld x %lld tokens, seed %llu |\n", (long long)c->samples,
			(long long)c->seq_len, (unsigned long long)c->seed);
	} else {
		fprintf(f, "| calibration | none (%s) |\n",
			strcmp(c->method, "rtn") ? "precomputed statistics" : "round-to-nearest reads no data");
	}
	fprintf(f, "| quantized parameters | %llu of %llu (%.1f%%) |\n", (unsigned long long)c->quantized_params,
		(unsigned long long)c->total_params,
		c->total_params ? 100.0 * (double)c->quantized_params / (double)c->total_params : 0.0);
	fprintf(f, "| muse version | %s |\n\n", MUSE_VERSION);
	fputs("Evaluation: not measured when this directory was written; `muse eval DIR --text FILE` gives perplexity "
	      "and, with `--ref`, the KL divergence to the source. `quant_report.json` lists every tensor and how it was "
	      "quantized.\n", f);
	bool bad = fclose(f) != 0;
	free(base);
	muse_model_card_free(&card);
	if (bad || !text) {
		free(text);
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s/README.md: out of memory", out_dir);
	}
	snprintf(path, sizeof path, "%s/README.md", out_dir);
	s = muse_out_write_file(path, text, len, err);
	free(text);
	return s;
}
