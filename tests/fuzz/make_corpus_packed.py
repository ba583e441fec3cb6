#!/usr/bin/env python3
"""make_corpus_packed.py: regenerates the packed-layout fuzz seeds in tests/fuzz/corpus/packed/ (valid AutoAWQ,
GPTQ (2/3/4/8 bits, act-order g_idx), compressed-tensors (sym and asym) layers in fuzz_packed.c's input framing,
plus malformed ones). Deterministic; the seeds total a few KB."""
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "packed")
SUFFIX = ["qweight", "qzeros", "scales", "g_idx", "weight_packed", "weight_scale", "weight_zero_point",
          "weight_shape", "weight_g_idx", "bias"]
DTYPE = {"i32": 0, "f16": 1, "bf16": 2, "f32": 3, "i64": 4, "u8": 5}
BITS = [2, 3, 4, 8]
KIND = {"awq": 0, "gptq": 1, "ct": 2}
rng = np.random.default_rng(0)


def tensor(suffix, dt, arr, flags=0, extra=b""):
    shape = list(arr.shape) + [0, 0]
    return (bytes([SUFFIX.index(suffix), DTYPE[dt], arr.ndim]) + struct.pack("<HH", shape[0], shape[1]) +
            bytes([flags]) + extra + arr.tobytes())


def seed(kind, bits, sym, group, tensors):
    return bytes([KIND[kind], BITS.index(bits), int(sym)]) + struct.pack("<hB", group, len(tensors)) + b"".join(tensors)


def words(vals, bits):
    """Packs values LSB first into 32-bit words, straddling words (GPTQ / compressed-tensors)."""
    n = (len(vals) * bits + 31) // 32
    w = [0] * n
    for t, v in enumerate(vals):
        bit = t * bits
        w[bit // 32] |= (int(v) << (bit % 32)) & 0xFFFFFFFF
        if bit % 32 + bits > 32:
            w[bit // 32 + 1] |= int(v) >> (32 - bit % 32)
    return np.array(w, dtype=np.uint32).view(np.int32)


def scales(G, N, dt="f16"):
    s = (rng.random((G, N)) * 0.1 + 0.01)
    return s.astype({"f16": np.float16, "f32": np.float32}[dt])


def awq(K=32, N=16, g=16):
    q = rng.integers(0, 16, (K, N)).astype(np.uint32)
    z = rng.integers(0, 16, (K // g, N)).astype(np.uint32)
    pack = lambda a: sum(a[:, i::8] << (4 * j) for j, i in enumerate([0, 2, 4, 6, 1, 3, 5, 7])).astype(np.uint32)
    return seed("awq", 4, False, g, [tensor("qweight", "i32", pack(q).view(np.int32)),
                                     tensor("qzeros", "i32", pack(z).view(np.int32)),
                                     tensor("scales", "f16", scales(K // g, N))])


def gptq(bits=4, K=32, N=32, g=16, act_order=False, sdt="f16"):
    G = (K + g - 1) // g
    q = rng.integers(0, 1 << bits, (N, K))
    qw = np.stack([words(q[n], bits) for n in range(N)], 1)  # [K*b/32, N]
    z = rng.integers(0, (1 << bits) - 1, (G, N))  # stored z-1, never 2^b-1
    qz = np.stack([words(z[g_], bits) for g_ in range(G)])
    gi = np.arange(K) // g
    if act_order:
        gi = rng.permutation(gi)
    return seed("gptq", bits, False, g, [tensor("qweight", "i32", qw), tensor("qzeros", "i32", qz),
                                         tensor("scales", sdt, scales(G, N, sdt)),
                                         tensor("g_idx", "i32", gi.astype(np.int32))])


def ct(bits=4, K=32, N=16, g=16, sym=True):
    G = (K + g - 1) // g
    q = rng.integers(0, 1 << bits, (N, K))
    wp = np.stack([words(q[n], bits) for n in range(N)])
    ts = [tensor("weight_shape", "i64", np.array([N, K], dtype=np.int64)), tensor("weight_packed", "i32", wp),
          tensor("weight_scale", "f16", scales(N, G))]
    if not sym:
        z = rng.integers(0, 1 << bits, (G, N))
        ts.append(tensor("weight_zero_point", "i32", np.stack([words(z[g_], bits) for g_ in range(G)], 1)))
    return seed("ct", bits, sym, g, ts)


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "valid-awq": awq(),
        "valid-awq-per-channel": awq(K=16, N=8, g=16)[:3] + struct.pack("<h", -1) + awq(K=16, N=8, g=16)[5:],
        "valid-gptq-4": gptq(),
        "valid-gptq-3": gptq(bits=3),
        "valid-gptq-2": gptq(bits=2, K=64, N=16, g=32),
        "valid-gptq-8": gptq(bits=8, K=8, N=4, g=4, sdt="f32"),
        "valid-gptq-act-order": gptq(act_order=True),
        "valid-ct-sym-4": ct(),
        "valid-ct-asym-4": ct(sym=False),
        "valid-ct-asym-3": ct(bits=3, K=40, N=8, g=8, sym=False),
        "valid-ct-8": ct(bits=8, K=12, N=4, g=4),
    }
    # Malformed: each a regression for a class of mistake the reader must reject with one line.
    bad_gidx = bytearray(gptq())
    bad_gidx[-4:] = struct.pack("<i", 99)
    seeds["bad-gptq-g-idx-range"] = bytes(bad_gidx)
    # GPTQ with zero in_features (empty g_idx): the group count must not divide by zero.
    seeds["bad-gptq-empty"] = seed("gptq", 4, False, 16, [tensor("g_idx", "i32", np.zeros(0, np.int32)),
                                                          tensor("scales", "f16", np.zeros((1, 8), np.float16))])
    seeds["bad-gptq-empty-per-channel"] = seed("gptq", 4, False, -1, [
        tensor("g_idx", "i32", np.zeros(0, np.int32)), tensor("scales", "f16", np.zeros((1, 8), np.float16)),
        tensor("qweight", "i32", np.zeros((0, 8), np.int32)), tensor("qzeros", "i32", np.zeros((1, 1), np.int32))])
    seeds["bad-ct-shape"] = seed("ct", 4, True, 16, [tensor("weight_shape", "i64", np.array([-1, 32], np.int64))])
    seeds["bad-awq-short"] = awq()[:-7]
    seeds["bad-awq-nbytes"] = seed("awq", 4, False, 16, [
        tensor("qweight", "i32", np.zeros((32, 2), np.int32), flags=1, extra=b"\x80")])
    # Dimensions whose products wrap around 2^64 to the byte count actually present.
    # qweight [2^63, 2] with no bytes: 2^63 * 2 wraps to 0 elements.
    seeds["bad-awq-overflow"] = seed("awq", 4, False, 16, [bytes([0, DTYPE["i32"], 2]) + struct.pack("<HH", 2, 2) +
                                                           bytes([2])])
    for name in list(os.listdir(OUT)):
        os.unlink(os.path.join(OUT, name))
    for name, data in seeds.items():
        open(os.path.join(OUT, name), "wb").write(data)
    print(f"{len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes -> {OUT}")


if __name__ == "__main__":
    main()
