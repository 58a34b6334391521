"""pgbench on the native directory, on the passthrough anchor (a plain FUSE
mirror) and on lsvfs, and the cost of a 1-second RPO: the same lsvfs cluster
with a sync point taken every second, crash-consistent through the control
file (as a database hook does) or flushing with `lsvfs sync-point` (as a
person or cron job does), whose latencies are recorded."""

import os
import pwd
import re
import shutil
import subprocess
import threading
import time

from .common import alternate, compare, percentile, print_row, sh, three_sides

BIN = "/usr/lib/postgresql/15/bin"
USER = "lsvfs-bench"


def ensure_postgres():
    if not os.path.exists(os.path.join(BIN, "pgbench")):
        sh("apt-get", "install", "-y", "-qq", "postgresql-15")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)


def as_user(*args):
    return sh("runuser", "-u", USER, "--", *args)


class Cluster:
    """A PostgreSQL 15 cluster in `data`, listening on a socket in `sock`."""

    def __init__(self, data, sock, port):
        self.data, self.sock, self.port = data, sock, port
        for d in (data, sock):
            os.makedirs(d)
            shutil.chown(d, USER)
        as_user(f"{BIN}/initdb", "--auth=trust", "-U", "postgres", "-D", data)
        opts = (f"-p {port} -k {sock} -c listen_addresses='' -c shared_buffers=128MB "
                "-c max_wal_size=1GB")
        as_user(f"{BIN}/pg_ctl", "-w", "-t", "300", "-l", os.path.join(sock, "log"),
                "-o", opts, "-D", data, "start")

    def client(self, program, *args):
        return as_user(f"{BIN}/{program}", "-h", self.sock, "-p", str(self.port),
                       "-U", "postgres", *args)

    def stop(self):
        subprocess.run(["runuser", "-u", USER, "--", f"{BIN}/pg_ctl", "-w", "-m", "fast",
                        "-D", self.data, "stop"], capture_output=True)


def pgbench(cluster, secs):
    """One run of 4 clients, after a checkpoint; returns (tps, average
    latency ms)."""
    cluster.client("psql", "-qc", "checkpoint", "postgres")
    out = cluster.client("pgbench", "-c", "4", "-j", "2", "-T", str(secs), "-n", "postgres")
    tps = float(re.search(r"^tps = ([0-9.]+)", out, re.M).group(1))
    latency = float(re.search(r"^latency average = ([0-9.]+) ms", out, re.M).group(1))
    return tps, latency


def rebuild_tables(cluster, scale, volume=None):
    """Builds pgbench's tables afresh (then lets `volume`, the lsvfs volume
    under the cluster if any, archive what that wrote). Every timed run
    starts from tables just built: a run on the tables an earlier one
    bloated (dead tuples, a longer history) is measured slower (up to 20 %
    after one 30 s run), which would charge sides that share a cluster, run
    one after the other, for their order."""
    cluster.client("pgbench", "-i", "-s", str(scale), "-q", "postgres")
    if volume:
        volume.wait_archived()


class SyncPoints(threading.Thread):
    """Takes one sync point per second with `take(label)` until stopped;
    records (seconds since start, latency in ms) of each."""

    def __init__(self, take):
        super().__init__(daemon=True)
        self.take, self.samples, self.stopping = take, [], threading.Event()
        self.error = None

    def run(self):
        start = time.monotonic()
        n = 0
        while not self.stopping.is_set():
            try:
                _, took = self.take(f"bench {n}")
            except (OSError, RuntimeError) as e:
                self.error = e
                return
            self.samples.append((time.monotonic() - start, took * 1e3))
            n += 1
            self.stopping.wait(max(0.0, start + n - time.monotonic()))

    def finish(self):
        self.stopping.set()
        self.join()
        if self.error:
            raise self.error
        return self.samples


SIDES = ["native", "passthrough", "lsvfs", "lsvfs+sync-points", "lsvfs+flushing-sync-points"]


def section(work, quick, pairs):
    """pgbench (scale 20, 4 clients, 60 s; --quick: scale 5, 4 s) on the
    five sides in turn; returns rows, figures and the latency series."""
    ensure_postgres()
    scale, secs = (5, 4) if quick else (20, 60)
    series = {"lsvfs+sync-points": [], "lsvfs+flushing-sync-points": []}
    with three_sides(work) as (volume, mirror):
        clusters = {}
        try:
            for side, data, port in (("native", os.path.join(work, "native"), 54401),
                                     ("passthrough", mirror.mnt, 54403),
                                     ("lsvfs", volume.mnt, 54402)):
                clusters[side] = Cluster(os.path.join(data, "pgdata"),
                                         os.path.join(work, f"{side}-sock"), port)

            def fresh_tables(side):
                cluster = clusters["lsvfs" if side.startswith("lsvfs") else side]
                rebuild_tables(cluster, scale, volume if side.startswith("lsvfs") else None)
                return cluster

            def run(side):
                cluster = fresh_tables(side)
                if side not in series:
                    return pgbench(cluster, secs)
                taker = SyncPoints(volume.sync_point if side == "lsvfs+sync-points"
                                   else volume.flushing_sync_point)
                taker.start()
                try:
                    return pgbench(cluster, secs)
                finally:
                    series[side].append(taker.finish())

            def settled(side):
                # lsvfs's archiving of what it wrote is its own work, not
                # the next side's.
                try:
                    return run(side)
                finally:
                    if side.startswith("lsvfs"):
                        volume.wait_archived()

            raw = alternate(SIDES, pairs, settled)
        finally:
            for c in clusters.values():
                c.stop()
    tps = {s: [r[0] for r in raw[s]] for s in SIDES}
    latency = {s: [r[1] for r in raw[s]] for s in SIDES}
    pick = lambda d, *sides: {s: d[s] for s in sides}
    three = ("native", "passthrough", "lsvfs")
    name = f"pgbench-s{scale}-c4-{secs}s"
    rows = [
        compare(f"{name}-tps", "TPS", pick(tps, *three), "native", "lsvfs",
                anchor="passthrough"),
        compare(f"{name}-latency", "ms", pick(latency, *three), "native", "lsvfs",
                higher_is_better=False, anchor="passthrough"),
        compare(f"{name}-tps-sync-point-each-s", "TPS",
                pick(tps, "lsvfs", "lsvfs+sync-points"), "lsvfs", "lsvfs+sync-points"),
        compare(f"{name}-tps-flushing-sync-point-each-s", "TPS",
                pick(tps, "lsvfs", "lsvfs+flushing-sync-points"), "lsvfs",
                "lsvfs+flushing-sync-points"),
    ]
    for r in rows:
        print_row(r)

    def latency_of(side):
        ms = [m for run in series[side] for _, m in run]
        return {"count": len(ms), "p50": percentile(ms, 50), "p99": percentile(ms, 99),
                "max": max(ms)}

    figures = {
        "sync_point_latency_ms": latency_of("lsvfs+sync-points"),
        "sync_point_tps_cost_percent": (1 - rows[2]["ratio"]) * 100,
        "flushing_sync_point_latency_ms": latency_of("lsvfs+flushing-sync-points"),
        "flushing_sync_point_tps_cost_percent": (1 - rows[3]["ratio"]) * 100,
    }
    return {"rows": rows, "figures": figures,
            "series": {"sync_point_latency": series["lsvfs+sync-points"],
                       "flushing_sync_point_latency": series["lsvfs+flushing-sync-points"]}}
