"""Fixtures for the dmsfs end-to-end tests.

  tree        the standard origin tree (origintree.standard_layout) for block
              size BLOCK, generated in a fresh temp dir: .root, .layout
  nginx       origin.Nginx serving tree.root (WebDAV), stopped at teardown
  mounter     factory: mounter(url, **options) -> started mount.Mount with
              its own mountpoint and (unless given) its own cache dir;
              every mount still up at teardown is unmounted with the full
              checks (exit 0, no unexpected error lines), then forced away

The test_mount_* tests need root (FUSE, nginx as root) and build/dmsfs; they
are skipped with a clear reason otherwise.  test_fixtures.py checks the
origins themselves and needs neither.
"""
import itertools
import os

import pytest

import mount as mountlib
import origintree
from origin import Nginx

BLOCK = origintree.BLOCK
DEFAULT_TTL = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "integration tests need root (FUSE mounts, nginx as root)"
    elif not os.path.exists("/dev/fuse"):
        reason = "/dev/fuse is missing"
    elif not os.access(mountlib.DMSFS, os.X_OK):
        reason = f"{mountlib.DMSFS} is not built (run make)"
    if reason:
        for item in items:
            if os.path.basename(str(item.fspath)).startswith("test_mount_"):
                item.add_marker(pytest.mark.skip(reason=reason))


class Tree:
    def __init__(self, root, layout, block_size):
        self.root = str(root)
        self.layout = layout
        self.block_size = block_size

    def path(self, rel):
        return os.path.join(self.root, rel)

    def data(self, rel):
        with open(self.path(rel), "rb") as f:
            return f.read()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "origin"
    layout = origintree.make_standard_tree(str(root), BLOCK)
    return Tree(root, layout, BLOCK)


@pytest.fixture
def nginx(tree):
    ng = Nginx(tree.root).start()
    yield ng
    ng.stop()


@pytest.fixture
def start_nginx():
    """Factory for extra origins: start_nginx(root) -> started Nginx."""
    started = []

    def start(root):
        ng = Nginx(str(root)).start()
        started.append(ng)
        return ng
    yield start
    for ng in started:
        ng.stop()


@pytest.fixture
def mounter(tmp_path):
    """mounter(url, foreground=True, expected_errors=(), start=True,
    mountpoint=None, cache_dir=..., block_size=..., meta_ttl=..., other -o
    options) -> Mount.  An option given as None is left out.

    Defaults: a fresh cache dir per mount, block_size=BLOCK.  Pass
    cache_dir=m.cache_dir to remount on the same cache."""
    mounts = []
    counter = itertools.count()

    def make(url, foreground=True, expected_errors=(), start=True,
             mountpoint=None, **options):
        n = next(counter)
        mnt = mountpoint or tmp_path / f"mnt{n}"
        os.makedirs(mnt, exist_ok=True)
        opts = {"cache_dir": str(tmp_path / f"cache{n}"),
                "block_size": f"{BLOCK // 1024}K"}
        opts.update(options)
        m = mountlib.Mount(url, mnt, tmp_path / f"dmsfs{n}.log", opts,
                           foreground=foreground,
                           expected_errors=expected_errors)
        mounts.append(m)
        if start:
            m.start()
        return m

    yield make
    errors = []
    for m in mounts:
        try:
            if m.running:
                m.umount()
        except AssertionError as e:
            errors.append(f"{m.mountpoint}: {e}")
        finally:
            m.cleanup()
    assert not errors, "teardown unmount failed:\n" + "\n".join(errors)
