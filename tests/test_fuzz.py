"""Runs every libFuzzer target in tests/fuzz/ (one per parser of untrusted
input: access rules, PROPFIND replies, MLSD/MLST replies, HTTP header
values, URLs and percent-decoding, the config file) for a bounded time as
part of `make test`: DMSFS_FUZZ_TIME seconds each (default 12, so about
70 s for all).  `make fuzz FUZZ_TIME=600` runs them longer.  A crash, a
sanitizer report or a broken invariant fails the test, which names the
saved crashing input (build/fuzz/crashes/NAME-crash-*)."""
import glob
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ_TIME = int(os.environ.get("DMSFS_FUZZ_TIME", "12"))
TARGETS = sorted(re.sub(r"^fuzz_(.*)\.c$", r"\1", os.path.basename(p))
                 for p in glob.glob(os.path.join(ROOT, "tests/fuzz/fuzz_*.c")))

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang not installed")


@pytest.fixture(scope="module")
def fuzz_built():
    r = subprocess.run(["make", "-s", "-C", ROOT, "fuzz-build"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"building the fuzzers failed:\n{(r.stdout + r.stderr)[-4000:]}"


def test_every_parser_has_a_seed_corpus():
    for t in TARGETS:
        seeds = glob.glob(os.path.join(ROOT, f"tests/fuzz/corpus_{t}/*"))
        assert seeds, f"tests/fuzz/corpus_{t}/ has no seed inputs"


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz(fuzz_built, target):
    r = subprocess.run(["make", "-s", "-C", ROOT, "fuzz", f"FUZZ_TARGETS={target}",
                        f"FUZZ_TIME={FUZZ_TIME}"],
                       capture_output=True, text=True, timeout=FUZZ_TIME + 300)
    out = r.stdout + r.stderr
    crashes = re.findall(r"crashing input: (\S+)", out)
    assert r.returncode == 0, (
        f"fuzz_{target} failed; crashing input: "
        f"{', '.join(os.path.join(ROOT, c) for c in crashes) or 'none saved'}\n"
        f"{out[-6000:]}")
    assert re.search(r"^Done \d+ runs", out, re.M), \
        f"fuzz_{target} did not finish its run:\n{out[-4000:]}"
