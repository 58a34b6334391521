//! The fuser `Filesystem` of the live mount. Each callback routes its
//! inode once ([`Route`]) to the live volume ([`Fs`]), a `.lsvfs/` control
//! node or a view in `.lsvfs/sync-points/`, calls it and answers; requests
//! to the volume are counted in the metrics. No POSIX decision is made
//! here; where changes are refused before the volume sees them is in
//! `changes.rs`. Every change to the live volume passes the freeze gate
//! ([`Gate`]): while the mount is frozen it is parked with its reply and
//! runs at the thaw, so no request thread waits on a freeze.

use super::caller::{groups_of, owner};
use super::control_nodes::{CONTROL_TTL, Control, ControlHandle, ControlNode, SYNC_POINTS_INO};
use super::freeze::{Admission, Gate};
use super::handles::{Handle, Handles};
use super::reply::{self, TTL, errno, file_attr, time_or_now, xattr_names};
use super::route::{Route, route};
use super::sync_points::Views;
use crate::control_files::{Metrics, Op};
use crate::format::InodeAttrs;
use crate::fs::{Entry, Fs, FsError, FsResult, SetAttrs, XattrMode, opens_for_writing};
use crate::volume::ROOT_INO;
use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the callbacks share; parked changes hold it until the thaw.
pub struct Inner {
    pub(super) fs: Arc<Fs>,
    pub(super) control: Control,
    views: Views,
    pub(super) metrics: Arc<Metrics>,
    handles: Handles,
    pub(super) read_only: bool,
    /// Whether to ask the kernel for its writeback cache (never for a
    /// read-only mount).
    writeback_cache: bool,
    /// Tests only (`LSVFS_TEST_WRITEBACK_DELAY_MS`): how long each write
    /// of the kernel's writeback waits before it is served, so that tests
    /// can show what a flush must wait for.
    pub(super) writeback_delay: Option<Duration>,
    pub(super) gate: Arc<Gate>,
}

/// The fuser filesystem: the shared state, and the freeze gate in front
/// of every change.
pub struct Adapter {
    inner: Arc<Inner>,
}

impl std::ops::Deref for Adapter {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// The environment variable that sets [`Adapter::writeback_delay`].
pub const WRITEBACK_DELAY_ENV: &str = "LSVFS_TEST_WRITEBACK_DELAY_MS";

impl Adapter {
    pub fn new(
        fs: Arc<Fs>,
        control: Control,
        metrics: Arc<Metrics>,
        opts: &super::MountOptions,
    ) -> Self {
        let inner = Inner {
            views: Views::new(fs.clone(), SYNC_POINTS_INO, control.owner()),
            gate: control.gate(),
            fs,
            control,
            metrics,
            handles: Handles::default(),
            read_only: opts.read_only,
            writeback_cache: !opts.read_only && !opts.no_writeback_cache,
            writeback_delay: std::env::var(WRITEBACK_DELAY_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
        };
        Adapter {
            inner: Arc::new(inner),
        }
    }

    /// Runs the change `op` (to inode `ino` or in it) now, or while the
    /// mount is frozen parks it until the thaw. Control files are never
    /// held: the thaw itself comes through one.
    fn gated(&self, ino: u64, op: impl FnOnce(&Inner) + Send + 'static) {
        if let Route::Control(_) = route(ino) {
            return op(&self.inner);
        }
        match self.gate.enter() {
            Admission::Now(_pass) => op(&self.inner),
            Admission::Frozen(parker) => {
                let inner = self.inner.clone();
                parker.park(Box::new(move || op(&inner)));
            }
        }
    }
}

impl Inner {
    /// Runs `f`, records it in the metrics, and turns its error into errno.
    pub(super) fn timed<T>(&self, op: Op, f: impl FnOnce() -> FsResult<T>) -> Result<T, Errno> {
        let start = Instant::now();
        let r = f();
        self.metrics.record(op, start.elapsed(), r.is_ok());
        r.map_err(errno)
    }

    fn attr(&self, ino: u64, a: &InodeAttrs) -> (Duration, FileAttr) {
        let block_size = self.fs.volume().policy().block_size as u32;
        (TTL, file_attr(ino, a, block_size))
    }

