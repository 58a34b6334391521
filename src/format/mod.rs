//! The on-disk format: pure encode and decode, no I/O. docs/FORMAT.md
//! describes the same layouts for someone writing a second reader.

pub mod archive;
pub mod codec;
pub mod inode;
pub mod record;
pub mod segment;

pub use codec::{DecodeError, DecodeResult};
pub use inode::{FileKind, InodeAttrs, Timestamp};
pub use record::{Kind, Record, RecordHeader, RecordView, SyncInfo};
pub use segment::{Footer, SegmentHeader, SummaryEntry};

/// The format version written in every segment header.
pub const FORMAT_VERSION: u16 = 1;

/// Inode number of the root directory; numbers above it are handed out.
pub const ROOT_INO: u64 = 1;

/// The parent of the directory entries that name files unlinked while
/// open (orphans): no directory anyone can reach. Each entry's name is the
/// inode number; a crash leaves them, and the next open deletes them.
pub const ORPHANS_INO: u64 = 0;

/// A volume's identity, written in every segment header so that segments of
/// two volumes can never be mixed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VolumeId(pub [u8; 16]);

impl VolumeId {
    /// A fresh random id from the kernel's generator.
    pub fn generate() -> std::io::Result<Self> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(VolumeId(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(VolumeId(bytes))
    }
}

/// A record's position in the log: segment sequence number and byte offset.
/// Ordered as the log is: this is the total order of everything that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn {
    pub seq: u64,
    pub offset: u32,
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_id_hex_round_trip() {
        let id = VolumeId::generate().unwrap();
        assert_eq!(VolumeId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(VolumeId::from_hex("xyz"), None);
    }
}
