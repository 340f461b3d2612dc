"""What an admin sees of a mount from the outside (issue 10): its log lines
(-o log=FILE, the mount point on every line, repeats counted, a warning when
syslog is missing), `mount`/`df` (the source URL, the cache's size and use),
and the command lines of dmsfs and dmsctl (--help, --version, messages)."""
import os
import re
import subprocess
import time

import pytest

import origintree
from mount import DMSFS, ROOT, find_daemon_pids, pid_alive

DMSCTL = os.environ.get("DMSCTL_BIN") or os.path.join(ROOT, "build", "dmsctl")


def _lines_of(path):
    with open(path, errors="replace") as f:
        return f.read().splitlines()


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _in_mount_namespace(script, err):
    """Runs the shell script in a new mount namespace (what it mounts stays
    there), its output to the file err."""
    with open(err, "wb") as ef:
        return subprocess.run(["unshare", "-m", "sh", "-c", script],
                              stdin=subprocess.DEVNULL, stdout=ef, stderr=ef,
                              timeout=60)


# ---- logs -------------------------------------------------------------

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} "
                  r"dmsfs\[(?P<mnt>[^\]]+)\]: "
                  r"(?P<level>error|warning|notice|info|debug): (?P<text>.+)$")


def test_log_file_lines_carry_the_mountpoint(tree, nginx, mounter, tmp_path):
    """Two daemons logging to one file: every line has a time, the level
    and its own mount point, so their lines can be told apart."""
    log = tmp_path / "dmsfs.log"
    a = mounter(nginx.url, foreground=False, log=str(log))
    b = mounter(nginx.url, foreground=False, log=str(log))
    rel = "RB1810001/raw/run_000123.nxs"
    assert origintree.read_all(a.path(rel)) == tree.data(rel)
    a.umount()
    b.umount()
    lines = _lines_of(log)
    assert lines, "nothing logged to the log file"
    bad = [ln for ln in lines if not LINE.match(ln)]
    assert not bad, f"lines not in the log format: {bad}"
    by_mnt = {}
    for ln in lines:
        m = LINE.match(ln)
        by_mnt.setdefault(m["mnt"], []).append(m["text"])
    assert set(by_mnt) == {a.mountpoint, b.mountpoint}, by_mnt
    for mnt, texts in by_mnt.items():
        assert any(t.startswith("mounted ") and t.endswith(f" on {mnt}")
                   for t in texts), (mnt, texts)
    # Runtime lines went to the file, not to the stderr dmsfs had.
    assert "mounted " not in a.log() and "mounted " not in b.log()


def test_log_file_is_reopened_after_rotation(tree, start_nginx, mounter,
                                            tmp_path):
    """logrotate moves the file away: the next lines go to a new file at
    the same path (checked at most once a second), with no signal."""
    ng = start_nginx(tree.root)
    log = tmp_path / "rot.log"
    m = mounter(ng.url, log=str(log), expected_errors=[r"error:"])
    assert os.path.getsize(log) > 0
    os.rename(log, str(log) + ".1")
    time.sleep(1.1)
    ng.stop()
    with pytest.raises(OSError):
        with open(m.path("big.bin"), "rb", buffering=0) as f:
            f.read(4096)
    _wait(lambda: os.path.exists(log), 10, "the log file was not created "
          "again")
    m.umount()
    assert any(LINE.match(ln) for ln in _lines_of(log))
    assert not [ln for ln in _lines_of(str(log) + ".1")
                if "error:" in ln], "the error went to the moved file"


