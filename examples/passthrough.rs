//! A plain passthrough FUSE filesystem that mirrors a directory. It is a
//! benchmark anchor only and not part of lsvfs. `tools/bench` runs each
//! workload on the native directory, on this mirror and on lsvfs, so the
//! cost of FUSE itself is measured next to the cost of the log.
//!
//! ```text
//! passthrough [-o allow_other] [--threads N] [--no-writeback-cache] SOURCE_DIR MOUNTPOINT
//! ```
//! It serves in the foreground until unmounted (`umount` or
//! `fusermount3 -u`). It mounts the way lsvfs does, taken from
//! `lsvfs::fuse`: the same capabilities (writeback cache, parallel dirops,
//! readdirplus, ...), max_write, read-ahead, request threads, mount options
//! and attribute TTL. `--threads` and `--no-writeback-cache` change those
//! for comparison. Each request becomes the matching system call on the
//! source; the mirror keeps no data of its own.
//!
//! Inodes: a FUSE inode number is the source file's own st_ino (the source
//! directory answers as 1). A table maps each inode the kernel holds to a
//! path and counts the kernel's lookups. A rename moves the paths of the
//! whole subtree. A mount inside SOURCE_DIR would clash inode numbers, so
//! the source must be one filesystem. File and directory handles are the
//! source's own file descriptors.

use clap::Parser;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};
use lsvfs::fuse::{MountOptions, THREADS, TTL, mount_config, negotiate};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata, Permissions};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The FUSE inode number of the mirrored directory itself.
const ROOT: u64 = 1;

#[derive(Parser)]
#[command(about = "A passthrough FUSE mirror of a directory: the benchmark anchor of tools/bench")]
struct Args {
    /// Mount options as lsvfs takes them (allow_other, ro, rw, default_permissions).
    #[arg(short = 'o', default_value = "")]
    options: String,
    /// FUSE request threads (lsvfs's count by default).
    #[arg(long, default_value_t = THREADS)]
    threads: usize,
    /// Leave the kernel's writeback cache off.
    #[arg(long)]
    no_writeback_cache: bool,
    source: PathBuf,
    mountpoint: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts = MountOptions::parse(&args.options).map_err(anyhow::Error::msg)?;
    let source = std::fs::canonicalize(&args.source)?;
    // The kernel has applied the caller's umask to every mode it sends.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0) };
    let writeback_cache = !args.no_writeback_cache && !opts.read_only;
    let mirror = Mirror::new(source.clone(), writeback_cache)?;
    let name = source.display().to_string();
    let mut config = mount_config(name, "passthrough", opts.read_only, opts.allow_other);
    config.n_threads = Some(args.threads);
    fuser::mount(mirror, &args.mountpoint, &config)?;
    Ok(())
}

/// What the kernel knows an inode by: one of its paths, and how many
/// lookups it has not forgotten yet.
struct Node {
    path: PathBuf,
    lookups: u64,
}

/// One entry of a directory listing taken at opendir.
struct Listed {
    name: OsString,
    ino: u64,
    kind: FileType,
}

type Answer<T> = Result<T, Errno>;

