/* tokenizer_impl.h: the tokenizer's internal types shared by tokenizer.c (building from a muse_vocab, normalizers, pre-tokenizers, added tokens) and tokenizer_bpe.c (the BPE and SentencePiece merge models). */
#ifndef MUSE_TOKENIZER_IMPL_H
#define MUSE_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/vocab.h"
#include "../lib/strmap.h"
#include "tokenizer.h"

/* (left id, right id) -> (rank, merged id), open addressing. */
typedef struct tk_merge_slot {
	uint64_t key; /* (uint64)left << 32 | right, plus 1 so 0 means empty */
	int32_t rank, id;
} tk_merge_slot;

struct muse_tokenizer {
	int model;                  /* MUSE_VOCAB_BPE / MUSE_VOCAB_SPM */
	size_t n_vocab;
	char **text;                /* token text by id, owned; "" for holes */
	size_t *len;
	float *scores;              /* SPM */
	muse_strmap map;            /* text -> id (keys borrow text[]) */
	/* BPE */
	tk_merge_slot *merges;
	size_t merges_cap;          /* power of two */
	bool ignore_merges, byte_fallback, fuse_unk;
	int32_t unk;                /* -1: none */
	int32_t byte_tok[256];      /* <0xXX> ids, -1 when absent */
	/* SPM (llama.cpp / sentencepiece) */
	bool add_space_prefix;
	/* pipeline: the vocabulary's steps with their regexes compiled (NULL where a step has none) */
	muse_vocab_norm *norm;
	pcre2_code **norm_re;
	size_t n_norm;
	muse_vocab_pre *pre;
	pcre2_code **pre_re;
	size_t n_pre;
	muse_vocab_added *added;    /* matched in the text before the model runs */
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

/* The BPE model over one pre-tokenized word (already byte-level mapped by a ByteLevel step); appends ids. */
muse_status muse_tk_bpe_word(const muse_tokenizer *t, const char *w, size_t len, tk_ids *out, muse_err *err);
/* llama.cpp's SentencePiece model over one escaped text fragment; appends ids. */
muse_status muse_tk_spm_text(const muse_tokenizer *t, const char *s, size_t len, tk_ids *out, muse_err *err);
/* Inserts a merge; returns -1 on no memory. first_wins: keep an existing pair's rank (llama.cpp), else replace (HF). */
int muse_tk_merge_put(muse_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id, bool first_wins);
/* The GPT-2 byte -> code point map as UTF-8 (1 or 2 bytes). */
const char *muse_tk_byte_char(uint8_t b, size_t *len);

#endif
