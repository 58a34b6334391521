//! PostgreSQL 15 on a real mount, as an unprivileged user: initdb with data
//! checksums, pgbench, then pg_amcheck and pg_checksums find nothing wrong,
//! both after a clean stop and after kill -9 of the lsvfs daemon in the
//! middle of a run followed by PostgreSQL's crash recovery. And the proof
//! of sync points: while pgbench runs, sync points are taken every few
//! seconds; the data directory is copied out of several views with cp -a,
//! PostgreSQL recovers on each copy, pg_amcheck finds nothing wrong, and
//! every transaction acknowledged before the sync point was asked for is
//! there.
//!
//! LSVFS_PGBENCH_SECS sets the length of each pgbench run (default 60).

mod common;

use common::mount::{Detach, Mounted, lsvfs, run};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const USER: &str = "lsvfs-test";

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
    port: u16,
}

impl Cluster {
    /// A cluster (not yet started) on an existing data directory.
    fn at(data: PathBuf, port: u16) -> Cluster {
        let socket = tempfile::Builder::new()
            .prefix("lsvfs-pg")
            .tempdir()
            .unwrap();
        run(Command::new("chown").arg(USER).arg(socket.path()));
        Cluster { data, socket, port }
    }

    fn init(data: PathBuf, port: u16) -> Cluster {
        std::fs::create_dir(&data).unwrap();
        run(Command::new("chown").arg(USER).arg(&data));
        run(as_user(&bin("initdb"))
            .args(["--data-checksums", "--auth=trust", "-U", "postgres", "-D"])
            .arg(&data));
        Cluster::at(data, port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses='' -c shared_buffers=64MB -c max_wal_size=128MB",
            self.port,
            self.socket.path().display()
        );
        let log = self.socket.path().join("pg.log");
        let out = as_user(&bin("pg_ctl"))
            .args(["-w", "-t", "300", "-l"])
            .arg(&log)
            .args(["-o", &opts, "-D"])
            .arg(&self.data)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
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
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
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

/// The tests share the test user, whose processes a failing test kills:
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pg_available() -> bool {
    Path::new(&bin("postgres")).exists()
}

#[test]
fn pgbench_then_amcheck_and_checksums_clean_and_after_kill_9() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(pg_available(), "PostgreSQL 15 is not installed in {BIN}");
    ensure_user();
    let m = Mounted::new(&[], "allow_other");
    let cluster = Cluster::init(m.path("pgdata"), 54329);
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
    // The new postmaster refuses to start while the old one's pid is alive
    // (its socket lock names it): wait until every process is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while Command::new("pgrep")
        .args(["-u", USER])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "processes of {USER} survive kill -9"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// A client that commits one numbered row per transaction, recording when
/// each commit was acknowledged.
fn counter(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(u64, Instant)>> {
    let mut psql = cluster
        .client("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "postgres"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::spawn(move || {
        let mut to = psql.stdin.take().unwrap();
        let mut from = BufReader::new(psql.stdout.take().unwrap());
        let mut acked = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            writeln!(to, "insert into acked values ({n}, now()); select {n};").unwrap();
            let mut line = String::new();
            from.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), n.to_string(), "the counter's answer");
            acked.push((n, Instant::now()));
        }
        drop(to);
        psql.wait().unwrap();
        acked
    })
}

#[test]
fn views_of_a_running_database_recover_with_every_acknowledged_commit() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(pg_available(), "PostgreSQL 15 is not installed in {BIN}");
    ensure_user();
    // A working set small enough that the run retires segments, so some
    // views read the archive.
    let m = Mounted::new(
        &["--segment-size", "16M", "--working-set", "24"],
        "allow_other",
    );
    let cluster = Cluster::init(m.path("pgdata"), 54331);
    cluster.start();
    run(cluster
        .client("pgbench")
        .args(["-i", "-s", "4", "-q", "postgres"]));
    run(cluster.client("psql").args([
        "-c",
        "create table acked (n bigint primary key, at timestamptz)",
        "postgres",
    ]));
    let secs = bench_secs().min(40);
    let bench = cluster.pgbench(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let count = counter(&cluster, stop.clone());
    let mut points = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() + Duration::from_secs(4) < end {
        std::thread::sleep(Duration::from_secs(3));
        let asked = Instant::now();
        let id = run(lsvfs()
            .arg("sync-point")
            .arg(&m.mnt)
            .args(["--label", "pg"]));
        points.push((id.trim().to_string(), asked));
    }
    let bench = bench.wait_with_output().unwrap();
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    stop.store(true, Ordering::Relaxed);
    let acked = count.join().unwrap();
    cluster.stop();
    eprintln!(
        "pgbench: {}; {} counter commits; {} sync points",
        tps(&String::from_utf8_lossy(&bench.stdout)),
        acked.len(),
        points.len()
    );
    assert!(points.len() >= 3, "{points:?}");
    let status = run(lsvfs().arg("status").arg(&m.mnt));
    eprintln!("{status}");

    let chosen = [0, points.len() / 2, points.len() - 1];
    for &i in &chosen {
        let (id, asked) = &points[i];
        let before = acked
            .iter()
            .filter(|(_, at)| at < asked)
            .map(|(n, _)| *n)
            .max();
        let view = tempfile::Builder::new()
            .prefix("lsvfs-view")
            .tempdir()
            .unwrap();
        let copy = tempfile::Builder::new()
            .prefix("lsvfs-pgcopy")
            .tempdir()
            .unwrap();
        run(lsvfs()
            .arg("mount")
            .arg(&m.volume)
            .arg(view.path())
            .args(["--at", id]));
        let detach = Detach(view.path());
        let copied = Command::new("cp")
            .arg("-a")
            .arg(view.path().join("pgdata"))
            .arg(copy.path())
            .status();
        run(lsvfs().arg("unmount").arg(view.path()));
        drop(detach);
        assert!(copied.unwrap().success(), "cp -a out of the view");
        run(Command::new("chown").arg(USER).arg(copy.path()));
        let data = copy.path().join("pgdata");
        std::fs::remove_file(data.join("postmaster.pid")).ok();
        let restored = Cluster::at(data, 54332);
        restored.start();
        let max = run(restored.client("psql").args([
            "-tAc",
            "select coalesce(max(n), 0) from acked",
            "postgres",
        ]));
        let max: u64 = max.trim().parse().unwrap();
        eprintln!("sync point {id}: counter {max}, acknowledged before it was asked: {before:?}");
        assert!(
            max >= before.unwrap_or(0),
            "sync point {id} lost acknowledged commits"
        );
        restored.check();
    }
}