struct Mirror {
    source: PathBuf,
    /// The source directory's st_ino, answered as [`ROOT`].
    source_ino: u64,
    writeback_cache: bool,
    /// This process's effective uid and gid: the owner of what it creates.
    owner: (u32, u32),
    nodes: Mutex<HashMap<u64, Node>>,
    /// Listings of the open directories, by handle.
    listings: Mutex<HashMap<u64, Arc<Vec<Listed>>>>,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

/// A libc return value, or the errno it left.
fn check(ret: libc::c_int) -> Answer<libc::c_int> {
    if ret < 0 {
        Err(errno(io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

fn c_string(s: &OsStr) -> Answer<CString> {
    CString::new(s.as_bytes()).map_err(|_| Errno::EINVAL)
}

fn c_path(path: &Path) -> Answer<CString> {
    c_string(path.as_os_str())
}

/// The open file behind a handle, borrowed: dropping it does not close it.
fn borrow(fh: FileHandle) -> ManuallyDrop<File> {
    // SAFETY: every handle given to the kernel is a descriptor this process
    // opened and closes only at release, after the kernel's last use.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fh.0 as RawFd) })
}

fn close(fh: FileHandle) {
    // SAFETY: the handle's descriptor is ours and not used after this.
    unsafe { libc::close(fh.0 as RawFd) };
}

fn open_path(path: &Path, flags: i32, mode: u32) -> Answer<FileHandle> {
    let path = c_path(path)?;
    // SAFETY: a valid NUL-terminated path.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(FileHandle(fd as u64))
}

fn lstat(path: &Path) -> Answer<Metadata> {
    std::fs::symlink_metadata(path).map_err(errno)
}

fn system_time(sec: i64, nsec: i64) -> SystemTime {
    let since = Duration::new(sec.unsigned_abs(), 0);
    let base = if sec >= 0 {
        UNIX_EPOCH + since
    } else {
        UNIX_EPOCH - since
    };
    base + Duration::from_nanos(nsec as u64)
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    let (tv_sec, tv_nsec) = match t {
        None => (0, libc::UTIME_OMIT),
        Some(TimeOrNow::Now) => (0, libc::UTIME_NOW),
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            (
                d.as_secs() as libc::time_t,
                d.subsec_nanos() as libc::c_long,
            )
        }
    };
    libc::timespec { tv_sec, tv_nsec }
}

/// What a setattr changes: an open file, or a path (never followed).
enum Target {
    Open(ManuallyDrop<File>),
    Path(PathBuf),
}

impl Target {
    fn chmod(&self, mode: u32) -> Answer<()> {
        let perm = Permissions::from_mode(mode & 0o7777);
        match self {
            Target::Open(f) => f.set_permissions(perm),
            Target::Path(p) => std::fs::set_permissions(p, perm),
        }
        .map_err(errno)
    }

    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Answer<()> {
        match self {
            Target::Open(f) => std::os::unix::fs::fchown(&**f, uid, gid),
            Target::Path(p) => std::os::unix::fs::lchown(p, uid, gid),
        }
        .map_err(errno)
    }

    fn truncate(&self, size: u64) -> Answer<()> {
        match self {
            Target::Open(f) => f.set_len(size).map_err(errno),
            Target::Path(p) => {
                let p = c_path(p)?;
                // SAFETY: a valid NUL-terminated path.
                check(unsafe { libc::truncate(p.as_ptr(), size as libc::off_t) }).map(drop)
            }
        }
    }

    fn utimens(&self, atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> Answer<()> {
        let times = [timespec(atime), timespec(mtime)];
        // SAFETY: `times` holds two timespecs; the descriptor and the
        // NUL-terminated path are valid.
        check(match self {
            Target::Open(f) => unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) },
            Target::Path(p) => {
                let p = c_path(p)?;
                let nofollow = libc::AT_SYMLINK_NOFOLLOW;
                unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), nofollow) }
            }
        })
        .map(drop)
    }
}

impl Mirror {
    fn new(source: PathBuf, writeback_cache: bool) -> io::Result<Self> {
        let source_ino = std::fs::metadata(&source)?.ino();
        Ok(Mirror {
            source,
            source_ino,
            writeback_cache,
            // SAFETY: geteuid and getegid have no preconditions.
            owner: unsafe { (libc::geteuid(), libc::getegid()) },
            nodes: Mutex::default(),
            listings: Mutex::default(),
        })
    }

    // --- inodes and paths

