"""The test origins themselves: nginx serves the standard tree over WebDAV
(PROPFIND with odd names, Range GETs), the fake origin misbehaves as told.
These run without build/dmsfs."""
import http.client
import urllib.parse
import xml.etree.ElementTree as ET

import accesslog
import origintree
from fakeorigin import FakeFile, FakeOrigin


def request(url, method, path, headers=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, urllib.parse.quote(path), headers=headers or {})
        r = conn.getresponse()
        try:
            body = r.read()
        except http.client.IncompleteRead as e:
            body = e.partial
        return r.status, dict(r.getheaders()), body
    finally:
        conn.close()


def propfind_names(url, path):
    status, _, body = request(url, "PROPFIND", path, {"Depth": "1"})
    assert status == 207, f"PROPFIND {path}: {status}"
    hrefs = [e.text for e in ET.fromstring(body).iter("{DAV:}href")]
    names = set()
    for h in hrefs:
        rel = urllib.parse.unquote(h.rstrip("/"))
        if rel.rstrip("/") != path.rstrip("/"):
            names.add(rel.rsplit("/", 1)[1])
    return names


def test_nginx_propfind_lists_tree(tree, nginx):
    top = propfind_names(nginx.url, "/")
    want = {rel.split("/", 1)[0] for rel in tree.layout}
    assert want <= top, f"missing at top level: {want - top}"
    odd = propfind_names(nginx.url, "/" + origintree.ODD_DIR + "/")
    assert odd == set(origintree.ODD_NAMES)


def test_nginx_range_get_and_log(tree, nginx):
    rel = "données_ü.h5" if "données_ü.h5" in tree.layout else \
        "three_blocks_plus_7.bin"
    status, headers, body = request(nginx.url, "GET", "/" + rel,
                                    {"Range": "bytes=10-19"})
    assert status == 206 and body == tree.data(rel)[10:20]
    assert accesslog.byte_ranges(nginx, rel, len(tree.data(rel))) == [(10, 20)]


def test_tree_is_deterministic(tmp_path):
    a = origintree.make_standard_tree(str(tmp_path / "a"), 4096)
    origintree.make_standard_tree(str(tmp_path / "b"), 4096)
    assert origintree.snapshot(str(tmp_path / "a")) == \
        origintree.snapshot(str(tmp_path / "b"))
    for rel in a:
        with open(tmp_path / "a" / rel, "rb") as f:
            assert f.read() == origintree.content(rel, a[rel])


def test_fake_origin_behaviours():
    data = bytes(range(256)) * 10
    files = {"ok.bin": FakeFile(data),
             "norange.bin": FakeFile(data, "ignore_range"),
             "short.bin": FakeFile(data, "truncate"),
             "gone.bin": FakeFile(data, "status:404")}
    with FakeOrigin(files) as fo:
        assert propfind_names(fo.url, "/") == set(files)
        rng = {"Range": "bytes=100-199"}
        assert request(fo.url, "GET", "/ok.bin", rng)[::2] == \
            (206, data[100:200])
        assert request(fo.url, "GET", "/norange.bin", rng)[::2] == (200, data)
        status, _, body = request(fo.url, "GET", "/short.bin", rng)
        assert status == 206 and body == data[100:150]
        assert request(fo.url, "GET", "/gone.bin")[0] == 404
        assert len(fo.requests_for("ok.bin")) == 1
