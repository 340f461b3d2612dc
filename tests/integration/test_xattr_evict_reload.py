"""Issue 10: the read-only user.dmsfs.* extended attributes, dmsctl evict
and dmsctl reload.

- xattrs: cached goes 0 -> between -> 100 as a file is read; pinned
  follows dmsctl pin/unpin; listed by getfattr -d with the size-probe
  protocol; unknown names ENODATA, writes ENOTSUP; a user without the read
  right gets EACCES; source follows the failover to the second mirror.
- evict: a read file's blocks leave the cache (cached 0, the next read
  goes to the origin), folders recursively, a pinned file is refused with
  a hint to unpin, a user evicts only what they may read.
- reload: a changed rules file applies at once; a bad one is refused (the
  error printed by dmsctl and logged) and the old rules stay; only root or
  the mount's owner may reload.

Real nginx origins, real FUSE mounts, real users (useradd, setpriv);
needs root and /dev/fuse."""
import ctypes
import errno
import json
import os
import re
import signal
import subprocess
import time

import pytest

import accesslog
import mount as mountlib
import origintree
from origin import Nginx
from test_acl_mount import (acl_mount, as_user, assert_results,  # noqa: F401
                            default_rules, origin, people, public_dir)
from test_dmsctl_pin import _dmsctl

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
]

KIB = 1024
MIB = 1024 * KIB
BLOCK = 64 * KIB
SRC, CACHED, PINNED = "user.dmsfs.source", "user.dmsfs.cached", \
    "user.dmsfs.pinned"
FILES = {"data/a.bin": 10 * BLOCK + 17, "data/b.bin": 3 * BLOCK,
         "data/sub/c.bin": 2 * BLOCK + 1, "data/empty.bin": 0,
         "other/x.bin": 100}


def _gets(ng, rel):
    return [e for e in accesslog.entries(ng)
            if e[0] == "GET" and e[1] == "/" + rel]


def _x(path, name):
    return os.getxattr(path, name).decode()


def _wait_cached(path, done, timeout=20.0):
    """Blocks reach the cache through its writer thread: poll until
    done(value) (a bound on a hang, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        got = _x(path, CACHED)
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@pytest.fixture
def origin_ng(tmp_path):
    root = tmp_path / "origin"
    for rel, size in FILES.items():
        origintree.write_file(str(root), rel, size=size,
                              mtime=origintree.BASE_MTIME)
    ng = Nginx(str(root)).start()
    yield root, ng
    ng.stop()


# ---------------------------------------------------------------- xattrs

def test_cached_goes_from_0_to_100_and_pinned_follows_pin(origin_ng,
                                                          mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    a = m.path("data/a.bin")
    assert sorted(os.listxattr(a)) == sorted([SRC, CACHED, PINNED])
    assert _x(a, CACHED) == "0"
    assert _x(a, PINNED) == "no"
    assert _x(a, SRC) == ng.url + "/data/a.bin"
    with open(a, "rb") as f:
        f.read(2 * BLOCK)
    part = _wait_cached(a, lambda v: v != "0")
    assert re.fullmatch(r"\d+(\.\d)?", part), part
    assert 0 < float(part) < 100, part
    with open(a, "rb") as f:
        assert f.read() == (root / "data/a.bin").read_bytes()
    assert _wait_cached(a, lambda v: v == "100") == "100"
    assert _x(m.path("data/empty.bin"), CACHED) == "100"
    # Folders: the source only.
    assert os.listxattr(m.path("data")) == [SRC]
    assert _x(m.path("data"), SRC) == ng.url + "/data/"
    with pytest.raises(OSError) as e:
        os.getxattr(m.path("data"), CACHED)
    assert e.value.errno == errno.ENODATA
    # pinned follows dmsctl pin / unpin.
    b = m.path("data/b.bin")
    assert _dmsctl("pin", "-q", b).returncode == 0
    assert _x(b, PINNED) == "yes" and _x(b, CACHED) == "100"
    assert _dmsctl("unpin", "-q", b).returncode == 0
    assert _x(b, PINNED) == "no"


def test_getfattr_probe_protocol_and_refusals(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    a = m.path("data/sub/c.bin")
    r = subprocess.run(["getfattr", "-d", "--absolute-names", a],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f'{CACHED}="0"' in r.stdout, r.stdout
    assert f'{PINNED}="no"' in r.stdout, r.stdout
    assert f'{SRC}="{ng.url}/data/sub/c.bin"' in r.stdout, r.stdout
    # The raw protocol: size 0 asks the length; too small is ERANGE.
    libc = ctypes.CDLL(None, use_errno=True)
    n = libc.getxattr(a.encode(), SRC.encode(), None, 0)
    assert n == len(f"{ng.url}/data/sub/c.bin")
    buf = ctypes.create_string_buffer(4)
    assert libc.getxattr(a.encode(), SRC.encode(), buf, 4) == -1
    assert ctypes.get_errno() == errno.ERANGE
    n = libc.listxattr(a.encode(), None, 0)
    assert n == len(SRC) + len(CACHED) + len(PINNED) + 3
    assert libc.listxattr(a.encode(), buf, 4) == -1
    assert ctypes.get_errno() == errno.ERANGE
    # Unknown names: ENODATA; writes: ENOTSUP.
    for name in ("user.other", "user.dmsfs.nope", "security.selinux"):
        with pytest.raises(OSError) as e:
            os.getxattr(a, name)
        assert e.value.errno == errno.ENODATA, name
    for op in (lambda: os.setxattr(a, SRC, b"x"),
               lambda: os.setxattr(a, "user.mine", b"x"),
               lambda: os.removexattr(a, PINNED)):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno in (errno.ENOTSUP, errno.EROFS), e.value


_XPROBE = r"""
import json, os, sys
out = []
for p in sys.argv[1:]:
    try:
        out.append(os.getxattr(p, "user.dmsfs.cached").decode())
    except OSError as e:
        out.append(e.errno)
