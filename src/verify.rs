//! Verifying what recovery and every sync point need (`lsvfs verify`).
//!
//! Every archived object of a volume is checked: its trailer (frame table,
//! header, footer), its summary and that the summary tiles the records;
//! with `read_data` also every frame (zstd's checksum, exact length), the
//! checksum of all raw bytes and every record's own. For a volume
//! directory its primary segments are checked too: header, footer and
//! summary of the sealed ones, the forward scan of the newest, unsealed
//! one; with `read_data` every record of the sealed ones.
//!
//! Each damaged copy of a segment is reported with the sync points it
//! breaks: those whose window (from the `window_start` of their segment's
//! header to their own segment) needs the segment while no intact copy of
//! it is left. When the other copy (primary or archived) is intact, the
//! sync points that need it are only at risk. Nothing is written, except
//! by [`repair`].
//!
//! [`repair`] verifies a volume that is not open anywhere (it holds the
//! volume's lock throughout) and stores again each damaged object whose
//! segment primary storage still holds intact: the damaged object is
//! deleted, the segment is stored and read back as the archiver stores it.
//! Primary segments are then always checked record by record (as with
//! `read_data`), so only bytes whose every checksum holds are stored.
//! A crash between the two leaves the segment unstored but in primary
//! storage, where the archiver finds and ships it when the volume is next
//! mounted, before it could ever be recycled. A damaged partial object of
//! the segment still being written is deleted: the archiver ships a new
//! one when the volume is next mounted.

use crate::Volume;
use crate::archive::{Archive, sync_points_in};
use crate::disk::{Disk, FileIo};
use crate::error::{Error, Result};
use crate::format::archive::FRAME_RAW;
use crate::format::segment::{FOOTER_LEN, SEGMENT_HEADER_LEN};
use crate::format::{DecodeError, Lsn, RecordView, SummaryEntry, VolumeId};
use crate::layout::{self, Source};
use crate::log::catalog::SyncPoint;
use crate::log::lock::VolumeLock;
use crate::log::recovery::{self, Progress, SegmentRecords, check_summary};
use crate::log::segment;
use crate::policy::Policy;
use crate::retention::forgotten::Forgotten;
use crate::store::{ArchiveError, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::Path;

/// Which copy of a segment is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Its object in the backing store (whole or partial).
    Object,
    /// Its file in primary storage.
    Primary,
}

/// One damaged copy of a segment and what it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub place: Place,
    pub seq: u64,
    /// The object's name, or the segment file's path.
    pub name: String,
    /// The backing store, or the volume's segments directory.
    pub location: String,
    pub error: String,
    /// Sync points that can no longer be mounted: their window needs the
    /// segment and no intact copy of it is left. Ascending.
    pub breaks: Vec<u64>,
    /// Sync points whose window needs the segment, served for now by its
    /// other, intact copy. Ascending.
    pub at_risk: Vec<u64>,
}

/// What a verification checked and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub volume: Option<VolumeId>,
    /// The backing store checked.
    pub store: String,
    /// Archived objects checked.
    pub objects: u64,
    /// Primary segments checked.
    pub segments: u64,
    /// Bytes read from the store and from primary storage.
    pub bytes_read: u64,
    /// Sync points known (the catalog's, or those the store serves).
    pub sync_points: u64,
    pub damages: Vec<Damage>,
    /// Damaged objects stored again from primary storage by [`repair`].
    pub repaired: Vec<Damage>,
}

/// Checks what `source` holds; with `read_data`, every byte. `progress`
/// is told of each object or segment checked. Fails only when the store
/// or the volume cannot be read at all; damage is in the report.
pub fn verify(source: &Source, read_data: bool, progress: Progress) -> Result<Report> {
    match source {
        Source::Volume(dir) => verify_volume(dir, read_data, false, progress),
        Source::Store(archive) => verify_store(archive, read_data, progress),
    }
}

