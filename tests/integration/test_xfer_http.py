"""transfer/ HTTP/WebDAV backend against a real nginx (WebDAV + dav-ext) and
small misbehaving Python servers, through build/tools/xferctl.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider \
    tests/integration/test_xfer_http.py -v
All traffic stays on 127.0.0.1.
"""
import http.client
import http.server
import os
import random
import re
import socketserver
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from origin import Nginx, Squid, closed_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# XFERCTL=... runs the tests with another build (e.g. a sanitizer one).
XFERCTL = os.environ.get("XFERCTL") or os.path.join(ROOT, "build", "tools", "xferctl")

ODD_NAMES = ["a b.txt", "hash#1", "pct%41", "q?x", "plus+sign", "semi;colon",
             "amp&lt;", "\u00e9\u65e5\u672c.bin", "quote\"s", "tab\tname",
             "star*", "brackets[1]", "~tilde", "lead space", "dots..."]
BIG_SIZE = 3 * 1024 * 1024 + 17


def xferctl(*args, timeout=60):
    t0 = time.monotonic()
    r = subprocess.run([XFERCTL] + [str(a) for a in args], capture_output=True,
                       timeout=timeout)
    r.elapsed = time.monotonic() - t0
    r.err = r.stderr.decode(errors="replace")
    return r


def ok(*args, **kw):
    r = xferctl(*args, **kw)
    assert r.returncode == 0, r.err
    return r


def parse_lines(out):
    """type size mtime etag name, tab-separated (a name may hold a tab)."""
    rows = {}
    for line in out.decode().split("\n"):
        if not line:
            continue
        t, size, mtime, etag, name = line.split("\t", 4)
        rows[name] = (t, int(size), int(mtime), etag)
    return rows


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("origin")
    os.chmod(d, 0o755)
    rnd = random.Random(1234)
    for i, n in enumerate(ODD_NAMES):
        (d / n).write_bytes(("content of %s\n" % n).encode() * (i + 1))
    (d / "sub dir").mkdir()
    (d / "sub dir" / "inner #file").write_bytes(b"inner\n")
    (d / "big.bin").write_bytes(bytes(rnd.getrandbits(8) for _ in range(BIG_SIZE)))
    (d / "empty").write_bytes(b"")
    many = d / "many"
    many.mkdir()
    for i in range(5000):
        (many / ("f %04d \u00e9" % i)).write_bytes(b"x" * (i % 7))
    mt = 1700000000
    os.utime(d / "a b.txt", (mt, mt))
    return d


@pytest.fixture(scope="module")
def origin(tree):
    with Nginx(str(tree)) as ng:
        yield ng


def test_stat(origin, tree):
    r = ok("stat", origin.url, "/a b.txt")
    rows = parse_lines(r.stdout)
    assert rows["/a b.txt"][:3] == ("f", os.path.getsize(tree / "a b.txt"),
                                    1700000000)
    for p in ["/", "/sub dir", "/sub dir/", "/many"]:
        rows = parse_lines(ok("stat", origin.url, p).stdout)
        assert list(rows.values())[0][0] == "d", p
    rows = parse_lines(ok("stat", origin.url, "/empty").stdout)
    assert rows["/empty"][:2] == ("f", 0)
    # A source URL with a trailing '/' and a path prefix.
    rows = parse_lines(ok("stat", origin.url + "/sub dir/".replace(" ", "%20"),
                          "/inner #file").stdout)
    assert rows["/inner #file"][:2] == ("f", 6)


def test_list_odd_names(origin, tree):
    rows = parse_lines(ok("list", origin.url, "/").stdout)
    want = set(os.listdir(tree))
    assert set(rows) == want
    for n in ODD_NAMES:
        assert rows[n][0] == "f"
        assert rows[n][1] == os.path.getsize(tree / n), n
    assert rows["sub dir"][0] == "d"
    assert rows["many"][:2] == ("d", 0)
    rows = parse_lines(ok("list", origin.url, "/sub dir").stdout)
    assert set(rows) == {"inner #file"}
    # Each odd name can be stat'ed and read back by name.
    for n in ODD_NAMES:
        r = ok("read", origin.url, "/" + n)
        assert r.stdout == (tree / n).read_bytes(), n


