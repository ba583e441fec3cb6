#!/usr/bin/env bash
# test_gguf2hf.sh: `muse convert` GGUF -> HF directory, HF -> HF resharding, sharded GGUF: layouts, exit codes, nothing half-written.
. "$(dirname "$0")/lib.sh"

SRC="$(dirname "$0")/../fuzz/corpus/gguf2hf/llama.gguf" # a tiny llama GGUF with a byte-level BPE vocabulary

expect_rc g2h-dir 0 convert -q "$SRC" "$TMP/hf"
files=$(cd "$TMP/hf" 2>/dev/null && ls | tr '\n' ' ')
if [ "$files" = "README.md config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json " ]
then pass g2h-dir-files; else fail g2h-dir-files "got: $files"; fi
if grep -q '"architectures"' "$TMP/hf/config.json" 2>/dev/null; then pass g2h-config; else fail g2h-config; fi
if [ -z "$(ls -a "$TMP" | grep '\.muse-')" ]; then pass g2h-no-temp-dir; else fail g2h-no-temp-dir; fi

# An empty directory is taken; one with files in it is refused untouched (exit 2: choose another name).
mkdir "$TMP/empty"
expect_rc g2h-empty-dir 0 convert -q "$SRC" "$TMP/empty"
mkdir "$TMP/busy" && echo keep >"$TMP/busy/keep.txt"
expect_rc g2h-busy-dir 2 convert -q "$SRC" "$TMP/busy"
if [ "$(ls "$TMP/busy")" = keep.txt ]; then pass g2h-busy-untouched; else fail g2h-busy-untouched; fi
# A bare .safetensors name is not a directory: usage error, nothing written.
expect_rc g2h-file-name 2 convert -q "$SRC" "$TMP/x.safetensors"
if [ ! -e "$TMP/x.safetensors" ]; then pass g2h-file-name-nothing; else fail g2h-file-name-nothing; fi
expect_fail_line g2h-no-parent 'nope/hf' convert -q "$SRC" "$TMP/nope/hf"

# Shards with an index, then merged back, the other files following.
expect_rc g2h-shards 0 convert -q "$SRC" "$TMP/sh" --shard-size 8K
n=$(ls "$TMP/sh" | grep -c '^model-0000[0-9]-of-0000[0-9]\.safetensors$')
if [ "$n" -ge 2 ] && [ -f "$TMP/sh/model.safetensors.index.json" ]; then pass g2h-shards-index
else fail g2h-shards-index "$n shards"; fi
expect_rc hf-merge 0 convert -q "$TMP/sh" "$TMP/merged"
if [ -f "$TMP/merged/model.safetensors" ] && [ ! -e "$TMP/merged/model.safetensors.index.json" ] &&
   cmp -s "$TMP/sh/tokenizer.json" "$TMP/merged/tokenizer.json"; then pass hf-merge-layout; else fail hf-merge-layout; fi

# GGUF -> GGUF without --raw: split with gguf-split's names, and back through the first shard.
expect_rc gguf-split 0 convert -q "$SRC" "$TMP/s.gguf" --shard-size 8K
n=$(ls "$TMP" | grep -c '^s-0000[0-9]-of-0000[0-9]\.gguf$')
if [ "$n" -ge 2 ] && [ ! -e "$TMP/s.gguf" ]; then pass gguf-split-names; else fail gguf-split-names "$(ls "$TMP")"; fi
first=$(ls "$TMP"/s-00001-of-0000*.gguf | head -1)
expect_rc gguf-split-to-hf 0 convert -q "$first" "$TMP/hf2"
if cmp -s "$TMP/hf/model.safetensors" "$TMP/hf2/model.safetensors"; then pass gguf-split-same-hf
else fail gguf-split-same-hf; fi
