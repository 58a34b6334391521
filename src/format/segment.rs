//! Segment header, summary and footer.
//!
//! A segment file is `segment_size` bytes long:
//! ```text
//! [0, 4096)                      header (92 bytes used, rest zero)
//! [4096, records_end)            records, chained by crc
//! [records_end, +summary_len)    summary (sealed segments only)
//! [segment_size - 64, end)       footer (sealed segments only)
//! ```
//! Header layout:
//! ```text
//!  0 [8] magic "LSVFSSEG"   8 u16 version   10 u16 zero   12 u32 header_len (4096)
//! 16 [16] volume id         32 u64 seq      40 u64 segment_size
//! 48 u32 block_size         52 u32 zero     56 u64 window_start
//! 64 u64 created_ns         72 u64 next_ino  80 u64 next_sync_id
//! 88 u32 crc of [0, 88)
//! ```
//! Footer layout:
//! ```text
//!  0 [8] magic "LSVFSEND"   8 u64 seq       16 u32 records_end
//! 20 u32 record_count       24 u32 last_crc (crc of the last record)
//! 28 u32 summary_len        32 u32 summary_crc
//! 36 [24] zero              60 u32 crc of [0, 60)
//! ```
//! Summary entry (one per record, in log order):
//! ```text
//! 0 u32 offset  4 u32 len  8 u8 kind  9 u8 flags  10 u16 key_len  12 u16 value_len
//! 14 key, then the value when `Kind::value_in_summary` (value_len bytes; else 0)
//! ```

use super::codec::*;
use super::record::{DATA_KEY_LEN, Kind, Record, RecordView, data_record_len};
use super::{FORMAT_VERSION, VolumeId};

pub const SEGMENT_MAGIC: [u8; 8] = *b"LSVFSSEG";
pub const FOOTER_MAGIC: [u8; 8] = *b"LSVFSEND";
pub const SEGMENT_HEADER_LEN: usize = 4096;
const HEADER_USED: usize = 88;
const _: () = assert!(HEADER_USED == 8 + 2 + 2 + 4 + 16 + 8 + 8 + 4 + 4 + 8 + 8 + 8 + 8);
const _: () = assert!(HEADER_USED + 4 <= SEGMENT_HEADER_LEN);
pub const FOOTER_LEN: usize = 64;
const _: () = assert!(FOOTER_LEN == 8 + 8 + 4 + 4 + 4 + 4 + 4 + 24 + 4);
/// Length of a summary entry without its key and value.
pub const SUMMARY_ENTRY_FIXED: usize = 14;
const _: () = assert!(SUMMARY_ENTRY_FIXED == 4 + 4 + 1 + 1 + 2 + 2);

/// Bytes a record of encoded length `len` takes in a segment: the record
/// and its summary entry. Copying it forward costs as much again. The one
/// source of this sum for the writer, the index and the capacity rule.
pub fn segment_cost(record: &Record, len: u32) -> u32 {
    len + SummaryEntry::len_of(record) as u32
}

/// Segment bytes of one full data block, summary entry included.
pub fn block_cost(block_size: u32) -> u64 {
    (data_record_len(block_size) as usize + SUMMARY_ENTRY_FIXED + DATA_KEY_LEN) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub volume_id: VolumeId,
    pub seq: u64,
    pub segment_size: u64,
    pub block_size: u32,
    /// The oldest segment that could hold a live record when this segment
    /// was opened: a backward scan ending in this segment starts no earlier.
    pub window_start: u64,
    pub created_ns: u64,
    /// Inode numbers below this were allocated before the segment was
    /// opened; inode numbers are never reused.
    pub next_ino: u64,
    /// Sync-point ids below this were assigned before the segment was opened.
    pub next_sync_id: u64,
}

