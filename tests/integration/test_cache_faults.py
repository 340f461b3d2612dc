"""A damaged or unlucky cache directory: a truncated data.mdb, links, FIFOs and
folders where the cache's files should be, an empty or relative cache_dir,
a folder others can use, a new user without ~/.cache, a cache on a tiny
filesystem.  In every case: the mount either works (bad files set aside, a
warning that says why) or is refused with one clear line, within a bounded
time; no wrong byte; nothing written outside cache_dir; no mode changed on a
folder dmsfs did not create."""
import os
import shutil
import stat
import subprocess
import tempfile
import uuid

import pytest

import cachefiles
import mount as mountlib
import origintree
from mount import DMSFS

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root (FUSE, nginx, useradd, tmpfs)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(DMSFS, os.X_OK),
                       reason=f"{DMSFS} is not built (run make)"),
]

PAGE = os.sysconf("SC_PAGE_SIZE")   # LMDB's page size
READ = ["big.bin", "three_blocks_plus_7.bin", "RB1810001/raw/run_000123.nxs"]
# Lines at error level a full cache filesystem may cause (puts and metadata
# records that cannot be stored are logged, never fatal).
FULL_DISK_ERRORS = (r"(?i)no space left|MDB_MAP_FULL|cache: .*(put|commit)",)


def read_and_check(m, tree, rels=READ):
    for rel in rels:
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     tree.data(rel), rel)


def warm_cache(mounter, nginx, tree):
    """A cache dir holding the blocks of READ (unmounted again)."""
    m = mounter(nginx.url)
    read_and_check(m, tree)
    m.umount()
    return m.cache_dir