def test_repeated_errors_are_counted_not_repeated(tree, start_nginx, mounter,
                                                  tmp_path):
    """Reads against a dead origin: the first error is written at once,
    the next ones of the same text are one line with their count."""
    ng = start_nginx(tree.root)
    log = tmp_path / "rl.log"
    m = mounter(ng.url, log=str(log),
                expected_errors=[r"error:", r"warning:"])
    rel = "RB1810001/raw/run_000123.nxs"
    os.stat(m.path(rel))               # attributes cached, no data
    ng.stop()
    n = 12
    for _ in range(n):
        with open(m.path(rel), "rb", buffering=0) as f:
            with pytest.raises(OSError):
                f.read(4096)
    # The first occurrence is there before any count is due.
    _wait(lambda: any(" error: " in ln or " warning: " in ln
                      for ln in _lines_of(log)), 10, "no error logged")
    m.umount()
    lines = _lines_of(log)
    texts = [LINE.match(ln)["text"] for ln in lines if LINE.match(ln)
             and LINE.match(ln)["level"] in ("error", "warning")]
    counted = [t for t in texts if re.search(
        r" \(repeated \d+ times in the last \d+ s\)$", t)]
    assert counted, f"no count line: {lines}"
    # Every counted line repeats a line written plainly first.
    for c in counted:
        first = re.sub(r" \(repeated \d+ times in the last \d+ s\)$", "", c)
        assert first in texts[:texts.index(c)], (c, texts)
    plain = [t for t in texts if t not in counted]
    assert len(plain) < n, f"errors not rate-limited: {plain}"
    total = len(plain) + sum(int(re.search(r"repeated (\d+) times", c)[1])
                             for c in counted)
    assert total >= n, (total, texts)


