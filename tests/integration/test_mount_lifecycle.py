"""The mount's life cycle at its edges: why a start failed, said the same
way with -f and without (one stderr line, the failing step's own reason),
and what happens around an existing mount (a second mount on the same
mountpoint or the same cache is refused; a mount whose daemon was killed is
named stale, with how to clear it)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

import origintree
from mount import (DMSFS, find_daemon_pids, is_mounted, pid_alive,
                   run_fusermount)
from origin import closed_port

MODES = pytest.mark.parametrize("foreground", [False, True],
                                ids=["daemon", "foreground"])
REL = "RB1810001/raw/run_000123.nxs"


def attempt(args, mnt, foreground, timeout=60, user=None, prefix=()):
    """Runs a dmsfs start that must fail (as user, after the command
    prefix).  Returns (returncode, stderr lines).  A start that mounts
    after all (the defect) is undone: the stacked mount unmounted, a
    foreground process killed by its PID."""
    argv = [DMSFS] + (["-f"] if foreground else []) + list(args)
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}",
                "--init-groups"] + argv
    argv = list(prefix) + argv
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err, start_new_session=True)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            # -f that mounted: it serves until unmounted.
            if is_mounted(mnt):
                run_fusermount(mnt)
            try:
                rc = p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                rc = p.wait(10)
            rc = rc if rc else -1
        else:
            if rc == 0 and not foreground and is_mounted(mnt):
                run_fusermount(mnt)  # a daemon stacked on top (or alone)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return rc, [l for l in text.splitlines() if l.strip()]


def assert_refused(rc, lines, phrase, foreground, what):
    """Non-zero exit; phrase (a regex) in the one line of a detached start,
    in one of the lines of -f."""
    assert rc != 0, f"{what}: exit 0 (want a refusal)\nstderr: {lines}"
    if not foreground:
        assert len(lines) == 1, (f"{what}: want exactly one stderr line, got "
                                 f"{len(lines)}:\n" + "\n".join(lines))
    assert any(re.search(phrase, l) for l in lines), (
        f"{what}: stderr does not give the reason /{phrase}/:\n" +
        "\n".join(lines))


# ------------------------------------------------------ start-up failures
# name -> (function(ctx) -> args, phrase the reason must contain).
# ctx: url (a live origin), mnt, tmp.
def _o(ctx, extra=""):
    opts = f"cache_dir={ctx['tmp']}/cache" + (f",{extra}" if extra else "")
    return ["-o", opts]


FAILS = {
    "malformed URL": (
        lambda c: _o(c) + ["htp://127.0.0.1/x", c["mnt"]],
        r'malformed source URL "htp://127\.0\.0\.1/x"'),
    "rules syntax error": (
        lambda c: _o(c, f"acl={c['rules']}") + [c["url"], c["mnt"]],
        r"rules:2: .*bogus"),
    "cache_dir is a regular file": (
        lambda c: ["-o", f"cache_dir={c['cachefile']}", c["url"], c["mnt"]],
        r"cachefile.*Not a directory"),
    "mem_cache below its minimum": (
        lambda c: _o(c, "mem_cache=2M") + [c["url"], c["mnt"]],
        r"mem_cache=2M .*minimum"),
    "mem_cache below readahead + 8M": (
        lambda c: _o(c, "readahead=64M,mem_cache=40M") + [c["url"], c["mnt"]],
        r"mem_cache=40M .*minimum"),
    "readahead below one block": (
        lambda c: _o(c, "readahead=16K") + [c["url"], c["mnt"]],
        r"readahead=16K"),
    "fetchers=0 with read-ahead": (
        lambda c: _o(c, "fetchers=0") + [c["url"], c["mnt"]],
        r"fetchers=0"),
    "cache_size below 8 blocks": (
        lambda c: _o(c, "block_size=1M,cache_size=4M") + [c["url"], c["mnt"]],
        r"cache_size=4M"),
}


@pytest.fixture
def ctx(tmp_path, nginx):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rules = tmp_path / "rules"
    rules.write_text("u root / rl\nbogus line here\n")
    os.chmod(rules, 0o644)
    cachefile = tmp_path / "cachefile"
    cachefile.write_text("not a directory\n")
    yield {"url": nginx.url, "mnt": str(mnt), "tmp": str(tmp_path),
           "rules": str(rules), "cachefile": str(cachefile)}
    if is_mounted(str(mnt)):
        run_fusermount(str(mnt), lazy=True)


@pytest.mark.parametrize("case", sorted(FAILS))
def test_start_failure_says_why(ctx, case):
    """Detached and -f give the same reason; the detached line is one of
    the lines -f prints, not a summary that drops the cause."""
    make_args, phrase = FAILS[case]
    seen = {}
    for fg in (True, False):
        rc, lines = attempt(make_args(ctx), ctx["mnt"], fg)
        assert not is_mounted(ctx["mnt"]), f"{case}: a mount was left"
        assert not find_daemon_pids(ctx["mnt"]), f"{case}: daemon left"
        assert_refused(rc, lines, phrase, fg, f"{case} ({'-f' if fg else 'daemon'})")
        seen[fg] = lines
    assert seen[False][0] in seen[True], (
        f"{case}: the detached reason is not what -f says:\n"
        f"detached: {seen[False][0]}\n-f: " + "\n    ".join(seen[True]))
    with open(ctx["cachefile"]) as f:
        assert f.read() == "not a directory\n"


# Runs "$@" in the private mount namespace of `unshare -m` with a /dev/fuse
# of its own: a device node on a fresh tmpfs (mount options $1, mode $2).
PRIVATE_FUSE = """set -e
d=$(mktemp -d)
mount -t tmpfs -o "$1",size=64k tmpfs "$d"
mknod -m "$2" "$d/fuse" c 10 229
mount --bind "$d/fuse" /dev/fuse
shift 2
"$@"
"""


def private_fuse(mount_opts, mode):
    if not shutil.which("unshare"):
        pytest.skip("unshare missing")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            PRIVATE_FUSE, "private-fuse", mount_opts, mode]


def skip_if_setup_failed(rc, lines):
    if rc != 0 and any(re.match(r"(mknod|mount|unshare|sh):", l)
                       for l in lines):
        pytest.skip(f"cannot set up the mount namespace: {lines}")


@MODES
def test_dev_fuse_refused_says_so(ctx, foreground):
    """/dev/fuse that cannot be opened (a device node on a nodev mount: even
    root gets EACCES): libfuse's own message is the reason."""
    rc, lines = attempt(_o(ctx) + [ctx["url"], ctx["mnt"]], ctx["mnt"],
                        foreground, prefix=private_fuse("nodev", "600"))
    skip_if_setup_failed(rc, lines)
    assert_refused(rc, lines, r"failed to open /dev/fuse: Permission denied",
                   foreground, "/dev/fuse refused")
    assert not is_mounted(ctx["mnt"])


