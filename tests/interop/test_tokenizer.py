"""test_tokenizer.py: `muse tokenize` against HF `tokenizers` (issue 5 item 1): identical ids on a fixed string set
(tokenizer_strings.STRINGS) for SmolLM2-135M (its GGUF vocabulary) and for the fixture tokenizers of
scripts/make_tokenizers.py (SentencePiece BPE via tokenizer.json and via tokenizer.model alone, byte-level BPE with the
llama-bpe, qwen2, gpt-2, smollm and deepseek-v3 pre-tokenizers).

Oracles:
  - HF dirs: tokenizers.Tokenizer.from_file(tokenizer.json).encode(s) (special tokens in the text are matched, BOS/EOS
    per the post-processor) == `muse tokenize DIR --text s` (special tokens are parsed by default, issue 12 item 10);
    with add_special_tokens=False == --no-special; with encode_special_tokens=True (specials are plain text, added
    non-special tokens still match) == --no-parse-special.
  - tokenizer.model alone: the sentencepiece package's SentencePieceProcessor.encode (BOS prepended as
    tokenizer_config asks), on the strings holding no control token (sentencepiece never matches those in text).
  - SmolLM2: only the GGUF exists, so the oracle is an HF Tokenizer built here from the GGUF's vocabulary and merges
    with the pre-tokenizer its tokenizer.ggml.pre names (smollm: Digits(individual) + ByteLevel(use_regex)) and its
    CONTROL tokens as special added tokens; llama.cpp's llama-tokenize on the same GGUF is checked too.
  - About 1 MB of mixed text must give the same ids as HF in one call (the encoder's long-input path).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp  # noqa: E402

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
import make_tokenizers  # noqa: E402
from tokenizer_strings import STRINGS  # noqa: E402

KINDS = ["spm", "spm-json", "llama3", "qwen2", "gpt2", "smollm", "deepseek-v3"]


def _smollm2_gguf():
    for dp, _, fs in os.walk(os.path.join(ROOT, ".venv")):
        for f in fs:
            if f.endswith(".gguf") and "SmolLM2" in f:
                return os.path.join(dp, f)
    return None


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    return {"tmp": tmp, "made": {}}


def _dir(dirs, kind):
    if kind not in dirs["made"]:
        dirs["made"][kind] = make_tokenizers.make(str(dirs["tmp"] / kind), kind)
    return dirs["made"][kind]


def _ids(muse, model, s, *flags):
    p = muse("tokenize", model, "--text", s, "--json", *flags)
    return json.loads(p.stdout)["ids"]


def _compare(muse, model, oracle, strings, flags=()):
    bad = []
    for s in strings:
        want, got = oracle(s), _ids(muse, model, s, *flags)
        if want != got:
            bad.append((s, want, got))
    return bad


def _fmt(bad, total):
    return f"{len(bad)}/{total} strings differ: " + "; ".join(f"{s!r}: hf {w} muse {g}" for s, w, g in bad[:4])


@pytest.mark.parametrize("kind", KINDS)
def test_hf_parity(muse, dirs, kind):
    """muse tokenize DIR == HF tokenizers, specials parsed and added (every string)."""
    from tokenizers import Tokenizer
    d = _dir(dirs, kind)
    hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    bad = _compare(muse, d, lambda s: hf.encode(s).ids, STRINGS)
    assert not bad, _fmt(bad, len(STRINGS))


@pytest.mark.parametrize("kind", ["spm-json", "llama3", "qwen2"])
def test_hf_parity_flags(muse, dirs, kind):
    """--no-special == add_special_tokens=False; --no-parse-special == encode_special_tokens=True."""
    from tokenizers import Tokenizer
    d = _dir(dirs, kind)
    hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    subset = [s for s in STRINGS if "<" in s or s in ("", "Hello world", " Hello world")]
    bad = _compare(muse, d, lambda s: hf.encode(s, add_special_tokens=False).ids, subset, ["--no-special"])
    assert not bad, _fmt(bad, len(subset))
    hf.encode_special_tokens = True
    bad = _compare(muse, d, lambda s: hf.encode(s).ids, subset, ["--no-parse-special"])
    assert not bad, _fmt(bad, len(subset))


def test_spm_model_only(muse, dirs):
    """A directory with only tokenizer.model (+ tokenizer_config): muse == sentencepiece itself."""
    import sentencepiece as spm
    src = _dir(dirs, "spm")
    d = str(dirs["tmp"] / "spm-model-only")
    os.makedirs(d, exist_ok=True)
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, f), d)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    controls = ("<s>", "</s>", "<unk>", "[INST]", "[/INST]")
    strings = [s for s in STRINGS if not any(c in s for c in controls)]
    bad = _compare(muse, d, lambda s: [sp.bos_id()] + sp.encode(s), strings)
    assert not bad, _fmt(bad, len(strings))


def _gguf_fields(path):
    sys.path.insert(0, os.path.join(llamacpp.SRC, "gguf-py"))
    from gguf import GGUFReader
    r = GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if k.startswith("tokenizer.ggml.")}


def _oracle_from_gguf(path):
    """An HF Tokenizer holding the GGUF's byte-level vocabulary, merges and smollm pre-tokenizer."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    f = _gguf_fields(path)
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    toks, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(toks)}
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.add_special_tokens([AddedToken(toks[i], special=True, normalized=False)
                            for i in range(len(toks)) if types[i] == 3])
    if f.get("tokenizer.ggml.add_bos_token", False):
        bos = toks[f["tokenizer.ggml.bos_token_id"]]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return tok


