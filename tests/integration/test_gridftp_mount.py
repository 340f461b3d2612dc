"""dmsfs mounts of GridFTP sources (ftp:// anonymous, gsiftp:// with an X.509
proxy) against a loopback globus-gridftp-server: the tree, byte-exact reads
around block boundaries, random preads, parallel streams, EROFS, 550 ->
ENOENT, the server going away (cached data still served, the rest EIO in
bounded time), GSI with and without a proxy.

The Globus server drops non-ASCII bytes from control commands: UTF-8 names
are listed (MLSD data) but cannot be opened or listed into; reads are
checked on ASCII names, and UTF-8 names must fail rather than return the
bytes of another file.

Needs root, /dev/fuse, build/dmsfs and globus-gridftp-server."""
import errno
import os
import random
import re
import shutil
import time

import pytest

import mount as mountlib
import origintree
from gftp_tree import (is_ascii, listable_snapshot, public_tree,
                       walk_snapshot)
from gridftp_origin import SERVER, GridFTP, make_gsi
from mount import (find_daemon_pids, is_mounted, read_in_child, run_dmsfs,
                   run_fusermount)
from origintree import BLOCK, MIB

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE, "
                       "gridftp server sessions as nobody)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(mountlib.DMSFS, os.X_OK),
                       reason=f"{mountlib.DMSFS} is not built (run make)"),
    pytest.mark.skipif(not os.access(SERVER, os.X_OK),
                       reason="globus-gridftp-server is not installed"),
]

LAYOUT = origintree.standard_layout(BLOCK)
EDGE_FILES = sorted(origintree.block_sizes(BLOCK))   # 0, 1, B-1, B, B+1, 3B+7
ASCII_FILES = sorted(rel for rel in LAYOUT if is_ascii(rel))
UTF8_TOP = sorted(n for n in origintree.ODD_NAMES if not is_ascii(n))


def data(root, rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def gtree():
    root = public_tree(LAYOUT)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gftp(gtree):
    """One anonymous GridFTP server over the standard tree for the tests
    that do not change or break it."""
    g = GridFTP(gtree).start()
    yield g
    g.stop()


@pytest.fixture
def own_gftp():
    """factory(layout) -> (GridFTP, root): a private server and tree for
    tests that delete files or kill the server."""
    made = []

    def make(layout):
        root = public_tree(layout, empty_dirs=())
        g = GridFTP(root)
        made.append((g, root))
        g.start()
        return g, root
    yield make
    for g, root in made:
        g.stop()
        shutil.rmtree(root, ignore_errors=True)


def host_port(url):
    return url.split("://", 1)[1].split("/", 1)[0]


# -- the tree and its bytes -------------------------------------------------

def test_tree_matches_origin(gtree, gftp, mounter):
    m = mounter(gftp.url)
    assert sorted(os.listdir(m.mountpoint)) == sorted(os.listdir(gtree)), \
        "top-level listing (UTF-8 names included) differs from the origin"
    diff = origintree.diff_snapshots(listable_snapshot(gtree),
                                     walk_snapshot(m.mountpoint))
    assert not diff, f"mounted tree differs from origin:\n{diff}"


@pytest.mark.parametrize("rel", EDGE_FILES)
def test_block_edge_sizes_byte_exact(gtree, gftp, mounter, rel):
    m = mounter(gftp.url)
    assert os.stat(m.path(rel)).st_size == LAYOUT[rel]
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                 data(gtree, rel), rel)
    # Again from the block cache of a fresh mount on the same cache dir.
    m.umount()
    m2 = mounter(gftp.url, cache_dir=m.cache_dir)
    origintree.assert_same_bytes(origintree.read_all(m2.path(rel)),
                                 data(gtree, rel), rel + " (cached)")


def test_every_ascii_file_byte_exact(gtree, gftp, mounter):
    m = mounter(gftp.url)
    for rel in ASCII_FILES:
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     data(gtree, rel), rel)


def test_ascii_odd_names_open_directly(gtree, gftp, mounter):
    """Lookup by name without listing first (stat, then read)."""
    m = mounter(gftp.url)
    for name in origintree.ODD_NAMES:
        if not is_ascii(name):
            continue
        st = os.stat(m.path(name))
        assert st.st_size == LAYOUT[name], name
        origintree.assert_same_bytes(origintree.read_all(m.path(name)),
                                     data(gtree, name), name)


def test_random_preads(gtree, gftp, mounter):
    m = mounter(gftp.url)
    rng = random.Random(3659)
    for rel in ("big.bin", "three_blocks_plus_7.bin", "block_plus_1.bin",
                "with space.txt"):
        want = data(gtree, rel)
        fd = os.open(m.path(rel), os.O_RDONLY)
        try:
            for i in range(150):
                off = rng.randrange(0, len(want) + 100)
                n = rng.choice([1, 7, 4096, BLOCK - 1, BLOCK, BLOCK + 1,
                                3 * BLOCK, rng.randrange(1, 300_000)])
                got = os.pread(fd, n, off)
                assert got == want[off:off + n], (
                    f"{rel}: pread #{i} of {n} bytes at {off}: first "
                    f"difference at "
                    f"{origintree.first_difference(got, want[off:off + n])}")
        finally:
            os.close(fd)


