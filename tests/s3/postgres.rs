//! PostgreSQL 15 under pgbench on a volume whose store is S3, with small
//! segments (4 MiB), a ship interval of 1 s and a sync point every second; then
//! kill -9 of the daemon and the volume directory deleted whole. From a
//! fresh directory, with only the URL and the AWS environment:
//! `sync-points` lists every sync point acknowledged longer than the ship
//! interval (plus a margin) before the kill; the data directory copied with
//! cp -a out of `mount --at` the newest recovers, pg_amcheck and
//! pg_checksums find nothing wrong, and every commit acknowledged before
//! that sync point was asked for is there; PostgreSQL starts directly on a
//! `clone` of it. Prints the recovery point (acknowledgment of a sync point
//! to the first listing that has it) and the times of `mount --at` and
//! `clone` from the store.

use super::common::mount::{Detach, Mounted, listed_ids, lsvfs, run};
use super::common::pg::{
    BIN, Cluster, acked_before, check_recovered, copy_out_of_view, counter, ensure_user, kill_all,
    pg_available, tps,
};
use super::common::s3::{BUCKET, S3Server, free_port};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long pgbench runs before the daemon is killed.
const BENCH_SECS: u64 = 20;
/// The volume's ship interval, and the margin after it within which a sync
/// point must be listed.
const SHIP_INTERVAL: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_secs(1);

/// A sync point: its id, when it was asked for and when acknowledged.
struct Point {
    id: u64,
    asked: Instant,
    acked: Instant,
}

/// When the listing first had each id (the start and the end of that
/// `sync-points`: the store had it by the end, maybe from the start), and
/// the longest a `sync-points` took.
struct Listed {
    first: BTreeMap<u64, (Instant, Instant)>,
    slowest: Duration,
}

