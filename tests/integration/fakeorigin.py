"""A small, deliberately misbehaving WebDAV origin (stdlib http.server).

It serves a flat set of in-memory files at the top level.  PROPFIND answers
with a minimal multistatus; GET honours Range unless the file's behaviour
says otherwise:

  "ok"            correct 206 replies to Range requests
  "ignore_range"  200 with the whole body, whatever the Range header says
  "truncate"      206 with the right headers but half the body, then close
  "status:NNN"    that HTTP status for every GET (404, 403, 503, ...)
  "trickle:N"     correct 206 headers, then the body at N bytes/s
  "trickle:N:M"   the same for ranges of at least M bytes; shorter ones
                  are answered at once (a slow path for large requests)
  "stall"         correct 206 headers, then no body byte at all

FakeOrigin(files, listing=...) makes the PROPFIND Depth: 1 listing of "/"
trickle or stall the same way (Depth: 0 stays quick, so mounts work).
Trickling and stalled replies end (connection closed) when the origin is
stopped or .release_slow() is called, so a daemon never waits on them
during its unmount.

Every request is recorded in .requests as (method, path, range, status).
"""
import email.utils
import http.server
import re
import threading
import urllib.parse
from xml.sax.saxutils import escape

from origintree import BASE_MTIME


class FakeFile:
    def __init__(self, data, behaviour="ok", mtime=BASE_MTIME):
        self.data = data
        self.behaviour = behaviour
        self.mtime = mtime


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeorigin/1"

    def log_message(self, fmt, *args):  # quiet; see .requests instead
        pass

    def _record(self, status):
        self.server.owner._record(self.command, self.path,
                                  self.headers.get("Range"), status)

    def _start_reply(self, status, length, headers):
        self._record(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status, body=b"", headers=()):
        self._start_reply(status, len(body), headers)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_slow(self, status, body, headers, behaviour):
        """Full headers, then body at the behaviour's pace ("trickle:N"
        bytes/s in 10 slices a second, or "stall": nothing)."""
        self._start_reply(status, len(body), headers)
        self.close_connection = True
        released = self.server.owner._released
        rate = 0 if behaviour == "stall" else int(behaviour.split(":")[1])
        slice_ = max(1, rate // 10)
        pos = 0
        try:
            self.wfile.flush()
            while pos < len(body) and not released.is_set():
                if rate == 0:
                    released.wait(0.5)
                    continue
                self.wfile.write(body[pos:pos + slice_])
                self.wfile.flush()
                pos += slice_
                released.wait(0.1)
        except OSError:
            pass  # the client gave up (deadline): that is the point

    def _drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    def _lookup(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        return path, self.server.owner.files.get(path.lstrip("/"))

    def do_OPTIONS(self):
        self._drain()
        self._send(200, headers=[("DAV", "1"),
                                 ("Allow", "OPTIONS, GET, HEAD, PROPFIND")])

    def do_PROPFIND(self):
        self._drain()
        path, f = self._lookup()
        owner = self.server.owner
        if path in ("/", ""):
            entries = [("/", None)]
            if self.headers.get("Depth", "infinity") != "0":
                entries += [("/" + name, ff)
                            for name, ff in sorted(owner.files.items())]
        elif f is not None:
            entries = [(path, f)]
        else:
            self._send(404)
            return
        body = owner.multistatus(entries).encode()
        ctype = [("Content-Type", 'application/xml; charset="utf-8"')]
        if len(entries) > 1 and owner.listing != "ok":
            self._send_slow(207, body, ctype, owner.listing)
            return
        self._send(207, body, ctype)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._drain()
        path, f = self._lookup()
        if f is None:
            self._send(404)
            return
        common = [("Last-Modified", email.utils.formatdate(f.mtime,
                                                            usegmt=True)),
                  ("Content-Type", "application/octet-stream")]
        if f.behaviour.startswith("status:"):
            self._send(int(f.behaviour.split(":", 1)[1]))
            return
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if f.behaviour == "ignore_range" or not m:
            self._send(200, f.data, common)
            return
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else len(f.data) - 1,
                  len(f.data) - 1)
        if start >= len(f.data):
            self._send(416, headers=[("Content-Range",
                                      f"bytes */{len(f.data)}")])
            return
        part = f.data[start:end + 1]
        headers = common + [("Content-Range",
                             f"bytes {start}-{end}/{len(f.data)}")]
        if f.behaviour.startswith("trickle:") or f.behaviour == "stall":
            fields = f.behaviour.split(":")
            if len(fields) < 3 or len(part) >= int(fields[2]):
                self._send_slow(206, part, headers, f.behaviour)
                return
        if f.behaviour == "truncate":
            self._record(206)
            self.send_response(206)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            self.wfile.write(part[:len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(206, part, headers)


class FakeOrigin:
    """FakeOrigin({"name": FakeFile(...)}) as a context manager; .url."""

    def __init__(self, files, listing="ok"):
        self.files = dict(files)
        self.listing = listing
        self._released = threading.Event()
        self.requests = []
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    def _record(self, method, path, rng, status):
        with self._lock:
            self.requests.append((method, urllib.parse.unquote(path), rng,
                                  status))

    def requests_for(self, name, method="GET"):
        with self._lock:
            return [r for r in self.requests
                    if r[0] == method and r[1] == "/" + name]

    def multistatus(self, entries):
        out = ['<?xml version="1.0" encoding="utf-8"?>',
               '<D:multistatus xmlns:D="DAV:">']
        for href, f in entries:
            enc = urllib.parse.quote(href)
            if f is None:
                props = ("<D:resourcetype><D:collection/></D:resourcetype>"
                         "<D:getlastmodified>"
                         f"{email.utils.formatdate(BASE_MTIME, usegmt=True)}"
                         "</D:getlastmodified>")
            else:
                props = ("<D:resourcetype/>"
                         f"<D:getcontentlength>{len(f.data)}"
                         "</D:getcontentlength><D:getlastmodified>"
                         f"{email.utils.formatdate(f.mtime, usegmt=True)}"
                         "</D:getlastmodified>")
            out.append(f"<D:response><D:href>{escape(enc)}</D:href>"
                       f"<D:propstat><D:prop>{props}</D:prop>"
                       "<D:status>HTTP/1.1 200 OK</D:status>"
                       "</D:propstat></D:response>")
        out.append("</D:multistatus>")
        return "\n".join(out)

    def start(self):
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def release_slow(self):
        """Ends every trickling or stalled reply now and from now on."""
        self._released.set()

    def stop(self):
        self.release_slow()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(10)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
