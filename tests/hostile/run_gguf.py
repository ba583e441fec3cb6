#!/usr/bin/env python3
"""run_gguf.py: malformed GGUF files (HOSTILE_INPUTS.md §4.2, G1-G48, plus extras) fed to `muse inspect`.

Every file is generated here into a temp dir (nothing is committed). A reject case must exit 1 with exactly
one stderr line "muse: error: ..." naming the file and matching the case's pattern (which pins the byte
offset where one applies); an accept case must exit 0. Every case must stay under a fixed memory budget
whatever counts the file declares, finish within a time limit, show no sanitizer report, and write nothing.
One PASS/FAIL line per case.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
RSS_BUDGET_KB = 128 * 1024   # ASan overhead included (cases peak at ~40-60 MB); declared counts must not move this
TIME_LIMIT = 30

# ---- GGUF byte builders ----
T = dict(u8=0, i8=1, u16=2, i16=3, u32=4, i32=5, f32=6, bool=7, str=8, arr=9, u64=10, i64=11, f64=12)
FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
F32, F16, Q4_0, Q8_0, I8 = 0, 1, 2, 8, 24
M64 = (1 << 64) - 1


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & M64)


def gstr(b):
    b = b.encode() if isinstance(b, str) else b
    return u64(len(b)) + b


def val(t, v):
    return gstr(v) if t == 8 else struct.pack(FMT[t], v)


def kv(key, t, v):
    t = T[t] if isinstance(t, str) else t
    return gstr(key) + u32(t) + val(t, v)


def kv_arr(key, et, vals):
    et = T[et] if isinstance(et, str) else et
    return gstr(key) + u32(9) + u32(et) + u64(len(vals)) + b"".join(val(et, x) for x in vals)


def ti(name, ne, typ, off):
    return gstr(name) + u32(len(ne)) + b"".join(u64(d) for d in ne) + u32(typ) + u64(off)


def head(n_tensors, n_kv, version=3, magic=b"GGUF"):
    return magic + u32(version) + u64(n_tensors) + u64(n_kv)


def pad(b, align=32):
    return b + b"\0" * ((-len(b)) % align)


ARCH = kv("general.architecture", "str", "llama")


def layout(specs, align=32):
    """specs: (name, ne, type, nbytes) -> (tensor infos, data with padding), offsets as ggml requires."""
    tis, data, off = [], b"", 0
    for name, ne, typ, nb in specs:
        tis.append(ti(name, ne, typ, off))
        blob = bytes((i * 7 + len(name)) & 0xFF for i in range(nb))
        data += pad(blob, align)
        off += len(pad(blob, align))
    return tis, data


def gguf(kvs=(ARCH,), specs=(("w", [4], F32, 16),), align=32, version=3, extra=b""):
    tis, data = layout(specs, align)
    return pad(head(len(tis), len(kvs), version) + b"".join(kvs) + b"".join(tis), align) + data + extra


def with_tis(kvs, tis, data=b"", align=32, n_tensors=None):
    """Raw tensor infos (for hand-made offsets)."""
    h = head(len(tis) if n_tensors is None else n_tensors, len(kvs))
    return pad(h + b"".join(kvs) + b"".join(tis), align) + data


def ti_start(kvs=(ARCH,)):
    return 24 + sum(len(k) for k in kvs)


CASES = []  # (id, description, maker(dir)->path, expect "reject"/"accept", pattern or None, counts_as_malformed)


def case(cid, desc, content, expect="reject", pattern=None, malformed=None):
    """content: bytes, or a function(dir) -> path for multi-file cases."""
    CASES.append((cid, desc, content, expect, pattern, expect == "reject" if malformed is None else malformed))


# ---- G1-G6: magic and version ----
case("G1a", "file shorter than the magic", b"GGU", pattern=None)
case("G1b", "magic FUGG (byte-swapped)", b"FUGG" + gguf()[4:], pattern=r"byte 0: .*big-endian")
case("G1c", "legacy GGML magic", b"lmgg" + bytes(60), pattern=r"byte 0: legacy GGML")
case("G1d", "legacy GGJT magic", b"tjgg" + bytes(60), pattern=r"byte 0: legacy GGML")
case("G2", "version 0", head(0, 0, version=0), pattern=r"byte 4: invalid GGUF version 0")
case("G3", "version 1", head(0, 0, version=1), pattern=r"byte 4: GGUF v1 is not supported")
case("G4a", "version 4", gguf(version=4), pattern=r"byte 4: GGUF version 4 is newer")
case("G4b", "version 0xFFFF", gguf(version=0xFFFF), pattern=r"byte 4: GGUF version 65535 is newer")
case("G5", "version 0x03000000 (big-endian)", gguf(version=0x03000000), pattern=r"byte 4: .*byte-swapped.*big-endian")
case("G6a", "truncated right after the version", b"GGUF" + u32(3), pattern=r"byte 8: truncated header: tensor count")
case("G6b", "truncated inside n_tensors", b"GGUF" + u32(3) + b"\0\0\0", pattern=r"byte 8: truncated header: tensor count")
case("G6c", "truncated inside n_kv", b"GGUF" + u32(3) + u64(0) + b"\1", pattern=r"byte 16: truncated header: metadata count")

# ---- G7-G11: counts ----
case("G7", "n_tensors = 2^63", head(1 << 63, 0) + bytes(64), pattern=r"byte 8: tensor count -9223372036854775808 is negative")
case("G8", "n_tensors = 2^62", head(1 << 62, 0) + bytes(64), pattern=r"byte 8: tensor count 4611686018427387904 \(at least 25 bytes of tensor info each\) exceeds")
case("G9", "n_tensors = 10^9 in a 1 KB file", head(10**9, 1) + ARCH + bytes(1000), pattern=r"byte 8: tensor count 1000000000 \(at least 25 bytes of tensor info each\) exceeds the 1045 bytes left")
case("G10", "n_kv = 2^64-1", head(0, M64) + bytes(64), pattern=r"byte 16: metadata count -1 is negative")
case("G11", "n_kv = 10^6, file ends after 3 KVs", head(0, 10**6) + ARCH + kv("a", "u32", 1) + kv("b", "u8", 2),
     pattern=r"byte 16: metadata count 1000000 \(at least 14 bytes each\) exceeds")
case("G11b", "n_kv = 5 but the file holds 3 KVs (+ slack)",
     head(0, 5) + ARCH + kv("a", "u32", 1) + kv("b", "u8", 2) + bytes(30), pattern=r"byte 100: key 3 is empty")  # the slack bytes read as a zero-length key

# ---- G12-G17: keys ----
case("G12", "key length 2^64-1", head(0, 1) + u64(M64) + bytes(64), pattern=r"byte 24: key 0: key length 18446744073709551615 exceeds the cap")
case("G13", "key length 2^31 with 100 bytes left", head(0, 1) + u64(1 << 31) + bytes(100), pattern=r"byte 24: key 0: key length 2147483648 exceeds the cap")
case("G13b", "key length 1000 with 100 bytes left", head(0, 1) + u64(1000) + bytes(100), pattern=r"byte 24: key 0: key length 1000 exceeds the 100 bytes left")
case("G14", "empty key", head(0, 1) + kv("", "u32", 1), pattern=r"byte 24: key 0 is empty")
case("G15a", "key with a control character", head(0, 1) + kv("general.\nname", "u32", 1), pattern=r"byte 40: key 'general.\\x0aname' contains control byte 0x0a")
case("G15b", "key with invalid UTF-8", head(0, 1) + kv(b"general.\xc3\x28", "u32", 1), pattern=r"byte 32: key .* is not valid UTF-8")
case("G15c", "key with NUL inside", head(0, 1) + kv(b"a\0b", "u32", 1), pattern=r"byte 33: key .*contains control byte 0x00")
case("G15d", "uppercase / non-ASCII UTF-8 key (policy: accepted)",
     gguf(kvs=(ARCH, kv("General.Ünïcode_KEY", "u32", 1))), expect="accept")
case("G16", "key of 65536 bytes", head(0, 1) + kv("k" * 65536, "u8", 1), pattern=r"byte 24: key 0: key length 65536 exceeds the cap of 65535")
case("G17", "duplicate key", head(0, 2) + kv("a.b", "u32", 1) + kv("a.b", "u8", 2), pattern=r"byte 43: key 'a.b': duplicate key \(also key 0\)")

# ---- G18-G24: values ----
case("G18a", "value type 13", head(0, 1) + gstr("k") + u32(13) + bytes(16), pattern=r"byte 33: key 'k': invalid value type 13")
case("G18b", "value type 0xFFFFFFFF", head(0, 1) + gstr("k") + u32(0xFFFFFFFF) + bytes(16), pattern=r"byte 33: key 'k': invalid value type 4294967295")
case("G18c", "array element type 13", head(0, 1) + gstr("k") + u32(9) + u32(13) + u64(1) + bytes(16), pattern=r"byte 37: key 'k': invalid array element type 13")
case("G19a", "array of arrays", head(0, 1) + gstr("k") + u32(9) + u32(9) + u64(1) + u32(0) + u64(0), pattern=r"byte 37: key 'k': nested arrays")
case("G19b", "10^5-deep array nesting", head(0, 1) + gstr("k") + u32(9) + (u32(9) + u64(1)) * 100000, pattern=r"byte 37: key 'k': nested arrays")
case("G20", "u8 array of 2^63 elements", head(0, 1) + gstr("k") + u32(9) + u32(0) + u64(1 << 63) + bytes(64), pattern=r"byte 41: key 'k': array of 9223372036854775808 elements exceeds the cap")
case("G20b", "u8 array of 2^30 elements, 64 bytes present", head(0, 1) + gstr("k") + u32(9) + u32(0) + u64(1 << 30) + bytes(64), pattern=r"byte 41: key 'k': array of 1073741824 u8 elements \(at least 1 bytes each\) exceeds the 64 bytes left")
case("G21", "u64 array of 2^60 elements (n*8 wraps)", head(0, 1) + gstr("k") + u32(9) + u32(10) + u64(1 << 60) + bytes(64), pattern=r"byte 41: key 'k': array of 1152921504606846976 elements exceeds")
case("G21b", "u64 array of 2^29 elements (n*8 > left)", head(0, 1) + gstr("k") + u32(9) + u32(10) + u64(1 << 29) + bytes(64), pattern=r"byte 41: key 'k': array of 536870912 u64 elements \(at least 8 bytes each\) exceeds")
case("G22", "string array of 2^40 elements", head(0, 1) + gstr("k") + u32(9) + u32(8) + u64(1 << 40) + bytes(64), pattern=r"byte 41: key 'k': array of 1099511627776 elements exceeds")
case("G22b", "string array of 10^8 elements, 64 bytes present", head(0, 1) + gstr("k") + u32(9) + u32(8) + u64(10**8) + bytes(64), pattern=r"byte 41: key 'k': array of 100000000 str elements \(at least 8 bytes each\) exceeds")
case("G23", "string in an array longer than the file", head(0, 1) + gstr("k") + u32(9) + u32(8) + u64(2) + gstr("ok") + u64(500) + bytes(20),
     pattern=r"byte 59: key 'k': string 1 length 500 exceeds the 20 bytes left")
case("G23b", "string value of length 2^64-1", head(0, 1) + gstr("k") + u32(8) + u64(M64) + bytes(32), pattern=r"byte 37: key 'k': string value length 18446744073709551615 exceeds the cap")
case("G24a", "bool value 2", head(0, 1) + gstr("k") + u32(7) + b"\x02" + bytes(8), pattern=r"byte 37: key 'k': bool value 2 is not 0 or 1")
case("G24b", "bool array with 0xFF", head(0, 1) + gstr("k") + u32(9) + u32(7) + u64(3) + b"\x01\x00\xff" + bytes(8), pattern=r"byte 51: key 'k': bool value 255 is not 0 or 1")

# ---- G25-G27: alignment ----
case("G25a", "general.alignment of type i32", gguf(kvs=(ARCH, kv("general.alignment", "i32", 32))), pattern=r"byte 69: key 'general.alignment' must be of type u32, not i32")
case("G25b", "general.alignment of type string", gguf(kvs=(kv("general.alignment", "str", "32"),)), pattern=r"byte 24: key 'general.alignment' must be of type u32, not str")
case("G26a", "general.alignment = 0", gguf(kvs=(kv("general.alignment", "u32", 0),)), pattern=r"byte 24: key 'general.alignment': 0 is not a nonzero power of two")
case("G26b", "general.alignment = 13", gguf(kvs=(kv("general.alignment", "u32", 13),)), pattern=r"byte 24: key 'general.alignment': 13 is not a nonzero power of two")
case("G26c", "general.alignment = 0x80000000 (above the cap)", gguf(kvs=(kv("general.alignment", "u32", 1 << 31),)), pattern=r"byte 24: key 'general.alignment': 2147483648 exceeds the cap")
case("G27a", "general.alignment = 1 (policy: accepted, as llama.cpp)",
     gguf(kvs=(kv("general.alignment", "u32", 1),), specs=(("a", [3], I8, 3), ("b", [2], F32, 8)), align=1), expect="accept")
case("G27b", "general.alignment = 4 (policy: accepted)",
     gguf(kvs=(kv("general.alignment", "u32", 4),), specs=(("a", [3], I8, 3), ("b", [2], F32, 8)), align=4), expect="accept")
case("G27c", "general.alignment = 8 but data laid out for 32",
     with_tis((kv("general.alignment", "u32", 8),), [ti("a", [3], I8, 0), ti("b", [2], F32, 32)], bytes(64), align=8),
     pattern=r"tensor 'b': offset 32, expected 8")

# ---- G28-G38: tensor infos ----
TS = ti_start()
case("G28", "tensor name of 64 bytes", with_tis((ARCH,), [ti("n" * 64, [4], F32, 0)], bytes(16)), pattern=rf"byte {TS}: tensor 0: name of 64 bytes exceeds")
case("G28b", "tensor name length 2^64-1", with_tis((ARCH,), [u64(M64) + bytes(40)]), pattern=rf"byte {TS}: tensor 0: name of 18446744073709551615 bytes exceeds")
case("G28c", "empty tensor name (policy: refused)", with_tis((ARCH,), [ti("", [4], F32, 0)], bytes(16)), pattern=rf"byte {TS}: tensor 0 has an empty name")
case("G28d", "tensor name with NUL", with_tis((ARCH,), [ti(b"a\0b", [4], F32, 0)], bytes(16)), pattern=rf"byte {TS + 8}: tensor 0: name 'a\\x00b' contains a NUL byte")
case("G29", "duplicate tensor name", with_tis((ARCH,), [ti("w", [4], F32, 0), ti("w", [4], F32, 32)], bytes(64)),
     pattern=rf"byte {TS + 33}: tensor 'w': duplicate tensor name")
for cid, nd in (("G30a", 5), ("G30b", 255), ("G30c", 0xFFFFFFFF)):
    case(cid, f"n_dims = {nd}", with_tis((ARCH,), [gstr("w") + u32(nd) + u64(4) * 5 + u32(0) + u64(0)], bytes(32)),
         pattern=rf"byte {TS + 9}: tensor 'w': n_dims {nd} exceeds 4")
case("G31", "n_dims = 0 (policy: a one-element scalar, as ggml)", with_tis((ARCH,), [ti("s", [], F32, 0)], pad(bytes(4))), expect="accept")
case("G31b", "n_dims = 0 with a block type (1 element is not a block)", with_tis((ARCH,), [ti("s", [], Q4_0, 0)], bytes(32)),
     pattern=r"tensor 's': row of 1 elements is not a multiple of the Q4_0 block size 32")
case("G32", "dimension with the high bit set", with_tis((ARCH,), [ti("w", [4, 1 << 63], F32, 0)], bytes(32)),
     pattern=rf"byte {TS + 21}: tensor 'w': dimension 1 is negative")
case("G33", "a dimension of 0 (0-element tensor)", gguf(specs=(("z", [0, 4096], F32, 0), ("w", [4], F32, 16))), expect="accept")
case("G34", "ne = (INT64_MAX, 2, 1, 1) with I8", with_tis((ARCH,), [ti("w", [(1 << 63) - 1, 2, 1, 1], I8, 0)], bytes(32)),
     pattern=rf"byte {TS}: tensor 'w': element count .* overflows int64")
case("G35", "ne = (2^32, 2^32, 1, 1)", with_tis((ARCH,), [ti("w", [1 << 32, 1 << 32, 1, 1], F32, 0)], bytes(32)),
     pattern=rf"byte {TS}: tensor 'w': element count .* overflows int64")
case("G35b", "ne = (2^31, 2^31, 2, 1): product 2^63", with_tis((ARCH,), [ti("w", [1 << 31, 1 << 31, 2], I8, 0)], bytes(32)),
     pattern=r"tensor 'w': element count .* overflows int64")
case("G36", "F32 with ne[0] = SIZE_MAX/4 (the GGML_PAD wrap)", with_tis((ARCH,), [ti("w", [M64 // 4], F32, 0)], bytes(32)),
     pattern=r"tensor 'w': byte size of 4611686018427387903 F32 elements overflows")
for cid, tid, why in (("G37a", 42, "unknown type"), ("G37b", 4, "removed type"), ("G37c", 32, "removed type"),
                      ("G37d", 37, "removed type"), ("G37e", 0xFFFFFFFF, "unknown type"), ("G37f", 1000, "unknown type")):
    case(cid, f"tensor type {tid}", with_tis((ARCH,), [ti("w", [32], tid, 0)], bytes(64)),
         pattern=rf"byte {TS + 21}: tensor 'w': ggml type {tid}: {why}")
case("G38", "Q4_0 with ne[0] = 33", with_tis((ARCH,), [ti("w", [33, 2], Q4_0, 0)], bytes(64)),
     pattern=rf"byte {TS + 29}: tensor 'w': row of 33 elements is not a multiple of the Q4_0 block size 32")

# ---- G39-G45: offsets and data ----
O2 = TS + 33 + 25  # offset field of the second tensor (1-dim infos are 33 bytes, name 'a'/'b')
case("G39", "offset not a multiple of the alignment", with_tis((ARCH,), [ti("a", [3], I8, 0), ti("b", [4], F32, 3)], bytes(64)),
     pattern=rf"byte {O2}: tensor 'b': offset 3, expected 32")
case("G40", "offset 2^64-1", with_tis((ARCH,), [ti("a", [4], F32, M64)], bytes(64)), pattern=rf"byte {TS + 25}: tensor 'a': offset 18446744073709551615, expected 0")
case("G41a", "offsets out of info order", with_tis((ARCH,), [ti("a", [8], F32, 32), ti("b", [8], F32, 0)], bytes(64)),
     pattern=rf"byte {TS + 25}: tensor 'a': offset 32, expected 0")
case("G41b", "overlapping offsets", with_tis((ARCH,), [ti("a", [8], F32, 0), ti("b", [8], F32, 0)], bytes(64)),
     pattern=rf"byte {O2}: tensor 'b': offset 0, expected 32")
case("G41c", "gap between tensors", with_tis((ARCH,), [ti("a", [8], F32, 0), ti("b", [8], F32, 64)], bytes(128)),
     pattern=rf"byte {O2}: tensor 'b': offset 64, expected 32")
BIG = 0x7FFFFFFFFFFFFFC0
case("G42a", "two I8 tensors of 0x7FFF...C0 elements (no data)",
     with_tis((ARCH,), [ti("a", [BIG], I8, 0), ti("b", [BIG], I8, BIG)], bytes(64)),
     pattern=rf"byte {TS + 25}: tensor 'a': not enough data")
case("G42b", "three I8 tensors of 0x7FFF...C0 elements (padded sum overflows)",
     with_tis((ARCH,), [ti("a", [BIG], I8, 0), ti("b", [BIG], I8, BIG), ti("c", [BIG], I8, 2 * BIG)], bytes(64)),
     pattern=r"tensor 'c': data section size overflows")
full = gguf(specs=(("a", [8], F32, 32), ("b", [5], F32, 20)))
case("G43", "data 1 byte short of the last tensor's end", full[:-(12 + 1)],
     pattern=r"tensor 'b': not enough data: bytes \[\d+, \d+\) lie past the end of the file")
hdr_end = len(head(1, 1) + ARCH + ti("a", [8], F32, 0))
case("G44", "file truncated inside the padding before the data", (head(1, 1) + ARCH + ti("a", [8], F32, 0) + bytes(3)),
     pattern=rf"byte {hdr_end}: file ends inside the padding before the data section")
case("G44b", "file truncated inside a tensor info", (head(1, 1) + ARCH + ti("a", [8], F32, 0))[:-5] + bytes(0),
     pattern=r"truncated tensor 'a': offset: needs 8 bytes, 3 left")
case("G45", "trailing bytes after the last tensor (policy: accepted, as llama.cpp)", gguf(extra=b"PK\3\4 trailing junk" * 10), expect="accept")
case("G45b", "last tensor's padding missing (policy: accepted, as llama.cpp)", gguf(specs=(("a", [5], F32, 20),))[:-12], expect="accept")

# ---- G46-G48: semantic metadata (a plain inspect does not interpret it), split files ----
# G46/G47 are checks for the converters and the tokenizer; inspect must load the file and print it.
case("G46", "llama.block_count = 100000, head_count = 0 (semantic: inspect accepts)",
     gguf(kvs=(ARCH, kv("llama.block_count", "u32", 100000), kv("llama.attention.head_count", "u32", 0))), expect="accept")
case("G47", "vocab tokens '<0x-1>' / '<0xZZ>' with byte type (semantic: inspect accepts)",
     gguf(kvs=(ARCH, kv_arr("tokenizer.ggml.tokens", "str", ["<0x-1>", "<0xZZ>"]), kv_arr("tokenizer.ggml.token_type", "i32", [6, 6]))),
     expect="accept")
case("G48a", "Jinja chat template (opaque bytes: accepted, never evaluated)",
     gguf(kvs=(ARCH, kv("tokenizer.chat_template", "str", "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m }}{% endfor %}"))),
     expect="accept")


def split_kvs(no, count, total):
    return (kv("split.no", "u16", no), kv("split.count", "u16", count), kv("split.tensors.count", "i32", total))


case("G48b", "split.count = 0", gguf(kvs=(ARCH,) + split_kvs(0, 0, 1)), pattern=r"byte 69: key 'split.count' must be an integer in 1..99999")
case("G48c", "split.no >= split.count", gguf(kvs=(ARCH,) + split_kvs(2, 2, 1)), pattern=r"byte 69: key 'split.no' must be an integer below split.count")
case("G48d", "split.tensors.count below this shard's tensors", gguf(kvs=(ARCH,) + split_kvs(0, 1, 0)), pattern=r"byte 69: key 'split.tensors.count' must be")
case("G48e", "split keys incomplete", gguf(kvs=(ARCH, kv("split.count", "u16", 2))), pattern=r"byte 69: split metadata incomplete")


def shards(dirpath, second_total=2, second_no=1, n_second=1, make_second=True):
    specs = (("a", [4], F32, 16),)
    with open(os.path.join(dirpath, "m-00001-of-00002.gguf"), "wb") as f:
        f.write(gguf(kvs=(ARCH,) + split_kvs(0, 2, 2), specs=specs))
    if make_second:
        specs2 = tuple((f"b{i}", [4], F32, 16) for i in range(n_second))
        with open(os.path.join(dirpath, "m-00002-of-00002.gguf"), "wb") as f:
            f.write(gguf(kvs=split_kvs(second_no, 2, second_total), specs=specs2))
    return os.path.join(dirpath, "m-00001-of-00002.gguf")


case("G48f", "shards disagree on split.tensors.count", lambda d: shards(d, second_total=3), pattern=r"m-00002-of-00002.gguf: byte 24: split keys say shard 1 of 2 with 3 tensors")
case("G48g", "second shard claims split.no 0", lambda d: shards(d, second_no=0), pattern=r"byte 24: split keys say shard 0 of 2")
case("G48h", "shards hold more tensors than split.tensors.count", lambda d: shards(d, n_second=2, second_total=2),
     pattern=r"m-00001-of-00002.gguf: byte 69: split.tensors.count is 2 but the 2 shards hold 3 tensors")
case("G48i", "second shard missing", lambda d: shards(d, make_second=False), pattern=r"m-00002-of-00002.gguf: cannot open")
case("G48j", "two valid shards (accept)", lambda d: shards(d), expect="accept")


def dup_across_shards(d):
    p = shards(d, make_second=False)
    with open(os.path.join(d, "m-00002-of-00002.gguf"), "wb") as f:
        f.write(gguf(kvs=split_kvs(1, 2, 2), specs=(("a", [4], F32, 16),)))
    return p


case("G48k", "same tensor name in two shards", dup_across_shards, pattern=r"tensor 'a': duplicate tensor name")

# ---- extras ----
case("X1", "valid minimal file, GGUF v2", gguf(version=2), expect="accept")
case("X2", "header only: no tensors, no metadata", head(0, 0), expect="accept")
case("X3", "truncated inside a KV value", head(0, 1) + gstr("k") + u32(T["u64"]) + b"\1\2\3", pattern=r"byte 37: truncated key 'k': value: needs 8 bytes, 3 left")
case("X4", "n_tensors over the tensor cap with enough bytes", head((1 << 20) + 1, 0) + bytes(((1 << 20) + 1) * 25),
     pattern=r"byte 8: tensor count 1048577 exceeds the cap")
case("X5", "general.alignment 2^21 (power of two above the cap)", gguf(kvs=(kv("general.alignment", "u32", 1 << 21),)),
     pattern=r"byte 24: key 'general.alignment': 2097152 exceeds the cap")
case("X6", "Q8_0 tensor one block short", with_tis((ARCH,), [ti("q", [64], Q8_0, 0)], bytes(34)),
     pattern=r"tensor 'q': not enough data")


def big_endian(d):
    """A real big-endian file written by gguf-py (GGUFWriter(endianess=BIG))."""
    try:
        import numpy as np
        import gguf as ggufpy
    except ImportError:
        return None
    p = os.path.join(d, "be.gguf")
    w = ggufpy.GGUFWriter(p, "llama", endianess=ggufpy.GGUFEndian.BIG)
    w.add_uint32("llama.block_count", 1)
    w.add_tensor("w", np.arange(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


case("X7", "big-endian file from gguf-py", big_endian, pattern=r"byte 4: version 0x03000000 looks byte-swapped: big-endian GGUF files are not supported")


def run_case(cid, desc, content, expect, pattern, tmp):
    d = os.path.join(tmp, cid)
    os.makedirs(d)
    if callable(content):
        path = content(d)
        if path is None:
            return "SKIP", "gguf-py not importable"
    else:
        path = os.path.join(d, f"{cid}.gguf")
        with open(path, "wb") as f:
            f.write(content)
    before = sorted(os.listdir(d))
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")
    errpath = os.path.join(tmp, f"{cid}.stderr")
    with open(errpath, "wb") as ef:
        proc = subprocess.Popen([MUSE, "inspect", path], stdout=subprocess.DEVNULL, stderr=ef, env=env, cwd=d)
        timer = threading.Timer(TIME_LIMIT, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)  # per-process peak RSS
        timer.cancel()
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    if rc == -9:
        return "FAIL", f"did not finish in {TIME_LIMIT}s"
    with open(errpath, "rb") as ef:
        err = ef.read().decode("utf-8", "replace")
    rss = usage.ru_maxrss
    after = sorted(os.listdir(d))
    if after != before:
        return "FAIL", f"files appeared: {set(after) - set(before)}"
    if rc in (98, 99) or "Sanitizer" in err:
        return "FAIL", f"sanitizer report (exit {rc}): {err[:300]}"
    if rss > RSS_BUDGET_KB:
        return "FAIL", f"peak RSS {rss} KB over the {RSS_BUDGET_KB} KB budget"
    if expect == "accept":
        return ("PASS", "") if rc == 0 else ("FAIL", f"exit {rc}, expected 0: {err.strip()[:300]}")
    lines = err.splitlines()
    if rc != 1:
        return "FAIL", f"exit {rc}, expected 1: {err[:300]}"
    if len(lines) != 1 or not lines[0].startswith("muse: error: "):
        return "FAIL", f"stderr is not one 'muse: error:' line: {err[:300]!r}"
    if os.path.basename(path) not in lines[0] and "-of-" not in lines[0]:
        return "FAIL", f"error does not name the file: {lines[0]}"
    if pattern and not re.search(pattern, lines[0]):
        return "FAIL", f"error {lines[0]!r} does not match {pattern!r}"
    return "PASS", ""


def main():
    if not os.access(MUSE, os.X_OK):
        print(f"SKIP: hostile/gguf: {MUSE} not built")
        return 0
    tmp = tempfile.mkdtemp(prefix="muse-hostile-gguf.", dir=os.environ.get("MUSE_TEST_TMP"))
    failed = 0
    malformed = sum(1 for c in CASES if c[5])
    try:
        for cid, desc, content, expect, pattern, _ in CASES:
            status, why = run_case(cid, desc, content, expect, pattern, tmp)
            line = f"{status}: hostile/gguf/{cid} ({expect}: {desc})"
            if why:
                line += f": {why}"
            print(line, flush=True)
            failed += status == "FAIL"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# gguf hostile: {len(CASES)} cases, {malformed} malformed (reject), {len(CASES) - malformed} accept")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
