#!/usr/bin/env bash
# test_gguf.sh: `muse inspect` on small GGUF files made with printf: text/JSON output and one-line errors.
. "$(dirname "$0")/lib.sh"

# header only: GGUF v3, 0 tensors, 0 KVs
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' >"$TMP/empty.gguf"
expect_rc inspect-empty 0 inspect "$TMP/empty.gguf"
expect_out inspect-empty-format '^format: +gguf v3 \(alignment 32\)'
expect_out inspect-empty-tensors '^tensors: +0'
expect_rc inspect-empty-json 0 inspect --json "$TMP/empty.gguf"
expect_out inspect-empty-json-format '"format": "gguf"'

# one u32 KV and one F32 tensor of 2 elements
{
	printf 'GGUF\003\000\000\000\001\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000'
	printf '\003\000\000\000\000\000\000\000a.b\004\000\000\000\052\000\000\000'
	printf '\001\000\000\000\000\000\000\000w\002\000\000\000\002\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000'
	printf '\000\000\000\000\000\000\000\000\000\000\000\000' # type F32, offset 0: 84 header bytes
	printf '\000\000\000\000\000\000\000\000\000\000\000\000' # padding to 96
	printf '\000\000\200\077\000\000\000\100'
} >"$TMP/one.gguf"
expect_rc inspect-one 0 inspect "$TMP/one.gguf"
expect_out inspect-one-kv '^  a\.b +u32 +42'
expect_out inspect-one-tensor '^  w +F32 +\[1, 2\] +8 +96'
expect_rc inspect-one-size 0 inspect --json "$TMP/one.gguf"
expect_out inspect-one-bytes '"bytes": 104'

printf 'GGUF\001\000\000\000\000\000\000\000\000\000\000\000' >"$TMP/v1.gguf"
expect_fail_line inspect-v1 'v1\.gguf: byte 4: GGUF v1 is not supported' inspect "$TMP/v1.gguf"
printf 'GGUF\000\000\000\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' >"$TMP/be.gguf"
expect_fail_line inspect-big-endian 'be\.gguf: byte 4: .*big-endian GGUF files are not supported' inspect "$TMP/be.gguf"
head -c 95 "$TMP/one.gguf" >"$TMP/cut.gguf"
expect_fail_line inspect-truncated "cut\.gguf: byte 84: file ends inside the padding before the data section" inspect "$TMP/cut.gguf"