    fn path(&self, ino: INodeNo) -> Answer<PathBuf> {
        if ino.0 == ROOT {
            return Ok(self.source.clone());
        }
        let nodes = self.nodes.lock().unwrap();
        nodes
            .get(&ino.0)
            .map(|n| n.path.clone())
            .ok_or(Errno::ESTALE)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Answer<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    fn fuse_ino(&self, st_ino: u64) -> u64 {
        if st_ino == self.source_ino {
            ROOT
        } else {
            st_ino
        }
    }

    fn attr(&self, m: &Metadata) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.fuse_ino(m.ino())),
            size: m.size(),
            blocks: m.blocks(),
            atime: system_time(m.atime(), m.atime_nsec()),
            mtime: system_time(m.mtime(), m.mtime_nsec()),
            ctime: system_time(m.ctime(), m.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: FileType::from_std(m.file_type()).unwrap_or(FileType::RegularFile),
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: m.blksize() as u32,
            flags: 0,
        }
    }

    /// The kernel holds one more reference to `ino`, known by `path`.
    fn remember(&self, ino: INodeNo, path: PathBuf) {
        if ino.0 == ROOT {
            return;
        }
        let mut nodes = self.nodes.lock().unwrap();
        let node = nodes.entry(ino.0).or_insert(Node {
            path: PathBuf::new(),
            lookups: 0,
        });
        node.path = path;
        node.lookups += 1;
    }

    /// The attributes of what `path` names, remembered for the kernel.
    fn entry(&self, path: PathBuf) -> Answer<FileAttr> {
        let attr = self.attr(&lstat(&path)?);
        self.remember(attr.ino, path);
        Ok(attr)
    }

    /// After a rename: every known path at or below `from` is below `to`.
    fn moved(&self, from: &Path, to: &Path) {
        for node in self.nodes.lock().unwrap().values_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    /// Current attributes, through the open file when there is one. A path
    /// that now names another inode (renamed over, unlinked) is stale.
    fn stat(&self, ino: INodeNo, fh: Option<FileHandle>) -> Answer<FileAttr> {
        let attr = match fh {
            Some(fh) => self.attr(&borrow(fh).metadata().map_err(errno)?),
            None => self.attr(&lstat(&self.path(ino)?)?),
        };
        if attr.ino != ino {
            return Err(Errno::ENOENT);
        }
        Ok(attr)
    }

    /// A new node belongs to the caller; its group is the directory's
    /// where the directory is set-group-ID. The source filesystem has made
    /// it ours already.
    fn give(&self, req: &Request, path: &Path) -> Answer<()> {
        if (req.uid(), req.gid()) == self.owner {
            return Ok(());
        }
        let dir = lstat(path.parent().unwrap_or(path))?;
        let inherit = dir.mode() & libc::S_ISGID != 0;
        let gid = (!inherit).then_some(req.gid());
        Target::Path(path.to_path_buf()).chown(Some(req.uid()), gid)
    }

    // --- files

    /// Open flags for the source file. With the writeback cache the kernel
    /// reads around partial pages and positions appends itself.
    fn open_flags(&self, flags: i32) -> i32 {
        let mut flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_DIRECT);
        if self.writeback_cache {
            if flags & libc::O_ACCMODE == libc::O_WRONLY {
                flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR;
            }
            flags &= !libc::O_APPEND;
        }
        flags
    }

    fn create_file(
        &self,
        req: &Request,
        path: PathBuf,
        mode: u32,
        flags: i32,
    ) -> Answer<(FileAttr, FileHandle)> {
        let flags = self.open_flags(flags) | libc::O_CREAT;
        let fh = open_path(&path, flags, mode & 0o7777)?;
        match self.give(req, &path).and_then(|()| self.entry(path)) {
            Ok(attr) => Ok((attr, fh)),
            Err(e) => {
                close(fh);
                Err(e)
            }
        }
    }

    fn read_at(&self, fh: FileHandle, offset: u64, size: u32) -> Answer<Vec<u8>> {
        let mut buf = Vec::with_capacity(size as usize);
        let spare = buf.spare_capacity_mut();
        let mut done = 0;
        while done < spare.len() {
            let rest = &mut spare[done..];
            let at = (offset + done as u64) as libc::off_t;
            // SAFETY: `rest` is writable memory of rest.len() bytes; pread
            // writes at most that many.
            let n = unsafe { libc::pread(fh.0 as RawFd, rest.as_mut_ptr().cast(), rest.len(), at) };
            match n {
                0 => break,
                n if n > 0 => done += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(errno(e));
                    }
                }
            }
        }
        // SAFETY: pread initialised the first `done` bytes.
        unsafe { buf.set_len(done) };
        Ok(buf)
    }

    fn set_attrs(&self, ino: INodeNo, fh: Option<FileHandle>, change: &Change) -> Answer<FileAttr> {
        let target = match fh {
            Some(fh) => Target::Open(borrow(fh)),
            None => Target::Path(self.path(ino)?),
        };
        if let Some(mode) = change.mode {
            target.chmod(mode)?;
        }
        if change.uid.is_some() || change.gid.is_some() {
            target.chown(change.uid, change.gid)?;
        }
        if let Some(size) = change.size {
            target.truncate(size)?;
        }
        if change.atime.is_some() || change.mtime.is_some() {
            target.utimens(change.atime, change.mtime)?;
        }
        self.stat(ino, fh)
    }

    // --- directories

    fn make_dir(&self, req: &Request, path: PathBuf, mode: u32) -> Answer<FileAttr> {
        let c = c_path(&path)?;
        // SAFETY: a valid NUL-terminated path.
        check(unsafe { libc::mkdir(c.as_ptr(), mode & 0o7777) })?;
        self.give(req, &path)?;
        self.entry(path)
    }

    fn make_symlink(&self, req: &Request, path: PathBuf, target: &Path) -> Answer<FileAttr> {
        std::os::unix::fs::symlink(target, &path).map_err(errno)?;
        self.give(req, &path)?;
        self.entry(path)
    }

    fn list(&self, dir: &Path, ino: INodeNo) -> Answer<Vec<Listed>> {
        let dot = |name: &str| Listed {
            name: name.into(),
            ino: ino.0,
            kind: FileType::Directory,
        };
        let mut list = vec![dot("."), dot("..")];
        for e in std::fs::read_dir(dir).map_err(errno)? {
            let e = e.map_err(errno)?;
            let kind = e.file_type().ok().and_then(FileType::from_std);
            list.push(Listed {
                name: e.file_name(),
                ino: self.fuse_ino(e.ino()),
                kind: kind.unwrap_or(FileType::RegularFile),
            });
        }
        Ok(list)
    }

    fn open_dir(&self, ino: INodeNo) -> Answer<FileHandle> {
        let path = self.path(ino)?;
        let fh = open_path(&path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        match self.list(&path, ino) {
            Ok(list) => {
                self.listings.lock().unwrap().insert(fh.0, Arc::new(list));
                Ok(fh)
            }
            Err(e) => {
                close(fh);
                Err(e)
            }
        }
    }

    fn listing(&self, fh: FileHandle) -> Answer<Arc<Vec<Listed>>> {
        self.listings
            .lock()
            .unwrap()
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Fills readdirplus from entry `offset` on. Every entry but `.` and
    /// `..` that the reply takes counts as a lookup.
    fn fill_plus(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Answer<()> {
        let (dir, list) = (self.path(ino)?, self.listing(fh)?);
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            let is_dot = e.name == "." || e.name == "..";
            let path = if is_dot {
                dir.clone()
            } else {
                dir.join(&e.name)
            };
            // Removed since opendir: leave it out.
            let Ok(meta) = lstat(&path) else { continue };
            let attr = self.attr(&meta);
            if reply.add(attr.ino, i as u64 + 1, &e.name, &TTL, &attr, Generation(0)) {
                break;
            }
            if !is_dot {
                self.remember(attr.ino, path);
            }
        }
        Ok(())
    }

    // --- names and the rest

    fn rename_entry(
        &self,
        from: (INodeNo, &OsStr),
        to: (INodeNo, &OsStr),
        flags: u32,
    ) -> Answer<()> {
        // Exchanging two names would need both subtrees' paths swapped.
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(Errno::EINVAL);
        }
        let (from, to) = (self.child(from.0, from.1)?, self.child(to.0, to.1)?);
        let (f, t, cwd) = (c_path(&from)?, c_path(&to)?, libc::AT_FDCWD);
        // SAFETY: valid NUL-terminated paths.
        check(unsafe { libc::renameat2(cwd, f.as_ptr(), cwd, t.as_ptr(), flags) })?;
        self.moved(&from, &to);
        Ok(())
    }

    fn link_entry(&self, ino: INodeNo, parent: INodeNo, name: &OsStr) -> Answer<FileAttr> {
        let (from, to) = (self.path(ino)?, self.child(parent, name)?);
        std::fs::hard_link(from, &to).map_err(errno)?;
        self.entry(to)
    }

    fn statvfs(&self) -> Answer<libc::statvfs> {
        let path = c_path(&self.source)?;
        // SAFETY: statvfs is plain data, filled in by the call.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid NUL-terminated path and a statvfs to fill.
        check(unsafe { libc::statvfs(path.as_ptr(), &mut s) })?;
        Ok(s)
    }

    fn set_xattr(&self, ino: INodeNo, name: &OsStr, value: &[u8], flags: i32) -> Answer<()> {
        let (path, name) = (c_path(&self.path(ino)?)?, c_string(name)?);
        let (v, len) = (value.as_ptr().cast(), value.len());
        // SAFETY: valid NUL-terminated strings; `value` is readable.
        check(unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), v, len, flags) }).map(drop)
    }

    fn remove_xattr(&self, ino: INodeNo, name: &OsStr) -> Answer<()> {
        let (path, name) = (c_path(&self.path(ino)?)?, c_string(name)?);
        // SAFETY: valid NUL-terminated strings.
        check(unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) }).map(drop)
    }
}

