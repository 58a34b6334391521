//! `lsvfs verify`: checks a volume's archived objects and primary segments
//! (or a backing store's objects alone, see `crate::verify`) and prints each
//! damaged one with the sync points it breaks; exit code 1 on any damage.
//! With `--repair`, damaged objects whose segment primary storage still
//! holds are stored again first (see `crate::verify::repair`).

use super::progress::Bar;
use super::sync_point::volume_of;
use crate::format::VolumeId;
use crate::layout::Source;
use crate::verify::{Damage, Place, Report};
use anyhow::{Result, anyhow};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Damage was found: reported on stdout, then this line (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Damaged(String);

#[derive(Serialize)]
struct Json<'a> {
    volume: String,
    store: &'a str,
    read_data: bool,
    objects: u64,
    segments: u64,
    bytes_read: u64,
    seconds: f64,
    sync_points: u64,
    ok: bool,
    damaged: Vec<JsonDamage<'a>>,
    repaired: Vec<JsonDamage<'a>>,
}

#[derive(Serialize)]
struct JsonDamage<'a> {
    kind: &'static str,
    segment: u64,
    name: &'a str,
    location: &'a str,
    error: &'a str,
    breaks: &'a [u64],
    at_risk: &'a [u64],
}

/// Verifies the volume or store at `path` (a volume directory, a mount
/// point, a store directory or an `s3://` URL).
pub fn run(
    path: &Path,
    volume_id: Option<VolumeId>,
    read_data: bool,
    repair: bool,
    json: bool,
) -> Result<()> {
    let not_a_volume = || {
        anyhow!(
            "--repair needs the volume's directory: it stores objects again from the \
             volume's primary storage, which {} does not hold",
            path.display()
        )
    };
    let source = match crate::policy::store_url(path) {
        Some(_) if repair => return Err(not_a_volume()),
        Some(_) => path.to_path_buf(),
        None => volume_of(path)?,
    };
    let source = crate::layout::source(&source, volume_id)?;
    let repair_dir = match (&source, repair) {
        (_, false) => None,
        (Source::Volume(dir), true) => Some(dir.clone()),
        (Source::Store(_), true) => return Err(not_a_volume()),
    };
    let start = Instant::now();
    let bar = Bar::new(
        format!("verifying {}", path.display()),
        "objects and segments",
    );
    let progress = |done, total| {
        if !json {
            bar.set(done, total)
        }
    };
    let report = match repair_dir {
        Some(dir) => crate::verify::repair(&dir, read_data, &progress).map_err(|e| match e {
            crate::Error::Locked { holder, .. } => anyhow!(
                "cannot repair {}: the volume is in use by {holder}; unmount it first",
                path.display()
            ),
            e => e.into(),
        })?,
        None => crate::verify::verify(&source, read_data, &progress)?,
    };
    drop(bar);
    let seconds = start.elapsed().as_secs_f64();
    if json {
        print_json(&report, read_data, seconds)?;
    } else {
        print_human(&report, seconds);
    }
    match report.damages.len() {
        0 => Ok(()),
        n => Err(Damaged(format!("{n} damaged in {}", path.display())).into()),
    }
}

fn kind(place: Place) -> &'static str {
    match place {
        Place::Object => "object",
        Place::Primary => "primary",
    }
}

fn print_json<'a>(report: &'a Report, read_data: bool, seconds: f64) -> Result<()> {
    let listed = |damages: &'a [Damage]| {
        damages
            .iter()
            .map(|d| JsonDamage {
                kind: kind(d.place),
                segment: d.seq,
                name: &d.name,
                location: &d.location,
                error: &d.error,
                breaks: &d.breaks,
                at_risk: &d.at_risk,
            })
            .collect()
    };
    let out = Json {
        volume: report.volume.map(|v| v.to_hex()).unwrap_or_default(),
        store: &report.store,
        read_data,
        objects: report.objects,
        segments: report.segments,
        bytes_read: report.bytes_read,
        seconds,
        sync_points: report.sync_points,
        ok: report.damages.is_empty(),
        damaged: listed(&report.damages),
        repaired: listed(&report.repaired),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_human(report: &Report, seconds: f64) {
    for d in &report.repaired {
        println!(
            "repaired: segment {}, object {} in {}, from primary storage (it was: {})",
            d.seq, d.name, d.location, d.error
        );
    }
    for d in &report.damages {
        println!("{}", damage_line(d));
    }
    let verdict = match report.damages.len() {
        0 => "OK".to_string(),
        n => format!("{n} damaged"),
    };
    println!(
        "checked {} objects, {} segments, {:.1} MiB read in {:.1} s: {verdict}",
        report.objects,
        report.segments,
        report.bytes_read as f64 / (1 << 20) as f64,
        seconds
    );
}

/// One line: what is damaged, where, why, and what it breaks.
fn damage_line(d: &Damage) -> String {
    let what = match d.place {
        Place::Object => format!("object {} in {}", d.name, d.location),
        Place::Primary => format!("primary segment {}", d.name),
    };
    let ids = |ids: &[u64]| {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        ids.join(", ")
    };
    let effect = match (&d.breaks[..], &d.at_risk[..]) {
        ([], []) => "breaks no sync point".to_string(),
        ([], risk) => format!(
            "sync points at risk (the other copy is intact): {}",
            ids(risk)
        ),
        (broken, _) => format!("breaks sync points {}", ids(broken)),
    };
    format!("damaged: segment {}, {what}: {}; {effect}", d.seq, d.error)
}
