//! The read side of POSIX over one tree: attributes, lookups, listings,
//! file contents, symlink targets and xattrs, with their errors. The live
//! [`Fs`](super::Fs) and a [`ViewFs`](super::ViewFs) answer the same way
//! because both ask through [`Queries`]; they differ only in how their
//! index is held. Every inode number is the tree's own.

use super::{Entry, FsError, FsResult};
use crate::format::record::NAME_MAX;
use crate::format::{FileKind, InodeAttrs};
use crate::tree::{IndexAccess, Tree};
use crate::volume::ROOT_INO;

/// POSIX reads of one tree, in that tree's inode numbers.
pub struct Queries<'a, I: IndexAccess>(pub(super) Tree<'a, I>);

impl<I: IndexAccess> Queries<'_, I> {
    pub fn getattr(&self, ino: u64) -> FsResult<InodeAttrs> {
        self.0.getattr(ino)?.ok_or(FsError::NotFound)
    }

    pub(super) fn dir_attrs(&self, ino: u64) -> FsResult<InodeAttrs> {
        let a = self.getattr(ino)?;
        if a.kind != FileKind::Directory {
            return Err(FsError::NotDir);
        }
        Ok(a)
    }

    pub(super) fn file_attrs(&self, ino: u64) -> FsResult<InodeAttrs> {
        let a = self.getattr(ino)?;
        match a.kind {
            FileKind::Regular => Ok(a),
            FileKind::Directory => Err(FsError::IsDir),
            _ => Err(FsError::Invalid("not a regular file")),
        }
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<(u64, InodeAttrs)> {
        self.dir_attrs(parent)?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let e = self.0.lookup(parent, name).ok_or(FsError::NotFound)?;
        Ok((e.child, self.getattr(e.child)?))
    }

    /// The entries of directory `ino` in name order, without `.` and `..`.
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<Entry>> {
        self.dir_attrs(ino)?;
        Ok(self.entries(ino))
    }

    fn entries(&self, ino: u64) -> Vec<Entry> {
        self.0
            .list_dir(ino, None)
            .into_iter()
            .map(|(name, e)| Entry {
                name,
                ino: e.child,
                kind: e.kind,
            })
            .collect()
    }

    /// What readdir(3) shows of directory `ino`: `.`, `..` (the root's is
    /// the root itself), then its entries.
    pub fn listing(&self, ino: u64) -> FsResult<Vec<Entry>> {
        let a = self.dir_attrs(ino)?;
        let dir = |name: &[u8], ino| Entry {
            name: name.to_vec(),
            ino,
            kind: FileKind::Directory,
        };
        let mut list = vec![dir(b".", ino), dir(b"..", a.parent.max(ROOT_INO))];
        list.extend(self.entries(ino));
        Ok(list)
    }

    pub fn read(&self, ino: u64, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let attrs = self.file_attrs(ino)?;
        Ok(self.0.read(ino, offset, len, attrs.size)?)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        match self.getattr(ino)? {
            a if a.kind == FileKind::Symlink => Ok(a.target),
            _ => Err(FsError::Invalid("not a symlink")),
        }
    }

    fn exists(&self, ino: u64) -> FsResult<()> {
        self.0.exists(ino).then_some(()).ok_or(FsError::NotFound)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        self.exists(ino)?;
        self.0.getxattr(ino, name)?.ok_or(FsError::NoAttr)
    }

    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<Vec<u8>>> {
        self.exists(ino)?;
        Ok(self.0.xattr_names(ino))
    }
}
