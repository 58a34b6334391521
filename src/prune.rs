//! Prune (`lsvfs prune`, and the archiver when the policy says so): forget
//! the sync points the retention policy does not keep, and delete every
//! archived object that no kept sync point and not the live volume needs.
//!
//! **What is needed.** A sync point in segment S needs the objects of its
//! window: S and every segment back to the `window_start` of S's header.
//! The live volume needs every segment from the oldest still in primary
//! storage, or from its newest segment's `window_start` if that is older
//! (recovery checks that each of those is stored), and everything after:
//! objects of segments not archived yet are never deleted. Objects between
//! two kept windows go too, not only those older than the oldest.
//!
//! **Order**, so that a crash at any moment leaves every listed sync point
//! mountable and no listed one referring to a deleted object:
//!
//! 1. take the retention lock (`prune.lock`: one prune, pin or set at a
//!    time), list the sync points (catalog minus the forgotten set), the
//!    store and the open views' leases, and decide;
//! 2. record the new forgotten set in the volume directory (fsynced);
//! 3. record it in the store, as a new object, then delete the older one;
//! 4. count the leases again (a view that opened since keeps its window);
//! 5. delete the objects no kept window needs, oldest first.
//!
//! A crash after 2 or 3 leaves objects that nothing lists any more; the
//! next prune deletes them. Until 3 has run, a host with only the store
//! still lists the sync points forgotten in 2, and can mount them: nothing
//! they need is deleted before 3. Only this volume's objects are listed,
//! so a store shared by several volumes keeps the others' objects.

use crate::archive::Archive;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::format::VolumeId;
use crate::format::archive::{partial_of, seq_of};
use crate::layout;
use crate::log::catalog::{Catalog, SyncPoint};
use crate::log::segment;
use crate::policy::Policy;
use crate::retention::forgotten::Forgotten;
use crate::retention::{self, Keep, Reason, lease};
use crate::store::ArchiveError;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

/// Told (objects deleted, objects to delete) as a prune deletes.
pub type Progress = std::rc::Rc<dyn Fn(u64, u64)>;

/// How one prune runs.
#[derive(Clone, Default)]
pub struct Options {
    /// Rules that replace the policy's for this run, rule by rule.
    pub keep: Keep,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Do not wait for another prune, pin or set to finish: return
    /// [`Error::Locked`] instead (the archiver's automatic prune).
    pub no_wait: bool,
    /// Told of each object deleted (a store's latency makes many slow).
    pub progress: Option<Progress>,
    /// For crash tests: stop after this many changes (records of the
    /// forgotten set, object deletions), as a crash there would.
    #[doc(hidden)]
    pub halt_after: Option<usize>,
}

/// A sync point as prune saw it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub point: SyncPoint,
    /// Why it is kept; empty when it is forgotten.
    pub reasons: Vec<Reason>,
    /// The segments its view reads.
    pub window: RangeInclusive<u64>,
    /// Bytes of objects that only this sync point needs among those kept
    /// (what forgetting it would free); 0 for a forgotten one.
    pub alone_bytes: u64,
}

/// An archived object of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub seq: u64,
    pub bytes: u64,
}

/// What a prune decided and did.
#[derive(Debug, Clone)]
pub struct Report {
    pub volume: VolumeId,
    pub store: String,
    /// The rules applied.
    pub keep: Keep,
    pub dry_run: bool,
    /// Every sync point listed before the prune, oldest first.
    pub points: Vec<Decided>,
    /// Objects of the volume in the store before the prune.
    pub objects_before: u64,
    pub bytes_before: u64,
    /// Objects deleted (to be deleted, for a dry run), ascending.
    pub deleted: Vec<Object>,
    /// Stopped early by [`Options::halt_after`].
    pub halted: bool,
}

impl Report {
    pub fn forgotten(&self) -> impl Iterator<Item = &Decided> {
        self.points.iter().filter(|d| d.reasons.is_empty())
    }

    pub fn bytes_freed(&self) -> u64 {
        self.deleted.iter().map(|o| o.bytes).sum()
    }
}

