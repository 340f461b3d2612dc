"""Folder prefetch (fs/prefetch.c): a reader walking a folder of small files
gets the next ones fetched while it copies the current one.

Checked against a real nginx and FUSE mount: a walk in name order and one in
inode order (GNU cp's) bring the files after it into the cache, bounded by
prefetch_files, and every byte read is the origin's; each file is fetched
once; a random reader causes at most prefetch_files fetches it did not ask
for; a file the reader may not read is never fetched for it; a file changed
at the origin after it was prefetched is read new once meta_ttl has passed;
prefetch_files=0 turns it off."""
import errno
import os
import random
import subprocess
import time

import pytest

import accesslog
import origintree
# Throw-away user, mountpoint folder others can traverse.
from test_mount_allow_other import other_user, public_dir  # noqa: F401

KiB = 1024
N_FILES = 40


def make_folder(root, rel="d", n=N_FILES, seed=7):
    """n files of 2..64 KiB (fixed seed) in root/rel: {relpath: bytes}."""
    rnd = random.Random(seed)
    files = {}
    for i in range(n):
        p = f"{rel}/f{i:03d}.bin"
        files[p] = origintree.write_file(str(root), p, size=rnd.randint(2 * KiB, 64 * KiB),
                                         mtime=origintree.BASE_MTIME)
    return files


def gets(ng):
    """{path: number of GETs} from nginx's access log."""
    out = {}
    for method, path, status, _, _ in accesslog.entries(ng):
        if method == "GET" and status in (200, 206):
            out[path.lstrip("/")] = out.get(path.lstrip("/"), 0) + 1
    return out


def wait_until(pred, what, timeout=20.0, log=None):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            msg = f"{what}: not the case after {timeout:.0f}s"
            if log:
                msg += "\n" + "\n".join(log().splitlines()[-20:])
            raise AssertionError(msg)
        time.sleep(0.05)


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def folder(tmp_path, start_nginx):
    root = tmp_path / "origin"
    files = make_folder(root)
    ng = start_nginx(root)
    return root, files, ng


def names_by_ino(mnt, rel):
    d = os.path.join(mnt, rel)
    ents = list(os.scandir(d))
    return [f"{rel}/{e.name}" for e in sorted(ents, key=lambda e: e.inode())]


@pytest.mark.parametrize("order", ["name", "ino"])
def test_walk_prefetches_next_files_bounded(folder, mounter, order):
    root, files, ng = folder
    m = mounter(ng.url, prefetch_files=8)
    if order == "name":
        walk = sorted(files)
        assert walk == [f"d/{e}" for e in sorted(os.listdir(m.path("d")))]
    else:
        walk = names_by_ino(m.mountpoint, "d")
    assert read(m.path(walk[0])) == files[walk[0]]
    assert read(m.path(walk[1])) == files[walk[1]]
    want = set(walk[2:10])
    wait_until(lambda: want <= set(gets(ng)), "the 8 files after the walker fetched",
               log=m.log)
    time.sleep(0.5)
    got = gets(ng)
    assert set(got) == set(walk[:10]), sorted(set(got) - set(walk[:10]))
    # The rest of the walk: bytes are the origin's, each file fetched once.
    for rel in walk[2:]:
        assert read(m.path(rel)) == files[rel], rel
    got = gets(ng)
    assert set(got) == set(files)
    assert all(v == 1 for v in got.values()), {k: v for k, v in got.items() if v > 1}


def test_cp_r_copies_intact_and_fetches_each_file_once(folder, mounter, tmp_path):
    root, files, ng = folder
    m = mounter(ng.url)
    dst = tmp_path / "copy"
    subprocess.run(["cp", "-r", m.path("d"), str(dst)], check=True, timeout=120)
    for rel, data in files.items():
        assert (dst / rel[2:]).read_bytes() == data, rel
    got = gets(ng)
    assert set(got) == set(files)
    assert all(v == 1 for v in got.values()), {k: v for k, v in got.items() if v > 1}


