#!/usr/bin/env python3
"""make_sharded_fixture.py: writes a synthetic HF-style sharded safetensors checkpoint with N tensors (for benchmarks).

Usage: make_sharded_fixture.py DIR [--tensors 100000] [--shards 8] [--elems 16]

Layout as transformers writes it: model-0000i-of-0000S.safetensors (headers in the reference writer's order:
descending dtype alignment, then name; padded with spaces to 8 bytes) and model.safetensors.index.json
(indent 2, sorted keys, metadata.total_size). Tensors alternate BF16 weights and F32 norms with small shapes, so
100,000 tensors take a few MB. Standard library only; deterministic output.
"""
import argparse
import json
import os
import struct
import sys

# the reference's dtype enum order (higher = earlier in a file)
RANK = {"BOOL": 0, "U8": 4, "I8": 5, "I16": 11, "U16": 12, "F16": 13, "BF16": 14, "I32": 15, "U32": 16,
        "F32": 17, "F64": 19, "I64": 20, "U64": 21}
SIZE = {"BF16": 2, "F16": 2, "F32": 4}


def tensor_list(n, elems):
    out = []
    for i in range(n):
        layer, k = divmod(i, 10)
        if k < 7:
            name = f"model.layers.{layer}.{['q', 'k', 'v', 'o', 'gate', 'up', 'down'][k]}_proj.weight"
            out.append((name, "BF16", [elems, (i % 7) + 1]))
        elif k < 9:
            name = f"model.layers.{layer}.{['input', 'post_attention'][k - 7]}_layernorm.weight"
            out.append((name, "F32", [elems]))
        else:
            out.append((f"model.layers.{layer}.extra_bias", "F16", [elems]))
    return out


def write_shard(path, tensors):
    tensors = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0].encode()))
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, dt, shape in tensors:
        nb = SIZE[dt]
        for d in shape:
            nb *= d
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        blobs.append(bytes((off + j) & 0x7F for j in range(nb)))
        off += nb
    h = json.dumps(hdr, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return off


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--tensors", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--elems", type=int, default=16, help="outer dimension of every tensor")
    a = ap.parse_args()
    if a.tensors < 1 or a.shards < 1:
        sys.exit("make_sharded_fixture.py: --tensors and --shards must be positive")
    os.makedirs(a.dir, exist_ok=True)
    ts = tensor_list(a.tensors, a.elems)
    per = -(-len(ts) // a.shards)
    groups = [ts[i:i + per] for i in range(0, len(ts), per)]
    weight_map, total = {}, 0
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        total += write_shard(os.path.join(a.dir, fname), g)
        weight_map.update({name: fname for name, _, _ in g})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"{a.dir}: {len(ts)} tensors in {len(groups)} shards, {total} data bytes")


if __name__ == "__main__":
    main()
