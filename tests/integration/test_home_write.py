"""Writable home directories (issue 8), end to end: dmsfs -o rw (and config
exports with writable = yes) over a real nginx WebDAV origin and a real
globus-gridftp-server, real local users, and fakeorigin.py for 507.

What is checked: bytes read back in the mount at once and at the origin
after upload (wait_uploaded polls the origin's directory on disk), POSIX
semantics of the write operations, durability across kill -9, origin
outages, conflicts, quota replies, and the access rules for real users.

  DMSFS_WRITE_LOCAL=1   the tests that need no dmsfs-only behaviour run
                        against a plain local folder (debugs the tests)

Needs root, FUSE, nginx, globus-gridftp-server, useradd/setpriv and
build/dmsfs.
"""
import contextlib
import ctypes
import errno
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time

import pytest

import writetree as wt
from fakeorigin import FakeOrigin, FakeFile
from gridftp_origin import GridFTP, make_root
from origin import Nginx, NGINX, wait_listening
from test_acl_mount import ConfigMount, User, as_user, err

B = 65536
SIZES = [0, 1, B - 1, B, B + 1, 3 * B + 7]
UPLOAD_TIMEOUT = 90  # a bound on a hang, with slack: writeback_delay is 1 s

pytestmark = wt.skip_marks()
needs_dmsfs = pytest.mark.skipif(wt.LOCAL, reason="dmsfs-only behaviour")


# ---------------------------------------------------------------- origins

class Origin:
    """A writable origin: .home (its home folder on disk), .url (of that
    folder), .server, .proto."""

    def __init__(self, proto, root, server):
        self.proto, self.root, self.server = proto, root, server
        self.home = os.path.join(root, "home")
        self.url = server.url + "/home/"

    def put(self, rel, data, mtime=None):
        """A file made at the origin behind the mount's back."""
        p = os.path.join(self.home, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        if self.proto == "gridftp":
            nobody = pwd.getpwnam("nobody")
            for q in (p, os.path.dirname(p)):
                os.chown(q, nobody.pw_uid, nobody.pw_gid)
        return p

    def read(self, rel):
        with open(os.path.join(self.home, rel), "rb") as f:
            return f.read()


def _start_origin(proto):
    root = make_root("dmsfs-home-")
    os.makedirs(os.path.join(root, "home"))
    if proto == "webdav":
        # No create_full_put_path: an upload that overtook the mkdir of
        # its folder is refused (409) instead of hidden.
        server = Nginx(root, full_put_path=False).start()
    else:
        # Anonymous sessions run as nobody: the tree must be theirs.
        nobody = pwd.getpwnam("nobody")
        for d in (root, os.path.join(root, "home")):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        server = GridFTP(root).start()
    return Origin(proto, root, server)


def _stop_origin(o):
    o.server.stop()
    shutil.rmtree(o.root, ignore_errors=True)


@pytest.fixture(params=["webdav", "gridftp"])
def origin(request):
    o = _start_origin(request.param)
    yield o
    _stop_origin(o)


@pytest.fixture
def dav():
    o = _start_origin("webdav")
    yield o
    _stop_origin(o)


@pytest.fixture
def wmount(tmp_path):
    """wmount(origin, **opts) -> started writetree.WriteMount of the
    origin's home folder (own cache); unmounted with checks at teardown."""
    made = []

    def make(o, expected_errors=(), **opts):
        wm = wt.WriteMount(o.url, o.home, tmp_path / f"w{len(made)}",
                           expected_errors=expected_errors, **opts)
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


def write_file(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def closing(*fds):
    """Closes every fd, then raises the first error (a close may report a
    write-back error; the other files must still be closed)."""
    first = None
    for fd in fds:
        try:
            os.close(fd)
        except OSError as e:
            first = first or e
    if first is not None:
        raise first


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- bytes

@pytest.mark.parametrize("size", SIZES)
def test_whole_file_round_trip(origin, wmount, size):
    wm = wmount(origin)
    data = wt.pattern(size, seed=size)
    write_file(wm.path(f"f{size}.bin"), data)
    assert read_file(wm.path(f"f{size}.bin")) == data, "pending bytes"
    assert os.stat(wm.path(f"f{size}.bin")).st_size == size
    wt.wait_uploaded(origin.home, {f"f{size}.bin": ("f", size, wt.sha(data))},
                     UPLOAD_TIMEOUT, wm.log)


def test_odd_offsets_and_block_edges(origin, wmount):
    """Writes of odd sizes at shuffled offsets across block edges, into a
    new file and into a file that exists at the origin."""
    old = wt.pattern(3 * B + 7, seed=1)
    origin.put("old.bin", old)
    wm = wmount(origin)
    want_new = bytearray()
    want_old = bytearray(old)
    pieces = [(off, 1 + (off * 7919) % 1500)
              for off in (B - 3, 0, 2 * B - 1, 1, B, 3 * B, B + 1, 777,
                          3 * B + 6, 2 * B + 12345)]
    fd_new = os.open(wm.path("new.bin"), os.O_RDWR | os.O_CREAT | os.O_EXCL,
                     0o644)
    fd_old = os.open(wm.path("old.bin"), os.O_RDWR)
    try:
        for i, (off, n) in enumerate(pieces):
            chunk = wt.pattern(n, seed=100 + i)
            for fd, want in ((fd_new, want_new), (fd_old, want_old)):
                assert os.pwrite(fd, chunk, off) == n
                if off + n > len(want):
                    want.extend(bytes(off + n - len(want)))
                want[off:off + n] = chunk
        # Reads through the open descriptors see the new bytes at once,
        # also ranges that straddle a block edge.
        for fd, want in ((fd_new, want_new), (fd_old, want_old)):
            for off, n in ((B - 10, 20), (0, 3 * B + 7), (2 * B - 2, 5)):
                assert os.pread(fd, n, off) == bytes(want[off:off + n])
    finally:
        closing(fd_new, fd_old)
    assert read_file(wm.path("new.bin")) == bytes(want_new)
    assert read_file(wm.path("old.bin")) == bytes(want_old)
    wt.wait_uploaded(origin.home,
                     {"new.bin": ("f", len(want_new), wt.sha(want_new)),
                      "old.bin": ("f", len(want_old), wt.sha(want_old))},
                     UPLOAD_TIMEOUT, wm.log)
    # A fresh mount (new cache) reads what the origin now has.
    if not wm.local:
        fresh = wmount(origin)
        assert read_file(fresh.path("old.bin")) == bytes(want_old)


def test_sparse_file(origin, wmount):
    wm = wmount(origin)
    p = wm.path("sparse.bin")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"tail", 5 * B + 3)
        os.ftruncate(fd, 10 * B)
    finally:
        os.close(fd)
    want = bytes(5 * B + 3) + b"tail" + bytes(10 * B - 5 * B - 7)
    assert os.stat(p).st_size == 10 * B
    assert read_file(p) == want
    wt.wait_uploaded(origin.home, {"sparse.bin": ("f", len(want),
                                                  wt.sha(want))},
                     UPLOAD_TIMEOUT, wm.log)


_APPENDER = r"""
import os, sys
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    rec = ("%s %06d " % (tag, i)).encode() + tag.encode() * 50 + b"\n"
    assert os.write(fd, rec) == len(rec)
os.close(fd)
"""


def test_two_appenders(origin, wmount):
    """Two processes append records with O_APPEND at once: every record
    of both is complete, each process's records in its order."""
    wm = wmount(origin)
    p = wm.path("log.txt")
    n = 400
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, p, tag,
                               str(n)]) for tag in ("A", "B")]
    for pr in procs:
        assert pr.wait(120) == 0
    data = read_file(p)
    lines = data.split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 2 * n, f"{len(lines)} records, want {2 * n}"
    for tag in (b"A", b"B"):
        mine = [l for l in lines if l.startswith(tag + b" ")]
        assert mine == [b"%s %06d " % (tag, i) + tag * 50
                        for i in range(n)], f"records of {tag} broken"
    wt.wait_uploaded(origin.home, {"log.txt": ("f", len(data),
                                               wt.sha(data))},
                     UPLOAD_TIMEOUT, wm.log)


