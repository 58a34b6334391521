//! What every fuser callback of the live and the view mounts shares:
//! translation between fuser's types and the engine's (attributes, times,
//! errno through [`FsError::errno`]) and answering a reply from a `Result`,
//! so that each callback is one call and one answer.

use crate::format::{FileKind, InodeAttrs, Timestamp};
use crate::fs::{Entry, FsError, FsStats};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, TimeOrNow,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache attributes and names of the live mount.
/// Every change goes through this mount, so the caches are only as stale
/// as this process's own answers; one second bounds what another writer of
/// the same volume (there is none while mounted) could leave behind.
pub const TTL: Duration = Duration::from_secs(1);
/// A view never changes: cache for an hour.
pub const VIEW_TTL: Duration = Duration::from_secs(3600);

/// The errno of `e`; an engine failure is logged, since the application
/// sees only EIO or ENOSPC.
pub fn errno(e: FsError) -> Errno {
    if let FsError::Engine(err) = &e {
        log::error!("{err}");
    }
    Errno::from_i32(e.errno())
}

pub fn file_type(k: FileKind) -> FileType {
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

/// A time a setattr asks for.
pub fn time_or_now(t: Option<TimeOrNow>) -> Option<Timestamp> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => timestamp(t),
        TimeOrNow::Now => Timestamp::now(),
    })
}

pub fn file_attr(ino: u64, a: &InodeAttrs, block_size: u32) -> FileAttr {
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

/// The names of xattrs as listxattr(2) returns them, each NUL-terminated.
pub fn xattr_names(names: Vec<Vec<u8>>) -> Vec<u8> {
    let mut buf = Vec::new();
    for n in names {
        buf.extend_from_slice(&n);
        buf.push(0);
    }
    buf
}

pub fn entry(reply: ReplyEntry, r: Result<(Duration, FileAttr), Errno>) {
    match r {
        Ok((ttl, attr)) => reply.entry(&ttl, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

pub fn attr(reply: ReplyAttr, r: Result<(Duration, FileAttr), Errno>) {
    match r {
        Ok((ttl, attr)) => reply.attr(&ttl, &attr),
        Err(e) => reply.error(e),
    }
}

pub fn data(reply: ReplyData, r: Result<Vec<u8>, Errno>) {
    match r {
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e),
    }
}

pub fn opened(reply: ReplyOpen, r: Result<(FileHandle, FopenFlags), Errno>) {
    match r {
        Ok((fh, flags)) => reply.opened(fh, flags),
        Err(e) => reply.error(e),
    }
}

pub fn written(reply: ReplyWrite, r: Result<u32, Errno>) {
    match r {
        Ok(n) => reply.written(n),
        Err(e) => reply.error(e),
    }
}

pub fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// getxattr/listxattr protocol: size 0 asks for the length.
pub fn xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, Errno>) {
    match r {
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if value.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(value) => reply.data(&value),
        Err(e) => reply.error(e),
    }
}

pub fn statfs(reply: ReplyStatfs, s: &FsStats) {
    let bs = s.block_size;
    reply.statfs(
        s.blocks,
        s.blocks_free,
        s.blocks_free,
        s.files,
        s.files_free,
        bs,
        s.name_max,
        bs,
    );
}

/// Answers readdir with `list`, the entries from `offset` on.
pub fn fill_dir(mut reply: ReplyDirectory, list: Result<Vec<Entry>, Errno>, offset: u64) {
    let list = match list {
        Ok(list) => list,
        Err(e) => return reply.error(e),
    };
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
pub fn fill_dir_plus(
    mut reply: ReplyDirectoryPlus,
    list: Result<Vec<Entry>, Errno>,
    offset: u64,
    attr: impl Fn(&Entry) -> Result<Option<(Duration, FileAttr)>, Errno>,
) {
    let list = match list {
        Ok(list) => list,
        Err(e) => return reply.error(e),
    };
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
