//! POSIX semantics over the engine: names, links, directories, reads and
//! writes of byte ranges, truncation. Knows nothing of FUSE; errno for every
//! failure of a file operation is decided here, in [`FsError::errno`] (the
//! adapter adds only what concerns FUSE itself: EROFS on a read-only mount,
//! the `.lsvfs/` control nodes, bad handles and xattr buffer sizes).
//!
//! Consistency: namespace changes hold one namespace lock, and every change
//! to an inode's attributes holds that inode's stripe lock, so that
//! read-modify-write of attributes and of partial blocks never loses an
//! update. Each change is one atomic group of records in the log.

mod attrs;
mod data;
mod deleted;
mod namespace;
mod queries;
mod view_fs;

pub use attrs::{SetAttrs, XattrMode};
pub use namespace::{RenameMode, kind_of_mode};
pub use queries::Queries;
pub use view_fs::ViewFs;

use crate::error::Error;
use crate::format::record::NAME_MAX;
use crate::format::segment::block_cost;
use crate::format::{FileKind, InodeAttrs, Record, Timestamp};
use crate::index::Index;
use crate::log::writer::group_max;
use crate::sync::lock;
use crate::volume::{ROOT_INO, Volume};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock};
use thiserror::Error;

const STRIPES: usize = 64;
/// Room kept in a write's atomic group for the inode record and summaries.
const GROUP_SLACK: usize = 512;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file name too long")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("file too large")]
    TooBig,
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute value too large")]
    AttrTooBig,
    #[error("permission denied")]
    Access,
    #[error("operation not supported: {0}")]
    Unsupported(&'static str),
    /// A change to a view, or to a volume mounted read-only.
    #[error("read-only file system")]
    ReadOnly,
    #[error(transparent)]
    Engine(#[from] Error),
}

impl FsError {
    /// The errno a system call reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::TooBig => libc::EFBIG,
            FsError::NoAttr => libc::ENODATA,
            FsError::AttrTooBig => libc::E2BIG,
            FsError::Access => libc::EACCES,
            FsError::Unsupported(_) => libc::EOPNOTSUPP,
            FsError::ReadOnly => libc::EROFS,
            FsError::Engine(e) => match e {
                // A request the engine judged malformed is the caller's mistake.
                Error::Invalid(_) => libc::EINVAL,
                Error::TooLarge { .. } => libc::EFBIG,
                Error::NoSpace(_) => libc::ENOSPC,
                Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                    libc::ENOSPC
                }
                // Damaged or unreachable data, a failed or closed log: the
                // application must not take any of it for success.
                Error::Io { .. }
                | Error::Corrupt { .. }
                | Error::Damaged { .. }
                | Error::DurableDamaged { .. }
                | Error::ForeignSegment { .. }
                | Error::Inconsistent(_)
                | Error::SegmentMissing { .. }
                | Error::Archive(_)
                | Error::Poisoned(_)
                | Error::Closed => libc::EIO,
                // Not reachable from file operations; EIO rather than a lie.
                Error::Policy(_)
                | Error::NoVolume { .. }
                | Error::NotAVolume { .. }
                | Error::AlreadyAVolume { .. }
                | Error::NotEmpty { .. }
                | Error::Locked { .. }
                | Error::UnsafeDir { .. }
                | Error::CopiedVolume { .. }
                | Error::UnknownSyncPoint(_)
                | Error::Pruned(_)
                | Error::Halted
                | Error::AmbiguousSyncPoint { .. }
                | Error::NotASource { .. }
                | Error::SeveralVolumes { .. }
                | Error::NoSuchVolume { .. } => libc::EIO,
            },
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Who asks for a new inode: its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

pub const ROOT_OWNER: Owner = Owner { uid: 0, gid: 0 };

/// A directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: FileKind,
}

pub struct Fs {
    volume: Volume,
    namespace: Mutex<()>,
    stripes: Vec<Mutex<()>>,
    /// Open handles per inode: an inode whose last name is removed while
    /// it is open lives on as an orphan until its last release.
    opens: Mutex<HashMap<u64, u32>>,
    /// Deleted inodes the kernel may still send writes and times for.
    deleted: Mutex<deleted::Deleted>,
}

/// Capacity and use, as `statfs` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u32,
}

/// Whether open(2) `flags` ask to change the file (write access or
/// O_TRUNC), which a read-only mount or a view refuses.
pub fn opens_for_writing(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(FsError::Invalid("file name"));
    }
    Ok(())
}

impl Fs {
    /// Serves `volume`, creating its root directory on first use.
    pub fn new(volume: Volume) -> FsResult<Fs> {
        let fs = Fs {
            volume,
            namespace: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            opens: Mutex::new(HashMap::new()),
            deleted: Mutex::default(),
        };
        if fs.volume.tree().getattr(ROOT_INO)?.is_none() {
            let mut root = InodeAttrs::new(FileKind::Directory, 0o755, 0, 0);
            root.parent = ROOT_INO;
            fs.volume.commit(vec![Record::Inode {
                ino: ROOT_INO,
                attrs: root,
            }])?;
            fs.volume.fsync()?;
        }
        fs.reap_orphans()?;
        Ok(fs)
    }

    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    pub fn into_volume(self) -> Volume {
        self.volume
    }

    /// Locks the stripes of `inos` in a fixed order.
    fn lock_inodes(&self, inos: &[u64]) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = inos.iter().map(|i| (*i as usize) % STRIPES).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| lock(&self.stripes[i])).collect()
    }

    fn queries(&self) -> Queries<'_, RwLock<Index>> {
        Queries(self.volume.tree())
    }

    pub fn getattr(&self, ino: u64) -> FsResult<InodeAttrs> {
        self.queries().getattr(ino)
    }

    fn dir_attrs(&self, ino: u64) -> FsResult<InodeAttrs> {
        self.queries().dir_attrs(ino)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<(u64, InodeAttrs)> {
        self.queries().lookup(parent, name)
    }

    /// The entries of directory `ino` in name order, without `.` and `..`.
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<Entry>> {
        self.queries().readdir(ino)
    }

    /// `.`, `..` and the entries of directory `ino`.
    pub fn listing(&self, ino: u64) -> FsResult<Vec<Entry>> {
        self.queries().listing(ino)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        self.queries().readlink(ino)
    }

    /// Makes everything durable.
    pub fn fsync(&self) -> FsResult<()> {
        Ok(self.volume.fsync()?)
    }

    /// Capacity is the capacity rule's blocks; used is every live record
    /// (data and metadata) in full-block equivalents.
    pub fn statfs(&self) -> FsStats {
        let p = self.volume.policy();
        let stats = self.volume.index_stats();
        let blocks = p.capacity_blocks();
        FsStats {
            block_size: p.block_size as u32,
            blocks,
            blocks_free: blocks.saturating_sub(stats.used_blocks),
            files: stats.inodes,
            // Inode numbers are 64 bits and never reused: no limit to show.
            files_free: u64::MAX / 2,
            name_max: NAME_MAX as u32,
        }
    }
}
