"""The multi-user mount: access rules enforced by dmsfs for real local users.

One mount from a config file ([cache], [acl], three exports: /archive, a
per-user /home and /shared/RB1810001) over an nginx origin, used by three
throw-away local users created for the module:

  alice   member of nothing special; "a-d" on the shared area
  bob     member of nothing special
  carol   member (supplementary group) of the experiment group

Each test acts as these users in a child process (setpriv --reuid --regid
--init-groups), so the daemon sees the real uid, gid and groups.  Users and
the group get unique names (dmst<pid>a...) and are removed at teardown
(userdel -r, groupdel) even when a test fails.  Needs root, FUSE, nginx,
useradd and build/dmsfs, build/dmsctl.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import mount as mountlib
import origintree
from origin import Nginx

ROOT = mountlib.ROOT
DMSFS = mountlib.DMSFS
DMSCTL = os.path.join(ROOT, "build", "dmsctl")
SAMPLE_CONF = os.path.join(ROOT, "packaging", "dmsfs.conf.sample")
SAMPLE_AUTHDB = os.path.join(ROOT, "packaging", "authdb.sample")
EXP = "RB1810001"
BLOCK = origintree.BLOCK

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root (useradd, FUSE, nginx)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(DMSFS, os.X_OK),
                       reason=f"{DMSFS} is not built (run make)"),
    pytest.mark.skipif(not os.access(DMSCTL, os.X_OK),
                       reason=f"{DMSCTL} is not built (run make)"),
    pytest.mark.skipif(not (shutil.which("useradd") and
                            shutil.which("setpriv")),
                       reason="useradd or setpriv missing"),
]

# Daemon log lines at error level that the tests provoke on purpose.
BROKEN_RULES_ERRORS = (r"acl: .*authdb", r"access rules not reloaded")


# ---------------------------------------------------------------- users

class User:
    """A local account; as_user() runs as it with its own groups."""
    groups = None

    def __init__(self, name):
        self.name = name
        self.uid = int(_out("id", "-u", name))
        self.gid = int(_out("id", "-g", name))

    def __repr__(self):
        return self.name


class Caller:
    """Any uid/gid/supplementary groups, account or not."""

    def __init__(self, name, uid, gid, groups=()):
        self.name, self.uid, self.gid = name, uid, gid
        self.groups = list(groups)

    def __repr__(self):
        return self.name


def _out(*args):
    return subprocess.run(list(args), check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def _sh(*args):
    r = subprocess.run(list(args), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"{' '.join(args)} failed: {r.stderr}"


class People:
    """alice, bob, carol (User), group (name of the experiment group),
    ghost (a name that is no local account)."""


@pytest.fixture(scope="module")
def people():
    prefix = f"dmst{os.getpid()}"
    group = prefix + "g"
    names = {k: prefix + k[0] for k in ("alice", "bob", "carol")}
    made_users, made_group = [], False
    try:
        _sh("groupadd", group)
        made_group = True
        for key, name in names.items():
            extra = ["-G", group] if key == "carol" else []
            _sh("useradd", "-m", "-s", "/usr/sbin/nologin", *extra, name)
            made_users.append(name)
        p = People()
        p.alice, p.bob, p.carol = (User(names[k])
                                   for k in ("alice", "bob", "carol"))
        p.group = group
        p.ghost = prefix + "z"
        yield p
    finally:
        for name in made_users:
            subprocess.run(["userdel", "-r", name], capture_output=True,
                           timeout=60)
        if made_group:
            subprocess.run(["groupdel", group], capture_output=True,
                           timeout=60)


# ---------------------------------------------------------------- origin

class Origin:
    """The origin tree (files: rel -> bytes) and the nginx serving it."""

    def data(self, rel):
        return self.files[rel]

    def sha(self, rel):
        return hashlib.sha256(self.files[rel]).hexdigest()


def _origin_files(p):
    a, b = p.alice.name, p.bob.name
    layout = {
        "archive/README.txt": 700,
        "archive/public/data.bin": 3 * BLOCK + 17,
        "archive/public/small.txt": 10,
        "archive/private/secret.txt": 999,
        "archive/private/deep/more.bin": BLOCK + 1,
        f"archive/{EXP}/raw/run_000123.nxs": 2 * BLOCK + 5,
        f"archive/{EXP}/README.txt": 300,
        f"home/{a}/notes.txt": 1234,
        f"home/{a}/data.bin": 4 * BLOCK - 3,
        f"home/{a}/sub/deeper.txt": 77,
        f"home/{b}/bob.txt": 555,
        # Same name, size and mtime (so the same nginx ETag) in two homes,
        # different bytes: cache keys must keep them apart.
        f"home/{a}/same.bin": 2 * BLOCK + 9,
        f"home/{b}/same.bin": 2 * BLOCK + 9,
        # A home directory for a name that is not a local account: it must
        # never be served, whatever the rules say.
        f"home/{p.ghost}/ghost.txt": 66,
        f"shared/{EXP}/analysis.txt": 4321,
        f"shared/{EXP}/plots/fig1.bin": BLOCK + 100,
    }
    return layout


@pytest.fixture(scope="module")
def origin(people, tmp_path_factory):
    o = Origin()
    o.root = str(tmp_path_factory.mktemp("acl-origin"))
    o.files = {}
    for rel, size in _origin_files(people).items():
        o.files[rel] = origintree.write_file(o.root, rel, size=size,
                                             mtime=origintree.BASE_MTIME)
    o.nginx = Nginx(o.root).start()
    o.url = o.nginx.url
    yield o
    o.nginx.stop()


# ---------------------------------------------------------------- mounts

def default_rules(p):
    a, b, g = p.alice.name, p.bob.name, p.group
    return f"""\
