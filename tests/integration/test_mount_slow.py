"""Slow origins (issue 7, defect 4): an origin that trickles or stalls must
not hold a reader longer than the deadlines the README promises.

Every request to an origin has an overall deadline of
connect_timeout + bytes / min_rate; a listing must keep that pace as it
arrives.  A reader waits for fetches already under way (read-ahead) only as
long as its own bytes would take at min_rate, then fetches them itself.

The mounts use connect_timeout=1 (deadline base 2 s) and the default
min_rate (64 KiB/s), so the same tests run against a build without the
min_rate option: there they hang for a minute or more, here they end in
seconds.  Bounds below are the documented ones with 3x slack for a noisy
machine, and every read runs in a child process with a hard timeout.
"""
import errno
import os
import shutil
import signal
import subprocess
import time

import pytest

import origintree
from fakeorigin import FakeFile, FakeOrigin
from gridftp_origin import SERVER, GridFTP, make_root
from mount import pid_alive, read_in_child
from origintree import BLOCK, KIB

CONNECT_S = 1
MIN_RATE = 64 * KIB             # the default
BASE_S = CONNECT_S              # connect_timeout
KERNEL_REQ = 128 * KIB          # FUSE read size for a small buffered read
SLACK = 3
OPTS = {"connect_timeout": CONNECT_S, "stall_timeout": 30}
BIG = 8 << 20


def deadline_s(nbytes, min_rate=MIN_RATE):
    """The documented deadline of one request of nbytes."""
    return BASE_S + nbytes / min_rate


def data_for(name, size):
    return origintree.content("slow:" + name, size)


@pytest.fixture
def origins():
    """origins(files_spec, listing="ok") -> started FakeOrigin, where
    files_spec is {name: (size, behaviour)}.  Slow replies are released
    before the mounts are torn down (mounter's teardown runs after)."""
    started = []

    def start(spec, listing="ok"):
        files = {name: FakeFile(data_for(name, size), behaviour)
                 for name, (size, behaviour) in spec.items()}
        fo = FakeOrigin(files, listing=listing).start()
        started.append(fo)
        return fo
    yield start
    for fo in started:
        fo.stop()


def release_all(*fos):
    for fo in fos:
        fo.release_slow()


def assert_daemon_alive(m):
    assert m.pid and pid_alive(m.pid), "the daemon died"


def assert_log_says_why(m, name):
    lines = [ln for ln in m.log().splitlines()
             if f"/{name}" in ln and "deadline" in ln]
    assert lines, f"no log line names {name} and its deadline:\n" + \
        "\n".join(m.log().splitlines()[-20:])


def test_reader_does_not_wait_for_read_ahead(origins, mounter):
    """Large requests (read-ahead runs) trickle, the reader's own small ones
    are quick: a 4 KiB read inside a trickling read-ahead run returns after
    the reader's patience plus its own request, not after the run."""
    rate = 4 * KIB
    fo = origins({"big.bin": (BIG, f"trickle:{rate}:{KERNEL_REQ + 1}"),
                  "ok.bin": (3 * BLOCK, "ok")})
    m = mounter(fo.url, expected_errors=[r"big\.bin"], **OPTS)
    want = data_for("big.bin", BIG)
    bound = SLACK * (KERNEL_REQ / MIN_RATE + deadline_s(KERNEL_REQ))
    try:
        r = read_in_child(m.path("big.bin"), 0, 4096, timeout=60)
        assert r["errno"] == 0
        # The first read queued blocks 2.. as one read-ahead run, which
        # trickles; 4 KiB in block 4 must not wait for that run
        # (256 KiB at 4 KiB/s: a minute).
        with open(m.path("big.bin"), "rb") as f:
            assert os.pread(f.fileno(), 4096, 0) == want[:4096]
        start = time.monotonic()
        r = read_in_child(m.path("big.bin"), 4 * BLOCK + 100, 4096,
                          timeout=45)
        assert r["errno"] == 0, f"read failed: {errno.errorcode[r['errno']]}"
        assert r["elapsed"] < bound, \
            f"4 KiB read took {r['elapsed']:.1f}s, bound {bound:.0f}s"
        with open(m.path("big.bin"), "rb") as f:
            got = os.pread(f.fileno(), 4096, 4 * BLOCK + 100)
        origintree.assert_same_bytes(got, want[4 * BLOCK + 100:
                                               4 * BLOCK + 4196],
                                     "read inside a trickling run")
        assert time.monotonic() - start < 2 * bound
        assert "fetching them for the reader" in m.log() or \
            "deadline" in m.log()
        assert_daemon_alive(m)
    finally:
        release_all(fo)


@pytest.mark.parametrize("behaviour", ["trickle:2048", "stall"])
def test_read_past_deadline_is_eio(origins, mounter, behaviour):
    """A read that cannot finish in time (2 KiB/s, above the 1 KiB/s stall
    limit; or nothing at all) fails with EIO within its deadline bound; the
    daemon keeps serving other files and logs the URL and deadline."""
    fo = origins({"slow.bin": (BIG, behaviour),
                  "ok.bin": (3 * BLOCK + 5, "ok")})
    m = mounter(fo.url, expected_errors=[r"slow\.bin"], **OPTS)
    # A failed readahead request is followed by the kernel's one-page
    # read: two requests at most.
    bound = SLACK * (deadline_s(KERNEL_REQ) + deadline_s(BLOCK))
    try:
        r = read_in_child(m.path("slow.bin"), 0, 4096, timeout=60)
        assert r["errno"] == errno.EIO, \
            f"want EIO, got {errno.errorcode.get(r['errno'], r['errno'])}"
        assert r["elapsed"] < bound, \
            f"EIO after {r['elapsed']:.1f}s, bound {bound:.0f}s"
        assert_daemon_alive(m)
        r = read_in_child(m.path("ok.bin"), timeout=30)
        assert r["errno"] == 0 and r["size"] == 3 * BLOCK + 5
        assert_log_says_why(m, "slow.bin")
    finally:
        release_all(fo)


