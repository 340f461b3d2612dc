"""Unmount with an upload in flight (issue 8): unmount waits at most about
unmount_flush for uploads, cuts one still going (its temporary removed at
the origin), keeps it for the next mount, and the next mount completes it
byte for byte.

Real nginx WebDAV origin behind tests/tools/delayrelay (a narrow window and
a delay make a slow link); real FUSE mounts.  Needs root and /dev/fuse."""
import os
import select
import signal
import subprocess
import time

import pytest

import mount as mountlib
from origin import Nginx
from writetree import DMSCTL

RELAY = os.path.join(mountlib.ROOT, "build", "tools", "delayrelay")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(RELAY, os.X_OK),
                       reason="build/tools/delayrelay is missing"),
]


@pytest.fixture
def slow_origin(tmp_path):
    """nginx, and a relay to it at ~300 KB/s (32 KiB window, 50 ms each
    way)."""
    root = tmp_path / "origin"
    root.mkdir()
    ng = Nginx(str(root)).start()
    port = int(ng.url.rsplit(":", 1)[1].split("/")[0])
    p = subprocess.Popen([RELAY, "-w", "32k", "0", f"127.0.0.1:{port}", "50"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        r, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline().decode().strip() if r else ""
        assert line.isdigit(), f"delayrelay did not print its port: {line!r}"
        yield root, ng, f"http://127.0.0.1:{int(line)}/"
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        ng.stop()


def temporaries(root):
    return [n for n in os.listdir(root) if ".dmsfs-" in n]


def test_upload_in_flight_is_cut_at_unmount_flush_and_resumed(slow_origin,
                                                              mounter):
    root, ng, slow_url = slow_origin
    size = 48 << 20          # ~160 s through the relay
    data = os.urandom(1 << 20) * 48
    m = mounter(slow_url, rw=True, writeback_delay="0", unmount_flush="2",
                meta_ttl="1")
    with open(m.path("big.bin"), "wb") as f:
        f.write(data)
    # writeback_delay 0: the upload starts at close and takes minutes
    # (nginx keeps the body to itself until it has all of it)
    time.sleep(5)
    t = time.monotonic()
    m.umount(timeout=60)
    took = time.monotonic() - t
    # unmount_flush 2 s, plus the temporary's DELETE through the relay
    assert took < 20, f"unmount took {took:.1f} s with unmount_flush=2"
    log = m.log()
    assert "cut at unmount_flush" in log, log[-2000:]
    assert "left pending for the next mount" in log, log[-2000:]
    assert not (root / "big.bin").exists()
    end = time.monotonic() + 30
    while temporaries(root) and time.monotonic() < end:
        time.sleep(0.2)
    assert not temporaries(root), "the cut upload left its temporary"
    # the next mount (straight to nginx, same cache) completes it
    m2 = mounter(ng.url + "/", rw=True, writeback_delay="0",
                 cache_dir=m.cache_dir, meta_ttl="1")
    r = subprocess.run([DMSCTL, "sync", "-t", "120", str(m2.mountpoint)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr + m2.log()[-2000:]
    got = (root / "big.bin").read_bytes()
    assert len(got) == size and got == data
    assert not temporaries(root)
