"""The GridFTP backend (transfer/gridftp.c) against a loopback
globus-gridftp-server, driven through build/tools/xfer_gftp_probe (the
backend alone, no source list or failover).  Needs root (the server runs
sessions as nobody).  XFER_GFTP_PROBE overrides the probe binary."""
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import time

import pytest

from gridftp_origin import GridFTP, make_gsi, make_root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PROBE = os.environ.get("XFER_GFTP_PROBE",
                       os.path.join(ROOT, "build", "tools", "xfer_gftp_probe"))

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (gridftp server)"),
    pytest.mark.skipif(not os.access(PROBE, os.X_OK),
                       reason=f"{PROBE} is not built (run make)"),
    pytest.mark.skipif(not os.path.exists("/usr/sbin/globus-gridftp-server"),
                       reason="globus-gridftp-server is not installed"),
]

MIB = 1 << 20
ODD_NAMES = ["with space.txt", "  two leading", "trailing ", "ünïcödé.dat",
             "日本語 ファイル", "semi;colon x=y.txt", "pct%41.bin", "a+b&c#d"]
UTF8_COLLIDE = "café.txt"  # the server strips é from commands ...
STRIPPED = "caf.txt"       # ... and would answer for this file instead


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture(scope="module")
def origin():
    root = make_root()
    try:
        for n in ODD_NAMES:
            _write(os.path.join(root, n), n.encode())
        _write(os.path.join(root, UTF8_COLLIDE), b"right")
        _write(os.path.join(root, STRIPPED), b"the wrong file")
        _write(os.path.join(root, "empty"), b"")
        _write(os.path.join(root, "one"), b"\x5a")
        _write(os.path.join(root, "mib7"), os.urandom(MIB + 7))
        with open(os.path.join(root, "big64"), "wb") as f:
            for _ in range(64):
                f.write(os.urandom(MIB))
        os.makedirs(os.path.join(root, "dir with space", "sub"))
        _write(os.path.join(root, "dir with space", "inner"), b"inner")
        for dirpath, dirs, files in os.walk(root):
            os.chmod(dirpath, 0o755)
            for n in files:
                os.chmod(os.path.join(dirpath, n), 0o644)
        with GridFTP(root) as g:
            yield g
    finally:
        shutil.rmtree(root, ignore_errors=True)


def probe(g, *args, opts=(), url=None, timeout=120, check=None, env=None):
    r = subprocess.run([PROBE, *opts, url or g.url, *args],
                       capture_output=True, timeout=timeout, env=env)
    if check is not None:
        assert r.returncode == check, r.stderr.decode(errors="replace")
    return r


def parse_listing(out):
    entries = {}
    for line in out.decode().splitlines():
        mode, size, mtime, name = line.split(" ", 3)
        entries[name] = (int(mode, 8), int(size), int(mtime))
    return entries


def test_fixture_url_is_absolute_server_path(origin):
    # -rp jails the session to root but URL paths stay absolute.
    assert origin.url.endswith(origin.root)
    r = probe(origin, "stat", "/", check=0)
    assert r.stdout.startswith(b"040755 0 ")


def test_list_odd_names(origin):
    r = probe(origin, "list", "/", check=0)
    got = parse_listing(r.stdout)
    want = sorted(os.listdir(origin.root))
    assert sorted(got) == want
    for name, (mode, size, mtime) in got.items():
        st = os.stat(os.path.join(origin.root, name))
        assert mode == st.st_mode, name
        assert size == (0 if os.path.isdir(os.path.join(origin.root, name))
                        else st.st_size), name
        assert mtime == int(st.st_mtime), name
    assert r.stderr == b""


def test_list_subdir_with_space(origin):
    r = probe(origin, "list", "/dir with space", check=0)
    got = parse_listing(r.stdout)
    assert sorted(got) == ["inner", "sub"]
    assert got["sub"][0] == 0o40755 and got["inner"][1] == 5


def test_stat_odd_ascii_names(origin):
    for n in ["with space.txt", "  two leading", "semi;colon x=y.txt",
              "pct%41.bin", "a+b&c#d"]:
        r = probe(origin, "stat", "/" + n, check=0)
        mode, size, mtime, name = r.stdout.decode().rstrip("\n").split(" ", 3)
        assert int(size) == len(n.encode()) and int(mode, 8) == 0o100644, n
        r = probe(origin, "read", "/" + n, "0", str(len(n.encode())), check=0)
        assert r.stdout == n.encode()


def test_utf8_path_never_reads_the_wrong_file(origin):
    # This server cannot address non-ASCII paths; the backend must notice
    # that it answered for "caf.txt" and not hand out its bytes.
    r = probe(origin, "stat", "/" + UTF8_COLLIDE, check=errno.ENOENT)
    assert b"does not pass non-ASCII" in r.stderr
    r = probe(origin, "read", "/" + UTF8_COLLIDE, "0", "5", opts=["-n", "1"])
    assert r.returncode != 0 and b"the wrong" not in r.stdout


@pytest.mark.parametrize("streams", ["1", "4"])
def test_reads_byte_exact(origin, streams):
    cases = {"one": [(0, 1), (0, 0)],
             "mib7": [(0, MIB + 7), (1, 1), (MIB + 6, 1), (12345, 777777),
                      (MIB - 3, 10), (262143, 262146), (7, MIB)]}
    for name, ranges in cases.items():
        with open(os.path.join(origin.root, name), "rb") as f:
            data = f.read()
        for off, ln in ranges:
            r = probe(origin, "read", "/" + name, str(off), str(ln),
                      opts=["-s", streams], check=0)
            assert r.stdout == data[off:off + ln], (name, off, ln)