/// Verifies the volume in `dir` as [`verify`] does and stores again every
/// damaged object whose segment is intact in primary storage (see the
/// module's documentation); those are in the report's `repaired`, the
/// damage left in `damages`. Fails with [`Error::Locked`] while the volume
/// is open (mounted).
pub fn repair(dir: &Path, read_data: bool, progress: Progress) -> Result<Report> {
    verify_volume(dir, read_data, true, progress)
}

/// What the checks found, before the sync points are matched to damage.
#[derive(Default)]
struct Found {
    /// The window start of each segment that has an intact copy.
    windows: BTreeMap<u64, u64>,
    intact_primary: BTreeSet<u64>,
    intact_object: BTreeSet<u64>,
    /// The sync points recorded in intact objects.
    stored_points: Vec<SyncPoint>,
    report: Report,
}

fn verify_volume(dir: &Path, read_data: bool, repair: bool, progress: Progress) -> Result<Report> {
    let disk = crate::disk::real();
    layout::check_volume(&*disk, dir)?;
    let _lock = match repair {
        true => Some(VolumeLock::acquire(&*disk, dir)?.0),
        false => None,
    };
    let policy = Policy::load(&*disk, dir)?;
    let volume = policy.volume_id()?;
    let archive = layout::open_archive(&disk, dir, &policy, None)?;
    archive.relist()?;
    let points = Volume::sync_points_of(dir)?;
    let seg_dir = layout::segments_dir(dir);
    let listing = segment::list(&*disk, &seg_dir)?;
    let objects = stored(&archive);
    let total = (listing.segments.len() + objects.len()) as u64;
    let primary = Primary {
        disk: &*disk,
        dir: &seg_dir,
        volume,
        newest: listing.segments.last().copied().unwrap_or(0),
        points: &points,
        // A repair stores primary's bytes: every record of them is
        // checked first, not only the summaries.
        read_data: read_data || repair,
    };
    let mut found = Found::default();
    for (i, &seq) in listing.segments.iter().enumerate() {
        let checked = match primary.check(seq) {
            // Recycled while it was read (the volume is mounted): its
            // object, listed before, is checked instead.
            Err(_) if !disk.exists(&segment::segment_path(&seg_dir, seq)) => {
                Err(Error::SegmentMissing { seq })
            }
            other => other,
        };
        found.primary(seq, &seg_dir, checked);
        progress(i as u64 + 1, total);
    }
    let done = listing.segments.len() as u64;
    check_objects(&archive, &objects, read_data, &mut found, &|n, _| {
        progress(done + n, total)
    })?;
    if repair {
        found.repair(&archive, &*disk, &seg_dir, volume)?;
    }
    Ok(found.finish(&points))
}

fn verify_store(archive: &Archive, read_data: bool, progress: Progress) -> Result<Report> {
    archive.relist()?;
    let objects = stored(archive);
    let mut found = Found::default();
    check_objects(archive, &objects, read_data, &mut found, progress)?;
    // Those the store serves alone: their whole window is stored.
    let whole: BTreeSet<u64> = archive.objects().iter().map(|(s, _)| *s).collect();
    let (forgotten, _) = Forgotten::load_stored(archive.store(), archive.volume_id())?;
    let points: Vec<SyncPoint> = std::mem::take(&mut found.stored_points)
        .into_iter()
        .filter(|p| !forgotten.contains(p.info.id))
        .filter(|p| {
            let start = found.windows.get(&p.lsn.seq).copied().unwrap_or(p.lsn.seq);
            (start..p.lsn.seq).all(|s| whole.contains(&s))
        })
        .collect();
    Ok(found.finish(&points))
}

/// The archived segments with the size of their object (a partial
/// object's is asked of the store when checked), ascending.
fn stored(archive: &Archive) -> Vec<(u64, Option<u64>)> {
    let mut all: Vec<(u64, Option<u64>)> = archive
        .objects()
        .into_iter()
        .map(|(s, n)| (s, Some(n)))
        .collect();
    all.extend(archive.partial_segments().into_iter().map(|s| (s, None)));
    all.sort_unstable();
    all
}

