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

Validators and versions (keyword arguments of FakeFile, any behaviour):

  validators      which validators GET replies carry: a tuple of
                  "last-modified" (the default) and "etag"; () for none.
                  With "etag", PROPFIND lists the ETag too (getetag).
  etag            the ETag value (default: derived from data and mtime)
  replace_after=N, replacement=FakeFile(...)
                  the first N GETs of the file are served from this
                  version, every later request (GET and PROPFIND) from
                  replacement: a file replaced at the origin in the middle
                  of a read, deterministically.  FakeOrigin.replace(name,
                  f) swaps a version by hand.

Writes (PUT, MKCOL, DELETE, MOVE): every one is answered with
FakeOrigin.write_status (set it, e.g. 507 for a full origin, 413), after
the request body was read; 405 while it is None.  Nothing is stored.

Every request is recorded in .requests as (method, path, range, status).

Storing writes (FakeOrigin(files, store=True)): PUT stores the body as a
top-level file (mtime from the Date header), MOVE renames one (Overwrite:
F onto an existing name is 412), DELETE removes one, MKCOL answers 405
for an existing name, else 403 (folders are not kept).  Faults of a
hostile origin, set on the FakeOrigin at any time (None: behave):

  put_fault       "drop": 201 but nothing stored; "truncate": 201, half
                  the body stored; "redirect": 307 to another path
  move_fault      "noop": 204 but nothing moved; "redirect": 307
  write_status    as above, but answers every write before storing

FakeOrigin(files, extra_responses=[...]) adds raw <D:response> elements
(strings; "{origin}" is replaced by the origin's URL) to the Depth: 1
PROPFIND reply of "/", for entries nginx cannot produce: hrefs naming
other servers, names longer than NAME_MAX, ...
"""
import email.utils
import http.server
import re
import threading
import time
import urllib.parse
import zlib
from xml.sax.saxutils import escape

from origintree import BASE_MTIME


class FakeFile:
    def __init__(self, data, behaviour="ok", mtime=BASE_MTIME,
                 validators=("last-modified",), etag=None,
                 replace_after=None, replacement=None):
        self.data = data
        self.behaviour = behaviour
        self.mtime = mtime
        self.validators = tuple(validators)
        self.etag = etag or '"%x-%x-%x"' % (mtime, len(data),
                                            zlib.crc32(data))
        self.replace_after = replace_after
        self.replacement = replacement
        self.gets = 0   # GETs served from this version; owner's lock

    def validator_headers(self):
        out = []
        if "last-modified" in self.validators:
            out.append(("Last-Modified",
                        email.utils.formatdate(self.mtime, usegmt=True)))
        if "etag" in self.validators:
            out.append(("ETag", self.etag))
        return out


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

    def _lookup(self, count_get=False):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        return path, self.server.owner._version(path.lstrip("/"),
                                                count_get)

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
                entries += [("/" + name, owner._version(name, False))
                            for name in sorted(list(owner.files))]
        elif f is not None:
            entries = [(path, f)]
        else:
            self._send(404)
            return
        extra = owner.extra_responses if path in ("/", "") and \
            self.headers.get("Depth", "infinity") != "0" else ()
        body = owner.multistatus(entries, extra).encode()
        ctype = [("Content-Type", 'application/xml; charset="utf-8"')]
        if len(entries) > 1 and owner.listing != "ok":
            self._send_slow(207, body, ctype, owner.listing)
            return
        self._send(207, body, ctype)

    def do_HEAD(self):
        self.do_GET()

    def do_PUT(self):
        owner = self.server.owner
        if owner.store and not owner.write_status:
            self._store_write()
            return
        self._drain()
        self._send(owner.write_status or 405)

    do_MKCOL = do_DELETE = do_MOVE = do_PUT

    def _store_write(self):
        """A write of a storing origin, faults included (module doc)."""
        owner = self.server.owner
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        name = urllib.parse.unquote(
            urllib.parse.urlsplit(self.path).path).strip("/")
        redirect = [("Location", owner.url + "/elsewhere/" + name)]
        if self.command == "PUT":
            if owner.put_fault == "redirect":
                self._send(307, headers=redirect)
                return
            if owner.put_fault != "drop":
                if owner.put_fault == "truncate":
                    body = body[:len(body) // 2]
                date = self.headers.get("Date")
                mtime = (int(email.utils.parsedate_to_datetime(date)
                             .timestamp()) if date else int(time.time()))
                owner.replace(name, FakeFile(body, mtime=mtime))
            self._send(201)
        elif self.command == "MKCOL":
            self._send(405 if owner._version(name, False) else 403)
        elif self.command == "DELETE":
            found = owner._version(name, False) is not None
            owner.replace(name, None)
            self._send(204 if found else 404)
        else:   # MOVE
            dest = urllib.parse.unquote(urllib.parse.urlsplit(
                self.headers.get("Destination", "")).path).strip("/")
            f = owner._version(name, False)
            if owner.move_fault == "redirect":
                self._send(307, headers=redirect)
            elif f is None:
                self._send(404)
            elif (self.headers.get("Overwrite") == "F" and
                  owner._version(dest, False) is not None):
                self._send(412)
            else:
                if owner.move_fault != "noop":
                    owner.replace(dest, f)
                    owner.replace(name, None)
                self._send(204)

    def do_GET(self):
        self._drain()
        path, f = self._lookup(count_get=self.command == "GET")
        if f is None:
            self._send(404)
            return
        common = f.validator_headers() + [("Content-Type",
                                           "application/octet-stream")]
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

    def __init__(self, files, extra_responses=(), listing="ok",
                 store=False):
        self.files = dict(files)
        self.write_status = None
        self.store = store
        self.put_fault = None
        self.move_fault = None
        self.extra_responses = list(extra_responses)
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

    def _version(self, name, count_get):
        """The version of name that answers this request (None: 404)."""
        with self._lock:
            f = self.files.get(name)
            while (f is not None and f.replace_after is not None and
                   f.gets >= f.replace_after and f.replacement is not None):
                f = self.files[name] = f.replacement
            if f is not None and count_get:
                f.gets += 1
            return f

    def replace(self, name, f):
        """From now on, name is served as f (None: 404)."""
        with self._lock:
            if f is None:
                self.files.pop(name, None)
            else:
                self.files[name] = f

    def requests_for(self, name, method="GET"):
        with self._lock:
            return [r for r in self.requests
                    if r[0] == method and r[1] == "/" + name]

    def multistatus(self, entries, extra=()):
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
                if "etag" in f.validators:
                    props += f"<D:getetag>{escape(f.etag)}</D:getetag>"
            out.append(f"<D:response><D:href>{escape(enc)}</D:href>"
                       f"<D:propstat><D:prop>{props}</D:prop>"
                       "<D:status>HTTP/1.1 200 OK</D:status>"
                       "</D:propstat></D:response>")
        out += [x.replace("{origin}", self.url) for x in extra]
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
