#!/usr/bin/python3
"""dmsfs benchmark against its peers (rclone mount, xrootdfs) and ceilings.

Run as root (FUSE mounts, drop_caches, servers dropping privileges):

    /usr/bin/python3 tests/bench/bench.py [--quick]
            [--only dmsfs,dmsfs-acl,rclone,xrootdfs,gridftp,wan]
            [--dmsfs-opts block_size=1M,...] [--keep-data] [--acl-rounds 5]

Everything runs on 127.0.0.1: one origin data folder (a big file and a tree of
small files) served by nginx WebDAV, an XRootD data server and (extension) a
GridFTP server.  Each filesystem gets the same workloads; the results are
printed as a table with PASS/MISS against the targets and written as JSON to
build/bench/results.json.

Method (the same for every filesystem):
  * sequential reads: `dd if=FILE of=/dev/null bs=1M`, timed with
    time.monotonic around the subprocess, byte count checked;
  * random reads: fio randread, bs=64k, ioengine=psync, direct=1 (O_DIRECT,
    so the kernel's readahead and page cache do not blur what the daemon
    does), fixed seed so the warm run repeats the cold run's offsets;
  * "drop caches" = sync, `echo 3 > /proc/sys/vm/drop_caches`, then the
    origin's files are read back into the page cache, so the origin behaves
    like a server with its data in memory and only the client side is cold;
  * cold = fresh mount with a fresh cache dir after a drop; hot = again in the
    same mount with no drop; warm = unmount, remount on the same cache dir,
    drop;
  * ceilings (curl, local page cache, globus-url-copy) are best of 3; the
    libfuse passthrough_ll example over the origin folder (1st read after a
    drop and fresh mount, and re-read; best of 3 mounts) is the FUSE
    ceiling: not a target, but the "vs FUSE ceiling" INFO lines compare the
    cold and hot dmsfs reads with it (the FUSE round trip caps those two
    below their curl / page-cache targets here);
  * daemon RSS: VmHWM before each unmount (the target), plus the peaks of
    RssAnon / RssFile sampled every 0.1 s (an mmap'd LMDB counts in VmHWM);
  * long distance (wan, tests/bench/wanbench.py): build/tools/delayrelay
    (25 ms each way, --wan-rate 1000mbit shared link, per-connection window
    = the kernel's max TCP socket buffer, handshake costs one RTT) in front
    of nginx and of xrootd; dmsfs, an earlier dmsfs build (--wan-base),
    xrootdfs and curl read the same files cold, rounds interleaved;
  * ACL overhead (dmsfs-acl): the dmsfs workloads again with -o acl=FILE, a
    generated rules file of 1,000 rules (tests/bench/acl_rules.py, linted
    with build/dmsctl acl lint; the mount is then allow_other with zero
    kernel entry/attr timeouts), and with a 1-rule file to tell the cost of
    the rule set from the cost of the ACL mode.  Plain, 1,000 rules and
    1 rule run interleaved for --acl-rounds rounds (default 5; the plain
    dmsfs pass above is round 1's plain run); the best of the rounds (min
    time, max IOPS) are compared: times within 1.10x, IOPS at least 0.90x
    (the ratio of the medians is printed too).  Enforcement is checked once
    (as nobody: one directory readable, /big.bin EACCES).
Logs of the daemons and servers are kept in build/bench/logs/.
Only processes this script started are stopped, by PID / process group.
"""

import argparse
import atexit
import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DMSFS = os.path.join(REPO, "build", "dmsfs")
DMSCTL = os.path.join(REPO, "build", "dmsctl")
RELAY = os.path.join(REPO, "build", "tools", "delayrelay")
RESULTS = os.path.join(REPO, "build", "bench", "results.json")
DAV_MODULE = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MB = 1000 * 1000

PEERS = ["dmsfs", "rclone", "xrootdfs"]
ACL = ["dmsfs-acl"]
EXTRAS = ["gridftp", "wan", "readers32"]
WRITE = ["write"]  # tests/bench/wbench.py
SELECTABLE = PEERS + ACL + EXTRAS + WRITE

T0 = time.monotonic()


def log(msg):
    sys.stderr.write("[%7.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


class StepError(Exception):
    """A workload step failed; the message is recorded as the result."""


class StepTimeout(StepError):
    """A step ran over its time limit (the mount is then torn down)."""


# --------------------------------------------------------------------------
# Process and mount bookkeeping: everything started here is stopped here.

class Registry:
    def __init__(self):
        self.procs = {}      # pid -> (name, Popen)
        self.mounts = set()  # mount points that may still be mounted
        self.cleaned = False

    def add(self, name, popen):
        self.procs[popen.pid] = (name, popen)

    def forget(self, pid):
        self.procs.pop(pid, None)


REG = Registry()


def mounted(mnt):
    """True if MNT is a mount point (reads mountinfo; never stats MNT)."""
    mnt = os.path.realpath(mnt)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4].replace("\\040", " ") == mnt:
                    return True
    except OSError:
        pass
    return False


def alive(popen):
    return popen is not None and popen.poll() is None


def stop_proc(popen, name="", term_wait=10.0):
    """SIGTERM the process group we started (pgid == pid), then SIGKILL."""
    if popen is None:
        return
    pid = popen.pid
    if popen.poll() is None:
        for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
            try:
                popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    # Remaining group members (forked children) of a dead leader.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    REG.forget(pid)


def fusermount_u(mnt, lazy=False, timeout=20):
    argv = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [mnt]
    try:
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout, start_new_session=True)
        return r.returncode == 0
    except subprocess.TimeoutExpired:
        return False


def force_unmount(mnt):
    if mounted(mnt):
        if not fusermount_u(mnt, lazy=False, timeout=10):
            fusermount_u(mnt, lazy=True, timeout=10)
    REG.mounts.discard(mnt)


def cleanup_all():
    if REG.cleaned:
        return
    REG.cleaned = True
    for mnt in list(REG.mounts):
        try:
            force_unmount(mnt)
        except Exception as e:  # keep going: everything must be stopped
            log("cleanup: unmount %s: %s" % (mnt, e))
    for pid, (name, popen) in list(REG.procs.items()):
        try:
            stop_proc(popen, name, term_wait=5.0)
        except Exception as e:
            log("cleanup: stop %s (%d): %s" % (name, pid, e))
    for mnt in list(REG.mounts):
        fusermount_u(mnt, lazy=True, timeout=10)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------
# Helpers

