"""conftest.py: prints one PASS/FAIL/SKIP line per pytest test for tests/run.sh, and shared fixtures."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUSE = os.environ.get("MUSE", os.path.join(ROOT, "build", "asan", "muse"))


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
        sys.__stdout__.write("\n" + line + "\n")  # pytest -q leaves progress dots on the line
        sys.__stdout__.flush()


@pytest.fixture
def muse():
    """Runs muse with arguments; returns CompletedProcess with text output."""
    def run(*args, check=True):
        p = subprocess.run([MUSE, *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"muse {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
        return p
    return run
