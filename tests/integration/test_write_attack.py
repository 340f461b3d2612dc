"""Adversarial tests of the write path (issue 8): a hostile WebDAV origin
that lies about uploads, a MKCOL onto a name the origin holds as a file,
kill -9 in the middle of a slow upload, and other unlucky cases.

The contract checked: nothing is lost (the operation stays pending and is
retried, the log and `dmsctl status` say why), a wrong byte is never shown
in the mount or left at the origin as if it were ours, and an origin file
that changed is never overwritten.

Needs root, FUSE, nginx and build/dmsfs.
"""
import os
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


@pytest.fixture
def wmount(tmp_path):
    made = []

    def make(url, home, expected_errors=(), **opts):
        wm = wt.WriteMount(url, home, tmp_path / f"w{len(made)}",
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
        wm = wmount(o.url, o.home, expected_errors=(
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

@pytest.fixture
def dav():
    from test_home_write import _start_origin, _stop_origin
    o = _start_origin("webdav")
    yield o
    _stop_origin(o)


def test_mkdir_onto_an_origin_file_loses_nothing(dav, wmount):
    """The mount made folder d (its listing did not show d yet); before
    the MKCOL went out someone made a FILE d at the origin.  MKCOL's 405
    ("exists") must not count as our folder being there: their file stays
    as it is, our d/f stays pending and readable in the mount, and the
    status says why."""
    wm = wmount(dav.url, dav.home, expected_errors=(
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
