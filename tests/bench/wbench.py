"""Write workloads of `make bench` (issue 8, "Speed"): bench.py --only write.

Into a writable folder of the bench's nginx WebDAV origin (location
/whome/, every filesystem its own folder), in the same run:

  * cp -r of the origin's tree of small files (5,000 files; 500 --quick),
  * tar -x of a generated tarball (3,000 files of mixed sizes in nested
    folders; 600 --quick),
  * one file the size of big.bin (1 GiB; 256 MiB --quick) written with
    `dd bs=1M conv=fsync` (write + fsync);

on local disk (a folder next to the origin), libfuse's passthrough_ll over
such a folder (the FUSE round-trip ceiling, INFO only), dmsfs (-o rw, URL form, its
own cache per round) and `rclone mount --vfs-cache-mode full
--vfs-write-back 0s` (rclone's quickest way to the origin), plus `curl -T`
of the same big file.  For each workload two times are taken: "return"
(the command's exit) and "at origin" (return + `dmsctl sync` for dmsfs; for
rclone, polling the origin folder on disk until every file is there with
its size; nginx writes a PUT to a temporary and renames it into place, so a
file is there only once complete).  After every workload the origin's copy
is compared with the source (diff -r / cmp), so a fast wrong result cannot
pass.  The filesystems run interleaved, in a rotated order, for
--write-rounds rounds; ratios are taken per round and the median decides
PASS/MISS, with min-max printed.

Memory: once per run a 10 GiB file (--quick: 2 GiB) is written through dmsfs
from /dev/zero with dd bs=1M, VmHWM sampled every 0.1 s, then deleted.
"""

import os
import random
import shutil
import statistics
import subprocess
import tarfile
import time

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MB = 1000 * 1000

# Targets (issue 8).
RET_VS_RCLONE = 5.0     # rclone return time / dmsfs return time >= 5
RET_VS_LOCAL = 1.5      # dmsfs return time / local time <= 1.5
ORIGIN_VS_RCLONE = 1.2  # dmsfs at-origin time / rclone at-origin time <= 1.2
BIG_VS_CURL = 0.7       # curl -T time / dmsfs write+sync time >= 0.7
HWM_MAX_MB = 200        # daemon VmHWM while a 10 GiB file is written

WORKLOADS = [("cp", "cp -r tree"), ("tar", "tar -x tarball"), ("big", "big file write+sync")]


