#!/usr/bin/env bash
# bench_convert.sh: HF -> GGUF on a ~2.2 GB BF16 checkpoint (section of `make bench`): muse convert against
# llama.cpp's convert_hf_to_gguf.py and against `cp` of the same bytes (the physical limit on this disk), warm
# cache, same machine, same run. Peak RSS from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/bench
CONVERT=.cache/llama.cpp/src/convert_hf_to_gguf.py
mkdir -p "$B"
CK=$B/big-bf16
if [ ! -f "$CK/config.json" ]; then
	rm -rf "$CK"
	$PY scripts/make_big_checkpoint.py "$CK" >/dev/null
fi
bytes=$(cat "$CK"/*.safetensors | wc -c)
cat "$CK"/*.safetensors >/dev/null
# run CMD...: wall seconds and peak RSS (KiB) of one run, into globals T and M.
run() {
	local f=$B/conv.time
	/usr/bin/time -o "$f" -f '%e %M' "$@" >/dev/null 2>&1
	read -r T M <"$f"
	rm -f "$f"
}
rm -f "$B"/conv.*
# cp is made durable like muse's output (which is fsynced before its rename): the bytes on disk, not in the cache.
run sh -c "cat '$CK'/*.safetensors > '$B/conv.cp' && sync '$B/conv.cp'"
t_cp=$T m_cp=$M
rm -f "$B/conv.cp"
sync
run bin/muse convert "$CK" "$B/conv.muse.gguf" --outtype auto -q
t_muse=$T m_muse=$M
rm -f "$B/conv.muse.gguf"
sync
t_py=skipped m_py=0
if [ -f "$CONVERT" ]; then
	# The fixture's freshly trained tokenizer is not in the converter's hash table; like the convert tests, tell
	# it the pre-tokenizer name (this touches only the vocabulary lookup, none of the tensor work being timed).
	cat >"$B/conv_runner.py" <<'PYEOF'
import runpy, sys
src = sys.argv[1]
sys.path[:0] = [src + "/gguf-py", src]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"
sys.argv = [src + "/convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
PYEOF
	run $PY "$B/conv_runner.py" "$(dirname "$CONVERT")" "$CK" --outfile "$B/conv.py.gguf" --outtype bf16
	t_py=$T m_py=$M
	rm -f "$B/conv.py.gguf"
fi
echo
echo "| HF -> GGUF, $((bytes / 1000000)) MB BF16 (2 shards, warm cache) | time | peak RSS | time ratio to muse |"
echo "|---|---|---|---|"
echo "| muse convert --outtype auto (bf16 stays bf16) | ${t_muse} s | $((m_muse / 1024)) MiB | 1.00 |"
echo "| cp of the same bytes (cat shards > file, then fsync) | ${t_cp} s | $((m_cp / 1024)) MiB | $(printf '%.2f' "$(echo "$t_cp / $t_muse" | bc -l)") |"
if [ "$t_py" != skipped ]; then
	echo "| llama.cpp convert_hf_to_gguf.py --outtype bf16 | ${t_py} s | $((m_py / 1024)) MiB | $(printf '%.2f' "$(echo "$t_py / $t_muse" | bc -l)") |"
fi
