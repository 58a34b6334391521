"""File workloads, each run on the native directory, on the passthrough
anchor (a plain FUSE mirror) and on the lsvfs mount: fio (sequential, random
with fdatasync, random read) and metadata (small files; untar and rm -rf of
a source tree)."""

import json
import os
import shutil
import tempfile
import time

from .common import alternate, compare, drop_caches, fresh, print_row, sh, three_sides


def fio(directory, name, **opts):
    """Runs one fio job in `directory`; returns its JSON job summary."""
    args = [
        "fio", "--name=" + name, "--directory=" + directory, "--output-format=json",
        "--group_reporting", "--ioengine=psync",
    ]
    for k, v in opts.items():
        args.append(f"--{k}={v}")
    return json.loads(sh(*args))["jobs"][0]


def mib_s(side):
    return side["bw_bytes"] / 2**20


def seq_write(d, quick, settle):
    j = fio(d, "seqwrite", rw="write", bs="1M", size="128M" if quick else "2G", end_fsync=1)
    return mib_s(j["write"])


def seq_read(d, quick, settle):
    size = "128M" if quick else "2G"
    fio(d, "seqread", rw="write", bs="1M", size=size, end_fsync=1)
    settle()
    drop_caches()
    return mib_s(fio(d, "seqread", rw="read", bs="1M", size=size)["read"])


def rand_write_fsync(jobs, bs):
    def run(d, quick, settle):
        j = fio(d, f"randwrite{jobs}", rw="randwrite", bs=bs, size="64M" if quick else "256M",
                fdatasync=1, numjobs=jobs, time_based=1, runtime=1 if quick else 20)
        return j["write"]["iops"]
    return run


def rand_read(d, quick, settle):
    size = "64M" if quick else "256M"
    fio(d, "randread", rw="write", bs="1M", size=size, end_fsync=1)
    settle()
    drop_caches()
    j = fio(d, "randread", rw="randread", bs="4k", size=size, time_based=1,
            runtime=1 if quick else 20)
    return j["read"]["iops"]


def small_files(d, quick, settle):
    """Creates, stats and unlinks many 1 KiB files; returns operations/s."""
    n = 1000 if quick else 20000
    payload = b"x" * 1024
    start = time.monotonic()
    for i in range(n):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(payload)
    for i in range(n):
        os.stat(os.path.join(d, f"f{i}"))
    for i in range(n):
        os.unlink(os.path.join(d, f"f{i}"))
    return 3 * n / (time.monotonic() - start)


def untar_rm(d, quick, settle):
    """Untars a source tree (/usr/include: many small headers; --quick:
    /usr/include/linux), syncs, and removes it; returns files/s of the
    whole."""
    tree = "/usr/include/linux" if quick else "/usr/include"
    tarball = os.path.join(tempfile.gettempdir(),
                           f"lsvfs-bench-{tree.strip('/').replace('/', '-')}.tar")
    if not os.path.exists(tarball):
        sh("tar", "-cf", tarball, "-C", os.path.dirname(tree), os.path.basename(tree))
    files = int(sh("sh", "-c", f"tar -tf {tarball} | wc -l").strip())
    start = time.monotonic()
    sh("tar", "-xf", tarball, "-C", d)
    os.sync()
    shutil.rmtree(os.path.join(d, os.path.basename(tree)))
    return files / (time.monotonic() - start)


# (name, unit, run(dir, quick, settle) -> value); larger is better for all.
# A read workload calls settle() between laying out its file and reading it:
# on lsvfs that waits until the archiver has retired what exceeds the
# working set, so that the reads are not timed against the compression of
# the data the previous workloads wrote (writes are timed with it: it is
# part of what they cost).
WORKLOADS = [
    ("seq-write-1M", "MiB/s", seq_write),
    ("seq-read-1M-cold", "MiB/s", seq_read),
    ("rand-write-4K-fdatasync-1job", "IOPS", rand_write_fsync(1, "4k")),
    ("rand-write-4K-fdatasync-4jobs", "IOPS", rand_write_fsync(4, "4k")),
    ("rand-write-8K-fdatasync-1job", "IOPS", rand_write_fsync(1, "8k")),
    ("rand-read-4K-cold", "IOPS", rand_read),
    ("small-files-create-stat-unlink", "ops/s", small_files),
    ("untar-sync-rm-usr-include", "files/s", untar_rm),
]


SIDES = ["native", "passthrough", "lsvfs"]


def section(work, quick, pairs):
    """Every workload above on native, passthrough and lsvfs in turn."""
    rows = []
    with three_sides(work) as (volume, mirror):
        roots = {"native": os.path.join(work, "native"), "passthrough": mirror.mnt,
                 "lsvfs": volume.mnt}
        for name, unit, run in WORKLOADS:
            def one(side):
                d = os.path.join(roots[side], "work")
                fresh(d)
                settle = volume.wait_archived if side == "lsvfs" else (lambda: None)
                try:
                    return run(d, quick, settle)
                finally:
                    shutil.rmtree(d)
                    # lsvfs's archiving of what it wrote is its own work,
                    # not the next side's.
                    settle()
            samples = alternate(SIDES, pairs, one)
            rows.append(compare(name, unit, samples, "native", "lsvfs", anchor="passthrough"))
            print_row(rows[-1])
    return {"rows": rows, "figures": {}, "series": {}}
