//! Rebuilding an index by scanning the log backward.
//!
//! The scan ends at a position (the log's tail, or a sync point) and starts
//! at the `window_start` recorded in the header of the segment holding that
//! position: by the working-set invariant no live record is older. Sealed
//! segments give their summaries (from primary storage or the archive); the
//! unsealed tail is scanned forward once to find where the valid log ends.
//! The live volume's recovery skips segments of the window already retired
//! (their live records were copied forward before they were archived), so it
//! reads only primary storage; a view reads its whole window.
//!
//! [`recover`] is the live volume's recovery as one function: from the
//! segment files, the retired segments' listing, the catalog and the lock's
//! clean-close mark it computes a [`Recovered`] value (the index, the tail
//! to append to, the next ids, the window, the sync points the catalog
//! lacks) and changes nothing on disk, so a refused open changes nothing
//! and tests can check the value without starting any thread.

use super::LogConfig;
use super::catalog::{Catalog, SyncPoint};
use super::retired::RetiredSegments;
use super::segment::{self, Listing, Scan};
use super::tail::{Tail, TailFile};
use crate::disk::{Disk, FileIo, OpenMode};
use crate::error::{Error, Result, io};
use crate::format::{DecodeError, Lsn, ROOT_INO, SegmentHeader, SummaryEntry, VolumeId};
use crate::index::Index;
use crate::index::builder::{Builder, Built};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One segment's records as the backward scan needs them.
pub struct SegmentRecords {
    pub header: SegmentHeader,
    pub header_crc: u32,
    pub entries: Vec<SummaryEntry>,
    /// Set for an unsealed segment: what the forward scan found.
    pub scan: Option<Scan>,
}

/// Reads the record summaries of segment `seq`: from its summary when sealed,
/// by a forward scan when not.
pub fn segment_records(
    disk: &dyn Disk,
    dir: &Path,
    seq: u64,
    volume: VolumeId,
) -> Result<(Box<dyn FileIo>, SegmentRecords)> {
    let file = segment::open_read(disk, dir, seq)?;
    let (header, header_crc) = segment::read_header(&*file, seq, volume, dir)?;
    if let Some((footer, entries)) = segment::read_sealed(&*file, &header)? {
        check_summary(&header, &footer, &entries)?;
        let records = SegmentRecords {
            header,
            header_crc,
            entries,
            scan: None,
        };
        return Ok((file, records));
    }
    let mut scan = segment::scan_forward(&*file, &header, header_crc)?;
    let entries = std::mem::take(&mut scan.entries);
    let records = SegmentRecords {
        header,
        header_crc,
        entries,
        scan: Some(scan),
    };
    Ok((file, records))
}

pub fn check_summary(
    h: &SegmentHeader,
    f: &crate::format::Footer,
    e: &[SummaryEntry],
) -> Result<()> {
    let mut pos = crate::format::segment::SEGMENT_HEADER_LEN as u32;
    for entry in e {
        if entry.offset != pos {
            return Err(Error::Corrupt {
                seq: h.seq,
                offset: f.records_end as u64,
                what: "segment summary",
                source: DecodeError::Invalid("entries do not tile the records"),
            });
        }
        pos += entry.len;
    }
    if pos != f.records_end || e.len() != f.record_count as usize {
        return Err(Error::Corrupt {
            seq: h.seq,
            offset: f.records_end as u64,
            what: "segment summary",
            source: DecodeError::Invalid("summary does not match footer"),
        });
    }
    Ok(())
}

/// Feeds a segment's records at or before `upto` into `builder`, newest first.
fn feed(builder: &mut Builder, seq: u64, entries: &[SummaryEntry], upto: u32) -> Result<()> {
    for e in entries.iter().rev().filter(|e| e.offset <= upto) {
        let lsn = Lsn {
            seq,
            offset: e.offset,
        };
        builder.feed(lsn, e).map_err(|source| Error::Corrupt {
            seq,
            offset: e.offset as u64,
            what: "record summary",
            source,
        })?;
    }
    Ok(())
}

