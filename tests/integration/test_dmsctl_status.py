"""dmsctl status (issue 9): per mount, its exports, each source's state
(up; backing off with the time left; its last error, in the backend's
words, and when), bytes, requests and requests in flight per source, the
cache's size, cap, pinned bytes, hit ratio and evictions.  Every mount has
a control socket (read-only ones too); with no PATH every running mount is
shown; --json gives the same as one JSON object; anyone may read the
figures (pending writes stay per user, see test_ctl_socket.py).

Real nginx origins and real FUSE mounts; the down mirror is a port where
nothing listens (connection refused at once).  Needs root and /dev/fuse."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest

import mount as mountlib
from origin import Nginx
from origintree import MIB, assert_same_bytes, read_all
from writetree import DMSCTL

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(DMSCTL, os.X_OK),
                       reason="build/dmsctl is not built"),
]

# Logged when the dead mirror is tried; expected here.
DOWN_ERRORS = (r"transfer: ", r"connection refused", r"Connection refused",
               r"Couldn't connect", r"Failed to connect", r"taken out")


def dead_port():
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def status(*args, user=None):
    cmd = [DMSCTL, "status", *map(str, args)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}",
               "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd="/")


def status_json(mnt, user=None):
    r = status("--json", mnt, user=user)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["mounts"]) == 1, doc
    m = doc["mounts"][0]
    assert m["mount"] == str(mnt)
    return m


def wait_for(fn, what, timeout=30):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def mirrored(tree, nginx, mounter):
    """A read-only mount whose first source is dead, the second nginx."""
    dead = f"http://127.0.0.1:{dead_port()}"
    m = mounter(f"{dead}/;{nginx.url}/", connect_timeout="2",
                expected_errors=DOWN_ERRORS)
    return m, dead, nginx.url


def test_up_source_with_bytes_and_down_mirror_backing_off(tree, mirrored):
    m, dead, up = mirrored
    got = read_all(m.path("big.bin"))
    assert_same_bytes(got, tree.data("big.bin"), "big.bin")
    st = status_json(m.mountpoint)
    assert [e["path"] for e in st["exports"]] == ["/"]
    assert st["exports"][0]["writable"] is False
    src = {s["url"]: s for s in st["sources"]}
    assert set(src) == {dead, up}, st["sources"]
    # The origin that served: up, every byte of the file counted.
    assert src[up]["state"] == "up" and src[up]["last_error"] is None
    assert src[up]["bytes"] >= len(got)
    assert src[up]["requests"] >= 1 and src[up]["in_flight"] == 0
    # The dead mirror: taken out, with why and when.
    d = src[dead]
    assert d["state"] == "down" and d["bytes"] == 0 and d["failures"] >= 1
    assert "connection refused" in d["last_error"], d
    assert 0 <= d["last_error_age_s"] < 120
    assert 0 <= d["retry_in_s"] <= 60
    # The table says the same in words.
    r = status(m.mountpoint)
    assert r.returncode == 0, r.stderr
    row = [ln for ln in r.stdout.splitlines() if ln.strip().startswith(dead)]
    assert len(row) == 1, r.stdout
    assert ("backing off" in row[0]) == d["backing_off"], r.stdout
    assert "connection refused by 127.0.0.1:" in row[0], r.stdout
    uprow = [ln for ln in r.stdout.splitlines()
             if ln.strip().startswith(up + " ")]
    assert len(uprow) == 1 and " up " in uprow[0], r.stdout
    assert r.stdout.splitlines()[-1] == \
        f"dmsctl: nothing pending in {m.mountpoint}"


def test_cache_figures_follow_reads(tree, nginx, mounter):
    m = mounter(nginx.url + "/", cache_size="64M")
    before = status_json(m.mountpoint)["cache"]
    assert before["cap_bytes"] == 64 * MIB
    assert before["pinned_bytes"] == 0      # nothing pinned yet
    assert before["blocks_fetched"] == 0 and before["used_bytes"] == 0
    size = len(read_all(m.path("big.bin")))
    cold = wait_for(lambda: (lambda c: c if c["used_bytes"] >= size else None)(
        status_json(m.mountpoint)["cache"]), "the cache to store big.bin")
    assert cold["blocks_fetched"] * tree.block_size >= size
    assert cold["blocks"] >= size // tree.block_size
    assert cold["hit_ratio"] == 0.0 and cold["evicted_blocks"] == 0
    m.umount()
    # Warm: the same file from the cache, none of it fetched again.
    m2 = mounter(nginx.url + "/", cache_size="64M", cache_dir=m.cache_dir)
    assert read_all(m2.path("big.bin")) == tree.data("big.bin")
    warm = status_json(m2.mountpoint)["cache"]
    assert warm["blocks_fetched"] == 0, warm
    assert warm["blocks_from_cache"] >= size // tree.block_size
    assert warm["hit_ratio"] == 1.0
    r = status(m2.mountpoint)
    assert "hit ratio 100.0%" in r.stdout, r.stdout


def test_no_path_shows_every_mount_and_json_parses(tree, nginx, mounter,
                                                   tmp_path):
    other = tmp_path / "other-origin"
    other.mkdir()
    (other / "x.dat").write_bytes(b"x" * 100000)
    ng2 = Nginx(str(other)).start()
    try:
        a = mounter(nginx.url + "/")
        b = mounter(ng2.url + "/")
        assert read_all(b.path("x.dat")) == b"x" * 100000
        r = status()
        assert r.returncode == 0, r.stderr
        heads = r.stdout.splitlines()
        for m, url in ((a, nginx.url), (b, ng2.url)):
            assert str(m.mountpoint) in heads, r.stdout
            assert any(ln.strip().startswith(url + " ") for ln in heads)
        r = status("--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        mine = {d["mount"]: d for d in doc["mounts"]}
        assert {str(a.mountpoint), str(b.mountpoint)} <= set(mine)
        bsrc = mine[str(b.mountpoint)]["sources"]
        assert [s["url"] for s in bsrc] == [ng2.url]
        assert bsrc[0]["bytes"] >= 100000
        assert mine[str(a.mountpoint)]["sources"][0]["bytes"] == 0
        for d in (mine[str(a.mountpoint)], mine[str(b.mountpoint)]):
            assert set(d) >= {"exports", "sources", "cache", "memory",
                              "pending", "conflicts"}
            assert d["pending"] == [] and d["conflicts"] == []
    finally:
        ng2.stop()


def test_a_user_sees_the_figures(tree, nginx, mounter):
    """Sources and cache are no secret; pending writes stay per user."""
    m = mounter(nginx.url + "/")
    read_all(m.path("big.bin"))
    st = status_json(m.mountpoint, user=65534)
    assert st["sources"][0]["bytes"] > 0 and st["pending"] == []


def test_stale_mount_is_named_and_does_not_fail_the_others(tree, nginx,
                                                           mounter):
    """A daemon killed with -9 leaves its mount (ENOTCONN) and a socket
    nobody listens on.  With no PATH, status and sync warn about it, tell
    how to remove it, and still answer for the live mounts (exit 0); asked
    about it by name, status fails with the same advice."""
    live = mounter(nginx.url + "/")
    dead = mounter(nginx.url + "/")
    os.kill(dead.pid, signal.SIGKILL)
    dead.proc.wait(30)
    dead.proc = None
    try:
        assert mountlib.is_mounted(dead.mountpoint)
        r = status()
        assert r.returncode == 0, r.stderr
        assert str(live.mountpoint) in r.stdout.splitlines(), r.stdout
        assert str(dead.mountpoint) not in r.stdout.splitlines(), r.stdout
        warn = [ln for ln in r.stderr.splitlines()
                if str(dead.mountpoint) in ln]
        assert warn and "not running" in warn[0] and \
            f"fusermount3 -u {dead.mountpoint}" in warn[0], r.stderr
        r = status("--json")
        assert r.returncode == 0, r.stderr
        assert str(live.mountpoint) in \
            {d["mount"] for d in json.loads(r.stdout)["mounts"]}
        r = subprocess.run([DMSCTL, "sync"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL, cwd="/")
        assert r.returncode == 0, r.stderr
        r = status(dead.mountpoint)
        assert r.returncode != 0
        assert "not running" in r.stderr and "fusermount3 -u" in r.stderr, \
            r.stderr
    finally:
        mountlib.run_fusermount(dead.mountpoint, lazy=True)
