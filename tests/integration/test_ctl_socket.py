"""The control socket between a writable mount's daemon and dmsctl (issue 8):
a socket file in a folder only the daemon's user can write, never an
abstract name another local user could bind first.

Real mounts of a real nginx WebDAV origin, a real local user (useradd) as
the attacker.  DMSFS_RUNTIME_DIR points daemon and dmsctl at a folder of
the test (the default, /run/dmsfs, is shared with every other mount on the
machine).  Needs root, FUSE, nginx, useradd/setpriv, build/dmsfs and
build/dmsctl.
"""
import fcntl
import glob
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import mount as mountlib
import writetree as wt
from test_acl_mount import User
from test_home_write import _start_origin, _stop_origin

pytestmark = wt.skip_marks() + [
    pytest.mark.skipif(wt.LOCAL, reason="dmsfs-only behaviour"),
    pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv missing"),
]

SLOW = {"writeback_delay": 3600}   # keeps a write pending for status


@pytest.fixture
def dav():
    o = _start_origin("webdav")
    yield o
    _stop_origin(o)


@pytest.fixture
def rundir(monkeypatch):
    """The socket folder of this test (not made yet), seen by the daemon
    and by dmsctl through the environment; in a folder others can pass
    through (the attacker must reach it)."""
    top = tempfile.mkdtemp(prefix="dmsfs-run-")
    os.chmod(top, 0o755)
    d = pathlib.Path(top) / "run"
    monkeypatch.setenv("DMSFS_RUNTIME_DIR", str(d))
    yield d
    shutil.rmtree(top, ignore_errors=True)


def _account(name):
    """A new local account for the module's tests, removed after."""
    if not shutil.which("useradd"):
        pytest.skip("useradd missing")
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=60)
    try:
        yield User(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def mallory():
    yield from _account(f"dmsq{os.getpid()}")


@pytest.fixture
def mounts(tmp_path):
    made = []

    def make(o, workdir=None, **opts):
        wm = wt.WriteMount(o.url, o.home, workdir or tmp_path /
                           f"w{len(made)}", **opts)
        made.append(wm)
        return wm.start()
    yield make
    errors = []
    for wm in made:
        try:
            wm.cleanup()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "teardown unmount failed:\n" + "\n".join(errors)


def socks(d):
    return sorted(glob.glob(os.path.join(str(d), "*.sock")))


def status(path):
    return wt.dmsctl("status", path, timeout=60)


def pending(path, name):
    """A file written in the mount that stays pending (writeback_delay)."""
    with open(os.path.join(path, name), "wb") as f:
        f.write(b"pending\n")


# A stand-in for someone else's program listening where dmsctl looks: it
# answers every request "nothing pending" and records what it was sent.
_SQUATTER = r"""
import socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if path.startswith("@"):
    s.bind("\0" + path[1:])
else:
    s.bind(path)
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        got = c.recv(8192)
    except OSError:
        got = b""
    with open(log, "ab") as f:
        f.write(got)
    try:
        c.sendall(b".\n" if got.startswith(b"status") else b"0 0 -\n")
    except OSError:
        pass
    c.close()
"""


class Squatter:
    def __init__(self, user, path, log):
        self.log = str(log)
        open(self.log, "wb").close()
        os.chown(self.log, user.uid, user.gid)
        self.p = subprocess.Popen(
            ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
             "--clear-groups", sys.executable, "-c", _SQUATTER, str(path),
             self.log], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd="/")
        line = self.p.stdout.readline()
        assert line.strip() == "ready", self.p.stderr.read()

    def received(self):
        with open(self.log, "rb") as f:
            return f.read()

    def stop(self):
        self.p.kill()
        self.p.wait(30)