@pytest.mark.parametrize("listing", ["trickle:2048", "stall"])
def test_slow_listing_is_eio(origins, mounter, listing):
    """A listing that trickles (size unknown up front) must keep the pace:
    it fails with EIO, not EHOSTDOWN, a few seconds after falling behind."""
    spec = {f"file-with-a-long-name-{i:05d}.dat": (100, "ok")
            for i in range(400)}
    fo = origins(spec, listing=listing)
    m = mounter(fo.url, expected_errors=[r"PROPFIND|listing"], **OPTS)
    bound = SLACK * (deadline_s(0) + 2)
    code = ("import os, sys, errno\n"
            "try:\n    os.listdir(sys.argv[1]); print(0)\n"
            "except OSError as e:\n    print(e.errno)\n")
    try:
        start = time.monotonic()
        try:
            out = subprocess.run(["/usr/bin/python3", "-c", code, m.path()],
                                 capture_output=True, text=True, timeout=50)
        except subprocess.TimeoutExpired:
            raise AssertionError("listing hung for more than 50 s")
        elapsed = time.monotonic() - start
        rc = int(out.stdout.strip())
        assert rc == errno.EIO, \
            f"want EIO, got {errno.errorcode.get(rc, rc)}"
        assert elapsed < bound, f"EIO after {elapsed:.1f}s, bound {bound}s"
        assert_daemon_alive(m)
        assert "slower than min_rate" in m.log()
    finally:
        release_all(fo)


def test_trickling_mirror_fails_over(origins, mounter):
    """First source trickles, second is good: the read succeeds through the
    second one once the first one's deadline has passed."""
    size = 3 * BLOCK + 11
    slow = origins({"f.bin": (size, "trickle:2048")})
    good = origins({"f.bin": (size, "ok")})
    m = mounter(f"{slow.url};{good.url}",
                expected_errors=[rf"{slow.url}/f\.bin"], **OPTS)
    bound = SLACK * (deadline_s(KERNEL_REQ) + 2)
    try:
        r = read_in_child(m.path("f.bin"), timeout=60)
        assert r["errno"] == 0
        assert r["elapsed"] < bound, \
            f"read took {r['elapsed']:.1f}s, bound {bound:.0f}s"
        with open(m.path("f.bin"), "rb") as f:
            got = f.read()
        origintree.assert_same_bytes(got, data_for("f.bin", size),
                                     "read via the second source")
        assert good.requests_for("f.bin"), "second source never asked"
        assert_log_says_why(m, "f.bin")
    finally:
        release_all(slow, good)


def test_min_rate_option_checked(mounter, origins):
    fo = origins({"a": (10, "ok")})
    m = mounter(fo.url, start=False, min_rate="12")
    r = subprocess.run(m.argv(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "min_rate" in r.stderr, r.stderr


@pytest.mark.skipif(not os.access(SERVER, os.X_OK),
                    reason="globus-gridftp-server is not installed")
def test_gridftp_silent_server_deadline(mounter, tmp_path):
    """GridFTP has no per-operation timeout of its own: the backend's
    watchdog aborts a RETR past its deadline even when the stall limit
    (stall_timeout=30) would wait much longer.  SIGSTOP keeps every
    connection open with nothing answering."""
    root = make_root()
    size = 3 * BLOCK + 5
    try:
        for name in ("a.bin", "b.bin"):
            with open(os.path.join(root, name), "wb") as f:
                f.write(data_for(name, size))
            os.chmod(os.path.join(root, name), 0o644)
        with GridFTP(root) as g:
            m = mounter(g.url, expected_errors=[r"a\.bin"], **OPTS)
            assert sorted(os.listdir(m.path())) == ["a.bin", "b.bin"]
            os.stat(m.path("a.bin"))
            g.signal_all(signal.SIGSTOP)
            # Two requests (readahead, then the kernel's one page), each
            # its deadline plus the abort grace (10 s).
            bound = SLACK * (deadline_s(KERNEL_REQ) + deadline_s(BLOCK)
                             + 2 * 10) / 2
            try:
                r = read_in_child(m.path("a.bin"), 0, 4096, timeout=80)
            finally:
                g.signal_all(signal.SIGCONT)
            assert r["errno"] == errno.EIO, \
                f"want EIO, got {errno.errorcode.get(r['errno'])}"
            assert r["elapsed"] < bound, \
                f"EIO after {r['elapsed']:.1f}s, bound {bound:.0f}s"
            assert_daemon_alive(m)
            assert_log_says_why(m, "a.bin")
            r = read_in_child(m.path("b.bin"), timeout=60)
            assert r["errno"] == 0 and r["size"] == size
            m.umount()
    finally:
        shutil.rmtree(root, ignore_errors=True)
