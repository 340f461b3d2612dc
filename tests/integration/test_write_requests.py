"""What the uploader asks of a WebDAV origin (issue 8, write speed): the
requests per upload, counted in nginx's access log, and that the mount and
the origin agree afterwards.  Counts, not timings: a fast machine and a
slow one send the same requests.

Needs root, FUSE, nginx and build/dmsfs.
"""
import os
import shutil

import pytest

import accesslog
import writetree as wt
from gridftp_origin import make_root
from origin import Nginx

pytestmark = [*wt.skip_marks(),
              pytest.mark.skipif(wt.LOCAL, reason="dmsfs-only behaviour")]


@pytest.fixture
def dav():
    root = make_root("dmsfs-wreq-")
    os.makedirs(os.path.join(root, "home"))
    ng = Nginx(root, full_put_path=False).start()
    yield ng, root
    ng.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def wmount(dav, tmp_path):
    """(nginx, origin home folder, started WriteMount of it); uploads wait
    for dmsctl sync (writeback_delay is an hour)."""
    ng, root = dav
    home = os.path.join(root, "home")
    wm = wt.WriteMount(ng.url + "/home/", home, tmp_path / "w",
                       writeback_delay=3600).start()
    yield ng, home, wm
    wm.cleanup()


def folder_listings(ng, folder):
    return sum(1 for m, p, *_ in accesslog.entries(ng)
               if m == "PROPFIND" and p.rstrip("/") == folder.rstrip("/"))


@pytest.mark.parametrize("nfiles", [40, 120])
def test_uploads_into_one_folder_list_it_once_per_batch(wmount, nfiles):
    """n files uploaded into one folder: the folder is listed a bounded
    number of times, not once per upload (that made n uploads read O(n^2)
    listed entries); every file arrives byte-exact and the mount, relisted,
    shows exactly the origin's files."""
    ng, home, wm = wmount
    os.mkdir(wm.path("d"))
    want = {}
    for i in range(nfiles):
        data = (b"%05d-" % i) * (1 + i % 37)
        with open(wm.path("d", "f%03d" % i), "wb") as f:
            f.write(data)
        want["f%03d" % i] = data
    before = folder_listings(ng, "/home/d")
    r = wt.dmsctl("sync", "-t", 120, wm.path("d"))
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()
    lists = folder_listings(ng, "/home/d") - before
    puts = sum(1 for m, p, *_ in accesslog.entries(ng)
               if m == "PUT" and p.startswith("/home/d/"))
    assert puts == nfiles, accesslog.entries(ng)[-20:]
    # One listing per batch of up to 256 uploads, plus slack for a
    # pass that stopped early; not one per upload.
    assert lists <= 4, "folder listed %d times for %d uploads" % (lists, nfiles)
    # A new file: one stat before the bytes go (a conflict costs no
    # upload) and one for the result; the move itself refuses an
    # existing name, so no stat in between.
    stats = sum(1 for m, p, *_ in accesslog.entries(ng)
                if m == "PROPFIND" and p == "/home/d/f000")
    assert stats <= 2, [e for e in accesslog.entries(ng) if "f000" in e[1]]
    for name, data in want.items():
        with open(os.path.join(home, "d", name), "rb") as f:
            assert f.read() == data, name
        with open(wm.path("d", name), "rb") as f:
            assert f.read() == data, name
    assert sorted(os.listdir(wm.path("d"))) == sorted(want)
    assert sorted(os.listdir(os.path.join(home, "d"))) == sorted(want)


def test_upload_then_rename_of_its_folder(wmount):
    """Uploads waiting for their folder's listing, then the folder renamed:
    the rename sees the settled uploads, and both sides agree."""
    ng, home, wm = wmount
    os.mkdir(wm.path("a"))
    for i in range(10):
        with open(wm.path("a", "x%d" % i), "wb") as f:
            f.write(b"%d" % i * 100)
    os.rename(wm.path("a"), wm.path("b"))
    with open(wm.path("b", "late"), "wb") as f:
        f.write(b"late")
    r = wt.dmsctl("sync", "-t", 120, wm.path(""))
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()
    names = sorted(["x%d" % i for i in range(10)] + ["late"])
    assert sorted(os.listdir(os.path.join(home, "b"))) == names
    assert not os.path.exists(os.path.join(home, "a"))
    assert sorted(os.listdir(wm.path("b"))) == names
    assert not os.path.exists(wm.path("a"))
    for i in range(10):
        with open(wm.path("b", "x%d" % i), "rb") as f:
            assert f.read() == b"%d" % i * 100


def puts_under(ng, folder):
    return [p for m, p, *_ in accesslog.entries(ng)
            if m == "PUT" and p.startswith(folder.rstrip("/") + "/")]