def free_port():
    """A free TCP port (bound on all addresses, since xrootd binds those)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout, popen=None, name=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if popen is not None and popen.poll() is not None:
            raise StepError("%s exited with %s before listening" % (name, popen.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise StepError("%s: port %d not listening after %ds" % (name, port, timeout))


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return " | ".join(lines[-n:])
    except OSError:
        return ""


def rmtree(path):
    if os.path.lexists(path):
        if mounted(path):
            force_unmount(path)
        shutil.rmtree(path, ignore_errors=True)


def run_timed(argv, timeout, fs=None, env=None, capture=True):
    """Runs argv in its own session; returns (seconds, rc, stdout, stderr).

    On timeout the filesystem under test is torn down first (killing its
    daemon aborts the FUSE connection, which frees a reader stuck in the
    kernel), then the command's process group is killed, and StepTimeout is
    raised.
    """
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                         start_new_session=True, env=env)
    REG.add(argv[0], p)
    try:
        so, se = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        log("TIMEOUT after %ds: %s" % (timeout, " ".join(argv)))
        if fs is not None:
            fs.kill()
        stop_proc(p, argv[0], term_wait=2.0)
        try:
            p.communicate(timeout=10)
        except Exception:
            pass
        raise StepTimeout("timeout after %ds" % timeout)
    finally:
        REG.forget(p.pid)
    dt = time.monotonic() - t0
    return (dt, p.returncode,
            (so or b"").decode("utf-8", "replace"), (se or b"").decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# Origin data

def make_data(work, quick):
    name = "data-quick" if quick else "data-full"
    data = os.path.join(work, name)
    big_size = 256 * MiB if quick else 1 * GiB
    ndirs, per_dir = (5, 100) if quick else (50, 100)
    spec = {"big_size": big_size, "ndirs": ndirs, "per_dir": per_dir, "version": 1}
    stamp = data + ".done"
    try:
        with open(stamp) as f:
            if json.load(f) == spec and os.path.getsize(os.path.join(data, "big.bin")) == big_size:
                log("origin data reused: %s" % data)
                return data, spec
    except (OSError, ValueError):
        pass
    log("generating origin data in %s (%d MiB file, %d files)" %
        (data, big_size // MiB, ndirs * per_dir))
    rmtree(data)
    os.makedirs(data)
    os.chmod(work, 0o755)
    os.chmod(data, 0o755)
    # Big file: one 64 MiB random pattern, each 64 MiB chunk rotated by a
    # different odd amount, so no two aligned blocks of any size are equal.
    pat = os.urandom(64 * MiB)
    mv = memoryview(pat)
    with open(os.path.join(data, "big.bin"), "wb") as f:
        for i in range(big_size // (64 * MiB)):
            k = (i * 40961 + 4099 * i * i + 1) % len(pat)
            f.write(mv[k:])
            f.write(mv[:k])
        f.flush()
        os.fsync(f.fileno())
    os.chmod(os.path.join(data, "big.bin"), 0o644)
    rng = random.Random(20240601)
    tree = os.path.join(data, "tree")
    os.mkdir(tree)
    for d in range(ndirs):
        dd = os.path.join(tree, "d%02d" % d)
        os.mkdir(dd)
        for i in range(per_dir):
            size = rng.randint(1 * KiB, 64 * KiB)
            p = os.path.join(dd, "f%03d.dat" % i)
            with open(p, "wb") as f:
                f.write(os.urandom(size))
            os.chmod(p, 0o644)
        os.chmod(dd, 0o755)
    os.chmod(tree, 0o755)
    os.sync()
    with open(stamp, "w") as f:
        json.dump(spec, f)
    return data, spec


class Origin:
    """The origin files and how to put them back into the page cache."""

    def __init__(self, data, spec):
        self.data = data
        self.spec = spec
        self.big = os.path.join(data, "big.bin")
        self.tree = os.path.join(data, "tree")
        self.nfiles = spec["ndirs"] * spec["per_dir"]
        self.tree_bytes = 0
        self.files = []
        for root, dirs, files in os.walk(self.tree):
            dirs.sort()
            for fn in sorted(files):
                p = os.path.join(root, fn)
                self.files.append(p)
                self.tree_bytes += os.path.getsize(p)

    def prewarm(self):
        buf = bytearray(MiB)
        for p in [self.big] + self.files:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def drop_caches(origin):
    """Drops the page cache (client caches go cold), then re-reads the origin."""
    t = time.monotonic()
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    origin.prewarm()
    log("  page cache dropped, origin re-read (%.1fs)" % (time.monotonic() - t))


# --------------------------------------------------------------------------
# Servers

class Servers:
    def __init__(self, work, data, run):
        self.work = work
        self.data = data
        self.run = run
        self.nginx = None
        self.nginx_port = None
        self.xrootd = None
        self.xrootd_port = None
        self.gridftp = None
        self.gridftp_port = None
        self.relay = None
        self.relay_port = None

    def start_nginx(self):
        d = os.path.join(self.run, "nginx")
        os.makedirs(d, exist_ok=True)
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
load_module {mod};
user www-data;
worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {data};
        location / {{
            dav_ext_methods PROPFIND OPTIONS;
            limit_except GET HEAD PROPFIND OPTIONS {{ deny all; }}
        }}
        # The write workloads' homes (wbench.py); www-data owns the folder.
        location /whome/ {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
        }}
    }}
}}
""".format(mod=DAV_MODULE, d=d, port=port, data=self.data))
        logf = open(os.path.join(d, "stderr.log"), "wb")
        p = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdin=subprocess.DEVNULL,
                             stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        REG.add("nginx", p)
        wait_port(port, 15, p, "nginx")
        self.nginx, self.nginx_port = p, port
        log("nginx WebDAV on 127.0.0.1:%d (pid %d)" % (port, p.pid))

    def start_xrootd(self):
        d = os.path.join(self.run, "xrootd")
        for sub in ("", "admin", "pid", "home"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            shutil.chown(os.path.join(d, sub), "daemon", "daemon")
        port = free_port()
        cfg = os.path.join(d, "xrootd.cfg")
        with open(cfg, "w") as f:
            f.write("xrd.port %d\n"
                    "xrd.allow host localhost\n"
                    "xrd.allow host 127.0.0.1\n"
                    "all.role server\n"
                    "all.export %s r/o\n"
                    "all.adminpath %s/admin\n"
                    "all.pidpath %s/pid\n"
                    "xrd.homepath %s/home\n" % (port, self.data, d, d, d))
        logf = open(os.path.join(d, "stderr.log"), "wb")
        # Foreground (no -b) so the PID we hold is the server's.
        p = subprocess.Popen(["xrootd", "-c", cfg, "-l", os.path.join(d, "xrootd.log"),
                              "-R", "daemon", "-s", os.path.join(d, "xrootd.pid"),
                              "-n", "bench", "-I", "v4"],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=d)
        REG.add("xrootd", p)
        wait_port(port, 30, p, "xrootd")
        self.xrootd, self.xrootd_port = p, port
        log("xrootd on port %d (pid %d)" % (port, p.pid))

    def start_gridftp(self):
        d = os.path.join(self.run, "gridftp")
        os.makedirs(d, exist_ok=True)
        port = free_port()
        logp = os.path.join(d, "gridftp.log")
        logf = open(os.path.join(d, "stderr.log"), "wb")
        # -s: daemon mode in the foreground (forks per connection, same
        # process group), so stopping the group stops everything.
        p = subprocess.Popen(["globus-gridftp-server", "-aa", "-anonymous-user", "nobody",
                              "-anonymous-group", "nogroup", "-p", str(port),
                              "-control-interface", "127.0.0.1", "-data-interface", "127.0.0.1",
                              "-home-dir", self.data, "-rp", self.data, "-c", "/dev/null",
                              "-d", "ERROR", "-l", logp, "-s"],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True)
        REG.add("globus-gridftp-server", p)
        wait_port(port, 20, p, "globus-gridftp-server")
        self.gridftp, self.gridftp_port = p, port
        log("globus-gridftp-server on 127.0.0.1:%d (pid %d)" % (port, p.pid))

    def start_relay(self, delay_ms, target_port):
        if not os.access(RELAY, os.X_OK):
            log("building %s" % RELAY)
            subprocess.run(["make", "-C", REPO, "build/tools/delayrelay"], timeout=300,
                           stdout=subprocess.DEVNULL)
        if not os.access(RELAY, os.X_OK):
            raise StepError("build/tools/delayrelay missing (make build/tools/delayrelay failed)")
        d = os.path.join(self.run, "relay")
        os.makedirs(d, exist_ok=True)
        self.relay_log = os.path.join(d, "relay.log")
        errf = open(self.relay_log, "wb")
        p = subprocess.Popen([RELAY, "-v", "0", "127.0.0.1:%d" % target_port, str(delay_ms)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf,
                             start_new_session=True)
        REG.add("delayrelay", p)
        import select
        r, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline().decode().strip() if r else ""
        if not line.isdigit():
            stop_proc(p)
            raise StepError("delayrelay did not print its port (%r)" % line)
        self.relay, self.relay_port = p, int(line)
        wait_port(self.relay_port, 10, p, "delayrelay")
        log("delayrelay on 127.0.0.1:%d -> %d, %d ms each way (pid %d)" %
            (self.relay_port, target_port, delay_ms, p.pid))

    def stop_relay(self):
        stop_proc(self.relay, "delayrelay")
        self.relay = None


# --------------------------------------------------------------------------
# Filesystems under test

class FS:
    """One FUSE filesystem: mount/unmount with a cache dir, kill on hang."""

    name = "?"
    has_cache = True

    def __init__(self, bench, label=None):
        self.b = bench
        self.label = label or self.name
        self.mnt = os.path.join(bench.run, "mnt-" + self.label)
        self.proc = None
        self.cache = None
        self.peak_rss_kib = 0
        self.ncache = 0
        self.exit_problems = []
        self.nmounts = 0
        self.rss_peaks = {}
        os.makedirs(self.mnt, exist_ok=True)

    def argv(self, cache):
        raise NotImplementedError

    def new_cache(self):
        self.ncache += 1
        c = os.path.join(self.b.run, "cache-%s-%d" % (self.label, self.ncache))
        rmtree(c)
        os.makedirs(c, mode=0o700)  # dmsfs refuses a cache_dir others can read
        return c

    def mount(self, cache):
        if mounted(self.mnt):
            force_unmount(self.mnt)
        self.cache = cache
        self.nmounts += 1
        logp = os.path.join(self.b.run, "%s.log" % self.label)
        logf = open(logp, "ab")
        logf.write(("\n==== mount %s cache=%s\n" % (time.ctime(), cache)).encode())
        logf.flush()
        argv = self.argv(cache)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True)
        logf.close()
        REG.add(self.label, p)
        REG.mounts.add(self.mnt)
        self.proc = p
        threading.Thread(target=self._sampler, args=(p,), daemon=True).start()
        end = time.monotonic() + self.b.t(30)
        while time.monotonic() < end:
            if mounted(self.mnt):
                time.sleep(0.2)  # let the daemon finish its INIT
                return
            if p.poll() is not None:
                break
            time.sleep(0.05)
        rc = p.poll()
        self.kill()
        raise StepError("mount failed (%s): %s" %
                        ("exit %s" % rc if rc is not None else "timeout", tail(logp, 5)))

    def sample_rss(self, proc=None):
        """VmHWM (what the target uses) plus the peaks of RssAnon and RssFile.

        VmHWM counts file pages mapped by the daemon too (an mmap'd LMDB
        file read through the map), so the anonymous part is kept apart.
        """
        proc = proc or self.proc
        if not alive(proc):
            return
        try:
            with open("/proc/%d/status" % proc.pid) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmHWM", "RssAnon", "RssFile"):
                        kib = int(v.split()[0])
                        self.rss_peaks[k] = max(self.rss_peaks.get(k, 0), kib)
        except (OSError, ValueError, IndexError):
            pass
        self.peak_rss_kib = self.rss_peaks.get("VmHWM", 0)

    def _sampler(self, proc):
        while alive(proc) and not REG.cleaned:
            self.sample_rss(proc)
            time.sleep(0.1)

    def unmount(self):
        self.sample_rss()
        ok = True
        if mounted(self.mnt) and not fusermount_u(self.mnt, timeout=self.b.t(30)):
            log("  %s: fusermount3 -u failed, lazy unmount" % self.label)
            fusermount_u(self.mnt, lazy=True)
            ok = False
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=self.b.t(30))
                if rc != 0:
                    self.exit_problems.append(
                        "signal %d" % -rc if rc < 0 else "exit %d" % rc)
                    log("  %s: daemon exited with %s after unmount" %
                        (self.label, self.exit_problems[-1]))
            except subprocess.TimeoutExpired:
                log("  %s: daemon still running after unmount, stopping pid %d" %
                    (self.label, self.proc.pid))
                self.exit_problems.append("still running 30s after unmount")
                ok = False
            stop_proc(self.proc, self.label)
            self.proc = None
        REG.mounts.discard(self.mnt)
        if not ok:
            raise StepError("unmount was not clean")

    def kill(self):
        """Tears the mount down hard (after a timeout)."""
        if self.proc is not None:
            self.sample_rss()
            stop_proc(self.proc, self.label, term_wait=3.0)
            self.proc = None
        fusermount_u(self.mnt, lazy=True, timeout=10)
        REG.mounts.discard(self.mnt)


