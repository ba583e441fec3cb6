/* vocab.h: a tokenizer as muse reads it from any source (tokenizer.json, tokenizer.model, GGUF tokenizer.* keys): the one structure the GGUF writer (convert) and the encoder (quant/tokenizer.c) consume, and the readings that fill it. */
#ifndef MUSE_VOCAB_H
#define MUSE_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/kv.h"
#include "../lib/status.h"

/* gguf.TokenType; SentencePiece's piece types carry the same numbers. */
enum {
	MUSE_TOKEN_NORMAL = 1,
	MUSE_TOKEN_UNKNOWN = 2,
	MUSE_TOKEN_CONTROL = 3,
	MUSE_TOKEN_USER_DEFINED = 4,
	MUSE_TOKEN_UNUSED = 5,
	MUSE_TOKEN_BYTE = 6,
};

/* The merge model: ranked merges (tokenizer.json BPE, GGUF "gpt2"), SentencePiece scores (tokenizer.model, GGUF "llama"). */
typedef enum muse_vocab_model { MUSE_VOCAB_BPE = 1, MUSE_VOCAB_SPM = 2 } muse_vocab_model;

/* gguf.SpecialVocab's token kinds, in its order (cls has no GGUF key). */
enum {
	MUSE_SPECIAL_BOS,
	MUSE_SPECIAL_EOS,
	MUSE_SPECIAL_UNK,
	MUSE_SPECIAL_SEP,
	MUSE_SPECIAL_PAD,
	MUSE_SPECIAL_CLS,
	MUSE_SPECIAL_MASK,
	MUSE_SPECIAL_EOT,
	MUSE_SPECIAL_EOM,
	MUSE_SPECIAL_N
};

/* One merge "a b" in rank order. b is NULL when the source's spelling has no second part (a holds it whole). */
typedef struct muse_vocab_merge {
	char *a, *b; /* owned */
	size_t la, lb;
} muse_vocab_merge;

/* A token matched in the text before the merge model runs (HF added_tokens; CONTROL/UNKNOWN/USER_DEFINED ids). */
typedef struct muse_vocab_added {
	char *text; /* owned */
	size_t len;
	int32_t id;
	bool special, lstrip, rstrip, normalized, single_word;
} muse_vocab_added;

/* Normalizer steps (HF normalizers), applied in order. */
enum { MUSE_NORM_NFC = 1, MUSE_NORM_NFD, MUSE_NORM_NFKC, MUSE_NORM_NFKD, MUSE_NORM_LOWERCASE, MUSE_NORM_PREPEND,
       MUSE_NORM_REPLACE, MUSE_NORM_STRIP };

typedef struct muse_vocab_norm {
	int kind;
	char *text;          /* PREPEND: the prefix; REPLACE: the content (owned) */
	size_t text_len;
	char *pattern;       /* REPLACE (owned) */
	size_t pattern_len;
	bool literal;        /* REPLACE: the pattern is a plain string, not a regex */
	bool left, right;    /* STRIP */
} muse_vocab_norm;

/* Pre-tokenizer steps (HF pre_tokenizers), each splitting every piece further. */
enum { MUSE_PRE_SPLIT = 1, MUSE_PRE_BYTELEVEL, MUSE_PRE_METASPACE };
/* tokenizers' SplitDelimiterBehavior. */
enum { MUSE_SPLIT_ISOLATED = 1, MUSE_SPLIT_REMOVED, MUSE_SPLIT_MERGED_PREV, MUSE_SPLIT_MERGED_NEXT,
       MUSE_SPLIT_CONTIGUOUS };

typedef struct muse_vocab_pre {
	int kind;
	char *pattern;          /* SPLIT; BYTELEVEL: GPT-2's regex (use_regex), else NULL (owned, PCRE2 syntax) */
	size_t pattern_len;
	bool literal;           /* SPLIT: the pattern is a plain string */
	int behavior;           /* SPLIT: MUSE_SPLIT_* */
	bool add_prefix_space;  /* BYTELEVEL */
	int prepend;            /* METASPACE: 0 never, 1 always, 2 first */
	bool split;             /* METASPACE: a piece starts at each replacement */
	char repl[8];           /* METASPACE: the replacement (UTF-8) */
	size_t repl_len;
} muse_vocab_pre;

/* A chat template key: tokenizer.chat_template (name NULL) or tokenizer.chat_template.NAME. */
typedef struct muse_vocab_template {
	char *name, *text; /* owned */
	size_t text_len;
} muse_vocab_template;

