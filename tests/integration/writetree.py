"""Helpers for the writable-home tests (issue 8): tree snapshots, waiting
for uploads at the origin, a generated source tree, and a writable mount
that can also be a plain local folder (to debug the harness itself).

  snapshot(root)          {rel: ("d",) | ("f", size, sha256)} of a tree on
                          disk; dmsfs upload temporaries (.NAME.dmsfs-*)
                          are listed too, so a leftover one is a difference
  diff_trees(a, b)        human-readable differences (first 20)
  wait_uploaded(origin_dir, expected, timeout, log=None)
                          polls the origin's directory (the nginx root on
                          disk) until it equals expected (a snapshot or a
                          folder); fails with the differences and the
                          daemon log tail otherwise
  make_source_tree(root, seed, nfiles, ascii_only)
                          a few hundred files of odd names and sizes
  dmsctl_sync_supported() True if build/dmsctl knows "sync"
  WriteMount              dmsfs -o rw over an origin folder, or with
                          local=True (env DMSFS_WRITE_LOCAL=1) the origin
                          folder itself, so the differential harness can
                          be run without the feature
"""
import hashlib
import os
import random
import signal
import stat
import subprocess
import time

import mount as mountlib

DMSCTL = os.path.join(mountlib.ROOT, "build", "dmsctl")
LOCAL = bool(os.environ.get("DMSFS_WRITE_LOCAL"))
TEMP_MARK = ".dmsfs-"


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def snapshot(root):
    """Every entry under root (root itself left out), by relative path."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for n in dirnames:
            rel = os.path.normpath(os.path.join(rel_dir, n))
            out[rel] = ("d",)
        for n in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, n))
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode):
                    out[rel] = ("f", st.st_size, file_sha(p))
                else:
                    out[rel] = ("other", stat.S_IFMT(st.st_mode))
            except FileNotFoundError:
                pass  # raced with an upload's rename: the next poll sees it
    return out


def describe(e):
    if e is None:
        return "missing"
    if e[0] == "d":
        return "dir"
    if e[0] == "f":
        return f"file size={e[1]} sha={e[2][:12]}"
    return f"other {e}"


def diff_trees(got, want, limit=20):
    """Lines 'REL: got X, want Y' for every entry that differs."""
    lines = []
    for rel in sorted(set(got) | set(want)):
        g, w = got.get(rel), want.get(rel)
        if g != w:
            lines.append(f"  {rel!r}: got {describe(g)}, want {describe(w)}")
    more = len(lines) - limit
    lines = lines[:limit]
    if more > 0:
        lines.append(f"  (+{more} more)")
    return lines


def temp_names(root):
    """Upload temporaries left anywhere under root."""
    return sorted(rel for rel in snapshot(root)
                  if TEMP_MARK in os.path.basename(rel))


def wait_uploaded(origin_dir, expected, timeout=60.0, log=None,
                  ignore=None):
    """Polls origin_dir until its snapshot equals expected (a snapshot dict
    or a folder to snapshot).  ignore(rel) -> True leaves an origin entry
    out (e.g. conflict copies checked separately).  A bound on a hang, not
    a speed assertion: pass a timeout with 2-3x slack."""
    if not isinstance(expected, dict):
        expected = snapshot(expected)
    deadline = time.monotonic() + timeout
    while True:
        got = snapshot(origin_dir)
        if ignore is not None:
            got = {k: v for k, v in got.items() if not ignore(k)}
        if got == expected:
            return got
        if time.monotonic() > deadline:
            msg = [f"origin {origin_dir} does not match after {timeout:.0f}s:"]
            msg += diff_trees(got, expected)
            if log is not None:
                text = log() if callable(log) else log
                msg.append("daemon log (tail):")
                msg += text.splitlines()[-25:]
            raise AssertionError("\n".join(msg))
        time.sleep(0.2)


# ---------------------------------------------------------------- trees

_ODD = ["plain", "with space", "UPPER lower", "-leading-dash", "#hash",
        "per%cent", "plus+sign", "eq=uals", "semi;colon", "comma,s",
        "tilde~", "quote'd", "amp&ersand", "paren(s)", "brack[et]",
        "dot.in.name", ".hidden", "..double", "trail.", "at@sign",
        "dollar$", "excl!", "q?mark", "a" * 200]
_UTF8 = ["caf\u00e9", "\u65e5\u672c", "\u00fcber-gr\u00f6\u00dfe", "emoji\U0001f600"]


def make_source_tree(root, seed=1, nfiles=300, ascii_only=False,
                     block=65536):
    """Writes nfiles files (sizes 0..~3 blocks, many at block edges) in
    nested folders with odd names, plus a few empty folders.  Returns the
    number of files."""
    rnd = random.Random(seed)
    names = list(_ODD) + ([] if ascii_only else list(_UTF8))
    os.makedirs(root, exist_ok=True)
    dirs = [""]
    for i in range(max(3, nfiles // 15)):
        parent = rnd.choice(dirs)
        if parent.count("/") >= 4:
            parent = ""
        d = os.path.join(parent, f"{rnd.choice(names)[:40]}-d{i}")
        os.makedirs(os.path.join(root, d), exist_ok=True)
        dirs.append(d)
    edges = [0, 1, block - 1, block, block + 1, 3 * block + 7]
    for i in range(nfiles):
        d = rnd.choice(dirs)
        name = f"{rnd.choice(names)}-{i}"
        if rnd.random() < 0.2:
            size = rnd.choice(edges)
        elif rnd.random() < 0.7:
            size = rnd.randrange(0, 4096)
        else:
            size = rnd.randrange(0, 3 * block)
        with open(os.path.join(root, d, name), "wb") as f:
            f.write(rnd.randbytes(size))
    for i in range(3):
        os.makedirs(os.path.join(root, rnd.choice(dirs), f"empty {i}"),
                    exist_ok=True)
    return nfiles


def pattern(size, seed=0):
    """Deterministic bytes that differ at every offset (no repeat within
    a block, so a misplaced block shows)."""
    return random.Random(seed).randbytes(size)


def dmsfs_writes_supported():
    """True if build/dmsfs knows the write-back options (issue 8): looked
    up in the binary, so nothing is mounted to find out."""
    try:
        with open(mountlib.DMSFS, "rb") as f:
            return b"writeback_delay=" in f.read()
    except OSError:
        return False


def skip_marks():
    """pytestmark of the writable-mount tests: root, a built dmsfs that
    knows writes (not needed with DMSFS_WRITE_LOCAL)."""
    import pytest
    return [
        pytest.mark.skipif(os.geteuid() != 0,
                           reason="needs root (FUSE, nginx)"),
        pytest.mark.skipif(not LOCAL and not os.access(mountlib.DMSFS,
                                                       os.X_OK),
                           reason=f"{mountlib.DMSFS} is not built"),
        pytest.mark.skipif(not LOCAL and not dmsfs_writes_supported(),
                           reason="build/dmsfs has no writable mounts "
                           "(issue 8) yet"),
    ]


# ---------------------------------------------------------------- dmsctl

def dmsctl_sync_supported():
    if not os.access(DMSCTL, os.X_OK):
        return False
    r = subprocess.run([DMSCTL, "--help"], capture_output=True, text=True,
                       timeout=30)
    return "sync" in (r.stdout + r.stderr)


def dmsctl(*args, timeout=120):
    return subprocess.run([DMSCTL, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------- mount

WRITE_OPTS = {"rw": True, "writeback_delay": 1, "unmount_flush": 20}


class WriteMount:
    """A writable dmsfs mount of url (the origin's view of origin_dir),
    remountable on the same cache; with local=True the "mount" is
    origin_dir itself (every dmsfs-only step is a no-op)."""

    def __init__(self, url, origin_dir, workdir, local=LOCAL,
                 expected_errors=(), **options):
        self.url = url
        self.origin_dir = str(origin_dir)
        self.workdir = str(workdir)
        self.local = local
        self.expected_errors = expected_errors
        self.opts = {"cache_dir": os.path.join(self.workdir, "cache"),
                     "block_size": "64K", **WRITE_OPTS}
        self.opts.update(options)
        self.mountpoint = (self.origin_dir if local else
                           os.path.join(self.workdir, "mnt"))
        os.makedirs(self.mountpoint, exist_ok=True)
        self.m = None
        self.n = 0
        # Set by a test that already failed (and reported the log): the
        # teardown then only forces the mount away, without its checks.
        self.failed = False

    def path(self, *rel):
        return os.path.join(self.mountpoint, *rel)

    def log(self):
        return self.m.log() if self.m else ""

    def start(self):
        if self.local:
            return self
        self.n += 1
        self.m = mountlib.Mount(
            self.url, self.mountpoint,
            os.path.join(self.workdir, f"dmsfs{self.n}.log"), self.opts,
            expected_errors=self.expected_errors)
        self.m.start()
        return self

    def umount(self):
        if self.m is not None and self.m.running:
            self.m.umount(timeout=60)

    def remount(self):
        self.umount()
        return self.start()

    def kill9(self):
        """kill -9 of the daemon, then the dead mount taken away."""
        if self.local:
            return
        os.kill(self.m.pid, signal.SIGKILL)
        self.m.proc.wait(30)
        self.m.proc = None
        mountlib.run_fusermount(self.mountpoint, lazy=True)
        deadline = time.monotonic() + 30
        while mountlib.is_mounted(self.mountpoint):
            assert time.monotonic() < deadline, "dead mount still there"
            time.sleep(0.1)

    def cleanup(self):
        if self.m is None:
            return
        try:
            if self.m.running and not self.failed:
                self.m.umount(timeout=60)
        finally:
            self.m.cleanup()
