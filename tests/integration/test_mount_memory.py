"""Memory of the daemon (issue 9): 32 readers of 32 different files at once,
cold, against a real nginx origin, with default options.  The read-ahead
budget is shared by all readers (mem_cache less 16 MiB of fetch buffers,
whatever holds them), the cache's write queue is 8 MiB and the LMDB map is
dropped every 16 MiB of stores through it, so the daemon's peak resident set (VmHWM,
mapped LMDB pages included) stays under the README's bound (140 MB; the
issue's 100 MB is not met yet) whatever the number of readers; every byte
read is the origin's.

A memory bound, not a speed one: nothing here is timed except as a bound
on a hang.  Needs root and /dev/fuse."""
import hashlib
import json
import os
import subprocess
import threading

import pytest

from origin import Nginx
import mount as mountlib
from origintree import MIB
from writetree import DMSCTL, file_sha

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
]

READERS = 32
FILE_MIB = 24
# README "How memory scales": measured 105-125 MB here (before the shared
# read-ahead budget and map drops: 190-210 MB); the 100 MB is not
# met yet.
VMHWM_BOUND_KB = 140 * 1000


def sanitized():
    """A SANITIZER= build: ASan's shadow memory and quarantine make VmHWM
    meaningless; the data checks still run."""
    with open(mountlib.DMSFS, "rb") as f:
        return b"__asan_init" in f.read()


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for pid {pid}")


@pytest.fixture
def many_files(tmp_path):
    root = tmp_path / "origin"
    root.mkdir()
    digests = {}
    for i in range(READERS):
        seed = hashlib.sha256(b"reader %d" % i).digest()
        chunk = seed * (MIB // len(seed))
        h = hashlib.sha256()
        with open(root / f"r{i:02d}.bin", "wb") as f:
            for k in range(FILE_MIB):
                piece = bytes([i, k]) + chunk[2:]
                f.write(piece)
                h.update(piece)
        digests[f"r{i:02d}.bin"] = h.hexdigest()
    ng = Nginx(str(root)).start()
    yield ng, digests
    ng.stop()


def sha_of(path, out, key):
    out[key] = file_sha(path)


def test_32_readers_stay_under_the_memory_bound(many_files, mounter):
    ng, digests = many_files
    # Default options but for the block size the other tests use: the
    # bench's (64K) is the default too.
    m = mounter(ng.url + "/", block_size=None)
    pid = m.pid
    got = {}
    threads = [threading.Thread(target=sha_of,
                                args=(m.path(name), got, name))
               for name in digests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    assert got == digests     # byte-identical, every file
    hwm = status_kb(pid, "VmHWM")
    assert sanitized() or hwm < VMHWM_BOUND_KB, \
        f"VmHWM {hwm} kB over the {VMHWM_BOUND_KB} kB bound"
    # The whole set was read once from the origin: shared read-ahead does
    # not throw away blocks it fetched for a reader before it read them.
    r = subprocess.run([DMSCTL, "status", "--json", str(m.mountpoint)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["mounts"][0]["cache"]
    blocks = READERS * FILE_MIB * MIB // (64 * 1024)
    assert blocks <= c["blocks_fetched"] <= blocks * 1.1, c


def test_warm_reads_do_not_leave_the_cache_map_resident(tmp_path, mounter):
    """A warm read (every block from the disk cache, the cache file's pages
    in the page cache) of a large file: the LMDB map's pages that the tree
    walks of each hit and LRU touch fault in (each with up to 64 KiB of
    neighbours, block data included) are dropped as they add up, so the
    daemon's file-backed memory stays bounded.  Uncounted, a 1 GiB warm
    read left 110-190 MB of the map resident."""
    root = tmp_path / "origin"
    root.mkdir()
    size = 768 * MIB
    seed = hashlib.sha256(b"warm").digest() * (MIB // 32)
    with open(root / "big.bin", "wb") as f:
        for k in range(size // MIB):
            f.write(bytes([k % 256, k // 256]) + seed[2:])
    ng = Nginx(str(root)).start()
    try:
        cache = tmp_path / "cache"
        m = mounter(ng.url + "/", block_size=None, cache_dir=str(cache))
        want = file_sha(str(root / "big.bin"))
        assert file_sha(m.path("big.bin")) == want
        m.umount()
        m2 = mounter(ng.url + "/", block_size=None, cache_dir=str(cache))
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], status_kb(m2.pid, "RssFile"))
                except (OSError, AssertionError):
                    return
                stop.wait(0.05)
        t = threading.Thread(target=sample)
        t.start()
        try:
            assert file_sha(m2.path("big.bin")) == want
        finally:
            stop.set()
            t.join()
        assert sanitized() or peak[0] < 80 * 1000, \
            f"file-backed resident set peaked at {peak[0]} kB on a warm read"
    finally:
        ng.stop()
