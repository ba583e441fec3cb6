# test_tokenize.sh: muse tokenize on a hand-written tokenizer.json: ids, flags, usage errors and one-line refusals of bad tokenizer files and text.
. "$(dirname "$0")/lib.sh"

D="$TMP/tok"
mkdir -p "$D"
cat >"$D/tokenizer.json" <<'JSON'
{"version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "special": true, "normalized": false,
  "lstrip": false, "rstrip": false, "single_word": false}],
 "normalizer": null, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": " "}, "behavior": "Removed", "invert": false},
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
   {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
 "decoder": null,
 "model": {"type": "BPE", "dropout": null, "unk_token": "u", "fuse_unk": true, "byte_fallback": false,
   "vocab": {"a": 0, "b": 1, "ab": 2, "u": 4}, "merges": ["a b"]}}
JSON

expect_rc ids 0 tokenize "$D" --text "ab a"
expect_out ids_text '^3 2 0$'
expect_rc no_special 0 tokenize "$D" --text "ab a" --no-special
expect_out no_special_text '^2 0$'
expect_rc json 0 tokenize "$D" --text "ba" --json
expect_out json_text '^\{"ids": \[3, 1, 0\]\}$'
# Issue 12 item 10: special tokens in the text are single ids by default (llama-tokenize, HF encode());
# --no-parse-special (llama-tokenize's name) reads them as text; --parse-special stays accepted.
expect_rc special_parsed_default 0 tokenize "$D" --text "<s>" --no-special
expect_out special_parsed_default_ids '^3$'
expect_rc special_as_text 0 tokenize "$D" --text "<s>" --no-special --no-parse-special
expect_out special_as_text_ids '^4$'
expect_rc special_parsed 0 tokenize "$D" --text "<s>" --no-special --parse-special
expect_out special_parsed_ids '^3$'
expect_rc special_both_flags 2 tokenize "$D" --text "<s>" --parse-special --no-parse-special
expect_rc unk_fused 0 tokenize "$D" --text "xyz" --no-special
expect_out unk_fused_ids '^4$'
expect_rc empty_text 0 tokenize "$D" --text "" --no-special
expect_rc usage_none 2 tokenize "$D"
expect_rc usage_both 2 tokenize "$D" --text a --file "$TMP/x"
expect_rc usage_model 2 tokenize --text a
printf 'ab \377 ab' >"$TMP/bad.txt"
expect_fail_line bad_utf8 "bad.txt: byte 3: invalid UTF-8" tokenize "$D" --file "$TMP/bad.txt"
expect_fail_line no_file "nope.txt" tokenize "$D" --file "$TMP/nope.txt"
mkdir -p "$TMP/none"
expect_fail_line no_tokenizer "no tokenizer.json or tokenizer.model" tokenize "$TMP/none" --text a

# Refusals of tokenizer files: one line naming the file.
B="$TMP/bad1"; mkdir -p "$B"
sed 's/"merges": \["a b"\]/"merges": ["a u"]/' "$D/tokenizer.json" >"$B/tokenizer.json"
expect_fail_line merge_not_token "tokenizer.json: merge 0 'a u'" tokenize "$B" --text a
sed 's/"type": "BPE"/"type": "Unigram"/' "$D/tokenizer.json" >"$B/tokenizer.json"
expect_fail_line unigram "tokenizer.json: tokenizer model type 'Unigram' is not supported \(muse encodes BPE" tokenize "$B" --text a
# Issue 12 item 11: a WordPiece tokenizer.json as BERT models ship it (all-MiniLM-L6-v2) was "model type not supported: ?".
W="$TMP/wordpiece"; mkdir -p "$W"
cat >"$W/tokenizer.json" <<'JSON'
{"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [{"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
 "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null, "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
 "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
   "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "##s": 3}}}
JSON
expect_fail_line wordpiece "tokenizer.json: tokenizer model type 'WordPiece' is not supported \(muse encodes BPE: .*tokenizer.model.*gpt2 or llama\)" tokenize "$W" --text hello
printf '{"model": ' >"$B/tokenizer.json"
expect_fail_line truncated_json "tokenizer.json: byte [0-9]+" tokenize "$B" --text a
sed 's/"behavior": "Removed"/"behavior": "Sideways"/' "$D/tokenizer.json" >"$B/tokenizer.json"
expect_fail_line bad_behavior "Split behavior" tokenize "$B" --text a
sed 's/{"Regex": " "}/{"Regex": "("}/' "$D/tokenizer.json" >"$B/tokenizer.json"
expect_fail_line bad_regex "does not compile with PCRE2" tokenize "$B" --text a
S="$TMP/spm"; mkdir -p "$S"
printf '\012\005\012\003<u' >"$S/tokenizer.model"
expect_fail_line spm_truncated "tokenizer.model: byte [0-9]+" tokenize "$S" --text a
