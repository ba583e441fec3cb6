/* fuzz_spm.c: libFuzzer target for the SentencePiece tokenizer.model reader: parse from memory, check its promises, walk every piece, free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/vocab_spm.h"
#include "../../lib/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	muse_spm_model *m = (muse_spm_model *)1;
	muse_err err = { 0 };
	if (muse_spm_parse(data, size, "fuzz.model", &m, &err) != MUSE_OK) {
		/* A refusal leaves no model and exactly one line of error. */
		if (m || !err.msg[0] || strchr(err.msg, '\n'))
			abort();
		return 0;
	}
	/* Promises of a parsed model: non-empty unique-able UTF-8 pieces, known types, ids in range. */
	if (!m || !m->n_pieces)
		abort();
	for (size_t i = 0; i < m->n_pieces; i++) {
		const muse_spm_piece *p = &m->pieces[i];
		if (!p->len || strlen(p->text) != p->len || !muse_utf8_valid(p->text, p->len) || p->type < 1 || p->type > 6 ||
		    p->score != p->score)
			abort();
	}
	int32_t ids[] = { m->unk_id, m->bos_id, m->eos_id, m->pad_id };
	for (int i = 0; i < 4; i++)
		if (ids[i] < -1 || (ids[i] >= 0 && (size_t)ids[i] >= m->n_pieces))
			abort();
	muse_spm_free(m);
	return 0;
}
