#!/usr/bin/env python3
"""gen_iq_grids.py: writes quant/iq_grids.h, the lattice tables of ggml's IQ1/IQ2/IQ3 types, from llama.cpp's source.

usage: gen_iq_grids.py [--src GGML_SRC_DIR] [--out FILE | --check FILE]

The grids (iq2xxs_grid, iq2xs_grid, iq2s_grid, iq3xxs_grid, iq3s_grid, iq1s_grid) and the sign tables
(ksigns_iq2xs, kmask_iq2xs) are format constants: a GGUF file stores indices into them, so muse must hold the
very numbers ggml-common.h holds. They are read from GGML_SRC_DIR/ggml-common.h (default: the pinned tree
.cache/llama.cpp/src/ggml/src that scripts/build_llama_cpp.sh unpacks) and written as C arrays, with the
file's sha256 in the header comment.

The quantizers also need each grid point's level vector (ggml-quants.c keeps it a second time, packed, in
the kgrid_* tables of iq2xs_init_impl/iq3xs_init_impl). muse derives it from the grid itself: the level of a
byte is its rank among the distinct byte values of that grid. This script checks that derivation against
every kgrid_* table of GGML_SRC_DIR/ggml-quants.c and refuses to write anything if one differs, so the
header never needs the second copy.

--check FILE regenerates in memory and exits 1 (naming the first differing line) when FILE differs.
Exit status 2 when the sources cannot be read or parsed.
"""
import argparse
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SRC = os.path.join(ROOT, ".cache", "llama.cpp", "src", "ggml", "src")
DEFAULT_OUT = os.path.join(ROOT, "quant", "iq_grids.h")

# ggml name -> (C element type, count, muse name)
TABLES = [
    ("kmask_iq2xs", "uint8_t", 8, "muse_iq_kmask"),
    ("ksigns_iq2xs", "uint8_t", 128, "muse_iq_ksigns"),
    ("iq2xxs_grid", "uint64_t", 256, "muse_iq2xxs_grid"),
    ("iq2xs_grid", "uint64_t", 512, "muse_iq2xs_grid"),
    ("iq2s_grid", "uint64_t", 1024, "muse_iq2s_grid"),
    ("iq3xxs_grid", "uint32_t", 256, "muse_iq3xxs_grid"),
    ("iq3s_grid", "uint32_t", 512, "muse_iq3s_grid"),
    ("iq1s_grid", "uint64_t", 2048, "muse_iq1s_grid"),
]
# grid -> (bytes per point, bits per level, the kgrid table of ggml-quants.c that packs its levels)
KGRIDS = {
    "iq2xxs_grid": (8, 2, "kgrid_2bit_256"),
    "iq2xs_grid": (8, 2, "kgrid_2bit_512"),
    "iq2s_grid": (8, 2, "kgrid_2bit_1024"),
    "iq1s_grid": (8, 2, "kgrid_1bit_2048"),
    "iq3xxs_grid": (4, 3, "kgrid_256"),
    "iq3s_grid": (4, 3, "kgrid_512"),
}
DEFINES = ["NGRID_IQ1S", "IQ1S_DELTA", "IQ1M_DELTA"]


def die(msg, code=2):
    print(f"gen_iq_grids: {msg}", file=sys.stderr)
    sys.exit(code)


def ints(body):
    """The integer literals of a C initializer body (decimal or hex, optional minus sign)."""
    body = re.sub(r"//[^\n]*|/\*.*?\*/", " ", body, flags=re.S)
    return [int(t, 0) for t in re.findall(r"-?0[xX][0-9a-fA-F]+|-?\d+", body)]


def common_table(text, name, count):
    m = re.search(r"GGML_TABLE_BEGIN\(\s*\w+\s*,\s*%s\s*,[^)]*\)(.*?)GGML_TABLE_END\(\)" % re.escape(name), text, re.S)
    if not m:
        die(f"table {name} not found in ggml-common.h")
    vals = ints(m.group(1))
    if len(vals) != count:
        die(f"table {name}: {len(vals)} values, expected {count}")
    return vals


def kgrid_table(text, name, count):
    m = re.search(r"static\s+const\s+uint16_t\s+%s\s*\[[^\]]*\]\s*=\s*\{(.*?)\};" % re.escape(name), text, re.S)
    if not m:
        die(f"table {name} not found in ggml-quants.c")
    vals = ints(m.group(1))
    if len(vals) != count:
        die(f"table {name}: {len(vals)} values, expected {count}")
    return vals


def derived_levels(grid, nbytes):
    """Level vectors packed as ggml's kgrid tables pack them, from the rank of each (signed) byte."""
    def point(v):
        return [((v >> (8 * i)) & 0xFF) for i in range(nbytes)]
    signed = lambda b: b - 256 if b >= 128 else b  # noqa: E731  (iq1s_grid holds -1, 0, 1)
    values = sorted({signed(b) for v in grid for b in point(v)})
    rank = {b: i for i, b in enumerate(values)}
    return values, [[rank[signed(b)] for b in point(v)] for v in grid]


