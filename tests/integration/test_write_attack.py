"""Adversarial tests of the write path (issue 8): a hostile WebDAV origin
that lies about uploads, a MKCOL onto a name the origin holds as a file,
kill -9 in the middle of a slow upload, and other unlucky cases.

The contract checked: nothing is lost (the operation stays pending and is
retried, the log and `dmsctl status` say why), a wrong byte is never shown
in the mount or left at the origin as if it were ours, and an origin file
that changed is never overwritten.

Needs root, FUSE, nginx and build/dmsfs.
"""
import errno
import json
import os
import shutil
import re
import subprocess
import time

import pytest

import writetree as wt
from fakeorigin import FakeOrigin, FakeFile

B = 65536
UPLOAD_TIMEOUT = 90   # a bound on a hang, with slack

pytestmark = wt.skip_marks() + [
    pytest.mark.skipif(wt.LOCAL, reason="dmsfs-only behaviour")]


class _FakeHome:
    """What WriteMount needs of an origin, for a FakeOrigin."""

    def __init__(self, fo, home):
        self.url, self.home = fo.url + "/", str(home)
        os.makedirs(self.home, exist_ok=True)


from test_home_write import wmount  # noqa: E402,F401  (fixture)


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def wait_for(cond, what, log=None, timeout=UPLOAD_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tail = ("\n" + log()[-3000:]) if log else ""
            raise AssertionError(f"timed out: {what}{tail}")
        time.sleep(0.2)


def status(wm):
    r = wt.dmsctl("status", wm.path())
    return r.stdout + r.stderr


# ------------------------------------------------ a hostile WebDAV origin

LIES = [("put_fault", "drop"), ("put_fault", "truncate"),
        ("move_fault", "noop"), ("put_fault", "redirect"),
        ("move_fault", "redirect")]


@pytest.mark.parametrize("fault,kind", LIES,
                         ids=[f"{a}-{b}" for a, b in LIES])
@pytest.mark.parametrize("existing", [False, True],
                         ids=["new", "replace"])
def test_lying_origin_loses_nothing(wmount, tmp_path, fault, kind,
                                    existing):
    """The origin answers an upload's PUT or MOVE with success (or a
    redirect) but does not store our bytes: the upload must not count as
    done.  The file stays pending with its bytes in the mount, the status
    names the failure, the origin's own file is untouched, and once the
    origin behaves the upload completes with exactly our bytes."""
    theirs = b"the origin's version\n"
    files = {"doc.txt": FakeFile(theirs)} if existing else {}
    fo = FakeOrigin(files, store=True).start()
    try:
        setattr(fo, fault, kind)
        o = _FakeHome(fo, tmp_path / "nohome")
        wm = wmount(o, expected_errors=(
            r"(?i)upload|pending|retry|kept|left|size|redirect|307|"
            r"short|stored",))
        data = wt.pattern(3 * B + 7, seed=7)
        if existing:
            assert read_file(wm.path("doc.txt")) == theirs
        write_file(wm.path("doc.txt"), data)
        wait_for(lambda: sum(r[0] == "PUT" for r in fo.requests) >= 2,
                 "two upload tries", wm.log)
        assert read_file(wm.path("doc.txt")) == data, \
            "the mount shows bytes that are not ours"
        st = status(wm)
        assert "doc.txt" in st, f"not pending any more:\n{st}\n" + \
            wm.log()[-3000:]
        f = fo.files.get("doc.txt")
        if existing:
            assert f is not None and f.data == theirs, \
                "the origin's file was damaged"
        else:
            assert f is None or f.data == data, "a wrong file at the origin"
        # The origin comes round: everything arrives, exactly.
        setattr(fo, fault, None)
        assert wt.dmsctl("sync", "-t", "60", wm.path()).returncode == 0, \
            wm.log()[-3000:]
        assert fo.files["doc.txt"].data == data
        assert read_file(wm.path("doc.txt")) == data
        left = [n for n in fo.files if wt.TEMP_MARK in n]
        assert not left, \
            f"temporaries left at the origin: {left}"
        wm.umount()
    finally:
        fo.stop()


# ------------------------------------------- a name taken at the origin

from test_home_write import dav  # noqa: E402,F401  (fixture)


def test_mkdir_onto_an_origin_file_loses_nothing(dav, wmount):
    """The mount made folder d (its listing did not show d yet); before
    the MKCOL went out someone made a FILE d at the origin.  MKCOL's 405
    ("exists") must not count as our folder being there: their file stays
    as it is, our d/f stays pending and readable in the mount, and the
    status says why."""
    wm = wmount(dav, expected_errors=(
        r"(?i)mkdir|exists|not a (folder|directory)|pending|retry|kept|"
        r"left|409|405|upload|conflict",), unmount_flush=3)
    os.listdir(wm.path())            # the listing is cached: no d
    dav.put("d", b"their file\n")    # behind the mount's back
    data = wt.pattern(B + 3, seed=11)
    os.mkdir(wm.path("d"))
    write_file(wm.path("d", "f"), data)
    wait_for(lambda: re.search(r"(?i)mkdir|MKCOL", wm.log()) and
             "d/f" in status(wm), "the mkdir tried", wm.log)
    time.sleep(3)    # a few retries of whatever is pending
    assert dav.read("d") == b"their file\n", "their file was changed"
    assert read_file(wm.path("d", "f")) == data, \
        "our pending file is lost from the mount\n" + wm.log()[-3000:]
    st = status(wm)
    assert "d/f" in st and re.search(r"(?i)exist|not a dir|folder", st), \
        f"the status does not say why:\n{st}"
    wm.umount()
    wm.start()   # kept for the next mount
    assert read_file(wm.path("d", "f")) == data
    wm.failed = True   # it can never be uploaded: no clean unmount


# ------------------------------------------------- rights, every write op

from test_home_write import users  # noqa: E402,F401  (module fixture)
from test_acl_mount import ConfigMount  # noqa: E402
from gridftp_origin import make_root  # noqa: E402

_OPS = r"""
import json, os, sys
out = []
for op in json.loads(sys.argv[1]):
    kind, p = op[0], op[1]
    e = 0
    try:
        if kind == "open":
            fl = 0
            for n in op[2].split("|"):
                fl |= getattr(os, n)
            os.close(os.open(p, fl))
        elif kind == "otrunc":
            os.close(os.open(p, os.O_RDONLY | os.O_TRUNC))
        elif kind == "truncate":
            os.truncate(p, 1)
        elif kind == "create":
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        elif kind == "mkdir":
            os.mkdir(p)
        elif kind == "unlink":
            os.unlink(p)
        elif kind == "rmdir":
            os.rmdir(p)
        elif kind == "rename":
            os.rename(p, op[2])
        elif kind == "chmod":
            os.chmod(p, 0o600)
        elif kind == "utime":
            os.utime(p, (1000000000, 1000000000))
        elif kind == "touch":
            os.utime(p, None)
        elif kind == "read":
            open(p, "rb").read()
        elif kind == "write_data":
            with open(p, "wb") as f:
                f.write(op[2].encode())
        elif kind == "stat":
            os.stat(p)
        elif kind == "list":
            os.listdir(p)
    except OSError as x:
        e = x.errno
    out.append(e)
print(json.dumps(out))
"""


def ops_as(user, ops):
    r = subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
         "--init-groups", "/usr/bin/python3", "-c", _OPS, json.dumps(ops)],
        capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    return [errno.errorcode.get(e, "ok") if e else "ok"
            for e in json.loads(r.stdout)]