# everyone reads the archive but its private part and the experiment folder
u * -rl /archive/private /archive/{EXP} -widn /archive rl
# the experiment group: its archive folder and its team area
g {g} /archive/{EXP} rl /shared/{EXP} rl
# alice manages the team area (all but delete)
u {a} /shared/{EXP} a-d
# every user owns /home/<name>
u = /home/@=/ a
# a rule for a name that is no local account: must resolve to nothing
u {b} /home/{p.ghost} rl
"""


def config_text(url, rules, cache_dir, block_size="64K"):
    return f"""\
; dmsfs test config (test_acl_mount.py)
[cache]
dir = {cache_dir}
size = 256M
block_size = {block_size}
meta_ttl = 60

[acl]
rules = {rules}

[export archive]
path = /archive
source = {url}/archive/

[export home]
path = /home
source = {url}/home/${{user}}/
per_user = yes

[export shared]
path = /shared/{EXP}
source = {url}/shared/{EXP}/
"""


class ConfigMount(mountlib.Mount):
    """A Mount of the `dmsfs -o config=FILE[,OPT...] MOUNTPOINT` form."""

    def __init__(self, config, mountpoint, log_path, options=None, **kw):
        super().__init__(None, mountpoint, log_path, options, **kw)
        self.config = str(config)

    def argv(self):
        args = [self.binary]
        if self.foreground:
            args.append("-f")
        if os.environ.get("DMSFS_TEST_DEBUG"):
            args.append("-d")
        opts = ",".join(filter(None, [f"config={self.config}",
                                      mountlib.format_options(self.options)]))
        return args + self.extra_args + ["-o", opts, self.mountpoint]


class AclEnv:
    """One mounted config: .m (ConfigMount), .rules (path), .config,
    .cache_dir, .mnt, and helpers to rewrite the rules file."""

    def path(self, *rel):
        return os.path.join(self.mnt, *[r.lstrip("/") for r in rel])

    def write_rules(self, text, atomic=True):
        if atomic:
            tmp = self.rules + ".new"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.rules)
        else:
            with open(self.rules, "w") as f:
                f.write(text)


@pytest.fixture
def public_dir():
    """A directory every user can traverse (tmp_path is 0700), for
    mountpoints.  Removed after the mounts (fixture order)."""
    d = tempfile.mkdtemp(prefix="dmsfs-acl-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def acl_mount(people, origin, public_dir, tmp_path):
    """acl_mount(rules=None, expected_errors=(), **opts) -> AclEnv, mounted
    from a config file written to tmp_path (cache in tmp_path too).  Every
    mount is unmounted at teardown with the checks of Mount.umount (exit 0,
    no unexpected error lines)."""
    made = []

    def make(rules=None, expected_errors=(), **opts):
        n = len(made)
        env = AclEnv()
        env.rules = str(tmp_path / f"authdb{n}")
        env.cache_dir = str(tmp_path / f"cache{n}")
        env.config = str(tmp_path / f"dmsfs{n}.conf")
        env.mnt = os.path.join(public_dir, f"mnt{n}")
        os.makedirs(env.mnt)
        with open(env.rules, "w") as f:
            f.write(default_rules(people) if rules is None else rules)
        os.chmod(env.rules, 0o644)
        with open(env.config, "w") as f:
            f.write(config_text(origin.url, env.rules, env.cache_dir))
        env.m = ConfigMount(env.config, env.mnt, tmp_path / f"dmsfs{n}.log",
                            opts, expected_errors=expected_errors)
        made.append(env)
        env.m.start()
        return env

    yield make
    errors = []
    for env in made:
        try:
            if env.m.running:
                env.m.umount()
        except AssertionError as e:
            errors.append(f"{env.mnt}: {e}")
        finally:
            env.m.cleanup()
    assert not errors, "teardown unmount failed:\n" + "\n".join(errors)


# ---------------------------------------------------------------- as a user

_PROBE = r"""
import hashlib, json, os, stat, sys
out = []
for op in json.loads(sys.argv[1]):
    kind, path = op[0], op[1]
    r = {"op": kind, "path": path, "errno": 0}
    try:
        if kind == "stat":
            st = os.stat(path)
            r["type"] = "dir" if stat.S_ISDIR(st.st_mode) else "file"
            r["size"] = st.st_size
        elif kind == "list":
            r["names"] = sorted(os.listdir(path))
        elif kind == "read":
            with open(path, "rb") as f:
                data = f.read()
            r["sha256"] = hashlib.sha256(data).hexdigest()
            r["size"] = len(data)
        elif kind == "write":
            os.close(os.open(path, os.O_WRONLY))
        elif kind == "create":
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        elif kind == "mkdir":
            os.mkdir(path)
        elif kind == "unlink":
            os.unlink(path)
        elif kind == "rmdir":
            os.rmdir(path)
        elif kind == "rename":
            os.rename(path, op[2])
        elif kind == "truncate":
            os.truncate(path, 0)
        elif kind == "chmod":
            os.chmod(path, 0o777)
        else:
            raise SystemExit("unknown op " + kind)
    except OSError as e:
        r["errno"] = e.errno
    out.append(r)
