"""In-process measurements (the examples archive_bench and engine_bench,
read through their --json output) and the daemon's memory after writing
through a real mount."""

import json
import os

from .common import MIB, ROOT, Volume, sh
from .files import fio


def example(name, work, quick):
    out = os.path.join(work, f"{name}.json")
    args = ["cargo", "run", "--release", "--quiet", "--example", name, "--",
            "--json", out, os.path.join(work, name)]
    if quick:
        args.insert(-1, "--quick")
    sh(*args, cwd=ROOT)
    with open(out) as f:
        return json.load(f)


def archiver(work, quick, pairs):
    """Archive throughput and size against `zstd -T1`, and copy-forward write
    amplification against the live-data fraction."""
    result = example("archive_bench", work, quick)
    figures = {}
    for level, rows in result["archive"]["levels"].items():
        cli = next(r for r in rows if r["what"].startswith("zstd"))
        local = next(r for r in rows if "local directory" in r["what"])
        figures[f"archive_speed_vs_zstd_level{level}"] = local["mib_s"] / cli["mib_s"]
        figures[f"archive_size_vs_zstd_percent_level{level}"] = (
            (local["stored_bytes"] / cli["stored_bytes"] - 1) * 100)
    for row in result["amplification"]:
        figures[f"write_amplification_{row['live_fraction'] * 100:.0f}pct"] = (
            row["write_amplification"])
    return {"rows": [], "figures": figures, "series": {"archiver": result}}


def peak_rss(pid):
    """(VmHWM, VmRSS) of a process, in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmHWM"], fields["VmRSS"]


def memory(work, quick, pairs):
    """Index heap bytes per live block (engine_bench: a counting allocator
    around the rebuild), and the daemon's peak RSS after writing 4 GiB
    (--quick: 512 MiB) through a mount, sequentially and then 4 KiB blocks at
    random offsets of a second file (the index's worst case: no runs)."""
    engine = example("engine_bench", work, quick)
    figures = {}
    for r in engine["rebuild"]:
        figures[f"index_bytes_per_block_{r['label']}"] = r["index_bytes_per_block"]
    size = 512 if quick else 4096
    base = os.path.join(work, "memory")
    os.makedirs(base)
    volume = Volume(base, create=("--working-set", str(size * 2 // 64)))
    try:
        _, idle = peak_rss(volume.pid())
        fio(volume.mnt, "sequential", rw="write", bs="1M", size=f"{size * 3 // 4}M",
            end_fsync=1)
        fio(volume.mnt, "scattered", rw="randwrite", bs="4k", size=f"{size // 4}M",
            end_fsync=1)
        status = volume.status()
        hwm, rss = peak_rss(volume.pid())
    finally:
        volume.unmount()
    blocks = status["live_bytes"] / 4096
    figures.update({
        "daemon_written_mib": size,
        "daemon_rss_idle_mib": idle / MIB,
        "daemon_peak_rss_mib": hwm / MIB,
        "daemon_rss_mib": rss / MIB,
        "daemon_rss_growth_bytes_per_live_block": (rss - idle) / blocks,
    })
    return {"rows": [], "figures": figures, "series": {"engine": engine}}
