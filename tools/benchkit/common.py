"""What every workload needs: running commands, dropping the page cache,
an lsvfs volume and the passthrough anchor mounted for a run, and the
alternation of sides with its summary."""

import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where cargo builds (CARGO_TARGET_DIR, relative to the repository, or target/).
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
LSVFS = os.path.join(TARGET, "release", "lsvfs")
PASSTHROUGH = os.path.join(TARGET, "release", "examples", "passthrough")
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

    def flushing_sync_point(self, label):
        """Takes a sync point with `lsvfs sync-point`, which flushes the
        mount first, as a person or a cron job would; returns (id, seconds
        the whole command took)."""
        start = time.monotonic()
        out = sh(LSVFS, "sync-point", self.mnt, "--label", label)
        took = time.monotonic() - start
        return int(out.split()[0]), took

    def sync_points(self):
        return json.loads(sh(LSVFS, "sync-points", self.volume, "--json"))

    def wait_archived(self):
        """Waits until the archiver is idle: nothing over the working set to
        retire and every sealed segment shipped (compressed and stored), so
        that what is timed next does not share the machine with it."""
        while True:
            s = self.status()
            if s["waiting_for_archive"] == 0 and s["waiting_for_ship"] == 0:
                return
            time.sleep(0.5)


def mounted(path):
    """Whether `path` is a mount point (also one whose daemon is gone)."""
    escaped = path.replace(" ", "\\040")
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == escaped for line in f)


class Passthrough:
    """The anchor: examples/passthrough mirroring `source` on `mnt`, a plain
    FUSE filesystem mounted as lsvfs is (same capabilities, max_write,
    threads, writeback cache; `config`: its flags that change threads and
    the cache), serving in the background until unmount()."""

    def __init__(self, source, mnt, options="allow_other", config=()):
        self.mnt = mnt
        for d in (source, mnt):
            os.makedirs(d, exist_ok=True)
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([PASSTHROUGH, "-o", options, *config, source, mnt],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while not mounted(mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                self.log.seek(0)
                raise RuntimeError(f"passthrough did not mount on {mnt}: {self.log.read().strip()}")
            time.sleep(0.05)

    def unmount(self):
        """Unmounts, which ends the daemon; one that does not end is killed
        and its mount detached."""
        if mounted(self.mnt):
            subprocess.run(["umount", self.mnt], check=False, capture_output=True)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], check=False, capture_output=True)
        self.log.close()


@contextlib.contextmanager
def three_sides(work):
    """An lsvfs volume on work/lsvfs/mnt and the passthrough mirror of
    work/mirror on work/passthrough, for a section that compares them with
    the native directory work/native; both unmounted in the end."""
    volume = Volume(os.path.join(work, "lsvfs"))
    try:
        mirror = Passthrough(os.path.join(work, "mirror"), os.path.join(work, "passthrough"))
        try:
            yield volume, mirror
        finally:
            mirror.unmount()
    finally:
        volume.unmount()


def alternate(sides, pairs, run):
    """Runs `run(side)` for each side in turn, `pairs` rounds (A B C A B C
    ...); returns {side: [samples]}."""
    samples = {s: [] for s in sides}
    for _ in range(pairs):
        for s in sides:
            samples[s].append(run(s))
    return samples


def compare(workload, unit, samples, base, subject, higher_is_better=True, anchor=None):
    """One table row: each side's median and spread, and the ratio
    subject/base (`ratio`, what the targets read). With an `anchor` side
    (the passthrough mirror) also anchor/base and subject/anchor."""
    med = {s: statistics.median(v) for s, v in samples.items()}
    pairs = [(subject, base)] + ([(anchor, base), (subject, anchor)] if anchor else [])
    ratios = {f"{a}/{b}": med[a] / med[b] if med[b] else None for a, b in pairs}
    return {
        "workload": workload,
        "unit": unit,
        "base": base,
        "subject": subject,
        "anchor": anchor,
        "sides": [base] + ([anchor] if anchor else []) + [subject],
        "higher_is_better": higher_is_better,
        "samples": samples,
        "median": med,
        "ratio": ratios[f"{subject}/{base}"],
        "ratios": ratios,
    }


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(r, side):
    """A side's median and range in row `r`: "12.3 [11.9-13]"."""
    v = r["samples"][side]
    return f"{r['median'][side]:.4g} [{min(v):.4g}-{max(v):.4g}]"


def ratio_text(v):
    return "n/a" if v is None else f"{v:.2f}"


def print_row(r):
    """Prints one comparison row as soon as it is measured."""
    sides = " ".join(f"{s} {spread(r, s):<24}" for s in r["sides"])
    ratios = ", ".join(f"{k} {ratio_text(v)}" for k, v in r["ratios"].items())
    print(f"{r['workload']:<38} {sides} {r['unit']:<7} {ratios}", flush=True)