print(json.dumps(out))
"""


def as_user(user, ops, timeout=60):
    """Runs ops ([kind, path, ...]) as user (real uid/gid and the user's
    groups) in one child process; returns one result dict per op with
    errno (0 = success) and sha256/size/names/type."""
    if user.groups is None:
        groups = ["--init-groups"]
    elif user.groups:
        groups = ["--groups=" + ",".join(map(str, user.groups))]
    else:
        groups = ["--clear-groups"]
    cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
           *groups, "/usr/bin/python3", "-c", _PROBE, json.dumps(ops)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/",
                                     "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0, f"probe as {user} failed: {r.stderr}"
    return json.loads(r.stdout)


def one(user, kind, path, *more):
    return as_user(user, [[kind, path, *more]])[0]


def err(res):
    e = res["errno"]
    return "ok" if e == 0 else errno.errorcode.get(e, str(e))


def assert_results(user, results, want, log=None):
    """want: list of expected outcomes ("ok" or an errno name), one per
    result.  Fails with a table of every mismatch."""
    bad = [f"  {r['op']:6} {r['path']}: got {err(r)}, want {w}"
           for r, w in zip(results, want) if err(r) != w]
    msg = f"as {user}:\n" + "\n".join(bad)
    if bad and log is not None:
        msg += "\ndaemon log (tail):\n" + "\n".join(log.splitlines()[-15:])
    assert not bad, msg


def dmsctl_check(rules, user, path):
    r = subprocess.run([DMSCTL, "acl", "check", "-r", rules, user.name, path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, \
        f"dmsctl acl check {user} {path} failed ({r.returncode}): {r.stderr}"
    lines = r.stdout.splitlines()
    return lines[0], lines[1:]


def wait_for(pred, what, timeout=15.0, log=None):
    """Polls pred() until true; fails after timeout (a bound on a hang,
    not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            msg = f"{what}: not the case after {timeout:.0f}s"
            if log is not None:
                msg += "\ndaemon log (tail):\n" + \
                    "\n".join(log().splitlines()[-20:])
            raise AssertionError(msg)
        time.sleep(0.25)


# ---------------------------------------------------------------- tests

def test_home_is_private(people, origin, acl_mount):
    env = acl_mount()
    A, B, C = people.alice, people.bob, people.carol
    a, b = A.name, B.name
    home_a = env.path("home", a)

    def bob_refused():
        res = as_user(B, [["list", home_a], ["stat", home_a],
                          ["read", f"{home_a}/notes.txt"],
                          ["stat", f"{home_a}/notes.txt"],
                          ["read", f"{home_a}/data.bin"],
                          ["list", f"{home_a}/sub"],
                          ["stat", f"{home_a}/no-such-file"]])
        assert_results(B, res, ["EACCES"] * len(res), env.m.log())

    bob_refused()            # cold: nothing cached yet
    for _ in range(2):       # warm: alice has read it (block, meta, kernel)
        res = as_user(A, [["list", home_a],
                          ["read", f"{home_a}/notes.txt"],
                          ["read", f"{home_a}/data.bin"],
                          ["read", f"{home_a}/sub/deeper.txt"]])
        assert_results(A, res, ["ok"] * 4, env.m.log())
        assert res[0]["names"] == ["data.bin", "notes.txt", "same.bin",
                                   "sub"]
        for r, rel in zip(res[1:], ("notes.txt", "data.bin",
                                    "sub/deeper.txt")):
            assert r["sha256"] == origin.sha(f"home/{a}/{rel}"), \
                f"alice read wrong bytes for {rel}"
        bob_refused()

    # Each user's listing of /home shows their own name only.
    for u in (A, B, C):
        r = one(u, "list", env.path("home"))
        assert err(r) == "ok", f"ls /home as {u}: {err(r)}"
        assert r["names"] == [u.name], \
            f"ls /home as {u} shows {r['names']}, want only [{u.name}]"

    # bob reads his own home.
    r = one(B, "read", env.path("home", b, "bob.txt"))
    assert err(r) == "ok" and r["sha256"] == origin.sha(f"home/{b}/bob.txt")

    # Names bob may not see: EACCES whether or not an account or a
    # directory exists.  A name a rule grants but that is no local account
    # resolves to nothing (ENOENT), even though the origin has it.
    res = as_user(B, [["stat", env.path("home", "root")],
                      ["stat", env.path("home", C.name)],
                      ["stat", env.path("home", "dmst-no-such-user")],
                      ["stat", env.path("home", people.ghost)],
                      ["read", env.path("home", people.ghost, "ghost.txt")]])
    assert_results(B, res, ["EACCES", "EACCES", "EACCES", "ENOENT",
                            "ENOENT"], env.m.log())

    # root is just another caller for the rules: no rule gives it alice's
    # home.
    with pytest.raises(PermissionError):
        os.listdir(home_a)


def test_experiment_folder_group_only(people, origin, acl_mount):
    env = acl_mount()
    A, B, C = people.alice, people.bob, people.carol
    exp = env.path("archive", EXP)
    raw = f"{exp}/raw/run_000123.nxs"

    res = as_user(C, [["list", env.path("archive")], ["list", exp],
                      ["read", raw], ["read", f"{exp}/README.txt"]])
    assert_results(C, res, ["ok"] * 4, env.m.log())
    assert EXP in res[0]["names"], \
        f"carol (group member) does not see {EXP} in /archive: " \
        f"{res[0]['names']}"
    assert res[1]["names"] == ["README.txt", "raw"]
    assert res[2]["sha256"] == origin.sha(f"archive/{EXP}/raw/run_000123.nxs")

    for u in (A, B):         # after carol read it: caches are warm
        res = as_user(u, [["list", exp], ["stat", exp], ["read", raw],
                          ["stat", raw], ["list", f"{exp}/raw"],
                          ["list", env.path("archive")]])
        assert_results(u, res[:5], ["EACCES"] * 5, env.m.log())
        assert err(res[5]) == "ok", f"ls /archive as {u}: {err(res[5])}"
        assert res[5]["names"] == ["README.txt", "public"], \
            f"ls /archive as {u} (not in the group) shows {res[5]['names']}"


def test_deny_beats_broader_allow(people, origin, acl_mount):
    env = acl_mount()
    priv = env.path("archive", "private")
    for u in (people.alice, people.bob, people.carol):
        res = as_user(u, [["read", env.path("archive", "README.txt")],
                          ["read", env.path("archive", "public", "data.bin")],
                          ["list", env.path("archive", "public")],
                          ["list", priv], ["stat", priv],
                          ["read", f"{priv}/secret.txt"],
                          ["stat", f"{priv}/deep/more.bin"]])
        assert_results(u, res, ["ok"] * 3 + ["EACCES"] * 4, env.m.log())
        assert res[1]["sha256"] == origin.sha("archive/public/data.bin")
        assert res[2]["names"] == ["data.bin", "small.txt"]
    # root too: the rules name no exception for it.
    with pytest.raises(PermissionError):
        os.listdir(priv)
    verdict, details = dmsctl_check(env.rules, people.bob,
                                    "/archive/private/secret.txt")
    assert verdict == "none", (verdict, details)
    assert any(re.match(r"  r: denied by .*:2: u \* -rl /archive/private", d)
               for d in details), details


def test_shared_area_all_but_delete(people, origin, acl_mount):
    env = acl_mount()
    A, B, C = people.alice, people.bob, people.carol
    sh = env.path("shared", EXP)
    f = f"{sh}/analysis.txt"

    res = as_user(A, [["list", env.path("shared")], ["list", sh],
                      ["read", f], ["read", f"{sh}/plots/fig1.bin"]])
    assert_results(A, res, ["ok"] * 4, env.m.log())
    assert res[0]["names"] == [EXP]
    assert res[1]["names"] == ["analysis.txt", "plots"]
    assert res[2]["sha256"] == origin.sha(f"shared/{EXP}/analysis.txt")
    assert res[3]["sha256"] == origin.sha(f"shared/{EXP}/plots/fig1.bin")

    # Writes: the mount is read-only, whatever the rules grant.
    res = as_user(A, [["write", f], ["truncate", f], ["chmod", f],
                      ["create", f"{sh}/new.txt"], ["mkdir", f"{sh}/newdir"],
                      ["unlink", f], ["rmdir", f"{sh}/plots"],
                      ["rename", f, f"{sh}/renamed.txt"]])
    assert_results(A, res, ["EROFS"] * len(res), env.m.log())

    # The group member reads; bob sees nothing of /shared.
    r = one(C, "read", f)
    assert err(r) == "ok" and r["sha256"] == origin.sha(
        f"shared/{EXP}/analysis.txt")
    res = as_user(B, [["list", env.path("shared")], ["read", f],
                      ["list", env.mnt]])
    assert_results(B, res[:2], ["EACCES", "EACCES"], env.m.log())
    assert res[2]["names"] == ["archive", "home"], \
        f"ls / as bob: {res[2]}"

    verdict, details = dmsctl_check(env.rules, A,
                                    f"/shared/{EXP}/analysis.txt")
    assert verdict == "lrwin", (verdict, details)
    assert any(re.match(r"  d: denied by .*:6: u \S+ /shared/\S+ a-d", d)
               for d in details), details


# name -> (user key, path, expected errno name)
TRICKS = [
    ("alice", "archive/public/../private/secret.txt", "EACCES"),
    ("bob", "archive/public/../private/secret.txt", "EACCES"),
    ("bob", "archive/./private/secret.txt", "EACCES"),
    ("bob", "archive//private/secret.txt", "EACCES"),
    ("bob", "archive/private/", "EACCES"),
    ("bob", "archive/private/../public/data.bin", "EACCES"),
    ("bob", "archive/RB1810001/../public/data.bin", "EACCES"),
    ("carol", "archive/RB1810001/../private/secret.txt", "EACCES"),
    ("bob", "home/{b}/../{a}/notes.txt", "EACCES"),
    ("bob", "home/{a}/../{b}/bob.txt", "EACCES"),
    ("alice", "home/{a}/../{b}/bob.txt", "EACCES"),
    ("alice", "home/{b}/../{a}/notes.txt", "EACCES"),
    ("bob", "home/./{a}/notes.txt", "EACCES"),
    ("bob", "home//{a}/notes.txt", "EACCES"),
    ("bob", "home/{a}/", "EACCES"),
    ("bob", "home/@=/notes.txt", "EACCES"),
    ("bob", "home/${{user}}/notes.txt", "EACCES"),
    ("bob", "home/%2e%2e/home/{a}/notes.txt", "EACCES"),
    # Inside bob's own home: odd names reach the origin as plain names
    # and must not climb out of it (ENOENT, never alice's bytes).
    ("bob", "home/{b}/..%2f{a}%2fnotes.txt", "ENOENT"),
    ("bob", "home/{b}/%2e%2e/{a}/notes.txt", "ENOENT"),
    ("bob", "home/{b}/..\\{a}\\notes.txt", "ENOENT"),
    ("bob", "archive/private%2fsecret.txt", "ENOENT"),
    ("bob", "archive/public/..%2fprivate%2fsecret.txt", "ENOENT"),
    ("bob", "archive/Private/secret.txt", "ENOENT"),
    ("bob", "archive/private /secret.txt", "ENOENT"),
    # Positive controls: the same walks where every step is allowed.
    ("bob", "home/{b}/../{b}/bob.txt", "ok"),
    ("bob", "archive/private/../README.txt", "EACCES"),
    ("carol", "archive/RB1810001/../public/data.bin", "ok"),
]


def test_path_tricks_refused(people, origin, acl_mount):
    env = acl_mount()
    users = {"alice": people.alice, "bob": people.bob,
             "carol": people.carol}
    # alice has read her files first, so nothing below is a cold miss.
    res = as_user(people.alice, [["read", env.path("home", people.alice.name,
                                                   "notes.txt")]])
    assert_results(people.alice, res, ["ok"])
    for key in users:
        cases = [(p.format(a=people.alice.name, b=people.bob.name), w)
                 for k, p, w in TRICKS if k == key]
        res = as_user(users[key], [["read", env.mnt + "/" + p]
                                   for p, _ in cases])
        assert_results(users[key], res, [w for _, w in cases], env.m.log())
        # Never anyone else's bytes, whatever the outcome.
        forbidden = {origin.sha(f"home/{people.alice.name}/notes.txt")} \
            if key != "alice" else set()
        forbidden |= {origin.sha("archive/private/secret.txt")}
        leaks = [r["path"] for r in res if r.get("sha256") in forbidden]
        assert not leaks, f"{key} read protected bytes via {leaks}"
    # A name longer than NAME_MAX is refused before any check.
    r = one(people.bob, "stat", env.path("archive", "x" * 300))
    assert err(r) == "ENAMETOOLONG", err(r)


def test_same_names_in_two_homes_never_mix(people, origin, acl_mount):
    """alice's and bob's same.bin have the same name, size, mtime and ETag
    but different bytes: each user gets their own, cold and warm."""
    env = acl_mount()
    A, B = people.alice, people.bob
    for _ in range(2):
        for u in (A, B, A, B):
            r = one(u, "read", env.path("home", u.name, "same.bin"))
            assert err(r) == "ok", f"{u} reads own same.bin: {err(r)}"
            assert r["sha256"] == origin.sha(f"home/{u.name}/same.bin"), \
                f"{u} got someone else's same.bin (cache keys shared " \
                "between home areas)"


def test_callers_by_uid_and_gid(people, origin, acl_mount):
    """The rules see the uid, the gid and the supplementary groups the
    process really has, including uids with no passwd entry."""
    env = acl_mount()
    gid_g = int(_out("getent", "group", people.group).split(":")[2])
    exp_raw = env.path("archive", EXP, "raw", "run_000123.nxs")
    # No passwd entry: "u *" applies, "u =" does not.
    ghost = Caller("uid-2000000123", 2000000123, 2000000123)
    res = as_user(ghost, [["read", env.path("archive", "public", "data.bin")],
                          ["list", env.mnt], ["list", env.path("home")],
                          ["read", exp_raw],
                          ["list", env.path("archive", "private")]])
    assert_results(ghost, res, ["ok", "ok", "EACCES", "EACCES", "EACCES"],
                   env.m.log())
    assert res[1]["names"] == ["archive"], res[1]
    # bob with the experiment group as primary gid, then as a supplementary
    # group: reads the experiment folder; with no groups he does not.
    B = people.bob
    for who in (Caller(B.name + "+gid", B.uid, gid_g, []),
                Caller(B.name + "+groups", B.uid, B.gid, [gid_g])):
        r = one(who, "read", exp_raw)
        assert err(r) == "ok", f"{who}: {err(r)}"
    r = one(Caller(B.name + "-groups", B.uid, B.gid, []), "read", exp_raw)
    assert err(r) == "EACCES"
    # carol without her supplementary groups is refused.
    C = people.carol
    r = one(Caller(C.name + "-groups", C.uid, C.gid, []), "read", exp_raw)
    assert err(r) == "EACCES"


def test_implicit_traversal_shows_only_paths_to_visible(people, origin,
                                                        acl_mount):
    """A grant deep inside an area makes the folders above it walkable and
    listable, showing only the entries that lead to it."""
    B = people.bob
    env = acl_mount(rules=default_rules(people) +
                    f"u {B.name} /archive/{EXP}/raw rl\n"
                    f"u {B.name} /shared/{EXP}/plots rl\n")
    exp, sh = env.path("archive", EXP), env.path("shared", EXP)
    res = as_user(B, [["list", env.mnt], ["list", env.path("archive")],
                      ["list", exp], ["list", f"{exp}/raw"],
                      ["read", f"{exp}/raw/run_000123.nxs"],
                      ["list", env.path("shared")], ["list", sh],
                      ["read", f"{sh}/plots/fig1.bin"],
                      ["read", f"{exp}/README.txt"],
                      ["stat", f"{sh}/analysis.txt"]])
    assert_results(B, res, ["ok"] * 8 + ["EACCES"] * 2, env.m.log())
    names = [r.get("names") for r in res]
    assert names[0] == ["archive", "home", "shared"], names[0]
    assert names[1] == sorted(["README.txt", EXP, "public"]), names[1]
    assert names[2] == ["raw"], f"ls {exp} as bob: {names[2]}"
    assert names[5] == [EXP] and names[6] == ["plots"], names[5:7]
    assert res[4]["sha256"] == origin.sha(f"archive/{EXP}/raw/"
                                          "run_000123.nxs")


def test_command_line_overrides_config(people, origin, public_dir, tmp_path):
    """-o acl= and -o cache_dir= win over [acl] rules and [cache] dir; the
    file may use inline '; comments' as in the product's example."""
    A, B = people.alice, people.bob
    lax = tmp_path / "lax"
    lax.write_text(default_rules(people) + f"u {B.name} /home/{A.name} rl\n")
    strict = tmp_path / "strict"
    strict.write_text(default_rules(people))
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(f"""\
[cache]
dir = {tmp_path / "cache-file"}          ; overridden by -o cache_dir
size = 64M
[acl]
rules = {lax}          ; the rules file (overridden by -o acl)
[export archive]
path = /archive                    ; where it appears inside the mount
source = {origin.url}/archive/
[export home]
path = /home
source = {origin.url}/home/${{user}}/
per_user = yes                     ; /home/<name> from ${{user}} = <name>
""")
    mnt = os.path.join(public_dir, "mnt")
    os.makedirs(mnt)
    m = ConfigMount(conf, mnt, tmp_path / "dmsfs.log",
                    {"acl": str(strict), "cache_dir": tmp_path / "cache-o"})
    try:
        m.start()
        res = as_user(B, [["read", os.path.join(mnt, "home", A.name,
                                                "notes.txt")],
                          ["read", os.path.join(mnt, "home", B.name,
                                                "bob.txt")],
                          ["list", os.path.join(mnt, "archive")]])
        assert_results(B, res, ["EACCES", "ok", "ok"], m.log())
        assert os.path.isdir(tmp_path / "cache-o"), "-o cache_dir not used"
        assert not os.path.exists(tmp_path / "cache-file"), \
            "[cache] dir used although -o cache_dir was given"
        m.umount()
    finally:
        m.cleanup()


def test_concurrent_users_never_cross(people, origin, acl_mount):
    """Several users at once, each reading what they may and trying what
    they may not, many rounds: every answer is the same as when alone.
    A small memory cache makes most reads go to LMDB."""
    from concurrent.futures import ThreadPoolExecutor
    env = acl_mount(mem_cache="8M", readahead="0")
    A, B, C = people.alice, people.bob, people.carol
    a_home, b_home = f"home/{A.name}", f"home/{B.name}"
    exp_raw = f"archive/{EXP}/raw/run_000123.nxs"
    # user -> [(op, rel, expected)]
    plan = {
        A: [("read", f"{a_home}/data.bin", "ok"),
            ("read", f"{a_home}/same.bin", "ok"),
            ("read", f"{b_home}/same.bin", "EACCES"),
            ("read", exp_raw, "EACCES"),
            ("read", f"shared/{EXP}/analysis.txt", "ok")],
        B: [("read", f"{b_home}/same.bin", "ok"),
            ("read", f"{a_home}/data.bin", "EACCES"),
            ("read", f"{a_home}/same.bin", "EACCES"),
            ("read", "archive/public/data.bin", "ok"),
            ("read", exp_raw, "EACCES")],
        C: [("read", exp_raw, "ok"),
            ("read", f"{a_home}/data.bin", "EACCES"),
            ("read", "archive/private/secret.txt", "EACCES"),
            ("read", f"shared/{EXP}/plots/fig1.bin", "ok")],
    }
    rounds = 50

    def run(user):
        ops = [[op, env.path(rel)] for op, rel, _ in plan[user]] * rounds
        return user, as_user(user, ops, timeout=300)

    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(run, [A, B, C, A, B, C]))
    bad = []
    for user, res in done:
        want = [(rel, w) for _, rel, w in plan[user]] * rounds
        for r, (rel, w) in zip(res, want):
            if err(r) != w:
                bad.append(f"  {user} {rel}: {err(r)}, want {w}")
            elif w == "ok" and r["sha256"] != origin.sha(rel):
                bad.append(f"  {user} {rel}: wrong bytes")
    assert not bad, f"{len(bad)} wrong answers under concurrency:\n" + \
        "\n".join(sorted(set(bad))) + "\ndaemon log (tail):\n" + \
        "\n".join(env.m.log().splitlines()[-15:])
    assert env.m.running, "the mount died under concurrent use"


