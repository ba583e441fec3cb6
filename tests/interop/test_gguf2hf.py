"""test_gguf2hf.py: `muse convert IN.gguf OUT_DIR` (GGUF -> HF), sharded GGUF output, and safetensors resharding.

The real SmolLM2-135M-Instruct GGUF (Q4_1 blocks, a Q8_0 embedding, F32 norms) goes GGUF -> HF -> GGUF:
  * transformers loads muse's HF directory (AutoModelForCausalLM, AutoTokenizer, offline) and its logits are
    compared with llama.cpp's (tests/oracle llama_logits) on the original GGUF and on the F32 round-trip GGUF.
    Measured (this machine, 12 fixed token ids): transformers vs llama.cpp on the F32 GGUF 9.1e-05 max abs
    (logits up to 31): two float32 implementations of one model. vs llama.cpp on the Q4_1 original: 1.40 max
    abs, top-1 agreement 12/12: llama.cpp multiplies Q4_1 weights by activations it rounds to Q8_1, which
    transformers does not; the same 1.40 appears between llama.cpp on the Q4_1 file and llama.cpp on the F32
    round trip, which hold bit-identical weight values, so the whole gap is llama.cpp's activation rounding.
    Tolerances: 1e-3 for F32, 3.0 plus equal top-1 for Q4_1.
  * the tokenizer muse rebuilds gives llama.cpp's token ids for a few texts (specials, digits, unicode).
  * HF -> GGUF again (`muse convert`): same tensor names, order and shapes; every tensor is F32 and equal, bit for
    bit, to gguf-py's dequantization of the original one. Metadata equal except, each justified:
      M1 general.file_type 3 (MOSTLY_Q4_1) -> 0 (ALL_F32): the weights are F32 now.
      M2 tokenizer.ggml.add_eos_token absent -> false: current converters write it whenever add_bos_token is
         written (both muse's and convert_hf_to_gguf.py); the original came from an older converter.
      M3 general.* keys of the model card (name, basename, finetune, organization, license, languages,
         size_label): muse writes them into README.md's front matter, where gguf-py's Metadata reads them;
         convert_hf_to_gguf.py on the same directory gives them back (checked below, which also compares every
         other key). muse's own HF -> GGUF derives them from the directory name unless it reads model cards;
         the test accepts either, but where the key is present from a card it must be equal.
      M4 llama.attention.key_length/value_length absent -> 64: the HF config has no head_dim, so both converters
         write LlamaConfig's default, hidden_size / num_attention_heads (issue 12 item 8); the original GGUF came
         from a converter that read config.json without transformers' defaults.
  * F32 GGUF -> HF -> GGUF is exact: tensor bytes and all metadata identical.
  * llama-quantize Q8_0 (and Q4_K_M, Q5_1) GGUF -> HF: every tensor equal to gguf-py's dequantize of the GGUF
    tensor (after the inverse Q/K permutation, written here independently with numpy reshapes).
Sharded GGUF (--shard-size): the same split points, tensor infos, data bytes and split.* values and types as
llama-gguf-split --split --split-max-size; the only byte difference is the order of split.count and
split.tensors.count among the keys (muse follows gguf-py's order, which tests/interop/test_gguf.py pins byte for
byte). llama.cpp loads the shards (logits bit-identical to the unsplit file) and llama-gguf-split --merge gives the
original tensors back. Sharded input converts to the same HF directory as the unsplit file.
Safetensors -> safetensors: resharding, merging and dtype change read back equal by the safetensors package,
config/tokenizer files copied beside the weights. Every arch table (llama incl. tied, Llama-3 rope and BF16; mistral,
qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe) on tiny random checkpoints: HF -> GGUF -> HF gives the original tensors
and bit-identical transformers logits; deepseek_v3 too (F32, and BF16 with YaRN): kv_b_proj is rebuilt from
attn_k_b/attn_v_b, also from llama.cpp's own converter's GGUF.
SentencePiece GGUFs (muse's and convert_hf_to_gguf.py's) give tokenizer.json (merges from the scores) and, where
SentencePiece accepts the vocabulary, tokenizer.model: AutoTokenizer's ids equal the original's on tokenizer_strings.py.
Streaming: the release binary's peak RSS on SmolLM2 stays below its largest output tensor. Refusals: unknown architecture, a block type muse cannot decode,
an output directory that exists with files in it: one error line, exit 1 (2 for the last), nothing written.
"""
import functools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import llamacpp  # noqa: E402

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize  # noqa: E402

MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))
TOKENS = [1, 504, 3458, 282, 4649, 314, 7042, 30, 216, 4, 12, 330]


