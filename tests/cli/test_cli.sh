# test_cli.sh: the command-line contract: help, version, exit codes, one-line errors, argv[0] dispatch.
. "$(dirname "$0")/lib.sh"

expect_rc version 0 --version
expect_out version_text '^muse [0-9a-f.]+'
expect_rc help 0 help
expect_out help_lists_inspect '^ +inspect '
expect_rc help_inspect 0 help inspect
expect_out help_inspect_usage 'usage: muse inspect PATH'
expect_rc no_args 2
expect_rc unknown_command 2 frobnicate
expect_rc help_unknown 2 help frobnicate
expect_rc unknown_option 2 inspect --bogus x
expect_rc missing_arg 2 inspect
expect_rc extra_arg 2 inspect a b
expect_fail_line missing_file "nope.safetensors: cannot open" inspect "$TMP/nope.safetensors"
expect_fail_line device_file "/dev/null: not a regular file" inspect /dev/null
mkfifo "$TMP/fifo"
expect_fail_line fifo "fifo: not a regular file" inspect "$TMP/fifo"
mkdir -p "$TMP/emptydir"
expect_fail_line empty_dir "emptydir: no model" inspect "$TMP/emptydir"
printf 'ggjt\001\000\000\000' >"$TMP/old.bin"
expect_fail_line legacy_ggjt "legacy GGML" inspect "$TMP/old.bin"
printf '\200\002\212\012' >"$TMP/legacy.pt"
expect_fail_line legacy_torch "legacy .*PyTorch" inspect "$TMP/legacy.pt"

# argv[0] dispatch: the same binary under another name runs that command.
ln -sf "$MUSE" "$TMP/muse-inspect"
"$TMP/muse-inspect" --help >/dev/null 2>&1 && pass argv0_dispatch || fail argv0_dispatch "muse-inspect --help failed"
ln -sf "$MUSE" "$TMP/muse-bogus"
"$TMP/muse-bogus" >/dev/null 2>&1; [ $? = 2 ] && pass argv0_unknown || fail argv0_unknown "expected 2"
for b in bin/muse-convert bin/muse-quantize; do
	[ -L "$b" ] && [ "$(readlink "$b")" = muse ] && pass "link_$(basename "$b")" || fail "link_$(basename "$b")" "missing"
done

# stdout write errors are failures (a full disk), not silent truncation.
if [ -w /dev/full ]; then
	"$MUSE" help >/dev/full 2>/dev/null; [ $? = 1 ] && pass stdout_full || fail stdout_full "expected exit 1 on /dev/full"
else
	skip stdout_full "/dev/full not available"
fi