def test_no_syslog_warns_and_keeps_stderr(tree, nginx, tmp_path):
    """Detached without /dev/log (and without log=): dmsfs says so before
    it returns, and runtime messages keep going to its stderr."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    err = tmp_path / "stderr.txt"
    empty = tmp_path / "empty"
    empty.write_text("")
    hide = (f"mount --bind {empty} /dev/log && " if os.path.exists(
        "/dev/log") else "")
    # A mount namespace of its own: /dev/log is hidden from dmsfs only.
    script = (f"mount --make-rprivate / && {hide}"
              f"exec {DMSFS} -o cache_dir={tmp_path}/cache "
              f"{nginx.url} {mnt}")
    r = _in_mount_namespace(script, err)
    assert r.returncode == 0, err.read_text()
    pids = find_daemon_pids(str(mnt))
    assert len(pids) == 1, pids
    pid = pids[0]

    def ns(*argv):
        return subprocess.run(["nsenter", "-t", str(pid), "-m", *argv],
                              capture_output=True, timeout=30)
    try:
        said = err.read_text()
        assert re.search(r"warning: no syslog daemon listens on /dev/log.*"
                         r"-o log=FILE", said), said
        assert ns("cat", f"{mnt}/RB1810001/raw/run_000123.nxs").returncode == 0
        ns("stat", f"{mnt}/no-such-file")
    finally:
        ns("fusermount3", "-u", str(mnt))
        _wait(lambda: not pid_alive(pid), 30, "daemon did not exit")
    # After detaching, runtime lines still reached that stderr.
    assert f"dmsfs[{mnt}]: info: mounted" in err.read_text(), err.read_text()


# ---- mount and df -----------------------------------------------------

def _proc_mounts_source(mnt):
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(mnt):
                return fields[0], fields[2]
    return None


def test_mount_shows_the_source_url(tree, nginx, mounter):
    m = mounter(nginx.url)
    src, fstype = _proc_mounts_source(m.mountpoint)
    assert fstype == "fuse.dmsfs"
    assert src == nginx.url, src
    r = subprocess.run(["findmnt", "-n", "-o", "SOURCE", m.mountpoint],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == nginx.url


def test_mount_source_first_of_several_and_sanitized(tree, nginx, mounter):
    """Mirrors: the first; a comma would split the mount options (and a
    blank the fields of /proc/mounts): percent-encoded."""
    odd = nginx.url.rstrip("/") + "/odd,dir/"
    os.makedirs(os.path.join(tree.root, "odd,dir"), exist_ok=True)
    m = mounter(f"{odd};{nginx.url}")
    src, _ = _proc_mounts_source(m.mountpoint)
    assert src == nginx.url.rstrip("/") + "/odd%2Cdir/", src


def test_mount_source_of_a_config(tree, nginx, mounter, tmp_path):
    one = tmp_path / "one.conf"
    one.write_text(f"[export a]\npath = /a\nsource = {nginx.url}\n")
    os.chmod(one, 0o644)
    m = mounter(f"-oconfig={one}")
    src, _ = _proc_mounts_source(m.mountpoint)
    assert src == nginx.url, src
    m.umount()
    two = tmp_path / "two.conf"
    two.write_text(f"[export a]\npath = /a\nsource = {nginx.url}\n"
                   f"[export b]\npath = /b\nsource = {nginx.url}\n")
    os.chmod(two, 0o644)
    m = mounter(f"-oconfig={two}")
    src, _ = _proc_mounts_source(m.mountpoint)
    assert src == str(two), src


def test_df_shows_cache_size_and_use(tree, nginx, mounter):
    m = mounter(nginx.url, cache_size="64M")
    st = os.statvfs(m.mountpoint)
    assert st.f_blocks * st.f_frsize == 64 << 20
    used0 = (st.f_blocks - st.f_bfree) * st.f_frsize
    rel = "big.bin"
    data = origintree.read_all(m.path(rel))
    assert len(data) > 0

    def used():
        s = os.statvfs(m.mountpoint)
        return (s.f_blocks - s.f_bfree) * s.f_frsize
    # Blocks reach the cache on their own thread: wait for the bytes.
    _wait(lambda: used() >= used0 + min(len(data), 60 << 20) * 0.9, 30,
          f"df used {used()} after reading {len(data)} bytes")
    assert used() <= 64 << 20
    r = subprocess.run(["df", "-B1", "--output=size,used", m.mountpoint],
                       capture_output=True, text=True, timeout=30)
    size, use = r.stdout.split("\n")[1].split()
    assert int(size) == 64 << 20 and int(use) == used(), r.stdout


# ---- command lines ----------------------------------------------------

def _opt_names():
    """Every -o option of dmsfs, from its option table in fs/config.c."""
    with open(os.path.join(ROOT, "fs", "config.c")) as f:
        src = f.read()
    table = src[src.index("fs_opt_table[] = {"):src.index("FUSE_OPT_END")]
    names = re.findall(r'OPT\("(\w+)=%s"', table)
    names += re.findall(r'\{ "(\w+)", offsetof', table)
    assert len(names) > 15, names
    return names


def test_dmsfs_help_lists_every_option_with_its_default():
    r = subprocess.run([DMSFS, "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    ours = r.stdout.split("FUSE options:")[0]
    # An option's entry: from its "-o NAME" to the next "-o ".
    entries = {m[1]: m[2] for m in re.finditer(
        r"-o (\w+)(.*?)(?=\n    -o |\Z)", ours, re.S)}
    missing = [n for n in _opt_names() if n not in entries]
    assert not missing, f"--help does not list {missing}"
    no_default = [n for n in _opt_names()
                  if not re.search(r"\([^)]+\)", entries[n])]
    assert not no_default, f"--help gives no default for {no_default}"
    # Which thread option counts: dmsfs's threads=, not libfuse's.
    assert re.search(r"threads=N.*max_threads.*not used", ours, re.S), ours
    assert "(32)" in entries["threads"]


def test_dmsfs_help_defaults_match_the_code():
    """The defaults --help states are the ones fs/config.c applies."""
    with open(os.path.join(ROOT, "fs", "config.c")) as f:
        src = f.read()
    r = subprocess.run([DMSFS, "--help"], capture_output=True, text=True,
                       timeout=30)
    sizes = {"CACHE_SIZE": "cache_size", "BLOCK_SIZE": "block_size",
             "MEM_SIZE": "mem_cache", "READAHEAD": "readahead",
             "KERNEL_READAHEAD": "kernel_readahead"}
    for macro, opt in sizes.items():
        m = re.search(rf"#define DEFAULT_{macro} \((\d+)u?l*l* << (\d+)\)",
                      src)
        val = int(m[1]) << int(m[2])
        unit = {30: "G", 20: "M", 10: "K"}[int(m[2])]
        want = f"({m[1]}{unit}"
        assert re.search(rf"-o {opt}=\S+\s+[^\n]*\n?[^\n]*\{want}",
                         r.stdout), (opt, want, val)


def _dmsctl(*args):
    return subprocess.run([DMSCTL, *args], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_dmsctl_help_to_stdout_exit_0(flag):
    r = _dmsctl(flag)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: dmsctl ")
    assert "--version" in r.stdout and "-g GROUP" in r.stdout


def test_versions_agree_with_the_changelog():
    with open(os.path.join(ROOT, "packaging", "debian", "changelog")) as f:
        want = re.match(r"\S+ \((?:\d+:)?([^)-]+)", f.readline())[1]
    r = _dmsctl("--version")
    assert r.returncode == 0 and r.stdout == f"dmsctl {want}\n", r
    r = subprocess.run([DMSFS, "--version"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and f"dmsfs {want}" in r.stdout


def test_dmsctl_messages_say_dmsctl(tmp_path):
    """Its own and the rules engine's lines: a missing rules file, a bad
    command, a missing user."""
    for args in (["acl", "check", "-r", str(tmp_path / "none"), "root", "/"],
                 ["acl", "check", "no-such-user-x", "/"],
                 ["status", str(tmp_path)]):
        r = _dmsctl(*args)
        assert r.returncode != 0
        assert "dmsfs:" not in r.stderr and "dmsfs[" not in r.stderr, r.stderr
        assert r.stderr.startswith("dmsctl"), (args, r.stderr)


def test_dmsctl_acl_check_quiet_and_by_name(tmp_path):
    rules = tmp_path / "authdb"
    rules.write_text("g physics /data rl\nu alice /home/alice rw\n")
    os.chmod(rules, 0o644)
    # A local user: the verdict and the details only, nothing on stderr.
    r = _dmsctl("acl", "check", "-r", str(rules), "root", "/data")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines()[0] == "none"
    # No local account: by name, in the groups given.
    r = _dmsctl("acl", "check", "-r", str(rules), "-g", "physics",
                "-g", "other", "nobody-here-x", "/data")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines()[0] == "lr"
    assert f"granted by {rules}:1: g physics /data rl" in r.stdout
    r = _dmsctl("acl", "check", "-r", str(rules), "-g", "staff", "alice",
                "/home/alice")
    assert r.stdout.splitlines()[0] == "rw", r.stdout
    r = _dmsctl("acl", "check", "-r", str(rules), "nobody-here-x", "/data")
    assert r.returncode == 1 and "-g GROUP" in r.stderr


def test_conf_sample_states_the_defaults():
    """packaging/dmsfs.conf.sample: every [cache]/[transfer] value it shows
    (commented out or not) is the default dmsfs --help states."""
    r = subprocess.run([DMSFS, "--help"], capture_output=True, text=True,
                       timeout=30)
    ours = r.stdout.split("FUSE options:")[0]
    defaults = {m[1]: m[2] for m in re.finditer(
        r"-o (\w+)=\S+\s.*?\(([^;,)]+)", ours, re.S)}
    names = {"size": "cache_size", "mem": "mem_cache"}
    with open(os.path.join(ROOT, "packaging", "dmsfs.conf.sample")) as f:
        text = f.read()
    section, seen = None, []
    for line in text.splitlines():
        m = re.match(r"^\[(\w+)", line)
        if m:
            section = m[1]
            continue
        m = re.match(r"^;?(\w+) = (\S+)$", line)
        if not m or section not in ("cache", "transfer") or \
                m[1] in ("dir", "proxy"):
            continue
        opt = names.get(m[1], m[1])
        assert opt in defaults, (line, sorted(defaults))
        assert defaults[opt] == m[2], \
            f"sample {line!r}, but the default of {opt} is {defaults[opt]}"
        seen.append(opt)
    assert len(seen) >= 14, seen


def test_make_demo_installs_only_the_demo_groups():
    r = subprocess.run(["make", "-n", "-C", ROOT, "demo"], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"install-deps\.sh ([\w ]+)\n", r.stdout)
    assert m, r.stdout[:2000]
    groups = m[1].split()
    assert "test" not in groups and "bench" not in groups, groups
    with open(os.path.join(ROOT, "packaging", "install-deps.sh")) as f:
        src = f.read()
    pkgs = set()
    for g in groups:
        pkgs |= set(re.search(rf'^{g}="([^"]*)"', src, re.M)[1].split())
    assert {"nginx", "libnginx-mod-http-dav-ext", "fuse3",
            "libfuse3-dev"} <= pkgs, pkgs
    tools = {"squid", "python3-pytest", "fio", "rclone", "xrootd-server",
             "globus-gridftp-server-progs", "clang"}
    assert not pkgs & tools, pkgs & tools


_SYSLOG_RECEIVER = r"""
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out + ".ready", "w") as f:
    f.write(str(os.getpid()))