@pytest.fixture
def plain_user():
    """A throw-away unprivileged user (useradd), removed at teardown."""
    if not (shutil.which("useradd") and shutil.which("setpriv")):
        pytest.skip("useradd or setpriv missing")
    name = f"dmsl{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def user_dirs(plain_user):
    """(mountpoint the user may not write to, cache_dir of the user)."""
    base = tempfile.mkdtemp(prefix="dmsfs-lc-")
    os.chmod(base, 0o755)
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt, 0o755)
    cache = os.path.join(base, "cache")
    os.mkdir(cache, 0o700)
    shutil.chown(cache, plain_user, plain_user)
    yield mnt, cache
    if is_mounted(mnt):
        run_fusermount(mnt, lazy=True)
    shutil.rmtree(base, ignore_errors=True)


@MODES
@pytest.mark.parametrize("dev_fuse", ["root-only", "open"])
def test_unprivileged_user_gets_the_reason(nginx, plain_user, user_dirs,
                                           foreground, dev_fuse):
    """A user mounting: with /dev/fuse closed to them, libfuse says so; with
    it open, libfuse runs fusermount3, which writes its refusal (no write
    access to the mountpoint) to stderr itself.  Either way a detached
    start prints one line, and it is that reason."""
    mnt, cache = user_dirs
    if dev_fuse == "open":
        prefix, phrase = private_fuse("dev", "666"), \
            r"fusermount3: .*" + re.escape(mnt)
    else:
        prefix, phrase = private_fuse("dev", "600"), \
            r"failed to open /dev/fuse: Permission denied"
    rc, lines = attempt(["-o", f"cache_dir={cache}", nginx.url, mnt], mnt,
                        foreground, user=plain_user, prefix=prefix)
    skip_if_setup_failed(rc, lines)
    assert not is_mounted(mnt)
    assert_refused(rc, lines, phrase, foreground, f"user, /dev/fuse {dev_fuse}")


