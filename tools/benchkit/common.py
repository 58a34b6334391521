"""What every workload needs: running commands, dropping the page cache,
an lsvfs volume mounted for a run, and A/B alternation with its summary."""

import json
import math
import os
import shutil
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LSVFS = os.path.join(ROOT, "target", "release", "lsvfs")
MIB = 1 << 20


def sh(*args, **kw):
    """Runs a command; returns its stdout; raises with its stderr on failure."""
    p = subprocess.run(args, text=True, capture_output=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def ensure(tool, package):
    """Installs a Debian package when `tool` is missing."""
    if shutil.which(tool) is None:
        sh("apt-get", "install", "-y", "-qq", package)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


class Volume:
    """An lsvfs volume created under `base` and mounted on base/mnt."""

    def __init__(self, base, create=(), options="allow_other"):
        self.volume = os.path.join(base, "vol")
        self.mnt = os.path.join(base, "mnt")
        os.makedirs(self.mnt, exist_ok=True)
        sh(LSVFS, "create", self.volume, *create)
        self.options = options
        self.mount()

    def mount(self):
        sh(LSVFS, "mount", self.volume, self.mnt, "-o", self.options)

    def unmount(self):
        subprocess.run([LSVFS, "unmount", self.mnt], check=False, capture_output=True)

    def pid(self):
        """The daemon's pid, from the volume lock ("pid N on HOST")."""
        with open(os.path.join(self.volume, "lock")) as f:
            return int(f.read().split()[1])

    def status(self):
        return json.loads(sh(LSVFS, "status", self.mnt, "--json"))

    def sync_point(self, label):
        """Takes a sync point through the control file, as a database hook
        would; returns (id, seconds the write took)."""
        path = os.path.join(self.mnt, ".lsvfs", "sync-point")
        start = time.monotonic()
        with open(path, "r+b", buffering=0) as f:
            f.write(label.encode() + b"\n")
            answer = f.read()
        took = time.monotonic() - start
        return int(answer.split()[0]), took

    def sync_points(self):
        return json.loads(sh(LSVFS, "sync-points", self.volume, "--json"))

    def wait_archived(self):
        while self.status()["waiting_for_archive"] > 0:
            time.sleep(0.5)


def alternate(sides, pairs, run):
    """Runs `run(side)` for each side in turn, `pairs` rounds (A B A B ...);
    returns {side: [samples]}."""
    samples = {s: [] for s in sides}
    for _ in range(pairs):
        for s in sides:
            samples[s].append(run(s))
    return samples


def compare(workload, unit, samples, base, subject, higher_is_better=True):
    """One table row: medians, spreads and the subject/base ratio."""
    med = {s: statistics.median(v) for s, v in samples.items()}
    return {
        "workload": workload,
        "unit": unit,
        "base": base,
        "subject": subject,
        "higher_is_better": higher_is_better,
        "samples": samples,
        "median": med,
        "ratio": med[subject] / med[base] if med[base] else None,
    }


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def print_row(r):
    """Prints one comparison row as soon as it is measured."""
    b, s = r["base"], r["subject"]
    spread = lambda side: f"[{min(r['samples'][side]):.4g}-{max(r['samples'][side]):.4g}]"
    print(f"{r['workload']:<38} {b} {r['median'][b]:>9.4g} {spread(b):<17} "
          f"{s} {r['median'][s]:>9.4g} {spread(s):<17} {r['unit']:<7} ratio {r['ratio']:.2f}",
          flush=True)
