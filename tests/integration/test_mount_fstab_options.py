"""Mounting from /etc/fstab (issue 10), without installing the package.

mount(8) runs /sbin/mount.fuse.dmsfs for the type fuse.dmsfs; that helper
(packaging/mount.fuse.dmsfs) hands over to mount.fuse3, which runs `dmsfs`
from PATH: here build/dmsfs.  mount(8) always passes "rw" or "ro", and fstab
lines carry options meant for mount(8) and systemd (_netdev, nofail, x-*...):
dmsfs must take both without failing and without becoming writable.
test_package.py does the same through the installed package and mount(8).
"""
import errno
import os
import subprocess

import pytest

import origintree
from mount import (DMSFS, ROOT, find_daemon_pids, is_mounted, mount_options,
                   pid_alive, run_fusermount)

HELPER = os.path.join(ROOT, "packaging", "mount.fuse.dmsfs")
# What fstab lines carry for mount(8), systemd and the fstab reader.
FSTAB_ONLY = {"defaults": True, "_netdev": True, "nofail": True,
              "auto": True, "noauto": True, "user": True, "nouser": True,
              "users": True, "owner": True, "group": True,
              "comment": "dmsfs", "x-systemd.automount": True,
              "x-systemd.requires": "network-online.target",
              "x-systemd.mount-timeout": "30", "x-mount.mkdir": True}


def assert_read_only(path):
    with pytest.raises(OSError) as e:
        with open(os.path.join(path, "new-file"), "w"):
            pass
    assert e.value.errno == errno.EROFS


def test_fstab_only_options_are_ignored(tree, nginx, mounter):
    """Given to dmsfs directly (a unit or a script copying an fstab line),
    they neither fail the mount nor reach libfuse."""
    for foreground in (True, False):
        m = mounter(nginx.url, foreground=foreground, **FSTAB_ONLY)
        rel = "big.bin"
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     tree.data(rel), rel)
        assert_read_only(m.mountpoint)
        m.umount()


@pytest.fixture
def helper_mounts():
    """Mount points the test mounts through the helper; unmounted (and their
    daemons killed) at teardown whatever happened."""
    mounts = []
    yield mounts
    for mnt in mounts:
        pids = find_daemon_pids(mnt)
        if is_mounted(mnt):
            run_fusermount(mnt, lazy=True)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, 9)


def run_helper(args):
    env = dict(os.environ,
               PATH=os.path.dirname(DMSFS) + ":" + os.environ["PATH"])
    return subprocess.run(["sh", HELPER] + [str(a) for a in args], env=env,
                          capture_output=True, text=True, timeout=90)


def unmount(mnt):
    pids = find_daemon_pids(mnt)
    assert pids
    assert run_fusermount(mnt).returncode == 0
    for pid in pids:
        for _ in range(300):
            if not pid_alive(pid):
                break
            subprocess.run(["sleep", "0.1"])
        assert not pid_alive(pid), f"dmsfs {pid} did not exit"


@pytest.mark.parametrize("mount_flags", [
    ["-o", "rw,dev,suid"],
    ["-s", "-n", "-v", "-o", "rw,_netdev,nofail"],
    ["-orw"],
])
def test_helper_url_form_is_read_only(tree, nginx, tmp_path, helper_mounts,
                                      mount_flags):
    """mount(8) passes "rw" whenever "ro" is not given: the helper must not
    let it ask dmsfs for a writable export."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    helper_mounts.append(str(mnt))
    flags = list(mount_flags)
    flags[-1] += f",cache_dir={tmp_path / 'cache'}"
    p = run_helper([nginx.url + "/", mnt] + flags)
    assert p.returncode == 0, p.stderr
    assert is_mounted(mnt)
    assert "ro" in mount_options(mnt)
    rel = "RB1810001/raw/run_000123.nxs"
    origintree.assert_same_bytes(origintree.read_all(os.path.join(mnt, rel)),
                                 tree.data(rel), rel)
    assert_read_only(mnt)
    unmount(mnt)


def test_helper_config_form(tree, nginx, tmp_path, helper_mounts):
    """With config=FILE, fstab's first field is a placeholder word: dmsfs
    takes the mount point alone and serves the file's exports."""
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(f"[cache]\ndir = {tmp_path / 'cache'}\n\n"
                    f"[export data]\npath = /data\nsource = {nginx.url}/\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    helper_mounts.append(str(mnt))
    p = run_helper(["dmsfs", mnt, "-o", f"rw,config={conf},_netdev"])
    assert p.returncode == 0, p.stderr
    assert os.listdir(mnt) == ["data"]
    rel = "big.bin"
    origintree.assert_same_bytes(
        origintree.read_all(os.path.join(mnt, "data", rel)), tree.data(rel),
        rel)
    assert_read_only(os.path.join(mnt, "data"))
    unmount(mnt)


def test_helper_refuses_bad_option_with_reason(nginx, tmp_path,
                                               helper_mounts):
    """An option dmsfs does not know still fails the mount, with dmsfs's
    reason on stderr (filtering is for mount(8)'s options only)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    helper_mounts.append(str(mnt))
    p = run_helper([nginx.url + "/", mnt, "-o",
                    f"rw,no_such_option,cache_dir={tmp_path / 'cache'}"])
    assert p.returncode != 0
    assert "no_such_option" in p.stderr
    assert not is_mounted(mnt)
