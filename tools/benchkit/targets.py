"""The targets (../shared/BENCH.md, issues 6 and 16), checked against a
run's rows and figures."""

import operator


def row_ratio(predicate, ratio=None):
    """The ratio subject/base of the first row whose workload matches, or
    the named one of its `ratios` ("lsvfs/passthrough")."""
    def get(result):
        return next((r["ratio"] if ratio is None else r["ratios"].get(ratio)
                     for r in result["rows"] if predicate(r["workload"])), None)
    return get


def named(workload):
    return lambda w: w == workload


def pgbench_tps(w):
    return w.startswith("pgbench") and w.endswith("-tps")


def figure(*path):
    def get(result):
        value = result["figures"]
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value
    return get


def largest(prefix):
    """The figure named `prefix` + SIZE + 'M' with the largest SIZE."""
    def get(result):
        found = [(int(k[len(prefix):-1]), v) for k, v in result["figures"].items()
                 if k.startswith(prefix) and k.endswith("M")]
        return max(found)[1] if found else None
    return get


TARGETS = [
    ("random 4 KiB fdatasync writes, 1 job (lsvfs/native)",
     row_ratio(named("rand-write-4K-fdatasync-1job")), ">=", 1.0),
    ("random 4 KiB fdatasync writes, 4 jobs (lsvfs/native)",
     row_ratio(named("rand-write-4K-fdatasync-4jobs")), ">=", 1.0),
    ("sequential write (lsvfs/native)", row_ratio(named("seq-write-1M")), ">=", 0.6),
    ("sequential read, cold (lsvfs/native)",
     row_ratio(named("seq-read-1M-cold")), ">=", 0.6),
    ("pgbench TPS (lsvfs/native)",
     row_ratio(pgbench_tps), ">=", 0.7),
    ("sync point p99 under pgbench (ms)", figure("sync_point_latency_ms", "p99"), "<", 5.0),
    ("pgbench TPS cost of one sync point per second (%)",
     figure("sync_point_tps_cost_percent"), "<", 2.0),
    ("view mount at 4 GiB, from primary (s)", figure("view_mount_s_4GiB_primary"), "<", 1.0),
    ("view mount at 4 GiB, from the backing store (s)",
     figure("view_mount_s_4GiB_archive"), "<", 1.0),
    ("archive throughput / zstd -T1 -3", figure("archive_speed_vs_zstd_level3"), ">=", 0.8),
    ("index bytes per live 4 KiB block, sequential",
     largest("index_bytes_per_block_sequential-"), "<=", 32.0),
    ("index bytes per live 4 KiB block, scattered",
     largest("index_bytes_per_block_scattered-"), "<=", 32.0),
    # Issue 16: the log against the passthrough anchor.
    ("pgbench TPS (lsvfs/passthrough)", row_ratio(pgbench_tps, "lsvfs/passthrough"), ">=", 1.0),
    ("pgbench TPS (lsvfs/native)", row_ratio(pgbench_tps), ">=", 0.75),
    ("random 4 KiB fdatasync writes, 1 job (lsvfs/passthrough)",
     row_ratio(named("rand-write-4K-fdatasync-1job"), "lsvfs/passthrough"), ">=", 1.0),
    ("random 4 KiB fdatasync writes, 4 jobs (lsvfs/native)",
     row_ratio(named("rand-write-4K-fdatasync-4jobs")), ">=", 1.2),
    ("sequential read, cold (lsvfs/passthrough)",
     row_ratio(named("seq-read-1M-cold"), "lsvfs/passthrough"), ">=", 1.0),
    ("sequential write (lsvfs/passthrough)",
     row_ratio(named("seq-write-1M"), "lsvfs/passthrough"), ">=", 1.0),
    ("sequential write (lsvfs/native)", row_ratio(named("seq-write-1M")), ">=", 0.8),
    ("create/stat/unlink (lsvfs/passthrough)",
     row_ratio(named("small-files-create-stat-unlink"), "lsvfs/passthrough"), ">=", 1.0),
    ("crash-consistent sync point p50 under pgbench (ms)",
     figure("sync_point_latency_ms", "p50"), "<", 1.0),
    ("flushing sync point p99 under pgbench (ms)",
     figure("flushing_sync_point_latency_ms", "p99"), "<", 50.0),
]

OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def check(result):
    """[{target, value, met}] for every target; value None: not measured."""
    out = []
    for name, get, op, bound in TARGETS:
        value = get(result)
        out.append({
            "target": f"{name} {op} {bound:g}",
            "value": value,
            "met": None if value is None else OPS[op](value, bound),
        })
    return out
