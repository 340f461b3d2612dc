"""Looking inside a dmsfs cache directory (LMDB data.mdb, stats file)."""
import os
import re
import shutil
import subprocess


def lmdb_db_bytes(cache_dir, db="blocks"):
    """Bytes of the pages of one named LMDB database (mdb_stat -a), or None
    if mdb_stat is missing or the database is not there."""
    if not shutil.which("mdb_stat"):
        return None
    r = subprocess.run(["mdb_stat", "-e", "-a", cache_dir],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None
    page = int(re.search(r"Page size: (\d+)", r.stdout).group(1))
    sections = re.split(r"^Status of ", r.stdout, flags=re.M)[1:]
    for sec in sections:
        name = sec.splitlines()[0].strip()
        if name == db:
            pages = sum(int(n) for n in re.findall(
                r"(?:Branch|Leaf|Overflow) pages: (\d+)", sec))
            return pages * page
    return None


def stats_file(cache_dir):
    """The key=value pairs of cache_dir/stats (written at unmount), or {}."""
    try:
        with open(os.path.join(cache_dir, "stats")) as f:
            text = f.read()
    except OSError:
        return {}
    return stats_file_text(text)


def stats_file_text(text):
    """The key=value pairs of a stats file's text."""
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}


def cached_bytes(cache_dir):
    """Block bytes a cache holds: the "blocks" DB pages from mdb_stat, else
    bytes= from the stats file.  Returns (bytes, how) or (None, reason)."""
    n = lmdb_db_bytes(cache_dir)
    if n is not None:
        return n, "mdb_stat -a (blocks DB pages x page size)"
    st = stats_file(cache_dir)
    if "bytes" in st:
        return st["bytes"], "cache_dir/stats bytes="
    return None, "no 'blocks' DB in mdb_stat -a and no stats file"


def used_size(cache_dir):
    """Bytes of data.mdb in use (pages used x page size from mdb_stat -e),
    bounded by the file size; the file may be sparse up to the map size."""
    size = os.path.getsize(os.path.join(cache_dir, "data.mdb"))
    if shutil.which("mdb_stat"):
        r = subprocess.run(["mdb_stat", "-e", cache_dir], capture_output=True,
                           text=True, timeout=60)
        m = re.search(r"Page size: (\d+).*?Number of pages used: (\d+)",
                      r.stdout, re.S)
        if r.returncode == 0 and m:
            return min(size, int(m.group(1)) * int(m.group(2)))
    return size


def find_pattern(cache_dir, pattern, chunk=16 << 20):
    """Offsets of every occurrence of pattern in the used part of
    cache_dir/data.mdb."""
    limit = used_size(cache_dir)
    found = []
    with open(os.path.join(cache_dir, "data.mdb"), "rb") as f:
        base = 0
        while base < limit:
            f.seek(base)
            buf = f.read(min(chunk + len(pattern) - 1, limit - base))
            pos = buf.find(pattern)
            while pos >= 0:
                if pos < chunk:
                    found.append(base + pos)
                pos = buf.find(pattern, pos + 1)
            base += chunk
    return found


def flip_pattern(cache_dir, pattern):
    """Flips one bit in the middle of every occurrence of pattern in
    cache_dir/data.mdb.  Returns the number of occurrences changed."""
    offsets = find_pattern(cache_dir, pattern)
    with open(os.path.join(cache_dir, "data.mdb"), "r+b") as f:
        for off in offsets:
            f.seek(off + len(pattern) // 2)
            byte = f.read(1)[0]
            f.seek(off + len(pattern) // 2)
            f.write(bytes([byte ^ 0x01]))
        f.flush()
        os.fsync(f.fileno())
    return len(offsets)