impl SegmentHeader {
    /// Encodes the header into a full `SEGMENT_HEADER_LEN` block; returns the
    /// block and its crc (the `prev` of the segment's first record).
    pub fn encode(&self) -> (Vec<u8>, u32) {
        let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN);
        buf.extend_from_slice(&SEGMENT_MAGIC);
        put_u16(&mut buf, FORMAT_VERSION);
        put_u16(&mut buf, 0);
        put_u32(&mut buf, SEGMENT_HEADER_LEN as u32);
        buf.extend_from_slice(&self.volume_id.0);
        put_u64(&mut buf, self.seq);
        put_u64(&mut buf, self.segment_size);
        put_u32(&mut buf, self.block_size);
        put_u32(&mut buf, 0);
        put_u64(&mut buf, self.window_start);
        put_u64(&mut buf, self.created_ns);
        put_u64(&mut buf, self.next_ino);
        put_u64(&mut buf, self.next_sync_id);
        debug_assert_eq!(buf.len(), HEADER_USED);
        let crc = crc32c::crc32c(&buf);
        put_u32(&mut buf, crc);
        buf.resize(SEGMENT_HEADER_LEN, 0);
        (buf, crc)
    }

    /// Decodes and verifies a header; returns it with its crc.
    pub fn decode(buf: &[u8]) -> DecodeResult<(Self, u32)> {
        let mut input = buf;
        let i = &mut input;
        if get_bytes::<8>(i)? != SEGMENT_MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = get_u16(i)?;
        get_u16(i)?;
        let header_len = get_u32(i)?;
        let volume_id = VolumeId(get_bytes::<16>(i)?);
        let seq = get_u64(i)?;
        let segment_size = get_u64(i)?;
        let block_size = get_u32(i)?;
        get_u32(i)?;
        let window_start = get_u64(i)?;
        let created_ns = get_u64(i)?;
        let next_ino = get_u64(i)?;
        let next_sync_id = get_u64(i)?;
        let crc = get_u32(i)?;
        verify_crc(crc, &buf[..HEADER_USED])?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        if header_len as usize != SEGMENT_HEADER_LEN {
            return Err(DecodeError::Invalid("segment header length"));
        }
        if window_start > seq {
            return Err(DecodeError::Invalid("segment window start"));
        }
        let header = SegmentHeader {
            volume_id,
            seq,
            segment_size,
            block_size,
            window_start,
            created_ns,
            next_ino,
            next_sync_id,
        };
        Ok((header, crc))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub seq: u64,
    pub records_end: u32,
    pub record_count: u32,
    pub last_crc: u32,
    pub summary_len: u32,
    pub summary_crc: u32,
}

impl Footer {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(FOOTER_LEN);
        buf.extend_from_slice(&FOOTER_MAGIC);
        put_u64(&mut buf, self.seq);
        put_u32(&mut buf, self.records_end);
        put_u32(&mut buf, self.record_count);
        put_u32(&mut buf, self.last_crc);
        put_u32(&mut buf, self.summary_len);
        put_u32(&mut buf, self.summary_crc);
        buf.resize(FOOTER_LEN - 4, 0);
        let crc = crc32c::crc32c(&buf);
        put_u32(&mut buf, crc);
        buf
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<Self> {
        if buf.len() < FOOTER_LEN {
            return Err(DecodeError::Truncated {
                needed: FOOTER_LEN,
                available: buf.len(),
            });
        }
        let mut input = buf;
        let i = &mut input;
        if get_bytes::<8>(i)? != FOOTER_MAGIC {
            return Err(DecodeError::Magic);
        }
        let footer = Footer {
            seq: get_u64(i)?,
            records_end: get_u32(i)?,
            record_count: get_u32(i)?,
            last_crc: get_u32(i)?,
            summary_len: get_u32(i)?,
            summary_crc: get_u32(i)?,
        };
        verify_crc(u32_at(buf, FOOTER_LEN - 4), &buf[..FOOTER_LEN - 4])?;
        Ok(footer)
    }
}

/// What the backward scan needs to know of one record without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryEntry {
    pub offset: u32,
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub key: Vec<u8>,
    /// The record's value for kinds where `Kind::value_in_summary`, else empty.
    pub value: Vec<u8>,
}

impl SummaryEntry {
    /// The summary entry of a record found at `offset`.
    pub fn of(offset: u32, view: &RecordView<'_>) -> Self {
        let kind = view.header.kind;
        SummaryEntry {
            offset,
            len: view.header.len,
            kind,
            flags: view.header.flags,
            key: view.key.to_vec(),
            value: if kind.value_in_summary() {
                view.value.to_vec()
            } else {
                Vec::new()
            },
        }
    }

