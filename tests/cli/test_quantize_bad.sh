#!/usr/bin/env bash
# test_quantize_bad.sh: `muse quantize` refusals: one stderr line, exit 1, no output file (issue 4, item 5).
. "$(dirname "$0")/lib.sh"

PY=${PY:-$PWD/.venv/bin/python}
if ! "$PY" -c 'import gguf, numpy' 2>/dev/null; then
	skip fixtures "no venv with gguf-py to build the GGUF fixtures"
	exit 0
fi

# A 2-layer llama-style model with 96-wide rows (whole 32-blocks, not whole 256-blocks), its imatrix, and bad ones.
"$PY" - "$TMP" <<'PYEOF' || { fail fixtures "python fixture maker failed"; exit 0; }
import struct, sys
import numpy as np, gguf
d = sys.argv[1]
rng = np.random.default_rng(0)
w = gguf.GGUFWriter(f"{d}/m.gguf", "llama")
w.add_block_count(2); w.add_head_count(4); w.add_head_count_kv(2); w.add_embedding_length(96)
w.add_tensor("token_embd.weight", rng.standard_normal((50, 96)).astype(np.float32))
for l in range(2):
    for n, shape in (("attn_q", (96, 96)), ("attn_k", (48, 96)), ("attn_v", (48, 96)), ("attn_output", (96, 96)),
                     ("ffn_gate", (64, 96)), ("ffn_up", (64, 96)), ("ffn_down", (96, 64))):
        w.add_tensor(f"blk.{l}.{n}.weight", rng.standard_normal(shape).astype(np.float32))
    w.add_tensor(f"blk.{l}.attn_norm.weight", np.ones(96, np.float32))