/// Prunes the volume in `dir` (mounted or not) by its policy and
/// `options`; `archive` is the volume's own when the caller has it open.
pub fn prune(
    disk: &Arc<dyn Disk>,
    dir: &Path,
    archive: Option<Arc<Archive>>,
    options: &Options,
) -> Result<Report> {
    layout::check_volume(&**disk, dir)?;
    let policy = Policy::load(&**disk, dir)?;
    let keep = policy.retention.keep.overridden_by(&options.keep);
    if keep.is_empty() {
        return Err(Error::Invalid(
            "no retention policy: prune would forget every sync point; give --keep-* rules, or set them with `lsvfs set VOLUME --keep-...`".into(),
        ));
    }
    let _lock = retention::lock(&**disk, dir, !options.no_wait)?;
    let archive = match archive {
        Some(a) => a,
        None => layout::open_archive(disk, dir, &policy, None)?,
    };
    let volume = policy.volume_id()?;
    let old = Forgotten::load(&**disk, dir)?;
    let points = listed(&**disk, dir, &old)?;
    let pinned: BTreeSet<u64> = policy.retention.pinned.iter().copied().collect();
    let mut reasons = retention::select(&points, &keep, &pinned);
    let open = lease::held(&**disk, dir)?;
    let rollback = crate::rollback::needed(&**disk, dir)?;
    for (p, r) in points.iter().zip(&mut reasons) {
        if r.is_empty() && open.contains(&p.info.id) {
            r.push(Reason::OpenView);
        }
        if r.is_empty() && rollback.contains(&p.info.id) {
            r.push(Reason::Rollback);
        }
    }
    let objects = objects_of(&archive)?;
    let layout = Layout::read(&**disk, dir, &archive, &points)?;
    let mut report = Report {
        volume,
        store: archive.store().describe(),
        keep,
        dry_run: options.dry_run,
        objects_before: objects.len() as u64,
        bytes_before: objects.iter().map(|o| o.bytes).sum(),
        points: Vec::new(),
        deleted: Vec::new(),
        halted: false,
    };
    let kept: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
    let alone = layout.alone(&points, &objects, &kept);
    report.points = points
        .into_iter()
        .zip(reasons)
        .zip(alone)
        .map(|((point, reasons), alone_bytes)| Decided {
            window: layout.window(&point),
            point,
            reasons,
            alone_bytes,
        })
        .collect();
    let mut needed = layout.needed(report.points.iter().filter(|d| !d.reasons.is_empty()));
    let doomed = |needed: &BTreeSet<u64>| -> Vec<Object> {
        let live = layout.keep_from;
        objects
            .iter()
            .filter(|o| o.seq < live && !needed.contains(&o.seq))
            .cloned()
            .collect()
    };
    if options.dry_run {
        report.deleted = doomed(&needed);
        return Ok(report);
    }
    let mut steps = Steps {
        done: 0,
        halt_after: options.halt_after,
    };
    let mut new = old.clone();
    for d in report.forgotten() {
        new.insert(d.point.info.id);
    }
    if new != old {
        new.save(&**disk, dir)?;
        if steps.halt(&mut report) {
            return Ok(report);
        }
    }
    let (stored, names) = Forgotten::load_stored(archive.store(), volume)?;
    if stored != new {
        new.store(archive.store(), volume, &names)?;
        if steps.halt(&mut report) {
            return Ok(report);
        }
    }
    // A view that opened since the decision keeps what it reads.
    let open = lease::held(&**disk, dir)?;
    needed.extend(
        layout.needed(
            report
                .points
                .iter()
                .filter(|d| open.contains(&d.point.info.id)),
        ),
    );
    let doomed = doomed(&needed);
    for object in doomed.iter().cloned() {
        archive
            .store()
            .delete(&object.name)
            .map_err(ArchiveError::from)?;
        report.deleted.push(object);
        if let Some(p) = &options.progress {
            p(report.deleted.len() as u64, doomed.len() as u64);
        }
        if steps.halt(&mut report) {
            break;
        }
    }
    if !report.deleted.is_empty() {
        archive.relist()?;
    }
    Ok(report)
}

