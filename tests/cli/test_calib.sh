#!/usr/bin/env bash
# test_calib.sh: calibration data through `muse imatrix` and `muse eval` on an HF directory: text, JSONL and token-id
# files cut into N samples of L tokens with a seed, the file's SHA-256 recorded; bad data refused in one line, exit 1.
. "$(dirname "$0")/lib.sh"

PY=${PY:-$PWD/.venv/bin/python}
if ! "$PY" -c 'import numpy, safetensors' 2>/dev/null; then
	skip fixtures "no venv with numpy and safetensors to build the model fixture"
	exit 0
fi

# A 1-layer llama in an HF directory (f32 safetensors) with a hand-written tokenizer: words split on spaces,
# "a" "b" "ab" known, anything else the unknown token 4; the post-processor adds <s> (3).
D="$TMP/m"
mkdir -p "$D"
"$PY" - "$D" <<'PYEOF' || { fail fixtures "python fixture maker failed"; exit 0; }
import json, sys
import numpy as np
from safetensors.numpy import save_file
d = sys.argv[1]
rng = np.random.default_rng(0)
E, F, V = 8, 16, 5
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": E, "intermediate_size": F,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": V,
           "rms_norm_eps": 1e-5, "max_position_embeddings": 64, "tie_word_embeddings": True, "bos_token_id": 3},
          open(f"{d}/config.json", "w"))
t = {"model.embed_tokens.weight": (V, E), "model.norm.weight": (E,),
     "model.layers.0.input_layernorm.weight": (E,), "model.layers.0.post_attention_layernorm.weight": (E,),
     "model.layers.0.self_attn.q_proj.weight": (E, E), "model.layers.0.self_attn.k_proj.weight": (E, E),
     "model.layers.0.self_attn.v_proj.weight": (E, E), "model.layers.0.self_attn.o_proj.weight": (E, E),
     "model.layers.0.mlp.gate_proj.weight": (F, E), "model.layers.0.mlp.up_proj.weight": (F, E),
     "model.layers.0.mlp.down_proj.weight": (E, F)}
save_file({k: rng.standard_normal(s).astype(np.float32) for k, s in t.items()}, f"{d}/model.safetensors")
PYEOF
# The tokenizer both tiny fixtures of tests/cli share (a BPE of five ids with <s> as BOS).
cp "$(dirname "$0")/tiny_bpe_tokenizer.json" "$D/tokenizer.json"

# 60 words -> 61 tokens with <s>; the same words as JSONL (two lines) and as ids.
words=$(for i in $(seq 1 20); do printf 'ab a b '; done)
printf '%s' "$words" >"$TMP/c.txt"
printf '{"text": "%s"}\n\n{"text": "x y"}\n' "$words" >"$TMP/c.jsonl"
seq 0 2 | awk '{for (i = 0; i < 20; i++) printf "%d ", i % 5}' >"$TMP/c.ids"
sha() { sha256sum "$1" | cut -d' ' -f1; }
# expect_err NAME PATTERN: the last run's stderr (where the summary goes) matches PATTERN.
expect_err() {
	if grep -qE -- "$2" "$TMP/err.txt"; then pass "$1"; else fail "$1" "stderr does not match '$2': $(head -c 300 "$TMP/err.txt")"; fi
}

