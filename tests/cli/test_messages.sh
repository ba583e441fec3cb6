#!/usr/bin/env bash
# test_messages.sh: issue 12 item 11, what commands print: progress of imatrix/eval in layers (not bytes), the --raw hint
# only where the command has --raw, inspect of an HF directory (architecture from config.json, integer buffers not
# counted as parameters, columns as wide as the longest name). Fixtures are written with the standard library only.
. "$(dirname "$0")/lib.sh"

PY=${PY:-$PWD/.venv/bin/python}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# L: a 2-layer llama (f32) with a words-on-spaces tokenizer; B: a BERT-like directory muse has no table for, with
# the I64 embeddings.position_ids buffer old BERT checkpoints (all-MiniLM-L6-v2) carry and one long tensor name.
L="$TMP/llama"; B="$TMP/bert"
mkdir -p "$L" "$B"
"$PY" - "$L" "$B" <<'PYEOF' || { fail fixtures "python fixture maker failed"; exit 0; }
import json, math, struct, sys
ld, bd = sys.argv[1], sys.argv[2]

def safetensors(path, tensors):
    hdr, off, data = {}, 0, b""
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)

def f32(shape, seed):
    n = math.prod(shape)
    return ("F32", list(shape), struct.pack(f"<{n}f", *[math.sin(seed * 7.1 + i * 1.3) * 0.5 for i in range(n)]))

E, F, V, NL = 8, 16, 5, 2
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": E, "intermediate_size": F,
           "num_hidden_layers": NL, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": V,
           "rms_norm_eps": 1e-5, "max_position_embeddings": 64, "tie_word_embeddings": True, "bos_token_id": 3},
          open(f"{ld}/config.json", "w"))
shapes = {"model.embed_tokens.weight": (V, E), "model.norm.weight": (E,)}
for l in range(NL):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": (E,), p + "post_attention_layernorm.weight": (E,),
                   p + "self_attn.q_proj.weight": (E, E), p + "self_attn.k_proj.weight": (E, E),
                   p + "self_attn.v_proj.weight": (E, E), p + "self_attn.o_proj.weight": (E, E),
                   p + "mlp.gate_proj.weight": (F, E), p + "mlp.up_proj.weight": (F, E), p + "mlp.down_proj.weight": (E, F)})
safetensors(f"{ld}/model.safetensors", [(n, *f32(s, i)) for i, (n, s) in enumerate(shapes.items())])

json.dump({"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 4, "num_hidden_layers": 1,
           "num_attention_heads": 1, "intermediate_size": 8, "vocab_size": 5}, open(f"{bd}/config.json", "w"))
long = "encoder.layer.0.attention.self.a_module_name_far_longer_than_the_old_48_column_table.weight"
safetensors(f"{bd}/model.safetensors", [("embeddings.position_ids", "I64", [1, 6], struct.pack("<6q", *range(6))),
                                        ("embeddings.word_embeddings.weight", *f32((5, 4), 1)),
                                        (long, *f32((4, 4), 2))])
PYEOF
# The tokenizer both tiny fixtures of tests/cli share (a BPE of five ids with <s> as BOS).
cp "$(dirname "$0")/tiny_bpe_tokenizer.json" "$L/tokenizer.json"

words=$(for i in $(seq 1 20); do printf 'ab a b '; done)
printf '%s' "$words" >"$TMP/c.txt"
# expect_err NAME PATTERN: the last run's stderr matches PATTERN (grep -E).
expect_err() {
	if grep -qE -- "$2" "$TMP/err.txt"; then pass "$1"; else fail "$1" "stderr does not match '$2': $(head -c 400 "$TMP/err.txt")"; fi
}
expect_no_err() {
	if grep -qE -- "$2" "$TMP/err.txt"; then fail "$1" "stderr matches '$2': $(head -c 400 "$TMP/err.txt")"; else pass "$1"; fi
}

