//! The fuser `Filesystem` implementation: translates requests into calls on
//! [`Fs`] and errors into errno, serves the `.lsvfs/` control files, and
//! counts every request in the metrics. No POSIX decision is made here.

use super::control::{Control, ControlHandle, ControlNode, SYNC_POINTS_INO};
use super::view::VIEW_TTL;
use super::views::{self, Views};
use crate::control::{Metrics, Op};
use crate::format::{FileKind, InodeAttrs, Timestamp};
use crate::fs::{Entry, Fs, FsError, Owner, RenameMode, SetAttrs, XattrMode};
use crate::volume::ROOT_INO;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache attributes and names. Every change goes
/// through this mount, so the caches are only as stale as this process's
/// own answers; one second bounds what another writer of the same volume
/// (there is none while mounted) could leave behind.
const TTL: Duration = Duration::from_secs(1);
const MAX_WRITE: u32 = 1 << 20;

/// What an open handle refers to.
enum Handle {
    File(u64),
    /// A directory listing taken at opendir; offsets index into it, so
    /// they stay valid however the directory changes.
    Dir(Vec<Entry>),
    Control(ControlHandle),
}

pub struct Adapter {
    fs: Arc<Fs>,
    control: Control,
    views: Views,
    metrics: Arc<Metrics>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    read_only: bool,
    /// Tests only (`LSVFS_TEST_WRITEBACK_DELAY_MS`): how long each write
    /// of the kernel's writeback waits before it is served, so that tests
    /// can show what a flush must wait for.
    writeback_delay: Option<std::time::Duration>,
}

/// The environment variable that sets [`Adapter::writeback_delay`].
pub const WRITEBACK_DELAY_ENV: &str = "LSVFS_TEST_WRITEBACK_DELAY_MS";

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

pub(super) fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn kind_of_mode(mode: u32) -> Option<FileKind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => FileKind::Regular,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        _ => return None,
    })
}

fn system_time(t: Timestamp) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec as u64)
    }
}

fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut sec, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            Timestamp { sec, nsec }
        }
    }
}

fn time_or_now(t: Option<TimeOrNow>) -> Option<Timestamp> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => timestamp(t),
        TimeOrNow::Now => Timestamp::now(),
    })
}

pub(super) fn file_attr(ino: u64, a: &InodeAttrs, block_size: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.crtime),
        kind: file_type(a.kind),
        perm: a.mode as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: block_size,
        flags: 0,
    }
}

fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

