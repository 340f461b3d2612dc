"""A throw-away Globus GridFTP origin (ftp://, anonymous) for tests.

Usage:

    from gridftp_origin import GridFTP
    with GridFTP("/some/dir") as g:     # or g = GridFTP(d).start(); ...; g.stop()
        g.url      # "ftp://127.0.0.1:PORT/some/dir": the tree's root URL
        g.port
        g.log      # server log file (-d ERROR)
        g.session_pids()   # PIDs of the per-connection server processes

Facts this relies on (checked on Debian 12, globus-gridftp-server 13.x):
- The server is started as root with -aa (anonymous allowed) and runs each
  session as nobody/nogroup, so root_dir and every directory above it must
  be readable/traversable by nobody (pytest's tmp_path under
  /tmp/pytest-of-root is 0700 and is NOT; use make_root() below).
- -rp root_dir jails the session to root_dir but does not re-root paths:
  URL paths stay absolute server paths, hence url = ftp://host:port + root.
- -S detaches: the listener re-execs itself with -no-detach and writes its
  PID to the pid file; every control connection is served by a forked
  child.  stop() therefore signals the listener PID from the pid file and
  its children (found through /proc by parent PID), never by name.
- The server drops every control-command byte outside printable ASCII, so
  paths with UTF-8 bytes can be listed (MLSD data) but not addressed.

gsiftp:// (GSI): make_gsi(dir) builds a throw-away CA, a host certificate
for CN=localhost (what 127.0.0.1 resolves back to: the client checks the
server's name against it), a user certificate and an RFC 3820 proxy made by
grid-proxy-init, plus a grid-mapfile mapping the user to nobody.
GridFTP(root, gsi=make_gsi()) then runs the server without anonymous
access, and gsi.client_env() is the environment for clients
(X509_CERT_DIR, X509_USER_PROXY).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SERVER = "/usr/sbin/globus-gridftp-server"


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_root(prefix="gftp-data-"):
    """A fresh data directory that the server's nobody sessions can read
    (0755, directly under /tmp)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) comes after the ")" that ends the command name.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class GSI:
    """Paths of a throw-away GSI setup (see make_gsi)."""
    def __init__(self, d):
        self.dir = d
        self.cert_dir = os.path.join(d, "certificates")
        self.host_cert = os.path.join(d, "hostcert.pem")
        self.host_key = os.path.join(d, "hostkey.pem")
        self.proxy = os.path.join(d, "proxy.pem")
        self.gridmap = os.path.join(d, "grid-mapfile")
        self.user_dn = "/O=Grid/OU=dmsfs-test/CN=Test User"

    def server_env(self):
        return dict(os.environ, X509_CERT_DIR=self.cert_dir,
                    X509_USER_CERT=self.host_cert,
                    X509_USER_KEY=self.host_key, GRIDMAP=self.gridmap)

    def client_env(self):
        env = dict(os.environ, X509_CERT_DIR=self.cert_dir,
                   X509_USER_PROXY=self.proxy)
        for k in ("X509_USER_CERT", "X509_USER_KEY"):
            env.pop(k, None)
        return env


