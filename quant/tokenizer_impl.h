/* tokenizer_impl.h: the tokenizer's internal types shared by tokenizer.c (loading, normalizers, pre-tokenizers, added tokens) and tokenizer_bpe.c (the BPE and SentencePiece merge models). */
#ifndef MUSE_TOKENIZER_IMPL_H
#define MUSE_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/strmap.h"
#include "tokenizer.h"

/* The two merge models muse implements. */
enum { TK_BPE = 1, TK_SPM = 2 };

/* Normalizer steps (HF normalizers), applied in order to each text segment. */
enum { NM_NFC = 1, NM_NFD, NM_NFKC, NM_NFKD, NM_LOWERCASE, NM_PREPEND, NM_REPLACE, NM_STRIP };
typedef struct tk_norm {
	int kind;
	char *a;           /* PREPEND: text; REPLACE: content */
	size_t a_len;
	pcre2_code *re;    /* REPLACE: the pattern (a literal or a regex) */
	int left, right;   /* STRIP */
} tk_norm;

/* Pre-tokenizer steps (HF pre_tokenizers), each splitting every current piece further. */
enum { PT_SPLIT = 1, PT_BYTELEVEL, PT_METASPACE };
enum { SB_ISOLATED = 1, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };
typedef struct tk_pre {
	int kind;
	pcre2_code *re;        /* SPLIT; BYTELEVEL with use_regex: GPT-2's regex */
	int behavior;          /* SPLIT: SB_* */
	int add_prefix_space;  /* BYTELEVEL */
	int prepend;           /* METASPACE: 0 never, 1 always, 2 first */
	int split;             /* METASPACE: split on the replacement, merged with next */
	char repl[8];          /* METASPACE replacement (UTF-8) */
	size_t repl_len;
} tk_pre;

/* A token matched in raw (or normalized) text before the model runs. */
typedef struct tk_added {
	char *text;
	size_t len;
	int32_t id;
	bool special, lstrip, rstrip, normalized, single_word;
} tk_added;

/* (left id, right id) -> (rank, merged id), open addressing. */
typedef struct tk_merge_slot {
	uint64_t key; /* (uint64)left << 32 | right, plus 1 so 0 means empty */
	int32_t rank, id;
} tk_merge_slot;

struct muse_tokenizer {
	int model;                  /* TK_BPE / TK_SPM */
	size_t n_vocab;
	char **text;                /* token text by id, owned; "" for holes */
	uint32_t *len;
	float *scores;              /* TK_SPM */
	muse_strmap map;            /* text -> id (keys borrow text[]) */
	/* BPE */
	tk_merge_slot *merges;
	size_t merges_cap;          /* power of two */
	bool byte_level;            /* words were mapped bytes -> GPT-2 code points */
	bool ignore_merges, byte_fallback, fuse_unk;
	int32_t unk;                /* -1: none */
	int32_t byte_tok[256];      /* <0xXX> ids, -1 when absent */
	/* SPM (llama.cpp / sentencepiece) */
	bool add_space_prefix;
	/* pipeline */
	tk_norm *norm;
	size_t n_norm;
	tk_pre *pre;
	size_t n_pre;
	tk_added *added;
	size_t n_added;
	uint32_t added_start[257];  /* added[] sorted by first byte: [added_start[b], added_start[b+1]) start with b */
	/* post-processing for add_special */
	int32_t prefix[4], suffix[4];
	int n_prefix, n_suffix;
	int32_t bos, eos;
};

/* A growable id list. */
typedef struct tk_ids {
	int32_t *v;
	size_t n, cap;
} tk_ids;

muse_status muse_tk_ids_push(tk_ids *o, int32_t id, muse_err *err);

/* The BPE model over one pre-tokenized word (already byte-level mapped if byte_level); appends ids. */
muse_status muse_tk_bpe_word(const muse_tokenizer *t, const char *w, size_t len, tk_ids *out, muse_err *err);
/* llama.cpp's SentencePiece model over one escaped text fragment; appends ids. */
muse_status muse_tk_spm_text(const muse_tokenizer *t, const char *s, size_t len, tk_ids *out, muse_err *err);
/* Inserts a merge; returns -1 on no memory. first_wins: keep an existing pair's rank (llama.cpp), else replace (HF). */
int muse_tk_merge_put(muse_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id, bool first_wins);
/* The GPT-2 byte -> code point map as UTF-8 (1 or 2 bytes). */
const char *muse_tk_byte_char(uint8_t b, size_t *len);

#endif
