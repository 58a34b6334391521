//! `lsvfs rollback`, `restore` and `diff`: the live volume against its
//! sync points (see `crate::rollback`, `crate::restore`, `crate::diff`).

use super::sync_point::volume_of;
use crate::changes::{Compare, Touched};
use crate::diff::{Change, Entry, diff};
use crate::restore::{Report as RestoreReport, Request, restore_at};
use crate::rollback::{Options, Report, rollback};
use crate::view::{Selector, View};
use crate::volume::Volume;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;

/// `lsvfs diff VOLUME A [B]`: B is the live volume when not given.
pub fn diff_cmd(path: &Path, a: &str, b: Option<&str>, json: bool) -> Result<()> {
    let dir = volume_of(path)?;
    let open = |s: &str| View::open(&dir, None, &Selector::parse(s), &|_, _| {});
    let old = open(a)?;
    let new = match b {
        Some(b) => open(b)?,
        None => View::live(&dir).context("cannot read the live volume")?,
    };
    let (lo, hi) = match old.point.lsn <= new.point.lsn {
        true => (old.point.lsn, new.point.lsn),
        false => (new.point.lsn, old.point.lsn),
    };
    let touched = Touched::between(old.segments(), lo, hi)?;
    let cmp = Compare {
        old: old.tree(),
        new: new.tree(),
        touched: &touched,
    };
    print_entries(&diff(&cmp)?, json)
}

/// Prints changed paths, one per line (or one JSON array), and a count
/// on stderr.
fn print_entries(entries: &[Entry], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(entries)?);
        return Ok(());
    }
    for e in entries {
        let mut what = Vec::new();
        for (set, name) in [
            (e.data, "data"),
            (e.attributes, "attributes"),
            (e.xattrs, "xattrs"),
        ] {
            if set {
                what.push(name);
            }
        }
        let what = match what.is_empty() {
            true => String::new(),
            false => format!("  ({})", what.join(", ")),
        };
        match &e.from {
            Some(from) => println!("{:<8}  {from} -> {}{what}", e.change.name(), e.path),
            None => println!("{:<8}  {}{what}", e.change.name(), e.path),
        }
    }
    let count = |c| entries.iter().filter(|e| e.change == c).count();
    eprintln!(
        "{} created, {} deleted, {} modified, {} renamed",
        count(Change::Created),
        count(Change::Deleted),
        count(Change::Modified),
        count(Change::Renamed)
    );
    Ok(())
}

/// `lsvfs rollback VOLUME --to SYNC`.
pub fn rollback_cmd(path: &Path, to: &str, dry_run: bool, json: bool) -> Result<()> {
    let dir = volume_of(path)?;
    let vol = Volume::open(&dir)?;
    let started = Instant::now();
    let selector = Selector::parse(to);
    if dry_run && !json {
        let target = vol.view(selector.resolve(&vol.sync_points()?)?.info.id)?;
        let touched = Touched::between(vol.segments(), target.point.lsn, vol.log_end())?;
        let cmp = Compare {
            old: vol.tree(),
            new: target.tree(),
            touched: &touched,
        };
        print_entries(&diff(&cmp)?, false)?;
    }
    let options = Options {
        dry_run,
        ..Default::default()
    };
    let report = rollback(&vol, &selector, &options)
        .with_context(|| format!("cannot roll {} back", dir.display()))?;
    vol.close()?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["dry_run"] = dry_run.into();
        value["seconds"] = seconds.into();
        println!("{value}");
        return Ok(());
    }
    print_rollback(&dir, &report, dry_run, seconds);
    Ok(())
}

fn print_rollback(dir: &Path, r: &Report, dry_run: bool, seconds: f64) {
    if r.is_empty() {
        println!(
            "{} already equals sync point {}; nothing to do",
            dir.display(),
            r.target
        );
        return;
    }
    let verb = match dry_run {
        true => "would roll",
        false => "rolled",
    };
    println!(
        "{verb} {} back to sync point {}: inodes {} restored, {} removed, {} modified; {} directory entries; {} blocks ({} bytes) rewritten, {} bytes appended, in {seconds:.2} s",
        dir.display(),
        r.target,
        r.restored,
        r.removed,
        r.modified,
        r.entries,
        r.blocks,
        r.data_bytes,
        r.written_bytes
    );
    if !r.exact {
        println!(
            "(prune deleted segments written since sync point {}: every file was compared by content)",
            r.target
        );
    }
    if let Some(before) = r.before {
        println!(
            "the state before is sync point {before} (before-rollback-to-{}); `lsvfs rollback {} --to {before}` undoes this",
            r.target,
            dir.display()
        );
    }
}

/// `lsvfs restore VOLUME|MOUNTPOINT --at SYNC PATH... [--to DEST]
/// [--overwrite]`: on a mounted volume the mount's daemon restores (the
/// request goes through `.lsvfs/restore`), else this process does.
pub fn restore_cmd(path: &Path, request: &Request) -> Result<()> {
    let dir = volume_of(path)?;
    let started = Instant::now();
    let report = match crate::fuse::mounts().into_iter().find(|m| m.volume == dir) {
        Some(m) => restore_mounted(&m.mountpoint, request)?,
        None => {
            let fs = crate::fs::Fs::new(Volume::open(&dir)?)?;
            let at = Selector::parse(&request.at);
            let report = restore_at(&fs, &at, &request.paths, &request.options)
                .with_context(|| format!("cannot restore from {}", request.at))?;
            fs.into_volume().close()?;
            report
        }
    };
    println!(
        "restored {} files, {} hard links, {} directories ({} bytes; {} files replaced) from sync point {} in {:.2} s",
        report.files,
        report.links,
        report.dirs,
        report.data_bytes,
        report.replaced,
        report.sync_point,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Asks the daemon of the mount at `mountpoint` to restore.
fn restore_mounted(mountpoint: &Path, request: &Request) -> Result<RestoreReport> {
    use crate::control_files::{CONTROL_DIR, RESTORE_FILE};
    use std::io::{Read, Write};
    let path = mountpoint.join(CONTROL_DIR).join(RESTORE_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(&serde_json::to_vec(request)?)
        .with_context(|| format!("restore through {} failed", path.display()))?;
    let mut answer = String::new();
    file.read_to_string(&mut answer)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut value: serde_json::Value = serde_json::from_str(&answer)
        .with_context(|| format!("{} gave no answer", path.display()))?;
    if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("cannot restore from {}: {e}", request.at);
    }
    Ok(serde_json::from_value(value["report"].take())?)
}