/// Told how far a rebuild got: (segments read, segments in its window).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// Builds the index as of `end` (inclusive), given the records of the
/// segment holding it. `older(seq)` gives each older segment of the window,
/// newest first, or `None` for a retired one the scan may skip; `progress`
/// is told after each segment.
pub fn build_backward(
    block_size: u32,
    end: Lsn,
    last: &SegmentRecords,
    mut older: impl FnMut(u64) -> Result<Option<SegmentRecords>>,
    progress: Progress,
) -> Result<Built> {
    let mut builder = Builder::new(block_size);
    let window = last.header.window_start..end.seq;
    let total = window.end - window.start + 1;
    feed(&mut builder, end.seq, &last.entries, end.offset)?;
    progress(1, total);
    for seq in window.rev() {
        let records = older(seq)?;
        progress(end.seq - seq + 1, total);
        let Some(records) = records else { continue };
        if records.scan.is_some() {
            return Err(Error::Corrupt {
                seq,
                offset: 0,
                what: "segment",
                source: DecodeError::Invalid("not sealed, yet newer segments exist"),
            });
        }
        feed(&mut builder, seq, &records.entries, u32::MAX)?;
    }
    Ok(builder.finish())
}

/// What recovery found: everything the writer needs to go on appending.
pub struct Recovered {
    pub index: Index,
    pub next_ino: u64,
    pub next_sync_id: u64,
    /// The segment number the next new segment gets.
    pub next_seq: u64,
    /// The oldest segment that may hold a live record.
    pub window_start: u64,
    /// The oldest segment file in primary storage.
    pub primary_oldest: u64,
    /// The unsealed last segment, positioned after its last valid record.
    pub tail: Option<Tail>,
    /// The tail was cut at a torn or stale record (not a clean close).
    pub cut: bool,
    /// Sync points in the log that the catalog does not list yet (it is
    /// written after the log: a crash may come between), oldest first.
    pub missing: Vec<SyncPoint>,
    /// Recycled segment files, ready for reuse.
    pub free: Vec<PathBuf>,
    /// Segment files whose creation a crash interrupted: to be removed.
    pub staging: Vec<PathBuf>,
}

/// What recovery reads besides the segment files.
pub struct Known<'a> {
    /// Which older segments left primary storage.
    pub retired: &'a dyn RetiredSegments,
    pub catalog: &'a Catalog,
    /// The end a clean close recorded, if the last close was clean.
    pub clean: Option<Lsn>,
}

/// Recovers the live log in `config.dir`: the backward scan from the last
/// segment. Reads only; see the module documentation.
pub fn recover(config: &LogConfig, known: &Known, progress: Progress) -> Result<Recovered> {
    let (retired, catalog) = (known.retired, known.catalog);
    let listing = segment::list(&*config.disk, &config.dir)?;
    let mut r = Recovered {
        index: Index::new(config.block_size),
        next_ino: ROOT_INO + 1,
        next_sync_id: catalog.last_id() + 1,
        next_seq: retired.newest().map_or(1, |s| s + 1),
        window_start: 1,
        primary_oldest: 0,
        tail: None,
        cut: false,
        missing: Vec::new(),
        free: listing.free.clone(),
        staging: listing.staging.clone(),
    };
    match listing.segments.last() {
        Some(&last) => scan_log(config, known, progress, &listing, last, &mut r)?,
        None if r.next_seq > 1 => {
            return Err(Error::Inconsistent(format!(
                "{} holds no segment, but the backing store holds segments up to {}; the primary segments are lost",
                config.dir.display(),
                r.next_seq - 1
            )));
        }
        None => {}
    }
    r.primary_oldest = listing.segments.first().copied().unwrap_or(r.next_seq);
    Ok(r)
}