def run_cmd(args, cwd=None, timeout=60):
    """Runs build/dmsfs (daemon mode unless -f is in args) and returns the
    CompletedProcess.  A mount made by mistake is the caller's to take down;
    a foreground daemon still running after timeout is killed (by PID)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([DMSFS] + list(args), cwd=cwd, stdout=out,
                             stderr=err, stdin=subprocess.DEVNULL)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            rc = None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            p.args, rc, out.read().decode(errors="replace"),
            err.read().decode(errors="replace"))


def fg_args(m):
    """The arguments of Mount m, in the foreground, for run_cmd."""
    return ["-f"] + [a for a in m.argv()[1:] if a != "-f"]


def force_unmount(path):
    if mountlib.is_mounted(path):
        if mountlib.run_fusermount(path).returncode != 0:
            mountlib.run_fusermount(path, lazy=True)


# ------------------------------------------------------- truncated data.mdb

@pytest.mark.parametrize("foreground", [True, False], ids=["fg", "daemon"])
@pytest.mark.parametrize("cut", ["empty", "one_page", "two_pages", "half",
                                 "one_page_short"])
def test_truncated_data_file(tree, nginx, mounter, cut, foreground):
    cache = warm_cache(mounter, nginx, tree)
    data = os.path.join(cache, "data.mdb")
    size = os.path.getsize(data)
    assert size > 4 * PAGE
    new = {"empty": 0, "one_page": PAGE, "two_pages": 2 * PAGE,
           "half": size // 2 // PAGE * PAGE,
           "one_page_short": size - PAGE}[cut]
    os.truncate(data, new)

    m = mounter(nginx.url, cache_dir=cache, foreground=foreground)
    read_and_check(m, tree)
    bad = os.path.join(cache, "data.mdb.bad")
    if new == 0:
        # LMDB starts a new cache in an empty file: nothing to set aside.
        assert not os.path.exists(bad)
    else:
        assert os.path.getsize(bad) == new, \
            f"the cut data file was not set aside as {bad}"
        if foreground:
            assert "data.mdb.bad" in m.log() and "data.mdb" in m.log(), \
                f"no warning about the set-aside file:\n{m.log()}"
    m.umount()
    # The new cache is whole: a third mount keeps it.
    m3 = mounter(nginx.url, cache_dir=cache)
    read_and_check(m3, tree)
    assert "data.mdb.bad" not in m3.log()
    m3.umount()


# --------------------------------- special files at the cache's file names

SPECIAL_KINDS = ["dangling_link", "link_to_file", "fifo", "directory"]


def make_special(path, kind, target):
    if kind == "dangling_link":
        os.symlink(target, path)
    elif kind == "link_to_file":
        with open(target, "wb"):
            pass
        os.symlink(target, path)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        os.mkdir(path, 0o700)


def check_target_untouched(target, kind):
    if kind == "dangling_link":
        assert not os.path.lexists(target), \
            f"the cache created {target} through a link"
    elif kind == "link_to_file":
        assert os.path.getsize(target) == 0, \
            f"the cache wrote to {target} through a link"


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize("name", ["data.mdb", "lock.mdb", "open.boot"])
def test_special_file_in_cache_dir(tree, nginx, mounter, tmp_path, name,
                                   kind):
    cache = warm_cache(mounter, nginx, tree)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = str(outside / "target")
    path = os.path.join(cache, name)
    os.unlink(path)
    make_special(path, kind, target)

    # Mount.start bounds the time: a FIFO opened for good fails here.
    m = mounter(nginx.url, cache_dir=cache)
    read_and_check(m, tree)
    m.umount()
    check_target_untouched(target, kind)
    bad = os.path.join(cache, name + ".bad")
    st = os.lstat(bad)
    want = {"dangling_link": stat.S_ISLNK, "link_to_file": stat.S_ISLNK,
            "fifo": stat.S_ISFIFO, "directory": stat.S_ISDIR}[kind]
    assert want(st.st_mode), f"{bad} is not the {kind} set aside"
    assert stat.S_ISREG(os.lstat(path).st_mode)
    assert f"{name} is" in m.log() or f"{name}: is" in m.log(), \
        f"no warning naming {name}:\n{m.log()}"


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_special_file_at_stats(tree, nginx, mounter, tmp_path, kind):
    """The stats file written at unmount replaces whatever is at its name
    (never writing through a link, never blocking on a FIFO); a folder
    there is left alone with a warning."""
    cache = warm_cache(mounter, nginx, tree)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = str(outside / "target")
    path = os.path.join(cache, "stats")
    os.unlink(path)
    make_special(path, kind, target)

    m = mounter(nginx.url, cache_dir=cache)
    read_and_check(m, tree)
    m.umount(timeout=30)   # a FIFO opened for writing would hang here
    check_target_untouched(target, kind)
    if kind == "directory":
        assert os.path.isdir(path)
        assert "stats not written" in m.log()
    else:
        assert stat.S_ISREG(os.lstat(path).st_mode)
        assert set(cachefiles.stats_file(cache)) >= {"bytes", "hits",
                                                     "dropped"}
    assert not os.path.lexists(path + ".tmp")


def test_bad_file_in_the_way(tree, nginx, mounter):
    """A data.mdb.bad that cannot be replaced: the mount is refused with a
    line naming both paths, nothing is lost."""
    cache = warm_cache(mounter, nginx, tree)
    data = os.path.join(cache, "data.mdb")
    bad = os.path.join(cache, "data.mdb.bad")
    os.mkdir(bad, 0o700)
    with open(os.path.join(bad, "keep"), "w"):
        pass
    os.truncate(data, os.path.getsize(data) // 2)
    m = mounter(nginx.url, cache_dir=cache, start=False)
    try:
        r = run_cmd(fg_args(m), timeout=30)
    finally:
        force_unmount(m.mountpoint)
    assert r.returncode not in (0, None), r.stderr
    assert "data.mdb.bad" in r.stderr and "by hand" in r.stderr, r.stderr
    assert os.path.exists(os.path.join(bad, "keep"))


# ----------------------------------------------------------- the cache_dir

@pytest.fixture
def public_cwd():
    d = tempfile.mkdtemp(prefix="dmsfs-cwd-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("value", ["", "relative", "./rel/cache", "~/cache"])
def test_cache_dir_empty_or_relative(nginx, tmp_path, public_cwd, value):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        r = run_cmd(["-o", f"cache_dir={value}", nginx.url, str(mnt)],
                    cwd=public_cwd)
        mounted = mountlib.is_mounted(str(mnt))
    finally:
        force_unmount(str(mnt))
    assert not mounted and r.returncode != 0, \
        f"cache_dir={value!r} was accepted"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cache_dir" in lines[0] and \
        "absolute" in lines[0], f"want one line naming cache_dir: {lines}"
    st = os.stat(public_cwd)
    assert stat.S_IMODE(st.st_mode) == 0o755, \
        f"the current folder's mode became {stat.S_IMODE(st.st_mode):o}"
    assert os.listdir(public_cwd) == [], \
        f"files left in the current folder: {os.listdir(public_cwd)}"


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o770, 0o1777])
def test_existing_cache_dir_open_to_others(nginx, mounter, tmp_path, mode):
    """A folder dmsfs did not create keeps its mode: if others can use it,
    the mount is refused with a line that says what to do."""
    cache = tmp_path / "shared"
    cache.mkdir()
    os.chmod(cache, mode)
    m = mounter(nginx.url, cache_dir=str(cache), start=False)
    try:
        r = run_cmd(fg_args(m), timeout=30)
    finally:
        force_unmount(m.mountpoint)
    assert r.returncode not in (0, None), "a folder open to others was used"
    assert "open to group or others" in r.stderr and \
        f"chmod 700 {cache}" in r.stderr, r.stderr
    assert stat.S_IMODE(os.stat(cache).st_mode) == mode, \
        "dmsfs changed the mode of a folder it did not create"
    assert os.listdir(cache) == []


def test_cache_dir_symlink_refused(nginx, mounter, tmp_path, tree):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    m = mounter(nginx.url, cache_dir=str(link), foreground=True, start=False,
                expected_errors=[r"symbolic link", r"cannot use cache_dir"])
    with pytest.raises(AssertionError, match="exited"):
        m.start()
    m.cleanup()
    assert "symbolic link" in m.log(), m.log()
    assert os.listdir(real) == []
    # The directory itself works.
    m2 = mounter(nginx.url, cache_dir=str(real))
    read_and_check(m2, tree, READ[1:])
    m2.umount()


# --------------------------------------------------- a new user's first mount

class UserMount(mountlib.Mount):
    """A foreground mount run as another user with a given environment."""

    def __init__(self, user, env, *args, **kw):
        super().__init__(*args, **kw)
        self.user, self.env = user, env

    def argv(self):
        name, uid, gid = self.user
        return (["setpriv", f"--reuid={uid}", f"--regid={gid}",
                 "--init-groups", "env", "-i"] +
                [f"{k}={v}" for k, v in self.env.items()] + super().argv())


@pytest.fixture
def new_user():
    """A fresh account whose home exists but holds no .cache."""
    if not (shutil.which("useradd") and shutil.which("setpriv")):
        pytest.skip("useradd or setpriv missing")
    base = tempfile.mkdtemp(prefix="dmsfs-user-")
    os.chmod(base, 0o755)
    home = os.path.join(base, "home")
    name = "dmsfsc" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "-M", "-d", home, "-s", "/usr/sbin/nologin",
                    name], check=True, capture_output=True, timeout=30)
    try:
        uid = int(subprocess.run(["id", "-u", name], capture_output=True,
                                 text=True, check=True).stdout)
        gid = int(subprocess.run(["id", "-g", name], capture_output=True,
                                 text=True, check=True).stdout)
        os.mkdir(home, 0o700)
        os.chown(home, uid, gid)
        yield (name, uid, gid), home, base
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def read_as(user, path):
    name, uid, gid = user
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}",
                        "--init-groups", "cat", path], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, f"reading {path} as {name}: {r.stderr!r}"
    return r.stdout


@pytest.mark.parametrize("xdg", [False, True], ids=["home", "xdg"])
def test_new_user_default_cache_dir(nginx, tree, new_user, xdg):
    user, home, base = new_user
    env = {"HOME": home, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if xdg:
        env["XDG_CACHE_HOME"] = os.path.join(home, "xdg", "cache")
        want = os.path.join(home, "xdg", "cache", "dmsfs")
    else:
        want = os.path.join(home, ".cache", "dmsfs")
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt, 0o755)
    os.chown(mnt, user[1], user[2])
    m = UserMount(user, env, nginx.url, mnt, os.path.join(base, "log"),
                  {"block_size": f"{origintree.BLOCK // 1024}K"})
    if os.stat("/dev/fuse").st_mode & 0o006 == 0o006:
        try:
            m.start()
            rel = "three_blocks_plus_7.bin"
            origintree.assert_same_bytes(read_as(user, m.path(rel)),
                                         tree.data(rel), rel)
            m.umount()
        finally:
            m.cleanup()
    else:
        # Users cannot open /dev/fuse here (not dmsfs's business): the mount
        # fails after the cache is opened, so the cache's part is still
        # checked.
        r = subprocess.run(m.argv(), capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        force_unmount(mnt)
        assert "/dev/fuse" in r.stderr and "cache_dir" not in r.stderr, \
            f"want only the /dev/fuse failure: {r.stderr}"
    # Every folder made on the way is the user's and private.
    d = want
    while d != home:
        st = os.stat(d)
        assert st.st_uid == user[1] and stat.S_IMODE(st.st_mode) == 0o700, \
            f"{d}: uid {st.st_uid} mode {stat.S_IMODE(st.st_mode):o}"
        d = os.path.dirname(d)
    assert os.path.isfile(os.path.join(want, "data.mdb"))
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700


# ------------------------------------------------ a cache on a tiny filesystem

@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs, unmounted at teardown."""
    path = tmp_path / "tiny"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700",
                        "tmpfs", str(path)], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield str(path)
    if subprocess.run(["umount", str(path)], capture_output=True,
                      timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True,
                       timeout=30)


