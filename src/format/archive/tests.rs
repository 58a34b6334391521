//! Tests of the archived-object format: round trips, and damaged objects
//! that must give errors, never panics or huge allocations.

use super::*;
use crate::format::record::FLAG_GROUP_END;
use crate::format::{FileKind, InodeAttrs, Record, RecordView, SummaryEntry, VolumeId};

/// A sealed segment (9 of volume [3; 16]) with `blocks` data records of
/// mixed content.
pub(crate) fn segment(blocks: u32) -> (Vec<u8>, Footer, Vec<u8>) {
    let header = SegmentHeader {
        volume_id: VolumeId([3; 16]),
        seq: 9,
        segment_size: 16 << 20,
        block_size: 4096,
        window_start: 2,
        created_ns: 5,
        next_ino: 10,
        next_sync_id: 1,
    };
    let (mut raw, mut prev) = header.encode();
    let mut summary = Vec::new();
    let mut count = 0;
    let mut records = vec![Record::Inode {
        ino: 2,
        attrs: InodeAttrs::new(FileKind::Regular, 0o644, 0, 0),
    }];
    records.extend((0..blocks).map(|b| {
        Record::Data {
            ino: 2,
            block: b as u64,
            bytes: (0..4096u32)
                .map(|i| {
                    if b % 2 == 0 {
                        (i % 7) as u8
                    } else {
                        (i.wrapping_mul(b).wrapping_mul(2654435761)) as u8 >> 3
                    }
                })
                .collect(),
        }
    }));
    for r in &records {
        let at = raw.len();
        prev = r.encode(FLAG_GROUP_END, prev, &mut raw);
        SummaryEntry::of(at as u32, &RecordView::parse(&raw[at..]).unwrap()).encode(&mut summary);
        count += 1;
    }
    let footer = Footer {
        seq: 9,
        records_end: raw.len() as u32,
        record_count: count,
        last_crc: prev,
        summary_len: summary.len() as u32,
        summary_crc: crc32c::crc32c(&summary),
    };
    (raw, footer, summary)
}

#[test]
fn round_trip_frame_by_frame_and_whole() {
    for blocks in [0, 3, 2500] {
        let (raw, footer, summary) = segment(blocks);
        let object = encode(&raw, &footer, &summary, 3, 2).unwrap();
        let t = verify(&object, &raw).unwrap();
        assert_eq!(t.footer, footer);
        assert_eq!(t.summary, summary);
        assert_eq!(t.header.window_start, 2);
        assert_eq!(t.frames(), raw.len().div_ceil(FRAME_RAW));
        let tail = &object[object.len() - TAIL_LEN..];
        let (at, len) = trailer_range(object.len() as u64, tail).unwrap();
        assert_eq!(
            Trailer::decode(&object[at as usize..(at + len) as usize]).unwrap(),
            t
        );
        for i in 0..t.frames() {
            let (f, n) = t.frame_span(i);
            let (r, m) = t.raw_span(i);
            assert_eq!(t.frame_of(r), i);
            assert_eq!(t.frame_of(r + m - 1), i);
            let frame = t
                .decompress_frame(i, &object[f as usize..(f + n) as usize])
                .unwrap();
            assert_eq!(frame, &raw[r as usize..(r + m) as usize]);
        }
    }
}

#[test]
fn compressible_data_shrinks() {
    let (raw, footer, summary) = segment(2500);
    assert!(raw.len() > 2 * FRAME_RAW && raw.len() % FRAME_RAW != 0);
    let object = encode(&raw, &footer, &summary, 3, 2).unwrap();
    assert!(
        object.len() < raw.len() * 3 / 4,
        "{} of {}",
        object.len(),
        raw.len()
    );
}

#[test]
fn damage_is_caught() {
    let (raw, footer, summary) = segment(40);
    let object = encode(&raw, &footer, &summary, 3, 2).unwrap();
    let step = (object.len() / 2000).max(1);
    let (mut tried, mut caught) = (0, 0);
    for at in (0..object.len())
        .step_by(step)
        .chain(object.len() - 40..object.len())
    {
        let mut bad = object.clone();
        bad[at] ^= 0x20;
        tried += 1;
        // A bit zstd does not use may flip harmlessly.
        if verify(&bad, &raw).is_err() {
            caught += 1;
        }
    }
    assert!(
        caught * 100 >= tried * 99,
        "{caught} of {tried} flips caught"
    );
    for cut in [0, 1, TAIL_LEN, object.len() / 2, object.len() - 1] {
        assert!(verify(&object[..cut], &raw).is_err(), "cut at {cut}");
    }
    assert!(encode(&raw[..raw.len() - 1], &footer, &summary, 3, 1).is_err());
}

