"""Deterministic origin trees for the integration tests, and helpers to
compare a mounted tree with the origin it comes from.

Content is pseudo-random but fixed: the bytes of a file depend only on its
relative path and size, so a test can always recompute what a file must hold.
"""
import os
import random
import stat

KIB = 1024
MIB = 1024 * 1024

# Block size of the standard tree and of the test mounts (not the default,
# so that block_size= is exercised too).
BLOCK = 64 * KIB

# Integer mtimes: WebDAV's getlastmodified has one-second resolution.
BASE_MTIME = 1_600_000_000

# Names that need percent-encoding or careful handling somewhere on the way.
ODD_NAMES = [
    "with space.txt",
    "hash#1.dat",
    "percent%41.dat",
    "percent%zz.dat",
    "question?mark.dat",
    "plus+sign.dat",
    "données_ü.h5",
    "日本語のファイル.txt",
    "-leading-dash.txt",
    "mixed %20 #?+&;=.bin",
    "trailing space ",
]
ODD_DIR = "odd dir #%?+ é"


def content(relpath, size):
    """The bytes of the file at relpath (fixed for a given path and size)."""
    return random.Random(f"dmsfs:{relpath}:{size}").randbytes(size)


def write_file(root, relpath, size=None, data=None, mtime=None):
    """Writes a file under root (creating directories) and sets its mtime.
    Returns the bytes written."""
    if data is None:
        data = content(relpath, size)
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return data


def block_sizes(b):
    """The interesting sizes around a block size b."""
    return {
        "empty.dat": 0,
        "one_byte.bin": 1,
        "block_minus_1.bin": b - 1,
        "block_exact.bin": b,
        "block_plus_1.bin": b + 1,
        "three_blocks_plus_7.bin": 3 * b + 7,
    }


def standard_layout(b):
    """relpath -> size of the standard test tree for block size b."""
    files = dict(block_sizes(b))
    files["big.bin"] = 3 * MIB + 12345
    for exp in ("RB1810001", "RB1810002"):
        for run in (123, 124, 125):
            files[f"{exp}/raw/run_{run:06d}.nxs"] = 50 * KIB + run
        files[f"{exp}/processed/reduced_000123.h5"] = 2 * b + 3
        files[f"{exp}/logbook.txt"] = 700
    files["deep/a/b/c/d/e/leaf.txt"] = 10
    for i, name in enumerate(ODD_NAMES):
        files[f"{ODD_DIR}/{name}"] = 100 + i
        files[name] = b + i  # also at the top level, multi-block
    return files


def make_tree(root, layout, empty_dirs=("empty_dir", "RB1810002/empty")):
    """Creates the files of layout (relpath -> size) under root with distinct
    fixed mtimes, plus the given empty directories.  Returns layout."""
    os.makedirs(root, exist_ok=True)
    for i, (rel, size) in enumerate(sorted(layout.items())):
        write_file(root, rel, size=size, mtime=BASE_MTIME + 1000 * i)
    for d in empty_dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    return layout


def make_standard_tree(root, block_size):
    return make_tree(root, standard_layout(block_size))


def snapshot(root):
    """relpath -> (kind, size, mtime) for everything under root.  Sizes and
    mtimes are given for regular files only ('d' entries carry None)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", None, None)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("f", st.st_size, int(st.st_mtime))
            else:
                out[rel] = ("?", None, None)
    return out


def diff_snapshots(want, got, limit=20):
    """A readable description of how two snapshots differ ('' if equal)."""
    lines = []
    for rel in sorted(set(want) - set(got)):
        lines.append(f"missing in mount: {rel!r} {want[rel]}")
    for rel in sorted(set(got) - set(want)):
        lines.append(f"unexpected in mount: {rel!r} {got[rel]}")
    for rel in sorted(set(want) & set(got)):
        if want[rel] != got[rel]:
            lines.append(f"differs: {rel!r}: origin {want[rel]} mount {got[rel]}"
                         " (kind, size, mtime)")
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def files_of(root):
    """Sorted relpaths of the regular files under root."""
    return sorted(rel for rel, (kind, _, _) in snapshot(root).items()
                  if kind == "f")


def read_all(path, chunk=128 * KIB):
    with open(path, "rb") as f:
        parts = []
        while True:
            b = f.read(chunk)
            if not b:
                return b"".join(parts)
            parts.append(b)


def first_difference(a, b):
    """Offset of the first differing byte of two byte strings, or None."""
    n = min(len(a), len(b))
    for off in range(0, n, 4096):
        if a[off:off + 4096] != b[off:off + 4096]:
            for i in range(off, min(off + 4096, n)):
                if a[i] != b[i]:
                    return i
    return None if len(a) == len(b) else n


def assert_same_bytes(got, want, what):
    if got != want:
        off = first_difference(got, want)
        raise AssertionError(f"{what}: content differs from origin "
                             f"(got {len(got)} bytes, want {len(want)}; "
                             f"first difference at offset {off})")
