//! What the fuzz targets in `fuzz/` run, one function per decoder of bytes
//! that come from disk or from a store: records, segment headers, footers
//! and summaries, archived objects, catalog entries, the policy file. Each
//! feeds the input as it is, then again with its checksums made right, so
//! that the fuzzer also reaches what lies behind them. None may panic,
//! allocate by an unchecked length, or loop; each answers whether the
//! input (as is) decoded. `tests/fuzz_corpus.rs` runs the same functions
//! over the committed corpus on stable.

use crate::format::archive::{self, TAIL_LEN, Trailer};
use crate::format::record::RECORD_HEADER_LEN;
use crate::format::segment::FOOTER_LEN;
use crate::format::{Footer, Record, RecordView, SegmentHeader, SummaryEntry};

/// One decoder's entry point: whether the input decoded as it is.
pub type Target = fn(&[u8]) -> bool;

/// The fuzz targets by name, as `fuzz/fuzz_targets/NAME.rs` and
/// `fuzz/corpus/NAME/` call them.
pub const TARGETS: [(&str, Target); 5] = [
    ("record", record),
    ("segment", segment),
    ("archive", archive),
    ("catalog", catalog),
    ("policy", policy),
];

/// Writes the crc32c of `data[from..to]` at `at`, where all fit.
fn with_crc(data: &[u8], at: usize, from: usize, to: usize) -> Option<Vec<u8>> {
    let to = to.min(data.len());
    if at + 4 > data.len() || from > to {
        return None;
    }
    let mut fixed = data.to_vec();
    let crc = crc32c::crc32c(&data[from..to]);
    fixed[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    Some(fixed)
}

fn record_once(data: &[u8]) -> bool {
    let Ok(view) = RecordView::parse(data) else {
        return false;
    };
    match Record::decode_parts(view.header.kind, view.key, view.value) {
        Ok(r) => {
            let _ = r.validate(4096);
            true
        }
        Err(_) => false,
    }
}

/// A record: header, crc, key and value of every kind.
pub fn record(data: &[u8]) -> bool {
    let ok = record_once(data);
    if data.len() >= RECORD_HEADER_LEN {
        let len = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
        if let Some(fixed) = with_crc(data, 0, 4, len) {
            record_once(&fixed);
        }
    }
    ok
}

/// A segment header, a footer and a summary, each from the same bytes.
pub fn segment(data: &[u8]) -> bool {
    let header = SegmentHeader::decode(data).is_ok();
    let footer = Footer::decode(data).is_ok();
    if let Some(fixed) = with_crc(data, FOOTER_LEN - 4, 0, FOOTER_LEN - 4) {
        let _ = Footer::decode(&fixed);
    }
    let summary = SummaryEntry::decode_all(data).is_ok();
    header || footer || summary
}

/// An archived object: its tail, its trailer, and a read-back check
/// against raw bytes as long as the trailer says.
pub fn archive(data: &[u8]) -> bool {
    let ok = archive_once(data);
    if data.len() > TAIL_LEN + 4 {
        let end = data.len() - TAIL_LEN;
        if let Some(fixed) = with_crc(data, end - 4, 0, end - 4) {
            let _ = Trailer::decode(&fixed[..end]);
            archive_once(&fixed);
        }
    }
    ok
}

fn archive_once(data: &[u8]) -> bool {
    let _ = Trailer::decode(data);
    if data.len() < TAIL_LEN {
        return false;
    }
    let Ok((at, len)) = archive::trailer_range(data.len() as u64, &data[data.len() - TAIL_LEN..])
    else {
        return false;
    };
    let Ok(trailer) = Trailer::decode(&data[at as usize..(at + len) as usize]) else {
        return false;
    };
    // Bounded by the object: a trailer claiming more raw bytes than could
    // fit is the decoder's to refuse, not ours to allocate.
    let raw = vec![0u8; (trailer.raw_len as usize).min(data.len() * 64)];
    let _ = archive::verify(data, &raw);
    true
}

/// The entries of a sync-point catalog.
pub fn catalog(data: &[u8]) -> bool {
    let (_, _, torn) = crate::log::catalog::decode_entries(data);
    if data.len() >= 8 {
        let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if let Some(fixed) = with_crc(data, 0, 4, len) {
            crate::log::catalog::decode_entries(&fixed);
        }
    }
    torn.is_none()
}

/// The text of a policy file.
pub fn policy(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|t| crate::policy::Policy::parse(t).is_ok())
}