def test_socket_file_in_runtime_dir_removed_on_exit(dav, mounts, rundir):
    wm = mounts(dav, **SLOW)
    assert os.path.isdir(rundir)
    st = os.stat(rundir)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o755
    (sock,) = socks(rundir)
    assert os.path.exists(sock[:-5] + ".lock")
    pending(wm.path(), "a.txt")
    r = status(wm.path())
    assert r.returncode == 0, r.stderr
    assert "upload /a.txt" in r.stdout, r.stdout
    # sync makes the upload go at once.
    r = wt.dmsctl("sync", wm.path(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(dav.home, "a.txt"))
    wm.umount()
    assert os.listdir(rundir) == [], "socket or lock left after unmount"


def test_two_mounts_side_by_side(dav, mounts, rundir, tmp_path):
    a = mounts(dav, **SLOW)
    b = mounts(dav, **SLOW)
    assert len(socks(rundir)) == 2
    pending(a.path(), "only-in-a.txt")
    ra, rb = status(a.path()), status(b.path())
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
    assert "only-in-a.txt" in ra.stdout
    assert "only-in-a.txt" not in rb.stdout, "b answered for a"
    r = wt.dmsctl("sync", b.path(), timeout=60)
    assert r.returncode == 0, r.stderr


def test_long_mountpoint(dav, mounts, tmp_path, rundir):
    # Far past the 108 bytes of sun_path (and the old abstract name).
    deep = tmp_path / "/".join(["d" * 60] * 6)
    assert len(str(deep)) > 300
    deep.mkdir(parents=True)
    wm = mounts(dav, workdir=deep, **SLOW)
    pending(wm.path(), "x.txt")
    r = status(wm.path())
    assert r.returncode == 0, r.stderr + wm.log()
    assert "upload /x.txt" in r.stdout


def test_stale_socket_after_kill9_is_replaced(dav, mounts, rundir):
    wm = mounts(dav, **SLOW)
    (sock,) = socks(rundir)
    wm.kill9()
    assert socks(rundir) == [sock], "kill -9 cannot remove it"
    wm.start()
    assert socks(rundir) == [sock]
    assert "removed the stale control socket" in wm.log()
    pending(wm.path(), "after.txt")
    r = status(wm.path())
    assert r.returncode == 0, r.stderr
    assert "after.txt" in r.stdout


def test_live_socket_is_not_taken_over(dav, mounts, rundir, tmp_path):
    """A live owner (lock held, socket listening) keeps its socket: a new
    daemon for the same mountpoint says so and leaves it alone."""
    wm = mounts(dav, workdir=tmp_path / "w", **SLOW)
    (sock,) = socks(rundir)
    lock = sock[:-5] + ".lock"
    wm.umount()
    # Someone (as root: a daemon) holds the name now.
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(sock)
    live.listen(1)
    ino = os.stat(sock).st_ino
    try:
        wm.start()
        assert os.stat(sock).st_ino == ino, "a live daemon's socket stolen"
        assert "another dmsfs daemon is alive" in wm.log()
        wm.umount()
        assert os.stat(sock).st_ino == ino, "removed at exit, not ours"
    finally:
        live.close()
        os.close(fd)


@pytest.mark.parametrize("how", ["owned-by-user", "world-writable"])
def test_untrusted_folder_refused_and_squatter_not_believed(
        dav, mounts, rundir, mallory, tmp_path, how):
    # Learn this mountpoint's socket name from a first mount.
    wm = mounts(dav, workdir=tmp_path / "w", **SLOW)
    (sock,) = socks(rundir)
    wm.umount()
    if how == "owned-by-user":
        os.chown(rundir, mallory.uid, mallory.gid)
    else:
        os.chmod(rundir, 0o777)
    sq = Squatter(mallory, sock, rundir.parent / "squat.log")
    try:
        wm.start()
        assert "refusing the control socket folder" in wm.log(), wm.log()
        pending(wm.path(), "secret.txt")
        r = wt.dmsctl("sync", wm.path(), timeout=60)
        assert r.returncode == 1, "dmsctl believed the squatter"
        assert f"served by uid {mallory.uid}" in r.stderr, r.stderr
        r = status(wm.path())
        assert r.returncode == 1 and "not trusting" in r.stderr
        assert sq.received() == b"", "dmsctl sent a request to the squatter"
    finally:
        sq.stop()


def test_old_abstract_name_squatted_does_not_matter(dav, mounts, rundir,
                                                   mallory, tmp_path):
    """Before, the socket was the abstract name "dmsfs-ctl:" + mountpoint:
    whoever bound it first answered dmsctl.  Now that name means nothing."""
    work = tmp_path / "w"
    mnt = work / "mnt"
    mnt.mkdir(parents=True)
    sq = Squatter(mallory, "@dmsfs-ctl:" + str(mnt), rundir.parent / "squat.log")
    try:
        wm = mounts(dav, workdir=work, **SLOW)
        pending(wm.path(), "mine.txt")
        r = status(wm.path())
        assert r.returncode == 0, r.stderr
        assert "upload /mine.txt" in r.stdout, "answered by someone else"
        r = wt.dmsctl("sync", wm.path(), timeout=60)
        assert r.returncode == 0, r.stderr
        assert os.path.exists(os.path.join(dav.home, "mine.txt"))
        assert sq.received() == b""
    finally:
        sq.stop()


def test_default_folder_is_run_dmsfs(dav, mounts, monkeypatch):
    monkeypatch.delenv("DMSFS_RUNTIME_DIR", raising=False)
    wm = mounts(dav, **SLOW)
    st = os.stat("/run/dmsfs")
    assert st.st_uid == 0 and not st.st_mode & 0o022
    pending(wm.path(), "d.txt")
    r = status(wm.path())
    assert r.returncode == 0, r.stderr
    assert "upload /d.txt" in r.stdout


# ---------------------------------------------------------------- user mounts

@pytest.fixture(scope="module")
def eve():
    yield from _account(f"dmse{os.getpid()}")


class UserMount(mountlib.Mount):
    """A dmsfs mount made by a user (through fusermount3), not root."""

    def __init__(self, user, *a, **kw):
        super().__init__(*a, **kw)
        self.user = user

    def argv(self):
        return ["setpriv", f"--reuid={self.user.uid}",
                f"--regid={self.user.gid}", "--clear-groups",
                *super().argv()]


def as_user_run(user, *cmd):
    return subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
         "--clear-groups", *map(str, cmd)], capture_output=True, text=True,
        timeout=120, cwd="/", env={"PATH": "/usr/bin:/bin"})


