//! Real mounts for end-to-end tests: a volume in a unique temp directory,
//! mounted with the lsvfs binary, always unmounted (and its daemon stopped)
//! when the guard drops, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `lsvfs create` arguments for a volume whose segments are retired after
/// a few MiB of writes: 256 KiB segments, 8 in the working set, reserve 2.
pub const SMALL_SEGMENTS: [&str; 6] = [
    "--segment-size",
    "256K",
    "--working-set",
    "8",
    "--reserve",
    "2",
];

pub fn lsvfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lsvfs"))
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs a Debian package when `tool` is missing (tests run as root).
pub fn ensure_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        run(Command::new("apt-get").args(["install", "-y", "-qq", package]));
    }
}

/// Detaches whatever is mounted on a path when dropped, so that a failing
/// test leaves no mount behind (a view, or a mount a test did not expect).
pub struct Detach<'a>(pub &'a Path);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        let path = self.0.to_string_lossy();
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounted.split(' ').any(|f| f == path) {
            // A view has nothing to flush: detach even if a file is open.
            let _ = lsvfs().args(["unmount", "--lazy"]).arg(self.0).output();
        }
    }
}

pub struct Mounted {
    pub tmp: tempfile::TempDir,
    pub volume: PathBuf,
    pub mnt: PathBuf,
    options: String,
    /// Environment of the daemon (test hooks).
    env: Vec<(&'static str, String)>,
}

impl Mounted {
    /// A new volume with `create_args`, mounted with `-o options`.
    pub fn new(create_args: &[&str], options: &str) -> Mounted {
        Self::with_env(create_args, options, &[])
    }

    /// As `new`, with `env` set for the daemon (and every later mount).
    pub fn with_env(create_args: &[&str], options: &str, env: &[(&'static str, &str)]) -> Mounted {
        let tmp = tempfile::Builder::new()
            .prefix("lsvfs-e2e")
            .tempdir()
            .unwrap();
        let volume = tmp.path().join("vol");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run(lsvfs().arg("create").arg(&volume).args(create_args));
        let m = Mounted {
            tmp,
            volume,
            mnt,
            options: options.to_string(),
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        };
        m.mount();
        m
    }

    pub fn mount(&self) {
        run(lsvfs()
            .arg("mount")
            .arg(&self.volume)
            .arg(&self.mnt)
            .args(["-o", &self.options])
            .envs(self.env.iter().map(|(k, v)| (k, v))));
    }

    pub fn unmount(&self) {
        run(lsvfs().arg("unmount").arg(&self.mnt));
    }

    pub fn remount(&self) {
        self.unmount();
        self.mount();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn is_mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mnt = self.mnt.to_str().unwrap();
        info.lines().any(|l| l.split(' ').nth(4) == Some(mnt))
    }

    /// `lsvfs status --json` of the mount.
    pub fn status(&self) -> serde_json::Value {
        let out = run(lsvfs().arg("status").arg(&self.mnt).arg("--json"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Waits until the archiver has retired all beyond the working set;
    /// returns the status then.
    pub fn wait_archived(&self) -> serde_json::Value {
        for _ in 0..300 {
            let s = self.status();
            if s["waiting_for_archive"] == 0 {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the archiver did not catch up");
    }

    /// The daemon's pid, from the volume's lock file.
    pub fn daemon_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.volume.join("lock")).unwrap();
        text.strip_prefix("pid ")
            .and_then(|t| t.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in lock file: {text:?}"))
    }

    /// kill -9 of the daemon, then removes the dead mount.
    pub fn kill_daemon(&self) {
        let pid = self.daemon_pid();
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_gone(pid);
        run(lsvfs().arg("unmount").arg(&self.mnt));
    }
}

pub fn wait_gone(pid: i32) {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        // Reap it if it is our child; harmless otherwise.
        // SAFETY: waitpid with WNOHANG on a pid.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pid {pid} does not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.is_mounted() {
            let pid = std::fs::read_to_string(self.volume.join("lock"))
                .ok()
                .and_then(|t| {
                    t.strip_prefix("pid ")?
                        .split(' ')
                        .next()?
                        .parse::<i32>()
                        .ok()
                });
            let _ = lsvfs().arg("unmount").arg("--lazy").arg(&self.mnt).output();
            if let Some(pid) = pid {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The sync point ids of a `sync-points` listing, in its order.
pub fn listed_ids(listing: &str) -> Vec<u64> {
    let lines = listing.lines().skip(1);
    lines
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Runs `lsvfs sync-points SOURCE [--volume ID]` (commands made by
/// `lsvfs`, which may set an environment) until it succeeds and lists
/// exactly `ids`, for up to 30 s; returns the last listing. The archiver
/// ships in the background, so until a volume's first segment is stored a
/// store does not hold it and the listing fails.
pub fn wait_listed(
    lsvfs: impl Fn() -> Command,
    source: &Path,
    volume: Option<&str>,
    ids: &[u64],
) -> String {
    let mut listed = String::new();
    for _ in 0..300 {
        let mut cmd = lsvfs();
        cmd.arg("sync-points").arg(source);
        if let Some(volume) = volume {
            cmd.args(["--volume", volume]);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && listed_ids(&stdout) == ids {
            return stdout;
        }
        listed = stdout + &String::from_utf8_lossy(&out.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "sync-points {} never listed {ids:?}:\n{listed}",
        source.display()
    );
}

/// Mounts the view `at` of `source` (a volume, a store or a store URL) on
/// a fresh directory, runs `f` on it, and unmounts it.
pub fn with_view<T>(
    lsvfs: impl Fn() -> Command,
    source: &Path,
    at: &str,
    f: impl FnOnce(&Path) -> T,
) -> T {
    let dir = tempfile::Builder::new()
        .prefix("lsvfs-view")
        .tempdir()
        .unwrap();
    run(lsvfs()
        .arg("mount")
        .arg(source)
        .arg(dir.path())
        .args(["--at", at]));
    let _guard = Detach(dir.path());
    let out = f(dir.path());
    run(lsvfs().arg("unmount").arg(dir.path()));
    out
}

/// The tree of sync point `id` of `source`, read through a mount.
pub fn view_tree(
    lsvfs: impl Fn() -> Command,
    source: &Path,
    id: u64,
) -> std::collections::BTreeMap<String, super::facts::Facts> {
    with_view(lsvfs, source, &id.to_string(), |dir| {
        super::facts::manifest(dir, true)
    })
}