/// The part of [`recover`] for a log with segment `last` as its newest.
fn scan_log(
    config: &LogConfig,
    known: &Known,
    progress: Progress,
    listing: &Listing,
    last: u64,
    r: &mut Recovered,
) -> Result<()> {
    let (retired, catalog, clean) = (known.retired, known.catalog, known.clean);
    let (disk, dir, id) = (&*config.disk, &config.dir, config.volume_id);
    let (_, recs) = segment_records(disk, dir, last, id)?;
    check_geometry(&recs.header, config)?;
    let oldest = listing.segments[0];
    let older = |seq| {
        if listing.segments.binary_search(&seq).is_ok() {
            return segment_records(disk, dir, seq, id).map(|(_, r)| Some(r));
        }
        // Retired, so its live records were copied forward. A store that
        // cannot be listed now is trusted for segments older than all of
        // primary: only retiring removes those.
        match retired.contains(seq) {
            Some(true) => Ok(None),
            None if seq < oldest => Ok(None),
            _ => Err(retired.lost(seq)),
        }
    };
    let end = Lsn {
        seq: last,
        offset: u32::MAX,
    };
    let built = build_backward(config.block_size, end, &recs, older, progress)?;
    if built.orphans > 0 {
        log::warn!(
            "{}: {} inodes had data but no inode record; ignored",
            dir.display(),
            built.orphans
        );
    }
    r.next_ino = r.next_ino.max(recs.header.next_ino).max(built.max_ino + 1);
    let newest_sync = built.sync_points.iter().map(|(_, s)| s.id).max();
    r.next_sync_id = r
        .next_sync_id
        .max(recs.header.next_sync_id)
        .max(newest_sync.map_or(0, |id| id + 1));
    r.window_start = recs.header.window_start.max(oldest).max(1);
    r.next_seq = r.next_seq.max(last + 1);
    r.missing = built
        .sync_points
        .into_iter()
        .filter(|(_, s)| s.id > catalog.last_id())
        .map(|(lsn, info)| SyncPoint { lsn, info })
        .collect();
    r.missing.sort_by_key(|p| p.info.id);
    r.index = built.index;
    let log_end = Lsn {
        seq: last,
        offset: recs.scan.as_ref().map_or(u32::MAX, |s| s.valid_end),
    };
    check_durable_end(&recs, log_end, clean, catalog.entries())?;
    if let Some(scan) = &recs.scan {
        r.cut = clean != Some(log_end);
        if r.cut {
            let why = scan
                .stopped
                .as_ref()
                .map(|(at, why)| format!(" (found {why} at offset {at})"))
                .unwrap_or_default();
            log::warn!(
                "{}: recovered after an unclean shutdown; the log ends in segment {last} at offset {}{why}",
                dir.display(),
                scan.valid_end
            );
        }
        r.tail = Some(open_tail(disk, dir, recs)?);
    }
    Ok(())
}

/// The unsealed segment `recs` describes, opened to append after its last
/// valid record.
fn open_tail(disk: &dyn Disk, dir: &Path, recs: SegmentRecords) -> Result<Tail> {
    let seq = recs.header.seq;
    let scan = recs.scan.expect("an unsealed segment was scanned");
    let file = disk
        .open(&segment::segment_path(dir, seq), OpenMode::ReadWrite)
        .map_err(io(format!("cannot open segment {seq} for writing")))?;
    let mut summary = Vec::new();
    for e in &recs.entries {
        e.encode(&mut summary);
    }
    Ok(Tail {
        file: Arc::new(TailFile::new(file, seq)),
        header: recs.header,
        pos: scan.valid_end,
        last_crc: scan.last_crc,
        summary,
        count: recs.entries.len() as u32,
        sealed: false,
        hinted: scan.valid_end,
        // Not known: zeros from the end on cost at most one segment.
        zeroed: scan.valid_end,
    })
}

/// Refuses segments written with another block or segment size than the
/// policy now names (an edited lsvfs.toml): they would be misread.
fn check_geometry(header: &SegmentHeader, config: &LogConfig) -> Result<()> {
    if header.segment_size == config.segment_size && header.block_size == config.block_size {
        return Ok(());
    }
    Err(Error::Inconsistent(format!(
        "segment {} was written with segment size {} and block size {}, but lsvfs.toml says {} and {}; restore the policy file",
        header.seq, header.segment_size, header.block_size, config.segment_size, config.block_size
    )))
}

/// Refuses a log that ends before what was acknowledged as durable: a sync
/// point in the catalog, or the end a clean close recorded. Such a log is
/// damaged, not torn, and cutting it would silently drop acknowledged data.
/// `points` are the catalog's sync points.
pub fn check_durable_end(
    recs: &SegmentRecords,
    log_end: Lsn,
    clean: Option<Lsn>,
    points: &[SyncPoint],
) -> Result<()> {
    let lost = if let Some(p) = points.iter().find(|p| p.lsn >= log_end) {
        format!("sync point {}", p.info.id)
    } else if let Some(c) = clean.filter(|c| *c > log_end) {
        format!("data up to {c} (recorded at the last clean close)")
    } else {
        return Ok(());
    };
    let (offset, reason) = match recs.scan.as_ref().and_then(|s| s.stopped.clone()) {
        Some((at, why)) => (at as u64, why),
        None => (log_end.offset as u64, "the segment ends here".to_string()),
    };
    Err(Error::DurableDamaged {
        seq: log_end.seq,
        offset,
        reason,
        lost,
    })
}
