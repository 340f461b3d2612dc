"""The Squid proxy tier (-o proxy=GROUPS, CernVM-FS style): range reads
through a real caching Squid (squid_tier.CachingSquid, range_offset_limit -1:
whole objects fetched once, ranges served from the cache), two mounts
sharing one Squid, load balancing within a group ('|'), failover between
groups (';') and DIRECT.

Needs root, /dev/fuse, build/dmsfs, nginx and squid."""
import concurrent.futures
import os
import random
import re
import urllib.parse
import urllib.request

import pytest

import accesslog
import mount as mountlib
import origintree
from mount import find_daemon_pids, is_mounted, run_dmsfs, run_fusermount
from origin import Nginx, closed_port
from origintree import KIB, MIB
from squid_tier import SQUID, CachingSquid

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE, nginx)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(mountlib.DMSFS, os.X_OK),
                       reason=f"{mountlib.DMSFS} is not built (run make)"),
    pytest.mark.skipif(not os.access(SQUID, os.X_OK),
                       reason="squid is not installed"),
]

BLOCK = 64 * KIB
FILES = {
    "big.bin": 12 * MIB + 4321,
    "other.bin": 5 * MIB + 17,
    "small/three_blocks_plus_7.bin": 3 * BLOCK + 7,
    "small/one_byte.bin": 1,
    "small/empty.dat": 0,
    "with space/odd #name.bin": BLOCK + 3,
}


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "origin"
    origintree.make_tree(str(root), FILES, empty_dirs=())
    return str(root)


@pytest.fixture
def origin(data_root):
    ng = Nginx(data_root).start()
    yield ng
    ng.stop()


@pytest.fixture
def squid():
    sq = CachingSquid().start()
    yield sq
    sq.stop()


@pytest.fixture
def squid2():
    sq = CachingSquid().start()
    yield sq
    sq.stop()


def want(data_root, rel):
    with open(os.path.join(data_root, rel), "rb") as f:
        return f.read()


def check_all_files(m, data_root, what):
    for rel in FILES:
        origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                     want(data_root, rel), f"{rel} ({what})")


def random_preads(m, data_root, rel, n=40, seed=7):
    data = want(data_root, rel)
    rnd = random.Random(seed)
    fd = os.open(m.path(rel), os.O_RDONLY)
    try:
        for _ in range(n):
            off = rnd.randrange(0, len(data))
            ln = rnd.choice([1, 100, BLOCK - 1, BLOCK + 1, 3 * BLOCK])
            got = os.pread(fd, ln, off)
            assert got == data[off:off + ln], \
                f"pread {rel} {ln}@{off} differs from origin"
    finally:
        os.close(fd)


def origin_gets(origin, rel):
    """(status, range) of every GET of rel that reached nginx."""
    return [(status, rng) for method, path, status, _, rng
            in accesslog.entries(origin)
            if method == "GET" and path == "/" + rel]


def squid_gets(sq, origin, rel):
    url = origin.url + "/" + "/".join(
        urllib.parse.quote(s, safe="") for s in rel.split("/"))
    return [code for code, method, u in sq.entries()
            if method == "GET" and u == url]


def assert_fetched_once(origin, rel, size):
    """Every byte of rel left the origin at most once; with
    range_offset_limit -1 that is one whole-object GET (none for an empty
    file, which needs no data)."""
    ranges = accesslog.byte_ranges(origin, rel, size)
    bad = accesslog.overlaps(ranges)
    assert not bad, (f"{rel}: bytes fetched from the origin more than once "
                     f"through the squid tier: {bad[:5]} (all GETs: "
                     f"{origin_gets(origin, rel)})")
    if size:
        assert ranges == [(0, size)], (
            f"{rel}: want one whole-object GET at the origin "
            f"(range_offset_limit -1), got {origin_gets(origin, rel)}")


def test_two_mounts_one_squid_fetch_each_range_once(data_root, origin, squid,
                                                    mounter):
    m1 = mounter(origin.url, proxy=squid.url)
    m2 = mounter(origin.url, proxy=squid.url)
    assert m1.cache_dir != m2.cache_dir
    check_all_files(m1, data_root, "first mount via squid")
    random_preads(m2, data_root, "big.bin")
    check_all_files(m2, data_root, "second mount via squid")
    for rel, size in FILES.items():
        assert_fetched_once(origin, rel, size)
    # Nothing went around the proxy: no Range GET reached the origin.
    direct = [(p, rng) for meth, p, _, _, rng in accesslog.entries(origin)
              if meth == "GET" and rng is not None]
    assert not direct, f"range GETs reached nginx past squid: {direct[:5]}"
    # The second mount was served from squid's cache.
    codes = squid_gets(squid, origin, "big.bin")
    assert codes and any(c.startswith("TCP_") and "HIT" in c for c in codes), \
        f"no squid cache hit for big.bin: {codes[:20]}"


