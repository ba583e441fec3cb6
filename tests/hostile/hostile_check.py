"""hostile_check.py: the verdict every hostile-input case gets (shared by the run_*.py suites).

A reject case must exit 1 with exactly one "muse: error: " line naming the file and, where one applies, the
byte offset; any case must show no sanitizer report and leave its directory unchanged."""
import os
import re


def listing(d):
    """Every file under d with its size: compared before and after a run to prove nothing was written."""
    return sorted((dp, f, os.path.getsize(os.path.join(dp, f))) for dp, _, fs in os.walk(d) for f in fs)


def verdict(p, kind, path, before, d, offset=None, pattern=None, need_offset=True, name_ok=None):
    """Returns None when the completed process p passes, else why it failed.

    kind: "accept" or "reject"; before: listing(d) taken before the run; offset: the exact byte the message
    must name, if known; pattern: a regex the message must match; name_ok: extra text accepted in place of
    the file's basename (e.g. an index that names its shard)."""
    err = p.stderr.decode("utf-8", "replace") if isinstance(p.stderr, bytes) else p.stderr
    lines = err.splitlines()
    if p.returncode in (98, 99) or "Sanitizer" in err or "runtime error" in err:
        return f"sanitizer report (exit {p.returncode}): {err[-400:]}"
    if listing(d) != before:
        return "files were written or changed"
    if kind == "accept":
        return None if p.returncode == 0 else f"exit {p.returncode}, expected 0: {err[:300]}"
    if p.returncode != 1:
        return f"exit {p.returncode}, expected 1: {err[:300]}"
    if len(lines) != 1 or not lines[0].startswith("muse: error: "):
        return f"expected one 'muse: error: ' line, got {len(lines)}: {err[:300]}"
    line = lines[0]
    if os.path.basename(path) not in line and not (name_ok and name_ok in line):
        return f"message does not name the file: {line}"
    if need_offset and not re.search(r"byte \d+", line):
        return f"message has no byte offset: {line}"
    if offset is not None and f"byte {offset}:" not in line:
        return f"expected 'byte {offset}:' in: {line}"
    if pattern and not re.search(pattern, line):
        return f"message does not match /{pattern}/: {line}"
    return None