def test_truncate_down_and_up(origin, wmount):
    old = wt.pattern(3 * B + 7, seed=3)
    origin.put("t.bin", old)
    origin.put("u.bin", old)
    wm = wmount(origin)
    os.truncate(wm.path("t.bin"), B + 1)
    assert read_file(wm.path("t.bin")) == old[:B + 1]
    os.truncate(wm.path("t.bin"), 2 * B + 5)
    want_t = old[:B + 1] + bytes(B + 4)
    assert read_file(wm.path("t.bin")) == want_t
    with open(wm.path("u.bin"), "r+b") as f:
        f.truncate(5)
        f.seek(0)
        assert f.read() == old[:5]
        f.truncate(B - 1)
        f.seek(B - 2)
        f.write(b"Z")
    want_u = old[:5] + bytes(B - 7) + b"Z"
    assert read_file(wm.path("u.bin")) == want_u
    with open(wm.path("t.bin"), "r+b") as f:  # O_TRUNC by hand: to 0
        f.truncate(0)
    with open(wm.path("v.bin"), "wb") as f:
        f.write(b"short")
    with open(wm.path("v.bin"), "wb") as f:  # O_TRUNC of a pending file
        f.write(b"x")
    wt.wait_uploaded(origin.home,
                     {"t.bin": ("f", 0, wt.sha(b"")),
                      "u.bin": ("f", len(want_u), wt.sha(want_u)),
                      "v.bin": ("f", 1, wt.sha(b"x"))},
                     UPLOAD_TIMEOUT, wm.log)