def smol_path():
    base = os.path.join(ROOT, ".venv", "lib")
    for dp, _, fs in os.walk(base):
        for f in fs:
            if f.startswith("SmolLM2-135M") and f.endswith(".gguf"):
                return os.path.join(dp, f)
    return None


def run_muse(*args, check=True):
    p = subprocess.run([MUSE, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"muse {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
    return p


@functools.lru_cache(maxsize=None)
def reader(path):
    """gguf-py parses a 49k-token vocabulary in Python (seconds of CPU): each file is opened once."""
    return gguf.GGUFReader(path)


def meta(path):
    """{key: (types, value)} without the GGUF.* header pseudo-keys, in file order."""
    r = reader(str(path))
    out = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        out[k] = (tuple(t.name for t in f.types), f.contents())
    return out


def tensors(path):
    return {t.name: t for t in reader(str(path)).tensors}


def hf_from_ggml_rows(w, n_head):
    """ggml interleaved rows -> HF rotate-half rows (convert_hf_to_gguf.py's permute, undone)."""
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def smol():
    p = smol_path()
    if not p:
        pytest.skip("SmolLM2-135M GGUF not found in the venv")
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf2hf")


@pytest.fixture(scope="module")
def hf_dir(smol, work):
    out = work / "a" / "smol"
    out.parent.mkdir()
    run_muse("convert", "-q", smol, out)
    return out


@pytest.fixture(scope="module")
def rt_gguf(hf_dir, work):
    out = work / "rt.gguf"
    run_muse("convert", "-q", hf_dir, out)
    return out


def test_hf_dir_layout(hf_dir):
    names = sorted(os.listdir(hf_dir))
    assert names == ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    cfg = json.load(open(hf_dir / "config.json"))
    want = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
            "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30,
            "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192, "vocab_size": 49152,
            "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
            "torch_dtype": "float32"}
    assert {k: cfg.get(k) for k in want} == want
    tc = json.load(open(hf_dir / "tokenizer_config.json"))
    assert tc["bos_token"] == "<|im_start|>" and tc["eos_token"] == "<|im_end|>" and tc["add_bos_token"] is False
    assert tc["chat_template"] == meta(smol_path())["tokenizer.chat_template"][1]


def test_transformers_logits_match_llamacpp(hf_dir, rt_gguf, smol):
    llamacpp.require()
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True, dtype=torch.float32)
    with torch.no_grad():
        hf = m(torch.tensor([TOKENS])).logits[0].numpy()
    f32 = llamacpp.logits(str(rt_gguf), TOKENS)
    q41 = llamacpp.logits(smol, TOKENS)
    d_f32 = float(np.abs(hf - f32).max())
    d_q41 = float(np.abs(hf - q41).max())
    print(f"max |transformers - llama.cpp|: F32 GGUF {d_f32:.3g}, Q4_1 GGUF {d_q41:.3g}")
    assert d_f32 < 1e-3
    assert d_q41 < 3.0
    assert (hf.argmax(-1) == q41.argmax(-1)).all()
    # The Q4_1 gap is llama.cpp's own activation rounding: the same between its two runs on equal weights.
    assert abs(float(np.abs(q41 - f32).max()) - d_q41) < 0.1


def test_tokenizer_matches_llamacpp(hf_dir, smol):
    llamacpp.require()
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    for text in ["The capital of France is Paris. 12345 dogs!", "<|im_start|>user\nHi there<|im_end|>\n",
                 "  spaces\tand\nnewlines  ", "naïve café — 東京 🙂"]:
        assert tok(text)["input_ids"] == llamacpp.tokenize(smol, text), text
    assert tok.decode(tok("héllo wörld 42")["input_ids"]) == "héllo wörld 42"


def test_roundtrip_gguf_tensors_and_metadata(smol, rt_gguf):
    a, b = tensors(smol), tensors(rt_gguf)
    assert list(a) == list(b)
    for name, t in a.items():
        u = b[name]
        assert u.tensor_type == gguf.GGMLQuantizationType.F32, name
        assert list(u.shape) == list(t.shape), name
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        assert np.array_equal(x.view(np.uint32), np.asarray(u.data).reshape(-1).view(np.uint32)), name
    ma, mb = meta(smol), meta(rt_gguf)
    assert ma.pop("general.file_type")[1] == 3 and mb.pop("general.file_type")[1] == 0  # M1
    assert "tokenizer.ggml.add_eos_token" not in ma and mb.pop("tokenizer.ggml.add_eos_token")[1] is False  # M2
    # M4: LlamaConfig's head_dim default (hidden_size / heads) -> key/value_length, as convert_hf_to_gguf.py writes
    assert mb.pop("llama.attention.key_length")[1] == 64 and mb.pop("llama.attention.value_length")[1] == 64
    card = ["general.name", "general.basename", "general.finetune", "general.organization", "general.license",
            "general.languages", "general.size_label"]
    from_card = "general.license" in mb  # M3: muse's HF -> GGUF read README.md
    for k in card:
        va, vb = ma.pop(k, None), mb.pop(k, None)
        if from_card:
            assert va == vb, k
    assert ma == mb


