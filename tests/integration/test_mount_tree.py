"""The mounted tree is the origin tree: names, types, sizes, mtimes, modes,
bytes; random and concurrent reads; subtree mounts side by side."""
import concurrent.futures
import hashlib
import os
import random
import stat
import urllib.parse

import accesslog
import origintree
from origintree import BLOCK
from mount import read_in_child


def assert_tree_equal(mnt_root, origin_root):
    want = origintree.snapshot(origin_root)
    got = origintree.snapshot(mnt_root)
    diff = origintree.diff_snapshots(want, got)
    assert not diff, f"mounted tree differs from origin:\n{diff}"


def assert_modes(mnt_root):
    bad = []
    for dirpath, dirnames, filenames in os.walk(mnt_root):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            want = 0o555 if stat.S_ISDIR(st.st_mode) else 0o444
            if stat.S_IMODE(st.st_mode) != want or st.st_uid != 0 or \
                    st.st_gid != 0:
                bad.append(f"{os.path.relpath(p, mnt_root)}: mode "
                           f"{stat.S_IMODE(st.st_mode):o} uid {st.st_uid} "
                           f"gid {st.st_gid}")
    assert not bad, ("want files 0444, dirs 0555, owner root:\n" +
                     "\n".join(bad[:20]))


def assert_files_equal(mnt_root, origin_root, rels):
    for rel in rels:
        got = origintree.read_all(os.path.join(mnt_root, rel))
        with open(os.path.join(origin_root, rel), "rb") as f:
            want = f.read()
        origintree.assert_same_bytes(got, want, rel)


def test_walk_matches_origin(tree, nginx, mounter):
    m = mounter(nginx.url)
    assert_tree_equal(m.mountpoint, tree.root)
    assert_modes(m.mountpoint)


def test_every_file_byte_exact(tree, nginx, mounter):
    m = mounter(nginx.url)
    assert_files_equal(m.mountpoint, tree.root, sorted(tree.layout))


def test_odd_names_open_directly(tree, nginx, mounter):
    """Lookup by name without a prior listing (stat then read)."""
    m = mounter(nginx.url)
    for name in origintree.ODD_NAMES:
        for rel in (name, f"{origintree.ODD_DIR}/{name}"):
            st = os.stat(m.path(rel))
            assert st.st_size == tree.layout[rel], rel
            origintree.assert_same_bytes(
                origintree.read_all(m.path(rel)), tree.data(rel), rel)


def test_random_preads(tree, nginx, mounter):
    m = mounter(nginx.url)
    rng = random.Random(20240601)
    for rel in ("big.bin", "three_blocks_plus_7.bin", "block_plus_1.bin"):
        want = tree.data(rel)
        size = len(want)
        with open(m.path(rel), "rb") as f:
            fd = f.fileno()
            for i in range(300):
                off = rng.randrange(0, size + 100)
                n = rng.choice([1, 7, 4096, BLOCK - 1, BLOCK, BLOCK + 1,
                                3 * BLOCK, rng.randrange(1, 300_000)])
                got = os.pread(fd, n, off)
                assert got == want[off:off + n], (
                    f"{rel}: pread #{i} of {n} bytes at {off} returned "
                    f"{len(got)} bytes differing from origin "
                    f"(first difference at "
                    f"{origintree.first_difference(got, want[off:off + n])})")


def _sha256_by_reading(path, chunk):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def test_concurrent_sequential_reads_fetch_each_block_once(tree, nginx,
                                                           mounter):
    rel = "big.bin"
    want = hashlib.sha256(tree.data(rel)).hexdigest()
    size = tree.layout[rel]
    m = mounter(nginx.url)  # fresh cache
    path = m.path(rel)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(_sha256_by_reading, path, c)
                for c in (4096, 65536, 131072, 1 << 20)]
        futs += [ex.submit(read_in_child, path) for _ in range(3)]
        results = [f.result() for f in futs]
    for r in results[:4]:
        assert r == want, "a thread read wrong bytes"
    for r in results[4:]:
        assert r["errno"] == 0 and r["sha256"] == want, \
            f"a reader process read wrong bytes or failed: {r}"
    ranges = accesslog.byte_ranges(nginx, rel, size)
    dup = accesslog.overlaps(ranges)
    assert not dup, (f"bytes of {rel} fetched more than once (fresh cache, "
                     f"{len(ranges)} GETs), overlapping ranges: {dup[:10]}")
    assert accesslog.covered(ranges, 0, size), \
        f"the access log does not show all of {rel} fetched: {ranges}"


def test_two_subtree_mounts_side_by_side(tree, nginx, mounter):
    subs = ["RB1810001", origintree.ODD_DIR]
    mounts = [mounter(f"{nginx.url}/{urllib.parse.quote(s)}") for s in subs]
    assert mounts[0].cache_dir != mounts[1].cache_dir
    for m, sub in zip(mounts, subs):
        origin_sub = os.path.join(tree.root, sub)
        assert_tree_equal(m.mountpoint, origin_sub)
        assert_files_equal(m.mountpoint, origin_sub,
                           origintree.files_of(origin_sub))
    for m in mounts:
        m.umount()
        assert os.path.exists(os.path.join(m.cache_dir, "data.mdb")), \
            f"no data.mdb in {m.cache_dir}"
