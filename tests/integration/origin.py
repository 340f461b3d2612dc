"""A throw-away nginx WebDAV origin for tests.

Usage:

    from origin import Nginx
    with Nginx("/some/dir") as ng:          # or ng = Nginx(d).start(); ...; ng.stop()
        ng.url          # "http://127.0.0.1:PORT" (serves /some/dir at "/")
        ng.port         # the port
        ng.access_log   # path of the access log, one line per request:
                        #   METHOD "URI" STATUS BYTES range="..." depth="..." conn=N
                        # (conn: nginx's connection serial, shows keep-alive reuse)
        ng.error_log    # path of the error log
        ng.requests()   # access log lines so far (list of str)

Also Squid() (see below): a forward proxy on a free loopback port, no cache.

Serves the directory read-only for data (GET/HEAD with Range) and with
WebDAV PROPFIND/OPTIONS (ngx_http_dav_ext_module); PUT/DELETE/MKCOL/COPY/MOVE
are enabled too (dav_methods) for tests that modify the tree through HTTP.
nginx runs as root ("user root;"), in the foreground of its own process
group, with all its state (conf, pid file, temp dirs, logs) in a private
temporary directory.  The free port is found by binding port 0 on 127.0.0.1
(there is a tiny race between closing that socket and nginx binding it; on
a bind failure start() retries with a new port).  stop() kills only the PID
read from nginx's own pid file / the Popen it started, never by name.
"""
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

NGINX = "/usr/sbin/nginx"
DAV_EXT = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"

_CONF = """\
load_module {dav_ext};
user root;
daemon off;
master_process on;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 1024; }}
http {{
    log_format combined_range '$request_method "$request_uri" $status '
                              '$body_bytes_sent range="$http_range" '
                              'depth="$http_depth" conn=$connection';
    access_log {access_log} combined_range;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/octet-stream bin; text/plain txt; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path {full_put_path};
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
            autoindex on;
        }}
        {extra}
    }}
}}
"""


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A port on 127.0.0.1 nobody listens on (connections are refused)."""
    return free_port()


def wait_listening(proc, port, timeout):
    """True once something accepts on 127.0.0.1:port, False if proc exits
    or timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Nginx:
    def __init__(self, root_dir, extra_server_conf="", full_put_path=True):
        """extra_server_conf: nginx directives added inside server {}.
        full_put_path=False: a PUT into a missing folder is refused (409)
        instead of creating the folders (nginx create_full_put_path)."""
        self.root = os.path.abspath(root_dir)
        self.full_put_path = full_put_path
        self.extra = extra_server_conf
        self.port = None
        self.url = None
        self.dir = None
        self.access_log = None
        self.error_log = None
        self.proc = None

    # -- life cycle -------------------------------------------------------
    def start(self, timeout=10.0):
        self.dir = tempfile.mkdtemp(prefix="dmsfs-nginx-")
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        pidfile = os.path.join(self.dir, "nginx.pid")
        conf = os.path.join(self.dir, "nginx.conf")
        last_err = ""
        for _ in range(5):
            self.port = free_port()
            with open(conf, "w") as f:
                f.write(_CONF.format(dav_ext=DAV_EXT, pid=pidfile,
                                     error_log=self.error_log,
                                     access_log=self.access_log,
                                     tmp=os.path.join(self.dir, "tmp"),
                                     port=self.port, root=self.root,
                                     full_put_path="on" if self.full_put_path
                                     else "off",
                                     extra=self.extra))
            self.proc = subprocess.Popen(
                [NGINX, "-p", self.dir, "-c", conf, "-e", self.error_log],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
            if wait_listening(self.proc, self.port, timeout):
                self.url = "http://127.0.0.1:%d" % self.port
                return self
            last_err = self._reap()
        raise RuntimeError("nginx did not start: %s" % last_err)

    def _reap(self):
        err = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                _, err = self.proc.communicate(timeout=5)
                err = err.decode(errors="replace")
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        return err

    def stop(self):
        """Stops nginx (master and workers) and removes its state dir.
        Logs are copied nowhere: read them before stop()."""
        if self.proc is not None:
            pid = self._pid_from_file() or self.proc.pid
            # The master was started by us; QUIT makes it stop its workers.
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Our own session: the master and its workers only.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _pid_from_file(self):
        try:
            with open(os.path.join(self.dir, "nginx.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        # Only trust it if it is the process we started.
        return pid if pid == self.proc.pid else None

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- helpers ----------------------------------------------------------
    _SYNC = "/.dmsfs-log-sync"

    def _read_log(self):
        try:
            with open(self.access_log, errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def requests(self):
        """Access log lines of every request answered so far.  nginx logs a
        request just after sending its reply, so a client can see the reply
        before the line: one more request, waited for in the log, makes
        sure the earlier lines are written.  Its lines are left out."""
        if self.proc is not None and self.proc.poll() is None:
            seen = sum(self._SYNC in l for l in self._read_log())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                  timeout=5)
                conn.request("HEAD", self._SYNC)
                conn.getresponse().read()
                conn.close()
                deadline = time.monotonic() + 5
                while (sum(self._SYNC in l for l in self._read_log()) <= seen
                       and time.monotonic() < deadline):
                    time.sleep(0.01)
            except OSError:
                pass
        return [l for l in self._read_log() if self._SYNC not in l]

    def get(self, path, headers=None):
        """Plain HTTP GET through urllib (no proxy): (status, body)."""
        req = urllib.request.Request(self.url + path, headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


_SQUID_CONF = """\
http_port 127.0.0.1:{port}
pid_filename {dir}/squid.pid
access_log stdio:{dir}/access.log
cache_log {dir}/cache.log
cache_store_log none
cache deny all
http_access allow localhost
http_access deny all
coredump_dir {dir}
netdb_filename none
shutdown_lifetime 1 seconds
"""


class Squid:
    """A forward HTTP proxy (squid -N, no caching) for tests.

        with Squid() as sq:
            sq.url          # "http://127.0.0.1:PORT", for xfer_opts.proxy
            sq.access_log   # squid's native access log (one line per request)
            sq.requests()

    squid drops privileges to its "proxy" user, so its private state dir
    is made world-writable.  stop() kills only the process it started.
    """
    SQUID = "/usr/sbin/squid"

    def __init__(self):
        self.port = self.url = self.dir = self.access_log = None
        self.proc = None

    def start(self, timeout=20.0):
        self.dir = tempfile.mkdtemp(prefix="dmsfs-squid-")
        os.chmod(self.dir, 0o777)
        self.access_log = os.path.join(self.dir, "access.log")
        conf = os.path.join(self.dir, "squid.conf")
        self.port = free_port()
        with open(conf, "w") as f:
            f.write(_SQUID_CONF.format(port=self.port, dir=self.dir))
        self.proc = subprocess.Popen(
            [self.SQUID, "-N", "-f", conf], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        if wait_listening(self.proc, self.port, timeout):
            self.url = "http://127.0.0.1:%d" % self.port
            return self
        log = ""
        try:
            with open(os.path.join(self.dir, "cache.log"), errors="replace") as f:
                log = f.read()[-2000:]
        except OSError:
            pass
        self.stop()
        raise RuntimeError("squid did not start: %s" % log)

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def requests(self):
        try:
            with open(self.access_log, errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
