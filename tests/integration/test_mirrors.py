"""Mirrors across protocols: one tree served by nginx (http://) and by a
GridFTP server (ftp://) from the same directory, mounted with both sources
in one URL argument ("A;B", in order of preference).

- Listings through either protocol are identical (names, kinds, sizes,
  mtimes, modes), and the same through a mirror mount.
- Failover inside a read: the preferred source is killed while a large file
  is being read; the read completes with the origin's bytes.  The killed
  source is brought back on its port and the other one killed: reads work
  again through the first (which the log reports back).
- A stalled source (SIGSTOP: connections open, nothing answers) is given up
  after stall_timeout and the read moves on, again without an error.
- Blocks fetched through one protocol stay usable when the metadata is
  later revalidated through the other.

Needs root, /dev/fuse, build/dmsfs, nginx and globus-gridftp-server."""
import hashlib
import os
import re
import shutil
import signal
import stat
import threading
import time

import pytest

import mount as mountlib
import origintree
from gftp_tree import (is_ascii, listable_snapshot, public_tree,
                       restart_gridftp, restart_nginx)
from fakeorigin import FakeFile, FakeOrigin
from gridftp_origin import SERVER, GridFTP
from origin import Nginx
from origintree import KIB, MIB

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE, nginx, "
                       "gridftp server sessions as nobody)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(mountlib.DMSFS, os.X_OK),
                       reason=f"{mountlib.DMSFS} is not built (run make)"),
    pytest.mark.skipif(not os.access(SERVER, os.X_OK),
                       reason="globus-gridftp-server is not installed"),
]

BLOCK = 64 * KIB
BIG = "big/first.nxs"
SECOND = "big/second.nxs"
BIG_LAYOUT = {BIG: 40 * MIB + 4321, SECOND: 24 * MIB + 99,
              "big/mid.bin": 2 * MIB + 5, "big/small.txt": 1000}
KILL_AFTER = 8 * MIB     # bytes read before the preferred source dies
CHUNK = 1 * MIB


class Origins:
    """nginx and GridFTP over one directory; .by_name("ftp"/"http")."""

    def __init__(self, root):
        self.root = root
        self.nginx = Nginx(root)
        self.gftp = GridFTP(root)

    def start(self):
        self.nginx.start()
        self.gftp.start()
        return self

    def stop(self):
        self.nginx.stop()
        self.gftp.stop()

    def url(self, proto):
        return self.gftp.url if proto == "ftp" else self.nginx.url

    def kill(self, proto):
        if proto == "ftp":
            self.gftp.kill()
        else:
            self.nginx.stop()

    def restart(self, proto):
        if proto == "ftp":
            restart_gridftp(self.gftp)
        else:
            restart_nginx(self.nginx)

    def freeze(self, proto, sig):
        """SIGSTOP/SIGCONT the server of proto (listener and sessions)."""
        if proto == "ftp":
            self.gftp.signal_all(sig)
        else:
            # nginx: our Popen is the master; its workers are its children.
            master = self.nginx.proc.pid
            for pid in [master] + _children(master):
                os.kill(pid, sig)


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry))
    return kids


@pytest.fixture
def big_origins():
    root = public_tree(BIG_LAYOUT, empty_dirs=())
    o = Origins(root)
    try:
        o.start()
        yield o
    finally:
        o.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def std_origins():
    root = public_tree(origintree.standard_layout(BLOCK))
    o = Origins(root)
    try:
        o.start()
        yield o
    finally:
        o.stop()
        shutil.rmtree(root, ignore_errors=True)


def host_port(url):
    return url.split("://", 1)[1].split("/", 1)[0]


def source_url(url):
    """A source as the daemon names it in its log (no trailing '/')."""
    return url.rstrip("/")


def sha256_of(root, rel):
    with open(os.path.join(root, rel), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def full_snapshot(mnt):
    """relpath -> (kind, size, mtime, permission bits) for a mount, not
    descending into non-ASCII directories (GridFTP cannot list them)."""
    out = {}

    def visit(rel_dir):
        for name in os.listdir(os.path.join(mnt, rel_dir)):
            rel = os.path.join(rel_dir, name) if rel_dir else name
            st = os.lstat(os.path.join(mnt, rel))
            kind = "d" if stat.S_ISDIR(st.st_mode) else \
                "f" if stat.S_ISREG(st.st_mode) else "?"
            out[rel] = (kind, st.st_size, int(st.st_mtime),
                        oct(stat.S_IMODE(st.st_mode)))
            if kind == "d" and is_ascii(rel):
                visit(rel)
    visit("")
    return out


def diff_full(a, b, what_a, what_b, limit=20):
    lines = []
    for rel in sorted(set(a) | set(b)):
        if a.get(rel) != b.get(rel):
            lines.append(f"{rel!r}: {what_a} {a.get(rel)} {what_b} "
                         f"{b.get(rel)} (kind, size, mtime, mode)")
    return "\n".join(lines[:limit])


def read_with_kill(path, after, action, chunk=CHUNK):
    """Reads path sequentially; once `after` bytes are read, runs action()
    in another thread and waits for it before reading on, so the rest of
    the file has to come through whatever is left.  Returns (sha256, size).
    Any read error propagates: the reader must see none."""
    trigger, done = threading.Event(), threading.Event()
    failure = []

    def killer():
        trigger.wait(300)
        try:
            action()
        except BaseException as e:   # reported by the reader
            failure.append(e)
        finally:
            done.set()
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    h, n = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, chunk)
            if not b:
                break
            h.update(b)
            n += len(b)
            if n >= after and not trigger.is_set():
                trigger.set()
                assert done.wait(60), "killing the source took over 60 s"
                if failure:
                    raise failure[0]
    finally:
        os.close(fd)
        trigger.set()
        t.join(60)
    assert trigger.is_set() and done.is_set(), \
        f"the file ended before {after} bytes: nothing was killed"
    return h.hexdigest(), n


