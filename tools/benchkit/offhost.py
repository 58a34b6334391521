"""Off-host history on an S3 store. The store is moto's S3 server on
127.0.0.1, started here: a stand-in that shares the machine's two cores with
PostgreSQL and lsvfs, so every figure is a pessimistic one for a real,
remote store's CPU and an optimistic one for its latency.

- pgbench with one sync point per second on a volume whose store is a local
  directory and on one whose store is S3, alternating, and the S3 one with
  no sync points: TPS, and bytes shipped per hour (whole objects and partial
  ones) with and without sync points;
- the recovery point: from a sync point's acknowledgment to the moment
  `lsvfs sync-points s3://...` (a fresh process reading only the store)
  first lists it, polled throughout those runs;
- `mount s3://... --at` and `clone s3://... --at` of 1 GiB and 4 GiB of
  data, from the URL alone."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

from . import pg
from .common import (LSVFS, MIB, Volume, alternate, compare, drop_caches, percentile,
                     print_row, sh)
from .views import write_files

BUCKET = "lsvfs-bench"
POLL = 0.5
MOTO = "moto[server]>=5.1"


def moto_server():
    """moto's server from the venv the tests use (installed when missing)."""
    cache = os.environ.get("LSVFS_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lsvfs-test")
    venv = os.path.join(cache, "moto-venv")
    if not os.path.exists(os.path.join(venv, ".installed")):
        shutil.rmtree(venv, ignore_errors=True)
        sh("python3", "-m", "venv", venv)
        sh(os.path.join(venv, "bin", "pip"), "install", "-q", MOTO)
        with open(os.path.join(venv, ".installed"), "w") as f:
            f.write(MOTO)
    return os.path.join(venv, "bin", "moto_server")


