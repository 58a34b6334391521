//! POSIX semantics over the engine: names, links, directories, reads and
//! writes of byte ranges, truncation. Knows nothing of FUSE; errno for every
//! failure is decided here, in [`FsError::errno`].
//!
//! Consistency: namespace changes hold one namespace lock, and every change
//! to an inode's attributes holds that inode's stripe lock, so that
//! read-modify-write of attributes and of partial blocks never loses an
//! update. Each change is one atomic group of records in the log.

use crate::error::Error;
use crate::format::record::NAME_MAX;
use crate::format::{FileKind, InodeAttrs, Record, Timestamp};
use crate::index::data_stride;
use crate::log::writer::group_max;
use crate::volume::{ROOT_INO, Volume};
use std::sync::{Mutex, MutexGuard};
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
            FsError::Engine(e) => match e {
                // A request the engine judged malformed is the caller's mistake.
                Error::Invalid(_) => libc::EINVAL,
                Error::TooLarge { .. } => libc::EFBIG,
                Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                    libc::ENOSPC
                }
                // Damaged or unreachable data, a failed or closed log: the
                // application must not take any of it for success.
                Error::Io { .. }
                | Error::Corrupt { .. }
                | Error::DurableDamaged { .. }
                | Error::ForeignSegment { .. }
                | Error::SegmentMissing { .. }
                | Error::Poisoned(_)
                | Error::Closed => libc::EIO,
                // Not reachable from file operations; EIO rather than a lie.
                Error::Policy(_)
                | Error::NotAVolume { .. }
                | Error::AlreadyAVolume { .. }
                | Error::NotEmpty { .. }
                | Error::Locked { .. }
                | Error::UnknownSyncPoint(_) => libc::EIO,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fs {
    /// Serves `volume`, creating its root directory on first use.
    pub fn new(volume: Volume) -> FsResult<Fs> {
        let fs = Fs {
            volume,
            namespace: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
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

    pub fn getattr(&self, ino: u64) -> FsResult<InodeAttrs> {
        self.volume.tree().getattr(ino)?.ok_or(FsError::NotFound)
    }

    fn dir_attrs(&self, ino: u64) -> FsResult<InodeAttrs> {
        let a = self.getattr(ino)?;
        if a.kind != FileKind::Directory {
            return Err(FsError::NotDir);
        }
        Ok(a)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<(u64, InodeAttrs)> {
        self.dir_attrs(parent)?;
        let e = self
            .volume
            .tree()
            .lookup(parent, name)
            .ok_or(FsError::NotFound)?;
        Ok((e.child, self.getattr(e.child)?))
    }

    pub fn readdir(&self, ino: u64) -> FsResult<Vec<Entry>> {
        self.dir_attrs(ino)?;
        Ok(self
            .volume
            .tree()
            .list_dir(ino, None)
            .into_iter()
            .map(|(name, e)| Entry {
                name,
                ino: e.child,
                kind: e.kind,
            })
            .collect())
    }

    /// Creates a file, directory, FIFO, socket or device node.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        mode: u32,
        owner: Owner,
        rdev: u32,
    ) -> FsResult<(u64, InodeAttrs)> {
        self.create_inode(parent, name, owner, |a| {
            *a = InodeAttrs::new(kind, mode, owner.uid, owner.gid);
            a.rdev = rdev;
        })
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        owner: Owner,
    ) -> FsResult<(u64, InodeAttrs)> {
        if target.is_empty() || target.len() > 4095 {
            return Err(FsError::Invalid("symlink target length"));
        }
        self.create_inode(parent, name, owner, |a| {
            *a = InodeAttrs::new(FileKind::Symlink, 0o777, owner.uid, owner.gid);
            a.size = target.len() as u64;
            a.target = target.to_vec();
        })
    }

    fn create_inode(
        &self,
        parent: u64,
        name: &[u8],
        owner: Owner,
        init: impl FnOnce(&mut InodeAttrs),
    ) -> FsResult<(u64, InodeAttrs)> {
        check_name(name)?;
        let _ns = lock(&self.namespace);
        let _g = self.lock_inodes(&[parent]);
        let mut pattrs = self.dir_attrs(parent)?;
        if self.volume.tree().lookup(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        let ino = self.volume.allocate_ino();
        let mut attrs = InodeAttrs::new(FileKind::Regular, 0, owner.uid, owner.gid);
        init(&mut attrs);
        if attrs.kind == FileKind::Directory {
            attrs.parent = parent;
            pattrs.nlink += 1;
        }
        pattrs.mtime = attrs.ctime;
        pattrs.ctime = attrs.ctime;
        self.volume.commit(vec![
            Record::Inode {
                ino,
                attrs: attrs.clone(),
            },
            Record::Dirent {
                parent,
                name: name.to_vec(),
                child: ino,
                kind: attrs.kind,
            },
            Record::Inode {
                ino: parent,
                attrs: pattrs,
            },
        ])?;
        Ok((ino, attrs))
    }

    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> FsResult<InodeAttrs> {
        check_name(name)?;
        let _ns = lock(&self.namespace);
        let _g = self.lock_inodes(&[ino, parent]);
        let mut attrs = self.getattr(ino)?;
        if attrs.kind == FileKind::Directory {
            return Err(FsError::NotPermitted("hard link to a directory"));
        }
        let mut pattrs = self.dir_attrs(parent)?;
        if self.volume.tree().lookup(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        let now = Timestamp::now();
        attrs.nlink += 1;
        attrs.ctime = now;
        pattrs.mtime = now;
        pattrs.ctime = now;
        self.volume.commit(vec![
            Record::Dirent {
                parent,
                name: name.to_vec(),
                child: ino,
                kind: attrs.kind,
            },
            Record::Inode {
                ino,
                attrs: attrs.clone(),
            },
            Record::Inode {
                ino: parent,
                attrs: pattrs,
            },
        ])?;
        Ok(attrs)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        check_name(name)?;
        let _ns = lock(&self.namespace);
        let mut pattrs = self.dir_attrs(parent)?;
        let entry = self
            .volume
            .tree()
            .lookup(parent, name)
            .ok_or(FsError::NotFound)?;
        let _g = self.lock_inodes(&[parent, entry.child]);
        let mut attrs = self.getattr(entry.child)?;
        let is_dir = attrs.kind == FileKind::Directory;
        match (dir, is_dir) {
            (true, false) => return Err(FsError::NotDir),
            (false, true) => return Err(FsError::IsDir),
            (true, true) if !self.volume.tree().dir_is_empty(entry.child) => {
                return Err(FsError::NotEmpty);
            }
            _ => {}
        }
        let now = Timestamp::now();
        pattrs.mtime = now;
        pattrs.ctime = now;
        let mut records = vec![Record::DirentDelete {
            parent,
            name: name.to_vec(),
        }];
        if is_dir {
            pattrs.nlink -= 1;
            records.push(Record::InodeDelete { ino: entry.child });
        } else if attrs.nlink <= 1 {
            records.push(Record::InodeDelete { ino: entry.child });
        } else {
            attrs.nlink -= 1;
            attrs.ctime = now;
            records.push(Record::Inode {
                ino: entry.child,
                attrs,
            });
        }
        records.push(Record::Inode {
            ino: parent,
            attrs: pattrs,
        });
        self.volume.commit(records)?;
        Ok(())
    }

    /// Whether directory `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor(&self, ancestor: u64, mut dir: u64) -> FsResult<bool> {
        loop {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = self.getattr(dir)?.parent;
        }
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a target
    /// of a compatible kind.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
    ) -> FsResult<()> {
        check_name(name)?;
        check_name(new_name)?;
        let _ns = lock(&self.namespace);
        self.dir_attrs(parent)?;
        self.dir_attrs(new_parent)?;
        let tree = self.volume.tree();
        let src = tree.lookup(parent, name).ok_or(FsError::NotFound)?;
        let dst = tree.lookup(new_parent, new_name);
        if dst.is_some_and(|d| d.child == src.child) {
            return Ok(());
        }
        let src_is_dir = src.kind == FileKind::Directory;
        if src_is_dir && self.is_ancestor(src.child, new_parent)? {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        let mut inos = vec![parent, new_parent, src.child];
        inos.extend(dst.map(|d| d.child));
        let _g = self.lock_inodes(&inos);
        let now = Timestamp::now();
        let mut records = Vec::new();
        if let Some(d) = dst {
            let dst_is_dir = d.kind == FileKind::Directory;
            match (src_is_dir, dst_is_dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !tree.dir_is_empty(d.child) => return Err(FsError::NotEmpty),
                _ => {}
            }
            let mut dattrs = self.getattr(d.child)?;
            if dst_is_dir || dattrs.nlink <= 1 {
                records.push(Record::InodeDelete { ino: d.child });
            } else {
                dattrs.nlink -= 1;
                dattrs.ctime = now;
                records.push(Record::Inode {
                    ino: d.child,
                    attrs: dattrs,
                });
            }
        }
        let mut sattrs = self.getattr(src.child)?;
        sattrs.ctime = now;
        if src_is_dir {
            sattrs.parent = new_parent;
        }
        records.push(Record::DirentDelete {
            parent,
            name: name.to_vec(),
        });
        records.push(Record::Dirent {
            parent: new_parent,
            name: new_name.to_vec(),
            child: src.child,
            kind: src.kind,
        });
        records.push(Record::Inode {
            ino: src.child,
            attrs: sattrs,
        });
        // Parents last, read after the target's removal so nlink adds up.
        let replaced_dir = dst.is_some_and(|d| d.kind == FileKind::Directory);
        let mut pattrs = self.getattr(parent)?;
        pattrs.mtime = now;
        pattrs.ctime = now;
        if parent == new_parent {
            if replaced_dir {
                pattrs.nlink -= 1;
            }
        } else {
            let mut npattrs = self.getattr(new_parent)?;
            npattrs.mtime = now;
            npattrs.ctime = now;
            if src_is_dir {
                pattrs.nlink -= 1;
                if !replaced_dir {
                    npattrs.nlink += 1;
                }
            }
            records.push(Record::Inode {
                ino: new_parent,
                attrs: npattrs,
            });
        }
        records.push(Record::Inode {
            ino: parent,
            attrs: pattrs,
        });
        self.volume.commit(records)?;
        Ok(())
    }

    fn file_attrs(&self, ino: u64) -> FsResult<InodeAttrs> {
        let a = self.getattr(ino)?;
        match a.kind {
            FileKind::Regular => Ok(a),
            FileKind::Directory => Err(FsError::IsDir),
            _ => Err(FsError::Invalid("not a regular file")),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let attrs = self.file_attrs(ino)?;
        Ok(self.volume.tree().read(ino, offset, len, attrs.size)?)
    }

    /// Writes `data` at `offset`; holes before it read as zeros.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> FsResult<usize> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or(FsError::TooBig)?;
        let _g = self.lock_inodes(&[ino]);
        let mut attrs = self.file_attrs(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let bs = self.volume.policy().block_size;
        let stride = data_stride(bs as u32) as usize + 64;
        let per_group =
            ((group_max(self.volume.policy().segment_size) - GROUP_SLACK) / stride).max(1);
        let first = offset / bs;
        let last = (end - 1) / bs;
        let now = Timestamp::now();
        let mut block = first;
        while block <= last {
            let group_last = last.min(block + per_group as u64 - 1);
            let mut records = Vec::with_capacity((group_last - block + 2) as usize);
            for b in block..=group_last {
                let bstart = b * bs;
                let lo = offset.max(bstart);
                let hi = end.min(bstart + bs);
                let piece = &data[(lo - offset) as usize..(hi - offset) as usize];
                let bytes = if lo == bstart && hi == bstart + bs {
                    piece.to_vec()
                } else {
                    let mut old = self.volume.tree().read_block(ino, b)?.unwrap_or_default();
                    let need = (hi - bstart) as usize;
                    if old.len() < need {
                        old.resize(need, 0);
                    }
                    old[(lo - bstart) as usize..need].copy_from_slice(piece);
                    old
                };
                records.push(Record::Data {
                    ino,
                    block: b,
                    bytes,
                });
            }
            attrs.size = attrs.size.max(end.min((group_last + 1) * bs));
            attrs.mtime = now;
            attrs.ctime = now;
            records.push(Record::Inode {
                ino,
                attrs: attrs.clone(),
            });
            self.volume.commit(records)?;
            block = group_last + 1;
        }
        Ok(data.len())
    }

    /// Sets a regular file's size; bytes past it are gone.
    pub fn truncate(&self, ino: u64, size: u64) -> FsResult<()> {
        if size > i64::MAX as u64 {
            return Err(FsError::TooBig);
        }
        let _g = self.lock_inodes(&[ino]);
        let mut attrs = self.file_attrs(ino)?;
        let bs = self.volume.policy().block_size;
        let mut records = Vec::new();
        if size < attrs.size {
            records.push(Record::Truncate {
                ino,
                from_block: size.div_ceil(bs),
            });
            let keep = (size % bs) as usize;
            if keep != 0
                && let Some(mut last) = self.volume.tree().read_block(ino, size / bs)?
                && last.len() > keep
            {
                last.truncate(keep);
                records.push(Record::Data {
                    ino,
                    block: size / bs,
                    bytes: last,
                });
            }
        }
        let now = Timestamp::now();
        attrs.size = size;
        attrs.mtime = now;
        attrs.ctime = now;
        records.push(Record::Inode { ino, attrs });
        self.volume.commit(records)?;
        Ok(())
    }

    /// Makes everything durable.
    pub fn fsync(&self) -> FsResult<()> {
        Ok(self.volume.fsync()?)
    }
}
