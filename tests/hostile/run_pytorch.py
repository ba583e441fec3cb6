"""run_pytorch.py: malformed and edge-case PyTorch .bin/.pt inputs (HOSTILE_INPUTS.md 4.3, P1-P50) against muse.

Each case is generated in a temp dir, never committed: ZIP containers built byte by byte (torch.save's layout:
"FB" padding, data descriptors, ZIP64 end records), hand-assembled pickles, and mutated real torch.save output.
A reject case must exit 1 with exactly one stderr line "muse: error: ..." naming the file and a byte offset (the
exact offset where the case states one), no sanitizer report, and nothing written (for the malicious-global
cases P25-P28 the payload would create a file: it must not exist). An accept case must exit 0.
`muse inspect` reads no storage bytes, so the storage-CRC case runs the dense-read driver
build/asan/tests/test_pytorch --dump instead. Prints one PASS/FAIL line per case.
"""
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

from hostile_check import listing, verdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
DUMP = os.path.join(ROOT, "build", "asan", "tests", "test_pytorch")
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")

# ---------------------------------------------------------------- ZIP writer with every field reachable


class Zip:
    """Builds a ZIP like torch's miniz writer; records offsets so cases can patch any field afterwards."""

    def __init__(self):
        self.buf = bytearray()
        self.ents = []  # dicts: name, lho, data_off, size, crc, flags, cd_off

    def add(self, name, data, torch_style=True, raw_name=None):
        name_b = raw_name if raw_name is not None else name.encode()
        crc = zlib.crc32(data)
        flags = 0x0808 if torch_style else 0
        e = {"name": name_b, "lho": len(self.buf), "size": len(data), "crc": crc, "flags": flags}
        xlen = 0
        if torch_style:
            before = len(self.buf) + 30 + len(name_b) + 4
            xlen = 4 + (64 - before % 64) % 64
        lcrc, lsize = (0, 0) if torch_style else (crc, len(data))
        self.buf += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 0, 0, 0, lcrc, lsize, lsize, len(name_b), xlen)
        self.buf += name_b
        if xlen:
            self.buf += b"FB" + struct.pack("<H", xlen - 4) + b"Z" * (xlen - 4)
        e["data_off"] = len(self.buf)
        self.buf += data
        if torch_style and data:
            self.buf += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
        self.ents.append(e)
        return e

    def finish(self, zip64=True, comment=b""):
        self.cd_off = len(self.buf)
        for e in self.ents:
            e["cd_off"] = len(self.buf)
            self.buf += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 20, e["flags"], 0, 0, 0, e["crc"], e["size"],
                                    e["size"], len(e["name"]), 0, 0, 0, 0, 0, e["lho"])
            self.buf += e["name"]
        self.cd_size = len(self.buf) - self.cd_off
        n = len(self.ents)
        if zip64:
            self.z64 = len(self.buf)
            self.buf += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, self.cd_size, self.cd_off)
            self.buf += struct.pack("<IIQI", 0x07064B50, 0, self.z64, 1)
        self.eocd = len(self.buf)
        self.buf += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, self.cd_size, self.cd_off, len(comment)) + comment
        return self

    def ent(self, suffix):
        return next(e for e in self.ents if e["name"].endswith(suffix.encode()))

    def put(self, off, fmt, *v):
        struct.pack_into(fmt, self.buf, off, *v)
        return self

    def bytes(self):
        return bytes(self.buf)


# ---------------------------------------------------------------- pickle assembler (protocol 2, as torch.save)


