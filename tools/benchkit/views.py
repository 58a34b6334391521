"""Views on a real mount: the time to mount one (from the command's start to
the first `ls` of its data, page cache dropped) for several working-set
sizes, from primary storage and after every segment it needs was retired to
the backing store; and `cp -a` throughput out of a view against out of the
live mount."""

import os
import shutil
import statistics
import subprocess
import time

from .common import LSVFS, MIB, Volume, drop_caches, sh

FILE = 64 * MIB


def mount_time(volume, point, where):
    drop_caches()
    start = time.monotonic()
    sh(LSVFS, "mount", volume.volume, where, "--at", str(point))
    try:
        os.listdir(os.path.join(where, "data"))
        return time.monotonic() - start
    finally:
        sh(LSVFS, "unmount", where)


def copy_rate(source, nbytes, scratch):
    """MiB/s of `cp -a source` into a fresh directory under `scratch`."""
    out = os.path.join(scratch, "copy")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    drop_caches()
    start = time.monotonic()
    sh("cp", "-a", source, out)
    took = time.monotonic() - start
    shutil.rmtree(out)
    return nbytes / MIB / took


def location(volume, point):
    return next(p["location"] for p in volume.sync_points() if p["id"] == point)


def write_files(directory, names, tag):
    """Files of 64 MiB of incompressible bytes, each named in `names`."""
    noise = bytearray(os.urandom(FILE))
    for i, name in enumerate(names):
        noise[:16] = f"{tag}{i:>15}".encode()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(noise)


def one_size(work, mib, samples):
    """Measures one working-set size: `mib` MiB of live data in a working
    set of twice that (64 MiB segments)."""
    base = os.path.join(work, f"views-{mib}M")
    os.makedirs(base)
    view = os.path.join(base, "view")
    os.makedirs(view)
    working_set = max(8, 2 * mib // 64)
    volume = Volume(base, create=("--working-set", str(working_set)))
    try:
        data = os.path.join(volume.mnt, "data")
        os.makedirs(data)
        files = max(1, mib // 64)
        write_files(data, [f"f{i}" for i in range(files)], "v")
        nbytes = files * FILE
        point, _ = volume.sync_point("full")
        result = {"live_mib": mib, "from": {}}

        def measure(expected):
            where = location(volume, point)
            assert where == expected, f"sync point {point} is in {where}, not {expected}"
            result["from"][where] = [mount_time(volume, point, view) for _ in range(samples)]
            sh(LSVFS, "mount", volume.volume, view, "--at", str(point))
            try:
                result[f"cp_view_{where}_mib_s"] = copy_rate(os.path.join(view, "data"),
                                                             nbytes, base)
            finally:
                sh(LSVFS, "unmount", view)

        measure("primary")
        result["cp_live_mib_s"] = copy_rate(data, nbytes, base)
        # Turn the working set over (W + 4 segments of rewrites) so that
        # every segment the view needs is retired to the backing store.
        write_files(volume.mnt, ["scratch"] * (working_set + 4), "s")
        volume.wait_archived()
        measure("archive")
        return result
    finally:
        subprocess.run([LSVFS, "unmount", view], capture_output=True)
        volume.unmount()
        shutil.rmtree(base, ignore_errors=True)


def section(work, quick, pairs):
    sizes = [256] if quick else [1024, 2048, 4096]
    results = [one_size(work, mib, max(2, pairs)) for mib in sizes]
    figures = {}
    for r in results:
        gib = f"{r['live_mib'] / 1024:g}GiB"
        for where, times in r["from"].items():
            figures[f"view_mount_s_{gib}_{where}"] = statistics.median(times)
        figures[f"cp_view_primary_vs_live_{gib}"] = r["cp_view_primary_mib_s"] / r["cp_live_mib_s"]
        figures[f"cp_view_archive_vs_live_{gib}"] = r["cp_view_archive_mib_s"] / r["cp_live_mib_s"]
    return {"rows": [], "figures": figures, "series": {"views": results}}