def test_reference_converter_reads_muse_hf_dir(hf_dir, smol, work):
    """convert_hf_to_gguf.py on muse's directory: config.json, tokenizer files and model card give the original keys."""
    llamacpp.require()
    out = work / "ref.gguf"
    llamacpp.convert_hf_to_gguf(str(hf_dir), str(out), "f32")
    ma, mb = meta(smol), meta(out)
    assert mb.pop("general.file_type")[1] == 0 and ma.pop("general.file_type")[1] == 3  # M1
    assert mb.pop("tokenizer.ggml.add_eos_token")[1] is False  # M2
    # transformers 5's LlamaConfig always has head_dim, which convert_hf_to_gguf.py writes as key/value_length.
    assert mb.pop("llama.attention.key_length")[1] == 64 and mb.pop("llama.attention.value_length")[1] == 64
    assert ma == mb
    ta, tb = tensors(smol), tensors(out)
    assert sorted(ta) == sorted(tb)


def test_f32_gguf_roundtrip_exact(rt_gguf, work):
    """F32 GGUF -> HF -> GGUF: the same bytes for every tensor and the same metadata (dirs share a base name)."""
    hf = work / "b" / "smol"
    hf.parent.mkdir()
    run_muse("convert", "-q", rt_gguf, hf)
    again = work / "again.gguf"
    run_muse("convert", "-q", hf, again)
    assert meta(rt_gguf) == meta(again)
    a, b = tensors(rt_gguf), tensors(again)
    assert list(a) == list(b)
    for n in a:
        assert a[n].tensor_type == b[n].tensor_type and bytes(a[n].data) == bytes(b[n].data), n


@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_K_M", "Q5_1"])
def test_quantized_gguf_dequantized_like_gguf_py(rt_gguf, work, ftype):
    llamacpp.require()
    from safetensors.numpy import load_file
    q = work / f"smol-{ftype}.gguf"
    if not q.exists():
        llamacpp.llama_quantize(str(rt_gguf), str(q), ftype)
    out = work / f"hf-{ftype}"
    run_muse("convert", "-q", q, out)
    hf = load_file(str(out / "model.safetensors"))
    m = meta(q)
    n_head, n_kv = m["llama.attention.head_count"][1], m["llama.attention.head_count_kv"][1]
    hf_name = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "attn_norm": "input_layernorm",
               "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
               "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    types = set()
    ts = tensors(q)
    assert len(hf) == len(ts)
    for name, t in ts.items():
        parts = name.split(".")
        if parts[0] == "blk":
            hn = f"model.layers.{parts[1]}.{hf_name[parts[2]]}.weight"
        else:
            hn = hf_name[parts[0]] + ".weight"
        x = dequantize(t.data, t.tensor_type).astype(np.float32)
        if parts[-2] == "attn_q":
            x = hf_from_ggml_rows(x, n_head)
        elif parts[-2] == "attn_k":
            x = hf_from_ggml_rows(x, n_kv)
        y = hf[hn]
        assert y.dtype == np.float32 and y.shape == x.shape, name
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), f"{name} ({t.tensor_type.name})"
        types.add(t.tensor_type.name)
    assert ftype.split("_")[0] + "_" + ftype.split("_")[1] in types or ftype in types


def read_data_section(path):
    r = reader(str(path))
    start = min(t.data_offset for t in r.tensors)
    with open(path, "rb") as f:
        f.seek(start)
        return start, f.read()


