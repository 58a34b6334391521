//! Serving views read-only over FUSE. [`ViewFs`] answers lookups,
//! attributes, listings, reads, symlinks and xattrs from a view's tree, in
//! the inode numbers of the mount it appears in: its own (`lsvfs mount
//! --at`, served by [`ViewAdapter`]) or a range inside the live mount
//! (`.lsvfs/sync-points/ID/`, see `views.rs`). A view never changes, so
//! the kernel may cache names, attributes and pages for as long as it likes.

use super::adapter::{empty, file_attr, fill_dir, fill_dir_plus, xattr_reply};
use crate::format::FileKind;
use crate::fs::{Entry, FsError};
use crate::view::View;
use crate::volume::ROOT_INO;
use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A view never changes: cache for an hour.
pub const VIEW_TTL: Duration = Duration::from_secs(3600);
const MAX_READ: u32 = 1 << 20;

fn eio(e: crate::Error) -> Errno {
    log::error!("{e}");
    Errno::from_i32(FsError::Engine(e).errno())
}

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
pub struct ViewFs<M: InoMap> {
    pub view: View,
    pub map: M,
}

impl<M: InoMap> ViewFs<M> {
    pub fn attrs(&self, ino: u64) -> Result<crate::format::InodeAttrs, Errno> {
        match self.view.tree().getattr(ino) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(Errno::ENOENT),
            Err(e) => Err(eio(e)),
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let a = self.attrs(ino)?;
        Ok(file_attr(self.map.outer(ino)?, &a, self.view.block_size))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<FileAttr, Errno> {
        if self.attrs(parent)?.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        if name.len() > crate::format::record::NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let e = self.view.tree().lookup(parent, name).ok_or(Errno::ENOENT)?;
        self.getattr(e.child)
    }

    /// `.`, `..` and the entries of directory `ino`, in the mount's numbers.
    pub fn listing(&self, ino: u64) -> Result<Vec<Entry>, Errno> {
        let a = self.attrs(ino)?;
        if a.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let parent = match ino {
            ROOT_INO => self.map.root_parent(),
            _ => self.map.outer(a.parent)?,
        };
        let dir = |name: &[u8], ino| Entry {
            name: name.to_vec(),
            ino,
            kind: FileKind::Directory,
        };
        let mut list = vec![dir(b".", self.map.outer(ino)?), dir(b"..", parent)];
        for (name, e) in self.view.tree().list_dir(ino, None) {
            list.push(Entry {
                name,
                ino: self.map.outer(e.child)?,
                kind: e.kind,
            });
        }
        Ok(list)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        match self.attrs(ino)? {
            a if a.kind == FileKind::Symlink => Ok(a.target),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Opening for reading only.
    pub fn open(&self, ino: u64, flags: OpenFlags) -> Result<(), Errno> {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return Err(Errno::EROFS);
        }
        match self.attrs(ino)?.kind {
            FileKind::Directory => Err(Errno::EISDIR),
            _ => Ok(()),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let a = self.attrs(ino)?;
        self.view
            .tree()
            .read(ino, offset, size as usize, a.size)
            .map_err(eio)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        match self.view.tree().getxattr(ino, name) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Errno::ENODATA),
            Err(e) => Err(eio(e)),
        }
    }

    /// The names of `ino`'s xattrs, each NUL-terminated.
    pub fn listxattr(&self, ino: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for n in self.view.tree().xattr_names(ino) {
            buf.extend_from_slice(&n);
            buf.push(0);
        }
        buf
    }

    pub fn access(&self, ino: u64, mask: fuser::AccessFlags) -> Result<(), Errno> {
        self.attrs(ino)?;
        match mask.bits() & libc::W_OK != 0 {
            true => Err(Errno::EROFS),
            false => Ok(()),
        }
    }
}

/// A view mounted on its own (`lsvfs mount --at`). The mount is read-only,
/// so the kernel answers every change with EROFS before it reaches here.
pub struct ViewAdapter {
    fs: ViewFs<Own>,
    dirs: Mutex<HashMap<u64, Vec<Entry>>>,
    next_fh: AtomicU64,
}

impl ViewAdapter {
    pub fn new(view: View) -> Self {
        ViewAdapter {
            fs: ViewFs { view, map: Own },
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn listed(&self, fh: FileHandle, offset: u64) -> Option<Vec<Entry>> {
        let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            dirs.get(&fh.0)?
                .iter()
                .skip(offset as usize)
                .cloned()
                .collect(),
        )
    }
}

impl Filesystem for ViewAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_MAX_PAGES;
        if let Err(missing) = config.add_capabilities(config.capabilities() & wanted) {
            log::warn!("kernel lacks FUSE capabilities {missing:?}");
        }
        if let Err(max) = config.set_max_readahead(MAX_READ) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&VIEW_TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&VIEW_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, flags) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.listing(ino.0) {
            Ok(list) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.dirs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(fh, list);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        match self.listed(fh, offset) {
            Some(list) => fill_dir(reply, &list, offset),
            None => reply.error(Errno::EBADF),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        match self.listed(fh, offset) {
            Some(list) => fill_dir_plus(reply, &list, offset, |e| {
                self.fs.getattr(e.ino).map(|a| Some((VIEW_TTL, a)))
            }),
            None => reply.error(Errno::EBADF),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let stats = self.fs.view.index().stats();
        let bs = self.fs.view.block_size;
        let name_max = crate::format::record::NAME_MAX as u32;
        reply.statfs(stats.blocks, 0, 0, stats.inodes, 0, bs, name_max, bs);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(reply, size, &self.fs.listxattr(ino.0))
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        empty(reply, self.fs.access(ino.0, mask));
    }
}
