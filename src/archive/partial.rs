//! Partial objects: the first bytes of the segment still being written,
//! shipped so that a sync point in it is served by the store alone within
//! the policy's ship interval, before the segment seals. A partial object
//! has the format of a whole one (the prefix up to the end of a sync
//! record, with a footer and summary of just those records); a newer one
//! of the same segment replaces it, and the whole segment's object, once
//! shipped, replaces them all (`Archive::put_partial`, `put_segment`).

use crate::disk::Disk;
use crate::error::Result;
use crate::format::{Footer, SummaryEntry, VolumeId};
use crate::log::recovery::segment_records;
use crate::log::segment;
use std::path::Path;

/// A prefix of an unsealed segment, ready to store.
pub struct Prefix {
    pub raw: Vec<u8>,
    pub footer: Footer,
    pub summary: Vec<u8>,
}

/// The prefix of unsealed segment `seq` that ends with the record at
/// `upto` (a sync record: a group of its own, so a group boundary), read
/// into `buf` (see [`segment::read_prefix_into`]). None if the segment is
/// sealed by now (it ships whole) or the record is not there.
pub fn read_prefix(
    disk: &dyn Disk,
    dir: &Path,
    volume: VolumeId,
    seq: u64,
    upto: u32,
    buf: Vec<u8>,
) -> Result<Option<Prefix>> {
    let (file, recs) = segment_records(disk, dir, seq, volume)?;
    if recs.scan.is_none() {
        return Ok(None);
    }
    let Some(last) = recs.entries.iter().position(|e| e.offset == upto) else {
        return Ok(None);
    };
    let entries: &[SummaryEntry] = &recs.entries[..=last];
    let end = entries[last].offset + entries[last].len;
    let raw = segment::read_prefix_into(&*file, seq, buf, end as usize)?;
    let at = upto as usize;
    let last_crc = u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
    let mut summary = Vec::new();
    for e in entries {
        e.encode(&mut summary);
    }
    let footer = Footer {
        seq,
        records_end: end,
        record_count: entries.len() as u32,
        last_crc,
        summary_len: summary.len() as u32,
        summary_crc: crc32c::crc32c(&summary),
    };
    Ok(Some(Prefix {
        raw,
        footer,
        summary,
    }))
}