def test_list_5000(origin, tree):
    r = ok("list", origin.url, "/many")
    rows = parse_lines(r.stdout)
    assert len(rows) == 5000
    assert set(rows) == set(os.listdir(tree / "many"))
    assert rows["f 0013 \u00e9"][:2] == ("f", 13 % 7)
    assert r.elapsed < 10


def test_read_exact(origin, tree):
    data = (tree / "big.bin").read_bytes()
    cases = [(0, 1), (1, 1), (4095, 3), (1048575, 2), (1048576, 1),
             (BIG_SIZE - 1, 1), (BIG_SIZE - 1000, 1000), (12345, 2 * 1048576 + 7),
             (0, BIG_SIZE)]
    for off, n in cases:
        r = ok("read", origin.url, "/big.bin", off, n)
        assert r.stdout == data[off:off + n], (off, n)
    # Zero bytes at the very end is fine and sends no GET.
    assert ok("read", origin.url, "/big.bin", BIG_SIZE, 0).stdout == b""
    # Empty file.
    assert ok("read", origin.url, "/empty").stdout == b""


def test_keepalive(origin):
    """One xferctl run reads 3 MiB in 1 MiB calls: one connection."""
    before = len(origin.requests())
    ok("read", origin.url, "/big.bin")
    lines = origin.requests()[before:]
    assert len(lines) == 5, lines          # PROPFIND + 4 GETs
    conns = {re.search(r"conn=(\d+)", l).group(1) for l in lines}
    assert len(conns) == 1, lines
    assert all(' 206 ' in l for l in lines if l.startswith("GET"))


def test_errors(origin):
    r = xferctl("stat", origin.url, "/nope")
    assert r.returncode == 1 and "ENOENT" in r.err
    r = xferctl("read", origin.url, "/nope")
    assert r.returncode == 1 and "ENOENT" in r.err
    r = xferctl("read", "-Z", 10, origin.url, "/nope", 0, 5)
    assert r.returncode == 1 and "ENOENT" in r.err
    r = xferctl("list", origin.url, "/a b.txt")
    assert r.returncode == 1 and "ENOTDIR" in r.err
    r = xferctl("list", origin.url, "/nope/")
    assert r.returncode == 1 and "ENOENT" in r.err


def test_stale(origin, tree):
    size = os.path.getsize(tree / "a b.txt")
    # Size changed behind our back: Content-Range total differs.
    r = xferctl("read", "-Z", size + 5, origin.url, "/a b.txt", 0, 3)
    assert r.returncode == 1 and "ESTALE" in r.err and r.stdout == b""
    # Past the real end: 416.
    r = xferctl("read", "-Z", size + 100, origin.url, "/a b.txt", size + 10, 3)
    assert r.returncode == 1 and "ESTALE" in r.err
    # ETag changed (nginx sends one on GET).
    r = xferctl("read", "-E", '"deadbeef-1"', origin.url, "/a b.txt", 0, 3)
    assert r.returncode == 1 and "ESTALE" in r.err and r.stdout == b""
    # Weak/strong forms of the same ETag are the same file.
    st = os.stat(tree / "a b.txt")
    etag = '"%x-%x"' % (int(st.st_mtime), st.st_size)
    r = ok("read", "-E", "W/" + etag, origin.url, "/a b.txt", 0, 3)
    assert r.stdout == (tree / "a b.txt").read_bytes()[:3]
    # Last-Modified (nginx sends it on GET; its listing has no ETag) names
    # another second than the version known: changed.  Same second: same.
    mt = int(st.st_mtime)
    r = xferctl("read", "-Z", size, "-M", mt + 1, origin.url, "/a b.txt", 0, 3)
    assert r.returncode == 1 and "ESTALE" in r.err and r.stdout == b""
    assert "Last-Modified" in r.err
    r = ok("read", "-Z", size, "-M", mt, origin.url, "/a b.txt", 0, 3)
    assert r.stdout == (tree / "a b.txt").read_bytes()[:3]


def test_listing_cap(origin):
    r = xferctl("list", "-m", 4096, origin.url, "/many")
    assert r.returncode == 1 and "EFBIG" in r.err
    assert "max_listing_bytes" in r.err


# -- misbehaving servers -----------------------------------------------------