# Progress counts layers: "imatrix: 2/2 layers in 00:00 (0.01 s, 150 layers/s)", never "2 B ... B/s".
export MUSE_PROGRESS=plain
expect_rc imatrix_runs 0 imatrix "$L" --calib "$TMP/c.txt" --samples 2 --seq-len 12 -o "$TMP/im.gguf"
expect_err imatrix_progress_layers "^imatrix: 2/2 layers in [0-9:]+ \([0-9.]+ s, [0-9.e+-]+ layers/s\)$"
expect_no_err imatrix_progress_not_bytes "[0-9] B(/s)? "
expect_rc eval_runs 0 eval "$L" --text "$TMP/c.txt" --ctx 16
expect_err eval_progress_layers "^eval: 2/2 layer passes in [0-9:]+ \([0-9.]+ s, [0-9.e+-]+ layer passes/s\)$"
expect_no_err eval_progress_not_bytes "[0-9] B(/s)? "
expect_rc eval_ref_runs 0 eval "$L" --ref "$L" --text "$TMP/c.txt" --ctx 16
expect_err eval_ref_progress_layers "^eval\+ref: 4/4 layer passes in "
# convert still counts bytes
expect_rc convert_runs 0 convert "$L/model.safetensors" "$TMP/l16.safetensors" --outtype f16
expect_err convert_progress_bytes "^convert: [0-9.]+ [kM]?B in [0-9:]+ \([0-9.]+ s, [0-9.]+ [kMG]?B/s\)$"
unset MUSE_PROGRESS

# --raw is convert's: its hint appears there and nowhere else for the same unmapped architecture; quantize --type
# points at what works for it (it takes a GGUF of any architecture), eval and imatrix list what they run.
expect_fail_line convert_raw_hint "architecture 'BertModel' is not supported \(supported: .*\); use --raw to copy tensors" \
	convert "$B" "$TMP/b.gguf"
expect_fail_line quantize_hint "architecture 'BertModel' is not supported \(supported: .*\); llama\.cpp's convert_hf_to_gguf\.py may convert it, and muse quantize --type takes a GGUF of any architecture$" \
	quantize "$B" "$TMP/b.gguf" --type Q8_0
expect_no_err quantize_no_raw_hint "--raw"
for c in "eval $B --text $TMP/c.txt" "imatrix $B --calib $TMP/c.txt -o $TMP/b.imatrix"; do
	name=${c%% *}
	# shellcheck disable=SC2086
	expect_fail_line "${name}_unmapped_arch" "architecture 'BertModel' is not supported \(supported: [A-Za-z0-9, ]+\)$" $c
	expect_no_err "${name}_no_raw_hint" "--raw"
done

# inspect of an HF directory
expect_rc inspect_bert 0 inspect "$B"
expect_out inspect_architecture "^architecture: BertModel \(model_type bert; not in muse's architecture tables\)$"
expect_out inspect_parameters_no_buffer "^parameters: 36 \(36\), not counting 6 elements in 1 integer tensor"
# every row's dtype column starts where the header's does
col=$(awk '/^  name /{print index($0, " dtype ")}' "$TMP/out.txt")
bad=$(awk -v c="$col" '/^  (embeddings|encoder)\./{ if (substr($0, c, 1) != " " || substr($0, c + 1, 1) == " ") n++ } END{print n + 0}' "$TMP/out.txt")
if [ -n "$col" ] && [ "$col" -gt 0 ] && [ "$bad" = 0 ]; then pass inspect_columns_aligned; else fail inspect_columns_aligned "dtype column at $col, $bad rows out of line: $(cat "$TMP/out.txt")"; fi
expect_rc inspect_bert_json 0 inspect --json "$B"
expect_out inspect_json_architecture '"architecture": "BertModel"'
expect_out inspect_json_parameters '"parameters": 36,'
expect_out inspect_json_integer '"integer_elements": 6,'
expect_rc inspect_llama 0 inspect "$L" --no-tensors
expect_out inspect_llama_architecture "^architecture: LlamaForCausalLM \(model_type llama\)$"