_SHARED_CONFIG = """\
[cache]
dir = {cache}
size = 256M
block_size = 64K

[acl]
rules = {rules}

[export shared]
path = /shared
source = {url}/shared/
writable = yes
"""


def test_rights_every_write_op(users, dav, tmp_path):
    """A user with r/l but not w/i/d/n tries every write operation; one
    with n but not i renames into a folder; one without d renames over a
    name.  Every attempt is EACCES (or EPERM), nothing changes in the
    mount or at the origin.  README "Writable exports", Rights."""
    a, _ = users
    sh = os.path.join(dav.root, "shared")
    for rel, data in [("ro/f.txt", b"ro\n"), ("ro/sub/g.txt", b"g\n"),
                      ("nd/f.txt", b"nd\n"), ("nd/dir/h.txt", b"h\n"),
                      ("free/k.txt", b"k\n")]:
        os.makedirs(os.path.dirname(os.path.join(sh, rel)), exist_ok=True)
        with open(os.path.join(sh, rel), "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(sh, "ro", "empty"))
    before = wt.snapshot(sh)
    rules = tmp_path / "authdb"
    rules.write_text(f"u {a.name} /shared/ro rl /shared/nd rlwn "
                     "/shared/free a\n")
    os.chmod(rules, 0o644)
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(_SHARED_CONFIG.format(cache=tmp_path / "cache",
                                          rules=rules, url=dav.server.url))
    pub = make_root("dmsfs-rmnt-")
    m = ConfigMount(conf, pub, tmp_path / "dmsfs.log",
                    {"writeback_delay": 1, "unmount_flush": 10})
    try:
        m.start()
        S = f"{pub}/shared"
        ro, nd, fr = f"{S}/ro", f"{S}/nd", f"{S}/free"
        ops = [["open", f"{ro}/f.txt", "O_WRONLY"],
               ["open", f"{ro}/f.txt", "O_RDWR"],
               ["open", f"{ro}/f.txt", "O_WRONLY|O_APPEND"],
               ["otrunc", f"{ro}/f.txt"],
               ["truncate", f"{ro}/f.txt"],
               ["create", f"{ro}/new"],
               ["mkdir", f"{ro}/d"],
               ["unlink", f"{ro}/f.txt"],
               ["rmdir", f"{ro}/empty"],
               ["rmdir", f"{ro}/sub"],
               ["rename", f"{ro}/f.txt", f"{ro}/f2"],
               ["rename", f"{ro}/f.txt", f"{fr}/out"],
               ["rename", f"{ro}/sub", f"{fr}/sub"],
               ["rename", f"{fr}/k.txt", f"{ro}/k.txt"],
               ["chmod", f"{ro}/f.txt"],
               ["utime", f"{ro}/f.txt"],
               ["touch", f"{ro}/f.txt"],
               # n but neither i nor d: no new name, no replaced one
               ["rename", f"{nd}/f.txt", f"{nd}/f2"],
               ["rename", f"{nd}/f.txt", f"{ro}/f3"],
               ["rename", f"{fr}/k.txt", f"{nd}/k.txt"],
               ["rename", f"{fr}/k.txt", f"{nd}/f.txt"],
               ["unlink", f"{nd}/f.txt"],
               ["unlink", f"{nd}/dir/h.txt"],
               ["rmdir", f"{nd}/dir"]]
        got = ops_as(a, ops)
        bad = [f"  {o}: {g}" for o, g in zip(ops, got)
               if g not in ("EACCES", "EPERM")]
        assert not bad, "allowed or odd:\n" + "\n".join(bad) + \
            "\n" + m.log()[-2000:]
        # The free area works (the rules are not just denying all).
        assert ops_as(a, [["create", f"{fr}/mine"],
                          ["rename", f"{fr}/mine", f"{fr}/mine2"]]) == \
            ["ok", "ok"]
        assert ops_as(a, [["read", f"{ro}/f.txt"]]) == ["ok"]
        # Root has no rights in this mount, yet an admin's dmsctl finds
        # the mount of a path it may not look at.
        for p in (pub, S + "/", f"{fr}/mine2"):
            r = wt.dmsctl("sync", "-t", "60", p)
            assert r.returncode == 0, r.stderr + m.log()[-2000:]
        r = wt.dmsctl("status", S)
        assert r.returncode == 0 and "nothing pending" in r.stdout, \
            r.stdout + r.stderr
        want = dict(before)
        want["free/mine2"] = ("f", 0, wt.sha(b""))
        wt.wait_uploaded(sh, want, UPLOAD_TIMEOUT, m.log)
        time.sleep(3)   # anything wrongly queued would have gone out
        after = wt.snapshot(sh)
        assert after == want, "\n".join(wt.diff_trees(after, want))
        m.umount()
    finally:
        m.cleanup()
        shutil.rmtree(pub, ignore_errors=True)


# ---------------------------------------------- the journal's disk fills

def test_full_cache_disk_loses_nothing(dav, wmount, tmp_path):
    """cache_dir on a small tmpfs: writes past the free space get ENOSPC
    (never EIO or a short file shown as whole), what was stored before
    stays byte-exact, and once space is freed everything uploads.
    README "Write journal", Full."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs",
                    str(disk)], check=True, timeout=30)
    try:
        wm = wmount(dav, expected_errors=(
            r"(?i)no space|ENOSPC|full|pending|left",),
            cache_dir=str(disk / "cache"), cache_size="4M",
            writeback_delay=3600)
        first = wt.pattern(4 << 20, seed=1)
        write_file(wm.path("first.bin"), first)
        big = wt.pattern(1 << 20, seed=2)
        fd = os.open(wm.path("big.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
        written, failure = 0, None
        try:
            for _ in range(64):
                written += os.write(fd, big)
            os.fsync(fd)
        except OSError as e:
            failure = e
        finally:
            try:
                os.close(fd)
            except OSError as e:
                failure = failure or e
        assert failure is not None and failure.errno in (
            errno.ENOSPC, errno.EDQUOT), \
            f"64 MiB fit a 24 MiB disk, or a wrong error: {failure!r}"
        assert read_file(wm.path("first.bin")) == first
        got = read_file(wm.path("big.bin"))
        assert len(got) <= written and got == (big * 64)[:len(got)], \
            "the file that hit the full disk reads wrong bytes"
        # Small operations still fit (the log's reserve).
        os.mkdir(wm.path("after"))
        os.unlink(wm.path("big.bin"))
        # A deleted file's staged data is freed once its operations
        # reach the origin (in order): dmsctl sync makes them go now.
        r = wt.dmsctl("sync", "-t", "90", wm.path())
        assert r.returncode == 0, r.stdout + r.stderr + wm.log()[-3000:]
        write_file(wm.path("after", "small"), b"small\n")
        r = wt.dmsctl("sync", "-t", "90", wm.path())
        assert r.returncode == 0, r.stdout + r.stderr + wm.log()[-3000:]
        want = {"first.bin": ("f", len(first), wt.sha(first)),
                "after": ("d",),
                "after/small": ("f", 6, wt.sha(b"small\n"))}
        wt.wait_uploaded(dav.home, want, UPLOAD_TIMEOUT, wm.log)
        wm.umount()
    finally:
        wm.cleanup()
        subprocess.run(["umount", "-l", str(disk)], timeout=30)


# ------------------------------------ an unlucky admin and the journal

@pytest.mark.parametrize("damage", ["truncate", "delete_data"])
def test_damaged_staged_file_never_uploads_wrong_bytes(dav, wmount,
                                                       damage):
    """Between two mounts the staged file of a pending upload is cut or
    removed.  The mount must not show or upload bytes that are not what
    was written: the operation is set aside (logged).  README "Write
    journal", Restart.  (Staged bytes changed in place at the same size
    are not detected: the journal keeps no checksum of data, README.)"""
    wm = wmount(dav, expected_errors=(
        r"(?i)set aside|lost|missing|shorter|pending|left|journal|"
        r"checksum|bad|upload",), writeback_delay=3600, unmount_flush=0)
    data = wt.pattern(3 * B + 7, seed=5)
    write_file(wm.path("f.bin"), data)
    wm.umount()
    d = os.path.join(wm.opts["cache_dir"], "journal", "data")
    staged = [os.path.join(d, n) for n in os.listdir(d)]
    assert len(staged) == 1, staged
    if damage == "truncate":
        os.truncate(staged[0], B)
    elif damage == "delete_data":
        os.unlink(staged[0])
    else:
        with open(staged[0], "r+b") as f:
            f.write(wt.pattern(len(data), seed=99))
    wm.opts["writeback_delay"] = 1
    wm.opts["unmount_flush"] = 20
    wm.start()
    try:
        got = read_file(wm.path("f.bin"))
    except OSError:
        got = None
    assert got in (None, data), "the mount shows bytes never written"
    wt.dmsctl("sync", "-t", "20", wm.path())
    time.sleep(2)
    at_origin = os.path.join(dav.home, "f.bin")
    if os.path.exists(at_origin):
        with open(at_origin, "rb") as f:
            assert f.read() == data, "bytes never written were uploaded"
    assert "set aside" in wm.log() or got == data, wm.log()[-2000:]
    wm.umount()


# ------------------------------------------------ kill -9 mid-upload

def _put_in_flight(ng):
    """Whether nginx is receiving a request body (its temp files)."""
    for dp, _, fs in os.walk(os.path.join(ng.dir, "tmp")):
        for n in fs:
            try:
                if os.path.getsize(os.path.join(dp, n)) > 0:
                    return True
            except OSError:
                pass
    return False


def test_kill9_mid_upload_then_remount(dav, wmount):
    """A slow origin (a relay at ~650 KB/s): the daemon is killed -9 while
    a 6 MiB upload is in flight.  After the remount the upload completes,
    the origin holds exactly our bytes, and no temporary is left."""
    relay = subprocess.Popen(
        [os.path.join(wt.mountlib.ROOT, "build", "tools", "delayrelay"),
         "-w", "131072", "0", dav.server.url.split("//")[1], "100"],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(relay.stdout.readline())
        slow = _FakeHome.__new__(_FakeHome)
        slow.url, slow.home = f"http://127.0.0.1:{port}/home/", dav.home
        wm = wmount(slow, expected_errors=(
            r"(?i)pending|upload|replay|resum|left",))
        data = wt.pattern(6 << 20, seed=9)
        write_file(wm.path("big.bin"), data)
        wait_for(lambda: _put_in_flight(dav.server), "the PUT started",
                 wm.log, timeout=60)
        time.sleep(1.5)
        wm.kill9()
        assert not os.path.exists(os.path.join(dav.home, "big.bin"))
        wm.start()
        assert read_file(wm.path("big.bin")) == data
        r = wt.dmsctl("sync", "-t", "120", wm.path())
        assert r.returncode == 0, r.stdout + r.stderr + wm.log()[-3000:]
        # The killed daemon's PUT may still complete at the origin after
        # its death (the bytes it had sent sit in socket and relay
        # buffers): that temporary's random name was never journaled, so
        # it may stay, full size, under a hidden name.  Ours may not.
        before = set(wt.temp_names(dav.home))
        wt.wait_uploaded(dav.home, {"big.bin": ("f", len(data),
                                                wt.sha(data))},
                         UPLOAD_TIMEOUT, wm.log,
                         ignore=lambda rel: rel in before)
        assert len(before) <= 1, before
        assert not [n for n in os.listdir(wm.path()) if n in before], \
            "an upload temporary is shown in the mount"
        wm.umount()
    finally:
        relay.terminate()
        relay.wait(30)


# ------------------------------------------------------ special inputs

ODD_NAMES = ["new\nline", "per%cent%20x", "q?mark", "#hash", "caf\u00e9 \u65e5",
             "x" * 255, ".hidden..", "sp ace ", "amp&=+;,"]


def test_odd_names_and_calls(dav, wmount):
    """Odd names round-trip to the origin byte for byte; mmap MAP_SHARED
    writes, O_DIRECT writes, copy_file_range, O_APPEND through two fds,
    fallocate (works or a clear errno), truncate to exactly
    writeback_size and one byte past it."""
    import mmap
    cap = 1 << 20
    wm = wmount(dav, writeback_size=cap)
    # The cap, on an empty journal: exactly writeback_size fits, one
    # byte more does not and changes nothing.
    fd = os.open(wm.path("cap"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, cap)
        with pytest.raises(OSError) as ei:
            os.ftruncate(fd, cap + 1)
        assert ei.value.errno in (errno.ENOSPC, errno.EDQUOT)
        assert os.fstat(fd).st_size == cap
    finally:
        os.close(fd)
    r = wt.dmsctl("sync", "-t", "60", wm.path())
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()[-3000:]
    want = {"cap": ("f", cap, wt.sha(b"\0" * cap))}
    for i, n in enumerate(ODD_NAMES):
        d = wt.pattern(100 + i, seed=i)
        write_file(wm.path(n), d)
        want[n] = ("f", len(d), wt.sha(d))
    assert sorted(os.listdir(wm.path())) == sorted(ODD_NAMES + ["cap"])
    # A path near PATH_MAX: nested 200-byte folders.
    deep = []
    while len("/".join(deep + ["y" * 200])) < 4095 - len(wm.path()) - 210:
        deep.append("y" * 200)
    os.makedirs(wm.path(*deep))
    write_file(wm.path(*deep, "z"), b"deep\n")
    for k in range(1, len(deep) + 1):
        want["/".join(deep[:k])] = ("d",)
    want["/".join(deep + ["z"])] = ("f", 5, wt.sha(b"deep\n"))
    # mmap MAP_SHARED, msync, read back
    fd = os.open(wm.path("mm"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 2 * B)
        try:
            mm = mmap.mmap(fd, 2 * B, mmap.MAP_SHARED)
        except OSError as e:
            mm = None
            assert e.errno in (errno.ENODEV, errno.EINVAL, errno.ENOTSUP)
        if mm is not None:
            mm[B - 3:B + 3] = b"ABCDEF"
            mm.flush()
            mm.close()
            os.fsync(fd)
    finally:
        os.close(fd)
    got = read_file(wm.path("mm"))
    mmdata = bytearray(2 * B)
    if mm is not None:
        mmdata[B - 3:B + 3] = b"ABCDEF"
    assert got == bytes(mmdata)
    want["mm"] = ("f", 2 * B, wt.sha(bytes(mmdata)))
    # O_DIRECT
    buf = mmap.mmap(-1, B)
    buf.write(wt.pattern(B, seed=42))
    try:
        fd = os.open(wm.path("direct"), os.O_WRONLY | os.O_CREAT |
                     os.O_DIRECT, 0o644)
    except OSError as e:
        assert e.errno == errno.EINVAL, e
    else:
        try:
            assert os.write(fd, buf) == B
        finally:
            os.close(fd)
        assert read_file(wm.path("direct")) == bytes(buf)
        want["direct"] = ("f", B, wt.sha(bytes(buf)))
    # copy_file_range from one pending file to another
    src = wm.path(ODD_NAMES[0])
    with open(src, "rb") as fi, open(wm.path("copy"), "wb") as fo:
        n = os.copy_file_range(fi.fileno(), fo.fileno(), 1 << 20)
        assert n == 100
    assert read_file(wm.path("copy")) == read_file(src)
    want["copy"] = want[ODD_NAMES[0]]
    # O_APPEND through two fds
    f1 = os.open(wm.path("app"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                 0o644)
    f2 = os.open(wm.path("app"), os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(50):
            os.write(f1 if i % 2 else f2, b"%03d\n" % i)
    finally:
        os.close(f1)
        os.close(f2)
    app = b"".join(b"%03d\n" % i for i in range(50))
    assert read_file(wm.path("app")) == app
    want["app"] = ("f", len(app), wt.sha(app))
    # fallocate: works, or a clear errno; never a changed size silently
    fd = os.open(wm.path("falloc"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, 4096)
        fsize = 4096
    except OSError as e:
        assert e.errno in (errno.EOPNOTSUPP, errno.ENOSYS), e
        fsize = 0
    finally:
        os.close(fd)
    assert os.stat(wm.path("falloc")).st_size == fsize
    want["falloc"] = ("f", fsize, wt.sha(b"\0" * fsize))
    r = wt.dmsctl("sync", "-t", "60", wm.path())
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()[-3000:]
    wt.wait_uploaded(dav.home, want, UPLOAD_TIMEOUT, wm.log)
    wm.umount()


def test_dot_file_survives_remount_on_nginx(dav, wmount):
    """A home's .bashrc written through the mount still opens after
    dmsctl sync and a remount."""
    wm = wmount(dav)
    write_file(wm.path(".bashrc"), b"alias ll='ls -l'\n")
    r = wt.dmsctl("sync", "-t", "60", wm.path())
    assert r.returncode == 0, r.stdout + r.stderr
    assert dav.read(".bashrc") == b"alias ll='ls -l'\n"
    wm.remount()
    try:
        assert read_file(wm.path(".bashrc")) == b"alias ll='ls -l'\n"
        # found by name; nginx lists no dot names, so neither can the
        # mount (README, Writable exports, known limits)
    finally:
        wm.umount()


from test_home_write import home_mount  # noqa: E402,F401


def test_pending_data_of_another_user_stays_hidden(home_mount, users):
    """User a's pending file (created 0600, and one 0644) in a's home: b
    can neither read, stat nor list it, before or after a read it (the
    kernel's caches are shared), and root without rules cannot either.
    README "Writable exports" (Local first) and "How rules are enforced"."""
    a, b = users
    home = f"{home_mount.mountpoint}/home/{a.name}"
    assert ops_as(a, [["create", f"{home}/secret"],
                      ["write_data", f"{home}/secret", "s3cret"],
                      ["write_data", f"{home}/open", "not so secret"],
                      ["read", f"{home}/secret"], ["read", f"{home}/open"],
                      ["stat", f"{home}/secret"], ["list", home]]) == \
        ["ok"] * 7
    for who in (b,):
        got = ops_as(who, [["read", f"{home}/secret"],
                           ["read", f"{home}/open"],
                           ["stat", f"{home}/secret"],
                           ["stat", f"{home}/open"],
                           ["list", home],
                           ["open", f"{home}/open", "O_WRONLY"],
                           ["rename", f"{home}/open",
                            f"{home_mount.mountpoint}/home/{b.name}/x"]])
        assert set(got) <= {"EACCES", "EXDEV"}, got
    with pytest.raises(PermissionError):
        read_file(f"{home}/open")


def test_writes_racing_with_parent_renames(dav, wmount):
    """A writer keeps writing through an open fd (and reopening by path
    where it can) while its folder is renamed back and forth, while the
    earlier renames upload.  The file's final bytes are exactly what was
    written, in the mount and at the origin, under the last name."""
    import threading
    wm = wmount(dav)
    os.makedirs(wm.path("d0", "sub"))
    chunk = wt.pattern(B + 13, seed=3)
    fd = os.open(wm.path("d0", "sub", "f"), os.O_WRONLY | os.O_CREAT,
                 0o644)
    stop = threading.Event()
    errors = []
    total = [0]

    def writer():
        try:
            while not stop.is_set():
                total[0] += os.write(fd, chunk)
                time.sleep(0.01)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        cur = "d0"
        for i in range(1, 12):
            os.rename(wm.path(cur), wm.path(f"d{i}"))
            cur = f"d{i}"
            time.sleep(0.15)
    finally:
        stop.set()
        t.join(60)
        os.close(fd)
    assert not errors, errors
    n = total[0] // len(chunk)
    want = chunk * n
    assert total[0] == len(want)
    assert read_file(wm.path(cur, "sub", "f")) == want
    r = wt.dmsctl("sync", "-t", "120", wm.path())
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()[-3000:]
    wt.wait_uploaded(dav.home, {cur: ("d",), f"{cur}/sub": ("d",),
                                f"{cur}/sub/f": ("f", len(want),
                                                 wt.sha(want))},
                     UPLOAD_TIMEOUT, wm.log)
    wm.remount()
    assert read_file(wm.path(cur, "sub", "f")) == want
    wm.umount()


@pytest.mark.parametrize("damage", ["ops_symlink", "ops_deleted",
                                    "ops_truncated", "data_symlink"])
def test_journal_tampered_between_mounts(dav, wmount, tmp_path, damage):
    """An unlucky admin between two mounts: the journal's log replaced by
    a symlink (to a file that would parse), deleted, or cut in the
    middle of a record; a staged file replaced by a symlink.  The next
    mount refuses to start (naming the file) or starts without using
    what it cannot trust; it never follows a link nor uploads bytes that
    were not written.  README "Write journal"."""
    wm = wmount(dav, expected_errors=(
        r"(?i)journal|symlink|link|refus|set aside|torn|lost|missing|"
        r"pending|left|ops|checksum|not a regular",),
        writeback_delay=3600, unmount_flush=0)
    data = wt.pattern(B + 1, seed=21)
    os.mkdir(wm.path("d"))
    write_file(wm.path("d", "f"), data)
    write_file(wm.path("g"), b"gee\n")
    wm.umount()
    jdir = os.path.join(wm.opts["cache_dir"], "journal")
    ops = os.path.join(jdir, "ops")
    decoy = tmp_path / "decoy"
    if damage == "ops_symlink":
        shutil.copy(ops, decoy)
        os.unlink(ops)
        os.symlink(decoy, ops)
    elif damage == "ops_deleted":
        os.unlink(ops)
    elif damage == "ops_truncated":
        os.truncate(ops, os.path.getsize(ops) - 7)
    else:
        d = os.path.join(jdir, "data")
        victim = sorted(os.listdir(d))[0]
        shutil.copy(os.path.join(d, victim), decoy)
        os.unlink(os.path.join(d, victim))
        os.symlink(decoy, os.path.join(d, victim))
    wm.opts["writeback_delay"] = 1
    wm.opts["unmount_flush"] = 20
    try:
        wm.start()
    except AssertionError as e:
        assert damage == "ops_symlink", f"the mount was refused: {e}"
        assert "journal" in str(e) and "ops" in str(e), str(e)
        wm.m = None
        return
    assert damage != "ops_symlink", "a symlinked journal log was used"
    r = wt.dmsctl("sync", "-t", "30", wm.path())
    time.sleep(1)
    for rel, want in (("d/f", data), ("g", b"gee\n")):
        p = os.path.join(dav.home, rel)
        if os.path.exists(p):
            assert read_file(p) == want, f"wrong bytes uploaded to {rel}"
        try:
            got = read_file(wm.path(rel))
        except OSError:
            continue
        assert got == want, f"the mount shows wrong bytes for {rel}"
    if damage == "data_symlink":
        assert os.path.exists(decoy), "the decoy behind a link was touched"
    assert wt.temp_names(dav.home) == []
    wm.umount()


def test_file_deleted_before_its_upload_is_never_uploaded(wmount,
                                                          tmp_path):
    """A file written and closed, then deleted before writeback_delay
    passed: its bytes never reach the origin, and its journal space is
    freed once the uploader passes its skipped upload (a full journal is
    freed by deleting; not at the unlink itself, see the README)."""
    fo = FakeOrigin({}, store=True).start()
    try:
        o = _FakeHome(fo, tmp_path / "nohome")
        wm = wmount(o, writeback_delay=2,
                    writeback_size=1 << 20)
        write_file(wm.path("oops.txt"), b"password=hunter2\n")
        os.unlink(wm.path("oops.txt"))
        try:
            # Nearly the whole cap: oops's bytes may still count until
            # its RELEASE, which the kernel sends after close() returned.
            write_file(wm.path("big"), b"\0" * ((1 << 20) - 4096))
            os.unlink(wm.path("big"))
            r0 = wt.dmsctl("sync", "-t", "60", wm.path())
            assert r0.returncode == 0, r0.stdout + r0.stderr
            write_file(wm.path("big2"), b"\0" * (1 << 20))
        finally:
            r = wt.dmsctl("sync", "-t", "60", wm.path())
            wm.umount()
        assert r.returncode == 0
        assert not [q for q in fo.requests if q[0] == "PUT" and
                    ("oops" in q[1] or q[1].endswith("big"))], fo.requests
    finally:
        fo.stop()