/// Lists the store's sync points every 200 ms until `stop`.
fn watch_listing(
    env: Vec<(&'static str, String)>,
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Listed> {
    std::thread::spawn(move || {
        let mut first = BTreeMap::new();
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let out = lsvfs()
                .envs(env.clone())
                .arg("sync-points")
                .arg(&url)
                .output();
            let now = Instant::now();
            slowest = slowest.max(now - start);
            if let Some(out) = out.ok().filter(|o| o.status.success()) {
                for id in listed_ids(&String::from_utf8_lossy(&out.stdout)) {
                    first.entry(id).or_insert((start, now));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Listed { first, slowest }
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

/// Bytes under `dir`, as `du -sb` counts them.
fn size_of(dir: &Path) -> u64 {
    let out = run(Command::new("du").arg("-sb").arg(dir));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn postgres_recovers_from_the_s3_url_alone_after_kill_9_and_the_volume_lost() {
    assert!(pg_available(), "PostgreSQL 15 is not installed in {BIN}");
    ensure_user();
    let server = S3Server::start();
    let env = server.env();
    let env_ref: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("s3://{BUCKET}/pg");
    // Capacity is 3/4 of the working set: 384 MiB holds the cluster and
    // max_wal_size of WAL; the archive holds more than that.
    let args = [
        "--working-set",
        "128",
        "--backing-store",
        &url,
        "--segment-size",
        "4M",
        "--ship-interval",
        "1s",
    ];
    let m = Mounted::with_env(&args, "allow_other", &env_ref);
    let cluster = Cluster::init(m.path("pgdata"), free_port());
    cluster.start();
    run(cluster
        .client("pgbench")
        .args(["-i", "-s", "5", "-q", "postgres"]));
    cluster.create_acked();

    // pgbench runs past the kill; the counter and the sync points stop
    // just before it.
    let mut bench = cluster.pgbench(BENCH_SECS + 30);
    let stop = Arc::new(AtomicBool::new(false));
    let count = counter(&cluster, stop.clone());
    let stop_listing = Arc::new(AtomicBool::new(false));
    let listing = watch_listing(env.clone(), url.clone(), stop_listing.clone());
    let mut points = Vec::new();
    let end = Instant::now() + Duration::from_secs(BENCH_SECS);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        let asked = Instant::now();
        let id = run(lsvfs().arg("sync-point").arg(&m.mnt));
        let acked = Instant::now();
        let id = id.trim().parse().unwrap();
        points.push(Point { id, asked, acked });
    }
    stop.store(true, Ordering::Relaxed);
    let acked = count.join().unwrap();
    let postmaster = cluster.postmaster_pid();
    let killed = Instant::now();
    m.kill_daemon();
    stop_listing.store(true, Ordering::Relaxed);
    let _ = bench.kill();
    let bench = bench.wait_with_output().unwrap();
    if let Some(pid) = postmaster {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    kill_all();
    let listed_at = listing.join().unwrap();
    std::fs::remove_dir_all(&m.volume).unwrap();
    println!(
        "pgbench until the kill: {}; {} counter commits; {} sync points",
        tps(&String::from_utf8_lossy(&bench.stdout)),
        acked.len(),
        points.len()
    );
    assert!(points.len() >= 10, "{} sync points", points.len());

    // From a fresh directory, with only the URL and the environment.
    let fresh = tempfile::Builder::new()
        .prefix("lsvfs-fresh")
        .tempdir()
        .unwrap();
    let on_s3 = || {
        let mut cmd = lsvfs();
        cmd.envs(server.env()).current_dir(fresh.path());
        cmd
    };
    let listed = run(on_s3().arg("sync-points").arg(&url));
    let ids = listed_ids(&listed);
    for p in &points {
        if p.acked + SHIP_INTERVAL + MARGIN <= killed {
            assert!(
                ids.contains(&p.id),
                "sync point {} acknowledged {:?} before the kill is not listed:\n{listed}",
                p.id,
                killed - p.acked
            );
        }
    }
    let newest = *ids.iter().max().expect("no sync point listed");
    let chosen = points
        .iter()
        .find(|p| p.id == newest)
        .unwrap_or_else(|| panic!("sync point {newest} was never taken:\n{listed}"));
    let before = acked_before(&acked, chosen.asked);

    let listed_by = |end: bool| {
        let mut delays: Vec<Duration> = points
            .iter()
            .filter_map(|p| {
                let (start, stop) = listed_at.first.get(&p.id)?;
                let at = if end { stop } else { start };
                Some(at.saturating_duration_since(p.acked))
            })
            .collect();
        delays.sort();
        delays
    };
    let (delays, delays_low) = (listed_by(true), listed_by(false));
    assert!(!delays.is_empty(), "the listing never showed a sync point");

    let copy = tempfile::Builder::new()
        .prefix("lsvfs-pgcopy")
        .tempdir()
        .unwrap();
    let (data, mount_time) =
        copy_out_of_view(on_s3, Path::new(&url), &newest.to_string(), copy.path());
    let data_bytes = size_of(&data);
    check_recovered(
        data,
        free_port(),
        &format!("sync point {newest} from {url}"),
        before,
    );

    let clones = tempfile::Builder::new()
        .prefix("lsvfs-pgclone")
        .tempdir()
        .unwrap();
    let newvol = clones.path().join("vol");
    let start = Instant::now();
    run(on_s3()
        .arg("clone")
        .arg(&url)
        .args(["--at", &newest.to_string()])
        .arg(&newvol));
    let clone_time = start.elapsed();
    let mnt = clones.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(lsvfs()
        .arg("mount")
        .arg(&newvol)
        .arg(&mnt)
        .args(["-o", "allow_other"]));
    let detach = Detach(&mnt);
    let data = mnt.join("pgdata");
    std::fs::remove_file(data.join("postmaster.pid")).ok();
    let cloned = Cluster::at(data, free_port());
    cloned.start();
    let max = cloned.max_acked();
    assert!(
        max >= before,
        "the clone of {newest} lost acknowledged commits"
    );
    let history = cloned.query("select count(*) from pgbench_history");
    cloned.stop();
    drop(cloned);
    run(lsvfs().arg("unmount").arg(&mnt));
    drop(detach);

    println!("recovery figures (S3 store on moto, 4 MiB segments, ship interval 1 s):");
    println!(
        "  recovery point, acknowledgment to the first sync-points listing it (polled every 200 ms; slowest listing {:?}), {} of {} sync points: p50 {:?} to {:?}, max {:?} to {:?} (from the start to the end of that listing)",
        listed_at.slowest,
        delays.len(),
        points.len(),
        percentile(&delays_low, 50),
        percentile(&delays, 50),
        percentile(&delays_low, 100),
        percentile(&delays, 100)
    );
    println!(
        "  listed after the kill: {} sync points, newest {newest}; not listed: {:?}",
        ids.len(),
        points
            .iter()
            .filter(|p| !ids.contains(&p.id))
            .map(|p| (p.id, killed - p.acked))
            .collect::<Vec<_>>()
    );
    println!(
        "  mount --at {newest} from the store: {mount_time:?}; clone: {clone_time:?}; data directory {:.1} MiB",
        data_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "  clone: counter {max} (acknowledged before: {before}), {history} pgbench_history rows"
    );
}
