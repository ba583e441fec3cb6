"""run_hf2gguf.py: bad HF checkpoints against `muse convert HF_DIR OUT.gguf` (issue 3, "must show" 6).

Bases are tiny checkpoints from scripts/make_tiny_models.py (a DeepSeek-V3 with block-scaled FP8 weights, also
split into two shards with an index), generated in a temp dir, never committed. Each case damages a copy: a
missing shard, an index naming a tensor no shard has, config.json disagreeing with the tensors (vocab, experts,
MLA head sizes, layer count, FP8 block size), truncated tensor data, an FP8 weight without its scale, a scale
without its weight or of the wrong grid, experts of different shapes, FP8 scales that overflow F16 in a stacked
expert and in the transposed MLA attn_k_b (--outtype f16). Each must exit 1 with exactly one
"muse: error: ..." line naming the file (and the tensor where one is at fault), no sanitizer report, and no output
file (OUT is inside the case directory, which must be unchanged). The undamaged bases must convert (exit 0).
Prints one PASS/FAIL/SKIP line per case.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from hostile_check import listing, verdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def load(d, f="model.safetensors"):
    from safetensors.torch import load_file
    return load_file(os.path.join(d, f))


def save(d, sd, f="model.safetensors"):
    from safetensors.torch import save_file
    save_file(sd, os.path.join(d, f), metadata={"format": "pt"})


def shard(d):
    """Splits d/model.safetensors into two shards (layer 0 and the rest / layer 1) with an index."""
    sd = load(d)
    parts = {"model-00001-of-00002.safetensors": {}, "model-00002-of-00002.safetensors": {}}
    for n, t in sd.items():
        parts["model-00001-of-00002.safetensors" if ".layers.0." in n else "model-00002-of-00002.safetensors"][n] = t
    wm = {}
    for f, p in parts.items():
        save(d, p, f)
        wm.update({n: f for n in p})
    os.remove(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)


def edit_cfg(**kw):
    def f(d):
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        for k, v in kw.items():
            if isinstance(v, dict) and isinstance(c.get(k), dict):
                c[k].update(v)
            else:
                c[k] = v
        json.dump(c, open(p, "w"))
    return f


def edit_st(fn, f="model.safetensors"):
    def g(d):
        sd = load(d, f)
        fn(sd)
        save(d, sd, f)
    return g


def drop(name):
    return edit_st(lambda sd: sd.pop(name))


def set_tensor(name, make):
    def f(sd):
        sd[name] = make(sd)
    return edit_st(f)


def truncate(f, n):
    def g(d):
        p = os.path.join(d, f)
        os.truncate(p, os.path.getsize(p) - n)
    return g


def index_add(name):
    def g(d):
        p = os.path.join(d, "model.safetensors.index.json")
        ix = json.load(open(p))
        ix["weight_map"][name] = "model-00001-of-00002.safetensors"
        json.dump(ix, open(p, "w"))
    return g


L0 = "model.layers.0."
L1 = "model.layers.1."

# (name, base, damage, file the message must name, regex the message must match, needs a byte offset)
CASES = [
    ("missing_shard", "sharded", lambda d: os.remove(os.path.join(d, "model-00002-of-00002.safetensors")),
     "model-00002-of-00002.safetensors", None, False),
    ("index_names_missing_tensor", "sharded", index_add(L0 + "mlp.extra.weight"),
     "model.safetensors.index.json", r"mlp\.extra\.weight", False),
    ("cfg_vocab_size", "fp8", edit_cfg(vocab_size=401), "model", r"vocab_size 401", False),
    ("cfg_hidden_size", "fp8", edit_cfg(hidden_size=128), "model", r"hidden_size 128", False),
    ("cfg_more_experts", "fp8", edit_cfg(n_routed_experts=8), "model", r"experts", False),
    ("cfg_fewer_experts", "fp8", edit_cfg(n_routed_experts=2), "model", r"expert number not below", False),
    ("cfg_v_head_dim", "fp8", edit_cfg(v_head_dim=16), "model", r"kv_b_proj\.weight.*heads", False),
    ("cfg_more_layers", "fp8", edit_cfg(num_hidden_layers=3), "model", r"model\.layers\.2\..*is missing", False),
    ("cfg_fewer_layers", "fp8", edit_cfg(num_hidden_layers=1), "model", r"not below num_hidden_layers", False),
    ("cfg_block_size_zero", "fp8", edit_cfg(quantization_config={"weight_block_size": [0, 128]}), "config.json",
     r"weight_block_size", False),
    ("cfg_block_size_other", "fp8", edit_cfg(quantization_config={"weight_block_size": [64, 64]}), "model",
     r"weight_scale_inv.*blocks", False),
    ("truncated_data", "fp8", truncate("model.safetensors", 100), "model.safetensors", None, True),
    ("truncated_shard", "sharded", truncate("model-00002-of-00002.safetensors", 7),
     "model-00002-of-00002.safetensors", None, True),
    ("fp8_without_scale", "fp8", drop(L1 + "self_attn.kv_b_proj.weight_scale_inv"), "model",
     r"'model\.layers\.1\.self_attn\.kv_b_proj\.weight'.*F8_E4M3 weight without its scale", False),
    ("fp8_expert_without_scale", "fp8", drop(L1 + "mlp.experts.2.up_proj.weight_scale_inv"), "model",
     r"experts\.2\.up_proj\.weight'.*without its scale", False),
    ("scale_without_weight", "fp8", drop(L0 + "self_attn.o_proj.weight"), "model",
     r"o_proj\.weight_scale_inv' scales a weight", False),
    ("scale_wrong_grid", "fp8", set_tensor(L0 + "mlp.up_proj.weight_scale_inv",
                                           lambda sd: sd[L0 + "mlp.up_proj.weight_scale_inv"][:1]),
     "model", r"up_proj\.weight_scale_inv.*needs 2 x 2", False),
    ("expert_shape_differs", "fp8", set_tensor(L1 + "mlp.experts.1.down_proj.weight",
                                               lambda sd: sd[L1 + "mlp.experts.1.down_proj.weight"][:128]),
     "model", r"experts\.1\.down_proj\.weight", False),
    ("missing_expert", "fp8", lambda d: (drop(L1 + "mlp.experts.3.gate_proj.weight")(d),
                                         drop(L1 + "mlp.experts.3.gate_proj.weight_scale_inv")(d)),
     "model", r"'model\.layers\.1\.mlp\.experts\.3\.gate_proj\.weight' is missing", False),
    ("f16_overflow_expert", "fp8", set_tensor(L1 + "mlp.experts.2.up_proj.weight_scale_inv",
                                              lambda sd: sd[L1 + "mlp.experts.2.up_proj.weight_scale_inv"] * 1e7),
     "model.safetensors", r"experts\.2\.up_proj\.weight': element \d+ overflows F16", False),
    ("f16_overflow_kv_b", "fp8", set_tensor(L0 + "self_attn.kv_b_proj.weight_scale_inv",
                                            lambda sd: sd[L0 + "self_attn.kv_b_proj.weight_scale_inv"] * 1e7),
     "model.safetensors", r"kv_b_proj\.weight': element \d+ overflows F16", False),
    ("missing_kv_b", "fp8", lambda d: (drop(L0 + "self_attn.kv_b_proj.weight")(d),
                                       drop(L0 + "self_attn.kv_b_proj.weight_scale_inv")(d)),
     "model", r"kv_b_proj\.weight' is missing", False),
]


# Cases converted with an explicit type (the damage only shows in F16).
ARGS = {"f16_overflow_expert": ["--outtype", "f16"], "f16_overflow_kv_b": ["--outtype", "f16"]}


def run(d, out, extra=()):
    return subprocess.run([MUSE, "convert", d, out, "-q", *extra], capture_output=True, timeout=300)


def main():
    try:
        import make_tiny_models
    except Exception as e:  # noqa: BLE001
        print(f"SKIP: hostile/hf2gguf: fixture maker unavailable ({e})")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory(dir=os.environ.get("MUSE_TEST_TMP")) as tmp:
        bases = {"fp8": os.path.join(tmp, "base-fp8", "model")}
        make_tiny_models.make_arch(bases["fp8"], "deepseek_v3", fp8=True)
        bases["sharded"] = os.path.join(tmp, "base-sharded", "model")
        shutil.copytree(bases["fp8"], bases["sharded"])
        shard(bases["sharded"])
        for b, src in bases.items():
            d = os.path.join(tmp, "accept-" + b)
            shutil.copytree(os.path.dirname(src), d)
            p = run(os.path.join(d, "model"), os.path.join(d, "out.gguf"))
            ok = p.returncode == 0 and os.path.exists(os.path.join(d, "out.gguf"))
            print(f"{'PASS' if ok else 'FAIL'}: hostile/hf2gguf/accept_{b}" +
                  ("" if ok else f": exit {p.returncode}: {p.stderr.decode(errors='replace')[:300]}"))
            failed += not ok
        for name, base, damage, fname, pattern, need_offset in CASES:
            d = os.path.join(tmp, name)
            shutil.copytree(os.path.dirname(bases[base]), d)
            m = os.path.join(d, "model")
            damage(m)
            before = listing(d)
            p = run(m, os.path.join(d, "out.gguf"), ARGS.get(name, ()))
            why = verdict(p, "reject", os.path.join(m, fname), before, d, pattern=pattern, need_offset=need_offset)
            print(f"PASS: hostile/hf2gguf/{name}" if why is None else f"FAIL: hostile/hf2gguf/{name}: {why}")
            failed += why is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
