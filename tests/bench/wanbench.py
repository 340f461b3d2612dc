"""The long-distance part of bench.py (--only wan): a shared link far from
the origin.

Two delayrelay instances model the link (--wan-delay-ms each way, default
25, and --wan-rate, default 1000mbit, one link per relay shared by all its
connections; the per-connection window is the kernel's maximum socket
buffer): one in front of nginx (dmsfs, the dmsfs build being compared
with, curl) and one in front of the XRootD server (xrootdfs).  Workloads,
each cold (fresh mount, fresh cache dir, page cache dropped):
  * seq: dd of a 256 MiB file (wan/seq.bin);
  * cp: cp -r of wan/tree, 300 files of 2-64 KB (random sizes, fixed seed)
    in 4 folders;
  * ls: ls -lR of wan/tree;
  * curl: one curl stream of wan/seq.bin (a single TCP stream's window
    bound, for orientation).
--wan-rounds rounds (default 3), the filesystems interleaved within each
round; figures are medians with the range over rounds, ratios are per
round (paired), median and range.

dmsfs-base is the dmsfs build before this work (--wan-base, default
build/bench/dmsfs-base; skipped when missing).  Make it with:
    git worktree add --detach /tmp/dmsfs-base <main's commit>
    make -C /tmp/dmsfs-base build/dmsfs
    cp /tmp/dmsfs-base/build/dmsfs build/bench/dmsfs-base
    git worktree remove --force /tmp/dmsfs-base
The same two builds also read the near origin (no relay) with fio's
random 64 KiB cold reads, to show that folder prefetch costs random
readers nothing.
"""
import os
import random
import re
import statistics
import time

KiB = 1 << 10
MiB = 1 << 20

TREE_FILES = 300
TREE_DIRS = 4
SEQ_BYTES = 256 * MiB

SEQ_VS_LINK = 0.8
CP_VS_XROOTDFS = 10.0
CP_VS_BASE = 3.0
RAND_VS_BASE = 0.9     # "does not drop", with room for this machine's noise


def parse_rate(s):
    """bytes/s of a delayrelay --rate string (k/m/g = 1000, bit or B)."""
    m = re.fullmatch(r"(\d+)([kmgKMG]?)(bit|bps|B|byte|Bps|)", s)
    if not m:
        raise SystemExit("--wan-rate %r: want e.g. 1000mbit, 125MB" % s)
    v = int(m.group(1)) * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return v // 8 if m.group(3) in ("bit", "bps") else v


