"""Metrics (issue 10): dmsctl stats as text, --json and --prometheus, and
the metrics_file a mount writes for node_exporter's textfile collector.
Cache hits and misses by blocks and bytes follow a cold then warm read; a
dead mirror shows as a failover and a "refused" error of that source; an
access rule's refusal is counted; the Prometheus text is read back with
Debian's python3-prometheus-client parser.

Real nginx origins and real FUSE mounts; the dead mirror is a loopback port
where nothing listens.  Needs root and /dev/fuse."""
import json
import os
import re
import shutil
import subprocess

import pytest

import gridftp_origin
import mount as mountlib
from fakeorigin import FakeFile, FakeOrigin
from gftp_tree import public_tree
from mount import find_daemon_pids, is_mounted, run_dmsfs, run_fusermount
from origin import Nginx, closed_port
from origintree import read_all
from test_dmsctl_status import DOWN_ERRORS, wait_for
from writetree import DMSCTL

prom_parser = pytest.importorskip(
    "prometheus_client.parser",
    reason="python3-prometheus-client is missing (packaging/install-deps.sh)")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="/dev/fuse is missing"),
    pytest.mark.skipif(not os.access(DMSCTL, os.X_OK),
                       reason="build/dmsctl is not built"),
]



HIST = "dmsfs_request_duration_seconds"


def stats(*args):
    r = subprocess.run([DMSCTL, "stats", *map(str, args)],
                       capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, cwd="/")
    return r


def stats_json(mnt):
    """{family name: [(sample name, labels, value)]} of one mount."""
    r = stats("--json", mnt)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [m["mount"] for m in doc["mounts"]] == [str(mnt)], doc
    out = {}
    for fam in doc["mounts"][0]["families"]:
        assert fam["type"] in ("counter", "gauge", "histogram"), fam
        assert fam["help"], fam
        out[fam["name"]] = [(s["name"], s["labels"], s["value"])
                            for s in fam["samples"]]
    return out


