#!/usr/bin/env bash
# bench.sh: the speed table (`make bench`). Each row is measured here, in this run, next to its reference
# (the peer or the physical limit) on the same files; times are the best of 3 warm runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/bench
mkdir -p "$B"
now() { date +%s.%N; }
# best3 CMD...: prints the best wall time of 3 runs in seconds.
best3() {
	local best=999999 t0 t1 d
	for _ in 1 2 3; do
		t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
		d=$(echo "$t1 - $t0" | bc -l)
		best=$(echo "if ($d < $best) $d else $best" | bc -l)
	done
	printf '%.4f' "$best"
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
rss_kb() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }

echo "| benchmark | muse | reference | time ratio muse/ref (<1: muse faster) | muse peak RSS |"
echo "|---|---|---|---|---|"

# 1. inspect a synthetic sharded checkpoint with 100,000 tensors.
if [ ! -f "$B/sharded100k/model.safetensors.index.json" ]; then
	rm -rf "$B/sharded100k"
	$PY scripts/make_sharded_fixture.py "$B/sharded100k" --tensors 100000 --shards 8 >/dev/null
fi
t_muse=$(best3 bin/muse inspect --json "$B/sharded100k")
t_py=$(best3 $PY -c '
import json, sys, os
from safetensors import safe_open
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
n = 0
for shard in sorted(set(idx["weight_map"].values())):
    with safe_open(os.path.join(d, shard), "np") as f:
        for k in f.keys():
            f.get_slice(k).get_shape(); n += 1
' "$B/sharded100k")
rss=$(rss_kb bin/muse inspect --json "$B/sharded100k")
echo "| inspect, 100,000 tensors in 8 safetensors shards | ${t_muse} s | python safetensors safe_open listing: ${t_py} s | $(ratio "$t_muse" "$t_py") | $((rss / 1024)) MiB |"

# 2. read every tensor byte of a 2 GB safetensors file.
BIG=$B/big2g.safetensors
if [ ! -f "$BIG" ]; then
	$PY - "$BIG" <<'PYEOF'
import sys, numpy as np
from safetensors.numpy import save_file
rng = np.random.default_rng(0)
# 64 tensors x 32 MiB of bf16-sized data (stored as F32 bit patterns of random values)
ts = {f"layer.{i}.weight": rng.standard_normal((2048, 4096), dtype=np.float32) for i in range(64)}
save_file(ts, sys.argv[1])
PYEOF
fi
cat "$BIG" >/dev/null
t_cat=$(best3 sh -c "cat '$BIG' > /dev/null")
t_muse=$(best3 build/rel/bench/bench_read "$BIG")
t_py=$(best3 $PY -c '
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    for k in f.keys():
        f.get_tensor(k).sum()
' "$BIG")
rss=$(rss_kb build/rel/bench/bench_read "$BIG")
sz=$(stat -c %s "$BIG")
echo "| read all tensor bytes, $((sz / 1000000)) MB safetensors (warm cache) | ${t_muse} s ($(printf '%.2f' "$(echo "$sz / $t_muse / 1000000000" | bc -l)") GB/s) | cat > /dev/null: ${t_cat} s | $(ratio "$t_muse" "$t_cat") | $((rss / 1024)) MiB (mapped file pages) |"
echo "| (peer) python safetensors get_tensor + sum, same file | | ${t_py} s | $(ratio "$t_muse" "$t_py") | |"

# 3. dtype conversion throughput against memcpy.
if [ -x build/rel/bench/bench_dtype ]; then
	echo
	build/rel/bench/bench_dtype
fi

# Further sections, one script each (convert, quantize, ...).
for s in scripts/bench_*.sh; do
	bash "$s"
done
