"""The size of the kernel's read requests: dmsfs sets its mount's read-ahead
window (kernel_readahead, default 1M) so that page-cache reads reach it as
large requests, and keeps working with the kernel's default when it may not
(not root, /sys read-only)."""
import os
import subprocess

import mount as mountlib
import origintree

KIB = 1024


def bdi_readahead(mnt):
    st = os.stat(mnt)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    with open(f"/sys/class/bdi/{dev}/read_ahead_kb") as f:
        return int(f.read())


def read_check(tree, m, rel="big.bin"):
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                 tree.data(rel), rel)


def test_kernel_readahead_set_at_first_open(tree, nginx, mounter):
    m = mounter(nginx.url)
    before = bdi_readahead(m.mountpoint)
    assert before != 1024, "the kernel's default is 1 MiB already: no test"
    read_check(tree, m)
    assert bdi_readahead(m.mountpoint) == 1024, \
        "default kernel_readahead=1M not applied to the mount"
    m.umount()

    m2 = mounter(nginx.url, kernel_readahead="256K")
    read_check(tree, m2)
    assert bdi_readahead(m2.mountpoint) == 256
    m2.umount()

    m3 = mounter(nginx.url, kernel_readahead="0")
    kernels = bdi_readahead(m3.mountpoint)
    read_check(tree, m3)
    assert bdi_readahead(m3.mountpoint) == kernels, \
        "kernel_readahead=0 must leave the kernel's window alone"
    m3.umount()


def test_kernel_readahead_invalid_refused(nginx, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for bad in ("1K", "2G", "lots"):
        r = mountlib.run_dmsfs(["-f", "-o",
                                f"kernel_readahead={bad},cache_dir={tmp_path}/c",
                                nginx.url, str(mnt)], timeout=30)
        assert r.returncode != 0 and f"kernel_readahead={bad}" in r.stderr, \
            f"kernel_readahead={bad}: rc {r.returncode}: {r.stderr}"
        assert not mountlib.is_mounted(str(mnt))


SCRIPT = r"""
set -e
# What a daemon that may not write sysfs sees: no bdi entries at all.
mount -t tmpfs -o size=1M none /sys/class/bdi
"$DMSFS" -f -o "cache_dir=$CACHE,block_size=64K" "$URL" "$MNT" \
    >"$LOG" 2>&1 &
pid=$!
i=0
until mountpoint -q "$MNT"; do
    i=$((i + 1)); [ $i -lt 600 ] || { kill $pid; exit 90; }
    kill -0 $pid || exit 91
    sleep 0.05
done
cmp "$MNT/big.bin" "$ORIG" || { fusermount3 -u "$MNT"; wait $pid; exit 92; }
dd if="$MNT/big.bin" of=/dev/null bs=1M status=none
fusermount3 -u "$MNT"
wait $pid
"""


def test_kernel_readahead_fails_soft_without_sysfs(tree, nginx, tmp_path):
    """In a mount namespace of its own with /sys/class/bdi hidden: the
    mount reads right (kernel's request size) and says why once."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "dmsfs.log"
    env = dict(os.environ, DMSFS=mountlib.DMSFS, CACHE=str(tmp_path / "c"),
               URL=nginx.url, MNT=str(mnt), LOG=str(log),
               ORIG=os.path.join(tree.root, "big.bin"))
    r = subprocess.run(["unshare", "-m", "--propagation", "private",
                        "sh", "-c", SCRIPT], env=env, timeout=120,
                       capture_output=True, text=True)
    text = log.read_text(errors="replace")
    assert r.returncode == 0, f"rc {r.returncode}: {r.stderr}\n{text}"
    assert text.count("kernel read-ahead of") == 1 and \
        "left as it is" in text, text
    assert not [l for l in text.splitlines()
                if mountlib.ERROR_LINE.search(l)], text
