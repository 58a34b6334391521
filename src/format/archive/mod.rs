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

/// The name of the object holding the first `end` bytes of segment `seq`
/// while it is not sealed yet (a partial object, shipped so that a sync
/// point in the segment is served by the store before the segment seals).
pub fn partial_name(volume: VolumeId, seq: u64, end: u32) -> String {
    format!("{}-{seq:016}-{end:010}.lsp", volume.to_hex())
}

/// The segment and end a partial object's name stands for.
pub fn partial_of(volume: VolumeId, name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix(&volume.to_hex())?.strip_prefix('-')?;
    let (seq, end) = rest.strip_suffix(".lsp")?.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(seq, 16) && digits(end, 10)).then(|| Some((seq.parse().ok()?, end.parse().ok()?)))?
}

/// The volume and segment an object name stands for, whole or partial
/// (None for other names).
pub fn parse_name(name: &str) -> Option<(VolumeId, u64)> {
    let (hex, _) = name.split_once('-')?;
    let volume = VolumeId::from_hex(hex)?;
    let seq = seq_of(volume, name).or_else(|| partial_of(volume, name).map(|(s, _)| s))?;
    Some((volume, seq))
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
pub(crate) mod tests;