@pytest.mark.parametrize("streams", [1, 4])
def test_gridftp_streams(gtree, gftp, mounter, streams):
    m = mounter(gftp.url, gridftp_streams=streams, block_size="1M")
    for rel in ("big.bin", "three_blocks_plus_7.bin", "empty.dat"):
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     data(gtree, rel),
                                     f"{rel} (gridftp_streams={streams})")


def test_utf8_names_listed_but_never_wrong_bytes(gtree, gftp, mounter):
    m = mounter(gftp.url, expected_errors=[re.escape(n) for n in UTF8_TOP])
    names = os.listdir(m.mountpoint)
    for name in UTF8_TOP:
        assert name in names
        assert os.stat(m.path(name)).st_size == LAYOUT[name]
        res = read_in_child(m.path(name), timeout=60)
        assert res["errno"] in (errno.ENOENT, errno.EIO), (
            f"{name}: a non-ASCII name this server cannot address was read "
            f"({res}); want ENOENT (or EIO), never another file's bytes")
    # A directory with a non-ASCII name is listed but cannot be entered.
    assert origintree.ODD_DIR in names
    with pytest.raises(OSError) as e:
        os.listdir(m.path(origintree.ODD_DIR))
    assert e.value.errno in (errno.ENOENT, errno.EIO)


READONLY_OPS = {
    "open O_WRONLY": lambda p: os.close(os.open(p("RB1810001/logbook.txt"),
                                                os.O_WRONLY)),
    "create": lambda p: os.close(os.open(p("RB1810001/new.txt"),
                                         os.O_WRONLY | os.O_CREAT, 0o644)),
    "mkdir": lambda p: os.mkdir(p("newdir")),
    "unlink": lambda p: os.unlink(p("one_byte.bin")),
    "rename": lambda p: os.rename(p("one_byte.bin"), p("renamed.bin")),
    "truncate": lambda p: os.truncate(p("block_exact.bin"), 0),
    "rmdir": lambda p: os.rmdir(p("empty_dir")),
    "chmod": lambda p: os.chmod(p("big.bin"), 0o600),
}


def test_readonly_erofs(gtree, gftp, mounter):
    m = mounter(gftp.url)
    before = origintree.snapshot(gtree)
    for op, fn in sorted(READONLY_OPS.items()):
        with pytest.raises(OSError) as e:
            fn(m.path)
        assert e.value.errno == errno.EROFS, \
            f"{op}: {errno.errorcode.get(e.value.errno)}, want EROFS"
    assert origintree.snapshot(gtree) == before


# -- changes and failures at the origin --------------------------------------

def test_deleted_file_enoent_after_meta_ttl(own_gftp, mounter):
    ttl = 2
    layout = {"keep.bin": BLOCK + 5, "dir/gone.bin": 2 * BLOCK + 1,
              "dir/stays.txt": 10}
    g, root = own_gftp(layout)
    m = mounter(g.url, meta_ttl=ttl,
                expected_errors=[r"gone\.bin", r"(?i)\b550\b"])
    assert sorted(os.listdir(m.path("dir"))) == ["gone.bin", "stays.txt"]
    assert os.stat(m.path("dir/gone.bin")).st_size == layout["dir/gone.bin"]
    os.unlink(os.path.join(root, "dir/gone.bin"))
    # Within meta_ttl the name may still be known, but no bytes come back:
    # the server answers 550.
    res = read_in_child(m.path("dir/gone.bin"), timeout=60)
    assert res["errno"] in (errno.ENOENT, errno.EIO), \
        f"read of a file deleted at the origin: {res}"
    time.sleep(ttl + 1.5)
    with pytest.raises(FileNotFoundError):
        os.stat(m.path("dir/gone.bin"))
    with pytest.raises(FileNotFoundError):
        open(m.path("dir/gone.bin"), "rb").close()
    assert os.listdir(m.path("dir")) == ["stays.txt"]
    # Paths that never existed: 550 on the parent listing path too.
    with pytest.raises(FileNotFoundError):
        os.stat(m.path("no_such_dir/x"))
    origintree.assert_same_bytes(origintree.read_all(m.path("keep.bin")),
                                 data(root, "keep.bin"), "keep.bin")


