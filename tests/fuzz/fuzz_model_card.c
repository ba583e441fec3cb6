/* fuzz_model_card.c: libFuzzer target for the model card front matter parser: parse from memory, check its promises, free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/model_card.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	muse_model_card c;
	muse_err err = { 0 };
	if (muse_model_card_parse((const char *)data, size, "README.md", &c, &err) != MUSE_OK) {
		/* A refusal leaves an empty card and exactly one line of error. */
		if (c.n || c.e || !err.msg[0] || strchr(err.msg, '\n'))
			abort();
		return 0;
	}
	/* Every entry has a non-empty key without a newline; items are strings; skipped entries have none. */
	for (size_t i = 0; i < c.n; i++) {
		const muse_card_entry *e = &c.e[i];
		if (!e->key || !e->key[0] || strchr(e->key, '\n') || (e->list < 0 && e->n) || (e->n && !e->items))
			abort();
		for (size_t j = 0; j < e->n; j++)
			if (!e->items[j] || strlen(e->items[j]) > size)
				abort();
		if (muse_model_card_get(&c, e->key) == NULL)
			abort();
	}
	muse_model_card_free(&c);
	return 0;
}
