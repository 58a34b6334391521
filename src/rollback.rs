//! Whole-volume rollback: `lsvfs rollback VOLUME --to SYNC`.
//!
//! The live volume is made equal to a sync point's view — contents,
//! attributes, names, hard links, xattrs, created and deleted files — by
//! appending records for the keys that differ only (see
//! [`crate::changes`]): time and bytes grow with what changed since the
//! sync point, not with the volume. Inodes come back with their own
//! numbers, so hard links stay links; inode numbers handed out since stay
//! used (the counter never goes back).
//!
//! Nothing of the history goes: every sync point stays listed and
//! mountable, and before changing anything rollback takes one more,
//! labelled `before-rollback-to-ID`, so the rollback can itself be undone
//! by rolling back to that one.
//!
//! The order, which makes a crash at any point leave either the volume as
//! it was or the target, never a mix:
//! 1. the "before" sync point (durable), taken right before the first
//!    record (a rollback that finds nothing to change takes none);
//! 2. the intent file `rollback` in the volume directory (written whole
//!    and fsynced), naming the target;
//! 3. the records, in groups;
//! 4. fsync, then the intent file is removed (and the directory fsynced).
//!
//! Opening a volume whose intent file is there completes the rollback
//! before anything else may write: the difference to the target is
//! computed again from the log as it is (so records a crash left half
//! way count as changes like any other) and written.

use crate::batch::Batch;
use crate::changes::{Compare, Touched, attrs_in, blocks_from};
use crate::disk::Disk;
use crate::error::{Error, Result, io};
use crate::format::{DecodeError, InodeAttrs, ORPHANS_INO, Record};
use crate::index::Index;
use crate::layout;
use crate::log::segment::fsync_dir;
use crate::view::{Selector, View};
use crate::volume::Volume;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The intent file's name in the volume directory.
pub const INTENT_FILE: &str = "rollback";
const INTENT_MAGIC: &str = "lsvfs rollback 1";

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// For crash tests: stop with [`Error::Halted`] after this many
    /// changes (the "before" sync point, the intent, then each group).
    #[doc(hidden)]
    pub halt_after: Option<usize>,
}

/// What a rollback changed (or, dry, would change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The sync point rolled back to.
    pub target: u64,
    /// The sync point that keeps the state from before the rollback.
    pub before: Option<u64>,
    /// Inodes that come back (deleted since the sync point).
    pub restored: u64,
    /// Inodes that go (created since).
    pub removed: u64,
    /// Inodes whose attributes, contents or xattrs are put back.
    pub modified: u64,
    /// Directory entries put back or removed.
    pub entries: u64,
    /// Data blocks rewritten, and their bytes.
    pub blocks: u64,
    pub data_bytes: u64,
    /// Segment bytes appended (0 when dry).
    pub written_bytes: u64,
    /// Whether only what the log says changed was compared (false when
    /// prune deleted segments written since the sync point: then every
    /// key was compared, by content).
    pub exact: bool,
}

impl Report {
    /// Whether the live volume already equals the target.
    pub fn is_empty(&self) -> bool {
        self.restored + self.removed + self.modified + self.entries == 0
    }
}

/// Rolls the live volume `vol` (opened by the caller, so no one else
/// writes it) back to the sync point `to` names.
pub fn rollback(vol: &Volume, to: &Selector, options: &Options) -> Result<Report> {
    let target = to.resolve(&vol.sync_points()?)?;
    let view = vol.view(target.info.id)?;
    if options.dry_run {
        return apply(vol, &view, None);
    }
    let writing = Writing {
        begin: true,
        halt_after: options.halt_after,
    };
    let report = apply(vol, &view, Some(writing))?;
    if report.before.is_some() {
        vol.fsync()?;
        Intent::clear(vol.disk(), vol.dir())?;
    }
    Ok(report)
}

/// How a rollback writes.
struct Writing {
    /// Take the "before" sync point and record the intent before the
    /// first record (not when resuming, nor when nothing differs).
    begin: bool,
    halt_after: Option<usize>,
}

/// The "before" sync point, then the intent; returns the sync point.
fn begin(vol: &Volume, target: u64, steps: &mut Steps) -> Result<u64> {
    let label = format!("before-rollback-to-{target}");
    let before = vol.sync_point(&label, "lsvfs rollback")?.info.id;
    steps.done()?;
    Intent { target, before }.save(vol.disk(), vol.dir())?;
    steps.done()?;
    Ok(before)
}

/// Completes a rollback that an earlier process began and did not end
/// (its intent file is there): called by [`Volume::open_with`] before
/// the volume is handed out.
pub(crate) fn resume(vol: &Volume) -> Result<()> {
    let Some(intent) = Intent::load(vol.disk(), vol.dir())? else {
        return Ok(());
    };
    log::warn!(
        "{}: completing the rollback to sync point {} that was interrupted",
        vol.dir().display(),
        intent.target
    );
    let view = vol.view(intent.target).map_err(|e| {
        Error::Inconsistent(format!(
            "an interrupted rollback to sync point {} cannot be completed: {e}",
            intent.target
        ))
    })?;
    let writing = Writing {
        begin: false,
        halt_after: None,
    };
    apply(vol, &view, Some(writing))?;
    vol.fsync()?;
    Intent::clear(vol.disk(), vol.dir())
}