# ---------------------------------------------------------------- names

def test_rename_chain_and_folder_rename_with_open_files(origin, wmount):
    origin.put("d1/inner.txt", b"inner at the origin\n")
    wm = wmount(origin)
    with contextlib.ExitStack() as files:
        fa = files.enter_context(open(wm.path("a.txt"), "w+b"))
        fa.write(b"first ")
        fa.flush()
        os.rename(wm.path("a.txt"), wm.path("b.txt"))
        os.rename(wm.path("b.txt"), wm.path("c.txt"))
        fa.write(b"second")
        fa.flush()
        fi = files.enter_context(open(wm.path("d1/inner.txt"), "r+b"))
        os.mkdir(wm.path("d2"))
        os.rename(wm.path("d1"), wm.path("d2/moved"))
        os.rename(wm.path("c.txt"), wm.path("d2/moved/c.txt"))
        fi.seek(0, 2)
        fi.write(b"appended after the folder moved\n")
        fi.flush()
        assert sorted(os.listdir(wm.path())) == ["d2"]
        assert sorted(os.listdir(wm.path("d2/moved"))) == ["c.txt",
                                                           "inner.txt"]
        fa.seek(0)
        assert fa.read() == b"first second"
    inner = b"inner at the origin\nappended after the folder moved\n"
    assert read_file(wm.path("d2/moved/inner.txt")) == inner
    assert read_file(wm.path("d2/moved/c.txt")) == b"first second"
    for gone in ("a.txt", "b.txt", "c.txt", "d1"):
        assert not os.path.exists(wm.path(gone))
    wt.wait_uploaded(origin.home,
                     {"d2": ("d",), "d2/moved": ("d",),
                      "d2/moved/inner.txt": ("f", len(inner),
                                             wt.sha(inner)),
                      "d2/moved/c.txt": ("f", 12, wt.sha(b"first second"))},
                     UPLOAD_TIMEOUT, wm.log)


def test_entries_stay_visible_while_uploads_complete(origin, wmount):
    """New folders, files and renames never vanish from the mount, not
    even for a moment while their uploads complete behind it."""
    wm = wmount(origin, writeback_delay=0)
    want = {}
    for i in range(20):
        d = f"dir{i}"
        os.mkdir(wm.path(d))
        os.mkdir(wm.path(d, "sub"))
        write_file(wm.path(d, "sub", "f"), b"%d" % i)
        if i % 2:
            os.rename(wm.path(d), wm.path(f"moved{i}"))
            d = f"moved{i}"
        want.update({d: ("d",), f"{d}/sub": ("d",),
                     f"{d}/sub/f": ("f", len(b"%d" % i), wt.sha(b"%d" % i))})
    deadline = time.monotonic() + UPLOAD_TIMEOUT
    rounds = 0
    while True:
        rounds += 1
        missing = [rel for rel in want if not os.path.exists(wm.path(rel))]
        assert not missing, f"round {rounds}: vanished from the mount: " \
            f"{missing[:10]}\n{wm.log()[-2000:]}"
        if wt.snapshot(origin.home) == want or time.monotonic() > deadline:
            break
    assert wt.snapshot(wm.path()) == want
    wt.wait_uploaded(origin.home, want, UPLOAD_TIMEOUT, wm.log)


def test_unlink_open_file(origin, wmount):
    data = wt.pattern(2 * B + 3, seed=4)
    origin.put("gone.bin", data)
    wm = wmount(origin)
    with open(wm.path("new.bin"), "wb") as f:
        f.write(b"pending")
    fd1 = os.open(wm.path("gone.bin"), os.O_RDONLY)
    fd2 = os.open(wm.path("new.bin"), os.O_RDWR)
    try:
        os.unlink(wm.path("gone.bin"))
        os.unlink(wm.path("new.bin"))
        assert os.listdir(wm.path()) == []
        for n in ("gone.bin", "new.bin"):
            with pytest.raises(FileNotFoundError):
                os.stat(wm.path(n))
        assert os.pread(fd1, 2 * B + 3, 0) == data
        assert os.pwrite(fd2, b"!", 7) == 1
        assert os.pread(fd2, 100, 0) == b"pending!"
        # A new file of the same name is another file.
        with open(wm.path("gone.bin"), "wb") as f:
            f.write(b"new one")
        assert os.pread(fd1, 10, 0) == data[:10]
    finally:
        closing(fd1, fd2)
    wt.wait_uploaded(origin.home, {"gone.bin": ("f", 7, wt.sha(b"new one"))},
                     UPLOAD_TIMEOUT, wm.log)


