"""Starting, checking and stopping dmsfs mounts from the tests.

Mount(...).start() runs build/dmsfs in the foreground (-f, stderr to a log
file) or in daemon mode, and waits until the mountpoint is mounted.
umount() unmounts with fusermount3 -u, waits for the daemon to exit and
checks that it exited 0 and logged no unexpected error lines.  cleanup()
is the finalizer path: lazy unmount and kill by PID, never by name.
"""
import os
import re
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DMSFS = os.environ.get("DMSFS_BIN") or os.path.join(ROOT, "build", "dmsfs")

# Lines that count as errors in the daemon's stderr.
ERROR_LINE = re.compile(r"(?i)\berror:|AddressSanitizer|runtime error|"
                        r"LeakSanitizer|Segmentation fault")


def is_mounted(path):
    """True if path is a mountpoint in /proc/self/mounts.  Does not stat the
    mountpoint, so it cannot hang on a dead FUSE daemon."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and _unescape(fields[1]) == path:
                return True
    return False


def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_options(path):
    """The option list of the mount at path, from /proc/self/mounts."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and _unescape(fields[1]) == path:
                return fields[3].split(",")
    return None


def format_options(opts):
    return ",".join(k if v is True else f"{k}={v}" for k, v in opts.items()
                    if v is not None and v is not False)


def find_daemon_pids(mountpoint):
    """PIDs of dmsfs processes whose command line names this mountpoint."""
    mnt = os.path.realpath(mountpoint)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"dmsfs" and \
                os.fsencode(mnt) in [os.path.realpath(a) for a in argv[1:]
                                     if a]:
            pids.append(int(d))
    return pids


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def run_fusermount(mountpoint, lazy=False):
    args = ["fusermount3", "-uz" if lazy else "-u", mountpoint]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


