"""dmsctl sync/status as a user meets them (issue 8): sync with no PATH
waits for every writable dmsfs mount, several PATHs, a progress line with
files and bytes, help on stdout, "nothing pending", and a caller that stops
reading its answer does not hold up the next one.

Real nginx WebDAV origins and real FUSE mounts; needs root and /dev/fuse."""
import os
import socket
import subprocess
import time

import pytest

import mount as mountlib
from origin import Nginx
from writetree import DMSCTL, wait_uploaded

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
]


@pytest.fixture
def two(tmp_path, mounter):
    """Two origins, each with its own writable mount (long writeback_delay:
    only a sync makes uploads go)."""
    out = []
    for name in ("a", "b"):
        root = tmp_path / f"origin-{name}"
        root.mkdir()
        ng = Nginx(str(root)).start()
        # unmount_flush 0: the test that stops its origin must not spend
        # the flush time at unmount; its failed uploads are logged.
        m = mounter(ng.url + "/", rw=True, writeback_delay="3600",
                    unmount_flush="0", connect_timeout="1",
                    expected_errors=(r"transfer: ", r"writeback: "))
        out.append((root, ng, m))
    yield out
    for _, ng, m in out:
        if m.running:
            m.umount()
        ng.stop()


def run(*args, timeout=120):
    return subprocess.run([DMSCTL, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_goes_to_stdout_and_exits_0():
    for flag in ("-h", "--help", "help"):
        r = run(flag)
        assert r.returncode == 0, r
        assert "dmsctl sync" in r.stdout and not r.stderr
    r = run("frobnicate")
    assert r.returncode == 2 and "usage" in r.stderr


def test_sync_without_path_waits_for_every_mount(two):
    for i, (root, _, m) in enumerate(two):
        os.mkdir(m.path("d"))
        with open(m.path("d", "f"), "wb") as f:
            f.write(bytes([i]) * (3 * 65536 + 5))
    assert not (two[0][0] / "d" / "f").exists()
    r = run("sync", "-t", "120")
    ours = [str(m.mountpoint) for _, _, m in two]
    if r.returncode != 0:
        # a shared machine may hold other dmsfs mounts: only theirs may fail
        bad = [ln for ln in r.stderr.splitlines()
               if any(mp in ln for mp in ours) and "pending (" not in ln]
        assert not bad, r.stderr
    for i, (root, _, m) in enumerate(two):
        assert (root / "d" / "f").read_bytes() == bytes([i]) * (3 * 65536 + 5)
        assert f"everything under {m.mountpoint} is at the origin" in r.stdout


def test_sync_of_several_paths_and_quiet(two):
    (ra, _, ma), (rb, _, mb) = two
    open(ma.path("x"), "wb").write(b"x" * 10)
    open(mb.path("y"), "wb").write(b"y" * 10)
    r = run("sync", "-q", "-t", "120", ma.path("x"), str(mb.mountpoint))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert (ra / "x").read_bytes() == b"x" * 10
    assert (rb / "y").read_bytes() == b"y" * 10


def test_progress_and_what_is_left_when_the_origin_is_down(two):
    (root, ng, m) = two[0]
    for i in range(3):
        open(m.path(f"f{i}"), "wb").write(b"z" * 1000)
    os.mkdir(m.path("dir"))
    ng.stop()
    r = run("sync", "-t", "3", str(m.mountpoint), timeout=60)
    assert r.returncode == 1
    # non-terminal progress: one plain line naming operations, files, bytes
    assert "4 operations pending (3 files, 2.9 KiB)" in r.stderr, r.stderr
    assert "gave up after 3 s: 4 operations (3000 bytes) still pending" \
        in r.stderr, r.stderr
    assert "\r" not in r.stderr and "\033" not in r.stderr


def test_status_nothing_pending_and_listing(two):
    (root, _, m) = two[0]
    r = run("status", str(m.mountpoint))
    assert r.returncode == 0, r.stderr
    # The mount's figures first (test_dmsctl_status.py), then the pending.
    assert r.stdout.splitlines()[0] == str(m.mountpoint)
    assert r.stdout.endswith(f"\ndmsctl: nothing pending in {m.mountpoint}\n")
    for i in range(50):
        open(m.path(f"n{i:03d}"), "wb").write(b"q")
    r = run("status", str(m.mountpoint))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[:4] for ln in lines].count(
        ["SEQ", "AGE_S", "RETRIES", "OPERATION"]) == 1
    assert sum(" upload /n" in ln for ln in lines) == 50
    assert lines[-1] == f"dmsctl: 50 operations pending in {m.mountpoint}"
    assert not any(ln == "." for ln in lines)


def test_a_caller_that_does_not_read_does_not_block_others(two):
    """One thread serves the socket: a caller that asks for a long status
    and never reads it is dropped after a bounded time."""
    (root, _, m) = two[0]
    for i in range(1000):
        open(m.path("n%04d-%s" % (i, "p" * 240)), "wb").write(b"q")
    socks = [p for p in os.listdir(_rundir()) if p.endswith(".sock")]
    assert socks
    stuck = []
    for p in socks:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.connect(os.path.join(_rundir(), p))
            s.sendall(b"status\n")
            stuck.append(s)
        except OSError:
            s.close()
    try:
        t = time.monotonic()
        r = run("status", str(m.mountpoint), timeout=60)
        assert r.returncode == 0, r.stderr
        assert sum(" upload /n" in ln for ln in r.stdout.splitlines()) == 1000
        assert time.monotonic() - t < 30
    finally:
        for s in stuck:
            s.close()
    r = run("sync", "-t", "120", str(m.mountpoint))
    assert r.returncode == 0, r.stderr
    assert len([n for n in os.listdir(root) if n.startswith("n")]) == 1000


def _rundir():
    return os.environ.get("DMSFS_RUNTIME_DIR") or "/run/dmsfs"


def test_status_of_a_rename_between_two_long_paths(two):
    """A rename names two paths of up to 4095 bytes each, more than one
    status line holds: the line is cut, the table stays whole."""
    (root, _, m) = two[0]
    comps = ["a" * 250 for _ in range(16)] + ["b" * 67]   # 4088-byte paths
    fds = []
    cwd = os.getcwd()
    try:
        for top in ("A", "B"):
            os.chdir(str(m.mountpoint))
            for c in [top] + comps:       # relative: past PATH_MAX here
                os.mkdir(c)
                os.chdir(c)
            fds.append(os.open(".", os.O_RDONLY | os.O_DIRECTORY))
        os.chdir(cwd)
        fd = os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fds[0])
        os.close(fd)
        os.rename("f", "g", src_dir_fd=fds[0], dst_dir_fd=fds[1])
    finally:
        os.chdir(cwd)
        for fd in fds:
            os.close(fd)
    r = run("status", str(m.mountpoint))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum(" rename /A/" in ln for ln in lines) == 1, r.stdout[-500:]
    assert lines[-1].startswith("dmsctl: ") and \
        lines[-1].endswith(f"operations pending in {m.mountpoint}")