def log_lines_about(m, url, pattern):
    return [line for line in m.log().splitlines()
            if source_url(url) in line and re.search(pattern, line)]


def wait_backoff(m, url, bound=65):
    """Sleeps past the source's current back-off period, read from the
    daemon's last 'taken out for N s' / 'next try in N s' line about it."""
    secs = 5
    for line in log_lines_about(m, url, r"taken out for|next try in"):
        mo = re.search(r"(?:taken out for|next try in) (\d+) s", line)
        if mo:
            secs = int(mo.group(1))
    time.sleep(min(secs + 1, bound))


# -- identical listings ----------------------------------------------------------

def test_listings_identical_across_protocols(std_origins, mounter):
    o = std_origins
    m_http = mounter(o.url("http"))
    m_ftp = mounter(o.url("ftp"))
    m_both = mounter(f"{o.url('ftp')};{o.url('http')}")
    assert sorted(os.listdir(m_http.mountpoint)) == \
        sorted(os.listdir(m_ftp.mountpoint)) == sorted(os.listdir(o.root))
    s_http = full_snapshot(m_http.mountpoint)
    s_ftp = full_snapshot(m_ftp.mountpoint)
    s_both = full_snapshot(m_both.mountpoint)
    diff = diff_full(s_http, s_ftp, "http", "ftp")
    assert not diff, f"http and ftp listings of one tree differ:\n{diff}"
    diff = diff_full(s_http, s_both, "http", "ftp;http")
    assert not diff, f"the mirror mount's listing differs:\n{diff}"
    # And they are the origin's (files: size and mtime).
    want = listable_snapshot(o.root)
    got = {rel: v[:3] if v[0] == "f" else ("d", None, None)
           for rel, v in s_ftp.items()}
    diff = origintree.diff_snapshots(want, got)
    assert not diff, f"listing differs from the origin:\n{diff}"


def test_mirror_mount_reads_byte_exact(std_origins, mounter):
    o = std_origins
    m = mounter(f"{o.url('http')};{o.url('ftp')}")
    for rel in sorted(origintree.standard_layout(BLOCK)):
        with open(os.path.join(o.root, rel), "rb") as f:
            want = f.read()
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)), want,
                                     rel)


# -- failover -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("first,second", [("ftp", "http"), ("http", "ftp")],
                         ids=["ftp-first", "http-first"])
def test_kill_preferred_source_mid_read(big_origins, mounter, first, second):
    o = big_origins
    url1, url2 = o.url(first), o.url(second)
    m = mounter(f"{url1};{url2}", block_size="64K", connect_timeout=2,
                stall_timeout=5,
                expected_errors=[re.escape(host_port(url1)),
                                 re.escape(host_port(url2))])
    assert sorted(os.listdir(m.path("big"))) == sorted(
        os.path.basename(r) for r in BIG_LAYOUT)

    # 1. The preferred source dies in the middle of a large read.
    digest, n = read_with_kill(m.path(BIG), KILL_AFTER,
                               lambda: o.kill(first))
    assert n == BIG_LAYOUT[BIG], f"read {n} bytes of {BIG_LAYOUT[BIG]}"
    assert digest == sha256_of(o.root, BIG), \
        f"{BIG}: bytes differ from the origin after failover"
    assert log_lines_about(m, url1, r"taken out"), (
        f"the read did not go through the failover ({first} never taken "
        f"out); log:\n{m.log()[-3000:]}")

    # 2. It comes back on its port; the other one dies.  After the
    # back-off the first is asked again and serves the reads.
    o.restart(first)
    o.kill(second)
    wait_backoff(m, url1)
    got = origintree.read_all(m.path(SECOND))
    origintree.assert_same_bytes(got, open(os.path.join(
        o.root, SECOND), "rb").read(), f"{SECOND} via {first} after it "
        "came back")
    assert log_lines_about(m, url1, r"is back"), (
        f"no log line says {first} is back; log:\n{m.log()[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("first,second", [("ftp", "http"), ("http", "ftp")],
                         ids=["ftp-first", "http-first"])
