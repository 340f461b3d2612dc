"""The persistent block cache: reuse across remounts, stale-if-error with the
origin stopped, the size cap, checksum verification of stored blocks."""
import errno
import os
import re
import time

import accesslog
import cachefiles
import origintree
from origintree import BLOCK, KIB, MIB
from mount import read_in_child

# Files read before the origin goes away in the offline test.
READ_BEFORE = ["big.bin", "three_blocks_plus_7.bin", "empty.dat",
               "RB1810001/raw/run_000123.nxs", "données_ü.h5"]
UNREAD = ["RB1810002/raw/run_000124.nxs", "block_plus_1.bin"]


def origin_errors(url, paths=()):
    """Error lines expected while the origin is down: those that name the
    origin, and failed reads of the given paths."""
    return [re.escape(url.split("://", 1)[1])] + \
        [re.escape("/" + p) for p in paths]


def get_count(nginx, rel):
    return sum(1 for method, path, *_ in accesslog.entries(nginx)
               if method == "GET" and path == "/" + rel)


def test_cache_reused_after_remount(tree, nginx, mounter):
    rel = "big.bin"
    m = mounter(nginx.url)
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                 tree.data(rel), rel)
    m.umount()
    before = get_count(nginx, rel)
    assert before > 0
    m2 = mounter(nginx.url, cache_dir=m.cache_dir)
    origintree.assert_same_bytes(origintree.read_all(m2.path(rel)),
                                 tree.data(rel), rel + " (after remount)")
    assert get_count(nginx, rel) == before, (
        f"{rel} was fetched again after remount on a warm cache "
        f"({get_count(nginx, rel) - before} more GETs)")


def test_offline_remount_serves_cached_data(tree, nginx, mounter):
    # Folder prefetch would cache UNREAD, the neighbours of what is read.
    m = mounter(nginx.url, meta_ttl=1, prefetch_files=0)
    want_snapshot = origintree.snapshot(tree.root)
    got = origintree.snapshot(m.mountpoint)  # caches every listing
    assert not origintree.diff_snapshots(want_snapshot, got)
    for rel in READ_BEFORE:
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     tree.data(rel), rel)
    m.umount()
    url = nginx.url
    nginx.stop()

    m2 = mounter(url, cache_dir=m.cache_dir, meta_ttl=1,
                 expected_errors=origin_errors(url, UNREAD))
    time.sleep(1.5)  # let meta_ttl expire: revalidation fails, stale served
    diff = origintree.diff_snapshots(want_snapshot,
                                     origintree.snapshot(m2.mountpoint))
    assert not diff, f"offline listing differs from origin:\n{diff}"
    for rel in READ_BEFORE:
        origintree.assert_same_bytes(origintree.read_all(m2.path(rel)),
                                     tree.data(rel), rel + " (offline)")
    for rel in UNREAD:
        res = read_in_child(m2.path(rel), timeout=60)
        assert res["errno"] == errno.EIO, (
            f"reading never-cached {rel} with the origin down: want EIO, "
            f"got {res}")
        assert res["elapsed"] < 35, (
            f"EIO for {rel} took {res['elapsed']:.1f}s (bound ~30s)")


def test_cache_size_cap_holds(tmp_path, start_nginx, mounter):
    cap, block = 8 * MIB, 256 * KIB
    root = tmp_path / "capdata"
    layout = {f"set{i}/data_{i:02d}.bin": 4 * MIB + 1000 * i
              for i in range(7)}  # 28 MB > 3x the cap
    origintree.make_tree(str(root), layout, empty_dirs=())
    ng = start_nginx(root)
    m = mounter(ng.url, cache_size="8M", block_size="256K")
    for rel in sorted(layout):
        with open(root / rel, "rb") as f:
            want = f.read()
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)), want,
                                     rel)
    m.umount()

    slack = 4 * MIB + cap // 20  # one eviction batch + LMDB page overhead
    held, how = cachefiles.cached_bytes(m.cache_dir)
    assert held is not None, f"cannot measure the cache: {how}"
    assert held <= cap + slack, (
        f"cache holds {held} bytes ({how}) after reading "
        f"{sum(layout.values())} bytes with cache_size={cap}")
    assert held >= block, f"cache holds only {held} bytes ({how})"
    stats = cachefiles.stats_file(m.cache_dir)
    if "bytes" in stats:
        assert stats["bytes"] <= cap + slack, f"stats file: {stats}"

    # Everything still reads right once evicted.
    m2 = mounter(ng.url, cache_dir=m.cache_dir, cache_size="8M",
                 block_size="256K")
    for rel in sorted(layout):
        with open(root / rel, "rb") as f:
            want = f.read()
        origintree.assert_same_bytes(origintree.read_all(m2.path(rel)), want,
                                     rel + " (second pass)")


def test_corrupted_block_detected_and_refetched(tree, nginx, mounter):
    rel = "big.bin"
    data = tree.data(rel)
    off = 5 * BLOCK + 1000  # inside block 5
    pattern = data[off:off + 32]
    m = mounter(nginx.url)
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)), data, rel)
    m.umount()

    flipped = cachefiles.flip_pattern(m.cache_dir, pattern)
    assert flipped > 0, ("a 32-byte pattern of the cached block was not found "
                         f"in {m.cache_dir}/data.mdb (block not cached, or "
                         "stored transformed?)")
    log_lines = len(nginx.requests())

    m2 = mounter(nginx.url, cache_dir=m.cache_dir,
                 expected_errors=[r"(?i)checksum|corrupt|xxh|mismatch"])
    got = origintree.read_all(m2.path(rel))
    origintree.assert_same_bytes(got, data, rel + " (after corruption)")
    m2.umount()
    later = nginx.requests()[log_lines:]
    refetched = [l for l in later if l.startswith("GET ")]
    assert refetched, ("the corrupted block was not refetched from the "
                       "origin (no GET after remount), yet data was right: "
                       "was the corrupted copy really the live one?")
    ranges = accesslog.byte_ranges(nginx, rel, len(data))
    assert any(a <= off < b for a, b in ranges[-len(refetched):]), (
        f"no GET after remount covers offset {off}: {later}")
    stats = cachefiles.stats_file(m2.cache_dir)
    if "corrupt" in stats:
        assert stats["corrupt"] >= 1, f"stats file: {stats}"
