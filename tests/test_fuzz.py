"""Fuzzes the access-rules parser and evaluator (libFuzzer) for a bounded
time as part of `make test`; any crash, sanitizer report or mismatch with
the reference evaluator fails the test."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ_TIME = os.environ.get("DMSFS_FUZZ_TIME", "30")


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_fuzz_acl_rules():
    r = subprocess.run(["make", "-s", "-C", ROOT, "fuzz", f"FUZZ_TIME={FUZZ_TIME}"],
                       capture_output=True, text=True, timeout=int(FUZZ_TIME) + 300)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, f"fuzzer failed:\n{tail}"
    assert "Done" in r.stderr, f"fuzzer did not finish its run:\n{tail}"
