"""dmsctl pin / unpin / pins (issue 9 section 3): a folder pinned brings
every block in (later reads make no origin request), pinned blocks survive
eviction and remounts, a pin past cache_size is refused up front with the
numbers, a user who may not read gets EACCES (and no hidden name), an
interrupted pin stops in the daemon and resumes without refetching, unpin
gives the blocks back to eviction, two mounts on one machine, unmount
with a pin running does not hang, the plain progress line and --json.

Real nginx origins (access log: what was fetched), real FUSE mounts, real
users (useradd, setpriv); needs root and /dev/fuse."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

import accesslog
import mount as mountlib
import origintree
from origin import Nginx
from test_acl_mount import acl_mount, origin, people, public_dir  # noqa: F401
from writetree import DMSCTL

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
]

KIB = 1024
MIB = 1024 * KIB
BLOCK = 64 * KIB


def _tree(root, files):
    for rel, size in files.items():
        origintree.write_file(str(root), rel, size=size,
                              mtime=origintree.BASE_MTIME)


def _gets(ng, rel=None):
    """GETs in the access log (of rel, if given)."""
    return [e for e in accesslog.entries(ng)
            if e[0] == "GET" and (rel is None or e[1] == "/" + rel)]


def _dmsctl(*args, user=None, timeout=120):
    cmd = [DMSCTL, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
               "--init-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout)


def _read_all(path):
    out = {}
    for d, _, names in os.walk(path):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = f.read()
    return out


FOLDER = {f"data/run{i:02d}.bin": 3 * KIB + i * 1000 for i in range(20)}
FOLDER.update({"data/big/one.bin": 5 * MIB + 123,
               "data/big/two.bin": 2 * BLOCK, "data/empty.bin": 0,
               "other/x.bin": 100})


@pytest.fixture
def origin_ng(tmp_path):
    root = tmp_path / "origin"
    _tree(root, FOLDER)
    ng = Nginx(str(root)).start()
    yield root, ng
    ng.stop()


PROGRESS = re.compile(r"^pin (\S+): (\d+)/(\d+) files, (\d+)/(\d+) bytes, "
                      r"(\d+) fetched, \d+\.\d MiB/s, eta \S+$")


def test_pin_folder_then_reads_make_no_request(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    r = _dmsctl("pin", m.path("data"))
    assert r.returncode == 0, r.stderr
    # Not a terminal: plain progress lines, the last one complete.
    lines = r.stdout.splitlines()
    assert lines and all(PROGRESS.match(l) for l in lines), r.stdout
    last = PROGRESS.match(lines[-1])
    want = sum(s for k, s in FOLDER.items() if k.startswith("data/"))
    nfiles = sum(1 for k in FOLDER if k.startswith("data/"))
    assert last.group(1) == str(m.mountpoint)
    assert (int(last.group(2)), int(last.group(3))) == (nfiles, nfiles)
    assert int(last.group(4)) == int(last.group(5)) == want
    assert int(last.group(6)) == want
    before = len(_gets(ng))
    got = _read_all(m.path("data"))
    for rel, data in got.items():
        assert data == (root / "data" / rel).read_bytes(), rel
    assert len(got) == nfiles
    assert len(_gets(ng)) == before, "a read after the pin went to the origin"
    # pins: every file, 100%; a rerun fetches nothing.
    r = _dmsctl("pins", str(m.mountpoint))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("100.0%") >= nfiles, r.stdout
    assert f"total: {nfiles} pins" in r.stdout
    r = _dmsctl("pin", "--json", m.path("data"))
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["ok"] is True
    (one,) = js["mounts"]
    assert one["complete"] and one["fetched"] == 0
    assert one["files"] == one["files_done"] == nfiles
    assert one["bytes"] == one["bytes_done"] == want
    assert len(_gets(ng)) == before


def test_pinned_survive_eviction_and_remount_unpin_releases(origin_ng,
                                                           mounter,
                                                           tmp_path):
    root, ng = origin_ng
    opts = dict(block_size="64K", cache_size="4M")
    m = mounter(ng.url + "/", **opts)
    pinned = "data/big/two.bin"
    assert _dmsctl("pin", "-q", m.path(pinned)).returncode == 0
    # Read other data well past the cap (twice over).
    for _ in range(3):
        _read_all(m.path("data/big"))
        with open(m.path("data/big/one.bin"), "rb") as f:
            f.read()
    m.umount()
    m2 = mounter(ng.url + "/", cache_dir=m.cache_dir, **opts)
    before = _gets(ng, pinned)
    with open(m2.path(pinned), "rb") as f:
        assert f.read() == (root / pinned).read_bytes()
    assert _gets(ng, pinned) == before, "pinned file fetched again"
    r = _dmsctl("pins", str(m2.mountpoint))
    assert "100.0%" in r.stdout and pinned in r.stdout, r.stdout
    # Unpinned: eviction takes its blocks.
    r = _dmsctl("unpin", m2.path("data"))
    assert r.returncode == 0, r.stderr
    assert "unpinned 1 files" in r.stdout
    r = _dmsctl("unpin", m2.path("data"))
    assert r.returncode == 1 and "ENOENT" in r.stderr
    for name in ("run00.bin", "run01.bin"):
        open(m2.path("data", name), "rb").read()
    for _ in range(2):
        with open(m2.path("data/big/one.bin"), "rb") as f:
            f.read()
    m2.umount()
    m3 = mounter(ng.url + "/", cache_dir=m.cache_dir, **opts)
    before = len(_gets(ng, pinned))
    with open(m3.path(pinned), "rb") as f:
        f.read()
    assert len(_gets(ng, pinned)) > before, "unpinned blocks were kept"


def test_pin_over_cap_refused_with_numbers(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K", cache_size="4M")
    before = len(_gets(ng))
    r = _dmsctl("pin", m.path("data"))
    assert r.returncode == 1
    need = sum(s for k, s in FOLDER.items() if k.startswith("data/"))
    assert (f"needs {need} bytes" in r.stderr and
            "0 (0 B) are pinned already" in r.stderr and
            f"cache_size is {4 * MIB}" in r.stderr), r.stderr
    assert len(_gets(ng)) == before, "a refused pin fetched"
    # What fits is pinned; then the rest is refused counting it.
    assert _dmsctl("pin", "-q", m.path("data/big/two.bin")).returncode == 0
    r = _dmsctl("pin", "--json", m.path("data/big/one.bin"))
    assert r.returncode == 1
    ref = json.loads(r.stdout)["mounts"][0]["refused"]
    assert ref == {"needed": FOLDER["data/big/one.bin"],
                   "pinned": 2 * BLOCK, "cap": 4 * MIB}


def test_user_may_pin_only_what_they_may_read(people, acl_mount):  # noqa: F811
    env = acl_mount()
    alice = people.alice
    # The archive's private part is hidden from alice; her home is hers.
    r = _dmsctl("pin", env.path("archive/private"), user=alice)
    assert r.returncode == 1
    assert "EACCES" in r.stderr and "archive/private" in r.stderr
    r = _dmsctl("pin", "--json", env.path("archive"), user=alice)
    out = r.stdout + r.stderr
    assert "secret" not in out and "private" not in out, out
    js = json.loads(r.stdout)
    assert js["ok"] is True, out
    r = _dmsctl("pin", env.path("home", alice.name), user=alice)
    assert r.returncode == 0, r.stderr
    r = _dmsctl("pins", env.mnt, user=alice)
    assert "notes.txt" in r.stdout and "README" in r.stdout, r.stdout
    # bob sees none of alice's pins and may not unpin them; root may.
    r = _dmsctl("pins", env.mnt, user=people.bob)
    assert "notes.txt" not in r.stdout and "total: 0 pins" in r.stdout
    r = _dmsctl("unpin", env.path("archive"), user=people.bob)
    assert r.returncode == 1 and "ENOENT" in r.stderr
    r = _dmsctl("pins", env.mnt)
    assert "notes.txt" in r.stdout
    # root pins the private part (readable by the mount).
    r = _dmsctl("pin", env.path("archive/private"))
    assert r.returncode == 0, r.stderr
    r = _dmsctl("unpin", env.path("/"))
    assert r.returncode == 0 and "unpinned" in r.stdout


@pytest.fixture
def slow(tmp_path):
    """An origin whose every response trickles (limit_rate): a pin of
    its file takes seconds."""
    root = tmp_path / "slow"
    _tree(root, {"big/a.bin": 48 * MIB, "big/b.bin": 8 * MIB})
    ng = Nginx(str(root), extra_server_conf="limit_rate 512k;").start()
    yield root, ng
    ng.stop()


def _start_pin(path):
    p = subprocess.Popen([DMSCTL, "pin", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # Wait for the first progress line with bytes done.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        m = PROGRESS.match(line.strip())
        if m and 0 < int(m.group(4)) < int(m.group(5)):
            return p
        if not line:
            break
    p.kill()
    raise AssertionError("the pin showed no progress")


def test_interrupt_stops_the_daemon_and_rerun_resumes(slow, mounter):
    root, ng = slow
    m = mounter(ng.url + "/", block_size="64K", cache_size="64M")
    p = _start_pin(m.path("big/a.bin"))
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 130, p.stdout.read()
    assert "run it again to resume" in p.stderr.read()
    # The daemon stops fetching: only what was in flight (a 2 MiB run per
    # worker, 4 s each here; nginx logs a request when it ends) finishes.
    time.sleep(8)
    n = len(_gets(ng, "big/a.bin"))
    time.sleep(4)
    assert len(_gets(ng, "big/a.bin")) == n, "the daemon kept fetching"
    size = 48 * MIB
    first = accesslog.byte_ranges(ng, "big/a.bin", size)
    assert sum(e - s for s, e in first) < size
    r = _dmsctl("pin", "--json", m.path("big/a.bin"), timeout=300)
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)["mounts"][0]
    assert 0 < js["fetched"] < size
    ranges = accesslog.byte_ranges(ng, "big/a.bin", size)
    assert accesslog.overlaps(ranges) == [], "a block was fetched twice"
    assert accesslog.covered(ranges, 0, size)


def test_unmount_with_a_pin_running_and_status_meanwhile(slow, mounter):
    root, ng = slow
    m = mounter(ng.url + "/", block_size="64K", cache_size="64M")
    p = _start_pin(m.path("big"))
    # Other requests are served while the pin runs.
    t = time.monotonic()
    r = _dmsctl("pins", str(m.mountpoint), timeout=30)
    assert r.returncode == 0 and "big/a.bin" in r.stdout, r.stderr
    assert time.monotonic() - t < 15
    t = time.monotonic()
    m.umount(timeout=60)
    assert time.monotonic() - t < 45, "unmount waited for the pin"
    assert p.wait(timeout=30) == 1
    err = p.stderr.read()
    assert "ECANCELED" in err or "without an answer" in err, err


def test_two_mounts_one_command(tmp_path, mounter):
    made = []
    for name in ("a", "b"):
        root = tmp_path / f"o{name}"
        _tree(root, {f"{name}/f{i}.bin": 100 * KIB + i for i in range(3)})
        ng = Nginx(str(root)).start()
        made.append((root, ng, mounter(ng.url + "/", block_size="64K")))
    try:
        r = _dmsctl("pin", "--json", made[0][2].path("a"),
                    made[1][2].path("b"))
        assert r.returncode == 0, r.stderr
        js = json.loads(r.stdout)
        assert [x["mount"] for x in js["mounts"]] == \
            [str(made[0][2].mountpoint), str(made[1][2].mountpoint)]
        assert all(x["files_done"] == 3 and x["complete"]
                   for x in js["mounts"])
        for root, ng, m in made:
            before = len(_gets(ng))
            _read_all(m.mountpoint)
            assert len(_gets(ng)) == before
        r = _dmsctl("pins")
        for _, _, m in made:
            assert str(m.mountpoint) in r.stdout
    finally:
        for _, ng, m in made:
            if m.running:
                m.umount()
            ng.stop()


def test_terminal_bar_and_changed_file_keeps_its_pin(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K", meta_ttl="1")
    # On a terminal (script(1) gives dmsctl a pty): the bar, rewritten.
    r = subprocess.run(["script", "-qec", f"{DMSCTL} pin {m.path('data/big')}",
                        "/dev/null"], capture_output=True, timeout=120)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "\r\x1b[K[" in out and "[########################]" in out
    assert "2/2 files" in out and "ETA" in out, out
    # The file changes at the origin: read again, the new version's blocks
    # are pinned and fetched only once.
    rel = "data/big/two.bin"
    new = b"n" * (3 * BLOCK + 5)
    origintree.write_file(str(root), rel, data=new,
                          mtime=origintree.BASE_MTIME + 100)
    time.sleep(2.5)
    with open(m.path(rel), "rb") as f:
        assert f.read() == new
    r = _dmsctl("pins", str(m.mountpoint))
    line = [l for l in r.stdout.splitlines() if rel in l]
    assert line and "100.0%" in line[0] and "192.0 KiB" in line[0], r.stdout


def test_nul_inside_a_path_line_is_refused_daemon_lives(origin_ng, mounter,
                                                       tmp_path, monkeypatch):
    """A pin request with a NUL inside a path line (any local user can
    send one): refused as malformed, and the daemon goes on serving."""
    import glob
    import socket
    rundir = tmp_path / "run"
    rundir.mkdir(mode=0o755)
    monkeypatch.setenv("DMSFS_RUNTIME_DIR", str(rundir))
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    socks = glob.glob(str(rundir / "*.sock"))
    assert len(socks) == 1, socks
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(socks[0])
    s.sendall(b"pin 1\n/da\0ta\n")
    answer = b""
    while True:
        got = s.recv(4096)
        if not got:
            break
        answer += got
    s.close()
    assert answer.startswith(b"error"), answer
    r = _dmsctl("pin", m.path("data"))
    assert r.returncode == 0, r.stderr
