"""Origins that answer wrongly, or not at all, at mount time: the one line a
failed mount prints must say what the origin answered and what to do, in
the foreground (-f) and in daemon mode alike, within a bounded time.  And
listings: names no POSIX tool can use (over NAME_MAX) and hrefs naming
another server are skipped, with a log line that says so."""
import http.server
import os
import re
import socket
import threading
import time
import urllib.parse

import pytest

from fakeorigin import FakeFile, FakeOrigin
from gridftp_origin import GridFTP, make_root
from mount import is_mounted, find_daemon_pids, run_dmsfs, run_fusermount
from origin import Nginx, closed_port


class _PlainHandler(http.server.BaseHTTPRequestHandler):
    """http.server as shipped: GET works, PROPFIND gets its stock 501."""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server:
    """A thread running an http.server on a free loopback port."""

    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()
        self.port = self.httpd.server_address[1]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


class _Silent:
    """A TCP listener that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)   # held open, never answered

    def stop(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(10)


@pytest.fixture
def servers(tmp_path):
    """servers(kind) -> (url, expected regex); everything stopped at the
    end."""
    stops = []

    def make(kind):
        if kind == "plain http (PROPFIND 501)":
            s = _Server(_PlainHandler)
            stops.append(s.stop)
            return (f"http://127.0.0.1:{s.port}/",
                    r"the server at 127\.0\.0\.1:%d does not speak WebDAV: "
                    r"PROPFIND got 501" % s.port)
        if kind == "nginx without dav (405)":
            root = tmp_path / "www"
            (root / "plain").mkdir(parents=True, exist_ok=True)
            (root / "plain" / "f.txt").write_text("x\n")
            ng = Nginx(str(root), extra_server_conf="location /plain/ { }")
            ng.start()
            stops.append(ng.stop)
            return (ng.url + "/plain/",
                    r"the server at 127\.0\.0\.1:%d does not speak WebDAV: "
                    r"PROPFIND got 405" % ng.port)
        if kind == "https to a plain http port":
            s = _Server(_PlainHandler)
            stops.append(s.stop)
            return (f"https://127.0.0.1:{s.port}/",
                    r"TLS handshake with 127\.0\.0\.1:%d failed: .*wrong "
                    r"version number.*is it plain http\?" % s.port)
        if kind == "connection refused":
            port = closed_port()
            return (f"http://127.0.0.1:{port}/",
                    r"connection refused by 127\.0\.0\.1:%d" % port)
        if kind == "unresolvable host":
            return ("http://nohost.invalid/data/",
                    r"cannot resolve nohost\.invalid")
        if kind == "ftp path outside the jail (500)":
            g = GridFTP(make_root()).start()
            stops.append(g.stop)
            return (f"ftp://127.0.0.1:{g.port}/etc",
                    r"the FTP server at 127\.0\.0\.1:%d answered MLST "
                    r"\S+ with 500" % g.port)
        raise AssertionError(kind)
    yield make
    for stop in reversed(stops):
        stop()


def run_mount(tmp_path, url, foreground, extra_opts="", timeout=120):
    """Runs a mount that must fail; returns (stderr lines, seconds)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    opts = f"cache_dir={tmp_path}/cache" + (f",{extra_opts}"
                                            if extra_opts else "")
    args = (["-f"] if foreground else []) + ["-o", opts, url, str(mnt)]
    start = time.monotonic()
    try:
        r = run_dmsfs(args, timeout=timeout)
    finally:
        leftover = is_mounted(str(mnt))
        if leftover:
            run_fusermount(str(mnt), lazy=True)
    elapsed = time.monotonic() - start
    assert not leftover, f"{url}: a mount was left at {mnt}"
    assert r.returncode != 0, f"{url}: exit status 0\nstderr: {r.stderr}"
    assert not find_daemon_pids(str(mnt)), f"{url}: a daemon was left"
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if not foreground:  # the contract: exactly one clear line
        assert len(lines) == 1, (f"{url}: want one line on stderr, got "
                                 f"{len(lines)}:\n{r.stderr}")
    return lines, elapsed


def failure_line(lines, pattern):
    """The "cannot mount" line, which must match pattern and must not
    blame an unreachable origin for what the origin answered."""
    mount_lines = [l for l in lines if "cannot mount" in l]
    assert len(mount_lines) == 1, "no single 'cannot mount' line:\n" + \
        "\n".join(lines)
    line = mount_lines[0]
    assert re.search(pattern, line), \
        f"the mount failure does not say why ({pattern}):\n{line}"
    assert "origin unreachable" not in line and "Host is down" not in line, \
        line
    return line


ANSWERS = ["plain http (PROPFIND 501)", "nginx without dav (405)",
           "https to a plain http port", "connection refused",
           "unresolvable host", "ftp path outside the jail (500)"]


@pytest.mark.parametrize("kind", ANSWERS)
@pytest.mark.parametrize("foreground", [False, True],
                         ids=["daemon", "foreground"])
