//! `lsvfs sync-point` (through the mount's control file) and
//! `lsvfs sync-points` (from the volume's catalog).

use super::Usage;
use crate::Volume;
use crate::control::{CONTROL_DIR, SYNC_POINT_FILE};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub fn take(mountpoint: &Path, label: &str) -> Result<()> {
    let abs = std::path::absolute(mountpoint)?;
    match crate::fuse::mounts().iter().find(|m| m.mountpoint == abs) {
        None => {
            return Err(Usage(format!("{} is not an lsvfs mount", mountpoint.display())).into());
        }
        Some(m) if m.view.is_some() => {
            return Err(Usage(format!(
                "{} is a read-only view of sync point {}; take sync points on the volume's own mount",
                mountpoint.display(),
                m.view.unwrap_or_default()
            ))
            .into());
        }
        Some(_) => {}
    }
    if let Err(e) = crate::control::parse_label(label.as_bytes()) {
        return Err(Usage(format!("invalid label: {e}")).into());
    }
    let path = abs.join(CONTROL_DIR).join(SYNC_POINT_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // One write with the newline: an empty label must still reach the file.
    file.write_all(format!("{label}\n").as_bytes())
        .with_context(|| format!("sync point on {} failed", mountpoint.display()))?;
    let mut answer = String::new();
    file.read_to_string(&mut answer)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let Some(id) = answer.split(' ').next().filter(|id| !id.is_empty()) else {
        bail!("{} gave no answer", path.display());
    };
    println!("{id}");
    Ok(())
}

#[derive(Serialize)]
struct Listed {
    id: u64,
    time: String,
    time_ns: u64,
    label: String,
    requester: String,
    segment: u64,
    location: &'static str,
}

/// A volume directory, or the volume behind an lsvfs mount point.
pub fn volume_of(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    Ok(crate::fuse::mounts()
        .into_iter()
        .find(|m| m.mountpoint == abs)
        .map_or(abs, |m| m.volume))
}

pub fn list(path: &Path, json: bool) -> Result<()> {
    let volume = volume_of(path)?;
    let points = Volume::sync_points_of(&volume)?;
    let in_primary = Volume::views_in_primary(&volume, &points)?;
    let listed: Vec<Listed> = points
        .iter()
        .zip(in_primary)
        .map(|(p, in_primary)| Listed {
            id: p.info.id,
            time: crate::time::rfc3339(p.info.time_ns),
            time_ns: p.info.time_ns,
            label: p.info.label.clone(),
            requester: p.info.requester.clone(),
            segment: p.lsn.seq,
            location: if in_primary { "primary" } else { "archive" },
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    println!(
        "{:>8}  {:<24}  {:<8}  LABEL",
        "ID", "TIME (UTC)", "LOCATION"
    );
    for p in listed {
        println!(
            "{:>8}  {:<24}  {:<8}  {}",
            p.id, p.time, p.location, p.label
        );
    }
    Ok(())
}
