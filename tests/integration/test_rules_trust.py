"""Rules and config files that someone other than root could change, and
special files (FIFO, directory, device) where they are expected (issue 7,
defects 2 and 3).

The daemon, at mount and on every reload, and `dmsctl acl lint` read these
files only if no one but root (or the daemon's own user) could have written
them: the file, every directory on its way (a sticky one such as /tmp is
fine when what follows is root's), every symlink followed.  A FIFO there
never blocks anything.  Real mounts of the standard tree over nginx, a real
local user (useradd, removed at teardown) who acts in a child process
(setpriv).  Every command runs with a timeout, so a hang fails the test.
Needs root, FUSE, nginx, useradd, setpriv, build/dmsfs and build/dmsctl.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import mount as mountlib
# public_dir: mountpoints the user can reach (tmp_path is root's, 0700).
from test_acl_mount import User, as_user, err, public_dir, wait_for  # noqa: F401

DMSCTL = os.environ.get("DMSCTL_BIN") or \
    os.path.join(mountlib.ROOT, "build", "dmsctl")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root (useradd, chown, FUSE, nginx)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(mountlib.DMSFS, os.X_OK),
                       reason=f"{mountlib.DMSFS} is not built (run make)"),
    pytest.mark.skipif(not os.access(DMSCTL, os.X_OK),
                       reason=f"{DMSCTL} is not built (run make)"),
    pytest.mark.skipif(not (shutil.which("useradd") and
                            shutil.which("setpriv")),
                       reason="useradd or setpriv missing"),
]

# A bound on a hang, not a timing assertion: refusals take milliseconds.
HANG = 60
# Error lines the reload tests provoke on purpose.
RELOAD_ERRORS = (r"acl: .*: not loaded: ", r"access rules not reloaded",
                 r"error: rules .*: .* is not a regular file",
                 r"access rules .* not reloaded \(dmsctl reload\)")

SECRET = "RB1810001/logbook.txt"     # what the user may or may not read
OTHER = "big.bin"                    # what only "grant all" opens


@pytest.fixture(scope="module")
def user():
    name = f"dmtr{os.getpid()}"
    subprocess.run(["useradd", "-m", "-s", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=60)
    try:
        yield User(name)
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True,
                       timeout=60)


@pytest.fixture
def rdir(tmp_path):
    """A root-owned 0755 folder for rules and config files."""
    d = tmp_path / "etc"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    return d


def good_rules(user):
    return f"u {user.name} /RB1810001 rl\n"


def write_file(path, text, mode=0o644, uid=0, atomic=True):
    """Writes text to path with mode and owner, replacing any file
    atomically (rename) unless atomic is False."""
    path = str(path)
    tmp = path + ".new" if atomic else path
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.chown(tmp, uid, -1)
    if atomic:
        os.replace(tmp, path)
    return path


def put_fifo(path):
    """Replaces path by a FIFO (atomically: the daemon never sees it gone)."""
    path = str(path)
    tmp = path + ".fifo"
    os.mkfifo(tmp, 0o644)
    os.replace(tmp, path)


# ------------------------------------------------------------ the cases

def _case(name, user, rdir, tmp):
    """Builds the bad file of one case; returns (path, reason regex).
    tmp: a sticky world-writable folder (as /tmp) made for the test."""
    text = "u * / rl\n"
    uid = user.uid
    if name == "owned_by_user":
        p = write_file(rdir / "authdb", text, uid=uid)
        return p, rf"{re.escape(p)} is owned by uid {uid}, not by root"
    if name == "owned_by_user_read_only":
        p = write_file(rdir / "authdb", text, mode=0o444, uid=uid)
        return p, rf"is owned by uid {uid}, not by root"
    if name == "group_writable":
        p = write_file(rdir / "authdb", text, mode=0o664)
        return p, r"is writable by group or others \(mode 0664\)"
    if name == "world_writable":
        p = write_file(rdir / "authdb", text, mode=0o666)
        return p, r"is writable by group or others \(mode 0666\)"
    if name == "symlink_to_user_file":
        target = write_file(tmp / "theirs", text, uid=uid)
        p = str(rdir / "authdb")
        os.symlink(target, p)
        return p, rf"{re.escape(target)} is owned by uid {uid}"
    if name == "user_symlink_in_sticky_dir":
        target = write_file(rdir / "real", text)
        p = str(tmp / "link")
        os.symlink(target, p)
        os.lchown(p, uid, -1)
        return p, rf"symlink {re.escape(p)} is owned by uid {uid}"
    if name == "root_file_in_user_dir":
        d = rdir / "users"
        d.mkdir()
        os.chown(d, uid, -1)
        p = write_file(d / "authdb", text)
        return p, rf"directory {re.escape(str(d))} is owned by uid {uid}"
    if name == "root_file_in_open_dir":
        d = rdir / "open"
        d.mkdir()
        os.chmod(d, 0o777)
        p = write_file(d / "authdb", text)
        return p, r"directory .*/open is writable by group or others " \
                  r"\(mode 0777\) and not sticky"
    if name == "symlink_via_open_dir":
        d = rdir / "open"
        d.mkdir()
        os.chmod(d, 0o777)
        write_file(d / "authdb", text)
        p = str(rdir / "authdb")
        os.symlink(str(d / "authdb"), p)
        return p, r"directory .*/open is writable"
    if name == "user_file_in_sticky_dir":
        p = write_file(tmp / "authdb", text, uid=uid)
        return p, rf"is owned by uid {uid}"
    if name == "fifo":
        p = str(rdir / "authdb")
        os.mkfifo(p, 0o644)
        return p, r"is not a regular file but a FIFO"
    if name == "symlink_to_fifo":
        os.mkfifo(str(rdir / "fifo"), 0o644)
        p = str(rdir / "authdb")
        os.symlink("fifo", p)
        return p, r"/fifo is not a regular file but a FIFO"
    if name == "directory":
        p = str(rdir / "authdb")
        os.mkdir(p, 0o755)
        return p, r"is not a regular file but a directory"
    if name == "dev_null":
        return "/dev/null", r"is not a regular file but a character device"
    raise AssertionError(name)


CASES = ["owned_by_user", "owned_by_user_read_only", "group_writable",
         "world_writable", "symlink_to_user_file",
         "user_symlink_in_sticky_dir", "root_file_in_user_dir",
         "root_file_in_open_dir", "symlink_via_open_dir",
         "user_file_in_sticky_dir", "fifo", "symlink_to_fifo", "directory",
         "dev_null"]


@pytest.fixture
def sticky(tmp_path):
    """A world-writable sticky folder owned by root, like /tmp."""
    d = tmp_path / "sticky"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


def run_mount(args, mnt, timeout=HANG):
    """Runs dmsfs (daemon mode unless -f in args) expecting it to refuse:
    returns (exit status, stderr), status 0 as soon as the mount appears.
    Whatever happens, nothing is left mounted or running; a hang fails."""
    with tempfile.TemporaryFile() as err_f:
        p = subprocess.Popen([mountlib.DMSFS] + args, stdin=subprocess.DEVNULL,
                             stdout=err_f, stderr=err_f,
                             start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while p.poll() is None and not mountlib.is_mounted(mnt):
                if time.monotonic() > deadline:
                    pytest.fail(f"dmsfs {' '.join(args)} still running "
                                f"after {timeout}s (blocked on a special "
                                "file?)")
                time.sleep(0.05)
            status = 0 if mountlib.is_mounted(mnt) else p.returncode
        finally:
            if mountlib.is_mounted(mnt):
                mountlib.run_fusermount(mnt, lazy=True)
            if p.poll() is None:
                p.kill()
            p.wait()
            for pid in mountlib.find_daemon_pids(mnt):
                os.kill(pid, signal.SIGKILL)
        err_f.seek(0)
        return status, err_f.read().decode(errors="replace")


def assert_refused_one_line(res, mnt, path, reason, where):
    status, stderr = res
    assert status != 0, f"{where}: dmsfs accepted {path}:\n{stderr}"
    assert not mountlib.is_mounted(mnt), f"{where}: mounted anyway"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if mountlib.ERROR_LINE.search(ln)
              or ln.startswith("dmsfs: config")]
    assert len(errors) == 1, \
        f"{where}: want one line saying why, got:\n{stderr}"
    assert path in errors[0] and re.search(reason, errors[0]), \
        f"{where}: the line does not name {path} and say /{reason}/:\n" \
        f"{stderr}"


@pytest.mark.parametrize("case", CASES)
def test_mount_refuses_untrusted_rules(case, user, nginx, rdir, sticky,
                                       public_dir, tmp_path):
    path, reason = _case(case, user, rdir, sticky)
    mnt = os.path.join(public_dir, "mnt")
    os.mkdir(mnt)
    opts = f"acl={path},cache_dir={tmp_path / 'cache'}"
    for mode in (["-f"], []):
        r = run_mount(mode + ["-o", opts, nginx.url + "/", mnt], mnt)
        assert_refused_one_line(r, mnt, path, reason,
                                "foreground" if mode else "daemon mode")
    assert not mountlib.find_daemon_pids(mnt)


@pytest.mark.parametrize("case", ["owned_by_user", "world_writable",
                                  "root_file_in_open_dir", "fifo",
                                  "symlink_to_fifo", "directory"])
def test_mount_refuses_untrusted_config(case, user, nginx, rdir, sticky,
                                        public_dir, tmp_path):
    conf, reason = _case(case, user, rdir, sticky)
    text = (f"[cache]\ndir = {tmp_path / 'cache'}\n"
            f"[export a]\npath = /a\nsource = {nginx.url}/\n")
    if case not in ("fifo", "symlink_to_fifo", "directory"):
        # The case wrote a file: give it a real config's contents.
        st = os.stat(conf)
        with open(conf, "w") as f:
            f.write(text)
        os.chmod(conf, st.st_mode & 0o7777)
    mnt = os.path.join(public_dir, "mnt")
    os.mkdir(mnt)
    r = run_mount(["-o", f"config={conf}", mnt], mnt)
    assert_refused_one_line(r, mnt, conf, reason, "config")
    assert f"dmsfs: config {conf}: " in r[1]


def test_config_naming_fifo_rules(nginx, rdir, public_dir, tmp_path):
    """`rules = FIFO` in a good config: refused at once, one line."""
    rules = str(rdir / "authdb")
    os.mkfifo(rules, 0o644)
    conf = write_file(rdir / "dmsfs.conf",
                      f"[cache]\ndir = {tmp_path / 'cache'}\n"
                      f"[acl]\nrules = {rules}\n"
                      f"[export a]\npath = /a\nsource = {nginx.url}/\n")
    mnt = os.path.join(public_dir, "mnt")
    os.mkdir(mnt)
    for mode in (["-f"], []):
        r = run_mount(mode + ["-o", f"config={conf}", mnt], mnt)
        assert_refused_one_line(r, mnt, rules, r"not a regular file but a "
                                r"FIFO", "rules = FIFO")


def test_trusted_places_still_mount(user, nginx, rdir, sticky, public_dir,
                                    mounter):
    """Not too strict: a root-owned file in a sticky folder (as /tmp), a
    read-only root file, root's symlinks to it all load."""
    text = "u * / rl\n"
    in_sticky = write_file(sticky / "authdb", text)
    ro = write_file(rdir / "ro", text, mode=0o400)
    link = str(rdir / "link")
    os.symlink(in_sticky, link)
    for i, path in enumerate((in_sticky, ro, link)):
        m = mounter(nginx.url + "/", acl=path,
                    mountpoint=os.path.join(public_dir, f"m{i}"))
        assert _reads(user, m, OTHER) == "ok"
        m.umount()