def make_tarball(work, quick):
    """A deterministic tarball of mixed sizes and its extracted reference."""
    n = 600 if quick else 3000
    name = "src-%d" % n
    tarp = os.path.join(work, name + ".tar")
    ref = os.path.join(work, name + "-ref")
    stamp = tarp + ".done"
    if os.path.exists(stamp) and os.path.isdir(ref):
        return tarp, ref
    shutil.rmtree(ref, ignore_errors=True)
    rng = random.Random(8)
    top = os.path.join(ref, "src")
    dirs = [top]
    os.makedirs(top)
    for i in range(max(4, n // 25)):
        d = os.path.join(rng.choice(dirs), "m%03d" % i)
        os.makedirs(d)
        dirs.append(d)
    text = (b"static int f(int x) { return x * 31 + 7; } /* generated */\n" * 64)
    for i in range(n):
        u = rng.random()
        if u < 0.70:
            size = rng.randint(200, 8 * KiB)
        elif u < 0.95:
            size = rng.randint(8 * KiB, 128 * KiB)
        else:
            size = rng.randint(128 * KiB, 2 * MiB)
        # Half text-like (a source tree), half random.
        if i % 2:
            body = (text * (size // len(text) + 1))[:size - 8] + os.urandom(8)
        else:
            body = os.urandom(size)
        with open(os.path.join(rng.choice(dirs), "f%04d.%s" % (i, "c" if i % 2 else "bin")),
                  "wb") as f:
            f.write(body)
    with tarfile.open(tarp, "w") as t:
        t.add(top, arcname="src")
    open(stamp, "w").close()
    return tarp, ref


def file_sizes(root):
    """relpath -> size of the regular files under root."""
    out = {}
    for dp, dn, fn in os.walk(root):
        for f in fn:
            p = os.path.join(dp, f)
            try:
                out[os.path.relpath(p, root)] = os.lstat(p).st_size
            except OSError:
                pass
    return out


def ratios(xs, ys, f):
    """Per-round f(x, y) for the rounds where both are numbers."""
    return [f(x, y) for x, y in zip(xs, ys) if x and y]


class WriteBench:
    def __init__(self, b, step_error, run_timed, dmsfs_cls, rclone_cls, log, pll_cls=None):
        self.Pll = pll_cls
        self.b = b
        self.StepError = step_error
        self.run_timed = run_timed
        self.Dmsfs = dmsfs_cls
        self.Rclone = rclone_cls
        self.log = log
        self.res = {"rounds": [], "hwm": None, "checks": {}, "errors": []}
        self.quick = b.args.quick

    # ---- setup
    def prepare(self):
        b = self.b
        o = b.origin
        self.whome = os.path.join(o.data, "whome")
        shutil.rmtree(self.whome, ignore_errors=True)
        os.makedirs(self.whome)
        shutil.chown(self.whome, "www-data", "www-data")
        self.tarp, self.tarref = make_tarball(b.work, self.quick)
        self.tar_sizes = file_sizes(self.tarref)
        self.cp_sizes = {os.path.join("tree", os.path.relpath(p, o.tree)): os.path.getsize(p)
                         for p in o.files}
        self.big_size = o.spec["big_size"]
        self.local_root = os.path.join(b.work, "wlocal")
        # Sources in the page cache, like the origin for reads.
        for p in (o.big, self.tarp):
            with open(p, "rb", buffering=0) as f:
                while f.read(8 * MiB):
                    pass
        o.prewarm()
        self.url = "http://127.0.0.1:%d/whome/" % b.srv.nginx_port

    def origin_dir(self, label):
        d = os.path.join(self.whome, label)
        if os.path.lexists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        shutil.chown(d, "www-data", "www-data")
        return d

    # ---- one filesystem, one round
    def sync(self, kind, fs, dest, odir, expect):
        """Blocks until everything under dest is at the origin folder odir."""
        b = self.b
        if kind in ("dmsfs", "base"):
            dt, rc, so, se = self.run_timed([b.dmsctl, "sync", "-t", str(int(b.t(1200))), dest],
                                            b.t(1300), fs)
            if rc != 0:
                raise self.StepError("dmsctl sync rc=%d: %s" % (rc, (se or so).strip()[-300:]))
            return
        if kind == "rclone":
            end = time.monotonic() + b.t(1800)
            while time.monotonic() < end:
                have = file_sizes(odir)
                if all(have.get(k) == v for k, v in expect.items()):
                    return
                time.sleep(0.1)
            raise self.StepError("rclone: origin still incomplete after %ds" % b.t(1800))

    def verify(self, src, dst, what):
        if os.path.isdir(src):
            argv = ["diff", "-rq", src, dst]
        else:
            argv = ["cmp", src, dst]
        dt, rc, so, se = self.run_timed(argv, self.b.t(600))
        ok = rc == 0
        c = self.res["checks"].setdefault(what, [0, 0])
        c[0 if ok else 1] += 1
        if not ok:
            raise self.StepError("%s: origin copy differs (%s): %s" %
                                 (what, " ".join(argv), (so + se).strip()[-300:]))

    def one(self, kind, rnd, r):
        """The three workloads on one filesystem: r[metric] = seconds."""
        b, o = self.b, self.b.origin
        fs = None
        label = "%s-r%d" % (kind, rnd)
        if kind == "local":
            dest = os.path.join(self.local_root, label)
            shutil.rmtree(self.local_root, ignore_errors=True)
            os.makedirs(dest)
            odir = dest
        elif kind == "fuse":
            # The FUSE round-trip ceiling: passthrough_ll over a local folder.
            odir = os.path.join(self.local_root, label)
            shutil.rmtree(self.local_root, ignore_errors=True)
            os.makedirs(odir)
            fs = self.Pll(b, label="wfuse")
            fs.build()
            fs.source = odir
            fs.mount(None)
            dest = fs.mnt
        else:
            odir = self.origin_dir(label)
            if kind in ("dmsfs", "base"):
                fs = self.Dmsfs(b, self.url + label + "/", label="w" + kind)
                fs.extra_opts = "rw"
                if kind == "base":
                    fs.bin = os.path.abspath(b.args.write_baseline)
            else:
                fs = self.Rclone(b, label="w" + kind)
                fs.write_url = self.url + label + "/"
            fs.mount(fs.new_cache())
            dest = fs.mnt
        try:
            work = [("cp", ["cp", "-r", o.tree, dest], o.tree, "tree", self.cp_sizes),
                    ("tar", ["tar", "--no-same-owner", "-xf", self.tarp, "-C", dest], os.path.join(self.tarref, "src"),
                     "src", self.tar_sizes),
                    ("big", ["dd", "if=" + o.big, "of=" + os.path.join(dest, "big.bin"), "bs=1M",
                             "conv=fsync"], o.big, "big.bin", {"big.bin": self.big_size})]
            for name, argv, src, rel, expect in work:
                dt, rc, so, se = self.run_timed(argv, b.t(1800), fs)
                if rc != 0:
                    raise self.StepError("%s rc=%d: %s" % (name, rc, se.strip()[-300:]))
                r[name + "_ret"] = dt
                t0 = time.monotonic()
                self.sync(kind, fs, dest, odir, expect)
                r[name + "_origin"] = dt + (time.monotonic() - t0)
                self.verify(src, os.path.join(odir, rel), name)
                self.b.log("  %-6s %-4s return %7.2fs  at origin %7.2fs" %
                           (kind, name, r[name + "_ret"], r[name + "_origin"]))
        finally:
            if fs is not None:
                try:
                    fs.unmount()
                except self.StepError as e:
                    self.res["errors"].append("%s round %d: %s" % (kind, rnd, e))
                    fs.kill()
                if fs.rss_peaks:
                    r["hwm_MB"] = fs.rss_peaks.get("VmHWM", 0) * 1024 / MB
                if fs.cache:
                    shutil.rmtree(fs.cache, ignore_errors=True)
            if kind in ("local", "fuse"):
                shutil.rmtree(self.local_root, ignore_errors=True)
            else:
                shutil.rmtree(odir, ignore_errors=True)

    def curl(self, rnd, r):
        b, o = self.b, self.b.origin
        odir = self.origin_dir("curl-r%d" % rnd)
        try:
            dt, rc, so, se = self.run_timed(
                ["curl", "-sS", "--noproxy", "*", "-f", "-T", o.big,
                 self.url + "curl-r%d/big.bin" % rnd], b.t(600))
            if rc != 0:
                raise self.StepError("curl -T rc=%d: %s" % (rc, se.strip()[-200:]))
            self.verify(o.big, os.path.join(odir, "big.bin"), "big")
            self.b.log("  curl   big  %7.2fs" % dt)
            r.update(big_ret=dt, big_origin=dt)
        finally:
            shutil.rmtree(odir, ignore_errors=True)

    def hwm(self):
        """dmsfs VmHWM while a 10 GiB file is written from /dev/zero."""
        b = self.b
        count = 2048 if self.quick else 10240
        label = "hwm"
        self.origin_dir(label)
        fs = self.Dmsfs(b, self.url + label + "/", label="whwm")
        # No upload of it: the file is deleted before writeback_delay, and
        # nothing is flushed at unmount (a write then unlink still uploads
        # the whole file, and an upload in flight is not cut short).
        fs.extra_opts = "rw,writeback_size=%dG,writeback_delay=3600,unmount_flush=0" % (
            count // 1024 + 2)
        fs.mount(fs.new_cache())
        p = os.path.join(fs.mnt, "zero.bin")
        try:
            fs.peak_rss_kib, fs.rss_peaks = 0, {}
            dt, rc, so, se = self.run_timed(["dd", "if=/dev/zero", "of=" + p, "bs=1M",
                                             "count=%d" % count], b.t(1800), fs)
            fs.sample_rss()
            if rc != 0:
                raise self.StepError("dd rc=%d: %s" % (rc, se.strip()[-200:]))
            os.unlink(p)
            fs.sample_rss()
            pk = fs.rss_peaks
            self.res["hwm"] = {"GiB": count // 1024, "seconds": dt,
                               "MB": pk.get("VmHWM", 0) * 1024 / MB,
                               "anon_MB": pk.get("RssAnon", 0) * 1024 / MB,
                               "file_MB": pk.get("RssFile", 0) * 1024 / MB}
            self.b.log("  dmsfs %d GiB write: %.1fs, VmHWM %.0f MB (anon %.0f, file %.0f)" % (
                count // 1024, dt, self.res["hwm"]["MB"], self.res["hwm"]["anon_MB"],
                self.res["hwm"]["file_MB"]))
        finally:
            try:
                fs.unmount()
            except self.StepError:
                fs.kill()
            shutil.rmtree(fs.cache, ignore_errors=True)
            shutil.rmtree(os.path.join(self.whome, label), ignore_errors=True)

    def run(self):
        self.log("write workloads: %d rounds, interleaved" % self.b.args.write_rounds)
        self.prepare()
        kinds = [k for k in ["local", "fuse", "dmsfs", "rclone", "curl"]
                 if k in self.b.args.write_fs.split(",")]
        if self.b.args.write_baseline:
            kinds.insert(kinds.index("dmsfs") if "dmsfs" in kinds else 0, "base")
        for rnd in range(self.b.args.write_rounds):
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            row = {}
            for k in order:
                self.log("write round %d: %s" % (rnd + 1, k))
                row[k] = {}
                try:
                    if k == "curl":
                        self.curl(rnd, row[k])
                    else:
                        self.one(k, rnd, row[k])
                except self.StepError as e:
                    e = " | ".join(l for l in str(e).splitlines() if l.strip())
                    self.log("  %s round %d: FAIL: %s" % (k, rnd + 1, e))
                    self.res["errors"].append("%s round %d: %s" % (k, rnd + 1, e))
            self.res["rounds"].append(row)
        if not self.b.args.no_hwm:
            self.log("write: dmsfs memory while a big file is written")
            try:
                self.hwm()
            except self.StepError as e:
                self.res["errors"].append("hwm: %s" % e)
        shutil.rmtree(self.whome, ignore_errors=True)

    # ---- results
    def col(self, kind, metric):
        return [row.get(kind, {}).get(metric) for row in self.res["rounds"]]

    def targets(self):
        out = []

        def add(name, desc, rs, need, higher_better):
            item = {"target": name, "description": desc, "required": need,
                    "section": "write", "need": "%s %s" % (">=" if higher_better else "<=", need)}
            if not rs:
                item.update(status="MISS", note="not measured (failed runs)")
            else:
                m = statistics.median(rs)
                ok = m >= need if higher_better else m <= need
                item.update(ratio=m, min=min(rs), max=max(rs), n=len(rs),
                            status="PASS" if ok else "MISS")
            out.append(item)

        for w, title in WORKLOADS[:2]:
            d, rc, lo = (self.col("dmsfs", w + "_ret"), self.col("rclone", w + "_ret"),
                         self.col("local", w + "_ret"))
            add("write_%s_vs_rclone" % w, "%s return: rclone / dmsfs" % title,
                ratios(rc, d, lambda a, b: a / b), RET_VS_RCLONE, True)
            add("write_%s_vs_local" % w, "%s return: dmsfs / local disk" % title,
                ratios(d, lo, lambda a, b: a / b), RET_VS_LOCAL, False)
        for w, title in WORKLOADS:
            add("write_%s_origin" % w, "%s at origin: dmsfs / rclone" % title,
                ratios(self.col("dmsfs", w + "_origin"), self.col("rclone", w + "_origin"),
                       lambda a, b: a / b), ORIGIN_VS_RCLONE, False)
        add("write_big_vs_curl", "big file write+sync: curl -T / dmsfs",
            ratios(self.col("curl", "big_ret"), self.col("dmsfs", "big_origin"),
                   lambda a, b: a / b), BIG_VS_CURL, True)
        h = self.res["hwm"]
        item = {"target": "write_hwm", "description": "dmsfs VmHWM writing a big file (MB)",
                "required": HWM_MAX_MB, "section": "write", "need": "<= %d" % HWM_MAX_MB}
        if h is None:
            item.update(status="MISS", note="not measured")
        else:
            item.update(ratio=h["MB"], min=h["MB"], max=h["MB"], n=1,
                        status="PASS" if h["MB"] <= HWM_MAX_MB else "MISS")
        out.append(item)
        bad = {k: v for k, v in self.res["checks"].items() if v[1]}
        out.append({"target": "write_correct", "description": "origin copies equal the sources",
                    "required": None, "section": "write",
                    "status": "MISS" if bad or not self.res["checks"] else "PASS",
                    "note": ", ".join("%s %d ok %d bad" % (k, v[0], v[1])
                                      for k, v in sorted(self.res["checks"].items()))})
        return out

    def report(self, tg):
        L = []
        o = self.b.origin
        L.append("write workloads (median of %d interleaved rounds; seconds; return / at origin)" %
                 len(self.res["rounds"]))
        L.append("  cp -r: %d files %.0f MiB; tar -x: %d files %.0f MiB; big: %d MiB dd bs=1M "
                 "conv=fsync" % (len(self.cp_sizes), sum(self.cp_sizes.values()) / MiB,
                                 len(self.tar_sizes), sum(self.tar_sizes.values()) / MiB,
                                 o.spec["big_size"] // MiB))
        f = "  %-22s%-12s%-16s%-20s%-20s%-12s"
        L.append(f % ("", "local disk", "FUSE ceiling", "dmsfs", "rclone", "curl -T"))

        def cell(kind, w):
            a = [x for x in self.col(kind, w + "_ret") if x]
            b = [x for x in self.col(kind, w + "_origin") if x]
            if not a:
                return "-"
            if kind in ("local", "curl", "fuse"):
                return "%.2f" % statistics.median(a)
            return "%.2f / %.2f" % (statistics.median(a), statistics.median(b)) if b else \
                "%.2f / -" % statistics.median(a)
        for w, title in WORKLOADS:
            L.append(f % (title, cell("local", w), cell("fuse", w), cell("dmsfs", w), cell("rclone", w),
                          cell("curl", w) if w == "big" else ""))
        for w, title in WORKLOADS:
            rs = ratios(self.col("dmsfs", w + "_ret"), self.col("fuse", w + "_ret"),
                        lambda a, b: a / b)
            rl = ratios(self.col("fuse", w + "_ret"), self.col("local", w + "_ret"),
                        lambda a, b: a / b)
            if rs and rl:
                L.append("  INFO %-18s return: dmsfs / FUSE ceiling %.2f (%.2f-%.2f); FUSE "
                         "ceiling / local %.2f (%.2f-%.2f)" % (
                             title, statistics.median(rs), min(rs), max(rs),
                             statistics.median(rl), min(rl), max(rl)))
        if self.b.args.write_baseline:
            L.append("  this build (dmsfs) against --write-baseline %s (base), per-round ratios:" %
                     self.b.args.write_baseline)
            for w, title in WORKLOADS:
                for m, mt in (("_ret", "return"), ("_origin", "at origin")):
                    rs = ratios(self.col("dmsfs", w + m), self.col("base", w + m),
                                lambda a, b: a / b)
                    if rs:
                        L.append("    %-22s %-10s dmsfs / base %.2f (min %.2f, max %.2f, n=%d); "
                                 "base median %.2fs" % (
                                     title, mt, statistics.median(rs), min(rs), max(rs), len(rs),
                                     statistics.median([x for x in self.col("base", w + m) if x])))
        hw = [x for x in self.col("dmsfs", "hwm_MB") if x]
        if hw:
            L.append("  dmsfs VmHWM during the rounds: max %.0f MB" % max(hw))
        for t in tg:
            if "ratio" in t:
                L.append("  %-40s %7.2f (min %.2f, max %.2f, n=%d)  need %-7s %s" % (
                    t["description"], t["ratio"], t["min"], t["max"], t["n"], t["need"],
                    t["status"]))
            else:
                L.append("  %-44s %s %s" % (t["description"], t["status"],
                                            t.get("note", "")))
        for e in self.res["errors"]:
            L.append("  error: %s" % e)
        return L
