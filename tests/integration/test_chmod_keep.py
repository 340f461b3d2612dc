"""chmod on writable exports (issue 8): mode bits the origin cannot store
(WebDAV has none; GridFTP's are the server user's) are kept by dmsfs in
cache_dir, past the upload, a remount and kill -9, following renames of
files and folders, and forgotten with unlink/rmdir.

Real nginx WebDAV and globus-gridftp-server origins, real FUSE mounts, real
users (useradd) for the home export.  Needs root, FUSE, nginx,
globus-gridftp-server, useradd/setpriv, build/dmsfs and build/dmsctl.
"""
import os
import stat
import subprocess

import pytest

import writetree as wt
from test_acl_mount import as_user, err
from test_home_write import (UPLOAD_TIMEOUT, home_mount, origin,  # noqa: F401
                             users, dav, wmount)

pytestmark = wt.skip_marks() + [
    pytest.mark.skipif(wt.LOCAL, reason="dmsfs-only behaviour"),
]

SCRIPT = b"#!/bin/sh\necho ran-$0\n"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def sync(path):
    r = wt.dmsctl("sync", path, timeout=UPLOAD_TIMEOUT)
    assert r.returncode == 0, r.stderr


def put(path, data=SCRIPT):
    with open(path, "wb") as f:
        f.write(data)


def test_chmod_x_survives_upload_and_remount(origin, wmount):
    wm = wmount(origin)
    put(wm.path("script.sh"))
    os.chmod(wm.path("script.sh"), 0o755)
    sync(wm.path())
    assert os.path.exists(os.path.join(origin.home, "script.sh"))
    assert mode(wm.path("script.sh")) == 0o755
    wm.remount()
    assert mode(wm.path("script.sh")) == 0o755
    r = subprocess.run(["./script.sh"], cwd=wm.path(), capture_output=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == b"ran-./script.sh\n", r
    # And back: chmod -x is kept the same way.
    os.chmod(wm.path("script.sh"), 0o600)
    sync(wm.path())
    wm.remount()
    assert mode(wm.path("script.sh")) == 0o600


def test_created_mode_kept_and_default_not_stored(dav, wmount):
    wm = wmount(dav)
    fd = os.open(wm.path("private"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x")
    os.close(fd)
    put(wm.path("plain"))
    os.mkdir(wm.path("closed"), 0o700)
    sync(wm.path())
    wm.remount()
    assert mode(wm.path("private")) == 0o600
    assert mode(wm.path("plain")) == 0o644
    assert mode(wm.path("closed")) == 0o700


def test_mode_follows_renames_of_files_and_folders(origin, wmount):
    wm = wmount(origin)
    os.makedirs(wm.path("d/sub"))
    put(wm.path("d/sub/a.sh"))
    put(wm.path("d/b.sh"))
    os.chmod(wm.path("d/sub/a.sh"), 0o750)
    os.chmod(wm.path("d/b.sh"), 0o700)
    os.chmod(wm.path("d/sub"), 0o711)
    sync(wm.path())
    os.rename(wm.path("d/b.sh"), wm.path("d/c.sh"))
    os.rename(wm.path("d"), wm.path("e"))
    sync(wm.path())
    for _ in range(2):
        assert mode(wm.path("e/c.sh")) == 0o700
        assert mode(wm.path("e/sub/a.sh")) == 0o750
        assert mode(wm.path("e/sub")) == 0o711
        wm.remount()
    # Renamed over an existing file: the moved file's mode, not the old.
    put(wm.path("plain"))
    os.rename(wm.path("e/c.sh"), wm.path("plain"))
    sync(wm.path())
    wm.remount()
    assert mode(wm.path("plain")) == 0o700
    put(wm.path("e/new"))
    os.rename(wm.path("e/new"), wm.path("e/sub/a.sh"))
    assert mode(wm.path("e/sub/a.sh")) == 0o644


def test_unlink_rmdir_forget_the_mode(dav, wmount):
    wm = wmount(dav)
    put(wm.path("s.sh"))
    os.chmod(wm.path("s.sh"), 0o755)
    os.makedirs(wm.path("d/in"))
    put(wm.path("d/in/x"))
    os.chmod(wm.path("d/in/x"), 0o700)
    os.chmod(wm.path("d/in"), 0o700)
    sync(wm.path())
    os.unlink(wm.path("s.sh"))
    os.unlink(wm.path("d/in/x"))
    os.rmdir(wm.path("d/in"))
    sync(wm.path())
    put(wm.path("s.sh"))
    os.mkdir(wm.path("d/in"))
    put(wm.path("d/in/x"))
    for _ in range(2):
        assert mode(wm.path("s.sh")) == 0o644
        assert mode(wm.path("d/in")) == 0o755
        assert mode(wm.path("d/in/x")) == 0o644
        sync(wm.path())
        wm.remount()


def test_kill9_after_chmod_and_sync_keeps_it(origin, wmount):
    wm = wmount(origin)
    put(wm.path("k.sh"))
    sync(wm.path())
    os.chmod(wm.path("k.sh"), 0o755)
    sync(wm.path())
    wm.kill9()
    wm.start()
    assert mode(wm.path("k.sh")) == 0o755
    # chmod without any sync, then kill -9: the table's append is enough.
    os.chmod(wm.path("k.sh"), 0o710)
    wm.kill9()
    wm.start()
    assert mode(wm.path("k.sh")) == 0o710


def test_torn_mode_table_record_is_dropped(dav, wmount):
    wm = wmount(dav)
    put(wm.path("t.sh"))
    os.chmod(wm.path("t.sh"), 0o755)
    sync(wm.path())
    wm.umount()
    table = os.path.join(wm.opts["cache_dir"], "modes")
    with open(table, "ab") as f:
        f.write(b"DMM1\x40\x00\x00\x00garbage")   # a cut-short append
    wm.start()
    assert mode(wm.path("t.sh")) == 0o755
    assert "torn or damaged record" in wm.log()


def test_users_chmod_and_run_their_script(home_mount, users, dav):
    a, b = users
    mine = f"{home_mount.mountpoint}/home/{a.name}"
    script = f"{mine}/run.sh"
    res = as_user(a, [["create", script]])
    assert err(res[0]) == "ok", res
    r = subprocess.run(
        ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups",
         "/bin/sh", "-c", f"printf '#!/bin/sh\\necho ok-$(id -u)\\n' > "
         f"{script} && chmod +x {script}"],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    # dmsctl as the user (root may not look into the home).
    r = subprocess.run(
        ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups",
         wt.DMSCTL, "sync", mine], capture_output=True, text=True,
        timeout=UPLOAD_TIMEOUT, cwd="/")
    assert r.returncode == 0, r.stderr
    home_mount.umount()
    home_mount.start()

    r = subprocess.run(
        ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups",
         "/bin/sh", "-c", f"cd {mine} && ./run.sh"], capture_output=True,
        text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and r.stdout == f"ok-{a.uid}\n", r
    # Someone else may not change its mode.
    res = as_user(b, [["chmod", script]])
    assert err(res[0]) in ("EACCES", "EPERM"), res
    st = subprocess.run(
        ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups",
         "stat", "-c", "%a", script], capture_output=True, text=True,
        timeout=60, cwd="/")
    assert st.stdout.strip() == "755", st