@pytest.mark.parametrize("pattern", ["sample", "pairs"])
def test_random_reader_gets_bounded_prefetch(tmp_path, start_nginx, mounter, pattern):
    """A random reader, even one that often opens two neighbours in a row
    (each pair looks like the start of a walk), costs at most
    prefetch_files fetches it did not ask for."""
    root = tmp_path / "origin"
    files = make_folder(root, n=80, seed=11)
    ng = start_nginx(root)
    m = mounter(ng.url, prefetch_files=4)
    names = sorted(files)
    os.listdir(m.path("d"))
    if pattern == "sample":
        opened = random.Random(5).sample(names, 40)
    else:
        opened = [names[k + j] for k in (0, 40, 8, 56, 16, 72, 24, 64, 32, 48)
                  for j in (0, 1)]
    for rel in opened:
        assert read(m.path(rel)) == files[rel]
        time.sleep(0.02)
    time.sleep(1.0)
    got = gets(ng)
    extra = set(got) - set(opened)
    assert len(extra) <= 4, sorted(extra)
    assert all(v == 1 for v in got.values())


def test_prefetch_off(folder, mounter):
    root, files, ng = folder
    m = mounter(ng.url, prefetch_files=0)
    walk = sorted(files)
    for rel in walk[:5]:
        assert read(m.path(rel)) == files[rel]
    time.sleep(1.0)
    assert set(gets(ng)) == set(walk[:5])


def test_changed_at_origin_after_prefetch_is_read_new_after_meta_ttl(folder, mounter):
    root, files, ng = folder
    m = mounter(ng.url, prefetch_files=8, meta_ttl=1)
    walk = sorted(files)
    read(m.path(walk[0]))
    read(m.path(walk[1]))
    wait_until(lambda: walk[5] in gets(ng), "prefetch of a later file", log=m.log)
    new = origintree.write_file(str(root), walk[5], size=5000,
                                mtime=origintree.BASE_MTIME + 100)
    assert new != files[walk[5]]
    time.sleep(2.5)     # past meta_ttl (and the kernel's attribute timeout)
    assert read(m.path(walk[5])) == new


# ---------------------------------------------------------------- rules

_READ = r"""
import os, sys
for p in sys.argv[1:]:
    try:
        with open(p, "rb") as f:
            f.read()
        print("ok", p)
    except OSError as e:
        print(e.errno, p)
"""


def test_unreadable_files_are_never_prefetched(public_dir, other_user, tmp_path,
                                               start_nginx, mounter):
    root = tmp_path / "origin"
    files = make_folder(root, n=20, seed=3)
    ng = start_nginx(root)
    walk = sorted(files)
    secret = walk[3:6]          # right after where the walk starts
    rules = tmp_path / "authdb"
    rules.write_text("u * " + " ".join(f"/{s} -rl" for s in secret) + " / rl\n")
    os.chmod(rules, 0o644)
    mnt = os.path.join(public_dir, "mnt")
    m = mounter(ng.url, mountpoint=mnt, acl=str(rules), allow_other=True,
                prefetch_files=8, expected_errors=(r"(?i)denied",))
    name, uid, gid = other_user
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                        "/usr/bin/python3", "-c", _READ,
                        *[os.path.join(mnt, rel) for rel in walk[:3]]],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.stdout.split().count("ok") == 3, r.stdout + r.stderr
    wait_until(lambda: set(walk[6:11]) <= set(gets(ng)),
               "the readable files after the secret ones fetched", log=m.log)
    time.sleep(0.5)
    assert not set(secret) & set(gets(ng))
    # The listing does not show them and reading them is refused.
    assert not set(os.path.basename(s) for s in secret) & set(
        subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                        "ls", os.path.join(mnt, "d")], capture_output=True, text=True,
                       timeout=60, cwd="/").stdout.split())
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                        "/usr/bin/python3", "-c", _READ, os.path.join(mnt, secret[0])],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.stdout.split()[0] in (str(errno.EACCES), str(errno.ENOENT)), r.stdout
    assert not set(secret) & set(gets(ng))
