"""Every write or modification fails with EROFS and leaves the origin as it
was."""
import errno
import os

import pytest

import origintree

FILE = "RB1810001/logbook.txt"
DIR = "RB1810001/raw"
EMPTY_DIR = "empty_dir"

OPERATIONS = {
    "open O_WRONLY": lambda p: os.close(os.open(p(FILE), os.O_WRONLY)),
    "open O_RDWR": lambda p: os.close(os.open(p(FILE), os.O_RDWR)),
    "open O_APPEND": lambda p: os.close(os.open(p(FILE),
                                                os.O_WRONLY | os.O_APPEND)),
    "open O_TRUNC": lambda p: os.close(os.open(p(FILE),
                                               os.O_WRONLY | os.O_TRUNC)),
    "create": lambda p: os.close(os.open(p("RB1810001/new.txt"),
                                         os.O_WRONLY | os.O_CREAT, 0o644)),
    "mkdir": lambda p: os.mkdir(p("RB1810001/newdir")),
    "rmdir": lambda p: os.rmdir(p(EMPTY_DIR)),
    "unlink": lambda p: os.unlink(p(FILE)),
    "rename file": lambda p: os.rename(p(FILE), p("RB1810001/renamed.txt")),
    "rename dir": lambda p: os.rename(p(DIR), p("RB1810001/raw2")),
    "truncate": lambda p: os.truncate(p(FILE), 0),
    "chmod": lambda p: os.chmod(p(FILE), 0o644),
    "chown": lambda p: os.chown(p(FILE), 1, 1),
    "utime": lambda p: os.utime(p(FILE), (0, 0)),
    "setxattr": lambda p: os.setxattr(p(FILE), "user.test", b"1"),
    "symlink": lambda p: os.symlink("logbook.txt", p("RB1810001/link")),
    "link": lambda p: os.link(p(FILE), p("RB1810001/hardlink")),
}


@pytest.fixture
def ro_mount(tree, nginx, mounter):
    return mounter(nginx.url)


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_modification_fails_erofs(tree, ro_mount, op):
    before = origintree.snapshot(tree.root)
    try:
        OPERATIONS[op](ro_mount.path)
    except OSError as e:
        assert e.errno == errno.EROFS, \
            f"{op}: failed with {errno.errorcode.get(e.errno)}, want EROFS"
    else:
        raise AssertionError(f"{op} succeeded on a read-only mount")
    assert origintree.snapshot(tree.root) == before, f"{op} changed the origin"
    # The mount still shows the file unchanged.
    origintree.assert_same_bytes(origintree.read_all(ro_mount.path(FILE)),
                                 tree.data(FILE), FILE)
