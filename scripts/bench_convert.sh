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
# run NAME CMD...: wall seconds and peak RSS (KiB) of one run, into globals T and M; the output is removed after.
run() {
	local out
	out=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null 2>/dev/null; } 2>&1 | tail -1)
	T=${out% *}
	M=${out#* }
}
rm -f "$B"/conv.*
run sh -c "cat '$CK'/*.safetensors > '$B/conv.cp'"
t_cp=$T m_cp=$M
rm -f "$B/conv.cp"
sync
run bin/muse convert "$CK" "$B/conv.muse.gguf" --outtype auto -q
t_muse=$T m_muse=$M
rm -f "$B/conv.muse.gguf"
sync
t_py=skipped m_py=0
if [ -f "$CONVERT" ]; then
	run $PY "$CONVERT" "$CK" --outfile "$B/conv.py.gguf" --outtype bf16
	t_py=$T m_py=$M
	rm -f "$B/conv.py.gguf"
fi
echo
echo "| HF -> GGUF, $((bytes / 1000000)) MB BF16 (2 shards, warm cache) | time | peak RSS | time ratio to muse |"
echo "|---|---|---|---|"
echo "| muse convert --outtype auto (bf16 stays bf16) | ${t_muse} s | $((m_muse / 1024)) MiB | 1.00 |"
echo "| cp of the same bytes (cat shards > file) | ${t_cp} s | $((m_cp / 1024)) MiB | $(printf '%.2f' "$(echo "$t_cp / $t_muse" | bc -l)") |"
if [ "$t_py" != skipped ]; then
	echo "| llama.cpp convert_hf_to_gguf.py --outtype bf16 | ${t_py} s | $((m_py / 1024)) MiB | $(printf '%.2f' "$(echo "$t_py / $t_muse" | bc -l)") |"
fi