def test_two_mounts_read_concurrently_through_one_squid(data_root, origin,
                                                        squid, mounter):
    m1 = mounter(origin.url, proxy=squid.url)
    m2 = mounter(origin.url, proxy=squid.url)
    rels = ["big.bin", "other.bin"]

    def read(m, rel):
        return rel, origintree.read_all(m.path(rel))

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        jobs = [ex.submit(read, m, rel) for m in (m1, m2) for rel in rels]
        for j in jobs:
            rel, got = j.result(timeout=300)
            origintree.assert_same_bytes(got, want(data_root, rel),
                                         f"{rel} (concurrent via squid)")
    for rel in rels:
        assert_fetched_once(origin, rel, FILES[rel])


def test_dead_proxy_fails_over_to_next_group(data_root, origin, squid,
                                             mounter):
    dead = f"http://127.0.0.1:{closed_port()}"
    m = mounter(origin.url, proxy=f"{dead};{squid.url}")
    check_all_files(m, data_root, f"proxy={dead};squid")
    random_preads(m, data_root, "other.bin")
    assert squid_gets(squid, origin, "big.bin"), \
        "big.bin did not go through the second proxy group"
    assert_fetched_once(origin, "big.bin", FILES["big.bin"])
    log = m.log()
    assert re.search(r"proxy " + re.escape(dead) + r" taken out", log), \
        f"no log line says the dead proxy was taken out:\n{log[-2000:]}"


def test_dead_proxy_then_direct(data_root, origin, mounter):
    dead = f"http://127.0.0.1:{closed_port()}"
    m = mounter(origin.url, proxy=f"{dead};DIRECT")
    check_all_files(m, data_root, f"proxy={dead};DIRECT")
    random_preads(m, data_root, "big.bin")
    # Direct: dmsfs's own Range requests reach nginx.
    gets = origin_gets(origin, "big.bin")
    assert gets and all(status == 206 and rng for status, rng in gets), \
        f"big.bin not read with direct Range GETs: {gets[:10]}"


def test_dead_proxy_within_a_group(data_root, origin, squid, mounter):
    dead = f"http://127.0.0.1:{closed_port()}"
    m = mounter(origin.url, proxy=f"{dead}|{squid.url}")
    check_all_files(m, data_root, f"proxy={dead}|squid")
    assert squid_gets(squid, origin, "big.bin")
    assert_fetched_once(origin, "big.bin", FILES["big.bin"])


def test_group_load_balances(data_root, origin, squid, squid2, mounter):
    m = mounter(origin.url, proxy=f"{squid.url}|{squid2.url}")
    check_all_files(m, data_root, "proxy=squid1|squid2")
    random_preads(m, data_root, "big.bin")
    n1 = [e for e in squid.entries() if e[1] == "GET"]
    n2 = [e for e in squid2.entries() if e[1] == "GET"]
    assert n1 and n2, (f"'|' should spread requests over both proxies: "
                       f"{len(n1)} GETs via the first, {len(n2)} via the "
                       "second")
    # Each squid fetched an object at most once.
    for rel, size in FILES.items():
        assert len(accesslog.byte_ranges(origin, rel, size)) <= 2, \
            f"{rel}: {origin_gets(origin, rel)}"


def test_only_dead_proxies_mount_fails_clearly(data_root, origin, tmp_path):
    dead1 = f"http://127.0.0.1:{closed_port()}"
    dead2 = f"http://127.0.0.1:{closed_port()}"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = ["-o", f"cache_dir={tmp_path}/cache,connect_timeout=2,"
            f"proxy={dead1};{dead2}", origin.url, str(mnt)]
    try:
        r = run_dmsfs(args, timeout=120)
    finally:
        leftover = is_mounted(str(mnt))
        if leftover:
            run_fusermount(str(mnt), lazy=True)
    assert not leftover, "mounted although no proxy and no DIRECT can serve"
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"want one line on stderr, got:\n{r.stderr}"
    assert re.search(r"(?i)127\.0\.0\.1|proxy|connect|unreachable", lines[0]), \
        f"stderr does not say why: {lines[0]!r}"
    assert not find_daemon_pids(str(mnt))
    assert not origin_gets(origin, "big.bin")


def test_fixture_caches_whole_object_once(data_root, origin, squid):
    """CachingSquid itself (no dmsfs): two range requests for different
    parts of an object give one whole-object GET at the origin."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": squid.url}))
    data = want(data_root, "other.bin")
    for off in (3 * MIB, 17, 5 * MIB):
        req = urllib.request.Request(
            origin.url + "/other.bin",
            headers={"Range": f"bytes={off}-{off + 999}"})
        with opener.open(req, timeout=60) as r:
            assert r.status == 206
            assert r.read() == data[off:off + 1000]
    assert_fetched_once(origin, "other.bin", FILES["other.bin"])