def test_sharded_gguf_like_gguf_split(rt_gguf, work):
    llamacpp.require()
    d = work / "split"
    d.mkdir()
    run_muse("convert", "-q", rt_gguf, d / "m.gguf", "--shard-size", "200M")
    ours = sorted(p.name for p in d.iterdir())
    assert ours == ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"]
    llamacpp.run([llamacpp.tool("llama-gguf-split"), "--split", "--split-max-size", "200M", rt_gguf, d / "ref"])
    for i in range(1, 4):
        a, b = d / f"m-{i:05d}-of-00003.gguf", d / f"ref-{i:05d}-of-00003.gguf"
        ma, mb = meta(a), meta(b)
        assert ma == mb  # same keys, types and values (dict equality ignores the order of split.* keys)
        assert [k for k in ma if not k.startswith("split.")] == [k for k in mb if not k.startswith("split.")]
        assert ma["split.no"] == (("UINT16",), i - 1) and ma["split.count"] == (("UINT16",), 3)
        assert ma["split.tensors.count"] == (("INT32",), 272)
        ta, tb = reader(str(a)).tensors, reader(str(b)).tensors
        assert [(t.name, t.tensor_type, list(t.shape), t.data_offset) for t in ta] == \
               [(t.name, t.tensor_type, list(t.shape), t.data_offset) for t in tb]
        assert read_data_section(a) == read_data_section(b)
    # llama.cpp loads the shards: same logits as the single file, bit for bit.
    assert np.array_equal(llamacpp.logits(str(d / "m-00001-of-00003.gguf"), TOKENS[:4]),
                          llamacpp.logits(str(rt_gguf), TOKENS[:4]))
    merged = d / "merged.gguf"
    llamacpp.run([llamacpp.tool("llama-gguf-split"), "--merge", d / "m-00001-of-00003.gguf", merged])
    a, b = tensors(rt_gguf), tensors(merged)
    assert list(a) == list(b)
    for n in a:
        assert bytes(a[n].data) == bytes(b[n].data), n
    mr = meta(rt_gguf)
    mm = {k: v for k, v in meta(merged).items() if not k.startswith("split.")}
    assert mr == mm
    # Sharded input: the same HF directory as from the single file.
    h1, h2 = work / "c" / "smol", work / "d" / "smol"
    for h, src in ((h1, rt_gguf), (h2, d / "m-00001-of-00003.gguf")):
        h.parent.mkdir()
        run_muse("convert", "-q", src, h)
    for f in sorted(os.listdir(h1)):
        if f != "README.md":  # names the source file
            assert open(h1 / f, "rb").read() == open(h2 / f, "rb").read(), f


def test_hf_shards_with_index(rt_gguf, work):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    out = work / "sharded-hf"
    run_muse("convert", "-q", rt_gguf, out, "--shard-size", "50MB", "--outtype", "bf16")
    files = sorted(os.listdir(out))
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) >= 4 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    idx = json.load(open(out / "model.safetensors.index.json"))
    seen = {}
    for s in shards:
        part = load_file(str(out / s))
        # save_pretrained's rule: a shard stays under the limit unless one tensor alone exceeds it
        assert sum(v.numel() * v.element_size() for v in part.values()) <= 50e6 or len(part) == 1, s
        for k, v in part.items():
            assert idx["weight_map"][k] == s
            seen[k] = v
    assert len(seen) == 272 and all(v.dtype == torch.bfloat16 for v in seen.values())
    assert idx["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in seen.values())
    assert json.load(open(out / "config.json"))["torch_dtype"] == "bfloat16"


def make_st_dir(d, torch):
    from safetensors.torch import save_file
    d.mkdir()
    g = torch.Generator().manual_seed(3)
    ts = {f"layer.{i}.w": torch.randn(64, 96, generator=g) for i in range(12)}
    ts["emb"] = torch.randn(128, 64, generator=g).to(torch.bfloat16)
    ts["ids"] = torch.arange(10, dtype=torch.int64)
    save_file(ts, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps({"model_type": "x", "torch_dtype": "float32", "hidden_size": 64}))
    (d / "tokenizer.json").write_text("{}")
    (d / "chat_template.jinja").write_text("{{ x }}")
    return ts


def test_safetensors_reshard_merge_cast(work):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    src = work / "st-src"
    ts = make_st_dir(src, torch)
    sh = work / "st-sharded"
    run_muse("convert", "-q", src, sh, "--shard-size", "60KB")
    shards = sorted(f for f in os.listdir(sh) if f.endswith(".safetensors"))
    assert len(shards) > 3
    got = {}
    for s in shards:
        got.update(load_file(str(sh / s)))
    assert set(got) == set(ts) and all(torch.equal(got[k], ts[k]) and got[k].dtype == ts[k].dtype for k in ts)
    for f in ("config.json", "tokenizer.json", "chat_template.jinja"):
        assert (sh / f).read_bytes() == (src / f).read_bytes()
    # Merge the shards back into one file: the same tensors.
    mg = work / "st-merged"
    run_muse("convert", "-q", sh, mg)
    assert sorted(os.listdir(mg)) == ["chat_template.jinja", "config.json", "model.safetensors", "tokenizer.json"]
    m = load_file(str(mg / "model.safetensors"))
    assert all(torch.equal(m[k], ts[k]) for k in ts)
    # dtype change: floats follow --outtype like torch's cast, integers stay; config.json's dtype follows.
    bf = work / "st-bf16"
    run_muse("convert", "-q", sh / "model.safetensors.index.json", bf, "--outtype", "bf16")
    b = load_file(str(bf / "model.safetensors"))
    for k, v in ts.items():
        want = v if not v.is_floating_point() else v.to(torch.bfloat16)
        assert b[k].dtype == want.dtype and torch.equal(b[k], want), k
    cfg = json.load(open(bf / "config.json"))
    assert cfg["torch_dtype"] == "bfloat16" and cfg["hidden_size"] == 64


def write_gguf(path, arch, tensors_, kv=()):
    w = gguf.GGUFWriter(str(path), arch)
    for k, v in kv:
        w.add_uint32(k, v)
    for name, data, raw in tensors_:
        if raw is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check_refused(p, out, code=1):
    assert p.returncode == code, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("muse: error: "), p.stderr
    assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(os.path.dirname(out)) if ".muse-" in f]  # no temporary directory left


