"""The command contract: daemon mode returns 0 once the mount is usable;
bad invocations exit non-zero with one clear line on stderr and leave no
mount and no daemon behind; unmount makes the daemon exit 0."""
import os
import re

import pytest

import origintree
from mount import find_daemon_pids, is_mounted, run_dmsfs, run_fusermount
from origin import closed_port


def test_daemon_mode_mounts_and_exits_on_unmount(tree, nginx, mounter):
    m = mounter(nginx.url, foreground=False)  # asserts rc 0 + mounted
    assert sorted(os.listdir(m.mountpoint)) == sorted(os.listdir(tree.root))
    rel = "RB1810001/raw/run_000123.nxs"
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                 tree.data(rel), rel)
    m.umount()  # asserts the daemon process goes away
    assert not is_mounted(m.mountpoint)


def test_foreground_exits_zero_on_unmount(tree, nginx, mounter):
    m = mounter(nginx.url)
    os.listdir(m.mountpoint)
    m.umount()
    assert m.exit_status == 0


def test_default_options_mount(tree, nginx, mounter):
    """No block_size given: the default (64K) is used and reads are right."""
    m = mounter(nginx.url, block_size=None)
    rel = "big.bin"
    origintree.assert_same_bytes(origintree.read_all(m.path(rel)),
                                 tree.data(rel), rel)


# name -> (function(ctx) -> (args, mountpoint), regex the error line must
# match).  ctx has url, mnt (an existing empty dir), tmp (a temp dir).
def _opts(ctx, extra):
    return ["-o", f"cache_dir={ctx['tmp']}/cache,{extra}"]


BAD = {
    "unknown option": (
        lambda c: _opts(c, "no_such_option=1") + [c["url"], c["mnt"]],
        r"no_such_option"),
    "block_size not a power of two": (
        lambda c: _opts(c, "block_size=3000") + [c["url"], c["mnt"]],
        r"block_size"),
    "block_size too large": (
        lambda c: _opts(c, "block_size=32M") + [c["url"], c["mnt"]],
        r"block_size"),
    "block_size too small": (
        lambda c: _opts(c, "block_size=2K") + [c["url"], c["mnt"]],
        r"block_size"),
    "bad cache_size": (
        lambda c: _opts(c, "cache_size=12Q") + [c["url"], c["mnt"]],
        r"cache_size"),
    "bad meta_ttl": (
        lambda c: _opts(c, "meta_ttl=soon") + [c["url"], c["mnt"]],
        r"meta_ttl"),
    "bad URL scheme": (
        lambda c: _opts(c, "meta_ttl=5") + ["gopher://127.0.0.1/x", c["mnt"]],
        r"(?i)gopher|url|scheme"),
    "not a URL": (
        lambda c: _opts(c, "meta_ttl=5") + ["just-some-words", c["mnt"]],
        r"(?i)just-some-words|url"),
    "missing mountpoint": (
        lambda c: _opts(c, "meta_ttl=5") + [c["url"], c["tmp"] + "/nodir"],
        r"(?i)nodir|mount ?point"),
    "unreachable origin, empty cache": (
        lambda c: _opts(c, "meta_ttl=5") +
        [f"http://127.0.0.1:{closed_port()}/", c["mnt"]],
        r"(?i)127\.0\.0\.1|unreachable|connect|refused"),
    "cache dir is a file": (
        lambda c: ["-o", f"cache_dir={c['cachefile']}", c["url"], c["mnt"]],
        r"(?i)cachefile|cache"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("foreground", [False, True],
                         ids=["daemon", "foreground"])
def test_bad_invocation(tmp_path, nginx, case, foreground):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cachefile = tmp_path / "cachefile"
    cachefile.write_text("not a directory\n")
    ctx = {"url": nginx.url, "mnt": str(mnt), "tmp": str(tmp_path),
           "cachefile": str(cachefile)}
    make_args, pattern = BAD[case]
    args = (["-f"] if foreground else []) + make_args(ctx)
    try:
        r = run_dmsfs(args, timeout=60)
    finally:
        leftover = is_mounted(str(mnt))
        if leftover:
            run_fusermount(str(mnt), lazy=True)
    assert not leftover, f"{case}: a mount was left at {mnt}"
    assert r.returncode != 0, f"{case}: exit status 0\nstderr: {r.stderr}"
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if not foreground:  # the contract: exactly one clear line
        assert len(lines) == 1, (f"{case}: want one line on stderr, got "
                                 f"{len(lines)}:\n{r.stderr}")
    assert any(re.search(pattern, l) for l in lines), \
        f"{case}: stderr does not say why ({pattern}): {r.stderr!r}"
    assert not find_daemon_pids(str(mnt)), f"{case}: a daemon was left running"
    assert cachefile.read_text() == "not a directory\n"