class Dmsfs(FS):
    name = "dmsfs"

    def __init__(self, bench, url, label=None, acl_file=None):
        FS.__init__(self, bench, label)
        self.url = url
        self.acl_file = acl_file
        self.extra_opts = ""  # wbench.py: rw, writeback_size=...
        self.bin = None       # wbench.py --write-baseline: another build

    def argv(self, cache):
        opts = ["cache_dir=" + cache]
        if self.extra_opts:
            opts.append(self.extra_opts)
        if self.acl_file:
            opts.append("acl=" + self.acl_file)
        if self.b.args.dmsfs_opts:
            opts.append(self.b.args.dmsfs_opts)
        argv = [self.bin or self.b.dmsfs_bin, "-f", "-o", ",".join(opts), self.url, self.mnt]
        return argv


class Rclone(FS):
    name = "rclone"
    write_url = None  # wbench.py: a writable folder, uploads at once

    def argv(self, cache):
        conf = os.path.join(self.b.run, "rclone.conf")
        if not os.path.exists(conf):
            open(conf, "w").close()
        if self.write_url:
            return ["rclone", "mount", ":webdav:", self.mnt, "--config", conf,
                    "--webdav-url", self.write_url, "--vfs-cache-mode", "full",
                    "--vfs-write-back", "0s", "--cache-dir", cache]
        return ["rclone", "mount", ":webdav:", self.mnt, "--config", conf,
                "--webdav-url", "http://127.0.0.1:%d/" % self.b.srv.nginx_port,
                "--vfs-cache-mode", "full", "--cache-dir", cache, "--read-only"]


class Xrootdfs(FS):
    name = "xrootdfs"
    has_cache = False

    def argv(self, cache):
        return ["xrootdfs", self.mnt, "-f", "-o",
                "rdr=root://127.0.0.1:%d/%s,uid=daemon" % (self.b.srv.xrootd_port, self.b.origin.data)]