def generate(src):
    common_path, quants_path = os.path.join(src, "ggml-common.h"), os.path.join(src, "ggml-quants.c")
    try:
        with open(common_path, "rb") as f:
            common_raw = f.read()
        with open(quants_path, "rb") as f:
            quants_raw = f.read()
    except OSError as e:
        die(f"cannot read the llama.cpp source: {e}")
    common, quants = common_raw.decode(), quants_raw.decode()

    tables = {name: common_table(common, name, count) for name, _, count, _ in TABLES}
    defines = {}
    for d in DEFINES:
        m = re.search(r"#define\s+%s\s+(\S+)" % d, common)
        if not m:
            die(f"#define {d} not found in ggml-common.h")
        defines[d] = m.group(1)
    if int(defines["NGRID_IQ1S"]) != 2048:
        die(f"NGRID_IQ1S is {defines['NGRID_IQ1S']}, muse's block layout assumes 2048")

    # The derivation the C code relies on (q_iq_lattice.c grid_levels) must give ggml's kgrid tables.
    level_values = {}
    for grid, (nbytes, bits, kname) in KGRIDS.items():
        kgrid = kgrid_table(quants, kname, len(tables[grid]))
        values, levels = derived_levels(tables[grid], nbytes)
        for k, (lv, packed) in enumerate(zip(levels, kgrid)):
            want = [(packed >> (bits * i)) & ((1 << bits) - 1) for i in range(nbytes)]
            if lv != want:
                die(f"{grid}[{k}]: levels {lv} from the grid bytes, but {kname}[{k}] packs {want}")
        level_values[grid] = values

    out = []
    out.append("/* iq_grids.h: the lattice tables of ggml's IQ1/IQ2/IQ3 types (GENERATED by scripts/gen_iq_grids.py; do not edit). */")
    out.append("/*")
    out.append(" * Source: llama.cpp ggml/src/ggml-common.h, sha256")
    out.append(f" * {hashlib.sha256(common_raw).hexdigest()}")
    out.append(" * (the tree scripts/build_llama_cpp.sh pins). Level vectors of every grid point derive from the")
    out.append(" * grid bytes by rank; the generator checked that against ggml-quants.c's kgrid_* tables, sha256")
    out.append(f" * {hashlib.sha256(quants_raw).hexdigest()}.")
    out.append(" * Distinct byte values per grid, ascending (level l is the l-th):")
    for grid in KGRIDS:
        out.append(f" *   {grid}: {', '.join(str(v) for v in level_values[grid])}")
    out.append(" * Included by quant/q_iq_lattice.c only.")
    out.append(" */")
    out.append("#ifndef MUSE_IQ_GRIDS_H")
    out.append("#define MUSE_IQ_GRIDS_H")
    out.append("")
    out.append("#include <stdint.h>")
    out.append("")
    out.append(f"#define MUSE_NGRID_IQ1S {defines['NGRID_IQ1S']}")
    out.append(f"#define MUSE_IQ1S_DELTA {defines['IQ1S_DELTA']}")
    out.append(f"#define MUSE_IQ1M_DELTA {defines['IQ1M_DELTA']}")
    for name, ctype, count, muse in TABLES:
        out.append("")
        out.append(f"static const {ctype} {muse}[{count}] = {{")
        vals = tables[name]
        if ctype == "uint8_t":
            per, fmt = 16, lambda v: f"{v}"
        elif ctype == "uint32_t":
            per, fmt = 8, lambda v: f"0x{v:08x}"
        else:
            per, fmt = 4, lambda v: f"0x{v:016x}"
        for i in range(0, count, per):
            out.append("\t" + ", ".join(fmt(v) for v in vals[i:i + per]) + ",")
        out.append("};")
    out.append("")
    out.append("#endif")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=DEFAULT_SRC, help="ggml/src directory of the llama.cpp tree")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--out", default=None, help=f"where to write (default {os.path.relpath(DEFAULT_OUT, ROOT)})")
    g.add_argument("--check", default=None, help="compare with this file instead of writing")
    a = ap.parse_args()
    text = generate(a.src)
    if a.check:
        try:
            with open(a.check) as f:
                have = f.read()
        except OSError as e:
            die(f"cannot read {a.check}: {e}")
        if have != text:
            hl, wl = have.splitlines(), text.splitlines()
            for i in range(max(len(hl), len(wl))):
                if i >= len(hl) or i >= len(wl) or hl[i] != wl[i]:
                    die(f"{a.check} differs from the generated header at line {i + 1}", 1)
        return
    out = a.out or DEFAULT_OUT
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
