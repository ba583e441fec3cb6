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
# run CMD...: wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one run, into globals T, M and C.
run() {
	local f=$B/conv.time u s
	/usr/bin/time -o "$f" -f '%e %M %U %S' "$@" >/dev/null 2>&1
	read -r T M u s <"$f"
	C=$(printf '%.2f' "$(echo "$u + $s" | bc -l)")
	rm -f "$f"
}
rm -f "$B"/conv.*
# The outputs go to two places: the disk, where muse fsyncs before its rename and the others are made durable
# the same way (a sync of their output file inside the timed command), and a tmpfs (/dev/shm), where no tool
# waits for a disk and the times are the tools' own work.
SHM=${BENCH_SHM:-/dev/shm}
[ -d "$SHM" ] && [ -w "$SHM" ] || SHM=
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
# one_place DIR SYNC: times cp, muse and the Python converter writing into DIR; SYNC=1 makes each output durable.
one_place() {
	local d=$1 sync=$2 s=true
	[ "$sync" = 1 ] && s="sync"
	run sh -c "cat '$CK'/*.safetensors > '$d/conv.cp' && $s '$d/conv.cp'"
	t_cp=$T m_cp=$M c_cp=$C
	rm -f "$d/conv.cp"
	sync
	run bin/muse convert "$CK" "$d/conv.muse.gguf" --outtype auto -q
	t_muse=$T m_muse=$M c_muse=$C
	rm -f "$d/conv.muse.gguf"
	sync
	t_py=skipped m_py=0
	if [ -f "$CONVERT" ]; then
		run sh -c "$PY '$B/conv_runner.py' '$(dirname "$CONVERT")' '$CK' --outfile '$d/conv.py.gguf' --outtype bf16 && $s '$d/conv.py.gguf'"
		t_py=$T m_py=$M c_py=$C
		rm -f "$d/conv.py.gguf"
	fi
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
table() {
	local where=$1
	echo
	echo "| HF -> GGUF, $((bytes / 1000000)) MB BF16 (2 shards, warm cache), output on $where | time | CPU time | peak RSS | time ratio to muse | CPU ratio |"
	echo "|---|---|---|---|---|---|"
	echo "| muse convert --outtype auto (bf16 stays bf16) | ${t_muse} s | ${c_muse} s | $((m_muse / 1024)) MiB | 1.00 | 1.00 |"
	echo "| cp of the same bytes (cat shards > file) | ${t_cp} s | ${c_cp} s | $((m_cp / 1024)) MiB | $(ratio "$t_cp" "$t_muse") | $(ratio "$c_cp" "$c_muse") |"
	if [ "$t_py" != skipped ]; then
		echo "| llama.cpp convert_hf_to_gguf.py --outtype bf16 | ${t_py} s | ${c_py} s | $((m_py / 1024)) MiB | $(ratio "$t_py" "$t_muse") | $(ratio "$c_py" "$c_muse") |"
	fi
}
one_place "$B" 1
table "disk, every output fsynced (the disk's write speed bounds all three)"
if [ -n "$SHM" ]; then
	one_place "$SHM" 0
	table "tmpfs $SHM (no disk: each tool's own work)"
fi
rm -f "$B/conv_runner.py"
