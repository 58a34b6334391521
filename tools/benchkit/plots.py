"""PNG plots of what a table does not show at a glance: the three sides'
ratios per workload, the anchor's configurations, view mount time against
working-set size, write amplification against live fraction, and sync-point
latency over time under pgbench."""

import os
import statistics

from . import anchor
from .common import sh


def pyplot():
    try:
        import matplotlib
    except ImportError:
        sh("apt-get", "install", "-y", "-qq", "python3-matplotlib")
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def draw(result, out):
    """Writes the plots whose data `result` holds into `out`; returns their
    file names."""
    series = result["series"]
    plt = pyplot()
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        written.append(name)

    three = [r for r in result["rows"] if r.get("anchor") and r["higher_is_better"]]
    if three:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.4
        for k, (ratio, label) in enumerate((("lsvfs/native", "lsvfs / native"),
                                            ("lsvfs/passthrough", "lsvfs / passthrough"))):
            ax.barh([i + k * width for i in range(len(three))],
                    [r["ratios"][ratio] or 0 for r in three], height=width, label=label)
        ax.axvline(1.0, color="grey", linestyle=":")
        ax.set_yticks([i + width / 2 for i in range(len(three))])
        ax.set_yticklabels([r["workload"] for r in three], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ratio of medians (higher is better for lsvfs)")
        ax.set_title("lsvfs against the native directory and a plain FUSE mirror")
        ax.legend()
        save(fig, "three-sides.png")

    configs = [r for r in result["rows"] if r["base"] in (anchor.DEFAULT, anchor.LSVFS_DEFAULT)]
    if configs:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        ax.barh(range(len(configs)), [r["ratio"] for r in configs],
                color=["C0" if r["base"] == anchor.DEFAULT else "C1" for r in configs])
        ax.axvline(1.0, color="grey", linestyle=":", label="writeback cache, 8 threads")
        ax.set_yticks(range(len(configs)))
        ax.set_yticklabels([r["workload"] for r in configs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("ratio to the same filesystem with the writeback cache, 8 threads "
                      "(higher is better)")
        ax.set_title("Configurations: the passthrough anchor (blue) and lsvfs (orange)")
        ax.legend()
        save(fig, "anchor-configs.png")

    if series.get("views"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for where in ("primary", "archive"):
            points = [(v["live_mib"] / 1024, statistics.median(v["from"][where]))
                      for v in series["views"] if where in v["from"]]
            ax.plot(*zip(*points), marker="o", label=f"from {where}")
        ax.axhline(1.0, color="grey", linestyle=":", label="target (1 s)")
        ax.set_xlabel("live data (GiB; working set twice that)")
        ax.set_ylabel("mount to first ls, median (s)")
        ax.set_title("Time to mount a view")
        ax.legend()
        save(fig, "view-mount-time.png")

    if series.get("archiver"):
        rows = series["archiver"]["amplification"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["live_fraction"] * 100 for r in rows],
                [r["write_amplification"] for r in rows], marker="o", label="measured")
        ax.set_xlabel("live data (% of the working set's capacity)")
        ax.set_ylabel("write amplification ((user + copied) / user)")
        ax.set_title("Copy-forward write amplification, random 4 KiB overwrites")
        ax.legend()
        save(fig, "write-amplification.png")

    for key, kind, target, name in (
            ("sync_point_latency", "crash-consistent", 5.0,
             "crash-consistent-sync-point-latency.png"),
            ("flushing_sync_point_latency", "flushing", 50.0,
             "flushing-sync-point-latency.png")):
        if not series.get(key):
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, run in enumerate(series[key]):
            ax.plot([t for t, _ in run], [ms for _, ms in run], marker=".", linewidth=0.6,
                    label=f"run {i + 1}")
        ax.axhline(target, color="grey", linestyle=":", label=f"p99 target ({target:g} ms)")
        ax.set_xlabel("time into the pgbench run (s)")
        ax.set_ylabel("sync point latency (ms)")
        ax.set_title(f"One {kind} sync point per second under pgbench")
        ax.legend()
        save(fig, name)
    return written
