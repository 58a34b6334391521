"""The anchor's own configurations: examples/passthrough with and without
the kernel's writeback cache, with 2 and 8 request threads, on the
workloads those choices move (streaming, fdatasync, metadata, pgbench);
and lsvfs itself with and without the writeback cache (`-o
no_writeback_cache`). lsvfs mounts with the writeback cache and 8
threads by default, the configuration every other section's passthrough
column runs; this section says whether another would serve better. Each
row compares one configuration with its default (the mirror's wb-8t,
lsvfs's lsvfs-wb)."""

import os
import shutil

from .common import Passthrough, Volume, alternate, compare, fresh, print_row
from . import files, pg

DEFAULT = "wb-8t"
CONFIGS = {
    DEFAULT: (),
    "wb-2t": ("--threads", "2"),
    "nowb-8t": ("--no-writeback-cache",),
    "nowb-2t": ("--no-writeback-cache", "--threads", "2"),
}
LSVFS_DEFAULT = "lsvfs-wb"
LSVFS_CONFIGS = {
    LSVFS_DEFAULT: "allow_other",
    "lsvfs-nowb": "allow_other,no_writeback_cache",
}
SIDES = [*CONFIGS, *LSVFS_CONFIGS]
WORKLOADS = ["seq-write-1M", "seq-read-1M-cold", "rand-write-4K-fdatasync-1job",
             "small-files-create-stat-unlink"]
PGBENCH_SECS = 20


def rows_against_default(name, unit, samples):
    rows = [compare(f"{name} ({config})", unit,
                    {base: samples[base], config: samples[config]}, base, config)
            for base, configs in ((DEFAULT, CONFIGS), (LSVFS_DEFAULT, LSVFS_CONFIGS))
            for config in configs if config != base]
    for r in rows:
        print_row(r)
    return rows


def section(work, quick, pairs):
    """The workloads above and a 20-second pgbench (scale 20, 4 clients;
    --quick: scale 5, 4 s) on each configuration in turn."""
    pg.ensure_postgres()
    mounts = {}
    rows = []
    try:
        for config, flags in CONFIGS.items():
            mounts[config] = Passthrough(os.path.join(work, f"mirror-{config}"),
                                         os.path.join(work, f"mnt-{config}"), config=flags)
        for config, options in LSVFS_CONFIGS.items():
            mounts[config] = Volume(os.path.join(work, config), options=options)
        settle = {c: m.wait_archived if isinstance(m, Volume) else (lambda: None)
                  for c, m in mounts.items()}
        by_name = {name: (unit, run) for name, unit, run in files.WORKLOADS}
        for name in WORKLOADS:
            unit, run = by_name[name]

            def one(config):
                d = os.path.join(mounts[config].mnt, "work")
                fresh(d)
                try:
                    return run(d, quick, settle[config])
                finally:
                    shutil.rmtree(d)
                    settle[config]()
            rows += rows_against_default(name, unit, alternate(SIDES, pairs, one))

        scale, secs = (5, 4) if quick else (20, PGBENCH_SECS)
        clusters = {}
        try:
            for port, config in enumerate(SIDES, start=54411):
                clusters[config] = pg.Cluster(os.path.join(mounts[config].mnt, "pgdata"),
                                              os.path.join(work, f"{config}-sock"), port)
                clusters[config].client("pgbench", "-i", "-s", str(scale), "-q", "postgres")

            def one_pgbench(config):
                try:
                    return pg.pgbench(clusters[config], secs)
                finally:
                    settle[config]()
            raw = alternate(SIDES, pairs, one_pgbench)
        finally:
            for c in clusters.values():
                c.stop()
        rows += rows_against_default(f"pgbench-s{scale}-c4-{secs}s-tps", "TPS",
                                     {c: [tps for tps, _ in v] for c, v in raw.items()})
    finally:
        for m in mounts.values():
            m.unmount()
    return {"rows": rows, "figures": {}, "series": {}}