class WanBench:
    def __init__(self, b, bm):
        self.b, self.bm = b, bm
        self.args = b.args
        self.rate = parse_rate(self.args.wan_rate)
        self.delay = self.args.wan_delay_ms
        self.rounds = max(1, self.args.wan_rounds)
        self.runs = {}        # label -> metric -> [result per round]
        self.curl = []
        self.relays = []
        self.base_bin = os.path.abspath(self.args.wan_base)
        self.res = {"rate_Bps": self.rate, "delay_ms": self.delay, "rounds": self.rounds,
                    "runs": self.runs, "curl": self.curl}

    # ---- data
    def make_data(self):
        o = self.b.origin
        root = os.path.join(o.data, "wan")
        self.seq = os.path.join(root, "seq.bin")
        self.tree = os.path.join(root, "tree")
        stamp = os.path.join(root, ".done")
        if os.path.exists(stamp):
            self.scan()
            return
        self.bm.rmtree(root)
        os.makedirs(self.tree)
        with open(o.big, "rb") as src, open(self.seq, "wb") as dst:
            left = SEQ_BYTES
            while left:
                buf = src.read(min(left, 8 * MiB))
                if not buf:
                    src.seek(0)
                    continue
                dst.write(buf)
                left -= len(buf)
        rng = random.Random(9090)
        for i in range(TREE_FILES):
            d = os.path.join(self.tree, "s%d" % (i % TREE_DIRS))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "f%03d.dat" % i), "wb") as f:
                f.write(rng.randbytes(rng.randint(2 * 1000, 64 * 1000)))
        for dp, dn, fn in os.walk(root):
            os.chmod(dp, 0o755)
            for n in fn:
                os.chmod(os.path.join(dp, n), 0o644)
        open(stamp, "w").close()
        self.scan()

    def scan(self):
        self.files = []
        self.tree_bytes = 0
        for dp, dn, fn in os.walk(self.tree):
            for n in fn:
                p = os.path.join(dp, n)
                self.files.append(p)
                self.tree_bytes += os.path.getsize(p)

    def drop(self):
        self.bm.drop_caches(self.b.origin)
        buf = bytearray(MiB)
        for p in [self.seq] + self.files:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass

    # ---- relays
    def relay(self, target_port, name):
        bm = self.bm
        d = os.path.join(self.b.run, name)
        os.makedirs(d, exist_ok=True)
        errf = open(os.path.join(d, "relay.log"), "wb")
        p = bm.subprocess.Popen([bm.RELAY, "--rate", self.args.wan_rate, "0",
                                 "127.0.0.1:%d" % target_port, str(self.delay)],
                                stdin=bm.subprocess.DEVNULL, stdout=bm.subprocess.PIPE,
                                stderr=errf, start_new_session=True)
        bm.REG.add(name, p)
        self.relays.append((p, name))
        line = p.stdout.readline().decode().strip()
        if not line.isdigit():
            raise bm.StepError("%s did not print its port (%r)" % (name, line))
        port = int(line)
        bm.wait_port(port, 10, p, name)
        bm.log("%s on 127.0.0.1:%d -> %d, %d ms each way, %s (pid %d)" %
               (name, port, target_port, self.delay, self.args.wan_rate, p.pid))
        return port

    # ---- workloads
    def rec(self, label, metric, r):
        self.runs.setdefault(label, {}).setdefault(metric, []).append(r)
        self.bm.log("  %-16s %-5s %s" % (label, metric, self.bm.fmt(r)))

    def cold(self, fs, metric, fn):
        b, bm = self.b, self.bm

        def body():
            self.drop()
            fs.mount(fs.new_cache())
            try:
                r = fn(fs)
            except bm.StepError as e:
                r = {"status": "FAIL", "error": str(e)}
                if isinstance(e, bm.StepTimeout):
                    self.rec(fs.label, metric, r)
                    raise
            self.rec(fs.label, metric, r)
        where = " through the link" if fs.label.endswith("-wan") else " (near, no relay)"
        if not b.phase(fs, metric + " cold" + where, body):
            if not self.runs.get(fs.label, {}).get(metric) or \
                    len(self.runs[fs.label][metric]) < self.round + 1:
                self.rec(fs.label, metric, {"status": "FAIL", "error": "phase aborted"})
        for n in range(1, fs.ncache + 1):
            bm.rmtree(os.path.join(b.run, "cache-%s-%d" % (fs.label, n)))

    def w_seq(self, fs):
        return self.b.seq_read(os.path.join(fs.mnt, "wan", "seq.bin"), SEQ_BYTES, fs)

    def w_cp(self, fs):
        bm = self.bm
        dest = os.path.join(self.b.run, "wan-cp")
        bm.rmtree(dest)
        os.makedirs(dest)
        try:
            dt, rc, so, se = bm.run_timed(["cp", "-r", os.path.join(fs.mnt, "wan", "tree"), dest],
                                          self.b.t(600), fs)
            if rc != 0:
                raise bm.StepError("cp rc=%d: %s" % (rc, se.strip()[-200:]))
            bad = 0
            for src in self.files:
                p = os.path.join(dest, "tree", os.path.relpath(src, self.tree))
                try:
                    with open(src, "rb") as a, open(p, "rb") as c:
                        bad += a.read() != c.read()
                except OSError:
                    bad += 1
            if bad:
                raise bm.StepError("%d of %d files missing or different" % (bad, len(self.files)))
            return {"status": "OK", "seconds": dt, "files": len(self.files),
                    "bytes": self.tree_bytes}
        finally:
            bm.rmtree(dest)

    def w_ls(self, fs):
        bm = self.bm
        dt, rc, so, se = bm.run_timed(["ls", "-lR", os.path.join(fs.mnt, "wan", "tree")],
                                      self.b.t(300), fs, env=dict(os.environ, LC_ALL="C"))
        n = sum(1 for l in so.splitlines() if l.startswith("-"))
        if rc != 0 or n != len(self.files):
            raise bm.StepError("ls rc=%d, %d of %d files: %s" % (rc, n, len(self.files),
                                                                se.strip()[-200:]))
        return {"status": "OK", "seconds": dt, "files": n}

    def w_rand(self, fs):
        return self.b.fio_rand(os.path.join(fs.mnt, "big.bin"), self.b.origin.spec["big_size"], fs)

    def run(self):
        b, bm = self.b, self.bm
        self.make_data()
        try:
            http_port = self.relay(b.srv.nginx_port, "relay-http")
            fss = []
            dm = bm.Dmsfs(b, "http://127.0.0.1:%d/" % http_port, label="dmsfs-wan")
            fss.append(dm)
            base = None
            if os.access(self.base_bin, os.X_OK):
                base = bm.Dmsfs(b, "http://127.0.0.1:%d/" % http_port, label="dmsfs-base-wan")
                base.bin = self.base_bin
                fss.append(base)
            else:
                bm.log("wan: %s missing, no dmsfs-base (see tests/bench/wanbench.py)" %
                       self.base_bin)
            if b.srv.xrootd is not None:
                xport = self.relay(b.srv.xrootd_port, "relay-xrootd")
                xf = bm.Xrootdfs(b, label="xrootdfs-wan")
                xf.argv = lambda cache, xf=xf: [
                    "xrootdfs", xf.mnt, "-f", "-o",
                    "rdr=root://127.0.0.1:%d/%s,uid=daemon" % (xport, b.origin.data)]
                fss.append(xf)
            for self.round in range(self.rounds):
                bm.log("wan round %d of %d" % (self.round + 1, self.rounds))
                self.drop()
                try:
                    r = b.curl_read("http://127.0.0.1:%d/wan/seq.bin" % http_port, SEQ_BYTES,
                                    b.t(60 + SEQ_BYTES / (2 * MiB)))
                except bm.StepError as e:
                    r = {"status": "FAIL", "error": str(e)}
                self.curl.append(r)
                bm.log("  %-16s %-5s %s" % ("curl", "seq", bm.fmt(r)))
                for metric, fn in (("seq", self.w_seq), ("cp", self.w_cp), ("ls", self.w_ls)):
                    for fs in fss:
                        self.cold(fs, metric, fn)
            # The near origin: random readers must not pay for prefetch.
            near = [bm.Dmsfs(b, "http://127.0.0.1:%d/" % b.srv.nginx_port, label="dmsfs-near")]
            if base is not None:
                nb = bm.Dmsfs(b, "http://127.0.0.1:%d/" % b.srv.nginx_port,
                              label="dmsfs-base-near")
                nb.bin = self.base_bin
                near.append(nb)
            for self.round in range(self.rounds):
                order = near if self.round % 2 == 0 else near[::-1]
                for fs in order:
                    self.cold(fs, "rand", self.w_rand)
            for fs in fss + near:
                b.rec_exit(fs)
                if fs.peak_rss_kib:
                    self.runs.setdefault(fs.label, {})["peak_rss_MB"] = \
                        fs.rss_peaks.get("VmHWM", 0) * 1024 / 1e6
        finally:
            for p, name in self.relays:
                bm.stop_proc(p, name)

    # ---- figures
    def values(self, label, metric, key):
        return [r.get(key) if r.get("status") == "OK" else None
                for r in self.runs.get(label, {}).get(metric, [])]

    @staticmethod
    def spread(xs, f="%.3g"):
        xs = [x for x in xs if x is not None]
        if not xs:
            return None, "FAIL"
        return statistics.median(xs), (f % statistics.median(xs)) + \
            (" [" + f % min(xs) + "-" + f % max(xs) + "]" if len(xs) > 1 else "")

    def paired(self, mine, theirs, invert):
        out = []
        for a, t in zip(mine, theirs):
            if a and t:
                out.append(t / a if invert else a / t)
        return out

    def targets(self):
        out = []
        link = self.rate / MiB

        def item(name, desc, ratios, need, info=False):
            m, text = self.spread(ratios, "%.2f")
            it = {"target": name, "description": desc, "required": need}
            if m is None:
                it.update(status="MISS" if not info else "INFO", text="not measured")
            else:
                it.update(ratio=m, status="INFO" if info else ("PASS" if m >= need else "MISS"),
                          text="%sx (need >= %.2gx)" % (text, need))
            out.append(it)

        seq = self.values("dmsfs-wan", "seq", "MiBps")
        item("wan_seq_vs_link", "far: cold seq dmsfs / link rate (%.0f MiB/s)" % link,
             [s / link if s else None for s in seq], SEQ_VS_LINK)
        cp = self.values("dmsfs-wan", "cp", "seconds")
        item("wan_cp_vs_xrootdfs", "far: cp -r small files, xrootdfs time / dmsfs",
             self.paired(cp, self.values("xrootdfs-wan", "cp", "seconds"), True), CP_VS_XROOTDFS)
        item("wan_cp_vs_base", "far: cp -r small files, dmsfs-base time / dmsfs",
             self.paired(cp, self.values("dmsfs-base-wan", "cp", "seconds"), True), CP_VS_BASE)
        ls = self.values("dmsfs-wan", "ls", "seconds")
        item("wan_ls_vs_xrootdfs", "far: ls -lR, xrootdfs time / dmsfs",
             self.paired(ls, self.values("xrootdfs-wan", "ls", "seconds"), True), 1.0)
        item("wan_ls_vs_base", "far: ls -lR, dmsfs-base time / dmsfs",
             self.paired(ls, self.values("dmsfs-base-wan", "ls", "seconds"), True), 1.0, info=True)
        item("near_rand_vs_base", "near: random 64k cold IOPS dmsfs / dmsfs-base",
             self.paired(self.values("dmsfs-near", "rand", "iops"),
                         self.values("dmsfs-base-near", "rand", "iops"), False), RAND_VS_BASE)
        return out

    def report(self):
        L = ["long distance: %d ms each way, link %s (%.0f MiB/s), two relays (nginx, xrootd); "
             "%d round(s) interleaved, median [min-max]" %
             (self.delay, self.args.wan_rate, self.rate / MiB, self.rounds)]
        L.append("  %-18s %-26s %-26s %-22s %s" % ("", "seq 256 MiB (MiB/s)", "cp -r 300 files (s)",
                                                  "ls -lR (s)", "peak RSS"))
        for label in ["dmsfs-wan", "dmsfs-base-wan", "xrootdfs-wan"]:
            if label not in self.runs:
                continue
            rss = self.runs[label].get("peak_rss_MB")
            L.append("  %-18s %-26s %-26s %-22s %s" % (
                label, self.spread(self.values(label, "seq", "MiBps"), "%.0f")[1],
                self.spread(self.values(label, "cp", "seconds"), "%.2f")[1],
                self.spread(self.values(label, "ls", "seconds"), "%.2f")[1],
                "%.0f MB" % rss if rss else "-"))
        L.append("  %-18s %-26s" % ("curl (1 stream)", self.spread(
            [r.get("MiBps") if r.get("status") == "OK" else None for r in self.curl], "%.0f")[1]))
        for label in ["dmsfs-near", "dmsfs-base-near"]:
            if label in self.runs:
                L.append("  %-18s random 64k cold: %s IOPS" % (
                    label, self.spread(self.values(label, "rand", "iops"), "%.0f")[1]))
        for label, m in sorted(self.runs.items()):
            for metric, rs in m.items():
                if isinstance(rs, list):
                    for i, r in enumerate(rs):
                        if r.get("status") != "OK":
                            L.append("  %s %s round %d: %s" % (label, metric, i + 1,
                                                               r.get("error", "FAIL")))
        return L