def _bob_reads_alice(env, people):
    return err(one(people.bob, "read",
                   env.path("home", people.alice.name, "notes.txt")))


def test_rules_reload(people, origin, acl_mount):
    env = acl_mount(expected_errors=BROKEN_RULES_ERRORS)
    A, B = people.alice, people.bob
    notes = env.path("home", A.name, "notes.txt")
    base = default_rules(people)
    grant = base + f"u {B.name} /home/{A.name} rl\n"
    assert _bob_reads_alice(env, people) == "EACCES"
    # alice reads it, so that bob's later reads could come from caches.
    assert err(one(A, "read", notes)) == "ok"

    # 1. The file changes (atomic replace): bob may read within seconds.
    env.write_rules(grant)
    wait_for(lambda: _bob_reads_alice(env, people) == "ok",
             "bob reads alice's notes after the rules file granted it",
             log=env.m.log)
    r = one(B, "read", notes)
    assert r["sha256"] == origin.sha(f"home/{A.name}/notes.txt")
    assert "access rules reloaded (file changed)" in env.m.log()
    # Others' names resolve where the rules allow, but /home still lists
    # only the caller's own name.
    res = as_user(B, [["stat", env.path("home", A.name)],
                      ["list", env.path("home", A.name)],
                      ["list", env.path("home")],
                      ["read", env.path("home", A.name, "data.bin")]])
    assert_results(B, res, ["ok"] * 4, env.m.log())
    assert res[2]["names"] == [B.name], res[2]
    # rl, not more: carol still gets nothing there.
    assert err(one(people.carol, "read", notes)) == "EACCES"

    # 2. A broken file (written in place): reported, the old rules stay.
    env.write_rules(grant + "u * /archive rz\n", atomic=False)
    wait_for(lambda: re.search(re.escape(env.rules) + r":\d+: .*'z'",
                               env.m.log()),
             "the daemon logs the broken rules file", log=env.m.log)
    assert _bob_reads_alice(env, people) == "ok", \
        "a broken rules file replaced the working rules"
    assert err(one(B, "read", env.path("archive", "private",
                                       "secret.txt"))) == "EACCES"
    assert err(one(A, "read", notes)) == "ok"

    # A missing file keeps the old rules too.
    os.unlink(env.rules)
    time.sleep(5)            # more than two polls; not a timing assertion
    assert _bob_reads_alice(env, people) == "ok", \
        "a removed rules file replaced the working rules"
    assert err(one(B, "read", env.path("archive", "private",
                                       "secret.txt"))) == "EACCES"
    env.write_rules(grant + "u * /archive rz\n", atomic=False)

    # 3. SIGHUP with the broken file still there: refused, old rules stay,
    # the daemon keeps running (libfuse's own SIGHUP handler would unmount).
    pid = env.m.pid
    assert pid and mountlib.pid_alive(pid)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "access rules not reloaded" in env.m.log(),
             "the daemon logs the refused SIGHUP reload", log=env.m.log)
    assert env.m.running, "SIGHUP unmounted dmsfs"
    assert _bob_reads_alice(env, people) == "ok"

    # 4. A good file and SIGHUP: the grant is gone.
    env.write_rules(base)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "access rules reloaded (SIGHUP)" in env.m.log(),
             "the daemon logs the SIGHUP reload", log=env.m.log)
    wait_for(lambda: _bob_reads_alice(env, people) == "EACCES",
             "bob is refused again after the grant was removed",
             log=env.m.log)
    assert env.m.running, "SIGHUP unmounted dmsfs"
    res = as_user(B, [["stat", env.path("home", A.name)],
                      ["list", env.path("home")]])
    assert err(res[0]) == "EACCES" and res[1]["names"] == [B.name]
    assert err(one(A, "read", notes)) == "ok"