def _users_can_mount():
    try:
        return bool(os.stat("/dev/fuse").st_mode & 0o006)
    except OSError:
        return False


@pytest.fixture
def user_mount(dav, mallory, monkeypatch):
    """mallory mounts the dav origin read-write herself (libfuse opens
    /dev/fuse before it asks fusermount3: it must be open to users)."""
    if not _users_can_mount():
        pytest.skip("/dev/fuse is not open to users here")
    monkeypatch.delenv("DMSFS_RUNTIME_DIR", raising=False)
    top = tempfile.mkdtemp(prefix="dmsfs-umnt-")
    os.chmod(top, 0o755)
    os.chown(top, mallory.uid, mallory.gid)
    for d in ("mnt", "cache"):
        os.mkdir(os.path.join(top, d), 0o700)
        os.chown(os.path.join(top, d), mallory.uid, mallory.gid)
    made = []

    def make():
        m = UserMount(mallory, dav.url, os.path.join(top, "mnt"),
                      os.path.join(top, f"dmsfs{len(made)}.log"),
                      {**wt.WRITE_OPTS, **SLOW, "block_size": "64K",
                       "cache_dir": os.path.join(top, "cache")})
        made.append(m)
        return m.start()
    yield make
    try:
        for m in made:
            if m.running:
                m.umount()
    finally:
        for m in made:
            m.cleanup()
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(f"/tmp/dmsfs-{mallory.uid}", ignore_errors=True)


def _user_dir(u):
    run = f"/run/user/{u.uid}"
    return f"{run}/dmsfs" if os.path.isdir(run) else f"/tmp/dmsfs-{u.uid}"


