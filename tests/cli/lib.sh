# lib.sh: helpers for CLI tests. Each check prints one PASS/FAIL line; sourced by tests/cli/*.sh.
# MUSE is the binary under test (the sanitized build by default).
: "${MUSE:=$PWD/build/asan/muse}"
MUSE=$(readlink -f "$MUSE")
: "${TMP:=$(mktemp -d)}"
T_NAME=$(basename "${BASH_SOURCE[1]:-cli}" .sh)

pass() { echo "PASS: cli/$T_NAME/$1"; }
fail() { echo "FAIL: cli/$T_NAME/$1${2:+: $2}"; }
skip() { echo "SKIP: cli/$T_NAME/$1: $2"; }

# run_muse ARGS...: runs muse, capturing stdout in $OUT_TXT, stderr in $ERR_TXT and the status in $RC.
run_muse() {
	"$MUSE" "$@" >"$TMP/out.txt" 2>"$TMP/err.txt"
	RC=$?
	OUT_TXT=$(cat "$TMP/out.txt")
	ERR_TXT=$(cat "$TMP/err.txt")
}

# expect_rc NAME CODE ARGS...: status must equal CODE.
expect_rc() {
	local name=$1 want=$2
	shift 2
	run_muse "$@"
	if [ "$RC" = "$want" ]; then pass "$name"; else fail "$name" "exit $RC, expected $want; stderr: $(head -c 300 "$TMP/err.txt")"; fi
}

# expect_fail_line NAME PATTERN ARGS...: exit 1, exactly one stderr line starting "muse: error: " and matching PATTERN.
expect_fail_line() {
	local name=$1 pat=$2
	shift 2
	run_muse "$@"
	local lines
	lines=$(wc -l <"$TMP/err.txt")
	if [ "$RC" != 1 ]; then fail "$name" "exit $RC, expected 1; stderr: $(head -c 300 "$TMP/err.txt")"
	elif [ "$lines" != 1 ]; then fail "$name" "stderr has $lines lines: $(head -c 300 "$TMP/err.txt")"
	elif ! grep -qE "^muse: error: .*$pat" "$TMP/err.txt"; then fail "$name" "stderr '$ERR_TXT' does not match '$pat'"
	else pass "$name"; fi
}

# expect_out NAME PATTERN: the last run's stdout matches PATTERN (grep -E).
expect_out() {
	if grep -qE -- "$2" "$TMP/out.txt"; then pass "$1"; else fail "$1" "stdout does not match '$2'"; fi
}