def fill_up(path):
    """Writes a file until the filesystem is full (it may be already)."""
    try:
        fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT,
                     0o600)
    except OSError:
        return
    try:
        for chunk in (65536, 512, 1):
            try:
                while os.write(fd, b"\0" * chunk) == chunk:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def stats_text(cache):
    try:
        with open(os.path.join(cache, "stats")) as f:
            return f.read()
    except FileNotFoundError:
        return None


def assert_stats_whole(text):
    if text is None:
        return
    assert text.endswith("\n") and set(
        cachefiles.stats_file_text(text)) == {
        "bytes", "blocks", "hits", "misses", "corrupt", "evicted",
        "dropped"}, f"stats file cut or empty: {text!r}"


def test_cache_on_tiny_filesystem(tree, nginx, mounter, tiny_fs):
    cache = os.path.join(tiny_fs, "cache")
    # The default cap (10G) on 2 MiB: puts fail, reads must not.
    m = mounter(nginx.url, cache_dir=cache, expected_errors=FULL_DISK_ERRORS)
    read_and_check(m, tree)   # big.bin alone is larger than the filesystem
    read_and_check(m, tree)   # again, partly from the cache
    m.umount()
    assert "dropped" in m.log(), "no log line about the dropped puts"
    assert_stats_whole(stats_text(cache))

    # A cap that fits leaves room for a stats file ...
    shutil.rmtree(cache)
    m1 = mounter(nginx.url, cache_dir=cache, cache_size="1M",
                 expected_errors=FULL_DISK_ERRORS)
    read_and_check(m1, tree)
    m1.umount()
    first = stats_text(cache)
    assert first is not None, f"no stats file with room for it:\n{m1.log()}"
    assert_stats_whole(first)

    # ... which a full disk leaves as it was, never emptied or cut.
    fill_up(tiny_fs)
    m2 = mounter(nginx.url, cache_dir=cache, expected_errors=FULL_DISK_ERRORS)
    read_and_check(m2, tree)
    m2.umount()
    after = stats_text(cache)
    assert after == first, \
        f"stats file changed on a full disk: {first!r} -> {after!r}"
    assert "stats not written" in m2.log(), m2.log()
    assert not os.path.exists(os.path.join(cache, "stats.tmp"))