def test_read_empty_file(origin):
    r = probe(origin, "read", "/empty", "0", "0", check=0)
    assert r.stdout == b""
    r = probe(origin, "stat", "/empty", check=0)
    assert r.stdout.split()[:2] == [b"100644", b"0"]


def test_read_beyond_expected_size_is_refused(origin):
    probe(origin, "read", "/one", "0", "2", check=errno.EINVAL)


@pytest.mark.parametrize("streams", ["1", "2", "4"])
def test_read_64mib_in_4mib_chunks(origin, streams, tmp_path):
    out = tmp_path / "copy"
    with open(out, "wb") as f:
        r = subprocess.run([PROBE, "-s", streams, origin.url, "readall",
                            "/big64", str(4 * MIB), "4"],
                           stdout=f, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(origin.root, "big64"), "rb") as a, \
            open(out, "rb") as b:
        assert hashlib.sha256(a.read()).digest() == \
            hashlib.sha256(b.read()).digest()


def test_missing_paths(origin):
    probe(origin, "stat", "/nope", check=errno.ENOENT)
    probe(origin, "list", "/nope", check=errno.ENOENT)
    probe(origin, "stat", "/dir with space/nope", check=errno.ENOENT)


def test_read_missing_file_is_enoent(origin):
    # read needs a size: the probe stats first, so remove the file between
    # a stat in one run and the read in the next through a tiny copy.
    p = os.path.join(origin.root, "vanishing")
    _write(p, b"12345")
    os.chmod(p, 0o644)
    r = probe(origin, "read", "/vanishing", "0", "5", check=0)
    assert r.stdout == b"12345"
    os.unlink(p)
    probe(origin, "read", "/vanishing", "0", "5", check=errno.ENOENT)


def test_list_of_a_file_is_enotdir(origin):
    probe(origin, "list", "/one", check=errno.ENOTDIR)


def test_listing_cap(origin):
    probe(origin, "list", "/", opts=["-L", "300"], check=errno.EFBIG)


def test_connection_reused(origin):
    # 1 stat + 6 reads, one after the other: one cached control connection.
    p = subprocess.Popen([PROBE, "-n", "6", "-p", "300", origin.url, "read",
                          "/mib7", "5", "100"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        time.sleep(1.2)
        assert len(origin.session_pids()) == 1
    finally:
        assert p.wait(timeout=30) == 0, p.stderr.read()


def _start_and_break(g, action, opts):
    """Runs two reads with a pause between; during the pause the server is
    broken by action(g).  Returns (exit code, seconds the 2nd read took,
    the probe's stderr)."""
    p = subprocess.Popen([PROBE, *opts, "-n", "2", "-p", "1000", g.url,
                          "read", "/mib7", "0", str(MIB)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = p.stderr.readline()
    assert b"probe: pause" in line, line
    action(g)
    t0 = time.monotonic()
    rc = p.wait(timeout=120)
    took = time.monotonic() - t0 - 1.0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    return rc, took, err


def test_server_killed_bounded(tmp_path):
    root = make_root()
    try:
        _write(os.path.join(root, "mib7"), os.urandom(MIB + 7))
        os.chmod(os.path.join(root, "mib7"), 0o644)
        with GridFTP(root) as g:
            rc, took, err = _start_and_break(g, GridFTP.kill,
                                        ["-c", "2000", "-t", "3", "-r", "2"])
            assert rc == errno.EHOSTDOWN, err
            assert took < 10
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_server_silent_bounded(tmp_path):
    # SIGSTOP: connections stay open but nothing answers; only the
    # backend's own deadline can end the wait.
    root = make_root()
    try:
        _write(os.path.join(root, "mib7"), os.urandom(MIB + 7))
        os.chmod(os.path.join(root, "mib7"), 0o644)
        with GridFTP(root) as g:
            rc, took, err = _start_and_break(
                g, lambda s: s.signal_all(signal.SIGSTOP),
                ["-c", "1000", "-t", "2", "-r", "1"])
            assert rc == errno.EHOSTDOWN, err
            # 2 attempts x (1 s connect + 2 s stall) + back-off, plus abort
            assert took < 15
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("grid-proxy-init"),
                    reason="grid-proxy-init (globus-proxy-utils) missing")
def test_gsiftp_with_user_proxy(tmp_path):
    root = make_root()
    gsi = None
    try:
        data = os.urandom(3 * MIB + 5)
        _write(os.path.join(root, "f.bin"), data)
        os.chmod(os.path.join(root, "f.bin"), 0o644)
        gsi = make_gsi()
        with GridFTP(root, gsi=gsi) as g:
            assert g.url.startswith("gsiftp://")
            env = gsi.client_env()
            r = probe(g, "list", "/", env=env, check=0)
            assert parse_listing(r.stdout)["f.bin"][1] == len(data)
            r = probe(g, "read", "/f.bin", "4097", str(2 * MIB + 3),
                      env=env, check=0)
            assert r.stdout == data[4097:4097 + 2 * MIB + 3]
            probe(g, "stat", "/nope", env=env, check=errno.ENOENT)
            # No proxy: refused at once, not retried into EHOSTDOWN.
            env_none = dict(env, X509_USER_PROXY=str(tmp_path / "none"))
            probe(g, "stat", "/f.bin", env=env_none, check=errno.EACCES)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if gsi is not None:
            shutil.rmtree(gsi.dir, ignore_errors=True)