/// The sync points of the volume in `dir` that are not forgotten, oldest
/// first: what `lsvfs sync-points` lists and views open.
pub fn listed(disk: &dyn Disk, dir: &Path, forgotten: &Forgotten) -> Result<Vec<SyncPoint>> {
    let mut points = Catalog::open(disk, dir, false)?.entries().to_vec();
    points.retain(|p| !forgotten.contains(p.info.id));
    Ok(points)
}

/// What each kept sync point alone holds in the store, for listings.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    /// Objects of the volume in the store, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Per listed sync point id: bytes of objects no other listed sync
    /// point and not the live volume needs.
    pub alone: BTreeMap<u64, u64>,
}

/// The store's size for the volume in `dir` and what each of `points` (its
/// listed sync points) holds alone.
pub fn sizes(disk: &dyn Disk, dir: &Path, points: &[SyncPoint]) -> Result<Sizes> {
    let policy = Policy::load(disk, dir)?;
    let archive = layout::open_archive(&crate::disk::real(), dir, &policy, None)?;
    let objects = objects_of(&archive)?;
    let layout = Layout::read(disk, dir, &archive, points)?;
    let alone = layout.alone(points, &objects, &vec![true; points.len()]);
    Ok(Sizes {
        objects: objects.len() as u64,
        bytes: objects.iter().map(|o| o.bytes).sum(),
        alone: points.iter().map(|p| p.info.id).zip(alone).collect(),
    })
}

/// Every object of the archive's volume (whole and partial), by segment.
fn objects_of(archive: &Archive) -> Result<Vec<Object>> {
    let volume = archive.volume_id();
    let mut objects: Vec<Object> = archive
        .store()
        .list()
        .map_err(ArchiveError::from)?
        .into_iter()
        .filter_map(|(name, bytes)| {
            let seq =
                seq_of(volume, &name).or_else(|| partial_of(volume, &name).map(|(s, _)| s))?;
            Some(Object { name, seq, bytes })
        })
        .collect();
    objects.sort_by_key(|o| o.seq);
    Ok(objects)
}

/// The windows of the sync points and what the live volume needs.
struct Layout {
    /// Window start of each segment holding a sync point.
    starts: BTreeMap<u64, u64>,
    /// The live volume needs every segment from here on.
    keep_from: u64,
}

