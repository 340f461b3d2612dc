"""allow_other: other users can read the mount with it and not without it;
they cannot change anything either way."""
import errno
import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

REL = "RB1810001/raw/run_000123.nxs"

_PROBE = r"""
import hashlib, json, os, sys
out = {}
try:
    out["list"] = sorted(os.listdir(sys.argv[1]))
    with open(os.path.join(sys.argv[1], sys.argv[2]), "rb") as f:
        out["sha256"] = hashlib.sha256(f.read()).hexdigest()
except OSError as e:
    out["errno"] = e.errno
try:
    os.close(os.open(os.path.join(sys.argv[1], "new"), os.O_CREAT | os.O_WRONLY))
    out["create"] = 0
except OSError as e:
    out["create"] = e.errno
print(json.dumps(out))
"""


@pytest.fixture
def other_user():
    """A throw-away system user (removed at teardown): (name, uid, gid)."""
    if not shutil.which("useradd"):
        pytest.skip("useradd missing")
    name = "dmsfst" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", name], check=True,
                   capture_output=True, timeout=30)
    try:
        out = subprocess.run(["id", "-u", name], capture_output=True,
                             text=True, check=True).stdout
        uid = int(out)
        gid = int(subprocess.run(["id", "-g", name], capture_output=True,
                                 text=True, check=True).stdout)
        yield name, uid, gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)


@pytest.fixture
def public_dir():
    """A directory other users can traverse (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="dmsfs-ao-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def probe_as(user, mountpoint):
    name, uid, gid = user
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}",
                        "--clear-groups", "/usr/bin/python3", "-c", _PROBE,
                        mountpoint, REL],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"probe as {name} failed: {r.stderr}"
    return json.loads(r.stdout)


@pytest.mark.parametrize("allow_other", [True, False],
                         ids=["allow_other", "private"])
def test_other_user_access(public_dir, other_user, tree, nginx, mounter,
                           allow_other):
    # public_dir and other_user come first so that they are torn down after
    # the mount is gone.
    import hashlib
    mnt = os.path.join(public_dir, "mnt")
    m = mounter(nginx.url, mountpoint=mnt, allow_other=allow_other or None)
    res = probe_as(other_user, m.mountpoint)
    if allow_other:
        assert "errno" not in res, f"other user could not read: {res}"
        assert res["list"] == sorted(os.listdir(tree.root))
        assert res["sha256"] == hashlib.sha256(tree.data(REL)).hexdigest()
    else:
        assert res.get("errno") == errno.EACCES, \
            f"other user without allow_other: want EACCES, got {res}"
    assert res["create"] in (errno.EROFS, errno.EACCES), \
        f"other user create: {res['create']}"
