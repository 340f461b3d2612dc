"""Reading the access log of origin.Nginx (format: METHOD "URI" STATUS BYTES
range="..." depth="...")."""
import re
import urllib.parse

_LINE = re.compile(r'^(\S+) "([^"]*)" (\d{3}) (\d+) range="([^"]*)"')


def entries(nginx):
    """(method, decoded path, status, bytes, range header or None) per line."""
    out = []
    for line in nginx.requests():
        m = _LINE.match(line)
        if not m:
            continue
        method, uri, status, nbytes, rng = m.groups()
        path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
        out.append((method, path, int(status), int(nbytes),
                    None if rng in ("", "-") else rng))
    return out


def byte_ranges(nginx, relpath, size):
    """The [start, end) byte ranges of relpath that GETs fetched, in log
    order.  A GET without Range counts as the whole file."""
    want = "/" + relpath.lstrip("/")
    out = []
    for method, path, status, _, rng in entries(nginx):
        if method != "GET" or path != want or status not in (200, 206):
            continue
        if rng is None or status == 200:
            out.append((0, size))
            continue
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        assert m, f"unexpected Range header {rng!r} for {relpath}"
        start = int(m.group(1))
        end = int(m.group(2)) + 1 if m.group(2) else size
        out.append((start, min(end, size)))
    return out


def overlaps(ranges):
    """Pairs of fetched ranges that share at least one byte."""
    s = sorted(ranges)
    bad = []
    for a, b in zip(s, s[1:]):
        if b[0] < a[1]:
            bad.append((a, b))
    return bad


def covered(ranges, start, end):
    """True if the union of ranges covers [start, end)."""
    pos = start
    for a, b in sorted(ranges):
        if a > pos:
            break
        pos = max(pos, b)
        if pos >= end:
            return True
    return pos >= end