class S3:
    """moto on a free port of 127.0.0.1, with one bucket; sets the AWS
    environment lsvfs reads (and the daemons it starts inherit)."""

    def __init__(self, work):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        log = open(os.path.join(work, "moto.log"), "w")
        self.proc = subprocess.Popen([moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=log, start_new_session=True)
        endpoint = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                req = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
                urllib.request.urlopen(req, timeout=5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not start")
        self.saved = {k: os.environ.get(k) for k in ENV}
        os.environ.update({k: v.format(endpoint=endpoint) for k, v in ENV.items()})

    def url(self, prefix):
        return f"s3://{BUCKET}/{prefix}"

    def stop(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.proc.kill()
        self.proc.wait()


ENV = {"AWS_ENDPOINT_URL": "{endpoint}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
       "AWS_ACCESS_KEY_ID": "lsvfs-bench", "AWS_SECRET_ACCESS_KEY": "lsvfs-bench"}


def listed(url):
    """The ids `lsvfs sync-points URL` lists (none while the store holds
    no object yet), and how long listing took."""
    start = time.monotonic()
    try:
        ids = {p["id"] for p in json.loads(sh(LSVFS, "sync-points", url, "--json"))}
    except RuntimeError as e:
        if "nor a backing store holding" not in str(e):
            raise
        ids = set()
    return ids, time.monotonic() - start


class Acked(pg.SyncPoints):
    """One sync point per second, remembering when each was acknowledged."""

    def __init__(self, volume):
        super().__init__(volume.sync_point)
        self.acked = {}

    def run(self):
        n = 0
        start = time.monotonic()
        while not self.stopping.is_set():
            try:
                point, _ = self.take(f"bench {n}")
            except (OSError, RuntimeError) as e:
                self.error = e
                return
            self.acked[point] = time.monotonic()
            n += 1
            self.stopping.wait(max(0.0, start + n - time.monotonic()))


class Poller(threading.Thread):
    """Lists the store again and again (at most every POLL seconds);
    remembers when each sync point was first listed."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.seen, self.listings, self.stopping = {}, [], threading.Event()

    def run(self):
        while not self.stopping.is_set():
            ids, took = listed(self.url)
            self.stopping.wait(max(0.0, POLL - took))
            now = time.monotonic()
            self.listings.append(took)
            for i in ids:
                self.seen.setdefault(i, now)

    def finish(self, acked, limit=60):
        """Waits until every acknowledged sync point was listed (at most
        `limit` seconds); returns the recovery points in seconds."""
        deadline = time.monotonic() + limit
        while set(acked) - set(self.seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.stopping.set()
        self.join()
        missing = set(acked) - set(self.seen)
        if missing:
            raise RuntimeError(f"{len(missing)} sync points never listed from the store")
        return [self.seen[i] - t for i, t in acked.items()]


SIDES = ["local-store", "s3", "s3-no-sync-points"]
# The s3 side again, its store listed all along by another process: the
# recovery point, apart from the TPS runs (listing costs CPU here).
LISTED = "s3-listed"


def pgbench_runs(work, s3, scale, secs, pairs):
    """pgbench on the three sides and the listed one in turn; returns TPS
    samples, MiB shipped per hour (whole, partial, user) per side, recovery
    points and listing times in seconds."""
    volumes, clusters = {}, {}
    shipped = {s: [] for s in SIDES}
    recovery, listings = [], []

    def run(side):
        v = volumes["s3" if side == LISTED else side]
        cluster = clusters["s3" if side == LISTED else side]
        pg.rebuild_tables(cluster, scale, v)
        before = v.status()
        taker = None if side == "s3-no-sync-points" else Acked(v)
        poller = Poller(s3.url("s3")) if side == LISTED else None
        for t in filter(None, (taker, poller)):
            t.start()
        start = time.monotonic()
        try:
            tps = pg.pgbench(cluster, secs)[0]
        finally:
            took = time.monotonic() - start
            if taker:
                taker.finish()
        after = v.status()
        # What this run left to ship is its own work, not the next side's.
        v.wait_archived()
        if poller:
            recovery.extend(poller.finish(taker.acked))
            listings.extend(poller.listings)
        if side == LISTED:
            return tps
        rate = lambda k: (after[k] - before[k]) * 3600 / took / MIB
        shipped[side].append({k: rate(k) for k in
                              ("session_archived_stored_bytes", "session_partial_bytes",
                               "user_bytes")})
        return tps

    try:
        for i, side in enumerate(SIDES):
            store = [] if side == "local-store" else ["--backing-store", s3.url(side)]
            volumes[side] = v = Volume(os.path.join(work, side), create=store)
            clusters[side] = pg.Cluster(os.path.join(v.mnt, "pgdata"),
                                        os.path.join(work, f"{side}-sock"), 54411 + i)
        tps = alternate(SIDES + [LISTED], pairs, run)
    finally:
        for c in clusters.values():
            c.stop()
        for v in volumes.values():
            v.unmount()
    return tps, shipped, recovery, listings


def timed(*args):
    start = time.monotonic()
    sh(*args)
    return time.monotonic() - start


def from_the_store(work, s3, mib, rounds):
    """`mib` MiB of incompressible files on a volume on S3, a sync point,
    the volume deleted; then the seconds to mount the sync point from the
    URL (to the first listing of its files), and to clone it."""
    prefix = f"restore-{mib}M"
    v = Volume(os.path.join(work, prefix), create=[
        "--backing-store", s3.url(prefix), "--working-set", str(max(64, mib // 32))])
    try:
        os.makedirs(os.path.join(v.mnt, "data"))
        write_files(os.path.join(v.mnt, "data"), [f"f{i}" for i in range(mib // 64)], prefix)
        point, _ = v.sync_point("restore")
        started = time.monotonic()
        while point not in listed(s3.url(prefix))[0]:
            time.sleep(0.5)
        shipped = time.monotonic() - started
    finally:
        v.unmount()
    shutil.rmtree(v.volume)
    mounts, where = [], os.path.join(work, f"{prefix}-view")
    os.makedirs(where)
    for _ in range(rounds):
        drop_caches()
        start = time.monotonic()
        sh(LSVFS, "mount", s3.url(prefix), where, "--at", str(point))
        try:
            os.listdir(os.path.join(where, "data"))
            mounts.append(time.monotonic() - start)
        finally:
            sh(LSVFS, "unmount", where)
    clone = os.path.join(work, f"{prefix}-clone")
    took = timed(LSVFS, "clone", s3.url(prefix), "--at", str(point), clone,
                 "--working-set", str(max(64, mib // 32)))
    shutil.rmtree(clone)
    return {"shipped_s": shipped, "mount_s": mounts, "clone_s": took,
            "clone_mib_per_s": mib / took}


def section(work, quick, pairs):
    """The pgbench runs (scale 20, 60 s; --quick: scale 5, 10 s), then
    restores of 1 GiB and 4 GiB (--quick: 256 MiB)."""
    pg.ensure_postgres()
    scale, secs = (5, 10) if quick else (20, 60)
    s3 = S3(work)
    try:
        tps, shipped, recovery, listings = pgbench_runs(work, s3, scale, secs, pairs)
        restores = {mib: from_the_store(work, s3, mib, 3) for mib in
                    ((256,) if quick else (1024, 4096))}
    finally:
        s3.stop()
    name = f"pgbench-s{scale}-c4-{secs}s-sync-point-each-s"
    rows = [compare(f"{name}-tps-s3-store", "TPS", {s: tps[s] for s in SIDES[:2]},
                    "local-store", "s3"),
            compare(f"pgbench-s{scale}-c4-{secs}s-tps-s3-sync-points", "TPS",
                    {s: tps[s] for s in SIDES[1:]}, "s3-no-sync-points", "s3")]
    for r in rows:
        print_row(r)
    listed_tps = tps[LISTED]
    med = lambda xs: sorted(xs)[len(xs) // 2]
    figures = {
        "s3_recovery_point_s": {"count": len(recovery), "p50": percentile(recovery, 50),
                                "p99": percentile(recovery, 99), "max": max(recovery)},
        "s3_listing_s": {"count": len(listings), "p50": percentile(listings, 50),
                         "max": max(listings)},
        "s3_tps_while_listed": {"p50": med(listed_tps), "min": min(listed_tps),
                                "max": max(listed_tps)},
    }
    for side in SIDES:
        for k, short in (("session_archived_stored_bytes", "whole"),
                         ("session_partial_bytes", "partial"), ("user_bytes", "user")):
            figures.setdefault(f"mib_per_hour_{side}", {})[short] = med(
                [r[k] for r in shipped[side]])
    for mib, r in restores.items():
        figures[f"s3_restore_{mib}M"] = {
            "shipped_s": r["shipped_s"], "mount_p50_s": med(r["mount_s"]),
            "mount_max_s": max(r["mount_s"]), "clone_s": r["clone_s"],
            "clone_mib_per_s": r["clone_mib_per_s"]}
    return {"rows": rows, "figures": figures, "series": {}}