def test_refusals(work):
    d = work / "bad"
    d.mkdir()
    x = np.ones((4, 256), dtype=np.float32)
    unknown = d / "unknown.gguf"
    write_gguf(unknown, "mamba9", [("token_embd.weight", x, None)])
    p = run_muse("convert", unknown, d / "out1", check=False)
    check_refused(p, str(d / "out1"))
    assert "mamba9" in p.stderr and "--raw" in p.stderr and str(unknown) in p.stderr
    # --raw still copies it, names unchanged.
    run_muse("convert", "-q", "--raw", unknown, d / "raw.safetensors")
    # A block type muse has no decoder for (Q8_K: ggml's dot-product intermediate, which muse never decodes).
    q8k = d / "q8k.gguf"
    raw = np.zeros((4, 292), dtype=np.uint8)  # 4 rows of one 256-element Q8_K block (292 bytes)
    write_gguf(q8k, "llama", [("token_embd.weight", raw, gguf.GGMLQuantizationType.Q8_K),
                              ("output_norm.weight", np.ones(256, np.float32), None)],
               [("llama.block_count", 0), ("llama.attention.head_count", 2), ("llama.embedding_length", 256)])
    p = run_muse("convert", q8k, d / "out2", check=False)
    check_refused(p, str(d / "out2"))
    assert "Q8_K" in p.stderr and "token_embd.weight" in p.stderr and str(q8k) in p.stderr
    # An output directory with files in it is never written into.
    busy = d / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    p = run_muse("convert", smol_path() or unknown, busy, check=False)
    assert p.returncode in (1, 2) and len(p.stderr.strip().splitlines()) == 1
    assert os.listdir(busy) == ["keep.txt"]