def test_dmsctl_agrees_with_mount(people, origin, acl_mount):
    env = acl_mount()
    a, b = people.alice.name, people.bob.name
    paths = [
        "/", "/archive", "/archive/README.txt", "/archive/public",
        "/archive/public/data.bin", "/archive/private",
        "/archive/private/secret.txt", "/archive/private/deep",
        f"/archive/{EXP}", f"/archive/{EXP}/raw",
        f"/archive/{EXP}/raw/run_000123.nxs", "/home", f"/home/{a}",
        f"/home/{a}/notes.txt", f"/home/{a}/sub", f"/home/{b}",
        f"/home/{b}/bob.txt", "/shared", f"/shared/{EXP}",
        f"/shared/{EXP}/analysis.txt", f"/shared/{EXP}/plots",
    ]
    dirs = {p for p in paths if "." not in os.path.basename(p)}
    mismatches = []
    for u in (people.alice, people.bob, people.carol):
        verdicts = {p: dmsctl_check(env.rules, u, p)[0] for p in paths}
        ops = []
        for p in paths:
            ops.append(["list" if p in dirs else "read", env.path(p)])
            ops.append(["stat", env.path(p)])
        res = as_user(u, ops)
        for i, p in enumerate(paths):
            got_r, got_s = err(res[2 * i]), err(res[2 * i + 1])
            v = verdicts[p]
            want_r = "ok" if "r" in v else "EACCES"
            want_s = "EACCES" if v == "none" else "ok"
            if got_r != want_r or got_s != want_s:
                mismatches.append(
                    f"  {u.name:14} {p:40} dmsctl={v:7} "
                    f"{ops[2 * i][0]}={got_r} (want {want_r}) "
                    f"stat={got_s} (want {want_s})")
    assert not mismatches, \
        "dmsctl acl check and the mount disagree:\n" + "\n".join(mismatches)