# --------------------------------------------------- around a live mount
def assert_still_serves(m, tree):
    origintree.assert_same_bytes(origintree.read_all(m.path(REL)),
                                 tree.data(REL), REL)


@MODES
def test_second_mount_on_mountpoint_refused(tree, nginx, mounter, tmp_path,
                                            foreground):
    m = mounter(nginx.url, foreground=False)
    rc, lines = attempt(["-o", f"cache_dir={tmp_path}/other-cache",
                         nginx.url, m.mountpoint], m.mountpoint, foreground)
    assert_refused(rc, lines, re.escape(m.mountpoint) + r" is already mounted",
                   foreground, "second mount on the same mountpoint")
    assert find_daemon_pids(m.mountpoint) == [m.pid], "a second daemon runs"
    assert_still_serves(m, tree)
    m.umount()


@MODES
def test_second_mount_on_same_cache_refused(tree, nginx, mounter, tmp_path,
                                            foreground):
    m = mounter(nginx.url, foreground=False)
    other = tmp_path / "other-mnt"
    other.mkdir()
    rc, lines = attempt(["-o", f"cache_dir={m.cache_dir}", nginx.url,
                         str(other)], str(other), foreground)
    assert not is_mounted(str(other)), "second mount made on the same cache"
    assert_refused(rc, lines, re.escape(f"cache_dir {m.cache_dir} is in use "
                                        f"by pid {m.pid}"),
                   foreground, "second daemon on the same cache_dir")
    assert_still_serves(m, tree)
    m.umount()
    # Once the first daemon is gone the cache is free again.
    m2 = mounter(nginx.url, mountpoint=other, cache_dir=m.cache_dir,
                 foreground=foreground)
    assert_still_serves(m2, tree)
    m2.umount()


@MODES
def test_killed_daemon_leaves_stale_mount_named(tree, nginx, mounter,
                                                foreground):
    m = mounter(nginx.url, foreground=foreground)
    assert_still_serves(m, tree)
    pid = m.pid
    assert pid and pid_alive(pid)
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < end:
        if m.proc is not None:
            m.proc.poll()
        time.sleep(0.05)
    assert not pid_alive(pid), "daemon survived SIGKILL"
    assert is_mounted(m.mountpoint)
    for fg in (False, True):
        rc, lines = attempt(["-o", f"cache_dir={m.cache_dir}", nginx.url,
                             m.mountpoint], m.mountpoint, fg)
        assert_refused(rc, lines, re.escape(
            f"{m.mountpoint}: stale mount (daemon gone); clear it with "
            f"fusermount3 -u {m.mountpoint}"), fg, "remount after kill -9")
    r = run_fusermount(m.mountpoint)
    assert r.returncode == 0, r.stderr
    assert not is_mounted(m.mountpoint)
    if m.proc is not None:
        m.proc.wait(10)
        m.proc = None
    m.pid = None
    # Cleared: the same mountpoint and cache mount again.
    m2 = mounter(nginx.url, mountpoint=m.mountpoint, cache_dir=m.cache_dir,
                 foreground=foreground)
    assert_still_serves(m2, tree)
    m2.umount()