# ------------------------------------------------------------ reloads

def _log_count(m, pattern):
    return len(re.findall(pattern, m.log()))


def _reads(user, m, rel):
    return err(as_user(user, [["read", m.path(rel)]], timeout=HANG)[0])


def test_reload_refuses_untrusted_keeps_rules(user, nginx, rdir, public_dir,
                                              mounter):
    rules = write_file(rdir / "authdb", good_rules(user))
    m = mounter(nginx.url + "/", acl=rules, expected_errors=RELOAD_ERRORS,
                mountpoint=os.path.join(public_dir, "mnt"))
    assert _reads(user, m, SECRET) == "ok"
    assert _reads(user, m, OTHER) == "EACCES"
    grant_all = "u * / rl\n"

    # 1. The user's own file put in its place: refused, rules kept.
    write_file(rules, grant_all, uid=user.uid)
    wait_for(lambda: re.search(
        rf"acl: {re.escape(rules)}: not loaded: {re.escape(rules)} is owned "
        rf"by uid {user.uid}, not by root; keeping the previous rules",
        m.log()), "the daemon refuses a rules file owned by a user",
        log=m.log)
    assert _reads(user, m, OTHER) == "EACCES", "a user's rules were loaded"
    assert _reads(user, m, SECRET) == "ok", "the previous rules were lost"

    # 2. Root takes it back: loaded (the daemon still follows the file).
    os.chown(rules, 0, -1)
    wait_for(lambda: _reads(user, m, OTHER) == "ok",
             "the rules load once root owns the file", log=m.log)

    # 3. Made group-writable in place: refused; fixed: loaded again.
    write_file(rules, good_rules(user), atomic=False)
    wait_for(lambda: _reads(user, m, OTHER) == "EACCES",
             "good rules load", log=m.log)
    os.chmod(rules, 0o664)
    write_file(rules, grant_all, mode=0o664, atomic=False)
    wait_for(lambda: re.search(r"writable by group or others \(mode 0664\); "
                               r"keeping the previous rules", m.log()),
             "the daemon refuses a group-writable rules file", log=m.log)
    assert _reads(user, m, OTHER) == "EACCES"

    # 4. A folder on the way that others can write: refused, reported
    # once however often it is polled, and loaded as soon as the folder is
    # fixed, though the file itself did not change.
    os.chmod(rules, 0o644)
    wait_for(lambda: _reads(user, m, OTHER) == "ok",
             "the fixed file loads", log=m.log)
    write_file(rules, good_rules(user))
    wait_for(lambda: _reads(user, m, OTHER) == "EACCES",
             "good rules load", log=m.log)
    os.chmod(rdir, 0o777)
    write_file(rules, grant_all)
    pat = rf"directory {re.escape(str(rdir))} is writable by group or " \
          r"others \(mode 0777\) and not sticky"
    wait_for(lambda: _log_count(m, pat) >= 1,
             "the daemon refuses rules below a world-writable folder",
             log=m.log)
    time.sleep(5)            # more than two polls; not a timing assertion
    assert _log_count(m, pat) == 1, "the same refusal logged at every poll"
    assert _reads(user, m, OTHER) == "EACCES"
    os.chmod(rdir, 0o755)
    wait_for(lambda: _reads(user, m, OTHER) == "ok",
             "the rules load once the folder is fixed", log=m.log)
    m.umount()