def test_unlinked_file_stays_writable_through_every_descriptor(origin,
                                                                wmount):
    """An unlinked file stays a file for all its open descriptors, also
    when the name is taken again by a new folder (found by
    test_write_diff.py)."""
    wm = wmount(origin)
    P = wm.path
    fd1 = os.open(P("v"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd2 = os.open(P("v"), os.O_RDWR)
    try:
        assert os.pwrite(fd2, b"abc", 0) == 3
        os.unlink(P("v"))
        assert os.pwrite(fd2, b"def", 3) == 3
        # ftruncate through the other descriptor of the unlinked file
        os.ftruncate(fd1, 10)
        assert os.pread(fd2, 100, 0) == b"abcdef" + bytes(4)
        os.mkdir(P("v"))
        # the open file is not the new folder
        assert os.pwrite(fd2, b"tail", 3 * B) == 4
        assert os.pwrite(fd1, b"X", 0) == 1
        assert os.pread(fd2, 10, 0) == b"Xbcdef" + bytes(4)
        assert os.pread(fd2, 10, 3 * B - 2) == bytes(2) + b"tail"
        assert os.fstat(fd2).st_size == 3 * B + 4
    finally:
        closing(fd1, fd2)
    assert os.path.isdir(P("v"))
    wt.wait_uploaded(origin.home, {"v": ("d",)}, UPLOAD_TIMEOUT, wm.log)


def _renameat2(old, new, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    r = libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd,
                       os.fsencode(new), ctypes.c_uint(flags))
    return 0 if r == 0 else ctypes.get_errno()


def _errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def test_posix_operations(origin, wmount):
    origin.put("keep.txt", b"keep")
    wm = wmount(origin)
    P = wm.path
    # create with O_EXCL
    os.close(os.open(P("x"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    assert _errno_of(lambda: os.open(P("x"), os.O_CREAT | os.O_EXCL |
                                     os.O_WRONLY)) == errno.EEXIST
    assert _errno_of(lambda: os.open(P("keep.txt"), os.O_CREAT | os.O_EXCL |
                                     os.O_WRONLY)) == errno.EEXIST
    # mkdir, rmdir of a non-empty folder, rmdir
    os.mkdir(P("dir"))
    assert _errno_of(lambda: os.mkdir(P("dir"))) == errno.EEXIST
    write_file(P("dir/f"), b"f")
    assert _errno_of(lambda: os.rmdir(P("dir"))) == errno.ENOTEMPTY
    assert _errno_of(lambda: os.rmdir(P("x"))) == errno.ENOTDIR
    os.mkdir(P("empty"))
    os.rmdir(P("empty"))
    # rename replacing an existing file; RENAME_NOREPLACE; EXCHANGE
    write_file(P("src"), b"source")
    os.rename(P("src"), P("keep.txt"))
    assert read_file(P("keep.txt")) == b"source"
    write_file(P("src2"), b"source2")
    assert _renameat2(P("src2"), P("keep.txt"), 1) == errno.EEXIST
    assert read_file(P("keep.txt")) == b"source"
    assert _renameat2(P("src2"), P("nr"), 1) == 0
    ex = _renameat2(P("nr"), P("keep.txt"), 2)
    assert ex in (0, errno.EINVAL), os.strerror(ex)
    if ex == 0:
        os.rename(P("nr"), P("tmp"))   # swap back
        os.rename(P("keep.txt"), P("nr"))
        os.rename(P("tmp"), P("keep.txt"))
    # utimens
    os.utime(P("keep.txt"), (1500000000, 1500000000))
    assert os.stat(P("keep.txt")).st_mtime == 1500000000
    # chmod +x is kept, so a script runs
    write_file(P("run.sh"), b"#!/bin/sh\necho ran-$1\n")
    os.chmod(P("run.sh"), 0o755)
    assert os.stat(P("run.sh")).st_mode & 0o111 == 0o111
    r = subprocess.run([P("run.sh"), "ok"], capture_output=True, timeout=30)
    assert r.stdout == b"ran-ok\n", r
    os.chmod(P("x"), 0o600)
    assert stat.S_IMODE(os.stat(P("x")).st_mode) == 0o600
    # fsync, fdatasync, statfs
    fd = os.open(P("x"), os.O_RDWR)
    os.write(fd, b"synced")
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
    sv = os.statvfs(P())
    assert sv.f_bsize > 0 and sv.f_blocks > 0
    # What cannot be stored: a clear errno and no half-made entry.
    if not wm.local:
        for name, fn in (("symlink", lambda: os.symlink("x", P("sl"))),
                         ("link", lambda: os.link(P("x"), P("hl"))),
                         ("mknod", lambda: os.mkfifo(P("fifo")))):
            e = _errno_of(fn)
            assert e in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP), \
                f"{name}: {errno.errorcode.get(e, e)}"
        e = _errno_of(lambda: os.setxattr(P("x"), "user.k", b"v"))
        assert e in (errno.ENOTSUP, errno.EOPNOTSUPP), \
            errno.errorcode.get(e, e)
        for n in ("sl", "hl", "fifo"):
            assert not os.path.lexists(P(n)), n
    # Listings show pending creates, renames, deletes.
    write_file(P("del"), b"to be deleted")
    assert sorted(os.listdir(P())) == ["del", "dir", "keep.txt", "nr",
                                       "run.sh", "x"]
    os.unlink(P("del"))
    assert sorted(os.listdir(P())) == ["dir", "keep.txt", "nr", "run.sh",
                                       "x"]
    script = b"#!/bin/sh\necho ran-$1\n"
    want = {"dir": ("d",), "dir/f": ("f", 1, wt.sha(b"f")),
            "keep.txt": ("f", 6, wt.sha(b"source")),
            "nr": ("f", 7, wt.sha(b"source2")),
            "run.sh": ("f", len(script), wt.sha(script)),
            "x": ("f", 6, wt.sha(b"synced"))}
    assert wt.snapshot(P()) == want
    wt.wait_uploaded(origin.home, want, UPLOAD_TIMEOUT, wm.log)
    if origin.proto == "webdav" and not wm.local:
        # nginx takes the mtime from the PUT's Date header.
        assert os.stat(os.path.join(origin.home, "keep.txt")).st_mtime == \
            1500000000


# ---------------------------------------------------------------- trees

def _tar_of(src, dest):
    with tarfile.open(dest, "w") as t:
        t.add(src, arcname=".")


def test_cp_r_and_tar_x_then_diff(origin, wmount, tmp_path):
    src = str(tmp_path / "src")
    wt.make_source_tree(src, seed=8, nfiles=300,
                        ascii_only=origin.proto == "gridftp")
    tarball = str(tmp_path / "src.tar")
    _tar_of(src, tarball)
    wm = wmount(origin)
    subprocess.run(["cp", "-r", src, wm.path("copy")], check=True,
                   timeout=300)
    os.mkdir(wm.path("untar"))
    # As root tar would chown every entry to the archive's owner; a user
    # extracting into a home does not (--no-same-owner).
    subprocess.run(["tar", "--no-same-owner", "-C", wm.path("untar"),
                    "-xf", tarball], check=True, timeout=300)
    for d in ("copy", "untar"):
        r = subprocess.run(["diff", "-r", src, wm.path(d)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, \
            f"in the mount, {d}:\n{r.stdout[:2000]}{r.stderr[:2000]}" \
            f"\ndaemon log (tail):\n{wm.log()[-3000:]}"
    tree = wt.snapshot(src)
    want = {"copy": ("d",), "untar": ("d",)}
    for d in ("copy", "untar"):
        want.update({f"{d}/{k}": v for k, v in tree.items()})
    wt.wait_uploaded(origin.home, want, 3 * UPLOAD_TIMEOUT, wm.log)
    for d in ("copy", "untar"):
        r = subprocess.run(["diff", "-r", src, os.path.join(origin.home, d)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, \
            f"at the origin, {d}:\n{r.stdout[:2000]}{r.stderr[:2000]}"


@needs_dmsfs
@pytest.mark.skipif(not wt.dmsctl_sync_supported(),
                    reason="build/dmsctl has no sync command yet")
def test_dmsctl_sync_then_diff(dav, wmount, tmp_path):
    src = str(tmp_path / "src")
    wt.make_source_tree(src, seed=9, nfiles=200)
    wm = wmount(dav, writeback_delay=30)
    subprocess.run(["cp", "-r", src, wm.path("copy")], check=True,
                   timeout=300)
    r = wt.dmsctl("sync", wm.path("copy"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # Once sync returns, everything is there: no waiting.
    r = subprocess.run(["diff", "-r", src, os.path.join(dav.home, "copy")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[:2000]
    assert wt.temp_names(dav.home) == []


# ---------------------------------------------------------------- faults

@needs_dmsfs
def test_kill9_after_fsync_then_remount(origin, wmount):
    wm = wmount(origin, writeback_delay=60)
    big = wt.pattern(3 * B + 7, seed=5)
    os.mkdir(wm.path("d"))
    fd = os.open(wm.path("d/big.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, big)
    os.fsync(fd)
    os.close(fd)
    fd = os.open(wm.path("small"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"small")
    os.fdatasync(fd)
    wm.kill9()
    try:
        os.close(fd)  # still open when the daemon died
    except OSError:
        pass
    # Nothing reached the origin yet (60 s delay): all of it must come
    # from the journal.
    wm.opts["writeback_delay"] = 1
    wm.start()
    assert read_file(wm.path("d/big.bin")) == big
    assert read_file(wm.path("small")) == b"small"
    wt.wait_uploaded(origin.home,
                     {"d": ("d",), "d/big.bin": ("f", len(big), wt.sha(big)),
                      "small": ("f", 5, wt.sha(b"small"))},
                     UPLOAD_TIMEOUT, wm.log)


def _kill_nginx(ng):
    """kill -9 of nginx (master and workers: its own process group)."""
    os.killpg(ng.proc.pid, signal.SIGKILL)
    ng.proc.wait(10)


def _restart_nginx(ng):
    """nginx again on the same port and config."""
    conf = os.path.join(ng.dir, "nginx.conf")
    ng.proc = subprocess.Popen(
        [NGINX, "-p", ng.dir, "-c", conf, "-e", ng.error_log],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    assert wait_listening(ng.proc, ng.port, 15), "nginx did not restart"


@needs_dmsfs
def test_origin_down_during_writes(dav, wmount):
    wm = wmount(dav, expected_errors=(r"(?i)refused|connect|unreachable|"
                                      r"retry|couldn't",))
    write_file(wm.path("before.txt"), b"before")
    wt.wait_uploaded(dav.home, {"before.txt": ("f", 6, wt.sha(b"before"))},
                     UPLOAD_TIMEOUT, wm.log)
    _kill_nginx(dav.server)
    # Writes and reads of local data go on while the origin is down.
    os.mkdir(wm.path("d"))
    write_file(wm.path("d/one"), b"one")
    os.rename(wm.path("d/one"), wm.path("d/two"))
    os.mkdir(wm.path("d/sub"))
    write_file(wm.path("d/sub/three"), wt.pattern(B + 1, seed=6))
    os.rename(wm.path("d"), wm.path("e"))
    os.unlink(wm.path("before.txt"))
    write_file(wm.path("e/two"), b"two, rewritten")
    assert read_file(wm.path("e/two")) == b"two, rewritten"
    assert sorted(os.listdir(wm.path())) == ["e"]
    time.sleep(3)  # let uploads fail and back off
    _restart_nginx(dav.server)
    three = wt.pattern(B + 1, seed=6)
    wt.wait_uploaded(dav.home,
                     {"e": ("d",), "e/sub": ("d",),
                      "e/two": ("f", 14, wt.sha(b"two, rewritten")),
                      "e/sub/three": ("f", len(three), wt.sha(three))},
                     3 * UPLOAD_TIMEOUT, wm.log)
    # In order: no upload went out before the mkdir or rename it needs.
    bad = [l for l in dav.server.requests() if " 409 " in l]
    assert not bad, "requests out of order:\n" + "\n".join(bad[:10])


@needs_dmsfs
def test_unmount_uploads_within_unmount_flush(dav, wmount):
    wm = wmount(dav, writeback_delay=60, unmount_flush=30)
    data = wt.pattern(2 * B + 1, seed=7)
    write_file(wm.path("late.bin"), data)
    os.mkdir(wm.path("late-dir"))
    wm.umount()
    assert wt.snapshot(dav.home) == {
        "late.bin": ("f", len(data), wt.sha(data)), "late-dir": ("d",)}, \
        "unmount did not upload what was pending\n" + wm.log()[-3000:]


@needs_dmsfs
def test_conflict_keeps_theirs(origin, wmount):
    origin.put("doc.txt", b"version 1\n", mtime=1600000000)
    wm = wmount(origin, expected_errors=(r"(?i)conflict",))
    with open(wm.path("doc.txt"), "r+b") as f:
        assert f.read() == b"version 1\n"
        # Someone changes it at the origin behind the mount, while our
        # change is made on the version we read.
        origin.put("doc.txt", b"their version 2, longer\n",
                   mtime=1600000100)
        f.write(b"our addition\n")
    conflict = re.compile(r"^doc\.txt\.conflict-.+-\d{8}T\d{6}$")
    deadline = time.monotonic() + UPLOAD_TIMEOUT
    while True:
        names = os.listdir(origin.home)
        ours = [n for n in names if conflict.match(n)]
        if ours:
            break
        assert time.monotonic() < deadline, \
            f"no conflict copy at the origin: {names}\n{wm.log()[-2000:]}"
        time.sleep(0.2)
    assert origin.read("doc.txt") == b"their version 2, longer\n", \
        "their version was overwritten"
    assert origin.read(ours[0]) == b"version 1\nour addition\n"
    assert "conflict" in wm.log().lower()


@needs_dmsfs
@pytest.mark.parametrize("status", [507, 413])
def test_quota_reply_keeps_the_write_pending(wmount, tmp_path, status):
    fo = FakeOrigin({"exists.txt": FakeFile(b"at the origin\n")}).start()
    try:
        fo.write_status = status
        o = Origin.__new__(Origin)
        o.url, o.home, o.proto = fo.url + "/", str(tmp_path / "nohome"), "fake"
        os.makedirs(o.home)
        wm = wmount(o, expected_errors=(
            rf"(?i){status}|quota|full|insufficient|too large|pending|"
            r"left|kept|next mount|upload",))
        data = wt.pattern(B + 5, seed=status)
        write_file(wm.path("new.bin"), data)   # no error for the writer
        deadline = time.monotonic() + UPLOAD_TIMEOUT
        while not any(r[0] == "PUT" and r[3] == status
                      for r in fo.requests):
            assert time.monotonic() < deadline, \
                f"no PUT tried: {fo.requests}\n{wm.log()[-2000:]}"
            time.sleep(0.2)
        assert str(status) in wm.log(), "the log does not say why"
        assert read_file(wm.path("new.bin")) == data
        assert "new.bin" in os.listdir(wm.path())
        # It stays pending: tried again later, never dropped.
        n = sum(r[0] == "PUT" for r in fo.requests)
        deadline = time.monotonic() + UPLOAD_TIMEOUT
        while sum(r[0] == "PUT" for r in fo.requests) <= n:
            assert time.monotonic() < deadline, "no retry of the upload"
            time.sleep(0.5)
        assert read_file(wm.path("new.bin")) == data
        wm.umount()
        # Kept for the next mount (the journal survives the unmount).
        wm.start()
        assert read_file(wm.path("new.bin")) == data
        wm.umount()
    finally:
        fo.stop()


@needs_dmsfs
def test_ftp_full_keeps_the_write_pending(wmount):
    """globus-gridftp-server on a tiny tmpfs: the upload fails (552 / no
    space), stays pending, and completes once there is room."""
    root = make_root("dmsfs-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                    root], check=True, timeout=30)
    server = None
    try:
        nobody = pwd.getpwnam("nobody")
        os.makedirs(os.path.join(root, "home"))
        for d in (root, os.path.join(root, "home")):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
            os.chmod(d, 0o755)
        server = GridFTP(root).start()
        o = Origin("gridftp", root, server)
        wm = wmount(o, expected_errors=(
            r"(?i)552|451|space|full|quota|pending|left|kept|upload",))
        data = wt.pattern(1 << 20, seed=552)
        write_file(wm.path("big.bin"), data)
        deadline = time.monotonic() + UPLOAD_TIMEOUT
        while not re.search(r"(?i)552|no space|enospc|full", wm.log()):
            assert time.monotonic() < deadline, \
                "the log does not say the upload failed:\n" + wm.log()[-2000:]
            time.sleep(0.3)
        assert read_file(wm.path("big.bin")) == data
        subprocess.run(["mount", "-o", "remount,size=8m", root], check=True,
                       timeout=30)
        wt.wait_uploaded(o.home, {"big.bin": ("f", len(data), wt.sha(data))},
                         3 * UPLOAD_TIMEOUT, wm.log)
        wm.umount()
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", root], timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@needs_dmsfs
def test_url_mount_without_rw_is_read_only(dav, wmount):
    dav.put("r.txt", b"read only")
    wm = wmount(dav, rw=None)
    P = wm.path
    for fn in (lambda: os.open(P("n"), os.O_CREAT | os.O_WRONLY),
               lambda: os.open(P("r.txt"), os.O_WRONLY),
               lambda: os.mkdir(P("d")), lambda: os.unlink(P("r.txt")),
               lambda: os.rename(P("r.txt"), P("s"))):
        assert _errno_of(fn) == errno.EROFS
    assert read_file(P("r.txt")) == b"read only"


# ---------------------------------------------------------------- users

@pytest.fixture(scope="module")
def users():
    if not (shutil.which("useradd") and shutil.which("setpriv")):
        pytest.skip("useradd or setpriv missing")
    prefix = f"dmsw{os.getpid()}"
    made = []
    try:
        for k in "ab":
            subprocess.run(["useradd", "-m", "-s", "/usr/sbin/nologin",
                            prefix + k], check=True, capture_output=True,
                           timeout=60)
            made.append(prefix + k)
        yield [User(n) for n in made]
    finally:
        for n in made:
            subprocess.run(["userdel", "-r", n], capture_output=True,
                           timeout=60)


def owner_as(user, path):
    """(uid, gid) of path as user sees it (root may not look in)."""
    r = subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
         "--init-groups", "stat", "-c", "%u %g", path],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, f"stat {path} as {user}: {r.stderr}"
    return tuple(map(int, r.stdout.split()))


_CONFIG = """\
[cache]
dir = {cache}
size = 256M
block_size = 64K
meta_ttl = 60

[acl]
rules = {rules}

[export archive]
path = /archive
source = {url}/archive/

[export home]
path = /home
source = {url}/home/${{user}}/
per_user = yes
writable = yes
"""


@pytest.fixture
def home_mount(users, dav, tmp_path):
    """A config mount: /archive (read-only) and per-user writable /home
    over the dav origin; each user owns /home/<name> ("a")."""
    a, b = users
    dav.put(f"{a.name}/mine.txt", b"alice's\n")
    dav.put(f"{b.name}/mine.txt", b"bob's\n")
    os.makedirs(os.path.join(dav.root, "archive"))
    with open(os.path.join(dav.root, "archive", "paper.txt"), "wb") as f:
        f.write(b"archived\n")
    rules = tmp_path / "authdb"
    rules.write_text("u * /archive rl\nu = /home/@=/ a\n")
    os.chmod(rules, 0o644)
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(_CONFIG.format(cache=tmp_path / "cache", rules=rules,
                                   url=dav.server.url))
    pub = make_root("dmsfs-hmnt-")
    m = ConfigMount(conf, pub, tmp_path / "dmsfs.log",
                    {"writeback_delay": 1})
    try:
        m.start()
        yield m
        m.umount()
    finally:
        m.cleanup()
        shutil.rmtree(pub, ignore_errors=True)


@needs_dmsfs
def test_users_own_home_writable_others_not(home_mount, users, dav):
    a, b = users
    mnt = home_mount.mountpoint
    mine = f"{mnt}/home/{a.name}"
    res = as_user(a, [["create", f"{mine}/new.txt"],
                      ["write", f"{mine}/mine.txt"],
                      ["mkdir", f"{mine}/dir"],
                      ["rename", f"{mine}/new.txt", f"{mine}/dir/new.txt"],
                      ["truncate", f"{mine}/mine.txt"],
                      ["chmod", f"{mine}/mine.txt"],
                      ["unlink", f"{mine}/dir/new.txt"],
                      ["rmdir", f"{mine}/dir"]])
    assert [err(r) for r in res] == ["ok"] * len(res), res
    assert owner_as(a, f"{mine}/mine.txt") == (a.uid, a.gid), \
        "not shown as the user's own"
    theirs = f"{mnt}/home/{b.name}"
    res = as_user(a, [["create", f"{theirs}/evil.txt"],
                      ["write", f"{theirs}/mine.txt"],
                      ["truncate", f"{theirs}/mine.txt"],
                      ["unlink", f"{theirs}/mine.txt"],
                      ["rename", f"{theirs}/mine.txt", f"{theirs}/x"],
                      ["mkdir", f"{theirs}/d"],
                      ["rename", f"{mine}/mine.txt", f"{theirs}/stolen"]])
    assert [err(r) for r in res[:-1]] == ["EACCES"] * (len(res) - 1), res
    # Across two users' homes (two origins) EXDEV denies as well.
    assert err(res[-1]) in ("EACCES", "EXDEV"), res[-1]
    arch = f"{mnt}/archive"
    res = as_user(a, [["create", f"{arch}/evil.txt"],
                      ["write", f"{arch}/paper.txt"],
                      ["truncate", f"{arch}/paper.txt"],
                      ["unlink", f"{arch}/paper.txt"],
                      ["rename", f"{arch}/paper.txt", f"{arch}/x"],
                      ["mkdir", f"{arch}/d"]])
    assert all(err(r) in ("EROFS", "EACCES") for r in res), res
    wt.wait_uploaded(os.path.join(dav.home, a.name),
                     {"mine.txt": ("f", 0, wt.sha(b""))}, UPLOAD_TIMEOUT,
                     home_mount.log)
    assert dav.read(f"{b.name}/mine.txt") == b"bob's\n"
    with open(os.path.join(dav.root, "archive", "paper.txt"), "rb") as f:
        assert f.read() == b"archived\n"


_WRITER = r"""
import json, os, sys
home, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(home, "out"), exist_ok=True)
for i in range(n):
    with open(os.path.join(home, "out", "f%03d" % i), "wb") as f:
        f.write((os.path.basename(home) + " %d\n" % i).encode() * (i + 1))
print(json.dumps(sorted(os.listdir(os.path.join(home, "out")))))
"""


@needs_dmsfs
def test_two_users_write_their_homes_at_once(home_mount, users, dav):
    n = 60
    procs = []
    for u in users:
        home = f"{home_mount.mountpoint}/home/{u.name}"
        procs.append(subprocess.Popen(
            ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}",
             "--init-groups", "/usr/bin/python3", "-c", _WRITER, home,
             str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd="/"))
    for u, p in zip(users, procs):
        out, e = p.communicate(timeout=300)
        assert p.returncode == 0, f"{u}: {e}"
        assert json.loads(out) == [f"f{i:03d}" for i in range(n)]
    for u in users:
        want = {"mine.txt": ("f", len(dav.read(f"{u.name}/mine.txt")),
                             wt.sha(dav.read(f"{u.name}/mine.txt"))),
                "out": ("d",)}
        for i in range(n):
            d = (f"{u.name} {i}\n").encode() * (i + 1)
            want[f"out/f{i:03d}"] = ("f", len(d), wt.sha(d))
        assert owner_as(u, f"{home_mount.mountpoint}/home/{u.name}/out/"
                        "f000") == (u.uid, u.gid)
        wt.wait_uploaded(os.path.join(dav.home, u.name), want,
                         2 * UPLOAD_TIMEOUT, home_mount.log)
    # One user's pending or uploaded data is not the other's to read.
    a, b = users
    r = as_user(b, [["read", f"{home_mount.mountpoint}/home/{a.name}/"
                             "out/f000"]])[0]
    assert err(r) == "EACCES"
