//! PostgreSQL 15 for end-to-end tests: clusters run as an unprivileged
//! user (PostgreSQL refuses to run as root), pgbench, a client that
//! records when each of its commits was acknowledged, and the checks that
//! a recovered data directory is sound (pg_amcheck, pg_checksums) and has
//! every commit acknowledged before a sync point was asked for.

use super::mount::{Detach, lsvfs, run};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const USER: &str = "lsvfs-test";

pub fn bin(name: &str) -> String {
    format!("{BIN}/{name}")
}

pub fn pg_available() -> bool {
    Path::new(&bin("postgres")).exists()
}

/// The unprivileged user PostgreSQL runs as.
pub fn ensure_user() {
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
pub fn as_user(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", USER, "--", program]);
    c
}

/// kill -9 of every process of the test user, then waits until they are
/// gone: a new postmaster refuses to start while an old one's pid is alive
/// (its socket lock names it).
pub fn kill_all() {
    let _ = Command::new("pkill").args(["-9", "-u", USER]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Command::new("pgrep")
        .args(["-u", USER])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "processes of {USER} survive kill -9"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A PostgreSQL cluster; stopped (immediately, if need be) when dropped.
pub struct Cluster {
    pub data: PathBuf,
    socket: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    /// A cluster (not yet started) on an existing data directory.
    pub fn at(data: PathBuf, port: u16) -> Cluster {
        let socket = tempfile::Builder::new()
            .prefix("lsvfs-pg")
            .tempdir()
            .unwrap();
        run(Command::new("chown").arg(USER).arg(socket.path()));
        Cluster { data, socket, port }
    }

    /// initdb with data checksums in a new directory `data`.
    pub fn init(data: PathBuf, port: u16) -> Cluster {
        std::fs::create_dir(&data).unwrap();
        run(Command::new("chown").arg(USER).arg(&data));
        run(as_user(&bin("initdb"))
            .args(["--data-checksums", "--auth=trust", "-U", "postgres", "-D"])
            .arg(&data));
        Cluster::at(data, port)
    }

    pub fn start(&self) {
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

    pub fn stop(&self) {
        run(as_user(&bin("pg_ctl"))
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.data)
            .arg("stop"));
    }

    pub fn client(&self, program: &str) -> Command {
        let mut c = as_user(&bin(program));
        c.arg("-h")
            .arg(self.socket.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
        c
    }

    /// A libpq connection string for the cluster's superuser.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket.path().display(),
            self.port
        )
    }

    /// `psql -tAc sql`: the answer, trimmed.
    pub fn query(&self, sql: &str) -> String {
        run(self.client("psql").args(["-X", "-tAc", sql, "postgres"]))
            .trim()
            .to_string()
    }

    pub fn pgbench(&self, secs: u64) -> Child {
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
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// pg_amcheck on every database (server running), then pg_checksums on
    /// the stopped cluster.
    pub fn check(&self) {
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

    pub fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Makes the table `counter` fills.
    pub fn create_acked(&self) {
        self.query("create table acked (n bigint primary key, at timestamptz)");
    }

    /// The highest commit of `counter` that this cluster has.
    pub fn max_acked(&self) -> u64 {
        let max = self.query("select coalesce(max(n), 0) from acked");
        max.parse().unwrap_or_else(|e| panic!("{e}: {max:?}"))
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

/// The tps line of pgbench's output.
pub fn tps(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("no tps line")
        .to_string()
}

/// A client that commits one numbered row of `acked` per transaction until
/// `stop`, recording when each commit was acknowledged.
pub fn counter(
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

/// The last commit acknowledged before `asked` (0 if none).
pub fn acked_before(acked: &[(u64, Instant)], asked: Instant) -> u64 {
    acked
        .iter()
        .filter(|(_, at)| *at < asked)
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0)
}

/// Mounts sync point `id` of `source` (commands made by `cmd`, which may
/// set an environment), copies its `pgdata` with cp -a into `copy` (made
/// the test user's) and unmounts it; returns the copy's data directory and
/// how long `mount --at` took.
pub fn copy_out_of_view(
    cmd: impl Fn() -> Command,
    source: &Path,
    id: &str,
    copy: &Path,
) -> (PathBuf, Duration) {
    let view = tempfile::Builder::new()
        .prefix("lsvfs-view")
        .tempdir()
        .unwrap();
    let start = Instant::now();
    run(cmd()
        .arg("mount")
        .arg(source)
        .arg(view.path())
        .args(["--at", id]));
    let mount_time = start.elapsed();
    let detach = Detach(view.path());
    let copied = Command::new("cp")
        .arg("-a")
        .arg(view.path().join("pgdata"))
        .arg(copy)
        .status();
    run(lsvfs().arg("unmount").arg(view.path()));
    drop(detach);
    assert!(copied.unwrap().success(), "cp -a out of the view");
    run(Command::new("chown").arg(USER).arg(copy));
    let data = copy.join("pgdata");
    std::fs::remove_file(data.join("postmaster.pid")).ok();
    (data, mount_time)
}

/// Starts a cluster on a recovered data directory, checks that it has every
/// commit acknowledged before its sync point was asked for (`before`), then
/// checks it with pg_amcheck and pg_checksums (and so stops it).
pub fn check_recovered(data: PathBuf, port: u16, what: &str, before: u64) {
    let restored = Cluster::at(data, port);
    restored.start();
    let max = restored.max_acked();
    eprintln!("{what}: counter {max}, acknowledged before it was asked: {before}");
    assert!(max >= before, "{what} lost acknowledged commits");
    restored.check();
}
