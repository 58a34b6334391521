//! Serving a view read-only over FUSE: lookups, attributes, listings,
//! reads, symlinks and xattrs come from the view's tree as of its sync
//! point. The mount is read-only, so the kernel answers every change with
//! EROFS before it reaches this code. The view never changes, so the kernel
//! may cache names, attributes and pages for as long as it likes.

use super::adapter::{empty, file_attr, file_type, xattr_reply};
use crate::format::{FileKind, InodeAttrs};
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
const TTL: Duration = Duration::from_secs(3600);
const MAX_READ: u32 = 1 << 20;

pub struct ViewAdapter {
    view: View,
    dirs: Mutex<HashMap<u64, Vec<Entry>>>,
    next_fh: AtomicU64,
}

fn eio(e: crate::Error) -> Errno {
    log::error!("{e}");
    Errno::from_i32(FsError::Engine(e).errno())
}

impl ViewAdapter {
    pub fn new(view: View) -> Self {
        ViewAdapter {
            view,
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn getattr(&self, ino: u64) -> Result<InodeAttrs, Errno> {
        match self.view.tree().getattr(ino) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(Errno::ENOENT),
            Err(e) => Err(eio(e)),
        }
    }

    fn attr(&self, ino: u64, a: &InodeAttrs) -> FileAttr {
        file_attr(ino, a, self.view.block_size)
    }

    fn lookup_in(&self, parent: u64, name: &[u8]) -> Result<(u64, InodeAttrs), Errno> {
        if self.getattr(parent)?.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        if name.len() > crate::format::record::NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let e = self.view.tree().lookup(parent, name).ok_or(Errno::ENOENT)?;
        Ok((e.child, self.getattr(e.child)?))
    }

    fn listing(&self, ino: u64) -> Result<Vec<Entry>, Errno> {
        let a = self.getattr(ino)?;
        if a.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let dot = |name: &[u8], ino| Entry {
            name: name.to_vec(),
            ino,
            kind: FileKind::Directory,
        };
        let mut list = vec![dot(b".", ino), dot(b"..", a.parent.max(ROOT_INO))];
        list.extend(
            self.view
                .tree()
                .list_dir(ino, None)
                .into_iter()
                .map(|(name, e)| Entry {
                    name,
                    ino: e.child,
                    kind: e.kind,
                }),
        );
        Ok(list)
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
        match self.lookup_in(parent.0, name.as_bytes()) {
            Ok((ino, a)) => reply.entry(&TTL, &self.attr(ino, &a), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &self.attr(ino.0, &a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.getattr(ino.0) {
            Ok(a) if a.kind == FileKind::Symlink => reply.data(&a.target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.getattr(ino.0) {
            Ok(a) if a.kind == FileKind::Directory => reply.error(Errno::EISDIR),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
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
        let r = self.getattr(ino.0).and_then(|a| {
            self.view
                .tree()
                .read(ino.0, offset, size as usize, a.size)
                .map_err(eio)
        });
        match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino.0) {
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
        mut reply: ReplyDirectory,
    ) {
        let Some(list) = self.listed(fh, offset) else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in list.iter().enumerate() {
            let next = offset + i as u64 + 1;
            if reply.add(
                INodeNo(e.ino),
                next,
                file_type(e.kind),
                OsStr::from_bytes(&e.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(list) = self.listed(fh, offset) else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in list.iter().enumerate() {
            let attr = match self.getattr(e.ino) {
                Ok(a) => self.attr(e.ino, &a),
                Err(err) => return reply.error(err),
            };
            let next = offset + i as u64 + 1;
            let name = OsStr::from_bytes(&e.name);
            if reply.add(INodeNo(e.ino), next, name, &TTL, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
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
        let stats = self.view.index().stats();
        let bs = self.view.block_size;
        let name_max = crate::format::record::NAME_MAX as u32;
        reply.statfs(stats.blocks, 0, 0, stats.inodes, 0, bs, name_max, bs);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.view.tree().getxattr(ino.0, name.as_bytes()) {
            Ok(Some(v)) => xattr_reply(reply, size, &v),
            Ok(None) => reply.error(Errno::ENODATA),
            Err(e) => reply.error(eio(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut buf = Vec::new();
        for n in self.view.tree().xattr_names(ino.0) {
            buf.extend_from_slice(&n);
            buf.push(0);
        }
        xattr_reply(reply, size, &buf)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let r = self.getattr(ino.0).and_then(|_| {
            if mask.bits() & libc::W_OK != 0 {
                Err(Errno::EROFS)
            } else {
                Ok(())
            }
        });
        empty(reply, r);
    }
}
