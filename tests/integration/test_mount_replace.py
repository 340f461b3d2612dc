"""A file replaced at the origin while it is being read (issue 7, defect 1),
and a listed file that the origin no longer has (404/550).

The promise: every byte a read returns is of the version the file had when
it was opened, or the read fails (EIO); nothing of another version is cached
under that version's identity, so a reopen (after the failed read made the
daemon revalidate the file's metadata, without waiting for meta_ttl) returns
the new version whole; and the log says why.  Replacements are same-size
(the size check cannot see them) with a later mtime, over each validator an
origin may give: Last-Modified only (nginx `etag off;`, the fake origin's
default), ETag and Last-Modified, nginx with ETags on (its listing has no
ETag, so only Last-Modified can tell), a Squid in between, 200 whole-file
replies, and GridFTP (no validator in a partial get: MLST is asked after
the transfer).  A replacement within the same second by a file of the same
size and no other validator cannot be seen (README); none is tried here.

The fake origin switches versions after N GETs, so the switch falls in the
middle of a read deterministically; with nginx and GridFTP the file is
renamed over between two reads of one open handle."""
import errno
import mmap
import os
import re
import shutil

import pytest

import origintree
from fakeorigin import FakeFile, FakeOrigin
from gridftp_origin import SERVER as GFTP_SERVER
from gridftp_origin import GridFTP, make_root
from origin import Nginx, Squid
from origintree import BASE_MTIME, BLOCK, MIB

NEW_MTIME = BASE_MTIME + 86_400
CHANGED = r"changed at the source|revalidat"
READ_FAILED = r"read of /\S+ at \d+"


def versions(name, size):
    old = origintree.content("old:" + name, size)
    new = origintree.content("new:" + name, size)
    assert old != new
    return old, new


def pread_chunks(fd, start, end, chunk=BLOCK):
    """Reads [start, end) of fd in chunk-sized preads, going on after
    errors: [(offset, bytes or errno)]."""
    out = []
    for off in range(start, end, chunk):
        try:
            out.append((off, os.pread(fd, chunk, off)))
        except OSError as e:
            out.append((off, e.errno))
    return out


