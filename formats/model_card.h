/* model_card.h: a model card's YAML front matter (README.md), the subset gguf-py's Metadata heuristics read. */
#ifndef MUSE_MODEL_CARD_H
#define MUSE_MODEL_CARD_H

#include <stddef.h>

#include "../lib/status.h"

/*
 * Top-level keys of the front matter with a scalar or a list of scalars
 * (block "- item" lines or a [a, b] flow list, which may span lines).
 * Scalars may span lines as YAML folds them: quoted or plain continuation
 * lines, "|" and ">" block scalars with chomping and indentation
 * indicators. Nested maps and lists of maps (model-index, widget,
 * inference), flow maps, anchors and tags are skipped: their key is kept
 * with list < 0 and no items. Scalars are strings as written (quotes
 * removed, escapes applied); YAML's null, ~ and empty values count as
 * absent.
 */
typedef struct muse_card_entry {
	char *key;
	char **items;   /* n items; a scalar is one item with list == 0 */
	size_t n;
	int list;
} muse_card_entry;

typedef struct muse_model_card {
	muse_card_entry *e;
	size_t n;
} muse_model_card;

/*
 * Reads DIR/README.md. No file, or a file not starting with a "---" line,
 * gives an empty card (MUSE_OK). A front matter over 1 MiB, unterminated,
 * or not UTF-8 is an error naming the file and line.
 */
muse_status muse_model_card_load(const char *dir, muse_model_card *card, muse_err *err);
/* Parses front matter text (the lines between the "---" markers); path is for messages. */
muse_status muse_model_card_parse(const char *text, size_t len, const char *path, muse_model_card *card,
				  muse_err *err);
void muse_model_card_free(muse_model_card *card);
/* The entry for key, or NULL. */
const muse_card_entry *muse_model_card_get(const muse_model_card *card, const char *key);
/* key's scalar value, or NULL when absent or a list. */
const char *muse_model_card_str(const muse_model_card *card, const char *key);

#endif