/*
 * A tokenizer as one of the readings below gives it; everything is owned.
 * Every reading fills the vocabulary part. The GGUF part is what
 * convert_hf_to_gguf.py's reading (muse_vocab_convert_hf) computes for the
 * GGUF writer; the encoding part is what the encoder needs, filled by the
 * readings of GGUF keys (llama.cpp's), tokenizer.model (sentencepiece's)
 * and tokenizer.json (HF tokenizers'). An HF directory has two readings
 * because muse matches two programs that read it differently: convert
 * writes what convert_hf_to_gguf.py writes (its padding, token types and
 * special ids) and `muse tokenize DIR` encodes as tokenizers does
 * (normalizers, Metaspace, added-token flags: what no GGUF key expresses,
 * so going through the GGUF form would lose it).
 */
typedef struct muse_vocab {
	/* ---- the vocabulary ---- */
	char *source;              /* the file errors name */
	muse_vocab_model model;
	size_t n;                  /* ids 0..n-1 */
	char **text;               /* NUL-terminated; NULL: no token has the id (tokenizer.json may leave holes) */
	size_t *len;
	float *scores;             /* per id, or NULL */
	int32_t *types;            /* MUSE_TOKEN_* per id, or NULL */
	muse_vocab_merge *merges;  /* in rank order */
	size_t n_merges;

	/* ---- GGUF keys beyond the vocabulary (muse_vocab_to_meta writes them in this order) ---- */
	int add_space_prefix;                  /* -1: no key */
	char *pre;                             /* tokenizer.ggml.pre */
	int64_t special[MUSE_SPECIAL_N];       /* -1: unset */
	int special_order[MUSE_SPECIAL_N], n_special_order; /* kinds in the order their ids were chosen */
	int add[MUSE_SPECIAL_N];               /* add_<kind>_token: -1 unset */
	int add_order[MUSE_SPECIAL_N], n_add_order;
	int lowercase, strip_accents;          /* tokenizer.ggml.normalizer.*: -1 no key */
	muse_vocab_template *templates;        /* in the order the keys are set */
	size_t n_templates;
	char **template_names;                 /* tokenizer.chat_templates; NULL: no key */
	size_t n_template_names;

	/* ---- how to encode ---- */
	bool llama_merges;         /* llama.cpp's reading: a repeated pair keeps its first rank and a merge naming no
				      token is skipped; else tokenizers': the last rank wins and such a merge is an error */
	bool byte_fallback, fuse_unk, ignore_merges;
	int32_t unk;               /* -1: none */
	char *unk_text;            /* tokenizer.json's model.unk_token, resolved by the encoder (NULL: use unk) */
	muse_vocab_added *added;   /* in the source's order */
	size_t n_added;
	muse_vocab_norm *norm;
	size_t n_norm;
	muse_vocab_pre *pre_steps;
	size_t n_pre_steps;
	int32_t prefix[4], suffix[4]; /* ids add_special puts around the text */
	int n_prefix, n_suffix;
	int32_t bos, eos;          /* -1: none */
	char *bos_text, *eos_text; /* tokenizer_config's bos/eos_token, resolved by the encoder (NULL: use bos/eos) */
	bool spm_space_prefix;     /* SentencePiece: U+2581 before text that starts the input or follows a token */
	/*
	 * What the encoder cannot run, found while reading: the first problem
	 * in the merges, the normalizer, the pre-tokenizer and the
	 * post-processor (code MUSE_OK: none). The reading goes on, so convert
	 * is not refused for what only encoding needs; the encoder reports each
	 * after building what precedes it, in the order tokenizers reads them.
	 */
	muse_err merges_refusal, norm_refusal, pre_refusal, post_refusal;
} muse_vocab;

void muse_vocab_free(muse_vocab *v); /* NULL is a no-op */

/* ---- pre-tokenizers ---- */

#define MUSE_PRE_MAX_SPLITS 3

/*
 * One byte-level pre-tokenizer family: the tokenizer.json steps it stands
 * for ([Digits(individual_digits=true)], Split(Regex, Isolated)...,
 * ByteLevel(use_regex)) and llama.cpp's per-name flags.
 */
