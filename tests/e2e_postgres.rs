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
//! LSVFS_PGBENCH_SECS sets the length of each pgbench run (default 30).

mod common;

use common::mount::{Mounted, lsvfs, run};
use common::pg::{
    BIN, Cluster, acked_before, check_recovered, copy_out_of_view, counter, ensure_user, kill_all,
    pg_available, tps,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn bench_secs() -> u64 {
    std::env::var("LSVFS_PGBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// The tests share the test user, whose processes a failing test kills:
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    kill_all();
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
    cluster.create_acked();
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
        let before = acked_before(&acked, *asked);
        let copy = tempfile::Builder::new()
            .prefix("lsvfs-pgcopy")
            .tempdir()
            .unwrap();
        let (data, _) = copy_out_of_view(lsvfs, &m.volume, id, copy.path());
        check_recovered(data, 54332, &format!("sync point {id}"), before);
    }
}

/// A destructive mistake undone: pgbench with a counter of acknowledged
/// commits, a sync point, more pgbench and `DROP TABLE pgbench_accounts`;
/// the cluster stopped and the volume unmounted; `lsvfs rollback --to`
/// the sync point; PostgreSQL recovers on it, the table is back with every
/// row, every commit acknowledged before the sync point was asked for is
/// there, and pg_amcheck and pg_checksums find nothing wrong. Then `lsvfs
/// diff` from the "before rollback" sync point names the table's files.
#[test]
fn rollback_undoes_a_dropped_table_with_every_acknowledged_commit() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(pg_available(), "PostgreSQL 15 is not installed in {BIN}");
    ensure_user();
    let m = Mounted::new(
        &["--segment-size", "16M", "--working-set", "24"],
        "allow_other",
    );
    let cluster = Cluster::init(m.path("pgdata"), 54333);
    cluster.start();
    run(cluster
        .client("pgbench")
        .args(["-i", "-s", "4", "-q", "postgres"]));
    cluster.create_acked();
    let secs = bench_secs().min(20);
    let bench = cluster.pgbench(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let count = counter(&cluster, stop.clone());
    std::thread::sleep(Duration::from_secs(secs / 2));
    let asked = Instant::now();
    let id = run(lsvfs()
        .arg("sync-point")
        .arg(&m.mnt)
        .args(["--label", "before-mistake"]));
    let bench = bench.wait_with_output().unwrap();
    assert!(bench.status.success());
    stop.store(true, Ordering::Relaxed);
    let before = acked_before(&count.join().unwrap(), asked);
    let accounts = cluster.query("select count(*) from pgbench_accounts");
    cluster.query("drop table pgbench_accounts");
    cluster.stop();
    m.unmount();

    let started = Instant::now();
    let out = run(lsvfs()
        .arg("rollback")
        .arg(&m.volume)
        .args(["--to", "before-mistake"]));
    eprintln!(
        "rollback to sync point {} in {:.2} s: {out}",
        id.trim(),
        started.elapsed().as_secs_f64()
    );
    m.mount();
    std::fs::remove_file(cluster.data.join("postmaster.pid")).ok();
    cluster.start();
    assert_eq!(
        cluster.query("select count(*) from pgbench_accounts"),
        accounts,
        "the dropped table is back with every row"
    );
    let max = cluster.max_acked();
    eprintln!("after rollback: counter {max}, acknowledged before the sync point: {before}");
    assert!(max >= before, "the rollback lost acknowledged commits");
    cluster.check();
    // The state with the mistake is kept: diff names what the rollback undid.
    let changed = run(lsvfs()
        .arg("diff")
        .arg(&m.volume)
        .arg("before-rollback-to-".to_string() + id.trim()));
    assert!(
        changed
            .lines()
            .any(|l| l.starts_with("created") && l.contains("/pgdata/base/")),
        "diff from the state before the rollback names the table's files again:\n{changed}"
    );
}

/// `lsvfs agent postgres` on a cluster under pgbench: each round's sync
/// point carries the cluster's WAL position, increasing from round to
/// round, and the newest one's view recovers with every commit
/// acknowledged before that round began.
#[test]
fn the_postgres_agent_labels_sync_points_with_increasing_wal_positions() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(pg_available(), "PostgreSQL 15 is not installed in {BIN}");
    ensure_user();
    let m = Mounted::new(&[], "allow_other");
    let cluster = Cluster::init(m.path("pgdata"), 54335);
    cluster.start();
    run(cluster
        .client("pgbench")
        .args(["-i", "-s", "2", "-q", "postgres"]));
    cluster.create_acked();
    let bench = cluster.pgbench(bench_secs().min(15));
    let stop = Arc::new(AtomicBool::new(false));
    let count = counter(&cluster, stop.clone());
    let mut rounds = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        let asked = Instant::now();
        let out = run(lsvfs()
            .args(["agent", "postgres"])
            .arg(&m.mnt)
            .args(["--connection", &cluster.conninfo(), "--psql"])
            .arg(format!("{BIN}/psql")));
        // "ID postgres lsn HI/LO timeline 1"
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words[1..3], ["postgres", "lsn"], "{out}");
        let (hi, lo) = words[3].split_once('/').unwrap();
        let lsn =
            (u64::from_str_radix(hi, 16).unwrap() << 32) + u64::from_str_radix(lo, 16).unwrap();
        rounds.push((words[0].to_string(), lsn, asked));
    }
    assert!(bench.wait_with_output().unwrap().status.success());
    stop.store(true, Ordering::Relaxed);
    let acked = count.join().unwrap();
    cluster.stop();
    assert!(
        rounds.windows(2).all(|w| w[0].1 < w[1].1),
        "WAL positions do not increase: {rounds:?}"
    );
    let listing = run(lsvfs().arg("sync-points").arg(&m.volume));
    assert_eq!(listing.matches("postgres lsn").count(), 3, "{listing}");
    let (id, _, asked) = rounds.last().unwrap();
    let copy = tempfile::Builder::new()
        .prefix("lsvfs-pgcopy")
        .tempdir()
        .unwrap();
    let (data, _) = copy_out_of_view(lsvfs, &m.volume, id, copy.path());
    check_recovered(
        data,
        54336,
        &format!("agent sync point {id}"),
        acked_before(&acked, *asked),
    );

    // --verify: a restore test (clone, recovery, pg_amcheck) passes on the
    // healthy cluster and fails once an index page is damaged on purpose.
    cluster.start();
    cluster.query("create table damaged as select generate_series(1, 20000) as i");
    cluster.query("create index damaged_i_idx on damaged (i)");
    let verify = || {
        lsvfs()
            .args(["agent", "postgres"])
            .arg(&m.mnt)
            .args(["--connection", &cluster.conninfo(), "--psql"])
            .arg(format!("{BIN}/psql"))
            .arg("--verify")
            .output()
            .unwrap()
    };
    let out = verify();
    let said = format!("{out:?}");
    assert!(out.status.success(), "{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pg_amcheck clean"), "{said}");
    eprintln!("healthy: {said}");
    let healthy: u64 = stdout.split_whitespace().next().unwrap().parse().unwrap();

    let file = cluster.query("select pg_relation_filepath('damaged_i_idx')");
    cluster.stop();
    let index = std::fs::OpenOptions::new()
        .write(true)
        .open(cluster.data.join(file))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&index, &[0x5a; 8192], 8192).unwrap();
    // The agent's sync point does not flush the mount: PostgreSQL's own
    // writes are fsynced, and so must this one be.
    index.sync_all().unwrap();
    drop(index);
    cluster.start();
    let out = verify();
    let said = format!("{out:?}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed its restore test"), "{said}");
    assert!(stderr.contains("damaged_i_idx"), "{said}");
    eprintln!("damaged: {said}");
    let damaged: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    cluster.stop();

    let listing = run(lsvfs().arg("sync-points").arg(&m.volume).arg("--json"));
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let checks: Vec<(u64, bool, String)> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["check"].is_null())
        .map(|p| {
            let c = &p["check"];
            assert_eq!(c["tool"], "pg_amcheck", "{p}");
            let detail = c["detail"].as_str().unwrap().to_string();
            (
                p["id"].as_u64().unwrap(),
                c["ok"].as_bool().unwrap(),
                detail,
            )
        })
        .collect();
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!((checks[0].0, checks[0].1), (healthy, true), "{checks:?}");
    assert_eq!((checks[1].0, checks[1].1), (damaged, false), "{checks:?}");
    let text = run(lsvfs().arg("sync-points").arg(&m.volume));
    assert!(text.contains("(restore test FAILED "), "{text}");
    // Nothing of the tests is left mounted.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains("lsvfs-verify-"), "{mounts}");
}