w.add_tensor("output_norm.weight", np.ones(96, np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
# one 256-wide layer: the 256-block types apply without fallback
w = gguf.GGUFWriter(f"{d}/m256.gguf", "llama")
w.add_block_count(1); w.add_head_count(4); w.add_head_count_kv(4); w.add_embedding_length(256)
for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
    w.add_tensor(f"blk.0.{n}.weight", rng.standard_normal((256, 256)).astype(np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

def imatrix(path, entries):
    w = gguf.GGUFWriter(path, arch=None)
    w.add_string("general.type", "imatrix"); w.add_array("imatrix.datasets", ["t.txt"])
    w.add_uint32("imatrix.chunk_count", 1); w.add_uint32("imatrix.chunk_size", 512)
    for n, k in entries:
        w.add_tensor(n + ".in_sum2", np.ones(k, np.float32)); w.add_tensor(n + ".counts", np.ones(1, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
imatrix(f"{d}/other.gguf", [("blk.7.ffn_up_exps.weight", 96), ("model.layers.0.mlp.weight", 96)])
imatrix(f"{d}/short.gguf", [("blk.0.attn_q.weight", 95)])
# legacy .dat whose one entry claims more values than the file holds
open(f"{d}/cut.dat", "wb").write(struct.pack("<ii", 1, 19) + b"blk.0.attn_q.weight" + struct.pack("<ii", 1, 96) + b"\0" * 40)
# NaN in the sums
imatrix(f"{d}/nan.gguf", [("blk.0.attn_q.weight", 96)])
raw = bytearray(open(f"{d}/nan.gguf", "rb").read()); raw[-40:-36] = struct.pack("<f", float("nan"))
open(f"{d}/nan.gguf", "wb").write(raw)
PYEOF

M="$TMP/m.gguf"
O="$TMP/out.gguf"
no_output() {
	if [ -e "$O" ] || ls "$TMP"/out.gguf.* >/dev/null 2>&1; then fail "$1-no-output" "output left behind"; else pass "$1-no-output"; fi
	rm -f "$O" "$TMP"/out.gguf.*
}

expect_fail_line unknown-type "unknown --type 'Q9_X'" quantize "$M" "$O" --type Q9_X
no_output unknown-type
expect_fail_line imatrix-other-tensors "none of its 2 entries matches a tensor" quantize "$M" "$O" --type Q8_0 --imatrix "$TMP/other.gguf"
no_output imatrix-other-tensors
expect_fail_line imatrix-wrong-length "entry 'blk\.0\.attn_q\.weight' holds 95 values but the tensor needs 96" \
	quantize "$M" "$O" --type Q8_0 --imatrix "$TMP/short.gguf"
no_output imatrix-wrong-length
expect_fail_line imatrix-truncated "cut\.dat: byte 35: entry 'blk\.0\.attn_q\.weight': 96 values need 384 bytes" \
	quantize "$M" "$O" --type Q8_0 --imatrix "$TMP/cut.dat"
no_output imatrix-truncated
expect_fail_line imatrix-nan "nan\.gguf: byte [0-9]+: tensor 'blk\.0\.attn_q\.weight\.in_sum2': value [0-9]+ is nan" \
	quantize "$M" "$O" --type Q8_0 --imatrix "$TMP/nan.gguf"
no_output imatrix-nan
expect_fail_line imatrix-is-a-model "not an importance matrix" quantize "$M" "$O" --type Q8_0 --imatrix "$M"
no_output imatrix-is-a-model
# issue 12 item 11: the type once ("IQ2_XXS IQ2_XXS needs" before); a mix names the type it chose and the --type
expect_fail_line iq2-without-imatrix "tensor 'blk\.0\.[a-z_]+\.weight': IQ2_XXS needs an importance matrix" \
	quantize "$TMP/m256.gguf" "$O" --type IQ2_XXS
no_output iq2-without-imatrix
expect_fail_line q2ks-without-imatrix "Q2_K \(from --type Q2_K_S\) needs an importance matrix" quantize "$TMP/m256.gguf" "$O" --type Q2_K_S
no_output q2ks-without-imatrix
expect_fail_line pure-partial-blocks "tensor '[a-z_.0-9]+': rows of (96|64) elements are not whole 256-element Q4_K blocks" \
	quantize "$M" "$O" --type Q4_K_M --pure
no_output pure-partial-blocks
expect_fail_line same-file "input and output are the same file" quantize "$M" "$M" --type Q8_0
"$MUSE" quantize "$M" "$TMP/q8.gguf" --type Q8_0 -q 2>/dev/null
expect_fail_line requantize "already Q8_0; requantizing to Q4_0" quantize "$TMP/q8.gguf" "$O" --type Q4_0
no_output requantize
expect_rc missing-type 2 quantize "$M" "$O"
expect_rc bad-tensor-type 2 quantize "$M" "$O" --type Q8_0 --tensor-type "attn_q"
expect_rc bad-regex 2 quantize "$M" "$O" --type Q8_0 --tensor-type "attn_(q=q8_0"
no_output bad-regex
expect_rc override-no-type 2 quantize "$M" "$O" --type Q8_0 --override-kv "general.name=oops"
no_output override-no-type
expect_rc override-bad-bool 2 quantize "$M" "$O" --type Q8_0 --override-kv "a.b=bool:yes"
no_output override-bad-bool
expect_rc override-no-eq 2 quantize "$M" "$O" --type Q8_0 --override-kv "general.name"
no_output override-no-eq
expect_rc prune-bad-id 2 quantize "$M" "$O" --type Q8_0 --prune-layers "1,x"
no_output prune-bad-id
expect_rc prune-negative 2 quantize "$M" "$O" --type Q8_0 --prune-layers "-1"
no_output prune-negative
printf 'attn_v=q8_0\nffn_down\n' >"$TMP/types.txt"
expect_rc type-file-bad-entry 2 quantize "$M" "$O" --type Q8_0 --tensor-type-file "$TMP/types.txt"
no_output type-file-bad-entry
expect_fail_line type-file-missing "nope\.txt: cannot open" quantize "$M" "$O" --type Q8_0 --tensor-type-file "$TMP/nope.txt"
no_output type-file-missing
expect_rc include-and-exclude 2 quantize "$M" "$O" --type Q8_0 --include-weights attn --exclude-weights ffn
no_output include-and-exclude

# the good path under ASan: without --pure the 96-wide rows fall back as in llama.cpp, and the file reads back
expect_rc fallback-ok 0 quantize "$M" "$O" --type Q4_K_M -q
expect_rc fallback-inspect 0 inspect "$O"
expect_out fallback-types 'blk\.0\.attn_q\.weight +Q5_0'
rm -f "$O"

# a full disk fails before any tensor is quantized, naming the output and the bytes it needs, and leaves nothing
# (a 64 KiB tmpfs: needs root, as CI runs; elsewhere skipped)
mkdir -p "$TMP/small"
if mount -t tmpfs -o size=64k tmpfs "$TMP/small" 2>/dev/null; then
	expect_fail_line disk-full "small/q\.gguf: cannot reserve [0-9]+ bytes: No space left on device" \
		quantize "$M" "$TMP/small/q.gguf" --type Q8_0
	if [ -z "$(ls -A "$TMP/small")" ]; then pass disk-full-nothing-left; else fail disk-full-nothing-left "$(ls -A "$TMP/small")"; fi
	umount "$TMP/small"
else
	skip disk-full "cannot mount a small tmpfs here (not root)"
fi