def test_user_mount_has_its_own_private_folder(user_mount, mallory):
    shutil.rmtree(f"/tmp/dmsfs-{mallory.uid}", ignore_errors=True)
    m = user_mount()
    d = _user_dir(mallory)
    st = os.stat(d)
    assert st.st_uid == mallory.uid and st.st_mode & 0o777 == 0o700
    assert len(socks(d)) == 1
    r = as_user_run(mallory, "sh", "-c",
                    f"echo x > {m.path('u.txt')} && {wt.DMSCTL} status "
                    f"{m.mountpoint}")
    assert r.returncode == 0, r.stderr + m.log()
    assert "upload /u.txt" in r.stdout
    m.umount()
    assert socks(d) == []


def test_user_folder_squatted_by_another_user(user_mount, mallory, eve):
    d = f"/tmp/dmsfs-{mallory.uid}"
    if _user_dir(mallory) != d:
        pytest.skip("mallory has a login runtime folder")
    shutil.rmtree(d, ignore_errors=True)
    # eve made mallory's folder first, and listens where dmsctl looks.
    r = as_user_run(eve, "mkdir", "-m", "0777", d)
    assert r.returncode == 0, r.stderr
    m = user_mount()
    assert "refusing the control socket folder" in m.log(), m.log()
    m.umount()
    # The socket's name, from a mount in a good folder.
    shutil.rmtree(d)
    m = user_mount()
    (sock,) = socks(d)
    m.umount()
    shutil.rmtree(d)
    assert as_user_run(eve, "mkdir", "-m", "0777", d).returncode == 0
    sq = Squatter(eve, sock, "/tmp/" + os.path.basename(d) + ".squat")
    try:
        m = user_mount()
        r = as_user_run(mallory, wt.DMSCTL, "status", m.mountpoint)
        assert r.returncode == 1, "dmsctl believed eve"
        assert f"served by uid {eve.uid}" in r.stderr, r.stderr
        assert sq.received() == b""
    finally:
        sq.stop()
        os.unlink(sq.log)


# Run as another user: opens n connections to the socket and sends one byte
# every 0.3 s on each (never a whole request line); prints, per connection,
# what came back and after how many seconds the daemon closed it.
_SLOWLORIS = r"""
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.setblocking(False)
    conns.append([s, time.monotonic(), b"", None])
end = time.monotonic() + 8
while time.monotonic() < end and any(c[3] is None for c in conns):
    for c in conns:
        if c[3] is not None:
            continue
        try:
            got = c[0].recv(100)
            if not got:
                c[3] = time.monotonic() - c[1]
            c[2] += got
            continue
        except BlockingIOError:
            pass
        except OSError:
            c[3] = time.monotonic() - c[1]
            continue
        try:
            c[0].send(b"s")
        except OSError:
            c[3] = time.monotonic() - c[1]
    time.sleep(0.3)
for s, _, got, closed in conns:
    print(repr(got), closed, flush=True)
"""


def test_one_user_cannot_hold_every_slot(dav, mounts, rundir, mallory):
    """Any local user may connect to the control socket.  One who opens
    many connections and trickles a byte now and then gets at most two
    slots (the rest are told "error busy" at once), has them cut after
    the request deadline, and root's status gets through meanwhile."""
    wm = mounts(dav)
    (sock,) = socks(rundir)
    os.chmod(str(rundir), 0o755)
    p = subprocess.Popen(["setpriv", f"--reuid={mallory.uid}",
                          f"--regid={mallory.gid}", "--clear-groups",
                          sys.executable, "-c", _SLOWLORIS, sock, "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        time.sleep(0.8)
        r = status(wm.mountpoint)
        assert r.returncode == 0, r.stderr
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rows = [ln.rsplit(" ", 1) for ln in out.splitlines()]
    assert len(rows) == 8, (out, err)
    busy = [r for r in rows if "error busy" in r[0]]
    held = [r for r in rows if "error busy" not in r[0]]
    assert len(busy) >= 6 and len(held) <= 2, out
    for got, closed in held:
        assert closed != "None" and float(closed) < 6, \
            f"a trickled request kept its slot for {closed} s:\n{out}"
