"""Runs every C unit test binary (build/tests/test_*) as one pytest case."""
import os
import subprocess
import glob
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINS = sorted(glob.glob(os.path.join(ROOT, "build", "tests", "test_*")))


@pytest.mark.parametrize("binary", BINS, ids=[os.path.basename(b) for b in BINS])
def test_unit(binary, tmp_path):
    r = subprocess.run([binary], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 0, f"{binary} failed:\n{r.stdout}\n{r.stderr}"