def test_smollm2(muse):
    """SmolLM2-135M's GGUF: muse == an HF tokenizer built from the GGUF (and == llama.cpp where built)."""
    gg = _smollm2_gguf()
    if not gg:
        pytest.skip("SmolLM2 GGUF not in .venv")
    hf = _oracle_from_gguf(gg)
    bad = _compare(muse, gg, lambda s: hf.encode(s).ids, STRINGS, ["--parse-special"])
    assert not bad, _fmt(bad, len(STRINGS))
    if os.access(llamacpp.tool("llama-tokenize"), os.X_OK):
        # llama-tokenize refuses an empty prompt
        bad = [(s, llamacpp.tokenize(gg, s), _ids(muse, gg, s, "--parse-special")) for s in STRINGS if s]
        bad = [b for b in bad if b[1] != b[2]]
        assert not bad, "llama.cpp vs muse: " + _fmt(bad, len(STRINGS))


SPECIAL_STRINGS = ["<|im_start|>", "<|im_start|>user\nhi there<|im_end|>\n", "text<|endoftext|>more text",
                   "<|im_end|><|im_start|>assistant", "a<|im_start|>", "<|endoftext|>"]


def test_special_tokens_default(muse, dirs):
    """Issue 12 item 10: with no flag, a special token written in the text is one id (<|im_start|> was 8 ids), as
    HF tokenizers' encode() gives on an HF directory and llama-tokenize on SmolLM2's GGUF; --no-parse-special (llama-
    tokenize's flag) == llama-tokenize --no-parse-special == encode_special_tokens=True."""
    from tokenizers import Tokenizer
    d = _dir(dirs, "smollm")
    hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    assert len(hf.encode("<|im_start|>", add_special_tokens=False).ids) == 1
    assert len(_ids(muse, d, "<|im_start|>", "--no-special")) == 1
    bad = _compare(muse, d, lambda s: hf.encode(s).ids, SPECIAL_STRINGS)
    assert not bad, _fmt(bad, len(SPECIAL_STRINGS))
    hf.encode_special_tokens = True
    bad = _compare(muse, d, lambda s: hf.encode(s).ids, SPECIAL_STRINGS, ["--no-parse-special"])
    assert not bad, _fmt(bad, len(SPECIAL_STRINGS))
    gg = _smollm2_gguf()
    if not gg:
        pytest.skip("SmolLM2 GGUF not in .venv")
    assert len(_ids(muse, gg, "<|im_start|>", "--no-special")) == 1
    hf = _oracle_from_gguf(gg)
    bad = _compare(muse, gg, lambda s: hf.encode(s).ids, SPECIAL_STRINGS)
    assert not bad, "GGUF oracle: " + _fmt(bad, len(SPECIAL_STRINGS))
    if not os.access(llamacpp.tool("llama-tokenize"), os.X_OK):
        pytest.skip("llama-tokenize not built")
    for flags in ((), ("--no-parse-special",)):
        bad = [(s, llamacpp.tokenize(gg, s, *flags), _ids(muse, gg, s, *flags)) for s in SPECIAL_STRINGS]
        bad = [b for b in bad if b[1] != b[2]]
        assert not bad, f"llama.cpp vs muse {flags}: " + _fmt(bad, len(SPECIAL_STRINGS))


def _mixed_text(n_bytes):
    parts = [make_tokenizers.CORPUS] + STRINGS
    out, i = [], 0
    size = 0
    while size < n_bytes:
        p = parts[i % len(parts)]
        out.append(p)
        size += len(p.encode())
        i += 1
    return "\n".join(out)


@pytest.mark.parametrize("kind", ["qwen2", "spm-json", "smollm2"])
def test_megabyte(muse, dirs, kind, tmp_path):
    """About 1 MB of mixed text in one call gives HF's ids (SmolLM2: its GGUF oracle)."""
    from tokenizers import Tokenizer
    text = _mixed_text(1 << 20)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    if kind == "smollm2":
        model = _smollm2_gguf()
        if not model:
            pytest.skip("SmolLM2 GGUF not in .venv")
        hf = _oracle_from_gguf(model)
    else:
        model = _dir(dirs, kind)
        hf = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    want = hf.encode(text).ids
    p = muse("tokenize", model, "--file", path, "--json", "--parse-special", "--time")
    got = json.loads(p.stdout)["ids"]
    first = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    assert got == want, f"{len(got)} vs {len(want)} ids, first difference at {first}: muse {got[first:first + 8]} " \
                        f"hf {want[first:first + 8]}"


def test_bad_input(muse, dirs, tmp_path):
    """Invalid UTF-8 in --file: one error line naming the file and byte, exit 1; a directory with no tokenizer."""
    d = _dir(dirs, "qwen2")
    f = tmp_path / "bad.txt"
    f.write_bytes(b"ok text \xff\xfe more")
    p = muse("tokenize", d, "--file", f, check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "bad.txt: byte 8: invalid UTF-8" in p.stderr, p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    p = muse("tokenize", empty, "--text", "x", check=False)
    assert p.returncode == 1 and "no tokenizer.json or tokenizer.model" in p.stderr
    p = muse("tokenize", d, check=False)
    assert p.returncode == 2