/// Counts, per thread, the largest single allocation asked for, so that
/// a test can tell that a decoder did not size a buffer from a damaged
/// length. (The whole unit-test binary allocates through it.)
mod watch {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    }

    struct Watch;

    unsafe impl GlobalAlloc for Watch {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static WATCH: Watch = Watch;

    /// Runs `f`; returns its result and the largest allocation it asked for.
    pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|c| c.set(0));
        let out = f();
        (out, LARGEST.with(|c| c.get()))
    }
}
use watch::largest_allocation;

/// Most a decoder may allocate for the small test object, whatever its
/// trailer claims (its summary and a zstd context take far less).
const ALLOC_LIMIT: usize = 1 << 20;
/// Trailer positions of the fields the tests damage.
const AT_FRAME_RAW: usize = 12;
const AT_RAW_LEN: usize = 16;
const AT_FRAMES: usize = 28;
const AT_SEGMENT_SIZE: usize = 32 + 40;
const AT_RECORDS_END: usize = 124 + 16;
const AT_FOOTER_SUMMARY_LEN: usize = 124 + 28;
const AT_SUMMARY_LEN: usize = 188;
const AT_PACKED_LEN: usize = 192;

/// A small object (one frame) and where its trailer is.
fn small_object() -> (Vec<u8>, Vec<u8>, usize, usize) {
    let (raw, footer, summary) = segment(3);
    let object = encode(&raw, &footer, &summary, 3, 1).unwrap();
    let tail = &object[object.len() - TAIL_LEN..];
    let (at, len) = trailer_range(object.len() as u64, tail).unwrap();
    (object, raw, at as usize, len as usize)
}

