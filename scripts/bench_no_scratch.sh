#!/usr/bin/env bash
# bench_no_scratch.sh CKPT [CALIB]: wall time, peak RSS and peak disk use of `muse quantize` from an HF checkpoint
# directory (issue 13: "no scratch model ... the peak disk use is the output's size"), for
#   muse quantize CKPT OUT.gguf --type Q4_K_M
#   muse quantize CKPT OUTDIR --method gptq --format gptq --bits 4 --group-size 128 --calib CALIB --samples 2 --seq-len 64
#
# Each command runs under /usr/bin/time -v (peak RSS) with OUT in an empty directory and TMPDIR set to another
# empty one. Every 0.2 s the disk use is summed: the apparent size of every file under the two directories, plus
# the files that muse holds open or mapped there after unlinking them (/proc/PID/fd and /proc/PID/map_files: a
# scratch GGUF that is unlinked once mapped still takes its space), each inode counted once. The peak of that sum
# is reported beside the output's own size, with every file name seen and its largest size.
#
# CKPT that does not exist is written there first by scripts/make_big_checkpoint.py (TinyLlama geometry, random
# BF16 weights at a fixed seed, 2.2 GB with the default LAYERS=22) and removed at the end. CALIB defaults to the
# first 20000 bytes of the tests' evaluation text (tests/oracle/texts.py). MUSE=path picks the binary (default
# bin/muse); THREADS=N passes --threads N; ONLY=type or ONLY=gptq runs one of the two (GPTQ on the 2.2 GB
# checkpoint took 46 min on 2 busy cores at 54656c8).
#
# The GPTQ run keeps its resume journal OUT.journal/ (one blob per finished layer, 227.5 MB a layer of the 2.2 GB
# checkpoint at 54656c8) until the output is published, so the peak disk use is given with and without it.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CKPT=${1:?usage: scripts/bench_no_scratch.sh CKPT [CALIB]}
MUSE=${MUSE:-$ROOT/bin/muse}
PY=$ROOT/.venv/bin/python
[ -x "$MUSE" ] || { echo "bench_no_scratch: $MUSE: not built (make -j2)" >&2; exit 2; }
W=$(mktemp -d /tmp/muse-bench-noscratch.XXXXXX)
MADE=""
cleanup() {
	rm -rf "$W"
	[ -n "$MADE" ] && rm -rf "$MADE"
}
trap cleanup EXIT
if [ ! -e "$CKPT" ]; then
	echo "writing $CKPT (scripts/make_big_checkpoint.py --layers ${LAYERS:-22})"
	MADE=$CKPT
	"$PY" "$ROOT/scripts/make_big_checkpoint.py" "$CKPT" --layers "${LAYERS:-22}" || exit 1
fi
CALIB=${2:-}
if [ -z "$CALIB" ]; then
	CALIB=$W/calib.txt
	PYTHONPATH=$ROOT/tests/oracle "$PY" -c "import texts, shutil; shutil.copy(texts.head(20000), '$CALIB')" || exit 1
fi
THR=()
[ -n "${THREADS:-}" ] && THR=(--threads "$THREADS")

echo "muse: $MUSE ($("$MUSE" --version)); checkpoint: $CKPT, $(du -sb "$CKPT" | cut -f1) bytes"
echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# measure NAME OUTNAME ARGS...: one run, {out} in ARGS standing for the output path.
measure() {
	local name=$1 outname=$2
	shift 2
	rm -rf "$W/out" "$W/tmp" && mkdir "$W/out" "$W/tmp"
	local args=() a
	for a in "$@"; do args+=("${a//\{out\}/$W/out/$outname}"); done
	python3 - "$name" "$W/out" "$W/tmp" "$W/out/$outname" /usr/bin/time -v "$MUSE" "${args[@]}" <<'EOF'
import os, re, subprocess, sys, time

name, out_dir, tmp_dir, out = sys.argv[1:5]
cmd = sys.argv[5:]
env = dict(os.environ, TMPDIR=tmp_dir, MUSE_PROGRESS="0")
t0 = time.monotonic()
p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
sizes = {}   # path -> largest apparent size seen
peak, peak_at, peak_nj = 0, 0.0, 0  # peak_nj: the peak without the resume journal (OUT.journal/)
journal = out.rstrip("/") + ".journal/"


def children(pid):
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return []
    return [int(k) for k in kids] + [g for k in kids for g in children(int(k))]


def held(pid, roots):
    """(dev, ino) -> (size, path) of the unlinked files under roots that pid holds open or mapped."""
    found = {}
    for sub in ("fd", "map_files"):
        d = f"/proc/{pid}/{sub}"
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for e in entries:
            try:
                target = os.readlink(f"{d}/{e}")
                if not target.endswith(" (deleted)") or not target.startswith(roots):
                    continue
                st = os.stat(f"{d}/{e}")
            except OSError:
                continue
            found[(st.st_dev, st.st_ino)] = (st.st_size, target)
    return found


def sample():
    global peak, peak_at, peak_nj
    seen = {}
    for root in (out_dir, tmp_dir):
        for dirpath, _, files in os.walk(root):
            for f in files:
                path = os.path.join(dirpath, f)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                seen[(st.st_dev, st.st_ino)] = (st.st_size, path)
    for pid in children(p.pid):
        for k, v in held(pid, (out_dir, tmp_dir)).items():
            seen.setdefault(k, v)
    total = nj = 0
    for size, path in seen.values():
        total += size
        nj += 0 if path.startswith(journal) else size
        key = os.path.relpath(path.removesuffix(" (deleted)"), os.path.dirname(out_dir))
        sizes[key] = max(sizes.get(key, 0), size)
    if total > peak:
        peak, peak_at = total, time.monotonic() - t0
    peak_nj = max(peak_nj, nj)


while p.poll() is None:
    sample()
    time.sleep(0.2)
err = p.stderr.read()
wall = time.monotonic() - t0
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
out_size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs) \
    if os.path.isdir(out) else os.path.getsize(out) if os.path.exists(out) else -1
status = re.search(r"Exit status: (\d+)", err)
mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
print(f"{name}: exit {status.group(1) if status else p.returncode}, wall {wall:.1f} s, "
      f"peak RSS {mb(int(rss.group(1)) * 1024) if rss else '?'}, peak disk {mb(peak)} at {peak_at:.1f} s, "
      f"output {mb(out_size)} (peak disk / output = {peak / out_size if out_size > 0 else float('nan'):.2f}; "
      f"without the journal {mb(peak_nj)}, {peak_nj / out_size if out_size > 0 else float('nan'):.2f})")
for k in sorted(sizes):
    print(f"    {k}: up to {mb(sizes[k])}")
if p.returncode:
    print("\n".join("    " + ln for ln in err.splitlines() if "error" in ln or "Command" in ln))
EOF
}

case ${ONLY:-} in ""|type) measure "quantize --type Q4_K_M" model.gguf quantize "$CKPT" {out} --type Q4_K_M -q "${THR[@]}" ;; esac
case ${ONLY:-} in ""|gptq) measure "quantize --method gptq --format gptq" model quantize "$CKPT" {out} --method gptq \
	--format gptq --bits 4 --group-size 128 --calib "$CALIB" --samples 2 --seq-len 64 -q "${THR[@]}" ;; esac
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
