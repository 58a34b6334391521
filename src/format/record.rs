//! Records: the unit appended to the log.
//!
//! Layout (little-endian), see docs/FORMAT.md:
//! ```text
//!  0 u32  crc      CRC32C of bytes [4, len)
//!  4 u32  prev     crc of the preceding record in the segment (the segment
//!                  header's crc for the first): chains records so that stale
//!                  bytes left behind in a reused file never pass as records
//!  8 u32  len      whole record length, header included
//! 12 u8   kind     see `Kind`
//! 13 u8   flags    bit 0 GROUP_END (last record of an atomic group),
//!                  bit 1 COPIED (rewritten forward by the archiver)
//! 14 u16  key_len
//! 16 ..   key (key_len bytes), then value (len - 16 - key_len bytes)
//! ```

use super::codec::*;
use super::inode::{FileKind, InodeAttrs};

pub const RECORD_HEADER_LEN: usize = 16;
const _: () = assert!(RECORD_HEADER_LEN == 4 + 4 + 4 + 1 + 1 + 2);
/// Key length of data and truncate records: inode and block number.
pub const DATA_KEY_LEN: usize = 16;
/// Longest name of a directory entry or an extended attribute.
pub const NAME_MAX: usize = 255;
/// Longest extended-attribute value.
pub const XATTR_VALUE_MAX: usize = 64 * 1024;
/// Longest sync-point label and requester, in bytes.
pub const LABEL_MAX: usize = 256;
/// Largest file size, in bytes: file offsets are i64 (FUSE, lseek, stat).
pub const FILE_SIZE_MAX: u64 = i64::MAX as u64;

/// Whether data block `block` of `block_size` bytes starts at an offset a
/// file can have (below [`FILE_SIZE_MAX`]). Only such blocks are ever
/// written; then the byte offset of the block and of its end fit in a u64.
pub fn data_block_in_range(block: u64, block_size: u64) -> bool {
    block
        .checked_mul(block_size)
        .is_some_and(|start| start < FILE_SIZE_MAX)
}

/// Length of a data record holding a full block of `block_size` bytes.
pub fn data_record_len(block_size: u32) -> u32 {
    (RECORD_HEADER_LEN + DATA_KEY_LEN) as u32 + block_size
}

pub const FLAG_GROUP_END: u8 = 1;
pub const FLAG_COPIED: u8 = 2;
const FLAGS_KNOWN: u8 = FLAG_GROUP_END | FLAG_COPIED;

/// The kind byte of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Inode = 1,
    InodeDelete = 2,
    Dirent = 3,
    DirentDelete = 4,
    Data = 5,
    Truncate = 6,
    Xattr = 7,
    XattrDelete = 8,
    SyncPoint = 9,
}

impl TryFrom<u8> for Kind {
    type Error = DecodeError;
    fn try_from(v: u8) -> DecodeResult<Self> {
        Ok(match v {
            1 => Kind::Inode,
            2 => Kind::InodeDelete,
            3 => Kind::Dirent,
            4 => Kind::DirentDelete,
            5 => Kind::Data,
            6 => Kind::Truncate,
            7 => Kind::Xattr,
            8 => Kind::XattrDelete,
            9 => Kind::SyncPoint,
            other => return Err(DecodeError::Kind(other)),
        })
    }
}

impl Kind {
    /// Whether a segment summary carries this kind's value, so that the
    /// backward scan can build the index without reading the record itself.
    pub fn value_in_summary(self) -> bool {
        matches!(self, Kind::Dirent | Kind::SyncPoint)
    }
}

/// A sync point as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncInfo {
    pub id: u64,
    pub time_ns: u64,
    pub label: String,
    pub requester: String,
}

/// One log record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Inode {
        ino: u64,
        attrs: InodeAttrs,
    },
    /// Tombstone for an inode and every key that belongs to it.
    InodeDelete {
        ino: u64,
    },
    Dirent {
        parent: u64,
        name: Vec<u8>,
        child: u64,
        kind: FileKind,
    },
    DirentDelete {
        parent: u64,
        name: Vec<u8>,
    },
    Data {
        ino: u64,
        block: u64,
        bytes: Vec<u8>,
    },
    /// Range tombstone: every data block of `ino` at or past `from_block`
    /// written before this record is gone.
    Truncate {
        ino: u64,
        from_block: u64,
    },
    Xattr {
        ino: u64,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    XattrDelete {
        ino: u64,
        name: Vec<u8>,
    },
    SyncPoint(SyncInfo),
}

