"""conftest.py: prints one PASS/FAIL/SKIP line per pytest test for tests/run.sh, and shared fixtures."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))


def _keep_failure(name, report):
    """Appends the end of a failure's report to $MUSE_FAILURES, which tests/run.sh prints after its summary (CI logs
    show only their head and tail, so the reason must come last)."""
    path = os.environ.get("MUSE_FAILURES")
    if not path:
        return
    text = report.longreprtext.splitlines()
    with open(path, "a") as f:
        f.write(f"--- {name} ({report.when})\n" + "\n".join(text[-40:]) + "\n")


def pytest_runtest_logreport(report):
    name = "interop/" + report.nodeid.split("tests/interop/", 1)[-1]
    if report.when == "call" or report.outcome != "passed":
        if report.outcome == "passed":
            line = f"PASS: {name}"
        elif report.outcome == "skipped":
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            line = f"SKIP: {name}: {reason}"
        else:
            line = f"FAIL: {name}"
            _keep_failure(name, report)
        sys.__stdout__.write("\n" + line + "\n")  # pytest -q leaves progress dots on the line
        sys.__stdout__.flush()


def muse_runner(binary):
    """A function that runs `binary` with arguments and returns the CompletedProcess (text output); with check, a
    non-zero exit fails the test with muse's stderr."""
    def run(*args, check=True):
        p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"muse {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
        return p
    return run


@pytest.fixture
def muse():
    """Runs muse (the ASan build unless $MUSE says otherwise) with arguments."""
    return muse_runner(MUSE)