    /// The attributes of any inode of the mount.
    fn attr_of(&self, ino: u64) -> Result<(Duration, FileAttr), Errno> {
        match route(ino) {
            Route::Live(ino) => self
                .timed(Op::Getattr, || self.fs.getattr(ino))
                .map(|a| self.attr(ino, &a)),
            Route::Control(node) => Ok((CONTROL_TTL, self.control.attr(node))),
            Route::Label(id) => self.views.label_attr(id),
            Route::View { id, ino } => self.views.get(id)?.attr(ino),
        }
    }

    fn lookup_in(&self, req: &Request, parent: u64, name: &[u8]) -> LookupResult {
        match route(parent) {
            Route::Live(ROOT_INO) if self.control.is_control_name(name) => {
                self.control.entry(req, ControlNode::Dir)
            }
            Route::Live(p) => self
                .timed(Op::Lookup, || self.fs.lookup(p, name))
                .map(|(ino, a)| self.attr(ino, &a)),
            Route::Control(ControlNode::SyncPoints) => {
                self.control.check_access(req)?;
                self.views.lookup(name)
            }
            Route::Control(node) => match self.control.lookup(node, name) {
                Some(child) => self.control.entry(req, child),
                None => Err(errno(FsError::NotFound)),
            },
            Route::Label(_) => Err(Errno::EINVAL),
            Route::View { id, ino } => self.views.get(id)?.lookup(ino, name),
        }
    }

    /// What opendir of `ino` lists: `.`, `..` and the entries.
    fn listing(&self, req: &Request, ino: u64) -> Result<Vec<Entry>, Errno> {
        match route(ino) {
            Route::Live(ino) => self.timed(Op::Readdir, || self.fs.listing(ino)),
            Route::Control(node) => {
                self.control.check_access(req)?;
                let mut list = self.control.list(node);
                if node == ControlNode::SyncPoints {
                    list.extend(self.views.listing()?);
                }
                Ok(list)
            }
            Route::Label(_) => Err(Errno::EINVAL),
            Route::View { id, ino } => self.views.get(id)?.listing(ino),
        }
    }

    fn open_file(&self, req: &Request, ino: u64, flags: OpenFlags) -> OpenResult {
        match route(ino) {
            Route::Live(ino) => {
                if opens_for_writing(flags.0) {
                    self.writable()?;
                }
                self.timed(Op::Open, || self.fs.open(ino))?;
                let fh = self.handles.add(Handle::File(ino));
                Ok((fh, FopenFlags::FOPEN_KEEP_CACHE))
            }
            Route::Control(node) => {
                let h = self.control.open(req, node)?;
                let flags = h.open_flags();
                Ok((self.handles.add(Handle::Control(h)), flags))
            }
            Route::Label(_) => Err(Errno::EINVAL),
            Route::View { id, ino } => self.views.get(id)?.open(ino, flags),
        }
    }

    fn access_live(&self, req: &Request, ino: u64, mask: u32) -> Result<(), Errno> {
        if mask & libc::W_OK as u32 != 0 {
            self.writable()?;
        }
        let groups = groups_of(req.pid(), req.gid());
        self.timed(Op::Getattr, || {
            self.fs.access(ino, req.uid(), &groups, mask)
        })
    }
}

/// An inode's attributes and how long the kernel may keep them.
type LookupResult = Result<(Duration, FileAttr), Errno>;
/// A new handle and how the kernel is to use it.
type OpenResult = Result<(FileHandle, FopenFlags), Errno>;

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        super::negotiate(config, self.writeback_cache);
        Ok(())
    }

