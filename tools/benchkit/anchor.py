"""The anchor's own configurations: examples/passthrough with and without
the kernel's writeback cache, with 2 and 8 request threads, on the
workloads those choices move (streaming, fdatasync, metadata, pgbench).
lsvfs mounts with the writeback cache and 8 threads, the configuration
every other section's passthrough column runs; this section says whether
another would serve better. Each row compares one configuration with
that default."""

import os
import shutil

from .common import Passthrough, alternate, compare, fresh, print_row
from . import files, pg

DEFAULT = "wb-8t"
CONFIGS = {
    DEFAULT: (),
    "wb-2t": ("--threads", "2"),
    "nowb-8t": ("--no-writeback-cache",),
    "nowb-2t": ("--no-writeback-cache", "--threads", "2"),
}
WORKLOADS = ["seq-write-1M", "seq-read-1M-cold", "rand-write-4K-fdatasync-1job",
             "small-files-create-stat-unlink"]
PGBENCH_SECS = 20


def rows_against_default(name, unit, samples):
    rows = [compare(f"{name} ({config})", unit,
                    {DEFAULT: samples[DEFAULT], config: samples[config]}, DEFAULT, config)
            for config in CONFIGS if config != DEFAULT]
    for r in rows:
        print_row(r)
    return rows


def section(work, quick, pairs):
    """The workloads above and a 20-second pgbench (scale 20, 4 clients;
    --quick: scale 5, 4 s) on each configuration in turn."""
    pg.ensure_postgres()
    mirrors = {}
    rows = []
    try:
        for config, flags in CONFIGS.items():
            mirrors[config] = Passthrough(os.path.join(work, f"mirror-{config}"),
                                          os.path.join(work, f"mnt-{config}"), config=flags)
        by_name = {name: (unit, run) for name, unit, run in files.WORKLOADS}
        for name in WORKLOADS:
            unit, run = by_name[name]

            def one(config):
                d = os.path.join(mirrors[config].mnt, "work")
                fresh(d)
                try:
                    return run(d, quick, lambda: None)
                finally:
                    shutil.rmtree(d)
            rows += rows_against_default(name, unit, alternate(list(CONFIGS), pairs, one))

        scale, secs = (5, 4) if quick else (20, PGBENCH_SECS)
        clusters = {}
        try:
            for port, config in enumerate(CONFIGS, start=54411):
                clusters[config] = pg.Cluster(os.path.join(mirrors[config].mnt, "pgdata"),
                                              os.path.join(work, f"{config}-sock"), port)
                clusters[config].client("pgbench", "-i", "-s", str(scale), "-q", "postgres")
            raw = alternate(list(CONFIGS), pairs, lambda c: pg.pgbench(clusters[c], secs))
        finally:
            for c in clusters.values():
                c.stop()
        rows += rows_against_default(f"pgbench-s{scale}-c4-{secs}s-tps", "TPS",
                                     {c: [tps for tps, _ in v] for c, v in raw.items()})
    finally:
        for m in mirrors.values():
            m.unmount()
    return {"rows": rows, "figures": {}, "series": {}}