fn put32(t: &mut [u8], at: usize, v: u32) {
    t[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(t: &mut [u8], at: usize, v: u64) {
    t[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes the header's, the footer's and the trailer's CRCs, so that
/// a damaged length, not a checksum, is what a decoder has to catch.
fn reseal(t: &mut [u8]) {
    let crc = crc32c::crc32c(&t[32..32 + 88]);
    put32(t, 32 + 88, crc);
    let crc = crc32c::crc32c(&t[124..124 + 60]);
    put32(t, 124 + 60, crc);
    let end = t.len() - 4;
    let crc = crc32c::crc32c(&t[..end]);
    put32(t, end, crc);
}

#[test]
fn the_segment_size_bound_is_the_policys() {
    let mut p = crate::policy::Policy::new(VolumeId([1; 16]));
    p.segment_size = SEGMENT_SIZE_MAX;
    assert!(p.validate().is_ok());
    p.segment_size = SEGMENT_SIZE_MAX * 2;
    assert!(p.validate().is_err());
    let summary = zstd::zstd_safe::compress_bound(SEGMENT_SIZE_MAX as usize) as u64;
    assert!(TRAILER_LEN_MAX >= TRAILER_FIXED as u64 + summary + 4);
}

#[test]
fn a_tail_cannot_claim_a_trailer_longer_than_any_segment_needs() {
    let mut tail = Vec::new();
    put_u64(&mut tail, 1 << 40);
    tail.extend_from_slice(&TAIL_MAGIC);
    // Even when the store says the object is that large.
    let got = trailer_range(1 << 41, &tail);
    assert_eq!(got, Err(DecodeError::Invalid("archived trailer length")));
    let mut tail = Vec::new();
    put_u64(&mut tail, u64::MAX);
    tail.extend_from_slice(&TAIL_MAGIC);
    assert!(trailer_range(u64::MAX, &tail).is_err());
}

type Damage = Box<dyn Fn(&mut Vec<u8>)>;

/// Damaged lengths in `trailer` (of the small object, with its frame
/// table at `table`) and the error each must give.
fn huge_lengths(trailer: &[u8], table: usize) -> Vec<(&'static str, Damage, DecodeError)> {
    let records_end = u32_at(trailer, AT_RECORDS_END) as u64;
    let summary_len = u32_at(trailer, AT_SUMMARY_LEN) as u64;
    let invalid = DecodeError::Invalid;
    vec![
        (
            "frame_raw u32::MAX",
            Box::new(|t| put32(t, AT_FRAME_RAW, u32::MAX)),
            invalid("archived frame size"),
        ),
        (
            "frame_raw 0",
            Box::new(|t| put32(t, AT_FRAME_RAW, 0)),
            invalid("archived frame size"),
        ),
        (
            "raw_len u64::MAX",
            Box::new(|t| put64(t, AT_RAW_LEN, u64::MAX)),
            invalid("archived trailer disagrees with its footer"),
        ),
        (
            "n u32::MAX",
            Box::new(|t| put32(t, AT_FRAMES, u32::MAX)),
            invalid("archived frame count"),
        ),
        (
            "segment_size u64::MAX",
            Box::new(|t| put64(t, AT_SEGMENT_SIZE, u64::MAX)),
            invalid("archived segment size"),
        ),
        (
            "summary_len u32::MAX",
            Box::new(|t| put32(t, AT_SUMMARY_LEN, u32::MAX)),
            invalid("archived summary length"),
        ),
        (
            "summary_len u32::MAX, in the footer too",
            Box::new(|t| {
                put32(t, AT_SUMMARY_LEN, u32::MAX);
                put32(t, AT_FOOTER_SUMMARY_LEN, u32::MAX);
            }),
            invalid("archived summary length"),
        ),
        (
            "compressed summary length u32::MAX",
            Box::new(|t| put32(t, AT_PACKED_LEN, u32::MAX)),
            invalid("archived compressed summary length"),
        ),
        (
            // n frames, all consistent, but a table of 2 MiB is not there.
            "n of a full 1 GiB segment of 4 KiB frames",
            Box::new(move |t| {
                let raw_len = SEGMENT_SIZE_MAX - 64 - summary_len;
                put32(t, AT_FRAME_RAW, 4096);
                put64(t, AT_RAW_LEN, raw_len);
                put32(t, AT_FRAMES, raw_len.div_ceil(4096) as u32);
                put64(t, AT_SEGMENT_SIZE, SEGMENT_SIZE_MAX);
                put32(t, AT_RECORDS_END, raw_len as u32);
            }),
            invalid("archived frame table length"),
        ),
        (
            // Fits the largest segment, but the frame says otherwise.
            "summary_len of a full 1 GiB segment",
            Box::new(move |t| {
                let big = (SEGMENT_SIZE_MAX - 64 - records_end) as u32;
                put64(t, AT_SEGMENT_SIZE, SEGMENT_SIZE_MAX);
                put32(t, AT_SUMMARY_LEN, big);
                put32(t, AT_FOOTER_SUMMARY_LEN, big);
            }),
            DecodeError::Damaged("archived summary"),
        ),
        (
            "a frame 1 TiB long",
            Box::new(move |t| put64(t, table + 8, 1 << 40)),
            invalid("archived frame length"),
        ),
    ]
}

#[test]
fn huge_lengths_in_a_trailer_are_errors_not_allocations() {
    let (object, _, at, len) = small_object();
    let trailer = object[at..at + len].to_vec();
    let mut failures = Vec::new();
    for (what, damage, expect) in &huge_lengths(&trailer, len - 4 - 16) {
        let mut t = trailer.clone();
        damage(&mut t);
        reseal(&mut t);
        let (got, largest) = largest_allocation(|| Trailer::decode(&t));
        let got = got.map(|_| "a trailer");
        if got != Err(expect.clone()) || largest > ALLOC_LIMIT {
            failures.push(format!(
                "{what}: {got:?} after allocating up to {largest} bytes, \
                 expected {expect:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_frame_count_of_billions_is_an_error_not_a_table() {
    let (object, _, at, len) = small_object();
    let mut t = object[at..at + len].to_vec();
    // Every field agrees with one frame per raw byte of a 4 GiB segment.
    put32(&mut t, AT_FRAME_RAW, 1);
    put64(&mut t, AT_RAW_LEN, u32::MAX as u64);
    put32(&mut t, AT_FRAMES, u32::MAX);
    put64(&mut t, AT_SEGMENT_SIZE, u64::MAX);
    put32(&mut t, AT_RECORDS_END, u32::MAX);
    reseal(&mut t);
    let (got, largest) = largest_allocation(|| Trailer::decode(&t));
    assert!(got.is_err());
    assert!(largest <= ALLOC_LIMIT, "allocated {largest} bytes");
}

#[test]
fn verify_allocates_for_the_raw_bytes_not_for_the_stated_frame_size() {
    let (mut object, raw, at, len) = small_object();
    // A frame size no larger than the largest segment: the one frame
    // still holds all raw bytes, so the object is valid.
    put32(
        &mut object[at..at + len],
        AT_FRAME_RAW,
        SEGMENT_SIZE_MAX as u32,
    );
    reseal(&mut object[at..at + len]);
    let (got, largest) = largest_allocation(|| verify(&object, &raw));
    assert_eq!(got.map(|t| t.frame_raw), Ok(SEGMENT_SIZE_MAX as u32));
    assert!(largest <= ALLOC_LIMIT, "allocated {largest} bytes");
}

#[test]
fn names() {
    let v = VolumeId([0xab; 16]);
    let name = object_name(v, 42);
    assert_eq!(name, format!("{}-0000000000000042.lsa", "ab".repeat(16)));
    assert_eq!(seq_of(v, &name), Some(42));
    assert_eq!(seq_of(VolumeId([1; 16]), &name), None, "another volume's");
    let hex = v.to_hex();
    for bad in [
        "0000000000000042.lsa".to_string(),
        format!("{hex}-000000000000004x.lsa"),
        format!("{hex}-0000000000000042.seg"),
        format!("{hex}-42.lsa"),
    ] {
        assert_eq!(seq_of(v, &bad), None, "{bad}");
    }
}
