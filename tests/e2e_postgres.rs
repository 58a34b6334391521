//! PostgreSQL 15 on a real mount, as an unprivileged user: initdb with data
//! checksums, pgbench, then pg_amcheck and pg_checksums find nothing wrong,
//! both after a clean stop and after kill -9 of the lsvfs daemon in the
//! middle of a run followed by PostgreSQL's crash recovery.
//!
//! LSVFS_PGBENCH_SECS sets the length of each pgbench run (default 60).

mod common;

use common::mount::{Mounted, run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const BIN: &str = "/usr/lib/postgresql/15/bin";
const USER: &str = "lsvfs-test";
const PORT: &str = "54329";

fn bin(name: &str) -> String {
    format!("{BIN}/{name}")
}

/// The unprivileged user PostgreSQL runs as (it refuses to run as root).
fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/bin/sh",
            USER,
        ]));
    }
}

/// A command run as the test user.
fn as_user(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", USER, "--", program]);
    c
}

/// A PostgreSQL cluster whose data directory is on the mount; stopped
/// (immediately, if need be) when dropped.
struct Cluster {
    data: PathBuf,
    socket: tempfile::TempDir,
}

impl Cluster {
    fn init(data: PathBuf) -> Cluster {
        let socket = tempfile::Builder::new()
            .prefix("lsvfs-pg")
            .tempdir()
            .unwrap();
        run(Command::new("chown").arg(USER).arg(socket.path()));
        std::fs::create_dir(&data).unwrap();
        run(Command::new("chown").arg(USER).arg(&data));
        run(as_user(&bin("initdb"))
            .args(["--data-checksums", "--auth=trust", "-U", "postgres", "-D"])
            .arg(&data));
        Cluster { data, socket }
    }

    fn start(&self) {
        let opts = format!(
            "-p {PORT} -k {} -c listen_addresses='' -c shared_buffers=64MB",
            self.socket.path().display()
        );
        run(as_user(&bin("pg_ctl"))
            .args(["-w", "-t", "300", "-l"])
            .arg(self.socket.path().join("pg.log"))
            .args(["-o", &opts, "-D"])
            .arg(&self.data)
            .arg("start"));
    }

    fn stop(&self) {
        run(as_user(&bin("pg_ctl"))
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.data)
            .arg("stop"));
    }

    fn client(&self, program: &str) -> Command {
        let mut c = as_user(&bin(program));
        c.arg("-h")
            .arg(self.socket.path())
            .args(["-p", PORT, "-U", "postgres"]);
        c
    }

    fn pgbench(&self, secs: u64) -> Child {
        self.client("pgbench")
            .args([
                "-c",
                "4",
                "-j",
                "2",
                "-T",
                &secs.to_string(),
                "-n",
                "postgres",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// pg_amcheck on every database (server running), then pg_checksums on
    /// the stopped cluster.
    fn check(&self) {
        let out =
            run(self
                .client("pg_amcheck")
                .args(["--all", "--install-missing", "--heapallindexed"]));
        eprintln!("pg_amcheck: {}", out.trim());
        self.stop();
        let out = run(as_user(&bin("pg_checksums"))
            .args(["--check", "-D"])
            .arg(&self.data));
        assert!(out.contains("Bad checksums:  0"), "{out}");
    }

    fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_user(&bin("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
        let _ = Command::new("pkill").args(["-9", "-u", USER]).status();
    }
}

fn bench_secs() -> u64 {
    std::env::var("LSVFS_PGBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn tps(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("no tps line")
        .to_string()
}

fn pg_available() -> bool {
    Path::new(&bin("postgres")).exists()
}

#[test]
fn pgbench_then_amcheck_and_checksums_clean_and_after_kill_9() {
    assert!(pg_available(), "PostgreSQL 15 is not installed in {BIN}");
    ensure_user();
    let m = Mounted::new(&[], "allow_other");
    let cluster = Cluster::init(m.path("pgdata"));
    cluster.start();
    run(cluster
        .client("pgbench")
        .args(["-i", "-s", "10", "-q", "postgres"]));
    let bench = cluster.pgbench(bench_secs()).wait_with_output().unwrap();
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    eprintln!("pgbench: {}", tps(&String::from_utf8_lossy(&bench.stdout)));
    cluster.check();

    // Remount, then kill the daemon in the middle of a run.
    m.remount();
    cluster.start();
    let mut bench = cluster.pgbench(bench_secs());
    std::thread::sleep(Duration::from_secs(bench_secs() / 2));
    let postmaster = cluster.postmaster_pid();
    m.kill_daemon();
    let _ = bench.kill();
    let _ = bench.wait();
    // PostgreSQL lost its storage: stop it the hard way.
    if let Some(pid) = postmaster {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = Command::new("pkill").args(["-9", "-u", USER]).status();
    std::thread::sleep(Duration::from_millis(500));
    m.mount();
    std::fs::remove_file(cluster.data.join("postmaster.pid")).ok();
    cluster.start();
    let count = run(cluster.client("psql").args([
        "-tAc",
        "select count(*) from pgbench_history",
        "postgres",
    ]));
    eprintln!("after crash recovery: {} history rows", count.trim());
    cluster.check();
}