def test_fifo_at_rules_path_blocks_nothing(user, nginx, rdir, public_dir,
                                           mounter):
    """A revoked user: a FIFO put where the rules are must not freeze the
    rules, SIGHUP or the unmount."""
    rules = write_file(rdir / "authdb", good_rules(user))
    m = mounter(nginx.url + "/", acl=rules, expected_errors=RELOAD_ERRORS,
                mountpoint=os.path.join(public_dir, "mnt"))
    assert _reads(user, m, SECRET) == "ok"

    put_fifo(rules)
    fifo_pat = rf"acl: {re.escape(rules)}: not loaded: .* is not a regular " \
               r"file but a FIFO; keeping the previous rules"
    wait_for(lambda: re.search(fifo_pat, m.log()),
             "the daemon refuses the FIFO", log=m.log)
    assert _reads(user, m, SECRET) == "ok", "the previous rules were lost"
    # SIGHUP while the FIFO is there: answered, refused, still mounted.
    os.kill(m.pid, signal.SIGHUP)
    wait_for(lambda: "access rules not reloaded" in m.log(),
             "the daemon answers SIGHUP with a FIFO at the path", log=m.log)
    assert m.running and mountlib.pid_alive(m.pid)

    # The admin revokes the user: it must take effect.
    write_file(rules, "u * /RB1810002 rl\n")
    wait_for(lambda: _reads(user, m, SECRET) == "EACCES",
             "the revoked user is refused after a FIFO was at the path",
             log=m.log)
    assert "access rules reloaded (file changed)" in m.log()
    os.kill(m.pid, signal.SIGHUP)
    wait_for(lambda: "access rules reloaded (SIGHUP)" in m.log(),
             "SIGHUP reloads after a FIFO was at the path", log=m.log)

    # A FIFO there at unmount time: fusermount3 -u still ends the daemon
    # (umount() waits for its exit, status 0).
    # The daemon's own refusal repeats the first one's words, which the
    # log writes once a minute: dmsctl reload shows the refusal instead.
    put_fifo(rules)
    r = _dmsctl("reload", str(m.mountpoint))
    assert r.returncode != 0 and "FIFO" in r.stdout + r.stderr, r
    os.kill(m.pid, signal.SIGHUP)
    m.umount(timeout=HANG)


