"""Misbehaving origins: Range ignored, truncated bodies, HTTP error statuses.
dmsfs must answer with the documented errno and never with wrong bytes."""
import errno
import os

import pytest

import origintree
from fakeorigin import FakeFile, FakeOrigin
from mount import read_in_child
from origintree import BLOCK

SMALL = BLOCK // 2 + 3
MULTI = 3 * BLOCK + 7


def data_for(name, size):
    return origintree.content("fake:" + name, size)


@pytest.fixture
def fake_origin():
    """fake_origin({name: (size, behaviour)}) -> started FakeOrigin."""
    started = []

    def start(spec):
        files = {name: FakeFile(data_for(name, size), behaviour)
                 for name, (size, behaviour) in spec.items()}
        fo = FakeOrigin(files).start()
        started.append(fo)
        return fo
    yield start
    for fo in started:
        fo.stop()


def read_outcome(path, offset=0, length=-1):
    """('ok', bytes) or ('errno', n) for a read (whole file, or a pread)."""
    try:
        with open(path, "rb") as f:
            if length < 0:
                return "ok", origintree.read_all(path)
            return "ok", os.pread(f.fileno(), length, offset)
    except OSError as e:
        return "errno", e.errno


def assert_read_fails(path, want_errnos, what, offset=0, length=-1):
    kind, val = read_outcome(path, offset, length)
    names = "/".join(errno.errorcode[e] for e in want_errnos)
    assert kind == "errno", f"{what}: read succeeded ({len(val)} bytes), " \
                            f"want {names}"
    assert val in want_errnos, \
        f"{what}: read failed with {errno.errorcode.get(val, val)}, want {names}"


def assert_never_wrong(path, want, what):
    """The read either fails or returns exactly the origin's bytes."""
    kind, val = read_outcome(path)
    if kind == "ok":
        origintree.assert_same_bytes(val, want, what)


def test_range_ignored(fake_origin, mounter):
    fo = fake_origin({"multi.bin": (MULTI, "ignore_range"),
                      "small.bin": (SMALL, "ignore_range"),
                      "good.bin": (MULTI, "ok")})
    # No folder prefetch: it would fetch multi.bin whole (see below).
    m = mounter(fo.url, expected_errors=[r"multi\.bin|small\.bin"],
                prefetch_files=0)
    assert os.stat(m.path("multi.bin")).st_size == MULTI
    origintree.assert_same_bytes(origintree.read_all(m.path("good.bin")),
                                 data_for("good.bin", MULTI), "good.bin")
    assert_read_fails(m.path("multi.bin"), [errno.EIO], "multi-block file, "
                      "server ignores Range (pread in block 1)",
                      offset=BLOCK + 5, length=100)
    # A request for the whole file (the kernel asks for up to 1 MiB at a
    # time) may take a 200 whose body is exactly the file; never a wrong
    # byte either way.
    assert_never_wrong(m.path("multi.bin"), data_for("multi.bin", MULTI),
                       "multi-block file, server ignores Range (whole read)")
    # A single-block file may be accepted whole (200 body == file size).
    assert_never_wrong(m.path("small.bin"), data_for("small.bin", SMALL),
                       "single-block file, server ignores Range")


def test_truncated_body(fake_origin, mounter):
    fo = fake_origin({"short.bin": (MULTI, "truncate"),
                      "short_small.bin": (SMALL, "truncate")})
    m = mounter(fo.url, expected_errors=[r"short(_small)?\.bin"])
    for name in ("short.bin", "short_small.bin"):
        res = read_in_child(m.path(name), timeout=60)
        assert res["errno"] == errno.EIO, \
            f"{name}: truncated body from origin: want EIO, got {res}"


@pytest.mark.parametrize("status,want", [
    (404, (errno.ENOENT, errno.EIO)),
    (401, (errno.EACCES,)),
    (403, (errno.EACCES,)),
])
def test_http_status_maps_to_errno(fake_origin, mounter, status, want):
    fo = fake_origin({"x.bin": (MULTI, f"status:{status}"),
                      "ok.bin": (SMALL, "ok")})
    m = mounter(fo.url, expected_errors=[r"x\.bin"])
    assert "x.bin" in os.listdir(m.mountpoint)
    assert_read_fails(m.path("x.bin"), list(want), f"GET answered {status}")
    origintree.assert_same_bytes(origintree.read_all(m.path("ok.bin")),
                                 data_for("ok.bin", SMALL), "ok.bin")


def test_server_error_retried_then_eio(fake_origin, mounter):
    fo = fake_origin({"x.bin": (MULTI, "status:503")})
    m = mounter(fo.url, expected_errors=[r"x\.bin"])
    res = read_in_child(m.path("x.bin"), timeout=60)
    assert res["errno"] == errno.EIO, f"GET answered 503: want EIO, got {res}"
    gets = fo.requests_for("x.bin")
    assert len(gets) >= 2, f"a 503 was not retried: {gets}"