fn check_objects(
    archive: &Archive,
    objects: &[(u64, Option<u64>)],
    read_data: bool,
    found: &mut Found,
    progress: Progress,
) -> Result<()> {
    found.report.volume = Some(archive.volume_id());
    found.report.store = archive.store().describe();
    for (i, &(seq, size)) in objects.iter().enumerate() {
        let name = archive.name_of(seq);
        let checked = match check_object(archive, seq, &name, size, read_data) {
            Err(e) if unusable(&e) => return Err(e),
            other => other,
        };
        found.object(seq, name, checked);
        progress(i as u64 + 1, objects.len() as u64);
    }
    Ok(())
}

/// Whether `e` says that the store cannot be used at all (unreachable,
/// refused, misconfigured), rather than that one object is damaged.
fn unusable(e: &Error) -> bool {
    matches!(
        e,
        Error::Archive(ArchiveError::Store(
            StoreError::Unreachable { .. }
                | StoreError::NoBucket { .. }
                | StoreError::Denied { .. }
                | StoreError::Config { .. }
        ))
    )
}

/// What one intact copy of a segment gives: its window start, its sync
/// points (objects only) and the bytes read to check it.
struct Intact {
    window_start: u64,
    points: Vec<SyncPoint>,
    bytes: u64,
}

/// Checks archived segment `seq` in object `name` of `size` bytes.
fn check_object(
    archive: &Archive,
    seq: u64,
    name: &str,
    size: Option<u64>,
    read_data: bool,
) -> Result<Intact> {
    let t = archive.trailer(seq)?;
    let size = match size {
        Some(n) => n,
        None => archive.store().size(name).map_err(ArchiveError::from)?,
    };
    let entries = SummaryEntry::decode_all(&t.summary).map_err(|source| Error::Corrupt {
        seq,
        offset: t.raw_len,
        what: "archived summary",
        source,
    })?;
    check_summary(&t.header, &t.footer, &entries)?;
    let points = sync_points_in(seq, &entries)?;
    let frames_end = t.frame_offsets.last().copied().unwrap_or(0);
    if read_data {
        let mut records = Records::new(seq, &entries, t.header_crc);
        for i in 0..t.frames() {
            records.push(&archive.fetch_frame(seq, name, &t, i)?)?;
        }
        records.finish(Some(t.raw_crc))?;
    }
    Ok(Intact {
        window_start: t.header.window_start,
        points,
        bytes: if read_data {
            size
        } else {
            size.saturating_sub(frames_end)
        },
    })
}

/// What checking the primary segments needs.
struct Primary<'a> {
    disk: &'a dyn Disk,
    dir: &'a Path,
    volume: VolumeId,
    /// The newest segment, which may be unsealed.
    newest: u64,
    /// The catalog's sync points, which the newest segment must hold.
    points: &'a [SyncPoint],
    read_data: bool,
}

impl Primary<'_> {
    /// Checks primary segment `seq`: header, footer and summary, or the
    /// forward scan of the newest segment when it is not sealed (which
    /// must reach every catalogued sync point); with `read_data` every
    /// record of a sealed one.
    fn check(&self, seq: u64) -> Result<Intact> {
        let (file, recs) = recovery::segment_records(self.disk, self.dir, seq, self.volume)?;
        let end = recs.entries.last().map_or(SEGMENT_HEADER_LEN as u64, |e| {
            e.offset as u64 + e.len as u64
        });
        let bytes = match &recs.scan {
            Some(_) if seq != self.newest => {
                return Err(Error::Corrupt {
                    seq,
                    offset: recs.header.segment_size - FOOTER_LEN as u64,
                    what: "segment footer",
                    source: DecodeError::Invalid("not sealed, yet newer segments exist"),
                });
            }
            // The forward scan checked every record up to the valid end.
            Some(scan) => {
                let log_end = Lsn {
                    seq,
                    offset: scan.valid_end,
                };
                recovery::check_durable_end(&recs, log_end, None, self.points)?;
                end
            }
            None if self.read_data => check_records(&*file, &recs, end)?,
            None => SEGMENT_HEADER_LEN as u64 + FOOTER_LEN as u64,
        };
        Ok(Intact {
            window_start: recs.header.window_start,
            points: Vec::new(),
            bytes,
        })
    }
}

