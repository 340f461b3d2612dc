"""The Debian package, used the way an admin would (issue 10).

Builds build/dmsfs_VERSION_ARCH.deb (`make deb`, unless the one there is
newer than every source), installs it with apt-get (dpkg -i if apt cannot),
mounts a real nginx origin from /etc/fstab lines with `mount MOUNTPOINT` (the
URL form and the config form), runs the systemd unit's command lines the way
systemd would (systemctl when systemd is PID 1), then purges the package and
checks that nothing of it is left.  The machine is put back (fstab lines,
mounts, package) even when a check fails.

Needs root and dpkg-buildpackage (`make test` installs it through
packaging/install-deps.sh; `make test-package` runs only this file).
"""
import errno
import glob
import os
import re
import shlex
import shutil
import stat
import subprocess
import time

import pytest

import mount as mountlib
from mount import find_daemon_pids, is_mounted, mount_options, pid_alive

ROOT = mountlib.ROOT
MARK = "# dmsfs test_package.py"
UNIT = "/lib/systemd/system/dmsfs@.service"
SOURCES = ("fs", "cache", "transfer", "acl", "common", "dmsctl", "packaging",
           "Makefile")
# What the package installs, and what must be gone after a purge.
FILES = ("/usr/bin/dmsfs", "/usr/bin/dmsctl", "/sbin/mount.fuse.dmsfs",
         UNIT, "/usr/share/man/man8/dmsfs.8.gz",
         "/usr/share/man/man8/dmsctl.8.gz",
         "/usr/share/man/man5/dmsfs.conf.5.gz",
         "/usr/share/man/man5/dmsfs-authdb.5.gz",
         "/etc/dmsfs/dmsfs.conf", "/etc/dmsfs/authdb")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: root"),
    pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                       reason="dpkg-buildpackage missing (apt-get install "
                              "dpkg-dev debhelper, or make deb)"),
]