typedef struct muse_pre_rule {
	const char *name;                          /* tokenizer.ggml.pre */
	const char *split[MUSE_PRE_MAX_SPLITS];    /* Split regexes in order (PCRE2 syntax), NULL-terminated */
	int digits;                                /* Digits(individual_digits=true) first */
	int bytelevel_regex;                       /* ByteLevel(use_regex=true): GPT-2's regex */
	int ignore_merges;                         /* llama.cpp: whole pre-token in vocab -> one id */
	int add_bos;                               /* llama.cpp's add_bos default for the name */
	int hf;                                    /* GGUF -> HF writes this pre_tokenizer into tokenizer.json */
	int hf_trim_offsets;                       /* and ByteLevel's trim_offsets, as the family publishes it */
} muse_pre_rule;

/* HF ByteLevel's own split regex (GPT-2's, with the trailing \s+ tokenizers adds). */
extern const char muse_vocab_gpt2_regex[];

/* The rule for a tokenizer.ggml.pre name (llama.cpp's aliases included); NULL when unknown. */
const muse_pre_rule *muse_vocab_pre_rule(const char *name);
/*
 * The tokenizer.ggml.pre name for a tokenizer.json "pre_tokenizer" given as
 * JSON text, or NULL when it is not one muse recognizes (exposed for tests).
 */
const char *muse_vocab_pre_name(const char *pre_tokenizer_json);

/* ---- readings ---- */

/*
 * llama.cpp's reading of GGUF tokenizer.* metadata (tokenizer.ggml.model
 * "gpt2": byte-level BPE with the pre-tokenizer named by .pre; "llama":
 * SentencePiece BPE with byte fallback), defaults included. path names the
 * file in errors (NULL: "GGUF tokenizer metadata").
 */
muse_status muse_vocab_from_meta(const muse_meta *meta, const char *path, muse_vocab **out, muse_err *err);

/*
 * HF tokenizers' reading of a model directory: tokenizer.json (else
 * tokenizer.model, read as sentencepiece does) plus tokenizer_config.json.
 */
muse_status muse_vocab_from_dir(const char *dir, muse_vocab **out, muse_err *err);

/*
 * convert_hf_to_gguf.py's reading of the tokenizer files of the model
 * directory dir (LlamaModel.set_vocab), into the vocabulary and GGUF parts:
 *  - tokenizer.model (SentencePiece): _set_vocab_sentencepiece: model
 *    "llama", pre "default", pieces/scores/types (vocab_size entries,
 *    "[PADi]" -10000 UNUSED for holes), added_tokens.json and
 *    tokenizer_config added_tokens_decoder overrides;
 *  - else a SentencePiece-style tokenizer.json (BPE with byte_fallback and a
 *    Sequence decoder): _set_vocab_llama_hf: model "llama", pre "default",
 *    base vocab then added tokens. One deliberate difference: the converter
 *    writes score -1000 for every token, which makes llama.cpp's
 *    score-driven SentencePiece merge order left-to-right and tokenize
 *    unlike HF; muse writes -k for the k-th distinct token the merges
 *    produce (-1e9 for tokens no merge produces) so llama.cpp merges in
 *    HF's rank order;
 *  - else byte-level BPE tokenizer.json: _set_vocab_gpt2: model "gpt2",
 *    .pre from the pre_tokenizer definition (not by hashing encodings),
 *    tokens and types, merges.
 * Then gguf.SpecialVocab: special ids (bos/eos/unk/sep/pad/mask, and
 * eot/eom where the post-processor's trailing token differs from eos),
 * add_bos/add_eos/add_sep, normalizer lowercase/strip_accents, and
 * tokenizer.chat_template byte for byte (tokenizer_config.json's, else
 * chat_template.jinja, else chat_template.json; named templates as
 * tokenizer.chat_template.NAME). When report is non-NULL, one line per
 * chosen special id is printed there.
 */
muse_status muse_vocab_convert_hf(const char *dir, uint64_t vocab_size, FILE *report, muse_vocab **out,
				  muse_err *err);

/* Writes the GGUF keys of a converted vocabulary (the order convert_hf_to_gguf.py writes them in). */
muse_status muse_vocab_to_meta(const muse_vocab *v, muse_meta *meta, muse_err *err);

/* muse_vocab_convert_hf then muse_vocab_to_meta: the tokenizer keys `muse convert` writes for an HF directory. */
muse_status muse_vocab_hf_to_meta(const char *dir, uint64_t vocab_size, muse_meta *meta, FILE *report,
				  muse_err *err);

#endif