def test_mount_options_and_cache_permissions(people, origin, acl_mount):
    env = acl_mount()
    opts = mountlib.mount_options(env.mnt)
    assert "allow_other" in opts, f"rules given but no allow_other: {opts}"
    assert "default_permissions" not in opts, \
        f"default_permissions must be off with rules: {opts}"
    assert "ro" in opts, opts
    # Put data in the cache as several users.
    for u, rel in ((people.alice, f"home/{people.alice.name}/data.bin"),
                   (people.carol, f"archive/{EXP}/raw/run_000123.nxs"),
                   (people.bob, "archive/public/data.bin")):
        r = one(u, "read", env.path(rel))
        assert err(r) == "ok" and r["sha256"] == origin.sha(rel)

    def check_tree():
        st = os.stat(env.cache_dir)
        bad = []
        if st.st_uid != 0 or (st.st_mode & 0o7777) != 0o700:
            bad.append(f"{env.cache_dir}: uid {st.st_uid} mode "
                       f"{st.st_mode & 0o7777:o} (want root 700)")
        for d, subdirs, files in os.walk(env.cache_dir):
            for n in subdirs:
                s = os.stat(os.path.join(d, n))
                if s.st_uid != 0 or (s.st_mode & 0o7777) != 0o700:
                    bad.append(f"{d}/{n}/: uid {s.st_uid} mode "
                               f"{s.st_mode & 0o7777:o} (want root 700)")
            for n in files:
                s = os.lstat(os.path.join(d, n))
                if s.st_uid != 0 or (s.st_mode & 0o7777) != 0o600:
                    bad.append(f"{d}/{n}: uid {s.st_uid} mode "
                               f"{s.st_mode & 0o7777:o} (want root 600)")
        assert not bad, "cache not root-only:\n" + "\n".join(bad)
        return sorted(os.listdir(env.cache_dir))

    assert "data.mdb" in check_tree()
    env.m.umount()
    assert "stats" in check_tree(), "no stats file written at unmount"