impl Record {
    /// Whether the record gives its key a value that stays live until
    /// replaced (inodes, data, directory entries, xattrs), as opposed to
    /// tombstones, truncates and sync records.
    pub fn is_value(&self) -> bool {
        matches!(
            self,
            Record::Inode { .. }
                | Record::Data { .. }
                | Record::Dirent { .. }
                | Record::Xattr { .. }
        )
    }

    pub fn kind(&self) -> Kind {
        match self {
            Record::Inode { .. } => Kind::Inode,
            Record::InodeDelete { .. } => Kind::InodeDelete,
            Record::Dirent { .. } => Kind::Dirent,
            Record::DirentDelete { .. } => Kind::DirentDelete,
            Record::Data { .. } => Kind::Data,
            Record::Truncate { .. } => Kind::Truncate,
            Record::Xattr { .. } => Kind::Xattr,
            Record::XattrDelete { .. } => Kind::XattrDelete,
            Record::SyncPoint(_) => Kind::SyncPoint,
        }
    }

    fn encode_key(&self, buf: &mut Vec<u8>) {
        match self {
            Record::Inode { ino, .. } | Record::InodeDelete { ino } => put_u64(buf, *ino),
            Record::Dirent { parent, name, .. } | Record::DirentDelete { parent, name } => {
                put_u64(buf, *parent);
                buf.extend_from_slice(name);
            }
            Record::Data { ino, block, .. } => {
                put_u64(buf, *ino);
                put_u64(buf, *block);
            }
            Record::Truncate { ino, from_block } => {
                put_u64(buf, *ino);
                put_u64(buf, *from_block);
            }
            Record::Xattr { ino, name, .. } | Record::XattrDelete { ino, name } => {
                put_u64(buf, *ino);
                buf.extend_from_slice(name);
            }
            Record::SyncPoint(s) => put_u64(buf, s.id),
        }
    }

    fn encode_value(&self, buf: &mut Vec<u8>) {
        match self {
            Record::Inode { attrs, .. } => attrs.encode(buf),
            Record::Dirent { child, kind, .. } => {
                put_u64(buf, *child);
                put_u8(buf, *kind as u8);
            }
            Record::Data { bytes, .. } => buf.extend_from_slice(bytes),
            Record::Xattr { value, .. } => buf.extend_from_slice(value),
            Record::SyncPoint(s) => {
                put_u64(buf, s.time_ns);
                put_u16(buf, s.label.len() as u16);
                buf.extend_from_slice(s.label.as_bytes());
                put_u16(buf, s.requester.len() as u16);
                buf.extend_from_slice(s.requester.as_bytes());
            }
            Record::InodeDelete { .. }
            | Record::DirentDelete { .. }
            | Record::Truncate { .. }
            | Record::XattrDelete { .. } => {}
        }
    }

    pub fn key_len(&self) -> usize {
        match self {
            Record::Inode { .. } | Record::InodeDelete { .. } | Record::SyncPoint(_) => 8,
            Record::Data { .. } | Record::Truncate { .. } => DATA_KEY_LEN,
            Record::Dirent { name, .. }
            | Record::DirentDelete { name, .. }
            | Record::Xattr { name, .. }
            | Record::XattrDelete { name, .. } => 8 + name.len(),
        }
    }

    pub fn value_len(&self) -> usize {
        match self {
            Record::Inode { attrs, .. } => attrs.encoded_len(),
            Record::Dirent { .. } => 9,
            Record::Data { bytes, .. } => bytes.len(),
            Record::Xattr { value, .. } => value.len(),
            Record::SyncPoint(s) => 12 + s.label.len() + s.requester.len(),
            _ => 0,
        }
    }

