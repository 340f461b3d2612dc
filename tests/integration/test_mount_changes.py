"""Changes at the origin are seen after meta_ttl: new content, new size,
new mtime; files deleted at the origin disappear (ENOENT)."""
import errno
import os
import re
import time

import origintree

TTL = 1
WAIT = TTL + 1.5  # comfortably past meta_ttl


def change_at_origin(tree, rel, data, mtime):
    origintree.write_file(tree.root, rel, data=data, mtime=mtime)


def test_changed_file_seen_after_meta_ttl(tree, nginx, mounter):
    m = mounter(nginx.url, meta_ttl=TTL)
    # (relpath, new content): a size change, and a same-size rewrite.
    changes = [
        ("RB1810001/logbook.txt", origintree.content("new logbook", 1234)),
        ("block_exact.bin", origintree.content("new block",
                                               tree.layout["block_exact.bin"])),
        ("big.bin", origintree.content("new big", 2 * origintree.MIB + 1)),
    ]
    old = {}
    for rel, _ in changes:
        old[rel] = tree.data(rel)
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     old[rel], rel + " (before change)")
    new_mtime = origintree.BASE_MTIME + 10_000_000
    for rel, data in changes:
        change_at_origin(tree, rel, data, new_mtime)
    time.sleep(WAIT)
    for rel, data in changes:
        st = os.stat(m.path(rel))
        assert (st.st_size, int(st.st_mtime)) == (len(data), new_mtime), (
            f"{rel}: size/mtime still {(st.st_size, int(st.st_mtime))} "
            f"{WAIT}s after the change with meta_ttl={TTL}")
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)), data,
                                     rel + " (after change)")


def test_new_file_listed_after_meta_ttl(tree, nginx, mounter):
    m = mounter(nginx.url, meta_ttl=TTL)
    assert "late.txt" not in os.listdir(m.path("RB1810001"))
    data = origintree.write_file(tree.root, "RB1810001/late.txt", size=5000,
                                 mtime=origintree.BASE_MTIME)
    time.sleep(WAIT)
    assert "late.txt" in os.listdir(m.path("RB1810001"))
    origintree.assert_same_bytes(
        origintree.read_all(m.path("RB1810001/late.txt")), data, "late.txt")


def test_deleted_file_enoent_after_meta_ttl(tree, nginx, mounter):
    rel = "RB1810002/raw/run_000125.nxs"
    d, name = os.path.split(rel)
    m = mounter(nginx.url, meta_ttl=TTL,
                expected_errors=[r"(?i)404|not found|" + re.escape(name)])
    assert name in os.listdir(m.path(d))
    os.stat(m.path(rel))
    os.unlink(tree.path(rel))
    # Within meta_ttl the kernel/daemon may still list it, but a read must
    # fail cleanly (the origin says 404), never return bytes.
    try:
        got = origintree.read_all(m.path(rel))
    except OSError as e:
        assert e.errno in (errno.ENOENT, errno.EIO), \
            f"read of a file deleted at origin: {e}"
    else:
        raise AssertionError(f"read of {rel} deleted at origin returned "
                             f"{len(got)} bytes")
    time.sleep(WAIT)
    try:
        os.stat(m.path(rel))
    except FileNotFoundError:
        pass
    else:
        raise AssertionError(f"{rel} still stat-able {WAIT}s after deletion "
                             f"at origin (meta_ttl={TTL})")
    assert name not in os.listdir(m.path(d))


def test_file_changed_while_open_fails_then_reopens_new(tree, nginx, mounter):
    """A file whose size changes at the origin under an open handle: reads
    of blocks not fetched yet fail (EIO, never the new bytes mixed with the
    old), and the next open sees the new version without waiting for
    meta_ttl."""
    rel = "big.bin"
    m = mounter(nginx.url, meta_ttl=3600, readahead="0",
                expected_errors=[r"changed at the source", r"read of /big\.bin",
                                 r"(?i)size|stale|416|range"])
    old = tree.data(rel)
    new = origintree.content("grown big", len(old) + 12345)
    with open(m.path(rel), "rb") as f:
        assert f.read(4096) == old[:4096]
        change_at_origin(tree, rel, new, origintree.BASE_MTIME + 777)
        f.seek(len(old) - 4096)
        try:
            got = f.read(4096)
        except OSError as e:
            assert e.errno == errno.EIO, e
        else:
            # Served from a block fetched before the change: still the old
            # version, whole, never a mix.
            assert got == old[-4096:]
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)), new,
                                 rel + " (reopened after the change)")