class PassthroughLL(FS):
    """libfuse's passthrough_ll example over the origin folder: the FUSE ceiling."""
    name = "passthrough_ll"
    has_cache = False
    SRC = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"

    def build(self):
        binp = os.path.join(self.b.run, "passthrough_ll")
        if not os.path.exists(self.SRC):
            raise StepError("%s not installed" % self.SRC)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True,
                               text=True, timeout=30).stdout.split()
        r = subprocess.run(["cc", "-O2", "-o", binp, self.SRC] + flags, capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise StepError("cannot build passthrough_ll: %s" % r.stderr.strip()[-200:])
        self.bin = binp

    source = None  # wbench.py: a local folder to write into

    def argv(self, cache):
        return [self.bin, "-f", "-o", "source=%s,cache=always" % (self.source or self.b.origin.data),
                self.mnt]


# --------------------------------------------------------------------------
# Workloads

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work_dir)
        self.run = os.path.join(self.work, "run-%d" % os.getpid())
        self.results = {}   # fs label -> metric -> dict
        self.ceilings = {}  # name -> dict
        self.origin = None
        self.srv = None
        sel = args.only.split(",") if args.only else SELECTABLE
        self.sel = [s.strip() for s in sel if s.strip()]
        bad = [s for s in self.sel if s not in SELECTABLE]
        if bad:
            raise SystemExit("unknown --only entries: %s (known: %s)" %
                             (",".join(bad), ",".join(SELECTABLE)))
        self.acl = None     # the ACL overhead section (run_acl)
        self.fio_io = 16 * MiB if args.quick else 64 * MiB
        self.dmsfs_bin = os.path.abspath(args.dmsfs_bin)
        self.dmsctl = os.path.join(os.path.dirname(self.dmsfs_bin), "dmsctl")
        self.write = None   # the write section (wbench.WriteBench)
        self.wan = None     # the long-distance section (wanbench.WanBench)
        self.log = log

    def t(self, seconds):
        return seconds * self.args.timeout_scale

    # ---- recording
    def rec(self, label, metric, value):
        self.results.setdefault(label, {})[metric] = value

    def fail(self, label, metric, err):
        err = " | ".join(l.strip() for l in str(err).splitlines() if l.strip())
        log("  %s %s: FAIL: %s" % (label, metric, err))
        self.rec(label, metric, {"status": "FAIL", "error": err})

    # ---- single measurements
    def seq_read(self, path, size, fs=None):
        timeout = self.t(60 + size / (10 * MiB))
        dt, rc, so, se = run_timed(["dd", "if=" + path, "of=/dev/null", "bs=1M"], timeout, fs)
        m = re.search(r"^(\d+) bytes", se, re.M)
        got = int(m.group(1)) if m else -1
        if rc != 0 or got != size:
            raise StepError("dd rc=%d, %d of %d bytes: %s" % (rc, got, size, se.strip()[-200:]))
        return {"status": "OK", "seconds": dt, "bytes": size, "MiBps": size / MiB / dt}

    def fio_rand(self, path, size, fs=None):
        cap = int(self.t(120))
        argv = ["fio", "--name=randread", "--filename=" + path, "--readonly",
                "--rw=randread", "--bs=64k", "--size=%d" % size, "--io_size=%d" % self.fio_io,
                "--ioengine=psync", "--direct=1", "--randrepeat=1", "--randseed=4242",
                "--runtime=%d" % cap, "--output-format=json"]
        dt, rc, so, se = run_timed(argv, cap + self.t(60), fs)
        try:
            j = json.loads(so[so.index("{"):])
            rd = j["jobs"][0]["read"]
            iops, nbytes, err = rd["iops"], rd["io_bytes"], j["jobs"][0].get("error", 0)
        except (ValueError, KeyError, IndexError) as e:
            raise StepError("fio rc=%d, no JSON (%s): %s" % (rc, e, (se or so).strip()[-300:]))
        if rc != 0 or err or nbytes <= 0:
            raise StepError("fio rc=%d error=%s io_bytes=%d: %s" % (rc, err, nbytes, se.strip()[-300:]))
        r = {"status": "OK", "iops": iops, "io_bytes": nbytes, "seconds": dt,
             "lat_mean_us": rd.get("clat_ns", {}).get("mean", 0) / 1000.0}
        if nbytes < self.fio_io:
            r["note"] = "stopped at the %ds runtime cap" % cap
        return r

    def ls_lr(self, path, fs=None):
        dt, rc, so, se = run_timed(["ls", "-lR", path], self.t(180), fs,
                                   env=dict(os.environ, LC_ALL="C"))
        nfiles = sum(1 for l in so.splitlines() if l.startswith("-"))
        if rc != 0 or nfiles != self.origin.nfiles:
            raise StepError("ls rc=%d, %d of %d files listed: %s" %
                            (rc, nfiles, self.origin.nfiles, se.strip()[-200:]))
        return {"status": "OK", "seconds": dt, "files": nfiles}

    def cp_r(self, path, fs=None):
        dest = os.path.join(self.run, "cp-dest")
        rmtree(dest)
        os.makedirs(dest)
        try:
            dt, rc, so, se = run_timed(["cp", "-r", path, dest], self.t(300), fs)
            if rc != 0:
                raise StepError("cp rc=%d: %s" % (rc, se.strip()[-200:]))
            nfiles, nbytes, bad = 0, 0, 0
            copied = os.path.join(dest, "tree")
            for i, src in enumerate(self.origin.files):
                rel = os.path.relpath(src, self.origin.tree)
                p = os.path.join(copied, rel)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                nfiles += 1
                nbytes += st.st_size
                if i % 97 == 0:  # content spot check on ~1% of the files
                    with open(src, "rb") as a, open(p, "rb") as b:
                        if a.read() != b.read():
                            bad += 1
            if nfiles != self.origin.nfiles or nbytes != self.origin.tree_bytes or bad:
                raise StepError("copy incomplete or wrong: %d/%d files, %d/%d bytes, %d mismatches" %
                                (nfiles, self.origin.nfiles, nbytes, self.origin.tree_bytes, bad))
            return {"status": "OK", "seconds": dt, "files": nfiles, "bytes": nbytes,
                    "MiBps": nbytes / MiB / dt}
        finally:
            rmtree(dest)

    def spot_check(self, path, fs=None):
        """Compares a few 64 KiB pieces read through the mount with the origin."""
        size = self.origin.spec["big_size"]
        rng = random.Random(7)
        offs = [0, size - 64 * KiB] + [rng.randrange(size // (64 * KiB)) * 64 * KiB for _ in range(6)]
        with open(self.origin.big, "rb") as f:
            for off in offs:
                f.seek(off)
                want = f.read(64 * KiB)
                dt, rc, so, se = run_timed(
                    [sys.executable, "-c",
                     "import os,sys;fd=os.open(sys.argv[1],os.O_RDONLY);"
                     "sys.stdout.buffer.write(os.pread(fd,65536,int(sys.argv[2])).hex().encode())",
                     path, str(off)], self.t(60), fs)
                if rc != 0 or bytes.fromhex(so.strip() or "") != want:
                    raise StepError("data mismatch at offset %d (rc=%d)" % (off, rc))
        return True

    # ---- per-filesystem phases
    def phase(self, fs, title, fn):
        """Runs one phase; a failure records FAIL and always unmounts."""
        log("%s: %s" % (fs.label, title))
        try:
            fn()
        except StepError as e:
            log("  %s %s aborted: %s" % (fs.label, title, e))
            if isinstance(e, StepTimeout):
                fs.kill()
            return False
        finally:
            try:
                if fs.proc is not None or mounted(fs.mnt):
                    fs.unmount()
            except StepError as e:
                log("  %s: %s" % (fs.label, e))
                fs.kill()
        return True

    def step(self, fs, metric, fn):
        try:
            r = fn()
        except StepError as e:
            msg = str(e)
            if fs.proc is not None and fs.proc.poll() is not None:
                rc = fs.proc.returncode
                msg += " [daemon died: %s; log: %s]" % (
                    "signal %d" % -rc if rc < 0 else "exit %d" % rc,
                    tail(os.path.join(self.run, "%s.log" % fs.label), 4))
            self.fail(fs.label, metric, msg)
            raise StepError(msg) from e
        self.rec(fs.label, metric, r)
        log("  %-14s %s" % (metric, fmt(r)))
        return r

    def rec_exit(self, fs):
        """Records whether the daemon exited cleanly after each fusermount3 -u."""
        if fs.exit_problems:
            probs = sorted(set(fs.exit_problems))
            self.fail(fs.label, "daemon_exit", "%d of %d unmounts: %s" %
                      (len(fs.exit_problems), fs.nmounts, ", ".join(probs)))
        elif fs.nmounts:
            self.rec(fs.label, "daemon_exit", {"status": "OK"})

    def mark_skipped(self, fs, metrics, why):
        for m in metrics:
            if m not in self.results.get(fs.label, {}):
                self.fail(fs.label, m, why)

    def run_fs(self, fs, seq=True, rand=True, tree=True):
        o = self.origin
        size = o.spec["big_size"]
        big = os.path.join(fs.mnt, "big.bin")
        tree_p = os.path.join(fs.mnt, "tree")
        fs.peak_rss_kib = 0
        fs.rss_peaks = {}

        if seq:
            def p_seq():
                cache = fs.new_cache()
                drop_caches(o)
                fs.mount(cache)
                self.step(fs, "seq_cold", lambda: self.seq_read(big, size, fs))
                self.step(fs, "seq_hot", lambda: self.seq_read(big, size, fs))
                try:
                    self.spot_check(big, fs)
                    self.rec(fs.label, "data_check", {"status": "OK"})
                except StepError as e:
                    self.fail(fs.label, "data_check", e)
                    if isinstance(e, StepTimeout):
                        raise
                fs.unmount()
                drop_caches(o)
                fs.mount(cache)
                self.step(fs, "seq_warm", lambda: self.seq_read(big, size, fs))
            if not self.phase(fs, "sequential reads", p_seq):
                self.mark_skipped(fs, ["seq_cold", "seq_hot", "seq_warm"], "phase aborted")

        if rand:
            def p_rand():
                cache = fs.new_cache()
                drop_caches(o)
                fs.mount(cache)
                self.step(fs, "rand_cold", lambda: self.fio_rand(big, size, fs))
                fs.unmount()
                drop_caches(o)
                fs.mount(cache)
                self.step(fs, "rand_warm", lambda: self.fio_rand(big, size, fs))
            if not self.phase(fs, "random 64 KiB reads", p_rand):
                self.mark_skipped(fs, ["rand_cold", "rand_warm"], "phase aborted")

        if tree:
            def p_ls():
                drop_caches(o)
                fs.mount(fs.new_cache())
                self.step(fs, "ls_cold", lambda: self.ls_lr(tree_p, fs))
                self.step(fs, "ls_hot", lambda: self.ls_lr(tree_p, fs))
            if not self.phase(fs, "ls -lR", p_ls):
                self.mark_skipped(fs, ["ls_cold", "ls_hot"], "phase aborted")

            def p_cp():
                drop_caches(o)
                fs.mount(fs.new_cache())
                self.step(fs, "cp_cold", lambda: self.cp_r(tree_p, fs))
            if not self.phase(fs, "cp -r", p_cp):
                self.mark_skipped(fs, ["cp_cold"], "phase aborted")

        self.rec_exit(fs)
        if fs.peak_rss_kib:
            pk = fs.rss_peaks
            self.rec(fs.label, "peak_rss", {"status": "OK", "MB": pk["VmHWM"] * 1024 / MB,
                                            "kib": pk["VmHWM"],
                                            "anon_MB": pk.get("RssAnon", 0) * 1024 / MB,
                                            "file_MB": pk.get("RssFile", 0) * 1024 / MB})
        for n in range(1, fs.ncache + 1):
            rmtree(os.path.join(self.run, "cache-%s-%d" % (fs.label, n)))

    # ---- ceilings
    def best_of(self, name, n, fn):
        best = None
        runs = []
        try:
            for _ in range(n):
                r = fn()
                runs.append(r["seconds"])
                if best is None or r["seconds"] < best["seconds"]:
                    best = r
        except StepError as e:
            log("  ceiling %s: FAIL: %s" % (name, e))
            self.ceilings[name] = {"status": "FAIL", "error": str(e)}
            return
        best["runs"] = n
        best["all_seconds"] = runs
        self.ceilings[name] = best
        log("  ceiling %-18s %s" % (name, fmt(best)))

    def curl_read(self, url, size, timeout):
        dt, rc, so, se = run_timed(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                                    "--noproxy", "*", url], timeout)
        if rc != 0 or so.strip() != str(size):
            raise StepError("curl rc=%d size=%s: %s" % (rc, so.strip(), se.strip()[-200:]))
        return {"status": "OK", "seconds": dt, "bytes": size, "MiBps": size / MiB / dt}

    def guc_read(self, url, size):
        dt, rc, so, se = run_timed(["globus-url-copy", url, "file:///dev/null"], self.t(300))
        if rc != 0:
            raise StepError("globus-url-copy rc=%d: %s" % (rc, (se or so).strip()[-300:]))
        return {"status": "OK", "seconds": dt, "bytes": size, "MiBps": size / MiB / dt}

    def run_ceilings(self):
        o = self.origin
        size = o.spec["big_size"]
        log("ceilings")
        drop_caches(o)
        url = "http://127.0.0.1:%d/big.bin" % self.srv.nginx_port
        self.best_of("curl", 3, lambda: self.curl_read(url, size, self.t(120)))
        self.seq_read(o.big, size)  # make sure it is cached
        self.best_of("local_pagecache", 3, lambda: self.seq_read(o.big, size))
        if self.args.no_fuse_ceiling:
            return
        # Informational: what any FUSE daemon can reach here (origin data in
        # the page cache, kernel caching on for the hot read).
        fs = PassthroughLL(self)
        big = os.path.join(fs.mnt, "big.bin")

        def p_pll():
            fs.build()
            runs = {"fuse_passthrough_cold": [], "fuse_passthrough_hot": []}
            n = 3
            for i in range(n):
                if i:
                    fs.unmount()
                drop_caches(o)
                fs.mount(None)
                for key in ("fuse_passthrough_cold", "fuse_passthrough_hot"):
                    runs[key].append(self.seq_read(big, size, fs))
            for key, rs in runs.items():
                r = min(rs, key=lambda x: x["seconds"])
                r["runs"] = n
                r["all_seconds"] = [x["seconds"] for x in rs]
                self.ceilings[key] = r
                log("  ceiling %-18s %s" % (key, fmt(r)))
        self.phase(fs, "FUSE ceiling: libfuse passthrough_ll, cache=always", p_pll)

    # ---- ACL overhead: the dmsfs workloads with -o acl=FILE
    def acl_prepare(self, d):
        """Writes the rules files into d and checks them with dmsctl.

        Returns (info, rules_1000, rules_1); raises StepError.
        """
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import acl_rules
        if not os.access(DMSCTL, os.X_OK):
            raise StepError("%s not found (make build/dmsctl)" % DMSCTL)
        os.makedirs(d, exist_ok=True)
        n = self.args.acl_rules
        text, n = acl_rules.generate(n, n * 6 // 10, n * 3 // 10)
        big = os.path.join(d, "authdb")
        one = os.path.join(d, "authdb-1rule")
        with open(big, "w") as f:
            f.write(text)
        with open(one, "w") as f:
            f.write("u root / rl\n")
        info = {"rules": n, "generator": "tests/bench/acl_rules.py", "bytes": len(text)}
        for path, want in ((big, n), (one, 1)):
            dt, rc, so, se = run_timed([DMSCTL, "acl", "lint", path], self.t(30))
            out = so.strip()
            if rc != 0 or not out.startswith("ok") or out != "ok: %d rules" % want:
                raise StepError("dmsctl acl lint %s: rc=%d: %s %s" %
                                (os.path.basename(path), rc, out[-200:], se.strip()[-200:]))
            warns = [l for l in se.splitlines() if "warn" in l.lower()]
            if path == big:
                info["lint"] = out
                info["lint_warnings"] = warns
        # What the rules give, as dmsctl explains it (the mount checks it too).
        checks = []
        for user, path, want in (("root", "/big.bin", "lr"), ("root", "/tree/d00/f000.dat", "lr"),
                                 ("nobody", "/big.bin", "lr"),
                                 ("nobody", "/shared/RB1810000", "none"),
                                 ("nobody", "/tree/d01/f000.dat", "lr")):
            dt, rc, so, se = run_timed([DMSCTL, "acl", "check", "-r", big, user, path], self.t(30))
            got = so.split("\n", 1)[0].strip()
            checks.append("%s %s: %s" % (user, path, got))
            if rc != 0 or got != want:
                raise StepError("dmsctl acl check %s %s: %r, expected %r (rc=%d %s)" %
                                (user, path, got, want, rc, se.strip()[-200:]))
        info["dmsctl_check"] = checks
        return info, big, one

    def acl_check_mount(self, fs):
        """As nobody: the public benchmark data reads, /shared (no rule for
        nobody) gives EACCES, and / lists only what nobody may see.
        Raises StepError."""
        prog = ("import os,sys,json\nm=sys.argv[1]\nr={}\n"
                "try:\n os.stat(m+'/tree/d01/f000.dat'); r['d01']=0\n"
                "except OSError as e:\n r['d01']=e.errno\n"
                "try:\n os.stat(m+'/shared/RB1810000'); r['home']=0\n"
                "except OSError as e:\n r['home']=e.errno\n"
                "try:\n r['root']=sorted(os.listdir(m))\n"
                "except OSError as e:\n r['root']=e.errno\n"
                "print(json.dumps(r))\n")
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                sys.executable, "-c", prog, fs.mnt]
        dt, rc, so, se = run_timed(argv, self.t(60), fs)
        try:
            r = json.loads(so.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StepError("enforcement check as nobody: rc=%d %s" % (rc, se.strip()[-200:]))
        ok = (r.get("d01") == 0 and r.get("home") == errno.EACCES and
              r.get("root") == ["big.bin", "tree"])
        desc = "as nobody: stat /tree/d01/f000.dat %s, stat /shared/RB1810000 %s, ls / %s" % (
            "ok" if r.get("d01") == 0 else os.strerror(r.get("d01") or 0),
            "ok" if r.get("home") == 0 else os.strerror(r.get("home") or 0),
            r.get("root") if isinstance(r.get("root"), list) else os.strerror(r.get("root") or 0))
        if not ok:
            raise StepError("rules not enforced as expected: " + desc)
        return {"status": "OK", "detail": desc}

    def run_acl(self, plain_main):
        """Plain dmsfs, dmsfs with 1,000 rules and with 1 rule, interleaved.

        plain_main: the results of the plain dmsfs pass that just ran (used as
        round 1's plain run), or None.
        """
        rounds = max(1, self.args.acl_rounds)
        A = self.acl = {"rounds": rounds, "runs": {v: [] for v, _ in ACL_VARIANTS},
                        "order": []}
        url = "http://127.0.0.1:%d/" % self.srv.nginx_port
        if not os.access(self.dmsfs_bin, os.X_OK):
            A["error"] = "build/dmsfs not found"
            return
        log("ACL overhead: %d rules, %d round(s)" % (self.args.acl_rules, rounds))
        try:
            info, rules, rules1 = self.acl_prepare(os.path.join(self.run, "acl"))
        except StepError as e:
            A["error"] = str(e)
            log("  ACL: %s" % e)
            return
        A.update(info)
        log("  dmsctl acl lint: %s%s" % (info["lint"], "; %d warnings" % len(info["lint_warnings"])
                                         if info["lint_warnings"] else ""))

        os.chmod(self.run, 0o755)  # nobody walks to the mount point
        fs = Dmsfs(self, url, label="dmsfs-aclcheck", acl_file=rules)

        os.chmod(fs.mnt, 0o755)

        def p_chk():
            fs.mount(fs.new_cache())
            A["enforced"] = self.acl_check_mount(fs)
            log("  enforced: %s" % A["enforced"]["detail"])
        try:
            if not self.phase(fs, "ACL enforcement check", p_chk):
                raise StepError("phase aborted")
        except StepError as e:
            A["enforced"] = {"status": "FAIL", "error": str(e)}
        if "enforced" not in A:
            A["enforced"] = {"status": "FAIL", "error": "phase aborted"}
        self.results.pop(fs.label, None)
        log("  enforcement check: %s" % A["enforced"].get("detail", A["enforced"].get("error")))
        for n in range(1, fs.ncache + 1):
            rmtree(os.path.join(self.run, "cache-%s-%d" % (fs.label, n)))

        files = {"dmsfs": None, "acl": rules, "acl1": rules1}
        labels = {"dmsfs": "dmsfs-plain", "acl": "dmsfs-acl", "acl1": "dmsfs-acl1"}
        order = [v for v, _ in ACL_VARIANTS]
        for r in range(rounds):
            k = r % len(order)
            for v in order[k:] + order[:k]:  # a Latin square: each variant in each slot
                A["order"].append("%d:%s" % (r + 1, v))
                if v == "dmsfs" and r == 0 and plain_main:
                    A["runs"][v].append(plain_main)
                    continue
                label = labels[v]
                log("ACL overhead round %d/%d: %s" % (r + 1, rounds, label))
                self.results.pop(label, None)
                self.run_fs(Dmsfs(self, url, label=label, acl_file=files[v]))
                A["runs"][v].append(self.results.pop(label, {}))
        A["rows"] = acl_rows(A)
        for row in A["rows"]:
            log("  %-10s plain %-12s acl %-12s %s %s (best of %d)" % (
                row["metric"], fmt_acl(row, "dmsfs"), fmt_acl(row, "acl"),
                "%.2fx" % row["ratio"] if row.get("ratio") else "-", row["status"], rounds))

    # ---- extension: GridFTP origin and long-distance relay
    def run_gridftp(self):
        o = self.origin
        size = o.spec["big_size"]
        try:
            self.srv.start_gridftp()
        except StepError as e:
            log("gridftp server: %s" % e)
            self.ceilings["globus-url-copy"] = {"status": "FAIL", "error": str(e)}
            return
        base = "ftp://127.0.0.1:%d%s/" % (self.srv.gridftp_port, o.data)
        log("ceiling globus-url-copy")
        drop_caches(o)
        self.best_of("globus-url-copy", 3, lambda: self.guc_read(base + "big.bin", size))
        if "dmsfs" not in self.sel:
            return
        fs = Dmsfs(self, base, label="dmsfs-ftp")
        if not os.access(self.dmsfs_bin, os.X_OK):
            self.mark_skipped(fs, ["seq_cold", "rand_cold"], "build/dmsfs not found")
            return
        big = os.path.join(fs.mnt, "big.bin")

        def p_seq():
            drop_caches(o)
            fs.mount(fs.new_cache())
            self.step(fs, "seq_cold", lambda: self.seq_read(big, size, fs))
            try:
                self.spot_check(big, fs)
                self.rec(fs.label, "data_check", {"status": "OK"})
            except StepError as e:
                self.fail(fs.label, "data_check", e)
        if not self.phase(fs, "GridFTP sequential cold", p_seq):
            self.mark_skipped(fs, ["seq_cold"], "phase aborted")

        def p_rand():
            drop_caches(o)
            fs.mount(fs.new_cache())
            self.step(fs, "rand_cold", lambda: self.fio_rand(big, size, fs))
        if not self.phase(fs, "GridFTP random cold", p_rand):
            self.mark_skipped(fs, ["rand_cold"], "phase aborted")
        self.rec_exit(fs)
        for n in range(1, fs.ncache + 1):
            rmtree(os.path.join(self.run, "cache-%s-%d" % (fs.label, n)))

    def run_wan(self):
        """The long-distance part: tests/bench/wanbench.py."""
        import wanbench
        self.wan = wanbench.WanBench(self, sys.modules[__name__])
        try:
            self.wan.run()
        except StepError as e:
            log("wan: %s" % e)
            self.wan.res["error"] = str(e)

    def readers_data(self):
        """32 files of 32 MiB (--quick) or 64 MiB in the origin's readers/."""
        n, size = self.args.readers, (32 if self.args.quick else 64) * MiB
        d = os.path.join(self.origin.data, "readers")
        paths = [os.path.join(d, "r%02d.bin" % i) for i in range(n)]
        if not all(os.path.isfile(p) and os.path.getsize(p) == size for p in paths):
            log("generating %d files of %d MiB in %s" % (n, size // MiB, d))
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
            chunk = os.urandom(MiB)
            for i, p in enumerate(paths):
                with open(p, "wb") as f:
                    for k in range(size // MiB):
                        f.write(bytes([i, k % 256]) + chunk[2:])
                os.chmod(p, 0o644)
        return paths, size

    def readers_read(self, paths, size, fs):
        """dd of every path at once; aggregate MiB/s over the slowest."""
        t0 = time.monotonic()
        procs = [subprocess.Popen(["dd", "if=" + p, "of=/dev/null", "bs=1M"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for p in paths]
        bad = []
        for p, pr in zip(paths, procs):
            try:
                _, err = pr.communicate(timeout=self.t(120 + len(paths) * size / (10 * MiB)))
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise StepTimeout("dd of %s timed out" % p)
            m = re.search(rb"^(\d+) bytes", err, re.M)
            if pr.returncode != 0 or not m or int(m.group(1)) != size:
                bad.append("%s rc=%d" % (os.path.basename(p), pr.returncode))
        dt = time.monotonic() - t0
        if bad:
            raise StepError("dd failed: %s" % ", ".join(bad[:4]))
        total = size * len(paths)
        return {"status": "OK", "seconds": dt, "bytes": total, "MiBps": total / MiB / dt}

    def run_readers(self):
        """Many readers of different files at once, cold: aggregate rate and
        the daemon's peak memory (VmHWM, RssAnon, RssFile) for each peer."""
        o = self.origin
        paths, size = self.readers_data()
        rel = [os.path.relpath(p, o.data) for p in paths]
        peers = []
        for name in ("dmsfs", "xrootdfs", "rclone"):
            if name == "dmsfs":
                fs = Dmsfs(self, "http://127.0.0.1:%d/" % self.srv.nginx_port,
                           label="dmsfs-r32")
                if not os.access(self.dmsfs_bin, os.X_OK):
                    continue
            elif name == "xrootdfs":
                if self.srv.xrootd is None:
                    continue
                fs = Xrootdfs(self, label="xrootdfs-r32")
            else:
                fs = Rclone(self, label="rclone-r32")
            peers.append(fs)
        for rnd in range(self.args.readers_rounds):
            for fs in peers:
                fs.peak_rss_kib = 0
                fs.rss_peaks = {}
                metric = "readers32" if rnd == 0 else "readers32_%d" % (rnd + 1)

                def p_read(fs=fs, metric=metric):
                    drop_caches(o)
                    for p in paths:   # the origin serves from memory
                        with open(p, "rb", buffering=0) as f:
                            while f.read(MiB):
                                pass
                    fs.mount(fs.new_cache())
                    r = self.readers_read([os.path.join(fs.mnt, x) for x in rel], size, fs)
                    fs.unmount()
                    pk = fs.rss_peaks
                    r.update(readers=len(paths), file_MiB=size // MiB,
                             VmHWM_MB=pk.get("VmHWM", 0) * 1024 / MB,
                             anon_MB=pk.get("RssAnon", 0) * 1024 / MB,
                             file_MB=pk.get("RssFile", 0) * 1024 / MB)
                    self.rec(fs.label, metric, r)
                    log("  %-14s %s; VmHWM %.1f MB (anon %.1f, file %.1f)" %
                        (metric, fmt(r), r["VmHWM_MB"], r["anon_MB"], r["file_MB"]))
                if not self.phase(fs, "%d readers of different files, cold (round %d)" %
                                  (len(paths), rnd + 1), p_read):
                    self.mark_skipped(fs, [metric], "phase aborted")
        for fs in peers:
            self.rec_exit(fs)
            for n in range(1, fs.ncache + 1):
                rmtree(os.path.join(self.run, "cache-%s-%d" % (fs.label, n)))

    # ---- main
    def main(self):
        os.makedirs(self.work, exist_ok=True)
        os.makedirs(self.run)
        data, spec = make_data(self.work, self.args.quick)
        self.origin = Origin(data, spec)
        self.srv = Servers(self.work, data, self.run)
        self.srv.start_nginx()
        if "xrootdfs" in self.sel or "wan" in self.sel or "readers32" in self.sel:
            try:
                self.srv.start_xrootd()
            except StepError as e:
                log("xrootd: %s" % e)
        if any(s not in WRITE for s in self.sel):
            self.run_ceilings()

        for name in PEERS:
            if name == "dmsfs" and "dmsfs-acl" in self.sel and name not in self.sel:
                self.run_acl(None)
            if name not in self.sel:
                continue
            if name == "dmsfs":
                fs = Dmsfs(self, "http://127.0.0.1:%d/" % self.srv.nginx_port)
                if not os.access(self.dmsfs_bin, os.X_OK):
                    self.mark_skipped(fs, METRICS, "build/dmsfs not found")
                    if "dmsfs-acl" in self.sel:
                        self.run_acl(None)
                    continue
                self.run_fs(fs)
                if "dmsfs-acl" in self.sel:
                    # Right after the plain pass, which is round 1's plain run.
                    self.run_acl(dict(self.results.get("dmsfs", {})))
                continue
            elif name == "rclone":
                fs = Rclone(self)
            else:
                fs = Xrootdfs(self)
                if self.srv.xrootd is None:
                    self.mark_skipped(fs, METRICS, "xrootd server did not start")
                    continue
            self.run_fs(fs)
        if "gridftp" in self.sel:
            self.run_gridftp()
        if "wan" in self.sel:
            self.run_wan()
        if "readers32" in self.sel:
            self.run_readers()
        if "write" in self.sel:
            import wbench
            self.write = wbench.WriteBench(self, StepError, run_timed, Dmsfs, Rclone, log,
                                           PassthroughLL)
            self.write.run()


METRICS = ["seq_cold", "seq_hot", "seq_warm", "rand_cold", "rand_warm",
           "ls_cold", "ls_hot", "cp_cold"]

# The ACL overhead section: variants and the figures compared.
ACL_VARIANTS = [("dmsfs", "dmsfs"), ("acl", "dmsfs+acl"), ("acl1", "+acl 1 rule")]
ACL_TIME_MAX = 1.10   # acl time <= 1.10 x plain
ACL_IOPS_MIN = 0.90   # acl IOPS >= 0.90 x plain


def acl_key(metric):
    return "iops" if metric.startswith("rand") else "seconds"


def acl_rows(A):
    """Best (min time, max IOPS) and median per variant and workload, the
    ratios of the bests and PASS/MISS.

    The verdict uses the best of the rounds, like the ceilings: other load on
    the machine only ever makes a run slower, and one slow run of a 10 ms
    step would otherwise decide.  The median ratio is kept alongside.
    """
    rows = []
    for m in METRICS:
        key = acl_key(m)
        row = {"metric": m, "key": key}
        for v, _ in ACL_VARIANTS:
            runs = A["runs"][v]
            vals = [val(run.get(m), key) for run in runs]
            vals = [x for x in vals if x is not None]
            best = (max(vals) if key == "iops" else min(vals)) if vals else None
            row[v] = {"values": vals, "runs": len(runs), "best": best,
                      "median": statistics.median(vals) if vals else None}
        p = row["dmsfs"]
        pv = p["values"]
        if len(pv) >= 2 and p["median"]:
            row["plain_spread"] = (max(pv) - min(pv)) / p["median"]
        for v in ("acl", "acl1"):
            if row[v]["best"] is not None and p["best"]:
                row[v]["ratio"] = row[v]["best"] / p["best"]
                row[v]["median_ratio"] = row[v]["median"] / p["median"]
        ratio = row["acl"].get("ratio")
        if key == "iops":
            row["need"] = ">= %.2fx" % ACL_IOPS_MIN
        else:
            row["need"] = "<= %.2fx" % ACL_TIME_MAX
        nfail = row["acl"]["runs"] - len(row["acl"]["values"])
        if ratio is None:
            row["status"] = "MISS" if row["acl"]["runs"] else "N/A"
            row["note"] = "no result" if p["median"] else "no plain dmsfs result"
        else:
            row["ratio"] = ratio
            ok = ratio >= ACL_IOPS_MIN if key == "iops" else ratio <= ACL_TIME_MAX
            row["status"] = "PASS" if ok and not nfail else "MISS"
            if nfail:
                row["note"] = "%d of %d runs failed" % (nfail, row["acl"]["runs"])
        rows.append(row)
    return rows


def fmt_acl(row, v):
    x = row[v]["best"]
    if x is None:
        return "FAIL" if row[v]["runs"] else "-"
    return ("%.0f IOPS" % x) if row["key"] == "iops" else ("%.3fs" % x)


# --------------------------------------------------------------------------
# Report

def fmt(r):
    if r is None:
        return "-"
    if r.get("status") != "OK":
        return "FAIL"
    if "count" in r:
        return "%d" % r["count"]
    if "iops" in r:
        s = "%.0f IOPS" % r["iops"]
        return s + ("*" if "note" in r else "")
    if "MB" in r:
        return "%.0f MB (anon %.0f)" % (r["MB"], r.get("anon_MB", 0))
    if "MiBps" in r and "files" not in r:
        return "%.3fs %6.0f MiB/s" % (r["seconds"], r["MiBps"])
    if "seconds" in r:
        return "%.3fs" % r["seconds"]
    return "OK"


def val(r, key):
    if r is None or r.get("status") != "OK" or key not in r:
        return None
    return r[key]


def targets(b):
    R = b.results
    C = b.ceilings
    g = lambda fs, m: R.get(fs, {}).get(m)
    out = []

    def ratio(name, desc, mine, theirs, key, need, higher_better=True, why_na=""):
        a, t = val(mine, key), val(theirs, key)
        item = {"target": name, "description": desc, "required": need}
        if mine is None:
            item.update(status="N/A", note="dmsfs not run")
        elif a is None:
            item.update(status="MISS", note="dmsfs: " + (mine.get("error", "FAIL") if mine else "FAIL"))
        elif t is None:
            item.update(status="N/A", note="reference not measured" + why_na)
        else:
            r = a / t if higher_better else t / a
            item.update(ratio=r, status="PASS" if r >= need else "MISS")
        out.append(item)

    def vs_ceiling(name, desc, mine, ceil, ref, ref_name, need):
        """INFO: dmsfs against the FUSE ceiling, and the ceiling against the
        target's reference (below `need` means the target is out of reach
        for any FUSE daemon here)."""
        a, c, t = val(mine, "MiBps"), val(ceil, "MiBps"), val(ref, "MiBps")
        item = {"target": name, "description": desc, "status": "INFO", "required": None}
        if a is None or c is None:
            item["text"] = "dmsfs not run" if mine is None else (
                "dmsfs: FAIL" if a is None else "ceiling not measured (--no-fuse-ceiling?)")
        else:
            item["ratio"] = a / c
            item["text"] = "%.2fx of the ceiling" % (a / c)
            if t:
                item["ceiling_vs_ref"] = c / t
                item["text"] += "; ceiling = %.2fx %s (target %.2gx)" % (c / t, ref_name, need)
        out.append(item)

    ratio("seq_cold_vs_curl", "cold seq throughput dmsfs / curl", g("dmsfs", "seq_cold"),
          C.get("curl"), "MiBps", 0.7)
    vs_ceiling("seq_cold_vs_fuse", "  vs FUSE ceiling: / passthrough_ll 1st read",
               g("dmsfs", "seq_cold"), C.get("fuse_passthrough_cold"), C.get("curl"), "curl", 0.7)
    ratio("seq_hot_vs_pagecache", "hot seq throughput dmsfs / local page cache",
          g("dmsfs", "seq_hot"), C.get("local_pagecache"), "MiBps", 0.8)
    vs_ceiling("seq_hot_vs_fuse", "  vs FUSE ceiling: / passthrough_ll re-read",
               g("dmsfs", "seq_hot"), C.get("fuse_passthrough_hot"), C.get("local_pagecache"),
               "page cache", 0.8)
    ratio("seq_warm_vs_rclone", "warm seq throughput dmsfs / rclone", g("dmsfs", "seq_warm"),
          g("rclone", "seq_warm"), "MiBps", 3.0)
    # Issue 9: a cache must beat the network, so the peer with no cache is
    # the reference for the cold and warm reads.
    ratio("seq_cold_vs_xrootdfs", "cold seq throughput dmsfs / xrootdfs",
          g("dmsfs", "seq_cold"), g("xrootdfs", "seq_cold"), "MiBps", 1.0)
    ratio("seq_warm_vs_xrootdfs", "warm seq throughput dmsfs / xrootdfs",
          g("dmsfs", "seq_warm"), g("xrootdfs", "seq_warm"), "MiBps", 1.5)
    ratio("rand_cold_vs_xrootdfs", "cold random IOPS dmsfs / xrootdfs", g("dmsfs", "rand_cold"),
          g("xrootdfs", "rand_cold"), "iops", 1.0)
    ratio("rand_warm_vs_rclone", "warm random IOPS dmsfs / rclone", g("dmsfs", "rand_warm"),
          g("rclone", "rand_warm"), "iops", 5.0)
    ratio("ls_cold_vs_rclone", "ls -lR cold: rclone time / dmsfs time", g("dmsfs", "ls_cold"),
          g("rclone", "ls_cold"), "seconds", 1.0, higher_better=False)
    ratio("cp_cold_vs_xrootdfs", "cp -r cold: xrootdfs time / dmsfs time", g("dmsfs", "cp_cold"),
          g("xrootdfs", "cp_cold"), "seconds", 1.0, higher_better=False)
    rss = g("dmsfs", "peak_rss")
    item = {"target": "rss", "description": "dmsfs peak RSS (VmHWM) <= 100 MB", "required": 100.0}
    if val(rss, "anon_MB") is not None:
        item["anon_MB"] = rss["anon_MB"]
        item["file_MB"] = rss["file_MB"]
    if "dmsfs" not in b.sel or "dmsfs" not in R:
        item.update(status="N/A", note="dmsfs not run")
    elif val(rss, "MB") is None:
        item.update(status="MISS", note="not measured (dmsfs did not run)")
    else:
        item.update(value=rss["MB"], status="PASS" if rss["MB"] <= 100.0 else "MISS")
    out.append(item)
    # INFO: the anonymous part alone (VmHWM also counts the mmap'd LMDB).
    item = {"target": "rss_anon", "description": "dmsfs peak RSS anon (RssAnon) <= 100 MB",
            "status": "INFO", "required": 100.0}
    if val(rss, "anon_MB") is None:
        item["text"] = "not measured"
    else:
        item["value"] = rss["anon_MB"]
        item["text"] = "%.1f MB (%s 100 MB); file-backed peak %.0f MB" % (
            rss["anon_MB"], "<=" if rss["anon_MB"] <= 100.0 else "over", rss["file_MB"])
    out.append(item)
    if "readers32" in b.sel:
        mine = g("dmsfs-r32", "readers32")
        item = {"target": "rss_readers32", "required": 100.0,
                "description": "%d readers at once: dmsfs VmHWM <= 100 MB" % b.args.readers}
        if val(mine, "VmHWM_MB") is None:
            item.update(status="MISS", note="dmsfs: " + (mine or {}).get("error", "not run"))
        else:
            item.update(value=mine["VmHWM_MB"],
                        status="PASS" if mine["VmHWM_MB"] <= 100.0 else "MISS",
                        text="%.1f MB (anon %.1f, file %.1f)" % (
                            mine["VmHWM_MB"], mine["anon_MB"], mine["file_MB"]))
        out.append(item)
        for peer in ("xrootdfs", "rclone"):
            theirs = g(peer + "-r32", "readers32")
            item = {"target": "readers32_vs_" + peer, "status": "INFO", "required": None,
                    "description": "  %d readers: aggregate rate dmsfs / %s" % (b.args.readers, peer)}
            a_, t_ = val(mine, "MiBps"), val(theirs, "MiBps")
            if a_ is None or t_ is None:
                item["text"] = "not measured"
            else:
                item["ratio"] = a_ / t_
                item["text"] = "%.2fx (%.0f vs %.0f MiB/s; %s VmHWM %.0f MB)" % (
                    a_ / t_, a_, t_, peer, theirs.get("VmHWM_MB", 0))
            out.append(item)
    if "dmsfs-acl" in b.sel:
        A = b.acl or {}
        rows = A.get("rows") or []
        item = {"target": "acl_overhead", "required": ACL_TIME_MAX,
                "description": "ACL %d rules: every workload within 10%% of dmsfs" %
                               A.get("rules", b.args.acl_rules)}
        if not rows:
            item.update(status="MISS", text=A.get("error", "not run"))
        else:
            miss = [r for r in rows if r["status"] != "PASS"]
            item["status"] = "MISS" if miss else "PASS"
            item["text"] = "%d/%d within (best of %d)" % (len(rows) - len(miss), len(rows),
                                                           A["rounds"])
            if miss:
                item["text"] += "; " + ", ".join(
                    "%s %s" % (r["metric"], "%.2fx" % r["ratio"] if "ratio" in r else "FAIL")
                    for r in miss)
            if (A.get("enforced") or {}).get("status") != "OK":
                item["status"] = "MISS"
                item["text"] += "; rules NOT enforced as expected"
        out.append(item)
    if "gridftp" in b.sel:
        ratio("ftp_seq_cold_vs_guc", "GridFTP: cold seq dmsfs(ftp) / globus-url-copy",
              g("dmsfs-ftp", "seq_cold"), C.get("globus-url-copy"), "MiBps", 0.8)
        ratio("ftp_rand_cold_vs_rclone", "GridFTP: cold random IOPS dmsfs(ftp) / rclone(http)",
              g("dmsfs-ftp", "rand_cold"), g("rclone", "rand_cold"), "iops", 1.5)
    if b.wan is not None:
        out.extend(b.wan.targets())
    return out


ROWS = [("seq_cold", "seq read cold"), ("seq_hot", "seq read hot"),
        ("seq_warm", "seq read warm (remount)"), ("rand_cold", "rand 64k cold"),
        ("rand_warm", "rand 64k warm (remount)"), ("ls_cold", "ls -lR cold"),
        ("ls_hot", "ls -lR hot"), ("cp_cold", "cp -r cold"), ("data_check", "data spot check"),
        ("daemon_exit", "clean daemon exit"),
        ("connections", "TCP connections (relay)"),
        ("peak_rss", "daemon peak RSS")]


def report(b, tg):
    o = b.origin
    spec = o.spec if o else {}
    lines = []
    lines.append("dmsfs benchmark  %s file %d MiB, tree %d files (%.1f MiB); fio randread 64k "
                 "psync direct=1 io_size=%d MiB; dmsfs opts: %s" %
                 (time.strftime("%Y-%m-%d %H:%M"), spec.get("big_size", 0) // MiB,
                  o.nfiles if o else 0, (o.tree_bytes if o else 0) / MiB, b.fio_io // MiB,
                  b.args.dmsfs_opts or "(defaults)"))
    cols = [c for c in ["dmsfs", "rclone", "xrootdfs", "dmsfs-ftp", "dmsfs-wan"] if c in b.results]
    w0, w = 26, 22
    lines.append("%-*s" % (w0, "") + "".join("%-*s" % (w, c) for c in cols))
    for key, title in ROWS:
        if not any(key in b.results[c] for c in cols):
            continue
        lines.append("%-*s" % (w0, title) +
                     "".join("%-*s" % (w, fmt(b.results[c].get(key))) for c in cols))
    lines.append("")
    lines.append("ceilings (best of 3 unless noted):")
    for name, desc in [("curl", "curl -o /dev/null from nginx"),
                       ("local_pagecache", "local page-cache dd of origin"),
                       ("fuse_passthrough_cold", "FUSE: passthrough_ll 1st read"),
                       ("fuse_passthrough_hot", "FUSE: passthrough_ll re-read"),
                       ("globus-url-copy", "globus-url-copy -> /dev/null"),
                       ("curl_wan", "curl through delayrelay (1 run)")]:
        if name in b.ceilings:
            lines.append("  %-34s %s" % (desc, fmt(b.ceilings[name])))
    if b.acl is not None:
        lines.append("")
        lines.extend(acl_report(b))
    if b.wan is not None:
        lines.append("")
        lines.extend(b.wan.report())
    lines.append("")
    lines.append("targets:")
    for t in tg:
        if "text" in t:
            v = t["text"]
        elif "ratio" in t:
            v = "%.2fx (need >= %.2gx)" % (t["ratio"], t["required"])
        elif "value" in t:
            v = "%.1f MB (need <= %.0f MB)" % (t["value"], t["required"])
            if "anon_MB" in t:
                v += "; peaks: anon %.0f MB, file-backed %.0f MB" % (t["anon_MB"], t["file_MB"])
        else:
            v = t.get("note", "")
            if len(v) > 70:
                v = v[:67] + "..."
        lines.append("  %-5s %-52s %s" % (t["status"], t["description"], v))
    errs = []
    for c in cols:
        for k, r in b.results[c].items():
            if r.get("status") != "OK":
                errs.append("  %s %s: %s" % (c, k, r.get("error", "")))
            elif "note" in r:
                errs.append("  %s %s: %s" % (c, k, r["note"]))
    for k, r in b.ceilings.items():
        if r.get("status") != "OK":
            errs.append("  ceiling %s: %s" % (k, r.get("error", "")))
    if b.acl is not None:
        labels = dict(ACL_VARIANTS)
        for v, runs in b.acl.get("runs", {}).items():
            for i, run in enumerate(runs):
                for k, r in run.items():
                    if r.get("status") != "OK":
                        errs.append("  %s (ACL run %d) %s: %s" % (labels[v], i + 1, k,
                                                                  r.get("error", "")))
    if errs:
        lines.append("")
        lines.append("failures / notes:")
        lines.extend(errs)
    return "\n".join(lines)


def acl_report(b):
    A = b.acl
    L = []
    L.append("ACL overhead: %s rules from tests/bench/acl_rules.py (dmsctl acl lint: %s), "
             "best of %d round(s), variants interleaved" %
             (A.get("rules", b.args.acl_rules), A.get("lint", "-"), A["rounds"]))
    L.append("  -o acl=FILE: allow_other, kernel caching only where every caller has the same rights "
             "(acl_uniform); '1 rule' = 'u root / rl' (every path depends on the caller: no kernel caching)")
    if "error" in A:
        L.append("  not run: %s" % A["error"])
        return L
    enf = A.get("enforced") or {}
    L.append("  enforcement: %s" % (enf.get("detail") if enf.get("status") == "OK"
                                     else "FAIL: %s" % enf.get("error", "?")))
    w0 = 26
    f = "%-*s%-13s%-13s%-8s%-10s%-6s%-8s%-13s%-8s%-8s%s"
    L.append(f % (w0, "", "dmsfs", "dmsfs+acl", "acl/dms", "need", "", "median",
                  "+acl 1 rule", "1r/dms", "median", "plain spread"))
    titles = dict(ROWS)
    x = lambda r, v, k: ("%.2fx" % r[v][k]) if r[v].get(k) else "-"
    for r in A.get("rows", []):
        sp = r.get("plain_spread")
        L.append(f % (
            w0, titles.get(r["metric"], r["metric"]), fmt_acl(r, "dmsfs"), fmt_acl(r, "acl"),
            x(r, "acl", "ratio"), r["need"], r["status"], x(r, "acl", "median_ratio"),
            fmt_acl(r, "acl1"), x(r, "acl1", "ratio"), x(r, "acl1", "median_ratio"),
            ("%.0f%%" % (100 * sp)) if sp is not None else "-"))
    # Peak RSS and the per-pass checks, for information.
    def rss(v):
        xs = [val(run.get("peak_rss"), "MB") for run in A["runs"][v]]
        an = [val(run.get("peak_rss"), "anon_MB") for run in A["runs"][v]]
        xs = [x for x in xs if x is not None]
        an = [x for x in an if x is not None]
        return ("%.0f MB (anon %.0f)" % (max(xs), max(an))) if xs else "-"

    def oks(v, k):
        runs = A["runs"][v]
        n = sum(1 for run in runs if (run.get(k) or {}).get("status") == "OK")
        return "%d/%d OK" % (n, len(runs))
    # Where a miss comes from: the rule set, or the ACL mode as such.
    mode, rules = [], []
    for r in A.get("rows", []):
        if r["status"] != "MISS" or "ratio" not in r or not r["acl1"].get("ratio"):
            continue
        slow = lambda x: 1 / x if r["key"] == "iops" else x  # > 1: slower than plain
        # The 1-rule mount shows at least half of the slowdown: the mode.
        (mode if slow(r["acl1"]["ratio"]) - 1 >= 0.5 * (slow(r["ratio"]) - 1) else rules).append(
            r["metric"])
    if mode:
        L.append("  note: %s as slow with 1 rule as with %s: the cost is the ACL mode (kernel "
                 "timeouts 0, so every lookup/getattr goes to the daemon), not the rule count" %
                 (", ".join(mode), A.get("rules", "?")))
    if rules:
        L.append("  note: %s slower with %s rules than with 1 rule: the rule set costs" %
                 (", ".join(rules), A.get("rules", "?")))
    L.append("  daemon peak RSS (max): dmsfs %s, +acl %s, +acl 1 rule %s" %
             (rss("dmsfs"), rss("acl"), rss("acl1")))
    L.append("  data spot check: dmsfs %s, +acl %s, +acl 1 rule %s; clean daemon exit: %s, %s, %s" %
             tuple([oks(v, "data_check") for v in ("dmsfs", "acl", "acl1")] +
                   [oks(v, "daemon_exit") for v in ("dmsfs", "acl", "acl1")]))
    L.append("  (best of the rounds: min time, max IOPS; acl/dms = acl time / plain time, need "
             "<= %.2f; rand: IOPS ratio, need >= %.2f; median = the same ratio of the medians; "
             "plain spread = (max-min)/median of the plain runs)" % (ACL_TIME_MAX, ACL_IOPS_MIN))
    return L


def save_logs(run):
    """Keeps the daemons' and servers' logs of this run in build/bench/logs/."""
    dest = os.path.join(os.path.dirname(RESULTS), "logs")
    shutil.rmtree(dest, ignore_errors=True)
    if not os.path.isdir(run):
        return
    for root, dirs, files in os.walk(run):
        dirs[:] = [d for d in dirs if not d.startswith(("mnt-", "cache-", "cp-dest"))]
        for fn in files:
            if fn.endswith(".log"):
                src = os.path.join(root, fn)
                rel = os.path.relpath(src, run).replace(os.sep, "_")
                os.makedirs(dest, exist_ok=True)
                try:
                    shutil.copyfile(src, os.path.join(dest, rel))
                except OSError:
                    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="",
                    help="comma list of: %s (default all)" % ",".join(SELECTABLE))
    ap.add_argument("--quick", action="store_true", help="256 MiB file, 500 files, 16 MiB fio")
    ap.add_argument("--dmsfs-opts", default="", help="extra -o options for dmsfs")
    ap.add_argument("--keep-data", action="store_true",
                    help="keep the generated origin data for the next run")
    ap.add_argument("--work-dir", default="/var/tmp/dmsfs-bench")
    ap.add_argument("--dmsfs-bin", default=DMSFS, help="dmsfs binary (default build/dmsfs)")
    ap.add_argument("--timeout-scale", type=float, default=1.0)
    ap.add_argument("--wan-delay-ms", type=int, default=25)
    ap.add_argument("--wan-rate", default="1000mbit",
                    help="wan: capacity of the shared link (delayrelay --rate, default 1000mbit)")
    ap.add_argument("--wan-rounds", type=int, default=3,
                    help="wan: interleaved rounds of every workload (default 3)")
    ap.add_argument("--wan-base", default=os.path.join(REPO, "build", "bench", "dmsfs-base"),
                    help="wan: an earlier dmsfs build run as dmsfs-base (skipped if missing)")
    ap.add_argument("--readers", type=int, default=32,
                    help="readers32: files read at once (default 32)")
    ap.add_argument("--readers-rounds", type=int, default=1,
                    help="readers32: interleaved rounds of the peers (default 1)")
    ap.add_argument("--no-fuse-ceiling", action="store_true",
                    help="skip the libfuse passthrough_ll reference reads")
    ap.add_argument("--acl-rounds", type=int, default=5,
                    help="dmsfs-acl: rounds of plain / 1,000 rules / 1 rule (default 5)")
    ap.add_argument("--acl-rules", type=int, default=1000,
                    help="dmsfs-acl: rules in the generated file (default 1000)")
    ap.add_argument("--write-rounds", type=int, default=3,
                    help="write: interleaved rounds of local / dmsfs / rclone / curl (default 3)")
    ap.add_argument("--write-fs", default="local,fuse,dmsfs,rclone,curl",
                    help="write: which of local,fuse,dmsfs,rclone,curl to run (default all)")
    ap.add_argument("--write-baseline", default="",
                    help="write: also run this dmsfs binary (e.g. a build before a change) "
                         "interleaved, as 'base', and print dmsfs / base")
    ap.add_argument("--no-hwm", action="store_true",
                    help="write: skip the 10 GiB memory check")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any target is MISS")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.py must run as root (FUSE mounts, drop_caches, servers)")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(cleanup_all)

    b = Bench(args)
    t_start = time.time()
    rc = 0
    err = None
    try:
        b.main()
    except (Exception, KeyboardInterrupt, SystemExit) as e:
        err = "%s: %s" % (type(e).__name__, e)
        log("benchmark aborted: %s" % err)
        rc = 2
        if isinstance(e, Exception) and not isinstance(e, StepError):
            import traceback
            traceback.print_exc()
    finally:
        cleanup_all()
        save_logs(b.run)
        if os.path.isdir(b.run):
            shutil.rmtree(b.run, ignore_errors=True)
        if not args.keep_data and b.origin is not None:
            shutil.rmtree(b.origin.data, ignore_errors=True)
            try:
                os.unlink(b.origin.data + ".done")
            except OSError:
                pass

    tg = targets(b)
    text = report(b, tg)
    if b.write is not None and b.write.res["rounds"]:
        wtg = b.write.targets()
        text += "\n\n" + "\n".join(b.write.report(wtg))
        tg = tg + wtg
    print(text)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    out = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_start)),
           "duration_s": time.time() - t_start,
           "config": {"quick": args.quick, "only": b.sel, "dmsfs_opts": args.dmsfs_opts,
                      "big_size": b.origin.spec["big_size"] if b.origin else None,
                      "tree_files": b.origin.nfiles if b.origin else None,
                      "tree_bytes": b.origin.tree_bytes if b.origin else None,
                      "fio": {"rw": "randread", "bs": "64k", "ioengine": "psync", "direct": 1,
                              "io_size": b.fio_io},
                      "seq_read": "dd bs=1M", "wan_delay_ms": args.wan_delay_ms,
                      "rclone": "mount :webdav: --vfs-cache-mode full --read-only",
                      "acl_rounds": args.acl_rounds, "acl_rules": args.acl_rules,
                      "nproc": os.cpu_count()},
           "results": b.results, "ceilings": b.ceilings, "acl_overhead": b.acl,
           "wan": b.wan.res if b.wan is not None else None,
           "targets": tg, "error": err}
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=2)
    print("\nresults written to %s" % os.path.relpath(RESULTS, os.getcwd()))
    if rc == 0 and args.strict and any(t["status"] == "MISS" for t in tg):
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
