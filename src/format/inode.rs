//! Inode attributes as stored in an `Inode` record's value.
//!
//! Layout (88 bytes, little-endian), then the symlink target if any:
//! ```text
//!  0 u8   kind (FileKind)      1 [3] zero
//!  4 u32  mode (permission bits, 0o7777)
//!  8 u32  uid                 12 u32 gid
//! 16 u32  nlink               20 u32 rdev
//! 24 u64  size
//! 32 i64+u32 atime  44 i64+u32 mtime  56 i64+u32 ctime  68 i64+u32 crtime
//! 80 u64  parent directory (directories only; 0 for other kinds)
//! 88 ..   symlink target (symlinks only; the rest of the value)
//! ```

use super::codec::*;

/// What an inode is. The same numbering is used in directory entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FileKind {
    Regular = 1,
    Directory = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
}

impl TryFrom<u8> for FileKind {
    type Error = DecodeError;
    fn try_from(v: u8) -> DecodeResult<Self> {
        Ok(match v {
            1 => FileKind::Regular,
            2 => FileKind::Directory,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::Socket,
            6 => FileKind::CharDevice,
            7 => FileKind::BlockDevice,
            _ => return Err(DecodeError::Invalid("file kind")),
        })
    }
}

/// A point in time, seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

impl Timestamp {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }

    fn encode(&self, buf: &mut Vec<u8>) {
        put_i64(buf, self.sec);
        put_u32(buf, self.nsec);
    }

    fn decode(input: &mut &[u8]) -> DecodeResult<Self> {
        let sec = get_i64(input)?;
        let nsec = get_u32(input)?;
        if nsec >= 1_000_000_000 {
            return Err(DecodeError::Invalid("timestamp nanoseconds"));
        }
        Ok(Timestamp { sec, nsec })
    }
}

/// Everything `stat` reports about an inode, plus a symlink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeAttrs {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u32,
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    /// For a directory, the directory that holds it (itself for the root).
    pub parent: u64,
    pub target: Vec<u8>,
}

pub const INODE_FIXED_LEN: usize = 88;

impl InodeAttrs {
    /// A fresh inode of `kind` with all times set to now.
    pub fn new(kind: FileKind, mode: u32, uid: u32, gid: u32) -> Self {
        let now = Timestamp::now();
        InodeAttrs {
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            rdev: 0,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            parent: 0,
            target: Vec::new(),
        }
    }

    pub fn encoded_len(&self) -> usize {
        INODE_FIXED_LEN + self.target.len()
    }

    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_u8(buf, self.kind as u8);
        buf.extend_from_slice(&[0; 3]);
        put_u32(buf, self.mode);
        put_u32(buf, self.uid);
        put_u32(buf, self.gid);
        put_u32(buf, self.nlink);
        put_u32(buf, self.rdev);
        put_u64(buf, self.size);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            t.encode(buf);
        }
        put_u64(buf, self.parent);
        buf.extend_from_slice(&self.target);
    }

    pub fn decode(mut input: &[u8]) -> DecodeResult<Self> {
        let input = &mut input;
        let kind = FileKind::try_from(get_u8(input)?)?;
        take(input, 3)?;
        let mode = get_u32(input)?;
        if mode & !0o7777 != 0 {
            return Err(DecodeError::Invalid("inode mode"));
        }
        let uid = get_u32(input)?;
        let gid = get_u32(input)?;
        let nlink = get_u32(input)?;
        let rdev = get_u32(input)?;
        let size = get_u64(input)?;
        let atime = Timestamp::decode(input)?;
        let mtime = Timestamp::decode(input)?;
        let ctime = Timestamp::decode(input)?;
        let crtime = Timestamp::decode(input)?;
        let parent = get_u64(input)?;
        Ok(InodeAttrs {
            kind,
            mode,
            uid,
            gid,
            nlink,
            rdev,
            size,
            atime,
            mtime,
            ctime,
            crtime,
            parent,
            target: input.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut a = InodeAttrs::new(FileKind::Symlink, 0o777, 1000, 100);
        a.target = b"../somewhere".to_vec();
        a.size = 12;
        let mut buf = Vec::new();
        a.encode(&mut buf);
        assert_eq!(buf.len(), a.encoded_len());
        assert_eq!(InodeAttrs::decode(&buf).unwrap(), a);
    }

    #[test]
    fn rejects_bad_kind_and_short_input() {
        let mut buf = Vec::new();
        InodeAttrs::new(FileKind::Regular, 0o644, 0, 0).encode(&mut buf);
        assert!(InodeAttrs::decode(&buf[..40]).is_err());
        buf[0] = 99;
        assert_eq!(
            InodeAttrs::decode(&buf),
            Err(DecodeError::Invalid("file kind"))
        );
    }
}