def test_server_killed_cached_served_uncached_eio(own_gftp, mounter):
    layout = {"read/a.bin": 3 * BLOCK + 7, "read/b.txt": 500,
              "unread/c.bin": 2 * BLOCK, "unread/d.bin": 5 * BLOCK + 1}
    g, root = own_gftp(layout)
    m = mounter(g.url, meta_ttl=1, connect_timeout=2, stall_timeout=3,
                expected_errors=[re.escape(host_port(g.url)),
                                 r"unread/[cd]\.bin"])
    want_snap = listable_snapshot(root)
    assert not origintree.diff_snapshots(want_snap,
                                         walk_snapshot(m.mountpoint))
    for rel in ("read/a.bin", "read/b.txt"):
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     data(root, rel), rel)
    g.kill()
    time.sleep(1.5)   # past meta_ttl: revalidation fails, stale served
    diff = origintree.diff_snapshots(want_snap, walk_snapshot(m.mountpoint))
    assert not diff, f"listing with the server down differs:\n{diff}"
    for rel in ("read/a.bin", "read/b.txt"):
        res = read_in_child(m.path(rel), timeout=60)
        assert res["errno"] == 0 and res["size"] == layout[rel], \
            f"{rel} (cached) with the server down: {res}"
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     data(root, rel), rel + " (offline)")
    for rel in ("unread/c.bin", "unread/d.bin"):
        res = read_in_child(m.path(rel), timeout=90)
        assert res["errno"] == errno.EIO, \
            f"never-cached {rel} with the server down: want EIO, got {res}"


# -- GSI ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def gsi():
    if not shutil.which("grid-proxy-init"):
        pytest.skip("grid-proxy-init (globus-proxy-utils) missing")
    g = make_gsi()
    yield g
    shutil.rmtree(g.dir, ignore_errors=True)


@pytest.fixture
def gsi_server(gsi):
    layout = {"f.bin": 3 * MIB + 5, "sub/small.txt": 100}
    root = public_tree(layout, empty_dirs=())
    g = GridFTP(root, gsi=gsi).start()
    yield g, root
    g.stop()
    shutil.rmtree(root, ignore_errors=True)


def _gsi_env(monkeypatch, env):
    for k in ("X509_USER_CERT", "X509_USER_KEY", "X509_USER_PROXY",
              "X509_CERT_DIR"):
        monkeypatch.delenv(k, raising=False)
    for k in ("X509_USER_PROXY", "X509_CERT_DIR"):
        monkeypatch.setenv(k, env[k])


def test_gsiftp_mount_with_proxy(gsi, gsi_server, mounter, monkeypatch):
    g, root = gsi_server
    assert g.url.startswith("gsiftp://")
    _gsi_env(monkeypatch, gsi.client_env())   # inherited by the daemon
    m = mounter(g.url, block_size="256K")
    assert sorted(os.listdir(m.mountpoint)) == ["f.bin", "sub"]
    for rel in ("f.bin", "sub/small.txt"):
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     data(root, rel), rel + " (gsiftp)")
    fd = os.open(m.path("f.bin"), os.O_RDONLY)
    try:
        want = data(root, "f.bin")
        for off, n in ((4097, 2 * MIB + 3), (3 * MIB, 100), (1, 1)):
            assert os.pread(fd, n, off) == want[off:off + n]
    finally:
        os.close(fd)


def _mount_must_fail(tmp_path, url, pattern):
    mnt = tmp_path / "mnt-fail"
    mnt.mkdir()
    args = ["-o", f"cache_dir={tmp_path}/cache-fail,connect_timeout=3,"
            "stall_timeout=5", url, str(mnt)]
    try:
        r = run_dmsfs(args, timeout=120)
    finally:
        leftover = is_mounted(str(mnt))
        if leftover:
            run_fusermount(str(mnt), lazy=True)
    assert not leftover, f"{url} mounted although it should not"
    assert r.returncode != 0, f"exit 0\nstderr: {r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"want one line on stderr, got:\n{r.stderr}"
    assert re.search(pattern, lines[0]), \
        f"the error line does not say why ({pattern}): {lines[0]!r}"
    assert not find_daemon_pids(str(mnt))
    return lines[0]


def test_gsiftp_without_proxy_fails_clearly(gsi, gsi_server, tmp_path,
                                            monkeypatch):
    g, _ = gsi_server
    env = dict(gsi.client_env(), X509_USER_PROXY=str(tmp_path / "no-proxy"))
    _gsi_env(monkeypatch, env)
    _mount_must_fail(tmp_path, g.url,
                     r"(?i)permission denied|credential|proxy|EACCES|"
                     r"authenticat")


def test_ftp_login_refused_is_eacces(gsi, gsi_server, tmp_path, monkeypatch):
    """Anonymous ftp:// to a server that allows only GSI: 530 -> EACCES, a
    clear refusal rather than "unreachable"."""
    g, _ = gsi_server
    for k in ("X509_USER_PROXY", "X509_CERT_DIR"):
        monkeypatch.delenv(k, raising=False)
    url = "ftp://" + g.url.split("://", 1)[1]
    _mount_must_fail(tmp_path, url, r"(?i)permission denied|530|EACCES|"
                     r"login|refused")