def read_chunks(path):
    """Reads path front to back on one handle (see pread_chunks)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return pread_chunks(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def assert_old_or_eio(results, old, what, want_eio=True):
    """Every chunk is exactly the old version's bytes or failed with EIO;
    with want_eio, at least one failed (the rest of the file was never
    fetched before the replacement)."""
    eios = 0
    for off, got in results:
        if isinstance(got, int):
            assert got == errno.EIO, (
                f"{what}: read at {off} failed with "
                f"{errno.errorcode.get(got, got)}, want EIO")
            eios += 1
            continue
        want = old[off:off + len(got)]
        if got != want:
            d = origintree.first_difference(got, want)
            raise AssertionError(
                f"{what}: read at {off} ({len(got)} bytes) returned bytes "
                f"that are not the version opened (first difference at "
                f"file offset {off + d}): a torn read")
    if want_eio:
        assert eios, (f"{what}: the whole file was read although it was "
                      f"replaced before most of it was fetched")


def assert_log_says(m, *patterns):
    log = m.log()
    for p in patterns:
        assert re.search(p, log), f"no log line matches {p!r}:\n{log[-3000:]}"


# -- the fake origin: deterministic switch after N GETs -----------------------

@pytest.fixture
def fake():
    started = []

    def start(files):
        fo = FakeOrigin(files).start()
        started.append(fo)
        return fo
    yield start
    for fo in started:
        fo.stop()


@pytest.fixture
def squid():
    sq = Squid()
    try:
        sq.start()
    except (OSError, RuntimeError) as e:
        pytest.skip(f"squid cannot run here: {e}")
    yield sq
    sq.stop()


VALIDATORS = {
    "last-modified": ("last-modified",),
    "etag+last-modified": ("etag", "last-modified"),
}


@pytest.mark.parametrize("then", ["new", "reverted"])
@pytest.mark.parametrize("validators", sorted(VALIDATORS))
def test_fake_replaced_mid_read_never_torn(fake, mounter, validators, then):
    """The origin switches to a same-size new version after the first GET;
    a sequential reader sees the old bytes or EIO, a reopen the new.  Or
    the origin goes back to the old version: a reopen (same identity as
    the first open, blocks from the cache) must then return the old bytes
    whole, so nothing of the new version was cached under the old one."""
    name = "switch.bin"
    old, new = versions(name, 3 * MIB + 5)
    v = VALIDATORS[validators]
    fo = fake({name: FakeFile(old, validators=v, replace_after=1,
                              replacement=FakeFile(new, mtime=NEW_MTIME,
                                                   validators=v))})
    m = mounter(fo.url, meta_ttl=3600, readahead="0",
                expected_errors=[CHANGED, READ_FAILED])
    assert_old_or_eio(read_chunks(m.path(name)), old,
                      f"{name} ({validators})")
    assert_log_says(m, r"GET \S+/switch\.bin: (ETag|Last-Modified) .*"
                       r"file changed at the source", CHANGED)
    want = new
    if then == "reverted":
        fo.replace(name, FakeFile(old, validators=v))
        want = old
    origintree.assert_same_bytes(origintree.read_all(m.path(name)), want,
                                 f"{name} reopened ({then} version)")


def test_fake_replaced_mid_read_via_squid(fake, squid, mounter):
    """Squid passes the origin's Last-Modified through: the same check
    holds on the proxy path."""
    name = "proxied.bin"
    old, new = versions(name, 3 * MIB + 5)
    fo = fake({name: FakeFile(old, replace_after=1,
                              replacement=FakeFile(new, mtime=NEW_MTIME))})
    m = mounter(fo.url, meta_ttl=3600, readahead="0", proxy=squid.url,
                expected_errors=[CHANGED, READ_FAILED])
    assert_old_or_eio(read_chunks(m.path(name)), old, name + " via squid")
    assert_log_says(m, r"Last-Modified .* file changed at the source")
    origintree.assert_same_bytes(origintree.read_all(m.path(name)), new,
                                 name + " reopened after the replacement")
    assert any("proxied.bin" in line for line in squid.requests())


def direct_pread(fd, length, offset):
    """One O_DIRECT read() into an aligned buffer: the kernel passes it to
    the daemon as one request."""
    buf = mmap.mmap(-1, length)
    try:
        n = os.preadv(fd, [buf], offset)
        return bytes(buf[:n])
    finally:
        buf.close()


def test_fake_replaced_between_runs_of_one_read(fake, mounter):
    """One read() over 16 blocks whose middle block is cached from the old
    version: the runs on either side are fetched after the switch.  The
    read fails whole; it never returns new runs around an old block."""
    name = "runs.bin"
    n = 16
    old, new = versions(name, n * BLOCK)
    fo = fake({name: FakeFile(old, replace_after=1,
                              replacement=FakeFile(new, mtime=NEW_MTIME))})
    m = mounter(fo.url, meta_ttl=3600, readahead="0",
                expected_errors=[CHANGED, READ_FAILED])
    fd = os.open(m.path(name), os.O_RDONLY | os.O_DIRECT)
    try:
        mid = 5 * BLOCK
        assert direct_pread(fd, BLOCK, mid) == old[mid:mid + BLOCK]
        assert len(fo.requests_for(name)) == 1
        try:
            got = direct_pread(fd, n * BLOCK, 0)
        except OSError as e:
            assert e.errno == errno.EIO, e
        else:
            assert_old_or_eio([(0, got)], old, "one read over 16 blocks",
                              want_eio=False)
            raise AssertionError("a read over blocks fetched after the "
                                 "replacement succeeded")
    finally:
        os.close(fd)
    assert_log_says(m, r"Last-Modified .* file changed at the source")
    origintree.assert_same_bytes(origintree.read_all(m.path(name)), new,
                                 name + " reopened after the replacement")


def test_fake_whole_file_200_of_another_version_refused(fake, mounter):
    """A server without Range support answers 200 with the whole file: a
    body of the same size but another Last-Modified is not the version the
    handle opened."""
    name = "small.bin"
    old, new = versions(name, 5000)
    fo = fake({name: FakeFile(old, "ignore_range")})
    m = mounter(fo.url, meta_ttl=3600, readahead="0",
                expected_errors=[CHANGED, READ_FAILED])
    with open(m.path(name), "rb") as f:
        fo.replace(name, FakeFile(new, "ignore_range", mtime=NEW_MTIME))
        try:
            got = f.read()
        except OSError as e:
            assert e.errno == errno.EIO, e
        else:
            assert got == old, ("a 200 reply of a new version was taken "
                                "for the version opened")
    assert_log_says(m, r"Last-Modified .* file changed at the source")
    origintree.assert_same_bytes(origintree.read_all(m.path(name)), new,
                                 name + " reopened after the replacement")


def test_fake_no_validators_size_change_refused(fake, mounter):
    """No Last-Modified, no ETag: the Content-Range total still tells a
    replacement of another size."""
    name = "bare.bin"
    old = origintree.content("old:" + name, 3 * MIB + 5)
    new = origintree.content("new:" + name, 3 * MIB + 4101)
    fo = fake({name: FakeFile(old, validators=(), replace_after=1,
                              replacement=FakeFile(new, mtime=NEW_MTIME,
                                                   validators=()))})
    m = mounter(fo.url, meta_ttl=3600, readahead="0",
                expected_errors=[CHANGED, READ_FAILED])
    assert_old_or_eio(read_chunks(m.path(name)), old, name)
    assert_log_says(m, r"size is now \d+, expected \d+: file changed")
    origintree.assert_same_bytes(origintree.read_all(m.path(name)), new,
                                 name + " reopened after the replacement")


# -- real servers: the file renamed over between reads of one handle ---------

def replace_by_rename(path, data, mtime):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, path)


def read_replace_read(m, rel, local, old, new, first=2 * BLOCK):
    """Opens rel, reads its first bytes, renames a new version over it at
    the origin, reads the rest (cold blocks) on the same handle."""
    fd = os.open(m.path(rel), os.O_RDONLY)
    try:
        got = os.pread(fd, first, 0)
        assert got == old[:first]
        replace_by_rename(local, new, NEW_MTIME)
        # Past what kernel read-ahead (128 KiB) may have fetched already.
        return pread_chunks(fd, first + 4 * BLOCK, len(old))
    finally:
        os.close(fd)


@pytest.mark.parametrize("etag", ["off", "on"])
def test_nginx_replaced_mid_read_never_torn(tmp_path, mounter, etag):
    root = tmp_path / "origin"
    rel = "run_000001.nxs"
    old, new = versions(rel, 4 * MIB + 3)
    origintree.write_file(str(root), rel, data=old, mtime=BASE_MTIME)
    ng = Nginx(str(root), extra_server_conf=f"etag {etag};").start()
    try:
        m = mounter(ng.url, meta_ttl=3600, readahead="0",
                    expected_errors=[CHANGED, READ_FAILED])
        res = read_replace_read(m, rel, str(root / rel), old, new)
        assert_old_or_eio(res, old, f"{rel} (nginx etag {etag})")
        assert_log_says(m, r"Last-Modified .* file changed at the source",
                        CHANGED)
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)), new,
                                     rel + " reopened after the replacement")
        m.umount()
    finally:
        ng.stop()


@pytest.fixture
def gftp_root():
    if os.geteuid() != 0 or not os.access(GFTP_SERVER, os.X_OK):
        pytest.skip("needs root and globus-gridftp-server")
    root = make_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_gridftp_replaced_mid_read_never_torn(gftp_root, mounter):
    rel = "run_000002.nxs"
    old, new = versions(rel, 4 * MIB + 3)
    local = os.path.join(gftp_root, rel)
    origintree.write_file(gftp_root, rel, data=old, mtime=BASE_MTIME)
    os.chmod(local, 0o644)
    g = GridFTP(gftp_root).start()
    try:
        m = mounter(g.url, meta_ttl=3600, readahead="0",
                    expected_errors=[CHANGED, READ_FAILED])
        res = read_replace_read(m, rel, local, old, new)
        assert_old_or_eio(res, old, rel + " over GridFTP")
        assert_log_says(m, r"MLST size \d+ modify \d+, expected .* file "
                           r"changed at the source", CHANGED)
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)), new,
                                     rel + " reopened after the replacement")
        m.umount()
    finally:
        g.stop()


# -- a listed file the origin no longer has ----------------------------------

def deleted_while_listed(m, rel, local):
    """rel is listed (and its listing cached for an hour); the origin then
    loses it.  Reading gives ENOENT, and the name is gone from stat and
    the listing at once, not after meta_ttl."""
    d, name = os.path.split(rel)
    assert name in os.listdir(m.path(d) if d else m.path())
    with open(m.path(rel), "rb") as f:
        os.unlink(local)
        with pytest.raises(OSError) as e:
            f.read(4096)
    assert e.value.errno == errno.ENOENT, (
        f"read of {rel} deleted at the origin: "
        f"{errno.errorcode.get(e.value.errno)}, want ENOENT")
    with pytest.raises(FileNotFoundError):
        os.stat(m.path(rel))
    assert name not in os.listdir(m.path(d) if d else m.path())
    assert_log_says(m, r"does not exist; revalidating")


def test_nginx_404_for_listed_file_enoent_and_relisted(tmp_path, mounter):
    root = tmp_path / "origin"
    rel = "sub/gone.bin"
    origintree.write_file(str(root), rel, size=3 * BLOCK, mtime=BASE_MTIME)
    origintree.write_file(str(root), "sub/stays.bin", size=10,
                          mtime=BASE_MTIME)
    ng = Nginx(str(root)).start()
    try:
        m = mounter(ng.url, meta_ttl=3600, readahead="0",
                    expected_errors=[r"gone\.bin", r"\b404\b"])
        deleted_while_listed(m, rel, str(root / rel))
        assert os.listdir(m.path("sub")) == ["stays.bin"]
        m.umount()
    finally:
        ng.stop()


def test_gridftp_550_for_listed_file_enoent_and_relisted(gftp_root, mounter):
    rel = "sub/gone.bin"
    for r, size in ((rel, 3 * BLOCK), ("sub/stays.bin", 10)):
        origintree.write_file(gftp_root, r, size=size, mtime=BASE_MTIME)
        os.chmod(os.path.join(gftp_root, r), 0o644)
    os.chmod(os.path.join(gftp_root, "sub"), 0o755)
    g = GridFTP(gftp_root).start()
    try:
        m = mounter(g.url, meta_ttl=3600, readahead="0",
                    expected_errors=[r"gone\.bin", r"(?i)\b550\b"])
        deleted_while_listed(m, rel, os.path.join(gftp_root, rel))
        m.umount()
    finally:
        g.stop()