def run(argv, timeout=120, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, \
            f"{argv} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


def installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", "dmsfs"], check=False)
    return p.returncode == 0 and "installed" in p.stdout.split()


def newest_source():
    newest = 0.0
    for top in SOURCES:
        path = os.path.join(ROOT, top)
        if os.path.isfile(path):
            newest = max(newest, os.path.getmtime(path))
            continue
        for d, _, names in os.walk(path):
            for n in names:
                newest = max(newest, os.path.getmtime(os.path.join(d, n)))
    return newest


def version():
    with open(os.path.join(ROOT, "packaging/debian/changelog")) as f:
        return re.match(r"dmsfs \(([^)]+)\)", f.readline()).group(1)


@pytest.fixture(scope="module")
def deb():
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    path = os.path.join(ROOT, "build", f"dmsfs_{version()}_{arch}.deb")
    if not os.path.exists(path) or os.path.getmtime(path) < newest_source():
        # A plain build, whatever flags the make running the tests has.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        run(["make", "-C", ROOT, "deb"], timeout=1800, env=env)
    assert os.path.exists(path)
    return path


def daemons():
    """PIDs of every process running an installed dmsfs."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe").startswith("/usr/bin/dmsfs"):
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def wait_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if pid_alive(p)]


def remove_marked_fstab_lines():
    with open("/etc/fstab") as f:
        lines = f.readlines()
    kept = [ln for ln in lines if MARK not in ln]
    if kept != lines:
        with open("/etc/fstab.dmsfs-test", "w") as f:
            f.writelines(kept)
        os.replace("/etc/fstab.dmsfs-test", "/etc/fstab")


@pytest.fixture
def machine():
    """Refuses to touch a machine where dmsfs is installed already; puts the
    machine back afterwards, whatever happened."""
    if installed():
        pytest.skip("the dmsfs package is installed here; this test would "
                    "purge it")
    for path in ("/etc/dmsfs", "/var/cache/dmsfs"):
        if os.path.exists(path):
            pytest.skip(f"{path} exists and is not the package's: the purge "
                        "would remove it")
    state = {"mounts": [], "files": []}
    try:
        yield state
    finally:
        for mnt in state["mounts"]:
            if is_mounted(mnt):
                mountlib.run_fusermount(mnt, lazy=True)
        for pid in daemons():
            os.kill(pid, 9)
        remove_marked_fstab_lines()
        for path in state["files"]:
            if os.path.exists(path):
                os.unlink(path)
        if installed():
            run(["dpkg", "--purge", "dmsfs"], check=False)


def install(deb):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = run(["apt-get", "install", "-y", "--no-download", deb], timeout=600,
            check=False, env=env)
    if p.returncode != 0:
        # apt wanted the network (or refused): dpkg needs nothing but the
        # dependencies, which the test machine has.
        run(["dpkg", "-i", deb], timeout=600, env=env)
    assert installed()


def fstab_mount(mnt, line, tree, rel, under=""):
    """Mounts mnt from an fstab line; reads rel (of the origin) at
    mnt/under/rel."""
    with open("/etc/fstab", "a") as f:
        f.write(f"{line} {MARK}\n")
    run(["mount", str(mnt)], timeout=90)
    assert is_mounted(mnt)
    with open(os.path.join(mnt, under, rel), "rb") as f:
        assert f.read() == tree.data(rel)
    return mount_options(mnt)


def check_read_only(mnt):
    """mount(8) passes "rw" unless "ro" is given; it must not make the
    export writable (dmsfs's -o rw)."""
    with pytest.raises(OSError) as e:
        with open(os.path.join(mnt, "new-file"), "w"):
            pass
    assert e.value.errno == errno.EROFS


def umount(mnt):
    pids = find_daemon_pids(mnt)
    assert pids, f"no dmsfs daemon serves {mnt}"
    run(["umount", str(mnt)], timeout=60)
    assert not is_mounted(mnt)
    assert wait_gone(pids) == [], f"dmsfs of {mnt} did not exit"


def write_config(path, url, cache_dir):
    with open(path, "w") as f:
        f.write(f"[cache]\ndir = {cache_dir}\nsize = 1G\n\n"
                f"[export data]\npath = /data\nsource = {url}/\n")
    os.chmod(path, 0o644)


def unit_commands(instance, path):
    """The unit's command lines, expanded as systemd does: %i, %f, and
    Environment=/EnvironmentFile= for ${VAR} (one word) and $VAR (split)."""
    env, cmds, section = {}, {}, None
    with open(UNIT) as f:
        text = f.read()
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]":
            continue
        key, _, value = line.partition("=")
        value = value.replace("%i", instance).replace("%f", path)
        if key == "Environment":
            k, _, v = value.partition("=")
            env[k] = v
        elif key == "EnvironmentFile":
            name = value.lstrip("-")
            if os.path.exists(name):
                with open(name) as ef:
                    for ln in ef:
                        k, sep, v = ln.strip().partition("=")
                        if sep and not k.startswith("#"):
                            env[k] = v.strip('"')
            else:
                assert value.startswith("-"), f"{name} missing"
        elif key.startswith("Exec"):
            cmds.setdefault(key, []).append(value)

    def expand(cmd):
        ignore = cmd.startswith("-")
        argv = []
        for word in shlex.split(cmd.lstrip("-")):
            if re.fullmatch(r"\$[A-Za-z_]+", word):
                argv += env.get(word[1:], "").split()
            else:
                argv.append(re.sub(r"\$\{([A-Za-z_]+)\}",
                                   lambda m: env.get(m.group(1), ""), word))
        return ignore, argv
    return {k: [expand(c) for c in v] for k, v in cmds.items()}, text


def run_unit(instance, path):
    """Starts and stops dmsfs@INSTANCE as systemd would."""
    if run(["ps", "-p", "1", "-o", "comm="]).stdout.strip() == "systemd":
        run(["systemctl", "daemon-reload"])
        run(["systemctl", "start", f"dmsfs@{instance}.service"], timeout=120)
        yield
        run(["systemctl", "stop", f"dmsfs@{instance}.service"], timeout=120)
        return
    cmds, text = unit_commands(instance, path)
    assert "Type=forking" in text and "After=network-online.target" in text
    for key in ("ExecStartPre", "ExecStart"):
        for ignore, argv in cmds.get(key, []):
            run(argv, timeout=90, check=not ignore)
    yield
    for key in ("ExecStop", "ExecStopPost"):
        for ignore, argv in cmds.get(key, []):
            run(argv, timeout=90, check=not ignore)


def test_package_install_fstab_unit_purge(deb, machine, tree, nginx,
                                          tmp_path):
    install(deb)
    for path in FILES:
        assert os.path.exists(path), f"{path} not installed"
    st = os.stat("/var/cache/dmsfs")
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "dmsfs"]).stdout
    assert "/etc/dmsfs/dmsfs.conf" in conffiles
    assert "/etc/dmsfs/authdb" in conffiles
    out = run(["/usr/bin/dmsfs", "--version"]).stdout
    assert version().rsplit("-", 1)[0] in out
    depends = run(["dpkg-query", "-W", "-f=${Depends}", "dmsfs"]).stdout
    assert "fuse3" in depends and "libfuse3" in depends
    rel = "big.bin"

    # fstab, URL form, on the package's own cache dir, with the options an
    # admin writes and mount(8) or systemd consume.
    mnt = tmp_path / "data"
    mnt.mkdir()
    machine["mounts"].append(str(mnt))
    opts = fstab_mount(mnt, f"{nginx.url}/ {mnt} fuse.dmsfs defaults,_netdev,"
                       "nofail,noauto,x-systemd.mount-timeout=60,"
                       "cache_size=1G 0 0", tree, rel)
    assert "ro" in opts
    check_read_only(mnt)
    assert os.listdir("/var/cache/dmsfs"), "the default cache_dir is unused"
    umount(mnt)
    remove_marked_fstab_lines()

    # fstab, config form: the first field is a word, the exports come from
    # the file.
    conf = tmp_path / "dmsfs-test.conf"
    write_config(conf, nginx.url, tmp_path / "cache-conf")
    fstab_mount(mnt, f"dmsfs {mnt} fuse.dmsfs config={conf},_netdev,nofail "
                "0 0", tree, rel, under="data")
    check_read_only(os.path.join(mnt, "data"))
    umount(mnt)
    remove_marked_fstab_lines()

    # The systemd unit, instance = the escaped mount point, config from an
    # environment file (the packaged dmsfs.conf names example.org).
    unit_mnt = tmp_path / "unit-mnt"      # created by ExecStartPre
    machine["mounts"].append(str(unit_mnt))
    instance = run(["systemd-escape", "-p", str(unit_mnt)]).stdout.strip()
    link = tmp_path / f"dmsfs@{instance}.service"
    os.symlink(UNIT, link)
    run(["systemd-analyze", "verify", str(link)])
    unit_conf = tmp_path / "unit.conf"
    write_config(unit_conf, nginx.url, tmp_path / "cache-unit")
    envfile = f"/etc/dmsfs/{instance}.env"
    machine["files"].append(envfile)
    with open(envfile, "w") as f:
        f.write(f"DMSFS_CONFIG={unit_conf}\nDMSFS_OPTS=-o meta_ttl=30\n")
    unit = run_unit(instance, str(unit_mnt))
    next(unit)
    assert is_mounted(unit_mnt)
    pids = find_daemon_pids(unit_mnt)
    assert pids
    with open(os.path.join(unit_mnt, "data", rel), "rb") as f:
        assert f.read() == tree.data(rel)
    next(unit, None)
    assert not is_mounted(unit_mnt)
    assert wait_gone(pids) == []
    os.unlink(envfile)

    # Purge: nothing of dmsfs is left, running or on disk.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "purge", "-y", "dmsfs"], timeout=300, env=env)
    assert not installed()
    assert daemons() == []
    for path in FILES + ("/etc/dmsfs", "/var/cache/dmsfs"):
        assert not os.path.exists(path), f"{path} left after purge"
    assert glob.glob("/usr/share/man/man*/dmsfs*") == []
