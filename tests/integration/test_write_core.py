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
import tempfile
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


def test_excl_append_truncate(rw):
    root, ng, m = rw
    p = m.path("a.txt")
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"hello")
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with pytest.raises(FileExistsError):
        os.open(m.path("old.txt"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b" world")
    os.close(fd)
    assert open(p, "rb").read() == b"hello world"
    os.truncate(p, 3 * BLOCK + 5)
    assert open(p, "rb").read() == b"hello world" + bytes(3 * BLOCK + 5 - 11)
    os.truncate(p, 4)
    assert open(p, "rb").read() == b"hell"
    with open(p, "r+b") as f:
        f.truncate(2)
        f.seek(0, 2)
        f.write(b"LO")
    assert open(p, "rb").read() == b"heLO"
    wait_for(origin_has(root / "a.txt", b"heLO"), what="upload")


def test_modify_origin_file(rw):
    root, ng, m = rw
    p = m.path("old.txt")
    with open(p, "r+b") as f:
        f.seek(4)
        f.write(b"CONTENT")
    assert open(p, "rb").read() == b"old CONTENT\n"
    wait_for(origin_has(root / "old.txt", b"old CONTENT\n"), what="upload")
    with open(p, "wb") as f:
        f.write(b"new")
    assert open(p, "rb").read() == b"new"
    wait_for(origin_has(root / "old.txt", b"new"), what="upload")


@pytest.mark.parametrize("how", ["otrunc", "write", "truncate", "renamed"])
def test_reader_sees_later_writes_of_other_handles(rw, how):
    """A descriptor opened read-only on the origin's file, before another
    descriptor (or a path truncate) changes it, reads the changed file, as
    on a local file system: never the origin's stale bytes."""
    root, ng, m = rw
    big = data(3 * BLOCK + 11, 5)
    (root / "shared.bin").write_bytes(big)
    p = m.path("shared.bin")
    rfd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(rfd, 100, BLOCK) == big[BLOCK:BLOCK + 100]
        if how == "otrunc":
            wfd = os.open(p, os.O_RDWR | os.O_TRUNC)
            os.write(wfd, b"short")
            os.close(wfd)
            want = b"short"
        elif how == "write":
            wfd = os.open(p, os.O_WRONLY)
            os.pwrite(wfd, b"XYZ", BLOCK + 1)
            os.close(wfd)
            want = big[:BLOCK + 1] + b"XYZ" + big[BLOCK + 4:]
        elif how == "truncate":
            os.truncate(p, 1000)
            want = big[:1000]
        else:
            os.rename(p, m.path("moved.bin"))
            with open(m.path("moved.bin"), "r+b") as f:
                f.write(b"MOVED")
            want = b"MOVED" + big[5:]
        assert os.pread(rfd, len(big) + 10, 0) == want
        assert os.pread(rfd, 4000, 2 * BLOCK + 3) == want[2 * BLOCK + 3:][:4000]
    finally:
        os.close(rfd)


def test_rename_files_and_folders(rw):
    root, ng, m = rw
    open(m.path("x"), "wb").write(b"xx")
    os.rename(m.path("x"), m.path("y"))
    assert not os.path.exists(m.path("x"))
    assert open(m.path("y"), "rb").read() == b"xx"
    os.mkdir(m.path("sub"))
    os.rename(m.path("y"), m.path("sub", "z"))
    assert open(m.path("sub", "z"), "rb").read() == b"xx"
    # an origin folder with content, renamed
    os.rename(m.path("dir"), m.path("dir2"))
    assert sorted(os.listdir(m.path("dir2"))) == ["f1"]
    assert open(m.path("dir2", "f1"), "rb").read() == data(5000, 1)
    assert not os.path.exists(m.path("dir"))
    # replace an existing file; RENAME_NOREPLACE; RENAME_EXCHANGE
    open(m.path("r1"), "wb").write(b"one")
    os.rename(m.path("r1"), m.path("old.txt"))
    assert open(m.path("old.txt"), "rb").read() == b"one"
    open(m.path("r2"), "wb").write(b"two")
    rc = subprocess.run(["mv", "-n", "--no-copy", m.path("r2"),
                         m.path("old.txt")], capture_output=True)
    assert open(m.path("old.txt"), "rb").read() == b"one"
    wait_for(origin_has(root / "sub" / "z", b"xx"), what="rename upload")
    wait_for(origin_has(root / "dir2" / "f1", data(5000, 1)),
             what="folder rename")
    wait_for(origin_has(root / "old.txt", b"one"), what="replace")
    assert not (root / "dir").exists()
    assert not (root / "x").exists() and not (root / "y").exists()
    assert open(m.path("dir2", "f1"), "rb").read() == data(5000, 1)
    del rc


def test_unlink_open_file_mkdir_rmdir(rw):
    root, ng, m = rw
    open(m.path("u"), "wb").write(b"keep me")
    f = open(m.path("u"), "rb")
    os.unlink(m.path("u"))
    assert not os.path.exists(m.path("u"))
    assert f.read() == b"keep me"
    f.close()
    # a new object of another type at the name of an open, unlinked file
    fd = os.open(m.path("t"), os.O_RDWR | os.O_CREAT)
    os.write(fd, b"T")
    os.unlink(m.path("t"))
    os.mkdir(m.path("t"))
    assert os.pread(fd, 10, 0) == b"T"
    os.ftruncate(fd, 0)
    assert os.fstat(fd).st_size == 0
    os.close(fd)
    os.rmdir(m.path("t"))
    os.mkdir(m.path("d"))
    open(m.path("d", "in"), "wb").write(b"1")
    with pytest.raises(OSError) as e:
        os.rmdir(m.path("d"))
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        os.rmdir(m.path("dir"))        # origin content
    assert e.value.errno == errno.ENOTEMPTY
    os.unlink(m.path("d", "in"))
    os.rmdir(m.path("d"))
    assert not os.path.exists(m.path("d"))
    os.unlink(m.path("dir", "f1"))
    os.rmdir(m.path("dir"))
    wait_for(lambda: not (root / "dir").exists(), what="rmdir upload")
    time.sleep(DELAY + 1)
    assert not (root / "d").exists() and not (root / "u").exists()


def test_chmod_exec_and_unsupported(rw):
    root, ng, m = rw
    p = m.path("s.sh")
    open(p, "w").write("#!/bin/sh\necho ran-ok\n")
    os.chmod(p, 0o755)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o755
    assert subprocess.run([p], capture_output=True,
                          text=True).stdout == "ran-ok\n"
    wait_for(origin_has(root / "s.sh", b"#!/bin/sh\necho ran-ok\n"))
    time.sleep(1.5)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o755
    assert subprocess.run([p], capture_output=True,
                          text=True).stdout == "ran-ok\n"
    for fn, err in ((lambda: os.symlink("x", m.path("ln")), errno.EPERM),
                    (lambda: os.link(p, m.path("hl")), errno.EPERM),
                    (lambda: os.mkfifo(m.path("fifo")), errno.EPERM)):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == err
    with pytest.raises(OSError) as e:
        os.setxattr(p, "user.x", b"1")
    assert e.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
    os.utime(p, (1000000000, 1000000000))
    assert os.stat(p).st_mtime == 1000000000
    st = os.statvfs(m.mountpoint)
    assert st.f_bavail > 0


def test_chown_to_the_shown_owner_only(rw, tmp_path):
    """The origin keeps no owners: chown to another owner is EPERM, to the
    one shown is accepted (root's tar -x and cp -p do that on every file)."""
    root, ng, m = rw
    p = m.path("c.txt")
    open(p, "w").write("c\n")
    st = os.stat(p)
    os.chown(p, st.st_uid, st.st_gid)
    os.chown(p, -1, st.st_gid)
    for uid, gid in ((st.st_uid + 4242, -1), (-1, st.st_gid + 4242)):
        with pytest.raises(OSError) as e:
            os.chown(p, uid, gid)
        assert e.value.errno == errno.EPERM
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (st.st_uid, st.st_gid)
    # root's tar -x keeps owners by default: those of the files it makes
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"tar content\n")
    os.chown(src / "sub" / "f", st.st_uid, st.st_gid)
    os.chown(src / "sub", st.st_uid, st.st_gid)
    os.chown(src, st.st_uid, st.st_gid)
    tarball = tmp_path / "t.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(src), "."],
                   check=True)
    os.mkdir(m.path("x"))
    r = subprocess.run(["tar", "-xf", str(tarball), "-C", m.path("x")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open(m.path("x", "sub", "f"), "rb").read() == b"tar content\n"


def test_kill9_after_fsync_then_remount(origin, mounter, tmp_path):
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="3600")
    want = data(3 * BLOCK + 7, 5)
    with open(m.path("durable"), "wb") as f:
        f.write(want)
        f.flush()
        os.fsync(f.fileno())
    os.kill(m.proc.pid, signal.SIGKILL)
    m.cleanup()
    assert not (root / "durable").exists()
    m2 = mounter(ng.url + "/", rw=True, writeback_delay="1",
                 cache_dir=m.cache_dir)
    assert open(m2.path("durable"), "rb").read() == want
    wait_for(origin_has(root / "durable", want), what="upload after remount")


@pytest.mark.parametrize("remount", [False, True])
def test_folder_made_where_one_was_moved_lists_empty(origin, mounter,
                                                      remount):
    """Folder listings cached for a folder that was moved away (and its
    subfolders) do not come back for a new folder made at the same path:
    not while mounted, not after a remount on the same cache."""
    root, ng = origin
    (root / "d" / "z").mkdir(parents=True)
    (root / "d" / "z" / "f").write_bytes(b"f")
    opts = dict(rw=True, writeback_delay="0", meta_ttl="3600")
    m = mounter(ng.url + "/", **opts)
    assert os.listdir(m.path("d")) == ["z"]
    assert os.listdir(m.path("d", "z")) == ["f"]
    os.rename(m.path("d"), m.path("e"))
    os.mkdir(m.path("d"))
    os.mkdir(m.path("d", "z"))
    wait_for(lambda: (root / "e" / "z" / "f").exists() and
             (root / "d" / "z").is_dir() and
             not (root / "d" / "z" / "f").exists(), what="upload")
    if remount:
        m.umount()
        m.cleanup()
        m = mounter(ng.url + "/", cache_dir=m.cache_dir, **opts)
    # Long enough for the uploader to have settled every entry.
    time.sleep(2 * DELAY + 1)
    assert os.listdir(m.path("d", "z")) == []
    assert os.listdir(m.path("d")) == ["z"]
    assert os.listdir(m.path("e", "z")) == ["f"]


def test_upload_of_an_earlier_mkdir_keeps_the_later_one(origin, mounter):
    """mkdir a, rmdir a, mkdir a: when the first mkdir and the rmdir reach
    the origin before the second mkdir does, the mount still shows the
    second folder and its content (uploads run in order; files held open
    after an fsync hold the uploader at chosen points)."""
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="0", meta_ttl="1")
    h1 = os.open(m.path("hold1"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(h1, b"1")
    os.fsync(h1)
    os.mkdir(m.path("a"))
    os.rmdir(m.path("a"))
    h2 = os.open(m.path("hold2"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(h2, b"2")
    os.fsync(h2)
    os.mkdir(m.path("a"))
    with open(m.path("a", "y"), "wb") as f:
        f.write(b"y")
    os.close(h1)
    wait_for(origin_has(root / "hold1", b"1"), what="first uploads")
    wait_for(lambda: not (root / "a").exists(), what="rmdir uploaded")
    time.sleep(1.5)  # past meta_ttl: the origin listing is refetched
    try:
        assert os.path.isdir(m.path("a"))
        assert os.listdir(m.path("a")) == ["y"]
        os.rename(m.path("a", "y"), m.path("a", "v"))
    finally:
        os.close(h2)
    wait_for(origin_has(root / "a" / "v", b"y"), what="all uploads")
    assert os.listdir(m.path("a")) == ["v"]


def test_unlink_of_a_renamed_origin_file_before_upload(origin, mounter):
    """An origin file renamed, written, deleted and made anew before any of
    it is uploaded: the origin ends with the new file only (no conflict
    copy: the mount's own rename is not someone else's change)."""
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="0", meta_ttl="1")
    h1 = os.open(m.path("hold1"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(h1, b"1")
    os.fsync(h1)
    os.rename(m.path("old.txt"), m.path("x"))
    with open(m.path("x"), "r+b") as f:
        f.write(b"OLD")
    os.unlink(m.path("x"))
    with open(m.path("x"), "wb") as f:
        f.write(b"new")
    os.close(h1)
    wait_for(origin_has(root / "x", b"new"), what="upload")
    wait_for(lambda: not (root / "old.txt").exists(), what="rename")
    time.sleep(1.5)
    assert sorted(os.listdir(root)) == ["dir", "hold1", "x"]
    assert open(m.path("x"), "rb").read() == b"new"


def test_origin_down_then_back(origin, mounter, monkeypatch):
    import origin as originmod
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="0",
                connect_timeout="1",
                expected_errors=(r"writeback: .* failed", r"transfer: "))
    open(m.path("first"), "wb").write(b"1")
    wait_for(origin_has(root / "first", b"1"))
    ng.stop()
    os.mkdir(m.path("nd"))
    open(m.path("nd", "a"), "wb").write(b"A")
    os.rename(m.path("nd", "a"), m.path("nd", "b"))
    open(m.path("nd", "c"), "wb").write(data(2 * BLOCK, 3))
    assert open(m.path("nd", "b"), "rb").read() == b"A"
    time.sleep(2)
    port = ng.port
    monkeypatch.setattr(originmod, "free_port", lambda: port)
    ng.start()
    wait_for(origin_has(root / "nd" / "c", data(2 * BLOCK, 3)), timeout=90,
             what="upload after the origin came back")
    assert (root / "nd" / "b").read_bytes() == b"A"
    assert not (root / "nd" / "a").exists()


def test_conflict_keeps_theirs(origin, mounter):
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="2",
                expected_errors=())
    with open(m.path("old.txt"), "r+b") as f:
        f.write(b"OURS")
    # someone else changes the origin file meanwhile
    (root / "old.txt").write_bytes(b"theirs, changed\n")
    os.utime(root / "old.txt", (2000000000, 2000000000))

    def conflict():
        return [n for n in os.listdir(root)
                if re.match(r"old\.txt\.conflict-.+-\d{8}T\d{6}$", n)]
    names = wait_for(conflict, what="conflict file")
    assert (root / names[0]).read_bytes() == b"OURScontent\n"
    assert (root / "old.txt").read_bytes() == b"theirs, changed\n"
    assert "conflict" in m.log()
    dmsctl = os.path.join(mountlib.ROOT, "build", "dmsctl")
    st = subprocess.run([dmsctl, "status", m.mountpoint], capture_output=True,
                        text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    assert f"/old.txt: ours is {names[0]}" in st.stdout, st.stdout


def test_conflict_copy_of_a_long_name_fits(origin, mounter):
    """NAME.conflict-HOST-STAMP of a 250-byte (multi-byte UTF-8) NAME is cut
    to 255 bytes at a character boundary, not refused for ever."""
    root, ng = origin
    name = "é" * 125          # 250 bytes
    (root / name).write_bytes(b"base\n")
    os.utime(root / name, (1500000000, 1500000000))
    m = mounter(ng.url + "/", rw=True, writeback_delay="1", meta_ttl="1",
                expected_errors=(r"(?i)conflict",))
    with open(m.path(name), "r+b") as f:
        f.write(b"MINE")
    (root / name).write_bytes(b"theirs\n")
    os.utime(root / name, (1600000000, 1600000000))

    def conflict():
        return [n for n in os.listdir(root) if ".conflict-" in n]
    got = wait_for(conflict, what="conflict file")
    assert len(got[0].encode()) <= 255
    assert got[0].startswith("é") and got[0].encode().decode() == got[0]
    assert (root / got[0]).read_bytes() == b"MINE\n"
    assert (root / name).read_bytes() == b"theirs\n"


def test_readonly_export_erofs(origin, mounter):
    root, ng = origin
    m = mounter(ng.url + "/")
    for fn in (lambda: open(m.path("new"), "wb"),
               lambda: os.mkdir(m.path("nd")),
               lambda: os.unlink(m.path("old.txt")),
               lambda: os.rename(m.path("old.txt"), m.path("o2"))):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS


# ------------------------------------------------ per-user homes and rules

def _sh(*args):
    r = subprocess.run(list(args), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"{' '.join(args)} failed: {r.stderr}"
    return r.stdout.strip()


@pytest.fixture(scope="module")
def two_users():
    prefix = f"dmsw{os.getpid()}"
    made = []
    try:
        for k in "ab":
            _sh("useradd", "-M", "-s", "/usr/sbin/nologin", prefix + k)
            made.append(prefix + k)
        yield [(n, int(_sh("id", "-u", n)), int(_sh("id", "-g", n)))
               for n in made]
    finally:
        for n in made:
            subprocess.run(["userdel", n], capture_output=True, timeout=60)


def as_user(user, script):
    """Runs a python snippet as user; returns its stdout (errno names)."""
    name, uid, gid = user
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}",
                        "--clear-groups", "/usr/bin/python3", "-c", script],
                       capture_output=True, text=True, timeout=60, cwd="/",
                       env={"PATH": "/usr/bin:/bin", "HOME": "/"})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


TRY = """
import errno, os, sys
def t(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
"""


@pytest.mark.parametrize("with_rules", [True, False])
def test_homes_rules_owner(tmp_path, two_users, with_rules):
    (a, ua, ga), (b, ub, gb) = two_users
    root = tmp_path / "origin"
    for n in (a, b):
        (root / "home" / n).mkdir(parents=True)
        (root / "home" / n / "mine.txt").write_bytes(b"mine " + n.encode())
    (root / "archive").mkdir()
    (root / "archive" / "r.txt").write_bytes(b"archived")
    os.chmod(tmp_path, 0o755)
    ng = Nginx(str(root)).start()
    rules = tmp_path / "rules"
    rules.write_text("u = /home/@=/ a\nu * /archive rl\n")
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(f"""[cache]
dir = {tmp_path}/cache
block_size = 64K
writeback_delay = 1
{"[acl]" if with_rules else ""}
{f"rules = {rules}" if with_rules else ""}

[export archive]
path = /archive
source = {ng.url}/archive/

[export home]
path = /home
source = {ng.url}/home/${{user}}/
per_user = yes
writable = yes
""")
    # the users must reach the mountpoint (pytest's tmp is root-only)
    mnt = tempfile.mkdtemp(prefix="dmsw-mnt-")
    os.chmod(mnt, 0o755)
    m = mountlib.Mount(None, mnt, tmp_path / "dmsfs.log", {})
    m.argv = lambda: [mountlib.DMSFS, "-f", "-o", f"config={conf}", str(mnt)]
    try:
        m.start()
        if not with_rules:
            st = os.stat(m.path("home", a, "mine.txt"))
            assert (st.st_uid, st.st_gid) == (ua, ga)
            assert os.stat(m.path("home", a)).st_uid == ua
            # no rules: a mount only its owner (root) uses; root writes
            open(m.path("home", a, "root.txt"), "wb").write(b"r")
            os.unlink(m.path("home", a, "root.txt"))
            with pytest.raises(OSError) as e:
                open(m.path("archive", "new"), "wb")
            assert e.value.errno == errno.EROFS
            return
        ha, hb = m.path("home", a), m.path("home", b)
        out = as_user((a, ua, ga), TRY + f"""
st = os.stat({ha!r} + "/mine.txt")
r = [str(st.st_uid), str(st.st_gid)]
r.append(t(lambda: open({ha!r} + "/new.txt", "wb").write(b"from a")))
r.append(t(lambda: os.mkdir({ha!r} + "/d")))
r.append(t(lambda: os.rename({ha!r} + "/new.txt", {ha!r} + "/d/n2.txt")))
r.append(t(lambda: open({hb!r} + "/evil.txt", "wb")))
r.append(t(lambda: os.unlink({hb!r} + "/mine.txt")))
r.append(t(lambda: os.rename({hb!r} + "/mine.txt", {hb!r} + "/x")))
r.append(t(lambda: open({hb!r} + "/mine.txt", "r+b")))
r.append(t(lambda: os.mkdir({hb!r} + "/d")))
r.append(t(lambda: open({m.path("archive", "new")!r}, "wb")))
r.append(t(lambda: os.unlink({m.path("archive", "r.txt")!r})))
print(" ".join(r))
""")
        assert out.split() == [str(ua), str(ga), "ok", "ok", "ok", "EACCES", "EACCES",
                               "EACCES", "EACCES", "EACCES", "EROFS",
                               "EROFS"], out
        # b cannot see a's pending file
        out = as_user((b, ub, gb), TRY + f"""
print(t(lambda: open({ha!r} + "/d/n2.txt", "rb").read()))
""")
        assert out == "EACCES"
        wait_for(origin_has(root / "home" / a / "d" / "n2.txt", b"from a"))
        assert sorted(os.listdir(root / "home" / b)) == ["mine.txt"]
    finally:
        if m.running:
            m.umount()
        m.cleanup()
        ng.stop()
        os.rmdir(mnt)


# ------------------------------------------------ GridFTP round trip

def test_upload_temporaries_are_not_shown(mounter):
    """.NAME.dmsfs-XXXXXXXX at the origin is an upload in flight or one a
    killed daemon left: never listed or looked up in the mount, and no one
    can make such a name through it.  (GridFTP: nginx hides dot-files.)"""
    import pwd
    from gridftp_origin import SERVER, GridFTP, make_root
    if not os.access(SERVER, os.X_OK):
        pytest.skip("globus-gridftp-server is not installed")
    root = make_root("write-temps-")
    pw = pwd.getpwnam("nobody")
    for n in ("f.txt", ".f.txt.dmsfs-0123abcd", ".dmsfs-x", ".a.dmsfs-0123abcg",
              ".a.dmsfs-0123abc"):
        with open(os.path.join(root, n), "wb") as f:
            f.write(b"x")
        os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
    os.chown(root, pw.pw_uid, pw.pw_gid)
    g = GridFTP(root).start()
    try:
        m = mounter(g.url, rw=True, writeback_delay="1")
        assert sorted(os.listdir(m.mountpoint)) == sorted(
            [".a.dmsfs-0123abc", ".a.dmsfs-0123abcg", ".dmsfs-x", "f.txt"])
        assert not os.path.exists(m.path(".f.txt.dmsfs-0123abcd"))
        for fn in (lambda: open(m.path(".g.dmsfs-89abcdef"), "wb"),
                   lambda: os.mkdir(m.path(".d.dmsfs-00000000")),
                   lambda: os.rename(m.path("f.txt"),
                                     m.path(".f.dmsfs-0000ffff"))):
            with pytest.raises(OSError) as e:
                fn()
            assert e.value.errno == errno.EINVAL
        m.umount()
    finally:
        g.stop()
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def test_gridftp_round_trip(mounter):
    import pwd
    import shutil
    from gridftp_origin import SERVER, GridFTP, make_root
    if not os.access(SERVER, os.X_OK):
        pytest.skip("globus-gridftp-server is not installed")
    root = make_root("write-core-")
    pw = pwd.getpwnam("nobody")
    os.makedirs(os.path.join(root, "old"))
    with open(os.path.join(root, "old", "o.txt"), "wb") as f:
        f.write(b"origin bytes")
    for d, dirs, files in os.walk(root):
        os.chown(d, pw.pw_uid, pw.pw_gid)
        for n in files:
            os.chown(os.path.join(d, n), pw.pw_uid, pw.pw_gid)
    g = GridFTP(root).start()
    try:
        m = mounter(g.url, rw=True, writeback_delay="1")
        want = data(3 * BLOCK + 7, 9)
        os.mkdir(m.path("new"))
        with open(m.path("new", "f.bin"), "wb") as f:
            f.write(want)
        with open(m.path("old", "o.txt"), "r+b") as f:
            f.seek(7)
            f.write(b"BYTES")
        os.rename(m.path("old"), m.path("renamed"))
        assert open(m.path("renamed", "o.txt"), "rb").read() == \
            b"origin BYTES"
        wait_for(origin_has(os.path.join(root, "new", "f.bin"), want),
                 what="gridftp upload")
        wait_for(origin_has(os.path.join(root, "renamed", "o.txt"),
                            b"origin BYTES"), what="gridftp rename")
        assert not os.path.exists(os.path.join(root, "old"))
        os.unlink(m.path("new", "f.bin"))
        os.rmdir(m.path("new"))
        wait_for(lambda: not os.path.exists(os.path.join(root, "new")),
                 what="gridftp rmdir")
    finally:
        g.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_unmount_uploads_then_keeps_rest(origin, mounter, monkeypatch):
    import origin as originmod
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="3600")
    open(m.path("at_unmount"), "wb").write(b"U")
    m.umount()
    # writeback_delay is not waited for at unmount
    assert (root / "at_unmount").read_bytes() == b"U"
    m2 = mounter(ng.url + "/", rw=True, writeback_delay="3600",
                 unmount_flush="1", connect_timeout="1",
                 expected_errors=(r"writeback: .* failed", r"transfer: "))
    open(m2.path("later"), "wb").write(b"L")
    port = ng.port
    ng.stop()
    m2.umount()
    assert "1 operations left pending for the next mount" in m2.log()
    monkeypatch.setattr(originmod, "free_port", lambda: port)
    ng.start()
    m3 = mounter(ng.url + "/", rw=True, writeback_delay="0",
                 cache_dir=m2.cache_dir)
    assert open(m3.path("later"), "rb").read() == b"L"
    wait_for(origin_has(root / "later", b"L"), what="upload on next mount")


def test_dmsctl_sync_and_status(origin, mounter):
    root, ng = origin
    dmsctl = os.path.join(mountlib.ROOT, "build", "dmsctl")
    m = mounter(ng.url + "/", rw=True, writeback_delay="3600")
    os.mkdir(m.path("s"))
    want = data(3 * BLOCK + 7, 2)
    open(m.path("s", "f"), "wb").write(want)
    st = subprocess.run([dmsctl, "status", m.mountpoint], capture_output=True,
                        text=True, timeout=60)
    assert st.returncode == 0 and "upload /s/f" in st.stdout, st
    r = subprocess.run([dmsctl, "sync", "-t", "120", m.path("s")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert (root / "s" / "f").read_bytes() == want
    # origin gone: sync gives up with what is left and why
    m2 = mounter(ng.url + "/", rw=True, writeback_delay="3600",
                 connect_timeout="1", unmount_flush="0",
                 expected_errors=(r"writeback: .* failed", r"transfer: "))
    open(m2.path("late"), "wb").write(b"x")
    ng.stop()
    r = subprocess.run([dmsctl, "sync", "-t", "3", m2.mountpoint],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "1 operations (1 bytes) still pending" in r.stderr, r.stderr


def test_dot_folders_the_origin_does_not_list(rw):
    """nginx does not list names starting with '.': a folder made here
    must not vanish once it is at the origin."""
    root, ng, m = rw
    os.makedirs(m.path("p", "..dd", "e"))
    open(m.path("p", "..dd", "e", "f"), "wb").write(b"f")
    open(m.path("p", ".hidden"), "wb").write(b"h")
    wait_for(origin_has(root / "p" / "..dd" / "e" / "f", b"f"))
    wait_for(origin_has(root / "p" / ".hidden", b"h"))
    time.sleep(1.5)
    assert sorted(os.listdir(m.path("p"))) == ["..dd", ".hidden"]
    assert os.listdir(m.path("p", "..dd", "e")) == ["f"]
    assert open(m.path("p", "..dd", "e", "f"), "rb").read() == b"f"
