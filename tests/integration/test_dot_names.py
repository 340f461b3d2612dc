"""Dot names on an nginx WebDAV origin: nginx's PROPFIND listings leave out
every name starting with '.', though it serves them.  dmsfs asks for such a
name by itself when a lookup misses it in the listing, so Zarr's .zattrs
and a home's .bashrc open by name (they still do not show in listings).

Real nginx WebDAV, real FUSE mounts.  Needs root and /dev/fuse."""
import errno
import os
import subprocess

import pytest

from origin import Nginx
from writetree import DMSCTL

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
]


@pytest.fixture
def origin(tmp_path):
    root = tmp_path / "origin"
    (root / "run.zarr" / "0").mkdir(parents=True)
    (root / "run.zarr" / ".zattrs").write_bytes(b'{"units": "K"}\n')
    (root / "run.zarr" / ".zarray").write_bytes(b'{"chunks": [4]}\n' * 5000)
    (root / "run.zarr" / "0" / "0").write_bytes(b"chunk")
    (root / ".hidden" / "in").mkdir(parents=True)
    (root / ".hidden" / "in" / "f").write_bytes(b"deep\n")
    ng = Nginx(str(root)).start()
    yield root, ng
    ng.stop()


def test_dot_names_open_by_name_on_a_read_only_export(origin, mounter):
    root, ng = origin
    m = mounter(ng.url + "/")
    z = m.path("run.zarr")
    assert open(os.path.join(z, ".zattrs"), "rb").read() == \
        b'{"units": "K"}\n'
    assert open(os.path.join(z, ".zarray"), "rb").read() == \
        (root / "run.zarr" / ".zarray").read_bytes()
    assert os.stat(os.path.join(z, ".zarray")).st_size == 16 * 5000
    assert open(m.path(".hidden", "in", "f"), "rb").read() == b"deep\n"
    assert sorted(os.listdir(m.path(".hidden", "in"))) == ["f"]
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(z, ".missing"))
    # nginx lists no dot names: neither does the mount
    assert ".zattrs" not in os.listdir(z)


def test_dot_file_of_a_home_survives_remount(origin, mounter):
    root, ng = origin
    m = mounter(ng.url + "/", rw=True, writeback_delay="1", meta_ttl="1")
    with open(m.path(".bashrc"), "w") as f:
        f.write("export PS1='$ '\n")
    os.mkdir(m.path(".config"))
    with open(m.path(".config", "app.ini"), "w") as f:
        f.write("[a]\nb=1\n")
    r = subprocess.run([DMSCTL, "sync", "-t", "120", str(m.mountpoint)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert (root / ".bashrc").read_text() == "export PS1='$ '\n"
    m.umount()
    m2 = mounter(ng.url + "/", rw=True, writeback_delay="1", meta_ttl="1",
                 cache_dir=m.cache_dir)
    assert open(m2.path(".bashrc")).read() == "export PS1='$ '\n"
    assert open(m2.path(".config", "app.ini")).read() == "[a]\nb=1\n"
    # and it can be changed again
    with open(m2.path(".bashrc"), "a") as f:
        f.write("alias l=ls\n")
    r = subprocess.run([DMSCTL, "sync", "-t", "120", str(m2.mountpoint)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert (root / ".bashrc").read_text() == \
        "export PS1='$ '\nalias l=ls\n"
    os.unlink(m2.path(".bashrc"))
    with pytest.raises(OSError) as e:
        os.stat(m2.path(".bashrc"))
    assert e.value.errno == errno.ENOENT