with open(out, "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).rstrip(b"\n") + b"\n")
"""


def test_syslog_lines_carry_the_mountpoint(tree, nginx, tmp_path):
    """Detached with a syslog daemon: lines go to /dev/log with the mount
    point, nothing is said on stderr.  A mount namespace of the test's own
    gets a /dev of its own (a tmpfs with the devices dmsfs needs bound in)
    and a small receiver on its /dev/log; the machine's /dev is not
    touched."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "olddev").mkdir()
    got = tmp_path / "syslog.txt"
    recv = tmp_path / "recv.py"
    recv.write_text(_SYSLOG_RECEIVER)
    err = tmp_path / "stderr.txt"
    devs = " ".join(f"touch /dev/{d} && mount --bind {tmp_path}/olddev/{d} "
                    f"/dev/{d} &&" for d in ("fuse", "null", "zero",
                                             "urandom", "random"))
    script = (f"mount --make-rprivate / && "
              f"mount --bind /dev {tmp_path}/olddev && "
              f"mount -t tmpfs tmpfs /dev && {devs} "
              f"{{ /usr/bin/python3 {recv} /dev/log {got} </dev/null "
              f">/dev/null 2>&1 & }} && "
              f"while [ ! -e {got}.ready ]; do sleep 0.05; done && "
              f"exec {DMSFS} -o cache_dir={tmp_path}/cache {nginx.url} {mnt}")
    r = _in_mount_namespace(script, err)
    recv_pid = int((tmp_path / "syslog.txt.ready").read_text()) \
        if (tmp_path / "syslog.txt.ready").exists() else None
    pids = find_daemon_pids(str(mnt))
    try:
        assert r.returncode == 0, err.read_text()
        assert len(pids) == 1, pids
        assert err.read_text() == "", err.read_text()
        subprocess.run(["nsenter", "-t", str(pids[0]), "-m", "cat",
                        f"{mnt}/RB1810001/raw/run_000123.nxs"],
                       capture_output=True, timeout=30)
        _wait(lambda: f"dmsfs[{pids[0]}]: {mnt}: mounted " in
              got.read_text(errors="replace"), 10,
              f"no mount line in syslog: {got.read_text()}")
    finally:
        for pid in pids:
            subprocess.run(["nsenter", "-t", str(pid), "-m", "fusermount3",
                            "-u", str(mnt)], capture_output=True, timeout=30)
            _wait(lambda: not pid_alive(pid), 30, "daemon did not exit")
        if recv_pid:
            os.kill(recv_pid, 9)
    lines = got.read_text(errors="replace").splitlines()
    assert all(f"dmsfs[{pids[0]}]: {mnt}: " in ln for ln in lines), lines
