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