/// The attributes a setattr changes.
struct Change {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

fn reply_entry(reply: ReplyEntry, r: Answer<FileAttr>) {
    match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Answer<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_opened(reply: ReplyOpen, r: Answer<FileHandle>, flags: FopenFlags) {
    match r {
        Ok(fh) => reply.opened(fh, flags),
        Err(e) => reply.error(e),
    }
}

/// Answers getxattr/listxattr with one call of `get(buffer, size)` (an
/// l*xattr function): size 0 asks for the length only.
fn reply_xattr(reply: ReplyXattr, size: u32, get: impl Fn(*mut libc::c_void, usize) -> isize) {
    let mut buf = vec![0u8; size as usize];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    match get(ptr, buf.len()) {
        n if n < 0 => reply.error(errno(io::Error::last_os_error())),
        n if size == 0 => reply.size(n as u32),
        n => reply.data(&buf[..n as usize]),
    }
}

impl Filesystem for Mirror {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        negotiate(config, self.writeback_cache);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.child(parent, name).and_then(|p| self.entry(p)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut nodes = self.nodes.lock().unwrap();
        if let Some(node) = nodes.get_mut(&ino.0) {
            node.lookups = node.lookups.saturating_sub(nlookup);
            if node.lookups == 0 {
                nodes.remove(&ino.0);
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.stat(ino, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
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
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = Change {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        match self.set_attrs(ino, fh, &change) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = self
            .path(ino)
            .and_then(|p| std::fs::read_link(p).map_err(errno));
        match target {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self
            .child(parent, name)
            .and_then(|p| self.make_dir(req, p, mode));
        reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.child(parent, name);
        reply_empty(
            reply,
            r.and_then(|p| std::fs::remove_file(p).map_err(errno)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.child(parent, name);
        reply_empty(reply, r.and_then(|p| std::fs::remove_dir(p).map_err(errno)));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, link_name);
        reply_entry(reply, r.and_then(|p| self.make_symlink(req, p, target)));
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
        let r = self.rename_entry((parent, name), (newparent, newname), flags.bits());
        reply_empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self.link_entry(ino, newparent, newname);
        reply_entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self
            .path(ino)
            .and_then(|p| open_path(&p, self.open_flags(flags.0), 0));
        reply_opened(reply, r, FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_at(fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match borrow(fh).write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Each close(2) of a descriptor of the file: closes a duplicate of
    /// ours, so that the source filesystem reports what close would.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // SAFETY: dup of our open descriptor; the duplicate is closed here.
        let r = check(unsafe { libc::dup(fh.0 as RawFd) })
            .and_then(|dup| check(unsafe { libc::close(dup) }).map(drop));
        reply_empty(reply, r);
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
        close(fh);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let file = borrow(fh);
        let r = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        reply_empty(reply, r.map_err(errno));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply_opened(reply, self.open_dir(ino), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = match self.listing(fh) {
            Ok(list) => list,
            Err(e) => return reply.error(e),
        };
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.fill_plus(ino, fh, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
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
        self.listings.lock().unwrap().remove(&fh.0);
        close(fh);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.statvfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
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
        let r = self.set_xattr(ino, name, value, flags);
        reply_empty(reply, r);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let (path, name) = match (self.path(ino).and_then(|p| c_path(&p)), c_string(name)) {
            (Ok(path), Ok(name)) => (path, name),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        // SAFETY: valid NUL-terminated strings; reply_xattr passes a buffer
        // of `len` bytes (or none and 0).
        reply_xattr(reply, size, |buf, len| unsafe {
            libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf, len)
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let path = match self.path(ino).and_then(|p| c_path(&p)) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        // SAFETY: a valid NUL-terminated path; a buffer of `len` bytes.
        reply_xattr(reply, size, |buf, len| unsafe {
            libc::llistxattr(path.as_ptr(), buf.cast(), len)
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.remove_xattr(ino, name);
        reply_empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.child(parent, name);
        match r.and_then(|p| self.create_file(req, p, mode, flags)) {
            Ok((attr, fh)) => {
                reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let (offset, length) = (offset as libc::off_t, length as libc::off_t);
        // SAFETY: fallocate on our open descriptor.
        let r = check(unsafe { libc::fallocate(fh.0 as RawFd, mode, offset, length) });
        reply_empty(reply, r.map(drop));
    }
}
