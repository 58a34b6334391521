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
//!
//! With `--verify`, each sync point is then restore-tested (see
//! `pg_verify`) and the outcome recorded in the volume's `checks`, which
//! the listing of sync points shows.

use super::pg_verify::{self, Cluster, Setup};
use super::sync_point::Mount;
use crate::checks::{self, Check};
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
    /// Restore-test each sync point.
    pub verify: Option<Setup<'a>>,
}

pub fn postgres(args: &Args) -> Result<()> {
    let mount = Mount::open(args.mountpoint)?;
    if args.verify.is_some() && unsafe { libc::geteuid() } != 0 {
        bail!("--verify mounts a clone and runs PostgreSQL as its owner: it needs root");
    }
    let Some(every) = args.every else {
        let (id, label) = round(&mount, args)?;
        println!("{id} {label}");
        return match test(&mount, args, id)? {
            Some(c) if !c.ok => bail!("sync point {id} failed its restore test: {}", c.detail),
            Some(c) => {
                println!("verified sync point {id}: {}", c.detail);
                Ok(())
            }
            None => Ok(()),
        };
    };
    loop {
        let started = Instant::now();
        match round(&mount, args).and_then(|(id, label)| {
            log::info!("sync point {id}: {label}");
            Ok((id, test(&mount, args, id)?))
        }) {
            Ok((id, Some(c))) if !c.ok => {
                log::error!("sync point {id} failed its restore test: {}", c.detail)
            }
            Ok((id, Some(c))) => log::info!("verified sync point {id}: {}", c.detail),
            Ok(_) => {}
            // A cluster that is down or restarting: the next round tries again.
            Err(e) => log::error!("no sync point this round: {e:#}"),
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

/// One checkpoint and sync point; returns its id and label.
fn round(mount: &Mount, args: &Args) -> Result<(u64, String)> {
    let text = psql(
        args,
        "CHECKPOINT; SELECT pg_current_wal_insert_lsn(), timeline_id FROM pg_control_checkpoint();",
    )?;
    let [lsn, timeline] = fields(&text, args)?;
    let label = format!("postgres lsn {lsn} timeline {timeline}");
    Ok((mount.sync_point(&label)?, label))
}

/// The restore test of sync point `id` if asked for, recorded.
fn test(mount: &Mount, args: &Args, id: u64) -> Result<Option<Check>> {
    let Some(setup) = &args.verify else {
        return Ok(None);
    };
    let check = match cluster(mount, args) {
        Ok(cluster) => pg_verify::verify(&mount.volume, id, &cluster, setup),
        Err(e) => Check::new(id, false, pg_verify::TOOL, &format!("{e:#}")),
    };
    checks::record(&crate::disk::Real, &mount.volume, check.clone())?;
    Ok(Some(check))
}

/// Where the cluster's data directory is in the volume, and its superuser.
fn cluster(mount: &Mount, args: &Args) -> Result<Cluster> {
    let text = psql(
        args,
        "SELECT current_setting('data_directory'), rolname FROM pg_roles WHERE oid = 10;",
    )?;
    let [data, superuser] = fields(&text, args)?;
    let data = std::fs::canonicalize(data).with_context(|| format!("cannot resolve {data}"))?;
    let root = std::fs::canonicalize(&mount.path)?;
    let Ok(relative) = data.strip_prefix(&root) else {
        bail!(
            "the cluster's data directory {} is not on the mount {}",
            data.display(),
            mount.path.display()
        );
    };
    Ok(Cluster {
        data: relative.to_path_buf(),
        superuser: superuser.to_string(),
    })
}

/// The first row of psql's answer to `sql`, unaligned.
fn psql(args: &Args, sql: &str) -> Result<String> {
    let out = Command::new(args.psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F"])
        .arg(SEPARATOR.to_string())
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
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fields apart: a character that neither a path nor a name holds.
const SEPARATOR: char = '\x1f';

fn fields<'t, const N: usize>(text: &'t str, args: &Args) -> Result<[&'t str; N]> {
    let words: Vec<&str> = text.split(SEPARATOR).collect();
    words
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} answered {text:?}, not {N} fields", args.psql))
}
