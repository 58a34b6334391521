//! Archived segment objects: how a retired segment is stored in the backing
//! store, so that one record can be fetched with three ranged reads (the
//! fixed tail, the trailer, one frame) without downloading or decompressing
//! the whole segment.
//!
//! An object is the segment's bytes `[0, records_end)` (header block and
//! records) cut into frames of `frame_raw` bytes, each compressed as an
//! independent zstd frame with zstd's content checksum, then a trailer and a
//! fixed 16-byte tail (the object is named `{volume id}-{seq:016}.lsa`):
//! ```text
//! frames   frame 0 | frame 1 | ... | frame n-1
//! trailer   0 [8] magic "LSVFSARC"   8 u16 version   10 u16 zero
//!          12 u32 frame_raw          16 u64 raw_len (= records_end)
//!          24 u32 raw_crc (crc32c of all raw bytes)   28 u32 n (frames)
//!          32 [92] segment header bytes [0, 92)   124 [64] footer
//!         188 u32 summary_len (raw)   192 u32 length of the compressed
//!             summary, then the summary as one zstd frame
//!             then n + 1 × u64: where each frame starts, and where the
//!             last one ends (= where the trailer starts)
//!             then u32 crc32c of every trailer byte before it
//! tail      0 u64 trailer length (crc included)   8 [8] magic "LSVFSTRL"
//! ```

use super::codec::*;
use super::segment::{FOOTER_LEN, Footer, SegmentHeader};
use super::{FORMAT_VERSION, VolumeId};

pub const ARCHIVE_MAGIC: [u8; 8] = *b"LSVFSARC";
const TAIL_MAGIC: [u8; 8] = *b"LSVFSTRL";
/// Raw bytes per frame: a record is fetched with at most this much
/// decompression (two frames when it straddles a boundary).
pub const FRAME_RAW: usize = 4 << 20;
/// Length of the fixed end of every object, read first.
pub const TAIL_LEN: usize = 16;
/// Bytes of the segment header that are used (and checksummed).
const HEADER_BYTES: usize = 92;
const TRAILER_FIXED: usize = 196;
/// The largest segment a policy allows (`policy.rs` refuses larger ones).
/// Every length a trailer states is bounded by what such a segment can
/// hold before it sizes a read or an allocation.
pub const SEGMENT_SIZE_MAX: u64 = 1 << 30;
/// The smallest `frame_raw` a decoder accepts (what bounds the number of
/// frames, hence the frame table, of the largest segment).
const FRAME_RAW_MIN: u32 = 4096;
/// The longest trailer a decoder accepts: its fixed part, the compressed
/// summary of the largest segment (zstd's compress bound adds 1/256 and a
/// few bytes to the input; 1/128 covers it), the frame table of the largest
/// segment cut into the smallest frames, and the CRC.
const TRAILER_LEN_MAX: u64 = TRAILER_FIXED as u64
    + (SEGMENT_SIZE_MAX + SEGMENT_SIZE_MAX / 128)
    + 8 * (SEGMENT_SIZE_MAX / FRAME_RAW_MIN as u64 + 1)
    + 4;

/// What an archived object says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub header: SegmentHeader,
    /// The crc `SegmentHeader::decode` gives: the `prev` of the first record.
    pub header_crc: u32,
    pub footer: Footer,
    pub summary: Vec<u8>,
    pub frame_raw: u32,
    pub raw_len: u64,
    /// Where each frame starts in the object, plus where the last one ends.
    pub frame_offsets: Vec<u64>,
    pub raw_crc: u32,
}

/// The name of segment `seq`'s object in the backing store. The volume id
/// comes first, so that volumes sharing one store (one bucket for many
/// hosts) never overwrite each other's objects.
pub fn object_name(volume: VolumeId, seq: u64) -> String {
    format!("{}-{seq:016}.lsa", volume.to_hex())
}