def one(fams, name, family=None, **labels):
    """The value of the one sample called name (of family, default name)
    whose labels include labels."""
    got = [v for n, lab, v in fams[family or name]
           if n == name and all(lab.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, (name, labels, fams[family or name])
    return got[0]


def parse_prom(text):
    """{family: [samples]} via the real parser; a family seen twice (HELP
    and TYPE repeated, or its samples split) fails."""
    fams = {}
    for f in prom_parser.text_string_to_metric_families(text):
        assert f.name not in fams, f"family {f.name} appears twice"
        fams[f.name] = f
    return fams


def test_cold_then_warm_read_moves_misses_then_hits(tree, nginx, mounter):
    m = mounter(nginx.url + "/", cache_size="64M")
    f0 = stats_json(m.mountpoint)
    assert one(f0, "dmsfs_cache_hits_total") == 0
    assert one(f0, "dmsfs_cache_misses_total") == 0
    assert one(f0, "dmsfs_cache_capacity_bytes") == 64 << 20
    size = len(read_all(m.path("big.bin")))
    blocks = -(-size // tree.block_size)
    # A dot name not in the listing is asked of the origin (see README):
    # its 404 is an answer, counted apart from the failures (not as
    # http_4xx).
    assert not os.path.exists(m.path(".no_such_file"))
    # The blocks reach LMDB after the readers have them.
    cold = wait_for(lambda: (lambda f: f if one(
        f, "dmsfs_cache_size_bytes") >= size else None)(
        stats_json(m.mountpoint)), "the cache to store big.bin")
    assert one(cold, "dmsfs_cache_misses_total") == blocks
    assert one(cold, "dmsfs_cache_miss_bytes_total") == size
    assert one(cold, "dmsfs_cache_hits_total") == 0
    assert one(cold, "dmsfs_cache_hit_bytes_total") == 0
    assert one(cold, "dmsfs_fetched_bytes_total", source=nginx.url,
               protocol="http") == size
    assert one(cold, "dmsfs_cache_evictions_total") == 0
    assert one(cold, "dmsfs_access_denials_total") == 0
    # Every call to the source is in the histogram, buckets cumulative.
    buckets = [(float(lab["le"]), v) for n, lab, v in
               cold["dmsfs_request_duration_seconds"]
               if n.endswith("_bucket")]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == float("inf")
    assert buckets[0][0] == 0.001 and (10.0, counts[-2]) in buckets
    n = one(cold, "dmsfs_request_duration_seconds_count", HIST,
            source=nginx.url)
    assert n == counts[-1] == one(cold, "dmsfs_source_requests_total",
                                  source=nginx.url) >= 1
    assert one(cold, "dmsfs_request_duration_seconds_sum", HIST,
               source=nginx.url) > 0
    # No failures of any kind from a good origin.
    errs = {lab["kind"]: v for _, lab, v in cold["dmsfs_source_errors_total"]}
    assert errs.pop("not_found") >= 1, errs
    assert all(v == 0 for v in errs.values()), errs
    # No writable export: no pending families.
    assert "dmsfs_pending_uploads" not in cold
    m.umount()
    # Warm: the same cache, every block a hit, nothing fetched.
    m2 = mounter(nginx.url + "/", cache_size="64M", cache_dir=m.cache_dir)
    assert read_all(m2.path("big.bin")) == tree.data("big.bin")
    warm = stats_json(m2.mountpoint)
    assert one(warm, "dmsfs_cache_hits_total") == blocks
    assert one(warm, "dmsfs_cache_hit_bytes_total") == size
    assert one(warm, "dmsfs_cache_misses_total") == 0
    assert one(warm, "dmsfs_cache_miss_bytes_total") == 0
    assert one(warm, "dmsfs_fetched_bytes_total", source=nginx.url) == 0
    assert one(warm, "dmsfs_cache_size_bytes") >= size
    # The text form says the same, bytes made readable.
    r = stats(m2.mountpoint)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(m2.mountpoint)
    assert f"  dmsfs_cache_hits_total {blocks}" in lines, r.stdout
    assert any(ln.startswith(f"  dmsfs_cache_hit_bytes_total {size} (")
               for ln in lines), r.stdout


def test_dead_mirror_counts_a_failover_and_a_refused_error(tree, nginx,
                                                           mounter):
    dead = f"http://127.0.0.1:{closed_port()}"
    m = mounter(f"{dead}/;{nginx.url}/", connect_timeout="2",
                expected_errors=DOWN_ERRORS)
    got = read_all(m.path("three_blocks_plus_7.bin"))
    assert got == tree.data("three_blocks_plus_7.bin")
    f = stats_json(m.mountpoint)
    assert one(f, "dmsfs_source_failovers_total", source=dead) >= 1
    assert one(f, "dmsfs_source_failovers_total", source=nginx.url) == 0
    assert one(f, "dmsfs_source_errors_total", source=dead,
               kind="refused") >= 1
    assert one(f, "dmsfs_source_down_total", source=dead) >= 1
    assert one(f, "dmsfs_source_up", source=dead) == 0
    assert one(f, "dmsfs_source_up", source=nginx.url) == 1
    assert one(f, "dmsfs_fetched_bytes_total", source=dead) == 0
    assert one(f, "dmsfs_fetched_bytes_total", source=nginx.url) == len(got)
    # Errors of the good source: none of any kind.
    assert all(v == 0 for _, lab, v in f["dmsfs_source_errors_total"]
               if lab["source"] == nginx.url)
    kinds = {lab["kind"] for _, lab, _ in f["dmsfs_source_errors_total"]}
    assert {"timeout", "refused", "http_4xx", "http_5xx", "short_body",
            "bad_answer"} <= kinds
    # Text: only the errors that happened are listed.
    r = stats(m.mountpoint)
    errs = [ln for ln in r.stdout.splitlines()
            if "dmsfs_source_errors_total" in ln]
    assert errs and all("kind=refused" in ln or "kind=unreachable" in ln
                        for ln in errs), r.stdout
    # The same in the Prometheus form, read by the real parser.
    fams = parse_prom(stats("--prometheus", m.mountpoint).stdout)
    fo = [s for s in fams["dmsfs_source_failovers"].samples
          if s.labels["source"] == dead]
    assert len(fo) == 1 and fo[0].value >= 1
    assert fo[0].labels == {"mount": str(m.mountpoint), "export": "url",
                            "source": dead, "protocol": "http"}


def test_access_denials_are_counted(tree, nginx, mounter, tmp_path):
    rules = tmp_path / "authdb"
    rules.write_text("u * -rl /RB1810001 / rl\n")
    os.chmod(rules, 0o644)
    m = mounter(nginx.url + "/", acl=str(rules))
    assert one(stats_json(m.mountpoint), "dmsfs_access_denials_total") == 0
    for _ in range(3):
        with pytest.raises(PermissionError):
            os.stat(m.path("RB1810001", "logbook.txt"))
    assert len(read_all(m.path("one_byte.bin"))) == 1
    n = one(stats_json(m.mountpoint), "dmsfs_access_denials_total")
    # The kernel may cache nothing of a refused lookup: each stat is one
    # denial at least.
    assert n >= 3, n
    # Anyone may read the figures, like dmsctl status.
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                        "--clear-groups", DMSCTL, "stats", "--json",
                        m.mountpoint], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["mounts"][0]["mount"] == m.mountpoint


def test_prometheus_of_every_mount_parses_once_per_family(tree, nginx,
                                                          mounter, tmp_path):
    other = tmp_path / "other-origin"
    other.mkdir()
    (other / "x.dat").write_bytes(b"x" * 100000)
    ng2 = Nginx(str(other)).start()
    try:
        a = mounter(nginx.url + "/")
        b = mounter(ng2.url + "/")
        assert read_all(b.path("x.dat")) == b"x" * 100000
        # No PATH: every running mount, other tests' included.
        r = stats("--prometheus")
        assert r.returncode == 0, r.stderr
        text = r.stdout
        for fam in ("dmsfs_cache_hits_total", "dmsfs_fetched_bytes_total",
                    "dmsfs_request_duration_seconds"):
            assert len(re.findall(rf"^# TYPE {fam} ", text, re.M)) == 1
            assert len(re.findall(rf"^# HELP {fam} ", text, re.M)) == 1
        fams = parse_prom(text)
        want = {"dmsfs_cache_hits": "counter",
                "dmsfs_cache_misses": "counter",
                "dmsfs_cache_hit_bytes": "counter",
                "dmsfs_cache_miss_bytes": "counter",
                "dmsfs_cache_size_bytes": "gauge",
                "dmsfs_cache_capacity_bytes": "gauge",
                "dmsfs_cache_evictions": "counter",
                "dmsfs_access_denials": "counter",
                "dmsfs_fetched_bytes": "counter",
                "dmsfs_source_errors": "counter",
                "dmsfs_source_failovers": "counter",
                "dmsfs_request_duration_seconds": "histogram"}
        for name, typ in want.items():
            assert fams[name].type == typ, (name, fams[name].type)
        for f in fams.values():
            assert f.name.startswith("dmsfs_"), f.name
            for s in f.samples:
                assert "mount" in s.labels, s
        mine = {str(a.mountpoint), str(b.mountpoint)}
        hits = {s.labels["mount"] for s in fams["dmsfs_cache_hits"].samples}
        assert mine <= hits
        fetched = {(s.labels["mount"], s.labels["source"]): s.value
                   for s in fams["dmsfs_fetched_bytes"].samples}
        assert fetched[(str(b.mountpoint), ng2.url)] == 100000
        assert fetched[(str(a.mountpoint), nginx.url)] == 0
        h = [s for s in fams["dmsfs_request_duration_seconds"].samples
             if s.labels["mount"] == str(b.mountpoint)]
        names = {s.name for s in h}
        assert names == {"dmsfs_request_duration_seconds_bucket",
                         "dmsfs_request_duration_seconds_sum",
                         "dmsfs_request_duration_seconds_count"}
        inf = [s.value for s in h if s.labels.get("le") == "+Inf"]
        count = [s.value for s in h if s.name.endswith("_count")]
        assert inf == count and count[0] >= 1
        # --json of every mount parses too.
        doc = json.loads(stats("--json").stdout)
        assert mine <= {d["mount"] for d in doc["mounts"]}
    finally:
        ng2.stop()


def test_metrics_file_is_written_and_replaced_whole(tree, nginx, mounter,
                                                    tmp_path):
    out = tmp_path / "textfile"
    out.mkdir()
    path = out / "dmsfs.prom"
    m = mounter(nginx.url + "/", metrics_file=str(path), metrics_interval="1")
    wait_for(path.exists, "the first metrics_file")
    before = parse_prom(path.read_text())
    assert [s.value for s in before["dmsfs_cache_misses"].samples] == [0]
    assert before["dmsfs_cache_misses"].samples[0].labels == \
        {"mount": str(m.mountpoint)}
    size = len(read_all(m.path("big.bin")))

    def updated():
        f = parse_prom(path.read_text())
        v = f["dmsfs_cache_miss_bytes"].samples[0].value
        return f if v == size else None
    after = wait_for(updated, "metrics_file to show the read", timeout=20)
    assert after["dmsfs_fetched_bytes"].samples[0].value == size
    assert os.stat(path).st_mode & 0o777 == 0o644
    m.umount()
    # Only the file is left: its temporary was renamed over it each time.
    assert sorted(os.listdir(out)) == ["dmsfs.prom"]


@pytest.mark.parametrize("plant", ["symlink", "fifo"])
def test_metrics_file_temporary_name_planted(tree, nginx, mounter, tmp_path,
                                             plant):
    """Someone who may write in the textfile folder puts a symlink to
    another file, or a FIFO, at PATH.tmp: the victim is not written and
    the writer does not block; PATH still appears."""
    out = tmp_path / "textfile"
    out.mkdir()
    path = out / "dmsfs.prom"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    tmp = out / "dmsfs.prom.tmp"
    if plant == "symlink":
        os.symlink(victim, tmp)
    else:
        os.mkfifo(tmp)
    mounter(nginx.url + "/", metrics_file=str(path), metrics_interval="1")
    wait_for(path.exists, "the metrics_file despite the planted name",
             timeout=20)
    assert "dmsfs_cache_misses_total" in path.read_text()
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("opts,why", [
    ("metrics_file=relative.prom", r"metrics_file"),
    ("metrics_file=/nonexistent-dir-dmsfs/x.prom", r"metrics_file"),
    ("metrics_file=/tmp/", r"metrics_file"),
    ("metrics_interval=0", r"metrics_interval"),
    ("metrics_interval=soon", r"metrics_interval"),
])
def test_bad_metrics_options_are_refused(tmp_path, nginx, opts, why):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        r = run_dmsfs(["-o", f"cache_dir={tmp_path}/cache,{opts}",
                       nginx.url + "/", str(mnt)], timeout=60)
    finally:
        leftover = is_mounted(str(mnt))
        if leftover:
            run_fusermount(str(mnt), lazy=True)
    assert not leftover
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(why, lines[0]), r.stderr
    assert not find_daemon_pids(str(mnt))


class ConfigMount(mountlib.Mount):
    """`dmsfs -o config=FILE MOUNTPOINT` (as in test_acl_mount.py)."""

    def __init__(self, config, mountpoint, log_path, **kw):
        super().__init__(None, mountpoint, log_path, {}, **kw)
        self.config = str(config)

    def argv(self):
        return [self.binary, "-f", "-o", f"config={self.config}",
                self.mountpoint]


def test_config_file_metrics_section_and_pending_uploads(tree, nginx,
                                                         tmp_path):
    """[metrics] file/interval in the config file; a writable export adds
    the pending families, which follow a file waiting for its upload."""
    prom = tmp_path / "dmsfs.prom"
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(f"""\
[cache]
dir = {tmp_path}/cache
writeback_delay = 3600
unmount_flush = 30

[export data]
path = /
source = {nginx.url}/
writable = yes

[metrics]
file = {prom}
interval = 1
""")
    os.chmod(conf, 0o644)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = ConfigMount(conf, mnt, tmp_path / "dmsfs.log")
    m.start()
    try:
        fams = parse_prom(wait_for(lambda: prom.exists() and
                                   prom.read_text(), "metrics_file"))
        assert [s.value for s in fams["dmsfs_pending_uploads"].samples] == [0]
        with open(m.path("new.dat"), "wb") as f:
            f.write(b"n" * 12345)

        def pending():
            f = parse_prom(prom.read_text())
            return f if f["dmsfs_pending_uploads"].samples[0].value == 1 \
                else None
        f = wait_for(pending, "the upload to show as pending")
        assert f["dmsfs_pending_upload_bytes"].samples[0].value == 12345
        assert f["dmsfs_pending_operations"].samples[0].value >= 1
        j = stats_json(m.mountpoint)
        assert one(j, "dmsfs_pending_uploads") == 1
        assert one(j, "dmsfs_pending_upload_bytes") == 12345
        m.umount()
        with open(os.path.join(tree.root, "new.dat"), "rb") as f:
            assert f.read() == b"n" * 12345
    finally:
        m.cleanup()


def test_unknown_key_in_metrics_section_is_refused(nginx, tmp_path):
    conf = tmp_path / "dmsfs.conf"
    conf.write_text(f"[export data]\npath = /\nsource = {nginx.url}/\n"
                    f"[metrics]\nfiel = {tmp_path}/x.prom\n")
    os.chmod(conf, 0o644)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run_dmsfs(["-o", f"config={conf},cache_dir={tmp_path}/cache",
                   str(mnt)], timeout=60)
    assert r.returncode != 0 and "fiel" in r.stderr, r.stderr
    assert not is_mounted(str(mnt))


@pytest.mark.skipif(not os.access(gridftp_origin.SERVER, os.X_OK),
                    reason="globus-gridftp-server is not installed")
def test_bytes_per_protocol_with_a_gridftp_source(mounter, tmp_path):
    """A GridFTP source's bytes and calls are labelled protocol="gridftp";
    the series of a second mount over HTTP carry "http"."""
    layout = {"g.bin": 3 * 65536 + 7}
    root = public_tree(layout, empty_dirs=())
    g = gridftp_origin.GridFTP(root).start()
    ng = Nginx(root).start()
    try:
        mg = mounter(g.url)
        mh = mounter(ng.url + "/")
        size = len(read_all(mg.path("g.bin")))
        assert size == layout["g.bin"]
        assert len(read_all(mh.path("g.bin"))) == size
        fams = parse_prom(stats("--prometheus", mg.mountpoint,
                                mh.mountpoint).stdout)
        got = {(s.labels["mount"], s.labels["protocol"]): s.value
               for s in fams["dmsfs_fetched_bytes"].samples}
        assert got == {(mg.mountpoint, "gridftp"): size,
                       (mh.mountpoint, "http"): size}, got
        cnt = {s.labels["protocol"]: s.value
               for s in fams["dmsfs_request_duration_seconds"].samples
               if s.name.endswith("_count")}
        assert cnt["gridftp"] >= 1 and cnt["http"] >= 1, cnt
    finally:
        ng.stop()
        g.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_error_kinds_of_a_hostile_origin(mounter):
    """Each fault counts under its own kind: 503 as http_5xx, 403 as
    http_4xx, a body cut short as short_body, Range ignored as
    bad_answer; a missing file never as a failure."""
    size = 3 * 65536 + 7
    files = {name: FakeFile(b"z" * size, behaviour) for name, behaviour in (
        ("s503.bin", "status:503"), ("s403.bin", "status:403"),
        ("short.bin", "truncate"), ("norange.bin", "ignore_range"),
        ("good.bin", "ok"))}
    with FakeOrigin(files) as fo:
        m = mounter(fo.url, prefetch_files=0,
                    expected_errors=[r"s503|s403|short|norange"])
        for name in ("s503.bin", "s403.bin", "short.bin"):
            with pytest.raises(OSError):
                read_all(m.path(name))
        with pytest.raises(OSError):
            with open(m.path("norange.bin"), "rb") as f:
                os.pread(f.fileno(), 100, 65536 + 5)
        assert read_all(m.path("good.bin")) == b"z" * size
        f = stats_json(m.mountpoint)
        errs = {lab["kind"]: v for _, lab, v in f["dmsfs_source_errors_total"]}
        for kind in ("http_5xx", "http_4xx", "short_body", "bad_answer"):
            assert errs[kind] >= 1, (kind, errs)
        assert errs["refused"] == errs["timeout"] == errs["not_found"] == 0