class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler):
    srv = _Server(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = "http://127.0.0.1:%d" % srv.server_address[1]
    return srv


BODY = bytes(range(256)) * 40      # 10240 bytes


class NoRange(http.server.BaseHTTPRequestHandler):
    """Ignores Range: always 200 with the whole body."""
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *a):
        pass


class Truncating(http.server.BaseHTTPRequestHandler):
    """Honours Range but sends half the promised body, then closes."""
    hits = 0

    def do_GET(self):
        Truncating.hits += 1
        m = re.match(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        a, b = int(m.group(1)), int(m.group(2))
        part = BODY[a:b + 1]
        self.send_response(206)
        self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, len(BODY)))
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        self.wfile.write(part[:len(part) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *a):
        pass


class WrongRange(http.server.BaseHTTPRequestHandler):
    """206 for another range than the one asked."""
    def do_GET(self):
        self.send_response(206)
        self.send_header("Content-Range", "bytes 0-9/%d" % len(BODY))
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(BODY[:10])

    def log_message(self, *a):
        pass


class Failing(http.server.BaseHTTPRequestHandler):
    """503 to everything."""
    hits = 0

    def do_GET(self):
        Failing.hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PROPFIND = do_GET

    def log_message(self, *a):
        pass


@pytest.fixture
def server(request):
    srv = serve(request.param)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("server", [NoRange], indirect=True)
def test_range_ignored(server):
    r = xferctl("read", "-Z", len(BODY), server.url, "/f", 100, 50)
    assert r.returncode == 1 and "EIO" in r.err and r.stdout == b""
    assert "server ignored Range" in r.err
    # The whole (small) file asked for: a 200 is the right answer.
    r = ok("read", "-Z", len(BODY), server.url, "/f", 0, len(BODY))
    assert r.stdout == BODY
    # Whole file expected, but it has grown: not taken.
    r = xferctl("read", "-Z", len(BODY) - 1, server.url, "/f", 0, len(BODY) - 1)
    assert r.returncode == 1 and r.stdout == b""


@pytest.mark.parametrize("server", [Truncating], indirect=True)
def test_truncated_body(server):
    Truncating.hits = 0
    r = xferctl("read", "-Z", len(BODY), server.url, "/f", 1000, 4000)
    assert r.returncode == 1 and "EIO" in r.err and r.stdout == b""
    assert Truncating.hits == 3     # first try + 2 retries (default)
    Truncating.hits = 0
    r = xferctl("read", "-r", 0, "-Z", len(BODY), server.url, "/f", 1000, 4000)
    assert r.returncode == 1 and Truncating.hits == 1


@pytest.mark.parametrize("server", [WrongRange], indirect=True)
def test_wrong_content_range(server):
    r = xferctl("read", "-Z", len(BODY), server.url, "/f", 100, 10)
    assert r.returncode == 1 and "EIO" in r.err and r.stdout == b""


@pytest.mark.parametrize("server", [Failing], indirect=True)
def test_5xx_retried_then_hostdown(server):
    Failing.hits = 0
    r = xferctl("read", "-r", 3, "-Z", 10, server.url, "/f", 0, 10)
    assert r.returncode == 1 and "EHOSTDOWN" in r.err
    assert Failing.hits == 4
    # Back-off 100 + 400 + 1600 ms.
    assert 1.9 < r.elapsed < 10


def test_unreachable_bounded():
    url = "http://127.0.0.1:%d" % closed_port()
    r = xferctl("stat", url, "/x")
    assert r.returncode == 1 and "EHOSTDOWN" in r.err
    assert r.elapsed < 5
    r = xferctl("read", "-Z", 100, url, "/x", 0, 10)
    assert r.returncode == 1 and "EHOSTDOWN" in r.err
    assert "Couldn't connect" in r.err or "Connection refused" in r.err


def test_failover(origin, tree):
    dead = "http://127.0.0.1:%d" % closed_port()
    src = dead + ";" + origin.url
    r = ok("list", src, "/")
    assert set(parse_lines(r.stdout)) == set(os.listdir(tree))
    assert "taken out" in r.err
    data = (tree / "big.bin").read_bytes()
    r = ok("read", src, "/big.bin", 1000, 3000000)
    assert r.stdout == data[1000:3001000]
    # Only the first call paid for the dead source: once it is down, the
    # later calls in the same process (stat + 3 reads) go straight on.
    assert r.err.count("taken out") == 1
    # 1 try + 2 retries; the log writes a repeated line once within 60 s
    # (the count follows when the window ends), so the two "retrying"
    # lines show as one unless curl's words differ ("after 0 ms" / "1 ms").
    assert r.err.count(", retrying") in (1, 2)
    assert r.err.count("(after retries)") == 1
    # An answer (ENOENT) from the first live source is final.
    r = xferctl("stat", origin.url + ";" + dead, "/nope")
    assert r.returncode == 1 and "ENOENT" in r.err and "taken out" not in r.err


def test_all_sources_down():
    a = "http://127.0.0.1:%d" % closed_port()
    b = "http://127.0.0.1:%d" % closed_port()
    r = xferctl("stat", "-r", 0, a + ";" + b, "/x")
    assert r.returncode == 1 and "EHOSTDOWN" in r.err
    assert r.err.count("taken out") == 2


# -- proxies -------------------------------------------------------------------

class Proxy(http.server.BaseHTTPRequestHandler):
    """A minimal forward proxy for plain http (absolute-URI requests)."""
    protocol_version = "HTTP/1.1"
    seen = []

    def _forward(self):
        Proxy.seen.append((self.command, self.path))
        m = re.match(r"http://([^/]+)(/.*)?$", self.path)
        host, path = m.group(1), m.group(2) or "/"
        n = int(self.headers.get("Content-Length", 0) or 0)
        body = self.rfile.read(n) if n else None
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ("proxy-connection", "connection")}
        c = http.client.HTTPConnection(host, timeout=10)
        c.request(self.command, path, body=body, headers=hdrs)
        resp = c.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding",
                                 "content-length", "keep-alive"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        c.close()

    do_GET = do_PROPFIND = _forward

    def log_message(self, *a):
        pass