def test_mount_says_what_the_origin_answered(tmp_path, servers, kind,
                                             foreground):
    url, pattern = servers(kind)
    lines, elapsed = run_mount(tmp_path, url, foreground)
    line = failure_line(lines, pattern)
    assert "nothing cached" in line, line
    # Each of these is an answer or a refusal: no waiting for timeouts.
    assert elapsed < 30, f"{kind}: took {elapsed:.0f}s"


@pytest.mark.parametrize("scheme", ["http", "ftp"])
@pytest.mark.parametrize("foreground", [False, True],
                         ids=["daemon", "foreground"])
def test_silent_host_reported_within_first_contact_deadline(tmp_path,
                                                            foreground,
                                                            scheme):
    """A host that accepts and never answers: "no answer from HOST:PORT
    after N s" within connect_timeout + 10 s (README), not the 45 s of three
    stalled attempts."""
    silent = _Silent()
    try:
        lines, elapsed = run_mount(
            tmp_path, f"{scheme}://127.0.0.1:{silent.port}/data", foreground,
            "connect_timeout=2,stall_timeout=30")
    finally:
        silent.stop()
    line = failure_line(lines, r"no answer from 127\.0\.0\.1:%d after "
                               r"\d+ s" % silent.port)
    waited = int(re.search(r"after (\d+) s", line).group(1))
    assert 10 <= waited <= 30, line
    # connect_timeout + 10 s = 12 s, with 2.5x slack for a noisy machine
    # (stall_timeout=30 alone would take 30 s per attempt).
    assert elapsed < 30, f"took {elapsed:.0f}s: {line}"


@pytest.mark.parametrize("proxy", ["garbage", "http://ok:3128|nonsense",
                                   "ftp://p:21", "http://", ";|"])
@pytest.mark.parametrize("foreground", [False, True],
                         ids=["daemon", "foreground"])
def test_bad_proxy_named(tmp_path, servers, proxy, foreground):
    url, _ = servers("connection refused")
    lines, elapsed = run_mount(tmp_path, url, foreground, f"proxy={proxy}")
    assert any(re.search(r"(invalid|empty) proxy", l) and
               (proxy in l) for l in lines), "\n".join(lines)
    assert not any("cannot mount" in l or "unreachable" in l
                   for l in lines), "\n".join(lines)


@pytest.mark.parametrize("foreground", [False, True],
                         ids=["daemon", "foreground"])
def test_empty_url(tmp_path, foreground):
    lines, _ = run_mount(tmp_path, "", foreground)
    assert any("empty URL" in l and "no source given" in l
               for l in lines), "\n".join(lines)
    assert not any("needs both" in l for l in lines), "\n".join(lines)


def _response(href, size=3, is_dir=False):
    rt = ("<D:resourcetype><D:collection/></D:resourcetype>" if is_dir
          else "<D:resourcetype/>")
    length = "" if is_dir else f"<D:getcontentlength>{size}" \
        "</D:getcontentlength>"
    return (f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{rt}"
            f"{length}<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT"
            "</D:getlastmodified></D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")


def test_listing_skips_long_names_and_foreign_hrefs(tmp_path, mounter):
    q = urllib.parse.quote
    e255 = "\u00e9" * 127 + "x"          # 255 bytes in UTF-8: fine
    e256 = "\u00e9" * 128                # 256 bytes: over NAME_MAX
    other_port = closed_port()
    extra = [
        _response("/" + q("n" * 255)),                 # kept
        _response("/" + q(e255)),                      # kept
        _response("/" + q("l" * 256)),                 # too long
        _response("/" + q("m" * 1024)),                # too long
        _response("/" + q(e256)),                      # too long
        _response("{origin}/same-origin.txt"),         # full URL, ours
        _response("http://other.example/evil.txt"),    # another host
        _response("http://other.example/evildir/", is_dir=True),
        _response(f"http://127.0.0.1:{other_port}/port.txt"),  # port
        _response("//other.example/netpath.txt"),      # network path
        _response("ftp://127.0.0.1/ftp.txt"),
    ]
    files = {"plain.txt": FakeFile(b"abc")}
    with FakeOrigin(files, extra_responses=extra) as fo:
        # Same host and port, another scheme.
        fo.extra_responses.append(_response(
            fo.url.replace("http:", "https:", 1) + "/scheme.txt"))
        m = mounter(fo.url)
        names = sorted(os.listdir(m.mountpoint))
        assert names == sorted(["plain.txt", "n" * 255, e255,
                                "same-origin.txt"]), names
        with open(m.path("plain.txt"), "rb") as f:
            assert f.read() == b"abc"
        log = m.log()
        assert re.search(r"3 names longer than NAME_MAX \(255 bytes\) "
                         r"skipped", log), log
        assert re.search(r"6 entries whose href names another server "
                         r"skipped \(e\.g\. \"http://other\.example/"
                         r"evil\.txt\"\)", log), log
        m.umount()