def g(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def u(s):
    b = s.encode() if isinstance(s, str) else s
    return b"X" + struct.pack("<I", len(b)) + b


def i(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def persid(cls, key, numel, mod="torch"):
    return tup(u("storage"), g(mod, cls), u(key), u("cpu"), i(numel)) + b"Q"


def tensor(cls="FloatStorage", key="0", numel=6, off=0, size=(2, 3), stride=(3, 1), hooks=None):
    hooks = g("collections", "OrderedDict") + b")R" if hooks is None else hooks
    return (g("torch._utils", "_rebuild_tensor_v2") + b"(" + persid(cls, key, numel) + i(off) +
            tup(*map(i, size)) + tup(*map(i, stride)) + b"\x89" + hooks + b"tR")


def sd(*pairs, proto=2):
    return bytes([0x80, proto]) + b"}(" + b"".join(k + v for k, v in pairs) + b"u."


F32x6 = struct.pack("<6f", *range(6))
GOOD = sd((u("w"), tensor()))


def archive(pkl, storages=None, prefix="archive", extra=(), byteorder=b"little", version=b"3\n", zip64=True,
            torch_style=True):
    z = Zip()
    z.add(f"{prefix}/data.pkl", pkl, torch_style)
    if byteorder is not None:
        z.add(f"{prefix}/byteorder", byteorder, torch_style)
    for k, v in ({"0": F32x6} if storages is None else storages).items():
        z.add(f"{prefix}/data/{k}", v, torch_style)
    for n, d in extra:
        z.add(n, d, torch_style)
    if version is not None:
        z.add(f"{prefix}/version", version, torch_style)
    return z.finish(zip64)


def pkl_case(pkl, storages=None):
    """Bytes of a torch-like archive around pkl, and the file offset of pickle byte 0."""
    z = archive(pkl, storages)
    return z.bytes(), z.ent("data.pkl")["data_off"]


# ---------------------------------------------------------------- real torch.save output


def real_files(d):
    import torch  # imported here: generating takes a second, the rest of the file needs no torch
    torch.manual_seed(0)
    out = {}
    sdict = {"w": torch.randn(4, 6), "b": torch.arange(5, dtype=torch.int64), "h": torch.ones(3, dtype=torch.float16)}
    for name, kw in [("real.bin", {}), ("real_p4.bin", {"pickle_protocol": 4})]:
        p = os.path.join(d, name)
        torch.save(sdict, p, **kw)
        out[name] = open(p, "rb").read()
    buf = io.BytesIO()
    torch.save(sdict, buf, _use_new_zipfile_serialization=False)
    out["legacy.bin"] = buf.getvalue()
    lin = torch.nn.Linear(2, 2)
    p = os.path.join(d, "ts.pt")
    torch.jit.save(torch.jit.trace(lin, torch.zeros(1, 2)), p)
    out["ts.pt"] = open(p, "rb").read()
    buf = io.BytesIO()
    torch.save({"x": torch.arange(12.0).reshape(3, 4).t(), "y": torch.arange(10.0)[2:8:2]}, buf)
    out["strided.bin"] = buf.getvalue()
    for n in os.listdir(d):
        os.remove(os.path.join(d, n))
    return out


def offsets(data):
    """name -> (header offset, data offset, cd record offset) of a real archive."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    res = {}
    cd = zf.start_dir
    for info in zf.infolist():
        lho = info.header_offset
        nlen, xlen = struct.unpack_from("<HH", data, lho + 26)
        res[info.filename] = (lho, lho + 30 + nlen + xlen, cd)
        cd += 46 + len(info.filename.encode()) + len(info.extra) + len(info.comment)
    return res


def patch(data, off, fmt, *v):
    b = bytearray(data)
    struct.pack_into(fmt, b, off, *v)
    return bytes(b)


def repack(data, compression=zipfile.ZIP_STORED, rename=None):
    """Rewrites an archive with Python's zipfile (optionally deflated or with renamed members)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            name = rename(info.filename) if rename else info.filename
            dst.writestr(name, src.read(info.filename))
    return out.getvalue()


def sparse_big_pickle(d):
    """An archive whose data.pkl entry is 257 MiB of zeros, written sparsely (P23)."""
    size = 257 << 20
    crc = 0
    chunk = bytes(1 << 20)
    for _ in range(257):
        crc = zlib.crc32(chunk, crc)
    name = b"archive/data.pkl"
    vname, vdata = b"archive/version", b"3\n"
    vcrc = zlib.crc32(vdata)
    p = os.path.join(d, "case.bin")
    with open(p, "wb") as f:
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, size, size, len(name), 0) + name)
        hdr = 30 + len(name)
        f.seek(hdr + size)  # a hole: 257 MiB of zeros that take no disk
        v_lho = hdr + size
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, vcrc, 2, 2, len(vname), 0) + vname + vdata)
        cd_off = v_lho + 30 + len(vname) + 2
        cd = b""
        for nm, c, sz, lho in [(name, crc, size, 0), (vname, vcrc, 2, v_lho)]:
            cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 20, 0, 0, 0, 0, c, sz, sz, len(nm), 0, 0, 0, 0,
                              0, lho) + nm
        f.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(cd), cd_off, 0))
    return p


