"""Writable exports (issue 8), core behaviour: a real nginx WebDAV origin
(and one globus-gridftp-server round trip), a real FUSE mount with -o rw,
writes checked byte for byte in the mount and at the origin after upload.

Needs root, /dev/fuse, nginx and build/dmsfs."""
import errno
import os
import re
import signal
import stat
import subprocess
import time

import pytest

import mount as mountlib
from origin import Nginx

BLOCK = 64 * 1024
DELAY = 1

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
]


def data(n, seed=0):
    return bytes((i * 131 + seed * 7 + (i >> 9)) & 0xFF for i in range(n))


def wait_for(pred, timeout=30, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def origin_has(path, want):
    def check():
        try:
            with open(path, "rb") as f:
                return f.read() == want
        except OSError:
            return False
    return check


@pytest.fixture
def origin(tmp_path):
    root = tmp_path / "origin"
    root.mkdir()
    (root / "old.txt").write_bytes(b"old content\n")
    (root / "dir").mkdir()
    (root / "dir" / "f1").write_bytes(data(5000, 1))
    ng = Nginx(str(root)).start()
    yield root, ng
    ng.stop()


@pytest.fixture
def rw(origin, mounter):
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, block_size="64K",
                writeback_delay=str(DELAY), meta_ttl="1")
    return root, ng, m


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1,
                                  3 * BLOCK + 7])
def test_create_write_read_back(rw, size):
    root, ng, m = rw
    want = data(size, size)
    p = m.path(f"f{size}")
    with open(p, "wb") as f:
        # odd offsets, out of order
        half = size // 2
        f.seek(half)
        f.write(want[half:])
        f.seek(0)
        f.write(want[:half])
    assert os.path.getsize(p) == size
    with open(p, "rb") as f:
        assert f.read() == want
    wait_for(origin_has(root / f"f{size}", want), what="upload")
    with open(p, "rb") as f:
        assert f.read() == want
    assert f"f{size}" in os.listdir(m.mountpoint)