impl Layout {
    fn read(
        disk: &dyn Disk,
        dir: &Path,
        archive: &Archive,
        points: &[SyncPoint],
    ) -> Result<Layout> {
        let seg_dir = layout::segments_dir(dir);
        let volume = archive.volume_id();
        let in_primary = segment::list(disk, &seg_dir)?.segments;
        let window_start = |seq: u64| -> Result<u64> {
            let from_primary = segment::open_read(disk, &seg_dir, seq)
                .and_then(|f| segment::read_header(&*f, seq, volume, &seg_dir));
            match from_primary {
                Ok((h, _)) => Ok(h.window_start),
                // Not (or no longer) in primary storage: archived.
                Err(_) => Ok(archive.header(seq)?.window_start),
            }
        };
        let keep_from = match (in_primary.first(), in_primary.last()) {
            (Some(&oldest), Some(&newest)) => oldest.min(window_start(newest)?),
            _ => u64::MAX,
        };
        let seqs: BTreeSet<u64> = points.iter().map(|p| p.lsn.seq).collect();
        let primary: BTreeSet<u64> = in_primary.iter().copied().collect();
        let (here, archived): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|s| primary.contains(s));
        // Trailers fetched a few at a time: a store's latency bounds this.
        let trailers = archive.trailers_of(&archived, &|_, _| {})?;
        let mut starts: BTreeMap<u64, u64> = archived
            .iter()
            .zip(trailers)
            .map(|(&s, t)| (s, t.header.window_start))
            .collect();
        for seq in here {
            starts.insert(seq, window_start(seq)?);
        }
        Ok(Layout { starts, keep_from })
    }

    fn window(&self, p: &SyncPoint) -> RangeInclusive<u64> {
        self.starts.get(&p.lsn.seq).copied().unwrap_or(p.lsn.seq)..=p.lsn.seq
    }

    /// The archived segments the windows of `points` need.
    fn needed<'a>(&self, points: impl Iterator<Item = &'a Decided>) -> BTreeSet<u64> {
        points.flat_map(|d| d.window.clone()).collect()
    }

    /// For each of `points` that `kept` marks: the bytes of the objects
    /// only its window needs, among the kept windows and the live volume's
    /// segments; 0 for the others.
    fn alone(&self, points: &[SyncPoint], objects: &[Object], kept: &[bool]) -> Vec<u64> {
        let mut bytes: BTreeMap<u64, u64> = BTreeMap::new();
        for o in objects.iter().filter(|o| o.seq < self.keep_from) {
            *bytes.entry(o.seq).or_default() += o.bytes;
        }
        let mut cover: BTreeMap<u64, u32> = BTreeMap::new();
        for (p, _) in points.iter().zip(kept).filter(|(_, k)| **k) {
            for seq in self.window(p).filter(|s| bytes.contains_key(s)) {
                *cover.entry(seq).or_default() += 1;
            }
        }
        points
            .iter()
            .zip(kept)
            .map(|(p, &k)| match k {
                false => 0,
                true => self
                    .window(p)
                    .filter(|s| cover.get(s) == Some(&1))
                    .map(|s| bytes[&s])
                    .sum(),
            })
            .collect()
    }
}

/// Counts the changes a prune made, for [`Options::halt_after`].
struct Steps {
    done: usize,
    halt_after: Option<usize>,
}

impl Steps {
    /// Counts one change; whether to stop here.
    fn halt(&mut self, report: &mut Report) -> bool {
        self.done += 1;
        report.halted = self.halt_after.is_some_and(|n| self.done >= n);
        report.halted
    }
}

/// The archiver's automatic prune: when the volume's policy has
/// `auto = true`, a prune after the store grew (a segment was stored whole)
/// and at least once an hour, so that time-based rules move on. A failure
/// is logged and retried at the next chance; it never stops the archiver.
pub struct Auto {
    disk: Arc<dyn Disk>,
    dir: std::path::PathBuf,
    /// The archiver's stored-bytes count at the last prune.
    stored: u64,
    last: Option<std::time::Instant>,
}

/// Most time between two automatic prunes of an idle volume.
const AUTO_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Auto {
    pub fn new(disk: Arc<dyn Disk>, dir: &Path) -> Auto {
        Auto {
            disk,
            dir: dir.to_path_buf(),
            stored: 0,
            last: None,
        }
    }

    /// Prunes if it is due; `stored` is how many bytes the archiver has
    /// stored so far.
    pub fn tick(&mut self, archive: &Arc<Archive>, stored: u64) {
        let hour_passed = self.last.is_none_or(|t| t.elapsed() >= AUTO_EVERY);
        if stored == self.stored && !hour_passed {
            return;
        }
        self.stored = stored;
        self.last = Some(std::time::Instant::now());
        let on = Policy::load(&*self.disk, &self.dir).map(|p| p.retention.auto);
        if !on.unwrap_or(false) {
            return;
        }
        let options = Options {
            no_wait: true,
            ..Options::default()
        };
        match prune(&self.disk, &self.dir, Some(archive.clone()), &options) {
            Ok(r) => log::info!(
                "pruned: forgot {} sync points, deleted {} objects ({} bytes)",
                r.forgotten().count(),
                r.deleted.len(),
                r.bytes_freed()
            ),
            // A prune, pin or set from the command line: next time.
            Err(Error::Locked { .. }) => self.stored = u64::MAX,
            Err(e) => {
                log::warn!("automatic prune failed (tried again later): {e}");
                self.stored = u64::MAX;
            }
        }
    }
}
