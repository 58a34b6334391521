//! `lsvfs agent postgres`: sync points a PostgreSQL cluster can recover
//! from quickly, labelled with its WAL position, once or every so often.
//!
//! Each round: `CHECKPOINT` (so that recovery from the view replays
//! little WAL), then the cluster's WAL insert position and timeline, then
//! a crash-consistent sync point through the mount's control file (no
//! flush: PostgreSQL fsyncs what it needs, and a flush would only wait on
//! its unsynced writes), labelled `postgres lsn 0/3A000060 timeline 1`.
//! Everything the cluster had committed when the position was read is in
//! the sync point.

use super::sync_point::Mount;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Args<'a> {
    pub mountpoint: &'a Path,
    /// A libpq connection string (`psql -d`).
    pub connection: &'a str,
    /// The psql program.
    pub psql: &'a str,
    /// Run again at this interval, until stopped; else once.
    pub every: Option<Duration>,
}

pub fn postgres(args: &Args) -> Result<()> {
    let mount = Mount::open(args.mountpoint)?;
    let Some(every) = args.every else {
        let (id, label) = round(&mount, args)?;
        println!("{id} {label}");
        return Ok(());
    };
    loop {
        let started = Instant::now();
        match round(&mount, args) {
            Ok((id, label)) => log::info!("sync point {id}: {label}"),
            // A cluster that is down or restarting: the next round tries again.
            Err(e) => log::error!("no sync point this round: {e:#}"),
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

/// One checkpoint and sync point; returns its id and label.
fn round(mount: &Mount, args: &Args) -> Result<(u64, String)> {
    let sql =
        "CHECKPOINT; SELECT pg_current_wal_insert_lsn(), timeline_id FROM pg_control_checkpoint();";
    let out = Command::new(args.psql)
        .args(["-X", "-q", "-A", "-t", "-F", " ", "-v", "ON_ERROR_STOP=1"])
        .arg("-d")
        .arg(args.connection)
        .arg("-c")
        .arg(sql)
        .output()
        .with_context(|| format!("cannot run {}", args.psql))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.psql,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let (Some(lsn), Some(timeline)) = (words.next(), words.next()) else {
        bail!(
            "{} answered {text:?}, not a WAL position and timeline",
            args.psql
        );
    };
    let label = format!("postgres lsn {lsn} timeline {timeline}");
    Ok((mount.sync_point(&label)?, label))
}