impl Adapter {
    pub fn new(fs: Arc<Fs>, control: Control, metrics: Arc<Metrics>, read_only: bool) -> Self {
        Adapter {
            views: Views::new(fs.clone(), SYNC_POINTS_INO, control.owner()),
            fs,
            control,
            metrics,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            read_only,
            writeback_delay: std::env::var(WRITEBACK_DELAY_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(std::time::Duration::from_millis),
        }
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        FileHandle(fh)
    }

    fn attr(&self, ino: u64, a: &InodeAttrs) -> FileAttr {
        file_attr(ino, a, self.fs.volume().policy().block_size as u32)
    }

    /// Runs `f`, records it in the metrics, and turns its error into errno.
    fn timed<T>(&self, op: Op, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, Errno> {
        let start = Instant::now();
        let r = f();
        self.metrics.record(op, start.elapsed(), r.is_ok());
        r.map_err(|e| {
            if let FsError::Engine(err) = &e {
                log::error!("{err}");
            }
            errno(&e)
        })
    }

    /// A change: refused on a read-only mount, else timed like any request.
    fn change<T>(&self, op: Op, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, Errno> {
        self.writable()?;
        self.timed(op, f)
    }

    fn writable(&self) -> Result<(), Errno> {
        if self.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Changes inside `.lsvfs/sync-points` are refused: views are read-only.
    fn outside_views(&self, inos: &[INodeNo]) -> Result<(), Errno> {
        match inos
            .iter()
            .any(|i| i.0 == SYNC_POINTS_INO || views::decode(i.0).is_some())
        {
            true => Err(Errno::EROFS),
            false => Ok(()),
        }
    }

    /// Names in the root that belong to the control directory.
    fn reserved(&self, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        if parent.0 == ROOT_INO && self.control.is_control_name(name.as_bytes()) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    fn entry(&self, reply: ReplyEntry, r: Result<(u64, InodeAttrs), Errno>) {
        match r {
            Ok((ino, a)) => reply.entry(&TTL, &self.attr(ino, &a), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn make_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<(u64, InodeAttrs), Errno> {
        self.outside_views(&[parent])?;
        self.reserved(parent, name)?;
        let kind = kind_of_mode(mode).ok_or(Errno::EINVAL)?;
        self.change(Op::Create, || {
            self.fs.mknod(
                parent.0,
                name.as_bytes(),
                kind,
                mode & !umask & 0o7777,
                owner(req),
                rdev,
            )
        })
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_WRITEBACK_CACHE
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES;
        let available = config.capabilities() & wanted;
        let wanted = if self.read_only {
            available - InitFlags::FUSE_WRITEBACK_CACHE
        } else {
            available
        };
        if let Err(missing) = config.add_capabilities(wanted) {
            log::warn!("kernel lacks FUSE capabilities {missing:?}");
        }
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_WRITE) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    /// The kernel dropped the inode: a deleted one is forgotten for good
    /// (live, view and control inodes need nothing).
    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        self.fs.forget(ino.0);
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let in_view = match parent.0 {
            SYNC_POINTS_INO => Some(
                self.control
                    .check_access(req)
                    .and_then(|_| self.views.lookup(name.as_bytes())),
            ),
            p if views::decode(p).is_some() => Some(
                self.views
                    .node(p)
                    .and_then(|(v, local)| v.lookup(local, name.as_bytes())),
            ),
            _ => None,
        };
        if let Some(r) = in_view {
            return match r {
                Ok(attr) => reply.entry(&VIEW_TTL, &attr, Generation(0)),
                Err(e) => reply.error(e),
            };
        }
        if let Some(node) = self.control.lookup(parent.0, name.as_bytes()) {
            return match self.control.check_access(req) {
                Ok(()) => reply.entry(&TTL, &self.control.attr(node), Generation(0)),
                Err(e) => reply.error(e),
            };
        }
        let r = self.timed(Op::Lookup, || self.fs.lookup(parent.0, name.as_bytes()));
        self.entry(reply, r);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(node) = self.control.node(ino.0) {
            return reply.attr(&TTL, &self.control.attr(node));
        }
        if views::decode(ino.0).is_some() {
            return match self.views.getattr(ino.0) {
                Ok(attr) => reply.attr(&VIEW_TTL, &attr),
                Err(e) => reply.error(e),
            };
        }
        match self.timed(Op::Getattr, || self.fs.getattr(ino.0)) {
            Ok(a) => reply.attr(&TTL, &self.attr(ino.0, &a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if let Some(node) = self.control.node(ino.0) {
            // Truncating a control file on open (O_TRUNC) is harmless.
            return match (mode, uid, gid) {
                (None, None, None) => reply.attr(&TTL, &self.control.attr(node)),
                _ => reply.error(Errno::EPERM),
            };
        }
        if let Err(e) = self.outside_views(&[ino]) {
            return reply.error(e);
        }
        let set = SetAttrs {
            mode,
            uid,
            gid,
            size,
            atime: time_or_now(atime),
            mtime: time_or_now(mtime),
        };
        match self.change(Op::Setattr, || self.fs.setattr(ino.0, &set)) {
            Ok(a) => reply.attr(&TTL, &self.attr(ino.0, &a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        if views::decode(ino.0).is_some() {
            return match self.views.readlink(ino.0) {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(e),
            };
        }
        match self.timed(Op::Getattr, || self.fs.getattr(ino.0)) {
            Ok(a) if a.kind == FileKind::Symlink => reply.data(&a.target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = self.make_node(req, parent, name, mode, umask, rdev);
        self.entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.make_node(req, parent, name, mode | libc::S_IFDIR, umask, 0);
        self.entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .outside_views(&[parent])
            .and_then(|_| self.change(Op::Remove, || self.fs.unlink(parent.0, name.as_bytes())));
        empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .outside_views(&[parent])
            .and_then(|_| self.change(Op::Remove, || self.fs.rmdir(parent.0, name.as_bytes())));
        empty(reply, r);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self
            .outside_views(&[parent])
            .and_then(|_| self.reserved(parent, link_name))
            .and_then(|_| {
                self.change(Op::Create, || {
                    let target = target.as_os_str().as_bytes();
                    self.fs
                        .symlink(parent.0, link_name.as_bytes(), target, owner(req))
                })
            });
        self.entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            return reply.error(Errno::EINVAL);
        };
        let r = self
            .outside_views(&[parent, newparent])
            .and_then(|_| self.reserved(newparent, newname))
            .and_then(|_| {
                self.change(Op::Rename, || {
                    let (from, to) = (name.as_bytes(), newname.as_bytes());
                    self.fs.rename(parent.0, from, newparent.0, to, mode)
                })
            });
        empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self
            .outside_views(&[ino, newparent])
            .and_then(|_| self.reserved(newparent, newname))
            .and_then(|_| {
                self.change(Op::Link, || {
                    self.fs.link(ino.0, newparent.0, newname.as_bytes())
                })
            })
            .map(|a| (ino.0, a));
        self.entry(reply, r);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if let Some(node) = self.control.node(ino.0) {
            return match self.control.open(req, node) {
                Ok(h) => {
                    // Snapshots read by offset, so they seek (`head` seeks
                    // back); the sync-point file reads by its own cursor.
                    let flags = match h {
                        ControlHandle::SyncPoint(_) => {
                            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE
                        }
                        ControlHandle::Snapshot(_) => FopenFlags::FOPEN_DIRECT_IO,
                    };
                    let fh = self.add_handle(Handle::Control(h));
                    reply.opened(fh, flags)
                }
                Err(e) => reply.error(e),
            };
        }
        if views::decode(ino.0).is_some() {
            // fh 0 is no handle: release has nothing to close.
            return match self
                .views
                .node(ino.0)
                .and_then(|(v, local)| v.open(local, flags))
            {
                Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            };
        }
        let wants_write =
            flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        if wants_write && let Err(e) = self.writable() {
            return reply.error(e);
        }
        match self.timed(Op::Open, || self.fs.open(ino.0)) {
            Ok(_) => reply.opened(
                self.add_handle(Handle::File(ino.0)),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        if self.control.node(ino.0).is_some() {
            let handles = self.handles();
            return match handles.get(&fh.0) {
                Some(Handle::Control(h)) => reply.data(&h.read(offset, size)),
                _ => reply.error(Errno::EBADF),
            };
        }
        if views::decode(ino.0).is_some() {
            return match self
                .views
                .node(ino.0)
                .and_then(|(v, local)| v.read(local, offset, size))
            {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(e),
            };
        }
        match self.timed(Op::Read, || self.fs.read(ino.0, offset, size as usize)) {
            Ok(data) => {
                self.metrics.read_bytes(data.len());
                reply.data(&data)
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        if self.control.node(ino.0).is_some() {
            let handle = match self.handles().get(&fh.0) {
                Some(Handle::Control(h)) => h.clone(),
                _ => return reply.error(Errno::EBADF),
            };
            return self.control.write(req, &handle, data, reply);
        }
        let cached = write_flags.contains(fuser::WriteFlags::FUSE_WRITE_CACHE);
        if let Some(delay) = self.writeback_delay.filter(|_| cached) {
            std::thread::sleep(delay);
        }
        let r = self.change(Op::Write, || match cached {
            true => self.fs.write_cached(ino.0, offset, data),
            false => self.fs.write(ino.0, offset, data),
        });
        match r {
            Ok(n) => {
                self.metrics.written_bytes(n);
                reply.written(n as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) promises nothing about durability; fsync does.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = self.handles().remove(&fh.0);
        match handle {
            Some(Handle::File(ino)) => empty(reply, self.timed(Op::Open, || self.fs.release(ino))),
            _ => reply.ok(),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if self.control.node(ino.0).is_some() {
            return reply.ok();
        }
        empty(reply, self.timed(Op::Fsync, || self.fs.fsync()));
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if let Some(node) = self.control.node(ino.0) {
            return match self.control.check_access(req) {
                Ok(()) => {
                    let mut list = self.control.list(node);
                    if node == ControlNode::SyncPoints {
                        list.extend(self.views.listing());
                    }
                    reply.opened(self.add_handle(Handle::Dir(list)), FopenFlags::empty())
                }
                Err(e) => reply.error(e),
            };
        }
        if views::decode(ino.0).is_some() {
            return match self
                .views
                .node(ino.0)
                .and_then(|(v, local)| v.listing(local))
            {
                Ok(list) => reply.opened(self.add_handle(Handle::Dir(list)), FopenFlags::empty()),
                Err(e) => reply.error(e),
            };
        }
        let r = self.timed(Op::Readdir, || {
            let a = self.fs.getattr(ino.0)?;
            let mut list = vec![
                Entry {
                    name: b".".to_vec(),
                    ino: ino.0,
                    kind: FileKind::Directory,
                },
                Entry {
                    name: b"..".to_vec(),
                    ino: a.parent.max(ROOT_INO),
                    kind: FileKind::Directory,
                },
            ];
            list.extend(self.fs.readdir(ino.0)?);
            Ok(list)
        });
        match r {
            Ok(list) => reply.opened(self.add_handle(Handle::Dir(list)), FopenFlags::empty()),
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
        let handles = self.handles();
        let Some(Handle::Dir(list)) = handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        fill_dir(reply, &list[(offset as usize).min(list.len())..], offset);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let list: Vec<Entry> = {
            let handles = self.handles();
            let Some(Handle::Dir(list)) = handles.get(&fh.0) else {
                return reply.error(Errno::EBADF);
            };
            list.iter().skip(offset as usize).cloned().collect()
        };
        fill_dir_plus(reply, &list, offset, |e| match self.control.node(e.ino) {
            Some(node) => Ok(Some((TTL, self.control.attr(node)))),
            None if views::decode(e.ino).is_some() => {
                self.views.getattr(e.ino).map(|a| Some((VIEW_TTL, a)))
            }
            // Removed since opendir: leave it out.
            None => Ok(self
                .fs
                .getattr(e.ino)
                .ok()
                .map(|a| (TTL, self.attr(e.ino, &a)))),
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.timed(Op::Fsync, || self.fs.fsync()));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let start = Instant::now();
        let s = self.fs.statfs();
        self.metrics.record(Op::Statfs, start.elapsed(), true);
        let bs = s.block_size;
        reply.statfs(
            s.blocks,
            s.blocks_free,
            s.blocks_free,
            s.files,
            u64::MAX / 2,
            bs,
            s.name_max,
            bs,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = self.outside_views(&[ino]) {
            return reply.error(e);
        }
        let mode = match flags {
            0 => XattrMode::Any,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(Errno::EINVAL),
        };
        empty(
            reply,
            self.change(Op::Xattr, || {
                self.fs.setxattr(ino.0, name.as_bytes(), value, mode)
            }),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if self.control.node(ino.0).is_some() {
            return reply.error(Errno::ENODATA);
        }
        if views::decode(ino.0).is_some() {
            return match self.views.getxattr(ino.0, name.as_bytes()) {
                Ok(value) => xattr_reply(reply, size, &value),
                Err(e) => reply.error(e),
            };
        }
        match self.timed(Op::Xattr, || self.fs.getxattr(ino.0, name.as_bytes())) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if self.control.node(ino.0).is_some() {
            return xattr_reply(reply, size, &[]);
        }
        if views::decode(ino.0).is_some() {
            return match self.views.listxattr(ino.0) {
                Ok(names) => xattr_reply(reply, size, &names),
                Err(e) => reply.error(e),
            };
        }
        match self.timed(Op::Xattr, || self.fs.listxattr(ino.0)) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                xattr_reply(reply, size, &buf)
            }
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .outside_views(&[ino])
            .and_then(|_| self.change(Op::Xattr, || self.fs.removexattr(ino.0, name.as_bytes())));
        empty(reply, r);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if self.control.node(ino.0).is_some() {
            return empty(reply, self.control.check_access(req));
        }
        if let Some((_, local)) = views::decode(ino.0) {
            let r = match local {
                0 => Ok(()),
                _ => self
                    .views
                    .node(ino.0)
                    .and_then(|(v, local)| v.access(local, mask)),
            };
            return empty(reply, r);
        }
        let mask = mask.bits() as u32;
        if mask & libc::W_OK as u32 != 0 && self.read_only {
            return reply.error(Errno::EROFS);
        }
        let groups = super::groups_of(req.pid(), req.gid());
        let r = self.timed(Op::Getattr, || {
            self.fs.access(ino.0, req.uid(), &groups, mask)
        });
        empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self
            .make_node(req, parent, name, mode, umask, 0)
            .and_then(|(ino, a)| self.timed(Op::Open, || self.fs.open(ino)).map(|_| (ino, a)));
        match r {
            Ok((ino, a)) => {
                let fh = self.add_handle(Handle::File(ino));
                reply.created(
                    &TTL,
                    &self.attr(ino, &a),
                    Generation(0),
                    fh,
                    FopenFlags::FOPEN_KEEP_CACHE,
                )
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.outside_views(&[ino]).and_then(|_| {
            self.change(Op::Write, || self.fs.fallocate(ino.0, offset, length, mode))
        });
        empty(reply, r);
    }
}

/// Answers readdir with `list`, the entries from `offset` on.
pub(super) fn fill_dir(mut reply: ReplyDirectory, list: &[Entry], offset: u64) {
    for (i, e) in list.iter().enumerate() {
        let name = OsStr::from_bytes(&e.name);
        if reply.add(
            INodeNo(e.ino),
            offset + i as u64 + 1,
            file_type(e.kind),
            name,
        ) {
            break;
        }
    }
    reply.ok();
}

/// Answers readdirplus with `list`, the entries from `offset` on, and the
/// attributes `attr` gives for each (none: leave the entry out).
pub(super) fn fill_dir_plus(
    mut reply: ReplyDirectoryPlus,
    list: &[Entry],
    offset: u64,
    attr: impl Fn(&Entry) -> Result<Option<(Duration, FileAttr)>, Errno>,
) {
    for (i, e) in list.iter().enumerate() {
        let (ttl, attr) = match attr(e) {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(err) => return reply.error(err),
        };
        let name = OsStr::from_bytes(&e.name);
        if reply.add(
            INodeNo(e.ino),
            offset + i as u64 + 1,
            name,
            &ttl,
            &attr,
            Generation(0),
        ) {
            break;
        }
    }
    reply.ok();
}

pub(super) fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// getxattr/listxattr protocol: size 0 asks for the length.
pub(super) fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