/// Reads the records `[0, end)` of a sealed primary segment and checks
/// each; the bytes read.
fn check_records(file: &dyn FileIo, recs: &SegmentRecords, end: u64) -> Result<u64> {
    let seq = recs.header.seq;
    let mut records = Records::new(seq, &recs.entries, recs.header_crc);
    let mut at = 0;
    while at < end {
        let n = (end - at).min(FRAME_RAW as u64) as usize;
        records.push(&segment::read_vec_at(file, seq, n, at)?)?;
        at += n as u64;
    }
    records.finish(None)?;
    Ok(end)
}

impl Found {
    fn primary(&mut self, seq: u64, dir: &Path, checked: Result<Intact>) {
        match checked {
            Ok(intact) => {
                self.windows.insert(seq, intact.window_start);
                self.intact_primary.insert(seq);
                self.report.bytes_read += intact.bytes;
                self.report.segments += 1;
            }
            // Recycled since the listing: archived, and checked there.
            Err(Error::SegmentMissing { .. }) => {}
            Err(e) => {
                let path = segment::segment_path(dir, seq);
                let name = path.display().to_string();
                self.damaged(Place::Primary, seq, name, dir.display().to_string(), e);
                self.report.segments += 1;
            }
        }
    }

    fn object(&mut self, seq: u64, name: String, checked: Result<Intact>) {
        self.report.objects += 1;
        match checked {
            Ok(intact) => {
                self.windows.insert(seq, intact.window_start);
                self.intact_object.insert(seq);
                self.stored_points.extend(intact.points);
                self.report.bytes_read += intact.bytes;
            }
            Err(e) => {
                let store = self.report.store.clone();
                self.damaged(Place::Object, seq, name, store, e);
            }
        }
    }

    /// Stores again each damaged object whose segment is intact in
    /// primary storage; what could not be is left in the damage, saying
    /// why. Fails only when the store cannot be used at all.
    fn repair(
        &mut self,
        archive: &Archive,
        disk: &dyn Disk,
        dir: &Path,
        volume: VolumeId,
    ) -> Result<()> {
        for mut d in std::mem::take(&mut self.report.damages) {
            if d.place != Place::Object || !self.intact_primary.contains(&d.seq) {
                self.report.damages.push(d);
                continue;
            }
            match store_again(archive, disk, dir, volume, &d) {
                Ok(true) => {
                    self.intact_object.insert(d.seq);
                    self.report.repaired.push(d);
                }
                Ok(false) => {
                    d.error = format!(
                        "{}; deleted, the next mount ships the segment's sync points again",
                        d.error
                    );
                    self.report.repaired.push(d);
                }
                Err(e) if unusable(&e) => return Err(e),
                Err(e) => {
                    d.error = format!("{}; storing it again failed: {e}", d.error);
                    self.report.damages.push(d);
                }
            }
        }
        Ok(())
    }

    fn damaged(&mut self, place: Place, seq: u64, name: String, location: String, e: Error) {
        self.report.damages.push(Damage {
            place,
            seq,
            name,
            location,
            error: e.to_string(),
            breaks: Vec::new(),
            at_risk: Vec::new(),
        });
    }

    /// The report, each damage with the sync points of `points` whose
    /// window needs its segment.
    fn finish(mut self, points: &[SyncPoint]) -> Report {
        self.report.sync_points = points.len() as u64;
        let mut damages = std::mem::take(&mut self.report.damages);
        for d in &mut damages {
            let needing: Vec<u64> = points
                .iter()
                .filter(|p| self.window(p).contains(&d.seq))
                .map(|p| p.info.id)
                .collect();
            let other = match d.place {
                Place::Object => &self.intact_primary,
                Place::Primary => &self.intact_object,
            };
            match other.contains(&d.seq) {
                true => d.at_risk = needing,
                false => d.breaks = needing,
            }
        }
        self.report.damages = damages;
        self.report
    }