print(json.dumps(out))
"""


def _xattr_as(user, *paths):
    r = subprocess.run(["setpriv", f"--reuid={user.uid}",
                        f"--regid={user.gid}", "--init-groups",
                        "/usr/bin/python3", "-c", _XPROBE, *paths],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_xattrs_follow_the_rules(people, origin, acl_mount):  # noqa: F811
    env = acl_mount(expected_errors=[re.compile("denied")])
    alice, bob = people.alice, people.bob
    pub = env.path("archive/public/small.txt")
    secret = env.path("archive/private/secret.txt")
    mine = env.path("home", alice.name, "notes.txt")
    # alice: reads the archive and her home; not the private part.
    got = _xattr_as(alice, pub, mine, secret)
    assert got[0] == "0" and got[1] == "0", got
    assert got[2] == errno.EACCES, got
    # bob: his own home only (alice's is not his).
    got = _xattr_as(bob, pub, env.path("home", bob.name, "bob.txt"))
    assert got == ["0", "0"], got
    # The rules bind root too: the xattr answers as reading does.
    for op in (lambda: open(secret, "rb").read(),
               lambda: os.getxattr(secret, CACHED)):
        with pytest.raises(PermissionError):
            op()
    assert _x(pub, CACHED) == "0"


def test_source_follows_failover(tmp_path, origin_ng, start_nginx, mounter):
    root, ng1 = origin_ng
    ng2 = start_nginx(root)
    m = mounter(f"{ng1.url}/;{ng2.url}/", block_size="64K",
                connect_timeout=2, stall_timeout=5,
                expected_errors=[re.compile(re.escape(ng1.url[7:]))])
    a = m.path("data/a.bin")
    assert _x(a, SRC) == ng1.url + "/data/a.bin"
    ng1.stop()
    with open(a, "rb") as f:
        assert f.read() == (root / "data/a.bin").read_bytes()
    assert _x(a, SRC) == ng2.url + "/data/a.bin"
    assert _x(m.path("data/b.bin"), SRC) == ng2.url + "/data/b.bin"


# ---------------------------------------------------------------- evict

def test_evict_drops_blocks_next_read_goes_to_origin(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    a, c = m.path("data/a.bin"), m.path("data/sub/c.bin")
    for p in (a, c, m.path("data/b.bin"), m.path("other/x.bin")):
        with open(p, "rb") as f:
            f.read()
    for p in (a, c):
        assert _wait_cached(p, lambda v: v == "100") == "100"
    # A file, and a folder recursively.
    r = _dmsctl("evict", a)
    assert r.returncode == 0, r.stderr
    assert re.search(r"evicted 1 files, freed %d bytes" % FILES["data/a.bin"],
                     r.stdout), r.stdout
    assert _x(a, CACHED) == "0" and _x(c, CACHED) == "100"
    before = len(_gets(ng, "data/a.bin"))
    with open(a, "rb") as f:
        assert f.read() == (root / "data/a.bin").read_bytes()
    assert len(_gets(ng, "data/a.bin")) > before, \
        "the read after evict did not go to the origin"
    r = _dmsctl("evict", m.path("data"))
    assert r.returncode == 0, r.stderr
    assert "evicted 4 files" in r.stdout, r.stdout
    for rel in ("data/a.bin", "data/b.bin", "data/sub/c.bin"):
        assert _x(m.path(rel), CACHED) == "0", rel
    assert _x(m.path("other/x.bin"), CACHED) == "100"
    # Nothing cached: evicting again frees nothing, and says so.
    r = _dmsctl("evict", m.path("data"))
    assert r.returncode == 0 and "freed 0 bytes" in r.stdout, r.stdout
    # Not in a mount: refused.
    r = _dmsctl("evict", "/tmp")
    assert r.returncode == 1


def test_evict_refuses_pinned_with_hint(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    b = m.path("data/b.bin")
    assert _dmsctl("pin", "-q", b).returncode == 0
    with open(m.path("data/a.bin"), "rb") as f:
        f.read()
    _wait_cached(m.path("data/a.bin"), lambda v: v == "100")
    r = _dmsctl("evict", m.path("data"))
    assert r.returncode == 1
    assert "EBUSY" in r.stderr and "b.bin" in r.stderr, r.stderr
    assert "unpin" in r.stderr, r.stderr
    # The rest went; the pinned file kept every block and its pin.
    assert _x(m.path("data/a.bin"), CACHED) == "0"
    assert _x(b, CACHED) == "100" and _x(b, PINNED) == "yes"
    assert _dmsctl("unpin", "-q", b).returncode == 0
    r = _dmsctl("evict", b)
    assert r.returncode == 0, r.stderr
    assert _x(b, CACHED) == "0"


def test_evict_as_a_user_follows_the_rules(people, acl_mount):  # noqa: F811
    env = acl_mount(expected_errors=[re.compile("denied")])
    alice = people.alice
    pub = env.path("archive/public/data.bin")
    with open(pub, "rb") as f:
        f.read()
    _wait_cached(pub, lambda v: v == "100")
    r = _dmsctl("evict", env.path("archive/private"), user=alice)
    assert r.returncode == 1 and "EACCES" in r.stderr, r.stderr
    # A folder: only what alice may see is named or touched.
    r = _dmsctl("evict", env.path("archive"), user=alice)
    assert "secret" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.returncode == 0, r.stderr
    assert _x(pub, CACHED) == "0"


# ---------------------------------------------------------------- reload

def _rules_without_public(p):
    """The default rules, the public folder denied to everyone."""
    return default_rules(p).replace(" -widn /archive rl",
                                    " -widn /archive/public -rl /archive rl")


def test_reload_applies_new_rules_and_refuses_bad(people, acl_mount):  # noqa: F811,E501
    env = acl_mount(expected_errors=[re.compile("denied"),
                                     re.compile("not reloaded"),
                                     re.compile("rules not loaded"),
                                     re.compile("writable by group"),
                                     re.compile(r"authdb\d+:\d+")])
    alice = people.alice
    pub = env.path("archive/public/small.txt")
    assert_results(alice.name, as_user(alice, [["read", pub]]), ["ok"])
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 0, r.stderr
    assert "rules" in r.stdout and "reloaded" in r.stdout, r.stdout
    assert "config" in r.stdout, r.stdout
    # The public folder is denied to everyone now, at once.
    env.write_rules(_rules_without_public(people))
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 0, r.stderr
    assert_results(alice.name, as_user(alice, [["read", pub]]), ["EACCES"])
    # A bad file: refused with its line, the rules in force stay.
    env.write_rules(default_rules(people) + "u alice /archive bogus!\n")
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 1
    assert re.search(r"authdb\d+:\d+", r.stderr), r.stderr
    assert "previous rules stay" in r.stderr, r.stderr
    assert re.search(r"authdb\d+:\d+", env.m.log()), "not logged"
    time.sleep(3)   # past the reloader's own poll of the file
    assert_results(alice.name, as_user(alice, [["read", pub]]), ["EACCES"])
    # An untrusted file (others may write it): refused too.
    env.write_rules(default_rules(people))
    os.chmod(env.rules, 0o666)
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 1, r.stdout
    assert_results(alice.name, as_user(alice, [["read", pub]]), ["EACCES"])
    os.chmod(env.rules, 0o644)
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 0, r.stderr
    assert_results(alice.name, as_user(alice, [["read", pub]]), ["ok"])


def test_reload_only_root_or_owner_and_config_changes_reported(
        people, acl_mount):  # noqa: F811
    env = acl_mount(expected_errors=[re.compile("does not load"),
                                     re.compile(r"unknown section")])
    r = _dmsctl("reload", env.mnt, user=people.alice)
    assert r.returncode == 1
    assert "only root or the mount's owner" in r.stderr, r.stderr
    assert "reloaded" not in env.m.log().split("reload asked")[-1] \
        or "reload asked" not in env.m.log()
    # A config change that needs a remount is reported, not applied.
    with open(env.config) as f:
        text = f.read()
    with open(env.config, "w") as f:
        f.write(text + "\n[export extra]\npath = /extra\nsource = "
                "http://127.0.0.1:1/x/\n")
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 0, r.stderr
    assert "export extra is new: needs a remount" in r.stdout, r.stdout
    assert not os.path.exists(env.path("extra"))
    # A config that does not load is refused.
    with open(env.config, "w") as f:
        f.write(text + "\n[bogus]\nx = 1\n")
    r = _dmsctl("reload", env.mnt)
    assert r.returncode == 1 and "does not load" in r.stderr, r.stderr


# ---------------------------------------------------------------- writable

def test_pending_writes_local_and_never_evicted(origin_ng, mounter):
    root, ng = origin_ng
    m = mounter(ng.url + "/", rw=True, block_size="64K",
                writeback_delay="3600", unmount_flush="0")
    new = m.path("data/new.bin")
    body = os.urandom(3 * BLOCK + 5)
    with open(new, "wb") as f:
        f.write(body)
    assert _x(new, SRC) == "local"
    assert _x(new, CACHED) == "100" and _x(new, PINNED) == "no"
    os.mkdir(m.path("data/newdir"))
    assert os.listxattr(m.path("data/newdir")) == [SRC]
    assert _x(m.path("data/newdir"), SRC) == "local"
    # An origin file of the writable export reads as any other.
    a = m.path("data/a.bin")
    with open(a, "rb") as f:
        f.read()
    assert _wait_cached(a, lambda v: v == "100") == "100"
    assert _x(a, SRC) == ng.url + "/data/a.bin"
    r = _dmsctl("evict", m.path("data"))
    assert r.returncode == 0, r.stderr
    assert _x(a, CACHED) == "0"
    # The pending file is untouched: same bytes, still pending.
    with open(new, "rb") as f:
        assert f.read() == body
    assert _x(new, SRC) == "local"
    assert not (root / "data/new.bin").exists()
    # Writes of our names are refused as any xattr write here.
    with pytest.raises(OSError) as e:
        os.setxattr(new, SRC, b"x")
    assert e.value.errno == errno.ENOTSUP


def test_sighup_without_rules_does_not_unmount(origin_ng, mounter):
    """SIGHUP means reload: a mount without rules has nothing to reload
    and must not take libfuse's default (unmount)."""
    root, ng = origin_ng
    m = mounter(ng.url + "/", block_size="64K")
    (pid,) = mountlib.find_daemon_pids(str(m.mountpoint))
    os.kill(pid, signal.SIGHUP)
    time.sleep(1)
    assert m.running and mountlib.is_mounted(str(m.mountpoint))
    with open(m.path("other/x.bin"), "rb") as f:
        assert f.read() == (root / "other/x.bin").read_bytes()
    r = _dmsctl("reload", str(m.mountpoint))
    assert r.returncode == 0, r.stderr
    assert "no rules file" in r.stdout, r.stdout