# imatrix: N samples x L tokens, the hash and the seed in the summary and in the file
expect_rc imatrix_text 0 imatrix "$D" --calib "$TMP/c.txt" --samples 4 --seq-len 12 --seed 5 -o "$TMP/t.gguf" -q
expect_err imatrix_text_summary "from 4 samples x 12 tokens of .*c\.txt \(sha256 $(sha "$TMP/c.txt"), seed 5\)"
if grep -q "$(sha "$TMP/c.txt")" "$TMP/t.gguf"; then pass imatrix_text_hash_in_file; else fail imatrix_text_hash_in_file; fi
expect_rc imatrix_text_again 0 imatrix "$D" --calib "$TMP/c.txt" --samples 4 --seq-len 12 --seed 5 -o "$TMP/t2.gguf" -q
if cmp -s "$TMP/t.gguf" "$TMP/t2.gguf"; then pass same_seed_same_file; else fail same_seed_same_file; fi
expect_rc imatrix_jsonl 0 imatrix "$D" --calib "$TMP/c.jsonl" --samples 2 --seq-len 16 -o "$TMP/j.gguf" -q
expect_err imatrix_jsonl_summary "from 2 samples x 16 tokens of .*c\.jsonl \(sha256 $(sha "$TMP/c.jsonl"), seed 0\)"
expect_rc imatrix_tokens 0 imatrix "$D" --tokens "$TMP/c.ids" --seq-len 20 -o "$TMP/k.gguf" -q
expect_err imatrix_tokens_all_windows "from 3 samples x 20 tokens"

# eval on text: the protocol (hash, ctx, tokens scored) printed with the numbers
expect_rc eval_text 0 eval "$D" --text "$TMP/c.txt" --ctx 16 -q
expect_out eval_text_protocol "c\.txt \(text, sha256 $(sha "$TMP/c.txt"), 61 tokens\), ctx 16, chunks 3, tokens scored 21"
expect_out eval_text_model "^model: $D$"

# refusals: one line, exit 1, no output file
: >"$TMP/empty.txt"
expect_fail_line empty_text "empty.txt.*0 tokens|empty.txt.*not one whole sample|has [01] tokens" \
	imatrix "$D" --calib "$TMP/empty.txt" --seq-len 8 -o "$TMP/x.gguf"
: >"$TMP/empty.ids"
expect_fail_line empty_ids "has 0 tokens" imatrix "$D" --tokens "$TMP/empty.ids" --seq-len 8 -o "$TMP/x.gguf"
printf '{"text": "a b"}\n{"text": \n' >"$TMP/bad.jsonl"
expect_fail_line bad_json_line "bad.jsonl: byte 16: line 2" imatrix "$D" --calib "$TMP/bad.jsonl" --seq-len 2 -o "$TMP/x.gguf"
printf '{"txt": "a b"}\n' >"$TMP/nofield.jsonl"
expect_fail_line jsonl_no_text "nofield.jsonl: byte 0: line 1: no string field \"text\"" \
	imatrix "$D" --calib "$TMP/nofield.jsonl" --seq-len 2 -o "$TMP/x.gguf"
expect_fail_line too_few_tokens "61 tokens, not one whole sample of 100" \
	imatrix "$D" --calib "$TMP/c.txt" --seq-len 100 -o "$TMP/x.gguf"
# more samples than the data holds is a usage error (exit 2), like any out-of-range option
expect_rc too_many_samples 2 \
	imatrix "$D" --calib "$TMP/c.txt" --seq-len 12 --samples 9 -o "$TMP/x.gguf"
printf '1 2 x 3' >"$TMP/bad.ids"
expect_fail_line bad_id "bad.ids: byte 4: expected a token id" imatrix "$D" --tokens "$TMP/bad.ids" --seq-len 2 -o "$TMP/x.gguf"
printf '1 2 5 3' >"$TMP/big.ids"
expect_fail_line id_outside_vocab "id 5 is outside the vocabulary" imatrix "$D" --tokens "$TMP/big.ids" --seq-len 2 -o "$TMP/x.gguf"
expect_fail_line eval_bad_json "bad.jsonl: byte 16: line 2" eval "$D" --text "$TMP/bad.jsonl" --ctx 8
expect_fail_line eval_too_short "61 tokens, fewer than one context of 100" eval "$D" --text "$TMP/c.txt" --ctx 100
if [ -e "$TMP/x.gguf" ]; then fail no_output_on_refusal; else pass no_output_on_refusal; fi