/// Computes what makes the live volume equal to `view`, and appends it
/// unless `write` is `None` (a dry run).
fn apply(vol: &Volume, view: &View, write: Option<Writing>) -> Result<Report> {
    let live = vol.tree();
    let mut touched = Touched::between(vol.segments(), view.point.lsn, vol.log_end())?;
    // Orphans the live volume holds go, whenever they were made.
    let orphans = live.list_dir(ORPHANS_INO, None);
    for (name, e) in &orphans {
        touched.add_whole(e.child);
        touched.add_dirent(ORPHANS_INO, name);
    }
    let cmp = Compare {
        old: view.tree(),
        new: live,
        touched: &touched,
    };
    let mut report = Report {
        target: view.point.info.id,
        exact: touched.is_exact(),
        ..Default::default()
    };
    let mut out = Out {
        vol,
        target: view.point.info.id,
        steps: Steps(write.as_ref().and_then(|w| w.halt_after), 0),
        begin: write.as_ref().is_some_and(|w| w.begin),
        batch: write.map(|w| {
            let mut b = Batch::new(vol, "the rollback needs room in the working set");
            b.halt_after = w.halt_after.map(|n| n.saturating_sub(2));
            b
        }),
        before: None,
    };
    let dirents = cmp.dirents();
    for (name, _) in orphans {
        out.add(Record::DirentDelete {
            parent: ORPHANS_INO,
            name,
        })?;
        report.entries += 1;
    }
    let mut whole = HashSet::new();
    for ino in cmp.inos() {
        if inode(&cmp, ino, &mut out, &mut report)? {
            whole.insert(ino);
        }
    }
    for d in dirents {
        // Written whole with their inode, or gone with it.
        if whole.contains(&d.parent) || attrs_in(&cmp.old, d.parent)?.is_none() {
            continue;
        }
        report.entries += 1;
        let record = match d.old {
            Some(e) => Record::Dirent {
                parent: d.parent,
                name: d.name,
                child: e.child,
                kind: e.kind,
            },
            None => Record::DirentDelete {
                parent: d.parent,
                name: d.name,
            },
        };
        out.add(record)?;
    }
    if let Some(batch) = &mut out.batch {
        batch.flush()?;
        report.written_bytes = batch.written;
    }
    report.before = out.before;
    Ok(report)
}

type Cmp<'a> = Compare<'a, Index, RwLock<Index>>;

/// Puts inode `ino` back as the target has it; returns whether it was
/// written whole (with the entries of it as a directory).
fn inode(cmp: &Cmp, ino: u64, out: &mut Out, report: &mut Report) -> Result<bool> {
    let target = attrs_in(&cmp.old, ino)?;
    let live = cmp.new.getattr(ino)?;
    let Some(attrs) = target else {
        if live.is_some() {
            report.removed += 1;
            out.add(Record::InodeDelete { ino })?;
        }
        return Ok(false);
    };
    // Gone from the live volume: written whole. Otherwise compared key by
    // key (all of them if it was deleted since and is back already).
    if live.is_none() {
        report.restored += 1;
        whole_inode(cmp, ino, attrs, out, report)?;
        return Ok(true);
    }
    let mut changed = false;
    if live.as_ref() != Some(&attrs) {
        changed = true;
        out.add(Record::Inode { ino, attrs })?;
    }
    for name in cmp.xattrs(ino)? {
        changed = true;
        let record = match cmp.old.getxattr(ino, &name)? {
            Some(value) => Record::Xattr { ino, name, value },
            None => Record::XattrDelete { ino, name },
        };
        out.add(record)?;
    }
    // Blocks at other positions are compared by their bytes, read run by
    // run: one put back as it was (by an earlier rollback) stays.
    let differ = cmp.blocks(ino, false, false)?;
    // A block the target lacks goes with a truncate, which takes every
    // block from it on: those the target has are written again.
    let cut = differ
        .iter()
        .copied()
        .find(|&b| cmp.old.index.block_lsn(ino, b).is_none());
    let mut compare = differ;
    if let Some(from) = cut {
        changed = true;
        out.add(Record::Truncate {
            ino,
            from_block: from,
        })?;
        compare.retain(|&b| b < from);
        out.blocks(
            cmp,
            report,
            ino,
            &blocks_from(cmp.old.index, ino, from),
            false,
        )?;
    }
    changed |= out.blocks(cmp, report, ino, &compare, true)? > 0;
    report.modified += changed as u64;
    Ok(false)
}