    /// Length of the encoded record, header included.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key_len() + self.value_len()
    }

    /// Checks the limits a record must respect before it is written.
    pub fn validate(&self, block_size: usize) -> Result<(), &'static str> {
        match self {
            Record::Dirent { name, .. } | Record::DirentDelete { name, .. }
                if name.is_empty() || name.len() > NAME_MAX =>
            {
                Err("name length")
            }
            Record::Xattr { name, .. } | Record::XattrDelete { name, .. }
                if name.is_empty() || name.len() > NAME_MAX =>
            {
                Err("xattr name length")
            }
            Record::Xattr { value, .. } if value.len() > XATTR_VALUE_MAX => Err("xattr value size"),
            Record::Data { bytes, .. } if bytes.len() > block_size => Err("data block size"),
            Record::Data { block, .. } if !data_block_in_range(*block, block_size as u64) => {
                Err("data block number")
            }
            Record::SyncPoint(s) if s.label.len() > LABEL_MAX || s.requester.len() > LABEL_MAX => {
                Err("sync label length")
            }
            _ => Ok(()),
        }
    }

    /// Appends the encoded record to `buf` and returns its crc, which the
    /// next record stores as `prev`.
    pub fn encode(&self, flags: u8, prev: u32, buf: &mut Vec<u8>) -> u32 {
        let start = buf.len();
        let len = self.encoded_len();
        put_u32(buf, 0);
        put_u32(buf, prev);
        put_u32(buf, len as u32);
        put_u8(buf, self.kind() as u8);
        put_u8(buf, flags);
        put_u16(buf, self.key_len() as u16);
        self.encode_key(buf);
        self.encode_value(buf);
        debug_assert_eq!(buf.len() - start, len);
        let crc = crc32c::crc32c(&buf[start + 4..]);
        buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        crc
    }

    /// Decodes a record from its key and value bytes.
    pub fn decode_parts(kind: Kind, mut key: &[u8], mut value: &[u8]) -> DecodeResult<Record> {
        let k = &mut key;
        let v = &mut value;
        let rec = match kind {
            Kind::Inode => Record::Inode {
                ino: get_u64(k)?,
                attrs: InodeAttrs::decode(v)?,
            },
            Kind::InodeDelete => Record::InodeDelete { ino: get_u64(k)? },
            Kind::Dirent => Record::Dirent {
                parent: get_u64(k)?,
                name: name(k)?,
                child: get_u64(v)?,
                kind: FileKind::try_from(get_u8(v)?)?,
            },
            Kind::DirentDelete => Record::DirentDelete {
                parent: get_u64(k)?,
                name: name(k)?,
            },
            Kind::Data => Record::Data {
                ino: get_u64(k)?,
                block: get_u64(k)?,
                bytes: std::mem::take(v).to_vec(),
            },
            Kind::Truncate => Record::Truncate {
                ino: get_u64(k)?,
                from_block: get_u64(k)?,
            },
            Kind::Xattr => Record::Xattr {
                ino: get_u64(k)?,
                name: name(k)?,
                value: std::mem::take(v).to_vec(),
            },
            Kind::XattrDelete => Record::XattrDelete {
                ino: get_u64(k)?,
                name: name(k)?,
            },
            Kind::SyncPoint => {
                let id = get_u64(k)?;
                let time_ns = get_u64(v)?;
                let label = text(v)?;
                let requester = text(v)?;
                Record::SyncPoint(SyncInfo {
                    id,
                    time_ns,
                    label,
                    requester,
                })
            }
        };
        if !k.is_empty() {
            return Err(DecodeError::Invalid("key has trailing bytes"));
        }
        if !matches!(kind, Kind::Inode) && !v.is_empty() {
            return Err(DecodeError::Invalid("value has trailing bytes"));
        }
        Ok(rec)
    }
}

fn name(k: &mut &[u8]) -> DecodeResult<Vec<u8>> {
    let n = std::mem::take(k);
    if n.is_empty() || n.len() > NAME_MAX {
        return Err(DecodeError::Invalid("name length"));
    }
    Ok(n.to_vec())
}

fn text(v: &mut &[u8]) -> DecodeResult<String> {
    let len = get_u16(v)? as usize;
    String::from_utf8(take(v, len)?.to_vec()).map_err(|_| DecodeError::Invalid("utf-8 text"))
}

/// The fixed header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub crc: u32,
    pub prev: u32,
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub key_len: u16,
}

