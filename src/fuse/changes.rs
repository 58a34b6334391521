//! Changes through the live mount: where they are refused before the
//! volume sees them (EROFS on a read-only mount and inside
//! `.lsvfs/sync-points`, EEXIST for the control directory's name, ENOENT
//! for the other control nodes, which are not in the volume) and the call
//! into [`Fs`](crate::fs::Fs) for the rest, timed in the metrics.

use super::adapter::Inner;
use super::control_nodes::ControlNode;
use super::reply::errno;
use super::route::{Route, route};
use crate::control_files::Op;
use crate::format::InodeAttrs;
use crate::fs::{FsError, FsResult, Owner, RenameMode, kind_of_mode};
use crate::volume::ROOT_INO;
use fuser::Errno;

impl Inner {
    /// Refuses any change on a read-only mount.
    pub(super) fn writable(&self) -> Result<(), Errno> {
        match self.read_only {
            true => Err(errno(FsError::ReadOnly)),
            false => Ok(()),
        }
    }

    /// The live inode a change to `to` addresses, if it may be changed.
    pub(super) fn changed(&self, to: Route) -> Result<u64, Errno> {
        match to {
            // Views are read-only, and so is the directory of them.
            Route::View { .. } | Route::Label(_) | Route::Control(ControlNode::SyncPoints) => {
                Err(errno(FsError::ReadOnly))
            }
            _ if self.read_only => Err(errno(FsError::ReadOnly)),
            Route::Control(_) => Err(errno(FsError::NotFound)),
            Route::Live(ino) => Ok(ino),
        }
    }

    /// `f` on the live inode `ino`, if it may be changed, timed as `op`.
    pub(super) fn change<T>(
        &self,
        ino: u64,
        op: Op,
        f: impl FnOnce(u64) -> FsResult<T>,
    ) -> Result<T, Errno> {
        let ino = self.changed(route(ino))?;
        self.timed(op, || f(ino))
    }

    /// A new name in directory `parent`: refused where it may not be made
    /// (and, in the root, where it is the control directory's), else `f`.
    pub(super) fn name<T>(
        &self,
        parent: u64,
        name: &[u8],
        op: Op,
        f: impl FnOnce(u64) -> FsResult<T>,
    ) -> Result<T, Errno> {
        if parent == ROOT_INO && self.control.is_control_name(name) {
            return Err(errno(FsError::Exists));
        }
        self.change(parent, op, f)
    }

    /// mknod, mkdir and create: a node of the kind `mode` names.
    pub(super) fn make_node(
        &self,
        who: Owner,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<(u64, InodeAttrs), Errno> {
        let kind = kind_of_mode(mode).map_err(errno)?;
        let perm = mode & !umask & 0o7777;
        self.name(parent, name, Op::Create, |p| {
            self.fs.mknod(p, name, kind, perm, who, rdev)
        })
    }

    /// A write of `data` at `offset`; `cached` if the kernel's writeback
    /// sends it.
    pub(super) fn write_data(
        &self,
        ino: u64,
        offset: u64,
        data: &[u8],
        cached: bool,
    ) -> Result<u32, Errno> {
        if let Some(delay) = self.writeback_delay.filter(|_| cached) {
            std::thread::sleep(delay);
        }
        let n = self.change(ino, Op::Write, |ino| match cached {
            true => self.fs.write_cached(ino, offset, data),
            false => self.fs.write(ino, offset, data),
        })?;
        self.metrics.written_bytes(n);
        Ok(n as u32)
    }

    /// rename(2) of `name` in `parent` to `newname` in `newparent`, with
    /// renameat2(2)'s `flags`.
    pub(super) fn move_entry(
        &self,
        (parent, name): (u64, &[u8]),
        (newparent, newname): (u64, &[u8]),
        flags: u32,
    ) -> Result<(), Errno> {
        let mode = RenameMode::from_flags(flags).map_err(errno)?;
        let parent = self.changed(route(parent))?;
        self.name(newparent, newname, Op::Rename, |newparent| {
            self.fs.rename(parent, name, newparent, newname, mode)
        })
    }
}
