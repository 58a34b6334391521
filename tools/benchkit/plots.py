"""PNG plots of the curves a number does not show: view mount time against
working-set size, write amplification against live fraction, and sync-point
latency over time under pgbench."""

import os
import statistics

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

    if series.get("sync_point_latency"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, run in enumerate(series["sync_point_latency"]):
            ax.plot([t for t, _ in run], [ms for _, ms in run], marker=".", linewidth=0.6,
                    label=f"run {i + 1}")
        ax.axhline(5.0, color="grey", linestyle=":", label="p99 target (5 ms)")
        ax.set_xlabel("time into the pgbench run (s)")
        ax.set_ylabel("sync point latency (ms)")
        ax.set_title("One sync point per second under pgbench")
        ax.legend()
        save(fig, "sync-point-latency.png")
    return written
