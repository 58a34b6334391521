//! `lsvfs set`, `pin`, `unpin` and `prune`: the retention policy of a
//! volume and the prune that applies it (see `crate::retention` and
//! `crate::prune`).

use super::sync_point::volume_of;
use crate::prune::{Options, Report};
use crate::retention::{self, Keep, parse_duration};
use crate::view::Selector;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The rules, as flags (create, set, prune).
#[derive(clap::Args, Default)]
pub struct KeepArgs {
    /// Keep the newest N sync points.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_last: Option<u32>,
    /// Keep the newest sync point of each of the last N hours that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_hourly: Option<u32>,
    /// Keep the newest sync point of each of the last N days (UTC) that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_daily: Option<u32>,
    /// Keep the newest sync point of each of the last N weeks (Monday to
    /// Sunday, UTC) that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_weekly: Option<u32>,
    /// Keep the newest sync point of each of the last N months (UTC) that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_monthly: Option<u32>,
    /// Keep every sync point at most DURATION older than the newest one
    /// (e.g. 36h, 7d, 2w, 1y, 1d12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    keep_within: Option<u64>,
    /// Keep every sync point whose label matches GLOB (`*` any text, `?`
    /// one character); may be given several times.
    #[arg(long, value_name = "GLOB")]
    keep_label: Vec<String>,
}

impl KeepArgs {
    pub fn keep(&self) -> Keep {
        Keep {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            within_s: self.keep_within,
            labels: self.keep_label.clone(),
        }
    }
}

/// `lsvfs set`: changes the retention rules (rule by rule; `clear` first
/// drops them all) and the automatic prune.
pub fn set(path: &Path, keep: &KeepArgs, clear: bool, auto: Option<bool>) -> Result<()> {
    let dir = volume_of(path)?;
    let disk = crate::disk::Real;
    let r = retention::update(&disk, &dir, |r, _| {
        if clear {
            r.keep = Keep::default();
        }
        r.keep = r.keep.overridden_by(&keep.keep());
        if let Some(a) = auto {
            r.auto = a;
        }
        Ok(())
    })
    .with_context(|| format!("cannot change the retention of {}", dir.display()))?;
    println!("{}: {}", dir.display(), r.describe());
    Ok(())
}

/// `lsvfs pin` and `lsvfs unpin`.
pub fn pin(path: &Path, which: &str, pinned: bool) -> Result<()> {
    let dir = volume_of(path)?;
    let disk = crate::disk::Real;
    let mut id = 0;
    let r = retention::update(&disk, &dir, |r, points| {
        // A pinned sync point is never forgotten, so it is always listed.
        id = Selector::parse(which).resolve(points)?.info.id;
        match pinned {
            true => r.pinned.push(id),
            false => r.pinned.retain(|p| *p != id),
        }
        Ok(())
    })
    .with_context(|| format!("cannot change the pins of {}", dir.display()))?;
    let what = if pinned { "pinned" } else { "unpinned" };
    println!("sync point {id} {what}; pinned now: {:?}", r.pinned);
    Ok(())
}

#[derive(Serialize)]
struct Json<'a> {
    volume: String,
    store: &'a str,
    dry_run: bool,
    keep: String,
    seconds: f64,
    sync_points: Vec<JsonPoint<'a>>,
    forgotten: Vec<u64>,
    objects_before: u64,
    bytes_before: u64,
    deleted: Vec<JsonObject<'a>>,
    bytes_freed: u64,
}

#[derive(Serialize)]
struct JsonPoint<'a> {
    id: u64,
    time: String,
    label: &'a str,
    keep: bool,
    reasons: Vec<&'static str>,
    window: [u64; 2],
    alone_bytes: u64,
}

#[derive(Serialize)]
struct JsonObject<'a> {
    name: &'a str,
    segment: u64,
    bytes: u64,
}

/// `lsvfs prune`.
pub fn prune(path: &Path, keep: &KeepArgs, dry_run: bool, json: bool) -> Result<()> {
    let dir = volume_of(path)?;
    let bar = super::progress::Bar::new(format!("pruning {}", dir.display()), "objects");
    let options = Options {
        keep: keep.keep(),
        dry_run,
        progress: Some(std::rc::Rc::new(move |done, total| bar.set(done, total))),
        ..Options::default()
    };
    let started = Instant::now();
    let report = crate::prune::prune(&crate::disk::real(), &dir, None, &options)
        .with_context(|| format!("cannot prune {}", dir.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    match json {
        true => println!(
            "{}",
            serde_json::to_string_pretty(&as_json(&report, seconds))?
        ),
        false => print_report(&report, seconds),
    }
    Ok(())
}

fn as_json(r: &Report, seconds: f64) -> Json<'_> {
    Json {
        volume: r.volume.to_hex(),
        store: &r.store,
        dry_run: r.dry_run,
        keep: r.keep.describe(),
        seconds,
        sync_points: r
            .points
            .iter()
            .map(|d| JsonPoint {
                id: d.point.info.id,
                time: crate::time::rfc3339(d.point.info.time_ns),
                label: &d.point.info.label,
                keep: !d.reasons.is_empty(),
                reasons: d.reasons.iter().map(|r| r.name()).collect(),
                window: [*d.window.start(), *d.window.end()],
                alone_bytes: d.alone_bytes,
            })
            .collect(),
        forgotten: r.forgotten().map(|d| d.point.info.id).collect(),
        objects_before: r.objects_before,
        bytes_before: r.bytes_before,
        deleted: r
            .deleted
            .iter()
            .map(|o| JsonObject {
                name: &o.name,
                segment: o.seq,
                bytes: o.bytes,
            })
            .collect(),
        bytes_freed: r.bytes_freed(),
    }
}

fn print_report(r: &Report, seconds: f64) {
    let verb = if r.dry_run { "would forget" } else { "forgot" };
    println!("volume {} (store {})", r.volume.to_hex(), r.store);
    println!("policy: keep {}", r.keep.describe());
    println!(
        "{:>8}  {:<24}  {:<7}  {:<22}  LABEL",
        "ID", "TIME (UTC)", "ACTION", "REASONS"
    );
    for d in &r.points {
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.name()).collect();
        let action = if reasons.is_empty() { "forget" } else { "keep" };
        println!(
            "{:>8}  {:<24}  {:<7}  {:<22}  {}",
            d.point.info.id,
            crate::time::rfc3339(d.point.info.time_ns),
            action,
            reasons.join(","),
            d.point.info.label
        );
    }
    let deleted = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} of {} sync points; {deleted} {} of {} objects, {} of {} bytes, in {seconds:.2} s",
        r.forgotten().count(),
        r.points.len(),
        r.deleted.len(),
        r.objects_before,
        r.bytes_freed(),
        r.bytes_before
    );
}
