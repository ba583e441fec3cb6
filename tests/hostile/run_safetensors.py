"""run_safetensors.py: malformed and edge-case safetensors inputs (HOSTILE_INPUTS.md 4.1, S1-S44) against `muse inspect`.

Each case is generated in a temp dir, never committed. A reject case must exit 1 with exactly one stderr line
"muse: error: ..." naming the file and a byte offset (the exact offset where the case states one), no sanitizer
report, and nothing written. An accept case must exit 0. Prints one PASS/FAIL line per case.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from hostile_check import listing, verdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")

F32_1 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


def st(header, data=b"", n=None):
    """A safetensors file: u64 length (n overrides it), header (str/bytes/dict), data."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def raw(s):
    """Header text with a tensor entry spliced in verbatim (for values json.dumps cannot produce)."""
    return s


def many_tensors(n):
    parts, off = [], 0
    for i in range(n):
        parts.append('"t%d":{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}' % (i, off, off + 4))
        off += 4
    return st("{" + ",".join(parts) + "}", b"\0" * off)


def shard_set(d, index, shards):
    """Writes an index (dict or str) and shards {file: {name: (dtype, shape, nbytes)}}; returns the index path."""
    for fname, ts in shards.items():
        hdr, off = {}, 0
        for name, (dt, shape, nb) in ts.items():
            hdr[name] = t(dt, shape, off, off + nb)
            off += nb
        with open(os.path.join(d, fname), "wb") as f:
            f.write(st(hdr, b"\x11" * off))
    p = os.path.join(d, "model.safetensors.index.json")
    with open(p, "w") as f:
        f.write(index if isinstance(index, str) else json.dumps(index, indent=2))
    return p


A = ("F32", [2], 8)
B = ("F16", [3], 6)
TWO_SHARDS = {"model-00001-of-00002.safetensors": {"a": A}, "model-00002-of-00002.safetensors": {"b": B}}
GOOD_MAP = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}