    /// The kernel dropped the inode: a deleted one is forgotten for good
    /// (view and control inodes need nothing).
    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        if let Route::Live(ino) = route(ino.0) {
            self.fs.forget(ino);
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply::entry(reply, self.lookup_in(req, parent.0, name.as_bytes()));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply::attr(reply, self.attr_of(ino.0));
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
        let set = SetAttrs {
            mode,
            uid,
            gid,
            size,
            atime: time_or_now(atime),
            mtime: time_or_now(mtime),
        };
        let ino = ino.0;
        self.gated(ino, move |me| {
            let r = match route(ino) {
                // Truncating a control file on open (O_TRUNC) is harmless.
                Route::Control(node) if (mode, uid, gid) == (None, None, None) => {
                    Ok((CONTROL_TTL, me.control.attr(node)))
                }
                Route::Control(_) => Err(Errno::EPERM),
                to => me
                    .changed(to)
                    .and_then(|i| me.timed(Op::Setattr, || me.fs.setattr(i, &set)))
                    .map(|a| me.attr(ino, &a)),
            };
            reply::attr(reply, r);
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = match route(ino.0) {
            Route::Live(ino) => self.timed(Op::Getattr, || self.fs.readlink(ino)),
            // Not a symlink.
            Route::Control(_) => Err(Errno::EINVAL),
            Route::Label(id) => self.views.label_target(id),
            Route::View { id, ino } => self.views.get(id).and_then(|v| v.readlink(ino)),
        };
        reply::data(reply, r);
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
        let (who, name) = (owner(req), name.as_bytes().to_vec());
        self.gated(parent.0, move |me| {
            let r = me.make_node(who, parent.0, &name, mode, umask, rdev);
            reply::entry(reply, r.map(|(ino, a)| me.attr(ino, &a)));
        });
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
        let mode = mode | libc::S_IFDIR;
        let (who, name) = (owner(req), name.as_bytes().to_vec());
        self.gated(parent.0, move |me| {
            let r = me.make_node(who, parent.0, &name, mode, umask, 0);
            reply::entry(reply, r.map(|(ino, a)| me.attr(ino, &a)));
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.gated(parent.0, move |me| {
            let r = me.change(parent.0, Op::Remove, |p| me.fs.unlink(p, &name));
            reply::empty(reply, r);
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.gated(parent.0, move |me| {
            let r = me.change(parent.0, Op::Remove, |p| me.fs.rmdir(p, &name));
            reply::empty(reply, r);
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = link_name.as_bytes().to_vec();
        let (target, who) = (target.as_os_str().as_bytes().to_vec(), owner(req));
        self.gated(parent.0, move |me| {
            let r = me.name(parent.0, &name, Op::Create, |p| {
                me.fs.symlink(p, &name, &target, who)
            });
            reply::entry(reply, r.map(|(ino, a)| me.attr(ino, &a)));
        });
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
        let (name, newname) = (name.as_bytes().to_vec(), newname.as_bytes().to_vec());
        let flags = flags.bits();
        self.gated(parent.0, move |me| {
            let (from, to) = ((parent.0, &name[..]), (newparent.0, &newname[..]));
            reply::empty(reply, me.move_entry(from, to, flags));
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = newname.as_bytes().to_vec();
        self.gated(ino.0, move |me| {
            let r = me.changed(route(ino.0)).and_then(|ino| {
                let a = me.name(newparent.0, &name, Op::Link, |p| me.fs.link(ino, p, &name))?;
                Ok(me.attr(ino, &a))
            });
            reply::entry(reply, r);
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply::opened(reply, self.open_file(req, ino.0, flags));
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
        let r = match route(ino.0) {
            Route::Live(ino) => self
                .timed(Op::Read, || self.fs.read(ino, offset, size as usize))
                .inspect(|data| self.metrics.read_bytes(data.len())),
            Route::Control(_) => self.handles.control(fh).map(|h| h.read(offset, size)),
            Route::Label(_) => Err(Errno::EINVAL),
            Route::View { id, ino } => self.views.get(id).and_then(|v| v.read(ino, offset, size)),
        };
        reply::data(reply, r);
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
        let cached = write_flags.contains(fuser::WriteFlags::FUSE_WRITE_CACHE);
        let r = match route(ino.0) {
            Route::Control(_) => match self.handles.control(fh) {
                // A restore changes the live volume: not on a read-only mount.
                Ok(ControlHandle::Restore(_)) if self.read_only => Err(errno(FsError::ReadOnly)),
                Ok(handle) => return self.control.write(req, &handle, data, reply),
                Err(e) => Err(e),
            },
            // The hot path: the data is copied only to be parked.
            _ => match self.gate.enter() {
                Admission::Now(_pass) => self.write_data(ino.0, offset, data, cached),
                Admission::Frozen(parker) => {
                    let (inner, data) = (self.inner.clone(), data.to_vec());
                    return parker.park(Box::new(move || {
                        reply::written(reply, inner.write_data(ino.0, offset, &data, cached))
                    }));
                }
            },
        };
        reply::written(reply, r);
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
        let r = match self.handles.remove(fh) {
            Some(Handle::File(ino)) => self.timed(Op::Open, || self.fs.release(ino)),
            _ => Ok(()),
        };
        reply::empty(reply, r);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = match route(ino.0) {
            Route::Live(_) => self.timed(Op::Fsync, || self.fs.fsync()),
            // Control nodes keep nothing; views are durable already.
            Route::Control(_) | Route::Label(_) | Route::View { .. } => Ok(()),
        };
        reply::empty(reply, r);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = self.listing(req, ino.0);
        let r = r.map(|list| (self.handles.add(Handle::Dir(list)), FopenFlags::empty()));
        reply::opened(reply, r);
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        reply::fill_dir(reply, self.handles.listed(fh, offset), offset);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let list = self.handles.listed(fh, offset);
        reply::fill_dir_plus(reply, list, offset, |e| match route(e.ino) {
            // Removed since opendir: leave it out.
            Route::Live(ino) => Ok(self.fs.getattr(ino).ok().map(|a| self.attr(ino, &a))),
            _ => self.attr_of(e.ino).map(Some),
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
        self.handles.remove(fh);
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
        reply::empty(reply, self.timed(Op::Fsync, || self.fs.fsync()));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let start = Instant::now();
        let s = self.fs.statfs();
        self.metrics.record(Op::Statfs, start.elapsed(), true);
        reply::statfs(reply, &s);
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
        let (name, value) = (name.as_bytes().to_vec(), value.to_vec());
        self.gated(ino.0, move |me| {
            let r = XattrMode::from_flags(flags)
                .map_err(errno)
                .and_then(|mode| {
                    me.change(ino.0, Op::Xattr, |ino| {
                        me.fs.setxattr(ino, &name, &value, mode)
                    })
                });
            reply::empty(reply, r);
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.as_bytes();
        let r = match route(ino.0) {
            Route::Live(ino) => self.timed(Op::Xattr, || self.fs.getxattr(ino, name)),
            Route::Control(_) | Route::Label(_) => Err(Errno::ENODATA),
            Route::View { id, ino } => self.views.get(id).and_then(|v| v.getxattr(ino, name)),
        };
        reply::xattr(reply, size, r);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = match route(ino.0) {
            Route::Live(ino) => self
                .timed(Op::Xattr, || self.fs.listxattr(ino))
                .map(xattr_names),
            Route::Control(_) | Route::Label(_) => Ok(Vec::new()),
            Route::View { id, ino } => self.views.get(id).and_then(|v| v.listxattr(ino)),
        };
        reply::xattr(reply, size, r);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.gated(ino.0, move |me| {
            let r = me.change(ino.0, Op::Xattr, |ino| me.fs.removexattr(ino, &name));
            reply::empty(reply, r);
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let r = match route(ino.0) {
            Route::Live(ino) => self.access_live(req, ino, mask.bits() as u32),
            Route::Control(_) => self.control.check_access(req),
            Route::Label(_) => Ok(()),
            Route::View { id, ino } => self.views.get(id).and_then(|v| v.access(ino, mask)),
        };
        reply::empty(reply, r);
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
        let (who, name) = (owner(req), name.as_bytes().to_vec());
        self.gated(parent.0, move |me| {
            let r = me
                .make_node(who, parent.0, &name, mode, umask, 0)
                .and_then(|(ino, a)| me.timed(Op::Open, || me.fs.open(ino)).map(|_| (ino, a)));
            match r {
                Ok((ino, a)) => {
                    let fh = me.handles.add(Handle::File(ino));
                    let (ttl, attr) = me.attr(ino, &a);
                    let flags = FopenFlags::FOPEN_KEEP_CACHE;
                    reply.created(&ttl, &attr, Generation(0), fh, flags)
                }
                Err(e) => reply.error(e),
            }
        });
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
        self.gated(ino.0, move |me| {
            let r = me.change(ino.0, Op::Write, |ino| {
                me.fs.fallocate(ino, offset, length, mode)
            });
            reply::empty(reply, r);
        });
    }
}