def make_gsi():
    """CA, host and user certificates, a user proxy and a grid-mapfile in a
    new directory under /tmp, made with openssl and grid-proxy-init.  The
    directory and the CA directory are 0755: sessions run as nobody and
    read X509_CERT_DIR to check data-channel authentication (DCAU).
    Remove g.dir when done."""
    d = make_root("gftp-gsi-")
    g = GSI(d)
    os.makedirs(g.cert_dir, mode=0o755)

    def run(*cmd, **kw):
        subprocess.run(cmd, check=True, cwd=d, capture_output=True,
                       timeout=60, **kw)

    ca_dn = "/O=Grid/OU=dmsfs-test/CN=dmsfs Test CA"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", ca_dn,
        "-addext", "basicConstraints=critical,CA:true",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    policy = ("access_id_CA\tX509\t'%s'\npos_rights\tglobus\tCA:sign\n"
              "cond_subjects\tglobus\t'\"/O=Grid/OU=dmsfs-test/*\"'\n" % ca_dn)
    for opt in ("-subject_hash", "-subject_hash_old"):
        h = subprocess.run(["openssl", "x509", "-in", os.path.join(d, "ca.pem"),
                            "-noout", opt], check=True, capture_output=True,
                           text=True).stdout.strip()
        shutil.copy(os.path.join(d, "ca.pem"),
                    os.path.join(g.cert_dir, h + ".0"))
        with open(os.path.join(g.cert_dir, h + ".signing_policy"), "w") as f:
            f.write(policy)

    def issue(name, dn, ext):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
            name + ".key", "-out", name + ".csr", "-subj", dn)
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
            "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out",
            name + ".pem", "-extfile", name + ".ext")
        os.chmod(os.path.join(d, name + ".key"), 0o600)

    issue("host", "/O=Grid/OU=dmsfs-test/CN=localhost",
          "basicConstraints=critical,CA:false\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=serverAuth,clientAuth\n"
          "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    os.rename(os.path.join(d, "host.pem"), g.host_cert)
    os.rename(os.path.join(d, "host.key"), g.host_key)
    issue("user", g.user_dn,
          "basicConstraints=critical,CA:false\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=clientAuth\n")
    run("grid-proxy-init", "-cert", "user.pem", "-key", "user.key", "-out",
        g.proxy, "-hours", "2", env=dict(os.environ, X509_CERT_DIR=g.cert_dir))
    with open(g.gridmap, "w") as f:
        f.write('"%s" nobody\n' % g.user_dn)
    return g


class GridFTP:
    def __init__(self, root_dir, extra_args=(), gsi=None):
        self.root = os.path.abspath(str(root_dir))
        self.extra_args = list(extra_args)
        self.gsi = gsi
        self.state = None
        self.port = None
        self.pid = None

    @property
    def url(self):
        scheme = "gsiftp" if self.gsi else "ftp"
        return f"{scheme}://127.0.0.1:{self.port}{self.root}"

    @property
    def log(self):
        return os.path.join(self.state, "gridftp.log")

    def start(self, timeout=10.0):
        if os.geteuid() != 0:
            raise RuntimeError("globus-gridftp-server fixture needs root")
        self.state = tempfile.mkdtemp(prefix="gftp-state-")
        pidfile = os.path.join(self.state, "pid")
        for _ in range(5):
            self.port = free_port()
            auth = [] if self.gsi else ["-aa", "-anonymous-user", "nobody",
                                        "-anonymous-group", "nogroup"]
            subprocess.run(
                [SERVER, *auth, "-p", str(self.port),
                 "-control-interface", "127.0.0.1",
                 "-data-interface", "127.0.0.1",
                 "-home-dir", self.root, "-rp", self.root,
                 "-c", "/dev/null", "-d", "ERROR", "-l", self.log,
                 "-pidfile", pidfile, "-S", *self.extra_args],
                check=True, timeout=timeout,
                env=self.gsi.server_env() if self.gsi else None)
            if self._wait_ready(pidfile, timeout):
                return self
            self._kill_all()  # lost the port race: try another
        raise RuntimeError(f"globus-gridftp-server did not start; see {self.log}")

    def _wait_ready(self, pidfile, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None and os.path.exists(pidfile):
                with open(pidfile) as f:
                    text = f.read().strip()
                if text.isdigit():
                    self.pid = int(text)
            if self.pid is not None:
                if not _alive(self.pid):
                    return False
                ok = False
                try:
                    with socket.create_connection(("127.0.0.1", self.port),
                                                  timeout=1) as s:
                        s.settimeout(2)
                        if s.recv(4).startswith(b"220"):
                            ok = True
                    if ok:
                        # That probe connection forked a session; let it
                        # go so tests can count sessions.
                        self._wait_sessions_gone(2.0)
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def _wait_sessions_gone(self, timeout):
        deadline = time.monotonic() + timeout
        while self.session_pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    def session_pids(self):
        return _children(self.pid) if self.pid else []

    def signal_all(self, sig):
        """Sends sig to the listener and every session (e.g. SIGSTOP to
        make the server go silent without closing connections)."""
        for p in [self.pid] + self.session_pids():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def _kill_all(self):
        if self.pid is None:
            return
        pids = [self.pid] + self.session_pids()
        for sig in (signal.SIGCONT, signal.SIGTERM):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in pids:
            if _alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid = None

    def kill(self):
        """Kills the server and its sessions, keeping the state dir (log)."""
        self._kill_all()

    def stop(self):
        self._kill_all()
        if self.state:
            shutil.rmtree(self.state, ignore_errors=True)
            self.state = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