    pub fn encoded_len(&self) -> usize {
        SUMMARY_ENTRY_FIXED + self.key.len() + self.value.len()
    }

    /// Length of the summary entry that `record` gets when appended.
    pub fn len_of(record: &Record) -> usize {
        let value = match record.kind().value_in_summary() {
            true => record.value_len(),
            false => 0,
        };
        SUMMARY_ENTRY_FIXED + record.key_len() + value
    }

    pub fn encode(&self, buf: &mut Vec<u8>) {
        Self::encode_parts(
            buf,
            self.offset,
            self.len,
            self.kind,
            self.flags,
            &self.key,
            &self.value,
        );
    }

    /// Encodes an entry from its parts, as the writer does without building one.
    pub fn encode_parts(
        buf: &mut Vec<u8>,
        offset: u32,
        len: u32,
        kind: Kind,
        flags: u8,
        key: &[u8],
        value: &[u8],
    ) {
        put_u32(buf, offset);
        put_u32(buf, len);
        put_u8(buf, kind as u8);
        put_u8(buf, flags);
        put_u16(buf, key.len() as u16);
        put_u16(buf, value.len() as u16);
        buf.extend_from_slice(key);
        buf.extend_from_slice(value);
    }

    pub fn decode(input: &mut &[u8]) -> DecodeResult<Self> {
        let offset = get_u32(input)?;
        let len = get_u32(input)?;
        let kind = Kind::try_from(get_u8(input)?)?;
        let flags = get_u8(input)?;
        let key_len = get_u16(input)? as usize;
        let value_len = get_u16(input)? as usize;
        let key = take(input, key_len)?.to_vec();
        let value = take(input, value_len)?.to_vec();
        Ok(SummaryEntry {
            offset,
            len,
            kind,
            flags,
            key,
            value,
        })
    }

    /// Decodes a whole summary.
    pub fn decode_all(mut input: &[u8]) -> DecodeResult<Vec<Self>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            out.push(Self::decode(&mut input)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            volume_id: VolumeId([7; 16]),
            seq: 42,
            segment_size: 1 << 20,
            block_size: 4096,
            window_start: 40,
            created_ns: 1,
            next_ino: 100,
            next_sync_id: 7,
        }
    }

    #[test]
    fn header_round_trip_and_corruption() {
        let (buf, crc) = header().encode();
        assert_eq!(buf.len(), SEGMENT_HEADER_LEN);
        assert_eq!(SegmentHeader::decode(&buf).unwrap(), (header(), crc));
        for i in 0..HEADER_USED + 4 {
            let mut bad = buf.clone();
            bad[i] ^= 1;
            assert!(SegmentHeader::decode(&bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        let mut h = header().encode().0;
        h[8] = 9;
        let crc = crc32c::crc32c(&h[..HEADER_USED]);
        h[HEADER_USED..HEADER_USED + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&h), Err(DecodeError::Version(9)));
    }

    #[test]
    fn footer_round_trip_and_corruption() {
        let f = Footer {
            seq: 3,
            records_end: 9000,
            record_count: 12,
            last_crc: 5,
            summary_len: 300,
            summary_crc: 6,
        };
        let buf = f.encode();
        assert_eq!(Footer::decode(&buf).unwrap(), f);
        for i in 0..FOOTER_LEN {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(Footer::decode(&bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn summary_round_trip() {
        let entries = vec![
            SummaryEntry {
                offset: 4096,
                len: 40,
                kind: Kind::Dirent,
                flags: 1,
                key: b"12345678name".to_vec(),
                value: vec![1; 9],
            },
            SummaryEntry {
                offset: 4136,
                len: 4128,
                kind: Kind::Data,
                flags: 0,
                key: vec![0; 16],
                value: vec![],
            },
        ];
        let mut buf = Vec::new();
        for e in &entries {
            e.encode(&mut buf);
        }
        assert_eq!(
            buf.len(),
            entries.iter().map(|e| e.encoded_len()).sum::<usize>()
        );
        assert_eq!(SummaryEntry::decode_all(&buf).unwrap(), entries);
        assert!(SummaryEntry::decode_all(&buf[..buf.len() - 1]).is_err());
    }
}