def test_proxy_failover(origin, tree):
    srv = serve(Proxy)
    try:
        Proxy.seen = []
        dead = "http://127.0.0.1:%d" % closed_port()
        # First group: a dead proxy; second: a working one.  Loopback
        # origins must go through the proxy too (NOPROXY "").
        r = ok("read", "-p", dead + ";" + srv.url, origin.url, "/a b.txt")
        assert r.stdout == (tree / "a b.txt").read_bytes()
        assert ("PROPFIND", origin.url + "/a%20b.txt") in Proxy.seen
        assert ("GET", origin.url + "/a%20b.txt") in Proxy.seen
        assert "proxy %s taken out" % dead in r.err
        # DIRECT as the fall-back.
        Proxy.seen = []
        r = ok("stat", "-p", dead + ";DIRECT", origin.url, "/a b.txt")
        assert Proxy.seen == []
        # Load-balanced group with one dead member: still fine.
        r = ok("list", "-p", dead + "|" + srv.url, origin.url, "/sub dir")
        assert set(parse_lines(r.stdout)) == {"inner #file"}
        # Only dead proxies: the source fails, in bounded time.
        r = xferctl("stat", "-r", 0, "-p", dead, origin.url, "/a b.txt")
        assert r.returncode == 1 and "EHOSTDOWN" in r.err
    finally:
        srv.shutdown()
        srv.server_close()


def test_squid(origin, tree):
    """Through a real squid: PROPFIND and ranged GET pass; squid's own 503
    (origin unreachable) takes the proxy out and ends in EHOSTDOWN."""
    with Squid() as sq:
        r = ok("read", "-p", sq.url, origin.url, "/big.bin", 777, 4321)
        assert r.stdout == (tree / "big.bin").read_bytes()[777:777 + 4321]
        r = ok("list", "-p", sq.url, origin.url, "/sub dir")
        assert set(parse_lines(r.stdout)) == {"inner #file"}
        time.sleep(0.2)    # squid logs after the reply
        log = "\n".join(sq.requests())
        assert "PROPFIND " + origin.url + "/big.bin" in log
        assert "/206 " in log and "GET " + origin.url + "/big.bin" in log
        dead = "http://127.0.0.1:%d" % closed_port()
        r = xferctl("stat", "-r", 0, "-p", sq.url, dead, "/x")
        assert r.returncode == 1 and "EHOSTDOWN" in r.err
        assert "X-Squid-Error: ERR_CONNECT_FAIL" in r.err