def test_bytes_deleted_before_upload_are_not_uploaded(wmount):
    """A file whose bytes are deleted or replaced before its upload is not
    uploaded: written then unlinked, written then renamed (also along with
    its folder) then unlinked, an origin file replaced then deleted, a file
    renamed over an origin file then deleted.  The origin ends as the mount
    says (what the deletes name is gone there too), the sync does not stick
    on a rename whose file never went, and a file that stays is uploaded
    (so the count is of real PUTs)."""
    ng, home, wm = wmount
    for d in ("plain", "moved", "folder", "orig", "over", "kept"):
        os.mkdir(os.path.join(home, d))
    for name in ("old.txt", "old2.txt"):
        with open(os.path.join(home, "orig", name), "wb") as f:
            f.write(b"origin's " + name.encode())
    with open(os.path.join(home, "over", "target"), "wb") as f:
        f.write(b"origin's target")

    def write(path, data):
        with open(path, "wb") as f:
            f.write(data)

    big = wt.pattern(3 << 20, seed=5)
    # Written, closed (its upload journalled), unlinked.
    write(wm.path("plain", "a"), big)
    os.unlink(wm.path("plain", "a"))
    # WRITE a; RENAME a b; RENAME b c; UNLINK c.
    write(wm.path("moved", "a"), big)
    os.rename(wm.path("moved", "a"), wm.path("moved", "b"))
    os.rename(wm.path("moved", "b"), wm.path("moved", "c"))
    os.unlink(wm.path("moved", "c"))
    # In a new folder, the folder renamed, then everything deleted.
    os.mkdir(wm.path("folder", "d"))
    write(wm.path("folder", "d", "f"), big)
    os.rename(wm.path("folder", "d"), wm.path("folder", "e"))
    shutil.rmtree(wm.path("folder", "e"))
    # An origin file replaced (O_TRUNC), written twice, then deleted; one
    # replaced, renamed, then deleted under its new name.
    write(wm.path("orig", "old.txt"), big)
    write(wm.path("orig", "old.txt"), b"second")
    os.unlink(wm.path("orig", "old.txt"))
    write(wm.path("orig", "old2.txt"), big)
    os.rename(wm.path("orig", "old2.txt"), wm.path("orig", "new2.txt"))
    os.unlink(wm.path("orig", "new2.txt"))
    # A new file renamed over an origin file, then deleted.
    write(wm.path("over", "n"), big)
    os.rename(wm.path("over", "n"), wm.path("over", "target"))
    os.unlink(wm.path("over", "target"))
    # Kept: written three times, the last version stays.
    for v in (b"v1", b"v2" * 1000, b"v3-final"):
        write(wm.path("kept", "k"), v)

    r = wt.dmsctl("sync", "-t", 120, wm.path(""))
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()
    for d in ("plain", "moved", "folder", "orig", "over"):
        assert puts_under(ng, "/home/" + d) == [], d
    for d in ("plain", "moved", "folder", "orig", "over"):
        assert os.listdir(os.path.join(home, d)) == [], d
        assert os.listdir(wm.path(d)) == [], d
    # The first upload keeps its conflict check; the middle one is not
    # needed.
    kept = puts_under(ng, "/home/kept")
    assert 1 <= len(kept) <= 2, kept
    with open(os.path.join(home, "kept", "k"), "rb") as f:
        assert f.read() == b"v3-final"
    with open(wm.path("kept", "k"), "rb") as f:
        assert f.read() == b"v3-final"
    r = wt.dmsctl("status", wm.path(""))
    assert r.returncode == 0, r.stdout + r.stderr


def test_skipped_uploads_after_kill9_and_replay(wmount):
    """Deleted bytes are not uploaded after kill -9 and a remount either
    (the journal replays the operations that make them dead), and nothing
    sticks."""
    ng, home, wm = wmount
    os.mkdir(os.path.join(home, "r"))
    with open(wm.path("r", "a"), "wb") as f:
        f.write(b"x" * 100000)
    os.rename(wm.path("r", "a"), wm.path("r", "b"))
    os.unlink(wm.path("r", "b"))
    with open(wm.path("r", "stay"), "wb") as f:
        f.write(b"stay")
        os.fsync(f.fileno())
    wm.kill9()
    wm.start()
    r = wt.dmsctl("sync", "-t", 120, wm.path(""))
    assert r.returncode == 0, r.stdout + r.stderr + wm.log()
    assert puts_under(ng, "/home/r") and all(
        "/stay" in p or "stay" in os.path.basename(p)
        for p in puts_under(ng, "/home/r")), puts_under(ng, "/home/r")
    assert sorted(os.listdir(os.path.join(home, "r"))) == ["stay"]
    assert sorted(os.listdir(wm.path("r"))) == ["stay"]