/// The segment of `volume` an object name stands for (None for another
/// volume's objects and other names).
pub fn seq_of(volume: VolumeId, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(&volume.to_hex())?.strip_prefix('-')?;
    let digits = rest.strip_suffix(".lsa")?;
    (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Compresses `raw` (a sealed segment's bytes `[0, footer.records_end)`)
/// into an object, on up to `threads` threads (frames are independent).
pub fn encode(
    raw: &[u8],
    footer: &Footer,
    summary: &[u8],
    level: i32,
    threads: usize,
) -> std::io::Result<Vec<u8>> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    if raw.len() != footer.records_end as usize || raw.len() < HEADER_BYTES {
        return Err(invalid("segment bytes do not end where the footer says"));
    }
    SegmentHeader::decode(raw).map_err(|e| invalid(&format!("segment header: {e}")))?;
    let chunks: Vec<&[u8]> = raw.chunks(FRAME_RAW).collect();
    let per_thread = chunks.len().div_ceil(threads.max(1)).max(1);
    let frames: Vec<std::io::Result<Vec<Vec<u8>>>> = std::thread::scope(|scope| {
        let work: Vec<_> = chunks
            .chunks(per_thread)
            .map(|part| scope.spawn(move || compress_all(part, level)))
            .collect();
        work.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("compressor panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(raw.len() / 2);
    let mut offsets = Vec::with_capacity(chunks.len() + 1);
    for part in frames {
        for frame in part? {
            offsets.push(out.len() as u64);
            out.extend_from_slice(&frame);
        }
    }
    offsets.push(out.len() as u64);
    let mut compressor = compressor(level)?;
    let start = out.len();
    out.extend_from_slice(&ARCHIVE_MAGIC);
    put_u16(&mut out, FORMAT_VERSION);
    put_u16(&mut out, 0);
    put_u32(&mut out, FRAME_RAW as u32);
    put_u64(&mut out, raw.len() as u64);
    put_u32(&mut out, crc32c::crc32c(raw));
    put_u32(&mut out, (offsets.len() - 1) as u32);
    out.extend_from_slice(&raw[..HEADER_BYTES]);
    out.extend_from_slice(&footer.encode());
    let packed = compressor.compress(summary)?;
    put_u32(&mut out, summary.len() as u32);
    put_u32(&mut out, packed.len() as u32);
    out.extend_from_slice(&packed);
    for o in offsets {
        put_u64(&mut out, o);
    }
    let crc = crc32c::crc32c(&out[start..]);
    put_u32(&mut out, crc);
    let trailer_len = (out.len() - start) as u64;
    put_u64(&mut out, trailer_len);
    out.extend_from_slice(&TAIL_MAGIC);
    Ok(out)
}

fn compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

/// Compresses each chunk as one frame.
fn compress_all(chunks: &[&[u8]], level: i32) -> std::io::Result<Vec<Vec<u8>>> {
    let mut c = compressor(level)?;
    chunks.iter().map(|chunk| c.compress(chunk)).collect()
}

/// Where the trailer is, as (offset, length), from the object's length and
/// its last `TAIL_LEN` bytes. The length must fit in the object and be no
/// longer than the trailer of the largest segment, whatever the store says
/// the object's size is.
pub fn trailer_range(object_len: u64, tail: &[u8]) -> DecodeResult<(u64, u64)> {
    let mut input = tail;
    let len = get_u64(&mut input)?;
    if get_bytes::<8>(&mut input)? != TAIL_MAGIC {
        return Err(DecodeError::Magic);
    }
    let room = object_len.saturating_sub(TAIL_LEN as u64);
    if len < TRAILER_FIXED as u64 + 4 || len > room.min(TRAILER_LEN_MAX) {
        return Err(DecodeError::Invalid("archived trailer length"));
    }
    Ok((room - len, len))
}

impl Trailer {
    /// Decodes and checks a trailer. Every length it states is checked
    /// against the others and against what a segment can hold before it
    /// sizes anything, so damaged or hostile bytes give an error, never a
    /// huge allocation.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Trailer> {
        if bytes.len() < TRAILER_FIXED + 4 {
            return Err(DecodeError::Truncated {
                needed: TRAILER_FIXED + 4,
                available: bytes.len(),
            });
        }
        let body = &bytes[..bytes.len() - 4];
        verify_crc(u32_at(bytes, bytes.len() - 4), body)?;
        let i = &mut &body[..];
        if get_bytes::<8>(i)? != ARCHIVE_MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = get_u16(i)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        get_u16(i)?;
        let frame_raw = get_u32(i)?;
        let raw_len = get_u64(i)?;
        let raw_crc = get_u32(i)?;
        let frames = get_u32(i)? as u64;
        let (header, header_crc) = SegmentHeader::decode(take(i, HEADER_BYTES)?)?;
        let footer = Footer::decode(take(i, FOOTER_LEN)?)?;
        let summary_len = get_u32(i)?;
        let packed_len = get_u32(i)? as usize;
        check_lengths(&header, &footer, frame_raw, raw_len, frames, summary_len)?;
        if packed_len > zstd::zstd_safe::compress_bound(summary_len as usize) {
            return Err(DecodeError::Invalid("archived compressed summary length"));
        }
        let packed = take(i, packed_len)?;
        // What is left is the frame table, whose length `frames` gives.
        if i.len() as u64 != (frames + 1) * 8 {
            return Err(DecodeError::Invalid("archived frame table length"));
        }
        let mut frame_offsets = Vec::with_capacity(frames as usize + 1);
        for _ in 0..=frames {
            frame_offsets.push(get_u64(i)?);
        }
        check_frame_offsets(&frame_offsets, frame_raw, raw_len)?;
        let summary = decompress(packed, summary_len as usize, "archived summary")?;
        verify_crc(footer.summary_crc, &summary)?;
        Ok(Trailer {
            header,
            header_crc,
            footer,
            summary,
            frame_raw,
            raw_len,
            frame_offsets,
            raw_crc,
        })
    }

    pub fn frames(&self) -> usize {
        self.frame_offsets.len() - 1
    }

    /// The frame holding raw offset `offset`.
    pub fn frame_of(&self, offset: u64) -> usize {
        (offset / self.frame_raw as u64) as usize
    }

    /// (offset, length) of frame `i` in the object.
    pub fn frame_span(&self, i: usize) -> (u64, u64) {
        let at = self.frame_offsets[i];
        (at, self.frame_offsets[i + 1] - at)
    }

    /// (offset, length) of the raw bytes frame `i` holds.
    pub fn raw_span(&self, i: usize) -> (u64, u64) {
        let at = i as u64 * self.frame_raw as u64;
        (at, (self.raw_len - at).min(self.frame_raw as u64))
    }

    /// Decompresses frame `i`, checking zstd's checksum and the length.
    pub fn decompress_frame(&self, i: usize, compressed: &[u8]) -> DecodeResult<Vec<u8>> {
        decompress(compressed, self.raw_span(i).1 as usize, "archived frame")
    }
}

/// Checks the trailer's lengths against its footer and against what a
/// segment can hold: the records and the summary lie in a segment of at
/// most [`SEGMENT_SIZE_MAX`] bytes, before its footer, and the frames cut
/// exactly the records.
fn check_lengths(
    header: &SegmentHeader,
    footer: &Footer,
    frame_raw: u32,
    raw_len: u64,
    frames: u64,
    summary_len: u32,
) -> DecodeResult<()> {
    if raw_len != footer.records_end as u64 || header.seq != footer.seq {
        return Err(DecodeError::Invalid(
            "archived trailer disagrees with its footer",
        ));
    }
    if header.segment_size > SEGMENT_SIZE_MAX {
        return Err(DecodeError::Invalid("archived segment size"));
    }
    // raw_len is a u32 (records_end): the sum cannot overflow.
    let used = raw_len + summary_len as u64 + FOOTER_LEN as u64;
    if summary_len != footer.summary_len || used > header.segment_size {
        return Err(DecodeError::Invalid("archived summary length"));
    }
    if !(FRAME_RAW_MIN as u64..=SEGMENT_SIZE_MAX).contains(&(frame_raw as u64)) {
        return Err(DecodeError::Invalid("archived frame size"));
    }
    if frames != raw_len.div_ceil(frame_raw as u64) {
        return Err(DecodeError::Invalid("archived frame count"));
    }
    Ok(())
}

/// Checks the frame table: frames start at 0, follow each other, and none
/// is longer than zstd's bound for the raw bytes it holds (so no ranged
/// read of a frame asks for more).
fn check_frame_offsets(offsets: &[u64], frame_raw: u32, raw_len: u64) -> DecodeResult<()> {
    if offsets.first() != Some(&0) {
        return Err(DecodeError::Invalid("archived frame offsets"));
    }
    for (i, w) in offsets.windows(2).enumerate() {
        if w[0] >= w[1] {
            return Err(DecodeError::Invalid("archived frame offsets"));
        }
        // i < frames = ceil(raw_len / frame_raw): the frame starts before raw_len.
        let raw = (raw_len - i as u64 * frame_raw as u64).min(frame_raw as u64);
        if w[1] - w[0] > zstd::zstd_safe::compress_bound(raw as usize) as u64 {
            return Err(DecodeError::Invalid("archived frame length"));
        }
    }
    Ok(())
}

/// One zstd frame that must decompress, checksum intact, to `len` bytes.
/// Callers bound `len` by what a segment holds; zstd allocates no more
/// than the frame says it holds when that is less.
fn decompress(frame: &[u8], len: usize, what: &'static str) -> DecodeResult<Vec<u8>> {
    match zstd::bulk::decompress(frame, len) {
        Ok(raw) if raw.len() == len => Ok(raw),
        _ => Err(DecodeError::Damaged(what)),
    }
}

/// Checks that `object` decodes to exactly `raw`: its trailer, then every
/// frame decompressed (into one reused buffer) and compared with the
/// segment's bytes. This is the read-back verification of a put.
pub fn verify(object: &[u8], raw: &[u8]) -> DecodeResult<Trailer> {
    if object.len() < TAIL_LEN {
        return Err(DecodeError::Truncated {
            needed: TAIL_LEN,
            available: object.len(),
        });
    }
    let (at, len) = trailer_range(object.len() as u64, &object[object.len() - TAIL_LEN..])?;
    let trailer = Trailer::decode(&object[at as usize..(at + len) as usize])?;
    if *trailer.frame_offsets.last().unwrap_or(&0) != at || trailer.raw_len != raw.len() as u64 {
        return Err(DecodeError::Invalid(
            "archived frames do not end at the trailer",
        ));
    }
    let mut zstd = zstd::bulk::Decompressor::new().map_err(|_| DecodeError::Damaged("zstd"))?;
    // A frame holds at most raw_len bytes, whatever frame_raw says.
    let mut buf = vec![0u8; (trailer.frame_raw as u64).min(trailer.raw_len) as usize];
    for i in 0..trailer.frames() {
        let (f, n) = trailer.frame_span(i);
        let (r, m) = trailer.raw_span(i);
        let out = &mut buf[..m as usize];
        let got = zstd.decompress_to_buffer(&object[f as usize..(f + n) as usize], out);
        if got.ok() != Some(m as usize) || *out != raw[r as usize..(r + m) as usize] {
            return Err(DecodeError::Damaged("archived frame"));
        }
    }
    Ok(trailer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::FLAG_GROUP_END;
    use crate::format::{FileKind, InodeAttrs, Record, RecordView, SummaryEntry, VolumeId};

    /// A sealed segment with `blocks` data records of mixed content.
    fn segment(blocks: u32) -> (Vec<u8>, Footer, Vec<u8>) {
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
            SummaryEntry::of(at as u32, &RecordView::parse(&raw[at..]).unwrap())
                .encode(&mut summary);
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

    #[test]
    fn huge_lengths_in_a_trailer_are_errors_not_allocations() {
        let (object, _, at, len) = small_object();
        let trailer = object[at..at + len].to_vec();
        let table = len - 4 - 16;
        let records_end = u32_at(&trailer, AT_RECORDS_END) as u64;
        let summary_len = u32_at(&trailer, AT_SUMMARY_LEN) as u64;
        let invalid = DecodeError::Invalid;
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Damage, DecodeError)> = vec![
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
        ];
        let mut failures = Vec::new();
        for (what, damage, expect) in &cases {
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
}