    /// The segments sync point `p` needs; only its own when no intact
    /// copy of that segment tells where its window starts.
    fn window(&self, p: &SyncPoint) -> RangeInclusive<u64> {
        let seq = p.lsn.seq;
        self.windows.get(&seq).copied().unwrap_or(seq)..=seq
    }
}

/// Replaces the damaged object of `d` with its segment's intact primary
/// copy: deletes it, then stores the segment and reads it back. A partial
/// object of the segment still being written is only deleted: returns
/// whether an object was stored.
fn store_again(
    archive: &Archive,
    disk: &dyn Disk,
    dir: &Path,
    volume: VolumeId,
    d: &Damage,
) -> Result<bool> {
    let sealed = segment::SealedSegment::read(disk, dir, d.seq, volume, Vec::new())?;
    archive
        .store()
        .delete(&d.name)
        .map_err(ArchiveError::from)?;
    if let Some(s) = &sealed {
        archive.put_segment(d.seq, &s.raw, &s.footer, &s.summary())?;
    }
    Ok(sealed.is_some())
}

/// Checks a segment's records as its raw bytes arrive in order from
/// offset 0: each record's checksum, its link to the one before it, and
/// that it is what its summary entry says; and the checksum of all bytes.
struct Records<'a> {
    seq: u64,
    entries: &'a [SummaryEntry],
    /// The next entry to check.
    next: usize,
    /// The crc the next record's `prev` must be.
    prev: u32,
    /// Bytes from offset `base` not checked yet.
    buf: Vec<u8>,
    base: u64,
    /// crc32c of every byte pushed.
    crc: u32,
}

impl<'a> Records<'a> {
    fn new(seq: u64, entries: &'a [SummaryEntry], header_crc: u32) -> Self {
        Records {
            seq,
            entries,
            next: 0,
            prev: header_crc,
            buf: Vec::new(),
            base: 0,
            crc: 0,
        }
    }

    /// The next bytes of the segment; checks the records they complete.
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.buf.extend_from_slice(bytes);
        let end = self.base + self.buf.len() as u64;
        while let Some(e) = self.entries.get(self.next) {
            let (at, len) = (e.offset as u64, e.len as usize);
            if at + len as u64 > end {
                break;
            }
            let from = (at - self.base) as usize;
            self.prev = check_record(self.seq, e, &self.buf[from..from + len], self.prev)?;
            self.next += 1;
        }
        // Keep only what the next record needs (the header block goes).
        let keep_from = self
            .entries
            .get(self.next)
            .map_or(end, |e| (e.offset as u64).min(end));
        self.buf.drain(..(keep_from - self.base) as usize);
        self.base = keep_from;
        Ok(())
    }

    /// Checks that every record came, and the crc of all bytes when known.
    fn finish(self, raw_crc: Option<u32>) -> Result<()> {
        let corrupt = |what, why| Error::Corrupt {
            seq: self.seq,
            offset: self.base,
            what,
            source: DecodeError::Invalid(why),
        };
        if self.next != self.entries.len() {
            return Err(corrupt(
                "records",
                "they end before the summary's last entry",
            ));
        }
        match raw_crc {
            Some(crc) if crc != self.crc => Err(corrupt(
                "archived segment",
                "its bytes differ from their checksum",
            )),
            _ => Ok(()),
        }
    }
}

/// Checks one record against its summary entry and its predecessor's
/// crc `prev`; its own crc.
fn check_record(seq: u64, e: &SummaryEntry, bytes: &[u8], prev: u32) -> Result<u32> {
    let corrupt = |source| Error::Corrupt {
        seq,
        offset: e.offset as u64,
        what: "record",
        source,
    };
    let view = RecordView::parse(bytes).map_err(corrupt)?;
    if view.header.prev != prev {
        return Err(corrupt(DecodeError::Invalid(
            "it does not chain to the record before it",
        )));
    }
    if SummaryEntry::of(e.offset, &view) != *e {
        return Err(corrupt(DecodeError::Invalid(
            "it differs from its summary entry",
        )));
    }
    Ok(view.header.crc)
}