/// Writes everything the target has of `ino`.
fn whole_inode(
    cmp: &Cmp,
    ino: u64,
    attrs: InodeAttrs,
    out: &mut Out,
    report: &mut Report,
) -> Result<()> {
    out.add(Record::Inode { ino, attrs })?;
    for name in cmp.old.xattr_names(ino) {
        if let Some(value) = cmp.old.getxattr(ino, &name)? {
            out.add(Record::Xattr { ino, name, value })?;
        }
    }
    for (name, e) in cmp.old.list_dir(ino, None) {
        report.entries += 1;
        let record = Record::Dirent {
            parent: ino,
            name,
            child: e.child,
            kind: e.kind,
        };
        out.add(record)?;
    }
    out.blocks(cmp, report, ino, &blocks_from(cmp.old.index, ino, 0), false)?;
    Ok(())
}

/// Where a rollback's records go: a batch, or (dry) nowhere but counts.
struct Out<'a> {
    vol: &'a Volume,
    target: u64,
    steps: Steps,
    /// The "before" sync point and the intent are still to come.
    begin: bool,
    batch: Option<Batch<'a>>,
    before: Option<u64>,
}

impl Out<'_> {
    fn add(&mut self, record: Record) -> Result<()> {
        let Some(batch) = &mut self.batch else {
            return Ok(());
        };
        if std::mem::take(&mut self.begin) {
            self.before = Some(begin(self.vol, self.target, &mut self.steps)?);
        }
        batch.add(record)
    }

    /// Blocks `blocks` (ascending) of `ino` as the target has them; with
    /// `compare`, only those whose bytes differ from the live volume's.
    /// Returns how many differ. Read run by run, also when dry.
    fn blocks(
        &mut self,
        cmp: &Cmp,
        report: &mut Report,
        ino: u64,
        blocks: &[u64],
        compare: bool,
    ) -> Result<u64> {
        let mut differ = 0;
        for range in ranges(blocks) {
            let mut live = std::collections::HashMap::new();
            if compare {
                cmp.new
                    .for_each_block(ino, range.start, range.end, |b, _, v| {
                        live.insert(b, v.to_vec());
                        Ok(())
                    })?;
            }
            cmp.old
                .for_each_block(ino, range.start, range.end, |block, _, v| {
                    if compare && live.get(&block).is_some_and(|l| l == v) {
                        return Ok(());
                    }
                    differ += 1;
                    report.blocks += 1;
                    report.data_bytes += v.len() as u64;
                    self.add(Record::Data {
                        ino,
                        block,
                        bytes: v.to_vec(),
                    })
                })?;
        }
        Ok(differ)
    }
}

/// Ascending blocks as ranges of consecutive ones, at most 256 blocks
/// each (what one read may take).
fn ranges(blocks: &[u64]) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some(r) if r.end == b && r.end - r.start < 256 => r.end += 1,
            _ => out.push(b..b + 1),
        }
    }
    out
}

/// Counts changes for [`Options::halt_after`].
struct Steps(Option<usize>, usize);

impl Steps {
    fn done(&mut self) -> Result<()> {
        self.1 += 1;
        match self.0 {
            Some(n) if self.1 >= n => Err(Error::Halted),
            _ => Ok(()),
        }
    }
}

/// A rollback under way: recorded before the first record is written,
/// removed once the last is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    pub target: u64,
    pub before: u64,
}

fn intent_path(dir: &Path) -> PathBuf {
    dir.join(INTENT_FILE)
}

impl Intent {
    /// The intent in volume `dir`, if a rollback is under way.
    pub fn load(disk: &dyn Disk, dir: &Path) -> Result<Option<Intent>> {
        let path = intent_path(dir);
        if !disk.exists(&path) {
            return Ok(None);
        }
        let bytes = disk
            .read(&path)
            .map_err(io(format!("cannot read {}", path.display())))?;
        let damaged = |why| Error::Damaged {
            what: path.display().to_string(),
            source: DecodeError::Invalid(why),
        };
        let text = String::from_utf8(bytes).map_err(|_| damaged("not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(INTENT_MAGIC) {
            return Err(damaged("not a rollback intent"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .ok_or(damaged("a field is missing"))
        };
        Ok(Some(Intent {
            target: field("target ")?,
            before: field("before ")?,
        }))
    }

    fn save(&self, disk: &dyn Disk, dir: &Path) -> Result<()> {
        let text = format!(
            "{INTENT_MAGIC}\ntarget {}\nbefore {}\n",
            self.target, self.before
        );
        layout::write_durably(disk, &intent_path(dir), text.as_bytes())
    }

    fn clear(disk: &dyn Disk, dir: &Path) -> Result<()> {
        let path = intent_path(dir);
        disk.remove_file(&path)
            .map_err(io(format!("cannot remove {}", path.display())))?;
        fsync_dir(disk, dir)
    }
}

/// The sync points a rollback under way in `dir` needs kept: its target
/// and the state from before it.
pub fn needed(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>> {
    Ok(Intent::load(disk, dir)?
        .map(|i| vec![i.target, i.before])
        .unwrap_or_default())
}