def test_daemon_mode_sighup(people, origin, public_dir, tmp_path):
    """Detached daemon (logs to syslog): SIGHUP reloads the rules and does
    not stop the mount."""
    rules = tmp_path / "authdb"
    rules.write_text(default_rules(people))
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(config_text(origin.url, rules, tmp_path / "cache"))
    mnt = os.path.join(public_dir, "mnt")
    os.makedirs(mnt)
    m = ConfigMount(conf, mnt, tmp_path / "dmsfs.log", foreground=False)
    env = AclEnv()
    env.mnt, env.rules, env.m = mnt, str(rules), m
    try:
        m.start()
        assert m.pid, "daemon pid not found"
        assert _bob_reads_alice(env, people) == "EACCES"
        env.write_rules(default_rules(people) +
                        f"u {people.bob.name} /home/{people.alice.name} r\n")
        os.kill(m.pid, signal.SIGHUP)
        wait_for(lambda: _bob_reads_alice(env, people) == "ok",
                 "bob reads alice's notes after SIGHUP")
        assert m.running and mountlib.pid_alive(m.pid), \
            "SIGHUP stopped the daemon"
        m.umount()
    finally:
        m.cleanup()


# name -> (config body with {url} {cache} {rules}, line, message regex);
# line None: any line number (the contract still wants one).
_GOOD_HEAD = "[cache]\ndir = {cache}\n[acl]\nrules = {rules}\n"
BAD_CONFIGS = {
    "unknown_key": (_GOOD_HEAD + "colour = blue\n"
                    "[export a]\npath = /a\nsource = {url}/archive/\n",
                    5, r"unknown key 'colour'"),
    "unknown_section": (_GOOD_HEAD + "[exports a]\npath = /a\n"
                        "source = {url}/archive/\n",
                        None, r"unknown section"),
    "missing_source": (_GOOD_HEAD + "[export a]\npath = /a\n"
                       "[export b]\npath = /b\nsource = {url}/archive/\n",
                       None, r"source"),
    "bad_per_user": (_GOOD_HEAD + "[export h]\npath = /home\n"
                     "source = {url}/home/${{user}}/\nper_user = maybe\n",
                     8, r"per_user must be yes or no"),
    "bad_size": ("[cache]\ndir = {cache}\nsize = lots\n[acl]\n"
                 "rules = {rules}\n[export a]\npath = /a\n"
                 "source = {url}/archive/\n",
                 3, r"size"),
    "relative_path": (_GOOD_HEAD + "[export a]\npath = archive\n"
                      "source = {url}/archive/\n",
                      6, r"path"),
    "per_user_without_placeholder": (
        _GOOD_HEAD + "[export h]\npath = /home\nsource = {url}/home/\n"
        "per_user = yes\n", None, r"\$\{user\}"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_config_refused(people, origin, public_dir, tmp_path, case):
    body, line, reason = BAD_CONFIGS[case]
    rules = tmp_path / "authdb"
    rules.write_text(default_rules(people))
    conf = tmp_path / "bad.conf"
    conf.write_text(body.format(url=origin.url, cache=tmp_path / "cache",
                                rules=rules))
    mnt = os.path.join(public_dir, "mnt")
    os.makedirs(mnt)
    try:
        r = mountlib.run_dmsfs(["-o", f"config={conf}", mnt])
    finally:
        if mountlib.is_mounted(mnt):
            mountlib.run_fusermount(mnt, lazy=True)
    assert r.returncode != 0, f"{case}: dmsfs accepted the config:\n{r.stderr}"
    assert not mountlib.is_mounted(mnt), f"{case}: mounted anyway"
    want = re.escape(f"dmsfs: config {conf}:") + \
        (str(line) if line else r"\d+") + r": "
    assert re.search(want, r.stderr), \
        f"{case}: want a '{want}' line, got stderr:\n{r.stderr}"
    assert re.search(reason, r.stderr), \
        f"{case}: the message does not say why ({reason}):\n{r.stderr}"
    assert not mountlib.find_daemon_pids(mnt)


def test_url_form_with_acl_option(people, origin, public_dir, tmp_path,
                                  mounter):
    rules = tmp_path / "authdb"
    rules.write_text(f"u * -rl /private /{EXP} -widn / rl\n"
                     f"g {people.group} /{EXP} rl\n")
    m = mounter(origin.url + "/archive/", acl=str(rules),
                mountpoint=os.path.join(public_dir, "mnt"))
    opts = mountlib.mount_options(m.mountpoint)
    assert "allow_other" in opts and "default_permissions" not in opts, opts
    B, C = people.bob, people.carol
    res = as_user(B, [["list", m.mountpoint],
                      ["read", m.path("public", "data.bin")],
                      ["read", m.path("private", "secret.txt")],
                      ["list", m.path(EXP)]])
    assert_results(B, res, ["ok", "ok", "EACCES", "EACCES"], m.log())
    assert res[0]["names"] == ["README.txt", "public"], res[0]
    assert res[1]["sha256"] == origin.sha("archive/public/data.bin")
    res = as_user(C, [["list", m.mountpoint],
                      ["read", m.path(EXP, "raw", "run_000123.nxs")]])
    assert_results(C, res, ["ok", "ok"], m.log())
    assert res[0]["names"] == sorted(["README.txt", EXP, "public"]), res[0]
    assert res[1]["sha256"] == origin.sha(f"archive/{EXP}/raw/"
                                          "run_000123.nxs")


def _from_sample(text, mapping):
    for old, new in mapping:
        text = re.sub(old, new, text, flags=re.M)
    return text


def test_sample_files_mount(people, origin, public_dir, tmp_path):
    """packaging/*.sample, with only hosts, paths and names replaced, lint,
    mount and do what their comments say."""
    A, B, C = people.alice, people.bob, people.carol
    r = subprocess.run([DMSCTL, "acl", "lint", SAMPLE_AUTHDB],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", \
        f"authdb.sample does not lint cleanly: {r.stdout}{r.stderr}"
    with open(SAMPLE_AUTHDB) as f:
        authdb = _from_sample(f.read(), [
            (r"\bg rb1810001\b", f"g {people.group}"),
            (r"\bu alice\b", f"u {A.name}"),
            (r"^#u bob /home/alice rl", f"u {B.name} /home/{A.name} rl")])
    rules = tmp_path / "authdb"
    rules.write_text(authdb)
    with open(SAMPLE_CONF) as f:
        conf_text = _from_sample(f.read(), [
            (r"^dir = .*", f"dir = {tmp_path / 'cache'}"),
            (r"^size = .*", "size = 256M"),
            (r"^rules = .*", f"rules = {rules}"),
            (r"^source = https://data\.example\.org/archive.*",
             f"source = {origin.url}/archive/"),
            (r"^source = https://store\.example\.org/",
             f"source = {origin.url}/")])
    assert "example.org" not in re.sub(r"(?m)^;.*", "", conf_text), \
        "a host in dmsfs.conf.sample was not replaced by the test"
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(conf_text)
    os.makedirs(os.path.join(public_dir, "mnt"))
    m = ConfigMount(conf, os.path.join(public_dir, "mnt"),
                    tmp_path / "dmsfs.log")
    try:
        m.start()
        res = as_user(A, [["list", m.mountpoint],
                          ["read", m.path("shared", EXP, "analysis.txt")],
                          ["read", m.path("home", A.name, "notes.txt")],
                          ["read", m.path("archive", "public", "data.bin")],
                          ["list", m.path("archive", EXP)],
                          ["list", m.path("archive", "private")]])
        assert_results(A, res, ["ok"] * 4 + ["EACCES"] * 2, m.log())
        assert res[0]["names"] == ["archive", "home", "shared"]
        res = as_user(B, [["read", m.path("home", A.name, "notes.txt")],
                          ["read", m.path("shared", EXP, "analysis.txt")],
                          ["list", m.path("home")]])
        assert_results(B, res, ["ok", "EACCES", "ok"], m.log())
        assert res[2]["names"] == [B.name]
        res = as_user(C, [["read", m.path("archive", EXP, "raw",
                                          "run_000123.nxs")],
                          ["read", m.path("shared", EXP, "analysis.txt")],
                          ["read", m.path("home", A.name, "notes.txt")]])
        assert_results(C, res, ["ok", "ok", "EACCES"], m.log())
        m.umount()
    finally:
        m.cleanup()
