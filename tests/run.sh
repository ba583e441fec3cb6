#!/usr/bin/env bash
# run.sh: runs every test tier (unit, CLI, hostile inputs, interop oracles, fuzz-corpus replay).
# Each tier prints PASS/FAIL/SKIP lines; raw output goes to build/test.log. Ends with
# "N passed, N failed, N skipped" and exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
mkdir -p build
LOG=build/test.log
RES=build/test-results.txt
# What each failure said (the end of its report), printed after the summary so a log cut in the middle keeps it.
export MUSE_FAILURES=$PWD/build/test-failures.txt
: >"$LOG"
: >"$RES"
: >"$MUSE_FAILURES"
export MUSE=$PWD/build/asan/muse
export MUSE_REL=$PWD/bin/muse
export PY=$PWD/.venv/bin/python
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98
export MUSE_TEST_TMP=$(mktemp -d /tmp/muse-test.XXXXXX)
# test_quantize_mix.py writes the per-type SmolLM2 perplexity table here (printed after the interop tier).
export MUSE_PPL_TABLE=$PWD/build/ppl-table.txt
rm -f "$MUSE_PPL_TABLE"
trap 'rm -rf "$MUSE_TEST_TMP"' EXIT

# record CMD...: runs CMD, keeps its result lines, sends everything to the log.
record() {
	local out rc
	out=$("$@" 2>&1)
	rc=$?
	printf '%s\n' "$out" >>"$LOG"
	printf '%s\n' "$out" | grep -E '^(PASS|FAIL|SKIP): ' | tee -a "$RES"
	printf '%s\n' "$out" | grep -E '^#' | head -40
	if [ $rc -gt 1 ]; then
		echo "FAIL: $*: exited with status $rc (crash or sanitizer report, see $LOG)" | tee -a "$RES"
		printf '%s\n' "$out" | tail -20
	fi
	# a failing unit or CLI test names itself on a FAIL line; keep the lines around it for the summary
	if [ $rc -ne 0 ] && [ "${2:-}" != -m ]; then  # pytest files keep their own (conftest.py)
		{ echo "--- $*"; printf '%s\n' "$out" | grep -B8 -A2 -E '^FAIL: ' | tail -40; } >>"$MUSE_FAILURES"
	fi
}

T_START=$SECONDS
tier() { echo "== $1 (at $((SECONDS - T_START)) s)"; }
tier "unit tests (ASan+UBSan)"
for t in build/asan/tests/test_*; do
	[ -x "$t" ] && record "$t"
done

tier "CLI tests"
for s in tests/cli/test_*.sh; do
	[ -f "$s" ] || continue
	t0=$SECONDS
	record env TMP="$(mktemp -d "$MUSE_TEST_TMP/cli.XXXXXX")" bash "$s"
	echo "# $s: $((SECONDS - t0)) s" >>"$LOG"
done

tier "hostile inputs"
for s in tests/hostile/run_*.py; do
	[ -f "$s" ] || continue
	t0=$SECONDS
	record "$PY" "$s"
	echo "# $s: $((SECONDS - t0)) s" >>"$LOG"
done

tier "interop against independent implementations"
# One pytest run per file, so the log shows where the time goes (CI has 90 minutes on 2 cores).
# CI has 90 minutes on two cores for deps, builds and tests together; past MUSE_TEST_BUDGET seconds of testing
# the files not yet started are reported as skipped (named, with the reason) instead of running the job out.
BUDGET=${MUSE_TEST_BUDGET:-2700}
# The longest file (every llama-quantize mix on SmolLM2 and two MoE models, with perplexities) runs last, so a
# budget cut falls on it and not on the files after it in name order.
LAST=tests/interop/test_quantize_mix.py
for f in $(ls tests/interop/test_*.py | grep -vx "$LAST") "$LAST"; do
	[ -f "$f" ] || continue
	if [ $((SECONDS - T_START)) -gt "$BUDGET" ]; then
		echo "SKIP: interop/${f#tests/interop/}: test time budget of $BUDGET s spent (run it alone: $PY -m pytest $f)" | tee -a "$RES"
		continue
	fi
	t0=$SECONDS
	record "$PY" -m pytest -q -p no:cacheprovider --durations=5 "$f"
	echo "# $f: $((SECONDS - t0)) s" | tee -a "$LOG"
done

# GPTQModel's CPU kernel loading muse's GPTQ output: GPTQModel lives in its own venv (scripts/deps.sh), so the one
# test that needs it runs again under that interpreter (under .venv it skips, naming this run).
GQ_PY=$PWD/.venv-gptqmodel/bin/python
if [ -x "$GQ_PY" ] && "$GQ_PY" -c 'import gptqmodel' >/dev/null 2>&1; then
	record "$GQ_PY" -m pytest -q -p no:cacheprovider -k gptqmodel tests/interop/test_method_consumers.py
else
	echo "SKIP: interop/test_method_consumers.py::gptqmodel: GPTQModel is not installed in .venv-gptqmodel (see .venv-gptqmodel.log)" | tee -a "$RES"
fi

if [ -f "$MUSE_PPL_TABLE" ]; then
	echo "# SmolLM2-135M perplexity per type (llama-perplexity on muse's outputs):"
	sed 's/^/#   /' "$MUSE_PPL_TABLE"
fi

tier "fuzz corpus replay"
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	name=${f#build/fuzz/fuzz_}
	corpus=tests/fuzz/corpus/$name
	if [ ! -d "$corpus" ]; then
		echo "FAIL: fuzz/$name: no corpus at $corpus" | tee -a "$RES"
		continue
	fi
	n=$(ls "$corpus" | wc -l)
	if "$f" -runs=0 "$corpus" >>"$LOG" 2>&1; then
		echo "PASS: fuzz/$name: replayed $n inputs" | tee -a "$RES"
	else
		echo "FAIL: fuzz/$name: a corpus input crashed (see $LOG)" | tee -a "$RES"
	fi
done

passed=$(grep -c '^PASS: ' "$RES")
failed=$(grep -c '^FAIL: ' "$RES")
skipped=$(grep -c '^SKIP: ' "$RES")
if [ "$failed" -gt 0 ]; then
	echo
	echo "failures:"
	grep '^FAIL: ' "$RES"
	if [ -s "$MUSE_FAILURES" ]; then
		echo
		echo "what they said:"
		cat "$MUSE_FAILURES"
	fi
	echo
	df -h /tmp "$PWD" | sed 's/^/# /'
fi
echo
echo "tests took $((SECONDS - T_START)) s"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