# ---------------------------------------------------------------- cases

CANARY = "pwned"


def evil_call(mod, name, arg=None):
    """GLOBAL mod.name + REDUCE with a shell command that would create the canary file."""
    arg = u(arg if arg is not None else f"touch {CANARY}")
    return b"\x80\x02}(" + u("w") + g(mod, name) + arg + b"\x85R" + b"u."


def build_cases(real):
    R = real["real.bin"]
    ro = offsets(R)
    pk_lho, pk_data, pk_cd = ro["real/data.pkl"]
    d0_lho, d0_data, d0_cd = ro["real/data/0"]
    eocd = len(R) - 22
    loc = eocd - 20
    z64 = struct.unpack_from("<Q", R, loc + 8)[0]
    cd_off = struct.unpack_from("<Q", R, z64 + 48)[0]
    cases = []

    def add(cid, kind, payload, offset=None, pattern="", canary=False, dump=False, no_offset=False):
        cases.append((cid, kind, payload, offset, pattern, canary, dump, no_offset))

    def pk(cid, pkl, pattern, pos=None, storages=None, kind="reject", canary=False):
        data, base = pkl_case(pkl, storages)
        add(cid, kind, data, None if pos is None else base + pos, pattern, canary)

    # ---- accept: what torch writes
    add("A1_real_torch_save", "accept", R)
    add("A2_real_protocol4", "accept", real["real_p4.bin"])
    add("A3_real_strided_views", "accept", real["strided.bin"])
    add("A4_built_archive", "accept", archive(GOOD).bytes())
    add("A5_empty_state_dict", "accept", archive(sd(), storages={}).bytes())
    add("A6_plain_zip_no_descriptors", "accept", archive(GOOD, torch_style=False).bytes())
    add("A7_repacked_by_python_zipfile", "accept", repack(R))
    add("A8_no_zip64_end", "accept", archive(GOOD, zip64=False).bytes())
    add("A9_no_byteorder_means_little", "accept", archive(GOOD, byteorder=None).bytes())
    add("A10_nested_and_scalars", "accept",
        archive(b"\x80\x02}(" + u("model") + b"}(" + u("w") + tensor() + b"u" + u("epoch") + i(3) + u("lr") +
                b"G" + struct.pack(">d", 0.1) + u("dtype") + g("torch", "float16") + u("none") + b"N" + b"u.").bytes())

    # ---- zip layer
    add("P1_legacy_pickle_stream", "reject", real["legacy.bin"], 0, r"legacy \(pre-1\.6")
    add("P2a_no_eocd", "reject", R[:-22], None, "no end-of-central-directory")
    add("P2b_truncated_half", "reject", R[:len(R) // 2], None, "no end-of-central-directory")
    fake = R[-22:-2] + b"\x00\x00"
    add("P3_two_eocd_fake_in_comment", "reject", patch(R, eocd + 20, "<H", 22) + fake, None,
        "two end-of-central-directory records")
    add("P4a_cd_offset_past_eof", "reject", patch(patch(R, z64 + 48, "<Q", len(R) + 100), eocd + 16, "<I", len(R) + 100),
        None,
        "central directory at .* does not end where")
    add("P4b_cd_offset_into_local_data", "reject",
        patch(patch(patch(R, z64 + 48, "<Q", d0_data), z64 + 40, "<Q", z64 - d0_data), eocd + 12, "<II",
              z64 - d0_data, d0_data), d0_data,
        "bad central directory signature")
    add("P5_count_2_63", "reject", patch(patch(patch(R, z64 + 24, "<Q", 2**63), z64 + 32, "<Q", 2**63), eocd + 8,
                                         "<HH", 0xFFFF, 0xFFFF), None, "cannot fit in a central directory")
    # P6: a CD record saying "sizes in ZIP64 extra" with 2^64-1 there
    z = archive(GOOD)
    e = z.ent("data/0")
    extra = struct.pack("<HHQQ", 1, 16, 2**64 - 1, 2**64 - 1)
    body = bytes(z.buf[:z.cd_off])
    cd = bytearray(z.buf[z.cd_off:z.cd_off + z.cd_size])
    rel = e["cd_off"] - z.cd_off
    nlen = struct.unpack_from("<H", cd, rel + 28)[0]
    struct.pack_into("<II", cd, rel + 20, 0xFFFFFFFF, 0xFFFFFFFF)
    struct.pack_into("<H", cd, rel + 30, len(extra))
    cd = cd[:rel + 46 + nlen] + extra + cd[rel + 46 + nlen:]
    n = len(z.ents)
    tail = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), len(body))
    tail += struct.pack("<IIQI", 0x07064B50, 0, len(body) + len(cd), 1)
    tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), len(body), 0)
    add("P6a_zip64_size_2_64_minus_1", "reject", body + bytes(cd) + tail, e["data_off"], "run into the central directory")
    add("P6b_extra_runs_past_record", "reject", patch(R, d0_lho + 30 + len("real/data/0") + 2, "<H", 0xFFF0), None,
        "runs past the extra area")
    add("P7_disk_number", "reject", patch(R, z64 + 16, "<I", 1), z64 + 16, "spanned")
    add("P8_local_name_differs", "reject", patch(R, d0_lho + 30 + 5, "<B", ord("X")), d0_lho + 30,
        "local header name differs")
    add("P9_local_method_differs", "reject", patch(R, d0_lho + 8, "<H", 8), d0_lho + 8,
        "local compression method 8")
    add("P10_encrypted", "reject", patch(patch(R, d0_cd_off(R, ro, "real/data/0") + 8, "<H", 0x0809), d0_lho + 6, "<H",
                                         0x0809), None, "encrypted")
    add("P11a_odd_flag_bits", "reject", patch(R, d0_cd_off(R, ro, "real/data/0") + 8, "<H", 0x2808), None,
        "unsupported general-purpose flag bits 0x2000")
    add("P11b_descriptor_differs", "reject", patch(R, d0_data + 4 * 6 * 4 + 8, "<I", 7), d0_data + 96,
        "data descriptor missing or differs")
    add("P11c_descriptor_flag_only_in_cd", "reject", patch(R, d0_lho + 6, "<H", 0x0800), d0_lho + 6,
        "local flags 0x0800")
    add("P12a_deflate_method", "reject", patch(patch(R, d0_cd_off(R, ro, "real/data/0") + 10, "<H", 8), d0_lho + 8,
                                               "<H", 8), None, "compression method 8")
    add("P12b_repacked_deflated", "reject", repack(R, zipfile.ZIP_DEFLATED), None, "compression method 8")
    add("P13_csize_ne_usize", "reject", patch(R, d0_cd_off(R, ro, "real/data/0") + 20, "<I", 95), None,
        "compressed size 95 != uncompressed size 96")
    add("P14a_crc_data_pkl", "reject", patch(R, pk_data + 20, "<B", R[pk_data + 20] ^ 0x20), pk_data, "CRC-32 mismatch")
    add("P14b_crc_storage_on_read", "reject", patch(R, d0_data + 3, "<B", R[d0_data + 3] ^ 0x01), d0_data,
        "tensor 'w': storage entry 'real/data/0' fails its CRC-32 check", dump=True)
    z = Zip()
    z.add("archive/data.pkl", GOOD)
    z.add("archive/data/0", F32x6)
    z.add("archive/data/0", F32x6)
    z.add("archive/version", b"3\n")
    add("P15_duplicate_entry", "reject", z.finish().bytes(), None, "duplicate entry 'archive/data/0'")
    inner = Zip()
    inner.add("archive/data/0", F32x6, torch_style=False)
    z = Zip()
    z.add("archive/data.pkl", GOOD)
    outer = z.add("archive/blob", bytes(inner.buf), torch_style=False)
    z.ents.append(dict(inner.ents[0], lho=outer["data_off"], data_off=outer["data_off"] + inner.ents[0]["data_off"]))
    z.add("archive/version", b"3\n")
    add("P16_overlapping_entries", "reject", z.finish().bytes(), None, "overlaps the entry before it")
    for cid, name, why in [("P17a_dotdot", b"../../etc/passwd", "'..'"), ("P17b_absolute", b"/abs", "absolute"),
                           ("P17c_drive", b"C:\\x", "drive letter|backslash"), ("P17d_backslash", b"a\\..\\b",
                                                                                  "backslash"),
                           ("P17e_nul", b"archive/da\x00ta", "control byte")]:
        add(cid, "reject", _with_entry(GOOD, name), None, why)
    add("P18a_two_roots", "reject", archive(GOOD, extra=[("other/x", b"1")]).bytes(), None,
        "outside the archive's top-level folder 'archive'")
    z = Zip()
    z.add("archive/data/0", F32x6)
    z.add("archive/version", b"3\n")
    add("P18b_no_data_pkl", "reject", z.finish().bytes(), None, "no 'archive/data.pkl' entry")
    add("P19_byteorder_big", "reject", archive(GOOD, byteorder=b"big").bytes(), None, "big-endian")
    add("P20a_byteorder_garbage", "reject", archive(GOOD, byteorder=b"\xffmiddle").bytes(), None,
        "neither \"little\" nor \"big\"")
    add("P20b_byteorder_10MB", "reject", archive(GOOD, byteorder=b"little" * ((10 << 20) // 6)).bytes(), None,
        r"byteorder' is \d+ bytes \(at most 64")
    add("P21a_version_text", "reject", archive(GOOD, version=b"three\n").bytes(), None, "not a decimal number")
    add("P21b_version_unknown", "reject", archive(GOOD, version=b"99\n").bytes(), None, "archive version 99")
    add("P21c_version_missing", "reject", archive(GOOD, version=None).bytes(), None, "no 'archive/version' entry")
    add("P22a_torchscript_real", "reject", real["ts.pt"], None, "TorchScript")
    add("P22b_constants_pkl", "reject", archive(GOOD, extra=[("archive/constants.pkl", GOOD)]).bytes(), None,
        "TorchScript")
    add("P23_data_pkl_257MiB", "reject", sparse_big_pickle, None, r"data\.pkl' is 269484032 bytes \(cap 256 MiB\)")
    add("P24_unaligned_storage", "accept", archive(GOOD, torch_style=False, extra=[("archive/x", b"123")]).bytes())

    # ---- pickle layer: globals (nothing may run; the payload would create ./pwned)
    for cid, mod, name in [("P25a_os_system", "os", "system"), ("P25b_posix_system", "posix", "system"),
                           ("P25c_nt_system", "nt", "system"), ("P26a_builtins_eval", "builtins", "eval"),
                           ("P26b_builtins_exec", "builtins", "exec"),
                           ("P26c_builtins_import", "builtins", "__import__"),
                           ("P26d_builtins_getattr", "builtins", "getattr"),
                           ("P27a_subprocess_popen", "subprocess", "Popen"),
                           ("P27b_runpy_run_code", "runpy", "_run_code"), ("P27c_pip_main", "pip", "main"),
                           ("P27d_importlib", "importlib", "import_module"),
                           ("P27e_pkgutil_resolve_name", "pkgutil", "resolve_name"),
                           ("P27f_torch_load", "torch", "load")]:
        pk(cid, evil_call(mod, name), f"global '{re.escape(mod)}\\.{re.escape(name)}' is not allowed", pos=10,
           canary=True)
    # STACK_GLOBAL with module and name fetched from the memo (the strings first sit in the dict as a key/value pair)
    p4 = (b"\x80\x04\x95" + struct.pack("<Q", 0) + b"}\x94(\x8c\x02os\x94\x8c\x06system\x94" + u("w") +
          b"h\x01h\x02\x93" + u(f"touch {CANARY}") + b"\x85Ru.")
    pk("P28a_stack_global_from_memo", p4, "global 'os.system' is not allowed", pos=38, canary=True)
    p4ok = (b"\x80\x04}\x94(\x8c\x05torch\x94\x8c\x0cFloatStorage\x94" + u("w") +
            g("torch._utils", "_rebuild_tensor_v2") + b"((" + u("storage") + b"h\x01h\x02\x93" + u("0") + u("cpu") +
            i(6) + b"tQ" + i(0) + tup(i(6)) + tup(i(1)) + b"\x89" + g("collections", "OrderedDict") + b")RtRu.")
    pk("P28b_stack_global_allowlisted_pair", p4ok, "", kind="accept")
    pk("P29a_global_without_newline", b"\x80\x02}(" + u("w") + b"cos system", "no terminating newline", pos=10)
    pk("P29b_global_1MB_module", b"\x80\x02}(" + u("w") + b"c" + b"m" * (1 << 20) + b"\nx\n)Ru.",
       "GLOBAL module longer than 256 bytes", pos=10)
    pk("P29c_global_bad_chars", b"\x80\x02}(" + u("w") + b"cos;x\nsystem\n)Ru.", "malformed global name", pos=10)

    # ---- pickle layer: opcodes
    for cid, op in [("P30a_INST", b"i"), ("P30b_OBJ", b"o"), ("P30c_NEWOBJ_EX", b"\x92"), ("P31a_EXT1", b"\x82"),
                    ("P31b_EXT2", b"\x83"), ("P31c_EXT4", b"\x84")]:
        pk(cid, b"\x80\x02}(" + u("w") + op + b"\x01\x00\x00\x00u.", r"opcode 0x.. \(\w+\) is not allowed", pos=10)
    pk("P32_ordereddict_with_pairs", b"\x80\x02" + g("collections", "OrderedDict") + b"((" + u("a") + i(1) +
       b"tt\x85R.", "OrderedDict called with 1 arguments")
    pk("P33a_build_on_list", b"\x80\x02}(" + u("w") + b"]}bu.", "BUILD on a list is not allowed", pos=12)
    pk("P33b_build_on_tensor", b"\x80\x02}(" + u("w") + tensor() + b"}" + u("x") + i(1) + b"sbu.",
       "BUILD on a tensor is not allowed")
    pk("P34a_persid_not_storage", b"\x80\x02}(" + u("w") + tup(u("module"), i(1)) + b"Qu.",
       r"persistent id is not \('storage'")
    pk("P34b_persid_4_tuple", b"\x80\x02}(" + u("w") + tup(u("storage"), g("torch", "FloatStorage"), u("0"), u("cpu")) +
       b"Qu.", r"persistent id is not \('storage'")
    pk("P34c_persid_type_not_storage", b"\x80\x02}(" + u("w") + tup(u("storage"), g("collections", "OrderedDict"),
                                                                      u("0"), u("cpu"), i(1)) + b"Qu.",
       "not a storage class")
    pk("P35a_key_dotdot", sd((u("w"), tensor(key="../x"))), r"storage key '\.\./x'")
    pk("P35b_key_missing", sd((u("w"), tensor(key="7"))), "storage '7': no entry 'archive/data/7'")
    pk("P36a_unknown_storage_type", sd((u("w"), tensor(cls="FooStorage"))), "global 'torch.FooStorage' is not allowed")
    pk("P36b_quantized_storage", sd((u("w"), tensor(cls="QInt8Storage"))),
       "tensor 'w': element type torch.QInt8Storage is not supported")
    pk("P37_numel_past_entry", sd((u("w"), tensor(numel=7, size=(7,), stride=(1,)))),
       "storage '0': 7 elements of torch.FloatStorage need more than the 24 bytes")
    pk("P38a_view_out_of_bounds", sd((u("w"), tensor(off=1, size=(2, 3), stride=(3, 1)))),
       r"tensor 'w': view \(offset 1, 2 dims\) reaches past its storage '0' of 6 elements")
    pk("P38b_stride_out_of_bounds", sd((u("w"), tensor(size=(2, 3), stride=(4, 1)))), "reaches past its storage")
    pk("P39a_negative_size", sd((u("w"), tensor(size=(-1, 3), stride=(3, 1)))), r"size\[0\] is negative")
    pk("P39b_negative_stride", sd((u("w"), tensor(size=(2, 3), stride=(3, -1)))), r"stride\[1\] is negative")
    pk("P39c_stride_overflow", sd((u("w"), tensor(size=(2**40, 2**40), stride=(2**40, 1)))), "overflows")
    pk("P39d_rank_10000", sd((u("w"), tensor(size=(1,) * 10000, stride=(1,) * 10000))), "10000 dimensions")
    pk("P40_noncontiguous_valid", sd((u("w"), tensor(size=(3, 2), stride=(1, 3)))), "", kind="accept")
    pk("P41_overlapping_views", sd((u("w"), tensor(size=(2, 3), stride=(1, 1))),
                                    (u("v"), tensor(off=2, size=(4,), stride=(1,)))), "", kind="accept")
    pk("P42a_mark_without_tuple", b"\x80\x02}(.", "STOP with 1 unclosed MARKs", pos=4)
    pk("P42b_pop_on_empty_stack", b"\x80\x020}.", r"opcode 0x30 \(POP\) is not allowed", pos=2)
    pk("P42c_setitem_empty_stack", b"\x80\x02s.", "SETITEM needs 3 stack items", pos=2)
    pk("P43a_binget_unset", b"\x80\x02}h\x07.", "memo index 7, which was never set", pos=3)
    pk("P43b_long_binget_unset", b"\x80\x02}j\x00\x00\x00\x01.", "memo index 16777216", pos=3)
    # the tensor is memoized at 2^32-2 and fetched again under a second name
    pk("P44_long_binput_2_32_minus_1", b"\x80\x02}r\xff\xff\xff\xff(" + u("w") + tensor() + b"r\xfe\xff\xff\xff" +
       u("v") + b"j\xfe\xff\xff\xffu.", "", kind="accept")
    pk("P45a_binunicode8_2_63", b"\x80\x04}(" + b"\x8d" + struct.pack("<Q", 2**63) + b"u.",
       "BINUNICODE8 of 9223372036854775808 bytes", pos=4)
    pk("P45b_binbytes8", b"\x80\x04}(" + b"\x8e" + struct.pack("<Q", 2**63) + b"u.", r"BINBYTES8\) is not allowed")
    pk("P45c_long4", b"\x80\x02}(" + b"\x8b" + struct.pack("<I", 2**31) + b"u.", r"LONG4\) is not allowed")
    pk("P45d_frame_past_end", b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"}.", "FRAME of 1099511627776 bytes",
       pos=2)
    pk("P45e_binunicode_past_end", b"\x80\x02}(X\xff\xff\xff\x7fab", "truncated")
    pk("P46_invalid_utf8", sd((u(b"w\xc3\x28"), tensor())), "not valid UTF-8", pos=4)
    pk("P47a_deep_lists_1e6", b"\x80\x02}" + u("w") + b"]" * 10**6 + b"a" * (10**6 - 1) + b"s.",
       "nested deeper than 8 levels")
    pk("P47b_many_marks", b"\x80\x02" + b"(" * 100000 + b".", "more than 256 nested MARKs")
    pk("P48a_truncated_no_stop", GOOD[:-1], "ends without STOP")
    pk("P48b_truncated_mid_opcode", GOOD[:20], "truncated")
    pk("P49_bytes_after_stop", GOOD + GOOD, f"{len(GOOD)} bytes after STOP", pos=len(GOOD))
    pk("P50a_next_buffer", b"\x80\x05}(" + u("w") + b"\x97u.", r"NEXT_BUFFER\) is not allowed")
    pk("P50b_readonly_buffer", b"\x80\x05}(" + u("w") + b"\x98u.", r"READONLY_BUFFER\) is not allowed")
    pk("P50c_protocol_6", b"\x80\x06}.", "protocol 6 is not supported", pos=0)

    # ---- beyond the catalogue
    pk("X1_top_level_list", b"\x80\x02](" + tensor() + b"e.", "top-level object is a list")
    pk("X2_v3_dtype_mismatch", sd((u("w"), g("torch._utils", "_rebuild_tensor_v3") + b"(" +
                                   persid("FloatStorage", "0", 6) + i(0) + tup(i(6)) + tup(i(1)) + b"\x89" +
                                   g("collections", "OrderedDict") + b")R" + g("torch", "float16") + b"tR")),
       "does not match storage type torch.FloatStorage")
    pk("X3_unsupported_dtype", sd((u("w"), g("torch._utils", "_rebuild_tensor_v3") + b"(" +
                                   persid("UntypedStorage", "0", 24, ).replace(b"ctorch\n", b"ctorch.storage\n") +
                                   i(0) + tup(i(6)) + tup(i(1)) + b"\x89" + g("collections", "OrderedDict") + b")R" +
                                   g("torch", "qint8") + b"tR")), "element type torch.qint8 is not supported")
    pk("X4_subclass_from_type", sd((u("w"), g("torch._tensor", "_rebuild_from_type_v2") + b"(" +
                                    g("torch._utils", "_rebuild_tensor_v2") + g("torch.nn", "Module") +
                                    b")Nt" + b"R")), "global 'torch.nn.Module' is not allowed")
    pk("X5_duplicate_names", sd((u("w"), tensor()), (u("w"), tensor())), "duplicate tensor name 'w'")
    pk("X6_qtensor_rebuild", sd((u("w"), g("torch._utils", "_rebuild_qtensor") + b")R")),
       "quantized tensors are not supported")
    pk("X7_storage_redeclared", sd((u("a"), tensor()), (u("b"), tensor(cls="HalfStorage", numel=12))),
       "storage '0' declared again")
    pk("X8_hooks_not_empty", sd((u("w"), tensor(hooks=b"}" + u("k") + i(1) + b"s"))),
       "backward_hooks is not an empty dict")
    add("X9_gap_between_entries", "reject", _gap_archive(), None, "unaccounted bytes before entry")
    add("X10_prepended_junk_polyglot", "reject", b"PK\x03\x04" + bytes(60) + archive(GOOD).bytes(), None, "")
    add("X11_index_dotdot_shard", "reject", _index_case('{"weight_map": {"w": "../real.bin"}}'), None,
        "not a plain file name", no_offset=True)
    add("X12_index_missing_tensor", "reject", _index_case('{"weight_map": {"w": "s1.bin", "zz": "s1.bin"}}'), None,
        "tensor 'zz' is listed in weight_map but shard 's1.bin' lacks it", no_offset=True)
    add("X13_index_unlisted_tensor", "reject", _index_case('{"weight_map": {"x": "s1.bin"}}'), None,
        "tensor 'w' in shard 's1.bin' is not in weight_map", no_offset=True)
    add("X14_index_ok", "accept", _index_case('{"metadata": {"total_size": 24}, "weight_map": {"w": "s1.bin"}}'))
    return cases


def d0_cd_off(data, ro, name):
    """Offset of name's central directory record in a real archive."""
    eocd = len(data) - 22
    z64 = struct.unpack_from("<Q", data, eocd - 20 + 8)[0]
    pos = struct.unpack_from("<Q", data, z64 + 48)[0]
    while True:
        nlen, xlen, clen = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46:pos + 46 + nlen] == name.encode():
            return pos
        pos += 46 + nlen + xlen + clen


def _with_entry(pkl, raw_name):
    z = Zip()
    z.add("archive/data.pkl", pkl)
    z.add("archive/data/0", F32x6)
    z.add(None, b"x", raw_name=raw_name)
    z.add("archive/version", b"3\n")
    return z.finish().bytes()


def _gap_archive():
    z = Zip()
    z.add("archive/data.pkl", GOOD)
    z.add("archive/data/0", F32x6)
    z.buf += b"hidden payload"
    z.add("archive/version", b"3\n")
    return z.finish().bytes()


def _index_case(index_text):
    def make(d):
        with open(os.path.join(d, "s1.bin"), "wb") as f:
            f.write(archive(GOOD).bytes())
        p = os.path.join(d, "pytorch_model.bin.index.json")
        with open(p, "w") as f:
            f.write(index_text)
        return p
    return make


# ---------------------------------------------------------------- runner


def write(d, data, name="case.bin"):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p




def run_case(base, cid, kind, payload, offset, pattern, canary, dump, no_offset):
    d = os.path.join(base, cid)
    os.mkdir(d)
    path = payload(d) if callable(payload) else write(d, payload)
    before = listing(d)
    start = time.time()
    if dump:
        out = os.path.join(base, cid + ".out")
        os.mkdir(out)
        cmd = [DUMP, "--dump", path, out]
    else:
        cmd = [MUSE, "inspect", path]
    p = subprocess.run(cmd, cwd=d, capture_output=True, timeout=300)
    took = time.time() - start
    why = None
    if canary and os.path.exists(os.path.join(d, CANARY)):
        why = "the payload ran: the canary file exists"
    why = why or verdict(p, kind, path, before, d, offset, pattern, need_offset=not no_offset)
    if why:
        print(f"FAIL: hostile/pytorch/{cid}: {why}")
        return False
    print(f"PASS: hostile/pytorch/{cid}" + (f" ({took:.1f}s)" if took > 1 else ""))
    return True


def main():
    if not os.path.exists(MUSE) or not os.path.exists(DUMP):
        print(f"SKIP: hostile/pytorch: {MUSE} or {DUMP} not built")
        return 0
    base = tempfile.mkdtemp(prefix="pt-hostile.", dir=os.environ.get("MUSE_TEST_TMP") or None)
    try:
        gen = os.path.join(base, "gen")
        os.mkdir(gen)
        cases = build_cases(real_files(gen))
        ok = all([run_case(base, *c) for c in cases])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