impl RecordHeader {
    /// Parses a header and checks its fields for plausibility; the crc is
    /// checked by [`RecordView::parse`].
    pub fn decode(mut input: &[u8]) -> DecodeResult<Self> {
        let i = &mut input;
        let crc = get_u32(i)?;
        let prev = get_u32(i)?;
        let len = get_u32(i)?;
        let kind = Kind::try_from(get_u8(i)?)?;
        let flags = get_u8(i)?;
        let key_len = get_u16(i)?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(DecodeError::Invalid("record flags"));
        }
        if (len as usize) < RECORD_HEADER_LEN + key_len as usize {
            return Err(DecodeError::Invalid("record length"));
        }
        Ok(RecordHeader {
            crc,
            prev,
            len,
            kind,
            flags,
            key_len,
        })
    }
}

/// A checksummed record borrowed from a buffer: header, key and value slices.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub header: RecordHeader,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Parses the record at the start of `buf` and verifies its crc.
    pub fn parse(buf: &'a [u8]) -> DecodeResult<Self> {
        let header = RecordHeader::decode(buf)?;
        let len = header.len as usize;
        if buf.len() < len {
            return Err(DecodeError::Truncated {
                needed: len,
                available: buf.len(),
            });
        }
        verify_crc(header.crc, &buf[4..len])?;
        let key_end = RECORD_HEADER_LEN + header.key_len as usize;
        Ok(RecordView {
            header,
            key: &buf[RECORD_HEADER_LEN..key_end],
            value: &buf[key_end..len],
        })
    }

    pub fn record(&self) -> DecodeResult<Record> {
        Record::decode_parts(self.header.kind, self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Inode {
                ino: 5,
                attrs: InodeAttrs::new(FileKind::Regular, 0o644, 1, 2),
            },
            Record::InodeDelete { ino: 5 },
            Record::Dirent {
                parent: 1,
                name: b"hello".to_vec(),
                child: 5,
                kind: FileKind::Regular,
            },
            Record::DirentDelete {
                parent: 1,
                name: b"hello".to_vec(),
            },
            Record::Data {
                ino: 5,
                block: 9,
                bytes: vec![0xAB; 100],
            },
            Record::Truncate {
                ino: 5,
                from_block: 3,
            },
            Record::Xattr {
                ino: 5,
                name: b"user.x".to_vec(),
                value: b"v".to_vec(),
            },
            Record::XattrDelete {
                ino: 5,
                name: b"user.x".to_vec(),
            },
            Record::SyncPoint(SyncInfo {
                id: 3,
                time_ns: 77,
                label: "nightly".into(),
                requester: "cli".into(),
            }),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let mut prev = 0x1234;
        for rec in samples() {
            let mut buf = Vec::new();
            let crc = rec.encode(FLAG_GROUP_END, prev, &mut buf);
            assert_eq!(buf.len(), rec.encoded_len());
            let view = RecordView::parse(&buf).unwrap();
            assert_eq!(view.header.crc, crc);
            assert_eq!(view.header.prev, prev);
            assert_eq!(view.header.flags, FLAG_GROUP_END);
            assert_eq!(view.record().unwrap(), rec);
            prev = crc;
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        for rec in samples() {
            let mut buf = Vec::new();
            rec.encode(0, 0, &mut buf);
            for i in 0..buf.len() {
                let mut bad = buf.clone();
                bad[i] ^= 0x40;
                let parsed = RecordView::parse(&bad).and_then(|v| v.record());
                assert!(parsed.is_err() || parsed.unwrap() != rec, "flip at {i}");
                assert!(RecordView::parse(&bad).is_err(), "flip at {i} passed");
            }
        }
    }

    #[test]
    fn a_data_block_must_start_at_an_offset_a_file_can_have() {
        let data = |block| Record::Data {
            ino: 5,
            block,
            bytes: vec![1; 10],
        };
        for bs in [512u64, 4096, 1 << 20] {
            // Files are at most i64::MAX bytes: this block holds their last.
            let last = i64::MAX as u64 / bs;
            assert_eq!(data(last).validate(bs as usize), Ok(()), "bs {bs}");
            for block in [last + 1, u64::MAX / bs, u64::MAX - 1, u64::MAX] {
                assert_eq!(
                    data(block).validate(bs as usize),
                    Err("data block number"),
                    "block {block} of {bs} bytes"
                );
            }
        }
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut buf = Vec::new();
        samples()[4].encode(0, 0, &mut buf);
        for cut in 0..buf.len() {
            assert!(RecordView::parse(&buf[..cut]).is_err());
        }
    }
}
