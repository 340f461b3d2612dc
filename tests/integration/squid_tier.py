"""A caching Squid for the proxy-tier tests (origin.Squid is "no cache").

Usage:

    from squid_tier import CachingSquid
    with CachingSquid() as sq:       # or sq = CachingSquid().start(); sq.stop()
        sq.url          # "http://127.0.0.1:PORT", for -o proxy=
        sq.port
        sq.access_log   # squid's native access log, one line per request
        sq.requests()   # its lines so far
        sq.entries()    # (result code e.g. "TCP_MISS/206", method, URL) each

Ranges: range_offset_limit -1.  Squid never stores a 206 (partial) reply,
so "caching ranges as they are" is not something Squid can do: every range
request would go to the origin.  With range_offset_limit -1 a range request
for an object not yet cached makes Squid fetch the WHOLE object from the
origin (a GET without Range), store it, and answer the range from it; every
later range of that object, from any client, is a hit.  So through one
Squid an object is fetched from the origin once, whole, whatever ranges the
clients ask for.  The cost: the first range of a large file waits for the
object to arrive up to that offset, and the whole object is transferred
even if a client reads only a few blocks of it.  quick_abort_min -1 keeps
that fetch running when the client that caused it goes away, and
collapsed_forwarding joins concurrent misses for the same URL (a dmsfs mount
sends several range requests at once) onto that one fetch.

Everything (config, ufs cache_dir, logs, pid file) lives in a private temp
dir under /tmp.  The cache is created with "squid -N -z" first, then squid
runs in the foreground (squid -N -f CONF) in its own session on a free
loopback port; only 127.0.0.1 may use it.  Squid drops privileges to its
"proxy" user, so the state dir is handed to that user.  stop() signals only
the PID it started (checked against squid's pid file), never by name.
"""
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

from origin import free_port, wait_listening

SQUID = "/usr/sbin/squid"

_CONF = """\
http_port 127.0.0.1:{port}
pid_filename {dir}/squid.pid
access_log stdio:{dir}/access.log
cache_log {dir}/cache.log
cache_store_log none
coredump_dir {dir}
netdb_filename none
shutdown_lifetime 1 seconds
pinger_enable off
# Squid 5 predefines "localhost" (127.0.0.1/32 and ::1); this is the same
# loopback-only rule under a name of our own.
acl loopback src 127.0.0.1
http_access allow loopback
http_access deny all
# The cache.
cache_dir ufs {dir}/cache {cache_mb} 16 256
cache_mem {mem_mb} MB
maximum_object_size {max_object_mb} MB
maximum_object_size_in_memory 4 MB
# Ranges: fetch and cache whole objects, serve ranges from the cache.
range_offset_limit -1
quick_abort_min -1 KB
collapsed_forwarding on
# Origin replies carry Last-Modified but no Cache-Control: keep them fresh
# for the whole test.
refresh_pattern . 60 100% 1440
"""

_LOG = re.compile(r"^\S+\s+\d+\s+\S+\s+(\S+)\s+\d+\s+(\S+)\s+(\S+)")


class CachingSquid:
    def __init__(self, cache_mb=512, mem_mb=64, max_object_mb=1024):
        self.cache_mb = cache_mb
        self.mem_mb = mem_mb
        self.max_object_mb = max_object_mb
        self.port = self.url = self.dir = self.access_log = None
        self.proc = None

    # -- life cycle -------------------------------------------------------
    def _write_conf(self):
        conf = os.path.join(self.dir, "squid.conf")
        with open(conf, "w") as f:
            f.write(_CONF.format(port=self.port, dir=self.dir,
                                 cache_mb=self.cache_mb, mem_mb=self.mem_mb,
                                 max_object_mb=self.max_object_mb))
        return conf

    def _give_to_proxy_user(self):
        try:
            pw = pwd.getpwnam("proxy")
        except KeyError:
            os.chmod(self.dir, 0o777)
            return
        for dirpath, dirnames, filenames in os.walk(self.dir):
            os.chown(dirpath, pw.pw_uid, pw.pw_gid)
            for n in filenames:
                os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)

    def start(self, timeout=30.0):
        self.dir = tempfile.mkdtemp(prefix="dmsfs-squidtier-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        os.makedirs(os.path.join(self.dir, "cache"))
        self.access_log = os.path.join(self.dir, "access.log")
        last = ""
        for _ in range(3):
            self.port = free_port()
            conf = self._write_conf()
            self._give_to_proxy_user()
            z = subprocess.run([SQUID, "-N", "-z", "-f", conf],
                               stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=60)
            if z.returncode != 0:
                last = "squid -z failed: " + \
                    (z.stderr.decode(errors="replace") or self.cache_log())
                continue
            self.proc = subprocess.Popen(
                [SQUID, "-N", "-f", conf], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            if wait_listening(self.proc, self.port, timeout):
                self.url = "http://127.0.0.1:%d" % self.port
                return self
            last = self.cache_log()[-2000:]
            self._kill()
        self.stop()
        raise RuntimeError("squid did not start: %s" % last)

    def pid(self):
        """The PID of the squid we started (None once stopped)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            with open(os.path.join(self.dir, "squid.pid")) as f:
                filed = int(f.read().strip())
        except (OSError, ValueError):
            filed = None
        # squid -N writes its own PID; trust only the process we started.
        return self.proc.pid if filed in (None, self.proc.pid) else None

    def _kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # Its own session: squid and any helper it forked.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def stop(self):
        """Stops squid (by the PID we started) and removes its state dir.
        Read the logs before stop()."""
        self._kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- logs -------------------------------------------------------------
    def cache_log(self):
        try:
            with open(os.path.join(self.dir, "cache.log"),
                      errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def requests(self):
        try:
            with open(self.access_log, errors="replace") as f:
                return f.read().splitlines()
        except (OSError, TypeError):
            return []

    def entries(self):
        """(result code such as "TCP_HIT/206", method, URL) per request."""
        out = []
        for line in self.requests():
            m = _LOG.match(line)
            if m:
                out.append(m.groups())
        return out