# (id, kind, payload, expected byte offset or None, message regex)
# payload: bytes (written as case.safetensors) or a callable(dir) -> path to inspect.
CASES = [
    ("S1a_empty_file", "reject", b"", 0, "too small"),
    ("S1b_7_bytes", "reject", b"\x10\0\0\0\0\0\0", 0, "too small"),
    ("S2_zero_header_len", "reject", b"\0" * 8, 8, "empty"),
    ("S3_len_u64_max", "reject", st("{}", n=2**64 - 1), 0, "above the 100000000-byte cap"),
    ("S4_len_over_cap", "reject", st("{}", n=100_000_001), 0, "above the 100000000-byte cap"),
    ("S5_len_past_eof", "reject", st("{}", n=3), 0, "runs past the end of the file"),
    ("S6_len_wraps_32bit", "reject", st("{}", n=2**32 - 4), 0, "cap"),
    ("S7_invalid_utf8", "reject", st(b'{"a\xc3\x28":{}}'), 11, "UTF-8"),
    ("S8_truncated_json", "reject", st('{"a":{"dtype":"F32"'), None, "not valid JSON"),
    ("S9a_top_level_array", "reject", st("[]"), 8, "is an array, expected a JSON object"),
    ("S9b_top_level_number", "reject", st("42"), 8, "is an integer, expected a JSON object"),
    ("S10a_leading_whitespace", "accept", st(' \n\t{"a":' + json.dumps(F32_1) + "}", b"\0" * 4), None, ""),
    ("S10b_leading_bom", "reject", st(b'\xef\xbb\xbf{"a":' + json.dumps(F32_1).encode() + b"}", b"\0" * 4), None,
     "not valid JSON"),
    ("S11_nul_padding", "reject", st('{"a":' + json.dumps(F32_1) + "}\0\0\0", b"\0" * 4), None, "not valid JSON"),
    ("S12_duplicate_key_same", "reject",
     st('{"a":' + json.dumps(F32_1) + ',"a":' + json.dumps(F32_1) + "}", b"\0" * 4), None, "duplicate"),
    ("S13_duplicate_key_differs", "reject",
     st('{"a":' + json.dumps(F32_1) + ',"a":' + json.dumps(t("F32", [1], 4, 8)) + "}", b"\0" * 8), None,
     "duplicate"),
    ("S14_duplicate_metadata", "reject",
     st('{"__metadata__":{"a":"b"},"__metadata__":{"c":"d"}}'), None, "duplicate"),
    ("S15a_metadata_number", "reject", st('{"__metadata__":{"a":1}}'), 9, "__metadata__ key 'a' is an integer"),
    ("S15b_metadata_null_value", "reject", st('{"__metadata__":{"a":null}}'), 9, "is null, expected a string"),
    ("S15c_metadata_object_value", "reject", st('{"__metadata__":{"a":{}}}'), 9, "is an object"),
    ("S16_tensor_named_metadata", "reject", st({"__metadata__": F32_1}, b"\0" * 4), 9,
     "a tensor may not use the name __metadata__"),
    ("S17a_unknown_dtype", "reject", st({"a": t("F17", [1], 0, 4)}, b"\0" * 4), 9, "unknown dtype 'F17'"),
    ("S17b_lowercase_dtype", "reject", st({"a": t("f16", [1], 0, 2)}, b"\0" * 2), 9, "unknown dtype 'f16'"),
    ("S18_negative_dim", "reject", st({"a": t("F32", [-1], 0, 4)}, b"\0" * 4), 9, r"shape\[0\] is negative"),
    ("S19a_real_dim", "reject", st('{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', b"\0" * 4), 9,
     "real number"),
    ("S19b_exponent_dim", "reject", st('{"a":{"dtype":"F32","shape":[1e3],"data_offsets":[0,4000]}}', b"\0" * 4000),
     9, "real number"),
    ("S19c_string_dim", "reject", st('{"a":{"dtype":"F32","shape":["4"],"data_offsets":[0,16]}}', b"\0" * 16), 9,
     "not an integer"),
    ("S20_dim_2pow64", "reject",
     st('{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}', b"\0" * 4), 9,
     r"shape\[0\] does not fit in 64 bits"),
    ("S21_shape_product_overflow", "reject", st({"a": t("F32", [2**32, 2**32, 2], 0, 4)}, b"\0" * 4), 9,
     "overflows"),
    ("S22_bytes_overflow", "reject", st({"a": t("F32", [2**62], 0, 4)}, b"\0" * 4), 9, "overflows"),
    ("S23_rank_10000", "reject", st({"a": t("F32", [1] * 10000, 0, 4)}, b"\0" * 4), 9, "rank 10000 is above"),
    ("S24_end_before_begin", "reject", st({"a": t("F32", [1], 4, 3)}, b"\0" * 4), 9,
     r"data_offsets \[4, 3\]: end before begin"),
    ("S25a_offsets_len1", "reject", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}', b"\0" * 4), 9,
     "array of 2 integers"),
    ("S25b_offsets_len3", "reject", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}}', b"\0" * 4), 9,
     "array of 2 integers"),
    ("S25c_offsets_not_array", "reject", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}}', b"\0" * 4),
     9, "array of 2 integers"),
    ("S26_gap_at_start", "reject", st({"a": t("F32", [1], 8, 12)}, b"\0" * 12), 9, "gap of 8 bytes at the start"),
    ("S27_gap_between", "reject", st({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 5, 9)}, b"\0" * 9), None,
     "gap of 1 bytes after tensor 'a'"),
    ("S28_overlap_1_byte", "reject", st({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 3, 7)}, b"\0" * 7), None,
     "overlap tensor 'a' by 1 bytes"),
    ("S29_tied_ranges", "reject", st({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 0, 4)}, b"\0" * 4), None,
     "overlap tensor 'a' by 4 bytes"),
    ("S30_size_off_by_one", "reject", st({"a": t("F32", [2], 0, 7)}, b"\0" * 7), 9, "hold 7 bytes but F32"),
    ("S31_f16_odd_bytes", "reject", st({"a": t("F16", [2], 0, 3)}, b"\0" * 3), 9, "hold 3 bytes but F16"),
    ("S32_f4_odd_count", "reject", st({"a": t("F4", [3], 0, 2)}, b"\0" * 2), 9, "not a whole number of bytes"),
    ("S33_f6_3_elements", "reject", st({"a": t("F6_E2M3", [3], 0, 3)}, b"\0" * 3), 9,
     "not a whole number of bytes"),
    ("S34_trailing_zip", "reject", st({"a": F32_1}, b"\0" * 4 + b"PK\x05\x06" + b"\0" * 18), None,
     "22 bytes after the last tensor"),
    ("S35_truncated_data", "reject", st({"a": t("F32", [4], 0, 16)}, b"\0" * 10), 9, "run past the end"),
    ("S36a_offsets_near_2pow63", "reject",
     st({"a": t("U8", [7], 2**63 - 8, 2**63 - 1)}, b"\0" * 7), 9, "run past the end"),
    ("S36b_offsets_u64_max", "reject",
     st('{"a":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}}'), 9,
     "run past the end"),
    ("S36c_offsets_2pow64", "reject",
     st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551616,0]}}', b"\0"), 9,
     r"data_offsets\[0\] does not fit in 64 bits"),
    ("S37_100k_tiny_tensors", "accept", lambda d: write(d, many_tensors(100_000)), None, ""),
    ("S38a_deep_nesting_metadata", "reject", st('{"__metadata__":' + "[" * 100_000 + "]" * 100_000 + "}"), 9,
     "__metadata__ is an array"),
    ("S38b_deep_nesting_metadata_value", "reject", st('{"__metadata__":{"k":' + '{"k":' * 100_000 + "1" + "}" * 100_001 + "}"),
     9, "__metadata__ key 'k' is an object"),
    ("S38c_deep_nesting_unknown_field", "reject",
     st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":' + "[" * 100_000 + "]" * 100_000 + "}}",
        b"\0" * 4), None, "nesting depth above 128"),
    ("S39_lone_surrogate_key", "reject", st('{"\\ud800":' + json.dumps(F32_1) + "}", b"\0" * 4), None,
     "invalid Unicode"),
    ("S40a_nul_in_name", "reject", st('{"a\\u0000b":' + json.dumps(F32_1) + "}", b"\0" * 4), None, "NUL byte"),
    ("S40b_path_separators_in_name", "accept", st({"../../etc/passwd": F32_1, "a\\b": t("F32", [1], 4, 8)},
                                                  b"\0" * 8), None, ""),
    ("S41_scalar", "accept", st({"a": t("F32", [], 0, 4)}, b"\0" * 4), None, ""),
    ("S42_zero_size", "accept", st({"a": t("F32", [0, 4096], 0, 0)}), None, ""),
    ("S43_unaligned_f32", "accept", st({"u": t("U8", [3], 0, 3), "f": t("F32", [2], 3, 11)}, b"\x01" * 11), None,
     ""),
    # S44: sharded index files
    ("S44a_index_parent_dir_shard", "reject",
     lambda d: shard_set(d, {"weight_map": {"a": "../x.safetensors"}}, {}), None,
     r"shard '\.\./x\.safetensors' is not a plain file name"),
    ("S44b_index_absolute_shard", "reject",
     lambda d: shard_set(d, {"weight_map": {"a": "/etc/passwd"}}, {}), None, "not a plain file name"),
    ("S44c_index_tensor_in_two_shards", "reject",
     lambda d: shard_set(d, {"weight_map": GOOD_MAP},
                         {"model-00001-of-00002.safetensors": {"a": A},
                          "model-00002-of-00002.safetensors": {"b": B, "a": A}}), None,
     "tensor 'a' is also in shard 'model-00001-of-00002.safetensors'"),
    ("S44d_index_missing_shard", "reject",
     lambda d: shard_set(d, {"weight_map": GOOD_MAP}, {"model-00001-of-00002.safetensors": {"a": A}}), None,
     "shard 'model-00002-of-00002.safetensors' named in weight_map: .*cannot open"),
    ("S44e_index_tensor_not_in_index", "reject",
     lambda d: shard_set(d, {"weight_map": GOOD_MAP},
                         {"model-00001-of-00002.safetensors": {"a": A, "c": B},
                          "model-00002-of-00002.safetensors": {"b": B}}), None,
     "tensor 'c' is not listed in the index weight_map"),
    ("S44f_index_tensor_missing_from_shard", "reject",
     lambda d: shard_set(d, {"weight_map": dict(GOOD_MAP, c="model-00002-of-00002.safetensors")}, TWO_SHARDS),
     None, "tensor 'c' is missing from shard 'model-00002-of-00002.safetensors'"),
    ("S44g_index_wrong_shard", "reject",
     lambda d: shard_set(d, {"weight_map": {"a": "model-00002-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors",
                                            "x": "model-00001-of-00002.safetensors"}}, TWO_SHARDS), None,
     "tensor 'a' is listed in the index under shard 'model-00002-of-00002.safetensors'"),
    ("S44h_index_duplicate_tensor_key", "reject",
     lambda d: shard_set(d, '{"weight_map":{"a":"model-00001-of-00002.safetensors",'
                            '"a":"model-00002-of-00002.safetensors"}}', TWO_SHARDS), None, "duplicate"),
    ("S44i_index_no_weight_map", "reject", lambda d: shard_set(d, {"metadata": {"total_size": 1}}, {}), 0,
     "no \"weight_map\""),
    ("S44j_index_bad_shard_header", "reject",
     lambda d: (shard_set(d, {"weight_map": GOOD_MAP}, TWO_SHARDS),
                write(d, st({"b": t("F16", [3], 0, 7)}, b"\0" * 7), "model-00002-of-00002.safetensors"),
                os.path.join(d, "model.safetensors.index.json"))[-1], 9, "model-00002-of-00002.safetensors: byte 9"),
    ("S44l_index_duplicate_in_one_shard", "reject",
     lambda d: (shard_set(d, {"weight_map": GOOD_MAP}, TWO_SHARDS),
                write(d, st('{"a":' + json.dumps(t("F32", [2], 0, 8)) + ',"a":' + json.dumps(t("F32", [2], 8, 16)) + "}",
                            b"\0" * 16), "model-00001-of-00002.safetensors"),
                os.path.join(d, "model.safetensors.index.json"))[-1], None, "duplicate tensor 'a'"),
    ("S44m_index_trailing_garbage", "reject",
     lambda d: shard_set(d, json.dumps({"weight_map": GOOD_MAP}) + "\0", TWO_SHARDS), None,
     "index is not valid JSON: byte 0x00 after the top-level object"),
    ("S44k_index_valid", "accept", lambda d: shard_set(d, {"metadata": {"total_size": 999}, "weight_map": GOOD_MAP},
                                                       TWO_SHARDS), None, ""),
    # beyond the catalogue: schema corners the reference also has
    ("X1_missing_shape", "reject", st('{"a":{"dtype":"F32","data_offsets":[0,4]}}', b"\0" * 4), 9,
     'missing "shape"'),
    ("X2_extra_field_ignored", "accept", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[{}]}}',
                                            b"\0" * 4), None, ""),
    ("X3_metadata_null", "accept", st('{"__metadata__":null,"a":' + json.dumps(F32_1) + "}", b"\0" * 4), None, ""),
    ("X4_empty_object_trailing_data", "reject", st("{}", b"x"), 10, "1 bytes after the last tensor"),
    # header lengths whose low byte is '\n', ' ' or '{' must not be taken for JSON index files
    ("X6_header_len_0x0a", "reject", st('{"a":1}   '), 9, "tensor 'a': is an integer"),
    ("X7_header_len_0x20", "accept",
     st('{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}'.ljust(0x120), b"abc"), None, ""),
    ("X8_header_len_0x7b", "accept", st("{}".ljust(0x7b)), None, ""),
    ("X5_tensor_not_object", "reject", st('{"a":"x"}'), 9, "is a string, expected an object"),
]


def write(d, data, name="case.safetensors"):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def run_case(base, cid, kind, payload, offset, pattern):
    d = os.path.join(base, cid)
    os.mkdir(d)
    path = payload(d) if callable(payload) else write(d, payload)
    before = listing(d)
    start = time.time()
    p = subprocess.run([MUSE, "inspect", path], cwd=d, capture_output=True, timeout=300)
    took = time.time() - start
    why = verdict(p, kind, path, before, d, offset, pattern, name_ok="safetensors")
    if why:
        print(f"FAIL: hostile/safetensors/{cid}: {why}")
        return False
    print(f"PASS: hostile/safetensors/{cid}" + (f" ({took:.1f}s)" if took > 1 else ""))
    return True


def main():
    if not os.path.exists(MUSE):
        print(f"SKIP: hostile/safetensors: {MUSE} not built")
        return 0
    base = tempfile.mkdtemp(prefix="st-hostile.", dir=os.environ.get("MUSE_TEST_TMP") or None)
    try:
        ok = all([run_case(base, *c) for c in CASES])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