class Mount:
    """One dmsfs mount.  options: dict of -o options (value True for a bare
    flag); cache_dir and meta_ttl are ordinary options.  expected_errors:
    regexes for error lines this test provokes on purpose."""

    def __init__(self, url, mountpoint, log_path, options=None,
                 foreground=True, expected_errors=(), extra_args=(),
                 binary=DMSFS):
        self.url = url
        self.mountpoint = str(mountpoint)
        self.log_path = str(log_path)
        self.options = dict(options or {})
        self.foreground = foreground
        self.expected_errors = [re.compile(e) for e in expected_errors]
        self.extra_args = list(extra_args)
        self.binary = binary
        self.proc = None
        self.pid = None
        self.exit_status = None
        self._log = None

    @property
    def cache_dir(self):
        return self.options.get("cache_dir")

    def argv(self):
        args = [self.binary]
        if self.foreground:
            args.append("-f")
        if os.environ.get("DMSFS_TEST_DEBUG"):
            args.append("-d")
        args += self.extra_args
        opts = format_options(self.options)
        if opts:
            args += ["-o", opts]
        return args + [self.url, self.mountpoint]

    def path(self, *rel):
        return os.path.join(self.mountpoint, *rel)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _log_tail(self, n=40):
        lines = self.log().splitlines()
        return "\n".join(lines[-n:]) or "(empty)"

    def start(self, timeout=30):
        assert os.path.isfile(self.binary), f"{self.binary} not built"
        assert not is_mounted(self.mountpoint), \
            f"{self.mountpoint} is already mounted"
        self._log = open(self.log_path, "ab")
        if self.foreground:
            self._start_foreground(timeout)
        else:
            self._start_daemon(timeout)
        return self

    def _start_foreground(self, timeout):
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mountpoint):
            rc = self.proc.poll()
            if rc is not None:
                self.exit_status = rc
                raise AssertionError(
                    f"dmsfs exited with {rc} before mounting "
                    f"{' '.join(self.argv())}\nlog:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.mountpoint} not mounted after {timeout}s\n"
                    f"log:\n{self._log_tail()}")
            time.sleep(0.05)

    def _start_daemon(self, timeout):
        # Output to a file, not a pipe: a daemon that kept the pipe open
        # would make us wait for its exit rather than for the command's.
        start = self._log.tell()
        r = subprocess.run(self.argv(), stdin=subprocess.DEVNULL,
                           stdout=self._log, stderr=self._log,
                           timeout=timeout + 30)
        self._log.flush()
        r.stderr = self.log().encode()[start:]
        pids = find_daemon_pids(self.mountpoint)
        self.pid = pids[0] if len(pids) == 1 else None
        assert r.returncode == 0, (
            f"dmsfs (daemon mode) exited {r.returncode}\n"
            f"stderr:\n{r.stderr.decode(errors='replace')}")
        assert is_mounted(self.mountpoint), (
            "dmsfs (daemon mode) returned 0 but the mount is not there "
            f"(contract: return once the mount is usable)\n{self._log_tail()}")
        assert len(pids) == 1, \
            f"expected one dmsfs daemon for {self.mountpoint}, found {pids}"

    def unexpected_errors(self):
        bad = []
        for line in self.log().splitlines():
            if ERROR_LINE.search(line) and \
                    not any(e.search(line) for e in self.expected_errors):
                bad.append(line)
        return bad

    def umount(self, timeout=30):
        """Clean unmount: fusermount3 -u (retried while busy), then the daemon
        must exit 0 with no unexpected error lines in its log."""
        deadline = time.monotonic() + timeout
        while True:
            r = run_fusermount(self.mountpoint)
            if r.returncode == 0 or not is_mounted(self.mountpoint):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"fusermount3 -u {self.mountpoint} "
                                     f"failed: {r.stderr.strip()}")
            time.sleep(0.2)
        self._wait_exit(max(5.0, deadline - time.monotonic()))
        bad = self.unexpected_errors()
        assert not bad, ("unexpected error lines in the dmsfs log:\n" +
                         "\n".join(bad[:20]))

    def _wait_exit(self, timeout):
        if self.proc is not None:
            try:
                self.exit_status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"dmsfs (pid {self.pid}) still running {timeout:.0f}s "
                    f"after unmount\nlog:\n{self._log_tail()}") from None
            self.proc = None
            self._close_log()
            assert self.exit_status == 0, (
                f"dmsfs exited {self.exit_status} after unmount\n"
                f"log:\n{self._log_tail()}")
        elif self.pid is not None:
            # Daemon mode: not our child, so only its disappearance is seen.
            end = time.monotonic() + timeout
            while pid_alive(self.pid):
                if time.monotonic() > end:
                    raise AssertionError(f"dmsfs daemon (pid {self.pid}) "
                                         "still running after unmount")
                time.sleep(0.05)
            self.pid = None
            self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self):
        """Finalizer: force the mount away and the daemon dead, no checks."""
        if is_mounted(self.mountpoint):
            if run_fusermount(self.mountpoint).returncode != 0:
                run_fusermount(self.mountpoint, lazy=True)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        elif self.pid is not None:
            end = time.monotonic() + 10
            while pid_alive(self.pid) and time.monotonic() < end:
                time.sleep(0.1)
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        self._close_log()

    @property
    def running(self):
        return is_mounted(self.mountpoint)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            try:
                self.umount()
            finally:
                self.cleanup()
        else:
            self.cleanup()


def run_dmsfs(args, timeout=60):
    """Runs build/dmsfs with args (daemon mode unless -f is in args) and
    returns a CompletedProcess with text stdout/stderr.  Output goes through
    files, so only the command's own exit is waited for."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([DMSFS] + list(args), stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=timeout)
        out.seek(0)
        err.seek(0)
        p.stdout = out.read().decode(errors="replace")
        p.stderr = err.read().decode(errors="replace")
    return p


_READER = r"""
import hashlib, json, os, sys
path, off, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h, n = hashlib.sha256(), 0
try:
    fd = os.open(path, os.O_RDONLY)
    try:
        if length < 0:
            while True:
                b = os.read(fd, 1 << 17)
                if not b:
                    break
                h.update(b)
                n += len(b)
        else:
            b = os.pread(fd, length, off)
            h.update(b)
            n = len(b)
    finally:
        os.close(fd)
    print(json.dumps({"errno": 0, "sha256": h.hexdigest(), "size": n}))
except OSError as e:
    print(json.dumps({"errno": e.errno}))
"""


def read_in_child(path, offset=0, length=-1, timeout=60):
    """Reads a file (whole, or length bytes at offset) in a child process so
    that a hanging read cannot hang the test.  Returns a dict with errno
    (0 on success), sha256 and size of what was read, and elapsed seconds.
    Fails the test if the read does not finish within timeout."""
    import json
    start = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/python3", "-c", _READER, str(path),
                             str(offset), str(length)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        raise AssertionError(f"reading {path} hung for more than {timeout}s")
    assert proc.returncode == 0, f"reader failed: {err}"
    res = json.loads(out)
    res["elapsed"] = time.monotonic() - start
    return res
