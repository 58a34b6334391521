//! A view as one mount shows it: [`MountedView`] turns the answers of a
//! [`ViewFs`], in the view's own inode numbers, into fuser's, in the inode
//! numbers of the mount it appears in: its own (`lsvfs mount --at`, see
//! `view_adapter.rs`, numbered by [`Own`]) or a range inside the live mount
//! (`.lsvfs/sync-points/ID/`, see `sync_points.rs`). A view never changes,
//! so the kernel may cache names, attributes and pages for as long as it
//! likes ([`VIEW_TTL`]).

use super::reply::{VIEW_TTL, errno, file_attr, xattr_names};
use crate::fs::{Entry, ViewFs};
use crate::volume::ROOT_INO;
use fuser::{AccessFlags, Errno, FileAttr, FileHandle, FopenFlags, OpenFlags};
use std::time::Duration;

/// How a view's inode numbers appear in a mount.
pub trait InoMap: Send + Sync {
    /// The mount's number for the view's inode `ino`.
    fn outer(&self, ino: u64) -> Result<u64, Errno>;
    /// The parent the view's root shows as `..`.
    fn root_parent(&self) -> u64;
}

/// A view mounted on its own: its numbers are the mount's.
pub struct Own;

impl InoMap for Own {
    fn outer(&self, ino: u64) -> Result<u64, Errno> {
        Ok(ino)
    }
    fn root_parent(&self) -> u64 {
        ROOT_INO
    }
}

/// A view's tree answering in a mount's inode numbers; every argument is
/// the view's own inode number.
pub struct MountedView<M: InoMap> {
    pub fs: ViewFs,
    pub map: M,
}

impl<M: InoMap> MountedView<M> {
    pub fn attr(&self, ino: u64) -> Result<(Duration, FileAttr), Errno> {
        let a = self.fs.queries().getattr(ino).map_err(errno)?;
        let block_size = self.fs.view().block_size;
        Ok((VIEW_TTL, file_attr(self.map.outer(ino)?, &a, block_size)))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<(Duration, FileAttr), Errno> {
        let (ino, _) = self.fs.queries().lookup(parent, name).map_err(errno)?;
        self.attr(ino)
    }

    /// `.`, `..` and the entries of directory `ino`, in the mount's numbers.
    pub fn listing(&self, ino: u64) -> Result<Vec<Entry>, Errno> {
        let mut list = self.fs.queries().listing(ino).map_err(errno)?;
        for e in &mut list {
            e.ino = match ino == ROOT_INO && e.name == b".." {
                true => self.map.root_parent(),
                false => self.map.outer(e.ino)?,
            };
        }
        Ok(list)
    }

    /// Opening for reading; fh 0 is no handle, release has nothing to close.
    pub fn open(&self, ino: u64, flags: OpenFlags) -> Result<(FileHandle, FopenFlags), Errno> {
        self.fs.open(ino, flags.0).map_err(errno)?;
        Ok((FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE))
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        self.fs
            .queries()
            .read(ino, offset, size as usize)
            .map_err(errno)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        self.fs.queries().readlink(ino).map_err(errno)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        self.fs.queries().getxattr(ino, name).map_err(errno)
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        self.fs
            .queries()
            .listxattr(ino)
            .map(xattr_names)
            .map_err(errno)
    }

    pub fn access(&self, ino: u64, mask: AccessFlags) -> Result<(), Errno> {
        self.fs.access(ino, mask.bits() as u32).map_err(errno)
    }
}