# ------------------------------------------------------------ dmsctl

def _dmsctl(*args, as_uid=None):
    cmd = [DMSCTL, *args]
    if as_uid is not None:
        cmd = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}",
               "--clear-groups"] + cmd
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=HANG, cwd="/")
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} still running after {HANG}s")


@pytest.mark.parametrize("case", CASES)
def test_lint_refuses_untrusted(case, user, rdir, sticky):
    path, reason = _case(case, user, rdir, sticky)
    r = _dmsctl("acl", "lint", path)
    assert r.returncode == 1, f"lint says {r.returncode}: {r.stdout}{r.stderr}"
    assert "ok:" not in r.stdout
    assert re.search(reason, r.stderr), r.stderr
    assert r.stderr.startswith(f"{path}: "), r.stderr
    # dmsctl acl check reads the file the same way.
    r = _dmsctl("acl", "check", "-r", path, "root", "/")
    assert r.returncode == 1 and re.search(reason, r.stderr), r.stderr


def test_lint_as_user_trusts_own_files(user, public_dir):
    """Run by a user (as a user's own mount would be), a file of the
    user's own or root's is fine; another account's is not."""
    home = os.path.expanduser(f"~{user.name}")
    sticky = os.path.join(public_dir, "sticky")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    own = write_file(os.path.join(home, "authdb"), "u * / rl\n",
                     uid=user.uid)
    roots = write_file(os.path.join(sticky, "roots"), "u * / rl\n")
    other = write_file(os.path.join(sticky, "other"), "u * / rl\n",
                       uid=1)  # the "daemon" account: a third party
    r = _dmsctl("acl", "lint", own, as_uid=user.uid)
    assert r.returncode == 0 and r.stdout == "ok: 1 rules\n", r.stderr
    r = _dmsctl("acl", "lint", roots, as_uid=user.uid)
    assert r.returncode == 0, r.stderr
    r = _dmsctl("acl", "lint", other, as_uid=user.uid)
    assert r.returncode == 1
    assert f"is owned by uid 1, not by root or uid {user.uid}" in r.stderr
    # The user's file is the user's, not root's: root's lint refuses it.
    r = _dmsctl("acl", "lint", own)
    assert r.returncode == 1 and "not by root" in r.stderr


def test_lint_oversized(rdir):
    path = str(rdir / "huge")
    with open(path, "w") as f:
        f.truncate((16 << 20) + 1)
    r = _dmsctl("acl", "lint", path)
    assert r.returncode == 1
    assert "is larger than 16777216 bytes" in r.stderr, r.stderr