def reference_gguf(src, out, tmp_path, pre="llama-bpe"):
    """llama.cpp's convert_hf_to_gguf.py, F32, on the HF directory src. It picks the pre-tokenizer by hashing and
    knows no fixture's, so it is told `pre` through test_hf2gguf_arch.py's runner."""
    from test_hf2gguf_arch import RUNNER
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = dict(os.environ, MUSE_REF_PRE=pre)
    env.pop("NO_LOCAL_GGUF", None)
    p = subprocess.run([sys.executable, str(runner), llamacpp.SRC, str(src), "--outfile", str(out), "--outtype", "f32"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]


def assert_same_model(src, hf):
    """Every tensor of src/model.safetensors comes back in hf/model.safetensors with its name, dtype and bits, and
    transformers' logits on both directories are equal."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    a, b = load_file(str(src / "model.safetensors")), load_file(str(hf / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    ids = torch.tensor([[1, 5, 9, 20, 33, 7, 2, 11]])
    with torch.no_grad():
        la = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)(ids).logits
        lb = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)(ids).logits
    assert torch.equal(la, lb)


ARCHES = [("llama", {}), ("llama", {"tie": True}), ("llama", {"rope": "llama3"}), ("llama", {"dtype": "bf16"}),
          ("mistral", {}), ("qwen2", {}), ("qwen3", {}), ("mixtral", {}), ("qwen2_moe", {}), ("qwen3_moe", {}),
          ("deepseek_v3", {}), ("deepseek_v3", {"dtype": "bf16", "rope": "yarn"})]


@pytest.mark.parametrize("arch,kw", ARCHES, ids=[a + "".join(f"-{k}={v}" for k, v in kw.items()) for a, kw in ARCHES])
def test_arch_tables_reversed(tmp_path, arch, kw):
    """Tiny random checkpoints of every arch table: HF -> GGUF -> HF gives the original tensors (names, dtypes,
    values) and transformers the same logits; the reversed names come from the tables (experts split per expert,
    Q/K un-permuted), config.json from the GGUF hparams and the tables' hparam rows. Mistral comes back as
    LlamaForCausalLM: both are GGUF 'llama' and compute the same without a sliding window."""
    pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import make_tiny_models as mtm
    src = tmp_path / "src"
    if arch == "llama":
        mtm.make_llama(str(src), **kw)
    else:
        mtm.make_arch(str(src), arch, **kw)
    run_muse("convert", "-q", src, tmp_path / "m.gguf")
    run_muse("convert", "-q", tmp_path / "m.gguf", tmp_path / "hf")
    assert_same_model(src, tmp_path / "hf")
    # ... and back to GGUF: the same tensors and metadata as the first time (the directories share no name).
    run_muse("convert", "-q", tmp_path / "hf", tmp_path / "m2.gguf")
    m1, m2 = meta(tmp_path / "m.gguf"), meta(tmp_path / "m2.gguf")
    for m in (m1, m2):
        for k in ("general.name", "general.basename", "general.finetune", "general.size_label"):
            m.pop(k, None)
    assert m1 == m2
    t1, t2 = tensors(tmp_path / "m.gguf"), tensors(tmp_path / "m2.gguf")
    assert list(t1) == list(t2) and all(bytes(t1[n].data) == bytes(t2[n].data) for n in t1)


def test_deepseek_from_reference_converter(tmp_path):
    """DeepSeek-V3 (MLA) GGUF written by llama.cpp's convert_hf_to_gguf.py -> HF: kv_b_proj is rebuilt from
    attn_k_b (per head, transposed back) and attn_v_b, stacked experts split per expert; every tensor equals the
    original bit for bit, and transformers' logits on muse's directory equal those on the original. The GGUF's
    MQA override (head_count_kv 1) comes back as one KV head per query head, which DeepseekV3 requires. A GGUF
    with attn_k_b but no attn_v_b is refused naming the missing tensor."""
    pytest.importorskip("torch")
    llamacpp.require()
    from safetensors.torch import load_file
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import make_tiny_models as mtm
    src = tmp_path / "src"
    mtm.make_arch(str(src), "deepseek_v3")
    reference_gguf(src, tmp_path / "ref.gguf", tmp_path)
    run_muse("convert", "-q", tmp_path / "ref.gguf", tmp_path / "hf")
    cfg = json.load(open(tmp_path / "hf" / "config.json"))
    assert cfg["architectures"] == ["DeepseekV3ForCausalLM"] and cfg["num_key_value_heads"] == 4
    orig = json.load(open(src / "config.json"))
    for k in ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_routed_experts",
              "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group", "routed_scaling_factor",
              "first_k_dense_replace", "moe_intermediate_size", "norm_topk_prob", "scoring_func"):
        assert cfg[k] == orig[k], k
    assert_same_model(src, tmp_path / "hf")
    # llama-quantize Q8_0 (attn_k_b/attn_v_b quantized too): kv_b_proj equals gguf-py's dequantization of both
    # halves, put back together independently here with numpy.
    llamacpp.llama_quantize(str(tmp_path / "ref.gguf"), str(tmp_path / "q8.gguf"), "Q8_0")
    run_muse("convert", "-q", tmp_path / "q8.gguf", tmp_path / "hf_q8")
    q = tensors(tmp_path / "q8.gguf")
    dq = lambda t: dequantize(t.data, t.tensor_type).reshape([int(x) for x in reversed(t.shape)])  # noqa: E731
    st = load_file(str(tmp_path / "hf_q8" / "model.safetensors"))
    for blk in range(2):
        kb, vb = q[f"blk.{blk}.attn_k_b.weight"], q[f"blk.{blk}.attn_v_b.weight"]
        assert kb.tensor_type == gguf.GGMLQuantizationType.Q8_0
        k, v = dq(kb), dq(vb)
        want = np.concatenate([k.transpose(0, 2, 1), v], axis=1).reshape(-1, k.shape[1]).astype(np.float32)
        assert np.array_equal(st[f"model.layers.{blk}.self_attn.kv_b_proj.weight"].numpy(), want)
    # attn_v_b of block 0 missing: refused, nothing written.
    r = reader(str(tmp_path / "ref.gguf"))
    kv = []
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k.startswith("tokenizer."):
            continue
        if k in ("deepseek2.block_count", "deepseek2.attention.head_count", "deepseek2.embedding_length"):
            kv.append((k, int(f.contents())))
    ts = [(t.name, np.array(t.data), None) for t in r.tensors if t.name != "blk.0.attn_v_b.weight"]
    bad = tmp_path / "no_vb.gguf"
    write_gguf(bad, "deepseek2", ts, kv)
    p = run_muse("convert", bad, tmp_path / "hf_bad", check=False)
    check_refused(p, str(tmp_path / "hf_bad"))
    assert "blk.0.attn_v_b.weight" in p.stderr and "kv_b_proj" in p.stderr


def test_deepseek_without_q_lora(tmp_path):
    """DeepSeek with q_lora_rank null (V2-Lite's plain q_proj, attn_q in GGUF): config.json says q_lora_rank null
    (transformers' default would build q_a/q_b), tensors and logits come back identical."""
    torch = pytest.importorskip("torch")
    import transformers as T
    from safetensors.torch import load_file
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import make_tiny_models as mtm
    src = tmp_path / "src"
    tok = mtm.make_tokenizer(400, "llama-bpe")
    cfg = T.DeepseekV3Config(vocab_size=len(tok), hidden_size=160, intermediate_size=192, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, moe_intermediate_size=64, n_routed_experts=4,
                             n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1,
                             q_lora_rank=None, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=32,
                             routed_scaling_factor=2.5, norm_topk_prob=True, scoring_func="sigmoid",
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                             max_position_embeddings=256, rms_norm_eps=1e-5)
    torch.manual_seed(3)
    model = T.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    model.save_pretrained(src)
    tok.save_pretrained(src)
    run_muse("convert", "-q", src, tmp_path / "m.gguf")
    assert "blk.0.attn_q.weight" in tensors(tmp_path / "m.gguf")
    run_muse("convert", "-q", tmp_path / "m.gguf", tmp_path / "hf")
    assert json.load(open(tmp_path / "hf" / "config.json"))["q_lora_rank"] is None
    a, b = load_file(str(src / "model.safetensors")), load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    ids = torch.tensor([[1, 5, 9, 20, 33, 7, 2, 11]])
    with torch.no_grad():
        la = T.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)(ids).logits
        lb = T.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)(ids).logits
    assert torch.equal(la, lb)


SPM_CASES = [("spm", "muse"), ("spm-json", "muse"), ("spm", "convert_hf_to_gguf.py")]


@pytest.mark.parametrize("kind,writer", SPM_CASES, ids=[f"{k}-{w}" for k, w in SPM_CASES])
def test_spm_tokenizer(tmp_path, kind, writer):
    """SentencePiece (tokenizer.ggml.model "llama") GGUF -> HF: AutoTokenizer on muse's directory gives the original
    HF tokenizer's ids (and decodes the same) on every tokenizer_strings.py string. The fixtures
    (scripts/make_tokenizers.py) are a SentencePiece BPE with byte fallback and control tokens, as tokenizer.model +
    transformers' tokenizer.json, or tokenizer.json alone (its GGUF has score -1e9 for every token and <unk> as
    CONTROL); the GGUF comes from muse or from llama.cpp's convert_hf_to_gguf.py. muse's tokenizer.json equals the
    original's (vocab, merges derived from the scores, added tokens, pre-tokenizer, decoder, post-processor) except
    model.unk_token, "<unk>" as in Llama-2's tokenizer.json where transformers 5 writes null (no effect with byte
    fallback over all 256 bytes). Where the GGUF has scores and an UNKNOWN <unk>, muse writes tokenizer.model too:
    sentencepiece encodes with it as with the original tokenizer.model, and HF -> GGUF on muse's directory gives
    the GGUF's tokenizer.* keys back unchanged."""
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_tokenizers
    from tokenizer_strings import STRINGS
    src = tmp_path / "src"
    make_tokenizers.make(str(src), kind, model=True)
    g = tmp_path / "m.gguf"
    if writer == "muse":
        run_muse("convert", "-q", src, g)
    else:
        llamacpp.require()
        reference_gguf(src, g, tmp_path, pre="default")
    assert meta(g)["tokenizer.ggml.model"][1] == "llama"
    out = tmp_path / "hf"
    run_muse("convert", "-q", g, out)
    a, b = AutoTokenizer.from_pretrained(src), AutoTokenizer.from_pretrained(out)
    for text in STRINGS:
        ia, ib = a(text)["input_ids"], b(text)["input_ids"]
        assert ia == ib, (text, ia, ib)
        assert a.decode(ia) == b.decode(ib), text
    ja, jb = json.load(open(src / "tokenizer.json")), json.load(open(out / "tokenizer.json"))
    for k in ("added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert ja[k] == jb[k], k
    ma, mb = ja.pop("model"), jb.pop("model")
    assert mb.pop("unk_token") == "<unk>" and ma.pop("unk_token") is None
    assert ma == mb
    has_model = (out / "tokenizer.model").exists()
    assert has_model == (kind == "spm")
    if has_model:
        import sentencepiece
        sa = sentencepiece.SentencePieceProcessor(model_file=str(src / "tokenizer.model"))
        sb = sentencepiece.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
        assert [sa.encode(t) for t in STRINGS] == [sb.encode(t) for t in STRINGS]
        run_muse("convert", "-q", out, tmp_path / "m2.gguf")
        ka = {k: v for k, v in meta(g).items() if k.startswith("tokenizer.")}
        kb = {k: v for k, v in meta(tmp_path / "m2.gguf").items() if k.startswith("tokenizer.")}
        assert ka == kb


CARD = """---
license: other
license_name: foo-license
license_link: LICENSE
name: Tiny Card
description: >
  A tiny model
  for tests.
tags: [text-generation,
  "tiny model", llama]
language:
- en
- fr
base_model:
- meta-llama/Llama-3.1-8B
datasets: HuggingFaceTB/smollm-corpus
model-index:
- name: Tiny
  results:
  - task:
      type: text-generation
    metrics:
    - type: acc
      value: 0.5
widget:
  - text: "hello"
pipeline_tag: text-generation
---

# Tiny
"""


def test_model_card_yaml(tmp_path):
    """An HF model card front matter with the YAML HF cards use (a folded block scalar, a flow list over two lines,
    block lists, model-index and widget lists of maps to skip, license_name/license_link): muse's HF -> GGUF writes
    the same general.* keys as convert_hf_to_gguf.py (gguf-py's Metadata reads the card with PyYAML), and GGUF -> HF
    -> GGUF keeps them (muse's README.md front matter read back by the same parser)."""
    pytest.importorskip("torch")
    llamacpp.require()
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import make_tiny_models as mtm
    src = tmp_path / "card"
    mtm.make_llama(str(src))
    (src / "README.md").write_text(CARD)
    run_muse("convert", "-q", src, tmp_path / "m.gguf")
    reference_gguf(src, tmp_path / "ref.gguf", tmp_path)
    general = lambda path: {k: v for k, v in meta(path).items() if k.startswith("general.")}  # noqa: E731
    g1 = general(tmp_path / "m.gguf")
    assert g1 == general(tmp_path / "ref.gguf")
    assert g1["general.description"][1] == "A tiny model for tests.\n"
    assert g1["general.license.name"][1] == "foo-license" and g1["general.tags"][1][1] == "tiny model"
    run_muse("convert", "-q", tmp_path / "m.gguf", tmp_path / "hf")
    run_muse("convert", "-q", tmp_path / "hf", tmp_path / "m2.gguf")
    g2 = general(tmp_path / "m2.gguf")
    for k in ("general.name", "general.description", "general.license", "general.license.name",
              "general.license.link", "general.tags", "general.languages"):
        assert g1[k] == g2[k], k


def test_streaming_memory(smol, work):
    """Peak RSS of the release binary converting SmolLM2 (Q4_1 -> F32 HF) stays below the largest output tensor
    (token_embd, 49152 x 576 F32 = 113 MB): tensors are decoded in chunks of rows and consumed input pages are
    released. Measured here: 79 MiB (vs 108 MiB), much of it mapped input pages and the 49k-token tokenizer.json."""
    rel = os.path.join(ROOT, "bin", "muse")
    if not os.access(rel, os.X_OK):
        pytest.skip("release build bin/muse not built (ASan's shadow memory would hide what is measured)")
    out = work / "mem" / "smol"
    out.parent.mkdir()
    # Measured by /usr/bin/time, not wait4 on a child of this process: a child spawned from pytest inherits the
    # parent's RSS high-water mark through fork/vfork + exec (gigabytes once torch is loaded), which wait4 reports.
    p = subprocess.run(["/usr/bin/time", "-f", "%M", rel, "convert", "-q", smol, str(out)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    maxrss_kib = int(p.stderr.strip().splitlines()[-1])
    largest = 49152 * 576 * 4
    print(f"peak RSS {maxrss_kib / 1024:.1f} MB, largest tensor {largest / 2**20:.1f} MB")
    assert maxrss_kib * 1024 < largest