def test_stalled_preferred_source_mid_read(big_origins, mounter, first,
                                           second):
    """SIGSTOP: connections stay open and nothing answers; only the stall
    deadline can take the source out.  The reader sees no error."""
    o = big_origins
    url1, url2 = o.url(first), o.url(second)
    m = mounter(f"{url1};{url2}", block_size="64K", connect_timeout=2,
                stall_timeout=3, readahead="1M",
                expected_errors=[re.escape(host_port(url1))])
    os.listdir(m.path("big"))
    try:
        digest, n = read_with_kill(m.path(SECOND), 4 * MIB,
                                   lambda: o.freeze(first, signal.SIGSTOP))
    finally:
        o.freeze(first, signal.SIGCONT)
    assert n == BIG_LAYOUT[SECOND]
    assert digest == sha256_of(o.root, SECOND), \
        f"{SECOND}: bytes differ from the origin after a stall failover"
    assert log_lines_about(m, url1, r"taken out"), \
        f"the stalled {first} was never taken out"


def read_uncached(path):
    """Reads a whole file in a child process after dropping its pages from
    the kernel page cache, so the bytes come from the daemon."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return mountlib.read_in_child(path, timeout=90)


@pytest.mark.parametrize("first,second", [("http", "ftp"), ("ftp", "http")],
                         ids=["http-then-ftp", "ftp-then-http"])
def test_blocks_survive_metadata_switching_protocol(big_origins, mounter,
                                                    first, second):
    """Blocks cached through one protocol stay valid when the listing is
    later revalidated through the other (whose ETag differs: nginx sends
    one, GridFTP none): with both sources then gone, a file read before is
    still served from the block cache."""
    o = big_origins
    url1, url2 = o.url(first), o.url(second)
    m = mounter(f"{url1};{url2}", meta_ttl=1, connect_timeout=2,
                stall_timeout=3,
                expected_errors=[re.escape(host_port(url1)),
                                 re.escape(host_port(url2))])
    rel = "big/mid.bin"
    want = open(os.path.join(o.root, rel), "rb").read()
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)), want, rel)
    o.kill(first)
    time.sleep(1.5)                       # past meta_ttl
    assert os.stat(m.path(rel)).st_size == len(want)  # revalidated via 2nd
    assert log_lines_about(m, url1, r"taken out")
    o.kill(second)                        # no source left for data
    res = read_uncached(m.path(rel))
    assert res["errno"] == 0 and res["size"] == len(want), (
        f"{rel}, read and cached through {first}, was not served from the "
        f"block cache once its metadata came through {second}: {res}")
    assert res["sha256"] == hashlib.sha256(want).hexdigest()


class EtagOrigin(FakeOrigin):
    """A WebDAV origin whose PROPFIND carries getetag (as Apache mod_dav,
    dCache or EOS send; nginx's dav_ext does not), so that http and ftp
    mirrors of one file report different validators.  fail() makes it
    answer 503 to everything (stop() would leave kept-alive connections
    served)."""

    def fail(self):
        for f in self.files.values():
            f.behaviour = "status:503"
        self.failing = True

    def multistatus(self, entries):
        if getattr(self, "failing", False):
            raise ConnectionAbortedError("origin made to fail")
        body = super().multistatus(entries)
        return body.replace("</D:getcontentlength>",
                            '</D:getcontentlength><D:getetag>"v1-etag"'
                            "</D:getetag>")


def test_blocks_survive_metadata_switching_protocol_with_etags(mounter):
    rel = "mid.bin"
    root = public_tree({}, empty_dirs=())
    want = origintree.write_file(root, rel, size=2 * MIB + 5,
                                 mtime=origintree.BASE_MTIME)
    os.chmod(os.path.join(root, rel), 0o644)
    web = EtagOrigin({rel: FakeFile(want)}).start()
    web._httpd.handle_error = lambda *a: None   # fail() aborts on purpose
    g = GridFTP(root)
    try:
        g.start()
        url1, url2 = web.url, g.url
        m = mounter(f"{url1};{url2}", meta_ttl=1, connect_timeout=2,
                    stall_timeout=3,
                    expected_errors=[re.escape(host_port(url1)),
                                     re.escape(host_port(url2)),
                                     re.escape(rel)])
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)), want,
                                     rel)
        web.fail()
        time.sleep(1.5)                    # past meta_ttl
        assert os.stat(m.path(rel)).st_size == len(want)  # via ftp now
        assert log_lines_about(m, url1, r"taken out")
        g.kill()                           # no source left for data
        res = read_uncached(m.path(rel))
        assert res["errno"] == 0 and res["size"] == len(want), (
            f"{rel}, read and cached through http (ETag \"v1-etag\"), was not "
            f"served from the block cache once its metadata came through "
            f"ftp (no ETag): {res}")
        assert res["sha256"] == hashlib.sha256(want).hexdigest()
    finally:
        web.stop()
        g.stop()
        shutil.rmtree(root, ignore_errors=True)
