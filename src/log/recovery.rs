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

use super::segment::{self, Scan};
use crate::disk::{Disk, FileIo};
use crate::error::{Error, Result};
use crate::format::{DecodeError, Lsn, SegmentHeader, SummaryEntry, VolumeId};
use crate::index::builder::{Builder, Built};
use std::path::Path;

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
